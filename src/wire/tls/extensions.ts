/**
 * Typed ClientHello extension bodies. Each is a decode/encode pair; decoders
 * are strict (lengths within the RFC's bounds, no trailing bytes) and throw
 * EchgateError with decode_error, or illegal_parameter where the RFC names it.
 */
import { Reader } from '../../bytes/reader.js';
import { Writer } from '../../bytes/writer.js';
import { EchgateError } from '../../errors.js';
import { ExtensionType } from './constants.js';

const decodeErr = (msg: string) => new EchgateError('ERR_DECODE', msg, { alert: 'decode_error' });
const illegal = (msg: string) => new EchgateError('ERR_ILLEGAL', msg, { alert: 'illegal_parameter' });

// ---- server_name (RFC 6066 §3) ----

/** Bytes `from`..`to` of `b` as a latin1 string in one step (no per-character string concatenation). */
function latin1(b: Uint8Array, from: number, to: number): string {
  return String.fromCharCode.apply(null, b.subarray(from, to) as unknown as number[]);
}

/** Reader's error for a short read, word for word (bytes/reader.ts): the index-based decoders below fail as a Reader would. */
const truncated = (what: string, n: number, have: number) => decodeErr(`truncated ${what}: need ${n} bytes, have ${have}`);
/** Reader.vec8/vec16's error for a length below the minimum, word for word. */
const belowMin = (what: string, n: number, min: number) => decodeErr(`${what}: length ${n} below minimum ${min}`);

/**
 * The `<2-byte length> list` that is the whole of an extension body (Reader
 * sub16 + expectEnd, same errors in the same order); returns the list's end.
 */
function list16(data: Uint8Array, what: string, ext: string): number {
  const l = data.length;
  if (l < 2) throw truncated(what, 2, l);
  const n = (data[0]! << 8) | data[1]!;
  if (n > l - 2) throw truncated(what, n, l - 2);
  if (n !== l - 2) throw new EchgateError('ERR_TRAILING', `${l - 2 - n} trailing bytes after ${ext}`, { alert: 'decode_error' });
  return l;
}

/**
 * The host_name from a server_name extension (RFC 6066 §3), lower-cased with
 * any trailing dot removed; undefined when the list names no host_name.
 * The list must be non-empty and hold at most one name per name_type, and a
 * HostName is printable ASCII: anything else is refused.
 *
 * Index-based, with a Reader's errors word for word: every connection decodes
 * one, and the two Readers and the name's view it made were ≈ 0.7 µs of a
 * passthrough connection (docs/benchmarks.md, "Passthrough cost, ninth pass").
 */
export function decodeServerName(data: Uint8Array): string | undefined {
  const end = list16(data, 'server_name_list', 'server_name extension');
  if (end === 2) throw decodeErr('empty server_name_list');
  let host: string | undefined;
  let seen = 0; // name_type 0..31 as bits; larger types (never seen in practice) in a list made on demand
  let others: number[] | undefined;
  let p = 2;
  while (p < end) {
    const nameType = data[p++]!;
    // HostName<1..2^16-1> (Reader.vec16('HostName', 1)).
    if (end - p < 2) throw truncated('HostName', 2, end - p);
    const n = (data[p]! << 8) | data[p + 1]!;
    p += 2;
    if (n < 1) throw belowMin('HostName', n, 1);
    if (end - p < n) throw truncated('HostName', n, end - p);
    const at = p;
    p += n;
    if (nameType < 32 ? seen & (1 << nameType) : others?.includes(nameType)) {
      throw illegal(`server_name_list has two names of type ${nameType}`);
    }
    if (nameType < 32) seen |= 1 << nameType;
    else if (others) others.push(nameType);
    else others = [nameType];
    if (nameType !== 0) continue;
    let upper = false;
    for (let i = at; i < p; i++) {
      const c = data[i]!;
      if (c <= 0x20 || c >= 0x7f) throw illegal('server_name has a byte outside printable ASCII');
      if (c >= 0x41 && c <= 0x5a) upper = true;
    }
    // A trailing dot is dropped (the name is printable ASCII, so n ≥ 1 bytes hold n characters).
    const last = data[p - 1] === 0x2e ? p - 1 : p;
    const s = latin1(data, at, last);
    host = upper ? s.toLowerCase() : s;
  }
  return host;
}

export function encodeServerName(host: string): Uint8Array {
  const name = new TextEncoder().encode(host);
  return new Writer().withLen16((w) => w.u8(0).vec16(name)).finish();
}

// ---- ALPN (RFC 7301 §3.1) ----

