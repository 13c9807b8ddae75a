/**
 * The one TLS record codec (wire/tls/record.ts, RFC 8446 §5.1): framers for
 * plaintext, alert and change_cipher_spec records, the stream deframer, and
 * split mode's use of it.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { concat } from '../src/bytes/util.js';
import { EchgateError } from '../src/errors.js';
import { SplitClientStream } from '../src/proxy/split.js';
import { encodeAlertRecord } from '../src/wire/tls/alert.js';
import { ContentType, MAX_PLAINTEXT } from '../src/wire/tls/constants.js';
import { alertRecord, changeCipherSpecRecord, frameHandshake, plaintextRecords, RecordReader, recordHeader } from '../src/wire/tls/record.js';

describe('RFC 8446 §5.1 record framing', () => {
  it('a body over 2^14 bytes becomes records of at most 2^14, legacy_record_version 0x0303', () => {
    const body = new Uint8Array(MAX_PLAINTEXT * 2 + 3).map((_, i) => i & 0xff);
    const recs = plaintextRecords(ContentType.handshake, body);
    assert.deepEqual(
      recs.map((r) => r.length - 5),
      [MAX_PLAINTEXT, MAX_PLAINTEXT, 3],
    );
    for (const r of recs) assert.deepEqual([...r.subarray(0, 3)], [22, 3, 3]);
    assert.deepEqual(concat(...recs.map((r) => r.subarray(5))), body);
    assert.deepEqual(concat(...recs), frameHandshake(body, MAX_PLAINTEXT, 0x0303));
  });

  it('a fragment size outside 1..2^14 is refused', () => {
    assert.throws(() => plaintextRecords(ContentType.handshake, new Uint8Array(4), 0), (e: unknown) => e instanceof EchgateError && e.code === 'ERR_ENCODE');
    assert.throws(() => plaintextRecords(ContentType.handshake, new Uint8Array(4), MAX_PLAINTEXT + 1), (e: unknown) => e instanceof EchgateError && e.code === 'ERR_ENCODE');
  });

  it('§6 alert records and the Appendix D.4 change_cipher_spec record', () => {
    assert.deepEqual([...alertRecord(Uint8Array.of(2, 40))], [21, 3, 3, 0, 2, 2, 40]);
    assert.deepEqual([...encodeAlertRecord('handshake_failure')], [21, 3, 3, 0, 2, 2, 40]);
    assert.deepEqual([...changeCipherSpecRecord()], [20, 3, 3, 0, 1, 1]);
    assert.deepEqual([...recordHeader(23, 0x1234)], [23, 3, 3, 0x12, 0x34]);
  });

  it('the deframer: records across reads, rest() hands back what is not a whole record, §5.2 overflow is record_overflow', () => {
    const r = new RecordReader();
    const a = Uint8Array.of(23, 3, 3, 0, 2, 7, 8);
    r.push(concat(a, Uint8Array.of(23, 3)));
    assert.deepEqual(r.next()!.bytes, a);
    assert.equal(r.next(), undefined);
    assert.deepEqual([...r.rest()], [23, 3]);
    assert.equal(r.buffered, 0);
    r.push(Uint8Array.of(23, 3, 3, (MAX_PLAINTEXT + 257) >> 8, (MAX_PLAINTEXT + 257) & 0xff));
    assert.throws(() => r.next(), (e: unknown) => e instanceof EchgateError && e.alert === 'record_overflow');
  });
});

describe('RFC 9849 §7.1.1 split mode on the record codec', () => {
  const never = () => {
    throw new Error('no second hello here');
  };
  it('records before the first application_data pass one by one; from it on, the rest of the read goes through untouched', () => {
    const s = new SplitClientStream(never, 65536);
    const ccs = changeCipherSpecRecord();
    const app = Uint8Array.of(23, 3, 3, 0, 1, 9);
    const tail = Uint8Array.of(23, 3, 3, 0xff, 0xff, 1);
    assert.deepEqual(concat(...s.push(concat(ccs, app, tail))), concat(ccs, app, tail));
    assert.deepEqual(s.push(Uint8Array.of(1, 2)), [Uint8Array.of(1, 2)]);
  });
  it('a record header claiming more than 2^14 + 256 bytes: record_overflow', () => {
    const s = new SplitClientStream(never, 65536);
    assert.throws(() => s.push(Uint8Array.of(20, 3, 3, 0x41, 0x01)), (e: unknown) => e instanceof EchgateError && e.alert === 'record_overflow');
  });
});
