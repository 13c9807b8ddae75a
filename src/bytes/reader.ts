import { EchgateError } from '../errors.js';

/**
 * A bounds-checked cursor over a Uint8Array (the rustls `Reader` shape).
 * Every read either returns a value or throws ERR_DECODE; `sub(len)` hands out
 * a child Reader limited to the next `len` bytes, so a length-prefixed
 * structure can never read past its own prefix. `expectEnd()` turns
 * "bytes left over" into ERR_TRAILING, which is what makes decoders strict.
 */
export class Reader {
  readonly buf: Uint8Array;
  private pos: number;
  private readonly end: number;

  constructor(buf: Uint8Array, start = 0, end = buf.length) {
    this.buf = buf;
    this.pos = start;
    this.end = end;
  }

  get offset(): number {
    return this.pos;
  }

  get left(): number {
    return this.end - this.pos;
  }

  atEnd(): boolean {
    return this.pos >= this.end;
  }

  private need(n: number, what: string): void {
    if (n > this.end - this.pos) {
      throw new EchgateError('ERR_DECODE', `truncated ${what}: need ${n} bytes, have ${this.end - this.pos}`, {
        alert: 'decode_error',
      });
    }
  }

  u8(what = 'u8'): number {
    this.need(1, what);
    return this.buf[this.pos++]!;
  }

  u16(what = 'u16'): number {
    this.need(2, what);
    const v = (this.buf[this.pos]! << 8) | this.buf[this.pos + 1]!;
    this.pos += 2;
    return v;
  }

  u24(what = 'u24'): number {
    this.need(3, what);
    const v = (this.buf[this.pos]! << 16) | (this.buf[this.pos + 1]! << 8) | this.buf[this.pos + 2]!;
    this.pos += 3;
    return v;
  }

  u32(what = 'u32'): number {
    this.need(4, what);
    const v =
      ((this.buf[this.pos]! << 24) >>> 0) +
      ((this.buf[this.pos + 1]! << 16) | (this.buf[this.pos + 2]! << 8) | this.buf[this.pos + 3]!);
    this.pos += 4;
    return v;
  }

  /** A view (no copy) of the next n bytes. */
  bytes(n: number, what = 'bytes'): Uint8Array {
    this.need(n, what);
    const v = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return v;
  }

  rest(): Uint8Array {
    return this.bytes(this.left);
  }

  /** A child reader over the next n bytes; the parent skips past them. */
  sub(n: number, what = 'sub'): Reader {
    this.need(n, what);
    const r = new Reader(this.buf, this.pos, this.pos + n);
    this.pos += n;
    return r;
  }

  /** `opaque x<a..2^8-1>`: one length byte then the bytes. */
  vec8(what = 'vec8', min = 0): Uint8Array {
    const n = this.u8(what);
    if (n < min) throw new EchgateError('ERR_DECODE', `${what}: length ${n} below minimum ${min}`, { alert: 'decode_error' });
    return this.bytes(n, what);
  }

  vec16(what = 'vec16', min = 0): Uint8Array {
    const n = this.u16(what);
    if (n < min) throw new EchgateError('ERR_DECODE', `${what}: length ${n} below minimum ${min}`, { alert: 'decode_error' });
    return this.bytes(n, what);
  }

  vec24(what = 'vec24'): Uint8Array {
    return this.bytes(this.u24(what), what);
  }

  sub8(what = 'sub8'): Reader {
    return this.sub(this.u8(what), what);
  }

  sub16(what = 'sub16'): Reader {
    return this.sub(this.u16(what), what);
  }

  sub24(what = 'sub24'): Reader {
    return this.sub(this.u24(what), what);
  }

  expectEnd(what = 'structure'): void {
    if (this.pos !== this.end) {
      throw new EchgateError('ERR_TRAILING', `${this.end - this.pos} trailing bytes after ${what}`, {
        alert: 'decode_error',
      });
    }
  }
}
