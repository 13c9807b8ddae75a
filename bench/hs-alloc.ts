/**
 * JS heap allocated by the server side of one full TLS 1.3 handshake, the
 * engine alone (tls13/server.ts on node:crypto, ECDSA P-256 certificate,
 * X25519, TLS_AES_128_GCM_SHA256, a 32-byte legacy session id as `openssl
 * s_time` sends): `new TlsServer` + `start(ClientHello)` + `receive(client
 * Finished)`. A count that load does not move, beside the CPU A/B
 * (docs/benchmarks.md, "Termination handshake, eighth pass").
 *
 * Usage: node --min-semi-space-size=64 --max-semi-space-size=64 dist/bench/hs-alloc.js [N] [WARM] [--sites]
 * The large young generation keeps every collection out of the measured
 * calls (a scavenge inside one shows as a negative delta; those are dropped
 * and counted). Prints the median and mean bytes per handshake over N
 * handshakes after WARM unmeasured ones, and the process CPU per handshake
 * (engine only, the clients' work excluded: they run between measurements).
 * --sites: the allocation sites (inspector HeapProfiler sampling, objects
 * collected since included) of N more handshakes, server side only (under
 * a tls13/server.js frame), by function, bytes per handshake.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { getHeapStatistics } from 'node:v8';
import { concat } from '../src/bytes/util.js';
import { nodeProvider } from '../src/crypto/node.js';
import { loadCertificate } from '../src/tls13/certs.js';
import { TlsClient } from '../src/tls13/client.js';
import { TlsServer } from '../src/tls13/server.js';
import { decodeClientHelloMessage } from '../src/wire/tls/client-hello.js';
import { parseHelloRecords } from '../src/wire/tls/record.js';

const args = process.argv.slice(2);
const SITES = args.includes('--sites');
const nums = args.filter((a) => !a.startsWith('--')).map(Number);
const N = nums[0] ?? 1000;
const WARM = nums[1] ?? 500;
const NAME = 'app.example.test';

const dir = mkdtempSync(join(tmpdir(), 'hs-alloc-'));
execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-subj', `/CN=${NAME}`, '-addext', `subjectAltName=DNS:${NAME}`, '-keyout', join(dir, 'k.pem'), '-out', join(dir, 'c.pem')], { stdio: 'ignore' });
const cert = loadCertificate(readFileSync(join(dir, 'c.pem'), 'utf8'), readFileSync(join(dir, 'k.pem'), 'utf8'));
const random = (n: number) => nodeProvider.randomBytes(n);
const ephemeral = () => nodeProvider.x25519Generate();
const certificate = () => cert;

/** One handshake's client side, prepared outside the measurement. */
function prepared() {
  const client = new TlsClient({ provider: nodeProvider, serverName: NAME });
  const rec = client.hello()[0]!;
  // A legacy session id as OpenSSL sends (RFC 8446 Appendix D.4): the server then sends change_cipher_spec.
  const hello = decodeClientHelloMessage(parseHelloRecords(rec)!.message);
  return { client, hello };
}

const heap = () => getHeapStatistics().used_heap_size;
let dropped = 0;

/** One handshake: bytes allocated by the server (negative = a collection ran; dropped). */
function once(): { bytes: number; cpuUs: number } {
  const { client, hello } = prepared();
  const c0 = process.cpuUsage();
  const h0 = heap();
  const server = new TlsServer({ provider: nodeProvider, random, ephemeral, certificate, alpn: undefined, maxClientHelloBytes: 1 << 16 });
  const first = server.start(hello, NAME, { offered: false, accepted: false });
  const h1 = heap();
  const c1 = process.cpuUsage(c0);
  if (first.error) throw first.error;
  const co = client.receive(concat(...first.send));
  if (co.error || !co.established) throw co.error ?? new Error('client did not complete');
  const fin = concat(...co.send);
  const c2 = process.cpuUsage();
  const h2 = heap();
  const o = server.receive(fin);
  const h3 = heap();
  const c3 = process.cpuUsage(c2);
  if (!o.established) throw o.error ?? new Error('server did not complete');
  const a = h1 - h0;
  const b = h3 - h2;
  if (a < 0 || b < 0) dropped++;
  return { bytes: a < 0 || b < 0 ? -1 : a + b, cpuUs: c1.user + c1.system + c3.user + c3.system };
}

const median = (xs: number[]) => {
  const s = [...xs].sort((x, y) => x - y);
  return s[s.length >> 1]!;
};

for (let i = 0; i < WARM; i++) once();
const bytes: number[] = [];
let cpu = 0;
for (let i = 0; i < N; i++) {
  const r = once();
  cpu += r.cpuUs;
  if (r.bytes >= 0) bytes.push(r.bytes);
}
const mean = bytes.reduce((x, y) => x + y, 0) / bytes.length;
process.stdout.write(`heap per handshake: median ${median(bytes)} B, mean ${mean.toFixed(0)} B (${bytes.length} handshakes, ${dropped} with a collection dropped); CPU ${(cpu / N).toFixed(1)} µs per handshake (engine, process CPU)\n`);

if (SITES) {
  const s = new Session();
  s.connect();
  const post = (m: string, p?: object) =>
    new Promise<any>((res, rej) => s.post(m, p ?? {}, (e: Error | null, r: unknown) => (e ? rej(e) : res(r))));
  await post('HeapProfiler.startSampling', { samplingInterval: 32, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
  for (let i = 0; i < N; i++) once();
  const { profile } = await post('HeapProfiler.stopSampling');
  const by = new Map<string, number>();
  const name = (cf: any) => `${cf.functionName || '(anonymous)'} ${String(cf.url).replace(/^.*\/(dist|node_modules)\//, '$1/')}:${cf.lineNumber + 1}`;
  // Only what the server side allocates: subtrees under the first tls13/server.js frame (the client's
  // preparation and its receive() run in the same loop). A builtin (no url) is named with its caller.
  const walk = (n: any, inServer: boolean, parent: string) => {
    const cf = n.callFrame;
    const here = inServer || String(cf.url).endsWith('/tls13/server.js');
    const k = cf.url ? name(cf) : `${cf.functionName || '(anonymous)'} ← ${parent}`;
    if (here) by.set(k, (by.get(k) ?? 0) + n.selfSize);
    for (const c of n.children ?? []) walk(c, here, cf.url ? name(cf) : parent);
  };
  walk(profile.head, false, '');
  const rows = [...by].sort((x, y) => y[1] - x[1]).slice(0, 40);
  let total = 0;
  for (const [, v] of by) total += v;
  process.stdout.write(`\nsampled allocation sites, server side only, bytes per handshake, total ${(total / N).toFixed(0)}\n`);
  for (const [k, v] of rows) process.stdout.write(`${(v / N).toFixed(0).padStart(7)}  ${k}\n`);
  s.disconnect();
}
