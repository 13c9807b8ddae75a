/**
 * What a client that resets costs a passthrough proxy (issue #8): CPU per
 * connection for clients that end with a FIN (bench/util.ts connLoad: the
 * captured Chromium hello, the one-byte backend's byte, then end()) against
 * clients that end with a RST instead (`resetAndDestroy()`: SO_LINGER 0, so
 * the proxy's next read of the client fails with ECONNRESET and node builds
 * an ErrnoException for it). Both loads run on the same processes, in the
 * same rounds, in a rotating order, 50 connections at a time; the printed
 * figures are medians over rounds of CPU µs per connection (schedstat, every
 * thread), and the per-round difference rst − fin.
 *
 *   node dist/bench/pass-reset.js [--conns N] [--rounds R] [--node-flags '…'] BUILD... [naive]
 *
 * `--when hello` resets right after the hello instead (before the backend's
 * byte: the peek or the connect is in progress). `BUILD#FLAGS` runs that
 * build with extra node flags (space-separated), e.g.
 * `.#--import=/tmp/limit0.mjs` to try a process-wide Error.stackTraceLimit.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '../src/cli/free-port.js';
import { cpuNs } from './cpu.js';
import { children, connLoad, loop, median, SERVE_NODE_FLAGS, start, takeOption, waitPort } from './util.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const args = process.argv.slice(2);
const CONNS = Number(takeOption(args, 'conns', '3000'));
const ROUNDS = Number(takeOption(args, 'rounds', '5'));
const WHEN = takeOption(args, 'when', 'byte');
const FLAGS = takeOption(args, 'node-flags', '').split(' ').filter(Boolean);
const targets = args;
const capture = readFileSync(join(ROOT, 'test', 'vectors', 'captures', 'chr-ech2a-app-alpn.bin'));

/** N clients that send the hello and reset: after the backend's byte, or (`--when hello`) at once. */
function rstLoad(port: number, n: number, c: number): Promise<number> {
  return loop(n, c, () => {
    const s = net.connect(port, '127.0.0.1');
    s.setNoDelay(true);
    if (WHEN === 'hello') s.once('connect', () => s.write(capture, () => s.resetAndDestroy()));
    else {
      s.once('connect', () => s.write(capture));
      s.once('data', () => s.resetAndDestroy());
    }
    return s;
  });
}

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'pass-reset-'));
  const byte = Number((await start('node', [join(ROOT, 'dist', 'bench', 'backend.js'), 'byte'], /PORT (\d+)/)).match[1]);
  const procs: { name: string; port: number; proc: ChildProcess }[] = [];
  for (const target of targets) {
    const [t, extra] = target.split('#') as [string, string | undefined];
    const own = [...FLAGS, ...(extra ?? '').split(' ').filter(Boolean)];
    const port = await freePort();
    let proc: ChildProcess;
    if (t === 'naive') proc = spawn('node', [...SERVE_NODE_FLAGS, ...own, join(ROOT, 'dist', 'bench', 'naive-proxy.js'), String(port), String(byte)], { stdio: 'ignore' });
    else {
      const cfg = join(dir, `${procs.length}.yml`);
      writeFileSync(
        cfg,
        `log: { level: warn }
entryPoints:
  e: { address: "127.0.0.1:${port}", maxConnections: 100000 }
tcp:
  routers:
    r: { entryPoints: [e], rule: "HostSNI(\`public.example.test\`)", service: byte, tls: { passthrough: true } }
  services:
    byte: { loadBalancer: { servers: [{ address: "127.0.0.1:${byte}" }] } }
`,
      );
      proc = spawn('node', [...SERVE_NODE_FLAGS, ...own, join(resolve(t), 'bin', 'echgate.js'), 'serve', '--config', cfg], { stdio: ['ignore', 'ignore', 'inherit'] });
    }
    children.push(proc);
    await waitPort(port);
    await connLoad(port, 3000, 50, capture);
    await rstLoad(port, 3000, 50);
    procs.push({ name: target, port, proc });
  }
  const rows: Record<string, { fin: number[]; rst: number[] }> = {};
  const jobs = procs.flatMap((p) => [
    { p, kind: 'fin' as const },
    { p, kind: 'rst' as const },
  ]);
  for (let r = 0; r < ROUNDS; r++) {
    for (const { p, kind } of jobs.map((_, i) => jobs[(i + r) % jobs.length]!)) {
      const pid = p.proc.pid!;
      const c0 = cpuNs(pid);
      await (kind === 'fin' ? connLoad(p.port, CONNS, 50, capture) : rstLoad(p.port, CONNS, 50));
      const c1 = cpuNs(pid);
      rows[p.name] ??= { fin: [], rst: [] };
      rows[p.name]![kind].push((c1 - c0) / 1e3 / CONNS);
    }
  }
  const f = (x: number, d = 1) => x.toFixed(d);
  console.log(`${CONNS} connections × ${ROUNDS} rounds, reset ${WHEN === 'hello' ? 'right after the hello' : "after the backend's byte"}; CPU µs per connection, medians`);
  console.log('proxy\tfin\trst\trst−fin (median of per-round differences)');
  for (const p of procs) {
    const r = rows[p.name]!;
    const d = r.rst.map((x, i) => x - r.fin[i]!);
    console.log(`${p.name}\t${f(median(r.fin))}\t${f(median(r.rst))}\t${f(median(d))}\tper round: ${d.map((x) => f(x)).join(' ')}`);
  }
  for (const p of procs) p.proc.kill('SIGTERM');
  process.exit(0);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
