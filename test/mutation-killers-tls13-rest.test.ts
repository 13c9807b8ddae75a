/**
 * Tests written against mutants of the small src/tls13 files (record protection,
 * key exchange groups, key schedule, ECH confirmation, handshake reassembly,
 * transcript, certificates, the ClientHello builder) that survived their first
 * StrykerJS run (`npm run mutation -- tls13-rest`, docs/mutation.md, "Sixth
 * session"). Each checks one limit or one computed value against an independent
 * computation (BigInt nonces, the raw AEAD, RFC 8448 values), in process.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { constants, createHash, createHmac, verify, X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { concat, toHex } from '../src/bytes/util.js';
import { AEADS, nodeProvider } from '../src/crypto/node.js';
import { MLKEM768, p256Generate } from '../src/crypto/kex.js';
import { type CryptoProvider, HASH_SIZE, type HashName } from '../src/crypto/provider.js';
import { EchgateError, isEchgateError } from '../src/errors.js';
import { certificateSelector, loadCertificate, SigScheme } from '../src/tls13/certs.js';
import { CLIENT_SIG_ALGS, clientHello, helloExtensions } from '../src/tls13/client-hello-builder.js';
import { ECH_CONFIRMATION_AT, echAcceptConfirmation, hrrEchConfirmation } from '../src/tls13/ech-confirm.js';
import { GROUPS, groupById, groupName, parseGroupName } from '../src/tls13/groups.js';
import { HandshakeBuffer } from '../src/tls13/handshake-buffer.js';
import { CIPHER_SUITES, type CipherSuite, expandLabel, finishedVerifyData, KeySchedule, nextTrafficSecret, suiteById, type TrafficKeys, trafficKeys } from '../src/tls13/key-schedule.js';
import { MAX_INNER_PLAINTEXT, RecordCipher } from '../src/tls13/record-protection.js';
import { Transcript } from '../src/tls13/transcript.js';
import { decodeClientHello, encodeClientHello } from '../src/wire/tls/client-hello.js';
import { ContentType, ExtensionType, MAX_PLAINTEXT, NamedGroup } from '../src/wire/tls/constants.js';
import { encodeAlpn, encodeKeyShares, encodeServerName, encodeSupportedVersions, encodeU16List } from '../src/wire/tls/extensions.js';
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

// ---- Independent HKDF (RFC 5869) and HKDF-Expand-Label (RFC 8446 §7.1) over node:crypto's HMAC ----

const hmac = (hash: HashName, key: Uint8Array, ...data: Uint8Array[]) => {
  const h = createHmac(hash, key);
  for (const d of data) h.update(d);
  return new Uint8Array(h.digest());
};
const digest = (hash: HashName, data: Uint8Array) => new Uint8Array(createHash(hash).update(data).digest());
function refExpand(hash: HashName, prk: Uint8Array, info: Uint8Array, len: number): Uint8Array {
  const out: number[] = [];
  let t = new Uint8Array(0);
  for (let i = 1; out.length < len; i++) {
    t = hmac(hash, prk, t, info, Uint8Array.of(i));
    out.push(...t);
  }
  return Uint8Array.from(out.slice(0, len));
}
function refExpandLabel(hash: HashName, secret: Uint8Array, label: string, context: Uint8Array, len: number): Uint8Array {
  const l = Buffer.from(`tls13 ${label}`, 'latin1');
  return refExpand(hash, secret, concat(Uint8Array.of(len >> 8, len & 0xff, l.length), l, Uint8Array.of(context.length), context), len);
}
const bytes = (n: number, seed: number) => new Uint8Array(n).map((_, i) => (i * 31 + seed) & 0xff);

describe('RFC 8446 §7.1: HKDF-Expand-Label and the key schedule against an independent HKDF', () => {
  it('expandLabel: every (label, length, context) gives its own HkdfLabel, also after the prefix is cached', () => {
    const secret = bytes(32, 1);
    for (let round = 0; round < 2; round++) {
      for (const [label, ctx, len] of [
        ['key', new Uint8Array(0), 16],
        ['key', new Uint8Array(0), 32],
        ['iv', new Uint8Array(0), 12],
        ['c hs traffic', bytes(32, 2), 32],
        ['c hs traffic', bytes(31, 2), 32],
        ['c hs traffic', bytes(32, 2), 48],
        ['derived', new Uint8Array(0), 300],
        // Two shapes a cache key of length / 256 + context length would merge: (257, 0) and (1, 1).
        ['exp master', new Uint8Array(0), 257],
        ['exp master', bytes(1, 9), 1],
      ] as const) {
        assert.equal(toHex(expandLabel(nodeProvider, 'sha256', secret, label, ctx, len)), toHex(refExpandLabel('sha256', secret, label, ctx, len)), `${label}/${ctx.length}/${len}`);
      }
    }
  });

  it('§7.1: a label of up to 255 bytes with "tls13 " and a context of up to 255 bytes; one more is refused', () => {
    const secret = bytes(32, 3);
    const label249 = 'a'.repeat(249);
    assert.equal(toHex(expandLabel(nodeProvider, 'sha256', secret, label249, new Uint8Array(0), 32)), toHex(refExpandLabel('sha256', secret, label249, new Uint8Array(0), 32)));
    assert.throws(() => expandLabel(nodeProvider, 'sha256', secret, 'a'.repeat(250), new Uint8Array(0), 32), code('ERR_ENCODE'));
    const ctx255 = bytes(255, 4);
    assert.equal(toHex(expandLabel(nodeProvider, 'sha256', secret, 'x', ctx255, 32)), toHex(refExpandLabel('sha256', secret, 'x', ctx255, 32)));
    assert.throws(() => expandLabel(nodeProvider, 'sha256', secret, 'x', bytes(256, 4), 32), code('ERR_ENCODE'));
  });

  it('the prefix cache is bounded: past 256 entries new labels still expand correctly', () => {
    const secret = bytes(32, 5);
    for (let i = 0; i < 300; i++) {
      const label = `cache test ${i}`;
      assert.equal(toHex(expandLabel(nodeProvider, 'sha256', secret, label, Uint8Array.of(i & 0xff), 8)), toHex(refExpandLabel('sha256', secret, label, Uint8Array.of(i & 0xff), 8)));
    }
  });

  for (const suite of CIPHER_SUITES) {
    it(`suite ${suite.id.toString(16)}: handshake, application, exporter, Finished, KeyUpdate and traffic keys, from a random ECDHE secret`, () => {
      const hash = suite.hash;
      const hl = HASH_SIZE[hash];
      const zeros = new Uint8Array(hl);
      const ecdhe = bytes(32, 6);
      const chsh = bytes(hl, 7);
      const sf = bytes(hl, 8);
      const early = hmac(hash, zeros, zeros);
      const derived0 = refExpandLabel(hash, early, 'derived', digest(hash, new Uint8Array(0)), hl);
      const hsSecret = hmac(hash, derived0, ecdhe);
      const ks = new KeySchedule(nodeProvider, hash);
      assert.equal(ks.hash, hash);
      assert.equal(toHex(ks.zeros), toHex(zeros));
      const hs = ks.handshake(ecdhe, chsh);
      assert.equal(toHex(hs.client), toHex(refExpandLabel(hash, hsSecret, 'c hs traffic', chsh, hl)));
      assert.equal(toHex(hs.server), toHex(refExpandLabel(hash, hsSecret, 's hs traffic', chsh, hl)));
      const master = hmac(hash, refExpandLabel(hash, hsSecret, 'derived', digest(hash, new Uint8Array(0)), hl), zeros);
      const ap = ks.application(sf);
      assert.equal(toHex(ap.client), toHex(refExpandLabel(hash, master, 'c ap traffic', sf, hl)));
      assert.equal(toHex(ap.server), toHex(refExpandLabel(hash, master, 's ap traffic', sf, hl)));
      const exp = refExpandLabel(hash, master, 'exp master', sf, hl);
      assert.equal(toHex(ap.exporter), toHex(exp));
      assert.equal(ap.exporter, ap.exporter, 'derived once, then the same value');
      // §4.4.4: verify_data = HMAC(finished_key, transcript hash).
      assert.equal(toHex(finishedVerifyData(nodeProvider, hash, hs.server, sf)), toHex(hmac(hash, refExpandLabel(hash, hs.server, 'finished', new Uint8Array(0), hl), sf)));
      // §7.2: application_traffic_secret_N+1.
      const next = refExpandLabel(hash, ap.client, 'traffic upd', new Uint8Array(0), hl);
      assert.equal(toHex(ks.nextTrafficSecret(ap.client)), toHex(next));
      assert.equal(toHex(nextTrafficSecret(nodeProvider, hash, ap.client)), toHex(next));
      // §7.3: key and IV, side by side in one buffer but separate views.
      const k = trafficKeys(nodeProvider, suite, hs.server);
      assert.equal(toHex(k.key), toHex(refExpandLabel(hash, hs.server, 'key', new Uint8Array(0), suite.keyLen)));
      assert.equal(toHex(k.iv), toHex(refExpandLabel(hash, hs.server, 'iv', new Uint8Array(0), 12)));
      assert.equal(k.key.length, suite.keyLen);
      assert.equal(k.iv.length, 12);
    });
  }

  it('§7.1: application secrets need the handshake secret first, and not after forget(), which wipes it', () => {
    const ks = new KeySchedule(nodeProvider, 'sha256');
    assert.throws(() => ks.application(bytes(32, 1)), code('ERR_ILLEGAL'));
    ks.handshake(bytes(32, 2), bytes(32, 3));
    const held = (ks as unknown as { handshakeSecret: Uint8Array }).handshakeSecret;
    ks.application(bytes(32, 1));
    ks.forget();
    assert.ok(held.every((b) => b === 0));
    assert.throws(() => ks.application(bytes(32, 1)), code('ERR_ILLEGAL'));
  });

  it('§7.1: the no-PSK constants (Hash(""), the early "derived" secret) are computed once per provider and hash', () => {
    const hashed: string[] = [];
    const counting: CryptoProvider = {
      ...nodeProvider,
      hash: (h, data) => {
        hashed.push(`${h}/${data.length}`);
        return nodeProvider.hash(h, data);
      },
    };
    const a = new KeySchedule(counting, 'sha256');
    assert.deepEqual(hashed, ['sha256/0']);
    const b = new KeySchedule(counting, 'sha256');
    new KeySchedule(counting, 'sha384');
    assert.deepEqual(hashed, ['sha256/0', 'sha384/0'], 'the second sha256 schedule reuses the first one\'s constants');
    assert.deepEqual(a.handshake(bytes(32, 2), bytes(32, 3)), b.handshake(bytes(32, 2), bytes(32, 3)));
  });

  it('§7.1: forget() with no handshake secret (before handshake(), or a second time) does nothing and throws nothing', () => {
    const ks = new KeySchedule(nodeProvider, 'sha256');
    ks.forget();
    ks.handshake(bytes(32, 2), bytes(32, 3));
    ks.forget();
    ks.forget();
    assert.throws(() => ks.application(bytes(32, 1)), code('ERR_ILLEGAL'));
  });

  it('§B.4: the suites and their parameters; suiteById finds only those', () => {
    assert.deepEqual(
      CIPHER_SUITES.map((s) => [s.id, s.hash, s.aead, s.keyLen]),
      [
        [0x1301, 'sha256', 'aes-128-gcm', 16],
        [0x1303, 'sha256', 'chacha20-poly1305', 32],
        [0x1302, 'sha384', 'aes-256-gcm', 32],
      ],
    );
    for (const s of CIPHER_SUITES) assert.equal(suiteById(s.id), s);
    for (const id of [0x1304, 0x1305, 0x00ff, 0]) assert.equal(suiteById(id), undefined);
  });
});

describe('RFC 9849 §7.2, §7.2.1: ECH accept confirmations against an independent computation', () => {
  for (const hash of ['sha256', 'sha384'] as const) {
    const hl = HASH_SIZE[hash];
    const innerRandom = bytes(32, 9);
    const ch = bytes(200, 10);
    const before = () => {
      const t = new Transcript(nodeProvider, hash);
      t.add(ch);
      return t;
    };
    const ref = (msg: Uint8Array, at: number, label: string) => {
      const z = msg.slice();
      z.fill(0, at, at + 8);
      return refExpandLabel(hash, hmac(hash, new Uint8Array(hl), innerRandom), label, digest(hash, concat(ch, z)), 8);
    };

    it(`${hash}: ServerHello: the last 8 bytes of the random (offset 30), computed with them zeroed`, () => {
      assert.equal(ECH_CONFIRMATION_AT, 30);
      const sh = bytes(90, 11);
      const t = before();
      const got = echAcceptConfirmation(nodeProvider, hash, innerRandom, t, sh);
      assert.equal(toHex(got), toHex(ref(sh, 30, 'ech accept confirmation')));
      // The transcript and the message are left as they were.
      assert.equal(toHex(t.hash()), toHex(digest(hash, ch)));
      assert.equal(toHex(sh), toHex(bytes(90, 11)));
      // Whatever the 8 bytes hold, the same confirmation; a byte just outside them changes it.
      const other = sh.slice();
      other.fill(0xee, 30, 38);
      assert.equal(toHex(echAcceptConfirmation(nodeProvider, hash, innerRandom, before(), other)), toHex(got));
      for (const i of [29, 38]) {
        const o = sh.slice();
        o[i]! ^= 1;
        assert.notEqual(toHex(echAcceptConfirmation(nodeProvider, hash, innerRandom, before(), o)), toHex(got), `byte ${i}`);
      }
    });

    it(`${hash}: HelloRetryRequest: the 8 bytes at the extension payload, with its own label`, () => {
      const hrr = bytes(120, 12);
      const got = hrrEchConfirmation(nodeProvider, hash, innerRandom, before(), hrr, 100);
      assert.equal(toHex(got), toHex(ref(hrr, 100, 'hrr ech accept confirmation')));
      assert.notEqual(toHex(got), toHex(ref(hrr, 100, 'ech accept confirmation')));
    });
  }
});

describe('RFC 8446 §4.4.1: the transcript', () => {
  const msgs = [bytes(10, 1), bytes(1500, 2), bytes(0, 3), bytes(3000, 4), bytes(4, 5)];

  it('hash() is Hash of the messages back to back, through growth past 1024 and 2x', () => {
    for (const hash of ['sha256', 'sha384'] as const) {
      const t = new Transcript(nodeProvider, hash);
      assert.equal(toHex(t.hash()), toHex(digest(hash, new Uint8Array(0))));
      for (let i = 0; i < msgs.length; i++) {
        t.add(msgs[i]!);
        assert.equal(toHex(t.hash()), toHex(digest(hash, concat(...msgs.slice(0, i + 1)))), `${hash} after ${i + 1}`);
      }
      const big = new Transcript(nodeProvider, hash);
      big.add(bytes(5000, 6));
      assert.equal(toHex(big.hash()), toHex(digest(hash, bytes(5000, 6))));
    }
  });

  it('fork() copies: the fork and the original go on separately (also past 1024 bytes)', () => {
    for (const first of [bytes(100, 7), bytes(2000, 7)]) {
      const t = new Transcript(nodeProvider, 'sha256');
      t.add(first);
      const f = t.fork();
      assert.equal(toHex(f.hash()), toHex(digest('sha256', first)));
      f.add(bytes(50, 8));
      t.add(bytes(60, 9));
      assert.equal(toHex(f.hash()), toHex(digest('sha256', concat(first, bytes(50, 8)))));
      assert.equal(toHex(t.hash()), toHex(digest('sha256', concat(first, bytes(60, 9)))));
      assert.deepEqual(f.snapshot().map(toHex), [first, bytes(50, 8)].map(toHex));
    }
  });

  it('add() copies only when a message does not fit: one that fills the buffer exactly keeps it; the next doubles it', () => {
    // The transcript's buffer grows geometrically so a handshake's adds cost linear copying, not quadratic.
    const t = new Transcript(nodeProvider, 'sha256');
    const buf = () => (t as unknown as { buf: Uint8Array }).buf;
    t.add(bytes(10, 1));
    const first = buf();
    assert.equal(first.length, 1024);
    t.add(bytes(1014, 2));
    assert.equal(buf(), first, 'a message that exactly fills the buffer is written in place');
    t.add(bytes(1, 3));
    assert.equal(buf().length, 2048, 'a full buffer doubles');
    assert.equal(toHex(t.hash()), toHex(digest('sha256', concat(bytes(10, 1), bytes(1014, 2), bytes(1, 3)))));
  });

  it('snapshot() gives each message as it was added', () => {
    const t = new Transcript(nodeProvider, 'sha256');
    for (const m of msgs) t.add(m);
    assert.deepEqual(t.snapshot().map(toHex), msgs.map(toHex));
    assert.deepEqual(new Transcript(nodeProvider, 'sha256').snapshot(), []);
  });

  it('§4.4.1: after HelloRetryRequest, ClientHello1 becomes message_hash (254, 00 00 Hash.length, Hash(ClientHello1))', () => {
    for (const hash of ['sha256', 'sha384'] as const) {
      const ch1 = bytes(700, 10);
      const t = new Transcript(nodeProvider, hash);
      t.add(ch1);
      t.replaceWithMessageHash();
      const h = digest(hash, ch1);
      const mh = concat(Uint8Array.of(254, 0, 0, h.length), h);
      assert.deepEqual(t.snapshot().map(toHex), [toHex(mh)]);
      t.add(bytes(90, 11));
      assert.equal(toHex(t.hash()), toHex(digest(hash, concat(mh, bytes(90, 11)))));
    }
  });
});

describe('RFC 8446 §5.1: handshake message reassembly (HandshakeBuffer)', () => {
  const msg = (type: number, len: number) => {
    const m = new Uint8Array(4 + len).map((_, i) => (i * 13) & 0xff);
    m[0] = type;
    m[1] = len >> 16;
    m[2] = (len >> 8) & 0xff;
    m[3] = len & 0xff;
    return m;
  };

  it('a message with an empty body (4 bytes) is complete at once', () => {
    const b = new HandshakeBuffer();
    const got = b.push(msg(5, 0));
    assert.deepEqual(got.map(toHex), [toHex(msg(5, 0))]);
    assert.equal(b.pending, 0);
  });

  it('a length using all three bytes (0x010203), fed one piece at a time, comes out whole', () => {
    const m = msg(11, 0x010203);
    const b = new HandshakeBuffer(1 << 17);
    const out: Uint8Array[] = [];
    for (let at = 0; at < m.length; at += 7001) out.push(...b.push(m.subarray(at, Math.min(m.length, at + 7001))));
    assert.equal(out.length, 1);
    assert.equal(toHex(out[0]!), toHex(m));
    assert.equal(b.pending, 0);
  });

  it('several messages in one push, and a partial one held back (pending counts its bytes)', () => {
    const b = new HandshakeBuffer();
    const a = msg(8, 3);
    const c = msg(15, 20);
    const got = b.push(concat(a, c, c.subarray(0, 6)));
    assert.deepEqual(got.map(toHex), [toHex(a), toHex(c)]);
    assert.equal(b.pending, 6);
    assert.deepEqual(b.push(new Uint8Array(0)), []);
    assert.deepEqual(b.push(c.subarray(6, 23)), []);
    assert.equal(b.pending, 23);
    assert.deepEqual(b.push(c.subarray(23)).map(toHex), [toHex(c)]);
    assert.equal(b.pending, 0);
    // Three bytes of a header are not yet a header.
    assert.deepEqual(b.push(Uint8Array.of(1, 0, 0)), []);
    assert.equal(b.pending, 3);
  });

  it('the cap counts the header: exactly max bytes are taken, one more is refused as soon as the header says so', () => {
    const b = new HandshakeBuffer(100);
    assert.equal(b.push(msg(1, 96)).length, 1);
    assert.throws(() => new HandshakeBuffer(100).push(msg(1, 97).subarray(0, 4)), code('ERR_LIMIT', 'illegal_parameter'));
    // The default cap is 2^16 bytes.
    assert.equal(new HandshakeBuffer().push(msg(1, (1 << 16) - 4)).length, 1);
    assert.throws(() => new HandshakeBuffer().push(msg(1, (1 << 16) - 3).subarray(0, 4)), code('ERR_LIMIT'));
  });
});

describe('RFC 8446 §4.4.2, §4.2.3: certificates, their signature schemes and selection by name', () => {
  const dir = mkdtempSync(join(tmpdir(), 'echgate-mk-rest-'));
  /** A self-signed certificate made by the openssl CLI with this key type and these subjectAltName entries. */
  const make = (name: string, newkey: string[], san: string) => {
    const k = join(dir, `${name}.key`);
    const c = join(dir, `${name}.pem`);
    execFileSync('openssl', ['req', '-x509', ...newkey, '-nodes', '-keyout', k, '-out', c, '-days', '2', '-subj', `/CN=${name}`, ...(san ? ['-addext', `subjectAltName=${san}`] : [])], { stdio: 'ignore' });
    return { cert: readFileSync(c, 'utf8'), key: readFileSync(k, 'utf8') };
  };
  const p256 = make('p256', ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'], 'DNS:A.Example.Test,IP:127.0.0.1,DNS:*.w.test,email:x@y.test');
  const p384 = make('p384', ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-384'], 'DNS:p384.test');
  const ed = make('ed', ['-newkey', 'ed25519'], 'DNS:ed.test');
  const rsa = make('rsa', ['-newkey', 'rsa:2048'], 'DNS:rsa.test');
  const noSan = make('nosan', ['-newkey', 'ed25519'], '');
  const data = bytes(100, 1);
  const pub = (pem: string) => new X509Certificate(pem).publicKey;

  it('ECDSA: P-256 signs ecdsa_secp256r1_sha256, P-384 ecdsa_secp384r1_sha384 (DER signatures, each its own hash)', () => {
    const a = loadCertificate(p256.cert, p256.key);
    assert.deepEqual(a.schemes, [SigScheme.ecdsa_secp256r1_sha256]);
    assert.ok(verify('sha256', data, { key: pub(p256.cert), dsaEncoding: 'der' }, a.sign(SigScheme.ecdsa_secp256r1_sha256, data)));
    const b = loadCertificate(p384.cert, p384.key);
    assert.deepEqual(b.schemes, [SigScheme.ecdsa_secp384r1_sha384]);
    assert.ok(verify('sha384', data, { key: pub(p384.cert), dsaEncoding: 'der' }, b.sign(SigScheme.ecdsa_secp384r1_sha384, data)));
    assert.equal(verify('sha256', data, { key: pub(p384.cert), dsaEncoding: 'der' }, b.sign(SigScheme.ecdsa_secp384r1_sha384, data)), false);
  });

  it('RSA: rsa_pss_rsae_sha256/384/512, each signed with its own hash and a salt of the hash length', () => {
    const r = loadCertificate(rsa.cert, rsa.key);
    assert.deepEqual(r.schemes, [SigScheme.rsa_pss_rsae_sha256, SigScheme.rsa_pss_rsae_sha384, SigScheme.rsa_pss_rsae_sha512]);
    for (const [scheme, hash, len] of [
      [SigScheme.rsa_pss_rsae_sha256, 'sha256', 32],
      [SigScheme.rsa_pss_rsae_sha384, 'sha384', 48],
      [SigScheme.rsa_pss_rsae_sha512, 'sha512', 64],
    ] as const) {
      const sig = r.sign(scheme, data);
      assert.ok(verify(hash, data, { key: pub(rsa.cert), padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: len }, sig), hash);
      assert.equal(verify(hash === 'sha256' ? 'sha384' : 'sha256', data, { key: pub(rsa.cert), padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_AUTO }, sig), false, hash);
    }
  });

  it('Ed25519 signs ed25519', () => {
    const e = loadCertificate(ed.cert, ed.key);
    assert.deepEqual(e.schemes, [SigScheme.ed25519]);
    assert.ok(verify(null, data, pub(ed.cert), e.sign(SigScheme.ed25519, data)));
  });

  it('other keys, no certificate, a key of another certificate: ERR_CONFIG', () => {
    const p521 = make('p521', ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-521'], 'DNS:p521.test');
    const ed448 = make('ed448', ['-newkey', 'ed448'], 'DNS:ed448.test');
    assert.throws(() => loadCertificate(p521.cert, p521.key), code('ERR_CONFIG'));
    assert.throws(() => loadCertificate(ed448.cert, ed448.key), code('ERR_CONFIG'));
    assert.throws(() => loadCertificate(p256.key, p256.key), code('ERR_CONFIG'));
    assert.throws(() => loadCertificate(p256.cert, p384.key), code('ERR_CONFIG'));
  });

  it('the chain: every CERTIFICATE block in order, base64 across lines and CRLF, text around the blocks ignored', () => {
    const crlf = (s: string) => s.replace(/\n/g, '\r\n');
    const chain = loadCertificate(`leaf follows\n${crlf(p256.cert)}\nintermediate:\n${p384.cert}trailing text`, p256.key).chain;
    assert.deepEqual(
      chain.map((c) => toHex(c)),
      [p256.cert, p384.cert].map((p) => toHex(new Uint8Array(new X509Certificate(p).raw))),
    );
  });

  it('names: the DNS subjectAltNames only, lower case; none without a subjectAltName', () => {
    assert.deepEqual(loadCertificate(p256.cert, p256.key).names, ['a.example.test', '*.w.test']);
    assert.deepEqual(loadCertificate(noSan.cert, noSan.key).names, []);
  });

  it('selection: exact name, then a one-label wildcard, else the first (default) certificate', () => {
    const def = loadCertificate(ed.cert, ed.key);
    const a = loadCertificate(p256.cert, p256.key);
    const r = loadCertificate(rsa.cert, rsa.key);
    const pick = certificateSelector([def, a, r]);
    assert.equal(pick('rsa.test'), r);
    assert.equal(pick('a.example.test'), a);
    assert.equal(pick('x.w.test'), a);
    assert.equal(pick('y.x.w.test'), def, 'a wildcard covers one label only');
    assert.equal(pick('w.test'), def);
    assert.equal(pick('.w.test'), def, 'an empty first label is not matched by the wildcard');
    assert.equal(pick('nomatch.test'), def);
    assert.equal(pick('nodot'), def);
    assert.equal(pick(undefined), def);
    assert.equal(pick(''), def);
    assert.equal(certificateSelector([])('rsa.test'), undefined);
    // An exact name beats a wildcard that comes first.
    const exactLater = certificateSelector([def, a, { ...r, names: ['x.w.test'] }]);
    assert.equal(exactLater('x.w.test')?.names[0], 'x.w.test');
  });
});

describe('RFC 8446 §4.1.2: the ClientHello builder', () => {
  const share = { group: 0x001d, publicKey: bytes(32, 3) };

  it('every extension, in the one order, with the encoders of what the spec says', () => {
    const cookie = bytes(10, 4);
    const ext = helloExtensions({ serverName: 'b.example.test', versions: [0x0304, 0x0303], groups: [0x001d, 0x0017], share, cookie, alpn: ['h2', 'http/1.1'], earlyData: true });
    assert.deepEqual(
      ext.map((e) => [e.type, toHex(e.data)]),
      [
        [ExtensionType.server_name, toHex(encodeServerName('b.example.test'))],
        [ExtensionType.supported_versions, toHex(encodeSupportedVersions([0x0304, 0x0303]))],
        [ExtensionType.key_share, toHex(encodeKeyShares([{ group: 0x001d, keyExchange: share.publicKey }]))],
        [ExtensionType.cookie, toHex(cookie)],
        [ExtensionType.supported_groups, toHex(encodeU16List([0x001d, 0x0017]))],
        [ExtensionType.signature_algorithms, toHex(encodeU16List([0x0403, 0x0503, 0x0804, 0x0805, 0x0806, 0x0807]))],
        [ExtensionType.psk_key_exchange_modes, '0101'],
        [ExtensionType.application_layer_protocol_negotiation, toHex(encodeAlpn(['h2', 'http/1.1']))],
        [ExtensionType.early_data, ''],
      ],
    );
  });

  it('the least: no name, TLS 1.3 only, an empty key_share list (HelloRetryRequest wanted), no cookie, ALPN or early_data', () => {
    const ext = helloExtensions({ groups: [0x0017], share: undefined });
    assert.deepEqual(
      ext.map((e) => [e.type, toHex(e.data)]),
      [
        [ExtensionType.supported_versions, '020304'],
        [ExtensionType.key_share, '0000'],
        [ExtensionType.supported_groups, '00020017'],
        [ExtensionType.signature_algorithms, toHex(encodeU16List([...CLIENT_SIG_ALGS]))],
        [ExtensionType.psk_key_exchange_modes, '0101'],
      ],
    );
    assert.equal(helloExtensions({ groups: [0x0017], share: undefined, serverName: '', earlyData: false }).length, 5);
  });

  it('clientHello: legacy_version 0x0303, 32-byte random and session id (fresh, or the first hello\'s), the three suites, null compression; raw is its encoding', () => {
    const ext = helloExtensions({ groups: [0x001d], share });
    const a = clientHello(nodeProvider, ext);
    const b = clientHello(nodeProvider, ext);
    assert.equal(a.legacyVersion, 0x0303);
    assert.equal(a.random.length, 32);
    assert.equal(a.sessionId.length, 32);
    assert.notEqual(toHex(a.random), toHex(b.random));
    assert.notEqual(toHex(a.sessionId), toHex(b.sessionId));
    assert.notEqual(toHex(a.random), toHex(a.sessionId));
    assert.deepEqual(a.cipherSuites, [0x1301, 0x1302, 0x1303]);
    assert.deepEqual([...a.compressionMethods], [0]);
    assert.equal(a.extensions, ext);
    const dec = decodeClientHello(a.raw!);
    assert.equal(toHex(dec.random), toHex(a.random));
    assert.equal(toHex(dec.sessionId), toHex(a.sessionId));
    assert.deepEqual(dec.cipherSuites, [0x1301, 0x1302, 0x1303]);
    assert.equal(toHex(a.raw!), toHex(encodeClientHello({ ...a, raw: undefined })));
    const again = clientHello(nodeProvider, ext, { random: a.random, sessionId: a.sessionId });
    assert.equal(toHex(again.raw!), toHex(a.raw!));
  });
});

describe('RFC 8446 §4.2.8.2, §7.4.2, RFC 7748 §6.1: a refused key share is an EchgateError carrying illegal_parameter itself', () => {
  const X = GROUPS.get(NamedGroup.x25519)!;
  const P = GROUPS.get(NamedGroup.secp256r1)!;
  const H = GROUPS.get(NamedGroup.X25519MLKEM768)!;
  /** The refusal: ERR_ILLEGAL with the alert set on the error (not left to the code's default), and the primitive's error as cause when there is one. */
  const illegal = (withCause: boolean) => (e: unknown) => {
    assert.ok(e instanceof EchgateError);
    assert.equal(e.code, 'ERR_ILLEGAL');
    assert.equal(e.alert, 'illegal_parameter');
    if (withCause) assert.ok(isEchgateError(e.cause) && e.cause.code === 'ERR_CRYPTO_ARG', 'the primitive error is the cause');
    return true;
  };

  it('RFC 7748 §6.1: an all-zero X25519 result (a low-order share), from either side and in the hybrid', () => {
    const zero = new Uint8Array(32);
    assert.throws(() => X.accept(nodeProvider, zero), illegal(true));
    assert.throws(() => X.offer(nodeProvider).complete(zero), illegal(true));
    const ek = H.offer(nodeProvider).publicKey.subarray(0, MLKEM768.encapsulationKeyLen);
    assert.throws(() => H.accept(nodeProvider, concat(ek, zero)), illegal(true));
  });

  it('§4.2.8.2: a P-256 share that is not an uncompressed point on the curve, from either side', () => {
    const pt = p256Generate().publicKey.slice();
    pt[64]! ^= 1;
    assert.throws(() => P.accept(nodeProvider, pt), illegal(true));
    assert.throws(() => P.offer(nodeProvider).complete(pt), illegal(true));
    assert.throws(() => P.accept(nodeProvider, pt.subarray(0, 33)), illegal(true));
  });

  it('wrong lengths: X25519 31/33, hybrid client 1184 + 31/33, hybrid server 1088 + 31/33', () => {
    const x = nodeProvider.x25519Generate().publicKey;
    for (const k of [x.subarray(0, 31), concat(x, Uint8Array.of(1))]) {
      assert.throws(() => X.accept(nodeProvider, k), illegal(false));
      assert.throws(() => X.offer(nodeProvider).complete(k), illegal(false));
    }
    const ek = H.offer(nodeProvider).publicKey;
    assert.throws(() => H.accept(nodeProvider, ek.subarray(0, ek.length - 1)), illegal(false));
    assert.throws(() => H.accept(nodeProvider, concat(ek, Uint8Array.of(1))), illegal(false));
    const ct = H.accept(nodeProvider, ek).share;
    assert.equal(ct.length, MLKEM768.ciphertextLen + 32);
    assert.throws(() => H.offer(nodeProvider).complete(ct.subarray(0, ct.length - 1)), illegal(false));
    assert.throws(() => H.offer(nodeProvider).complete(concat(ct, Uint8Array.of(1))), illegal(false));
  });

  it('an X25519 share of the wrong length never reaches the provider (whose own length check is not relied on)', () => {
    const calls: number[] = [];
    const counting: CryptoProvider = {
      ...nodeProvider,
      x25519: (sk, pk) => {
        calls.push(pk.length);
        return nodeProvider.x25519(sk, pk);
      },
    };
    const x = nodeProvider.x25519Generate().publicKey;
    assert.throws(() => X.accept(counting, x.subarray(0, 31)), illegal(false));
    assert.throws(() => X.offer(counting).complete(concat(x, Uint8Array.of(0))), illegal(false));
    assert.deepEqual(calls, []);
    X.accept(counting, x);
    assert.deepEqual(calls, [32]);
  });

  it('draft-ietf-tls-ecdhe-mlkem §4.1: a hybrid client share of the wrong length is refused before any work (no ML-KEM, no ephemeral key)', () => {
    let generated = 0;
    const counting: CryptoProvider = {
      ...nodeProvider,
      x25519Generate: () => {
        generated++;
        return nodeProvider.x25519Generate();
      },
    };
    const ek = H.offer(nodeProvider).publicKey;
    for (const bad of [ek.subarray(0, ek.length - 1), concat(ek, Uint8Array.of(1)), ek.subarray(0, 100)]) {
      assert.throws(() => H.accept(counting, bad), (e) => illegal(false)(e) && (e as EchgateError).cause === undefined);
    }
    assert.equal(generated, 0);
    H.accept(counting, ek);
    assert.equal(generated, 1);
  });

  it('only the primitives\' ERR_CRYPTO_ARG becomes illegal_parameter: any other failure (ours, not the peer\'s) goes up unchanged', () => {
    const x = nodeProvider.x25519Generate().publicKey;
    const plain = new Error('provider broke');
    const internal = new EchgateError('ERR_KEYSTORE', 'provider key store failed');
    for (const thrown of [plain, internal]) {
      const broken: CryptoProvider = {
        ...nodeProvider,
        x25519: () => {
          throw thrown;
        },
      };
      assert.throws(
        () => X.accept(broken, x),
        (e) => e === thrown,
      );
      assert.throws(
        () => X.offer(broken).complete(x),
        (e) => e === thrown,
      );
    }
  });

  it('both sides agree on the secret for every group; the hybrid secret is the ML-KEM secret, then the X25519 one (64 bytes)', () => {
    for (const g of GROUPS.values()) {
      const c = g.offer(nodeProvider);
      assert.equal(c.group, g.id);
      const s = g.accept(nodeProvider, c.publicKey);
      assert.equal(toHex(c.complete(s.share)), toHex(s.secret), g.name);
    }
    const xk = nodeProvider.x25519Generate();
    const c = H.offer(nodeProvider);
    const s = H.accept(nodeProvider, c.publicKey, () => xk);
    assert.equal(s.secret.length, 64);
    const dh = nodeProvider.x25519(xk, c.publicKey.subarray(MLKEM768.encapsulationKeyLen));
    assert.equal(toHex(s.secret.subarray(32)), toHex(dh));
    assert.equal(toHex(s.share.subarray(MLKEM768.ciphertextLen)), toHex(xk.publicKey));
  });

  it('groupName: the IANA name, or 0x and four hex digits for a code point we do not implement', () => {
    assert.equal(groupName(NamedGroup.x25519), 'x25519');
    assert.equal(groupName(NamedGroup.secp256r1), 'secp256r1');
    assert.equal(groupName(NamedGroup.X25519MLKEM768), 'X25519MLKEM768');
    assert.equal(groupName(0x18), '0x0018');
    assert.equal(groupName(0xfe0a), '0xfe0a');
    assert.equal(groupById(0x18), undefined);
    assert.equal(groupById(NamedGroup.secp256r1), P);
  });

  it('parseGroupName: spaces around the name, case, - and _ are ignored; anything else is undefined', () => {
    assert.equal(parseGroupName('  X25519 '), NamedGroup.x25519);
    assert.equal(parseGroupName('\tP-256\n'), NamedGroup.secp256r1);
    assert.equal(parseGroupName(' x25519_mlkem768'), NamedGroup.X25519MLKEM768);
    assert.equal(parseGroupName('x448'), undefined);
    assert.equal(parseGroupName(''), undefined);
  });
});
