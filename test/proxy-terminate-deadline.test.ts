/**
 * handshakeTimeout of a terminated connection waits in a shared deadline
 * list (proxy/terminate.ts `handshakeDeadlines`, proxy/deadlines.ts), not in
 * a node timer per connection. A connection must leave the list when its
 * handshake completes and when the client goes away mid-handshake (a reset:
 * no EOF), else the list would hold its engine until the deadline and the
 * deadline would then count a handshake_timeout for a connection long gone.
 * That the deadline itself fires is tls13-conformance's "handshakeTimeout" test.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import tls from 'node:tls';
import { nodeProvider } from '../src/crypto/node.js';
import { handshakeDeadlines } from '../src/proxy/terminate.js';
import { TlsClient } from '../src/tls13/client.js';
import { startTerminatingGateway } from './helpers.js';

const NAME = 'deadline.example.test';
/** The entrypoint's handshakeTimeout: the default, 10 s. */
const list = () => handshakeDeadlines.list(10_000);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const until = async (ok: () => boolean) => {
  for (let i = 0; i < 200 && !ok(); i++) await sleep(10);
};

describe('TLS termination: the handshake deadline list', { timeout: 60_000 }, () => {
  let g: Awaited<ReturnType<typeof startTerminatingGateway>>;
  let backend: net.Server;
  before(async () => {
    backend = net.createServer((s) => {
      s.on('error', () => {});
      s.on('data', () => s.end('y'));
    });
    await new Promise<void>((r) => backend.listen(0, '127.0.0.1', () => r()));
    g = await startTerminatingGateway(NAME, (backend.address() as net.AddressInfo).port);
  });
  after(async () => {
    await g?.close();
    backend?.close();
  });

  it('a completed handshake leaves the list while its connection stays open', async () => {
    const t = tls.connect({ port: g.port(), host: '127.0.0.1', servername: NAME, rejectUnauthorized: false, minVersion: 'TLSv1.3' });
    t.on('error', () => {});
    await new Promise<void>((r) => t.once('secureConnect', () => r()));
    // The client's Finished reaches the gateway just after secureConnect: wait until it was read.
    t.write('x');
    await new Promise<void>((r) => t.once('data', () => r()));
    assert.equal(list().size, 0, 'the established connection is still in the handshake deadline list');
    t.destroy();
  });

  it('a client reset during the handshake leaves the list at once, and no handshake_timeout is counted', async () => {
    const client = new TlsClient({ provider: nodeProvider, serverName: NAME });
    const s = net.connect(g.port(), '127.0.0.1');
    s.on('error', () => {});
    await new Promise<void>((r) => s.once('connect', () => r()));
    for (const rec of client.hello()) s.write(rec);
    // The server flight came back: the connection waits for the client's Finished, in the list.
    await new Promise<void>((r) => s.once('data', () => r()));
    await until(() => list().size === 1);
    assert.equal(list().size, 1, 'the handshake in progress waits in the list');
    s.resetAndDestroy();
    await until(() => list().size === 0);
    assert.equal(list().size, 0, 'the reset connection is still in the handshake deadline list');
    assert.doesNotMatch(g.gw.metrics.render(), /reason="handshake_timeout"/);
  });
});
