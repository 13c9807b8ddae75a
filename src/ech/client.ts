/**
 * The client side of ECH (RFC 9849 §6.1): build ClientHelloInner, compress it
 * into EncodedClientHelloInner with ech_outer_extensions, pad it (§6.1.3),
 * HPKE-seal it to an ECHConfig, and wrap it in ClientHelloOuter. Used by the
 * tests and by `echgate connect`. Hooks let tests build the malformed hellos
 * a server must refuse.
 */
import { concat, utf8 } from '../bytes/util.js';
import { type HpkeContext, setupSender } from '../crypto/hpke.js';
import type { CryptoProvider, X25519Private } from '../crypto/provider.js';
import type { ECHConfigContents } from '../wire/ech/config.js';
import { type ClientHello, encodeClientHello, type Extension } from '../wire/tls/client-hello.js';
import { ExtensionType, NamedGroup, ProtocolVersion } from '../wire/tls/constants.js';
import {
  encodeAlpn,
  encodeECHClientHello,
  encodeKeyShares,
  encodeOuterExtensions,
  encodePskModes,
  encodeServerName,
  encodeSupportedVersions,
  encodeU16List,
} from '../wire/tls/extensions.js';
import { encodeHandshake } from '../wire/tls/handshake.js';

export interface EchHelloOptions {
  config: ECHConfigContents & { raw: Uint8Array };
  innerSni?: string;
  alpn?: string[];
  /** Outer extension types to compress with ech_outer_extensions (default: key_share, supported_groups, signature_algorithms). */
  compress?: number[];
  suite?: { kdfId: number; aeadId: number };
  /** Test hooks for malformed hellos. */
  innerVersions?: number[];
  omitInnerEch?: boolean;
  extraInnerExtensions?: Extension[];
  /** Replace the outer_extensions list written into the encoded inner. */
  outerExtensionsList?: number[];
  mutateEncoded?: (encoded: Uint8Array) => Uint8Array;
  configId?: number;
  enc?: (enc: Uint8Array) => Uint8Array;
}

export interface EchHello {
  /** The ClientHelloOuter handshake message (4-byte header + body). */
  outerMessage: Uint8Array;
  outer: ClientHello;
  inner: ClientHello;
  /** The key shares' private keys: the inner one is used if ECH is accepted, the outer one if not. */
  innerKey: X25519Private;
  outerKey: X25519Private;
  hpke: HpkeContext;
}

const SIG_ALGS = [0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601, 0x0807];

