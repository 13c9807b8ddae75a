/**
 * The eighth pass's shortcuts on the ECH path (docs/benchmarks.md, "ECH cost,
 * eighth pass") give the bytes the general code gives: ClientHelloInner
 * encoded by ech/server.ts behind room for its record headers (split mode
 * sends that buffer as is) against wire/tls's encodeClientHello and framing;
 * the JS HMAC's all-zero-key pad states and its two-MACs-one-key form against
 * OpenSSL.
 */
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { isSupportedSuite } from '../src/crypto/hpke.js';
import { nodeProvider } from '../src/crypto/node.js';
import { hmacSha256, hmacSha256Pair, JS_HMAC_MAX } from '../src/crypto/sha256.js';
import { decryptEch, InnerHello, prepareServerKey, rebuildInner } from '../src/ech/server.js';
import { EchgateError } from '../src/errors.js';
import { innerHelloRecords } from '../src/proxy/split.js';
import { restrictSuites } from '../src/proxy/tls12.js';
import { decodeECHConfigList } from '../src/wire/ech/config.js';
import { usableConfigs } from '../src/wire/ech/usable.js';
import { type ClientHello, decodeClientHelloMessage, encodeClientHello } from '../src/wire/tls/client-hello.js';
import { ExtensionType, HandshakeType, MAX_PLAINTEXT } from '../src/wire/tls/constants.js';
import { encodeOuterExtensions } from '../src/wire/tls/extensions.js';
import { encodeHandshake } from '../src/wire/tls/handshake.js';
import { frameHandshake, parseHelloRecords, RECORD_VERSION } from '../src/wire/tls/record.js';
import { json, vector } from './helpers.js';

const manifest = json('captures/manifest.json');
const openssl = (key: Uint8Array, ...parts: Uint8Array[]) => {
  const h = createHmac('sha256', key);
  for (const p of parts) h.update(p);
  return new Uint8Array(h.digest());
};
/** What the general code makes of a hello's fields. */
const generic = (h: ClientHello) =>
  encodeClientHello({ legacyVersion: h.legacyVersion, random: h.random, sessionId: h.sessionId, cipherSuites: h.cipherSuites, compressionMethods: h.compressionMethods, extensions: h.extensions });

