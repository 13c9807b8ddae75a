/**
 * A client that closes its side during a terminated TLS 1.3 handshake
 * (found by the red-team probes in docs/robustness.md, "endAfterHello" /
 * "rstMidServerFlight"): after its FIN no Finished can come (RFC 8446 §4.4.4:
 * the handshake completes only with the client's Finished), yet the
 * connection, its slot under maxConnections and its backend connection were
 * all held until handshakeTimeout (10 s by default). The connection now ends
 * at the client's EOF, and a well-behaved client is served as before.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import tls from 'node:tls';
import { nodeProvider } from '../src/crypto/node.js';
import { TlsClient } from '../src/tls13/client.js';
import { certFor, startGateway } from './helpers.js';

const NAME = 'eof.example.test';
/** Far longer than the test may run: the connection must end on the EOF, not on this deadline. */
const HANDSHAKE_TIMEOUT = '120s';

describe('RFC 8446 §4.4.4 a client EOF before its Finished ends the terminated connection', () => {
  let g: Awaited<ReturnType<typeof startGateway>>;
  let backend: net.Server;
  /** The gateway's own sockets to the backend (same process): a half-closed one still counts. */
  const toBackend = () =>
    (process as unknown as { _getActiveHandles(): unknown[] })._getActiveHandles().filter((h) => h instanceof net.Socket && !h.destroyed && h.remotePort === (backend.address() as net.AddressInfo).port).length;
  before(async () => {
    const dir = mkdtempSync(join(tmpdir(), 'echgate-eof-'));
    const c = certFor(NAME);
    writeFileSync(join(dir, 'c.pem'), c.cert);
    writeFileSync(join(dir, 'c.key'), c.key);
    // A backend that keeps a half-closed connection open (allowHalfOpen, never ends its side), as
    // many do while they still have something to send: only echgate can close it.
    backend = net.createServer({ allowHalfOpen: true }, (s) => {
      s.on('error', () => {});
      s.on('data', (d) => {
        if (d.toString().includes('GET')) s.end('hello from the backend');
      });
    });
    await new Promise<void>((r) => backend.listen(0, '127.0.0.1', () => r()));
    g = await startGateway(`
tls: { certificates: [ { certFile: "${join(dir, 'c.pem')}", keyFile: "${join(dir, 'c.key')}" } ] }
entryPoints: { websecure: { address: "127.0.0.1:0", handshakeTimeout: ${HANDSHAKE_TIMEOUT} } }
tcp:
  routers: { t: { rule: "HostSNI(\`${NAME}\`)", service: s, tls: {} } }
  services: { s: { loadBalancer: { servers: [{ address: "127.0.0.1:${(backend.address() as net.AddressInfo).port}" }] } } }
`);
  });
  after(async () => {
    await g?.close();
    backend?.close();
  });

  /** Send a ClientHello, wait for the server's first bytes, then `abort` the connection; resolves when the gateway closed its side. */
  const abandon = (abort: (s: net.Socket) => void) =>
    new Promise<{ closedByGateway: boolean }>((resolve) => {
      const client = new TlsClient({ provider: nodeProvider, serverName: NAME, ca: certFor(NAME).cert });
      const s = net.connect({ port: g.port(), host: '127.0.0.1', allowHalfOpen: true });
      const guard = setTimeout(() => {
        s.destroy();
        resolve({ closedByGateway: false });
      }, 20_000);
      s.on('error', () => {});
      s.once('connect', () => {
        for (const r of client.hello()) s.write(r);
      });
      s.once('data', () => abort(s));
      s.resume();
      s.once('end', () => {
        clearTimeout(guard);
        s.destroy();
        resolve({ closedByGateway: true });
      });
    });

  const openConnections = () => Number(/echgate_open_connections\{entrypoint="websecure"\} (\d+)/.exec(g.gw.metrics.render())?.[1] ?? Number.NaN);

  it('FIN after the ClientHello, mid server flight: the gateway closes the connection and its backend connection', async () => {
    const runs = await Promise.all(Array.from({ length: 5 }, () => abandon((s) => s.end())));
    assert.deepEqual(
      runs.map((r) => r.closedByGateway),
      [true, true, true, true, true],
      `the gateway kept half-closed handshakes open (handshakeTimeout ${HANDSHAKE_TIMEOUT})`,
    );
    for (let i = 0; i < 100 && (openConnections() !== 0 || toBackend() > 0); i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal(openConnections(), 0, 'no connection left open');
    assert.equal(toBackend(), 0, "the gateway's backend connections are closed");
    assert.match(g.gw.metrics.render(), /echgate_connections_total\{entrypoint="websecure",outcome="tls_alert",router="t"\} 5/);
    assert.doesNotMatch(g.gw.metrics.render(), /echgate_handler_errors_total\{[^}]*\} [1-9]/);
  });

  it('a well-behaved client is still served, afterwards', async () => {
    const got = await new Promise<string>((resolve, reject) => {
      const c = tls.connect({ port: g.port(), host: '127.0.0.1', servername: NAME, rejectUnauthorized: false });
      const parts: Buffer[] = [];
      c.on('data', (d) => parts.push(d));
      c.once('secureConnect', () => c.write('GET / HTTP/1.0\r\n\r\n'));
      c.once('end', () => resolve(Buffer.concat(parts).toString()));
      c.once('error', reject);
    });
    assert.equal(got, 'hello from the backend');
    // Its close_notify and FIN after a completed handshake are no handshake failure (the engine's
    // state is closed by then, so "established" alone cannot tell).
    for (let i = 0; i < 100 && openConnections() !== 0; i++) await new Promise((r) => setTimeout(r, 20));
    assert.match(g.gw.metrics.render(), /echgate_peek_failures_total\{entrypoint="websecure",reason="tls_handshake"\} 5\n/);
    assert.match(g.gw.metrics.render(), /echgate_connections_total\{entrypoint="websecure",outcome="relayed",router="t"\} 1\n/);
  });
});
