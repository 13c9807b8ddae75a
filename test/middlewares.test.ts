/**
 * Traefik's TCP middlewares (ipAllowList, inFlightConn) on tcp.routers: a
 * refused connection is closed with nothing sent and counted with outcome
 * refused_by_middleware; configuration mistakes are errors naming the key.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, it } from 'node:test';
import { parseConfigText } from '../src/config/load.js';
import { ConfigError } from '../src/config/validate.js';
import { serverFirstBackend, sleep, startGateway, tlsAsk, tlsBackend } from './helpers.js';

/** Connect and wait for the greeting (admitted) or a close with nothing received (refused). */
function greet(port: number): Promise<{ sock: net.Socket; got: string; closed: Promise<void> }> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: '127.0.0.1', port });
    let got = '';
    const closed = new Promise<void>((r) => sock.once('close', () => r()));
    const t = setTimeout(() => reject(new Error('neither greeting nor close')), 5000);
    sock.on('data', (d) => {
      got += d.toString();
      if (got.includes('\n')) {
        clearTimeout(t);
        resolve({ sock, got, closed });
      }
    });
    sock.on('error', () => {});
    sock.once('close', () => {
      clearTimeout(t);
      resolve({ sock, got, closed });
    });
  });
}

const base = (port: number, mw: string, refs: string) => `
entryPoints:
  db: { address: "127.0.0.1:0" }
tcp:
  routers:
    db:
      rule: "HostSNI(\`*\`)"
      service: db
      middlewares: ${refs}
  middlewares:
${mw}
  services:
    db: { loadBalancer: { servers: [{ address: "127.0.0.1:${port}" }] } }
`;

describe('tcp.middlewares ipAllowList', () => {
  it('refuses (closes) a client outside sourceRange and counts refused_by_middleware', async () => {
    const db = await serverFirstBackend('HELLO\n');
    const g = await startGateway(base(db.port, '    lan: { ipAllowList: { sourceRange: ["10.0.0.0/8", "192.168.1.7"] } }', '[lan]'));
    try {
      const r = await greet(g.port('db'));
      assert.equal(r.got, '', 'nothing sent to a refused client');
      await sleep(50);
      assert.equal(db.connections, 0, 'the backend was never contacted');
      assert.equal(g.gw.metrics.connections.get({ entrypoint: 'db', router: 'db', outcome: 'refused_by_middleware' }), 1);
      const line = g.logs.find((l) => l.msg === 'connection refused by middleware');
      assert.equal(line?.middleware, 'lan');
      assert.equal(line?.reason, 'not_allowed');
    } finally {
      await g.close();
      await db.close();
    }
  });

  it('lets a client inside sourceRange through (127.0.0.0/8, referenced as NAME@file)', async () => {
    const db = await serverFirstBackend('HELLO\n');
    const g = await startGateway(base(db.port, '    local: { ipAllowList: { sourceRange: ["127.0.0.0/8"] } }', '["local@file"]'));
    try {
      const r = await greet(g.port('db'));
      assert.equal(r.got, 'HELLO\n');
      r.sock.destroy();
      await r.closed;
    } finally {
      await g.close();
      await db.close();
    }
  });

  it('applies to TLS passthrough routers too, after routing on the SNI', async () => {
    const app = await tlsBackend('app');
    const g = await startGateway(`
entryPoints:
  websecure: { address: "127.0.0.1:0" }
tcp:
  routers:
    open: { rule: "HostSNI(\`app.example.test\`)", service: app, tls: { passthrough: true } }
    closed: { rule: "HostSNI(\`admin.example.test\`)", service: app, tls: { passthrough: true }, middlewares: [office] }
  middlewares:
    office: { ipWhiteList: { sourceRange: ["203.0.113.0/24"] } }
  services:
    app: { loadBalancer: { servers: [{ address: "127.0.0.1:${app.port}" }] } }
`);
    try {
      assert.match(await tlsAsk(g.port(), 'app.example.test'), /^app app.example.test/);
      await assert.rejects(tlsAsk(g.port(), 'admin.example.test'));
      assert.equal(g.gw.metrics.connections.get({ entrypoint: 'websecure', router: 'closed', outcome: 'refused_by_middleware' }), 1);
    } finally {
      await g.close();
      await app.close();
    }
  });
});

