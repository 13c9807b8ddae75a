/**
 * providers.etcd against a real etcd 3.4 (Debian's /usr/bin/etcd, one member
 * on free loopback ports in a temp folder) and a spawned `echgate serve`:
 * a router written to etcd in Traefik's KV layout routes a connection; a
 * change is applied live and its revision exported; a change that does not
 * validate leaves the running configuration in place and the log says why;
 * with etcd stopped serve keeps routing and logs the store down; with etcd
 * back it catches up with what was written.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Etcd3 } from 'etcd3';
import { freePort } from '../src/cli/free-port.js';
import { stablePort } from './stable-port.js';
import { type Backend, certFor, ROOT, sleep, tlsAsk, tlsBackend } from '../test/helpers.js';

const BIN = join(ROOT, 'bin', 'echgate.js');
const ETCD = '/usr/bin/etcd';
const ROOT_KEY = 'e2e/traefik';

interface Line {
  msg: string;
  [k: string]: unknown;
}

describe('providers.etcd: Traefik KV layout from a real etcd, applied like a file reload', { skip: !existsSync(ETCD) && 'no /usr/bin/etcd (apt-get install etcd-server)' }, () => {
  let dir: string;
  let etcd: ChildProcess | undefined;
  let serve: ChildProcess;
  // A second instance on the same etcd keys (issue #9: "the old one keeps running on every instance").
  let serve2: ChildProcess | undefined;
  let port2: number;
  const lines2: Line[] = [];
  let client: Etcd3;
  let clientUrl: string;
  let peerPort: number;
  let clientPort: number;
  let port: number;
  let metricsPort: number;
  let a: Backend;
  let b: Backend;
  const lines: Line[] = [];

  const waitFor = async (pred: () => boolean | Promise<boolean>, what: string, ms = 20_000) => {
    for (const end = Date.now() + ms; Date.now() < end; ) {
      if (await pred()) return;
      await sleep(50);
    }
    assert.fail(`timed out waiting for ${what}\n${lines.slice(-10).map((l) => JSON.stringify(l)).join('\n')}`);
  };
  const startEtcd = async () => {
    etcd = spawn(ETCD, [
      '--name', 'e1', '--data-dir', join(dir, 'e1'),
      '--listen-client-urls', clientUrl, '--advertise-client-urls', clientUrl,
      '--listen-peer-urls', `http://127.0.0.1:${peerPort}`, '--initial-advertise-peer-urls', `http://127.0.0.1:${peerPort}`,
      '--initial-cluster', `e1=http://127.0.0.1:${peerPort}`, '--logger', 'zap', '--log-outputs', join(dir, 'etcd.log'),
    ], { stdio: 'ignore' });
    await waitFor(async () => (await client.put(`${ROOT_KEY}-probe`).value('1').then(() => true, () => false)), 'etcd to answer', 30_000);
  };
  const stopEtcd = async () => {
    const p = etcd!;
    const exited = new Promise((r) => p.once('exit', r));
    p.kill('SIGTERM');
    await exited;
    etcd = undefined;
  };
  const put = (kv: Record<string, string>) => Promise.all(Object.entries(kv).map(([k, v]) => client.put(`${ROOT_KEY}/${k}`).value(v)));
  const since = (i: number) => lines.slice(i);
  const scrape = async () => (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  const gauge = (text: string, name: string) => Number(new RegExp(`^${name}\\{process="main"\\} (\\S+)$`, 'm').exec(text)?.[1]);

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'echgate-etcd-'));
    [clientPort, peerPort, port, metricsPort, port2] = [await stablePort(), await stablePort(), await freePort(), await freePort(), await freePort()]; // etcd restarted in place: stable-port.ts
    clientUrl = `http://127.0.0.1:${clientPort}`;
    client = new Etcd3({ hosts: clientUrl, dialTimeout: 1000 });
    await startEtcd();
    a = await tlsBackend('a');
    b = await tlsBackend('b');
    await put({
      'tcp/routers/app/rule': 'HostSNI(`a.example.test`)',
      'tcp/routers/app/service': 'a',
      'tcp/routers/app/entryPoints/0': 'websecure',
      'tcp/routers/app/tls/passthrough': 'true',
      'tcp/services/a/loadBalancer/servers/0/address': `127.0.0.1:${a.port}`,
    });
    const f = join(dir, 'echgate.yml');
    writeFileSync(
      f,
      `entryPoints:\n  websecure: { address: "127.0.0.1:${port}" }\nmetrics: { address: "127.0.0.1:${metricsPort}" }\nproviders:\n  etcd: { endpoints: ["${clientUrl}"], rootKey: ${ROOT_KEY} }\n`,
    );
    const f2 = join(dir, 'echgate2.yml');
    writeFileSync(f2, `entryPoints:\n  websecure: { address: "127.0.0.1:${port2}" }\nproviders:\n  etcd: { endpoints: ["${clientUrl}"], rootKey: ${ROOT_KEY} }\n`);
    const start = (file: string, into: Line[]) => {
      const proc = spawn('node', [BIN, 'serve', '--config', file], { stdio: ['ignore', 'pipe', 'pipe'] });
      let buf = '';
      proc.stdout!.on('data', (d: Buffer) => {
        buf += d.toString();
        for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
          const l = buf.slice(0, i);
          buf = buf.slice(i + 1);
          try {
            into.push(JSON.parse(l));
          } catch {
            into.push({ msg: l });
          }
        }
      });
      proc.stderr!.on('data', (d: Buffer) => into.push({ msg: `stderr: ${d}` }));
      return proc;
    };
    serve = start(f, lines);
    serve2 = start(f2, lines2);
    await waitFor(() => lines.some((l) => l.msg === 'listening'), 'serve to listen');
    await waitFor(() => lines2.some((l) => l.msg === 'listening'), 'the second serve to listen');
  });

  after(async () => {
    for (const p of [serve, serve2]) {
      if (!p || p.exitCode !== null) continue;
      const gone = new Promise((r) => p.once('exit', r));
      p.kill('SIGTERM');
      await gone;
    }
    client?.close();
    if (etcd) await stopEtcd();
    await a?.close();
    await b?.close();
    rmSync(join(dir, 'e1'), { recursive: true, force: true }); // etcd's data (64 MB of WAL); the logs stay for a failure's reader
    process.stderr.write(`etcd provider e2e: logs in ${dir}\n`);
  });

  it('a router written to etcd routes a connection, and its revision is logged and exported', async () => {
    const read = lines.find((l) => l.msg === 'configuration read from etcd');
    assert.ok(read, 'the first read is logged');
    assert.equal(await tlsAsk(port, 'a.example.test'), 'a a.example.test -');
    assert.equal(gauge(await scrape(), 'echgate_config_revision'), Number(read.revision));
    assert.equal(gauge(await scrape(), 'echgate_config_store_up'), 1);
  });

  it('a change in etcd is applied live (watched), all keys of the change together', async () => {
    const from = lines.length;
    const from2 = lines2.length;
    const r = await client
      .if(`${ROOT_KEY}/tcp/routers/app/rule`, 'Create', '>', 0)
      .then(
        client.put(`${ROOT_KEY}/tcp/routers/bee/rule`).value('HostSNI(`b.example.test`)'),
        client.put(`${ROOT_KEY}/tcp/routers/bee/service`).value('b'),
        client.put(`${ROOT_KEY}/tcp/routers/bee/tls/passthrough`).value('true'),
        client.put(`${ROOT_KEY}/tcp/services/b/loadBalancer/servers/0/address`).value(`127.0.0.1:${b.port}`),
      )
      .commit();
    const rev = String(r.header.revision);
    await waitFor(() => since(from).some((l) => l.msg === 'configuration reloaded' && l.revision === rev), `reload at revision ${rev}`);
    // The second instance applies it too. Waited for here, or its reload can land after the next test has
    // started counting and read as "the second instance applied" the change that test expects refused (seen once under load).
    await waitFor(() => lines2.slice(from2).some((l) => l.msg === 'configuration reloaded' && l.revision === rev), `the second instance's reload at revision ${rev}`);
    assert.equal(await tlsAsk(port, 'b.example.test'), 'b b.example.test -');
    assert.equal(await tlsAsk(port, 'a.example.test'), 'a a.example.test -');
    assert.equal(gauge(await scrape(), 'echgate_config_revision'), Number(rev));
  });

  it('a change that does not validate is refused, the log says why, the old configuration keeps routing (on every instance)', async () => {
    const from = lines.length;
    const from2 = lines2.length;
    const before = gauge(await scrape(), 'echgate_config_revision');
    await put({ 'tcp/routers/app/service': 'nope' });
    await waitFor(() => since(from).some((l) => l.msg.startsWith('reload refused: the configuration does not validate')), 'the refusal');
    await waitFor(() => lines2.slice(from2).some((l) => l.msg.startsWith('reload refused: the configuration does not validate')), 'the refusal by the second instance');
    assert.equal(await tlsAsk(port2, 'a.example.test'), 'a a.example.test -', 'the second instance keeps the old configuration too');
    const applied2 = lines2.slice(from2).filter((l) => l.msg === 'configuration reloaded');
    assert.deepEqual(applied2, [], 'the second instance applied nothing');
    const refused = since(from).find((l) => l.msg.startsWith('reload refused'))!;
    assert.match(String(refused.why), /^etcd revision \d+$/);
    assert.match(String(refused.err), /etcd e2e\/traefik\/tcp\/routers\/app \(converted to tcp\.routers\.app\.service\): no service named "nope"/);
    assert.equal(await tlsAsk(port, 'a.example.test'), 'a a.example.test -');
    assert.equal(gauge(await scrape(), 'echgate_config_revision'), before, 'the revision in force did not move');
    await put({ 'tcp/routers/app/service': 'a' });
    await waitFor(() => since(from).some((l) => l.msg === 'configuration reloaded'), 'the repaired configuration');
  });

  it('etcd stopped: serve keeps routing with what it has and logs the store down; etcd back: it catches up', async () => {
    const from = lines.length;
    await stopEtcd();
    await waitFor(() => since(from).some((l) => l.msg.startsWith('configuration store unreachable')), 'the store reported down', 30_000);
    assert.equal(await tlsAsk(port, 'a.example.test'), 'a a.example.test -');
    assert.equal(await tlsAsk(port, 'b.example.test'), 'b b.example.test -');
    assert.equal(gauge(await scrape(), 'echgate_config_store_up'), 0);
    assert.equal(serve.exitCode, null, 'serve is still running');

    await startEtcd();
    // Written as soon as etcd answers, before or while echgate reconnects: it must still arrive.
    const r = await client.put(`${ROOT_KEY}/tcp/routers/bee/rule`).value('HostSNI(`c.example.test`)');
    const rev = Number(r.header.revision);
    await waitFor(() => since(from).some((l) => l.msg === 'configuration reloaded' && Number(l.revision) >= rev), 'the catch-up reload', 30_000);
    assert.ok(since(from).some((l) => l.msg === 'configuration store reachable again'));
    assert.equal(await tlsAsk(port, 'c.example.test'), 'b c.example.test -');
    assert.equal(gauge(await scrape(), 'echgate_config_store_up'), 1);
  });
});

/**
 * GET /ready and the configuration (issue #9, docs/fleet.md "GET /ready"):
 * two fleet instances (ech.store.etcd) on the same providers.etcd keys. A
 * configuration naming a certificate file by a relative path that exists only
 * in the first instance's working directory is applied by the first and
 * refused by the second: past the grace the second answers 503 with both
 * revisions, and 200 again once its certificate is there and it applies the
 * revision. A configuration every instance refuses leaves both ready.
 */
