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
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Etcd3 } from 'etcd3';
import { freePort } from '../src/cli/free-port.js';
import { type Backend, ROOT, sleep, tlsAsk, tlsBackend } from '../test/helpers.js';

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
    [clientPort, peerPort, port, metricsPort, port2] = [await freePort(), await freePort(), await freePort(), await freePort(), await freePort()];
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
    rmSync(dir, { recursive: true, force: true });
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
    assert.ok(!lines2.slice(from2).some((l) => l.msg === 'configuration reloaded'), 'the second instance applied nothing');
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
