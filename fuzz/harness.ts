/**
 * Deterministic TLS 1.3 and ECH set-ups for the engine targets. With fixed
 * randomness, fixed X25519 keys and an Ed25519 certificate (deterministic
 * signatures), every handshake is byte-for-byte the same, so a recorded
 * flight stays valid across runs: the fuzzer can mutate the plaintext of the
 * handshake messages and have the harness encrypt them under the real traffic
 * keys, reaching the message handlers behind the record AEAD.
 *
 * The harness reads a few private fields of the engines (the traffic secrets)
 * through casts. That is test scaffolding only: it lets the fuzzer speak for
 * the peer without a second engine in the loop.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { types } from 'node:util';
import { concat } from '../src/bytes/util.js';
import { isSupportedSuite } from '../src/crypto/hpke.js';
import { nodeProvider } from '../src/crypto/node.js';
import type { CryptoProvider, X25519Private } from '../src/crypto/provider.js';
import { prepareServerKey } from '../src/ech/server.js';
import { type CipherSuite, type TrafficKeys, trafficKeys } from '../src/tls13/key-schedule.js';
import { RecordCipher } from '../src/tls13/record-protection.js';
import { loadCertificate } from '../src/tls13/certs.js';
import { decodeECHConfigList, encodeECHConfig, encodeECHConfigList } from '../src/wire/ech/config.js';
import { usableConfigs } from '../src/wire/ech/usable.js';
import { ContentType, MAX_PLAINTEXT } from '../src/wire/tls/constants.js';

/** nodeProvider with fixed randomness: the same bytes and the same X25519 key every time. */
export function deterministicProvider(seed = 7): CryptoProvider {
  const sk = new Uint8Array(32).fill(seed);
  return {
    ...nodeProvider,
    name: 'node-deterministic',
    randomBytes: (n: number) => new Uint8Array(n).fill(seed),
    x25519Generate: () => nodeProvider.x25519Private(sk),
  };
}

let certDir: string | undefined;

/** A throwaway Ed25519 certificate for `host` (openssl CLI), loaded for the engine. */
export function ed25519Certificate(host: string) {
  certDir ??= mkdtempSync(join(tmpdir(), 'echgate-fuzz-'));
  const key = join(certDir, `${host}.key`);
  const crt = join(certDir, `${host}.crt`);
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ed25519', '-nodes', '-days', '2', '-subj', `/CN=${host}`, '-addext', `subjectAltName=DNS:${host}`, '-keyout', key, '-out', crt], { stdio: 'ignore' });
  return loadCertificate(readFileSync(crt, 'utf8'), readFileSync(key, 'utf8'));
}

/** A fixed ECH key (X25519, HKDF-SHA256, AES-128-GCM) for public.example.test and a lookup for it. */
export function fixedEchKey(configId: number, skBytes: Uint8Array) {
  const sk = nodeProvider.x25519Private(skBytes);
  const raw = encodeECHConfigList([encodeECHConfig({ configId, kemId: 0x20, publicKey: sk.publicKey, cipherSuites: [{ kdfId: 1, aeadId: 1 }, { kdfId: 1, aeadId: 3 }], maximumNameLength: 0, publicName: 'public.example.test', extensions: [] })]);
  const config = usableConfigs(decodeECHConfigList(raw), isSupportedSuite)[0]!;
  const key = prepareServerKey(nodeProvider, config, sk);
  return { config, key, lookup: { byConfigId: (id: number) => (id === configId ? [key] : []), all: () => [key] } };
}

const sealKeys = new WeakMap<Uint8Array, TrafficKeys>();

/** Protect `plain` as records of content `type` under `secret` (fresh sequence numbers). */
export function sealRecords(p: CryptoProvider, suite: CipherSuite, secret: Uint8Array, type: number, plain: Uint8Array, fragment = MAX_PLAINTEXT): Uint8Array {
  // The fixtures' secrets are fixed: derive their key and IV once (a RecordCipher only reads them).
  let keys = sealKeys.get(secret);
  if (!keys) {
    keys = trafficKeys(p, suite, secret);
    sealKeys.set(secret, keys);
  }
  const c = new RecordCipher(suite, keys);
  const out: Uint8Array[] = [];
  for (let i = 0; i < plain.length || i === 0; i += fragment) out.push(c.seal(type, plain.subarray(i, i + fragment)));
  return concat(...out);
}

