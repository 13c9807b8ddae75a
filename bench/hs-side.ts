/**
 * Whole-process side by side for one full TLS 1.3 handshake (issue #8):
 * echgate `serve` (terminating router, the term-ab config) and the node:tls
 * terminating proxy (bench/tls-proxy.ts), the same client (`openssl s_time
 * -new -tls1_3`), the same one-byte backend. Per handshake, each process:
 *
 * - CPU (schedstat, all threads), minor faults, voluntary and involuntary
 *   context switches, rounds interleaved in a rotating order, medians;
 * - with --strace: `strace -f -c` over S seconds of s_time: system calls
 *   per handshake by name (counts only: strace slows both alike);
 * - with --perf DIR: `perf record -g` (cpu-clock, 997 Hz) over S seconds of
 *   s_time, both processes under `--perf-basic-prof`, and the samples split
 *   by leaf into kernel (by system call), OpenSSL, V8 GC, V8 compiler, V8
 *   builtins/runtime, node/libuv C++, libc, JIT JS (ours / node's library),
 *   µs per handshake. The split of ours can then be read against theirs row
 *   by row (docs/benchmarks.md, "Termination handshake, tenth pass").
 *
 * Usage: node dist/bench/hs-side.js [--rounds R] [--seconds S] [--warm S] [--strace] [--perf DIR] [ROOT]
 * ROOT: a build with bin/echgate.js (default: this checkout).
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '../src/cli/free-port.js';
import { cpuNs } from './cpu.js';
import { children, median, perfSamples, procCounts, SERVE_NODE_FLAGS, selfSigned, sleep, start, sTime, takeOption, waitPort } from './util.js';

const HERE = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const args = process.argv.slice(2);
const ROUNDS = Number(takeOption(args, 'rounds', '3'));
const SECONDS = Number(takeOption(args, 'seconds', '4'));
const WARM = Number(takeOption(args, 'warm', '8'));
const PERF = takeOption(args, 'perf', '');
const STRACE = args.includes('--strace');
const rest = args.filter((a) => a !== '--strace');
const ROOT = resolve(rest[0] ?? HERE);
const NAME = 'app.example.test';
const f = (x: number, d = 2) => x.toFixed(d);

/** The leaf frame of a perf sample → a row. */
function bucket(sym: string, dso: string, stack: string[]): string {
  if (dso.includes('kernel')) {
    const sys = stack.map((s) => /^(__x64_sys_\w+|asm_exc_page_fault)/.exec(s)?.[1]).find(Boolean);
    return `kernel ${sys ?? '(irq, softirq, scheduler)'}`;
  }
  if (dso.includes('perf-') || dso === '[unknown]' || dso.includes('JIT')) {
    if (sym.includes('dist/src') || sym.includes('dist/bench')) return 'JIT JS, ours';
    if (/^(LazyCompile|Function|JS):/.test(sym) || sym.includes('node:')) return 'JIT JS, node library';
    if (sym.startsWith('Builtin:') || sym.startsWith('Bytecode') || sym.startsWith('Stub:') || sym.startsWith('BytecodeHandler')) return 'V8 builtins and runtime';
    return 'JIT/unknown';
  }
  if (dso.includes('libc')) return 'libc';
  if (dso.includes('libstdc++') || dso.includes('libm')) return 'libstdc++/libm';
  if (/v8::internal::(Heap|Scaveng|MarkCompact|Sweep|Marking|Minor|Evacuat|Concurrent|GC|MemoryAllocator|PagedSpace|NewSpace|LargeObject|Worklist)|cppgc/.test(sym)) return 'V8 GC';
  if (/compiler::|Compil|Maglev|maglev|Deoptim|Parser|interpreter::/.test(sym)) return 'V8 compiler';
  if (sym.startsWith('Builtins_') || sym.startsWith('v8::') || sym.startsWith('Builtin:')) return 'V8 builtins and runtime';
  if (sym.startsWith('node::crypto::')) return 'node crypto C++';
  if (sym.startsWith('node::') || sym.startsWith('uv_') || sym.startsWith('uv__')) return 'node and libuv C++';
  if (/^(std::|operator |__cxa|__gnu)/.test(sym)) return 'libstdc++/libm';
  // The node binary links OpenSSL statically: its C symbols (no ::) are OpenSSL's.
  if (!sym.includes('::') && sym !== '[unknown]') return 'OpenSSL';
  return 'other native';
}

