/**
 * `node dist/bench/workers-icount.js`: instructions executed by the whole
 * echgate process group per passthrough connection and per terminated TLS 1.3
 * handshake, with `workers: 1` and `workers: 2`, counted by valgrind
 * (cachegrind without its cache model: the "I refs" total of every process of
 * the group, primary and workers).
 *
 * Why: on this 2-vCPU machine the load generator, the backend and two
 * workers share two CPUs, so CPU *time* per connection of a two-worker group
 * includes what sharing costs (context switches, caches refilled after
 * another process ran: docs/benchmarks.md "Processes (workers)"). An
 * instruction count does not depend on which other process ran on the CPU,
 * so it says whether echgate itself does more work per connection with two
 * workers. It is not CPU time (a cache miss costs no instruction), and it is
 * read beside the CPU figures of bench/workers.ts, not instead of them.
 *
 * Method: per worker count, three runs of a group started under valgrind,
 * each with the same warm-up; run A: N1 connections and M1 handshakes, run B:
 * N2 connections and M1 handshakes, run C: N1 connections and M2 handshakes.
 * Per connection = (I_B − I_A) / (N2 − N1), per handshake = (I_C − I_A) /
 * (M2 − M1): start-up, warm-up and shutdown cancel out. The load runs
 * natively in this process. Env: N1 (300), N2 (1300), M1 (60), M2 (260),
 * WARM (100 connections and WARM/5 handshakes before A, B and C; each worker
 * compiles the hot code itself, so with two workers each gets half the
 * warm-up: a small WARM charges the second worker's JIT work to the
 * measured connections), REPEAT (1: repeat the A/B/C triple, the median is
 * printed). M2 = M1 skips run C (connections only).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readFileSync } from 'node:fs';
import { freePort } from '../src/cli/free-port.js';
import { children, connLoad as captureLoad, median, SERVE_NODE_FLAGS, selfSigned, start, tlsByteLoad, waitMetrics, workersConfig } from './util.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const N1 = Number(process.env.N1 ?? 300);
const N2 = Number(process.env.N2 ?? 1300);
const M1 = Number(process.env.M1 ?? 60);
const M2 = Number(process.env.M2 ?? 260);
const REPEAT = Number(process.env.REPEAT ?? 1);
const WARM = Number(process.env.WARM ?? 100);
const capture = readFileSync(join(ROOT, 'test', 'vectors', 'captures', 'chr-ech2a-app-alpn.bin'));

const connLoad = (port: number, n: number) => captureLoad(port, n, 20, capture);
const handshakeLoad = (port: number, n: number) => tlsByteLoad(port, n, 8, 'term.example.test');

/** One group under valgrind: warm-up, `conns` connections, `hs` handshakes, SIGTERM; returns the sum of "I refs" over its processes. */
async function run(dir: string, workers: number, bePort: number, conns: number, hs: number): Promise<{ total: number; procs: number }> {
  const [p1, p2, pm] = [await freePort(), await freePort(), await freePort()];
  const file = join(dir, `eg-${workers}.yml`);
  writeFileSync(file, workersConfig({ workers, metrics: pm, conn: p1, term: p2, dir, backend: bePort }));
  const eg = spawn(
    'valgrind',
    ['--tool=cachegrind', '--cache-sim=no', '--trace-children=yes', '--cachegrind-out-file=/dev/null', 'node', ...SERVE_NODE_FLAGS, join(ROOT, 'bin', 'echgate.js'), 'serve', '--config', file],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  children.push(eg);
  let err = '';
  eg.stderr!.on('data', (d) => {
    err += String(d);
  });
  await waitMetrics(pm, 1200, 250, 'echgate did not start under valgrind');
  // The same warm-up in every run, so that it cancels out of the differences.
  await connLoad(p1, WARM);
  await handshakeLoad(p2, Math.ceil(WARM / 5));
  await connLoad(p1, conns);
  await handshakeLoad(p2, hs);
  eg.kill('SIGTERM');
  await new Promise((done) => eg.once('exit', done));
  // Valgrind prints one summary per traced process; node itself (the valgrind'ed primary) and each forked worker.
  const refs = [...err.matchAll(/==\d+== I\s+refs:\s+([\d,]+)/g)].map((m) => Number(m[1]!.replaceAll(',', '')));
  if (refs.length !== (workers === 1 ? 1 : workers + 1)) throw new Error(`expected ${workers === 1 ? 1 : workers + 1} valgrind summaries, got ${refs.length}:\n${err.slice(-2000)}`);
  return { total: refs.reduce((a, b) => a + b, 0), procs: refs.length };
}

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'echgate-bench-icount-'));
  selfSigned(dir, 'term.example.test');
  const { proc: be, match } = await start('node', [join(ROOT, 'dist', 'bench', 'backend.js'), 'byte'], /PORT (\d+)/);
  const bePort = Number(match[1]);
  const out = new Map<number, { conn: number[]; hs: number[] }>([
    [1, { conn: [], hs: [] }],
    [2, { conn: [], hs: [] }],
  ]);
  for (let r = 0; r < REPEAT; r++) {
    for (const w of r % 2 ? [2, 1] : [1, 2]) {
      const a = await run(dir, w, bePort, N1, M1);
      const b = await run(dir, w, bePort, N2, M1);
      const c = M2 === M1 ? a : await run(dir, w, bePort, N1, M2);
      const o = out.get(w)!;
      o.conn.push((b.total - a.total) / (N2 - N1));
      o.hs.push(M2 === M1 ? Number.NaN : (c.total - a.total) / (M2 - M1));
      process.stderr.write(`repeat ${r + 1} workers ${w}: ${(o.conn.at(-1)! / 1e3).toFixed(0)} k instructions per connection, ${(o.hs.at(-1)! / 1e6).toFixed(2)} M per handshake (A ${a.total}, B ${b.total}, C ${c.total}, ${a.procs} processes)\n`);
    }
  }
  const c1 = median(out.get(1)!.conn);
  const c2 = median(out.get(2)!.conn);
  const h1 = median(out.get(1)!.hs);
  const h2 = median(out.get(2)!.hs);
  const lines = [
    `Node ${process.version}; valgrind cachegrind (no cache model), all processes of the group; warm-up ${WARM} connections and ${Math.ceil(WARM / 5)} handshakes; per connection from ${N1} vs ${N2} passthrough connections, per handshake from ${M1} vs ${M2} terminated TLS 1.3 handshakes; ${REPEAT} repeat(s), medians.`,
    '',
    '| | instructions per passthrough connection | instructions per TLS 1.3 handshake |',
    '|---|---|---|',
    `| workers 1 | ${(c1 / 1e3).toFixed(0)} k | ${(h1 / 1e6).toFixed(2)} M |`,
    `| workers 2 | ${(c2 / 1e3).toFixed(0)} k | ${(h2 / 1e6).toFixed(2)} M |`,
    `| workers 2 / workers 1 | ${(c2 / c1).toFixed(3)}× | ${(h2 / h1).toFixed(3)}× |`,
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
  be.kill();
  rmSync(dir, { recursive: true, force: true });
}

main().then(
  () => process.exit(0),
  (e) => {
    process.stderr.write(`${e?.stack ?? e}\n`);
    process.exit(1);
  },
);
