/**
 * Tests written against mutants of the small src/tls13 files (record protection,
 * key exchange groups, key schedule, ECH confirmation, handshake reassembly,
 * transcript, certificates, the ClientHello builder) that survived their first
 * StrykerJS run (`npm run mutation -- tls13-rest`, docs/mutation.md, "Sixth
 * session"). Each checks one limit or one computed value against an independent
 * computation (BigInt nonces, the raw AEAD, RFC 8448 values), in process.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AEADS, nodeProvider } from '../src/crypto/node.js';
import { EchgateError } from '../src/errors.js';
import { type CipherSuite, CIPHER_SUITES, type TrafficKeys } from '../src/tls13/key-schedule.js';
import { MAX_INNER_PLAINTEXT, RecordCipher } from '../src/tls13/record-protection.js';
import { ContentType, MAX_PLAINTEXT } from '../src/wire/tls/constants.js';
import { MAX_CIPHERTEXT, recordHeader } from '../src/wire/tls/record.js';

const code = (c: string, alert?: string) => (e: unknown) => e instanceof EchgateError && e.code === c && (alert === undefined || e.alert === alert);

/** Deterministic keys for a suite: a non-zero IV, so every nonce byte is XORed onto something. */
function keysFor(suite: CipherSuite): TrafficKeys {
  const key = new Uint8Array(suite.keyLen).map((_, i) => (i * 7 + 3) & 0xff);
  const iv = new Uint8Array(12).map((_, i) => 0xa5 ^ (i * 29));
  return { key, iv };
}
const copyKeys = (k: TrafficKeys): TrafficKeys => ({ key: k.key.slice(), iv: k.iv.slice() });

/** RFC 8446 §5.3, computed independently: the 64-bit sequence number, big-endian, left-padded to the IV length, XORed with the IV. */
function expectedNonce(iv: Uint8Array, seq: bigint): Uint8Array {
  const n = iv.slice();
  for (let i = 0; i < 8; i++) n[11 - i]! ^= Number((seq >> BigInt(8 * i)) & 0xffn);
  return n;
}

const setSeq = (c: RecordCipher, s: number) => {
  (c as unknown as { seq: number }).seq = s;
};
const getSeq = (c: RecordCipher) => (c as unknown as { seq: number }).seq;

/** A record sealed with the raw AEAD: `inner` is the whole TLSInnerPlaintext (content || type || zeros), `fragLen` the header's length field. */
function rawRecord(suite: CipherSuite, k: TrafficKeys, seq: bigint, inner: Uint8Array): { header: Uint8Array; fragment: Uint8Array } {
  const aead = AEADS[suite.aead];
  const header = recordHeader(ContentType.application_data, inner.length + aead.tagLen);
  return { header, fragment: aead.seal(k.key, expectedNonce(k.iv, seq), header, inner) };
}

