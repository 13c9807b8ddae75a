/**
 * The fleet end to end (docs/fleet.md): a 3-member etcd 3.4 cluster (Debian's
 * /usr/bin/etcd) on free loopback ports, three `echgate serve` instances
 * sharing one key set through it, and echgate's own ECH client connecting
 * through all three the whole time: it reads ech= from one instance's
 * embedded DNS and connects to another instance, so a key that DNS names
 * before every instance holds it fails a connection.
 *
 * In order: rotations reach every instance before any DNS names the new key
 * and no connection fails; the leader is killed (kill -9) mid-rotation while
 * another instance is frozen (SIGSTOP, cut off from etcd): the rotation waits,
 * then another leader finishes it; one etcd member stopped; all stopped and
 * back (instances stay ready, report the store down, catch up); an instance
 * cut off from etcd (its only endpoint stopped) past its membership lease (not
 * ready by half of forgetAfter, the rotation waits until its membership runs
 * out, no key it lacks named while it is ready); an instance with the wrong KEK (ERR_KEK, nothing overwritten, not ready, the rotation
 * goes on once it is drained).
 *
 * Schedules are seconds long (ECHGATE_ROTATION_SHORT=1).
 */
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import dgram from 'node:dgram';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { Etcd3 } from 'etcd3';
import { freePort } from '../src/cli/free-port.js';
import { died, ETCD, type EtcdMember, etcdWatchdog, removeEtcdData, settle, startEtcdMember, stopEtcdMember } from './etcd-member.js';
import { stablePort } from './stable-port.js';
import { connectOnce } from '../src/cli/connect.js';
import { decodeMessage, encodeQuery, RRType } from '../src/wire/dns/message.js';
import { decodeSvcb } from '../src/wire/dns/svcb.js';
import { decodeECHConfigList } from '../src/wire/ech/config.js';
import { generateKey, listKeys } from '../src/keys/manager.js';
import { certFor, ROOT, serverFirstBackend, sleep } from '../test/helpers.js';

const skip = existsSync(ETCD) ? false : 'etcd is not installed (apt-get install etcd-server)';
const BIN = join(ROOT, 'bin', 'echgate.js');
const run = promisify(execFile);
const PREFIX = 'fleet-e2e/';
const KEK = 'a1'.repeat(32);
const WRONG_KEK = 'b2'.repeat(32);

type Member = EtcdMember;

interface Instance {
  id: string;
  port: number;
  dnsPort: number;
  metricsPort: number;
  dir: string;
  config: string;
  proc?: ChildProcess;
  out: string;
  kek: string;
  serving?: boolean;
}

const waitUntil = async (what: string, fn: () => Promise<boolean> | boolean, ms = 20_000, every = 100) => {
  const end = Date.now() + ms;
  for (;;) {
    if (await fn()) return;
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await sleep(every);
  }
};

/** ech= of secret.example.test's HTTPS record from an instance's embedded DNS (UDP). */
function dnsEch(port: number): Promise<Uint8Array | undefined> {
  return new Promise((resolve) => {
    const sock = dgram.createSocket('udp4');
    const t = setTimeout(() => {
      sock.close();
      resolve(undefined);
    }, 1000);
    sock.on('message', (m) => {
      clearTimeout(t);
      sock.close();
      try {
        const msg = decodeMessage(new Uint8Array(m));
        const rr = msg.answers.find((a) => a.type === RRType.HTTPS);
        resolve(rr ? decodeSvcb(rr.rdata).params.get(5) : undefined);
      } catch {
        resolve(undefined);
      }
    });
    sock.send(encodeQuery('secret.example.test', RRType.HTTPS, { id: Math.floor(Math.random() * 65535) }), port, '127.0.0.1');
  });
}
const idsOf = (list: Uint8Array) => decodeECHConfigList(list).map((c) => ('configId' in c ? c.configId : -1));

