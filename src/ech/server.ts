/**
 * Server side of ECH, client-facing role (RFC 9849 §7.1): choose candidate
 * configs, HPKE-open the payload against the outer hello's AAD, rebuild
 * ClientHelloInner (§5.1), and check it. Decided before any TLS negotiation
 * and handed on explicitly as {inner, outer, ech}.
 *
 * Decryption failure is not an error (stale key or GREASE): the caller goes on
 * with ClientHelloOuter. A hello that decrypts but whose inner is malformed is
 * an error carrying the alert the RFC names.
 */
import { concat, utf8 } from '../bytes/util.js';
import { type BaseModeHashes, baseModeHashes, type HpkeContext, isSupportedSuite, setupReceiver } from '../crypto/hpke.js';
import type { CryptoProvider, X25519Private } from '../crypto/provider.js';
import { EchgateError } from '../errors.js';
import type { ECHConfigContents } from '../wire/ech/config.js';
import {
  type ClientHello,
  decodeClientHelloPrefix,
  type Extension,
  findExtension,
  firstDuplicateType,
} from '../wire/tls/client-hello.js';
import { ExtensionType, isGrease, ProtocolVersion } from '../wire/tls/constants.js';
import {
  decodeECHClientHello,
  decodeOuterExtensions,
  decodeSupportedVersions,
  type ECHClientHello,
} from '../wire/tls/extensions.js';
import { usableSuites } from '../wire/ech/usable.js';

/** A private key with its ECHConfig, ready for the hot path. */
export interface EchServerKey {
  configId: number;
  config: ECHConfigContents & { raw: Uint8Array };
  sk: X25519Private;
  /** HPKE info = "tls ech" || 0x00 || ECHConfig (§6.1), and the key-schedule hashes per suite, computed once. */
  info: Uint8Array;
  suiteHashes: Map<number, BaseModeHashes>;
}

export function prepareServerKey(p: CryptoProvider, config: ECHConfigContents & { raw: Uint8Array }, sk: X25519Private): EchServerKey {
  const info = concat(utf8('tls ech'), Uint8Array.of(0), config.raw);
  const suiteHashes = new Map<number, BaseModeHashes>();
  for (const s of usableSuites(config, isSupportedSuite)) suiteHashes.set((s.kdfId << 16) | s.aeadId, baseModeHashes(p, s, info));
  return { configId: config.configId, config, sk, info, suiteHashes };
}

export interface KeyLookup {
  byConfigId(id: number): readonly EchServerKey[];
  all(): readonly EchServerKey[];
}

export type EchOutcome =
  | { status: 'absent' }
  | {
      status: 'rejected';
      /** no_config: no key has this config_id (GREASE or an unknown key); decrypt_failed: a key matched but could not open it. */
      reason: 'no_config' | 'decrypt_failed';
      configId: number;
    }
  | {
      status: 'accepted';
      configId: number;
      key: EchServerKey;
      hpke: HpkeContext;
      /** ClientHelloInner; its `raw` (the bytes the transcript hashes) is encoded on first use. */
      inner: ClientHello;
      ech: Extract<ECHClientHello, { type: 'outer' }>;
    };

const illegal = (msg: string) => new EchgateError('ERR_ECH_INNER', msg, { alert: 'illegal_parameter' });

/**
 * ClientHelloOuterAAD (§5.2): the outer hello body with the payload bytes
 * zeroed. Written into `into` when it is large enough (the decryptor's
 * scratch buffer), else into a new array.
 */
export function outerAad(outer: ClientHello, ext: Extension, ech: Extract<ECHClientHello, { type: 'outer' }>, into?: Uint8Array): Uint8Array {
  if (!outer.raw || ext.offset === undefined) throw new EchgateError('ERR_ILLEGAL', 'the outer hello must keep its original bytes');
  // Always a copy: outer.raw may be a Buffer, whose slice() is a view, and
  // zeroing through a view would destroy the payload we are about to decrypt.
  const raw = outer.raw;
  const aad = into && into.length >= raw.length ? into.subarray(0, raw.length) : new Uint8Array(raw.length);
  aad.set(raw);
  const at = ext.offset + ech.payloadOffset;
  aad.fill(0, at, at + ech.payload.length);
  return aad;
}

