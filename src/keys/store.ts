/**
 * The key folder (default `keys/`): one RFC 9934 PEM file per key
 * (`ech-NNN.pem`, NNN = config_id) and its metadata beside it
 * (`ech-NNN.json`). Files are 0600 and replaced atomically (temp file, fsync,
 * rename, fsync of the folder). Changes happen under a folder lock. A file
 * that cannot be read is reported by name and skipped, never overwritten.
 *
 * Trust: a key decides what echgate publishes in DNS and which hellos it
 * decrypts, so the folder and every key file must be writable by nobody but
 * the user echgate runs as (or root). A folder that fails this is refused
 * whole (ERR_KEY_TRUST), never loaded in part.
 */
import { closeSync, fstatSync, fsyncSync, linkSync, openSync, readdirSync, readFileSync, renameSync, type Stats, statSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { EchgateError } from '../errors.js';
import { nodeProvider } from '../crypto/node.js';
import { isSupportedSuite } from '../crypto/hpke.js';
import { usableConfigs } from '../wire/ech/usable.js';
import { decodeECHConfigList, type ECHConfigContents } from '../wire/ech/config.js';
import { decodeEchPem, encodeEchPem } from './pem.js';

/**
 * States a metadata file can hold. `staged` exists only in a fleet (docs/fleet.md):
 * a new key every instance must hold before DNS names it; it decrypts, but is
 * neither published nor sent in retry_configs (another instance behind the same
 * address may not hold it yet).
 */
export type StoredState = 'active' | 'retry' | 'decrypt-only' | 'retired' | 'staged';
export const KEY_STATES: readonly StoredState[] = ['active', 'retry', 'decrypt-only', 'retired', 'staged'];
/**
 * `pending`: a PEM file without metadata (made by another tool, or dropped in
 * by hand). It decrypts, but is never published in DNS nor sent in
 * retry_configs until `echgate keys adopt` gives it metadata.
 */
export type KeyState = StoredState | 'pending';

export interface KeyMeta {
  configId: number;
  publicName: string;
  state: KeyState;
  /** ISO 8601 */
  created: string;
  /** ISO 8601: when a rotation made it active (absent: when created). The rotation schedule counts from it. */
  activated?: string;
  /** ISO 8601; a decrypt-only key is not used after this. */
  notAfter?: string;
}

export interface StoredKey {
  meta: KeyMeta;
  /** The PEM file (absent once retired). */
  file?: string;
  privateKey?: Uint8Array;
  config?: ECHConfigContents & { raw: Uint8Array };
  echConfigList?: Uint8Array;
}

export interface LoadResult {
  keys: StoredKey[];
  /** Files skipped (unreadable, malformed): named, the rest still loads. */
  problems: { file: string; message: string }[];
  /** Worth logging, nothing skipped (a pending key; `readable`: a private key file others can read, see readableProblem). */
  notices: { file: string; message: string; readable?: true }[];
}

/**
 * Why a key folder or key file must not be trusted, if it must not: owned by
 * someone other than the running user or root, or writable by group or
 * others (either could then choose the keys echgate publishes and uses).
 */
export function trustProblem(st: Stats, path: string, uid = process.getuid?.()): string | undefined {
  if (uid === undefined) return undefined; // no POSIX owners (Windows)
  if (st.uid !== uid && st.uid !== 0) return `${path} is owned by uid ${st.uid}, not by uid ${uid} that echgate runs as (or root)`;
  const w = st.mode & 0o022;
  if (w) {
    const who = w === 0o022 ? 'group and others' : w === 0o020 ? 'group' : 'others';
    return `${path} is writable by ${who} (mode ${(st.mode & 0o7777).toString(8).padStart(4, '0')}): chmod go-w ${path}`;
  }
  return undefined;
}

/**
 * Why a private key file readable by group or others is worth a warning, if
 * it is: anyone who can read it can decrypt every hello sent to that key,
 * recorded ones too. Warned, not refused (unlike writable, trustProblem):
 * Kubernetes mounts secret volumes 0644 unless defaultMode says otherwise,
 * and a proxy that stops serving there helps nobody.
 */
export function readableProblem(st: Stats, path: string): string | undefined {
  if (process.getuid === undefined) return undefined; // no POSIX modes (Windows)
  const r = st.mode & 0o044;
  if (!r) return undefined;
  const who = r === 0o044 ? 'group and others' : r === 0o040 ? 'group' : 'others';
  return `private key file ${path} is readable by ${who} (mode ${(st.mode & 0o7777).toString(8).padStart(4, '0')}): chmod 600 ${path} (a Kubernetes secret volume: defaultMode 0400)`;
}

function refuse(dir: string, why: string): EchgateError {
  return new EchgateError('ERR_KEY_TRUST', `refusing key folder ${dir}: ${why}`);
}

const pemName = (id: number) => `ech-${String(id).padStart(3, '0')}.pem`;
const metaName = (id: number) => `ech-${String(id).padStart(3, '0')}.json`;

/** Write `data` to `path` atomically with mode 0600. */
export function writeFileAtomic(path: string, data: string | Uint8Array): void {
  const tmp = `${path}.tmp-${process.pid}-${Date.now()}`;
  const fd = openSync(tmp, 'wx', 0o600);
  try {
    const buf = typeof data === 'string' ? Buffer.from(data) : data;
    let off = 0;
    while (off < buf.length) off += writeSync(fd, buf, off);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
  const dir = openSync(join(path, '..'), 'r');
  try {
    fsyncSync(dir);
  } finally {
    closeSync(dir);
  }
}

function parseMeta(text: string, file: string): KeyMeta {
  let m: Partial<KeyMeta>;
  try {
    m = JSON.parse(text);
  } catch (e) {
    throw new EchgateError('ERR_KEYSTORE', `${file}: not JSON: ${(e as Error).message}`);
  }
  if (typeof m.configId !== 'number' || !KEY_STATES.includes(m.state as StoredState) || typeof m.created !== 'string') {
    throw new EchgateError('ERR_KEYSTORE', `${file}: missing configId, state or created`);
  }
  return m as KeyMeta;
}

export class KeyDir {
  constructor(readonly dir: string) {}

  pemPath(id: number): string {
    return join(this.dir, pemName(id));
  }

  metaPath(id: number): string {
    return join(this.dir, metaName(id));
  }

  /**
   * Read a key file through one descriptor: the owner and mode checked are
   * those of the bytes read (no swap between a check and the read).
   */
  private readTrusted(file: string, onReadable?: (why: string) => void): string {
    let fd: number;
    try {
      fd = openSync(file, 'r');
    } catch (e) {
      // Gone between the listing and the read (a rename in progress): skipped like an unreadable file.
      throw new EchgateError('ERR_KEYSTORE', (e as Error).message);
    }
    try {
      const st = fstatSync(fd);
      if (!st.isFile()) throw new EchgateError('ERR_KEYSTORE', 'not a regular file');
      const why = trustProblem(st, file);
      if (why) throw refuse(this.dir, why);
      const readable = onReadable && readableProblem(st, file);
      if (readable) onReadable(readable);
      return readFileSync(fd, 'utf8');
    } finally {
      closeSync(fd);
    }
  }

  /**
   * Read every key. Problems are reported per file; good files still load.
   * A folder or file that fails the trust check (trustProblem) refuses the
   * whole folder: ERR_KEY_TRUST.
   */
  load(): LoadResult {
    const keys = new Map<number, StoredKey>();
    const problems: LoadResult['problems'] = [];
    const notices: LoadResult['notices'] = [];
    let names: string[];
    try {
      const why = trustProblem(statSync(this.dir), this.dir);
      if (why) throw refuse(this.dir, why);
      names = readdirSync(this.dir);
    } catch (e) {
      if ((e as EchgateError).code === 'ERR_KEY_TRUST') throw e;
      throw new EchgateError('ERR_KEYSTORE', `cannot read key folder ${this.dir}: ${(e as Error).message}`);
    }
    const untrusted = (e: unknown) => (e as EchgateError).code === 'ERR_KEY_TRUST';
    for (const n of names.filter((x) => x.endsWith('.json') && !x.includes('.tmp-')).sort()) {
      const file = join(this.dir, n);
      try {
        const meta = parseMeta(this.readTrusted(file), file);
        keys.set(meta.configId, { meta });
      } catch (e) {
        if (untrusted(e)) throw e;
        problems.push({ file, message: (e as Error).message });
      }
    }
    for (const n of names.filter((x) => x.endsWith('.pem') && !x.includes('.tmp-')).sort()) {
      const file = join(this.dir, n);
      try {
        const pem = decodeEchPem(this.readTrusted(file, (message) => notices.push({ file, message, readable: true })));
        const sk = nodeProvider.x25519Private(pem.privateKey);
        const config = usableConfigs(decodeECHConfigList(pem.echConfigList), isSupportedSuite).find((c) => Buffer.from(c.publicKey).equals(sk.publicKey));
        if (!config) throw new EchgateError('ERR_KEYSTORE', 'no usable ECHConfig in the file matches its private key');
        const known = keys.get(config.configId);
        if (known?.file) throw new EchgateError('ERR_KEYSTORE', `config_id ${config.configId} is also used by ${known.file}`);
        if (known?.meta.state === 'retired') throw new EchgateError('ERR_KEYSTORE', `config_id ${config.configId} is retired; its key is never used again (the id may come back only for a new key)`);
        // A file made elsewhere (e.g. `openssl ech`) has no metadata: it decrypts, but echgate does not
        // publish it or offer it in retry_configs until the operator says so (keys adopt).
        let meta = known?.meta;
        if (!meta) {
          meta = { configId: config.configId, publicName: config.publicName, state: 'pending', created: statSync(file).mtime.toISOString() };
          notices.push({ file, message: `no metadata file ${metaName(config.configId)}: loaded as pending (decrypts; not published, not in retry_configs); echgate keys adopt --config-id ${config.configId} makes it active` });
        }
        keys.set(config.configId, { meta, file, privateKey: pem.privateKey, config, echConfigList: pem.echConfigList });
      } catch (e) {
        if (untrusted(e)) throw e;
        problems.push({ file, message: (e as Error).message });
      }
    }
    for (const k of keys.values()) {
      if (!k.file && k.meta.state !== 'retired') {
        problems.push({ file: this.metaPath(k.meta.configId), message: 'metadata without its key file' });
        keys.delete(k.meta.configId);
      }
    }
    return { keys: [...keys.values()].sort((a, b) => a.meta.configId - b.meta.configId), problems, notices };
  }

  writeKey(privateKey: Uint8Array, echConfigList: Uint8Array, meta: KeyMeta): void {
    writeFileAtomic(this.pemPath(meta.configId), encodeEchPem({ privateKey, echConfigList }));
    this.writeMeta(meta);
  }

  writeMeta(meta: KeyMeta): void {
    writeFileAtomic(this.metaPath(meta.configId), `${JSON.stringify(meta, null, 2)}\n`);
  }

  /**
   * config_ids named by a file in the folder, loadable or not: a new key
   * never takes one, so a corrupt or unreadable file is never written over
   * (the operator decides what it was).
   */
  namedIds(): Set<number> {
    const ids = new Set<number>();
    for (const n of readdirSync(this.dir)) {
      const m = /^ech-(\d{3})\.(?:pem|json)$/.exec(n);
      if (m && Number(m[1]) <= 255) ids.add(Number(m[1]));
    }
    return ids;
  }

  /** Delete a key's metadata file (a retired id forgotten or reused). */
  deleteMetaFile(id: number): void {
    this.deleteKeyFile(id, this.metaPath(id));
  }

  /** Delete a key's PEM file: `file` as loaded (a file from another tool keeps its own name). */
  deleteKeyFile(id: number, file = this.pemPath(id)): void {
    try {
      unlinkSync(file);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
  }

  /**
   * Run `fn` holding the folder lock, waiting up to `waitMs` for another
   * writer to finish. The lock is a ticket: `.lock.N` names its holder (pid
   * and time, written before the file appears: link(2) of a finished temp
   * file), and `.lock.N.free` beside it marks it released; the highest N
   * decides. A writer takes ticket max+1 with link(2), which only one process
   * can create, when the highest is free or its holder is dead, then checks
   * that no higher ticket appeared (else it backs off) and removes the older
   * ones. Release adds the marker and keeps `.lock.N`, so no ticket number is
   * handed out twice: a writer acting on a stale listing fails its link(2),
   * or finds the higher ticket that replaced the one it saw. (Renaming
   * `.lock.N` to the marker let such a writer take N again while the next
   * writer held N+1: two holders, seen by test/key-lock.) No step deletes a
   * ticket that may be live, so a dead holder is taken over by one writer.
   */
  withLock<T>(fn: () => T, o: { waitMs?: number } = {}): T {
    const deadline = Date.now() + (o.waitMs ?? 10_000);
    for (let attempt = 0; ; attempt++) {
      const r = this.tryLock();
      if ('ticket' in r) {
        try {
          return fn();
        } finally {
          this.unlock(r.ticket);
        }
      }
      if (r.holder === process.pid) throw new EchgateError('ERR_LOCKED', `key folder ${this.dir} is already locked by this process`);
      if (Date.now() >= deadline) throw new EchgateError('ERR_LOCKED', `key folder ${this.dir} is locked by process ${r.holder ?? '?'}${r.since ? ` since ${r.since}` : ''}`);
      sleepSync(r.holder === undefined ? 1 : Math.min(100, 5 * 2 ** Math.min(attempt, 5)) + Math.floor(Math.random() * 10));
    }
  }

  /**
   * The folder lock as a reader sees it, without taking it (taking it writes
   * files, which a folder watch would see as a change): the highest ticket,
   * and whether a live process holds it. Every write to the folder happens
   * under the lock, so a load that starts and ends with the same free ticket
   * read no write half done (a rotation mid-way shows a key file beside
   * retired metadata, or a key file already deleted).
   */
  lockState(): { ticket: number; held: boolean } {
    let max = 0;
    let free = true;
    for (const t of this.tickets()) {
      if (t.n > max) [max, free] = [t.n, t.free];
      else if (t.n === max) free ||= t.free;
    }
    if (max === 0 || free) return { ticket: max, held: false };
    try {
      const pid = Number(readFileSync(join(this.dir, `.lock.${max}`), 'utf8').split('\n')[0]);
      return { ticket: max, held: Number.isInteger(pid) && pid > 0 && isAlive(pid) };
    } catch {
      // Released and replaced since the listing: a writer is at work.
      return { ticket: max, held: true };
    }
  }

  private tickets(): { n: number; free: boolean; name: string }[] {
    const out: { n: number; free: boolean; name: string }[] = [];
    for (const name of readdirSync(this.dir)) {
      const m = /^\.lock\.(\d+)(\.free)?$/.exec(name);
      if (m) out.push({ n: Number(m[1]), free: m[2] !== undefined, name });
    }
    return out;
  }

  private tryLock(): { ticket: number } | { holder?: number; since?: string } {
    let max = 0;
    let free = true;
    for (const t of this.tickets()) {
      if (t.n > max) [max, free] = [t.n, t.free];
      else if (t.n === max) free ||= t.free;
    }
    if (max > 0 && !free) {
      let text: string;
      try {
        text = readFileSync(join(this.dir, `.lock.${max}`), 'utf8');
      } catch {
        return {}; // released or replaced since the listing: look again
      }
      const [pidText, since] = text.split('\n');
      const pid = Number(pidText);
      if (Number.isInteger(pid) && pid > 0 && isAlive(pid)) return { holder: pid, since };
      // Its holder is dead: take the next ticket.
    }
    const n = max + 1;
    const tmp = join(this.dir, `.lock-tmp.${process.pid}.${n}`);
    writeSmallFile(tmp, `${process.pid}\n${new Date().toISOString()}\n`);
    try {
      linkSync(tmp, join(this.dir, `.lock.${n}`));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      return {}; // another writer took ticket n first
    } finally {
      unlinkSync(tmp);
    }
    const all = this.tickets();
    if (all.some((t) => t.n > n)) {
      // A stale listing: a later ticket exists, so this one never held the lock.
      rmQuiet(join(this.dir, `.lock.${n}`));
      return {};
    }
    for (const t of all) if (t.n < n) rmQuiet(join(this.dir, t.name));
    return { ticket: n };
  }

  private unlock(n: number): void {
    writeSmallFile(join(this.dir, `.lock.${n}.free`), '');
  }
}

function writeSmallFile(path: string, text: string): void {
  const fd = openSync(path, 'w', 0o600);
  try {
    writeSync(fd, text);
  } finally {
    closeSync(fd);
  }
}

function rmQuiet(path: string): void {
  try {
    unlinkSync(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
}

const sleeper = new Int32Array(new SharedArrayBuffer(4));
function sleepSync(ms: number): void {
  Atomics.wait(sleeper, 0, 0, ms);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
