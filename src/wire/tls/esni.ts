/**
 * The wire structures of the 2018 ESNI, draft-ietf-tls-esni-02 (experimental,
 * docs/esni.md): ESNIKeys (§4, published base64 in a `_esni` TXT record), the
 * ClientEncryptedSNI body of the `encrypted_server_name` extension (0xffce,
 * §5), the ServerEncryptedSNI answer in EncryptedExtensions, and the
 * plaintext ClientESNIInner (nonce + PaddedServerNameList, §5.1).
 *
 * Pure codecs: every decoder is total (hostile bytes → EchgateError with a
 * code and the alert), no crypto. The checksum and the record_digest need
 * SHA-256 and the suite's hash: ech/esni.ts computes them over `raw` /
 * `checksumInput()`.
 */
import { Reader } from '../../bytes/reader.js';
import { Writer } from '../../bytes/writer.js';
import { EchgateError } from '../../errors.js';
import { decodeServerName, encodeServerName } from './extensions.js';

/** ESNIKeys.version of draft-02 (§4: clients MUST ignore any other). */
export const ESNI_VERSION = 0xff01;
/** ClientESNIInner.nonce and ServerEncryptedSNI.nonce: 16 octets (§5). */
export const ESNI_NONCE_LENGTH = 16;

export interface EsniKeyShare {
  group: number;
  keyExchange: Uint8Array;
}

export interface EsniExtension {
  type: number;
  data: Uint8Array;
}

/** The fields of an ESNIKeys structure (§4). Times are seconds since 1970 (UTC, no leap seconds). */
export interface ESNIKeysContents {
  keys: EsniKeyShare[];
  cipherSuites: number[];
  paddedLength: number;
  notBefore: number;
  notAfter: number;
  extensions: EsniExtension[];
}

export interface ESNIKeys extends ESNIKeysContents {
  version: number;
  checksum: Uint8Array;
  /** The whole encoded structure, as received (the checksum and record_digest are computed over it). */
  raw: Uint8Array;
}

const esniErr = (msg: string) => new EchgateError('ERR_ESNI', msg, { alert: 'illegal_parameter' });

/** uint64 as a JS number; anything past 2^53 (a date hundreds of millions of years away) is refused rather than rounded. */
function u64(r: Reader, what: string): number {
  const hi = r.u32(what);
  const lo = r.u32(what);
  if (hi > 0x1fffff) throw esniErr(`${what} does not fit 53 bits`);
  return hi * 2 ** 32 + lo;
}

function writeU64(w: Writer, v: number): void {
  if (!Number.isSafeInteger(v) || v < 0) throw new EchgateError('ERR_ENCODE', `uint64 ${v} out of range`);
  w.u32(Math.floor(v / 2 ** 32)).u32(v % 2 ** 32);
}

function readKeyShare(r: Reader, what: string): EsniKeyShare {
  const group = r.u16(`${what} group`);
  // KeyShareEntry.key_exchange<1..2^16-1> (RFC 8446 §4.2.8)
  const keyExchange = r.vec16(`${what} key_exchange`, 1);
  return { group, keyExchange };
}

/**
 * Decode an ESNIKeys structure. A version other than 0xff01 is ERR_ESNI (a
 * client ignores that record, §4); the checksum is returned, not verified
 * here (no hashing in wire/).
 */
