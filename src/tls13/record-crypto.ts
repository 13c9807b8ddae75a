/**
 * The record AEAD (RFC 8446 §5.2) on node:crypto: one record (sealRecord, the
 * handshake's and alerts'), the bulk path's chunks (sealChunk) and opening
 * (openRecord), with as little of our own around each record as Node 20's
 * API allows: node:crypto
 * needs a new cipher object per record (a new nonce, §5.3, and no way to re-key
 * or re-IV one), and every update() returns a new buffer; that much is the
 * floor (docs/benchmarks.md, "Terminated bulk, ninth pass"). Around it, per
 * record, there is no closure, no options object, no typed-array view for a
 * full record's AAD, and no second update() for the inner content type where
 * the chunk has a byte to lend.
 */
import { createCipheriv, createDecipheriv } from 'node:crypto';
import type { AeadName } from '../crypto/provider.js';
import { EchgateError } from '../errors.js';
import { ContentType, MAX_PLAINTEXT } from '../wire/tls/constants.js';

/** createCipheriv's options for every record: one constant object. */
const TAG16 = { authTagLength: 16 } as const;
const TAG_LEN = 16;
/** Bytes a record adds to its content: header, inner type, tag. */
export const RECORD_OVERHEAD = 5 + 1 + TAG_LEN;
/** TLSCiphertext.length of a full record: 2^14 content + type + tag. */
const FULL_LEN = MAX_PLAINTEXT + 1 + TAG_LEN;
/** The header, which is the AAD (§5.2), of a full protected record: the same for every one. */
const FULL_AAD = Buffer.from([ContentType.application_data, 3, 3, FULL_LEN >>> 8, FULL_LEN & 0xff]);
/** One-byte buffers for the inner content type, one per type. */
const typeBytes: Buffer[] = [];
function typeByte(type: number): Buffer {
  let b = typeBytes[type];
  if (!b) {
    b = Buffer.from([type]);
    typeBytes[type] = b;
  }
  return b;
}

/**
 * One TLS 1.3 record in one buffer (RFC 8446 §5.2): the header (type
 * application_data, legacy_record_version 0x0303, length; also the AAD) ||
 * AEAD(content || type) || tag, the header written in place. The content is
 * read once by the cipher and the result copied once into the output; the
 * generic seal() would copy the content into a TLSInnerPlaintext first and
 * the ciphertext twice after (three extra copies of up to 16 KiB per record).
 */
export function sealRecord(name: AeadName, key: Uint8Array, nonce: Uint8Array, content: Uint8Array, type: number): Uint8Array {
  const len = content.length + 1 + 16;
  // Unpooled and not zeroed: every byte is written below (AES-GCM and ChaCha20-Poly1305 give as many bytes as they get).
  const buf = Buffer.allocUnsafeSlow(5 + len);
  buf[0] = 23;
  buf[1] = 3;
  buf[2] = 3;
  buf[3] = len >>> 8;
  buf[4] = len & 0xff;
  const c = createCipheriv(name as 'aes-128-gcm', key, nonce, TAG16);
  c.setAAD(buf.subarray(0, 5));
  let at = 5;
  const head = c.update(content);
  buf.set(head, at);
  at += head.length;
  const mid = c.update(typeByte(type));
  buf.set(mid, at);
  at += mid.length;
  const tail = c.final();
  if (tail.length) {
    buf.set(tail, at);
    at += tail.length;
  }
  if (at + TAG_LEN !== buf.length) throw new EchgateError('ERR_ENCODE', `${name}: ciphertext of unexpected length`);
  buf.set(c.getAuthTag(), at);
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.length);
}

/** Gives the nonce of record `first + i` (RFC 8446 §5.3): RecordCipher.nonceAt. */
export interface NonceSource {
  nonceAt(seq: number): Uint8Array;
}

