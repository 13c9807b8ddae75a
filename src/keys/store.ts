/**
 * The key folder (default `keys/`): one RFC 9934 PEM file per key
 * (`ech-NNN.pem`, NNN = config_id) and its metadata beside it
 * (`ech-NNN.json`). Files are 0600 and replaced atomically (temp file, fsync,
 * rename, fsync of the folder). Changes happen under a folder lock. A file
 * that cannot be read is reported by name and skipped, never overwritten.
 */
import { closeSync, fsyncSync, openSync, readdirSync, readFileSync, renameSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { EchgateError } from '../errors.js';
import { nodeProvider } from '../crypto/node.js';
import { isSupportedSuite } from '../crypto/hpke.js';
import { usableConfigs } from '../wire/ech/usable.js';
import { decodeECHConfigList, type ECHConfigContents } from '../wire/ech/config.js';
import { decodeEchPem, encodeEchPem } from './pem.js';

export type KeyState = 'active' | 'retry' | 'decrypt-only' | 'retired';
export const KEY_STATES: readonly KeyState[] = ['active', 'retry', 'decrypt-only', 'retired'];

export interface KeyMeta {
  configId: number;
  publicName: string;
  state: KeyState;
  /** ISO 8601 */
  created: string;
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
  problems: { file: string; message: string }[];
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
  if (typeof m.configId !== 'number' || !KEY_STATES.includes(m.state as KeyState) || typeof m.created !== 'string') {
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

  /** Read every key. Problems are reported per file; good files still load. */
  load(): LoadResult {
    const keys = new Map<number, StoredKey>();
    const problems: LoadResult['problems'] = [];
    let names: string[];
    try {
      names = readdirSync(this.dir);
    } catch (e) {
      throw new EchgateError('ERR_KEYSTORE', `cannot read key folder ${this.dir}: ${(e as Error).message}`);
    }
    for (const n of names.filter((x) => x.endsWith('.json') && !x.includes('.tmp-')).sort()) {
      const file = join(this.dir, n);
      try {
        const meta = parseMeta(readFileSync(file, 'utf8'), file);
        keys.set(meta.configId, { meta });
      } catch (e) {
        problems.push({ file, message: (e as Error).message });
      }
    }
    for (const n of names.filter((x) => x.endsWith('.pem') && !x.includes('.tmp-')).sort()) {
      const file = join(this.dir, n);
      try {
        const pem = decodeEchPem(readFileSync(file, 'utf8'));
        const sk = nodeProvider.x25519Private(pem.privateKey);
        const config = usableConfigs(decodeECHConfigList(pem.echConfigList), isSupportedSuite).find((c) => Buffer.from(c.publicKey).equals(sk.publicKey));
        if (!config) throw new EchgateError('ERR_KEYSTORE', 'no usable ECHConfig in the file matches its private key');
        const known = keys.get(config.configId);
        if (known?.file) throw new EchgateError('ERR_KEYSTORE', `config_id ${config.configId} is also used by ${known.file}`);
        if (known?.meta.state === 'retired') throw new EchgateError('ERR_KEYSTORE', `config_id ${config.configId} is retired; its key is never used again`);
        // A file made elsewhere (e.g. `openssl ech`) has no metadata: treat it as active.
        const meta: KeyMeta = known?.meta ?? {
          configId: config.configId,
          publicName: config.publicName,
          state: 'active',
          created: statSync(file).mtime.toISOString(),
        };
        keys.set(config.configId, { meta, file, privateKey: pem.privateKey, config, echConfigList: pem.echConfigList });
      } catch (e) {
        problems.push({ file, message: (e as Error).message });
      }
    }
    for (const k of keys.values()) {
      if (!k.file && k.meta.state !== 'retired') {
        problems.push({ file: this.metaPath(k.meta.configId), message: 'metadata without its key file' });
        keys.delete(k.meta.configId);
      }
    }
    return { keys: [...keys.values()].sort((a, b) => a.meta.configId - b.meta.configId), problems };
  }

  writeKey(privateKey: Uint8Array, echConfigList: Uint8Array, meta: KeyMeta): void {
    writeFileAtomic(this.pemPath(meta.configId), encodeEchPem({ privateKey, echConfigList }));
    this.writeMeta(meta);
  }

  writeMeta(meta: KeyMeta): void {
    writeFileAtomic(this.metaPath(meta.configId), `${JSON.stringify(meta, null, 2)}\n`);
  }

  deleteKeyFile(id: number): void {
    try {
      unlinkSync(this.pemPath(id));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
  }

  /** Run `fn` holding the folder lock (`.lock`, O_EXCL). A lock left by a dead process is taken over. */
  withLock<T>(fn: () => T): T {
    const lock = join(this.dir, '.lock');
    let fd: number;
    try {
      fd = openSync(lock, 'wx', 0o600);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      const pid = Number(readFileSync(lock, 'utf8').trim());
      if (Number.isInteger(pid) && pid > 0 && isAlive(pid)) {
        throw new EchgateError('ERR_LOCKED', `key folder ${this.dir} is locked by process ${pid}`);
      }
      unlinkSync(lock);
      fd = openSync(lock, 'wx', 0o600);
    }
    try {
      writeSync(fd, `${process.pid}\n`);
      return fn();
    } finally {
      closeSync(fd);
      unlinkSync(lock);
    }
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