export function decodeESNIKeys(buf: Uint8Array): ESNIKeys {
  const r = new Reader(buf);
  const version = r.u16('ESNIKeys.version');
  if (version !== ESNI_VERSION) throw esniErr(`ESNIKeys version 0x${version.toString(16).padStart(4, '0')} is not 0xff01 (draft-02)`);
  const checksum = r.bytes(4, 'ESNIKeys.checksum');
  // keys<4..2^16-1>: at least one KeyShareEntry with a one-byte key.
  const keyList = r.sub16('ESNIKeys.keys');
  if (keyList.left < 4) throw new EchgateError('ERR_DECODE', 'ESNIKeys.keys shorter than 4 bytes', { alert: 'decode_error' });
  const keys: EsniKeyShare[] = [];
  while (!keyList.atEnd()) {
    const k = readKeyShare(keyList, 'ESNIKeys.keys');
    // §4: every key listed MUST belong to a different group.
    if (keys.some((x) => x.group === k.group)) throw new EchgateError('ERR_DUPLICATE', `ESNIKeys lists two keys for group ${k.group}`, { alert: 'illegal_parameter' });
    keys.push(k);
  }
  // cipher_suites<2..2^16-2>: whole 2-byte code points.
  const suites = r.sub16('ESNIKeys.cipher_suites');
  if (suites.left < 2 || suites.left % 2 !== 0) throw new EchgateError('ERR_DECODE', `ESNIKeys.cipher_suites of ${suites.left} bytes`, { alert: 'decode_error' });
  const cipherSuites: number[] = [];
  while (!suites.atEnd()) cipherSuites.push(suites.u16('cipher suite'));
  const paddedLength = r.u16('ESNIKeys.padded_length');
  const notBefore = u64(r, 'ESNIKeys.not_before');
  const notAfter = u64(r, 'ESNIKeys.not_after');
  const extList = r.sub16('ESNIKeys.extensions');
  const extensions: EsniExtension[] = [];
  while (!extList.atEnd()) {
    const type = extList.u16('extension type');
    if (extensions.some((e) => e.type === type)) throw new EchgateError('ERR_DUPLICATE', `ESNIKeys extension ${type} twice`, { alert: 'illegal_parameter' });
    extensions.push({ type, data: extList.vec16('extension data') });
  }
  r.expectEnd('ESNIKeys');
  return { version, checksum, keys, cipherSuites, paddedLength, notBefore, notAfter, extensions, raw: buf };
}

/** Encode ESNIKeys with the given checksum (default four zero bytes, the form the checksum is computed over). */
export function encodeESNIKeys(k: ESNIKeysContents, checksum: Uint8Array = new Uint8Array(4)): Uint8Array {
  if (checksum.length !== 4) throw new EchgateError('ERR_ENCODE', 'ESNIKeys checksum is 4 bytes');
  if (k.keys.length === 0 || k.cipherSuites.length === 0) throw new EchgateError('ERR_ENCODE', 'ESNIKeys needs a key and a cipher suite');
  const w = new Writer(128).u16(ESNI_VERSION).bytes(checksum);
  w.withLen16((x) => {
    for (const s of k.keys) x.u16(s.group).vec16(s.keyExchange);
  });
  w.withLen16((x) => {
    for (const s of k.cipherSuites) x.u16(s);
  });
  w.u16(k.paddedLength);
  writeU64(w, k.notBefore);
  writeU64(w, k.notAfter);
  w.withLen16((x) => {
    for (const e of k.extensions) x.u16(e.type).vec16(e.data);
  });
  const out = w.finish();
  // §4: the RDATA length is 16 bits, so the structure must fit 2^16-1 bytes.
  if (out.length > 0xffff) throw new EchgateError('ERR_ENCODE', 'ESNIKeys longer than 65535 bytes');
  return out;
}

/** The bytes the checksum is computed over: the structure with the checksum field zeroed (§4). A copy. */
export function checksumInput(raw: Uint8Array): Uint8Array {
  if (raw.length < 6) throw new EchgateError('ERR_DECODE', 'ESNIKeys shorter than its header', { alert: 'decode_error' });
  const copy = Uint8Array.from(raw);
  copy.fill(0, 2, 6);
  return copy;
}

/** ClientEncryptedSNI (§5), the body of the encrypted_server_name extension in a ClientHello. */
export interface ClientEncryptedSNI {
  suite: number;
  keyShare: EsniKeyShare;
  recordDigest: Uint8Array;
  encryptedSni: Uint8Array;
}

export function decodeClientEncryptedSNI(data: Uint8Array): ClientEncryptedSNI {
  const r = new Reader(data);
  const suite = r.u16('ClientEncryptedSNI.suite');
  const keyShare = readKeyShare(r, 'ClientEncryptedSNI.key_share');
  const recordDigest = r.vec16('ClientEncryptedSNI.record_digest');
  const encryptedSni = r.vec16('ClientEncryptedSNI.encrypted_sni');
  r.expectEnd('ClientEncryptedSNI');
  return { suite, keyShare, recordDigest, encryptedSni };
}

