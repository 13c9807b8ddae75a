/**
 * The dashboard's JSON API and its access rules (cli/dashboard.ts), over real
 * HTTP on loopback: what it shows, what it never shows (an inner SNI, RFC
 * 9849 §1, unless log.innerSni; ECH route names unless log.echRoutes), who
 * may read it (loopback clients and Host, RFC 7617 basic auth) and the
 * bounds of its error ring.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { Dashboard, ErrorRing, localView, parseLabels, teeLog } from '../src/cli/dashboard.js';
import { parseConfigText } from '../src/config/load.js';
import type { Config } from '../src/config/types.js';
import { generateKey } from '../src/keys/manager.js';
import { Gateway } from '../src/proxy/gateway.js';
import { caAndLeaf, ROOT, tlsAsk } from './helpers.js';

const W = mkdtempSync(join(tmpdir(), 'echgate-dashboard-'));
const keysDir = join(W, 'keys');
mkdirSync(keysDir, { mode: 0o700 });
caAndLeaf(W, ['public.example.test', 'secret.example.test', 'app.example.test']);
const key = generateKey(keysDir, { publicName: 'public.example.test' });
writeFileSync(join(W, 'auth'), 'admin:s3cret pass\n', { mode: 0o600 });

const yaml = (log: string, dashboard: string) => `
log: ${log}
metrics: { address: "127.0.0.1:0", dashboard: ${dashboard} }
tls: { certificates: [{ certFile: "${join(W, 'server.pem')}", keyFile: "${join(W, 'server.key')}" }] }
ech: { keysDir: "${keysDir}", rotation: { every: 24h, grace: 1h, publish: embedded } }
dns: { address: "127.0.0.1:0", ttl: 60, names: { public.example.test: { a: [127.0.0.1] } } }
entryPoints: { websecure: { address: "127.0.0.1:0" } }
tcp:
  routers:
    app: { rule: "HostSNI(\`app.example.test\`)", service: app_svc, tls: { passthrough: true } }
    term: { rule: "HostSNI(\`public.example.test\`)", service: app_svc, tls: {} }
    hidden_router: { rule: "HostSNI(\`secret.example.test\`)", requireECH: true, service: secret_svc, tls: {} }
  services:
    app_svc: { loadBalancer: { servers: [{ address: "127.0.0.1:9" }] } }
    secret_svc: { loadBalancer: { servers: [{ address: "127.0.0.1:7" }], healthCheck: { interval: 10s, timeout: 1s } } }
`;

function request(port: number, path: string, o: { method?: string; headers?: Record<string, string> } = {}): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, method: o.method ?? 'GET', headers: o.headers, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => {
        body += d;
      });
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

async function start(cfg: Config) {
  const ring = new ErrorRing();
  const lines: string[] = [];
  const log = pino({ level: 'info' }, teeLog({ write: (s: string) => lines.push(s) }, ring));
  const gw = new Gateway({ log });
  await gw.apply(cfg);
  const dash = new Dashboard({ view: localView({ gateway: gw, config: () => gw.current!, errors: ring }), settings: cfg.metrics?.dashboard });
  const srv = await gw.metrics.serve('127.0.0.1', 0, { log, routes: dash.routes });
  const port = (srv.address() as net.AddressInfo).port;
  return {
    gw,
    log,
    ring,
    port,
    close: async () => {
      dash.close();
      srv.close();
      await gw.shutdown(0);
    },
  };
}

const API = ['overview', 'entrypoints', 'routers', 'services', 'keys', 'dns', 'counters', 'errors'];

describe('dashboard API (metrics.dashboard)', () => {
  let d: Awaited<ReturnType<typeof start>>;
  before(async () => {
    d = await start(parseConfigText(yaml('{ innerSni: false, echRoutes: false }', 'true'), 'dash.yml'));
  });
  after(() => d?.close());

  it('routers: rule, service, TLS mode (passthrough / terminate), requireECH; entrypoints with their bound address', async () => {
    const r = JSON.parse((await request(d.port, '/api/routers')).body);
    const app = r.find((x: { name: string }) => x.name === 'app');
    assert.deepEqual({ rule: app.rule, service: app.service, tls: app.tls, requireECH: app.requireECH }, { rule: 'HostSNI(`app.example.test`)', service: 'app_svc', tls: 'passthrough', requireECH: false });
    assert.equal(r.find((x: { name: string }) => x.name === 'term').tls, 'terminate');
    const eps = JSON.parse((await request(d.port, '/api/entrypoints')).body);
    assert.equal(eps[0].address, `127.0.0.1:${d.gw.addresses().get('websecure')!.port}`);
  });

  it('RFC 9849 §1: no answer or page names the requireECH router, its rule (the inner SNI) or its service; they show as (ech)', async () => {
    const r = JSON.parse((await request(d.port, '/api/routers')).body);
    const hidden = r.find((x: { requireECH: boolean }) => x.requireECH);
    assert.deepEqual({ name: hidden.name, rule: hidden.rule, service: hidden.service }, { name: '(ech)', rule: '(ech)', service: '(ech)' });
    const s = JSON.parse((await request(d.port, '/api/services')).body);
    assert.ok(s.some((x: { name: string; servers: { address: string }[] }) => x.name === '(ech)' && x.servers[0]!.address === '(ech)'));
    for (const p of ['/', ...API.map((a) => `/api/${a}`)]) {
      const body = (await request(d.port, p)).body;
      assert.doesNotMatch(body, /secret/, p);
      assert.doesNotMatch(body, /127\.0\.0\.1:7\b/, p);
    }
  });

  it('keys: config id, public name, suite, state, age; the next rotation from the metadata (every 24h)', async () => {
    const k = JSON.parse((await request(d.port, '/api/keys')).body);
    const mine = k.keys.find((x: { configId: number }) => x.configId === key.configId);
    assert.equal(mine.publicName, 'public.example.test');
    assert.equal(mine.state, 'active');
    assert.equal(mine.suite.kem, 'DHKEM(X25519, HKDF-SHA256)');
    assert.ok(mine.ageS >= 0);
    const next = Date.parse(k.nextRotation) - Date.parse(key.activated ?? key.created);
    assert.ok(Math.abs(next - 24 * 3600_000) < 2000, String(next));
  });

  it('counters and errors: totals by outcome, ECH results, handshake failures by alert sent, recent warn/error log lines', async () => {
    d.gw.metrics.connections.inc({ entrypoint: 'websecure', router: 'app', outcome: 'relayed' }, 3);
    d.gw.metrics.ech.inc({ entrypoint: 'websecure', result: 'grease' });
    d.log.warn({ entrypoint: 'websecure' }, 'something to see');
    // RFC 6066 §3: a name no router takes is answered with unrecognized_name: counted by alert.
    await assert.rejects(tlsAsk(d.gw.addresses().get('websecure')!.port, 'nobody.example.test'), /unrecognized name/i);
    const c = JSON.parse((await request(d.port, '/api/counters')).body);
    assert.deepEqual(c.handshakeFailuresByAlert, { unrecognized_name: 1 });
    assert.equal(typeof c.handshakeFailuresByAlertPerSecond.unrecognized_name, 'number');
    assert.equal(c.connections.byOutcome.relayed, 3);
    assert.equal(c.ech.grease, 1);
    const e = JSON.parse((await request(d.port, '/api/errors')).body);
    const seen = e.errors.find((x: { msg: string }) => x.msg === 'something to see');
    assert.equal(seen.fields.entrypoint, 'websecure');
  });

  it('the listener: /metrics still served, unknown paths 404, other methods 405, the page with a strict CSP', async () => {
    assert.equal((await request(d.port, '/metrics')).status, 200);
    assert.equal((await request(d.port, '/api/nope')).status, 404);
    assert.equal((await request(d.port, '/api/routers', { method: 'POST' })).status, 405);
    const page = await request(d.port, '/');
    assert.equal(page.status, 200);
    assert.match(String(page.headers['content-security-policy']), /script-src 'self'/);
    assert.match(page.body, /<table id="routers">/);
    assert.equal((await request(d.port, '/assets/dashboard.js')).status, 200);
  });

  it('DNS rebinding: a Host that is not a loopback name is refused (403)', async () => {
    assert.equal((await request(d.port, '/api/overview', { headers: { host: 'evil.example:80' } })).status, 403);
    assert.equal((await request(d.port, '/api/overview', { headers: { host: 'localhost:1' } })).status, 200);
    // /metrics is for scrapers and keeps answering any Host.
    assert.equal((await request(d.port, '/metrics', { headers: { host: 'evil.example' } })).status, 200);
  });
});

describe('dashboard with log.innerSni: the rule is shown', () => {
  it('shows the requireECH router, its rule and its service', async () => {
    const d = await start(parseConfigText(yaml('{ innerSni: true }', 'true'), 'dash.yml'));
    try {
      const r = JSON.parse((await request(d.port, '/api/routers')).body);
      assert.ok(r.some((x: { name: string; rule: string }) => x.name === 'hidden_router' && x.rule === 'HostSNI(`secret.example.test`)'));
    } finally {
      await d.close();
    }
  });
  it('log.echRoutes alone: names shown, the rule (the inner SNI) still (ech)', async () => {
    const d = await start(parseConfigText(yaml('{ echRoutes: true }', 'true'), 'dash.yml'));
    try {
      const r = JSON.parse((await request(d.port, '/api/routers')).body);
      const h = r.find((x: { name: string }) => x.name === 'hidden_router');
      assert.deepEqual([h.rule, h.service], ['(ech)', 'secret_svc']);
    } finally {
      await d.close();
    }
  });
});

describe('dashboard basic auth (RFC 7617) from metrics.dashboard.basicAuthFile', () => {
  it('401 with a challenge without or with wrong credentials; 200 with the right ones', async () => {
    const d = await start(parseConfigText(yaml('{}', `{ basicAuthFile: "${join(W, 'auth')}" }`), 'dash.yml'));
    const b = (s: string) => `Basic ${Buffer.from(s).toString('base64')}`;
    try {
      const none = await request(d.port, '/api/overview');
      assert.equal(none.status, 401);
      assert.match(String(none.headers['www-authenticate']), /^Basic realm="echgate"/);
      assert.equal((await request(d.port, '/api/overview', { headers: { authorization: b('admin:wrong') } })).status, 401);
      assert.equal((await request(d.port, '/api/overview', { headers: { authorization: b('admin:s3cret pass') } })).status, 200);
      assert.equal((await request(d.port, '/', { headers: { authorization: b('admin:s3cret pass') } })).status, 200);
      assert.equal((await request(d.port, '/api/overview', { headers: { authorization: 'Bearer x' } })).status, 401);
    } finally {
      await d.close();
    }
  });

  it('configuration: remote without basicAuthFile is warned about; a non-boolean remote is refused', () => {
    assert.ok(parseConfigText(yaml('{}', '{ remote: true }'), 'd.yml').warnings.some((w) => /remote: true without basicAuthFile/.test(w)));
    assert.throws(() => parseConfigText(yaml('{}', '{ remote: yes-please }'), 'd.yml'), /metrics\.dashboard\.remote/);
  });
});

describe('the page script', () => {
  it('type-checks against the DOM (dashboard/tsconfig.json: strict, checkJs, nothing emitted)', () => {
    // A misspelt element property or API call in the page fails here, not only in a browser.
    execFileSync(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(ROOT, 'dashboard', 'tsconfig.json')], { stdio: 'pipe' });
  });
});

describe('dashboard error ring: bounded and rate limited', () => {
  it('keeps warn and above, at most perWindow per window, at most size; counts what it drops', () => {
    let t = 0;
    const ring = new ErrorRing(3, 2, 1000, () => t);
    const line = (level: number, msg: string) => `${JSON.stringify({ level, time: 'x', msg })}\n`;
    ring.offer(line(30, 'info, ignored'));
    ring.offer(line(40, 'a'));
    ring.offer(line(50, 'b'));
    ring.offer(line(50, 'c (over the rate)'));
    assert.deepEqual(
      ring.list().map((e) => e.msg),
      ['b', 'a'],
    );
    assert.equal(ring.dropped, 1);
    t = 1000;
    ring.offer(line(40, 'd'));
    ring.offer(line(60, 'e'));
    assert.deepEqual(
      ring.list().map((e) => `${e.msg}:${e.level}`),
      ['e:fatal', 'd:warn', 'b:error'],
    );
  });

  it('parseLabels reads the registry keys back, escapes included', () => {
    assert.deepEqual(parseLabels('a="x",b="q\\"uo\\\\te"'), { a: 'x', b: 'q"uo\\te' });
  });
});