describe('ClientHelloInner encoded with record headroom (ech/server.ts InnerHello)', () => {
  for (const c of manifest.captures.filter((x: { real_ech: boolean }) => x.real_ech)) {
    it(`${c.file}: raw is encodeClientHello's bytes; split mode's record is the general framing`, () => {
      const cfg = usableConfigs(decodeECHConfigList(new Uint8Array(Buffer.from(c.keys.echconfiglist_b64, 'base64'))), isSupportedSuite)[0]!;
      const key = prepareServerKey(nodeProvider, cfg, nodeProvider.x25519Private(new Uint8Array(Buffer.from(c.keys.private_key_hex, 'hex'))));
      const outer = decodeClientHelloMessage(parseHelloRecords(vector(`captures/${c.file}`))!.message);
      const r = decryptEch(nodeProvider, outer, { byConfigId: () => [key], all: () => [key] });
      assert.equal(r.status, 'accepted');
      if (r.status !== 'accepted') return;
      assert.ok(r.inner instanceof InnerHello);
      const want = generic(r.inner);
      const records = innerHelloRecords(r.inner);
      assert.deepEqual(r.inner.raw, want);
      assert.deepEqual(records, frameHandshake(encodeHandshake(HandshakeType.client_hello, want), MAX_PLAINTEXT, RECORD_VERSION));
      // raw read again after the record was framed: the headers went into the headroom, not into the hello.
      assert.deepEqual(r.inner.raw, want);
    });
  }

  it('regression: a hello viewed with restricted cipher suites (tls.options, proxy/tls12.ts) still encodes as the client sent it', () => {
    // The transcript hashes ClientHelloInner as sent (RFC 8446 §4.4.1); before, the view's raw re-encoded the
    // restricted suite list, and ECH accepted on a router with tls.options cipherSuites could never complete.
    const c = manifest.captures.find((x: { real_ech: boolean }) => x.real_ech);
    const cfg = usableConfigs(decodeECHConfigList(new Uint8Array(Buffer.from(c.keys.echconfiglist_b64, 'base64'))), isSupportedSuite)[0]!;
    const key = prepareServerKey(nodeProvider, cfg, nodeProvider.x25519Private(new Uint8Array(Buffer.from(c.keys.private_key_hex, 'hex'))));
    const outer = decodeClientHelloMessage(parseHelloRecords(vector(`captures/${c.file}`))!.message);
    for (const firstRaw of [false, true]) {
      const r = decryptEch(nodeProvider, outer, { byConfigId: () => [key], all: () => [key] });
      assert.equal(r.status, 'accepted');
      if (r.status !== 'accepted') return;
      const sent = generic(r.inner);
      if (firstRaw) assert.deepEqual(r.inner.raw, sent);
      const view = restrictSuites(r.inner, [0x1302]);
      assert.deepEqual(view.cipherSuites, [0x1302]);
      assert.deepEqual(view.raw, sent);
      assert.deepEqual(r.inner.raw, sent);
    }
  });

  // An inner hello rebuilt from a constructed encoding (as test/mutation-killers-ech.test.ts makes them).
  const outerOf = (extensions: { type: number; data: Uint8Array }[]): ClientHello => {
    const raw = encodeClientHello({ legacyVersion: 0x0303, random: new Uint8Array(32).fill(7), sessionId: new Uint8Array(32).fill(9), cipherSuites: [0x1301], compressionMethods: Uint8Array.of(0), extensions });
    return { ...decodeClientHelloMessage(encodeHandshake(HandshakeType.client_hello, raw)) };
  };
  const innerEch = { type: ExtensionType.encrypted_client_hello, data: Uint8Array.of(1) };
  const tls13 = { type: ExtensionType.supported_versions, data: Uint8Array.of(2, 0x03, 0x04) };
  const encodedInner = (extensions: { type: number; data: Uint8Array }[]) =>
    encodeClientHello({ legacyVersion: 0x0303, random: new Uint8Array(32).fill(7), sessionId: new Uint8Array(0), cipherSuites: [0x1301, 0x1302], compressionMethods: Uint8Array.of(0), extensions });

  it('an inner larger than one record: raw as encodeClientHello, records fragmented as frameHandshake does', () => {
    const big = { type: 0x7777, data: new Uint8Array(20000).fill(3) };
    const outer = outerOf([big]);
    const inner = rebuildInner(outer, encodedInner([innerEch, tls13, { type: ExtensionType.ech_outer_extensions, data: encodeOuterExtensions([0x7777]) }]));
    const want = generic(inner);
    assert.deepEqual(inner.raw, want);
    assert.deepEqual(innerHelloRecords(inner), frameHandshake(encodeHandshake(HandshakeType.client_hello, want), MAX_PLAINTEXT, RECORD_VERSION));
  });

  it('an inner whose extensions with the outer ones it references pass 2^16 − 1 bytes: ERR_ENCODE, as encodeClientHello', () => {
    const outer = outerOf([{ type: 0x7777, data: new Uint8Array(40000) }]);
    const inner = rebuildInner(outer, encodedInner([innerEch, tls13, { type: 0x7778, data: new Uint8Array(30000) }, { type: ExtensionType.ech_outer_extensions, data: encodeOuterExtensions([0x7777]) }]));
    const encodeError = (e: unknown) => e instanceof EchgateError && e.code === 'ERR_ENCODE';
    assert.throws(() => generic(inner), encodeError);
    assert.throws(() => inner.raw, encodeError);
    assert.throws(() => innerHelloRecords(inner), encodeError);
  });
});

describe('JS HMAC-SHA-256: the all-zero key and two MACs under one key (crypto/sha256.ts)', () => {
  const msg = new Uint8Array(100).map((_, i) => i * 13);
  it('all-zero keys of every length up to the block agree with OpenSSL (one precomputed pad state for all)', () => {
    for (let n = 0; n <= 64; n++) assert.deepEqual(hmacSha256(new Uint8Array(n), [msg]), openssl(new Uint8Array(n), msg), `zero key of ${n} bytes`);
  });
  it('a key that is zero but for one byte, at any position, is not the zero key', () => {
    for (const n of [1, 32, 48, 64]) {
      for (let i = 0; i < n; i++) {
        const key = new Uint8Array(n);
        key[i] = 1;
        assert.deepEqual(hmacSha256(key, [msg]), openssl(key, msg), `key of ${n} bytes, byte ${i} set`);
      }
    }
  });
  it('hmacSha256Pair(k, a, b) is HMAC(k, a) || HMAC(k, b), for any keys and messages', () => {
    const part = fc.uint8Array({ maxLength: JS_HMAC_MAX / 2 });
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 64 }), fc.nat(64).map((n) => new Uint8Array(n))), fc.array(part, { maxLength: 2 }), fc.array(part, { maxLength: 2 }), (key, a, b) => {
        const pair = hmacSha256Pair(key, a, b);
        assert.equal(pair.length, 64);
        assert.deepEqual(pair.subarray(0, 32), openssl(key, ...a));
        assert.deepEqual(pair.subarray(32), openssl(key, ...b));
        // And the single form right after, under another key: nothing of the pair's key carries over.
        assert.deepEqual(hmacSha256(Uint8Array.of(5), a), openssl(Uint8Array.of(5), ...a));
      }),
      { numRuns: 300 },
    );
  });
  it('hmacSha256Pair refuses what hmacSha256 refuses', () => {
    assert.throws(() => hmacSha256Pair(new Uint8Array(65), [], []), RangeError);
    assert.throws(() => hmacSha256Pair(new Uint8Array(32), [], [new Uint8Array(JS_HMAC_MAX + 1)]), RangeError);
  });
});
