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

/**
 * A ClientHello whose fields are decoded on first use. Made only by
 * scanClientHelloMessage, which has already checked the whole structure the
 * way decodeClientHello does, so the decode here cannot fail. A passthrough
 * connection routes on the scan's view and never reads these fields: no
 * extension list, no views (docs/benchmarks.md, "Passthrough cost, seventh pass").
 */
class LazyClientHello implements ClientHello {
  private full: ClientHello | undefined;
  constructor(readonly raw: Uint8Array) {}
  private get d(): ClientHello {
    this.full ??= decodeClientHello(this.raw);
    return this.full;
  }
  get legacyVersion(): number {
    return this.d.legacyVersion;
  }
  get random(): Uint8Array {
    return this.d.random;
  }
  get sessionId(): Uint8Array {
    return this.d.sessionId;
  }
  get cipherSuites(): number[] {
    return this.d.cipherSuites;
  }
  get compressionMethods(): Uint8Array {
    return this.d.compressionMethods;
  }
  get extensions(): Extension[] {
    return this.d.extensions;
  }
}

/** Reader's error for a short read, word for word (bytes/reader.ts), so the scan fails as the decoder does. */
function truncated(what: string, n: number, have: number): EchgateError {
  return new EchgateError('ERR_DECODE', `truncated ${what}: need ${n} bytes, have ${have}`, { alert: 'decode_error' });
}

/** Extension types and where their data lie, reused by every scan (scans are synchronous). */
let scanTypes = new Uint16Array(64);
let scanAt = new Uint32Array(64);
let scanLen = new Uint16Array(64);

/**
 * The routing view of a whole ClientHello handshake message straight from its
 * bytes, and the hello itself decoded lazily. Accepts and refuses exactly what
 * `routingView(decodeClientHelloMessage(message))` does, with the same typed
 * error (test/client-hello-scan.test.ts runs both over the captures and
 * mutations of them): the structure of RFC 8446 §4.1.2 and the extension
 * rules of §4.2 (no duplicates) and §4.2.11 (pre_shared_key last) first, then
 * server_name, ALPN and encrypted_client_hello decoded in the order they come.
 * What it skips is building an Extension object and a view per extension.
 */
