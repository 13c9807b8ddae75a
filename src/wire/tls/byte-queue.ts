/**
 * A FIFO of byte chunks that hands out the next n bytes: a view into the
 * chunk when they lie in one (the common case), one copy of exactly those
 * bytes when they span chunks. Used for records (RFC 8446 §5.1) and for
 * handshake messages that span records, so that neither a 1-byte-per-read
 * sender nor a message split into many small records makes us copy what is
 * already buffered again: each byte is copied at most once.
 */
export class ByteQueue {
  private parts: Uint8Array[] = [];
  /** Index of the first live chunk in `parts`. */
  private head = 0;
  /** Bytes of parts[head] already taken. */
  private off = 0;
  private n = 0;

  get length(): number {
    return this.n;
  }

  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    this.parts.push(chunk);
    this.n += chunk.length;
  }

  /** The byte at position i (i < length). */
  at(i: number): number {
    let k = this.off + i;
    for (let j = this.head; j < this.parts.length; j++) {
      const p = this.parts[j]!;
      if (k < p.length) return p[k]!;
      k -= p.length;
    }
    throw new RangeError('ByteQueue.at past the end');
  }

  /**
   * Remove and return the next `len` bytes (len ≤ length). When they span
   * chunks they are copied once: into `scratch` when it is given and large
   * enough (the result is then a view of it, valid until the caller's next
   * use of that scratch), else into a new array.
   */
  take(len: number, scratch?: Uint8Array): Uint8Array {
    if (len > this.n) throw new RangeError('ByteQueue.take past the end');
    const first = this.parts[this.head];
    if (len === 0 || !first) return new Uint8Array(0);
    if (first.length - this.off >= len) {
      const v = first.subarray(this.off, this.off + len);
      this.advance(len);
      return v;
    }
    const out = scratch && scratch.length >= len ? scratch.subarray(0, len) : new Uint8Array(len);
    for (let o = 0; o < len; ) {
      const p = this.parts[this.head]!;
      const k = Math.min(p.length - this.off, len - o);
      out.set(p.subarray(this.off, this.off + k), o);
      o += k;
      this.advance(k);
    }
    return out;
  }

  private advance(k: number): void {
    this.off += k;
    this.n -= k;
    if (this.off === this.parts[this.head]!.length) {
      this.parts[this.head] = EMPTY;
      this.head++;
      this.off = 0;
      // Drop taken chunks now and then, not on every take (shifting the array each time would be quadratic).
      if (this.head === this.parts.length) {
        this.parts = [];
        this.head = 0;
      } else if (this.head >= 64 && this.head * 2 >= this.parts.length) {
        this.parts = this.parts.slice(this.head);
        this.head = 0;
      }
    }
  }
}

const EMPTY = new Uint8Array(0);