/** The protocol names of an ALPN extension (RFC 7301 §3.1), in order; index-based like decodeServerName, a Reader's errors. */
export function decodeAlpn(data: Uint8Array): string[] {
  const end = list16(data, 'protocol_name_list', 'ALPN extension');
  if (end - 2 < 2) throw decodeErr('ALPN protocol_name_list shorter than 2 bytes');
  const out: string[] = [];
  let p = 2;
  while (p < end) {
    // ProtocolName<1..2^8-1> (Reader.vec8('ProtocolName', 1)).
    const n = data[p++]!;
    if (n < 1) throw belowMin('ProtocolName', n, 1);
    if (end - p < n) throw truncated('ProtocolName', n, end - p);
    out.push(latin1(data, p, p + n));
    p += n;
  }
  return out;
}

export function encodeAlpn(protocols: string[]): Uint8Array {
  return new Writer()
    .withLen16((w) => {
      for (const p of protocols) w.vec8(Buffer.from(p, 'latin1'));
    })
    .finish();
}

// ---- lists of u16 (RFC 8446 §4.2.1, §4.2.3, §4.2.7; RFC 9849 §5.1) ----
// supported_groups and signature_algorithms carry a 2-byte length,
// supported_versions and ech_outer_extensions a 1-byte one; all hold ≥ 1 value.

function decodeU16s(data: Uint8Array, what: string, width: 1 | 2): number[] {
  const r = new Reader(data);
  const list = width === 1 ? r.sub8(what) : r.sub16(what);
  r.expectEnd(what);
  if (list.left < 2 || list.left % 2 !== 0) throw decodeErr(`${what}: bad length ${list.left}`);
  const out: number[] = [];
  while (!list.atEnd()) out.push(list.u16());
  return out;
}

function encodeU16s(values: number[], width: 1 | 2): Uint8Array {
  const body = (w: Writer) => {
    for (const v of values) w.u16(v);
  };
  const w = new Writer(2 + 2 * values.length);
  return (width === 1 ? w.withLen8(body) : w.withLen16(body)).finish();
}

export const decodeU16List = (data: Uint8Array, what: string) => decodeU16s(data, what, 2);
export const encodeU16List = (values: number[]) => encodeU16s(values, 2);
export const decodeSupportedVersions = (data: Uint8Array) => decodeU16s(data, 'supported_versions', 1);
export const encodeSupportedVersions = (versions: number[]) => encodeU16s(versions, 1);

// ---- key_share, ClientHello form (RFC 8446 §4.2.8) ----

export interface KeyShareEntry {
  group: number;
  keyExchange: Uint8Array;
}

export function decodeKeyShares(data: Uint8Array): KeyShareEntry[] {
  const r = new Reader(data);
  const list = r.sub16('client_shares');
  r.expectEnd('key_share');
  const out: KeyShareEntry[] = [];
  const seen = new Set<number>();
  while (!list.atEnd()) {
    const group = list.u16('group');
    const keyExchange = list.vec16('key_exchange', 1);
    // RFC 8446 §4.2.8: clients MUST NOT offer more than one share per group.
    if (seen.has(group)) throw illegal(`two key shares for group ${group}`);
    seen.add(group);
    out.push({ group, keyExchange });
  }
  return out;
}

export function encodeKeyShares(shares: KeyShareEntry[]): Uint8Array {
  return new Writer()
    .withLen16((w) => {
      for (const s of shares) w.u16(s.group).vec16(s.keyExchange);
    })
    .finish();
}

// ---- psk_key_exchange_modes (RFC 8446 §4.2.9) ----

export function decodePskModes(data: Uint8Array): number[] {
  const r = new Reader(data);
  const modes = r.vec8('ke_modes', 1);
  r.expectEnd('psk_key_exchange_modes');
  return [...modes];
}

export function encodePskModes(modes: number[]): Uint8Array {
  return new Writer().vec8(Uint8Array.from(modes)).finish();
}

// ---- pre_shared_key, ClientHello form (RFC 8446 §4.2.11) ----

export interface PskIdentity {
  identity: Uint8Array;
  obfuscatedTicketAge: number;
}

export interface OfferedPsks {
  identities: PskIdentity[];
  binders: Uint8Array[];
}

export function decodeOfferedPsks(data: Uint8Array): OfferedPsks {
  const r = new Reader(data);
  const ids = r.sub16('identities');
  if (ids.left < 7) throw decodeErr('pre_shared_key identities too short');
  const identities: PskIdentity[] = [];
  while (!ids.atEnd()) {
    identities.push({ identity: ids.vec16('identity', 1), obfuscatedTicketAge: ids.u32('ticket age') });
  }
  const bl = r.sub16('binders');
  if (bl.left < 33) throw decodeErr('pre_shared_key binders too short');
  const binders: Uint8Array[] = [];
  while (!bl.atEnd()) binders.push(bl.vec8('binder', 32));
  r.expectEnd('pre_shared_key');
  if (binders.length !== identities.length) throw illegal('pre_shared_key: binder count differs from identity count');
  return { identities, binders };
}