/** `perf script -F pid,ip,sym,dso` → samples per row, per pid. */
function splitPerf(file: string, pids: string[]): Map<string, Map<string, number>> {
  const out = new Map(pids.map((p) => [p, new Map<string, number>()]));
  const text = execFileSync('perf', ['script', '-i', file, '-F', 'pid,ip,sym,dso'], { maxBuffer: 1 << 30, stdio: ['ignore', 'pipe', 'ignore'] }).toString();
  const reader = perfSamples((pid, syms, dsos) => {
    const m = out.get(pid);
    if (!m) return;
    const k = bucket(syms[0]!, dsos[0]!, syms);
    m.set(k, (m.get(k) ?? 0) + 1);
    m.set('total', (m.get('total') ?? 0) + 1);
  });
  for (const line of text.split('\n')) reader.line(line);
  reader.end();
  return out;
}

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'hs-side-'));
  const { cert, key } = selfSigned(dir, NAME);
  const keysDir = join(dir, 'ech-keys');
  const cli = join(ROOT, 'bin', 'echgate.js');
  execFileSync('node', [cli, 'keys', 'generate', '--dir', keysDir, '--public-name', 'public.example.test'], { stdio: 'ignore' });
  const byte = Number((await start('node', [join(HERE, 'dist', 'bench', 'backend.js'), 'byte'], /PORT (\d+)/)).match[1]);
  const perfFlags = PERF ? ['--perf-basic-prof'] : [];
  const port = await freePort();
  const cfg = join(dir, 'eg.yml');
  writeFileSync(
    cfg,
    `log: { level: warn }
ech: { keysDir: ${JSON.stringify(keysDir)} }
entryPoints:
  term: { address: "127.0.0.1:${port}", maxConnections: 100000 }
tcp:
  routers:
    term: { entryPoints: [term], rule: "HostSNI(\`*\`)", service: byte, tls: {} }
  services:
    byte: { loadBalancer: { servers: [{ address: "127.0.0.1:${byte}" }] } }
tls:
  certificates:
    - { certFile: ${JSON.stringify(cert)}, keyFile: ${JSON.stringify(key)} }
`,
  );
  const eg = spawn('node', [...SERVE_NODE_FLAGS, ...perfFlags, cli, 'serve', '--config', cfg], { stdio: ['ignore', 'ignore', 'inherit'] });
  children.push(eg);
  await waitPort(port).catch(() => waitPort(port));
  const tp = await start('node', [...perfFlags, join(HERE, 'dist', 'bench', 'tls-proxy.js'), cert, key, `0:${byte}`], /PORTS (\d+)/);
  const procs: { name: string; pid: number; port: number; proc: ChildProcess }[] = [
    { name: 'echgate', pid: eg.pid!, port, proc: eg },
    { name: 'node:tls', pid: tp.proc.pid!, port: Number(tp.match[1]), proc: tp.proc },
  ];
  for (const p of procs) console.log(`warm ${p.name} (pid ${p.pid}): ${await sTime(p.port, WARM)} handshakes`);

  const rows: Record<string, { cpu: number[]; flt: number[]; vcs: number[]; ivcs: number[] }> = {};
  for (let r = 0; r < ROUNDS; r++) {
    for (const p of procs.map((_, i) => procs[(i + r) % procs.length]!)) {
      const c0 = cpuNs(p.pid);
      const k0 = procCounts(p.pid);
      const n = await sTime(p.port, SECONDS);
      const c1 = cpuNs(p.pid);
      const k1 = procCounts(p.pid);
      rows[p.name] ??= { cpu: [], flt: [], vcs: [], ivcs: [] };
      const row = rows[p.name]!;
      row.cpu.push((c1 - c0) / 1e3 / n);
      row.flt.push((k1.minflt - k0.minflt) / n);
      row.vcs.push((k1.vcs - k0.vcs) / n);
      row.ivcs.push((k1.ivcs - k0.ivcs) / n);
      console.log(`round ${r + 1} ${p.name}: ${f(row.cpu.at(-1)!, 1)} µs CPU per handshake (${n})`);
    }
  }
  console.log(`${ROUNDS} rounds × ${SECONDS} s, medians per handshake`);
  console.log('proxy\tCPU µs\tminflt\tvol cs\tinvol cs');
  for (const p of procs) {
    const r = rows[p.name]!;
    const ratios = r.cpu.map((x, i) => x / rows['node:tls']!.cpu[i]!);
    console.log(`${p.name}\t${f(median(r.cpu), 1)}\t${f(median(r.flt), 3)}\t${f(median(r.vcs), 3)}\t${f(median(r.ivcs), 3)}\tper-round ratio to node:tls ${ratios.map((x) => f(x)).join(' ')}`);
  }

  if (STRACE) {
    const per: Record<string, Map<string, number>> = {};
    for (const p of procs) {
      const out = join(dir, `strace-${p.name.replace(':', '')}.txt`);
      const st = spawn('strace', ['-f', '-c', '-o', out, '-p', String(p.pid)], { stdio: 'ignore' });
      await sleep(1500);
      const n = await sTime(p.port, SECONDS);
      st.kill('SIGINT');
      await new Promise((r) => st.once('exit', r));
      const m = new Map<string, number>();
      for (const line of readFileSync(out, 'utf8').split('\n')) {
        const x = /^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(\d+)?\s*(\w+)$/.exec(line);
        if (x) m.set(x[3]!, Number(x[1]) / n);
        if (x?.[2]) m.set(`${x[3]} (errors)`, Number(x[2]) / n);
      }
      m.set('(handshakes)', n);
      per[p.name] = m;
    }
    const names = [...new Set(procs.flatMap((p) => [...per[p.name]!.keys()]))].sort((a, b) => (per.echgate!.get(b) ?? 0) - (per.echgate!.get(a) ?? 0));
    console.log('\nsystem calls per handshake (strace -f -c)\nsyscall\techgate\tnode:tls');
    for (const k of names) {
      const a = per.echgate!.get(k) ?? 0;
      const b = per['node:tls']!.get(k) ?? 0;
      if (k === '(handshakes)' || a >= 0.05 || b >= 0.05) console.log(`${k}\t${f(a)}\t${f(b)}`);
    }
  }

  if (PERF) {
    mkdirSync(PERF, { recursive: true });
    const data = join(PERF, 'hs-side.perf.data');
    const pidList = procs.map((p) => String(p.pid));
    // One recording over both, each measured in its own slice: the per-handshake figure uses that slice's count.
    const rec = spawn('perf', ['record', '-F', '997', '-g', '-o', data, '-p', pidList.join(',')], { stdio: 'ignore' });
    await sleep(2000);
    const n: Record<string, number> = {};
    for (const p of procs) n[p.pid] = await sTime(p.port, SECONDS);
    rec.kill('SIGINT');
    await new Promise((r) => rec.once('exit', r));
    const split = splitPerf(data, pidList);
    const us = (pid: string, k: string) => ((split.get(pid)!.get(k) ?? 0) * 1e6) / 997 / n[pid]!;
    const keys = [...new Set(pidList.flatMap((p) => [...split.get(p)!.keys()]))].sort((a, b) => us(pidList[0]!, b) - us(pidList[1]!, b) - (us(pidList[0]!, a) - us(pidList[1]!, a)));
    console.log(`\nperf, µs per handshake (997 Hz cpu-clock; handshakes ${pidList.map((p) => n[p]).join(' / ')})\nrow\techgate\tnode:tls\tdiff`);
    for (const k of keys) {
      const a = us(pidList[0]!, k);
      const b = us(pidList[1]!, k);
      if (a >= 0.5 || b >= 0.5) console.log(`${k}\t${f(a, 1)}\t${f(b, 1)}\t${f(a - b, 1)}`);
    }
    console.log(`perf data: ${data} (pids ${pidList.join(' ')})`);
  }
  for (const c of children) c.kill('SIGTERM');
  await sleep(200);
  process.exit(0);
}

main().catch((e) => {
  console.error(e);
  for (const c of children) c.kill('SIGTERM');
  process.exit(1);
});
