/**
 * The fleet from the command line and from `serve` (docs/fleet.md):
 *
 * - startFleetMember(): what `serve` runs when ech.store.etcd is set: the
 *   agent (register, mirror keys, acknowledge, readiness) and, with
 *   ech.rotation, a candidate for leader that rotates for the whole fleet.
 * - `echgate fleet status`: instances, the keys each holds, the leader, the
 *   configuration revision and the rotation step, read from etcd (the KEK is
 *   not needed: nothing is decrypted).
 * - `echgate fleet import`: seal a key folder into an empty prefix before the
 *   fleet's first start (the first leader does the same on its own when etcd
 *   holds no key; the command makes the choice of folder explicit).
 */
import { hostname } from 'node:os';
import { resolve } from 'node:path';
import type { Etcd3 } from 'etcd3';
import type { Logger } from 'pino';
import type { EtcdStoreConfig } from '../config/store.js';
import type { Config } from '../config/types.js';
import { EchgateError, isEchgateError } from '../errors.js';
// fleet/ loads the etcd3 client (gRPC): imported when a fleet is configured, not for every command.
import type { FleetAgent, FleetGauges } from '../fleet/agent.js';
import type { FleetLeader } from '../fleet/leader.js';
import { type ConfigInForce, type InstanceRecord, K, parseJson, type RotationRecord } from '../fleet/records.js';
import { storeRefusal } from '../fleet/refusal.js';
import type { Metrics } from '../proxy/metrics.js';
import { type Args, type CommandSpec, flag, has, str, text } from './args.js';
import type { Command } from './command.js';
import { loadConfigFile } from './config-file.js';
import { planPublishSettings } from './publish.js';

/** An etcd3/gRPC failure as one readable line (the client appends an empty "Resolution note"). */
export function etcdWhy(endpoints: readonly string[], err: unknown, e?: EtcdStoreConfig): EchgateError {
  if (isEchgateError(err)) return err;
  // etcd refusing this instance (TLS, client certificate, credentials, RBAC) names the setting to fix.
  const refused = e ? storeRefusal(e, err) : undefined;
  if (refused) return new EchgateError('ERR_FLEET', `etcd ${endpoints.join(',')}: ${refused}`);
  const m = (err instanceof Error ? err.message : String(err))
    .replace(/\s*Resolution note:[\s\S]*$/, '')
    .trim()
    .replace(/\.$/, '')
    .replace(/\. Last error: (?:Error: )?([\s\S]*)$/, ' ($1)');
  return new EchgateError('ERR_FLEET', `etcd ${endpoints.join(',')} unreachable: ${m}`);
}

/** This instance's name in the fleet: $ECHGATE_INSTANCE, else the host name (a Kubernetes pod's name). */
export function instanceId(env: NodeJS.ProcessEnv = process.env): string {
  const id = env.ECHGATE_INSTANCE || hostname();
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/.test(id)) throw new EchgateError('ERR_USAGE', `instance name ${JSON.stringify(id)}: letters, digits, . _ - (set ECHGATE_INSTANCE)`);
  return id;
}

export interface FleetMember {
  readonly id: string;
  ready(): { ready: boolean; reason: string };
  stop(): Promise<void>;
  agent: FleetAgent;
  leader?: FleetLeader;
}

function gaugesOf(m: Metrics): FleetGauges {
  return {
    set(name, v) {
      const g = { storeUp: m.fleetStoreUp, ready: m.fleetReady, leader: m.fleetLeader, late: m.fleetLateInstances }[name];
      g.set({}, v);
    },
  };
}

/**
 * The serving instance's etcd client: its watches reconnect after 250 ms doubling to 5 s, as providers.etcd's do,
 * not etcd3's default that grows to 30 s (an instance would learn of a key or a rotation that long after etcd is back).
 */
export async function fleetClient(e: EtcdStoreConfig): Promise<Etcd3> {
  const { openEtcd } = await import('../fleet/etcd-store.js');
  const { EtcdWatchBackoff } = await import('../providers/etcd.js');
  return openEtcd(e, { watchBackoff: new EtcdWatchBackoff() });
}

