/**
 * Health checks of load-balancer servers (Traefik's TCP healthCheck plus
 * echgate's unhealthyAfter / healthyAfter / tls): a server that stops
 * listening leaves the rotation after N failed checks and comes back after M
 * passed ones; a service with no server up closes the client at once
 * (backend_error) instead of trying a dead server. Real sockets on loopback.
 */
import assert from 'node:assert/strict';
import type net from 'node:net';
import tls from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { freePort } from '../src/cli/free-port.js';
import { probe } from '../src/proxy/health.js';
import { certFor, sleep, startGateway, tlsAsk } from './helpers.js';

/** A TLS backend that answers its name and can stop and start listening on its port. */
async function toggleBackend(name: string) {
  const seen = { count: 0 };
  const srv = tls.createServer({ ...certFor('app.example.test') }, (s) => {
    s.on('error', () => s.destroy());
    s.on('data', () => {
      seen.count++;
      s.write(`${name}\n`);
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const port = (srv.address() as net.AddressInfo).port;
  return {
    port,
    seen,
    stop: () => new Promise<void>((r) => srv.close(() => r())),
    start: () => new Promise<void>((r) => srv.listen(port, '127.0.0.1', () => r())),
  };
}

async function until(what: string, ok: () => boolean, ms = 10_000) {
  // A liveness bound only: the checks run every 50 ms.
  for (const end = Date.now() + ms; Date.now() < end; await sleep(25)) if (ok()) return;
  assert.fail(`${what}: not within ${ms} ms`);
}

describe('Traefik TCP healthCheck: servers leave and rejoin the rotation', () => {
  let a: Awaited<ReturnType<typeof toggleBackend>>;
  let b: Awaited<ReturnType<typeof toggleBackend>>;
  let g: Awaited<ReturnType<typeof startGateway>>;
  let deadPort = 0;
  before(async () => {
    a = await toggleBackend('A');
    b = await toggleBackend('B');
    deadPort = await freePort();
    g = await startGateway(`
entryPoints: { websecure: { address: "127.0.0.1:0" } }
tcp:
  routers:
    app: { rule: "HostSNI(\`app.example.test\`)", service: app, tls: { passthrough: true } }
    dead: { rule: "HostSNI(\`dead.example.test\`)", service: dead, tls: { passthrough: true } }
    mixed: { rule: "HostSNI(\`mixed.example.test\`)", service: mixed, tls: { passthrough: true } }
  services:
    app:
      loadBalancer:
        servers: [{ address: "127.0.0.1:${a.port}" }, { address: "127.0.0.1:${b.port}" }]
        healthCheck: { interval: 50ms, unhealthyInterval: 50ms, timeout: 1s, tls: true, unhealthyAfter: 2, healthyAfter: 3 }
    dead:
      loadBalancer:
        servers: [{ address: "127.0.0.1:${deadPort}" }]
        healthCheck: { interval: 50ms, timeout: 1s }
    mixed:
      weighted:
        services: [{ name: dead, weight: 5 }, { name: app, weight: 1 }]
`);
  });
  after(async () => {
    await g?.close();
    await a?.stop().catch(() => {});
    await b?.stop().catch(() => {});
  });

  const up = (port: number, service = 'app') => g.gw.metrics.backendUp.get({ service, server: `127.0.0.1:${port}` });
  const lines = (msg: string, port: number) => g.logs.filter((l) => l.msg.startsWith(msg) && l.server === `127.0.0.1:${port}`);

  it('a server that goes down is marked down after unhealthyAfter failed checks (one log line) and skipped', async () => {
    assert.equal(up(a.port), 1);
    await a.stop();
    await until('A marked down', () => up(a.port) === 0);
    const down = lines('backend server unhealthy', a.port);
    assert.equal(down.length, 1, 'state changes only');
    assert.equal(down[0]!.checks, 2, 'unhealthyAfter: 2');
    // Checks go on every 50 ms while it is down; still one line.
    await sleep(300);
    assert.equal(lines('backend server unhealthy', a.port).length, 1);
    const got = [];
    for (let i = 0; i < 6; i++) got.push(await tlsAsk(g.port(), 'app.example.test'));
    assert.deepEqual(got, Array(6).fill('B'), 'every connection goes to the server that is up');
  });

  it('it comes back after healthyAfter passed checks and takes connections again', async () => {
    await a.start();
    await until('A back up', () => up(a.port) === 1);
    const back = lines('backend server healthy', a.port);
    assert.equal(back.length, 1);
    assert.equal(back[0]!.checks, 3, 'healthyAfter: 3');
    const got = new Set<string>();
    for (let i = 0; i < 4; i++) got.add(await tlsAsk(g.port(), 'app.example.test'));
    assert.deepEqual([...got].sort(), ['A', 'B']);
  });

  it('a service with no healthy server fails fast: the client is closed with backend_error and a log line', async () => {
    await until('dead marked down', () => up(deadPort, 'dead') === 0);
    const before = g.gw.metrics.connections.get({ entrypoint: 'websecure', router: 'dead', outcome: 'backend_error' });
    await assert.rejects(tlsAsk(g.port(), 'dead.example.test'));
    await until('outcome counted', () => g.gw.metrics.connections.get({ entrypoint: 'websecure', router: 'dead', outcome: 'backend_error' }) === before + 1);
    assert.equal(g.gw.metrics.backendErrors.get({ service: 'dead', kind: 'unavailable' }), 1);
    assert.ok(g.logs.some((l) => l.msg === 'no healthy server in the service: client closed' && l.service === 'dead'));
    // No connect was tried: the "backend connect failed" line is for tried servers only.
    assert.equal(g.logs.filter((l) => l.msg === 'backend connect failed' && l.service === 'dead').length, 0);
  });

  it('a weighted service skips a child with no healthy server', async () => {
    await until('dead marked down', () => up(deadPort, 'dead') === 0);
    const got = [];
    for (let i = 0; i < 4; i++) got.push(await tlsAsk(g.port(), 'mixed.example.test'));
    assert.ok(got.every((x) => x === 'A' || x === 'B'), got.join());
  });

  it('the gauge is exported as echgate_backend_up{service,server}', () => {
    assert.match(g.gw.metrics.render(), new RegExp(`echgate_backend_up\\{server="127.0.0.1:${b.port}",service="app"\\} 1`));
  });
});

describe('health probe: TCP connect, TLS handshake, send/expect', () => {
  it('send/expect passes only when the reply contains expect; a closed port fails', async () => {
    const b = await toggleBackend('PONG');
    try {
      const hc = { intervalMs: 1000, unhealthyIntervalMs: 1000, timeoutMs: 2000, tls: true, unhealthyAfter: 1, healthyAfter: 1 };
      assert.equal(await probe({ host: '127.0.0.1', port: b.port }, hc), undefined);
      assert.equal(await probe({ host: '127.0.0.1', port: b.port }, { ...hc, send: 'PING', expect: 'PONG' }), undefined);
      assert.match((await probe({ host: '127.0.0.1', port: b.port }, { ...hc, send: 'PING', expect: 'NOPE', timeoutMs: 300 }))!, /no answer within 300 ms/);
      // A plain TCP probe with expect against a TLS server: the TLS server sends nothing first.
      assert.ok(await probe({ host: '127.0.0.1', port: b.port }, { ...hc, tls: false, expect: 'PONG', timeoutMs: 300 }));
      await b.stop();
      assert.ok(await probe({ host: '127.0.0.1', port: b.port }, hc));
    } finally {
      await b.stop().catch(() => {});
    }
  });
});
