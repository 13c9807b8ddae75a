/**
 * Fleet simulation (not in CI; docs/fleet.md "Scale"): N instances of the
 * coordination code alone (FleetAgent + FleetLeader, each with its own etcd
 * client, no proxy, no key folder) against a real etcd 3.4 on loopback.
 * Measures, over R rotations, the time from staging a key to the last
 * acknowledgement (the leader's publish), and etcd traffic per instance from
 * etcd's own counters (grpc_server_handled_total, by method) over the run.
 *
 *   npm run build && node dist/bench/fleet-sim.js [instances=50] [rotations=5]
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Etcd3 } from 'etcd3';
import pino from 'pino';
import { freePort } from '../src/cli/free-port.js';
import type { EtcdStoreConfig } from '../src/config/store.js';
import { FleetAgent } from '../src/fleet/agent.js';
import { EtcdKeyStore } from '../src/fleet/etcd-store.js';
import { FleetLeader } from '../src/fleet/leader.js';
import type { RotationRecord } from '../src/fleet/records.js';

const N = Number(process.argv[2] ?? 50);
const R = Number(process.argv[3] ?? 5);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const log = pino({ level: 'warn' });

async function grpcCounts(url: string): Promise<Map<string, number>> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const out = new Map<string, number>();
  for (const m of text.matchAll(/^grpc_server_handled_total\{[^}]*grpc_method="(\w+)"[^}]*\} (\d+)/gm)) out.set(m[1]!, (out.get(m[1]!) ?? 0) + Number(m[2]));
  for (const m of text.matchAll(/^grpc_server_msg_received_total\{[^}]*grpc_method="(\w+)"[^}]*\} (\d+)/gm)) out.set(`${m[1]!} (stream msgs)`, (out.get(`${m[1]!} (stream msgs)`) ?? 0) + Number(m[2]));
  return out;
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'echgate-fleet-sim-'));
  const [client, peer] = [await freePort(), await freePort()];
  const url = `http://127.0.0.1:${client}`;
  const etcd: ChildProcess = spawn('/usr/bin/etcd', ['--name', 's1', '--data-dir', join(dir, 's1'), '--listen-client-urls', url, '--advertise-client-urls', url, '--listen-peer-urls', `http://127.0.0.1:${peer}`, '--initial-advertise-peer-urls', `http://127.0.0.1:${peer}`, '--initial-cluster', `s1=http://127.0.0.1:${peer}`, '--log-outputs', join(dir, 'etcd.log'), '--logger', 'zap'], { stdio: 'ignore' });
  const admin = new Etcd3({ hosts: [url] });
  for (let i = 0; ; i++) {
    try {
      await admin.put('probe').value('1');
      break;
    } catch (e) {
      if (i > 100) throw e;
      await sleep(100);
    }
  }
  const cfg: EtcdStoreConfig = { endpoints: [url], prefix: 'sim/', kek: { env: 'X' }, leaseTtlMs: 5000, ackTimeoutMs: 30_000, drainMs: 1000, forgetAfterMs: 60_000 };
  const kek = new Uint8Array(32).fill(1);
  const rotation = { everyMs: 4000, graceMs: 2000, publish: 'embedded' as const, publicName: 'public.example.test' };
  const members: { agent: FleetAgent; leader: FleetLeader; client: Etcd3 }[] = [];
  const t0 = Date.now();
  for (let i = 0; i < N; i++) {
    const c = new Etcd3({ hosts: [url] });
    const store = new EtcdKeyStore(c, cfg.prefix, kek);
    const id = `sim-${String(i).padStart(3, '0')}`;
    const agent: FleetAgent = new FleetAgent({
      id,
      cfg,
      client: c,
      store,
      log,
      resyncMs: 30_000,
      hooks: { reloadKeys: () => agent.fleetKeys.filter((k) => k.state !== 'retired').map((k) => k.configId), addresses: () => [`10.0.0.${i}:443`], configRevision: () => 'sim' },
    });
    const leader = new FleetLeader({ id, cfg, rotation, client: c, store, log, syncLocal: () => agent.sync(), publish: async () => {}, tickMs: 200 });
    members.push({ agent, leader, client: c });
  }
  await Promise.all(members.map((m) => m.agent.start()));
  for (const m of members) m.leader.start();
  process.stdout.write(`${N} instances registered in ${Date.now() - t0} ms\n`);
  // Wait for the first key and the first rotation, then measure R rotations.
  const rot = async () => JSON.parse((await admin.get('sim/rotation').string()) ?? 'null') as RotationRecord | null;
  let r = await rot();
  while (!r || r.step !== 'done') {
    await sleep(100);
    r = await rot();
  }
  const before = await grpcCounts(url);
  const tStart = Date.now();
  const acks: number[] = [];
  let seq = r.seq;
  while (acks.length < R) {
    await sleep(50);
    const x = await rot();
    if (x && x.seq > seq && x.step === 'done' && x.publishedAt) {
      seq = x.seq;
      acks.push(Date.parse(x.publishedAt) - Date.parse(x.startedAt));
    }
  }
  const secs = (Date.now() - tStart) / 1000;
  const after = await grpcCounts(url);
  const per = [...after].map(([k, v]) => [k, v - (before.get(k) ?? 0)] as const).filter(([, v]) => v > 0).sort((a, b) => b[1] - a[1]);
  const total = per.filter(([k]) => !k.includes('stream msgs')).reduce((s, [, v]) => s + v, 0);
  const sorted = [...acks].sort((a, b) => a - b);
  process.stdout.write(`rotations: ${R}; stage → all ${N} acknowledged (ms): ${acks.join(', ')}; median ${sorted[Math.floor(R / 2)]}, max ${sorted[R - 1]}\n`);
  process.stdout.write(`window ${secs.toFixed(1)} s; etcd requests by method (unary calls and stream messages):\n`);
  for (const [k, v] of per) process.stdout.write(`  ${k.padEnd(28)} ${String(v).padStart(7)}  ${(v / N / secs).toFixed(3)} /instance/s\n`);
  process.stdout.write(`unary requests per instance per second: ${(total / N / secs).toFixed(3)}; per instance per rotation: ${(total / N / R).toFixed(1)}\n`);
  const traffic = members.reduce((s, m) => ({ reads: s.reads + m.agent.traffic.reads, writes: s.writes + m.agent.traffic.writes, watch: s.watch + m.agent.traffic.watchEvents }), { reads: 0, writes: 0, watch: 0 });
  process.stdout.write(`agent-side counts over the whole run (all ${N}): reads ${traffic.reads}, writes ${traffic.writes}, watch events ${traffic.watch}\n`);
  await Promise.all(members.map((m) => m.leader.stop()));
  await Promise.all(members.map((m) => m.agent.stop()));
  for (const m of members) m.client.close();
  admin.close();
  etcd.kill('SIGTERM');
}

main().catch((e) => {
  process.stderr.write(`${e?.stack ?? e}\n`);
  process.exit(1);
});
