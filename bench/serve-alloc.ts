/**
 * Where a terminating gateway allocates, per TLS 1.3 handshake, all of it:
 * the engine, proxy/ (connection, relay, terminate) and node's sockets. The
 * gateway runs in this process (proxy/gateway.ts, as `serve` builds it: a
 * terminating router to a backend that answers one byte and closes), the
 * client is `openssl s_time -new -tls1_3` in its own process, and the
 * inspector's sampling heap profiler records every allocation (objects
 * collected since included) for S seconds after a W-second warm-up. Prints
 * bytes per handshake by function (self) and by our file (inclusive of what
 * node's code allocates below it). Sampling, so sites under ≈ 50 B per
 * handshake are rough (docs/benchmarks.md, "Termination handshake, eighth pass").
 *
 * Usage: node dist/bench/serve-alloc.js [SECONDS] [WARM] [TOP]
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { Session } from 'node:inspector';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { freePort } from '../src/cli/free-port.js';
import { parseConfigText } from '../src/config/load.js';
import { Gateway } from '../src/proxy/gateway.js';
import { sTime } from './util.js';

const [secArg = '10', warmArg = '10', topArg = '40'] = process.argv.slice(2);
const NAME = 'app.example.test';
const dir = mkdtempSync(join(tmpdir(), 'serve-alloc-'));
execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-subj', `/CN=${NAME}`, '-addext', `subjectAltName=DNS:${NAME}`, '-keyout', join(dir, 'k.pem'), '-out', join(dir, 'c.pem')], { stdio: 'ignore' });

// The backend in a child process (bench/backend.ts's `byte` mode: read, answer one byte, close), so
// that its sockets are not counted here.
const backendPort = await new Promise<number>((resolve, reject) => {
  const b = spawn('node', [join(import.meta.dirname, 'backend.js'), 'byte'], { stdio: ['ignore', 'pipe', 'inherit'] });
  process.on('exit', () => b.kill());
  b.stdout.on('data', (d: Buffer) => {
    const m = /PORT (\d+)/.exec(d.toString());
    if (m) resolve(Number(m[1]));
  });
  b.once('error', reject);
});

const port = await freePort();
const gw = new Gateway({ log: pino({ level: 'warn' }) });
await gw.apply(
  parseConfigText(
    `entryPoints: { term: { address: "127.0.0.1:${port}", maxConnections: 100000 } }
tcp:
  routers: { term: { entryPoints: [term], rule: "HostSNI(\`*\`)", service: byte, tls: {} } }
  services: { byte: { loadBalancer: { servers: [{ address: "127.0.0.1:${backendPort}" }] } } }
tls: { certificates: [ { certFile: ${JSON.stringify(join(dir, 'c.pem'))}, keyFile: ${JSON.stringify(join(dir, 'k.pem'))} } ] }
`,
    join(dir, 'g.yml'),
  ),
);

const warmed = await sTime(port, Number(warmArg));
const s = new Session();
s.connect();
const post = (m: string, p?: object) =>
  new Promise<any>((res, rej) => s.post(m, p ?? {}, (e: Error | null, r: unknown) => (e ? rej(e) : res(r))));
await post('HeapProfiler.startSampling', { samplingInterval: 64, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
const n = await sTime(port, Number(secArg));
const { profile } = await post('HeapProfiler.stopSampling');
s.disconnect();
await gw.shutdown(0);

const short = (url: string) => url.replace(/^.*\/dist\//, '').replace(/^file:\/\//, '');
const self = new Map<string, number>();
const byFile = new Map<string, number>();
let total = 0;
const walk = (node: any, ours: string | undefined) => {
  const cf = node.callFrame;
  const url = short(String(cf.url));
  const here = url.startsWith('src/') ? url : ours;
  const k = `${cf.functionName || '(anonymous)'} ${url || '(builtin)'}${url ? `:${cf.lineNumber + 1}` : ''}`;
  self.set(k, (self.get(k) ?? 0) + node.selfSize);
  // Inclusive per our file: what node's code allocates is charged to the nearest file of ours above it.
  const f = here ?? '(no file of ours on the stack)';
  byFile.set(f, (byFile.get(f) ?? 0) + node.selfSize);
  total += node.selfSize;
  for (const c of node.children ?? []) walk(c, here);
};
walk(profile.head, undefined);
const top = Number(topArg);
const out = (title: string, m: Map<string, number>) => {
  process.stdout.write(`\n${title}\n`);
  for (const [k, v] of [...m].sort((a, b) => b[1] - a[1]).slice(0, top)) process.stdout.write(`${(v / n).toFixed(0).padStart(7)}  ${k}\n`);
};
process.stdout.write(`${warmed} handshakes to warm up, ${n} sampled: ${(total / n / 1024).toFixed(1)} KiB allocated per handshake (sampled)\n`);
out('bytes per handshake by our nearest file (what node allocates below it included)', byFile);
out('bytes per handshake by function (self)', self);
process.exit(0);