/** Join the fleet of cfg.ech.store.etcd; undefined without it. The KEK is read now: missing or malformed → ERR_KEK before anything starts. */
export async function startFleetMember(
  cfg: Config,
  o: { log: Logger; metrics: Metrics; reloadKeys(): number[]; addresses(): string[]; configRevision(): string; configInForce?(): ConfigInForce | undefined },
): Promise<FleetMember | undefined> {
  const e = cfg.ech?.store?.etcd;
  if (!e || !cfg.ech) return undefined;
  if (cfg.workers > 1) throw new EchgateError('ERR_USAGE', 'ech.store.etcd runs in one process per instance: set workers: 1 (run more instances instead)');
  const { EtcdKeyStore, readKek } = await import('../fleet/etcd-store.js');
  const { FleetAgent } = await import('../fleet/agent.js');
  const { FleetLeader } = await import('../fleet/leader.js');
  const kek = readKek(e);
  const id = instanceId();
  const client = await fleetClient(e);
  const store = new EtcdKeyStore(client, e.prefix, kek, e.endpoints);
  const keysDir = resolve(cfg.ech.keysDir);
  const gauges = gaugesOf(o.metrics);
  const agent = new FleetAgent({ id, cfg: e, client, store, keysDir, log: o.log, gauges, hooks: { reloadKeys: o.reloadKeys, addresses: o.addresses, configRevision: o.configRevision, configInForce: o.configInForce } });
  o.log.info({ fleet: id, endpoints: e.endpoints, prefix: e.prefix }, 'fleet: joining (keys from etcd, key folder is the local copy)');
  await agent.start();
  let leader: FleetLeader | undefined;
  const r = cfg.ech.rotation;
  if (r) {
    const p = r.publish;
    leader = new FleetLeader({
      id,
      cfg: e,
      rotation: r,
      client,
      store,
      log: o.log,
      gauges,
      importFrom: keysDir,
      tickMs: Math.min(1000, Math.max(100, Math.floor(e.leaseTtlMs / 8))),
      syncLocal: () => agent.sync(),
      // embedded: every instance's DNS serves the list it copied from etcd; RFC 2136: update + read-back, as keys rotate --publish.
      publish: async (out) => {
        if (p === 'embedded') return out('embedded DNS: every instance serves the active keys it holds');
        await planPublishSettings(p, keysDir).run((s) => out(s.msg));
      },
    });
    leader.start();
  }
  return {
    id,
    agent,
    leader,
    ready: () => agent.readiness(),
    async stop() {
      await leader?.stop();
      await agent.stop();
      client.close();
    },
  };
}

export const fleetStatusSpec: CommandSpec = {
  name: 'fleet status',
  summary: 'the fleet in etcd: instances, keys each holds, leader, configuration revision, rotation step',
  options: {
    config: text('FILE', 'the configuration file naming ech.store.etcd (required)'),
    json: flag('JSON instead of text'),
  },
};

export interface FleetStatus {
  prefix: string;
  leader: string | null;
  /**
   * The configuration revisions the live instances run, most common first: the etcd revision of the
   * configuration in force with providers.etcd, else a hash of the configuration file (serve.ts). More than
   * one: a change is still being applied, or some instance refused it (its log says why).
   */
  configRevisions: { revision: string; instances: string[] }[];
  keys: { configId: number; state: string; publicName: string; created: string; notAfter?: string }[];
  members: string[];
  instances: InstanceRecord[];
  rotation: RotationRecord | null;
}

/**
 * Instances grouped by the configuration they run. With providers.etcd an
 * instance's revision is the etcd store revision it read the keys at, and
 * any write to etcd (the instances' own records too) moves it: two instances
 * that read the same keys at different moments carry different numbers. So
 * they are grouped by what they run (root key and digest of the keys and
 * values), shown with the newest revision of the group; a configuration file
 * (a hash as revision) is grouped by its revision.
 */
