/**
 * Rotation on one leader (docs/fleet.md "Key lifecycle"). Every instance
 * campaigns (etcd3's Election: a key on a leaseTtl lease, lowest create
 * revision wins); the leader steps through the rotation record in etcd, so a
 * leader killed at any point leaves a state the next one can finish or undo:
 *
 *   (due) ──stage──► staged ──all members hold it──► publishing ──DNS ok──► done
 *                      ▲                                  │
 *                      └──────────── DNS failed: undo ────┘  (backoff, retried)
 *
 *   stage       one transaction: the new key (state staged, sealed) + rotation{step: staged}
 *   publishing  one transaction: staged → active, old active → decrypt-only, rotation{step: publishing};
 *               then the DNS step (embedded DNS: every instance serves what it mirrors;
 *               RFC 2136: update + DoH read-back, as keys rotate --publish)
 *   done        one transaction: grace restarts from now (clients may have fetched the old record until now)
 *   retire      a decrypt-only key past its grace: private key deleted from etcd
 *   forget      a retired record older than RETIRED_KEEP_MS: deleted (its id is free as if never used)
 *
 * Every write is fenced by the leader's election key: a deposed leader's
 * transaction fails instead of overwriting its successor's state.
 */
import type { Campaign, Etcd3 } from 'etcd3';
import type { Logger } from 'pino';
import type { RotationConfig } from '../config/types.js';
import type { EtcdStoreConfig } from '../config/store.js';
import { type EchgateError, isEchgateError } from '../errors.js';
import type { KeyRecord } from '../keys/keystore.js';
import { KeyDir, type KeyMeta } from '../keys/store.js';
import { idUse, makeKey } from '../keys/manager.js';
import { planRotation } from '../keys/schedule.js';
import type { FleetGauges } from './agent.js';
import { type EtcdKeyStore, forgettable } from './etcd-store.js';
import { configDigest, decidePublish, type InstanceRecord, K, parseJson, type RotationRecord } from './records.js';

export interface LeaderOptions {
  id: string;
  cfg: EtcdStoreConfig;
  rotation: RotationConfig;
  client: Etcd3;
  store: EtcdKeyStore;
  log: Logger;
  /** Make every local copy current (the leader's own agent) before the DNS step reads it. */
  syncLocal(): Promise<void>;
  /** The DNS step after the flip; throws when DNS does not carry the new list (then the flip is undone). */
  publish(out: (s: string) => void): Promise<void>;
  /** The key folder to import from when etcd holds no key yet (first start of a fleet). */
  importFrom?: string;
  gauges?: FleetGauges;
  /** How often the leader looks at etcd (default 1 s). */
  tickMs?: number;
  /** After resigning because the keys do not open with this KEK: how often it re-reads them before standing again (default max(5 s, leaseTtl)). */
  kekRetryMs?: number;
  now?: () => number;
  /** Counted etcd requests (the simulation). */
  traffic?: { reads: number; writes: number };
}

/** The keys of a folder worth importing into an empty fleet: usable keys with their private keys, and retired config_ids. */
export function importable(dir: string): KeyRecord[] {
  return new KeyDir(dir)
    .load()
    .keys.filter((k) => k.meta.state === 'retired' || (k.privateKey && k.echConfigList && k.meta.state !== 'pending'))
    .map((k) => (k.meta.state === 'retired' ? { meta: k.meta } : { meta: k.meta, privateKey: k.privateKey, echConfigList: k.echConfigList }));
}

const why = (e: unknown) => (isEchgateError(e) ? `${e.message} [${e.code}]` : e instanceof Error ? e.message : String(e));
const BACKOFF_BASE_MS = 1000;
const BACKOFF_MAX_MS = 15 * 60_000;

export class FleetLeader {
  private campaign?: Campaign;
  private fence?: string;
  private timer?: NodeJS.Timeout;
  private stopped = false;
  private running: Promise<void> = Promise.resolve();
  private reported = new Set<string>();
  private kekFailure?: string;
  private kekProbe?: NodeJS.Timeout;
  private readonly now: () => number;
  leading = false;
  /** Resigned because the fleet's keys do not open with this instance's KEK: not campaigning until they do. */
  benched = false;

  constructor(private readonly o: LeaderOptions) {
    this.now = o.now ?? Date.now;
  }

