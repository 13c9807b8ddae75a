/**
 * The TLS 1.3 engines are total: whatever bytes arrive after the ClientHello,
 * the server (and the client) either make progress or fail the connection
 * with an EchgateError and the alert record to send — they never throw.
 */
import { echOffer } from '../src/ech/client.js';
import assert from 'node:assert/strict';
import { it } from 'node:test';
import fc from 'fast-check';
import { concat } from '../src/bytes/util.js';
import { nodeProvider } from '../src/crypto/node.js';
import { decryptEch, decryptSecondHello } from '../src/ech/server.js';
import { EchgateError } from '../src/errors.js';
import { loadCertificate } from '../src/tls13/certs.js';
import { TlsClient } from '../src/tls13/client.js';
import { TlsServer } from '../src/tls13/server.js';
import { decodeClientHelloMessage } from '../src/wire/tls/client-hello.js';
import { parseHelloRecords } from '../src/wire/tls/record.js';
import { certFor, memoryEchKey } from './helpers.js';

const c = certFor('fuzz.example.test');
const cert = loadCertificate(c.cert, c.key);

function pair() {
  const client = new TlsClient({ provider: nodeProvider, serverName: 'fuzz.example.test' });
  const server = new TlsServer({ provider: nodeProvider, random: (n) => nodeProvider.randomBytes(n), ephemeral: () => nodeProvider.x25519Generate(), certificate: () => cert });
  const ch = decodeClientHelloMessage(parseHelloRecords(client.hello()[0]!)!.message);
  const first = server.start(ch, 'fuzz.example.test', { offered: false, accepted: false });
  return { client, server, first };
}

interface Out {
  send: Uint8Array[];
  alert?: string;
  error?: unknown;
}

/** Every failure is a typed error, and its alert record (of `recordType`) ends what is sent. */
const typed = (fn: () => Out | Out[], recordType: number | number[] = 23) => {
  for (const o of [fn()].flat()) {
    if (o.error === undefined) continue;
    assert.ok(o.error instanceof EchgateError, `untyped: ${(o.error as Error)?.stack}`);
    if (o.alert) assert.ok([recordType].flat().includes(o.send.at(-1)![0]!), 'alerts after ServerHello are protected records');
  }
};

it('server: random bytes in place of the client Finished flight', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 400 }), (junk) => {
      const { server } = pair();
      typed(() => server.receive(junk));
    }),
    { numRuns: 300 },
  );
});

it('server: mutated client Finished records, split at random points', () => {
  fc.assert(
    fc.property(fc.nat(), fc.integer({ min: 0, max: 255 }), fc.nat(), (at, v, split) => {
      const { client, server, first } = pair();
      let fin: Uint8Array | undefined;
      for (const r of first.send) {
        const o = client.receive(r);
        if (o.send.length) fin = o.send[0];
      }
      const m = fin!.slice();
      m[at % m.length] = v;
      const k = split % (m.length + 1);
      typed(() => [server.receive(m.subarray(0, k)), server.receive(m.subarray(k))]);
    }),
    { numRuns: 300 },
  );
});

it('client: mutated server flights fail only with a typed error and an alert, never a throw', () => {
  fc.assert(
    fc.property(fc.nat(), fc.integer({ min: 0, max: 255 }), (at, v) => {
      const { client, first } = pair();
      const all = new Uint8Array(first.send.reduce((n, r) => n + r.length, 0));
      let o = 0;
      for (const r of first.send) {
        all.set(r, o);
        o += r.length;
      }
      all[at % all.length] = v;
      // A mutated ServerHello fails before the client has keys: then its alert is plaintext.
      typed(() => client.receive(all), [21, 23]);
    }),
    { numRuns: 300 },
  );
});

it('server, ECH accepted then HelloRetryRequest: a mutated second ClientHelloOuter gives a typed error with a plaintext alert, never a throw', () => {
  const { config, lookup } = memoryEchKey(4);
  fc.assert(
    fc.property(fc.nat(), fc.integer({ min: 0, max: 255 }), (at, v) => {
      const client = new TlsClient({ provider: nodeProvider, serverName: 'fuzz.example.test', ech: echOffer(config), withholdKeyShare: true });
      const r = decryptEch(nodeProvider, decodeClientHelloMessage(parseHelloRecords(client.hello()[0]!)!.message), lookup);
      assert.equal(r.status, 'accepted');
      if (r.status !== 'accepted') return;
      const server = new TlsServer({ provider: nodeProvider, random: (n) => nodeProvider.randomBytes(n), ephemeral: () => nodeProvider.x25519Generate(), certificate: () => cert });
      const hrr = server.start(r.inner, 'fuzz.example.test', { offered: true, accepted: true, decryptSecond: (o) => decryptSecondHello(r, o) });
      const ch2 = client.receive(concat(...hrr.send)).send;
      const m = concat(...ch2);
      m[at % m.length] = v;
      // Before ServerHello, alerts are plaintext records.
      typed(() => server.receive(m), 21);
    }),
    { numRuns: 200 },
  );
});