describe('RFC 8446 §5.3: per-record nonce and sequence number', () => {
  const suite = CIPHER_SUITES[0]!;
  const seqs = [0, 1, 0xff, 0x100, 0xffff, 0x1_0000, 0xff_ffff, 0x7fff_ffff, 0x8000_0000, 0xffff_ffff, 2 ** 32, 2 ** 32 + 1, 2 ** 40 + 0x01_0203_0405, 0x1e_dcba_9876_5432, Number.MAX_SAFE_INTEGER - 1];

  it('the nonce is the IV XOR the 64-bit big-endian sequence number, for every byte of it (low and high 32 bits)', () => {
    const k = keysFor(suite);
    for (const s of seqs) {
      const c = new RecordCipher(suite, copyKeys(k));
      setSeq(c, s);
      const rec = c.seal(ContentType.application_data, Uint8Array.of(1, 2, 3));
      // The raw AEAD with the independently computed nonce opens it.
      const inner = AEADS[suite.aead].open(k.key, expectedNonce(k.iv, BigInt(s)), rec.subarray(0, 5), rec.subarray(5));
      assert.deepEqual([...inner], [1, 2, 3, ContentType.application_data], `seq ${s}`);
      assert.equal(getSeq(c), s + 1);
      // And a record the raw AEAD sealed at that number opens in a reader at that number.
      const r = new RecordCipher(suite, copyKeys(k));
      setSeq(r, s);
      const raw = rawRecord(suite, k, BigInt(s), Uint8Array.of(9, ContentType.application_data));
      assert.deepEqual([...r.open(raw.header, raw.fragment).content], [9], `seq ${s}`);
      assert.equal(getSeq(r), s + 1);
    }
  });

  it('sealAll gives each record its own number: first, first + 1, ... (also across 2^32)', () => {
    const k = keysFor(suite);
    for (const first of [0, 5, 2 ** 32 - 1]) {
      const c = new RecordCipher(suite, copyKeys(k));
      setSeq(c, first);
      const content = new Uint8Array(2 * MAX_PLAINTEXT + 3).map((_, i) => i & 0xff);
      const out = c.sealAll(ContentType.application_data, content);
      assert.equal(getSeq(c), first + 3);
      let at = 0;
      const got: number[] = [];
      for (let i = 0; i < 3; i++) {
        const len = (out[at + 3]! << 8) | out[at + 4]!;
        const inner = AEADS[suite.aead].open(k.key, expectedNonce(k.iv, BigInt(first + i)), out.subarray(at, at + 5), out.subarray(at + 5, at + 5 + len));
        assert.equal(inner.at(-1), ContentType.application_data);
        got.push(inner.length - 1);
        at += 5 + len;
      }
      assert.equal(at, out.length);
      assert.deepEqual(got, [MAX_PLAINTEXT, MAX_PLAINTEXT, 3]);
    }
  });

  it('the last safe sequence number is used; the next one is refused (seal, open and sealAll), never wrapping', () => {
    const k = keysFor(suite);
    const c = new RecordCipher(suite, copyKeys(k));
    setSeq(c, Number.MAX_SAFE_INTEGER - 1);
    c.seal(ContentType.application_data, Uint8Array.of(1));
    assert.throws(() => c.seal(ContentType.application_data, Uint8Array.of(1)), code('ERR_ILLEGAL'));
    const r = new RecordCipher(suite, copyKeys(k));
    setSeq(r, Number.MAX_SAFE_INTEGER);
    const raw = rawRecord(suite, k, BigInt(Number.MAX_SAFE_INTEGER), Uint8Array.of(1, ContentType.application_data));
    // (The reader's refusal comes out as bad_record_mac: the nonce is made inside tryOpen's try.)
    assert.throws(() => r.open(raw.header, raw.fragment), (e) => e instanceof EchgateError);
    // sealAll refuses the whole batch up front when it would reach the limit, and moves nothing.
    const a = new RecordCipher(suite, copyKeys(k));
    setSeq(a, Number.MAX_SAFE_INTEGER - 3);
    assert.throws(() => a.sealAll(ContentType.application_data, new Uint8Array(2 * MAX_PLAINTEXT + 1)), code('ERR_ILLEGAL'));
    assert.equal(getSeq(a), Number.MAX_SAFE_INTEGER - 3);
    a.sealAll(ContentType.application_data, new Uint8Array(2 * MAX_PLAINTEXT));
    assert.equal(getSeq(a), Number.MAX_SAFE_INTEGER - 1);
  });

  it('sealAll of nothing sends no record and uses no number; content of exactly 2^14 is one record', () => {
    const k = keysFor(suite);
    const c = new RecordCipher(suite, copyKeys(k));
    assert.equal(c.sealAll(ContentType.application_data, new Uint8Array(0)).length, 0);
    assert.equal(getSeq(c), 0);
    const one = c.sealAll(ContentType.application_data, new Uint8Array(MAX_PLAINTEXT));
    assert.equal(one.length, 5 + MAX_PLAINTEXT + 1 + 16);
    assert.equal(getSeq(c), 1);
  });

  it('a record that does not open leaves the number where it was; one that opens moves it by one', () => {
    const k = keysFor(suite);
    const r = new RecordCipher(suite, copyKeys(k));
    const good0 = rawRecord(suite, k, 0n, Uint8Array.of(7, ContentType.application_data));
    const bad = { header: good0.header, fragment: good0.fragment.slice() };
    bad.fragment[0]! ^= 1;
    assert.equal(r.tryOpen(bad.header, bad.fragment), undefined);
    assert.throws(() => r.open(bad.header, bad.fragment), code('ERR_AEAD_OPEN', 'bad_record_mac'));
    assert.equal(getSeq(r), 0);
    assert.deepEqual([...r.open(good0.header, good0.fragment).content], [7]);
    // The same record again (a replay) is read with number 1 and fails.
    assert.equal(r.tryOpen(good0.header, good0.fragment), undefined);
    const good1 = rawRecord(suite, k, 1n, Uint8Array.of(8, ContentType.application_data));
    assert.deepEqual([...r.open(good1.header, good1.fragment).content], [8]);
  });
});

