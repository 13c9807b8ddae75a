/**
 * Passthrough: the backend completes the TLS handshake (or speaks whatever
 * non-TLS protocol a HostSNI(`*`) router carries). The peeked bytes are
 * replayed unchanged, then proxy/relay.ts moves bytes both ways. Split mode
 * (proxy/split.ts) is the same handler with a different replay and a rewrite
 * of the client's later records.
 */
import { alertFor, encodeAlertRecord } from '../wire/tls/alert.js';
import type { Conn, Handler } from './handler.js';
import type { Relay, RelayOptions } from './relay.js';

/** Maps client bytes to what the backend gets; throws an EchgateError carrying the client's alert. */
export interface Rewrite {
  push(chunk: Uint8Array): Uint8Array[];
}

/** Relay options of a passthrough: none (one shared object, not one per connection). */
const AS_IS: RelayOptions = Object.freeze({});

/**
 * A class, not an object literal with a `start` closure: one closure per
 * connection (the connect callback) where there were two (docs/benchmarks.md,
 * "Passthrough cost, ninth pass"). The callback stays a function because a
 * preamble protocol wraps Conn.connect around it (proxy/preamble.ts). The
 * handler holds the replay until the backend is connected, as the closures did.
 */
class Passthrough implements Handler {
  readonly relaysClientAsIs: boolean;
  constructor(
    private readonly replay: Uint8Array,
    private readonly rewrite: Rewrite | undefined,
  ) {
    this.relaysClientAsIs = rewrite === undefined;
  }

  start(c: Conn): void {
    c.connect(c.socket, AS_IS, (r) => this.connected(r, c));
  }

  private connected(r: Relay, c: Conn): void {
    if (this.replay.length > 0) r.toBackend1(this.replay);
    const rewrite = this.rewrite;
    if (!rewrite) return c.relayClient(r);
    r.readClient(
      c.guard((d: Buffer) => {
        let parts: Uint8Array[];
        try {
          parts = rewrite.push(d);
        } catch (e) {
          r.stop();
          const alert = alertFor(e);
          c.handshakeFailed('tls_handshake', c.socket.writable ? alert : undefined, e);
          if (c.socket.writable) c.socket.end(encodeAlertRecord(alert));
          r.backend.destroy();
          return;
        }
        r.toBackend(parts);
      }),
    );
  }
}

export function passthrough(replay: Uint8Array, rewrite?: Rewrite): Handler {
  return new Passthrough(replay, rewrite);
}
