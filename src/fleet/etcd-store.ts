/**
 * The fleet's keystore on etcd v3 (the `etcd3` client): one record per key
 * under `<prefix>keys/`, the private key sealed with the KEK (keys/sealed.ts),
 * so etcd never holds it in clear. Writes are transactions: a new key only
 * where none was (Version == 0) or over the retired record of a config_id
 * whose rest is over (its value as read), a metadata change only where the
 * key exists, and the leader's writes only while its election key exists
 * (fence), so a leader that lost its lease cannot write over its successor.
 * Retired records are deleted RETIRED_KEEP_MS after the retirement (forget).
 *
 * A wrong KEK is found before anything is written: loading opens every
 * sealed key, and create() refuses to add a key sealed with another KEK than
 * the ones already there (ERR_KEK).
 */
import { readFileSync } from 'node:fs';
import { Etcd3, type IOptions } from 'etcd3';
import type { EtcdStoreConfig } from '../config/store.js';
import { EchgateError } from '../errors.js';
import type { KeyRecord, KeyStore } from '../keys/keystore.js';
import { idFreeAt, type NewKey, RETIRED_KEEP_MS } from '../keys/manager.js';
import { kekId, openPrivateKey, parseKek, sealPrivateKey } from '../keys/sealed.js';
import type { KeyMeta } from '../keys/store.js';
import { K, type KeyRecordJson, parseJson } from './records.js';

/** The KEK named by ech.store.etcd.kek: a file or an environment variable. */
export function readKek(c: Pick<EtcdStoreConfig, 'kek'>, env: NodeJS.ProcessEnv = process.env): Uint8Array {
  if ('file' in c.kek) {
    let text: string;
    try {
      text = readFileSync(c.kek.file, 'utf8');
    } catch (e) {
      throw new EchgateError('ERR_KEK', `ech.store.etcd.kek.file ${c.kek.file}: ${(e as Error).message}`);
    }
    return parseKek(text, c.kek.file);
  }
  const v = env[c.kek.env];
  if (v === undefined || v === '') throw new EchgateError('ERR_KEK', `ech.store.etcd.kek.env: the environment variable ${c.kek.env} is not set`);
  return parseKek(v, `$${c.kek.env}`);
}

/** An etcd3 client for the configuration (TLS files and password file read now); `faultHandling`: e.g. the watches' backoff. */
export function openEtcd(c: EtcdStoreConfig, faultHandling?: IOptions['faultHandling']): Etcd3 {
  const o: IOptions = { hosts: c.endpoints, dialTimeout: 2_000, ...(faultHandling ? { faultHandling } : {}) };
  if (c.tls) {
    o.credentials = {
      rootCertificate: c.tls.ca ? readFileSync(c.tls.ca) : Buffer.alloc(0),
      ...(c.tls.key ? { privateKey: readFileSync(c.tls.key), certChain: readFileSync(c.tls.cert!) } : {}),
    };
  }
  if (c.auth) o.auth = { username: c.auth.username, password: c.auth.password ?? readFileSync(c.auth.passwordFile!, 'utf8').trim() };
  return new Etcd3(o);
}

/** A leader's fence: its election key (absolute), which exists only while it leads. */
export type Fence = string | undefined;

/** A retired record forget() deletes: retired RETIRED_KEEP_MS or longer ago (an unreadable date: kept). */
export function forgettable(m: KeyMeta, now: number): boolean {
  if (m.state !== 'retired') return false;
  const at = m.notAfter === undefined ? Number.NaN : Date.parse(m.notAfter);
  return Number.isFinite(at) && now - at >= RETIRED_KEEP_MS;
}

const b64 = (u: Uint8Array) => Buffer.from(u).toString('base64');

export class EtcdKeyStore implements KeyStore {
  readonly kind = 'etcd';
  readonly where: string;
  private readonly myKek: string;

  constructor(
    readonly client: Etcd3,
    readonly prefix: string,
    private readonly kek: Uint8Array,
    endpoints: readonly string[] = [],
  ) {
    this.where = `etcd ${endpoints.join(',')} ${prefix}`;
    this.myKek = kekId(kek);
  }

