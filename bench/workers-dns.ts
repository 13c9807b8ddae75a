/**
 * `node dist/bench/workers-dns.js`: the embedded DNS of `serve` with
 * `workers: 1` against `workers: 2` (issue #8: "the embedded DNS runs once or
 * in every worker: decide by measurement"). dnsperf 2.10 asks for the HTTPS
 * and A records of one name over UDP; DoH load is DOH_CONNS processes of
 * bench/doh-load.ts (one HTTP/2 connection each, 20 streams outstanding: dnsperf's
 * DoH mode cannot read node:http2's answers, see bench/dns.ts), SECONDS
 * each; the figure is queries answered per CPU-second of the whole process
 * group (primary + workers, every thread's sum_exec_runtime from
 * /proc/PID/task/TID/schedstat), and queries per second. Variants run
 * interleaved, ROUNDS rounds, medians. dnsperf itself shares the machine.
 * Before the rounds each group gets WARM seconds of both loads, unmeasured:
 * without it the second worker's optimizing compiler runs inside the measured
 * window (what bench/workers.ts found for connections and handshakes).
 * Env: ROUNDS (3), SECONDS (6), CLIENTS (dnsperf -c, 20), QPS (dnsperf -Q, 0 = unlimited), DOH_CONNS (4), WARM (8).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { freePort } from '../src/cli/free-port.js';
import { cpuNs } from './cpu.js';
import { SERVE_NODE_FLAGS } from './util.js';

const run = promisify(execFile);
const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const ROUNDS = Number(process.env.ROUNDS ?? 3);
const SECONDS = Number(process.env.SECONDS ?? 6);
const CLIENTS = Number(process.env.CLIENTS ?? 20);
const QPS = Number(process.env.QPS ?? 0);
const DOH_CONNS = Number(process.env.DOH_CONNS ?? 4);
const WARM = Number(process.env.WARM ?? 8);

const children: ChildProcess[] = [];
process.on('exit', () => {
  for (const c of children) c.kill('SIGKILL');
});

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function groupPids(pid: number): number[] {
  let kids: number[] = [];
  try {
    kids = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    // no children file: a single process
  }
  return [pid, ...kids];
}

async function startServe(dir: string, workers: number) {
  const [udp, doh] = [await freePort(), await freePort()];
  const f = join(dir, `w${workers}.yml`);
  writeFileSync(
    f,
    `workers: ${workers}
entryPoints: { websecure: { address: "127.0.0.1:${await freePort()}" } }
ech: { keysDir: ${JSON.stringify(join(dir, 'keys'))} }
dns:
  address: "127.0.0.1:${udp}"
  doh: { address: "127.0.0.1:${doh}", certFile: ${JSON.stringify(join(dir, 'c.pem'))}, keyFile: ${JSON.stringify(join(dir, 'c.key'))} }
  zone: example.test
  names:
    secret.example.test: { a: [127.0.0.1], https: { alpn: [h2] } }
    app.example.test: { a: [127.0.0.1], https: { alpn: [h2] } }
`,
  );
  const child = spawn('node', [...SERVE_NODE_FLAGS, join(ROOT, 'bin', 'echgate.js'), 'serve', '--config', f], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(child);
  let out = '';
  child.stdout!.on('data', (d) => {
    out += d;
  });
  const ready = () => (workers === 1 ? out.includes('"msg":"listening"') : out.includes('"msg":"all workers ready"'));
  for (const end = Date.now() + 60_000; Date.now() < end && !ready(); ) await sleep(100);
  if (!ready()) throw new Error(`workers: ${workers} did not start`);
  await sleep(300);
  return { child, udp, doh, pids: groupPids(child.pid!) };
}

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'echgate-workers-dns-'));
  await run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-subj', '/CN=dns.test', '-keyout', join(dir, 'c.key'), '-out', join(dir, 'c.pem')]);
  await run('node', [join(ROOT, 'bin', 'echgate.js'), 'keys', 'generate', '--dir', join(dir, 'keys'), '--public-name', 'public.example.test']);
  const data = join(dir, 'queries');
  writeFileSync(data, 'secret.example.test HTTPS\nsecret.example.test A\n');
  const groups = { 1: await startServe(dir, 1), 2: await startServe(dir, 2) };
  const res: Record<string, { perCpuS: number[]; qps: number[]; cpuShare: number[] }> = {};
  const load = async (g: (typeof groups)[1], transport: 'udp' | 'doh', seconds: number): Promise<number> => {
    if (transport === 'udp') {
      const args = ['-s', '127.0.0.1', '-p', String(g.udp), '-d', data, '-l', String(seconds), '-c', String(CLIENTS), ...(QPS ? ['-Q', String(QPS)] : [])];
      return Number(/Queries completed:\s+(\d+)/.exec((await run('dnsperf', args, { maxBuffer: 1 << 24 })).stdout)?.[1] ?? 0);
    }
    const script = join(ROOT, 'dist', 'bench', 'doh-load.js');
    const outs = await Promise.all(Array.from({ length: DOH_CONNS }, () => run('node', [script, `https://127.0.0.1:${g.doh}/dns-query`, String(seconds), '20'])));
    return outs.reduce((n, o) => n + Number(/DONE (\d+)/.exec(o.stdout)?.[1] ?? 0), 0);
  };
  if (WARM > 0) for (const w of [1, 2] as const) for (const transport of ['udp', 'doh'] as const) await load(groups[w], transport, WARM);
  for (let r = 0; r < ROUNDS; r++) {
    for (const transport of ['udp', 'doh'] as const) {
      for (const w of [1, 2] as const) {
        const g = groups[w];
        const c0 = g.pids.reduce((s, p) => s + cpuNs(p), 0);
        const t0 = performance.now();
        const done = await load(g, transport, SECONDS);
        const wall = (performance.now() - t0) / 1000;
        const cpuS = (g.pids.reduce((s, p) => s + cpuNs(p), 0) - c0) / 1e9;
        const k = `${transport} workers=${w}`;
        res[k] ??= { perCpuS: [], qps: [], cpuShare: [] };
        res[k].perCpuS.push(done / cpuS);
        res[k].qps.push(done / wall);
        res[k].cpuShare.push(cpuS / wall);
        console.error(`round ${r + 1} ${k}: ${done} queries, ${cpuS.toFixed(2)} CPU-s over ${wall.toFixed(1)} s`);
      }
    }
  }
  console.log('| transport | workers | queries / CPU-second (median) | queries / s (median) | group CPU (cores, median) |');
  console.log('|---|---|---|---|---|');
  for (const [k, v] of Object.entries(res)) {
    const [t, w] = k.split(' ');
    console.log(`| ${t} | ${w!.slice(8)} | ${Math.round(median(v.perCpuS))} | ${Math.round(median(v.qps))} | ${median(v.cpuShare).toFixed(2)} |`);
  }
  for (const t of ['udp', 'doh']) {
    const a = median(res[`${t} workers=1`]!.perCpuS);
    const b = median(res[`${t} workers=2`]!.perCpuS);
    console.log(`${t}: workers 2 / workers 1 queries per CPU-second = ${(b / a).toFixed(2)}×; queries/s ${(median(res[`${t} workers=2`]!.qps) / median(res[`${t} workers=1`]!.qps)).toFixed(2)}×`);
  }
  process.exit(0);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
