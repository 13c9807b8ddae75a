/**
 * ClientHello (RFC 8446 §4.1.2) decode/encode.
 *
 * The decoded form keeps the original body bytes and the offset of every
 * extension's data inside them: the transcript hash and the ECH AAD
 * (RFC 9849 §5.2) are computed from those bytes, never from a re-encoding.
 * Unknown and GREASE extensions are kept as they came, in order.
 */
import { Reader } from '../../bytes/reader.js';
import { EchgateError } from '../../errors.js';
import { ExtensionType, HandshakeType } from './constants.js';
import {
  decodeAlpn,
  decodeECHClientHello,
  decodeKeyShares,
  decodeServerName,
  decodeSupportedVersions,
  decodeU16List,
  type ECHClientHello,
} from './extensions.js';
import { decodeHandshake, encodeHandshake } from './handshake.js';

export interface Extension {
  type: number;
  data: Uint8Array;
  /** Offset of `data` inside ClientHello.raw (set by the decoder). */
  offset?: number;
}

export interface ClientHello {
  legacyVersion: number;
  random: Uint8Array;
  sessionId: Uint8Array;
  cipherSuites: number[];
  compressionMethods: Uint8Array;
  extensions: Extension[];
  /** The original body bytes (no handshake header), when decoded. */
  raw?: Uint8Array;
}

/** Decode a ClientHello body (the handshake message without its 4-byte header). */
export function decodeClientHello(body: Uint8Array): ClientHello {
  return decodeFrom(new Reader(body), false, body);
}

/**
 * Decode a ClientHello that is followed by other bytes (the padding of an
 * EncodedClientHelloInner, RFC 9849 §5.1). Extensions are required there.
 * Returns the hello and how many bytes it took.
 */
export function decodeClientHelloPrefix(buf: Uint8Array): { hello: ClientHello; length: number } {
  const r = new Reader(buf);
  const hello = decodeFrom(r, true, buf);
  hello.raw = buf.subarray(0, r.offset);
  return { hello, length: r.offset };
}

/**
 * One bit per extension type, shared by every decode: the duplicate check of
 * RFC 8446 §4.2 without a Set per hello. Decoding is synchronous, and the bits
 * a decode sets are cleared before it returns or throws.
 */
const seenTypes = new Uint32Array(65536 / 32);

/** The first extension type that occurs twice in `list`, or -1. */
export function firstDuplicateType(list: readonly { type: number }[]): number {
  let dup = -1;
  for (const { type } of list) {
    const bit = 1 << (type & 31);
    if (seenTypes[type >>> 5]! & bit) {
      dup = type;
      break;
    }
    seenTypes[type >>> 5]! |= bit;
  }
  // Zero every word this call may have touched: the table is all zeros between calls.
  for (const { type } of list) seenTypes[type >>> 5] = 0;
  return dup;
}

function decodeFrom(r: Reader, prefix: boolean, raw: Uint8Array): ClientHello {
  const legacyVersion = r.u16('legacy_version');
  const random = r.bytes(32, 'random');
  const sessionId = r.vec8('legacy_session_id');
  if (sessionId.length > 32) {
    throw new EchgateError('ERR_DECODE', 'legacy_session_id longer than 32 bytes', { alert: 'decode_error' });
  }
  const cs = r.sub16('cipher_suites');
  if (cs.left < 2 || cs.left % 2 !== 0) {
    throw new EchgateError('ERR_DECODE', `cipher_suites: bad length ${cs.left}`, { alert: 'decode_error' });
  }
  const cipherSuites: number[] = [];
  while (!cs.atEnd()) cipherSuites.push(cs.u16());
  const compressionMethods = r.vec8('legacy_compression_methods', 1);
  const extensions: Extension[] = [];
  // Extensions may be absent entirely in a pre-TLS 1.3 hello (RFC 5246 §7.4.1.2).
  if (prefix || !r.atEnd()) {
    const ext = r.sub16('extensions');
    if (!prefix) r.expectEnd('ClientHello');
    while (!ext.atEnd()) {
      const type = ext.u16('extension type');
      const len = ext.u16('extension length');
      const offset = ext.offset;
      extensions.push({ type, data: ext.bytes(len, 'extension data'), offset });
    }
    // RFC 8446 §4.2: no more than one extension of the same type.
    const dup = firstDuplicateType(extensions);
    if (dup >= 0) throw new EchgateError('ERR_DUPLICATE', `duplicate extension ${dup}`, { alert: 'illegal_parameter' });
    // RFC 8446 §4.2.11: pre_shared_key MUST be the last extension.
    for (let i = 0; i < extensions.length - 1; i++) {
      if (extensions[i]!.type === ExtensionType.pre_shared_key) {
        throw new EchgateError('ERR_ILLEGAL', 'pre_shared_key is not the last extension', { alert: 'illegal_parameter' });
      }
    }
  }
  return { legacyVersion, random, sessionId, cipherSuites, compressionMethods, extensions, raw };
}

