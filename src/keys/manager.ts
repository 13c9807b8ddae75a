/**
 * The key lifecycle (docs/ech.md): generate → active; rotate → a new active
 * key, the old one decrypt-only until its grace period ends; retire → the
 * private key is deleted and its config_id is never handed out again.
 *
 * States:
 *   active        published in DNS, sent in retry_configs, decrypts
 *   retry         sent in retry_configs and decrypts, not (yet) published
 *   decrypt-only  decrypts until notAfter (clients with cached DNS), never offered
 *   retired       private key deleted; metadata kept for RETIRED_KEEP_MS: the id rests
 *   staged        (fleet only) decrypts, never offered: waits until every instance holds it
 *   pending       a key file without metadata (another tool made it): decrypts,
 *                 never offered, until `keys adopt` makes it active or retry
 */
import { AEAD, isSupportedSuite, KDF, KEM_X25519_SHA256 } from '../crypto/hpke.js';
import { nodeProvider } from '../crypto/node.js';
import { EchgateError } from '../errors.js';
import { encodeECHConfig, encodeECHConfigList, isValidPublicName } from '../wire/ech/config.js';
import { KeyDir, type KeyMeta, type LoadResult, type StoredKey } from './store.js';

export const AEAD_NAMES = { aes128gcm: AEAD.AES_128_GCM, aes256gcm: AEAD.AES_256_GCM, chacha20poly1305: AEAD.CHACHA20_POLY1305 } as const;
export type AeadChoice = keyof typeof AEAD_NAMES;

export interface GenerateOptions {
  publicName: string;
  configId?: number;
  aead?: AeadChoice;
  maxNameLength?: number;
  /** staged: only the fleet's leader makes these (docs/fleet.md). */
  state?: 'active' | 'retry' | 'staged';
  now?: Date;
}

/**
 * A retired key's config_id may be handed out again this long after the
 * retirement, never sooner. RFC 9849 §4.1 allows reuse once the previous
 * ECHConfig "is no longer in the known set", and §7.1 makes a stale client
 * safe: a hello whose config_id now names a different key fails to decrypt
 * with every candidate, so the server ignores the extension and answers with
 * retry_configs, as it does for an unknown id; the client retries with the
 * current key. The retirement itself comes only after the decrypt window
 * (grace), so this margin is on top of it: it covers a worker's or a fleet
 * peer's keyring that has not yet dropped the retired key, and clock skew
 * between hosts sharing the folder.
 */
export const ID_REUSE_MARGIN_MS = 3_600_000;
/**
 * Retired metadata is deleted this long after the retirement (sweepKeys, rotateKeys):
 * files do not pile up, and an id retired longer ago is as good as one never
 * used. It is also the bound `check --strict` names: settings under which an
 * id comes back sooner than this after its retirement are warned about
 * (rotationIdWarnings).
 */
export const RETIRED_KEEP_MS = 24 * 3_600_000;

const human = (ms: number) =>
  ms < 60_000 ? `${Math.round(ms / 1000)}s` : ms % 3_600_000 === 0 || ms >= 2 * 3_600_000 ? `${Math.round(ms / 3_600_000)}h` : `${Math.round(ms / 60_000)}m`;

/**
 * What `check` says about rotation settings that bring a config_id back soon
 * after its key was retired. Every rotation takes one id, held `every`
 * (active) + `grace` (decrypt-only), then retired; with the id retired longest
 * ago taken first, all 256 cycle in 256 rotations, so an id rests about
 * 255 × every − grace between its retirement and its reuse. Under
 * RETIRED_KEEP_MS (a day) this warns; under ID_REUSE_MARGIN_MS rotations
 * wait for an id to finish its rest and run late (they never stop: the
 * oldest retired id becomes free).
 */
export function rotationIdWarnings(r: { everyMs: number; graceMs: number }): string[] {
  const rest = 255 * r.everyMs - r.graceMs;
  if (rest >= RETIRED_KEEP_MS) return [];
  const minEvery = Math.ceil((RETIRED_KEEP_MS + r.graceMs) / 255 / 60_000) * 60_000;
  const late =
    rest < ID_REUSE_MARGIN_MS
      ? `; under the ${human(ID_REUSE_MARGIN_MS)} an id must rest, so rotations will wait for one and run later than every`
      : '';
  return [
    `ech.rotation: every ${human(r.everyMs)} with grace ${human(r.graceMs)} cycles all 256 config_ids in ${human(256 * r.everyMs)}: a config_id comes back about ${human(Math.max(0, rest))} after its key was retired, under ${human(RETIRED_KEEP_MS)}${late}; a client holding a day-old ECHConfig still recovers through retry_configs (RFC 9849 §7.1), but every of at least ${human(minEvery)} keeps ids apart for a day`,
  ];
}