/**
 * `content` as consecutive records of at most 2^14 bytes (RFC 8446 §5.1),
 * sequence numbers from `first`, back to back in one buffer: `into` when it is
 * large enough (the result is then a view of it), else a new one. Each record
 * is the header (also the AAD) || AEAD(content || type) || tag.
 *
 * Every record but the last takes its type byte from the chunk itself: the
 * byte after its content (the next record's first byte) is set to the type
 * for one update() and put back at once. One update() call per record instead
 * of two (each call is a native call and a new output buffer). The chunk is
 * the caller's (the relay's read buffer), changed only for the duration of
 * that synchronous call; an array shared with other threads is never lent.
 */
export function sealChunk(name: AeadName, key: Uint8Array, nonces: NonceSource, first: number, content: Uint8Array, type: number, into?: Uint8Array): Uint8Array {
  const n = Math.ceil(content.length / MAX_PLAINTEXT);
  const total = content.length + n * RECORD_OVERHEAD;
  // Not zeroed: every byte is written below (AES-GCM and ChaCha20-Poly1305 give as many bytes as they get).
  const buf = into && into.length >= total ? Buffer.from(into.buffer, into.byteOffset, total) : Buffer.allocUnsafeSlow(total);
  const lend = !(content.buffer instanceof SharedArrayBuffer);
  let at = 0;
  for (let i = 0, s = 0; i < n; i++, s += MAX_PLAINTEXT) {
    const e = Math.min(content.length, s + MAX_PLAINTEXT);
    const len = e - s + 1 + TAG_LEN;
    // RFC 8446 §5.2: opaque_type application_data, legacy_record_version 0x0303, length.
    buf[at] = ContentType.application_data;
    buf[at + 1] = 3;
    buf[at + 2] = 3;
    buf[at + 3] = len >>> 8;
    buf[at + 4] = len & 0xff;
    const c = createCipheriv(name as 'aes-128-gcm', key, nonces.nonceAt(first + i), TAG16);
    // The outer type is application_data whatever the inner one (§5.2), so a full record's header is always FULL_AAD.
    c.setAAD(len === FULL_LEN ? FULL_AAD : buf.subarray(at, at + 5));
    at += 5;
    if (e < content.length && lend) {
      const kept = content[e]!;
      content[e] = type;
      let head: Buffer;
      try {
        head = c.update(content.subarray(s, e + 1));
      } finally {
        content[e] = kept;
      }
      buf.set(head, at);
      at += head.length;
    } else {
      const head = c.update(content.subarray(s, e));
      buf.set(head, at);
      at += head.length;
      const mid = c.update(typeByte(type));
      buf.set(mid, at);
      at += mid.length;
    }
    const tail = c.final();
    if (tail.length) {
      buf.set(tail, at);
      at += tail.length;
    }
    if (at + TAG_LEN !== (i + 1) * RECORD_OVERHEAD + e) throw new EchgateError('ERR_ENCODE', `${name}: ciphertext of unexpected length`);
    buf.set(c.getAuthTag(), at);
    at += TAG_LEN;
  }
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.length);
}

/**
 * Open one record's fragment (ciphertext || tag) under `header` as AAD.
 * Returns the inner plaintext as a plain Uint8Array view of node:crypto's own
 * output (no copy; the engine hands out Uint8Arrays, not Buffers), or
 * undefined when the record does not authenticate.
 */
export function openRecord(name: AeadName, key: Uint8Array, nonce: Uint8Array, header: Uint8Array, fragment: Uint8Array): Uint8Array | undefined {
  const ct = fragment.length - TAG_LEN;
  if (ct < 0) return undefined;
  const d = createDecipheriv(name as 'aes-128-gcm', key, nonce, TAG16);
  d.setAAD(header);
  d.setAuthTag(fragment.subarray(ct));
  const x = d.update(fragment.subarray(0, ct));
  let tail: Buffer;
  try {
    tail = d.final();
  } catch {
    return undefined;
  }
  // AES-GCM and ChaCha20-Poly1305 give everything from update(); final() only checks the tag.
  if (tail.length) return new Uint8Array(Buffer.concat([x, tail]));
  return new Uint8Array(x.buffer, x.byteOffset, x.length);
}
