/**
 * The JS HMAC-SHA-256 of src/crypto/sha256.ts (short HKDF inputs of the HPKE
 * and TLS 1.3 key schedules): RFC 4231 §4 vectors, agreement with OpenSSL's
 * HMAC and @noble's on every length around the SHA-256 block boundaries
 * (FIPS 180-4 §5.1.1 padding), and the refusals of what it does not handle.
 */
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { fromHex, toHex } from '../src/bytes/util.js';
import { nobleProvider } from '../src/crypto/noble.js';
import { nodeProvider } from '../src/crypto/node.js';
import { hmacSha256, JS_HMAC_MAX } from '../src/crypto/sha256.js';

const ascii = (s: string) => new TextEncoder().encode(s);
const fill = (n: number, b: number) => new Uint8Array(n).fill(b);
const openssl = (key: Uint8Array, ...parts: Uint8Array[]) => {
  const h = createHmac('sha256', key);
  for (const p of parts) h.update(p);
  return new Uint8Array(h.digest());
};

describe('RFC 4231 §4: HMAC-SHA-256 test cases', () => {
  const key4 = new Uint8Array(25).map((_, i) => i + 1);
  const cases: [string, Uint8Array, Uint8Array, string][] = [
    ['§4.2 test case 1', fill(20, 0x0b), ascii('Hi There'), 'b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7'],
    ['§4.3 test case 2', ascii('Jefe'), ascii('what do ya want for nothing?'), '5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843'],
    ['§4.4 test case 3', fill(20, 0xaa), fill(50, 0xdd), '773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe'],
    ['§4.5 test case 4', key4, fill(50, 0xcd), '82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b'],
  ];
  for (const [name, key, data, mac] of cases) {
    it(`${name}: the JS HMAC and the node provider`, () => {
      assert.equal(toHex(hmacSha256(key, [data])), mac);
      assert.equal(toHex(nodeProvider.hmac('sha256', key, data)), mac);
    });
  }
  it('§4.7 test case 6 (a key longer than the block): refused by the JS HMAC, computed by the provider through OpenSSL', () => {
    const key = fill(131, 0xaa);
    const data = ascii('Test Using Larger Than Block-Size Key - Hash Key First');
    assert.throws(() => hmacSha256(key, [data]), RangeError);
    assert.equal(toHex(nodeProvider.hmac('sha256', key, data)), '60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54');
  });
});

describe('FIPS 180-4 §5.1.1 padding: every message length up to JS_HMAC_MAX', () => {
  it('agrees with OpenSSL for keys of 0, 32, 63 and 64 bytes and messages of 0..JS_HMAC_MAX bytes', () => {
    const msg = new Uint8Array(JS_HMAC_MAX).map((_, i) => (i * 7 + 3) & 0xff);
    for (const kl of [0, 32, 63, 64]) {
      const key = new Uint8Array(kl).map((_, i) => 255 - i);
      for (let n = 0; n <= JS_HMAC_MAX; n++) {
        const m = msg.subarray(0, n);
        assert.deepEqual(hmacSha256(key, [m]), openssl(key, m), `key ${kl} message ${n}`);
      }
    }
  });
  it('a message given in parts hashes as their concatenation', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), fc.array(fc.uint8Array({ maxLength: 70 }), { maxLength: 4 }), (key, parts) => {
        assert.deepEqual(hmacSha256(key, parts), openssl(key, ...parts));
        assert.deepEqual(nodeProvider.hmac('sha256', key, ...parts), nobleProvider.hmac('sha256', key, ...parts));
      }),
      { numRuns: 300 },
    );
  });
  it('refuses a message longer than JS_HMAC_MAX; the provider sends it to OpenSSL', () => {
    const key = fill(32, 1);
    const long = fill(JS_HMAC_MAX + 1, 2);
    assert.throws(() => hmacSha256(key, [long]), RangeError);
    assert.throws(() => hmacSha256(key, [long.subarray(0, 200), long.subarray(200)]), RangeError);
    assert.deepEqual(nodeProvider.hmac('sha256', key, long), openssl(key, long));
    assert.deepEqual(nodeProvider.hmac('sha384', key, long), nobleProvider.hmac('sha384', key, long));
  });
  it('each output is a fresh array (callers keep key-schedule secrets)', () => {
    const a = hmacSha256(fromHex('00'), [fromHex('01')]);
    const b = hmacSha256(fromHex('00'), [fromHex('02')]);
    assert.notEqual(a.buffer, b.buffer);
    assert.notDeepEqual(a, b);
  });
});