describe('RFC 8446 §5.2, §5.4: record limits and the inner plaintext', () => {
  for (const suite of CIPHER_SUITES) {
    const k = keysFor(suite);
    const reader = () => new RecordCipher(suite, copyKeys(k));
    const inner = (content: number, type: number, pad: number) => {
      const b = new Uint8Array(content + 1 + pad).fill(0x41, 0, content);
      b[content] = type;
      return b;
    };

    it(`${suite.id.toString(16)}: §5.2 a fragment of exactly 2^14 + 256 bytes is tried (bad_record_mac), one byte more is record_overflow`, () => {
      const at = new Uint8Array(MAX_CIPHERTEXT);
      assert.equal(reader().tryOpen(recordHeader(ContentType.application_data, at.length), at), undefined);
      const over = new Uint8Array(MAX_CIPHERTEXT + 1);
      assert.throws(() => reader().tryOpen(recordHeader(ContentType.application_data, over.length), over), code('ERR_DECODE', 'record_overflow'));
    });

    it(`${suite.id.toString(16)}: §5.4 an inner plaintext of 2^14 + 1 bytes opens, 2^14 + 2 (content or padding) is record_overflow`, () => {
      const ok = rawRecord(suite, k, 0n, inner(MAX_PLAINTEXT, ContentType.application_data, 0));
      assert.equal(MAX_INNER_PLAINTEXT, MAX_PLAINTEXT + 1);
      assert.equal(reader().open(ok.header, ok.fragment).content.length, MAX_PLAINTEXT);
      const padOk = rawRecord(suite, k, 0n, inner(1, ContentType.application_data, MAX_PLAINTEXT - 1));
      assert.equal(reader().open(padOk.header, padOk.fragment).content.length, 1);
      for (const big of [inner(MAX_PLAINTEXT, ContentType.application_data, 1), inner(MAX_PLAINTEXT + 1, ContentType.application_data, 0), inner(2, ContentType.application_data, MAX_PLAINTEXT - 1)]) {
        const r = rawRecord(suite, k, 0n, big);
        assert.ok(r.fragment.length <= MAX_CIPHERTEXT);
        assert.throws(() => reader().open(r.header, r.fragment), code('ERR_DECODE', 'record_overflow'));
      }
    });
  }

  const suite = CIPHER_SUITES[0]!;
  const k = keysFor(suite);
  const open = (inner: Uint8Array) => {
    const r = rawRecord(suite, k, 0n, inner);
    return new RecordCipher(suite, copyKeys(k)).open(r.header, r.fragment);
  };

  it('§5.4: the padding is stripped up to the last non-zero byte, zeros inside the content stay', () => {
    const got = open(Uint8Array.of(0, 5, 0, 0, ContentType.application_data, 0, 0, 0));
    assert.equal(got.type, ContentType.application_data);
    assert.deepEqual([...got.content], [0, 5, 0, 0]);
    const hs = open(Uint8Array.of(1, ContentType.handshake));
    assert.equal(hs.type, ContentType.handshake);
    assert.deepEqual([...hs.content], [1]);
  });

  it('§5.4: no content type (empty, or all zeros) is unexpected_message', () => {
    for (const z of [new Uint8Array(0), new Uint8Array(1), new Uint8Array(300)]) assert.throws(() => open(z), code('ERR_DECODE', 'unexpected_message'));
  });

  it('§5.4: an empty Handshake or Alert record is unexpected_message, with or without padding; empty application data and a one-byte Handshake are fine', () => {
    for (const t of [ContentType.handshake, ContentType.alert]) {
      assert.throws(() => open(Uint8Array.of(t)), code('ERR_ILLEGAL', 'unexpected_message'));
      assert.throws(() => open(Uint8Array.of(t, 0, 0)), code('ERR_ILLEGAL', 'unexpected_message'));
      assert.deepEqual([...open(Uint8Array.of(3, t)).content], [3]);
    }
    const empty = open(Uint8Array.of(ContentType.application_data, 0));
    assert.equal(empty.type, ContentType.application_data);
    assert.equal(empty.content.length, 0);
  });

  it('§5.2: seal() takes at most 2^14 bytes; its header gives the fragment length and application_data', () => {
    const c = new RecordCipher(suite, copyKeys(k));
    assert.throws(() => c.seal(ContentType.application_data, new Uint8Array(MAX_PLAINTEXT + 1)), code('ERR_ENCODE'));
    assert.equal(getSeq(c), 0);
    const rec = c.seal(ContentType.handshake, new Uint8Array(MAX_PLAINTEXT));
    assert.deepEqual([...rec.subarray(0, 5)], [...recordHeader(ContentType.application_data, MAX_PLAINTEXT + 1 + 16)]);
    assert.equal(rec.length, 5 + MAX_PLAINTEXT + 17);
  });

  it('wipe() zeroes the key and the IV', () => {
    const keys = copyKeys(k);
    new RecordCipher(suite, keys).wipe();
    assert.ok(keys.key.every((b) => b === 0));
    assert.ok(keys.iv.every((b) => b === 0));
  });
});