describe('providers.etcd in a fleet: an instance that cannot apply a configuration the others run is not ready', { skip: !existsSync(ETCD) && 'no /usr/bin/etcd (apt-get install etcd-server)', timeout: 180_000 }, () => {
  const ROOT2 = 'e2e-ready/traefik';
  let dir: string;
  let etcd: ChildProcess | undefined;
  let client: Etcd3;
  let a: Backend;
  interface Inst {
    id: string;
    dir: string;
    port: number;
    metricsPort: number;
    proc?: ChildProcess;
    lines: Line[];
  }
  const insts: Inst[] = [];
  const waitFor = async (pred: () => boolean | Promise<boolean>, what: string, ms = 30_000) => {
    for (const end = Date.now() + ms; Date.now() < end; ) {
      if (await pred()) return;
      await sleep(100);
    }
    assert.fail(`timed out waiting for ${what}\n${insts.map((i) => i.lines.slice(-6).map((l) => `${i.id}: ${JSON.stringify(l)}`).join('\n')).join('\n')}`);
  };
  const ready = async (i: Inst): Promise<{ code: number; body: string }> => {
    try {
      const r = await fetch(`http://127.0.0.1:${i.metricsPort}/ready`, { signal: AbortSignal.timeout(2000) });
      return { code: r.status, body: await r.text() };
    } catch (e) {
      return { code: 0, body: String(e) };
    }
  };
  const put = (kv: Record<string, string>) => {
    const t = client.if(`${ROOT2}/tcp/routers/app/rule`, 'Create', '>', 0);
    return t.then(...Object.entries(kv).map(([k, v]) => client.put(`${ROOT2}/${k}`).value(v))).commit();
  };
  const writeCert = (d: string) => {
    mkdirSync(join(d, 'certs'), { recursive: true });
    const c = certFor('t.example.test');
    writeFileSync(join(d, 'certs', 't.crt'), c.cert);
    writeFileSync(join(d, 'certs', 't.key'), c.key, { mode: 0o600 });
  };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'echgate-etcd-ready-'));
    const [cp, pp] = [await freePort(), await freePort()];
    const url = `http://127.0.0.1:${cp}`;
    client = new Etcd3({ hosts: url, dialTimeout: 1000 });
    // biome-ignore format: etcd's flags read best as pairs
    etcd = spawn(ETCD, [
      '--name', 'r1', '--data-dir', join(dir, 'r1'),
      '--listen-client-urls', url, '--advertise-client-urls', url,
      '--listen-peer-urls', `http://127.0.0.1:${pp}`, '--initial-advertise-peer-urls', `http://127.0.0.1:${pp}`,
      '--initial-cluster', `r1=http://127.0.0.1:${pp}`, '--logger', 'zap', '--log-outputs', join(dir, 'etcd.log'),
    ], { stdio: 'ignore' });
    await waitFor(async () => client.put('probe').value('1').then(() => true, () => false), 'etcd to answer');
    a = await tlsBackend('a');
    await client.put(`${ROOT2}/tcp/routers/app/rule`).value('HostSNI(`a.example.test`)');
    await put({
      'tcp/routers/app/service': 'a',
      'tcp/routers/app/tls/passthrough': 'true',
      'tcp/services/a/loadBalancer/servers/0/address': `127.0.0.1:${a.port}`,
    });
    for (const id of ['ready-one', 'ready-two']) {
      const d = join(dir, id);
      mkdirSync(join(d, 'keys'), { recursive: true, mode: 0o700 });
      writeFileSync(join(d, 'kek'), `${'a1'.repeat(32)}\n`, { mode: 0o600 });
      const i: Inst = { id, dir: d, port: await freePort(), metricsPort: await freePort(), lines: [] };
      writeFileSync(
        join(d, 'echgate.yml'),
        `entryPoints:\n  websecure: { address: "127.0.0.1:${i.port}" }\nmetrics: { address: "127.0.0.1:${i.metricsPort}" }\n` +
          `ech:\n  keysDir: ${JSON.stringify(join(d, 'keys'))}\n  store:\n    etcd: { endpoints: ["${url}"], prefix: e2e-ready/fleet/, kek: { file: ${JSON.stringify(join(d, 'kek'))} }, leaseTtl: 2s }\n` +
          `providers:\n  etcd: { endpoints: ["${url}"], rootKey: ${ROOT2} }\n`,
      );
      insts.push(i);
    }
    // The certificate the next configuration names (a path relative to the working directory) is on the first host only.
    writeCert(insts[0]!.dir);
    for (const i of insts) {
      i.proc = spawn('node', [BIN, 'serve', '--config', join(i.dir, 'echgate.yml')], { cwd: i.dir, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ECHGATE_ROTATION_SHORT: '1', ECHGATE_INSTANCE: i.id } });
      let buf = '';
      i.proc.stdout!.on('data', (d: Buffer) => {
        buf += d.toString();
        for (let n = buf.indexOf('\n'); n >= 0; n = buf.indexOf('\n')) {
          const l = buf.slice(0, n);
          buf = buf.slice(n + 1);
          try {
            i.lines.push(JSON.parse(l));
          } catch {
            i.lines.push({ msg: l });
          }
        }
      });
      i.proc.stderr!.on('data', (d: Buffer) => i.lines.push({ msg: `stderr: ${d}` }));
    }
    for (const i of insts) await waitFor(async () => (await ready(i)).code === 200, `${i.id} ready`);
  });

  after(async () => {
    for (const i of insts) {
      const p = i.proc;
      if (!p || p.exitCode !== null) continue;
      const gone = new Promise((r) => p.once('exit', r));
      p.kill('SIGTERM');
      await gone;
    }
    client?.close();
    if (etcd && etcd.exitCode === null) {
      const gone = new Promise((r) => etcd!.once('exit', r));
      etcd.kill('SIGTERM');
      await gone;
    }
    await a?.close();
    rmSync(join(dir, 'r1'), { recursive: true, force: true }); // etcd's data; the logs stay
    process.stderr.write(`etcd provider e2e: logs in ${dir}\n`);
  });

  it('a configuration every instance refuses: nobody runs it, both stay ready (the old one keeps serving)', async () => {
    const [one, two] = insts as [Inst, Inst];
    const from = [one.lines.length, two.lines.length];
    await put({ 'tcp/routers/app/service': 'nope' });
    await waitFor(() => insts.every((i, n) => i.lines.slice(from[n]).some((l) => l.msg.startsWith('reload refused'))), 'both refusals');
    // Past the grace (5 s) and the read of the others' records a grace after the refusal (+1 s), with margin.
    await sleep(9000);
    for (const i of insts) {
      const r = await ready(i);
      assert.equal(r.code, 200, `${i.id}: ${r.body}`);
      assert.match(r.body, /^ready: holds the current keys/);
    }
    await put({ 'tcp/routers/app/service': 'a' });
    await waitFor(() => insts.every((i, n) => i.lines.slice(from[n]).some((l) => l.msg === 'configuration reloaded')), 'both apply the repair');
  });

  it('a configuration one instance cannot apply (its certificate file is missing): 503 naming both revisions, 200 once it applies it', async () => {
    const [one, two] = insts as [Inst, Inst];
    const from = [one.lines.length, two.lines.length];
    const r = await put({
      'tcp/routers/term/rule': 'HostSNI(`t.example.test`)',
      'tcp/routers/term/service': 'a',
      'tcp/routers/term/tls': 'true',
      'tls/certificates/0/certFile': 'certs/t.crt',
      'tls/certificates/0/keyFile': 'certs/t.key',
    });
    const rev = Number(r.header.revision);
    await waitFor(() => one.lines.slice(from[0]).some((l) => l.msg === 'configuration reloaded' && Number(l.revision) >= rev), 'the first instance applies it');
    await waitFor(() => two.lines.slice(from[1]).some((l) => l.msg.startsWith('reload refused')), 'the second instance refuses it');
    const applied = Number(one.lines.slice(from[0]).find((l) => l.msg === 'configuration reloaded')!.revision);
    await waitFor(async () => (await ready(two)).code === 503, 'the second instance not ready');
    const body = (await ready(two)).body;
    assert.match(body, new RegExp(`^not ready: runs configuration revision \\d+, instance ready-one runs ${applied} `), body);
    const mine = Number(/runs configuration revision (\d+)/.exec(body)![1]);
    assert.ok(mine < applied, body);
    assert.equal((await ready(one)).code, 200, 'the instance that applied it stays ready');
    // The instance record says the same (what the leader and `fleet status` read), written at the next
    // readiness check (each second) while /ready answers from the live check.
    const rec = async () => JSON.parse((await client.get('e2e-ready/fleet/instances/ready-two').string()) ?? '{}') as { ready?: boolean; reason?: string };
    await waitFor(async () => (await rec()).ready === false, 'the record of the second instance to say not ready');
    assert.match(String((await rec()).reason), /instance ready-one runs/);

    // Fixed on that host: the certificate put in place, the instance told to reload (SIGHUP).
    writeCert(two.dir);
    const from2 = two.lines.length;
    two.proc!.kill('SIGHUP');
    await waitFor(() => two.lines.slice(from2).some((l) => l.msg === 'configuration reloaded'), 'the second instance applies it');
    await waitFor(async () => (await ready(two)).code === 200, 'the second instance ready again');
    assert.equal(await tlsAsk(two.port, 'a.example.test'), 'a a.example.test -');
  });
});
