/**
 * The client side of ECH (RFC 9849 §6.1): build ClientHelloInner, compress it
 * into EncodedClientHelloInner with ech_outer_extensions, pad it (§6.1.3),
 * HPKE-seal it to an ECHConfig, and wrap it in ClientHelloOuter. Both hellos
 * come from tls13/client-hello-builder.ts, the builder plain hellos use too.
 * `echOffer` hands this to tls13/client.ts (`echgate connect`) through its
 * EchOffer interface; tests call buildEchClientHello directly, with hooks
 * for the malformed hellos a server must refuse.
 */
import { concat, utf8 } from '../bytes/util.js';
import { type HpkeContext, setupSender } from '../crypto/hpke.js';
import type { CryptoProvider, X25519Private } from '../crypto/provider.js';
import { clientHello, type EchOffer, type HelloShare, helloExtensions } from '../tls13/client-hello-builder.js';
import type { ECHConfigContents } from '../wire/ech/config.js';
import { type ClientHello, encodeClientHello, type Extension } from '../wire/tls/client-hello.js';
import { ExtensionType, NamedGroup, ProtocolVersion } from '../wire/tls/constants.js';
import { encodeECHClientHello, encodeOuterExtensions } from '../wire/tls/extensions.js';
import { encodeHandshake } from '../wire/tls/handshake.js';

export interface EchHelloOptions {
  config: ECHConfigContents & { raw: Uint8Array };
  innerSni?: string;
  alpn?: string[];
  /** Outer extension types to compress with ech_outer_extensions (default: supported_groups, signature_algorithms; they are adjacent in the builder's order). */
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
  /** false: send an empty key_share list (the groups stay in supported_groups), so the server answers with HelloRetryRequest. */
  keyShare?: boolean;
  /** supported_groups, in preference order (default: X25519 only). */
  groups?: number[];
  /** The key shares to send (a `group` other than X25519 comes from tls13/groups.ts); default: fresh X25519 keys. */
  keys?: { inner: ShareKey; outer: ShareKey };
}

/** A key share's public part; without `group`, an X25519 key. */
export type ShareKey = X25519Private & { readonly group?: number };

export interface EchHello {
  /** The ClientHelloOuter handshake message (4-byte header + body). */
  outerMessage: Uint8Array;
  outer: ClientHello;
  inner: ClientHello;
  /** The key shares' private keys: the inner one is used if ECH is accepted, the outer one if not. */
  innerKey: X25519Private;
  outerKey: X25519Private;
  hpke: HpkeContext;
  /**
   * The second ClientHello after HelloRetryRequest (RFC 9849 §6.1.5): both
   * hellos with new X25519 key shares (and the server's cookie), the inner
   * re-encoded and sealed with the same HPKE context, `enc` empty.
   */
  retry(keys: { innerKey: ShareKey; outerKey: ShareKey; cookie?: Uint8Array }): Pick<EchHello, 'outerMessage' | 'outer' | 'inner'>;
}