/** Open every record in `records` under `secret`; the concatenated handshake plaintext. */
export function openRecords(p: CryptoProvider, suite: CipherSuite, secret: Uint8Array, records: Uint8Array): Uint8Array {
  const c = new RecordCipher(suite, trafficKeys(p, suite, secret));
  const out: Uint8Array[] = [];
  for (let o = 0; o + 5 <= records.length; ) {
    const len = (records[o + 3]! << 8) | records[o + 4]!;
    const header = records.subarray(o, o + 5);
    if (records[o] === ContentType.application_data) out.push(c.open(header, records.subarray(o + 5, o + 5 + len)).content);
    o += 5 + len;
  }
  return concat(...out);
}

const isKeyObject = (v: object) => types.isKeyObject(v);

/** Read a private field of an engine (harness only). */
export const peek = <T>(o: object, field: string): T => (o as Record<string, unknown>)[field] as T;

/**
 * `base` with its X25519 operations memoized: importing a private key and a
 * DH with the same inputs give the same result, and the fixtures repeat them
 * on every input (a fixed ephemeral key, a fixed ECH key, an `enc` the
 * mutation left alone). A DH that throws (an all-zero result) is not cached,
 * so it throws again. The caches are bounded; the code under test runs the
 * same path either way, only the native key import and DH are skipped.
 */
export function memoProvider(base: CryptoProvider, max = 4096): CryptoProvider {
  const hex = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
  const privs = new Map<string, X25519Private>();
  const dh = new Map<X25519Private, Map<string, Uint8Array>>();
  const x25519Private = (sk: Uint8Array): X25519Private => {
    const k = hex(sk);
    let v = privs.get(k);
    if (!v) {
      v = base.x25519Private(sk);
      if (privs.size >= max) privs.clear();
      privs.set(k, v);
    }
    return v;
  };
  return {
    ...base,
    name: `${base.name}-memo`,
    x25519Private,
    x25519Generate: () => x25519Private(base.randomBytes(32)),
    x25519(sk, pk) {
      let m = dh.get(sk);
      if (!m) {
        m = new Map();
        if (dh.size >= max) dh.clear();
        dh.set(sk, m);
      }
      const k = hex(pk);
      let v = m.get(k);
      if (!v) {
        v = base.x25519(sk, pk);
        if (m.size >= max) m.clear();
        m.set(k, v);
      }
      // A fresh copy: callers may wipe a shared secret after use.
      return v.slice();
    },
  };
}

/**
 * A deep copy of an engine (or any object graph) in a recorded state, so a
 * fixture can run the fixed, expensive part of a handshake once and hand
 * every input its own engine at that point: own properties are copied with
 * their prototypes (class instances stay instances), byte arrays are copied
 * (the engines wipe keys in place), and what is in `share` — the options, the
 * provider, node KeyObjects, functions — is shared, not copied.
 */
export function cloneDeep<T>(v: T, share: ReadonlySet<unknown> = new Set(), seen = new Map<unknown, unknown>()): T {
  if (v === null || typeof v !== 'object' || share.has(v)) return v;
  if (seen.has(v)) return seen.get(v) as T;
  if (isKeyObject(v)) return v;
  if (ArrayBuffer.isView(v)) {
    const c = Buffer.isBuffer(v) ? Buffer.from(v) : (v as unknown as Uint8Array).slice();
    seen.set(v, c);
    return c as T;
  }
  if (v instanceof Map) {
    const m = new Map();
    seen.set(v, m);
    for (const [k, x] of v) m.set(cloneDeep(k, share, seen), cloneDeep(x, share, seen));
    return m as T;
  }
  if (v instanceof Set) {
    const s = new Set();
    seen.set(v, s);
    for (const x of v) s.add(cloneDeep(x, share, seen));
    return s as T;
  }
  if (Array.isArray(v)) {
    const a: unknown[] = new Array(v.length);
    seen.set(v, a);
    for (let i = 0; i < v.length; i++) a[i] = cloneDeep(v[i], share, seen);
    return a as T;
  }
  // The engines' fields are plain enumerable data properties (no accessors, no #private fields).
  const o = Object.create(Object.getPrototypeOf(v)) as Record<string, unknown>;
  seen.set(v, o);
  for (const k of Object.keys(v)) o[k] = cloneDeep((v as Record<string, unknown>)[k], share, seen);
  return o as T;
}

/** Snapshots may be switched off (tests compare both ways): then `fresh` rebuilds the state every time. */
let snapshotsOn = true;
export const setSnapshots = (on: boolean) => {
  snapshotsOn = on;
};

/** An engine state built once by `fresh` and cloned for each input (or rebuilt each time with snapshots off). */
export function snapshot<T extends object>(fresh: () => T, share: readonly unknown[]): () => T {
  let saved: T | undefined;
  const sh = new Set(share);
  return () => {
    if (!snapshotsOn) return fresh();
    saved ??= fresh();
    return cloneDeep(saved, sh);
  };
}