export function encodeOfferedPsks(p: OfferedPsks): Uint8Array {
  return new Writer()
    .withLen16((w) => {
      for (const id of p.identities) w.vec16(id.identity).u32(id.obfuscatedTicketAge);
    })
    .withLen16((w) => {
      for (const b of p.binders) w.vec8(b);
    })
    .finish();
}

// ---- encrypted_client_hello, ClientHello forms (RFC 9849 §5) ----

export const ECHClientHelloType = { outer: 0, inner: 1 } as const;

export type ECHClientHello =
  | { type: 'outer'; kdfId: number; aeadId: number; configId: number; enc: Uint8Array; payload: Uint8Array; payloadOffset: number }
  | { type: 'inner' };

/**
 * Decode the ECH extension body. `payloadOffset` is the payload's offset
 * inside `data`, so the ECH AAD can zero it in the original bytes.
 */
export function decodeECHClientHello(data: Uint8Array): ECHClientHello {
  // Index-based (every Chrome hello carries one, real or GREASE), a Reader's errors word for word.
  const l = data.length;
  if (l < 1) throw truncated('ECHClientHelloType', 1, 0);
  const t = data[0]!;
  if (t === ECHClientHelloType.inner) {
    if (l !== 1) throw new EchgateError('ERR_TRAILING', `${l - 1} trailing bytes after inner ECH extension`, { alert: 'decode_error' });
    return { type: 'inner' };
  }
  if (t !== ECHClientHelloType.outer) throw illegal(`unknown ECHClientHelloType ${t}`);
  if (l - 1 < 2) throw truncated('kdf_id', 2, l - 1);
  const kdfId = (data[1]! << 8) | data[2]!;
  if (l - 3 < 2) throw truncated('aead_id', 2, l - 3);
  const aeadId = (data[3]! << 8) | data[4]!;
  if (l - 5 < 1) throw truncated('config_id', 1, 0);
  const configId = data[5]!;
  if (l - 6 < 2) throw truncated('enc', 2, l - 6);
  const encLen = (data[6]! << 8) | data[7]!;
  if (l - 8 < encLen) throw truncated('enc', encLen, l - 8);
  const enc = data.subarray(8, 8 + encLen);
  let p = 8 + encLen;
  if (l - p < 2) throw truncated('payload length', 2, l - p);
  const plen = (data[p]! << 8) | data[p + 1]!;
  p += 2;
  if (plen === 0) throw decodeErr('empty ECH payload');
  const payloadOffset = p;
  if (l - p < plen) throw truncated('payload', plen, l - p);
  const payload = data.subarray(p, p + plen);
  p += plen;
  if (p !== l) throw new EchgateError('ERR_TRAILING', `${l - p} trailing bytes after outer ECH extension`, { alert: 'decode_error' });
  return { type: 'outer', kdfId, aeadId, configId, enc, payload, payloadOffset };
}

export function encodeECHClientHello(e: ECHClientHello): Uint8Array {
  if (e.type === 'inner') return new Uint8Array([ECHClientHelloType.inner]);
  return new Writer().u8(0).u16(e.kdfId).u16(e.aeadId).u8(e.configId).vec16(e.enc).vec16(e.payload).finish();
}

// ---- ech_outer_extensions (RFC 9849 §5.1) ----

export const decodeOuterExtensions = (data: Uint8Array) => decodeU16s(data, 'ech_outer_extensions', 1);
export const encodeOuterExtensions = (types: number[]) => encodeU16s(types, 1);

/** Decode any typed extension to a JSON-friendly value (for `inspect`). */
export function describeExtension(type: number, data: Uint8Array): unknown {
  switch (type) {
    case ExtensionType.server_name:
      return decodeServerName(data);
    case ExtensionType.application_layer_protocol_negotiation:
      return decodeAlpn(data);
    case ExtensionType.supported_versions:
      return decodeSupportedVersions(data);
    case ExtensionType.key_share:
      return decodeKeyShares(data).map((k) => ({ group: k.group, length: k.keyExchange.length }));
    case ExtensionType.signature_algorithms:
    case ExtensionType.signature_algorithms_cert:
    case ExtensionType.supported_groups:
      return decodeU16List(data, 'list');
    case ExtensionType.psk_key_exchange_modes:
      return decodePskModes(data);
    case ExtensionType.pre_shared_key: {
      const p = decodeOfferedPsks(data);
      return { identities: p.identities.length };
    }
    case ExtensionType.encrypted_client_hello: {
      const e = decodeECHClientHello(data);
      return e.type === 'inner'
        ? e
        : { type: 'outer', kdfId: e.kdfId, aeadId: e.aeadId, configId: e.configId, encLength: e.enc.length, payloadLength: e.payload.length };
    }
    case ExtensionType.ech_outer_extensions:
      return decodeOuterExtensions(data);
    default:
      return { length: data.length };
  }
}