describe('tcp.middlewares inFlightConn', () => {
  it('amount 2: the third simultaneous connection from one address is refused, a fourth after one closes is accepted', async () => {
    const db = await serverFirstBackend('HELLO\n');
    const g = await startGateway(base(db.port, '    two: { inFlightConn: { amount: 2 } }', '[two]'));
    try {
      const a = await greet(g.port('db'));
      const b = await greet(g.port('db'));
      assert.equal(a.got, 'HELLO\n');
      assert.equal(b.got, 'HELLO\n');
      const c = await greet(g.port('db'));
      assert.equal(c.got, '', 'third one refused');
      assert.equal(g.gw.metrics.connections.get({ entrypoint: 'db', router: 'db', outcome: 'refused_by_middleware' }), 1);
      a.sock.destroy();
      await a.closed;
      // The gateway sees the close asynchronously: wait until its slot is given back.
      for (let i = 0; i < 100 && g.gw.openConnections() > 1; i++) await sleep(20);
      const d = await greet(g.port('db'));
      assert.equal(d.got, 'HELLO\n', 'accepted once one closed');
      b.sock.destroy();
      d.sock.destroy();
      await Promise.all([b.closed, d.closed]);
    } finally {
      await g.close();
      await db.close();
    }
  });
});

describe('tcp.middlewares inFlightConn across a reload', () => {
  it('connections opened before a reload still count after it', async () => {
    const db = await serverFirstBackend('HELLO\n');
    const yaml = base(db.port, '    one: { inFlightConn: { amount: 1 } }', '[one]');
    const g = await startGateway(yaml);
    try {
      const a = await greet(g.port('db'));
      assert.equal(a.got, 'HELLO\n');
      // The same entrypoint address, so the listener is kept and only the contexts are rebuilt.
      await g.gw.apply(parseConfigText(yaml, 't.yml'));
      const b = await greet(g.port('db'));
      assert.equal(b.got, '', 'the slot taken before the reload is still taken');
      a.sock.destroy();
      await a.closed;
    } finally {
      await g.close();
      await db.close();
    }
  });
});

describe('tcp.middlewares configuration', () => {
  const problems = (yaml: string) => {
    try {
      parseConfigText(yaml, 't.yml');
    } catch (e) {
      assert.ok(e instanceof ConfigError);
      return e.problems.map((p) => `${p.path}: ${p.message}`).join('\n');
    }
    assert.fail('expected a ConfigError');
  };
  it('an unknown middleware name is an error naming the router key', () => {
    assert.match(problems(base(1, '    a: { inFlightConn: { amount: 1 } }', '[nope]')), /tcp\.routers\.db\.middlewares\[0\]: no middleware named "nope"/);
  });
  it('an unknown middleware kind is an error naming the middleware key', () => {
    assert.match(problems(base(1, '    a: { rateLimit: { average: 1 } }', '[a]')), /tcp\.middlewares\.a\.rateLimit: unknown TCP middleware/);
  });
  it('another provider (@docker) is refused', () => {
    assert.match(problems(base(1, '    a: { inFlightConn: { amount: 1 } }', '["a@docker"]')), /names another provider/);
  });
  it('bad sourceRange entries and amounts are errors', () => {
    assert.match(problems(base(1, '    a: { ipAllowList: { sourceRange: ["10.0.0.0/33"] } }', '[a]')), /tcp\.middlewares\.a\.ipAllowList\.sourceRange\[0\]/);
    assert.match(problems(base(1, '    a: { ipAllowList: { sourceRange: [] } }', '[a]')), /sourceRange: expected a list/);
    assert.match(problems(base(1, '    a: { inFlightConn: { amount: 0 } }', '[a]')), /tcp\.middlewares\.a\.inFlightConn\.amount/);
  });
  it('ipWhiteList is accepted with a deprecation warning', () => {
    const cfg = parseConfigText(base(1, '    a: { ipWhiteList: { sourceRange: ["127.0.0.1"] } }', '[a]'), 't.yml');
    assert.deepEqual(cfg.routers[0]!.middlewares, [{ kind: 'ipAllowList', name: 'a', sourceRange: ['127.0.0.1'] }]);
    assert.ok(cfg.warnings.some((w) => /ipWhiteList is deprecated/.test(w)));
  });
});

