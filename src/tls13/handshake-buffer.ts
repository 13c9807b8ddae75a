/** Reassembles handshake messages from record contents (RFC 8446 §5.1: messages may span records). */
import { concat } from '../bytes/util.js';
import { EchgateError } from '../errors.js';

export class HandshakeBuffer {
  private buf: Uint8Array = new Uint8Array(0);

  /**
   * `max` caps one message (header included): a peer announcing a 16 MiB
   * message would otherwise make us buffer it, on every connection it opens.
   */
  constructor(private readonly max = 1 << 16) {}

  /** Add record content; returns every handshake message (header included) now complete. */
  push(content: Uint8Array): Uint8Array[] {
    this.buf = this.buf.length ? concat(this.buf, content) : content;
    const out: Uint8Array[] = [];
    while (this.buf.length >= 4) {
      const len = (this.buf[1]! << 16) | (this.buf[2]! << 8) | this.buf[3]!;
      if (4 + len > this.max) throw new EchgateError('ERR_LIMIT', `handshake message of ${len} bytes exceeds ${this.max}`, { alert: 'illegal_parameter' });
      if (this.buf.length < 4 + len) break;
      out.push(this.buf.subarray(0, 4 + len));
      this.buf = this.buf.subarray(4 + len);
    }
    return out;
  }

  get pending(): number {
    return this.buf.length;
  }
}
