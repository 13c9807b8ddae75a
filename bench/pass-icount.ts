/**
 * Instructions per passthrough connection, counted by valgrind (cachegrind
 * without its cache model: "I refs", user space only), for echgate builds and
 * the naive proxy (bench/naive-proxy.ts), and for two kinds of client: `fin`
 * (bench/util.ts connLoad: the captured Chromium hello, the one-byte
 * backend's byte, end()) and `rst` (the same, then `resetAndDestroy()`
 * instead of end(): the proxy's read fails with ECONNRESET). A count does not
 * move with the machine's load (docs/benchmarks.md "Passthrough cost,
 * eleventh pass"); it is not CPU time (a cache miss costs no instruction, the
 * kernel is not counted) and is read beside bench/pass-sys.ts's timings.
 *
 *   node dist/bench/pass-icount.js BUILD[#NODEFLAGS]... [naive]
 *
 * Per proxy three runs, each a fresh process under valgrind with the same
 * warm-up (WARM fin connections, then WARM/2 rst ones): A: N1 fin connections; B: N2 fin; C: N1
 * fin + (N2 − N1) rst. Per fin connection (B − A)/(N2 − N1), per rst
 * connection (C − A)/(N2 − N1): start-up, warm-up and shutdown cancel out.
 * Env: N1 (200), N2 (1200), WARM (2000), REPEAT (1; medians printed).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '../src/cli/free-port.js';
import { children, loop, median, SERVE_NODE_FLAGS } from './util.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const N1 = Number(process.env.N1 ?? 200);
const N2 = Number(process.env.N2 ?? 1200);
const WARM = Number(process.env.WARM ?? 2000);
const REPEAT = Number(process.env.REPEAT ?? 1);
const capture = readFileSync(join(ROOT, 'test', 'vectors', 'captures', 'chr-ech2a-app-alpn.bin'));

process.on('exit', () => {
  for (const c of children) c.kill('SIGKILL');
});

const load = (port: number, n: number, rst: boolean) =>
  loop(n, 20, () => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => s.write(capture));
    s.once('data', () => (rst ? s.resetAndDestroy() : s.end()));
    return s;
  });

async function waitMetrics(port: number): Promise<void> {
  for (let i = 0; i < 1200; i++) {
    const ok = await fetch(`http://127.0.0.1:${port}/metrics`).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) return;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error('echgate did not start under valgrind');
}

/** One proxy process under valgrind: warm-up, `fin` then `rst` connections, SIGTERM; its "I refs". */
async function run(dir: string, target: string, bePort: number, fin: number, rst: number): Promise<number> {
  const [t, extra] = target.split('#') as [string, string | undefined];
  const flags = [...SERVE_NODE_FLAGS, ...(extra ?? '').split(' ').filter(Boolean)];
  const port = await freePort();
  const vg = ['--tool=cachegrind', '--cache-sim=no', '--cachegrind-out-file=/dev/null'];
  let proc: ChildProcess;
  if (t === 'naive') {
    proc = spawn('valgrind', [...vg, 'node', ...flags, join(ROOT, 'dist', 'bench', 'naive-proxy.js'), String(port), String(bePort)], { stdio: ['ignore', 'pipe', 'pipe'] });
  } else {
    const pm = await freePort();
    const file = join(dir, 'eg.yml');
    writeFileSync(
      file,
      `log: { level: warn }
metrics: { address: "127.0.0.1:${pm}" }
entryPoints:
  e: { address: "127.0.0.1:${port}", maxConnections: 100000 }
tcp:
  routers:
    r: { entryPoints: [e], rule: "HostSNI(\`public.example.test\`)", service: byte, tls: { passthrough: true } }
  services:
    byte: { loadBalancer: { servers: [{ address: "127.0.0.1:${bePort}" }] } }
`,
    );
    proc = spawn('valgrind', [...vg, 'node', ...flags, join(resolve(t), 'bin', 'echgate.js'), 'serve', '--config', file], { stdio: ['ignore', 'pipe', 'pipe'] });
  }
  children.push(proc);
  let err = '';
  proc.stderr!.on('data', (d) => {
    err += String(d);
  });
  if (t === 'naive') await new Promise<void>((r) => proc.stdout!.on('data', (d) => String(d).includes('READY') && r()));
  else await waitMetrics(Number(/127\.0\.0\.1:(\d+)/.exec(readFileSync(join(dir, 'eg.yml'), 'utf8'))![1]));
  // Both kinds in the warm-up: the reset path's code (node's and ours) is compiled before anything is measured.
  await load(port, WARM, false);
  await load(port, WARM / 2, true);
  await load(port, fin, false);
  if (rst) await load(port, rst, true);
  // Let the last closes finish inside the process before it is stopped.
  await new Promise((r) => setTimeout(r, 500));
  proc.kill('SIGTERM');
  await new Promise((done) => proc.once('exit', done));
  const m = /==\d+== I\s+refs:\s+([\d,]+)/.exec(err);
  if (!m) throw new Error(`no valgrind summary:\n${err.slice(-2000)}`);
  return Number(m[1]!.replaceAll(',', ''));
}

async function main() {
  const targets = process.argv.slice(2);
  const dir = mkdtempSync(join(tmpdir(), 'echgate-pass-icount-'));
  const be = spawn('node', [join(ROOT, 'dist', 'bench', 'backend.js'), 'byte'], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(be);
  const bePort = await new Promise<number>((r) => be.stdout!.on('data', (d) => r(Number(/PORT (\d+)/.exec(String(d))?.[1]))));
  const out = new Map<string, { fin: number[]; rst: number[] }>(targets.map((t) => [t, { fin: [], rst: [] }]));
  const n = N2 - N1;
  for (let r = 0; r < REPEAT; r++) {
    for (const t of r % 2 ? [...targets].reverse() : targets) {
      const a = await run(dir, t, bePort, N1, 0);
      const b = await run(dir, t, bePort, N2, 0);
      const c = await run(dir, t, bePort, N1, n);
      const o = out.get(t)!;
      o.fin.push((b - a) / n);
      o.rst.push((c - a) / n);
      process.stderr.write(`repeat ${r + 1} ${t}: fin ${(o.fin.at(-1)! / 1e3).toFixed(1)} k, rst ${(o.rst.at(-1)! / 1e3).toFixed(1)} k instructions per connection (A ${a}, B ${b}, C ${c})\n`);
    }
  }
  console.log(`Node ${process.version}; valgrind cachegrind I refs (user space); warm-up ${WARM}; per connection from ${N1} vs ${N2}; ${REPEAT} repeat(s), medians`);
  console.log('| proxy | k instructions per fin connection | per rst connection | rst − fin |');
  console.log('|---|---|---|---|');
  for (const t of targets) {
    const o = out.get(t)!;
    const f = median(o.fin);
    const s = median(o.rst);
    console.log(`| ${t} | ${(f / 1e3).toFixed(1)} | ${(s / 1e3).toFixed(1)} | ${((s - f) / 1e3).toFixed(1)} |`);
  }
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