export function groupConfigRevisions(instances: readonly InstanceRecord[]): FleetStatus['configRevisions'] {
  const groups = new Map<string, { revision: string; instances: string[] }>();
  for (const i of instances) {
    const key = i.config ? `etcd\0${i.config.rootKey}\0${i.config.digest}` : `file\0${i.configRevision}`;
    const g = groups.get(key);
    if (!g) groups.set(key, { revision: i.configRevision, instances: [i.id] });
    else {
      g.instances.push(i.id);
      if (i.config && Number(i.configRevision) > Number(g.revision)) g.revision = i.configRevision;
    }
  }
  return [...groups.values()].sort((a, b) => b.instances.length - a.instances.length || a.revision.localeCompare(b.revision));
}

export async function readFleetStatus(cfg: Config): Promise<FleetStatus> {
  const e = cfg.ech?.store?.etcd;
  if (!e) throw new EchgateError('ERR_USAGE', 'the configuration has no ech.store.etcd: not a fleet');
  const { openEtcd } = await import('../fleet/etcd-store.js');
  const client = openEtcd(e);
  try {
    const ns = client.namespace(e.prefix);
    const deadline = new Promise<never>((_, rej) => setTimeout(() => rej(new EchgateError('ERR_FLEET', `etcd ${e.endpoints.join(',')} did not answer within 5s`)), 5000).unref());
    const read = async (): Promise<FleetStatus> => {
      const [keys, members, inst, rot, leader] = await Promise.all([
        client.getAll().prefix(e.prefix + K.keys).strings(),
        client.getAll().prefix(e.prefix + K.members).keys(),
        client.getAll().prefix(e.prefix + K.instances).strings(),
        client.get(e.prefix + K.rotation).string(),
        ns.election(K.election).leader(),
      ]);
      const instances = Object.entries(inst)
        .map(([k, v]) => parseJson<InstanceRecord>(v, k)!)
        .sort((a, b) => a.id.localeCompare(b.id));
      return {
        prefix: e.prefix,
        leader: leader ?? null,
        configRevisions: groupConfigRevisions(instances),
        keys: Object.entries(keys).map(([k, v]) => {
          const m = parseJson<{ meta: FleetStatus['keys'][number] }>(v, k)!.meta;
          return { configId: m.configId, state: m.state, publicName: m.publicName, created: m.created, ...(m.notAfter ? { notAfter: m.notAfter } : {}) };
        }),
        members: members.map((k) => k.slice((e.prefix + K.members).length)).sort(),
        instances,
        rotation: parseJson<RotationRecord>(rot, K.rotation) ?? null,
      };
    };
    return await Promise.race([read(), deadline]);
  } catch (err) {
    throw etcdWhy(e.endpoints, err, e);
  } finally {
    client.close();
  }
}

export function formatFleetStatus(s: FleetStatus): string {
  const lines: string[] = [];
  const revs = s.configRevisions;
  const rev = revs.length === 0 ? '(no live instance)' : revs.length === 1 ? revs[0]!.revision : `DIFFER: ${revs.map((r) => `${r.revision} on ${r.instances.join(',')}`).join('; ')}`;
  lines.push(`fleet ${s.prefix}  leader: ${s.leader ?? '(none)'}  configuration revision: ${rev}`);
  const r = s.rotation;
  lines.push(
    r
      ? `rotation #${r.seq}: ${r.step}  config_id ${r.configId} (${r.publicName})  demotes ${r.demote.join(', ') || '-'}  by ${r.leader}  started ${r.startedAt}${r.waitingFor.length ? `  waiting for ${r.waitingFor.join(', ')}` : ''}${r.late.length ? `  late: ${r.late.join(', ')}` : ''}${r.note ? `  (${r.note})` : ''}`
      : 'rotation: none yet',
  );
  lines.push('keys:');
  for (const k of s.keys) lines.push(`  ${String(k.configId).padStart(3)}  ${k.state.padEnd(12)}  ${k.publicName}  created ${k.created}${k.notAfter ? `  not after ${k.notAfter}` : ''}`);
  lines.push('instances:');
  const live = new Set(s.instances.map((i) => i.id));
  for (const i of s.instances) {
    lines.push(`  ${i.id.padEnd(16)}  ${i.ready ? 'ready    ' : 'NOT READY'}  keys ${i.keys.join(',') || '-'}  revision ${i.configRevision}  ${i.addresses.join(' ')}${i.ready ? '' : `  (${i.reason})`}`);
  }
  for (const m of s.members) if (!live.has(m)) lines.push(`  ${m.padEnd(16)}  NO LEASE   member without a live registration (cut off from etcd, or dead)`);
  return `${lines.join('\n')}\n`;
}

