/** The handshake transcript (RFC 8446 §4.4.1): a running hash that can be forked and restarted after HelloRetryRequest. */
import { concat } from '../bytes/util.js';
import type { CryptoProvider, HashName } from '../crypto/provider.js';
import { EchgateError } from '../errors.js';
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

  /**
   * The last hash(), until a message is added: a server needs Hash(ClientHello
   * .. server Finished) twice, for the application secrets (RFC 8446 §7.1) and
   * for the client's Finished (§4.4.4), and the client likewise. Callers only
   * read the result (as an HKDF context, a signed content, an HMAC message).
   */
  private last: Uint8Array | undefined;

  add(message: Uint8Array): void {
    this.reserve(message.length);
    this.buf.set(message, this.len);
    this.len += message.length;
    this.ends.push(this.len);
    this.last = undefined;
  }

  /**
   * A handshake message (§4: msg_type u8, length u24, body) from its type and
   * body, framed straight into the transcript: a ClientHello arrives decoded,
   * body only, and framing it first (encodeHandshake) copied it twice.
   */
  addMessage(type: number, body: Uint8Array): void {
    if (body.length > 0xffffff) throw new EchgateError('ERR_ENCODE', 'handshake body too long');
    this.reserve(4 + body.length);
    const b = this.buf;
    const at = this.len;
    b[at] = type;
    b[at + 1] = body.length >>> 16;
    b[at + 2] = (body.length >>> 8) & 0xff;
    b[at + 3] = body.length & 0xff;
    b.set(body, at + 4);
    this.len += 4 + body.length;
    this.ends.push(this.len);
    this.last = undefined;
  }

  hash(): Uint8Array {
    this.last ??= this.p.hash(this.hashName, this.buf.subarray(0, this.len));
    return this.last;
  }

  /**
   * Hash(messages so far ‖ `message` with its bytes [from, from + n) zeroed),
   * without adding it: the ECH accept confirmations (RFC 9849 §7.2, §7.2.1)
   * hash ServerHello or HelloRetryRequest with the confirmation's 8 bytes
   * zeroed, and the message is then added with the confirmation in place.
   * The zeroed copy goes in the spare room after the transcript (no fork, no
   * copy of the transcript); the next add() writes over it.
   */
  hashWithZeroed(message: Uint8Array, from: number, n: number): Uint8Array {
    this.reserve(message.length);
    this.buf.set(message, this.len);
    this.buf.fill(0, this.len + from, this.len + from + n);
    return this.p.hash(this.hashName, this.buf.subarray(0, this.len + message.length));
  }

  /** Room for `n` more bytes after the messages. */
  private reserve(n: number): void {
    if (this.len + n > this.buf.length) {
      const next = new Uint8Array(Math.max(this.buf.length * 2, this.len + n, 1024));
      next.set(this.buf.subarray(0, this.len));
      this.buf = next;
    }
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
    this.last = undefined;
    this.add(concat(Uint8Array.of(HandshakeType.message_hash, 0, 0, h.length), h));
  }
}