/** Decode a whole handshake message (4-byte header + body) that must be a ClientHello. */
export function decodeClientHelloMessage(message: Uint8Array): ClientHello {
  const hs = decodeHandshake(message);
  if (hs.type !== HandshakeType.client_hello) {
    throw new EchgateError('ERR_DECODE', `handshake type ${hs.type} is not client_hello`, { alert: 'unexpected_message' });
  }
  return decodeClientHello(hs.body);
}

export function encodeClientHello(ch: ClientHello): Uint8Array {
  // One exact-size buffer and plain stores: re-encoding an inner hello is on the ECH path.
  const withExtensions = ch.extensions.length > 0 || ch.raw === undefined || ch.raw.length > headerLength(ch);
  let size = headerLength(ch) + (withExtensions ? 2 : 0);
  for (const e of ch.extensions) size += 4 + e.data.length;
  const out = new Uint8Array(size);
  let at = 0;
  const u16 = (v: number) => {
    if (!Number.isInteger(v) || v < 0 || v > 0xffff) throw new EchgateError('ERR_ENCODE', `u16 value ${v} out of range`);
    out[at++] = v >> 8;
    out[at++] = v & 0xff;
  };
  const bytes = (b: Uint8Array) => {
    out.set(b, at);
    at += b.length;
  };
  if (ch.sessionId.length > 32 || ch.compressionMethods.length > 255) throw new EchgateError('ERR_ENCODE', 'session id or compression methods too long');
  u16(ch.legacyVersion);
  if (ch.random.length !== 32) throw new EchgateError('ERR_ENCODE', 'random must be 32 bytes');
  bytes(ch.random);
  out[at++] = ch.sessionId.length;
  bytes(ch.sessionId);
  u16(2 * ch.cipherSuites.length);
  for (const c of ch.cipherSuites) u16(c);
  out[at++] = ch.compressionMethods.length;
  bytes(ch.compressionMethods);
  if (withExtensions) {
    u16(size - at - 2);
    for (const e of ch.extensions) {
      u16(e.type);
      u16(e.data.length);
      bytes(e.data);
    }
  }
  return out;
}

/** Bytes before the extensions block. */
function headerLength(ch: ClientHello): number {
  return 2 + 32 + 1 + ch.sessionId.length + 2 + 2 * ch.cipherSuites.length + 1 + ch.compressionMethods.length;
}

export function encodeClientHelloMessage(ch: ClientHello): Uint8Array {
  return encodeHandshake(HandshakeType.client_hello, encodeClientHello(ch));
}

export function findExtension(ch: ClientHello, type: number): Extension | undefined {
  for (const e of ch.extensions) if (e.type === type) return e;
  return undefined;
}

/**
 * What routing needs from a ClientHello, decoded strictly: SNI, ALPN and the
 * ECH extension. Nothing else is decoded on the proxy's hot path; a
 * passthrough backend validates the rest itself.
 */
export interface RoutingView {
  sni: string | undefined;
  alpn: string[];
  ech: ECHClientHello | undefined;
  /** true when the 2018 ESNI extension (0xffce) was offered. */
  esni: boolean;
}

export function routingView(ch: ClientHello): RoutingView {
  let sni: string | undefined;
  let alpn: string[] = [];
  let ech: ECHClientHello | undefined;
  let esni = false;
  for (const e of ch.extensions) {
    switch (e.type) {
      case ExtensionType.server_name:
        sni = decodeServerName(e.data);
        break;
      case ExtensionType.application_layer_protocol_negotiation:
        alpn = decodeAlpn(e.data);
        break;
      case ExtensionType.encrypted_client_hello:
        ech = decodeECHClientHello(e.data);
        break;
      case ExtensionType.encrypted_server_name:
        esni = true;
        break;
    }
  }
  return { sni, alpn, ech, esni };
}

/** The routing view plus versions and key-share groups (for `inspect` and tests). */
export interface HelloSummary extends RoutingView {
  versions: number[];
  keyShareGroups: number[];
}

export function summarize(ch: ClientHello): HelloSummary {
  let versions: number[] = [ch.legacyVersion];
  let keyShareGroups: number[] = [];
  for (const e of ch.extensions) {
    if (e.type === ExtensionType.supported_versions) versions = decodeSupportedVersions(e.data);
    else if (e.type === ExtensionType.key_share) keyShareGroups = decodeKeyShares(e.data).map((k) => k.group);
    else if (e.type === ExtensionType.supported_groups) decodeU16List(e.data, 'supported_groups');
  }
  return { ...routingView(ch), versions, keyShareGroups };
}
