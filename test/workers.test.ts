/**
 * `workers: N` (src/cli/workers.ts): a spawned `echgate serve` with two
 * workers spreads connections over both, serves passthrough, ECH with
 * termination (echgate's own client) and DNS (dig) as one process does, keeps
 * one /metrics summed over the workers, replaces a worker killed with SIGKILL
 * while the other serves, reaches both workers with a SIGHUP reload and drains
 * on SIGTERM with exit 0.
 */
import assert from 'node:assert/strict';
import { type ChildProcessWithoutNullStreams, execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { freePort } from '../src/cli/free-port.js';
import { HEAP_FLOOR_FLAG } from '../src/cli/heap-floor.js';
import { restartDelayMs } from '../src/cli/workers.js';
import { parseConfigText } from '../src/config/load.js';
import { ConfigError } from '../src/config/validate.js';
import { Metrics } from '../src/proxy/metrics.js';
import { type Backend, certFor, ROOT, sleep, tlsAsk, tlsBackend } from './helpers.js';

const run = promisify(execFile);
const BIN = join(ROOT, 'bin', 'echgate.js');
const EP = 'entryPoints: { websecure: { address: "127.0.0.1:0" } }\n';

describe('workers key (docs/configuration.md)', () => {
  it('defaults to 1; auto is os.availableParallelism(); a whole number 1..256', () => {
    assert.equal(parseConfigText(EP, 't.yml').workers, 1);
    assert.equal(parseConfigText(`${EP}workers: auto\n`, 't.yml').workers, Math.min(256, availableParallelism()));
    assert.equal(parseConfigText(`${EP}workers: 4\n`, 't.yml').workers, 4);
    for (const bad of ['0', '-1', '1.5', '257', 'many', '"2"', 'true']) {
      assert.throws(
        () => parseConfigText(`${EP}workers: ${bad}\n`, 't.yml'),
        (e: unknown) => e instanceof ConfigError && e.problems.some((p) => p.path === 'workers'),
        bad,
      );
    }
  });
});

describe('metrics of a process group: snapshots summed', () => {
  it('counters and histograms add; gauges add unless left out (a dead worker has no open connections)', () => {
    const a = new Metrics();
    const b = new Metrics();
    a.connections.inc({ entrypoint: 'w', router: 'r', outcome: 'ok' }, 3);
    b.connections.inc({ entrypoint: 'w', router: 'r', outcome: 'ok' }, 4);
    b.connections.inc({ entrypoint: 'w', router: 'x', outcome: 'no_route' });
    a.open.inc({ entrypoint: 'w' }, 2);
    b.open.inc({ entrypoint: 'w' }, 5);
    a.duration.observe({ entrypoint: 'w', router: 'r' }, 0.01);
    b.duration.observe({ entrypoint: 'w', router: 'r' }, 10);
    const sum = new Metrics();
    // Through JSON, as over the cluster IPC channel.
    sum.merge(JSON.parse(JSON.stringify(a.snapshot())));
    sum.merge(JSON.parse(JSON.stringify(b.snapshot())), { gauges: false });
    assert.equal(sum.connections.get({ entrypoint: 'w', router: 'r', outcome: 'ok' }), 7);
    assert.equal(sum.connections.get({ entrypoint: 'w', router: 'x', outcome: 'no_route' }), 1);
    assert.equal(sum.open.get({ entrypoint: 'w' }), 2);
    const text = sum.render();
    assert.match(text, /echgate_connection_duration_seconds_count\{entrypoint="w",router="r"\} 2\n/);
    assert.match(text, /echgate_connection_duration_seconds_bucket\{entrypoint="w",router="r",le="0\.05"\} 1\n/);
    assert.match(text, /echgate_connection_duration_seconds_bucket\{entrypoint="w",router="r",le="30"\} 2\n/);
    assert.match(text, /echgate_connection_duration_seconds_sum\{entrypoint="w",router="r"\} 10\.01\n/);
  });
  it('restart backoff: 250 ms doubling per quick death, capped at 10 s', () => {
    assert.deepEqual([1, 2, 3, 4, 5, 6, 7, 8].map(restartDelayMs), [250, 500, 1000, 2000, 4000, 8000, 10000, 10000]);
  });
});

interface Line {
  msg: string;
  worker?: number;
  pid?: number;
  [k: string]: unknown;
}

describe('echgate serve with workers: 2', () => {
  const dir = mkdtempSync(join(tmpdir(), 'echgate-workers-'));
  const keysDir = join(dir, 'keys');
  const f = join(dir, 'echgate.yml');
  let port = 0;
  let dnsPort = 0;
  let metricsPort = 0;
  let app: Backend;
  let api: Backend;
  let plain: net.Server;
  let child: ChildProcessWithoutNullStreams;
  const lines: Line[] = [];
  let exited: Promise<number | null>;

  const config = (appService: string) => `
workers: 2
entryPoints:
  websecure: { address: "127.0.0.1:${port}", transport: { lifeCycle: { graceTimeOut: 20s } } }
metrics: { address: "127.0.0.1:${metricsPort}" }
log: { access: true }
ech: { keysDir: ${JSON.stringify(keysDir)} }
tls:
  certificates:
    - { certFile: ${JSON.stringify(join(dir, 'secret.pem'))}, keyFile: ${JSON.stringify(join(dir, 'secret.key'))} }
dns:
  address: "127.0.0.1:${dnsPort}"
  zone: example.test
  names:
    secret.example.test: { a: [127.0.0.1], https: { alpn: [h2] } }
tcp:
  routers:
    app: { entryPoints: [websecure], rule: "HostSNI(\`app.example.test\`)", service: ${appService}, tls: { passthrough: true } }
    secret: { entryPoints: [websecure], rule: "HostSNI(\`secret.example.test\`)", service: plain, tls: {}, requireECH: true }
  services:
    app: { loadBalancer: { servers: [{ address: "127.0.0.1:${app.port}" }] } }
    api: { loadBalancer: { servers: [{ address: "127.0.0.1:${api.port}" }] } }
    plain: { loadBalancer: { servers: [{ address: "127.0.0.1:${(plain.address() as net.AddressInfo).port}" }] } }
`;
  const waitFor = async (pred: () => boolean, what: string, ms = 20_000) => {
    for (const end = Date.now() + ms; Date.now() < end; ) {
      if (pred()) return;
      await sleep(50);
    }
    assert.fail(`timed out waiting for ${what}`);
  };
  const access = () => lines.filter((l) => l.msg === 'access');
  const scrape = async () => (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  const ready = () => lines.filter((l) => l.msg === 'worker ready');

  before(async () => {
    [port, dnsPort, metricsPort] = [await freePort(), await freePort(), await freePort()];
    app = await tlsBackend('app');
    api = await tlsBackend('api');
    plain = net.createServer((s) => {
      s.on('error', () => s.destroy());
      s.once('data', (d) => s.end(`backend got ${d.length} bytes`));
    });
    await new Promise<void>((r) => plain.listen(0, '127.0.0.1', () => r()));
    const c = certFor('secret.example.test');
    writeFileSync(join(dir, 'secret.pem'), c.cert);
    writeFileSync(join(dir, 'secret.key'), c.key);
    await run('node', [BIN, 'keys', 'generate', '--dir', keysDir, '--public-name', 'public.example.test']);
    writeFileSync(f, config('app'));
    // Two deaths of this file are meant as quick ones (the backoff doubles); under load the second can come
    // more than the 10 s STABLE_AFTER_MS after the replacement started, which made the delay 250 again.
    child = spawn('node', [BIN, 'serve', '--config', f], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, ECHGATE_WORKER_STABLE_MS: '600000' } });
    exited = new Promise((r) => child.once('exit', (code) => r(code)));
    let buf = '';
    child.stdout.on('data', (d) => {
      buf += d;
      const parts = buf.split('\n');
      buf = parts.pop()!;
      for (const p of parts) if (p.startsWith('{')) lines.push(JSON.parse(p));
    });
    child.stderr.on('data', (d) => process.stderr.write(d));
    await waitFor(() => lines.some((l) => l.msg === 'all workers ready'), 'both workers');
  });
  after(async () => {
    if (child.exitCode === null) child.kill('SIGKILL');
    await Promise.all([app.close(), api.close(), new Promise((r) => plain.close(r))]);
  });

  it('connections spread over both workers; each access line names its worker and pid', async () => {
    const pids = new Set<number>();
    let made = 0;
    // The kernel picks the worker (SCHED_NONE): bounded rounds of concurrent connections until both appear.
    for (let round = 0; round < 20 && pids.size < 2; round++) {
      const answers = await Promise.all(Array.from({ length: 10 }, () => tlsAsk(port, 'app.example.test')));
      made += answers.length;
      for (const a of answers) assert.match(a, /^app app\.example\.test/);
      await waitFor(() => access().length >= made, 'access lines');
      for (const l of access()) pids.add(l.pid!);
    }
    assert.equal(pids.size, 2, 'both workers served connections');
    assert.ok(!pids.has(child.pid!), 'the primary accepts nothing itself');
    assert.deepEqual(new Set(access().map((l) => l.worker)), new Set([1, 2]));
    // One scrape sums both: every connection made so far, and both workers' shares.
    const m = await scrape();
    const total = [...m.matchAll(/^echgate_connections_total\{entrypoint="websecure",outcome="relayed",router="app"\} (\d+)$/gm)].map((x) => Number(x[1]));
    assert.deepEqual(total, [made]);
    const shares = [...m.matchAll(/^echgate_worker_connections_total\{worker="(\d)"\} (\d+)$/gm)].map((x) => [x[1], Number(x[2])] as const);
    assert.equal(shares.length, 2);
    assert.ok(shares.every(([, n]) => n > 0));
    assert.equal(
      shares.reduce((s, [, n]) => s + n, 0),
      made,
    );
    assert.match(m, /^echgate_workers\{state="running"\} 2$/m);
  });

  it('every worker runs with the V8 heap floor though the primary was started without it (cli/heap-floor.ts)', () => {
    const workers = new Set(access().map((l) => l.pid!));
    assert.equal(workers.size, 2);
    for (const pid of workers) assert.ok(readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').includes(HEAP_FLOOR_FLAG), `worker ${pid}`);
    assert.ok(!readFileSync(`/proc/${child.pid}/cmdline`, 'utf8').includes(HEAP_FLOOR_FLAG), 'the primary');
  });

  it('ECH with termination through either worker: echgate connect --keys is accepted and reaches the backend', async () => {
    for (let i = 0; i < 4; i++) {
      const { stdout } = await run('node', [BIN, 'connect', `127.0.0.1:${port}`, '--sni', 'secret.example.test', '--keys', keysDir, '--send', 'hello']);
      const r = JSON.parse(stdout);
      assert.equal(r.ech, 'accepted');
      assert.equal(r.reply, 'backend got 5 bytes');
    }
    await waitFor(() => access().filter((l) => l.ech === 'accepted').length >= 4, 'access lines');
  });

  it('the embedded DNS answers (dig, UDP and TCP) with the key folder’s ech=', async () => {
    const { stdout: exported } = await run('node', [BIN, 'keys', 'export', '--dir', keysDir, '--format', 'base64']);
    for (const tcp of [[], ['+tcp']]) {
      const { stdout } = await run('dig', ['-p', String(dnsPort), '@127.0.0.1', '+short', '+time=2', '+tries=2', ...tcp, 'secret.example.test', 'HTTPS']);
      assert.equal(stdout.trim(), `1 . alpn="h2" ech=${exported.trim()}`);
    }
    assert.match(await scrape(), /echgate_dns_queries_total\{rcode="NOERROR",transport="tcp",type="HTTPS"\} 1\n/);
  });

  it('a key rotation reaches every worker (each watches the key folder): both reload, DNS and ECH use the new key', async () => {
    const from = lines.length;
    await run('node', [BIN, 'keys', 'rotate', '--dir', keysDir]);
    await waitFor(() => new Set(lines.slice(from).filter((l) => l.msg === 'ECH keys loaded').map((l) => l.worker)).size === 2, 'both workers loaded the keys');
    const { stdout: exported } = await run('node', [BIN, 'keys', 'export', '--dir', keysDir, '--format', 'base64']);
    const { stdout } = await run('dig', ['-p', String(dnsPort), '@127.0.0.1', '+short', '+time=2', '+tries=2', 'secret.example.test', 'HTTPS']);
    assert.equal(stdout.trim(), `1 . alpn="h2" ech=${exported.trim()}`);
    const { stdout: c } = await run('node', [BIN, 'connect', `127.0.0.1:${port}`, '--sni', 'secret.example.test', '--ech-config', exported.trim(), '--send', 'hello']);
    assert.equal(JSON.parse(c).ech, 'accepted');
  });

  const reloadedBy = (from: number, why: string) => new Set(lines.slice(from).filter((l) => l.msg === 'configuration reloaded' && l.why === why).map((l) => l.worker));

  it('a change of the file reaches both workers (each watches it): both serve the new route; SIGHUP to the primary reaches both too', async () => {
    const from = lines.length;
    writeFileSync(f, config('api'));
    await waitFor(() => reloadedBy(from, 'file changed').size === 2, 'both workers reloaded on the file change');
    const startAccess = access().length;
    const pids = new Set<number>();
    for (let round = 0; round < 20 && pids.size < 2; round++) {
      const answers = await Promise.all(Array.from({ length: 10 }, () => tlsAsk(port, 'app.example.test')));
      for (const a of answers) assert.match(a, /^api app\.example\.test/, 'every worker routes app to the new service');
      await waitFor(() => access().length >= startAccess + (round + 1) * 10, 'access lines');
      for (const l of access().slice(startAccess)) pids.add(l.pid!);
    }
    assert.equal(pids.size, 2);
    // SIGHUP (no change to the file) is relayed to every worker.
    const hup = lines.length;
    child.kill('SIGHUP');
    await waitFor(() => reloadedBy(hup, 'SIGHUP').size === 2, 'both workers reloaded on SIGHUP');
  });

  it('a worker killed with SIGKILL is counted and replaced; the other serves meanwhile', async () => {
    const victim = ready().at(-1)!;
    const from = lines.length;
    process.kill(victim.pid!, 'SIGKILL');
    await waitFor(() => lines.slice(from).some((l) => l.msg.startsWith('worker died')), 'the death noticed');
    const died = lines.slice(from).find((l) => l.msg.startsWith('worker died'))!;
    assert.equal(died.worker, victim.worker);
    assert.equal(died.reason, 'SIGKILL');
    // Before the replacement is ready, connections are served (by the survivor).
    for (let i = 0; i < 5; i++) assert.match(await tlsAsk(port, 'app.example.test'), /^api /);
    await waitFor(() => lines.slice(from).some((l) => l.msg === 'worker ready' && l.worker === victim.worker), 'the replacement');
    const fresh = lines.slice(from).find((l) => l.msg === 'worker ready')!;
    assert.notEqual(fresh.pid, victim.pid);
    const m = await scrape();
    assert.match(m, /^echgate_worker_restarts_total\{reason="SIGKILL"\} 1$/m);
    assert.match(m, /^echgate_workers\{state="running"\} 2$/m);
    // The replacement reads the current file: the reloaded route.
    const pids = new Set<number>();
    for (let round = 0; round < 20 && !pids.has(fresh.pid!); round++) {
      const start = access().length;
      for (const a of await Promise.all(Array.from({ length: 10 }, () => tlsAsk(port, 'app.example.test')))) assert.match(a, /^api /);
      await waitFor(() => access().length >= start + 10, 'access lines');
      for (const l of access().slice(start)) pids.add(l.pid!);
    }
    assert.ok(pids.has(fresh.pid!), 'the replacement serves');
    assert.equal(died.restartInMs, 250);
  });

  it('a worker that dies again soon after its start waits longer (backoff), then is back', async () => {
    const victim = ready().at(-1)!;
    const from = lines.length;
    process.kill(victim.pid!, 'SIGKILL');
    await waitFor(() => lines.slice(from).some((l) => l.msg === 'worker ready' && l.worker === victim.worker), 'the replacement');
    const died = lines.slice(from).find((l) => l.msg.startsWith('worker died'))!;
    assert.equal(died.restartInMs, 500, 'second quick death: the delay doubled');
    assert.match(await scrape(), /^echgate_worker_restarts_total\{reason="SIGKILL"\} 2$/m);
  });

  it('SIGTERM to the primary: every worker drains its open connections, then exit 0', async () => {
    // Open connections held across the signal, three on each worker: while one worker is stopped (SIGSTOP) the other
    // accepts every connection on the shared listening socket, so each worker holds some (the kernel alone could give all six to one).
    const held: tls.TLSSocket[] = [];
    const workers = [1, 2].map((n) => ready().filter((l) => l.worker === n).at(-1)!.pid!);
    for (const other of [workers[1]!, workers[0]!]) {
      process.kill(other, 'SIGSTOP');
      try {
        for (let k = 0; k < 3; k++) {
          const s = tls.connect({ host: '127.0.0.1', port, servername: 'app.example.test', rejectUnauthorized: false });
          await new Promise((r) => s.once('secureConnect', r));
          held.push(s);
        }
      } finally {
        process.kill(other, 'SIGCONT');
      }
    }
    const from = lines.length;
    child.kill('SIGTERM');
    await waitFor(() => lines.slice(from).filter((l) => l.msg.startsWith('shutting down: no new connections')).length === 2, 'both workers draining');
    const draining = lines.slice(from).filter((l) => l.msg.startsWith('shutting down: no new connections'));
    // Each worker drains the three it holds: both had open connections when the signal came.
    assert.deepEqual(
      draining.map((l) => [l.pid, Number(l.open)]).sort(),
      workers.map((p) => [p, 3]).sort(),
      'each worker held three of the open connections',
    );
    // New connections are refused once both workers closed their listener; the held ones still work.
    const refused = () =>
      new Promise<boolean>((r) =>
        net
          .connect(port, '127.0.0.1')
          .once('connect', function (this: net.Socket) {
            this.destroy();
            r(false);
          })
          .once('error', () => r(true)),
      );
    let isRefused = false;
    for (let i = 0; i < 40 && !isRefused; i++) {
      isRefused = await refused();
      if (!isRefused) await sleep(100);
    }
    assert.ok(isRefused, 'the listening socket closed');
    for (const s of held) {
      const answer = new Promise<string>((r) => s.once('data', (d) => r(String(d))));
      s.write('still there\n');
      assert.match(await answer, /^api /);
      s.end();
    }
    assert.equal(await exited, 0);
    assert.ok(lines.some((l) => l.msg === 'stopped' && l.worker === undefined));
  });
});

describe('a process group that cannot start', () => {
  it('ends with exit 1 when a worker cannot bind (no restart loop)', async () => {
    const taken = net.createServer();
    await new Promise<void>((r) => taken.listen(0, '127.0.0.1', () => r()));
    const dir = mkdtempSync(join(tmpdir(), 'echgate-workers-'));
    const f = join(dir, 'echgate.yml');
    writeFileSync(f, `workers: 2\nentryPoints: { websecure: { address: "127.0.0.1:${(taken.address() as net.AddressInfo).port}" } }\n`);
    try {
      await assert.rejects(run('node', [BIN, 'serve', '--config', f], { timeout: 20_000 }), (e: { code: number; killed: boolean; stdout: string }) => {
        assert.equal(e.killed, false, 'serve hung instead of exiting');
        assert.equal(e.code, 1);
        assert.match(e.stdout, /worker failed to start/);
        return true;
      });
    } finally {
      taken.close();
    }
  });
});
