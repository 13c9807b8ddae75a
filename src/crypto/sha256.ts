/**
 * HMAC-SHA-256 (RFC 2104 over FIPS 180-4 SHA-256) in plain JS, for short
 * messages only: the HKDF calls of the HPKE and TLS 1.3 key schedules (keys
 * ≤ 64 bytes, messages of a few dozen bytes).
 *
 * Why not node:crypto's createHmac: each call makes a native `Hmac` object
 * (node's JS validation, an OpenSSL fetch of "SHA256" by name, a weak handle
 * the next scavenge has to visit). An ECH hello's HPKE open made five of them;
 * through `serve` they cost ≈ 17 µs plus their share of the weak-handle and
 * cache work the plain connection then pays (docs/benchmarks.md, "Route-only
 * cost, sixth pass" and "seventh pass"). Here a short HMAC is 4–6 compression
 * calls on preallocated typed arrays: no native object, one 32-byte output.
 * Long inputs stay on OpenSSL (its SHA-256 is ≈ 3× faster per block).
 *
 * No table is indexed by secret data and no branch depends on it: the
 * compression is additions, rotations and boolean operations only.
 */

// FIPS 180-4 §4.2.2: the first 32 bits of the fractional parts of the cube roots of the first 64 primes.
const K = Int32Array.of(
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74,
  0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d,
  0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e,
  0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5,
  0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
);
// FIPS 180-4 §5.3.3: the initial hash value.
const IV = Int32Array.of(0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19);

/** Longest message (all parts together) this module hashes; longer ones go to OpenSSL. */
export const JS_HMAC_MAX = 256;

// Scratch: every call is synchronous and finishes before another starts.
const W = new Int32Array(64);
const block = new Uint8Array(64);
const inner = new Int32Array(8);
const outer = new Int32Array(8);

/** FIPS 180-4 §6.2.2: one 64-byte block of `b` at `off` into the state `st`. */
function compress(st: Int32Array, b: Uint8Array, off: number): void {
  for (let i = 0; i < 16; i++) {
    const j = off + 4 * i;
    W[i] = (b[j]! << 24) | (b[j + 1]! << 16) | (b[j + 2]! << 8) | b[j + 3]!;
  }
  for (let i = 16; i < 64; i++) {
    const x = W[i - 15]!;
    const y = W[i - 2]!;
    const s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3);
    const s1 = ((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10);
    W[i] = (W[i - 16]! + s0 + W[i - 7]! + s1) | 0;
  }
  let a = st[0]!;
  let b1 = st[1]!;
  let c = st[2]!;
  let d = st[3]!;
  let e = st[4]!;
  let f = st[5]!;
  let g = st[6]!;
  let h = st[7]!;
  for (let i = 0; i < 64; i++) {
    const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
    const t1 = (h + S1 + ((e & f) ^ (~e & g)) + K[i]! + W[i]!) | 0;
    const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
    const t2 = (S0 + ((a & b1) ^ (a & c) ^ (b1 & c))) | 0;
    h = g;
    g = f;
    f = e;
    e = (d + t1) | 0;
    d = c;
    c = b1;
    b1 = a;
    a = (t1 + t2) | 0;
  }
  st[0] = (st[0]! + a) | 0;
  st[1] = (st[1]! + b1) | 0;
  st[2] = (st[2]! + c) | 0;
  st[3] = (st[3]! + d) | 0;
  st[4] = (st[4]! + e) | 0;
  st[5] = (st[5]! + f) | 0;
  st[6] = (st[6]! + g) | 0;
  st[7] = (st[7]! + h) | 0;
}

/** The state after one block of key ⊕ pad (RFC 2104 §2: the key zero-filled to 64 bytes). */
function padState(st: Int32Array, key: Uint8Array, pad: number): void {
  st.set(IV);
  for (let i = 0; i < 64; i++) block[i] = (i < key.length ? key[i]! : 0) ^ pad;
  compress(st, block, 0);
}

/**
 * The pad states of the all-zero key, computed once: HKDF-Extract with an
 * absent salt keys its HMAC with HashLen zeros (RFC 5869 §2.2) — HPKE's
 * eae_prk and the TLS 1.3 early secret — and so does the ECH accept
 * confirmation's HKDF-Extract(0, ClientHelloInner.random) (RFC 9849 §7.2).
 * A zero key of any length ≤ 64 pads to the same block. Saves two
 * compressions per such HMAC.
 */
