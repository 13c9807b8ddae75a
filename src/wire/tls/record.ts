/**
 * TLS record framing for the ClientHello peek (RFC 8446 §5.1).
 *
 * `ClientHelloAssembler` accepts bytes exactly as TCP delivers them (any split,
 * down to one byte at a time), walks the plaintext handshake records, and
 * yields the first complete handshake message once it is whole. It insists on
 * what a ClientHello flight must look like: handshake records only, record
 * fragments of 1..2^14 bytes, first message of type client_hello, and a total
 * size under the caller's cap. Anything else is a typed error that names the
 * alert to send.
 */
import { EchgateError } from '../../errors.js';
import { ContentType, HandshakeType, MAX_PLAINTEXT } from './constants.js';

export interface AssembledHello {
  /** The handshake message: 4-byte header + ClientHello body. */
  message: Uint8Array;
  /** How many bytes of the stream were consumed (whole records). */
  consumed: number;
  /** How many records carried it. */
  records: number;
  /** The record-layer legacy_version of the first record. */
  recordVersion: number;
}

/** Why the first bytes are not a TLS ClientHello (for metrics and logs). */
export type NotTlsReason = 'not_handshake' | 'sslv2_hello';

/** Classify the very first byte(s) of a connection without waiting for more. */
export function sniffTls(first: Uint8Array): 'tls' | NotTlsReason | 'need_more' {
  if (first.length === 0) return 'need_more';
  const b0 = first[0]!;
  if (b0 === ContentType.handshake) return 'tls';
  // SSL 2.0 compatible CLIENT-HELLO (RFC 6101 App. E / RFC 5246 App. E.2):
  // 2-byte header with the high bit set, then msg_type 1.
  if (b0 & 0x80) {
    if (first.length < 3) return 'need_more';
    if (first[2] === 1) return 'sslv2_hello';
  }
  return 'not_handshake';
}

export class ClientHelloAssembler {
  // One growable buffer: the first chunk is held without a copy (the common
  // case is a whole ClientHello in one read); later chunks append with
  // capacity doubling, so a 1-byte-at-a-time sender costs O(n), not O(n^2).
  private buf: Uint8Array = new Uint8Array(0);
  private len = 0;
  private owned = false;
  private readonly maxBytes: number;

  constructor(maxBytes: number) {
    this.maxBytes = maxBytes;
  }

  get buffered(): number {
    return this.len;
  }

  /** The raw bytes received so far (to replay to a backend). A view, not a copy. */
  bytes(): Uint8Array {
    return this.buf.subarray(0, this.len);
  }

  /**
   * Add bytes. Returns the assembled ClientHello once complete, or undefined
   * when more bytes are needed. Throws EchgateError when the stream cannot be
   * a ClientHello flight or exceeds the cap.
   */
  push(chunk: Uint8Array): AssembledHello | undefined {
    if (chunk.length === 0) return undefined;
    this.append(chunk);
    const r = parseHelloRecords(this.bytes(), this.maxBytes);
    if (r === undefined && this.len > this.maxBytes) {
      throw new EchgateError('ERR_PEEK_TOO_LARGE', `ClientHello exceeds ${this.maxBytes} bytes`, {
        alert: 'record_overflow',
      });
    }
    return r;
  }

  /** Buffer bytes without parsing them (for streams already known not to be TLS). */
  append(chunk: Uint8Array): void {
    if (this.len === 0) {
      this.buf = chunk;
      this.owned = false;
    } else {
      if (!this.owned || this.len + chunk.length > this.buf.length) {
        const next = new Uint8Array(Math.max(this.len + chunk.length, this.len * 2, 1024));
        next.set(this.buf.subarray(0, this.len));
        this.buf = next;
        this.owned = true;
      }
      this.buf.set(chunk, this.len);
    }
    this.len += chunk.length;
  }
}

/**
 * Parse as many whole records as `buf` holds. Returns undefined when the
 * ClientHello is not yet complete.
 */
