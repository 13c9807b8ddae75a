/**
 * The TLS 1.3 engines are total: whatever bytes arrive after the ClientHello,
 * the server (and the client) either make progress or throw an EchgateError
 * carrying an alert — never anything else.
 */
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

const typed = (fn: () => unknown) => {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof EchgateError, `untyped: ${(e as Error)?.stack}`);
    const alert = (e as unknown as { sendAlert?: Uint8Array }).sendAlert;
    if (alert) assert.equal(alert[0], 23, 'alerts after ServerHello are protected records');
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
      typed(() => {
        server.receive(m.subarray(0, k));
        server.receive(m.subarray(k));
      });
    }),
    { numRuns: 300 },
  );
});

it('client: mutated server flights never throw anything but EchgateError', () => {
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
      typed(() => client.receive(all));
    }),
    { numRuns: 300 },
  );
});

it('server, ECH accepted then HelloRetryRequest: a mutated second ClientHelloOuter gives a typed error with a plaintext alert, never anything else', () => {
  const { config, lookup } = memoryEchKey(4);
  fc.assert(
    fc.property(fc.nat(), fc.integer({ min: 0, max: 255 }), (at, v) => {
      const client = new TlsClient({ provider: nodeProvider, serverName: 'fuzz.example.test', ech: config, withholdKeyShare: true });
      const r = decryptEch(nodeProvider, decodeClientHelloMessage(parseHelloRecords(client.hello()[0]!)!.message), lookup);
      assert.equal(r.status, 'accepted');
      if (r.status !== 'accepted') return;
      const server = new TlsServer({ provider: nodeProvider, random: (n) => nodeProvider.randomBytes(n), ephemeral: () => nodeProvider.x25519Generate(), certificate: () => cert });
      const hrr = server.start(r.inner, 'fuzz.example.test', { offered: true, accepted: true, decryptSecond: (o) => decryptSecondHello(r, o) });
      const ch2 = client.receive(concat(...hrr.send)).send;
      const m = concat(...ch2);
      m[at % m.length] = v;
      try {
        server.receive(m);
      } catch (e) {
        assert.ok(e instanceof EchgateError, `untyped: ${(e as Error)?.stack}`);
        const alert = (e as unknown as { sendAlert?: Uint8Array }).sendAlert;
        if (alert) assert.equal(alert[0], 21, 'before ServerHello, alerts are plaintext');
      }
    }),
    { numRuns: 200 },
  );
});
