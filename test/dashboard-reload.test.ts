/**
 * The dashboard of a spawned `echgate serve`: with `workers: 2` the page's API
 * shows the whole process group (counters summed as /metrics sums them, both
 * workers answering), and metrics.dashboard follows the file on reload
 * (turned off, turned on, a new auth file), while a reload naming an
 * unreadable auth file is refused with a logged reason and changes nothing.
 */
import assert from 'node:assert/strict';
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { freePort } from '../src/cli/free-port.js';
import { type Backend, ROOT, sleep, tlsAsk, tlsBackend } from './helpers.js';

const BIN = join(ROOT, 'bin', 'echgate.js');

interface Line {
  msg: string;
  [k: string]: unknown;
}

/** One spawned serve with a config file the test rewrites. */
function group(workers: number) {
  const dir = mkdtempSync(join(tmpdir(), 'echgate-dash-group-'));
  const f = join(dir, 'echgate.yml');
  const lines: Line[] = [];
  const s = { port: 0, metricsPort: 0, child: undefined as unknown as ChildProcessWithoutNullStreams, app: undefined as unknown as Backend, lines, dir, f };
  const config = (dashboard: string) => `
workers: ${workers}
entryPoints: { websecure: { address: "127.0.0.1:${s.port}" } }
metrics: { address: "127.0.0.1:${s.metricsPort}", dashboard: ${dashboard} }
tcp:
  routers:
    app: { entryPoints: [websecure], rule: "HostSNI(\`app.example.test\`)", service: app, tls: { passthrough: true } }
  services:
    app: { loadBalancer: { servers: [{ address: "127.0.0.1:${s.app.port}" }] } }
`;
  const waitFor = async (pred: () => boolean | Promise<boolean>, what: string, ms = 20_000) => {
    for (const end = Date.now() + ms; Date.now() < end; ) {
      if (await pred()) return;
      await sleep(100);
    }
    assert.fail(`timed out waiting for ${what}`);
  };
  const get = async (path: string, headers: Record<string, string> = {}) => {
    const r = await fetch(`http://127.0.0.1:${s.metricsPort}${path}`, { headers });
    return { status: r.status, body: await r.text() };
  };
  return {
    s,
    config,
    waitFor,
    get,
    async start(dashboard: string, env: Record<string, string> = {}) {
      [s.port, s.metricsPort] = [await freePort(), await freePort()];
      s.app = await tlsBackend('app');
      writeFileSync(f, config(dashboard));
      s.child = spawn('node', [BIN, 'serve', '--config', f], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, ...env } });
      let buf = '';
      s.child.stdout.on('data', (d) => {
        buf += d;
        const parts = buf.split('\n');
        buf = parts.pop()!;
        for (const p of parts) if (p.startsWith('{')) lines.push(JSON.parse(p));
      });
      s.child.stderr.on('data', (d) => process.stderr.write(d));
      await waitFor(async () => {
        try {
          return (await get('/metrics')).status === 200;
        } catch {
          return false;
        }
      }, 'the metrics listener', 60_000);
    },
    async stop() {
      if (s.child && s.child.exitCode === null) {
        const gone = new Promise((r) => s.child.once('exit', r));
        s.child.kill('SIGTERM');
        await Promise.race([gone, sleep(10_000)]);
        if (s.child.exitCode === null) s.child.kill('SIGKILL');
      }
      await s.app?.close();
    },
    /** Rewrite the file and SIGHUP the (primary) process; wait for `logged`. */
    async reload(dashboard: string, logged: (l: Line) => boolean) {
      const n = lines.length;
      writeFileSync(f, config(dashboard));
      s.child.kill('SIGHUP');
      await waitFor(() => lines.slice(n).some(logged), 'the reload to be logged');
    },
  };
}

function refused(port: number, servername: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const c = tls.connect({ host: '127.0.0.1', port, servername, rejectUnauthorized: false });
    c.setTimeout(5000, () => c.destroy(new Error('timeout')));
    c.once('secureConnect', () => reject(new Error('handshake completed')));
    c.once('error', () => resolve());
  });
}

