/**
 * ESNI keys (draft-ietf-tls-esni-02, experimental; docs/esni.md) in the ECH
 * key folder, under the same rules: one file per key, mode 0600, written
 * atomically under the folder lock, trust-checked when read (owner and mode,
 * through the descriptor that is read), a bad file reported and skipped.
 *
 *   esni-<checksum hex>.esni   a PKCS#8 X25519 "PRIVATE KEY" block, then an
 *                              "ESNIKEYS" block (the base64 ESNIKeys record)
 *
 * The `.esni` extension keeps these files out of the ECH loader (`.pem`,
 * `.json`). An ESNI key carries its own validity (not_before/not_after in the
 * record), so it has no metadata file: it is published while valid and
 * decrypts until ESNI_RETAIN_S after not_after (§4: servers "MAY need to
 * retain the decryption key for some time after not_after").
 *
 * Rotation (`keys rotate --esni`) adds a new key and retires the others: a
 * retired key is no longer published in `_esni` TXT and decrypts until its
 * `Decrypt-Until` (the grace for resolvers' cached copies, never past
 * not_after + ESNI_RETAIN_S). The two dates are explanatory lines before the
 * PEM blocks (RFC 7468 §2 lets text stand outside them), so the state stays in
 * the one file, written atomically like the key.
 */
