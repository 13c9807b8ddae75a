import { EchgateError } from '../errors.js';

/**
 * A growable byte writer. Length prefixes are reserved first and filled in
 * after the body is written (`withLen16(() => ...)`), so an encoder never
 * computes a length by hand and can never get one wrong.
 */
export class Writer {
  private buf: Uint8Array;
  private pos = 0;

  constructor(initial = 256) {
    // Unzeroed (pooled for small sizes): only written bytes are ever returned.
    this.buf = Buffer.allocUnsafe(initial);
  }

  get length(): number {
    return this.pos;
  }

  private grow(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const next = Buffer.allocUnsafe(size);
    next.set(this.buf.subarray(0, this.pos));
    this.buf = next;
  }

  u8(v: number): this {
    check(v, 0xff, 'u8');
    this.grow(1);
    this.buf[this.pos++] = v;
    return this;
  }

  u16(v: number): this {
    check(v, 0xffff, 'u16');
    this.grow(2);
    this.buf[this.pos++] = v >>> 8;
    this.buf[this.pos++] = v & 0xff;
    return this;
  }

  u24(v: number): this {
    check(v, 0xffffff, 'u24');
    this.grow(3);
    this.buf[this.pos++] = v >>> 16;
    this.buf[this.pos++] = (v >>> 8) & 0xff;
    this.buf[this.pos++] = v & 0xff;
    return this;
  }

  u32(v: number): this {
    check(v, 0xffffffff, 'u32');
    this.grow(4);
    this.buf[this.pos++] = v >>> 24;
    this.buf[this.pos++] = (v >>> 16) & 0xff;
    this.buf[this.pos++] = (v >>> 8) & 0xff;
    this.buf[this.pos++] = v & 0xff;
    return this;
  }

  bytes(b: Uint8Array): this {
    this.grow(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
    return this;
  }

  zeros(n: number): this {
    this.grow(n);
    this.buf.fill(0, this.pos, this.pos + n);
    this.pos += n;
    return this;
  }

  private withLen(width: 1 | 2 | 3, body: (w: this) => void): this {
    const at = this.pos;
    this.grow(width);
    this.pos += width;
    body(this);
    const n = this.pos - at - width;
    check(n, width === 1 ? 0xff : width === 2 ? 0xffff : 0xffffff, `length prefix (${width} bytes)`);
    for (let i = width - 1, v = n; i >= 0; i--, v >>>= 8) this.buf[at + i] = v & 0xff;
    return this;
  }

  withLen8(body: (w: this) => void): this {
    return this.withLen(1, body);
  }

  withLen16(body: (w: this) => void): this {
    return this.withLen(2, body);
  }

  withLen24(body: (w: this) => void): this {
    return this.withLen(3, body);
  }

  vec8(b: Uint8Array): this {
    return this.withLen8((w) => w.bytes(b));
  }

  vec16(b: Uint8Array): this {
    return this.withLen16((w) => w.bytes(b));
  }

  vec24(b: Uint8Array): this {
    return this.withLen24((w) => w.bytes(b));
  }

  /**
   * The written bytes as a plain Uint8Array; the writer is empty afterwards.
   * A view (no copy) unless most of the buffer would be wasted.
   */
  finish(): Uint8Array {
    const view = new Uint8Array(this.buf.buffer, this.buf.byteOffset, this.pos);
    const out = this.pos * 2 >= this.buf.length ? view : view.slice();
    this.buf = new Uint8Array(0);
    this.pos = 0;
    return out;
  }
}

function check(v: number, max: number, what: string): void {
  if (!Number.isInteger(v) || v < 0 || v > max) {
    throw new EchgateError('ERR_ENCODE', `${what}: value ${v} out of range 0..${max}`);
  }
}
