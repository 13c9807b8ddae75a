/**
 * The one ClientHello builder (RFC 8446 §4.1.2) for every hello echgate sends:
 * the plain hellos of tls13/client.ts and both hellos of an ECH offer
 * (ech/client.ts: ClientHelloInner and ClientHelloOuter, RFC 9849 §6.1). One
 * extension order, one signature-algorithm list and one cipher-suite list, so
 * an ECH hello and a plain one cannot drift apart.
 *
 * ECH reaches tls13/client.ts only through the `EchOffer` interface below,
 * which ech/client.ts implements: tls13/ does not import ech/ (ech/ sits above
 * tls13/, docs/architecture.md "Folders and who may import whom").
 */
import type { CryptoProvider } from '../crypto/provider.js';
import { type ClientHello, encodeClientHello, type Extension } from '../wire/tls/client-hello.js';
import { ExtensionType, ProtocolVersion } from '../wire/tls/constants.js';
import { encodeAlpn, encodeKeyShares, encodePskModes, encodeServerName, encodeSupportedVersions, encodeU16List } from '../wire/tls/extensions.js';
import { SigScheme } from './certs.js';

/** TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384, TLS_CHACHA20_POLY1305_SHA256 (RFC 8446 §B.4): the suites key-schedule.ts implements. */
export const CLIENT_CIPHER_SUITES: readonly number[] = [0x1301, 0x1302, 0x1303];

/**
 * signature_algorithms (RFC 8446 §4.2.3): exactly the schemes tls13/client.ts
 * can verify a CertificateVerify with. Offering one it cannot verify would let
 * a server pick it and fail the handshake after the fact.
 */
export const CLIENT_SIG_ALGS: readonly number[] = Object.values(SigScheme);

/** psk_dhe_ke (RFC 8446 §4.2.9): no PSK is ever offered; the extension is there as clients send it. */
const PSK_DHE_KE = 1;

/** A key share's public part: the group and its key_exchange bytes. */
export interface HelloShare {
  readonly group: number;
  readonly publicKey: Uint8Array;
}

/** What one hello says. */
export interface HelloSpec {
  /** server_name (RFC 6066 §3); absent = none. */
  serverName?: string;
  /** supported_versions (RFC 8446 §4.2.1); default TLS 1.3 only. */
  versions?: readonly number[];
  /** supported_groups (§4.2.7), in preference order. */
  groups: readonly number[];
  /** The one key share (§4.2.8); undefined = an empty list, so the server must answer with HelloRetryRequest. */
  share: HelloShare | undefined;
  /** The server's cookie, echoed in the second hello (§4.2.2). */
  cookie?: Uint8Array;
  /** application_layer_protocol_negotiation (RFC 7301). */
  alpn?: readonly string[];
  /** An empty early_data extension (§4.2.10), as a client attempting 0-RTT sends; never in a second hello. */
  earlyData?: boolean;
}

/**
 * The extensions of a hello, in echgate's one order. key_share,
 * supported_groups and signature_algorithms are adjacent (and the cookie
 * follows key_share), so ECH's default compression (RFC 9849 §5.1) of
 * supported_groups + signature_algorithms is one contiguous run.
 */
export function helloExtensions(s: HelloSpec): Extension[] {
  return [
    ...(s.serverName ? [{ type: ExtensionType.server_name, data: encodeServerName(s.serverName) }] : []),
    { type: ExtensionType.supported_versions, data: encodeSupportedVersions([...(s.versions ?? [ProtocolVersion.TLS13])]) },
    { type: ExtensionType.key_share, data: encodeKeyShares(s.share ? [{ group: s.share.group, keyExchange: s.share.publicKey }] : []) },
    ...(s.cookie ? [{ type: ExtensionType.cookie, data: s.cookie }] : []),
    { type: ExtensionType.supported_groups, data: encodeU16List([...s.groups]) },
    { type: ExtensionType.signature_algorithms, data: encodeU16List([...CLIENT_SIG_ALGS]) },
    { type: ExtensionType.psk_key_exchange_modes, data: encodePskModes([PSK_DHE_KE]) },
    ...(s.alpn ? [{ type: ExtensionType.application_layer_protocol_negotiation, data: encodeAlpn([...s.alpn]) }] : []),
    ...(s.earlyData ? [{ type: ExtensionType.early_data, data: new Uint8Array(0) }] : []),
  ];
}

/**
 * A ClientHello with these extensions: legacy_version TLS 1.2, a 32-byte
 * legacy_session_id (middlebox compatibility, RFC 8446 §D.4), null compression.
 * `random` and `sessionId` are fresh unless given (the second hello after
 * HelloRetryRequest repeats the first's, §4.1.2). `raw` is the encoded body.
 */
export function clientHello(p: CryptoProvider, extensions: Extension[], same?: { random: Uint8Array; sessionId: Uint8Array }): ClientHello {
  const ch: ClientHello = {
    legacyVersion: ProtocolVersion.TLS12,
    random: same?.random ?? p.randomBytes(32),
    sessionId: same?.sessionId ?? p.randomBytes(32),
    cipherSuites: [...CLIENT_CIPHER_SUITES],
    compressionMethods: Uint8Array.of(0),
    extensions,
  };
  return { ...ch, raw: encodeClientHello(ch) };
}

/** The hellos of one ECH flight: what is sent (the outer message) and both hellos the server may answer. */
export interface EchHellos {
  /** The ClientHelloOuter handshake message (4-byte header + body). */
  outerMessage: Uint8Array;
  outer: ClientHello;
  inner: ClientHello;
}

/** The first ECH flight, and how to make the second after HelloRetryRequest (RFC 9849 §6.1.5). */
export interface EchFlight extends EchHellos {
  retry(k: { innerKey: HelloShare; outerKey: HelloShare; cookie?: Uint8Array }): EchHellos;
}

/**
 * An ECH offer for TlsClient (ClientOptions.ech), built by ech/client.ts
 * (`echOffer(config)`). The client hands it the inner hello's spec; the offer
 * turns it into ClientHelloInner and wraps it in ClientHelloOuter. The accept
 * check stays in tls13/ (ech-confirm.ts, RFC 9849 §7.2), which the server uses too.
 */
export interface EchOffer {
  /** The config's public_name: the outer SNI, and the name a rejecting server authenticates as (RFC 9849 §6.1.7). */
  readonly publicName: string;
  start(p: CryptoProvider, inner: HelloSpec, outerShare: HelloShare | undefined): EchFlight;
}

/**
 * An ESNI offer (draft-ietf-tls-esni-02, experimental) for TlsClient
 * (ClientOptions.esni), built by ech/esni.ts (`esniOffer(record)`). The
 * encrypted_server_name extension depends on the hello's random and its
 * key_share extension (the AAD, §5.1), so the client asks for it once both
 * are fixed, and then checks the server's echo of `nonce` in EncryptedExtensions.
 */
export interface EsniOffer {
  /** ClientESNIInner.nonce: the server must echo it (§5.1). */
  readonly nonce: Uint8Array;
  /** A cleartext server_name to send beside ESNI (§5.1 allows an innocuous one); absent = none. */
  readonly coverName?: string;
  extension(hostName: string, clientRandom: Uint8Array, keyShareExtension: Uint8Array): Extension;
}