/**
 * Scratch space for the AAD of one decryption at a time: decryptEch is
 * synchronous and the AEAD consumes the AAD before it returns, so one buffer
 * serves every connection and a hello costs no AAD allocation.
 */
let aadScratch = new Uint8Array(2048);

export interface DecryptOptions {
  trialDecrypt?: boolean;
  /** The outer ECH extension, when the caller has already decoded it. */
  ech?: ECHClientHello;
}

export function decryptEch(p: CryptoProvider, outer: ClientHello, keys: KeyLookup, opts: DecryptOptions = {}): EchOutcome {
  // With the caller's decoded extension (the proxy's routing scan), the hello's extension list is read only
  // once a key is to be tried: a GREASE or unknown config_id leaves a lazily decoded hello undecoded.
  let ext = opts.ech ? undefined : findExtension(outer, ExtensionType.encrypted_client_hello);
  if (!opts.ech && !ext) return { status: 'absent' };
  const ech = opts.ech ?? decodeECHClientHello(ext!.data);
  // §7: a shared-mode (client-facing) server never expects the inner form from the network.
  if (ech.type !== 'outer') throw illegal('ClientHello from the network carries an inner ECH extension');

  const matched = keys.byConfigId(ech.configId);
  const candidates = opts.trialDecrypt ? [...matched, ...keys.all().filter((k) => k.configId !== ech.configId)] : matched;
  if (candidates.length === 0) return { status: 'rejected', reason: 'no_config', configId: ech.configId };

  let aad: Uint8Array | undefined;
  for (const key of candidates) {
    const hashes = key.suiteHashes.get((ech.kdfId << 16) | ech.aeadId);
    if (!hashes) continue; // §7.1: the config does not offer this suite; try the next one
    if (aad === undefined) {
      ext ??= findExtension(outer, ExtensionType.encrypted_client_hello);
      if (!ext) return { status: 'absent' }; // opts.ech came from another hello: nothing of this one to open
      const need = outer.raw?.length ?? 0;
      if (aadScratch.length < need) aadScratch = new Uint8Array(need);
      aad = outerAad(outer, ext, ech, aadScratch);
    }
    let hpke: HpkeContext;
    let encoded: Uint8Array;
    try {
      hpke = setupReceiver(p, ech, ech.enc, key.sk, key.info, hashes);
      encoded = hpke.open(aad, ech.payload);
    } catch (e) {
      if (e instanceof EchgateError) continue; // wrong key, bad enc, GREASE: next candidate
      throw e;
    }
    const inner = rebuildInner(outer, encoded);
    return { status: 'accepted', configId: key.configId, key, hpke, inner, ech };
  }
  return { status: 'rejected', reason: matched.length ? 'decrypt_failed' : 'no_config', configId: ech.configId };
}

/**
 * The second ClientHelloOuter after a HelloRetryRequest, when the first was
 * accepted (§7.1.1): it must carry ECH with the same config_id and suite and
 * an empty enc; its payload opens with the first hello's HPKE context (the
 * next sequence number) against its own AAD, and becomes the second
 * ClientHelloInner. Every failure carries the alert §7.1.1 names.
 */
export function decryptSecondHello(first: Extract<EchOutcome, { status: 'accepted' }>, outer: ClientHello): ClientHello {
  const ext = findExtension(outer, ExtensionType.encrypted_client_hello);
  if (!ext) throw new EchgateError('ERR_ECH_INNER', 'the second ClientHelloOuter has no encrypted_client_hello', { alert: 'missing_extension' });
  const ech = decodeECHClientHello(ext.data);
  if (ech.type !== 'outer' || ech.configId !== first.ech.configId || ech.kdfId !== first.ech.kdfId || ech.aeadId !== first.ech.aeadId || ech.enc.length !== 0) {
    throw illegal('the second ClientHelloOuter changed config_id or cipher_suite, or sent a non-empty enc');
  }
  let encoded: Uint8Array;
  try {
    encoded = first.hpke.open(outerAad(outer, ext, ech), ech.payload);
  } catch (e) {
    if (e instanceof EchgateError) throw new EchgateError('ERR_ECH_INNER', 'the second ClientHelloOuter does not decrypt', { alert: 'decrypt_error', cause: e });
    throw e;
  }
  return rebuildInner(outer, encoded);
}

