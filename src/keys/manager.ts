/**
 * The key lifecycle (docs/ech.md): generate → active; rotate → a new active
 * key, the old one decrypt-only until its grace period ends; retire → the
 * private key is deleted and its config_id is never handed out again.
 *
 * States:
 *   active        published in DNS, sent in retry_configs, decrypts
 *   retry         sent in retry_configs and decrypts, not (yet) published
 *   decrypt-only  decrypts until notAfter (clients with cached DNS), never offered
 *   retired       private key deleted; metadata kept so the id is not reused
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

function freeConfigId(used: Set<number>, rand: () => number): number {
  // Random rather than sequential: config_id is visible on the wire, and a
  // predictable sequence would tell an observer how often keys change.
  const free = [...Array(256).keys()].filter((i) => !used.has(i));
  if (free.length === 0) throw new EchgateError('ERR_KEYSTORE', 'all 256 config_ids are in use or retired');
  return free[rand() % free.length]!;
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
export function makeKey(used: ReadonlySet<number>, o: GenerateOptions): NewKey {
  const aeadId = checkGenerateOptions(o);
  let configId = o.configId;
  if (configId !== undefined) {
    if (!Number.isInteger(configId) || configId < 0 || configId > 255) throw new EchgateError('ERR_USAGE', '--config-id is 0..255');
    if (used.has(configId)) throw new EchgateError('ERR_KEYSTORE', `config_id ${configId} is already in use or retired`);
  } else {
    configId = freeConfigId(new Set(used), () => nodeProvider.randomBytes(1)[0]!);
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
  const k = makeKey(new Set([...loaded.keys.map((x) => x.meta.configId), ...kd.namedIds()]), o);
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

/** Delete the private key; keep the metadata as retired so the id is never reused. */
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

/** retry_configs (RFC 9849 §7.1): active first, then retry keys. */
export function retryList(keys: StoredKey[]): Uint8Array | undefined {
  const pick = (s: string) => keys.filter((k) => k.meta.state === s && k.config).map((k) => k.config!.raw);
  const cfgs = [...pick('active'), ...pick('retry')];
  return cfgs.length ? encodeECHConfigList(cfgs) : undefined;
}
