/**
 * A client whose EOF is read before its relay starts (proxy/relay.ts
 * readClient): on a server-speaks-first entrypoint (every router
 * ``HostSNI(`*`)`` without `tls`, proxy/connection.ts `immediate`) nothing
 * peeks, so a client that connects and closes at once (a health check's bare
 * TCP connect) is read to its end while the backend is still connecting, and
 * its 'end' is emitted before the relay listens for it. Before the fix that
 * connection was never closed: it stayed counted against `maxConnections`
 * until idleTimeout (180 s by default), so a few health checks filled the cap
 * (found by helper "par", 2026-12-03).
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { sleep, startGateway } from './helpers.js';

describe('relay: a client EOF read before the relay starts', () => {
  let be: net.Server;
  let g: Awaited<ReturnType<typeof startGateway>>;
  const backendEnds: number[] = [];

  before(async () => {
    // Speaks first, like SMTP; counts the EOFs the proxy passes on.
    be = net.createServer({ allowHalfOpen: true }, (s) => {
      s.write('220 ready\r\n');
      s.on('error', () => {});
      s.on('data', () => {});
      s.on('end', () => {
        backendEnds.push(Date.now());
        s.end();
      });
    });
    await new Promise<void>((r) => be.listen(0, '127.0.0.1', () => r()));
    const bePort = (be.address() as net.AddressInfo).port;
    g = await startGateway(`
entryPoints: { smtp: { address: "127.0.0.1:0", maxConnections: 2 } }
tcp:
  routers:
    r: { entryPoints: [smtp], rule: "HostSNI(\`*\`)", service: s }
  services: { s: { loadBalancer: { servers: [{ address: "127.0.0.1:${bePort}" }] } } }
`);
  });
  after(async () => {
    await g.close();
    be.close();
  });

  it('reaches the backend as EOF, the connection ends, and the cap is not used up by closed clients', async () => {
    const port = g.port('smtp');
    // Three times the cap of clients that connect and close at once, one after the other: each one's EOF
    // must reach the backend (and its connection end) before the next comes, or the cap refuses the next.
    for (let i = 0; i < 6; i++) {
      await new Promise<void>((r) => {
        const s = net.connect(port, '127.0.0.1', () => {
          s.destroy();
          r();
        });
        s.on('error', () => {});
      });
      for (let w = 0; w < 300 && backendEnds.length < i + 1; w++) await sleep(10);
      assert.equal(backendEnds.length, i + 1, `the early EOF of client ${i + 1} reached the backend`);
    }
    for (let w = 0; w < 300 && g.gw.openConnections() !== 0; w++) await sleep(10);
    assert.equal(g.gw.openConnections(), 0, "no connection left open");
    // A seventh client is served: the closed ones no longer hold the entrypoint's two places.
    const greeting = await new Promise<string>((resolve, reject) => {
      const s = net.connect(port, '127.0.0.1');
      let got = '';
      const t = setTimeout(() => {
        s.destroy();
        reject(new Error(`no greeting within 3 s (got ${JSON.stringify(got)})`));
      }, 3000);
      s.on('data', (d) => {
        got += d;
        if (got.includes('\n')) {
          clearTimeout(t);
          s.destroy();
          resolve(got);
        }
      });
      s.on('error', reject);
    });
    assert.equal(greeting, '220 ready\r\n');
  });
});
