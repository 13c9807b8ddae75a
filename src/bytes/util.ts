import { EchgateError } from '../errors.js';

/** Small byte helpers. Nothing here allocates more than its result. */

export function toHex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
}

export function fromHex(s: string): Uint8Array {
  const clean = s.replace(/\s+/g, '');
  if (clean.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(clean)) {
    throw new EchgateError('ERR_DECODE', 'invalid hex string');
  }
  return new Uint8Array(Buffer.from(clean, 'hex'));
}

export function concat(...parts: Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/**
 * A real copy as a plain Uint8Array. Never call slice without arguments on bytes that may be a
 * Buffer: Buffer#slice is a view, and writing into it changes the original.
 */
export function copy(b: Uint8Array): Uint8Array {
  return new Uint8Array(b);
}

export function equal(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Constant-time comparison for secrets (MACs, confirmation values). */
export function ctEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i]! ^ b[i]!;
  return d === 0;
}

/** Overwrite a secret buffer so it does not linger in memory after use. */
export function wipe(...bufs: (Uint8Array | undefined)[]): void {
  for (const b of bufs) b?.fill(0);
}

export function utf8(s: string): Uint8Array {
  return new TextEncoder().encode(s);
}

const dec = new TextDecoder('utf-8', { fatal: false });
export function fromUtf8(b: Uint8Array): string {
  return dec.decode(b);
}

export function i2osp(n: number, len: number): Uint8Array {
  const out = new Uint8Array(len);
  for (let i = len - 1; i >= 0 && n > 0; i--) {
    out[i] = n % 256;
    n = Math.floor(n / 256);
  }
  return out;
}
