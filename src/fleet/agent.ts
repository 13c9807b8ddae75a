/**
 * One instance of a fleet (docs/fleet.md): it registers under the prefix,
 * copies the fleet's keys from etcd into its key folder (the keyring serves
 * from there), acknowledges each key by listing it in its instance record,
 * and answers "am I ready" (records.ts readiness()).
 *
 * Two leases: `instances/<id>` on leaseTtl (alive: the leader reads keys held
 * and readiness there), `members/<id>` on forgetAfter (the leader waits for a
 * member that vanished from instances/ until this one runs out too). Contact
 * with etcd is tracked through the short lease's keep-alives; etcd changes
 * arrive by watch, with a full re-read on reconnect and every resyncMs.
 */
import type { Etcd3, Lease, WatchBuilder, Watcher } from 'etcd3';
import type { Logger } from 'pino';
import type { EtcdStoreConfig } from '../config/store.js';
import { isEchgateError } from '../errors.js';
import { mirrorToFolder } from '../keys/keystore.js';
import type { KeyMeta } from '../keys/store.js';
import type { EtcdKeyStore } from './etcd-store.js';
import { storeRefusal } from './refusal.js';
import { CONFIG_GRACE_MS, type ConfigInForce, configDigest, type InstanceRecord, K, parseJson, type RotationRecord, readiness } from './records.js';

export interface AgentHooks {
  /** Reload the keyring from the folder now; the config_ids it holds. */
  reloadKeys(): number[];
  addresses(): string[];
  configRevision(): string;
  /** providers.etcd: the etcd configuration in force; undefined (or absent) with a configuration file alone. */
  configInForce?(): ConfigInForce | undefined;
}

/** Where an instance reports its fleet state (proxy/metrics.ts gauges, or nothing in the simulation). */
export interface FleetGauges {
  set(name: 'storeUp' | 'ready' | 'leader' | 'late', v: number): void;
}

export interface AgentOptions {
  id: string;
  cfg: EtcdStoreConfig;
  client: Etcd3;
  store: EtcdKeyStore;
  /** The local copy; undefined: keys are not mirrored (the simulation). */
  keysDir?: string;
  log: Logger;
  hooks: AgentHooks;
  gauges?: FleetGauges;
  /** Full re-read period (default 30 s, or 3 x leaseTtl when shorter). */
  resyncMs?: number;
  /** How long another instance may run a newer configuration before this one reports itself behind (records.ts CONFIG_GRACE_MS). */
  configGraceMs?: number;
  now?: () => number;
}

/**
 * `fn` one run at a time. A call while a run is in flight gets the next run, which starts when that one
 * ends, so it sees the state of then (the run in flight may have read etcd before the caller's change);
 * the calls made meanwhile share that next run.
 */
export function serial(fn: () => Promise<void>): () => Promise<void> {
  let running: Promise<void> | undefined;
  let queued: Promise<void> | undefined;
  const run = (): Promise<void> => {
    if (running) {
      const next = () => {
        queued = undefined;
        return run();
      };
      queued ??= running.then(next, next);
      return queued;
    }
    running = fn().finally(() => {
      running = undefined;
    });
    return running;
  };
  return run;
}

const why = (e: unknown) => (isEchgateError(e) ? `${e.message} [${e.code}]` : e instanceof Error ? e.message : String(e));

export class FleetAgent {
  readonly id: string;
  private readonly now: () => number;
  private live?: Lease;
  private member?: Lease;
  private watchers: Watcher[] = [];
  private timers: NodeJS.Timeout[] = [];
  private stopped = false;
  /** A read of keys and rotation has begun: a watch created from now on is followed by a read (openWatch()). */
  private readBegun = false;
  private readonly rewatchTimers = new Set<NodeJS.Timeout>();
  private debounce?: NodeJS.Timeout;
  private registering = false;

