/**
 * Reassembles handshake messages from record contents (RFC 8446 §5.1:
 * messages may span records, and several may share one record). Fragments
 * are queued, not concatenated: a message is copied once, when complete.
 */
import { EchgateError } from '../errors.js';
import { ByteQueue } from '../wire/tls/byte-queue.js';

export class HandshakeBuffer {
  private readonly q = new ByteQueue();

  /**
   * `max` caps one message (header included): a peer announcing a 16 MiB
   * message would otherwise make us buffer it, on every connection it opens.
   */
  constructor(private readonly max = 1 << 16) {}

  /** Add record content; returns every handshake message (header included) now complete. */
  push(content: Uint8Array): Uint8Array[] {
    this.q.push(content);
    const out: Uint8Array[] = [];
    while (this.q.length >= 4) {
      const len = (this.q.at(1) << 16) | (this.q.at(2) << 8) | this.q.at(3);
      if (4 + len > this.max) throw new EchgateError('ERR_LIMIT', `handshake message of ${len} bytes exceeds ${this.max}`, { alert: 'illegal_parameter' });
      if (this.q.length < 4 + len) break;
      out.push(this.q.take(4 + len));
    }
    return out;
  }

  /** Bytes of an incomplete message held back (RFC 8446 §5.1: none may be pending when keys change). */
  get pending(): number {
    return this.q.length;
  }
}
