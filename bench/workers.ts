/**
 * `node dist/bench/workers.js`: the process group (workers: N) against one
 * process, and node:cluster's two ways of handing out connections — the
 * kernel (SCHED_NONE: every worker accepts on the shared socket) and the
 * primary's round-robin (SCHED_RR: the primary accepts and passes the
 * descriptor to a worker over IPC).
 *
 * Measured: CPU of the whole group (primary + workers, utime+stime from
 * /proc/PID/stat) per connection (captured ClientHello, TLS passthrough to a
 * one-byte backend) and per terminated TLS 1.3 handshake (echgate's own TLS
 * engine, node:tls client), and how the connections were spread (from
 * echgate_worker_connections_total). Variants run interleaved; medians.
 * Every variant is a fresh process group, warmed up first with WARM_CONNS
 * connections and WARM_HS handshakes: each worker compiles the hot code
 * itself, and with the old warm-up (200 + 50, half of it per worker) the
 * second worker's optimizing compiler ran inside the measured window (perf:
 * 8.5 % of a two-worker group's samples in V8's compiler against 1.7 % for
 * one process; docs/benchmarks.md "Processes (workers)").
 * Env: ROUNDS (3), CONNS (4000), HANDSHAKES (600), WARM_CONNS (10000), WARM_HS (600).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '../src/cli/free-port.js';
import { cpuMs } from './cpu.js';
import { children, connLoad as captureLoad, median, SERVE_NODE_FLAGS, selfSigned, start, tlsByteLoad, waitMetrics, workersConfig } from './util.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const ROUNDS = Number(process.env.ROUNDS ?? 3);
const CONNS = Number(process.env.CONNS ?? 4000);
const HANDSHAKES = Number(process.env.HANDSHAKES ?? 600);
const WARM_CONNS = Number(process.env.WARM_CONNS ?? 10000);
const WARM_HS = Number(process.env.WARM_HS ?? 600);
const capture = readFileSync(join(ROOT, 'test', 'vectors', 'captures', 'chr-ech2a-app-alpn.bin'));

const connLoad = (port: number, n: number) => captureLoad(port, n, 50, capture);
const handshakeLoad = (port: number, n: number) => tlsByteLoad(port, n, 20, 'term.example.test');

/** Context switches (voluntary + involuntary) of a process so far: each wakeup of its event loop is at least one. */
function ctxSwitches(pid: number): number {
  const st = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/voluntary_ctxt_switches:\s+(\d+)/.exec(st)?.[1] ?? 0) + Number(/nonvoluntary_ctxt_switches:\s+(\d+)/.exec(st)?.[1] ?? 0);
}

