/** The handshake transcript (RFC 8446 §4.4.1): a running hash that can be forked and restarted after HelloRetryRequest. */
import { concat } from '../bytes/util.js';
import type { CryptoProvider, HashName } from '../crypto/provider.js';
import { HandshakeType } from '../wire/tls/constants.js';

export class Transcript {
  private messages: Uint8Array[] = [];

  constructor(
    private readonly p: CryptoProvider,
    readonly hashName: HashName,
  ) {}

  add(message: Uint8Array): void {
    this.messages.push(message);
  }

  hash(): Uint8Array {
    return this.p.hash(this.hashName, concat(...this.messages));
  }

  fork(): Transcript {
    const t = new Transcript(this.p, this.hashName);
    t.messages = [...this.messages];
    return t;
  }

  /** The messages so far (to start another transcript from them). */
  snapshot(): Uint8Array[] {
    return [...this.messages];
  }

  /** After HelloRetryRequest: ClientHello1 is replaced by message_hash(Hash(ClientHello1)). */
  replaceWithMessageHash(): void {
    const h = this.hash();
    this.messages = [concat(Uint8Array.of(HandshakeType.message_hash, 0, 0, h.length), h)];
  }
}