  private abs(rel: string): string {
    return this.o.cfg.prefix + rel;
  }

  start(): void {
    if (this.stopped || this.campaign || this.benched) return;
    const election = this.o.client.namespace(this.o.cfg.prefix).election(K.election, Math.ceil(this.o.cfg.leaseTtlMs / 1000));
    const c = election.campaign(this.o.id);
    this.campaign = c;
    c.on('elected', async () => {
      let fence: string;
      try {
        fence = await c.getCampaignKey();
      } catch (e) {
        if (this.campaign === c) this.lost(e);
        return;
      }
      // The campaign may have died while its key was read (lost(): its lease ran out; resigned; stopped): leading
      // on it would report this instance as the leader, and tick, under an election key etcd no longer holds.
      if (this.campaign !== c || this.stopped) return;
      this.fence = fence;
      this.leading = true;
      this.reported.clear();
      this.o.gauges?.set('leader', 1);
      this.o.log.info({ fleet: this.o.id }, 'fleet leader: this instance rotates the keys');
      this.tick(0);
    });
    c.on('error', (e) => this.lost(e));
  }

  private lost(e: unknown): void {
    const was = this.leading;
    this.leading = false;
    this.fence = undefined;
    clearTimeout(this.timer);
    this.o.gauges?.set('leader', 0);
    if (was) this.o.log.warn({ fleet: this.o.id, err: why(e) }, 'fleet leader: leadership lost; campaigning again');
    // A dead campaign may still emit errors (its lease's keep-alive, a retry): swallowed, never an unhandled 'error' event.
    this.campaign?.removeAllListeners();
    this.campaign?.on('error', () => {});
    this.campaign = undefined;
    // The campaign's lease is gone (etcd unreachable, or revoked): stand again once etcd answers.
    if (!this.stopped) setTimeout(() => this.start(), 1000).unref();
  }

