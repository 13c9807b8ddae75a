/**
 * HKDF (RFC 5869) over the provider's HMAC. Two HMAC calls per short expand
 * are cheaper than node's hkdfSync here (157 k/s vs 60 k/s, see benchmarks).
 */
import { EchgateError } from '../errors.js';
import { type CryptoProvider, HASH_SIZE, type HashName } from './provider.js';

const ZERO_SALT: Record<HashName, Uint8Array> = { sha256: new Uint8Array(32), sha384: new Uint8Array(48), sha512: new Uint8Array(64) };

export function hkdfExtract(p: CryptoProvider, hash: HashName, salt: Uint8Array, ikm: Uint8Array): Uint8Array {
  // RFC 5869 §2.2: an absent salt is HashLen zeros.
  return p.hmac(hash, salt.length === 0 ? ZERO_SALT[hash] : salt, ikm);
}

export function hkdfExpand(p: CryptoProvider, hash: HashName, prk: Uint8Array, info: Uint8Array, length: number): Uint8Array {
  const hl = HASH_SIZE[hash];
  if (length > 255 * hl) throw new EchgateError('ERR_CRYPTO_ARG', `HKDF-Expand length ${length} exceeds 255*HashLen`);
  const out = new Uint8Array(length);
  let t: Uint8Array = new Uint8Array(0);
  const buf = new Uint8Array(hl + info.length + 1);
  for (let i = 1, at = 0; at < length; i++) {
    buf.set(t, 0);
    buf.set(info, t.length);
    buf[t.length + info.length] = i;
    t = p.hmac(hash, prk, buf.subarray(0, t.length + info.length + 1));
    out.set(t.subarray(0, Math.min(hl, length - at)), at);
    at += hl;
  }
  return out;
}
