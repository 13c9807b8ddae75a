/** The handshake transcript (RFC 8446 §4.4.1): a running hash that can be forked and restarted after HelloRetryRequest. */
import { concat } from '../bytes/util.js';
import type { CryptoProvider, HashName } from '../crypto/provider.js';
import { HandshakeType } from '../wire/tls/constants.js';

export class Transcript {
  /**
   * The messages so far, back to back, with room to grow, and where each one
   * ends: hash() reads the bytes as they are, without concatenating the
   * messages again on every call (a server hashes its transcript five times).
   */
  private buf = new Uint8Array(0);
  private len = 0;
  private ends: number[] = [];

  constructor(
    private readonly p: CryptoProvider,
    readonly hashName: HashName,
  ) {}

  add(message: Uint8Array): void {
    if (this.len + message.length > this.buf.length) {
      const next = new Uint8Array(Math.max(this.buf.length * 2, this.len + message.length, 1024));
      next.set(this.buf.subarray(0, this.len));
      this.buf = next;
    }
    this.buf.set(message, this.len);
    this.len += message.length;
    this.ends.push(this.len);
  }

  hash(): Uint8Array {
    return this.p.hash(this.hashName, this.buf.subarray(0, this.len));
  }

  fork(): Transcript {
    const t = new Transcript(this.p, this.hashName);
    t.buf = this.buf.slice(0, Math.max(this.len, 1024));
    t.len = this.len;
    t.ends = [...this.ends];
    return t;
  }

  /** The messages so far (to start another transcript from them). */
  snapshot(): Uint8Array[] {
    return this.ends.map((end, i) => this.buf.slice(i === 0 ? 0 : this.ends[i - 1], end));
  }

  /** After HelloRetryRequest: ClientHello1 is replaced by message_hash(Hash(ClientHello1)). */
  replaceWithMessageHash(): void {
    const h = this.hash();
    this.len = 0;
    this.ends = [];
    this.add(concat(Uint8Array.of(HandshakeType.message_hash, 0, 0, h.length), h));
  }
}