/** config_ids a new key may not take, and those retired keys free at a time (ms). */
export interface IdUse {
  /** In use (a key that decrypts, or a file the loader could not read): never taken. */
  used: ReadonlySet<number>;
  /** Retired: the id may be taken from this time on (retirement + ID_REUSE_MARGIN_MS). */
  retiredFreeAt?: ReadonlyMap<number, number>;
  /** Now, for retiredFreeAt (default: the clock). */
  now?: number;
}

/** When a retired key's id may be taken again: its retirement (notAfter) plus the margin; never when unreadable. */
export function idFreeAt(m: KeyMeta): number {
  const at = m.notAfter === undefined ? Number.NaN : Date.parse(m.notAfter);
  return Number.isFinite(at) ? at + ID_REUSE_MARGIN_MS : Number.POSITIVE_INFINITY;
}

/** The ids of a loaded folder, split as IdUse wants them. */
export function idUse(loaded: readonly StoredKey[], namedIds: Iterable<number>, now: number): IdUse {
  const retiredFreeAt = new Map<number, number>();
  for (const k of loaded) if (k.meta.state === 'retired' && !k.file) retiredFreeAt.set(k.meta.configId, idFreeAt(k.meta));
  const used = new Set<number>();
  for (const k of loaded) if (!retiredFreeAt.has(k.meta.configId)) used.add(k.meta.configId);
  for (const id of namedIds) if (!retiredFreeAt.has(id)) used.add(id);
  return { used, retiredFreeAt, now };
}

function freeConfigId(u: IdUse, rand: () => number): number {
  const now = u.now ?? Date.now();
  const retired = u.retiredFreeAt ?? new Map<number, number>();
  // Random rather than sequential: config_id is visible on the wire, and a
  // predictable sequence would tell an observer how often keys change.
  const fresh = [...Array(256).keys()].filter((i) => !u.used.has(i) && !retired.has(i));
  if (fresh.length > 0) return fresh[rand() % fresh.length]!;
  // No id without a recent history: the one retired longest ago, once its rest is over,
  // so an id comes back as late as the folder allows. The order repeats the order the ids
  // were retired in, each first drawn at random: it tells an observer no more than before.
  const oldest = [...retired].filter(([id]) => !u.used.has(id)).sort((a, b) => a[1] - b[1] || a[0] - b[0])[0];
  if (oldest && oldest[1] <= now) return oldest[0];
  const when = oldest && Number.isFinite(oldest[1]) ? `; the first retired one (config_id ${oldest[0]}) is free at ${new Date(oldest[1]).toISOString()}` : '';
  throw new EchgateError(
    'ERR_KEYSTORE',
    `all 256 config_ids are in use or retired less than ${ID_REUSE_MARGIN_MS / 60_000} min ago (${u.used.size} in use)${when}: fewer keys in their decrypt window (a longer rotation.every or a shorter grace) leaves ids free`,
  );
}

function checkGenerateOptions(o: { publicName: string; aead?: AeadChoice; maxNameLength?: number }): number {
  if (!isValidPublicName(o.publicName)) throw new EchgateError('ERR_USAGE', `invalid public name "${o.publicName}" (RFC 9849 §6.1.7)`);
  const aeadId = AEAD_NAMES[o.aead ?? 'aes128gcm'];
  if (aeadId === undefined) throw new EchgateError('ERR_USAGE', `unknown AEAD "${o.aead}" (aes128gcm, aes256gcm, chacha20poly1305)`);
  const maxNameLength = o.maxNameLength ?? 0;
  if (!Number.isInteger(maxNameLength) || maxNameLength < 0 || maxNameLength > 255) throw new EchgateError('ERR_USAGE', '--max-name-length is 0..255');
  return aeadId;
}

/** A new key's material and metadata, not yet written anywhere. */
export interface NewKey {
  privateKey: Uint8Array;
  echConfigList: Uint8Array;
  meta: KeyMeta;
}

/**
 * Make a key (X25519, HKDF-SHA256) with a config_id not in `used`; nothing
 * is written. The folder store and the fleet's etcd store both write what
 * this returns; the caller wipes privateKey once it is stored.
 */