export function encodeClientEncryptedSNI(c: ClientEncryptedSNI): Uint8Array {
  return new Writer(64 + c.encryptedSni.length)
    .u16(c.suite)
    .u16(c.keyShare.group)
    .vec16(c.keyShare.keyExchange)
    .vec16(c.recordDigest)
    .vec16(c.encryptedSni)
    .finish();
}

/** ESNIContents (§5.1): hashed into the key and IV derivation. */
export function encodeESNIContents(recordDigest: Uint8Array, esniKeyShare: EsniKeyShare, clientHelloRandom: Uint8Array): Uint8Array {
  if (clientHelloRandom.length !== 32) throw new EchgateError('ERR_ENCODE', 'ClientHello.random is 32 bytes');
  return new Writer(96).vec16(recordDigest).u16(esniKeyShare.group).vec16(esniKeyShare.keyExchange).bytes(clientHelloRandom).finish();
}

/** ServerEncryptedSNI (§5): exactly the 16-byte nonce, in EncryptedExtensions. */
export function decodeServerEncryptedSNI(data: Uint8Array): Uint8Array {
  if (data.length !== ESNI_NONCE_LENGTH) throw new EchgateError('ERR_DECODE', `ServerEncryptedSNI of ${data.length} bytes, not 16`, { alert: 'decode_error' });
  return data;
}

export function encodeServerEncryptedSNI(nonce: Uint8Array): Uint8Array {
  if (nonce.length !== ESNI_NONCE_LENGTH) throw new EchgateError('ERR_ENCODE', 'the ESNI nonce is 16 bytes');
  return Uint8Array.from(nonce);
}

/**
 * ClientESNIInner (§5.1): nonce, then PaddedServerNameList = the
 * ServerNameList of a server_name extension padded with zeros to
 * `paddedLength`. A name whose list does not fit is refused (the client MUST
 * NOT use ESNI then).
 */
export function encodeClientESNIInner(nonce: Uint8Array, hostName: string, paddedLength: number): Uint8Array {
  if (nonce.length !== ESNI_NONCE_LENGTH) throw new EchgateError('ERR_ENCODE', 'the ESNI nonce is 16 bytes');
  const sni = encodeServerName(hostName);
  if (sni.length > paddedLength) throw new EchgateError('ERR_ESNI', `the ServerNameList for ${hostName} (${sni.length} bytes) is longer than padded_length ${paddedLength}`);
  const out = new Uint8Array(ESNI_NONCE_LENGTH + paddedLength);
  out.set(nonce);
  out.set(sni, ESNI_NONCE_LENGTH);
  return out;
}

/**
 * The decrypted ClientESNIInner. §5.2: a length other than 16 + padded_length,
 * or padding with any non-zero byte, is illegal_parameter; the ServerNameList
 * is decoded as a server_name extension body would be.
 */
export function decodeClientESNIInner(plain: Uint8Array, paddedLength: number): { nonce: Uint8Array; hostName: string | undefined } {
  if (plain.length !== ESNI_NONCE_LENGTH + paddedLength) throw esniErr(`ClientESNIInner of ${plain.length} bytes, not 16 + padded_length ${paddedLength}`);
  const nonce = plain.subarray(0, ESNI_NONCE_LENGTH);
  const r = new Reader(plain, ESNI_NONCE_LENGTH);
  const listLength = r.u16('ServerNameList length');
  const list = r.bytes(listLength, 'ServerNameList');
  const padding = r.rest();
  for (const b of padding) if (b !== 0) throw esniErr('PaddedServerNameList padding is not all zeros');
  const hostName = decodeServerName(plain.subarray(ESNI_NONCE_LENGTH, ESNI_NONCE_LENGTH + 2 + list.length));
  return { nonce, hostName };
}

/** The character-strings of TXT RDATA (RFC 1035 §3.3.14), as text: the `_esni` record's base64 pieces. */
export function decodeTxtStrings(rdata: Uint8Array): string[] {
  const r = new Reader(rdata);
  const out: string[] = [];
  while (!r.atEnd()) out.push(new TextDecoder().decode(r.vec8('TXT character-string')));
  return out;
}
