/**
 * What a fleet keeps in etcd under its prefix (docs/fleet.md "Layout"), and
 * the two decisions made from it, as pure functions over plain data so that
 * tests and the simulation drive them without etcd:
 *
 *   keys/NNN        one ECH key: metadata, ECHConfigList, private key sealed with the KEK
 *   rotation        the rotation in progress or the last one (step, config_id, who is late)
 *   members/<id>    an instance, on a long lease (forgetAfter): "may be serving, wait for it"
 *   instances/<id>  an instance, on a short lease (leaseTtl): address, keys held, ready, config revision
 *   election/...    the leader election (etcd3's Election recipe)
 *
 * readiness(): may this instance take connections (GET /ready)?
 * decidePublish(): may the leader let DNS name the staged key?
 * The invariant both serve: DNS never names a key that an instance a load
 * balancer may send clients to cannot decrypt.
 */
import { EchgateError } from '../errors.js';
import type { KeyMeta } from '../keys/store.js';
import { configDigest, type SealedKey } from '../keys/sealed.js';

export { configDigest };

export const K = {
  key: (id: number) => `keys/${String(id).padStart(3, '0')}`,
  keys: 'keys/',
  rotation: 'rotation',
  member: (id: string) => `members/${id}`,
  members: 'members/',
  instance: (id: string) => `instances/${id}`,
  instances: 'instances/',
  election: 'leader',
} as const;

export interface KeyRecordJson {
  meta: KeyMeta;
  /** base64; absent once retired. */
  echConfigList?: string;
  sealed?: SealedKey;
}

export interface InstanceRecord {
  id: string;
  /** The entrypoints' listening addresses (host:port). */
  addresses: string[];
  /** config_ids of the keys this instance's keyring holds now (its acknowledgement of a staged key). */
  keys: number[];
  /**
   * config_id → configDigest of the ECHConfigList copied under it: config_ids come back (docs/fleet.md), so an
   * id alone could acknowledge a new key with an old one's. Absent (an older version): the id acknowledges.
   */
  configs?: Record<string, string>;
  configRevision: string;
  /** providers.etcd: the etcd configuration in force (absent: a configuration file alone, nothing to compare). */
  config?: ConfigInForce;
  ready: boolean;
  reason?: string;
  /** ISO: when it last became not ready (the leader's drain clock). */
  notReadySince?: string;
  started: string;
  updated: string;
}

/**
 * The etcd configuration an instance runs (providers.etcd). `revision` is the
 * etcd store revision it was read at: comparable across instances reading the
 * same etcd, but two reads of the same keys at different times differ, so
 * `digest` (of the keys and values) says whether two instances really run
 * different configurations.
 */
export interface ConfigInForce {
  /** providers.etcd.rootKey: only instances reading the same keys are compared. */
  rootKey: string;
  revision: number;
  digest: string;
  /** ISO: when this instance started running it (the grace clock of the others). */
  since: string;
}

/**
 * How long an instance may run an older configuration than another live,
 * ready instance before it reports itself not ready: the provider's debounce
 * (100 ms) and the file watcher's (200 ms), building the new state
 * (certificates, listeners), and writing the record, with room to spare.
 */
export const CONFIG_GRACE_MS = 5_000;

/**
 * Is this instance behind the fleet's configuration? Yes when another live,
 * ready instance reading the same etcd keys runs a different configuration
 * read at a newer etcd revision, and has run it for longer than `graceMs`:
 * the configuration is valid (it runs somewhere) and this instance failed to
 * apply it, or has not yet. When every instance refuses a revision nobody
 * runs it and nobody is behind. Without an etcd configuration in force on
 * either side (a configuration file per instance: revisions are hashes, not
 * ordered) nothing is compared. Returns the 503 reason, or undefined.
 */
export function configBehind(id: string, mine: ConfigInForce | undefined, peers: Iterable<InstanceRecord>, now: number, graceMs: number): string | undefined {
  if (!mine) return undefined;
  let newest: InstanceRecord | undefined;
  for (const p of peers) {
    const c = p.config;
    if (p.id === id || !p.ready || !c || c.rootKey !== mine.rootKey || c.digest === mine.digest) continue;
    if (!(c.revision > mine.revision)) continue;
    const since = Date.parse(c.since);
    if (!Number.isFinite(since) || now - since < graceMs) continue;
    if (!newest || c.revision > newest.config!.revision) newest = p;
  }
  return newest ? `runs configuration revision ${mine.revision}, instance ${newest.id} runs ${newest.config!.revision} (applied over ${Math.round(graceMs / 1000)}s ago): this instance failed to apply it or has not yet` : undefined;
}

export type RotationStep = 'staged' | 'publishing' | 'done' | 'rolled-back';

export interface RotationRecord {
  /** Increases by one per rotation started. */
  seq: number;
  step: RotationStep;
  configId: number;
  publicName: string;
  /** The active keys this rotation demotes to decrypt-only. */
  demote: number[];
  leader: string;
  startedAt: string;
  publishedAt?: string;
  finishedAt?: string;
  /** Instances the leader still waits for (no acknowledgement yet). */
  waitingFor: string[];
  /** Instances that did not acknowledge within ackTimeout: reported, and not ready by their own rule. */
  late: string[];
  /** Publish attempts that failed (RFC 2136 / read-back), with backoff. */
  failures?: number;
  retryAt?: string;
  note?: string;
}

