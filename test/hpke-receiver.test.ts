/**
 * The HPKE receiver's one-pass form (crypto/hpke.ts baseReceiverSha256, taken
 * when the base-mode hashes are given, as ECH gives them): the RFC 9180
 * vectors through it, and the same context as the generic decap +
 * KeySchedule for random keys (docs/benchmarks.md, "ECH cost, ninth pass").
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { fromHex, toHex } from '../src/bytes/util.js';
import { baseModeHashes, deriveX25519KeyPair, setupReceiver, setupSender } from '../src/crypto/hpke.js';
import { nobleProvider } from '../src/crypto/noble.js';
import { nodeProvider } from '../src/crypto/node.js';
import { hmacSha256, hmacSha256Into, hmacSha256Pair, hmacSha256PairInto } from '../src/crypto/sha256.js';
import { EchgateError } from '../src/errors.js';
import { json } from './helpers.js';

const vectors = json<any[]>('hpke-x25519.json');
const p = nodeProvider;

describe('HPKE base-mode receiver with precomputed hashes', () => {
  const base = vectors.filter((v) => v.mode === 0 && v.kdf_id === 1);
  it('covers the base-mode HKDF-SHA256 vectors', () => assert.ok(base.length >= 3));
  for (const v of base) {
    it(`RFC 9180 vector: kdf ${v.kdf_id} aead 0x${v.aead_id.toString(16)}`, () => {
      const suite = { kdfId: v.kdf_id, aeadId: v.aead_id };
      const info = fromHex(v.info);
      const skR = deriveX25519KeyPair(p, fromHex(v.ikmR));
      const r = setupReceiver(p, suite, fromHex(v.enc), skR, info, baseModeHashes(p, suite, info));
      if (v.aead_id !== 0xffff) {
        assert.equal(toHex(r.key), v.key);
        assert.equal(toHex(r.baseNonce), v.base_nonce);
        for (const e of v.encryptions) assert.equal(toHex(r.open(fromHex(e.aad), fromHex(e.ct))), e.pt);
      }
      for (const x of v.exports) assert.equal(toHex(r.export(fromHex(x.exporter_context), x.L)), x.exported_value);
    });
  }

  it('gives the generic path’s context for random keys, suites and info', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.uint8Array({ maxLength: 200 }), fc.constantFrom(1, 2, 3), fc.uint8Array({ maxLength: 40 }), (ikm, info, aeadId, pt) => {
        const suite = { kdfId: 1, aeadId };
        const skR = deriveX25519KeyPair(p, ikm);
        const s = setupSender(p, suite, skR.publicKey, info);
        const fast = setupReceiver(p, suite, s.enc, skR, info, baseModeHashes(p, suite, info));
        const generic = setupReceiver(p, suite, s.enc, skR, info);
        const noble = setupReceiver(nobleProvider, suite, s.enc, deriveX25519KeyPair(nobleProvider, ikm), info, baseModeHashes(nobleProvider, suite, info));
        assert.equal(toHex(fast.key), toHex(generic.key));
        assert.equal(toHex(fast.baseNonce), toHex(generic.baseNonce));
        assert.equal(toHex(fast.key), toHex(noble.key));
        assert.equal(toHex(fast.export(info, 17)), toHex(generic.export(info, 17)));
        const ct = s.ctx.seal(info, pt);
        assert.equal(toHex(fast.open(info, ct)), toHex(pt));
        // The next sequence number too (a second ClientHelloOuter after HelloRetryRequest, RFC 9849 §7.1.1).
        const ct2 = s.ctx.seal(info, pt);
        assert.equal(toHex(fast.open(info, ct2)), toHex(pt));
      }),
      { numRuns: 60 },
    );
  });

  it('refuses an enc that is not 32 bytes (ERR_HPKE), as the generic path does', () => {
    const suite = { kdfId: 1, aeadId: 1 };
    const info = new Uint8Array(4);
    const skR = deriveX25519KeyPair(p, new Uint8Array(32).fill(3));
    for (const n of [0, 31, 33]) {
      assert.throws(
        () => setupReceiver(p, suite, new Uint8Array(n).fill(9), skR, info, baseModeHashes(p, suite, info)),
        (e: unknown) => e instanceof EchgateError && e.code === 'ERR_HPKE' && /enc must be 32 bytes/.test(e.message),
      );
    }
  });

  it('leaves two contexts from one call independent (the output is per call, only the scratch is shared)', () => {
    const suite = { kdfId: 1, aeadId: 1 };
    const info = new Uint8Array(3);
    const skR = deriveX25519KeyPair(p, new Uint8Array(32).fill(5));
    const h = baseModeHashes(p, suite, info);
    const a = setupSender(p, suite, skR.publicKey, info);
    const b = setupSender(p, suite, skR.publicKey, info);
    const ra = setupReceiver(p, suite, a.enc, skR, info, h);
    const ka = toHex(ra.key);
    const rb = setupReceiver(p, suite, b.enc, skR, info, h);
    assert.equal(toHex(ra.key), ka);
    assert.notEqual(toHex(rb.key), ka);
  });
});

describe('sha256.ts MACs into a given array', () => {
  it('hmacSha256Into and hmacSha256PairInto write what hmacSha256 and hmacSha256Pair return', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), fc.uint8Array({ maxLength: 100 }), fc.uint8Array({ maxLength: 100 }), fc.nat(8), (key, a, b, at) => {
        const out = new Uint8Array(at + 64);
        hmacSha256Into(key, [a, b], out, at);
        assert.equal(toHex(out.subarray(at, at + 32)), toHex(hmacSha256(key, [a, b])));
        const two = new Uint8Array(at + 64);
        hmacSha256PairInto(key, [a], [b], two, at);
        assert.equal(toHex(two.subarray(at)), toHex(hmacSha256Pair(key, [a], [b])));
      }),
    );
  });
  it('refuses an output without room (RangeError), writing nothing', () => {
    const out = new Uint8Array(40).fill(7);
    assert.throws(() => hmacSha256Into(new Uint8Array(32), [new Uint8Array(1)], out, 9), RangeError);
    assert.throws(() => hmacSha256PairInto(new Uint8Array(32), [new Uint8Array(1)], [new Uint8Array(1)], new Uint8Array(63), 0), RangeError);
    assert.ok(out.every((x) => x === 7));
  });
});