const ZERO_INNER = new Int32Array(8);
const ZERO_OUTER = new Int32Array(8);
padState(ZERO_INNER, new Uint8Array(0), 0x36);
padState(ZERO_OUTER, new Uint8Array(0), 0x5c);

// The current key's pad states (scratch, like the rest). They would compute
// MACs under that key, so they are zeroed once its MACs are made.
const keyInner = new Int32Array(8);
const keyOuter = new Int32Array(8);
function forgetKey(): void {
  keyInner.fill(0);
  keyOuter.fill(0);
}

/** keyInner/keyOuter for `key` (≤ 64 bytes). */
function keyStates(key: Uint8Array): void {
  if (key.length > 64) throw new RangeError('hmacSha256: key longer than the block');
  // Every byte is read whatever the key: the branch below tells only whether the key is all zeros.
  let z = 0;
  for (let i = 0; i < key.length; i++) z |= key[i]!;
  if (z === 0) {
    keyInner.set(ZERO_INNER);
    keyOuter.set(ZERO_OUTER);
  } else {
    padState(keyInner, key, 0x36);
    padState(keyOuter, key, 0x5c);
  }
}

/**
 * FIPS 180-4 §5.1.1 padding and the last block(s): `fill` bytes of the
 * message are waiting in `block`, `total` bytes were hashed in all (the
 * 64-byte pad block included).
 */
function finish(st: Int32Array, fill: number, total: number): void {
  block[fill++] = 0x80;
  if (fill > 56) {
    block.fill(0, fill);
    compress(st, block, 0);
    fill = 0;
  }
  // Bytes 56–59 are the length's high word: zero, since messages here are short (< 2^29 bytes).
  block.fill(0, fill, 60);
  const bits = total * 8;
  block[60] = bits >>> 24;
  block[61] = bits >>> 16;
  block[62] = bits >>> 8;
  block[63] = bits;
  compress(st, block, 0);
}

function writeDigest(st: Int32Array, out: Uint8Array, at: number): void {
  for (let i = 0; i < 8; i++) {
    const v = st[i]!;
    out[at + 4 * i] = v >>> 24;
    out[at + 4 * i + 1] = v >>> 16;
    out[at + 4 * i + 2] = v >>> 8;
    out[at + 4 * i + 3] = v;
  }
}

/**
 * HMAC under the key whose pad states are in keyInner/keyOuter, of
 * parts[0] || parts[1] || ..., written as 32 bytes into `out` at `at`.
 */
function macInto(parts: readonly Uint8Array[], out: Uint8Array, at: number): void {
  // H((K ⊕ ipad) || text)
  inner.set(keyInner);
  let fill = 0;
  let len = 0;
  for (const p of parts) {
    len += p.length;
    if (len > JS_HMAC_MAX) throw new RangeError('hmacSha256: message longer than JS_HMAC_MAX');
    for (let i = 0; i < p.length; i++) {
      block[fill++] = p[i]!;
      if (fill === 64) {
        compress(inner, block, 0);
        fill = 0;
      }
    }
  }
  finish(inner, fill, 64 + len);
  // H((K ⊕ opad) || inner digest): the 32-byte digest and its padding fit one block.
  outer.set(keyOuter);
  writeDigest(inner, block, 0);
  finish(outer, 32, 64 + 32);
  writeDigest(outer, out, at);
}

/**
 * HMAC-SHA-256(key, parts[0] || parts[1] || ...) (RFC 2104 §2). The caller
 * keeps to key.length ≤ 64 and a total message length ≤ JS_HMAC_MAX; both are
 * checked, since a longer key would have to be hashed first.
 */
export function hmacSha256(key: Uint8Array, parts: readonly Uint8Array[]): Uint8Array {
  keyStates(key);
  const out = new Uint8Array(32);
  try {
    macInto(parts, out, 0);
  } finally {
    forgetKey();
  }
  return out;
}

/**
 * Two HMAC-SHA-256 under one key, HMAC(key, a) || HMAC(key, b) in one 64-byte
 * array: the key's two pad compressions are made once for both. HPKE's key
 * schedule expands `key` and `base_nonce` from the same `secret` (RFC 9180
 * §5.1). Same limits as hmacSha256, for each message.
 */
export function hmacSha256Pair(key: Uint8Array, a: readonly Uint8Array[], b: readonly Uint8Array[]): Uint8Array {
  keyStates(key);
  const out = new Uint8Array(64);
  try {
    macInto(a, out, 0);
    macInto(b, out, 32);
  } finally {
    forgetKey();
  }
  return out;
}