export function parseJson<T>(text: string | null | undefined, what: string): T | undefined {
  if (text === null || text === undefined) return undefined;
  try {
    return JSON.parse(text) as T;
  } catch {
    throw new EchgateError('ERR_FLEET', `${what}: not JSON`);
  }
}

/** What an instance knows when it answers GET /ready. */
export interface ReadinessInput {
  now: number;
  /** A sync with etcd succeeded at least once since start (or the local copy was loaded). */
  synced: boolean;
  /** Last successful full read of the fleet's keys and rotation from etcd (ms). */
  lastSynced: number;
  storeUp: boolean;
  /** The fleet's keys as last read from etcd. */
  fleetKeys: readonly KeyMeta[];
  rotation?: RotationRecord;
  /** When this instance first saw each staged key (ms), for the ackTimeout clock. */
  stagedSeen: ReadonlyMap<number, number>;
  held: ReadonlySet<number>;
  /** A KEK or store error that stops this instance from holding the fleet's keys. */
  error?: string;
  ackTimeoutMs: number;
  forgetAfterMs: number;
  /** providers.etcd: this instance's id, the configuration it runs, the live instance records last read (configBehind()). */
  config?: { id: string; mine?: ConfigInForce; peers: Iterable<InstanceRecord>; graceMs: number };
}

/**
 * 200 only when this instance holds every key DNS may name or clients may
 * still use (active and unexpired decrypt-only keys), every staged key it has
 * known for longer than ackTimeout, and (providers.etcd) does not run an
 * older configuration than another ready instance (configBehind()). When etcd is unreachable it keeps
 * answering from what it last read, for half of forgetAfter: after that the
 * leader may stop waiting for it (its membership lease runs out at
 * forgetAfter), so it must be drained. The clock is the last full read, not
 * the last keep-alive: an instance that was frozen (SIGSTOP, a paused VM)
 * past that point is not ready on waking until it has read etcd again, even
 * though it has not yet noticed any failure.
 */
export function readiness(x: ReadinessInput): { ready: boolean; reason: string } {
  if (x.error) return { ready: false, reason: x.error };
  if (!x.synced) return { ready: false, reason: 'not yet synced with the fleet store' };
  if (x.now - x.lastSynced > x.forgetAfterMs / 2) {
    const ago = Math.round((x.now - x.lastSynced) / 1000);
    return { ready: false, reason: x.storeUp ? `keys last read from the fleet store ${ago}s ago (over half of forgetAfter): the fleet may have rotated without this instance` : `fleet store unreachable for ${ago}s (over half of forgetAfter): the fleet may rotate without this instance` };
  }
  const missing: number[] = [];
  const late: number[] = [];
  for (const k of x.fleetKeys) {
    if (x.held.has(k.configId)) continue;
    if (k.state === 'active') missing.push(k.configId);
    else if (k.state === 'decrypt-only' && (!k.notAfter || Date.parse(k.notAfter) > x.now)) missing.push(k.configId);
    else if (k.state === 'staged' && x.now - (x.stagedSeen.get(k.configId) ?? x.now) > x.ackTimeoutMs) late.push(k.configId);
  }
  if (missing.length) return { ready: false, reason: `does not hold config_id ${missing.join(', ')} (active or in grace)` };
  if (late.length) return { ready: false, reason: `did not acknowledge staged config_id ${late.join(', ')} within ackTimeout` };
  const behind = x.config && configBehind(x.config.id, x.config.mine, x.config.peers, x.now, x.config.graceMs);
  if (behind) return { ready: false, reason: behind };
  return { ready: true, reason: x.storeUp ? 'holds the current keys' : 'fleet store unreachable: serving the keys it holds' };
}

export interface PublishDecision {
  publish: boolean;
  /** No acknowledgement yet (within ackTimeout, or registered without a live record: partitioned or dead). */
  waitingFor: string[];
  /** Past ackTimeout without an acknowledgement. */
  late: string[];
  /** Not ready long enough to have been drained: not waited for. */
  excused: string[];
}

/**
 * The leader may publish the staged key when every member (an instance whose
 * membership lease is alive) either holds it, or has reported itself not
 * ready for at least `drainMs` (the load balancer has taken it out). A member
 * with no live instance record (cut off from etcd, or dead) is waited for
 * until its membership lease runs out. Waiting is always safe: the old key
 * stays active and every instance decrypts it.
 */
export function decidePublish(
  configId: number,
  stagedAt: number,
  members: readonly string[],
  instances: ReadonlyMap<string, InstanceRecord>,
  now: number,
  o: { ackTimeoutMs: number; drainMs: number },
  digest?: string,
): PublishDecision {
  const d: PublishDecision = { publish: false, waitingFor: [], late: [], excused: [] };
  const ids = new Set([...members, ...instances.keys()]);
  for (const id of [...ids].sort()) {
    const inst = instances.get(id);
    // An instance that names what it copied under the id must name this key (the id may have held another).
    if (inst?.keys.includes(configId) && (digest === undefined || !inst.configs || inst.configs[String(configId)] === digest)) continue;
    const overdue = now - stagedAt > o.ackTimeoutMs;
    if (inst && !inst.ready && inst.notReadySince && now - Date.parse(inst.notReadySince) >= o.drainMs) {
      d.excused.push(id);
      continue;
    }
    d.waitingFor.push(id);
    if (overdue) d.late.push(id);
  }
  d.publish = d.waitingFor.length === 0;
  return d;
}