export function makeKey(ids: ReadonlySet<number> | IdUse, o: GenerateOptions): NewKey {
  const aeadId = checkGenerateOptions(o);
  const u: IdUse = 'used' in ids ? ids : { used: ids };
  const now = u.now ?? Date.now();
  let configId = o.configId;
  if (configId !== undefined) {
    if (!Number.isInteger(configId) || configId < 0 || configId > 255) throw new EchgateError('ERR_USAGE', '--config-id is 0..255');
    const freeAt = u.retiredFreeAt?.get(configId);
    if (u.used.has(configId) || (freeAt !== undefined && freeAt > now)) {
      throw new EchgateError('ERR_KEYSTORE', `config_id ${configId} is already in use or retired less than ${ID_REUSE_MARGIN_MS / 60_000} min ago`);
    }
  } else {
    configId = freeConfigId(u, () => nodeProvider.randomBytes(1)[0]!);
  }
  if (!isSupportedSuite(KEM_X25519_SHA256, KDF.HKDF_SHA256, aeadId)) throw new EchgateError('ERR_HPKE', 'suite not supported');
  const sk = nodeProvider.randomBytes(32);
  const pub = nodeProvider.x25519Private(sk).publicKey;
  const config = encodeECHConfig({
    configId,
    kemId: KEM_X25519_SHA256,
    publicKey: pub,
    cipherSuites: [{ kdfId: KDF.HKDF_SHA256, aeadId }],
    maximumNameLength: o.maxNameLength ?? 0,
    publicName: o.publicName,
    extensions: [],
  });
  const meta: KeyMeta = { configId, publicName: o.publicName, state: o.state ?? 'active', created: (o.now ?? new Date()).toISOString() };
  return { privateKey: sk, echConfigList: encodeECHConfigList([config]), meta };
}

/** Make and write a key; the caller holds the folder lock and passes what it loaded under it. */
function createKey(kd: KeyDir, loaded: LoadResult, o: GenerateOptions): KeyMeta {
  const k = makeKey(idUse(loaded.keys, kd.namedIds(), (o.now ?? new Date()).getTime()), o);
  // A reused id: its retired metadata goes first, so the folder passes through the same
  // states as for a fresh id (a key file without metadata loads as pending for a moment),
  // never a key file beside metadata that says retired.
  if (loaded.keys.some((x) => x.meta.configId === k.meta.configId && x.meta.state === 'retired')) kd.deleteMetaFile(k.meta.configId);
  kd.writeKey(k.privateKey, k.echConfigList, k.meta);
  k.privateKey.fill(0);
  return k.meta;
}

export function generateKey(dir: string, o: GenerateOptions): KeyMeta {
  checkGenerateOptions(o);
  const kd = new KeyDir(dir);
  return kd.withLock(() => createKey(kd, kd.load(), o));
}

export function listKeys(dir: string) {
  return new KeyDir(dir).load();
}

export interface RotateOptions {
  publicName?: string;
  graceMs: number;
  aead?: AeadChoice;
  maxNameLength?: number;
  now?: Date;
  /**
   * Make this retry key (same public name) the new active key instead of
   * creating one: a rotation retried after a failed DNS step reuses the key
   * that attempt made, so retries do not use up config_ids.
   */
  promote?: number;
}

/**
 * New active key; every active key with the same public name becomes
 * decrypt-only for `graceMs`. One read-modify-write under the folder lock: a
 * second rotation at the same time waits, then rotates what the first left
 * (it never sees the keys from before the first one).
 */
export function rotateKeys(dir: string, o: RotateOptions): { created: KeyMeta; demoted: KeyMeta[] } {
  const kd = new KeyDir(dir);
  const now = o.now ?? new Date();
  return kd.withLock(() => {
    const loaded = kd.load();
    forgetLocked(kd, loaded, now.getTime());
    const actives = loaded.keys.filter((k) => k.meta.state === 'active');
    const publicName = o.publicName ?? actives[0]?.meta.publicName;
    if (!publicName) throw new EchgateError('ERR_USAGE', 'no active key to rotate; give --public-name or run keys generate');
    const prev = actives.find((k) => k.meta.publicName === publicName);
    // The new key is written before the old ones are demoted: a reader between the two sees two
    // active keys (both decrypt), never none.
    const staged = o.promote === undefined ? undefined : loaded.keys.find((k) => k.meta.configId === o.promote && k.meta.state === 'retry' && k.meta.publicName === publicName && k.privateKey);
    let created: KeyMeta;
    if (staged) {
      created = { ...staged.meta, state: 'active', activated: now.toISOString() };
      kd.writeMeta(created);
    } else {
      created = createKey(kd, loaded, { publicName, aead: o.aead, maxNameLength: o.maxNameLength ?? prev?.config?.maximumNameLength, now });
    }
    const demoted: KeyMeta[] = [];
    for (const k of actives) {
      if (k.meta.publicName !== publicName) continue;
      const meta: KeyMeta = { ...k.meta, state: 'decrypt-only', notAfter: new Date(now.getTime() + o.graceMs).toISOString() };
      kd.writeMeta(meta);
      demoted.push(meta);
    }
    return { created, demoted };
  });
}

