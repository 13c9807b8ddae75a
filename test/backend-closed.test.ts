/**
 * Conn.backendClosed (proxy/connection.ts, called from the relay's one
 * backend 'close' listener): once the backend had connected, its close ends
 * the client too. Where that is the only thing that closes the client: a
 * handler that gave up on the connection ends the client (an alert and a FIN)
 * and destroys the backend itself (proxy/terminate.ts failWith: the handshake
 * deadline destroys the client itself; a bad record is answered). A client that keeps its side open (allowHalfOpen,
 * or a stalled or hostile one that never answers the FIN) would otherwise
 * hold the connection, its slot under maxConnections, until idleTimeout.
 * (A client that half-closes first while the backend answers is not cut
 * short by it: by the time the backend's EOF is read, the client's write
 * queue is empty; checked by hand with 0.7–16 MiB answers to a slow reader.)
 */
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { nodeProvider } from '../src/crypto/node.js';
import { TlsClient } from '../src/tls13/client.js';
import { certFor, startGateway } from './helpers.js';

const NAME = 'closed.example.test';

describe('the backend closed by a failed handler closes the client that keeps its side open', () => {
  let g: Awaited<ReturnType<typeof startGateway>>;
  let backend: net.Server;
  before(async () => {
    const dir = mkdtempSync(join(tmpdir(), 'echgate-bclosed-'));
    const c = certFor(NAME);
    writeFileSync(join(dir, 'c.pem'), c.cert);
    writeFileSync(join(dir, 'c.key'), c.key);
    backend = net.createServer({ allowHalfOpen: true }, (s) => {
      s.on('error', () => {});
      s.resume();
    });
    await new Promise<void>((r) => backend.listen(0, '127.0.0.1', () => r()));
    // idleTimeout far longer than the test: only the handler's failure may end the connection.
    g = await startGateway(`
tls: { certificates: [ { certFile: "${join(dir, 'c.pem')}", keyFile: "${join(dir, 'c.key')}" } ] }
entryPoints: { websecure: { address: "127.0.0.1:0", handshakeTimeout: 300ms, transport: { respondingTimeouts: { idleTimeout: 600s } } } }
tcp:
  routers: { t: { rule: "HostSNI(\`${NAME}\`)", service: s, tls: {} } }
  services: { s: { loadBalancer: { servers: [{ address: "127.0.0.1:${(backend.address() as net.AddressInfo).port}" }] } } }
`);
  });
  after(async () => {
    await g?.close();
    backend?.close();
  });

  const openConnections = () => Number(/echgate_open_connections\{entrypoint="websecure"\} (\d+)/.exec(g.gw.metrics.render())?.[1] ?? Number.NaN);

  it('a record that does not decrypt: alert, FIN, and the connection is closed although the client never ends its side', async () => {
    const client = new TlsClient({ provider: nodeProvider, serverName: NAME, ca: certFor(NAME).cert });
    const s = net.connect({ port: g.port(), host: '127.0.0.1', allowHalfOpen: true });
    s.on('error', () => {});
    const ended = new Promise<void>((r) => s.once('end', () => r()));
    await new Promise<void>((r) => s.once('connect', () => r()));
    for (const r of client.hello()) s.write(r);
    // The server flight came back; instead of its Finished, the client sends a record no key opens
    // (RFC 8446 §5.2: bad_record_mac). The handler answers with the alert, ends the client and
    // destroys the backend; then the gateway must let go of the connection.
    await new Promise<void>((r) => s.once('data', () => r()));
    s.write(Buffer.concat([Buffer.from([23, 3, 3, 0, 32]), Buffer.alloc(32, 0xa5)]));
    s.resume();
    await ended;
    for (let i = 0; i < 100 && openConnections() !== 0; i++) await new Promise((r) => setTimeout(r, 20));
    const open = openConnections();
    s.destroy();
    assert.match(g.gw.metrics.render(), /echgate_tls_alerts_sent_total\{alert="bad_record_mac",entrypoint="websecure",router="[^"]+"\} 1/);
    assert.equal(open, 0, 'the failed handshake still holds its connection while the client keeps its side open');
  });
});
