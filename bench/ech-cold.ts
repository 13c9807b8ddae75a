/**
 * Where an ECH hello's server-side cost goes, item by item, hot and cold, in
 * one process without sockets (docs/benchmarks.md, "ECH cost, ninth pass").
 *
 * Through `serve` decryptEch costs ≈ 107 µs against ≈ 65 µs in a hot loop
 * (eighth pass). This separates the items (the `enc` JWK import, X25519, the
 * HPKE key schedule's HMACs, the AEAD open, the AAD copy, rebuildInner, the
 * classifier's routing view, the inner hello's encode) and times each one
 * per hello, with the same code and inputs, under three conditions:
 *
 *   hot    back to back, fresh hellos (each its own enc), nothing in between;
 *   same   back to back, one hello repeated (what bench/ech.ts's floor does);
 *   evict  before every timed item, EVICT MiB (default 8: twice this
 *          machine's 4 MiB L2) of a buffer written with a 64-byte stride, so
 *          the item's data and the native code's tables come from L3 — what
 *          serve's socket and stream work between two hellos does to them;
 *   serve  before each hello one plain terminating handshake of the engine
 *          (scan, TlsServer.start, the client's Finished) and 64 KiB moved
 *          through a pipe (syscalls): a connection's worth of other code.
 *
 * Timing: wall clock (process.hrtime.bigint) per item per hello, medians over
 * the hellos (a preempted sample is an outlier and does not move a median on a
 * loaded machine). Also: JS heap bytes allocated per decryptEch and per
 * classify (new-space growth with a young generation large enough that no
 * scavenge runs inside the count; a count load does not move).
 *
 * Usage: taskset -c 1 node [--max-semi-space-size=64] dist/bench/ech-cold.js [--n N] [--evict MiB] [--modes hot,evict,serve]
 */
