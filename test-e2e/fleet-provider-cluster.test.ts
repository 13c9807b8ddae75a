/**
 * providers.etcd against a 3-member etcd 3.4 cluster (Debian's /usr/bin/etcd,
 * free loopback ports), with `echgate serve` given all three endpoints: each
 * member in turn is killed (SIGKILL) and, while it is down, a configuration
 * change is written through the other two. serve keeps routing with the last
 * good configuration throughout, picks up every change (valid: applied at its
 * revision; invalid: refused, the old one kept), and never reports the store
 * down while a quorum answers. Killing every member in turn makes sure one of
 * them is the member serve's watch was connected to. Each is first made not the
 * raft leader (notLeader()): killing the leader leaves no quorum answering until
 * an election ends, which is an outage the provider rightly reports.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Etcd3 } from 'etcd3';
import { freePort } from '../src/cli/free-port.js';
import { died, ETCD, type EtcdMember, etcdWatchdog, removeEtcdData, settle, startEtcdMember, stopEtcdMember } from './etcd-member.js';
import { stablePort } from './stable-port.js';
import { type Backend, ROOT, sleep, tlsAsk, tlsBackend } from '../test/helpers.js';

const BIN = join(ROOT, 'bin', 'echgate.js');
const ROOT_KEY = 'cluster/traefik';

interface Line {
  msg: string;
  [k: string]: unknown;
}
type Member = EtcdMember;

describe('providers.etcd on a 3-member etcd: a member killed while the configuration changes', { skip: !existsSync(ETCD) && 'no /usr/bin/etcd (apt-get install etcd-server)', timeout: 300_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'echgate-etcd-cluster-'));
  const members: Member[] = [];
  const lines: Line[] = [];
  let serve: ChildProcess;
  let port = 0;
  let metricsPort = 0;
  const backends: Backend[] = [];

  const waitFor = async (pred: () => boolean | Promise<boolean>, what: string, ms = 30_000) => {
    for (const end = Date.now() + ms; Date.now() < end; ) {
      // settle(): a probe that can never answer is retried, never left to empty the event loop (etcd-member.ts).
      if (await settle(Promise.resolve().then(pred), 5_000, false)) return;
      const dead = died(members);
      if (dead) assert.fail(`${dead}\n(while waiting for ${what})`);
      await sleep(100);
    }
    assert.fail(`timed out waiting for ${what}\n${lines.slice(-10).map((l) => JSON.stringify(l)).join('\n')}`);
  };
  const url = (m: Member) => `http://127.0.0.1:${m.client}`;
  const startMember = (m: Member, state: 'new' | 'existing') => startEtcdMember(m, { dir, cluster: members, token: `echgate-cfg-${process.pid}`, state });
  const kill = (m: Member) => stopEtcdMember(m, 'SIGKILL');
  /** A client of the members that are up (a write through it needs their quorum). */
  const clientOf = (up: Member[]) => new Etcd3({ hosts: up.map(url), dialTimeout: 1000 });
  const healthy = async (up: Member[]) => {
    const c = clientOf(up);
    try {
      await c.put(`${ROOT_KEY}-probe`).value(String(Date.now()));
      return true;
    } catch {
      return false;
    } finally {
      c.close();
    }
  };
  /** Each member's raft id and the leader it follows, from its own status. */
  const raftStatus = async (m: Member) => {
    const c = clientOf([m]);
    try {
      const st = await c.maintenance.status();
      return { id: String(st.header.member_id), leader: String(st.leader) };
    } finally {
      c.close();
    }
  };
  /**
   * Make sure `m` is not the raft leader before it is killed. Killing the leader is a real outage of the
   * whole cluster until the others elect one (over a second, more under load: etcd answers no read
   * meanwhile), and the provider then reports the store down, as documented (docs/configuration.md: only a
   * failed read does). This test is about the member the watch is connected to going away while a quorum
   * with a leader answers; a run once killed the raft leader and failed on exactly that.
   */
  const notLeader = async (m: Member, up: Member[]) => {
    const status = async (x: Member) => (await settle(raftStatus(x), 10_000, undefined)) ?? assert.fail(`no status from ${x.name} in 10 s\n${died(members) ?? ''}`);
    const mine = await status(m);
    if (mine.leader !== mine.id) return;
    const to = await status(up[0]!);
    const c = clientOf([m]);
    try {
      await settle(c.maintenance.moveLeader({ targetID: to.id }), 10_000, undefined);
    } finally {
      c.close();
    }
    await waitFor(async () => (await raftStatus(up[0]!).catch(() => undefined))?.leader === to.id, `raft leadership moved from ${m.name} to ${up[0]!.name}`);
  };
  const since = (i: number) => lines.slice(i);
  const gauge = async (name: string) => {
    const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    return Number(new RegExp(`^${name}\\{process="main"\\} (\\S+)$`, 'm').exec(text)?.[1]);
  };

  let stopWatchdog = () => {};
  before(async () => {
    stopWatchdog = etcdWatchdog(members);
    for (const name of ['c1', 'c2', 'c3']) members.push({ name, client: await stablePort(), peer: await stablePort() }); // restarted in place: stable-port.ts
    for (const m of members) startMember(m, 'new');
    await waitFor(() => healthy(members), 'the cluster', 60_000);
    for (const n of ['a', 'b', 'c', 'd']) backends.push(await tlsBackend(n));
    const c = clientOf(members);
    await c
      .if(`${ROOT_KEY}/x`, 'Version', '==', 0)
      .then(
        c.put(`${ROOT_KEY}/tcp/routers/app/rule`).value('HostSNI(`a.example.test`)'),
        c.put(`${ROOT_KEY}/tcp/routers/app/service`).value('a'),
        c.put(`${ROOT_KEY}/tcp/routers/app/tls/passthrough`).value('true'),
        c.put(`${ROOT_KEY}/tcp/services/a/loadBalancer/servers/0/address`).value(`127.0.0.1:${backends[0]!.port}`),
      )
      .commit();
    c.close();
    port = await freePort();
    metricsPort = await freePort();
    const f = join(dir, 'echgate.yml');
    writeFileSync(
      f,
      `entryPoints:\n  websecure: { address: "127.0.0.1:${port}" }\nmetrics: { address: "127.0.0.1:${metricsPort}" }\nproviders:\n  etcd: { endpoints: [${members.map((m) => `"${url(m)}"`).join(', ')}], rootKey: ${ROOT_KEY} }\n`,
    );
    serve = spawn('node', [BIN, 'serve', '--config', f], { stdio: ['ignore', 'pipe', 'pipe'] });
    let buf = '';
    serve.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
        const l = buf.slice(0, i);
        buf = buf.slice(i + 1);
        try {
          lines.push(JSON.parse(l));
        } catch {
          lines.push({ msg: l });
        }
      }
    });
    serve.stderr!.on('data', (d: Buffer) => lines.push({ msg: `stderr: ${d}` }));
    await waitFor(() => lines.some((l) => l.msg === 'listening'), 'serve to listen');
    assert.equal(await tlsAsk(port, 'a.example.test'), 'a a.example.test -');
  });

  after(async () => {
    stopWatchdog();
    if (serve && serve.exitCode === null) {
      const gone = new Promise((r) => serve.once('exit', r));
      serve.kill('SIGTERM');
      await Promise.race([gone, sleep(10_000)]);
    }
    for (const m of members) await kill(m);
    for (const b of backends) await b.close();
    removeEtcdData(dir, members);
    writeFileSync(join(dir, 'serve.log'), lines.map((l) => JSON.stringify(l)).join('\n'));
    process.stderr.write(`etcd cluster provider e2e: logs in ${dir}\n`);
  });

  for (const n of ['c1', 'c2', 'c3']) {
    it(`member ${n} killed (SIGKILL) while a change is written through the other two: serve keeps the last good configuration and applies the change`, async () => {
      const m = members.find((x) => x.name === n)!;
      const up = members.filter((x) => x !== m);
      await notLeader(m, up);
      const from = lines.length;
      await kill(m);
      try {
        await round(m, up, from);
      } finally {
        // The member comes back (same data folder) before the next one is killed.
        startMember(m, 'existing');
        await waitFor(() => healthy([m]), `${n} back`, 60_000);
      }
    });
  }
  async function round(m: Member, up: Member[], from: number): Promise<void> {
      const n = m.name;
      const victim = members.indexOf(m);
      // The old configuration still routes with the member gone.
      assert.equal(await tlsAsk(port, 'a.example.test'), 'a a.example.test -');
      // An invalid change first: refused, the last good configuration kept.
      const c = clientOf(up);
      try {
        await waitFor(() => healthy(up), 'a quorum of two', 30_000);
        await c.put(`${ROOT_KEY}/tcp/routers/app/service`).value('missing');
        await waitFor(() => since(from).some((l) => l.msg.startsWith('reload refused: the configuration does not validate')), 'the refusal');
        assert.equal(await tlsAsk(port, 'a.example.test'), 'a a.example.test -');
        // Then a valid one: a new router to this round's backend, the old router repaired, in one transaction.
        const b = backends[victim + 1]!;
        const r = await c
          .if(`${ROOT_KEY}/tcp/routers/app/rule`, 'Version', '>', 0)
          .then(
            c.put(`${ROOT_KEY}/tcp/routers/app/service`).value('a'),
            c.put(`${ROOT_KEY}/tcp/routers/${n}/rule`).value(`HostSNI(\`${n}.example.test\`)`),
            c.put(`${ROOT_KEY}/tcp/routers/${n}/service`).value(n),
            c.put(`${ROOT_KEY}/tcp/routers/${n}/tls/passthrough`).value('true'),
            c.put(`${ROOT_KEY}/tcp/services/${n}/loadBalancer/servers/0/address`).value(`127.0.0.1:${b.port}`),
          )
          .commit();
        const rev = Number(r.header.revision);
        await waitFor(() => since(from).some((l) => l.msg === 'configuration reloaded' && Number(l.revision) >= rev), `the reload at revision ${rev}`);
        assert.equal(await tlsAsk(port, `${n}.example.test`), `${b.name} ${n}.example.test -`);
        assert.equal(await tlsAsk(port, 'a.example.test'), 'a a.example.test -');
        assert.ok((await gauge('echgate_config_revision')) >= rev);
      } finally {
        c.close();
      }
      // A quorum answered throughout: the store was never reported down.
      assert.equal(await gauge('echgate_config_store_up'), 1);
      assert.ok(!since(from).some((l) => l.msg.startsWith('configuration store unreachable')), 'not reported down while two of three answer');
      assert.equal(serve.exitCode, null);
  }
});
