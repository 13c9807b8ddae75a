/**
 * Where the ECH keys live: one interface, two stores.
 *
 * - FolderKeyStore (the default): the key folder of store.ts, unchanged: RFC
 *   9934 PEM files and metadata beside them, written under the folder lock.
 * - The fleet's etcd store (src/fleet/etcd-store.ts): one record per key
 *   under a prefix, private keys sealed with the KEK (sealed.ts).
 *
 * In a fleet, etcd is the source of truth and each instance's key folder is
 * its local copy: mirrorToFolder() writes what etcd holds into the folder,
 * and the keyring (keyring.ts) serves from the folder as it always does. An
 * instance that restarts while etcd is down still serves the keys it last
 * mirrored.
 */
import { EchgateError } from '../errors.js';
import { retireKey, type NewKey } from './manager.js';
import { KeyDir, type KeyMeta } from './store.js';

/** One key as a store holds it: the private key in clear once loaded (absent when retired). */
export interface KeyRecord {
  meta: KeyMeta;
  privateKey?: Uint8Array;
  echConfigList?: Uint8Array;
}

export interface KeyStore {
  readonly kind: 'folder' | 'etcd';
  /** Where, for messages (a folder path, or etcd endpoints and prefix). */
  readonly where: string;
  /** Every key, private keys opened. */
  load(): Promise<KeyRecord[]>;
  /** Write a new key; a config_id already present is refused (ERR_KEYSTORE). */
  create(k: NewKey): Promise<void>;
  /** Replace the metadata of keys that exist, all or none. */
  update(metas: KeyMeta[]): Promise<void>;
  /** Delete a key's private key; its metadata stays as retired, so the config_id rests before reuse (manager.ts idFreeAt). */
  retire(configId: number, now?: Date): Promise<KeyMeta>;
}

export class FolderKeyStore implements KeyStore {
  readonly kind = 'folder';
  private readonly kd: KeyDir;
  constructor(readonly where: string) {
    this.kd = new KeyDir(where);
  }
  async load(): Promise<KeyRecord[]> {
    return this.kd.load().keys.map((k) => ({ meta: k.meta, privateKey: k.privateKey, echConfigList: k.echConfigList }));
  }
  async create(k: NewKey): Promise<void> {
    this.kd.withLock(() => {
      if (this.kd.load().keys.some((x) => x.meta.configId === k.meta.configId)) throw new EchgateError('ERR_KEYSTORE', `config_id ${k.meta.configId} is already in use or retired`);
      this.kd.writeKey(k.privateKey, k.echConfigList, k.meta);
    });
  }
  async update(metas: KeyMeta[]): Promise<void> {
    this.kd.withLock(() => {
      const have = new Set(this.kd.load().keys.map((k) => k.meta.configId));
      const missing = metas.find((m) => !have.has(m.configId));
      if (missing) throw new EchgateError('ERR_KEYSTORE', `no key with config_id ${missing.configId} in ${this.where}`);
      for (const m of metas) this.kd.writeMeta(m);
    });
  }
  async retire(configId: number, now = new Date()): Promise<KeyMeta> {
    return retireKey(this.where, configId, now);
  }
}

const same = (a: KeyMeta, b: KeyMeta) => JSON.stringify(a) === JSON.stringify(b);
const eq = (a: Uint8Array | undefined, b: Uint8Array | undefined) => a !== undefined && b !== undefined && Buffer.from(a).equals(b);

/**
 * Make the key folder hold exactly `records` (the fleet's keys from etcd),
 * under the folder lock: new or changed keys written (atomically, 0600),
 * retired ones lose their private key, keys etcd does not know are removed
 * (in a fleet the folder is a copy; nothing else writes it). Returns what changed.
 */
export function mirrorToFolder(dir: string, records: readonly KeyRecord[]): { written: number[]; retired: number[]; removed: number[] } {
  const kd = new KeyDir(dir);
  return kd.withLock(() => {
    const local = new Map(kd.load().keys.map((k) => [k.meta.configId, k]));
    const out = { written: [] as number[], retired: [] as number[], removed: [] as number[] };
    const wanted = new Set<number>();
    for (const r of records) {
      const id = r.meta.configId;
      wanted.add(id);
      const l = local.get(id);
      if (r.meta.state === 'retired') {
        if (l?.file) kd.deleteKeyFile(id, l.file);
        if (!l || !same(l.meta, r.meta)) kd.writeMeta(r.meta);
        if (l && l.meta.state !== 'retired') out.retired.push(id);
        continue;
      }
      if (!r.privateKey || !r.echConfigList) continue;
      if (!l || !eq(l.privateKey, r.privateKey) || !eq(l.echConfigList, r.echConfigList)) {
        kd.writeKey(r.privateKey, r.echConfigList, r.meta);
        out.written.push(id);
      } else if (!same(l.meta, r.meta)) {
        kd.writeMeta(r.meta);
        out.written.push(id);
      }
    }
    for (const [id, l] of local) {
      if (wanted.has(id)) continue;
      if (l.file) kd.deleteKeyFile(id, l.file);
      kd.deleteKeyFile(id, kd.metaPath(id));
      out.removed.push(id);
    }
    return out;
  });
}
