/**
 * Split mode (RFC 9849 §3.1) after the first hello: the client's later
 * records go to the backend server unchanged, except a second ClientHello
 * (sent after the backend's HelloRetryRequest), which is a ClientHelloOuter
 * and must reach the backend as the second ClientHelloInner (§7.1.1). The
 * client's records are read only until its first application_data record:
 * from there the handshake is encrypted end to end and nothing more can be a
 * ClientHello, so the rest is relayed untouched.
 */
import { concat } from '../bytes/util.js';
import { InnerHello } from '../ech/server.js';
import { HandshakeBuffer } from '../tls13/handshake-buffer.js';
import { type ClientHello, decodeClientHelloMessage } from '../wire/tls/client-hello.js';
import { alertFor, encodeAlertRecord } from '../wire/tls/alert.js';
import { ContentType, HandshakeType, MAX_PLAINTEXT } from '../wire/tls/constants.js';
import { encodeHandshake } from '../wire/tls/handshake.js';
import { frameHandshake, RECORD_VERSION, RecordReader, recordHeader } from '../wire/tls/record.js';
import type { Classified } from './context.js';
import type { Conn, Handler } from './handler.js';
import { passthrough } from './passthrough.js';

/**
 * A ClientHelloInner as records, the way split mode hands it to the backend
 * server. A hello rebuilt by ech/server.ts is encoded (once, lazily) behind
 * room for the record and handshake headers, so it goes out without a copy;
 * any other hello is copied once, straight behind the headers. Only a hello
 * larger than one record takes the general framing path.
 */
export function innerHelloRecords(inner: ClientHello): Uint8Array {
  if (inner instanceof InnerHello) {
    const r = inner.record(MAX_PLAINTEXT);
    if (r) return r;
  }
  const body = inner.raw!;
  if (body.length + 4 > MAX_PLAINTEXT) return frameHandshake(encodeHandshake(HandshakeType.client_hello, body), MAX_PLAINTEXT, RECORD_VERSION);
  const n = body.length + 4;
  const out = new Uint8Array(5 + n);
  out.set(recordHeader(ContentType.handshake, n));
  out[5] = HandshakeType.client_hello;
  out[6] = body.length >>> 16;
  out[7] = (body.length >>> 8) & 0xff;
  out[8] = body.length & 0xff;
  out.set(body, 9);
  return out;
}

/**
 * Split mode (RFC 9849 §3.1, §7.1) for an accepted ECH hello: the backend
 * server gets ClientHelloInner in place of the outer hello, then the client's
 * bytes unchanged but for a second hello after a HelloRetryRequest.
 */
export function splitHandler(cls: Classified, rest: Uint8Array): Handler {
  return {
    start(c: Conn) {
      const records = innerHelloRecords(cls.hello);
      const stream = cls.decryptSecond ? new LazySplitStream(cls.decryptSecond, c.ctx.ep.maxClientHelloBytes) : undefined;
      // Nearly always the client has sent nothing after its hello yet: no second copy then. Bytes it did send
      // (a change_cipher_spec, early data) go through the stream like any later read: TCP may have cut them
      // inside a record, and the stream's record reader must start at a record boundary (RFC 8446 §5.1).
      let replay = records;
      if (rest.length > 0) {
        let parts: Uint8Array[];
        try {
          parts = stream ? stream.push(rest) : [rest];
        } catch (e) {
          const alert = alertFor(e);
          return c.fail('tls_handshake', encodeAlertRecord(alert), alert);
        }
        replay = concat(records, ...parts);
      }
      passthrough(replay, stream).start(c);
    },
  };
}

/**
 * The SplitClientStream made on the client's first bytes after its hello,
 * not per connection: a client that sends nothing more before the backend
 * answers (every route-only connection of the bench, many real ones until
 * the server's flight) never needs its record and handshake buffers.
 */
class LazySplitStream {
  private s: SplitClientStream | undefined;
  constructor(
    private readonly decryptSecond: (outer: ClientHello) => ClientHello,
    private readonly maxHelloBytes: number,
  ) {}
  push(chunk: Uint8Array): Uint8Array[] {
    this.s ??= new SplitClientStream(this.decryptSecond, this.maxHelloBytes);
    return this.s.push(chunk);
  }
}

export class SplitClientStream {
  private readonly records = new RecordReader();
  private readonly hs: HandshakeBuffer;
  private through = false;

  constructor(
    private readonly decryptSecond: (outer: ClientHello) => ClientHello,
    maxHelloBytes: number,
  ) {
    this.hs = new HandshakeBuffer(maxHelloBytes);
  }

  /** Client bytes in; what to send the backend out. Throws an EchgateError carrying the alert for the client. */
  push(chunk: Uint8Array): Uint8Array[] {
    if (this.through) return [chunk];
    this.records.push(chunk);
    const out: Uint8Array[] = [];
    for (let record = this.records.next(); record; record = this.records.next()) {
      if (record.type !== ContentType.handshake) {
        out.push(record.bytes);
        if (record.type === ContentType.application_data) {
          this.through = true;
          if (this.records.buffered) out.push(this.records.rest());
          break;
        }
        continue;
      }
      for (const msg of this.hs.push(record.fragment)) out.push(innerHelloRecords(this.decryptSecond(decodeClientHelloMessage(msg))));
    }
    return out;
  }
}