/** A pending key (a PEM file without metadata) gets its metadata: active (published) or retry. */
export function adoptKey(dir: string, configId: number, state: 'active' | 'retry' = 'active'): KeyMeta {
  const kd = new KeyDir(dir);
  return kd.withLock(() => {
    const k = kd.load().keys.find((x) => x.meta.configId === configId);
    if (!k) throw new EchgateError('ERR_KEYSTORE', `no key with config_id ${configId} in ${dir}`);
    if (k.meta.state !== 'pending') throw new EchgateError('ERR_KEYSTORE', `config_id ${configId} already has metadata (state ${k.meta.state})`);
    const meta: KeyMeta = { ...k.meta, state };
    kd.writeMeta(meta);
    return meta;
  });
}

/**
 * A rotation whose DNS step failed: the keys it demoted are active again (DNS
 * still hands them out), and the new key stays decryptable as `retry`, in
 * case DNS did pick it up. Every key a client may hold still decrypts.
 */
export function undoRotation(dir: string, r: { created: KeyMeta; demoted: KeyMeta[] }): void {
  const kd = new KeyDir(dir);
  kd.withLock(() => {
    const byId = new Map(kd.load().keys.map((k) => [k.meta.configId, k.meta]));
    const created = byId.get(r.created.configId);
    if (created && created.state === 'active') kd.writeMeta({ ...created, state: 'retry' });
    for (const d of r.demoted) {
      const m = byId.get(d.configId);
      if (m && m.state === 'decrypt-only') {
        const { notAfter: _gone, ...rest } = m;
        kd.writeMeta({ ...rest, state: 'active' });
      }
    }
  });
}

/**
 * DNS now carries the new list (read back): the demoted keys' grace period
 * starts now, not at the rotation, since clients may have fetched the old
 * record until this moment.
 */
export function restartGrace(dir: string, demoted: KeyMeta[], graceMs: number, now = new Date()): KeyMeta[] {
  const kd = new KeyDir(dir);
  return kd.withLock(() => {
    const out: KeyMeta[] = [];
    const byId = new Map(kd.load().keys.map((k) => [k.meta.configId, k.meta]));
    for (const d of demoted) {
      const m = byId.get(d.configId);
      if (!m || m.state !== 'decrypt-only') continue;
      const meta: KeyMeta = { ...m, notAfter: new Date(now.getTime() + graceMs).toISOString() };
      kd.writeMeta(meta);
      out.push(meta);
    }
    return out;
  });
}

/**
 * Retired metadata older than RETIRED_KEEP_MS is deleted (the caller holds the
 * lock; `loaded` loses those entries): it holds no key material, only the
 * retirement date that keeps its id resting (idFreeAt), and after this long
 * the id is as free as one never used. Returns the ids forgotten.
 */
function forgetLocked(kd: KeyDir, loaded: LoadResult, now: number): number[] {
  const out: number[] = [];
  loaded.keys = loaded.keys.filter((k) => {
    if (k.meta.state !== 'retired' || k.file) return true;
    const at = k.meta.notAfter === undefined ? Number.NaN : Date.parse(k.meta.notAfter);
    if (!Number.isFinite(at) || now - at < RETIRED_KEEP_MS) return true;
    kd.deleteMetaFile(k.meta.configId);
    out.push(k.meta.configId);
    return false;
  });
  return out;
}

/**
 * Clean the folder (serve's rotation does it at every look, `keys rotate`
 * before it rotates): decrypt-only keys whose grace ended are retired (their
 * private key deleted: what a later compromise of the host could decrypt ends
 * with the grace, forward secrecy), and retired metadata older than
 * RETIRED_KEEP_MS is deleted, so the folder holds at most the keys in their
 * window plus a day of retirements.
 */
