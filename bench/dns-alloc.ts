/**
 * JS heap allocated per DNS query by the embedded DNS (UDP with dnsperf, DoH
 * with dnsperf and with bench/doh-load.ts): a count that load does not move,
 * beside the CPU figures of bench/dns.ts.
 *
 *   node --expose-gc dist/bench/dns-alloc.js ROOT [udp|doh|doh-load ...]
 *
 * ROOT is a checkout with a built dist/ (this one, or a base build): its
 * src/dns/service.js is started in this process exactly as `serve` starts it
 * (the zone of bench/dns.ts, the query counter on a stand-in registry). After
 * a warm-up (JIT, answer cache) and a full GC, a fixed number of queries is
 * sent from another process and the growth of V8's used heap is divided by
 * the queries answered, with what each GC of the run freed added back
 * (v8.GCProfiler: used heap before minus after). Only the JS heap: ArrayBuffer contents (node's per-datagram
 * buffer, TLS records) are outside it.
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Session } from 'node:inspector/promises';
import v8 from 'node:v8';
import { freePort } from '../src/cli/free-port.js';

const [rootArg = '.', ...kindsArg] = process.argv.slice(2);
const root = resolve(rootArg);
const kinds = kindsArg.length ? kindsArg : ['udp', 'doh', 'doh-load'];
const exposed = (globalThis as { gc?: () => void }).gc;
if (!exposed) throw new Error('run with --expose-gc');
const gc: () => void = exposed;

function run(cmd: string, args: string[]): Promise<string> {
  return new Promise((res, rej) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d) => {
      out += d;
    });
    p.stderr.on('data', (d) => {
      out += d;
    });
    p.once('error', rej);
    p.once('exit', () => res(out));
  });
}

async function main() {
  const d = mkdtempSync(join(tmpdir(), 'dns-alloc-'));
  const cert = join(d, 'c.pem');
  const key = join(d, 'k.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-subj', '/CN=dns.test', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', key, '-out', cert], { stdio: 'ignore' });
  const qfile = join(d, 'q.txt');
  writeFileSync(qfile, 'app.example.test A\napp.example.test HTTPS\n');
  const service = (await import(pathToFileURL(join(root, 'dist', 'src', 'dns', 'service.js')).href)) as typeof import('../src/dns/service.js');
  const inc = () => {};
  const count = service.queryCounter({ dnsQueries: { inc }, handlerErrors: { inc } });
  const udp = await freePort();
  const doh = await freePort();
  const log = { info() {}, warn() {}, error() {}, debug() {} } as unknown as Parameters<typeof service.startDnsService>[2];
  // An ECHConfigList of a realistic size (one X25519 config, ~70 octets); its contents do not matter here.
  const ech = new Uint8Array(72).fill(7);
  const s = await service.startDnsService(
    {
      listen: { host: '127.0.0.1', port: udp },
      doh: { host: '127.0.0.1', port: doh, certFile: cert, keyFile: key, path: '/dns-query' },
      zone: 'example.test',
      ttl: 300,
      names: { 'ns1.example.test': { a: ['127.0.0.1'] }, 'app.example.test': { a: ['127.0.0.1'], https: { alpn: ['h2'], ech: true } } },
    },
    () => ech,
    log,
    count,
  );
  const dnsperf = async (mode: string[], n: number) => {
    const out = await run('dnsperf', ['-s', '127.0.0.1', '-d', qfile, '-n', String(n), ...mode]);
    const m = /Queries completed:\s+(\d+)/.exec(out);
    if (!m) throw new Error(out);
    return Number(m[1]);
  };
  const load: Record<string, (n: number) => Promise<number>> = {
    udp: (n) => dnsperf(['-p', String(udp), '-c', '1', '-q', '100'], n),
    doh: (n) => dnsperf(['-p', String(doh), '-m', 'doh', '-O', 'doh-method=POST', '-c', '100', '-q', '100'], n),
    'doh-load': async (n) => {
      const out = await run('node', [fileURLToPath(new URL('doh-load.js', import.meta.url)), `https://127.0.0.1:${doh}/dns-query`, String(n), '20']);
      const m = /DONE (\d+) (\d+)/.exec(out);
      if (!m || m[2] !== '0') throw new Error(out);
      return Number(m[1]);
    },
  };
  for (const kind of kinds) {
    const f = load[kind];
    if (!f) throw new Error(`unknown kind ${kind}`);
    // dnsperf -n: runs through the 2-query file; doh-load: seconds.
    const size = kind === 'udp' ? 50000 : kind === 'doh' ? 10000 : 3;
    await f(kind === 'doh-load' ? 2 : size / 4);
    gc();
    gc();
    // What GCs free during the run is added back: allocated = growth + the sum of (before - after) over the GCs.
    const sampling = process.env.DNS_ALLOC_PROFILE ? new Session() : undefined;
    if (sampling) {
      // Every allocation site of the run, garbage included (not only what is alive at the end).
      sampling.connect();
      await sampling.post('HeapProfiler.startSampling', { samplingInterval: 64, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true } as object);
    }
    const prof = new v8.GCProfiler();
    prof.start();
    const h0 = v8.getHeapStatistics().used_heap_size;
    const n = await f(size);
    const h1 = v8.getHeapStatistics().used_heap_size;
    const gcs = prof.stop().statistics;
    let freed = 0;
    for (const g of gcs) freed += g.beforeGC.heapStatistics.usedHeapSize - g.afterGC.heapStatistics.usedHeapSize;
    if (sampling) {
      const { profile } = (await sampling.post('HeapProfiler.stopSampling')) as { profile: object };
      writeFileSync(`${process.env.DNS_ALLOC_PROFILE}.${kind}.heapprofile`, JSON.stringify(profile));
      sampling.disconnect();
    }
    process.stdout.write(`${kind} ${root}: ${n} queries, ${((h1 - h0 + freed) / n).toFixed(0)} heap bytes per query (${gcs.length} GCs)\n`);
  }
  s.close();
  setTimeout(() => process.exit(0), 200).unref();
}

main().catch((e) => {
  process.stderr.write(`${e instanceof Error ? e.stack : e}\n`);
  process.exit(1);
});
