/**
 * A TLS 1.2 terminated handshake that does not complete within the
 * entrypoint's handshakeTimeout is counted `handshake_timeout`, as the TLS 1.3
 * path counts it (docs/configuration.md handshakeTimeout and the outcome
 * table), not `tls_alert` / peek_failures{reason="tls_handshake"}; and the
 * deadline is handshakeTimeout, not clientHelloTimeout.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import tls from 'node:tls';
import { certFor, startGateway } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'echgate-tls12-timeout-'));
const c = certFor('app.example.test');
writeFileSync(join(dir, 'app.crt'), c.cert);
writeFileSync(join(dir, 'app.key'), c.key);

/** A real TLS 1.2 ClientHello, as node:tls sends it (taken from a throwaway listener). */
async function tls12Hello(): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer((s) => {
      s.once('data', (d: Buffer) => {
        resolve(d);
        s.destroy();
        srv.close();
      });
    });
    srv.listen(0, '127.0.0.1', () => {
      const t = tls.connect({ port: (srv.address() as net.AddressInfo).port, host: '127.0.0.1', servername: 'app.example.test', maxVersion: 'TLSv1.2', rejectUnauthorized: false });
      t.on('error', () => {});
    });
    srv.on('error', reject);
  });
}

describe('TLS 1.2 termination: handshakeTimeout', { timeout: 30_000 }, () => {
  let g: Awaited<ReturnType<typeof startGateway>>;
  let backend: net.Server;
  before(async () => {
    backend = net.createServer((s) => s.on('error', () => {}).end('hi\n'));
    await new Promise<void>((r) => backend.listen(0, '127.0.0.1', () => r()));
    g = await startGateway(`
tls:
  certificates: [{ certFile: "${join(dir, 'app.crt')}", keyFile: "${join(dir, 'app.key')}" }]
  options:
    old: { maxVersion: VersionTLS12 }
entryPoints: { websecure: { address: "127.0.0.1:0", clientHelloTimeout: 5s, handshakeTimeout: 600ms } }
tcp:
  routers:
    app: { rule: "HostSNI(\`app.example.test\`)", service: b, tls: { options: old } }
  services: { b: { loadBalancer: { servers: [{ address: "127.0.0.1:${(backend.address() as net.AddressInfo).port}" }] } } }
`);
  });
  after(async () => {
    await g?.close();
    backend?.close();
  });

  it('a ClientHello then silence: cut at handshakeTimeout and counted handshake_timeout, not tls_alert', async () => {
    const hello = await tls12Hello();
    const s = net.connect(g.port(), '127.0.0.1');
    s.on('error', () => {});
    await new Promise<void>((r) => s.once('connect', () => r()));
    const t0 = performance.now();
    s.write(hello);
    s.resume();
    await new Promise<void>((r) => s.once('close', () => r()));
    const ms = performance.now() - t0;
    // handshakeTimeout 600 ms, not clientHelloTimeout 5 s.
    assert.ok(ms >= 550 && ms < 4000, `closed after ${Math.round(ms)} ms`);
    await new Promise((r) => setTimeout(r, 50));
    const m = g.gw.metrics;
    assert.equal(m.connections.get({ entrypoint: 'websecure', router: 'app', outcome: 'handshake_timeout' }), 1, m.render());
    assert.equal(m.connections.get({ entrypoint: 'websecure', router: 'app', outcome: 'tls_alert' }), 0);
    assert.equal(m.peekFailures.get({ entrypoint: 'websecure', reason: 'handshake_timeout' }), 1);
    assert.equal(m.peekFailures.get({ entrypoint: 'websecure', reason: 'tls_handshake' }), 0);
  });
});