  storeUp = false;
  lastContact = 0;
  /** Last successful full read of keys and rotation (the readiness clock). */
  lastSynced = 0;
  synced = false;
  error?: string;
  fleetKeys: KeyMeta[] = [];
  rotation?: RotationRecord;
  held = new Set<number>();
  /** configDigest of each key held, as copied at the last sync that succeeded (the instance record's `configs`). */
  private heldConfigs: Record<string, string> = {};
  readonly stagedSeen = new Map<number, number>();
  /** providers.etcd: the live instance records as last read (records.ts configBehind()). */
  peers = new Map<string, InstanceRecord>();
  private peersTimer?: NodeJS.Timeout;
  private notReadySince?: number;
  private lastWritten = '';
  private readonly started = new Date().toISOString();
  /** Counted etcd requests (the simulation's traffic figure). */
  readonly traffic = { reads: 0, writes: 0, watchEvents: 0, peerReads: 0 };

  constructor(private readonly o: AgentOptions) {
    this.id = o.id;
    this.now = o.now ?? Date.now;
  }

  private abs(rel: string): string {
    return this.o.cfg.prefix + rel;
  }

  async start(): Promise<void> {
    await this.register().catch((e) => {
      this.down(e);
      this.scheduleRegister();
    });
    const watching = [() => this.o.client.watch().prefix(this.abs(K.keys)), () => this.o.client.watch().key(this.abs(K.rotation))].map((make) => this.openWatch(make));
    // The first read waits for both watches (bounded by leaseTtl: etcd down at start must not hold serve up).
    // A key put after that read but before a watch began would otherwise reach this instance only at the next
    // resync, and meanwhile it would answer ready from a view that lacks the key: the fleet end-to-end test
    // once saw an instance ready, holding nothing, while the others' DNS named the fleet's first key.
    let waited: NodeJS.Timeout | undefined;
    const bound = new Promise<void>((r) => {
      waited = setTimeout(r, this.o.cfg.leaseTtlMs);
    });
    await Promise.race([Promise.all(watching), bound]);
    clearTimeout(waited);
    // Readiness lapses when the last full read is older than forgetAfter / 2 (records.ts readiness()): re-read well within it.
    this.timers.push(setInterval(() => this.sync(), this.resyncMs).unref());
    // Readiness moves with time (ackTimeout, store down too long): re-evaluated each second, written on change.
    this.timers.push(setInterval(() => void this.report().catch(() => {}), 1000).unref());
    await this.sync();
  }

  private changed(): void {
    this.traffic.watchEvents++;
    clearTimeout(this.debounce);
    this.debounce = setTimeout(() => void this.sync(), 20);
  }

  private contact(): void {
    this.lastContact = this.now();
    this.lastCause = undefined;
    if (this.refused) {
      this.o.log.info({ fleet: this.id }, 'fleet store accepts this instance again');
      this.refused = undefined;
    }
    if (!this.storeUp) {
      this.storeUp = true;
      this.downLogged = false;
      this.o.gauges?.set('storeUp', 1);
      if (this.synced) {
        this.o.log.info({ fleet: this.id }, 'fleet store reachable again: catching up');
        void this.sync();
      }
    }
  }

  /** etcd (or its TLS layer) refusing this instance, as storeRefusal() words it; cleared at the next contact. */
  refused?: string;
  /** The last failure that was not the client's circuit breaker (which only says a previous call failed). */
  private lastCause?: unknown;
  private downLogged = false;

  private down(e: unknown): void {
    // etcd3's circuit breaker answers for a while after a failure: the cause is the failure that opened it.
    const breaker = e instanceof Error && /circuit breaker is open/.test(e.message);
    const cause = breaker && this.lastCause !== undefined ? this.lastCause : e;
    if (!breaker) this.lastCause = e;
    const refusal = storeRefusal(this.o.cfg, cause);
    if (refusal) {
      // A refusal is a setting to fix, not an outage to ride out: said at once, once per distinct reason, and
      // this instance is not ready (GET /ready says why) until etcd accepts it. Nothing falls back to
      // another way of connecting.
      if (refusal !== this.refused) this.o.log.error({ fleet: this.id, err: refusal }, 'fleet store refused this instance: not ready until the setting is fixed');
      this.refused = refusal;
      this.downLogged = true;
    } else if (!this.downLogged) {
      this.o.log.error({ fleet: this.id, err: why(cause) }, 'fleet store unreachable: serving the keys held now (GET /ready keeps its answer for half of forgetAfter)');
      this.downLogged = true;
    }
    if (this.storeUp || this.lastContact === 0) this.o.gauges?.set('storeUp', 0);
    this.storeUp = false;
  }