function groupPids(pid: number): number[] {
  let kids: number[] = [];
  try {
    kids = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {}
  return [pid, ...kids];
}

async function scrape(port: number): Promise<Map<string, number>> {
  const text = await fetch(`http://127.0.0.1:${port}/metrics`).then((r) => r.text());
  const out = new Map<string, number>();
  for (const m of text.matchAll(/^echgate_worker_connections_total\{worker="(\d+)"\} (\d+)$/gm)) out.set(m[1]!, Number(m[2]));
  return out;
}


async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'echgate-bench-workers-'));
  selfSigned(dir, 'term.example.test');
  const { proc: be, match } = await start('node', [join(ROOT, 'dist', 'bench', 'backend.js'), 'byte'], /PORT (\d+)/);
  const bePort = Number(match[1]);

  const variants = [
    { name: 'workers 1', workers: 1, sched: 'none' },
    { name: 'workers 2, kernel (SCHED_NONE)', workers: 2, sched: 'none' },
    { name: 'workers 2, round-robin (SCHED_RR)', workers: 2, sched: 'rr' },
  ];
  const res = new Map<string, { conn: number[]; hs: number[]; spreadConn: string[]; spreadHs: string[]; primaryShare: number[]; cs: number[] }>();
  for (const v of variants) res.set(v.name, { conn: [], hs: [], spreadConn: [], spreadHs: [], primaryShare: [], cs: [] });

  for (let round = 0; round < ROUNDS; round++) {
    for (const v of variants) {
      const [p1, p2, pm] = [await freePort(), await freePort(), await freePort()];
      const cfg = workersConfig({ workers: v.workers, metrics: pm, conn: p1, term: p2, dir, backend: bePort });
      const file = join(dir, `eg-${v.workers}-${v.sched}.yml`);
      writeFileSync(file, cfg);
      const eg = spawn('node', [...SERVE_NODE_FLAGS, join(ROOT, 'bin', 'echgate.js'), 'serve', '--config', file], { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, ECHGATE_CLUSTER_SCHED: v.sched } });
      children.push(eg);
      await waitMetrics(pm, 200, 100);
      await connLoad(p1, WARM_CONNS); // warm up: every worker past its optimizing compiler
      await handshakeLoad(p2, WARM_HS);
      const pids = groupPids(eg.pid!);
      const cpu = () => pids.map(cpuMs);
      const spread = (a: Map<string, number>, b: Map<string, number>) =>
        [...b]
          .sort()
          .map(([w, n]) => n - (a.get(w) ?? 0))
          .join('/');

      const cs = () => pids.reduce((x, p) => x + ctxSwitches(p), 0);
      const cs0 = cs();
      let before = cpu();
      let s0 = await scrape(pm);
      await connLoad(p1, CONNS);
      let after = cpu();
      const cs1 = cs();
      let s1 = await scrape(pm);
      const r = res.get(v.name)!;
      const total = (a: number[], b: number[]) => b.reduce((x, y, i) => x + y - a[i]!, 0);
      r.conn.push(total(before, after) / CONNS);
      r.cs.push((cs1 - cs0) / CONNS);
      if (v.workers > 1) {
        r.spreadConn.push(spread(s0, s1));
        r.primaryShare.push((after[0]! - before[0]!) / total(before, after));
      }
      before = cpu();
      s0 = s1;
      await handshakeLoad(p2, HANDSHAKES);
      after = cpu();
      s1 = await scrape(pm);
      r.hs.push(total(before, after) / HANDSHAKES);
      if (v.workers > 1) r.spreadHs.push(spread(s0, s1));
      eg.kill('SIGTERM');
      await new Promise((done) => eg.once('exit', done));
      process.stderr.write(`round ${round + 1} ${v.name}: conn ${r.conn.at(-1)!.toFixed(3)} ms (${r.cs.at(-1)!.toFixed(2)} switches), handshake ${r.hs.at(-1)!.toFixed(3)} ms, spread ${r.spreadConn.at(-1) ?? '-'} / ${r.spreadHs.at(-1) ?? '-'}\n`);
    }
  }
  const lines = [
    `Node ${process.version}, ${ROUNDS} interleaved rounds, each group warmed up with ${WARM_CONNS} connections and ${WARM_HS} handshakes, then ${CONNS} passthrough connections (concurrency 50) and ${HANDSHAKES} terminated TLS 1.3 handshakes (concurrency 20) per round; medians; spread = connections per worker in each round.`,
    '',
    '| | group CPU per connection (ms) | group CPU per handshake (ms) | primary share of group CPU (connections) | context switches per connection | spread, connections | spread, handshakes |',
    '|---|---|---|---|---|---|---|',
  ];
  for (const v of variants) {
    const r = res.get(v.name)!;
    lines.push(
      `| ${v.name} | ${median(r.conn).toFixed(3)} | ${median(r.hs).toFixed(3)} | ${r.primaryShare.length ? `${(median(r.primaryShare) * 100).toFixed(0)} %` : '–'} | ${median(r.cs).toFixed(2)} | ${r.spreadConn.join(', ') || '–'} | ${r.spreadHs.join(', ') || '–'} |`,
    );
  }
  process.stdout.write(`${lines.join('\n')}\n`);
  be.kill();
}

main().then(
  () => process.exit(0),
  (e) => {
    process.stderr.write(`${e?.stack ?? e}\n`);
    process.exit(1);
  },
);