export function sweepKeys(dir: string, now = new Date()): { retired: number[]; forgotten: number[] } {
  const kd = new KeyDir(dir);
  return kd.withLock(() => {
    const loaded = kd.load();
    const retired: number[] = [];
    for (const k of loaded.keys) {
      if (k.meta.state !== 'decrypt-only' || k.meta.notAfter === undefined) continue;
      const end = Date.parse(k.meta.notAfter);
      if (!Number.isFinite(end) || end > now.getTime()) continue;
      k.meta = { ...k.meta, state: 'retired', notAfter: now.toISOString() };
      kd.writeMeta(k.meta);
      kd.deleteKeyFile(k.meta.configId, k.file);
      k.file = undefined;
      retired.push(k.meta.configId);
    }
    return { retired, forgotten: forgetLocked(kd, loaded, now.getTime()) };
  });
}

/** Delete the private key; keep the metadata as retired so the id rests before reuse (idFreeAt). */
export function retireKey(dir: string, configId: number, now = new Date()): KeyMeta {
  const kd = new KeyDir(dir);
  return kd.withLock(() => {
    const k = kd.load().keys.find((x) => x.meta.configId === configId);
    if (!k) throw new EchgateError('ERR_KEYSTORE', `no key with config_id ${configId}`);
    if (k.meta.state === 'retired') return k.meta;
    const meta: KeyMeta = { ...k.meta, state: 'retired', notAfter: now.toISOString() };
    kd.writeMeta(meta);
    kd.deleteKeyFile(configId, k.file);
    return meta;
  });
}

/** Keys a server may decrypt with at `now`. */
export function decryptingKeys(keys: StoredKey[], now = new Date()): StoredKey[] {
  return keys.filter((k) => {
    if (!k.privateKey || !k.config) return false;
    if (k.meta.state === 'active' || k.meta.state === 'retry' || k.meta.state === 'pending' || k.meta.state === 'staged') return true;
    if (k.meta.state === 'decrypt-only') return !k.meta.notAfter || Date.parse(k.meta.notAfter) > now.getTime();
    return false;
  });
}

/** The ECHConfigList to publish in DNS: active keys. */
export function publishedList(keys: StoredKey[]): Uint8Array | undefined {
  const cfgs = keys.filter((k) => k.meta.state === 'active' && k.config).map((k) => k.config!.raw);
  return cfgs.length ? encodeECHConfigList(cfgs) : undefined;
}

/**
 * retry_configs for one of several processes on the folder (workers: N), at
 * `now`: keys whose activation (`activated`, else `created`) is at least
 * `settleMs` old first, since every process has loaded those by now; a key
 * activated more recently is offered only after the key it replaced (the
 * newest settled decrypt-only key that still decrypts for `settleMs`), when
 * there is one. Each process reloads the folder on its own watch, so for a
 * moment after a rotation one has the new key and another does not; a client
 * given the new key in retry_configs by the first may make its one retry
 * (RFC 9849 §6.1.6) to the second and fail for good. The replaced key is in
 * its grace, so every process decrypts it. `settlesAt`: when the list changes
 * next (the caller reloads then).
 */
export function settledRetryList(keys: StoredKey[], now: number, settleMs: number): { list?: Uint8Array; settlesAt?: number } {
  const since = (k: StoredKey) => Date.parse(k.meta.activated ?? k.meta.created);
  // An unreadable date counts as settled: never hold back a key for want of one.
  const fresh = (k: StoredKey) => since(k) > now - settleMs;
  const offered = (st: string) => keys.filter((k) => k.meta.state === st && k.config);
  const active = offered('active');
  const retry = offered('retry');
  const settledActive = active.filter((k) => !fresh(k));
  let replaced: StoredKey[] = [];
  if (settledActive.length === 0 && active.length > 0) {
    const left = (k: StoredKey) => (k.meta.notAfter === undefined ? Number.POSITIVE_INFINITY : Date.parse(k.meta.notAfter) - now);
    const candidates = keys.filter((k) => k.meta.state === 'decrypt-only' && k.config && k.privateKey && !fresh(k) && left(k) >= settleMs);
    candidates.sort((x, y) => since(y) - since(x));
    replaced = candidates.slice(0, 1);
  }
  const order = [...settledActive, ...replaced, ...retry.filter((k) => !fresh(k)), ...active.filter(fresh), ...retry.filter(fresh)];
  const pending = [...active, ...retry].filter(fresh).map((k) => since(k) + settleMs);
  return {
    ...(order.length ? { list: encodeECHConfigList(order.map((k) => k.config!.raw)) } : {}),
    ...(pending.length ? { settlesAt: Math.min(...pending) } : {}),
  };
}

/** retry_configs (RFC 9849 §7.1) with nothing held back: active first, then retry keys (settledRetryList with no settle time). */
export function retryList(keys: StoredKey[], now = Date.now()): Uint8Array | undefined {
  return settledRetryList(keys, now, 0).list;
}