  /** Take both leases and write the records. Re-run when a lease is lost. */
  private async register(): Promise<void> {
    if (this.registering || this.stopped) return;
    this.registering = true;
    try {
      const c = this.o.client;
      if (!this.member || this.member.revoked()) {
        const m = c.lease(Math.ceil(this.o.cfg.forgetAfterMs / 1000));
        m.on('lost', () => this.relost('membership'));
        this.member = m;
        await m.put(this.abs(K.member(this.id))).value(JSON.stringify({ id: this.id, since: this.started }));
        this.traffic.writes++;
      }
      if (!this.live || this.live.revoked()) {
        const l = c.lease(Math.ceil(this.o.cfg.leaseTtlMs / 1000));
        l.on('lost', () => this.relost('registration'));
        l.on('keepaliveSucceeded', () => this.contact());
        l.on('keepaliveFailed', (e) => this.down(e));
        this.live = l;
        await l.grant();
        this.lastWritten = '';
        this.contact();
        await this.report();
      }
    } finally {
      this.registering = false;
    }
  }

  private relost(what: string): void {
    if (this.stopped) return;
    this.down(new Error(`${what} lease lost`));
    this.scheduleRegister();
  }

  private regTimer?: NodeJS.Timeout;
  /** Retry registering every second until both leases are alive again, then re-read everything. */
  private scheduleRegister(): void {
    if (this.regTimer || this.stopped) return;
    this.regTimer = setTimeout(async () => {
      this.regTimer = undefined;
      try {
        await this.register();
        if (!this.live || this.live.revoked() || !this.member || this.member.revoked()) throw new Error('lease not granted');
        await this.sync();
      } catch (e) {
        this.down(e);
        this.scheduleRegister();
      }
    }, 1000).unref();
  }

  /**
   * Read the fleet's keys and rotation, copy them into the folder, reload, acknowledge. One at a time; the
   * promise settles after a read that began after the call (serial()): the leader's syncLocal() right after
   * its flip must not be answered by a read made before the flip, or its DNS step would publish the folder's
   * old active key (RFC 2136) and mark the rotation done.
   */
  readonly sync: () => Promise<void> = serial(() => this.syncOnce());

  /**
   * Create one watch; etcd3 resolves create() only once etcd has answered (it retries while etcd is down).
   * A watch begins at the revision etcd had when it answered, so one created after a read began (etcd slow
   * or down at start, past the bound in start(); or re-created below) is followed by a read: a change
   * between that read and the watch's start would otherwise reach this instance only at the next resync.
   * etcd may also cancel a watch (its start revision compacted away after an outage, a role changed): etcd3
   * then emits 'error' and drops it, and nothing more would arrive on it, so it is created again.
   */
  private openWatch(make: () => WatchBuilder): Promise<void> {
    return Promise.resolve()
      .then(() => make().create()) // a client that throws at once (closed) lands in the catch below, not in a timer
      .then((w) => {
        if (this.stopped) return void w.cancel().catch(() => {});
        this.watchers.push(w);
        w.on('put', () => this.changed());
        w.on('delete', () => this.changed());
        w.on('connected', () => this.changed()); // reconnected (etcd3 resumes at the last revision seen): read again anyway
        w.on('error', (e) => {
          this.watchers = this.watchers.filter((x) => x !== w);
          this.o.log.warn({ fleet: this.id, err: why(e) }, 'fleet store cancelled a watch: watching again');
          this.rewatch(make);
        });
        w.on('disconnected', () => {});
        if (this.readBegun) this.changed();
      })
      .catch(() => this.rewatch(make)); // refused at creation (a role without the prefix): tried again, the resync reads meanwhile
  }

  private rewatch(make: () => WatchBuilder): void {
    if (this.stopped) return;
    const t = setTimeout(() => {
      this.rewatchTimers.delete(t);
      void this.openWatch(make);
    }, 1000).unref();
    this.rewatchTimers.add(t);
  }