export function parseHelloRecords(buf: Uint8Array, maxBytes = Number.MAX_SAFE_INTEGER): AssembledHello | undefined {
  let pos = 0;
  let records = 0;
  let recordVersion = 0;
  // Fast path: the whole message inside the first record (nearly every client).
  const fragments: Uint8Array[] = [];
  let hsLen = -1;
  let have = 0;
  while (pos + 5 <= buf.length) {
    const type = buf[pos]!;
    const version = (buf[pos + 1]! << 8) | buf[pos + 2]!;
    const len = (buf[pos + 3]! << 8) | buf[pos + 4]!;
    if (type !== ContentType.handshake) {
      if (records === 0 && pos === 0) {
        throw new EchgateError('ERR_NOT_TLS', `first record has content type ${type}, not handshake`);
      }
      throw new EchgateError('ERR_DECODE', `record of type ${type} inside the ClientHello flight`, {
        alert: 'unexpected_message',
      });
    }
    if (version >> 8 !== 3) {
      throw new EchgateError('ERR_NOT_TLS', `record version 0x${version.toString(16)} is not TLS`);
    }
    if (records === 0) recordVersion = version;
    if (len === 0) {
      // RFC 8446 §5.1: zero-length handshake fragments MUST NOT be sent.
      throw new EchgateError('ERR_DECODE', 'zero-length handshake record', { alert: 'unexpected_message' });
    }
    if (len > MAX_PLAINTEXT) {
      throw new EchgateError('ERR_DECODE', `record length ${len} exceeds 2^14`, { alert: 'record_overflow' });
    }
    const complete = pos + 5 + len <= buf.length;
    const frag = buf.subarray(pos + 5, Math.min(buf.length, pos + 5 + len));
    // Read the handshake header as soon as its 4 bytes exist, even in a
    // partial record, so an oversized or wrong message fails before we wait.
    if (hsLen < 0 && have + frag.length >= 4) {
      const head = have === 0 ? frag : Buffer.concat([...fragments, frag]);
      hsLen = checkHelloHeader(head, maxBytes);
    }
    if (!complete) break;
    pos += 5 + len;
    records++;
    fragments.push(frag);
    have += len;
    if (hsLen >= 0 && have >= hsLen + 4) {
      const all = fragments.length === 1 ? fragments[0]! : new Uint8Array(Buffer.concat(fragments));
      return { message: all.subarray(0, hsLen + 4), consumed: pos, records, recordVersion };
    }
  }
  // Check the header of an incomplete record too, so a bad length fails fast.
  if (pos + 5 <= buf.length) return undefined;
  if (pos < buf.length && buf[pos] !== ContentType.handshake) {
    if (pos === 0) throw new EchgateError('ERR_NOT_TLS', `first record has content type ${buf[0]}, not handshake`);
    throw new EchgateError('ERR_DECODE', 'non-handshake record inside the ClientHello flight', {
      alert: 'unexpected_message',
    });
  }
  return undefined;
}

function checkHelloHeader(head: Uint8Array, maxBytes: number): number {
  if (head[0] !== HandshakeType.client_hello) {
    throw new EchgateError('ERR_DECODE', `first handshake message is type ${head[0]}, not client_hello`, {
      alert: 'unexpected_message',
    });
  }
  const hsLen = (head[1]! << 16) | (head[2]! << 8) | head[3]!;
  if (hsLen + 4 > maxBytes) {
    throw new EchgateError('ERR_PEEK_TOO_LARGE', `ClientHello of ${hsLen} bytes exceeds cap ${maxBytes}`, {
      alert: 'record_overflow',
    });
  }
  return hsLen;
}

/** Frame a handshake message into plaintext records of at most `maxFragment` bytes. */
export function frameHandshake(message: Uint8Array, maxFragment = MAX_PLAINTEXT, recordVersion = 0x0301): Uint8Array {
  if (maxFragment < 1 || maxFragment > MAX_PLAINTEXT) {
    throw new EchgateError('ERR_ENCODE', `fragment size ${maxFragment} out of range`);
  }
  const n = Math.max(1, Math.ceil(message.length / maxFragment));
  const out = new Uint8Array(message.length + 5 * n);
  let o = 0;
  for (let i = 0; i < message.length; i += maxFragment) {
    const frag = message.subarray(i, Math.min(message.length, i + maxFragment));
    out[o] = ContentType.handshake;
    out[o + 1] = recordVersion >> 8;
    out[o + 2] = recordVersion & 0xff;
    out[o + 3] = frag.length >> 8;
    out[o + 4] = frag.length & 0xff;
    out.set(frag, o + 5);
    o += 5 + frag.length;
  }
  return out;
}
