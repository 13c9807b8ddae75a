/**
 * TLS 1.3 record protection (RFC 8446 §5.2–5.3): TLSInnerPlaintext
 * (content || type || zeros), per-record nonce = iv XOR sequence number,
 * AAD = the 5-byte record header.
 */
import { AEADS } from '../crypto/node.js';
import type { Aead } from '../crypto/provider.js';
import { copy } from '../bytes/util.js';
import { EchgateError } from '../errors.js';
import { ContentType, MAX_PLAINTEXT } from '../wire/tls/constants.js';
import type { CipherSuite, TrafficKeys } from './key-schedule.js';

/** RFC 8446 §5.2: a ciphertext fragment is at most 2^14 + 256 bytes. */
export const MAX_CIPHERTEXT = MAX_PLAINTEXT + 256;

export class RecordCipher {
  private seq = 0n;
  private readonly aead: Aead;

  constructor(
    suite: CipherSuite,
    private readonly keys: TrafficKeys,
  ) {
    this.aead = AEADS[suite.aead];
  }

  private nonce(): Uint8Array {
    const n = copy(this.keys.iv);
    let s = this.seq;
    for (let i = 11; i >= 4 && s > 0n; i--, s >>= 8n) n[i]! ^= Number(s & 0xffn);
    if (this.seq >= 0xffffffffffffffffn) throw new EchgateError('ERR_ILLEGAL', 'record sequence number exhausted');
    this.seq++;
    return n;
  }

  /** Protect one record of `type` (content ≤ 2^14 bytes). */
  seal(type: number, content: Uint8Array): Uint8Array {
    if (content.length > MAX_PLAINTEXT) throw new EchgateError('ERR_ENCODE', 'record content over 2^14 bytes');
    const inner = new Uint8Array(content.length + 1);
    inner.set(content);
    inner[content.length] = type;
    const len = inner.length + this.aead.tagLen;
    const header = Uint8Array.of(ContentType.application_data, 0x03, 0x03, len >> 8, len & 0xff);
    const ct = this.aead.seal(this.keys.key, this.nonce(), header, inner);
    const out = new Uint8Array(5 + ct.length);
    out.set(header);
    out.set(ct, 5);
    return out;
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