  private async syncOnce(): Promise<void> {
    if (this.stopped) return;
    this.readBegun = true;
    let records: Awaited<ReturnType<EtcdKeyStore['load']>>;
    try {
      const [recs, rot] = await Promise.all([this.o.store.load(), this.o.client.get(this.abs(K.rotation)).string()]);
      this.traffic.reads += 2;
      records = recs;
      this.rotation = parseJson<RotationRecord>(rot, K.rotation);
      this.contact();
    } catch (e) {
      if (isEchgateError(e) && e.code === 'ERR_KEK') {
        // etcd answered (the records were read; they do not open): the store is up, this instance is not ready.
        // Logged once per distinct failure (the message names config_ids and KEK ids, never key material):
        // the re-read every resyncMs and each watch event would otherwise repeat it.
        this.contact();
        const reason = `the fleet's keys do not open with this instance's key-encryption key: ${why(e)}`;
        if (this.error !== reason) this.o.log.error({ fleet: this.id, err: why(e) }, 'fleet keys do not open with this instance\'s key-encryption key: nothing written, not ready');
        this.error = reason;
        await this.report().catch(() => {});
        return;
      }
      this.down(e);
      return;
    }
    const before = this.error;
    this.error = undefined;
    this.fleetKeys = records.map((r) => r.meta);
    const now = this.now();
    for (const m of this.fleetKeys) if (m.state === 'staged' && !this.stagedSeen.has(m.configId)) this.stagedSeen.set(m.configId, now);
    try {
      if (this.o.keysDir && records.length > 0) {
        const r = mirrorToFolder(this.o.keysDir, records);
        if (r.written.length || r.retired.length || r.removed.length) this.o.log.info({ fleet: this.id, written: r.written, retired: r.retired, removed: r.removed }, 'fleet keys copied into the key folder');
      }
      this.held = new Set(this.o.hooks.reloadKeys());
      const configs: Record<string, string> = {};
      for (const r of records) if (this.held.has(r.meta.configId) && r.echConfigList) configs[String(r.meta.configId)] = configDigest(r.echConfigList);
      this.heldConfigs = configs;
      this.synced = true;
      this.lastSynced = now;
    } catch (e) {
      const reason = `the key folder could not take the fleet's keys: ${why(e)}`;
      if (before !== reason) this.o.log.error({ fleet: this.id, err: why(e) }, 'fleet keys could not be copied into the key folder');
      this.error = reason;
    } finally {
      for (const r of records) r.privateKey?.fill(0);
    }
    if (before && !this.error) this.o.log.info({ fleet: this.id }, 'fleet keys open and are copied again');
    await this.report().catch((e) => this.down(e));
  }

  /**
   * providers.etcd only, and only while this instance's last reload was
   * refused (the one case where another instance can run a newer etcd
   * configuration than this one: one that applied is running the newest it
   * was told of): read the live instance records, one range read of
   * instances/. Nothing is read otherwise.
   */
  private async readPeers(): Promise<void> {
    if (!this.configRefused || !this.o.hooks.configInForce?.()) {
      this.peers.clear();
      return;
    }
    const all = await this.o.client.getAll().prefix(this.abs(K.instances)).strings();
    this.traffic.reads++;
    this.traffic.peerReads++;
    const peers = new Map<string, InstanceRecord>();
    for (const text of Object.values(all)) {
      // A damaged record is skipped (it names no configuration).
      const r = (() => {
        try {
          return parseJson<InstanceRecord>(text, K.instances);
        } catch {
          return undefined;
        }
      })();
      if (r && typeof r.id === 'string' && r.id !== this.id) peers.set(r.id, r);
    }
    this.peers = peers;
  }

  private configRefused = false;

