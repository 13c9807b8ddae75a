/**
 * Split mode (RFC 9849 §3.1) after the first hello: the client's later
 * records go to the backend server unchanged, except a second ClientHello
 * (sent after the backend's HelloRetryRequest), which is a ClientHelloOuter
 * and must reach the backend as the second ClientHelloInner (§7.1.1). The
 * client's records are read only until its first application_data record:
 * from there the handshake is encrypted end to end and nothing more can be a
 * ClientHello, so the rest is relayed untouched.
 */
import { HandshakeBuffer } from '../tls13/handshake-buffer.js';
import { type ClientHello, decodeClientHelloMessage } from '../wire/tls/client-hello.js';
import { ContentType, HandshakeType, MAX_PLAINTEXT } from '../wire/tls/constants.js';
import { encodeHandshake } from '../wire/tls/handshake.js';
import { frameHandshake, RECORD_VERSION, RecordReader } from '../wire/tls/record.js';

/** The first ClientHelloInner as records, the way split mode hands it to the backend server. */
export function innerHelloRecords(inner: ClientHello): Uint8Array {
  return frameHandshake(encodeHandshake(HandshakeType.client_hello, inner.raw!), MAX_PLAINTEXT, RECORD_VERSION);
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
