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
import { concat } from '../src/bytes/util.js';
import { isSupportedSuite } from '../src/crypto/hpke.js';
import { nodeProvider } from '../src/crypto/node.js';
import type { CryptoProvider } from '../src/crypto/provider.js';
import { prepareServerKey } from '../src/ech/server.js';
import { type CipherSuite, trafficKeys } from '../src/tls13/key-schedule.js';
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

/** Protect `plain` as records of content `type` under `secret` (fresh sequence numbers). */
export function sealRecords(p: CryptoProvider, suite: CipherSuite, secret: Uint8Array, type: number, plain: Uint8Array, fragment = MAX_PLAINTEXT): Uint8Array {
  const c = new RecordCipher(suite, trafficKeys(p, suite, secret));
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

/** Read a private field of an engine (harness only). */
export const peek = <T>(o: object, field: string): T => (o as Record<string, unknown>)[field] as T;
