/**
 * The fleet's first start and a leader that cannot lead (docs/fleet.md), end
 * to end: one etcd 3.4 member and BIND 9 (Debian's named, TSIG + native DoH,
 * as test-e2e/bind9-publish.test.ts) on free loopback ports.
 *
 * - `echgate fleet import` seals an existing key folder into the empty prefix;
 *   a second import (another folder, same config_id) is refused and changes
 *   nothing in etcd.
 * - An instance whose KEK is not the fleet's is elected first (it is the only
 *   candidate), finds the keys do not open, resigns and stays out; a good
 *   instance takes over and rotates; its DNS step is the RFC 2136 update
 *   signed with TSIG and read back over BIND's DoH (the path of
 *   `keys rotate --publish`), and dig sees the new ech=.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { Etcd3 } from 'etcd3';
import { freePort } from '../src/cli/free-port.js';
import { generateKey, listKeys, publishedList } from '../src/keys/manager.js';
import { decodeECHConfigList } from '../src/wire/ech/config.js';
import { ROOT, sleep } from '../test/helpers.js';
import { namedMissing, startBind } from './bind9.js';

const run = promisify(execFile);
const ETCD = '/usr/bin/etcd';
const skip = !existsSync(ETCD) ? 'etcd is not installed (apt-get install etcd-server)' : namedMissing;
const BIN = join(ROOT, 'bin', 'echgate.js');
const PREFIX = 'faults/';
const KEK = 'd4'.repeat(32);
const WRONG_KEK = 'e5'.repeat(32);

async function echgate(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await run('node', [BIN, ...args], { timeout: 120_000, env: { ...process.env, ECHGATE_ROTATION_SHORT: '1' } });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string };
    return { code: x.code, stdout: x.stdout, stderr: x.stderr };
  }
}

const waitUntil = async (what: string, fn: () => Promise<boolean> | boolean, ms = 20_000, every = 200) => {
  const end = Date.now() + ms;
  for (;;) {
    if (await fn()) return;
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await sleep(every);
  }
};

interface Instance {
  id: string;
  metricsPort: number;
  dir: string;
  config: string;
  proc?: ChildProcess;
  out: string;
}

describe('fleet: import into an empty prefix, a wrong-KEK leader resigns, RFC 2136 publishing to BIND 9', { skip, timeout: 400_000 }, () => {
  const W = mkdtempSync(join(tmpdir(), 'echgate-fleet-faults-'));
  let etcdProc: ChildProcess | undefined;
  let named: ChildProcess | undefined;
  let etcd: Etcd3;
  let clientPort = 0;
  let dnsPort = 0;
  let dohPort = 0;
  const all: Instance[] = [];

  const configFor = async (id: string, kek: string): Promise<Instance> => {
    const dir = join(W, id);
    mkdirSync(join(dir, 'keys'), { recursive: true, mode: 0o700 });
    const i: Instance = { id, metricsPort: await freePort(), dir, config: join(dir, 'echgate.yml'), out: '' };
    writeFileSync(join(dir, 'kek'), `${kek}\n`, { mode: 0o600 });
    writeFileSync(
      i.config,
      `entryPoints:
  websecure: { address: "127.0.0.1:${await freePort()}" }
metrics: { address: "127.0.0.1:${i.metricsPort}" }
ech:
  keysDir: ${JSON.stringify(join(dir, 'keys'))}
  rotation:
    every: 5s
    grace: 4s
    publicName: public.example.test
    publish:
      name: svc.example.test
      server: "127.0.0.1:${dnsPort}"
      zone: example.test
      tsigKey: ${JSON.stringify(join(W, 'upd.key'))}
      verifyDoh: "https://127.0.0.1:${dohPort}/dns-query"
      ca: ${JSON.stringify(join(W, 'cert.pem'))}
      ttl: 1
      verifyTimeout: 10s
  store:
    etcd:
      endpoints: ["http://127.0.0.1:${clientPort}"]
      prefix: ${PREFIX}
      kek: { file: ${JSON.stringify(join(dir, 'kek'))} }
      leaseTtl: 2s
      ackTimeout: 3s
      drain: 1s
      forgetAfter: 12s
tcp:
  routers:
    r: { entryPoints: [websecure], rule: "HostSNI(\`a.example.test\`)", service: s, tls: { passthrough: true } }
  services:
    s: { loadBalancer: { servers: [{ address: "127.0.0.1:9" }] } }
`,
    );
    all.push(i);
    return i;
  };
  const start = (i: Instance) => {
    i.out = '';
    i.proc = spawn('node', [BIN, 'serve', '--config', i.config], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ECHGATE_ROTATION_SHORT: '1', ECHGATE_INSTANCE: i.id } });
    i.proc.stdout!.on('data', (d) => {
      i.out += d;
    });
    i.proc.stderr!.on('data', (d) => {
      i.out += d;
    });
  };
  const ready = async (i: Instance) => {
    try {
      const r = await fetch(`http://127.0.0.1:${i.metricsPort}/ready`, { signal: AbortSignal.timeout(1000) });
      return { code: r.status, body: await r.text() };
    } catch (e) {
      return { code: 0, body: String(e) };
    }
  };
  const metric = async (i: Instance, name: string) => {
    const r = await fetch(`http://127.0.0.1:${i.metricsPort}/metrics`, { signal: AbortSignal.timeout(1000) }).catch(() => undefined);
    const m = r ? new RegExp(`^${name}\\{\\} (\\S+)$`, 'm').exec(await r.text()) : null;
    return m ? Number(m[1]) : undefined;
  };
  const keyRecords = async () => etcd.getAll().prefix(`${PREFIX}keys/`).strings();
  const rotation = async () => {
    const t = await etcd.get(`${PREFIX}rotation`).string();
    return t ? (JSON.parse(t) as { seq: number; step: string; configId: number; leader: string; note?: string }) : undefined;
  };
  const leaderNow = () => etcd.namespace(PREFIX).election('leader').leader();

  before(async () => {
    clientPort = await freePort();
    const peer = await freePort();
    etcdProc = spawn(ETCD, ['--name', 'f1', '--data-dir', join(W, 'f1'), '--listen-client-urls', `http://127.0.0.1:${clientPort}`, '--advertise-client-urls', `http://127.0.0.1:${clientPort}`, '--listen-peer-urls', `http://127.0.0.1:${peer}`, '--initial-advertise-peer-urls', `http://127.0.0.1:${peer}`, '--initial-cluster', `f1=http://127.0.0.1:${peer}`, '--log-outputs', join(W, 'etcd.log'), '--logger', 'zap'], { stdio: 'ignore' });
    etcd = new Etcd3({ hosts: `http://127.0.0.1:${clientPort}`, dialTimeout: 1000 });
    // BIND 9 with a TSIG key and DoH (../shared/recipes/bind9-ddns-doh.md).
    const bind = await startBind(W);
    ({ dnsPort, dohPort } = bind);
    named = bind.proc;
    await waitUntil('etcd', async () => {
      try {
        await etcd.put(`${PREFIX}probe`).value('1');
        await etcd.delete().key(`${PREFIX}probe`);
        return true;
      } catch {
        return false;
      }
    }, 30_000);
  });

  after(async () => {
    for (const i of all) {
      writeFileSync(join(W, `${i.id}.out`), i.out);
      if (i.proc?.exitCode === null) i.proc.kill('SIGKILL');
    }
    etcd?.close();
    named?.kill();
    if (etcdProc && etcdProc.exitCode === null) {
      const gone = new Promise((r) => etcdProc!.once('exit', r));
      etcdProc.kill('SIGTERM');
      await gone;
    }
    rmSync(join(W, 'f1'), { recursive: true, force: true }); // etcd's data (64 MB of WAL: etcd-member.ts); the logs stay
    process.stderr.write(`fleet faults e2e: logs in ${W}\n`);
  });

  let a: Instance;
  let imported: number[] = [];

  it('fleet import seals the key folder into the empty prefix; a second import is refused and etcd is unchanged', async () => {
    a = await configFor('a', KEK);
    const k1 = generateKey(join(a.dir, 'keys'), { publicName: 'public.example.test' });
    const k2 = generateKey(join(a.dir, 'keys'), { publicName: 'other.example.test' });
    imported = [k1.configId, k2.configId].sort((x, y) => x - y);
    const r = await echgate('fleet', 'import', '--config', a.config);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`imported config_id ${k1.configId} .*sealed with the KEK`));
    const recs = await keyRecords();
    assert.deepEqual(Object.values(recs).map((v) => JSON.parse(v).meta.configId).sort((x, y) => x - y), imported);
    const pem = readFileSync(join(a.dir, 'keys', `ech-${String(k1.configId).padStart(3, '0')}.pem`), 'utf8');
    for (const v of Object.values(recs)) {
      const rec = JSON.parse(v);
      assert.ok(rec.sealed?.box, 'sealed');
      assert.ok(!v.includes('PRIVATE KEY'), 'no PEM in etcd');
    }
    assert.ok(!Object.values(recs).join('').includes(pem.split('\n')[1]!), 'no clear key material in etcd');

    // Another folder, a key with the same config_id (other key material): refused, etcd byte for byte as it was.
    const other = join(W, 'other-keys');
    mkdirSync(other, { mode: 0o700 });
    generateKey(other, { publicName: 'public.example.test', configId: k1.configId });
    const again = await echgate('fleet', 'import', '--config', a.config, '--from', other);
    assert.equal(again.code, 1, again.stderr);
    assert.match(again.stderr, /already holds config_id .*nothing imported.*\[ERR_KEYSTORE\]/);
    assert.deepEqual(await keyRecords(), recs);
  });

  it('a leader whose KEK does not open the keys resigns (logged once, not ready, store up); another instance takes over, rotates, and publishes with RFC 2136 + TSIG read back over DoH', async () => {
    const w = await configFor('w', WRONG_KEK);
    const before = await keyRecords();
    start(w); // the only candidate: elected first
    await waitUntil('w resigning', () => /resigning leadership/.test(w.out), 30_000);
    assert.match(w.out, /this instance rotates the keys/, 'w was elected before it resigned');
    const r = await ready(w);
    assert.equal(r.code, 503);
    assert.match(r.body, /key-encryption key/);
    assert.equal(await metric(w, 'echgate_fleet_leader'), 0);
    assert.equal(await metric(w, 'echgate_fleet_store_up'), 1);
    await waitUntil('no leader left', async () => (await leaderNow()) === undefined, 10_000);
    assert.deepEqual(await keyRecords(), before, 'w wrote nothing');

    start(a);
    await waitUntil('a leading', async () => (await leaderNow()) === 'a', 30_000);
    await waitUntil('a ready', async () => (await ready(a)).code === 200, 30_000);
    // a serves the imported keys (its folder is the copy of etcd: the same config_ids; a rotation may already have staged one more).
    const held = listKeys(join(a.dir, 'keys')).keys.map((k) => k.meta.configId);
    for (const id of imported) assert.ok(held.includes(id), `a holds imported config_id ${id} (holds ${held.join(',')})`);
    let done: Awaited<ReturnType<typeof rotation>>;
    await waitUntil('a rotation done by a', async () => {
      done = await rotation();
      return done?.step === 'done' && done.leader === 'a';
    }, 60_000);
    assert.match(done!.note ?? '', /w/, 'published without the drained wrong-KEK instance, and says so');
    // The record says done once the transaction commits; a logs it after that, and its stdout reaches this process a moment later.
    await waitUntil('a logging the rotation done', () => /fleet rotation done/.test(a.out), 10_000);
    assert.match(a.out, /read back over .*: ech= matches/, 'the DNS step read the record back over DoH');
    // BIND holds the list a publishes: its active keys, with the new one.
    const list = publishedList(listKeys(join(a.dir, 'keys')).keys)!;
    assert.ok(decodeECHConfigList(list).some((c) => 'configId' in c && c.configId === done!.configId));
    const dig = await run('dig', ['-p', String(dnsPort), '@127.0.0.1', '+short', 'svc.example.test', 'HTTPS']);
    assert.ok(dig.stdout.includes(`ech=${Buffer.from(list).toString('base64')}`), dig.stdout);

    // w stays out: it does not stand again while the keys do not open, logs ERR_KEK once per distinct failure.
    await sleep(3000);
    assert.equal(await leaderNow(), 'a');
    assert.equal(w.out.match(/this instance rotates the keys/g)?.length, 1, 'w was never elected again');
    const leaderKek = w.out.split('\n').filter((l) => /fleet leader: .*key-encryption key/.test(l) && /ERR_KEK/.test(l));
    assert.equal(new Set(leaderKek.map((l) => /"err":"([^"]*)"/.exec(l)?.[1])).size, leaderKek.length, leaderKek.join('\n'));
    assert.doesNotMatch(w.out, /store unreachable/);
    for (const i of [a, w]) assert.doesNotMatch(i.out, /PRIVATE KEY|"privateKey"|"box"/, 'no key material in logs');
  });
});