import { execFileSync } from 'node:child_process';
import { createPublicKey, diffieHellman, type KeyObject } from 'node:crypto';
import { closeSync, mkdtempSync, openSync, readFileSync, readSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { getHeapSpaceStatistics } from 'node:v8';
import { isSupportedSuite, KDF, KEM_X25519_SHA256, setupReceiver } from '../src/crypto/hpke.js';
import { nodeProvider } from '../src/crypto/node.js';
import { echOffer } from '../src/ech/client.js';
import { decryptEch, outerAad, prepareServerKey, rebuildInner } from '../src/ech/server.js';
import { echClassifier } from '../src/proxy/ech-classifier.js';
import { Metrics } from '../src/proxy/metrics.js';
import { innerHelloRecords } from '../src/proxy/split.js';
import { loadCertificate } from '../src/tls13/certs.js';
import { TlsClient } from '../src/tls13/client.js';
import { TlsServer } from '../src/tls13/server.js';
import { decodeECHConfigList, encodeECHConfig, encodeECHConfigList } from '../src/wire/ech/config.js';
import { usableConfigs } from '../src/wire/ech/usable.js';
import { findExtension, routingView, scanClientHelloMessage } from '../src/wire/tls/client-hello.js';
import { ExtensionType } from '../src/wire/tls/constants.js';
import { parseHelloRecords } from '../src/wire/tls/record.js';
import { median, takeOption } from './util.js';

const args = process.argv.slice(2);
const N = Number(takeOption(args, 'n', '2000'));
const EVICT = Number(takeOption(args, 'evict', '8'));
const MODES = takeOption(args, 'modes', 'hot,same,serve,evict').split(',');
const NAME = 'app.example.test';

const skRaw = nodeProvider.randomBytes(32);
const sk = nodeProvider.x25519Private(skRaw);
const list = encodeECHConfigList([
  encodeECHConfig({
    configId: 7,
    kemId: KEM_X25519_SHA256,
    publicKey: sk.publicKey,
    cipherSuites: [{ kdfId: KDF.HKDF_SHA256, aeadId: 1 }],
    maximumNameLength: 0,
    publicName: 'public.example.test',
    extensions: [],
  }),
]);
const config = usableConfigs(decodeECHConfigList(list), isSupportedSuite)[0]!;
const key = prepareServerKey(nodeProvider, config, sk);
const lookup = { byConfigId: (id: number) => (id === key.configId ? [key] : []), all: () => [key] };
const classify = echClassifier(lookup, new Metrics(), { trialDecrypt: false });
const skObj = (sk as unknown as { key: KeyObject }).key;

const dir = mkdtempSync(join(tmpdir(), 'echgate-echcold-'));
execFileSync(
  'openssl',
  ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-subj', `/CN=${NAME}`, '-addext', `subjectAltName=DNS:${NAME}`, '-keyout', join(dir, 'k.pem'), '-out', join(dir, 'c.pem')],
  { stdio: 'ignore' },
);
const cert = loadCertificate(readFileSync(join(dir, 'c.pem'), 'utf8'), readFileSync(join(dir, 'k.pem'), 'utf8'));

function helloRecord(ech: boolean): { record: Uint8Array; client: TlsClient } {
  const client = new TlsClient({ provider: nodeProvider, serverName: NAME, ech: ech ? echOffer(config) : undefined });
  const h = client.hello();
  return { record: h.length === 1 ? h[0]! : Buffer.concat(h), client };
}

/** One plain terminating handshake, server and client: the other code a serve runs between two ECH hellos. */
function plainHandshake(): void {
  const { record, client } = helloRecord(false);
  const scan = scanClientHelloMessage(parseHelloRecords(record)!.message);
  const engine = new TlsServer({ provider: nodeProvider, random: (k: number) => nodeProvider.randomBytes(k), ephemeral: () => nodeProvider.x25519Generate(), certificate: () => cert, maxClientHelloBytes: 1 << 16 });
  const first = engine.start(scan.hello, scan.view.sni, { offered: false, accepted: false });
  const out = client.receive(first.send.length === 1 ? first.send[0]! : Buffer.concat(first.send));
  engine.receive(out.send.length === 1 ? out.send[0]! : Buffer.concat(out.send));
}

// 64 KiB through a pipe: kernel entry, copies and wake-ups, as a connection's reads and writes do.
const fifo = join(dir, 'p');
execFileSync('mkfifo', [fifo]);
const rfd = openSync(fifo, 'r+');
const wfd = openSync(fifo, 'w');
const chunk = Buffer.alloc(16384, 1);
const sink = Buffer.alloc(16384);
function syscalls(): void {
  for (let i = 0; i < 4; i++) {
    writeSync(wfd, chunk);
    readSync(rfd, sink);
  }
}

const evictBuf = new Uint8Array(EVICT << 20);
let evictSum = 0;
function evict(): void {
  for (let i = 0; i < evictBuf.length; i += 64) evictBuf[i] = (evictBuf[i]! + 1) & 0xff;
  evictSum += evictBuf[64]!;
}

const ITEMS = ['decryptEch', 'classify', 'import', 'x25519', 'setupReceiver', 'aad', 'open', 'rebuildInner', 'routingView', 'innerRecords'] as const;
type Item = (typeof ITEMS)[number];

function run(mode: string, hellos: Uint8Array[]): Record<Item, number> {
  const t: Record<Item, number[]> = Object.fromEntries(ITEMS.map((k) => [k, []])) as never;
  const before = mode === 'evict' ? evict : () => {};
  const time = <T>(item: Item, fn: () => T): T => {
    before();
    const t0 = process.hrtime.bigint();
    const r = fn();
    t[item].push(Number(process.hrtime.bigint() - t0) / 1000);
    return r;
  };
  for (const fresh of hellos) {
    const record = mode === 'same' ? hellos[0]! : fresh;
    if (mode === 'serve') {
      plainHandshake();
      syscalls();
    }
    const scan = scanClientHelloMessage(parseHelloRecords(record)!.message);
    // What serve runs first on the hello: the classifier, which decrypts and takes the inner's routing view.
    const cls = time('classify', () => classify(scan.hello, scan.view, 'e'));
    if (cls.ech !== 'accepted') throw new Error('bench: ECH not accepted');
    // The same hello again, each part on its own (the DH result is the same for the same enc).
    const ech = scan.view.ech!;
    if (ech.type !== 'outer') throw new Error('bench: no outer ECH');
    const r = time('decryptEch', () => decryptEch(nodeProvider, scan.hello, lookup, { ech }));
    if (r.status !== 'accepted') throw new Error('bench: not accepted');
    time('import', () => createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: Buffer.from(ech.enc.buffer, ech.enc.byteOffset, 32).toString('base64url') }, format: 'jwk' }));
    const pub = createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: Buffer.from(ech.enc.buffer, ech.enc.byteOffset, 32).toString('base64url') }, format: 'jwk' });
    time('x25519', () => diffieHellman({ privateKey: skObj, publicKey: pub }));
    const hashes = key.suiteHashes.get((ech.kdfId << 16) | ech.aeadId)!;
    const ctx = time('setupReceiver', () => setupReceiver(nodeProvider, ech, ech.enc, key.sk, key.info, hashes));
    const ext = findExtension(scan.hello, ExtensionType.encrypted_client_hello)!;
    const aad = time('aad', () => outerAad(scan.hello, ext, ech, new Uint8Array(2048)));
    const encoded = time('open', () => ctx.open(aad, ech.payload));
    const inner = time('rebuildInner', () => rebuildInner(scan.hello, encoded));
    time('routingView', () => routingView(inner));
    time('innerRecords', () => innerHelloRecords(inner));
  }
  return Object.fromEntries(ITEMS.map((k) => [k, median(t[k])])) as never;
}