/**
 * EncodedClientHelloInner → ClientHelloInner (§5.1), with every check of §5.1
 * and §7.1, using the linear-time outer-extension walk of Appendix A.
 */
export function rebuildInner(outer: ClientHello, encoded: Uint8Array): ClientHello {
  const { hello, length } = decodeClientHelloPrefix(encoded);
  for (let i = length; i < encoded.length; i++) {
    if (encoded[i] !== 0) throw illegal('EncodedClientHelloInner padding is not all zeros');
  }
  if (hello.sessionId.length !== 0) throw illegal('EncodedClientHelloInner has a non-empty legacy_session_id');

  const extensions: Extension[] = [];
  let expanded = false;
  let echExt: Extension | undefined;
  let sv: Extension | undefined;
  for (const e of hello.extensions) {
    if (e.type !== ExtensionType.ech_outer_extensions) {
      extensions.push({ type: e.type, data: e.data });
      if (e.type === ExtensionType.encrypted_client_hello) echExt = e;
      else if (e.type === ExtensionType.supported_versions) sv = e;
      continue;
    }
    if (expanded) throw illegal('two ech_outer_extensions');
    expanded = true;
    let i = 0;
    for (const t of decodeOuterExtensions(e.data)) {
      if (t === ExtensionType.encrypted_client_hello) throw illegal('ech_outer_extensions references encrypted_client_hello');
      while (i < outer.extensions.length && outer.extensions[i]!.type !== t) i++;
      if (i === outer.extensions.length) throw illegal(`ech_outer_extensions references ${t}, missing or out of order in the outer hello`);
      const x = outer.extensions[i]!;
      extensions.push({ type: t, data: x.data });
      if (t === ExtensionType.supported_versions) sv = x;
      i++;
    }
  }
  const dup = firstDuplicateType(extensions);
  if (dup >= 0) throw illegal(`extension ${dup} appears twice in ClientHelloInner`);

  // §7.1: the inner must carry a well-formed inner ECH extension ...
  if (!echExt) throw illegal('ClientHelloInner lacks the inner encrypted_client_hello extension');
  const echInner = decodeECHClientHello(echExt.data);
  if (echInner.type !== 'inner') throw illegal('ClientHelloInner carries an outer encrypted_client_hello extension');
  // ... and must offer TLS 1.3 and nothing older (§6.1 item 1). §7.1 names the
  // alert for both failures: illegal_parameter, not RFC 8446's protocol_version.
  // The check is made here, before routing, because on the route-only paths
  // (split mode, a passthrough hello) no TLS engine of ours ever sees the inner.
  if (!sv) throw illegal('ClientHelloInner does not offer TLS 1.3 (no supported_versions)');
  let tls13 = false;
  let older = false;
  for (const v of decodeSupportedVersions(sv.data)) {
    if (v === ProtocolVersion.TLS13) tls13 = true;
    else if (!isGrease(v)) older = true;
  }
  if (!tls13) throw illegal('ClientHelloInner does not offer TLS 1.3');
  if (older) throw illegal('ClientHelloInner offers TLS 1.2 or below');
  return new InnerHello(hello, outer.sessionId, extensions);
}

/**
 * Bytes in front of an encoded ClientHelloInner: a record header (RFC 8446
 * §5.1, 5 bytes) and a handshake header (§4, 4 bytes), filled by
 * InnerHello.record() for split mode.
 */
const HEADROOM = 9;

/**
 * ClientHelloInner. Routing needs only the extensions; the encoded bytes are
 * built the first time something reads `raw` — termination does, for the
 * transcript, and split mode, to send it — which keeps an encode off the
 * paths that never need it. They are encoded behind HEADROOM spare bytes, so
 * that split mode frames them as a record without another copy.
 */
