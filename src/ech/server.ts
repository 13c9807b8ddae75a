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
import { baseModeHashes, type HpkeContext, isSupportedSuite, setupReceiver } from '../crypto/hpke.js';
import type { CryptoProvider, X25519Private } from '../crypto/provider.js';
import { EchgateError } from '../errors.js';
import type { ECHConfigContents } from '../wire/ech/config.js';
import {
  type ClientHello,
  decodeClientHelloPrefix,
  encodeClientHelloWithOffsets,
  type Extension,
  findExtension,
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
  suiteHashes: Map<number, { infoHash: Uint8Array; pskIdHash: Uint8Array }>;
}

export function prepareServerKey(p: CryptoProvider, config: ECHConfigContents & { raw: Uint8Array }, sk: X25519Private): EchServerKey {
  const info = concat(utf8('tls ech'), Uint8Array.of(0), config.raw);
  const suiteHashes = new Map<number, { infoHash: Uint8Array; pskIdHash: Uint8Array }>();
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

/** ClientHelloOuterAAD (§5.2): the outer hello body with the payload bytes zeroed. */
export function outerAad(outer: ClientHello, ext: Extension, ech: Extract<ECHClientHello, { type: 'outer' }>): Uint8Array {
  if (!outer.raw || ext.offset === undefined) throw new EchgateError('ERR_ILLEGAL', 'the outer hello must keep its original bytes');
  // A real copy: outer.raw may be a Buffer, whose slice() is a view, and zeroing
  // through a view would destroy the payload we are about to decrypt.
  const aad = new Uint8Array(outer.raw);
  const at = ext.offset + ech.payloadOffset;
  aad.fill(0, at, at + ech.payload.length);
  return aad;
}

export interface DecryptOptions {
  trialDecrypt?: boolean;
  /** The outer ECH extension, when the caller has already decoded it. */
  ech?: ECHClientHello;
}

export function decryptEch(p: CryptoProvider, outer: ClientHello, keys: KeyLookup, opts: DecryptOptions = {}): EchOutcome {
  const ext = findExtension(outer, ExtensionType.encrypted_client_hello);
  if (!ext) return { status: 'absent' };
  const ech = opts.ech ?? decodeECHClientHello(ext.data);
  // §7: a shared-mode (client-facing) server never expects the inner form from the network.
  if (ech.type !== 'outer') throw illegal('ClientHello from the network carries an inner ECH extension');

  const matched = keys.byConfigId(ech.configId);
  const candidates = opts.trialDecrypt ? [...matched, ...keys.all().filter((k) => k.configId !== ech.configId)] : matched;
  if (candidates.length === 0) return { status: 'rejected', reason: 'no_config', configId: ech.configId };

  let aad: Uint8Array | undefined;
  for (const key of candidates) {
    const hashes = key.suiteHashes.get((ech.kdfId << 16) | ech.aeadId);
    if (!hashes) continue; // §7.1: the config does not offer this suite; try the next one
    aad ??= outerAad(outer, ext, ech);
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
  for (const e of hello.extensions) {
    if (e.type !== ExtensionType.ech_outer_extensions) {
      extensions.push({ type: e.type, data: e.data });
      continue;
    }
    if (expanded) throw illegal('two ech_outer_extensions');
    expanded = true;
    let i = 0;
    for (const t of decodeOuterExtensions(e.data)) {
      if (t === ExtensionType.encrypted_client_hello) throw illegal('ech_outer_extensions references encrypted_client_hello');
      while (i < outer.extensions.length && outer.extensions[i]!.type !== t) i++;
      if (i === outer.extensions.length) throw illegal(`ech_outer_extensions references ${t}, missing or out of order in the outer hello`);
      extensions.push({ type: t, data: outer.extensions[i]!.data });
      i++;
    }
  }
  const seen = new Set<number>();
  for (const e of extensions) {
    if (seen.has(e.type)) throw illegal(`extension ${e.type} appears twice in ClientHelloInner`);
    seen.add(e.type);
  }

  // §7.1: the inner must carry a well-formed inner ECH extension ...
  const echExt = extensions.find((e) => e.type === ExtensionType.encrypted_client_hello);
  if (!echExt) throw illegal('ClientHelloInner lacks the inner encrypted_client_hello extension');
  const echInner = decodeECHClientHello(echExt.data);
  if (echInner.type !== 'inner') throw illegal('ClientHelloInner carries an outer encrypted_client_hello extension');
  // ... and must not offer TLS 1.2 or below (§6.1 item 1, §7.1).
  const sv = extensions.find((e) => e.type === ExtensionType.supported_versions);
  if (!sv) throw illegal('ClientHelloInner does not offer TLS 1.3 (no supported_versions)');
  const versions = decodeSupportedVersions(sv.data).filter((v) => !isGrease(v));
  if (!versions.includes(ProtocolVersion.TLS13)) {
    // Nothing we can negotiate: RFC 8446 §4.2.1's protocol_version, as NSS sends.
    throw new EchgateError('ERR_ECH_INNER', 'ClientHelloInner offers no TLS 1.3', { alert: 'protocol_version' });
  }
  if (versions.some((v) => v !== ProtocolVersion.TLS13)) throw illegal('ClientHelloInner offers TLS 1.2 or below');

  // Routing needs only the extensions; the encoded bytes (and offsets) are
  // built the first time something asks for `raw` — termination does, for the
  // transcript. That keeps an encode off the passthrough hot path.
  const inner: ClientHello = { ...hello, sessionId: outer.sessionId, extensions };
  let withBytes: ClientHello | undefined;
  Object.defineProperty(inner, 'raw', {
    enumerable: true,
    get() {
      withBytes ??= encodeClientHelloWithOffsets({ ...hello, sessionId: outer.sessionId, extensions });
      return withBytes.raw;
    },
  });
  return inner;
}