export function buildEchClientHello(p: CryptoProvider, o: EchHelloOptions): EchHello {
  const suite = o.suite ?? o.config.cipherSuites[0]!;
  const sessionId = p.randomBytes(32);
  const innerKey = p.x25519Generate();
  const outerKey = p.x25519Generate();
  const shared: Extension[] = [
    { type: ExtensionType.supported_groups, data: encodeU16List([NamedGroup.x25519]) },
    { type: ExtensionType.signature_algorithms, data: encodeU16List(SIG_ALGS) },
    { type: ExtensionType.psk_key_exchange_modes, data: encodePskModes([1]) },
  ];
  const innerExts: Extension[] = [
    ...(o.innerSni ? [{ type: ExtensionType.server_name, data: encodeServerName(o.innerSni) }] : []),
    { type: ExtensionType.supported_versions, data: encodeSupportedVersions(o.innerVersions ?? [ProtocolVersion.TLS13]) },
    { type: ExtensionType.key_share, data: encodeKeyShares([{ group: NamedGroup.x25519, keyExchange: innerKey.publicKey }]) },
    ...shared,
    ...(o.alpn ? [{ type: ExtensionType.application_layer_protocol_negotiation, data: encodeAlpn(o.alpn) }] : []),
    ...(o.omitInnerEch ? [] : [{ type: ExtensionType.encrypted_client_hello, data: encodeECHClientHello({ type: 'inner' }) }]),
    ...(o.extraInnerExtensions ?? []),
  ];
  const inner: ClientHello = {
    legacyVersion: ProtocolVersion.TLS12,
    random: p.randomBytes(32),
    sessionId,
    cipherSuites: [0x1301, 0x1302, 0x1303],
    compressionMethods: Uint8Array.of(0),
    extensions: innerExts,
  };

  // Outer: public name, its own key share, and the same data for compressed extensions.
  const compress = o.compress ?? [ExtensionType.supported_groups, ExtensionType.signature_algorithms];
  const outerExts: Extension[] = [
    { type: ExtensionType.server_name, data: encodeServerName(o.config.publicName) },
    { type: ExtensionType.supported_versions, data: encodeSupportedVersions([ProtocolVersion.TLS13, ProtocolVersion.TLS12]) },
    { type: ExtensionType.key_share, data: encodeKeyShares([{ group: NamedGroup.x25519, keyExchange: outerKey.publicKey }]) },
    ...shared,
    ...(o.alpn ? [{ type: ExtensionType.application_layer_protocol_negotiation, data: encodeAlpn(o.alpn) }] : []),
  ];
  // A compressed extension must carry identical data inside and outside.
  for (const t of compress) {
    const i = innerExts.find((e) => e.type === t);
    const j = outerExts.findIndex((e) => e.type === t);
    if (i && j >= 0) outerExts[j] = { type: t, data: i.data };
  }

  // EncodedClientHelloInner (§5.1): empty session id; the compressed run becomes one ech_outer_extensions.
  const encodedExts: Extension[] = [];
  const referenced = innerExts.filter((e) => compress.includes(e.type)).map((e) => e.type);
  let placed = false;
  for (const e of innerExts) {
    if (!compress.includes(e.type)) encodedExts.push(e);
    else if (!placed) {
      placed = true;
      encodedExts.push({ type: ExtensionType.ech_outer_extensions, data: encodeOuterExtensions(o.outerExtensionsList ?? referenced) });
    }
  }
  let encoded = encodeClientHello({ ...inner, sessionId: new Uint8Array(0), extensions: encodedExts });
  // §6.1.3 padding: hide the name length up to maximum_name_length, then round to 32.
  const nameLen = o.innerSni ? utf8(o.innerSni).length : 0;
  const L = o.innerSni ? Math.max(0, o.config.maximumNameLength - nameLen) : o.config.maximumNameLength + 9;
  const N = 31 - ((encoded.length + L - 1) % 32);
  encoded = concat(encoded, new Uint8Array(L + N));
  if (o.mutateEncoded) encoded = o.mutateEncoded(encoded);

  const info = concat(utf8('tls ech'), Uint8Array.of(0), o.config.raw);
  const { enc, ctx } = setupSender(p, suite, o.config.publicKey, info);
  const echEnc = o.enc ? o.enc(enc) : enc;
  const tagLen = 16;
  const placeholder = {
    type: 'outer' as const,
    kdfId: suite.kdfId,
    aeadId: suite.aeadId,
    configId: o.configId ?? o.config.configId,
    enc: echEnc,
    payload: new Uint8Array(encoded.length + tagLen),
    payloadOffset: 0,
  };
  outerExts.push({ type: ExtensionType.encrypted_client_hello, data: encodeECHClientHello(placeholder) });
  const outer: ClientHello = { ...inner, random: p.randomBytes(32), extensions: outerExts };
  const body = encodeClientHello(outer);
  // The payload is the last bytes of the body (ECH is the last extension): the AAD is the body as it stands, zeros in place.
  const payload = ctx.seal(body, encoded);
  body.set(payload, body.length - payload.length);
  return {
    outerMessage: encodeHandshake(1, body),
    outer: { ...outer, raw: body },
    inner: { ...inner, raw: encodeClientHello(inner) },
    innerKey,
    outerKey,
    hpke: ctx,
  };
}
