/**
 * TLS 1.3 record protection (RFC 8446 §5.2–5.3): TLSInnerPlaintext
 * (content || type || zeros), per-record nonce = iv XOR sequence number,
 * AAD = the 5-byte record header.
 */
import { AEADS, sealRecord } from '../crypto/node.js';
import type { Aead } from '../crypto/provider.js';
import { EchgateError } from '../errors.js';
import { ContentType, MAX_PLAINTEXT } from '../wire/tls/constants.js';
import type { CipherSuite, TrafficKeys } from './key-schedule.js';

/** RFC 8446 §5.2: a ciphertext fragment is at most 2^14 + 256 bytes. */
export const MAX_CIPHERTEXT = MAX_PLAINTEXT + 256;

export class RecordCipher {
  /**
   * The sequence number as a plain number (no BigInt on the per-record path):
   * 2^53 records is out of reach of any connection, and past it we refuse to
   * go on, well before the 2^64 wrap RFC 8446 §5.3 forbids.
   */
  private seq = 0;
  private readonly aead: Aead;

  constructor(
    private readonly suite: CipherSuite,
    private readonly keys: TrafficKeys,
  ) {
    this.aead = AEADS[suite.aead];
  }

  /** §5.3: the 64-bit sequence number, left-padded to 12 bytes, XORed with the IV. */
  private nonce(): Uint8Array {
    const s = this.seq;
    if (s >= Number.MAX_SAFE_INTEGER) throw new EchgateError('ERR_ILLEGAL', 'record sequence number exhausted');
    this.seq = s + 1;
    const n = new Uint8Array(this.keys.iv);
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

  /** Protect one record of `type` (content ≤ 2^14 bytes). */
  seal(type: number, content: Uint8Array): Uint8Array {
    if (content.length > MAX_PLAINTEXT) throw new EchgateError('ERR_ENCODE', 'record content over 2^14 bytes');
    const len = content.length + 1 + this.aead.tagLen;
    const header = Uint8Array.of(ContentType.application_data, 0x03, 0x03, len >> 8, len & 0xff);
    return sealRecord(this.suite.aead, this.keys.key, this.nonce(), header, content, type);
  }

  /** Open one record (header + fragment). Returns the real content type and content. */
  open(header: Uint8Array, fragment: Uint8Array): { type: number; content: Uint8Array } {
    if (fragment.length > MAX_CIPHERTEXT) throw new EchgateError('ERR_DECODE', 'record overflow', { alert: 'record_overflow' });
    let inner: Uint8Array;
    try {
      inner = this.aead.open(this.keys.key, this.nonce(), header, fragment);
    } catch (e) {
      throw new EchgateError('ERR_AEAD_OPEN', 'bad record MAC', { alert: 'bad_record_mac', cause: e });
    }
    let i = inner.length - 1;
    while (i >= 0 && inner[i] === 0) i--;
    if (i < 0) throw new EchgateError('ERR_DECODE', 'record with no content type', { alert: 'unexpected_message' });
    if (i > MAX_PLAINTEXT) throw new EchgateError('ERR_DECODE', 'record plaintext over 2^14', { alert: 'record_overflow' });
    return { type: inner[i]!, content: inner.subarray(0, i) };
  }
}
