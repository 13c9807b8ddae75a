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

/** The first ClientHelloInner as records, the way split mode hands it to the backend server. */
export function innerHelloRecords(inner: ClientHello): Uint8Array {
  return frameHandshake(encodeHandshake(HandshakeType.client_hello, inner.raw!), MAX_PLAINTEXT, 0x0303);
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