describe('fleet on a 3-member etcd cluster with three echgate instances', { skip, timeout: 900_000 }, () => {
  const base = mkdtempSync(join(tmpdir(), 'echgate-fleet-e2e-'));
  const members: Member[] = [];
  const instances: Instance[] = [];
  const extra: Instance[] = [];
  let etcd: Etcd3;
  let hidden: Awaited<ReturnType<typeof serverFirstBackend>>;
  let endpoints = '';
  // The client loop: ECH connections through all three instances, throughout.
  let looping = true;
  let loop: Promise<void> | undefined;
  const results = { ok: 0, failed: [] as string[], dnsSawNewBeforeAllHeld: [] as string[] };

  const startMember = (m: Member, state: 'new' | 'existing') => startEtcdMember(m, { dir: base, cluster: members, token: `echgate-${process.pid}`, state });
  const stopMember = (m: Member) => stopEtcdMember(m);
  /** A put through the whole cluster; a member that died on its own fails the test with its log (etcd-member.ts). */
  const clusterHealthy = async (): Promise<boolean> => {
    const dead = died(members);
    if (dead) assert.fail(dead);
    return settle(etcd.put(`${PREFIX}probe`).value(String(Date.now())).then((): boolean => true), 5_000, false);
  };

  const configFor = (i: Instance) => `
entryPoints:
  websecure: { address: "127.0.0.1:${i.port}" }
metrics: { address: "127.0.0.1:${i.metricsPort}" }
ech:
  keysDir: ${JSON.stringify(join(i.dir, 'keys'))}
  rotation: { every: 5s, grace: 4s, publish: embedded, publicName: public.example.test }
  store:
    etcd:
      endpoints: [${endpoints}]
      prefix: ${PREFIX}
      kek: { file: ${JSON.stringify(join(i.dir, 'kek'))} }
      leaseTtl: 2s
      ackTimeout: 3s
      drain: 1s
      forgetAfter: 12s
tls:
  certificates: [{ certFile: ${JSON.stringify(join(base, 'secret.crt'))}, keyFile: ${JSON.stringify(join(base, 'secret.key'))} }]
tcp:
  routers:
    secret: { entryPoints: [websecure], rule: "HostSNI(\`secret.example.test\`)", requireECH: true, service: hidden, tls: {} }
  services:
    hidden: { loadBalancer: { servers: [{ address: "127.0.0.1:${hidden.port}" }] } }
dns:
  address: "127.0.0.1:${i.dnsPort}"
  ttl: 1
  names:
    secret.example.test: { a: [127.0.0.1], https: { port: ${i.port} } }
`;
  const newInstance = async (id: string, kek = KEK): Promise<Instance> => {
    const dir = join(base, id);
    mkdirSync(join(dir, 'keys'), { recursive: true, mode: 0o700 });
    const i: Instance = { id, port: await freePort(), dnsPort: await freePort(), metricsPort: await freePort(), dir, config: join(dir, 'echgate.yml'), out: '', kek };
    writeFileSync(join(dir, 'kek'), `${kek}\n`, { mode: 0o600 });
    writeFileSync(i.config, configFor(i));
    return i;
  };
  const startInstance = (i: Instance) => {
    i.proc = spawn('node', [BIN, 'serve', '--config', i.config], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ECHGATE_ROTATION_SHORT: '1', ECHGATE_INSTANCE: i.id } });
    i.proc.stdout!.on('data', (d) => {
      i.out += d;
    });
    i.proc.stderr!.on('data', (d) => {
      i.out += d;
    });
  };
  const ready = async (i: Instance): Promise<{ code: number; body: string }> => {
    try {
      const r = await fetch(`http://127.0.0.1:${i.metricsPort}/ready`, { signal: AbortSignal.timeout(1000) });
      return { code: r.status, body: await r.text() };
    } catch (e) {
      return { code: 0, body: String(e) };
    }
  };
  const metric = async (i: Instance, name: string): Promise<number | undefined> => {
    const r = await fetch(`http://127.0.0.1:${i.metricsPort}/metrics`, { signal: AbortSignal.timeout(1000) }).catch(() => undefined);
    const m = r ? new RegExp(`^${name}\\{\\} (\\S+)$`, 'm').exec(await r.text()) : null;
    return m ? Number(m[1]) : undefined;
  };
  const rotation = async () => {
    const t = await etcd.get(`${PREFIX}rotation`).string().catch(() => null);
    return t ? (JSON.parse(t) as { seq: number; step: string; configId: number; leader: string; late: string[]; waitingFor: string[]; note?: string }) : undefined;
  };
  const instanceRecords = async () => {
    const all = await etcd.getAll().prefix(`${PREFIX}instances/`).strings();
    return new Map(Object.values(all).map((v) => JSON.parse(v) as { id: string; keys: number[]; ready: boolean; reason: string }).map((r) => [r.id, r]));
  };
  const keyStates = async () => {
    const all = await etcd.getAll().prefix(`${PREFIX}keys/`).strings();
    return new Map(Object.values(all).map((v) => JSON.parse(v) as { meta: { configId: number; state: string } }).map((r) => [r.meta.configId, r.meta.state]));
  };
  /**
   * Wait (bounded) until the instance records of `ids` list every active key. /ready answers from the
   * keyring; the record that acknowledges the keys is the put that follows the read that loaded them, so a
   * record read at the instant /ready turns 200 can still be the previous one (seen once for i5, under load).
   */
  const recordsHoldActive = async (ids: string[], ms = 10_000) => {
    let lacking = ['(not read yet)'];
    await waitUntil(`the records of ${ids.join(', ')} listing every active key`, async () => {
      let recs: Awaited<ReturnType<typeof instanceRecords>>;
      let states: Awaited<ReturnType<typeof keyStates>>;
      try {
        [recs, states] = await Promise.all([instanceRecords(), keyStates()]);
      } catch (e) {
        lacking = [`etcd read failed: ${e}`];
        return false;
      }
      lacking = ids.flatMap((i) => [...states].filter(([id, st]) => st === 'active' && !recs.get(i)?.keys.includes(id)).map(([id]) => `${i} holds active config_id ${id}: ${JSON.stringify(recs.get(i))}`));
      return lacking.length === 0;
    }, ms, 100).catch(() => assert.deepEqual(lacking, []));
  };
  /** Instances the client loop uses: started, seen ready since, not frozen or being killed (what a load balancer would send to). */
  const running = () => instances.filter((i) => i.serving);
  const waitDone = async (afterSeq: number, ms = 40_000) => {
    let r: Awaited<ReturnType<typeof rotation>>;
    await waitUntil(`a rotation after #${afterSeq} to finish`, async () => {
      r = await rotation();
      return Boolean(r && r.seq > afterSeq && r.step === 'done');
    }, ms, 200);
    return r!;
  };

  let stopWatchdog = () => {};
  before(async () => {
    stopWatchdog = etcdWatchdog(members);
    const { key, cert } = certFor('secret.example.test');
    writeFileSync(join(base, 'secret.crt'), cert);
    writeFileSync(join(base, 'secret.key'), key);
    hidden = await serverFirstBackend('hidden\n');
    for (const n of ['e1', 'e2', 'e3']) members.push({ name: n, client: await stablePort(), peer: await stablePort() }); // restarted in place: stable-port.ts
    for (const m of members) startMember(m, 'new');
    endpoints = members.map((m) => `"http://127.0.0.1:${m.client}"`).join(', ');
    etcd = new Etcd3({ hosts: members.map((m) => `http://127.0.0.1:${m.client}`), dialTimeout: 1000 });
    await waitUntil('the etcd cluster', clusterHealthy, 30_000, 200);
    for (const id of ['i1', 'i2', 'i3']) instances.push(await newInstance(id));
    // The fleet's first key: made by whichever instance leads first (ech.rotation.publicName).
    for (const i of instances) startInstance(i);
    await waitUntil('the first key in etcd', async () => (await keyStates()).size > 0, 30_000, 200);
    for (const i of instances) await waitUntil(`${i.id} ready`, async () => (await ready(i)).code === 200, 30_000, 200);
    for (const i of instances) i.serving = true;

    loop = (async () => {
      let n = 0;
      while (looping) {
        const live = running();
        if (live.length === 0) {
          await sleep(50);
          continue;
        }
        const from = live[n % live.length]!;
        const to = live[(n + 1 + Math.floor(n / live.length)) % live.length]!;
        n++;
        const list = await dnsEch(from.dnsPort);
        if (!list) continue; // a DNS answer lost (instance restarting): no connection attempted
        // The invariant behind "reaches all three before DNS changes": every config DNS names is held by every live instance.
        const recs = await instanceRecords().catch(() => undefined);
        if (recs) {
          for (const id of idsOf(list)) {
            for (const i of running()) {
              const r = recs.get(i.id);
              if (r && !r.keys.includes(id)) results.dnsSawNewBeforeAllHeld.push(`${from.id} DNS named config_id ${id}; ${i.id} held ${r.keys.join(',')}`);
            }
          }
        }
        const rep = await connectOnce('127.0.0.1', to.port, { sni: 'secret.example.test', ech: list, timeoutMs: 3000 });
        if (rep.connected && rep.ech === 'accepted') results.ok++;
        else if (running().includes(to)) {
          const held = (await instanceRecords().catch(() => undefined))?.get(to.id)?.keys;
          results.failed.push(`${new Date().toISOString()} ${from.id} DNS (config_id ${idsOf(list).join(',')}) → ${to.id} (holds ${held?.join(',')}): ${JSON.stringify({ ech: rep.ech, error: rep.error })}`);
        }
        await sleep(20);
      }
    })();
  });

  after(async () => {
    stopWatchdog();
    looping = false;
    await loop;
    for (const i of [...instances, ...extra]) writeFileSync(join(base, `${i.id}.out`), i.out);
    process.stderr.write(`fleet e2e: logs in ${base}\n`);
    for (const i of [...instances, ...extra]) {
      if (i.proc?.pid && i.proc.exitCode === null) {
        try {
          process.kill(i.proc.pid, 'SIGCONT');
        } catch {}
        i.proc.kill('SIGKILL');
      }
    }
    etcd?.close();
    for (const m of members) await stopMember(m);
    removeEtcdData(base, members);
    await hidden?.close();
    const left = process.getActiveResourcesInfo().filter((r) => r !== 'TTYWrap');
    if (left.length) process.stderr.write(`fleet e2e: still open after cleanup: ${left.join(', ')}\n`);
  });

  it('three rotations reach all three instances before any DNS names the new key; no ECH connection fails', async () => {
    const start = (await rotation())?.seq ?? 0;
    let r = await waitDone(start);
    r = await waitDone(r.seq);
    r = await waitDone(r.seq);
    assert.ok(r.seq >= start + 3);
    assert.deepEqual(results.failed, []);
    assert.deepEqual(results.dnsSawNewBeforeAllHeld, []);
    assert.ok(results.ok > 20, `only ${results.ok} ECH connections`);
    // Every instance logged holding each staged key before the leader published it.
    const leaderOut = instances.map((i) => i.out).join('');
    assert.match(leaderOut, /every instance holds the key; publishing/);
    for (const i of instances) assert.doesNotMatch(i.out, /PRIVATE KEY|"privateKey"|"box"/, 'no key material in logs');
    // etcd never sees a private key in clear: each record's key is sealed.
    const raw = await etcd.getAll().prefix(`${PREFIX}keys/`).strings();
    for (const v of Object.values(raw)) {
      const rec = JSON.parse(v) as { meta: { state: string }; sealed?: { box: string } };
      if (rec.meta.state !== 'retired') assert.ok(rec.sealed?.box, 'sealed');
    }
    // `echgate fleet status` on the live fleet (issue #9): the leader, the configuration revision, the
    // rotation step, every key with its state, and each instance with the keys it holds.
    const active = [...(await keyStates())].find(([, s]) => s === 'active')![0];
    const st = await run('node', [BIN, 'fleet', 'status', '--config', instances[0]!.config, '--json'], { timeout: 30_000, env: { ...process.env, ECHGATE_ROTATION_SHORT: '1' } });
    const s = JSON.parse(st.stdout) as { leader: string | null; configRevisions: { revision: string; instances: string[] }[]; keys: { configId: number; state: string }[]; instances: { id: string; keys: number[]; ready: boolean }[]; rotation: { seq: number; step: string } | null };
    assert.ok(['i1', 'i2', 'i3'].includes(s.leader ?? ''), `leader: ${s.leader}`);
    assert.deepEqual(s.instances.map((i) => i.id), ['i1', 'i2', 'i3']);
    for (const i of s.instances) assert.ok(i.ready && i.keys.includes(active), `${i.id} holds the active config_id ${active}: ${JSON.stringify(i)}`);
    assert.ok(s.keys.some((k) => k.configId === active && k.state === 'active'));
    assert.ok(s.rotation && s.rotation.seq >= r.seq, JSON.stringify(s.rotation));
    // Each instance here has its own file (its own ports), so each runs its own revision (a hash of the file):
    // every instance is listed under the revision it runs.
    assert.deepEqual(s.configRevisions.flatMap((c) => c.instances).sort(), ['i1', 'i2', 'i3']);
    const text = (await run('node', [BIN, 'fleet', 'status', '--config', instances[0]!.config], { timeout: 30_000, env: { ...process.env, ECHGATE_ROTATION_SHORT: '1' } })).stdout;
    assert.match(text, new RegExp(`^fleet ${PREFIX} {2}leader: i[123] {2}configuration revision: DIFFER: `, 'm'));
    assert.match(text, /^rotation #\d+: \w+ {2}config_id \d+ /m);
    for (const id of ['i1', 'i2', 'i3']) assert.match(text, new RegExp(`^ {2}${id} +ready +keys [\\d,]*\\b${active}\\b`, 'm'));
  });

  it('leader killed (kill -9) mid-rotation while another instance is frozen: the rotation waits, then the next leader finishes it; no key lost, no retired key published', async () => {
    const before = await rotation();
    const leaderId = before!.leader;
    const leader = instances.find((i) => i.id === leaderId)!;
    const frozen = instances.find((i) => i.id !== leaderId)!;
    // Freeze one follower: it cannot acknowledge, so the next rotation stays staged.
    frozen.serving = false;
    process.kill(frozen.proc!.pid!, 'SIGSTOP');
    let staged: Awaited<ReturnType<typeof rotation>>;
    await waitUntil('the next rotation staged', async () => {
      staged = await rotation();
      return Boolean(staged && staged.seq > before!.seq && staged.step === 'staged');
    }, 30_000, 100);
    await sleep(500);
    assert.equal((await rotation())!.step, 'staged', 'waits for the frozen instance');
    leader.serving = false;
    leader.proc!.kill('SIGKILL');
    await new Promise((r) => leader.proc!.once('exit', r));
    // Thaw the frozen one: its leases expired meanwhile; it registers again, catches up, acknowledges.
    await sleep(2500);
    process.kill(frozen.proc!.pid!, 'SIGCONT');
    const done = await waitDone(before!.seq, 40_000);
    assert.equal(done.configId, staged!.configId, 'the staged key was finished, not replaced');
    assert.notEqual(done.leader, leaderId, 'another instance led');
    const now = await keyStates();
    assert.ok(['active', 'decrypt-only'].includes(now.get(done.configId)!), 'the finished key is in etcd');
    await waitUntil(`${frozen.id} ready again`, async () => (await ready(frozen)).code === 200, 30_000, 200);
    frozen.serving = true;
    // Restart the killed one (same name): it rejoins with the keys from etcd. On fresh ports: its old ones
    // were free while it was down, and they are in the kernel's ephemeral range (where freePort draws), so any
    // outgoing connection on this busy machine may have taken one as its source port meanwhile (a run saw
    // the restart exit on EADDRINUSE for its DNS port). Its name, not its ports, is what rejoins.
    leader.out = '';
    Object.assign(leader, { port: await freePort(), dnsPort: await freePort(), metricsPort: await freePort() });
    writeFileSync(leader.config, configFor(leader));
    startInstance(leader);
    await waitUntil(`${leader.id} ready again`, async () => (await ready(leader)).code === 200, 30_000, 200);
    leader.serving = true;
    // No key lost (every live instance holds every key etcd has in use), no retired key in any DNS answer.
    await recordsHoldActive(running().map((i) => i.id));
    const states = await keyStates();
    for (const i of running()) {
      const list = await dnsEch(i.dnsPort);
      for (const id of idsOf(list!)) assert.equal(states.get(id), 'active', `${i.id} publishes config_id ${id} which is ${states.get(id)}`);
    }
    assert.deepEqual(results.failed, []);
    assert.deepEqual(results.dnsSawNewBeforeAllHeld, []);
  });

  it('one etcd member stopped: rotations go on, connections keep working', async () => {
    const m = members[0]!;
    await stopMember(m);
    const r = await rotation();
    await waitDone(r!.seq, 40_000);
    for (const i of running()) assert.equal((await ready(i)).code, 200, i.id);
    startMember(m, 'existing');
    await sleep(1000);
    assert.deepEqual(results.failed, []);
  });

  it('all etcd members stopped: instances keep serving and stay ready, report the store down in logs and metrics; they catch up when etcd returns', async () => {
    await waitUntil('every member answering', clusterHealthy, 20_000, 200);
    const seq = (await rotation())!.seq;
    for (const m of members) await stopMember(m);
    const okBefore = results.ok;
    await waitUntil('store down reported', async () => {
      for (const i of running()) if ((await metric(i, 'echgate_fleet_store_up')) !== 0) return false;
      return true;
    }, 15_000, 250);
    for (const i of running()) {
      assert.match(i.out, /fleet store unreachable/);
      const r = await ready(i);
      assert.equal(r.code, 200, `${i.id}: ${r.body}`);
    }
    await sleep(1500);
    assert.ok(results.ok > okBefore, 'ECH connections still accepted with etcd down');
    for (const m of members) startMember(m, 'existing');
    await waitUntil('the etcd cluster back', clusterHealthy, 30_000, 250);
    await waitUntil('store up again everywhere', async () => {
      for (const i of running()) if ((await metric(i, 'echgate_fleet_store_up')) !== 1) return false;
      return true;
    }, 30_000, 250);
    const done = await waitDone(seq, 40_000);
    const recs = await instanceRecords();
    for (const i of running()) assert.ok(recs.get(i.id)?.keys.includes(done.configId), `${i.id} caught up`);
    assert.deepEqual(results.failed, []);
    assert.deepEqual(results.dnsSawNewBeforeAllHeld, []);
  });

  it('an instance cut off from etcd during a rotation (its only endpoint stopped): not ready by half of forgetAfter, the rotation waits for it until its membership lease runs out, DNS never names a key a ready instance lacks; it catches up when etcd returns', async () => {
    await waitUntil('every member answering', clusterHealthy, 20_000, 200);
    const m = members[2]!;
    const p = await newInstance('i5');
    extra.push(p);
    // Its one and only etcd endpoint: the member about to be stopped (the others keep quorum and the rest of the fleet).
    writeFileSync(p.config, configFor(p).replace(/endpoints: \[[^\]]*\]/, `endpoints: ["http://127.0.0.1:${m.client}"]`));
    startInstance(p);
    await waitUntil('i5 ready', async () => (await ready(p)).code === 200, 30_000, 200);
    // A full member first: a rotation finished with i5 holding its key.
    await waitDone((await rotation())!.seq, 40_000);
    await waitUntil('i5 ready after the rotation', async () => (await ready(p)).code === 200, 20_000, 200);
    const held = () => new Set(listKeys(join(p.dir, 'keys')).keys.filter((k) => k.meta.state !== 'retired' && k.file).map((k) => k.meta.configId));
    const memberThere = async () => (await etcd.get(`${PREFIX}members/i5`).string()) !== null;
    const cutAt = Date.now();
    const seqAtCut = (await rotation())!.seq;
    await stopMember(m);

    const violations: string[] = [];
    let sawWaiting = false;
    let notReadyAt = 0;
    let publishedWithout: Awaited<ReturnType<typeof rotation>>;
    while (!publishedWithout && Date.now() - cutAt < 60_000) {
      const r = await rotation();
      const h = held();
      if (r && r.seq > seqAtCut && r.step === 'staged' && r.waitingFor.includes('i5')) sawWaiting = true;
      // Read after the rotation record: a member still there now was there when that record was written.
      if (r && r.seq > seqAtCut && (r.step === 'publishing' || r.step === 'done') && !h.has(r.configId)) {
        if (await memberThere()) violations.push(`rotation #${r.seq} ${r.step} config_id ${r.configId} while i5 (lacking it) is still a member`);
        publishedWithout = r;
      }
      const rd = await ready(p);
      if (rd.code !== 200 && !notReadyAt) notReadyAt = Date.now();
      if (rd.code === 200) {
        // A ready instance (a load balancer may send to it) holds every key any instance's DNS names.
        for (const i of [...running(), p]) {
          const list = await dnsEch(i.dnsPort);
          for (const id of list ? idsOf(list) : []) if (!h.has(id)) violations.push(`${i.id} DNS names config_id ${id}; i5 is ready and holds ${[...h].join(',')}`);
        }
      } else {
        // Not ready: its embedded DNS answers without ech= rather than with a list that may be out of date.
        if (await dnsEch(p.dnsPort)) violations.push('i5 not ready but its DNS still gives ech=');
      }
      await sleep(150);
    }
    assert.deepEqual(violations, []);
    assert.ok(publishedWithout, 'the rotation went on without i5 once its membership ran out');
    assert.ok(sawWaiting, 'the rotation staged during the cut waited for i5 (waitingFor)');
    assert.ok(notReadyAt > 0, 'i5 reported itself not ready');
    assert.match((await ready(p)).body, /fleet store unreachable/);
    assert.equal(await metric(p, 'echgate_fleet_store_up'), 0);
    // etcd returns: i5 registers again, copies the keys it missed, is ready, and holds the published key.
    startMember(m, 'existing');
    await waitUntil('i5 ready again', async () => (await ready(p)).code === 200, 40_000, 200);
    await recordsHoldActive(['i5']);
    assert.ok(await dnsEch(p.dnsPort), 'i5 names ech= again');
    // SIGTERM ends an instance within serve's fleet-leaving deadline even if etcd was away; not forever.
    const proc = p.proc!;
    const exited = proc.exitCode !== null ? Promise.resolve(true) : new Promise<boolean>((r) => proc.once('exit', () => r(true)));
    proc.kill('SIGTERM');
    const inTime = await Promise.race([exited, sleep(20_000).then(() => false)]);
    if (!inTime) proc.kill('SIGKILL');
    assert.ok(inTime, 'i5 exited within 20 s of SIGTERM');
    assert.deepEqual(results.failed, []);
    assert.deepEqual(results.dnsSawNewBeforeAllHeld, []);
  });

  it('wrong KEK: ERR_KEK, its key folder and etcd untouched, not ready; the next rotation goes on once it is drained', async () => {
    const bad = await newInstance('i4', WRONG_KEK);
    extra.push(bad);
    const mine = generateKey(join(bad.dir, 'keys'), { publicName: 'other.example.test' });
    const pemBefore = readFileSync(join(bad.dir, 'keys', `ech-${String(mine.configId).padStart(3, '0')}.pem`), 'utf8');
    const etcdBefore = await etcd.getAll().prefix(`${PREFIX}keys/`).strings();
    startInstance(bad);
    await waitUntil('i4 refusing the keys', () => /ERR_KEK/.test(bad.out), 20_000, 200);
    // The agent logs ERR_KEK during its first read; /ready says "joining the fleet" until that read and the
    // record write after it return to serve (a run read it in between, under load), then it gives the reason.
    let r = await ready(bad);
    await waitUntil('i4 /ready past joining', async () => {
      r = await ready(bad);
      return !/joining the fleet/.test(r.body);
    }, 10_000, 100);
    assert.equal(r.code, 503);
    assert.match(r.body, /wrong KEK/);
    assert.match(r.body, /key-encryption key/);
    // etcd answered: a wrong KEK is not a store outage (issue #9).
    assert.equal(await metric(bad, 'echgate_fleet_store_up'), 1);
    assert.doesNotMatch(bad.out, /store unreachable/);
    assert.equal(readFileSync(join(bad.dir, 'keys', `ech-${String(mine.configId).padStart(3, '0')}.pem`), 'utf8'), pemBefore, 'its folder not overwritten');
    const seq = (await rotation())!.seq;
    const done = await waitDone(seq, 40_000);
    const after = await etcd.getAll().prefix(`${PREFIX}keys/`).strings();
    for (const [k, v] of Object.entries(etcdBefore)) {
      const a = JSON.parse(after[k]!);
      const b = JSON.parse(v);
      if (a.sealed && b.sealed) assert.equal(a.sealed.kek, b.sealed.kek, `${k} sealed with the fleet's KEK still`);
    }
    for (const v of Object.values(after)) {
      const rec = JSON.parse(v);
      if (rec.sealed) assert.notEqual(rec.sealed.kek, undefined);
    }
    assert.match(done.note ?? '', /i4/, 'the rotation names the instance it went on without');
    // Logged once per distinct failure (the first record that does not open), not at every re-read and watch event of the rotation.
    const kekLines = bad.out.split('\n').filter((l) => /ERR_KEK/.test(l));
    const distinct = new Set(kekLines.map((l) => /"err":"([^"]*)"/.exec(l)?.[1]));
    assert.equal(kekLines.length, distinct.size, kekLines.join('\n'));
    bad.proc!.kill('SIGTERM');
    assert.deepEqual(results.failed, []);
  });
});
