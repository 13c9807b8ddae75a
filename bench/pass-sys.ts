/**
 * Where the kernel's share of a passthrough connection goes, as counts that
 * load does not move (issue #8; docs/benchmarks.md "Passthrough cost, ninth
 * pass"): for each proxy, under the `conn` load of bench/ab-proxy.ts (the
 * captured Chromium hello, one-byte backend, 50 at a time), per connection:
 * CPU (schedstat, every thread), minor page faults, voluntary and
 * involuntary context switches (/proc/PID/status of every thread). With
 * `--strace` the same load again under `strace -f -c` (syscalls per
 * connection, slow: counts only).
 *
 *   node dist/bench/pass-sys.js [--conns N] [--rounds R] [--strace] [--node-flags '…'] BUILD... [naive]
 *
 * BUILD is a folder with bin/echgate.js (a `serve` of it, passthrough to the
 * one-byte backend); `naive` is bench/naive-proxy.ts. Rounds interleave the
 * proxies in a rotating order; the printed figures are medians over rounds,
 * and each proxy's per-round ratio to the first one.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '../src/cli/free-port.js';
import { cpuNs } from './cpu.js';
import { children, connLoad, median, SERVE_NODE_FLAGS, sleep, start, takeOption, waitPort } from './util.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const args = process.argv.slice(2);
const CONNS = Number(takeOption(args, 'conns', '5000'));
const ROUNDS = Number(takeOption(args, 'rounds', '3'));
const STRACE = args.includes('--strace');
/** Extra node flags for every proxy (e.g. --perf-basic-prof, to see what perf's symbol map costs). */
const FLAGS = takeOption(args, 'node-flags', '').split(' ').filter(Boolean);
const targets = args.filter((a) => a !== '--strace');
const capture = readFileSync(join(ROOT, 'test', 'vectors', 'captures', 'chr-ech2a-app-alpn.bin'));

/** Minor faults (whole process) and context switches summed over its threads. */
function counts(pid: number): { minflt: number; vcs: number; ivcs: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const minflt = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[7]);
  let vcs = 0;
  let ivcs = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const s = readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8');
      vcs += Number(/voluntary_ctxt_switches:\s+(\d+)/.exec(s)![1]);
      ivcs += Number(/nonvoluntary_ctxt_switches:\s+(\d+)/.exec(s)![1]);
    } catch {
      // the thread ended
    }
  }
  return { minflt, vcs, ivcs };
}

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'pass-sys-'));
  const byte = Number((await start('node', [join(ROOT, 'dist', 'bench', 'backend.js'), 'byte'], /PORT (\d+)/)).match[1]);
  const procs: { name: string; port: number; proc: ChildProcess }[] = [];
  for (const t of targets) {
    const port = await freePort();
    let proc: ChildProcess;
    if (t === 'naive') proc = spawn('node', [...SERVE_NODE_FLAGS, ...FLAGS, join(ROOT, 'dist', 'bench', 'naive-proxy.js'), String(port), String(byte)], { stdio: 'ignore' });
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
      proc = spawn('node', [...SERVE_NODE_FLAGS, ...FLAGS, join(resolve(t), 'bin', 'echgate.js'), 'serve', '--config', cfg], { stdio: ['ignore', 'ignore', 'inherit'] });
    }
    children.push(proc);
    await waitPort(port);
    await connLoad(port, 3000, 50, capture);
    procs.push({ name: t, port, proc });
  }
  const rows: Record<string, { cpu: number[]; flt: number[]; vcs: number[]; ivcs: number[] }> = {};
  for (let r = 0; r < ROUNDS; r++) {
    // The order rotates every round: over a multiple of the proxy count, each proxy runs in every position equally
    // often (a fixed or ABBA order left a position bias of ≈ 5 % in ab-proxy's conn rows at load 14).
    for (const p of procs.map((_, i) => procs[(i + r) % procs.length]!)) {
      const pid = p.proc.pid!;
      const c0 = cpuNs(pid);
      const k0 = counts(pid);
      await connLoad(p.port, CONNS, 50, capture);
      const c1 = cpuNs(pid);
      const k1 = counts(pid);
      rows[p.name] ??= { cpu: [], flt: [], vcs: [], ivcs: [] };
      const row = rows[p.name]!;
      row.cpu.push((c1 - c0) / 1e3 / CONNS);
      row.flt.push((k1.minflt - k0.minflt) / CONNS);
      row.vcs.push((k1.vcs - k0.vcs) / CONNS);
      row.ivcs.push((k1.ivcs - k0.ivcs) / CONNS);
    }
  }
  const f = (x: number, d = 2) => x.toFixed(d);
  console.log(`${CONNS} connections × ${ROUNDS} rounds, medians per connection`);
  console.log('proxy\tCPU µs\tminflt\tvol cs\tinvol cs');
  for (const p of procs) {
    const r = rows[p.name]!;
    const first = rows[procs[0]!.name]!.cpu;
    const ratios = r.cpu.map((x, i) => x / first[i]!);
    console.log(`${p.name}\t${f(median(r.cpu), 1)}\t${f(median(r.flt), 3)}\t${f(median(r.vcs), 3)}\t${f(median(r.ivcs), 3)}\tper-round CPU ${r.cpu.map((x) => f(x, 0)).join(' ')}; ratio to ${procs[0]!.name}: median ${f(median(ratios), 3)}, ${ratios.filter((x) => x < 1).length}/${ratios.length} below`);
  }
  if (STRACE) {
    for (const p of procs) {
      const out = join(dir, `strace-${procs.indexOf(p)}.txt`);
      const st = spawn('strace', ['-f', '-c', '-o', out, '-p', String(p.proc.pid)], { stdio: 'ignore' });
      await sleep(1000);
      await connLoad(p.port, 2000, 50, capture);
      st.kill('SIGINT');
      await new Promise((r) => st.once('exit', r));
      console.log(`== ${p.name}: syscalls per connection (strace -f -c, 2000 connections)`);
      for (const line of readFileSync(out, 'utf8').split('\n')) {
        const m = /^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(\d+)?\s*(\w+)$/.exec(line);
        if (m && Number(m[1]) >= 100) console.log(`  ${m[3]}\t${f(Number(m[1]) / 2000)}${m[2] ? `\t(errors ${f(Number(m[2]) / 2000)})` : ''}`);
      }
    }
  }
  for (const p of procs) p.proc.kill('SIGTERM');
  execFileSync('true');
  process.exit(0);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