export async function fleetStatusCommand(a: Args, out: (s: string) => void): Promise<number> {
  const f = str(a, 'config');
  if (!f) throw new EchgateError('ERR_USAGE', 'fleet status needs --config FILE (see: echgate fleet status --help)');
  const cfg = loadConfigFile(f);
  if (!cfg.ech?.store?.etcd) throw new EchgateError('ERR_USAGE', `${f} has no ech.store.etcd: not a fleet`);
  const s = await readFleetStatus(cfg);
  out(has(a, 'json') ? `${JSON.stringify(s, null, 2)}\n` : formatFleetStatus(s));
  return 0;
}

export const fleetImportSpec: CommandSpec = {
  name: 'fleet import',
  summary: "seal a key folder's keys into an empty etcd prefix (before the fleet's first start); never overwrites a key in etcd",
  options: {
    config: text('FILE', 'the configuration file naming ech.store.etcd and its KEK (required)'),
    from: text('DIR', 'the key folder to import (default: ech.keysDir of the configuration)'),
  },
  notes: 'Refused (exit 1, ERR_KEYSTORE) when the prefix already holds any key record: a fleet that has keys keeps them.',
};

export async function fleetImportCommand(a: Args, out: (s: string) => void): Promise<number> {
  const f = str(a, 'config');
  if (!f) throw new EchgateError('ERR_USAGE', 'fleet import needs --config FILE (see: echgate fleet import --help)');
  const cfg = loadConfigFile(f);
  const e = cfg.ech?.store?.etcd;
  if (!e) throw new EchgateError('ERR_USAGE', `${f} has no ech.store.etcd: not a fleet`);
  const from = resolve(str(a, 'from') ?? cfg.ech!.keysDir);
  const { EtcdKeyStore, openEtcd, readKek } = await import('../fleet/etcd-store.js');
  const { importable } = await import('../fleet/leader.js');
  const kek = readKek(e);
  const keys = importable(from);
  if (!keys.some((k) => k.meta.state !== 'retired')) throw new EchgateError('ERR_KEYSTORE', `${from} holds no key to import (generate one with echgate keys generate)`);
  const client = openEtcd(e);
  try {
    const store = new EtcdKeyStore(client, e.prefix, kek, e.endpoints);
    const deadline = new Promise<never>((_, rej) => setTimeout(() => rej(new EchgateError('ERR_FLEET', `etcd ${e.endpoints.join(',')} did not answer within 5s`)), 5000).unref());
    const run = async () => {
      const there = await store.metas();
      if (there.length) throw new EchgateError('ERR_KEYSTORE', `${store.where} already holds config_id ${there.map((m) => m.configId).join(', ')}: nothing imported (a fleet that has keys keeps them)`);
      await store.createAll(keys); // each key only where etcd holds none (Version == 0), all or nothing
    };
    await Promise.race([run(), deadline]).catch((err) => {
      throw etcdWhy(e.endpoints, err, e);
    });
  } finally {
    for (const k of keys) k.privateKey?.fill(0);
    client.close();
  }
  for (const k of keys) out(`imported config_id ${k.meta.configId} (${k.meta.state}, ${k.meta.publicName})${k.meta.state === 'retired' ? ' as retired metadata' : ', private key sealed with the KEK'}\n`);
  return 0;
}

export const fleetCommands: Record<string, Command> = {
  status: { spec: fleetStatusSpec, run: fleetStatusCommand },
  import: { spec: fleetImportSpec, run: fleetImportCommand },
};