import { closeSync, existsSync, fstatSync, openSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { toHex } from '../bytes/util.js';
import { nodeProvider } from '../crypto/node.js';
import { ESNI_DEFAULT_PADDED_LENGTH, makeESNIKeys, verifyESNIKeys } from '../ech/esni.js';
import { EchgateError } from '../errors.js';
import type { ESNIKeys } from '../wire/tls/esni.js';
import { decodePemBlocks, pkcs8FromX25519, x25519FromPkcs8 } from './pem.js';
import { KeyDir, readableProblem, trustProblem, writeFileAtomic } from './store.js';

/** How long after not_after a key still decrypts: clients' clocks and caches lag (§4). */
export const ESNI_RETAIN_S = 3600;
/** How early before not_before a key already decrypts: clock skew the other way. */
export const ESNI_SKEW_S = 300;

/** A retired key (seconds since 1970): when it was retired, and until when it still decrypts. */
export interface EsniRetired {
  at: number;
  decryptUntil: number;
}

export interface StoredEsniKey {
  /** The record's checksum in hex: the file name and the id `keys list` shows. */
  id: string;
  file: string;
  privateKey: Uint8Array;
  raw: Uint8Array;
  record: ESNIKeys;
  retired?: EsniRetired;
}

export interface EsniLoad {
  keys: StoredEsniKey[];
  problems: { file: string; message: string }[];
  /** Private key files readable by group or others (readableProblem): warned, still loaded. */
  notices: { file: string; message: string; readable: true }[];
}

const PEM_LABEL = 'ESNIKEYS';

function pemBlock(label: string, der: Uint8Array): string {
  const lines = Buffer.from(der).toString('base64').match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

const iso = (s: number) => new Date(s * 1000).toISOString();

export function encodeEsniFile(privateKey: Uint8Array, raw: Uint8Array, retired?: EsniRetired): string {
  const head = retired ? `Retired: ${iso(retired.at)}\nDecrypt-Until: ${iso(retired.decryptUntil)}\n` : '';
  return head + pemBlock('PRIVATE KEY', pkcs8FromX25519(privateKey)) + pemBlock(PEM_LABEL, raw);
}

export function decodeEsniFile(text: string): { privateKey: Uint8Array; raw: Uint8Array; retired?: EsniRetired } {
  const blocks = decodePemBlocks(text);
  const pk = blocks.filter((b) => b.label === 'PRIVATE KEY');
  const ek = blocks.filter((b) => b.label === PEM_LABEL);
  if (pk.length !== 1 || ek.length !== 1) throw new EchgateError('ERR_KEYSTORE', `expected one PRIVATE KEY and one ${PEM_LABEL} block, found ${pk.length} and ${ek.length}`);
  // The state lines come before the first block; both or neither.
  const head = text.slice(0, text.indexOf('-----BEGIN'));
  const date = (name: string) => {
    const m = new RegExp(`^${name}: (\\S+)$`, 'm').exec(head);
    if (!m) return undefined;
    const t = Date.parse(m[1]!);
    if (!Number.isFinite(t)) throw new EchgateError('ERR_KEYSTORE', `${name}: not a date: ${m[1]}`);
    return Math.floor(t / 1000);
  };
  const at = date('Retired');
  const until = date('Decrypt-Until');
  if ((at === undefined) !== (until === undefined)) throw new EchgateError('ERR_KEYSTORE', 'a retired ESNI key needs both Retired: and Decrypt-Until:');
  return { privateKey: x25519FromPkcs8(pk[0]!.der), raw: ek[0]!.der, ...(at !== undefined ? { retired: { at, decryptUntil: until! } } : {}) };
}

/** Read a key file through one descriptor; an untrusted file refuses the whole folder (ERR_KEY_TRUST), as for ECH keys. */
function readTrusted(dir: string, file: string, onReadable: (why: string) => void): string {
  const fd = openSync(file, 'r');
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new EchgateError('ERR_KEYSTORE', 'not a regular file');
    const why = trustProblem(st, file);
    if (why) throw new EchgateError('ERR_KEY_TRUST', `refusing key folder ${dir}: ${why}`);
    const readable = readableProblem(st, file);
    if (readable) onReadable(readable);
    return readFileSync(fd, 'utf8');
  } finally {
    closeSync(fd);
  }
}

/** Every ESNI key in the folder. The folder itself must pass the trust check (KeyDir.load makes it too). */
export function loadEsniKeys(dir: string): EsniLoad {
  const why = trustProblem(statSync(dir), dir);
  if (why) throw new EchgateError('ERR_KEY_TRUST', `refusing key folder ${dir}: ${why}`);
  const keys: StoredEsniKey[] = [];
  const problems: EsniLoad['problems'] = [];
  const notices: EsniLoad['notices'] = [];
  for (const n of readdirSync(dir).filter((x) => x.endsWith('.esni') && !x.includes('.tmp-')).sort()) {
    const file = join(dir, n);
    try {
      const f = decodeEsniFile(readTrusted(dir, file, (message) => notices.push({ file, message, readable: true })));
      const record = verifyESNIKeys(nodeProvider, f.raw);
      const pub = nodeProvider.x25519Private(f.privateKey).publicKey;
      if (!record.keys.some((k) => k.group === 0x001d && Buffer.from(k.keyExchange).equals(pub))) {
        throw new EchgateError('ERR_KEYSTORE', 'the ESNIKEYS record does not carry this private key\'s public key');
      }
      keys.push({ id: toHex(record.checksum), file, privateKey: f.privateKey, raw: f.raw, record, ...(f.retired ? { retired: f.retired } : {}) });
    } catch (e) {
      if ((e as EchgateError).code === 'ERR_KEY_TRUST') throw e;
      problems.push({ file, message: (e as Error).message });
    }
  }
  return { keys, problems, notices };
}

/** Keys a server decrypts with at `now` (seconds): within the record's window, and a retired key until its Decrypt-Until. */
export function decryptingEsni<T extends { record: ESNIKeys; retired?: EsniRetired }>(keys: readonly T[], now: number): T[] {
  return keys.filter((k) => now >= k.record.notBefore - ESNI_SKEW_S && now <= k.record.notAfter + ESNI_RETAIN_S && (!k.retired || now <= k.retired.decryptUntil));
}

/** What `keys list` says of an ESNI key at `now`. */
export function esniState(k: { record: ESNIKeys; retired?: EsniRetired }, now: number): 'not-yet-valid' | 'active' | 'decrypt-only' | 'expired' {
  if (decryptingEsni([k], now).length === 0) return now < k.record.notBefore ? 'not-yet-valid' : 'expired';
  if (k.retired || now >= k.record.notAfter) return 'decrypt-only';
  return now < k.record.notBefore ? 'not-yet-valid' : 'active';
}

/**
 * The records to publish at `now`: those valid now, newest not_after first,
 * and the TTL the `_esni` RRset may have: §4 wants caches to drop a record
 * before its not_after, so never more than `maxTtl` nor than the seconds left
 * to the earliest not_after among them.
 */
export function publishedEsni(keys: readonly { record: ESNIKeys; raw: Uint8Array; retired?: EsniRetired }[], now: number, maxTtl: number): { records: Uint8Array[]; ttl: number } | undefined {
  // A retired key is never published again (keys rotate --esni): only decrypts through its grace.
  const live = keys.filter((k) => !k.retired && now >= k.record.notBefore && now < k.record.notAfter).sort((a, b) => b.record.notAfter - a.record.notAfter);
  if (live.length === 0) return undefined;
  const left = Math.min(...live.map((k) => k.record.notAfter - now));
  return { records: live.map((k) => k.raw), ttl: Math.max(0, Math.min(maxTtl, left)) };
}

export interface EsniGenerateOptions {
  /** Seconds from not_before to not_after. */
  lifetimeS: number;
  paddedLength?: number;
  now?: Date;
}

/** Make an X25519 ESNI key with a TLS_AES_128_GCM_SHA256 record, written under the folder lock. */
export function generateEsniKey(dir: string, o: EsniGenerateOptions): Omit<StoredEsniKey, 'privateKey'> {
  const padded = o.paddedLength ?? ESNI_DEFAULT_PADDED_LENGTH;
  if (!Number.isInteger(padded) || padded < 16 || padded > 0xffff) throw new EchgateError('ERR_USAGE', '--padded-length is 16..65535');
  if (!(o.lifetimeS > 0)) throw new EchgateError('ERR_USAGE', 'the ESNI key lifetime must be positive');
  const kd = new KeyDir(dir);
  return kd.withLock(() => generateEsniKeyLocked(dir, kd, o));
}

function generateEsniKeyLocked(dir: string, kd: KeyDir, o: EsniGenerateOptions): Omit<StoredEsniKey, 'privateKey'> {
  const padded = o.paddedLength ?? ESNI_DEFAULT_PADDED_LENGTH;
  if (!Number.isInteger(padded) || padded < 16 || padded > 0xffff) throw new EchgateError('ERR_USAGE', '--padded-length is 16..65535');
  if (!(o.lifetimeS > 0)) throw new EchgateError('ERR_USAGE', 'the ESNI key lifetime must be positive');
  kd.load(); // the folder trust check, as for every change
  const sk = nodeProvider.randomBytes(32);
  const notBefore = Math.floor((o.now ?? new Date()).getTime() / 1000);
  const raw = makeESNIKeys(nodeProvider, nodeProvider.x25519Private(sk).publicKey, { notBefore, notAfter: notBefore + Math.floor(o.lifetimeS), paddedLength: padded });
  const record = verifyESNIKeys(nodeProvider, raw);
  const id = toHex(record.checksum);
  const file = join(dir, `esni-${id}.esni`);
  if (existsSync(file)) throw new EchgateError('ERR_KEYSTORE', `${file} exists (a checksum collision): run the command again`);
  writeFileAtomic(file, encodeEsniFile(sk, raw));
  sk.fill(0);
  return { id, file, raw, record };
}

export interface EsniRotation {
  created: Omit<StoredEsniKey, 'privateKey'>;
  /** The keys retired by this rotation (published until now). */
  retired: { id: string; file: string; decryptUntil: number }[];
}

/**
 * `keys rotate --esni`: under the folder lock, a new key (lifetime and
 * padded_length of the newest key unless given) and every other published or
 * still-valid key retired: out of `_esni` TXT, decrypting for `graceS` more
 * (never past its not_after + ESNI_RETAIN_S).
 */
export function rotateEsniKeys(dir: string, o: { graceS: number; lifetimeS?: number; paddedLength?: number; now?: Date }): EsniRotation {
  if (!(o.graceS >= 0)) throw new EchgateError('ERR_USAGE', 'the grace must not be negative');
  const kd = new KeyDir(dir);
  return kd.withLock(() => {
    const now = Math.floor((o.now ?? new Date()).getTime() / 1000);
    const { keys } = loadEsniKeys(dir);
    const newest = [...keys].sort((a, b) => b.record.notAfter - a.record.notAfter)[0];
    const lifetimeS = o.lifetimeS ?? (newest ? newest.record.notAfter - newest.record.notBefore : 24 * 3600);
    const retire = keys.filter((k) => !k.retired && now <= k.record.notAfter + ESNI_RETAIN_S);
    // The new key is written first: a failure between the two steps leaves an extra key, never none.
    const created = generateEsniKeyLocked(dir, kd, { lifetimeS, paddedLength: o.paddedLength ?? newest?.record.paddedLength, now: o.now });
    const retired = retire.map((k) => {
      const decryptUntil = Math.min(now + Math.floor(o.graceS), k.record.notAfter + ESNI_RETAIN_S);
      writeFileAtomic(k.file, encodeEsniFile(k.privateKey, k.raw, { at: now, decryptUntil }));
      k.privateKey.fill(0);
      return { id: k.id, file: k.file, decryptUntil };
    });
    return { created, retired };
  });
}

/**
 * Undo a rotation whose publication failed: the retired keys published again;
 * the new key kept, retired, decrypting through the grace (the UPDATE may have
 * reached some resolvers before the read-back failed).
 */
export function undoEsniRotation(dir: string, r: EsniRotation, graceS: number, now = new Date()): void {
  const kd = new KeyDir(dir);
  kd.withLock(() => {
    const t = Math.floor(now.getTime() / 1000);
    for (const k of loadEsniKeys(dir).keys) {
      if (r.retired.some((x) => x.id === k.id)) writeFileAtomic(k.file, encodeEsniFile(k.privateKey, k.raw));
      else if (k.id === r.created.id) writeFileAtomic(k.file, encodeEsniFile(k.privateKey, k.raw, { at: t, decryptUntil: Math.min(t + Math.floor(graceS), k.record.notAfter + ESNI_RETAIN_S) }));
      k.privateKey.fill(0);
    }
  });
}

/** Once DNS carries the new records: the retired keys' grace counts from now (resolvers may hold the old TXT for its TTL). */
export function restartEsniGrace(dir: string, r: EsniRotation, graceS: number, now = new Date()): EsniRotation['retired'] {
  const kd = new KeyDir(dir);
  return kd.withLock(() => {
    const t = Math.floor(now.getTime() / 1000);
    const out: EsniRotation['retired'] = [];
    for (const k of loadEsniKeys(dir).keys) {
      const was = r.retired.find((x) => x.id === k.id);
      if (was && k.retired) {
        const decryptUntil = Math.min(t + Math.floor(graceS), k.record.notAfter + ESNI_RETAIN_S);
        writeFileAtomic(k.file, encodeEsniFile(k.privateKey, k.raw, { at: k.retired.at, decryptUntil }));
        out.push({ id: k.id, file: k.file, decryptUntil });
      }
      k.privateKey.fill(0);
    }
    return out;
  });
}

/**
 * `keys rotate --esni` does this first: key files past their whole decrypt
 * window (expired: after not_after + ESNI_RETAIN_S, or a retired key after
 * its Decrypt-Until) are deleted, the private key with them. Nothing reads
 * them again, and a key that stays on disk is one a later compromise of the
 * host could decrypt recorded hellos with (forward secrecy); they would also
 * pile up, one per rotation. Returns the files deleted.
 */
export function sweepEsniKeys(dir: string, now = new Date()): string[] {
  const kd = new KeyDir(dir);
  return kd.withLock(() => {
    kd.load(); // the folder trust check, as for every change
    const t = Math.floor(now.getTime() / 1000);
    const out: string[] = [];
    for (const k of loadEsniKeys(dir).keys) {
      if (esniState(k, t) === 'expired') {
        rmSync(k.file);
        out.push(k.file);
      }
      k.privateKey.fill(0);
    }
    return out;
  });
}

/** `keys retire --esni ID`: delete the key file (the private key with it), as `keys retire` does for ECH. */
export function retireEsniKey(dir: string, id: string): string {
  const kd = new KeyDir(dir);
  return kd.withLock(() => {
    const k = loadEsniKeys(dir).keys.find((x) => x.id === id.toLowerCase());
    if (!k) throw new EchgateError('ERR_KEYSTORE', `no ESNI key ${id} in ${dir}`);
    rmSync(k.file);
    return k.file;
  });
}