export function buildEchClientHello(p: CryptoProvider, o: EchHelloOptions): EchHello {
  const suite = o.suite ?? o.config.cipherSuites[0]!;
  const sessionId = p.randomBytes(32);
  const innerKey = o.keys?.inner ?? p.x25519Generate();
  const outerKey = o.keys?.outer ?? p.x25519Generate();
  const offerShare = o.keyShare !== false;
  const groups = o.groups ?? [NamedGroup.x25519];
  const share = (k: ShareKey): HelloShare => ({ group: k.group ?? NamedGroup.x25519, publicKey: k.publicKey });
  // Both hellos come from tls13/'s one builder (same order, signature algorithms, suites); they differ in SNI and versions.
  const innerSpec = (k: ShareKey | undefined, cookie?: Uint8Array): Extension[] => [
    ...helloExtensions({ serverName: o.innerSni, versions: o.innerVersions ?? [ProtocolVersion.TLS13], groups, share: k && share(k), cookie, alpn: o.alpn }),
    ...(o.omitInnerEch ? [] : [{ type: ExtensionType.encrypted_client_hello, data: encodeECHClientHello({ type: 'inner' }) }]),
    ...(o.extraInnerExtensions ?? []),
  ];
  // §6.1.2: the outer hello names the public name and may offer TLS 1.2 (a rejecting server may be a TLS 1.2 one).
  const outerSpec = (k: ShareKey | undefined, cookie?: Uint8Array): Extension[] =>
    helloExtensions({ serverName: o.config.publicName, versions: [ProtocolVersion.TLS13, ProtocolVersion.TLS12], groups, share: k && share(k), cookie, alpn: o.alpn });
  const innerExts = innerSpec(offerShare ? innerKey : undefined);
  const { raw: _raw, ...inner } = clientHello(p, innerExts, { random: p.randomBytes(32), sessionId });
  const outerExts = outerSpec(offerShare ? outerKey : undefined);

  const compress = o.compress ?? [ExtensionType.supported_groups, ExtensionType.signature_algorithms];
  const outerRandom = p.randomBytes(32);
  const info = concat(utf8('tls ech'), Uint8Array.of(0), o.config.raw);
  const { enc, ctx } = setupSender(p, suite, o.config.publicKey, info);

  // One hello pair: compress, encode, pad (§5.1, §6.1.3) and seal (§6.1.1) under `ctx`.
  const assemble = (innerE: Extension[], outerE: Extension[], echEnc: Uint8Array) => {
    const outerFull = [...outerE];
    // A compressed extension must carry identical data inside and outside.
    for (const t of compress) {
      const i = innerE.find((e) => e.type === t);
      const j = outerFull.findIndex((e) => e.type === t);
      if (i && j >= 0) outerFull[j] = { type: t, data: i.data };
    }
    // EncodedClientHelloInner (§5.1): empty session id; the compressed run becomes one ech_outer_extensions.
    const encodedExts: Extension[] = [];
    const referenced = innerE.filter((e) => compress.includes(e.type)).map((e) => e.type);
    let placed = false;
    for (const e of innerE) {
      if (!compress.includes(e.type)) encodedExts.push(e);
      else if (!placed) {
        placed = true;
        encodedExts.push({ type: ExtensionType.ech_outer_extensions, data: encodeOuterExtensions(o.outerExtensionsList ?? referenced) });
      }
    }
    const innerHello: ClientHello = { ...inner, extensions: innerE };
    let encoded = encodeClientHello({ ...innerHello, sessionId: new Uint8Array(0), extensions: encodedExts });
    // §6.1.3 padding: hide the name length up to maximum_name_length, then round to 32.
    const nameLen = o.innerSni ? utf8(o.innerSni).length : 0;
    const L = o.innerSni ? Math.max(0, o.config.maximumNameLength - nameLen) : o.config.maximumNameLength + 9;
    const N = 31 - ((encoded.length + L - 1) % 32);
    encoded = concat(encoded, new Uint8Array(L + N));
    if (o.mutateEncoded) encoded = o.mutateEncoded(encoded);

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
    outerFull.push({ type: ExtensionType.encrypted_client_hello, data: encodeECHClientHello(placeholder) });
    const outer: ClientHello = { ...inner, random: outerRandom, extensions: outerFull };
    const body = encodeClientHello(outer);
    // The payload is the last bytes of the body (ECH is the last extension): the AAD is the body as it stands, zeros in place.
    const payload = ctx.seal(body, encoded);
    body.set(payload, body.length - payload.length);
    return {
      outerMessage: encodeHandshake(1, body),
      outer: { ...outer, raw: body },
      inner: { ...innerHello, raw: encodeClientHello(innerHello) },
    };
  };

  const first = assemble(innerExts, outerExts, o.enc ? o.enc(enc) : enc);
  return {
    ...first,
    innerKey,
    outerKey,
    hpke: ctx,
    retry(k) {
      // RFC 8446 §4.1.2: the second hello is the first with the new key share and the cookie (same random, session id).
      // §6.1.5: the same HPKE context (its sequence number gives a fresh nonce) and an empty enc.
      return assemble(innerSpec(k.innerKey, k.cookie), outerSpec(k.outerKey, k.cookie), new Uint8Array(0));
    },
  };
}

/**
 * ECH for tls13/client.ts (ClientOptions.ech): the offer of this config. The
 * client describes its inner hello (true SNI, ALPN, groups, key share); this
 * builds ClientHelloInner from it and seals it into ClientHelloOuter, and
 * later the second pair after HelloRetryRequest.
 */
export function echOffer(config: ECHConfigContents & { raw: Uint8Array }): EchOffer {
  return {
    publicName: config.publicName,
    start(p, inner, outerShare) {
      const keys = inner.share && outerShare ? { inner: inner.share, outer: outerShare } : undefined;
      return buildEchClientHello(p, { config, innerSni: inner.serverName, alpn: inner.alpn ? [...inner.alpn] : undefined, groups: [...inner.groups], keyShare: inner.share !== undefined, keys });
    },
  };
}
