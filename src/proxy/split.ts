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
import { EchgateError } from '../errors.js';
import { HandshakeBuffer } from '../tls13/handshake-buffer.js';
import { type ClientHello, decodeClientHelloMessage } from '../wire/tls/client-hello.js';
import { ContentType, HandshakeType, MAX_PLAINTEXT } from '../wire/tls/constants.js';
import { encodeHandshake } from '../wire/tls/handshake.js';
import { frameHandshake } from '../wire/tls/record.js';
import type { Classified } from './context.js';
import type { Handler, Conn } from './handler.js';
import { passthrough } from './passthrough.js';

/**
 * A ClientHelloInner as records, the way split mode hands it to the backend
 * server. The hello's `raw` (encoded once, lazily, by ech/server.ts) is copied
 * once, straight behind the record and handshake headers; only a hello larger
 * than one record takes the general framing path.
 */
export function innerHelloRecords(inner: ClientHello): Uint8Array {
  const body = inner.raw!;
  if (body.length + 4 > MAX_PLAINTEXT) return frameHandshake(encodeHandshake(HandshakeType.client_hello, body), MAX_PLAINTEXT, 0x0303);
  const n = body.length + 4;
  const out = new Uint8Array(5 + n);
  out[0] = ContentType.handshake;
  out[1] = 0x03;
  out[2] = 0x03;
  out[3] = n >> 8;
  out[4] = n & 0xff;
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
      const replay = concat(innerHelloRecords(cls.hello), rest);
      passthrough(replay, cls.decryptSecond ? new SplitClientStream(cls.decryptSecond, c.ctx.ep.maxClientHelloBytes) : undefined).start(c);
    },
  };
}

export class SplitClientStream {
  private buf: Uint8Array = new Uint8Array(0);
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
    this.buf = this.buf.length ? concat(this.buf, chunk) : chunk;
    const out: Uint8Array[] = [];
    while (this.buf.length >= 5) {
      const len = (this.buf[3]! << 8) | this.buf[4]!;
      if (len > MAX_PLAINTEXT + 256) throw new EchgateError('ERR_DECODE', `record of ${len} bytes`, { alert: 'record_overflow' });
      if (this.buf.length < 5 + len) break;
      const record = this.buf.subarray(0, 5 + len);
      this.buf = this.buf.subarray(5 + len);
      if (record[0] !== ContentType.handshake) {
        out.push(record);
        if (record[0] === ContentType.application_data) {
          this.through = true;
          if (this.buf.length) out.push(this.buf);
          this.buf = new Uint8Array(0);
          break;
        }
        continue;
      }
      for (const msg of this.hs.push(record.subarray(5))) out.push(innerHelloRecords(this.decryptSecond(decodeClientHelloMessage(msg))));
    }
    return out;
  }
}