  private tick(inMs: number): void {
    if (this.stopped || !this.leading) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.running = this.step()
        .then(() => {
          this.kekFailure = undefined;
        })
        .catch((e) => {
          // A leader whose KEK does not open the fleet's keys can neither stage, flip nor retire: it steps aside.
          if (isEchgateError(e) && e.code === 'ERR_KEK') return this.resignForKek(e);
          this.o.log.error({ fleet: this.o.id, err: why(e) }, 'fleet leader: step failed; trying again');
        })
        .finally(() => this.tick(this.o.tickMs ?? 1000));
    }, inMs);
    this.timer.unref();
  }

  /**
   * The keys in etcd do not open with this instance's KEK (or this KEK would seal a key beside keys sealed
   * with another): every rotation step would fail, so this instance resigns and the next candidate leads.
   * It stands again only once a re-read of the keys opens (KEK fixed and reloaded, or the prefix re-keyed).
   * Logged once per distinct failure (config_ids and KEK ids, never key material).
   */
  private async resignForKek(e: EchgateError): Promise<void> {
    if (this.kekFailure !== e.message) {
      this.o.log.error({ fleet: this.o.id, err: why(e) }, "fleet leader: the fleet's keys do not open with this instance's key-encryption key: resigning leadership (another instance rotates); nothing written");
    }
    this.kekFailure = e.message;
    this.benched = true;
    this.leading = false;
    this.fence = undefined;
    clearTimeout(this.timer);
    this.o.gauges?.set('leader', 0);
    const c = this.campaign;
    this.campaign = undefined;
    if (c) {
      c.removeAllListeners();
      c.on('error', () => {});
      await Promise.race([c.resign().catch(() => {}), new Promise((r) => setTimeout(r, 1000).unref())]);
    }
    this.probeKek();
  }

  private probeKek(): void {
    if (this.stopped) return;
    clearTimeout(this.kekProbe);
    this.kekProbe = setTimeout(async () => {
      try {
        const keys = await this.o.store.load();
        for (const k of keys) k.privateKey?.fill(0);
      } catch (e) {
        if (isEchgateError(e) && e.code === 'ERR_KEK' && this.kekFailure !== e.message) {
          this.kekFailure = e.message;
          this.o.log.error({ fleet: this.o.id, err: why(e) }, "fleet leader: the fleet's keys still do not open with this instance's key-encryption key: not standing for leader");
        }
        return this.probeKek(); // ERR_KEK again, or etcd unreachable: look again later
      }
      this.benched = false;
      this.kekFailure = undefined;
      this.o.log.info({ fleet: this.o.id }, "fleet leader: the fleet's keys open with this instance's key-encryption key again: standing for leader");
      this.start();
    }, this.o.kekRetryMs ?? Math.max(5000, this.o.cfg.leaseTtlMs));
    this.kekProbe.unref();
  }

  private count(kind: 'reads' | 'writes', n = 1): void {
    if (this.o.traffic) this.o.traffic[kind] += n;
  }

  private async readRotation(): Promise<RotationRecord | undefined> {
    this.count('reads');
    return parseJson<RotationRecord>(await this.o.client.get(this.abs(K.rotation)).string(), K.rotation);
  }

  private putRotation(r: RotationRecord): { key: string; value: string } {
    return { key: K.rotation, value: JSON.stringify(r) };
  }

  /**
   * One look at etcd while leading. Every write of the step is fenced by the election key it started
   * with, not by this.fence at write time: leadership lost while the step waited on etcd clears this.fence
   * (lost()), and a write then made with no fence, or with the key of a later election, would go through as
   * if this step still led (a second staged key beside the next leader's, a rotation record overwritten).
   */
  async step(): Promise<void> {
    const fence = this.fence;
    if (!this.leading || !fence) return;
    const now = this.now();
    this.count('reads');
    const keys = await this.o.store.load(); // ERR_KEK here: a leader with the wrong KEK writes nothing
    const metas = keys.map((k) => k.meta);
    for (const k of keys) k.privateKey?.fill(0);
    const rot = await this.readRotation();
    if (metas.length === 0) return this.bootstrap(fence);
    if (rot?.step === 'staged') {
      const list = keys.find((k) => k.meta.configId === rot.configId)?.echConfigList;
      return this.staged(rot, metas, now, fence, list ? configDigest(list) : undefined);
    }
    if (rot?.step === 'publishing') return this.finishPublish(rot, metas, fence);
    const plan = planRotation(metas, now, { everyMs: this.o.rotation.everyMs, publicName: this.o.rotation.publicName });
    for (const id of plan.retire) {
      this.count('writes');
      await this.o.store.retire(id, new Date(now), fence);
      this.o.log.info({ fleet: this.o.id, configId: id }, 'fleet: key retired after its grace period (private key deleted from etcd)');
    }
    // Retired records a day old are deleted here, between rotations (never while one is staged or publishing,
    // whose steps return above): without it etcd would keep one record per rotation for ever.
    if (metas.some((m) => forgettable(m, now))) {
      this.count('reads');
      this.count('writes');
      const gone = await this.o.store.forget(now, fence);
      if (gone.length) this.o.log.info({ fleet: this.o.id, configIds: gone }, 'fleet: retired key records a day old deleted from etcd');
    }
    if (plan.rotateAt !== undefined && plan.rotateAt <= now) await this.stage(metas.filter((m) => !forgettable(m, now)), rot, plan.publicName!, now, fence);
  }

  /**
   * A fleet's first start: the leader's key folder is imported (private keys sealed; retired config_ids as
   * metadata so they rest before reuse), in one transaction that writes only where etcd holds nothing; else
   * a key is made for rotation.publicName. `echgate fleet import` does the same before any instance starts.
   */
  private async bootstrap(fence: string): Promise<void> {
    const local = this.o.importFrom ? importable(this.o.importFrom) : [];
    if (local.some((k) => k.meta.state !== 'retired')) {
      this.count('writes');
      await this.o.store.createAll(local, fence);
      for (const k of local) k.privateKey?.fill(0);
      this.o.log.info({ fleet: this.o.id, keys: local.map((k) => k.meta.configId), from: this.o.importFrom }, 'fleet: etcd held no key; imported the key folder (private keys sealed with the KEK)');
      return;
    }
    if (!this.o.rotation.publicName) {
      if (!this.reported.has('empty')) this.o.log.warn({ fleet: this.o.id }, 'fleet: etcd holds no key and the key folder is empty: give ech.rotation.publicName, or echgate keys generate in the leader\'s folder');
      this.reported.add('empty');
      return;
    }
    const k = makeKey(new Set(), { publicName: this.o.rotation.publicName, now: new Date(this.now()) });
    this.count('writes');
    await this.o.store.create(k, fence);
    k.privateKey.fill(0);
    this.o.log.info({ fleet: this.o.id, configId: k.meta.configId }, 'fleet: etcd held no key; made the first one');
  }

  private async stage(metas: KeyMeta[], prev: RotationRecord | undefined, publicName: string, now: number, fence: string): Promise<void> {
    // A retired id comes back once its rest is over (idUse, as in a key folder): counted as used, the
    // fleet ran out of config_ids after 255 rotations. etcd's retired records carry no private key.
    const k = makeKey(idUse(metas.map((meta) => ({ meta })), [], now), { publicName, state: 'staged', now: new Date(now) });
    const rot: RotationRecord = {
      seq: (prev?.seq ?? 0) + 1,
      step: 'staged',
      configId: k.meta.configId,
      publicName,
      demote: metas.filter((m) => m.state === 'active' && m.publicName === publicName).map((m) => m.configId),
      leader: this.o.id,
      startedAt: new Date(now).toISOString(),
      waitingFor: [],
      late: [],
    };
    this.count('writes');
    await this.o.store.create(k, fence, [this.putRotation(rot)], now);
    k.privateKey.fill(0);
    this.o.log.info({ fleet: this.o.id, seq: rot.seq, configId: rot.configId, demote: rot.demote }, 'fleet rotation: new key staged; waiting until every instance holds it');
  }

  private async members(): Promise<{ members: string[]; instances: Map<string, InstanceRecord> }> {
    const [m, i] = await Promise.all([this.o.client.getAll().prefix(this.abs(K.members)).keys(), this.o.client.getAll().prefix(this.abs(K.instances)).strings()]);
    this.count('reads', 2);
    const members = m.map((k) => k.slice(this.abs(K.members).length));
    const instances = new Map<string, InstanceRecord>();
    for (const [k, v] of Object.entries(i)) {
      const r = parseJson<InstanceRecord>(v, k);
      if (r && typeof r.id === 'string' && Array.isArray(r.keys)) instances.set(r.id, r);
    }
    return { members, instances };
  }

  private async staged(rot: RotationRecord, metas: KeyMeta[], now: number, fence: string, digest: string | undefined): Promise<void> {
    const key = metas.find((m) => m.configId === rot.configId);
    if (!key || key.state !== 'staged') {
      // The record names a key that is not staged (a transaction from an older version, or edited by hand): give up this rotation.
      await this.write([], { ...rot, step: 'rolled-back', finishedAt: new Date(now).toISOString(), note: `config_id ${rot.configId} is not staged in etcd` }, fence);
      this.o.log.warn({ fleet: this.o.id, seq: rot.seq, configId: rot.configId }, 'fleet rotation rolled back: its key is not staged in etcd');
      return;
    }
    if (rot.retryAt && Date.parse(rot.retryAt) > now) return;
    const { members, instances } = await this.members();
    const d = decidePublish(rot.configId, Date.parse(key.created), members, instances, now, this.o.cfg, digest);
    this.o.gauges?.set('late', d.late.length);
    for (const id of d.late) {
      if (this.reported.has(`late ${rot.seq} ${id}`)) continue;
      this.reported.add(`late ${rot.seq} ${id}`);
      const inst = instances.get(id);
      this.o.log.warn(
        { fleet: this.o.id, seq: rot.seq, configId: rot.configId, instance: id, registered: Boolean(inst), ready: inst?.ready ?? null },
        inst ? 'fleet rotation: instance did not acknowledge the staged key within ackTimeout; it reports itself not ready and is waited for until drained' : 'fleet rotation: instance is a member but has no live registration (cut off from etcd, or dead); waited for until its membership lease runs out',
      );
    }
    for (const id of d.excused) {
      if (this.reported.has(`excused ${rot.seq} ${id}`)) continue;
      this.reported.add(`excused ${rot.seq} ${id}`);
      this.o.log.warn({ fleet: this.o.id, seq: rot.seq, instance: id, reason: instances.get(id)?.reason }, 'fleet rotation: proceeding without an instance that is not ready and drained');
    }
    if (!d.publish) {
      if (JSON.stringify(d.waitingFor) !== JSON.stringify(rot.waitingFor) || JSON.stringify(d.late) !== JSON.stringify(rot.late)) await this.write([], { ...rot, waitingFor: d.waitingFor, late: d.late }, fence);
      return;
    }
    // Flip: one transaction, so a leader killed here leaves either the staged state or the publishing state.
    const at = new Date(now);
    const grace = (n: number) => new Date(n + this.o.rotation.graceMs).toISOString();
    const flip: KeyMeta[] = [{ ...key, state: 'active', activated: at.toISOString() }];
    for (const id of rot.demote) {
      const m = metas.find((x) => x.configId === id);
      if (m && m.state === 'active') flip.push({ ...m, state: 'decrypt-only', notAfter: grace(now) });
    }
    await this.write(flip, { ...rot, step: 'publishing', publishedAt: at.toISOString(), waitingFor: [], late: d.late, ...(d.excused.length ? { note: `published without drained instances: ${d.excused.join(', ')}` } : {}) }, fence);
    this.o.log.info({ fleet: this.o.id, seq: rot.seq, configId: rot.configId, acknowledged: [...instances.values()].filter((i) => i.keys.includes(rot.configId)).map((i) => i.id), excused: d.excused }, 'fleet rotation: every instance holds the key; publishing');
    const note = d.excused.length ? { note: `published without drained instances: ${d.excused.join(', ')}` } : {};
    await this.finishPublish({ ...rot, step: 'publishing', publishedAt: at.toISOString(), late: d.late, ...note }, await this.o.store.metas(), fence);
  }

  private async finishPublish(rot: RotationRecord, metas: KeyMeta[], fence: string): Promise<void> {
    const lines: string[] = [];
    try {
      await this.o.syncLocal();
      await this.o.publish((s) => lines.push(s.trim()));
    } catch (e) {
      // DNS did not take it: the old keys active again, the new one back to staged (it still decrypts everywhere).
      const failures = (rot.failures ?? 0) + 1;
      const wait = Math.min(BACKOFF_BASE_MS * 2 ** Math.min(failures - 1, 30), BACKOFF_MAX_MS, Math.max(BACKOFF_BASE_MS, this.o.rotation.everyMs));
      const undo: KeyMeta[] = [];
      for (const m of metas) {
        if (m.configId === rot.configId && m.state === 'active') {
          const { activated: _a, ...rest } = m;
          undo.push({ ...rest, state: 'staged' });
        } else if (rot.demote.includes(m.configId) && m.state === 'decrypt-only') {
          const { notAfter: _n, ...rest } = m;
          undo.push({ ...rest, state: 'active' });
        }
      }
      await this.write(undo, { ...rot, step: 'staged', failures, retryAt: new Date(this.now() + wait).toISOString(), note: `DNS step failed: ${why(e)}` }, fence);
      this.o.log.error({ fleet: this.o.id, seq: rot.seq, err: why(e), attempt: failures, retryIn: `${wait / 1000}s`, steps: lines }, 'fleet rotation: DNS did not take the new key; undone (old key active again), retrying');
      return;
    }
    const now = this.now();
    const regrace: KeyMeta[] = metas.filter((m) => rot.demote.includes(m.configId) && m.state === 'decrypt-only').map((m) => ({ ...m, notAfter: new Date(now + this.o.rotation.graceMs).toISOString() }));
    await this.write(regrace, { ...rot, step: 'done', finishedAt: new Date(now).toISOString(), waitingFor: [] }, fence);
    this.o.gauges?.set('late', 0);
    this.o.log.info({ fleet: this.o.id, seq: rot.seq, configId: rot.configId, decryptOnly: regrace.map((m) => ({ configId: m.configId, notAfter: m.notAfter })), steps: lines }, 'fleet rotation done: new key active and published');
  }

  private async write(metas: KeyMeta[], rot: RotationRecord, fence: string): Promise<void> {
    this.count('writes');
    await this.o.store.update(metas, fence, [this.putRotation({ ...rot, leader: this.o.id })]);
  }

  /** For tests and shutdown: the step running now. */
  idle(): Promise<void> {
    return this.running;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    clearTimeout(this.kekProbe);
    // A step in flight may be waiting on an etcd that does not answer: give it a while, not forever.
    await Promise.race([this.running, new Promise((r) => setTimeout(r, 2000).unref())]);
    const c = this.campaign;
    this.campaign = undefined;
    this.leading = false;
    if (c) await Promise.race([c.resign().catch(() => {}), new Promise((r) => setTimeout(r, 1000).unref())]);
  }
}
