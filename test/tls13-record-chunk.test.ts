/**
 * RFC 8446 §5.1–5.4 on the bulk record path (tls13/record-crypto.ts):
 * sealAll lends the chunk's byte after each record's content to the cipher
 * for the inner content type and must give it back; the records are those
 * record-by-record sealing gives; and opening through openRecord keeps every
 * §5.2/§5.4 answer (bad tag, short fragment, padding, the 2^14 + 1 limit).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { concat } from '../src/bytes/util.js';
import { AEADS } from '../src/crypto/node.js';
import { isEchgateError } from '../src/errors.js';
import { CIPHER_SUITES } from '../src/tls13/key-schedule.js';
import { RecordCipher } from '../src/tls13/record-protection.js';
import { ContentType, MAX_PLAINTEXT } from '../src/wire/tls/constants.js';

const errAlert = (f: () => unknown): string | undefined => {
  try {
    f();
  } catch (e) {
    return isEchgateError(e) ? e.alert : `not an EchgateError: ${e}`;
  }
  return undefined;
};

describe('sealAll lends the chunk to the cipher and gives it back', () => {
  for (const suite of CIPHER_SUITES) {
    it(`${suite.aead}: the chunk is unchanged after sealing, the records are seal()'s per piece, for every type`, () => {
      const k = { key: new Uint8Array(randomBytes(suite.keyLen)), iv: new Uint8Array(randomBytes(12)) };
      for (const [shared, type] of [[false, ContentType.application_data], [true, ContentType.application_data], [false, ContentType.handshake]] as const) {
        const one = new RecordCipher(suite, { key: k.key.slice(), iv: k.iv.slice() });
        const all = new RecordCipher(suite, { key: k.key.slice(), iv: k.iv.slice() });
        const n = 3 * MAX_PLAINTEXT + 5;
        const data = shared ? new Uint8Array(new SharedArrayBuffer(n)) : new Uint8Array(n);
        data.set(randomBytes(n));
        const before = data.slice();
        const got = all.sealAll(type, data);
        assert.deepEqual(data.slice(), before, 'the chunk is as it was');
        const want: Uint8Array[] = [];
        for (let i = 0; i < n; i += MAX_PLAINTEXT) want.push(one.seal(type, before.subarray(i, i + MAX_PLAINTEXT)));
        assert.deepEqual(Buffer.from(got), Buffer.from(concat(...want)), `${shared ? 'SharedArrayBuffer' : 'ArrayBuffer'}, type ${type}`);
        // And each record opens to its piece with the right type (§5.2: the type travels inside).
        const reader = new RecordCipher(suite, { key: k.key.slice(), iv: k.iv.slice() });
        let at = 0;
        for (let i = 0; i < n; i += MAX_PLAINTEXT) {
          const len = (got[at + 3]! << 8) | got[at + 4]!;
          const o = reader.open(got.subarray(at, at + 5), got.subarray(at + 5, at + 5 + len));
          assert.equal(o.type, type);
          assert.deepEqual(o.content, before.subarray(i, i + MAX_PLAINTEXT));
          at += 5 + len;
        }
      }
    });
  }
});

describe('RFC 8446 §5.2, §5.4: RecordCipher.open through openRecord', () => {
  const suite = CIPHER_SUITES[0]!;
  const key = new Uint8Array(16);
  const iv = new Uint8Array(12);
  /** A record whose TLSInnerPlaintext is exactly `inner` (content || type || padding), sequence number 0. */
  const record = (inner: Uint8Array) => {
    const len = inner.length + 16;
    const header = Uint8Array.of(ContentType.application_data, 3, 3, len >> 8, len & 0xff);
    return { header, fragment: AEADS[suite.aead].seal(key, iv, header, inner) };
  };
  const open = (r: { header: Uint8Array; fragment: Uint8Array }) => new RecordCipher(suite, { key: key.slice(), iv: iv.slice() }).open(r.header, r.fragment);

  it('content, type and padding: the type is the last non-zero byte, the content is a plain Uint8Array', () => {
    const o = open(record(Uint8Array.of(1, 2, 0, 3, ContentType.application_data, 0, 0, 0)));
    assert.equal(o.type, ContentType.application_data);
    assert.deepEqual(o.content, Uint8Array.of(1, 2, 0, 3));
  });

  it('a flipped tag bit, or a fragment shorter than the tag: bad_record_mac', () => {
    const r = record(Uint8Array.of(1, ContentType.application_data));
    const bad = r.fragment.slice();
    bad[bad.length - 1]! ^= 1;
    assert.equal(errAlert(() => open({ header: r.header, fragment: bad })), 'bad_record_mac');
    assert.equal(errAlert(() => open({ header: r.header, fragment: r.fragment.subarray(0, 15) })), 'bad_record_mac');
  });

  it('all zeros: unexpected_message; over 2^14 + 1 bytes: record_overflow; an empty handshake record: unexpected_message', () => {
    assert.equal(errAlert(() => open(record(new Uint8Array(9)))), 'unexpected_message');
    assert.equal(errAlert(() => open(record(concat(new Uint8Array(MAX_PLAINTEXT), Uint8Array.of(ContentType.application_data, 0))))), 'record_overflow');
    assert.equal(errAlert(() => open(record(Uint8Array.of(ContentType.handshake, 0, 0)))), 'unexpected_message');
  });
});
