/**
 * RFC 9180 Appendix A vectors (DHKEM(X25519, HKDF-SHA256) subset), run in
 * full with both providers, and node-vs-noble differential tests.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { fromHex, toHex } from '../src/bytes/util.js';
import { hkdfExpand, hkdfExtract } from '../src/crypto/hkdf.js';
import { deriveX25519KeyPair, setupReceiver, setupSender } from '../src/crypto/hpke.js';
import { nobleProvider } from '../src/crypto/noble.js';
import { nodeProvider } from '../src/crypto/node.js';
import { EchgateError } from '../src/errors.js';
import { json } from './helpers.js';

const vectors = json<any[]>('hpke-x25519.json');

describe('RFC 9180 test vectors (X25519 subset: 16 entries)', () => {
  it('has the expected size', () => {
    assert.equal(vectors.length, 16);
    assert.equal(vectors.reduce((n, v) => n + v.encryptions.length, 0), 3084);
    assert.equal(vectors.reduce((n, v) => n + v.exports.length, 0), 48);
  });
  for (const provider of [nodeProvider, nobleProvider]) {
    for (const v of vectors) {
      it(`${provider.name}: mode ${v.mode} kdf ${v.kdf_id} aead 0x${v.aead_id.toString(16)}`, () => {
        const p = provider;
        const skE = deriveX25519KeyPair(p, fromHex(v.ikmE));
        const skR = deriveX25519KeyPair(p, fromHex(v.ikmR));
        assert.equal(toHex(skE.publicKey), v.pkEm);
        assert.equal(toHex(skR.publicKey), v.pkRm);
        const skS = v.ikmS ? deriveX25519KeyPair(p, fromHex(v.ikmS)) : undefined;
        if (skS) assert.equal(toHex(skS.publicKey), v.pkSm);
        const o = { mode: v.mode, psk: v.psk ? fromHex(v.psk) : undefined, pskId: v.psk_id ? fromHex(v.psk_id) : undefined };
        const suite = { kdfId: v.kdf_id, aeadId: v.aead_id };
        const info = fromHex(v.info);
        const s = setupSender(p, suite, fromHex(v.pkRm), info, { ...o, skE, skS });
        assert.equal(toHex(s.enc), v.enc);
        assert.equal(toHex(s.sharedSecret), v.shared_secret);
        const r = setupReceiver(p, suite, s.enc, skR, info, { ...o, pkS: skS?.publicKey });
        if (v.aead_id !== 0xffff) {
          assert.equal(toHex(r.key), v.key);
          assert.equal(toHex(r.baseNonce), v.base_nonce);
        }
        for (const e of v.encryptions) {
          const ct = s.ctx.seal(fromHex(e.aad), fromHex(e.pt));
          assert.equal(toHex(ct), e.ct);
          assert.equal(toHex(r.open(fromHex(e.aad), ct)), e.pt);
        }
        if (v.aead_id === 0xffff) assert.throws(() => r.seal(new Uint8Array(0), new Uint8Array(0)), EchgateError);
        for (const x of v.exports) {
          assert.equal(toHex(r.export(fromHex(x.exporter_context), x.L)), x.exported_value);
          assert.equal(toHex(s.ctx.export(fromHex(x.exporter_context), x.L)), x.exported_value);
        }
      });
    }
  }
});

describe('HPKE misuse and bad input', () => {
  const skR = nodeProvider.x25519Generate();
  const suite = { kdfId: 1, aeadId: 1 };
  it('wrong enc length, small-order enc, tampered ciphertext, unsupported suite', () => {
    assert.throws(() => setupReceiver(nodeProvider, suite, new Uint8Array(31), skR, new Uint8Array(0)), (e: EchgateError) => e.code === 'ERR_HPKE');
    assert.throws(() => setupReceiver(nodeProvider, suite, new Uint8Array(32), skR, new Uint8Array(0)), (e: EchgateError) => e.code === 'ERR_CRYPTO_ARG');
    const s = setupSender(nodeProvider, suite, skR.publicKey, new Uint8Array(0));
    const ct = s.ctx.seal(new Uint8Array(0), new Uint8Array([1, 2, 3]));
    ct[0]! ^= 1;
    const r = setupReceiver(nodeProvider, suite, s.enc, skR, new Uint8Array(0));
    assert.throws(() => r.open(new Uint8Array(0), ct), (e: EchgateError) => e.code === 'ERR_AEAD_OPEN');
    assert.throws(() => setupSender(nodeProvider, { kdfId: 9, aeadId: 1 }, skR.publicKey, new Uint8Array(0)), (e: EchgateError) => e.code === 'ERR_HPKE');
    assert.throws(() => setupSender(nodeProvider, suite, skR.publicKey, new Uint8Array(0), { mode: 1 }), (e: EchgateError) => e.code === 'ERR_HPKE');
  });
});

describe('differential: node:crypto and @noble agree', () => {
  it('X25519 on random keys', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.uint8Array({ minLength: 32, maxLength: 32 }), (a, b) => {
        const na = nodeProvider.x25519Private(a);
        const ba = nobleProvider.x25519Private(a);
        assert.deepEqual(na.publicKey, ba.publicKey);
        const pk = nobleProvider.x25519Private(b).publicKey;
        assert.deepEqual(nodeProvider.x25519(na, pk), nobleProvider.x25519(ba, pk));
      }),
      { numRuns: 100 },
    );
  });
  it('HKDF-SHA256/384 on random inputs', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 80 }), fc.uint8Array({ maxLength: 80 }), fc.uint8Array({ maxLength: 40 }), fc.integer({ min: 1, max: 200 }), (salt, ikm, info, L) => {
        for (const h of ['sha256', 'sha384'] as const) {
          const a = hkdfExpand(nodeProvider, h, hkdfExtract(nodeProvider, h, salt, ikm), info, L);
          const b = hkdfExpand(nobleProvider, h, hkdfExtract(nobleProvider, h, salt, ikm), info, L);
          assert.deepEqual(a, b);
        }
      }),
      { numRuns: 200 },
    );
  });
});