export function scanClientHelloMessage(input: Uint8Array): { hello: ClientHello; view: RoutingView } {
  // A socket's bytes come as a Buffer, and Buffer's subarray is node's JS (a `.buffer` read and a
  // FastBuffer construction) where a Uint8Array's is one builtin: the scan and everything it hands
  // on take views of one plain Uint8Array over the same memory (docs/benchmarks.md, "Passthrough
  // cost, ninth pass").
  const message = input.constructor === Uint8Array ? input : new Uint8Array(input.buffer, input.byteOffset, input.byteLength);
  // Handshake header (handshake.ts decodeHandshake).
  const m = message.length;
  if (m < 1) throw truncated('handshake type', 1, m);
  const type = message[0]!;
  if (m < 4) throw truncated('handshake body', 3, m - 1);
  const n = (message[1]! << 16) | (message[2]! << 8) | message[3]!;
  if (n > m - 4) throw truncated('handshake body', n, m - 4);
  if (m - 4 !== n) throw new EchgateError('ERR_TRAILING', `${m - 4 - n} trailing bytes after handshake message`, { alert: 'decode_error' });
  if (type !== HandshakeType.client_hello) {
    throw new EchgateError('ERR_DECODE', `handshake type ${type} is not client_hello`, { alert: 'unexpected_message' });
  }
  const body = message.subarray(4);
  const end = body.length;
  // The fixed part (decodeFrom), same checks in the same order.
  let p = 0;
  if (end - p < 2) throw truncated('legacy_version', 2, end - p);
  p += 2;
  if (end - p < 32) throw truncated('random', 32, end - p);
  p += 32;
  if (end - p < 1) throw truncated('legacy_session_id', 1, end - p);
  const sid = body[p++]!;
  if (end - p < sid) throw truncated('legacy_session_id', sid, end - p);
  p += sid;
  if (sid > 32) throw new EchgateError('ERR_DECODE', 'legacy_session_id longer than 32 bytes', { alert: 'decode_error' });
  if (end - p < 2) throw truncated('cipher_suites', 2, end - p);
  const csLen = (body[p]! << 8) | body[p + 1]!;
  p += 2;
  if (end - p < csLen) throw truncated('cipher_suites', csLen, end - p);
  p += csLen;
  if (csLen < 2 || csLen % 2 !== 0) throw new EchgateError('ERR_DECODE', `cipher_suites: bad length ${csLen}`, { alert: 'decode_error' });
  if (end - p < 1) throw truncated('legacy_compression_methods', 1, end - p);
  const cm = body[p++]!;
  if (cm < 1) throw new EchgateError('ERR_DECODE', `legacy_compression_methods: length ${cm} below minimum 1`, { alert: 'decode_error' });
  if (end - p < cm) throw truncated('legacy_compression_methods', cm, end - p);
  p += cm;
  let count = 0;
  // Extensions may be absent entirely in a pre-TLS 1.3 hello (RFC 5246 §7.4.1.2).
  if (p < end) {
    if (end - p < 2) throw truncated('extensions', 2, end - p);
    const extLen = (body[p]! << 8) | body[p + 1]!;
    p += 2;
    if (end - p < extLen) throw truncated('extensions', extLen, end - p);
    const extEnd = p + extLen;
    if (extEnd !== end) throw new EchgateError('ERR_TRAILING', `${end - extEnd} trailing bytes after ClientHello`, { alert: 'decode_error' });
    while (p < extEnd) {
      if (extEnd - p < 2) throw truncated('extension type', 2, extEnd - p);
      const t = (body[p]! << 8) | body[p + 1]!;
      p += 2;
      if (extEnd - p < 2) throw truncated('extension length', 2, extEnd - p);
      const len = (body[p]! << 8) | body[p + 1]!;
      p += 2;
      if (extEnd - p < len) throw truncated('extension data', len, extEnd - p);
      if (count === scanTypes.length) {
        const grow = count * 2;
        scanTypes = copyInto(new Uint16Array(grow), scanTypes);
        scanAt = copyInto(new Uint32Array(grow), scanAt);
        scanLen = copyInto(new Uint16Array(grow), scanLen);
      }
      scanTypes[count] = t;
      scanAt[count] = p;
      scanLen[count] = len;
      count++;
      p += len;
    }
    // RFC 8446 §4.2: no more than one extension of the same type.
    const dup = firstDuplicateIn(scanTypes, count);
    if (dup >= 0) throw new EchgateError('ERR_DUPLICATE', `duplicate extension ${dup}`, { alert: 'illegal_parameter' });
    // RFC 8446 §4.2.11: pre_shared_key MUST be the last extension.
    for (let i = 0; i < count - 1; i++) {
      if (scanTypes[i] === ExtensionType.pre_shared_key) {
        throw new EchgateError('ERR_ILLEGAL', 'pre_shared_key is not the last extension', { alert: 'illegal_parameter' });
      }
    }
  }
  // routingView, on views of just the extensions it reads.
  let sni: string | undefined;
  let alpn: string[] = [];
  let ech: ECHClientHello | undefined;
  let esni = false;
  for (let i = 0; i < count; i++) {
    switch (scanTypes[i]) {
      case ExtensionType.server_name:
        sni = decodeServerName(body.subarray(scanAt[i]!, scanAt[i]! + scanLen[i]!));
        break;
      case ExtensionType.application_layer_protocol_negotiation:
        alpn = decodeAlpn(body.subarray(scanAt[i]!, scanAt[i]! + scanLen[i]!));
        break;
      case ExtensionType.encrypted_client_hello:
        ech = decodeECHClientHello(body.subarray(scanAt[i]!, scanAt[i]! + scanLen[i]!));
        break;
      case ExtensionType.encrypted_server_name:
        esni = true;
        break;
    }
  }
  return { hello: new LazyClientHello(body), view: { sni, alpn, ech, esni } };
}

function copyInto<T extends Uint16Array | Uint32Array>(to: T, from: Uint16Array | Uint32Array): T {
  to.set(from);
  return to;
}

/** firstDuplicateType over the first `count` entries of a type array (the same bit table, left all zeros). */
function firstDuplicateIn(types: Uint16Array, count: number): number {
  let dup = -1;
  for (let i = 0; i < count; i++) {
    const type = types[i]!;
    const bit = 1 << (type & 31);
    if (seenTypes[type >>> 5]! & bit) {
      dup = type;
      break;
    }
    seenTypes[type >>> 5]! |= bit;
  }
  for (let i = 0; i < count; i++) seenTypes[types[i]! >>> 5] = 0;
  return dup;
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
