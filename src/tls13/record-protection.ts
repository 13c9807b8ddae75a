/**
 * TLS 1.3 record protection (RFC 8446 §5.2–5.3; framing is wire/tls/record.ts): TLSInnerPlaintext
 * (content || type || zeros), per-record nonce = iv XOR sequence number,
 * AAD = the 5-byte record header.
 */
import { EchgateError } from '../errors.js';
import { ContentType, MAX_PLAINTEXT } from '../wire/tls/constants.js';
import { MAX_CIPHERTEXT } from '../wire/tls/record.js';
import type { CipherSuite, TrafficKeys } from './key-schedule.js';
import { type NonceSource, openRecord, sealChunk, sealRecord } from './record-crypto.js';

/** RFC 8446 §5.4: the whole TLSInnerPlaintext (content, type byte, padding) is at most 2^14 + 1 bytes. */
export const MAX_INNER_PLAINTEXT = MAX_PLAINTEXT + 1;

/** See RecordCipher.nonceAt. */
const NONCE = new Uint8Array(new ArrayBuffer(12));

export class RecordCipher implements NonceSource {
  /**
   * The sequence number as a plain number (no BigInt on the per-record path):
   * 2^53 records is out of reach of any connection, and past it we refuse to
   * go on, well before the 2^64 wrap RFC 8446 §5.3 forbids.
   */
  private seq = 0;

  constructor(
    private readonly suite: CipherSuite,
    private readonly keys: TrafficKeys,
  ) {}

  /** §5.3: the 64-bit sequence number, left-padded to 12 bytes, XORed with the IV. */
  private nonce(): Uint8Array {
    // Only a record that opened (or was sealed) moves the sequence number: see tryOpen.
    return this.nonceAt(this.seq);
  }

  /**
   * The nonce for record `s`, in a scratch buffer shared by every cipher of the
   * process: each caller hands it to node:crypto at once, which copies it into
   * the cipher context, and nothing runs in between. A new small array per
   * record was a malloc'd backing store per record, since node:crypto moves a
   * small array out of V8's heap to read it (docs/benchmarks.md, "Termination
   * handshake, eighth pass").
   */
  nonceAt(s: number): Uint8Array {
    if (s >= Number.MAX_SAFE_INTEGER) throw new EchgateError('ERR_ILLEGAL', 'record sequence number exhausted');
    const n = NONCE;
    n.set(this.keys.iv);
    if (s > 0) {
      const lo = s >>> 0;
      const hi = Math.floor(s / 0x100000000);
      n[4]! ^= hi >>> 24;
      n[5]! ^= (hi >>> 16) & 0xff;
      n[6]! ^= (hi >>> 8) & 0xff;
      n[7]! ^= hi & 0xff;
      n[8]! ^= lo >>> 24;
      n[9]! ^= (lo >>> 16) & 0xff;
      n[10]! ^= (lo >>> 8) & 0xff;
      n[11]! ^= lo & 0xff;
    }
    return n;
  }

  /** Zero the key and IV (this direction is done with them: a key change or the end of the connection). */
  wipe(): void {
    this.keys.key.fill(0);
    this.keys.iv.fill(0);
  }

  /** Protect one record of `type` (content ≤ 2^14 bytes). */
  seal(type: number, content: Uint8Array): Uint8Array {
    if (content.length > MAX_PLAINTEXT) throw new EchgateError('ERR_ENCODE', 'record content over 2^14 bytes');
    const out = sealRecord(this.suite.aead, this.keys.key, this.nonce(), content, type);
    this.seq++;
    return out;
  }

  /**
   * Protect `content` of any length as consecutive records of at most 2^14
   * bytes each (RFC 8446 §5.1), back to back in one buffer (one allocation,
   * one socket write). Empty content gives an empty buffer (no record).
   * `into`: a buffer to write the records into when it is large enough (see
   * sealChunk); the result is then a view of it. `content` is lent to the
   * cipher during the call (sealChunk): it must not be read elsewhere meanwhile.
   */
  sealAll(type: number, content: Uint8Array, into?: Uint8Array): Uint8Array {
    if (content.length === 0) return new Uint8Array(0);
    const first = this.seq;
    const n = Math.ceil(content.length / MAX_PLAINTEXT);
    if (first + n >= Number.MAX_SAFE_INTEGER) throw new EchgateError('ERR_ILLEGAL', 'record sequence number exhausted');
    const out = sealChunk(this.suite.aead, this.keys.key, this, first, content, type, into);
    this.seq = first + n;
    return out;
  }

  /**
   * Open one record (header + fragment) and check its inner plaintext.
   * Returns the real content type and content; bad_record_mac when it does not deprotect.
   */
  open(header: Uint8Array, fragment: Uint8Array): { type: number; content: Uint8Array } {
    const r = this.tryOpen(header, fragment);
    if (!r) throw new EchgateError('ERR_AEAD_OPEN', 'bad record MAC', { alert: 'bad_record_mac' });
    return r;
  }

  /**
   * Like open(), but a record that does not deprotect returns undefined and
   * leaves the sequence number where it was (RFC 8446 §4.2.10: a server that
   * rejects 0-RTT skips records that fail under the handshake key, and the
   * first one that opens is the client's record 0).
   */
  tryOpen(header: Uint8Array, fragment: Uint8Array): { type: number; content: Uint8Array } | undefined {
    if (fragment.length > MAX_CIPHERTEXT) throw new EchgateError('ERR_DECODE', 'record overflow', { alert: 'record_overflow' });
    const inner = openRecord(this.suite.aead, this.keys.key, this.nonce(), header, fragment);
    if (!inner) return undefined;
    this.seq++;
    // §5.4: content + type + padding ≤ 2^14 + 1, else record_overflow (§5.2).
    if (inner.length > MAX_INNER_PLAINTEXT) throw new EchgateError('ERR_DECODE', 'TLSInnerPlaintext over 2^14 + 1 bytes', { alert: 'record_overflow' });
    let i = inner.length - 1;
    while (i >= 0 && inner[i] === 0) i--;
    // §5.4: all zeros, no content type → unexpected_message.
    if (i < 0) throw new EchgateError('ERR_DECODE', 'record with no content type', { alert: 'unexpected_message' });
    const type = inner[i]!;
    // §5.4: "Implementations MUST NOT send Handshake and Alert records that have a zero-length
    // TLSInnerPlaintext.content; if such a message is received, the receiving implementation
    // MUST terminate the connection with an unexpected_message alert." Empty application data is fine.
    if (i === 0 && (type === ContentType.handshake || type === ContentType.alert)) {
      throw new EchgateError('ERR_ILLEGAL', `empty protected ${type === ContentType.alert ? 'alert' : 'handshake'} record`, { alert: 'unexpected_message' });
    }
    return { type, content: inner.subarray(0, i) };
  }
}