/** JS heap bytes allocated per call of fn over the hellos (new space growth, retried if a scavenge ran). */
function allocPer(fn: (record: Uint8Array) => void, hellos: Uint8Array[]): number {
  const used = () => getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')!.space_used_size;
  for (let attempt = 0; attempt < 20; attempt++) {
    const a = used();
    for (const h of hellos) fn(h);
    const b = used();
    if (b > a) return (b - a) / hellos.length;
  }
  return Number.NaN;
}

const hellos = Array.from({ length: N }, () => helloRecord(true).record);
// Warm-up past V8's tiers (and the first scavenges) for every item.
run('hot', hellos.slice(0, Math.min(N, 1500)));
for (const m of MODES) run(m, hellos.slice(0, 200));

const rows: Record<string, Record<Item, number>> = {};
for (const m of MODES) rows[m] = run(m, hellos);
process.stdout.write(`µs per hello, medians of ${N} fresh ECH hellos (load ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}):\n`);
process.stdout.write(`${'item'.padEnd(14)}${MODES.map((m) => m.padStart(9)).join('')}\n`);
for (const k of ITEMS) process.stdout.write(`${k.padEnd(14)}${MODES.map((m) => rows[m]![k].toFixed(2).padStart(9)).join('')}\n`);

const sample = hellos.slice(0, 100);
const scans = sample.map((h) => scanClientHelloMessage(parseHelloRecords(h)!.message));
let i = 0;
const perDecrypt = allocPer(() => {
  const s = scans[i++ % scans.length]!;
  decryptEch(nodeProvider, s.hello, lookup, { ech: s.view.ech });
}, sample);
const perClassify = allocPer(() => {
  const s = scans[i++ % scans.length]!;
  classify(s.hello, s.view, 'e');
}, sample);
const perRecords = allocPer(() => {
  const s = scans[i++ % scans.length]!;
  innerHelloRecords(classify(s.hello, s.view, 'e').hello);
}, sample);
const perScan = allocPer((h) => scanClientHelloMessage(parseHelloRecords(h)!.message), sample);
const ech0 = (x: (typeof scans)[number]) => x.view.ech as Extract<typeof x.view.ech, { type: 'outer' }>;
const hashes = key.suiteHashes.values().next().value!;
const b64 = (e: Uint8Array) => Buffer.from(e.buffer, e.byteOffset, 32).toString('base64url');
const pubs = scans.map((x) => createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: b64(ech0(x).enc) }, format: 'jwk' }));
const aads = scans.map((x) => outerAad(x.hello, findExtension(x.hello, ExtensionType.encrypted_client_hello)!, ech0(x)));
const encodeds = scans.map((x, j) => setupReceiver(nodeProvider, ech0(x), ech0(x).enc, key.sk, key.info, hashes).open(aads[j]!, ech0(x).payload));
const inners = scans.map((x, j) => rebuildInner(x.hello, encodeds[j]!));
const items: [string, (j: number) => unknown][] = [
  ['import', (j) => createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: b64(ech0(scans[j]!).enc) }, format: 'jwk' })],
  ['x25519', (j) => diffieHellman({ privateKey: skObj, publicKey: pubs[j]! })],
  ['setupReceiver', (j) => setupReceiver(nodeProvider, ech0(scans[j]!), ech0(scans[j]!).enc, key.sk, key.info, hashes)],
  ['open', (j) => setupReceiver(nodeProvider, ech0(scans[j]!), ech0(scans[j]!).enc, key.sk, key.info, hashes).open(aads[j]!, ech0(scans[j]!).payload)],
  ['rebuildInner', (j) => rebuildInner(scans[j]!.hello, encodeds[j]!)],
  ['routingView', (j) => routingView(inners[j]!)],
];
const per: string[] = [];
for (const [name, fn] of items) {
  let j = 0;
  per.push(`${name} ${allocPer(() => fn(j++ % scans.length), sample).toFixed(0)}`);
}
process.stdout.write(`JS heap bytes allocated per call (open: setupReceiver + open): ${per.join(', ')}\n`);
process.stdout.write(
  `JS heap bytes allocated per call: decryptEch ${perDecrypt.toFixed(0)}, classify ${perClassify.toFixed(0)}, classify + inner records ${perRecords.toFixed(0)}, scan (outer) ${perScan.toFixed(0)}\n`,
);
// Not a native allocation count: each KeyObject, Decipheriv and Buffer also holds native memory and (for the first two) a weak handle.
closeSync(rfd);
closeSync(wfd);
if (evictSum < 0) process.stdout.write('\n');
