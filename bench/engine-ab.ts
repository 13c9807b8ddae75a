/**
 * The TLS 1.3 server engine of two builds in ONE process, interleaved: the
 * same full handshakes as bench/hs-alloc.ts (ECDSA P-256, X25519,
 * TLS_AES_128_GCM_SHA256, our client), in alternating batches, each build's
 * own modules (tls13/, crypto/) imported from its ROOT/dist. Per batch: the
 * process CPU of the server's calls only (the client's work runs between
 * them), JS heap and external (ArrayBuffer backing store) bytes allocated per
 * handshake. A load spike hits both builds' neighbouring batches alike, so
 * the per-pair ratio is steadier than two processes timed apart
 * (docs/benchmarks.md, "Termination handshake, eighth pass").
 *
 * Usage: node --min-semi-space-size=64 --max-semi-space-size=64 dist/bench/engine-ab.js ROOT_A ROOT_B [PAIRS] [BATCH] [WARM]
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { getHeapStatistics } from 'node:v8';

const [rootA, rootB, pairsArg = '30', batchArg = '200', warmArg = '1000'] = process.argv.slice(2);
if (!rootA || !rootB) {
  process.stderr.write('usage: engine-ab ROOT_A ROOT_B [PAIRS] [BATCH] [WARM]\n');
  process.exit(2);
}
const PAIRS = Number(pairsArg);
const BATCH = Number(batchArg);
const WARM = Number(warmArg);
const NAME = 'app.example.test';

const dir = mkdtempSync(join(tmpdir(), 'engine-ab-'));
execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-subj', `/CN=${NAME}`, '-addext', `subjectAltName=DNS:${NAME}`, '-keyout', join(dir, 'k.pem'), '-out', join(dir, 'c.pem')], { stdio: 'ignore' });

/** Modules of another build, loaded by path: typed by use. */
type Any = any;
const load = async (root: string, rel: string): Promise<Any> => import(pathToFileURL(join(resolve(root), 'dist', 'src', rel)).href);

interface Build {
  name: string;
  run(n: number): { cpuUs: number; heap: number; ext: number; dropped: number };
}

async function build(name: string, root: string): Promise<Build> {
  const { nodeProvider } = await load(root, 'crypto/node.js');
  const { loadCertificate } = await load(root, 'tls13/certs.js');
  const { TlsClient } = await load(root, 'tls13/client.js');
  const { TlsServer } = await load(root, 'tls13/server.js');
  const { decodeClientHelloMessage } = await load(root, 'wire/tls/client-hello.js');
  const { parseHelloRecords } = await load(root, 'wire/tls/record.js');
  const { concat } = await load(root, 'bytes/util.js');
  const cert = loadCertificate(readFileSync(join(dir, 'c.pem'), 'utf8'), readFileSync(join(dir, 'k.pem'), 'utf8'));
  const random = (n: number) => nodeProvider.randomBytes(n);
  const ephemeral = () => nodeProvider.x25519Generate();
  const certificate = () => cert;
  return {
    name,
    run(n) {
      let cpuUs = 0;
      let heap = 0;
      let ext = 0;
      let dropped = 0;
      for (let i = 0; i < n; i++) {
        const client = new TlsClient({ provider: nodeProvider, serverName: NAME });
        const hello = decodeClientHelloMessage(parseHelloRecords(client.hello()[0]!)!.message);
        let s0 = getHeapStatistics();
        let c0 = process.cpuUsage();
        const server = new TlsServer({ provider: nodeProvider, random, ephemeral, certificate, maxClientHelloBytes: 1 << 16 });
        const first = server.start(hello, NAME, { offered: false, accepted: false });
        let c1 = process.cpuUsage(c0);
        let s1 = getHeapStatistics();
        cpuUs += c1.user + c1.system;
        let h = s1.used_heap_size - s0.used_heap_size;
        let e = s1.external_memory - s0.external_memory;
        if (first.error) throw first.error;
        const co = client.receive(concat(...first.send));
        if (co.error || !co.established) throw co.error ?? new Error('client did not complete');
        const fin = concat(...co.send);
        s0 = getHeapStatistics();
        c0 = process.cpuUsage();
        const o = server.receive(fin);
        c1 = process.cpuUsage(c0);
        s1 = getHeapStatistics();
        if (!o.established) throw o.error ?? new Error('server did not complete');
        cpuUs += c1.user + c1.system;
        h += s1.used_heap_size - s0.used_heap_size;
        e += s1.external_memory - s0.external_memory;
        // A collection inside a measured call shows as a negative delta: not counted.
        if (h < 0 || e < 0) dropped++;
        else {
          heap += h;
          ext += e;
        }
      }
      return { cpuUs: cpuUs / n, heap: heap / (n - dropped), ext: ext / (n - dropped), dropped };
    },
  };
}

const median = (xs: number[]) => {
  const s = [...xs].sort((x, y) => x - y);
  return s.length % 2 ? s[s.length >> 1]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

const a = await build('A', rootA);
const b = await build('B', rootB);
a.run(WARM);
b.run(WARM);
const res = { A: { cpu: [] as number[], heap: [] as number[], ext: [] as number[] }, B: { cpu: [] as number[], heap: [] as number[], ext: [] as number[] } };
const ratios: number[] = [];
for (let i = 0; i < PAIRS; i++) {
  // ABBA: neither build always runs first.
  const order = i % 2 ? [b, a] : [a, b];
  const got: Record<string, number> = {};
  for (const x of order) {
    const r = x.run(BATCH);
    const k = x.name as 'A' | 'B';
    res[k].cpu.push(r.cpuUs);
    res[k].heap.push(r.heap);
    res[k].ext.push(r.ext);
    got[k] = r.cpuUs;
  }
  ratios.push(got.B! / got.A!);
}
const line = (k: 'A' | 'B', root: string) =>
  `${k} (${root}): CPU ${median(res[k].cpu).toFixed(1)} µs per handshake (median of ${PAIRS} batches of ${BATCH}), JS heap ${median(res[k].heap).toFixed(0)} B, external ${median(res[k].ext).toFixed(0)} B allocated per handshake`;
process.stdout.write(`${line('A', rootA)}\n${line('B', rootB)}\n`);
process.stdout.write(`B/A CPU per pair: median ${median(ratios).toFixed(3)}, B lower in ${ratios.filter((r) => r < 1).length} of ${PAIRS} pairs\n`);