  /**
   * A configuration reload was applied or refused (serve.ts). Applied: this
   * instance runs the newest configuration it knows of; nothing to compare,
   * the record is written at once. Refused: the others apply or refuse the
   * same change at about the same time, so their records are read once the
   * grace has passed, then at each resync period while the refusal stands
   * (another instance may apply it later, or the one that did may stop).
   */
  configChanged(refused: boolean): void {
    if (this.stopped) return;
    this.configRefused = refused && Boolean(this.o.hooks.configInForce?.());
    clearTimeout(this.peersTimer);
    this.peersTimer = undefined;
    if (!this.configRefused) {
      this.peers.clear();
      void this.report().catch(() => {});
      return;
    }
    const look = (ms: number) => {
      this.peersTimer = setTimeout(() => {
        this.peersTimer = undefined;
        this.readPeers()
          .then(() => this.report())
          .catch(() => {}) // etcd unreachable: the key reads report it; the peers last read stand
          .finally(() => {
            if (this.configRefused && !this.stopped && !this.peersTimer) look(this.resyncMs);
          });
      }, ms).unref();
    };
    look(this.graceMs + 1000);
  }

  private get resyncMs(): number {
    return this.o.resyncMs ?? Math.min(30_000, 3 * this.o.cfg.leaseTtlMs, Math.floor(this.o.cfg.forgetAfterMs / 6));
  }

  private get graceMs(): number {
    return this.o.configGraceMs ?? CONFIG_GRACE_MS;
  }

  readiness(): { ready: boolean; reason: string } {
    return readiness({
      now: this.now(),
      synced: this.synced,
      lastSynced: this.lastSynced,
      storeUp: this.storeUp,
      fleetKeys: this.fleetKeys,
      rotation: this.rotation,
      stagedSeen: this.stagedSeen,
      held: this.held,
      error: this.error ?? this.refused,
      ackTimeoutMs: this.o.cfg.ackTimeoutMs,
      forgetAfterMs: this.o.cfg.forgetAfterMs,
      config: { id: this.id, mine: this.o.hooks.configInForce?.(), peers: this.peers.values(), graceMs: this.graceMs },
    });
  }

  /**
   * Write the instance record when what it says changed (keys held, readiness, revision). One write at a
   * time, each made from the view at its turn (serial()): etcd3 sends each call to a host of its choosing,
   * so two puts in flight could land in either order and leave the older record (one without the key just
   * acknowledged) in etcd while lastWritten says the newer one went out; nothing would write it again and
   * the leader would wait for an acknowledgement already made.
   */
  private readonly report: () => Promise<void> = serial(() => this.reportOnce());

  private async reportOnce(): Promise<void> {
    const r = this.readiness();
    const config = this.o.hooks.configInForce?.();
    this.o.gauges?.set('ready', r.ready ? 1 : 0);
    if (r.ready) this.notReadySince = undefined;
    else this.notReadySince ??= this.now();
    const rec: InstanceRecord = {
      id: this.id,
      addresses: this.o.hooks.addresses(),
      keys: [...this.held].sort((a, b) => a - b),
      configs: this.heldConfigs,
      configRevision: this.o.hooks.configRevision(),
      ...(config ? { config } : {}),
      ready: r.ready,
      reason: r.reason,
      ...(this.notReadySince !== undefined ? { notReadySince: new Date(this.notReadySince).toISOString() } : {}),
      started: this.started,
      updated: '',
    };
    const sig = JSON.stringify(rec);
    if (sig === this.lastWritten || !this.live || this.live.revoked() || this.stopped) return;
    rec.updated = new Date(this.now()).toISOString();
    await this.live.put(this.abs(K.instance(this.id))).value(JSON.stringify(rec));
    this.traffic.writes++;
    this.lastWritten = sig;
  }

  /** Leave the fleet: both records deleted, so the leader stops waiting for this instance at once. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.debounce);
    clearTimeout(this.regTimer);
    clearTimeout(this.peersTimer);
    for (const t of this.timers) clearTimeout(t);
    for (const t of this.rewatchTimers) clearTimeout(t);
    for (const w of this.watchers) await w.cancel().catch(() => {});
    const bye = async (l?: Lease) => {
      if (l && !l.revoked()) await Promise.race([l.revoke().catch(() => {}), new Promise((r) => setTimeout(r, 1000).unref())]);
    };
    await Promise.all([bye(this.live), bye(this.member)]);
  }
}