  /** Absolute etcd key of a name under the prefix. */
  abs(rel: string): string {
    return this.prefix + rel;
  }

  /** The records as stored (nothing opened): for status and for the KEK check. */
  async raw(): Promise<KeyRecordJson[]> {
    return (await this.rawText()).map((e) => e.rec);
  }

  /** The records with the text etcd holds for each: a transaction compares a record's value with what was read. */
  private async rawText(): Promise<{ rec: KeyRecordJson; text: string }[]> {
    const all = await this.client.getAll().prefix(this.abs(K.keys)).strings();
    const out: { rec: KeyRecordJson; text: string }[] = [];
    for (const [k, v] of Object.entries(all)) {
      const r = parseJson<KeyRecordJson>(v, k);
      if (!r || typeof r.meta?.configId !== 'number' || typeof r.meta.state !== 'string') throw new EchgateError('ERR_FLEET', `${k}: not a key record`);
      out.push({ rec: r, text: v });
    }
    return out.sort((a, b) => a.rec.meta.configId - b.rec.meta.configId);
  }

  async metas(): Promise<KeyMeta[]> {
    return (await this.raw()).map((r) => r.meta);
  }

  /** Every key with its private key opened; ERR_KEK on the first that does not open with this KEK. */
  async load(): Promise<KeyRecord[]> {
    return (await this.raw()).map((r) => {
      if (r.meta.state === 'retired' || !r.sealed || !r.echConfigList) return { meta: r.meta };
      const list = new Uint8Array(Buffer.from(r.echConfigList, 'base64'));
      return { meta: r.meta, echConfigList: list, privateKey: openPrivateKey(this.kek, r.meta.configId, list, r.sealed) };
    });
  }

  async create(k: NewKey, fence?: Fence, extra: { key: string; value: string }[] = [], now = Date.now()): Promise<void> {
    await this.createAll([k], fence, extra, now);
  }

  /**
   * Write keys in one transaction, either every key or none. Each goes where no record with its config_id
   * exists (Version == 0) or, for a key with its private key, over the retired record of an id whose rest is
   * over (idFreeAt <= now: the id comes back, as in a key folder): that record is compared by the value read
   * here, so a live key written there since (another leader's, an import) is never overwritten. A record
   * without a private key (retired metadata, from an import) is written as retired, only where none was.
   */
  async createAll(ks: readonly KeyRecord[], fence?: Fence, extra: { key: string; value: string }[] = [], now = Date.now()): Promise<void> {
    const held = await this.rawText();
    // Never mix KEKs: a key sealed with ours beside keys sealed with another would split the fleet.
    const other = held.find((e) => e.rec.sealed && e.rec.sealed.kek !== this.myKek)?.rec;
    if (other) throw new EchgateError('ERR_KEK', `config_id ${other.meta.configId} in etcd is sealed with key-encryption key ${other.sealed!.kek}, this instance has ${this.myKek}: wrong KEK, nothing written`);
    if (ks.length === 0) return;
    const byId = new Map(held.map((e) => [e.rec.meta.configId, e]));
    const puts = [];
    let t = fence ? this.client.if(fence, 'Create', '>', 0) : undefined;
    for (const k of ks) {
      const live = k.privateKey && k.echConfigList && k.meta.state !== 'retired';
      const rec: KeyRecordJson = live
        ? { meta: k.meta, echConfigList: b64(k.echConfigList!), sealed: sealPrivateKey(this.kek, k.meta.configId, k.echConfigList!, k.privateKey!) }
        : { meta: { ...k.meta, state: 'retired' } };
      const key = this.abs(K.key(k.meta.configId));
      const was = byId.get(k.meta.configId);
      const over = live && was?.rec.meta.state === 'retired' && idFreeAt(was.rec.meta) <= now;
      t = over ? (t ? t.and(key, 'Value', '==', was!.text) : this.client.if(key, 'Value', '==', was!.text)) : t ? t.and(key, 'Version', '==', 0) : this.client.if(key, 'Version', '==', 0);
      puts.push(this.client.put(key).value(JSON.stringify(rec)));
    }
    const r = await t!.then(...puts, ...extra.map((e) => this.client.put(this.abs(e.key)).value(e.value))).commit();
    if (!r.succeeded) throw new EchgateError('ERR_KEYSTORE', `config_id ${ks.map((k) => k.meta.configId).join(', ')}: already in etcd (or retired there less than an hour ago)${fence ? ', or this instance no longer leads' : ''}; nothing written`);
  }

