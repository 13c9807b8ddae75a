/**
 * The key schedule makes two HMACs under one secret as one hmacSha256Pair on
 * the node provider (tls13/key-schedule.ts `pairable`): c/s hs traffic, c/s
 * ap traffic, and key/iv of every traffic secret. Those results must be the
 * bytes the plain path gives — checked here against the @noble provider,
 * which never pairs — for many random secrets and both SHA-256 suites, and
 * distinct secrets must give distinct keys (a pair that kept a key state
 * across calls would give the first secret's keys for the second).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { toHex } from '../src/bytes/util.js';
import { nobleProvider } from '../src/crypto/noble.js';
import { nodeProvider } from '../src/crypto/node.js';
import { HandshakeType } from '../src/wire/tls/constants.js';
import { encodeHandshake } from '../src/wire/tls/handshake.js';
import { HmacSha256Key, hmacSha256 } from '../src/crypto/sha256.js';
import { expandLabel, finishedVerifyData, finishedVerifyDataFrom, handshakeTrafficKeys, KeySchedule, suiteById, trafficKeys } from '../src/tls13/key-schedule.js';
import { Transcript } from '../src/tls13/transcript.js';

const rnd = (n: number) => new Uint8Array(randomBytes(n));

describe('key schedule: paired HMACs', () => {
  it('traffic keys (key and iv from one secret) equal the unpaired path, for AES-128-GCM and ChaCha20-Poly1305', () => {
    for (const id of [0x1301, 0x1303]) {
      const suite = suiteById(id)!;
      for (let i = 0; i < 50; i++) {
        const secret = rnd(32);
        const a = trafficKeys(nodeProvider, suite, secret);
        const b = trafficKeys(nobleProvider, suite, secret);
        assert.equal(toHex(a.key), toHex(b.key));
        assert.equal(toHex(a.iv), toHex(b.iv));
        assert.equal(a.key.length, suite.keyLen);
        assert.equal(a.iv.length, 12);
      }
    }
  });

  it('handshake and application secrets equal the unpaired path, and distinct secrets give distinct keys', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 30; i++) {
      const ecdhe = rnd(32);
      const chSh = rnd(32);
      const fin = rnd(32);
      const ours = new KeySchedule(nodeProvider, 'sha256');
      const ref = new KeySchedule(nobleProvider, 'sha256');
      const h1 = ours.handshake(ecdhe, chSh);
      const h2 = ref.handshake(ecdhe, chSh);
      assert.equal(toHex(h1.client), toHex(h2.client));
      assert.equal(toHex(h1.server), toHex(h2.server));
      assert.notEqual(toHex(h1.client), toHex(h1.server));
      const a1 = ours.application(fin);
      const a2 = ref.application(fin);
      assert.equal(toHex(a1.client), toHex(a2.client));
      assert.equal(toHex(a1.server), toHex(a2.server));
      assert.equal(toHex(a1.exporter), toHex(a2.exporter));
      const suite = suiteById(0x1301)!;
      for (const s of [h1.client, h1.server, a1.client, a1.server]) {
        const k = toHex(trafficKeys(nodeProvider, suite, s).key);
        assert.ok(!seen.has(k), 'two secrets gave the same traffic key');
        seen.add(k);
      }
    }
  });
});

describe('key schedule: three HMACs under one secret (tenth pass)', () => {
  it('handshakeTrafficKeys: key, iv and finished_key equal the unpaired path for every suite, and distinct secrets give distinct keys', () => {
    const seen = new Set<string>();
    for (const id of [0x1301, 0x1303, 0x1302]) {
      const suite = suiteById(id)!;
      const hl = suite.hash === 'sha384' ? 48 : 32;
      for (let i = 0; i < 40; i++) {
        const secret = rnd(hl);
        const ours = handshakeTrafficKeys(nodeProvider, suite, secret);
        const ref = trafficKeys(nobleProvider, suite, secret);
        assert.equal(toHex(ours.keys.key), toHex(ref.key));
        assert.equal(toHex(ours.keys.iv), toHex(ref.iv));
        assert.equal(ours.keys.key.length, suite.keyLen);
        assert.equal(ours.keys.iv.length, 12);
        assert.equal(toHex(ours.finishedKey), toHex(expandLabel(nobleProvider, suite.hash, secret, 'finished', new Uint8Array(0), hl)));
        // §4.4.4 verify_data from the expanded key equals the one-call form.
        const th = rnd(hl);
        assert.equal(toHex(finishedVerifyDataFrom(nodeProvider, suite.hash, ours.finishedKey, th)), toHex(finishedVerifyData(nobleProvider, suite.hash, secret, th)));
        for (const k of [ours.keys.key, ours.finishedKey]) {
          assert.ok(!seen.has(toHex(k)), 'two secrets gave the same key');
          seen.add(toHex(k));
        }
      }
    }
  });

  it('the handshake secret\'s "derived" made with the traffic secrets gives the reference master-derived secrets, handshake after handshake', () => {
    // One process-wide keyed state (the no-PSK "derived" constant) and one per handshake secret: a
    // state kept from an earlier handshake would give its secrets to the next one.
    for (let i = 0; i < 20; i++) {
      const ecdhe = rnd(i % 2 ? 32 : 64);
      const th = rnd(32);
      const ours = new KeySchedule(nodeProvider, 'sha256');
      const ref = new KeySchedule(nobleProvider, 'sha256');
      const h1 = ours.handshake(ecdhe, th);
      const h2 = ref.handshake(ecdhe, th);
      assert.equal(toHex(h1.client), toHex(h2.client));
      assert.equal(toHex(h1.server), toHex(h2.server));
      const fin = rnd(32);
      const a1 = ours.application(fin);
      const a2 = ref.application(fin);
      assert.equal(toHex(a1.client), toHex(a2.client));
      assert.equal(toHex(a1.server), toHex(a2.server));
      assert.equal(toHex(a1.exporter), toHex(a2.exporter));
      ours.forget();
      assert.throws(() => ours.application(fin));
    }
  });
});

describe('crypto/sha256.ts HmacSha256Key', () => {
  it('MACs as hmacSha256 under the same key, for keys of 0..64 bytes and messages across block boundaries; distinct keys differ', () => {
    for (const kl of [0, 1, 31, 32, 63, 64]) {
      const key = rnd(kl);
      const k = new HmacSha256Key(key);
      for (const n of [0, 1, 55, 56, 63, 64, 65, 119, 128, 200, 256]) {
        const m = rnd(n);
        assert.equal(toHex(k.mac([m])), toHex(hmacSha256(key, [m])), `key ${kl}, message ${n}`);
        assert.equal(toHex(k.mac([m.subarray(0, n >> 1), m.subarray(n >> 1)])), toHex(hmacSha256(key, [m])), `key ${kl}, message ${n} in parts`);
      }
      const other = new HmacSha256Key(rnd(32));
      assert.notEqual(toHex(other.mac([Uint8Array.of(1)])), toHex(k.mac([Uint8Array.of(1)])));
    }
  });
  it('forget() zeroes the pad states and refuses to MAC again; set() keys it anew; never set, it refuses', () => {
    const key = rnd(32);
    const k = new HmacSha256Key(key);
    k.mac([Uint8Array.of(1)]);
    k.forget();
    const st = k as unknown as { ki: Int32Array; ko: Int32Array };
    assert.ok(st.ki.every((x) => x === 0) && st.ko.every((x) => x === 0));
    assert.throws(() => k.mac([Uint8Array.of(1)]), RangeError);
    const other = rnd(32);
    k.set(other);
    assert.equal(toHex(k.mac([Uint8Array.of(1)])), toHex(hmacSha256(other, [Uint8Array.of(1)])));
    k.set(key);
    assert.equal(toHex(k.mac([Uint8Array.of(1)])), toHex(hmacSha256(key, [Uint8Array.of(1)])));
    assert.throws(() => new HmacSha256Key().mac([]), RangeError);
  });
});

describe('transcript: addMessage', () => {
  it('frames a body exactly as encodeHandshake then add() does, across growth of the buffer', () => {
    const a = new Transcript(nodeProvider, 'sha256');
    const b = new Transcript(nodeProvider, 'sha256');
    for (const n of [0, 1, 300, 1000, 5000, 70000]) {
      const body = rnd(n);
      a.addMessage(HandshakeType.client_hello, body);
      b.add(encodeHandshake(HandshakeType.client_hello, body));
      assert.equal(toHex(a.hash()), toHex(b.hash()));
      assert.deepEqual(a.snapshot().map(toHex), b.snapshot().map(toHex));
    }
  });
});
