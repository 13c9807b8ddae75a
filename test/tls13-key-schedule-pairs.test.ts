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
import { KeySchedule, suiteById, trafficKeys } from '../src/tls13/key-schedule.js';
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