  /**
   * Delete the retired records retired RETIRED_KEEP_MS or longer ago (as sweepKeys does in a key folder), so
   * etcd does not gain one record per rotation forever: a retired record holds no key, only the date that
   * keeps its id resting, and after a day the id is as free as one never used. One transaction, each record
   * compared with the value read (a key written there since stays), fenced. Returns the ids deleted.
   */
  async forget(now: number, fence?: Fence): Promise<number[]> {
    const old = (await this.rawText()).filter((e) => forgettable(e.rec.meta, now));
    if (old.length === 0) return [];
    let t = fence ? this.client.if(fence, 'Create', '>', 0) : undefined;
    for (const e of old) {
      const key = this.abs(K.key(e.rec.meta.configId));
      t = t ? t.and(key, 'Value', '==', e.text) : this.client.if(key, 'Value', '==', e.text);
    }
    const r = await t!.then(...old.map((e) => this.client.delete().key(this.abs(K.key(e.rec.meta.configId))))).commit();
    if (!r.succeeded) throw new EchgateError('ERR_KEYSTORE', `etcd refused to delete retired config_ids ${old.map((e) => e.rec.meta.configId).join(', ')}${fence ? ' (this instance no longer leads, or a record changed)' : ' (a record changed)'}`);
    return old.map((e) => e.rec.meta.configId);
  }

  /** Replace metadata (and write `extra` puts) in one transaction: all or nothing. */
  async update(metas: KeyMeta[], fence?: Fence, extra: { key: string; value: string }[] = []): Promise<void> {
    const raw = new Map((await this.raw()).map((r) => [r.meta.configId, r]));
    const puts = [];
    const cmps: [string, number][] = [];
    for (const m of metas) {
      const r = raw.get(m.configId);
      if (!r) throw new EchgateError('ERR_KEYSTORE', `no key with config_id ${m.configId} in ${this.where}`);
      const next: KeyRecordJson = m.state === 'retired' ? { meta: m } : { ...r, meta: m };
      puts.push(this.client.put(this.abs(K.key(m.configId))).value(JSON.stringify(next)));
      cmps.push([this.abs(K.key(m.configId)), 0]);
    }
    for (const e of extra) puts.push(this.client.put(this.abs(e.key)).value(e.value));
    let t = fence ? this.client.if(fence, 'Create', '>', 0) : undefined;
    for (const [key] of cmps) t = t ? t.and(key, 'Version', '>', 0) : this.client.if(key, 'Version', '>', 0);
    if (!t) {
      if (puts.length) await Promise.all(puts.map((p) => p.exec()));
      return;
    }
    const r = await t.then(...puts).commit();
    if (!r.succeeded) throw new EchgateError('ERR_KEYSTORE', `etcd refused the update${fence ? ' (this instance no longer leads, or a key vanished)' : ' (a key vanished)'}`);
  }

  async retire(configId: number, now = new Date(), fence?: Fence): Promise<KeyMeta> {
    const r = (await this.raw()).find((x) => x.meta.configId === configId);
    if (!r) throw new EchgateError('ERR_KEYSTORE', `no key with config_id ${configId} in ${this.where}`);
    if (r.meta.state === 'retired') return r.meta;
    const meta: KeyMeta = { ...r.meta, state: 'retired', notAfter: now.toISOString() };
    await this.update([meta], fence);
    return meta;
  }
}