export class InnerHello implements ClientHello {
  readonly legacyVersion: number;
  readonly random: Uint8Array;
  readonly cipherSuites: number[];
  readonly compressionMethods: Uint8Array;
  /** HEADROOM bytes, then the encoded hello. */
  private buf: Uint8Array | undefined;
  /**
   * This hello itself, read through `this` by raw and record(): a view made
   * with Object.create over it (proxy/tls12.ts restrictSuites, for
   * `tls.options` cipherSuites) runs these getters with `this` = the view,
   * whose cipherSuites are the restricted list — and the transcript must hash
   * ClientHelloInner as the client sent it (RFC 8446 §4.4.1, RFC 9849 §7.2),
   * or the accept confirmation and Finished cannot match.
   */
  private readonly sent: InnerHello;

  constructor(
    hello: ClientHello,
    readonly sessionId: Uint8Array,
    readonly extensions: Extension[],
  ) {
    this.legacyVersion = hello.legacyVersion;
    this.random = hello.random;
    this.cipherSuites = hello.cipherSuites;
    this.compressionMethods = hello.compressionMethods;
    this.sent = this;
  }

  get raw(): Uint8Array {
    const h = this.sent;
    h.buf ??= h.encode();
    return h.buf.subarray(HEADROOM);
  }

  /**
   * The hello as one handshake record (type 22, legacy_record_version
   * 0x0303), or undefined when it is longer than one record's plaintext
   * (`maxPlain`, RFC 8446 §5.1) and must be fragmented.
   */
  record(maxPlain: number): Uint8Array | undefined {
    const h = this.sent;
    h.buf ??= h.encode();
    const b = h.buf;
    const body = b.length - HEADROOM;
    const n = body + 4;
    if (n > maxPlain) return undefined;
    b[0] = 22;
    b[1] = 3;
    b[2] = 3;
    b[3] = n >>> 8;
    b[4] = n & 0xff;
    b[5] = 1; // client_hello
    b[6] = body >>> 16;
    b[7] = (body >>> 8) & 0xff;
    b[8] = body & 0xff;
    return b;
  }

  /**
   * RFC 8446 §4.1.2's ClientHello, as encodeClientHello writes it (the same
   * bytes: test/ech.test.ts compares them), straight after HEADROOM. Every
   * field came from a decoded hello and so fits its length prefix, except the
   * extension block as a whole: the inner's own extensions plus the outer
   * ones it references may pass 2^16 − 1 bytes, refused as encodeClientHello
   * refuses it.
   */
  private encode(): Uint8Array {
    const sid = this.sessionId;
    const cs = this.cipherSuites;
    const cm = this.compressionMethods;
    let extLen = 0;
    for (const e of this.extensions) extLen += 4 + e.data.length;
    if (extLen > 0xffff) throw new EchgateError('ERR_ENCODE', `u16 value ${extLen} out of range`);
    const out = new Uint8Array(HEADROOM + 2 + 32 + 1 + sid.length + 2 + 2 * cs.length + 1 + cm.length + 2 + extLen);
    let at = HEADROOM;
    out[at++] = this.legacyVersion >>> 8;
    out[at++] = this.legacyVersion & 0xff;
    out.set(this.random, at);
    at += 32;
    out[at++] = sid.length;
    out.set(sid, at);
    at += sid.length;
    out[at++] = (2 * cs.length) >>> 8;
    out[at++] = (2 * cs.length) & 0xff;
    for (const c of cs) {
      out[at++] = c >>> 8;
      out[at++] = c & 0xff;
    }
    out[at++] = cm.length;
    out.set(cm, at);
    at += cm.length;
    out[at++] = extLen >>> 8;
    out[at++] = extLen & 0xff;
    for (const e of this.extensions) {
      const d = e.data;
      out[at++] = e.type >>> 8;
      out[at++] = e.type & 0xff;
      out[at++] = d.length >>> 8;
      out[at++] = d.length & 0xff;
      out.set(d, at);
      at += d.length;
    }
    return out;
  }
}