describe('dashboard with workers: 2 shows the whole process group', () => {
  const g = group(2);
  before(() => g.start('true', { ECHGATE_CLUSTER_SCHED: 'rr' }));
  after(() => g.stop());

  it('counters are the sum over both workers (as /metrics), routers and entrypoints as the workers run them', async () => {
    // Round-robin in the primary (ECHGATE_CLUSTER_SCHED=rr): consecutive connections go to both workers.
    for (let i = 0; i < 6; i++) assert.match(await tlsAsk(g.s.port, 'app.example.test'), /^app /);
    for (let i = 0; i < 4; i++) await refused(g.s.port, 'nobody.example.test');
    const m = (await g.get('/metrics')).body;
    const perWorker = [...m.matchAll(/echgate_worker_connections_total\{worker="(\d)"\} (\d+)/g)].map((x) => Number(x[2]));
    assert.equal(perWorker.length, 2);
    assert.ok(
      perWorker.every((n) => n > 0),
      `both workers took connections: ${perWorker}`,
    );
    let c: { connections: { total: number; byOutcome: Record<string, number> }; handshakeFailuresByAlert: Record<string, number>; workers: { running: number; answered: number } } | undefined;
    await g.waitFor(async () => {
      c = JSON.parse((await g.get('/api/counters')).body);
      return c!.connections.total === 10;
    }, 'ten connections on the dashboard');
    assert.deepEqual({ running: c!.workers.running, answered: c!.workers.answered }, { running: 2, answered: 2 });
    assert.equal(c!.connections.byOutcome.relayed, 6);
    assert.equal(c!.handshakeFailuresByAlert.unrecognized_name, 4);
    const routers = JSON.parse((await g.get('/api/routers')).body);
    assert.deepEqual(
      routers.map((r: { name: string; tls: string }) => [r.name, r.tls]),
      [['app', 'passthrough']],
    );
    const eps = JSON.parse((await g.get('/api/entrypoints')).body);
    assert.equal(eps[0].address, `127.0.0.1:${g.s.port}`);
    assert.equal((await g.get('/')).status, 200);
  });

  it('per worker: each worker\'s connections, handshake failures, alerts and errors on their own, adding up to the group\'s', async () => {
    const m = (await g.get('/metrics')).body;
    const fromMetrics = Object.fromEntries([...m.matchAll(/echgate_worker_connections_total\{worker="(\d+)"\} (\d+)/g)].map((x) => [Number(x[1]), Number(x[2])]));
    type W = { worker: number; answered: boolean; connections: number; connectionsPerSecond: number; open: number; relayed: number; handshakeFailures: number; alerts: Record<string, number>; errors: number; errorsDropped: number };
    const c = JSON.parse((await g.get('/api/counters')).body) as { connections: { total: number }; workers: { each: W[] } };
    const each = c.workers.each;
    assert.equal(each.length, 2);
    assert.deepEqual(
      each.map((w) => w.worker),
      Object.keys(fromMetrics).map(Number).sort((a, b) => a - b),
    );
    for (const w of each) {
      assert.equal(w.answered, true);
      assert.equal(w.connections, fromMetrics[w.worker], `worker ${w.worker}: the same count as /metrics`);
      assert.ok(w.connections > 0, `worker ${w.worker} took connections (round-robin)`);
      assert.equal(w.connections, w.relayed + (w.alerts.unrecognized_name ?? 0), `worker ${w.worker}: relayed or refused`);
      assert.equal(w.handshakeFailures, w.alerts.unrecognized_name ?? 0);
      assert.equal(typeof w.errors, 'number');
      assert.equal(w.open, 0);
    }
    const sum = (f: (w: W) => number) => each.reduce((n, w) => n + f(w), 0);
    assert.equal(sum((w) => w.connections), c.connections.total);
    assert.equal(sum((w) => w.relayed), 6);
    assert.equal(sum((w) => w.alerts.unrecognized_name ?? 0), 4);
    // The page has the table (shown only in a group).
    assert.match((await g.get('/')).body, /id="per-worker"/);
  });

  it('reload in a group: SIGHUP turning the dashboard off is applied by the primary (404), on again (200)', async () => {
    await g.reload('false', (l) => /dashboard turned off/.test(l.msg));
    assert.equal((await g.get('/api/counters')).status, 404);
    assert.equal((await g.get('/metrics')).status, 200);
    await g.reload('true', (l) => /dashboard turned on/.test(l.msg));
    assert.equal((await g.get('/api/counters')).status, 200);
  });
});

describe('metrics.dashboard on reload (one process)', () => {
  const g = group(1);
  before(() => g.start('false'));
  after(() => g.stop());
  const b = (s: string) => `Basic ${Buffer.from(s).toString('base64')}`;

  it('off → on → basic auth from a new file: each SIGHUP applies, and the reload log line says what changed', async () => {
    assert.equal((await g.get('/api/overview')).status, 404);
    await g.reload('true', (l) => l.msg === 'configuration reloaded' && l.dashboard === 'dashboard turned on');
    assert.equal((await g.get('/api/overview')).status, 200);
    const auth = join(g.s.dir, 'auth');
    writeFileSync(auth, 'admin:pw1\n', { mode: 0o600 });
    await g.reload(`{ basicAuthFile: ${JSON.stringify(auth)} }`, (l) => l.msg === 'configuration reloaded' && l.dashboard === 'dashboard access changed');
    assert.equal((await g.get('/api/overview')).status, 401);
    assert.equal((await g.get('/api/overview', { authorization: b('admin:pw1') })).status, 200);
  });

  it('a reload naming an unreadable auth file is refused with the reason; the previous settings stay', async () => {
    await g.reload(`{ basicAuthFile: ${JSON.stringify(join(g.s.dir, 'missing'))} }`, (l) => /^reload refused/.test(l.msg) && /basicAuthFile: cannot read/.test(String(l.err)));
    assert.equal((await g.get('/api/overview', { authorization: b('admin:pw1') })).status, 200);
    assert.equal((await g.get('/api/overview')).status, 401);
  });
});
