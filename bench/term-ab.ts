/**
 * Before/after for termination cost: several echgate builds (each a checkout
 * with its own dist/) beside the node:tls terminating proxy, the same clients
 * as bench/terminate.ts, rounds interleaved (build A, build B, …, node:tls,
 * A, B, …), each process's own CPU from /proc/PID/stat.
 *
 * Usage: node dist/bench/term-ab.js [--rounds N] [--seconds S] [--bulk MiB]
 *          [--ech N] [--only hs,bulk,ech] [--prof DIR] [--wait S] [--node-args FLAGS]
 *          [--mem N [--heap DIR]] [--gc-count] [--alloc] [--warm S] [--rss] ROOT_A[#FLAGS] ROOT_B ...
 * ROOT is a directory with bin/echgate.js and dist/ (a worktree, or a copy of
 * an older commit built with tsc). Prints one line per measurement and, at the
 * end, the medians and each build's ratio to the node:tls proxy and to the
 * first build. With --prof, each echgate runs under `node --cpu-prof` and
 * writes its profile into DIR when the run ends. With --gc-count, each echgate
 * runs with `--trace-gc` and every handshake and bulk line says how many
 * scavenges and mark-compacts that measurement cost (docs/benchmarks.md,
 * "Termination cost, sixth pass": a mark-compact after every scavenge is the
 * slow state of terminated bulk). With --alloc, each echgate runs with
 * `--trace-gc-nvp` and a 1 MiB young generation, and every handshake line
 * says how many bytes of JS heap the process allocated per handshake (the
 * `allocated=` of each collection, summed; a count load does not move, but
 * the small young generation changes the CPU figures: read only the bytes
 * from such a run; docs/benchmarks.md, "Termination handshake, eighth pass").
 */
import { type ChildProcess, execFileSync, fork, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import tls from 'node:tls';
import { freePort } from '../src/cli/free-port.js';
import { cpuMs } from './cpu.js';
import { children, idleMemoryConfig, median, openIdle, rssKiB, sleep, start, sTime, takeOption, waitPort } from './util.js';

/** n terminated connections, 50 at a time, each idle once it has read MEM_BULK bytes from the backend. */
async function openAfterBulk(port: number, n: number): Promise<tls.TLSSocket[]> {
  const socks: tls.TLSSocket[] = [];
  for (let i = 0; i < n; i += 50) {
    await Promise.all(
      Array.from({ length: Math.min(50, n - i) }, () => {
        const s = tls.connect({ port, host: '127.0.0.1', servername: NAME, rejectUnauthorized: false, minVersion: 'TLSv1.3' }, () => s.write('x'));
        socks.push(s);
        let got = 0;
        return new Promise<void>((res, rej) => {
          s.on('data', (d: Buffer) => {
            got += d.length;
            if (got >= MEM_BULK) res();
          });
          s.once('error', rej);
        });
      }),
    );
  }
  return socks;
}

/**
 * utime and stime of a process, ms (/proc/PID/stat, 10 ms ticks): each
 * handshake line says how its CPU splits between our process's own code
 * (user: JavaScript, V8, OpenSSL) and the kernel (sys: socket calls, and the
 * loopback delivery the sender's write pays for), since the two peers make
 * the same socket calls and differ mostly in user time.
 */
function cpuSplit(pid: number): { user: number; sys: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { user: Number(f[11]) * 10, sys: Number(f[12]) * 10 };
}

/** SIGUSR2 → a heap snapshot (--heapsnapshot-signal); resolves once the process is responsive again (the snapshot is written synchronously). */
async function heapSnapshot(pid: number): Promise<void> {
  process.kill(pid, 'SIGUSR2');
  await sleep(8000);
}

const args = process.argv.slice(2);
const opt = (name: string, def: string) => takeOption(args, name, def);
const ROUNDS = Number(opt('rounds', '3'));
const SECONDS = Number(opt('seconds', '3'));
const BULK = Number(opt('bulk', '256')) << 20;
const ECH_N = Number(opt('ech', '400'));
const ONLY = opt('only', 'hs,bulk,ech').split(',');
const PROF = opt('prof', '');
const WAIT = Number(opt('wait', '0'));
/**
 * --warm S: before the rounds, S seconds of `s_time` handshakes against every
 * proxy (not measured): the rounds then measure code V8 has already optimized,
 * as the rounds of `npm run bench` mostly do (≈ 7 000 handshakes per 10 s
 * round), instead of the first few thousand handshakes' tier-up
 * (docs/benchmarks.md, "Termination cost, seventh pass").
 */
const WARM = Number(opt('warm', '0'));
/** --mem N: RSS growth per idle terminated connection, N open at once, per build and for node:tls, each round. */
const MEM_N = Number(opt('mem', '0'));
/** --heap DIR: with --mem, each echgate writes a heap snapshot into DIR before and after its N connections open (first round). */
const HEAP = opt('heap', '');
/** --mem-bulk KiB: with --mem, each idle connection first receives KiB from the backend (read by the client), then idles. */
const MEM_BULK = Number(opt('mem-bulk', '0')) * 1024;
/** Extra node flags for every echgate (e.g. "--trace-gc"), split on spaces. */
const NODE_ARGS = opt('node-args', '').split(' ').filter(Boolean);
/**
 * --client-nice N: the bulk client runs in a process of its own under `nice -n N`
 * (with N > 0 the client, not the proxy, is the slowest of the three processes,
 * as on a quiet machine where the proxy outruns a Node TLS client); --client-pause
 * MS: that client also stops reading for MS ms after every 1 MiB.
 */
const CLIENT_NICE = opt('client-nice', '');
/** --gc-count: count each echgate's scavenges and mark-compacts (`--trace-gc` lines) per measurement. */
const GC_COUNT = args.includes('--gc-count');
if (GC_COUNT) args.splice(args.indexOf('--gc-count'), 1);
/** --alloc: JS heap bytes allocated per handshake, per echgate (`--trace-gc-nvp`, see the top comment). */
const ALLOC = args.includes('--alloc');
if (ALLOC) args.splice(args.indexOf('--alloc'), 1);
/** Bytes allocated so far per echgate, as the collections reported them (with --alloc). */
const allocSeen = new Map<string, { bytes: number }>();
const allocMark = (name: string) => allocSeen.get(name)?.bytes ?? 0;
/**
 * Bytes and handshakes of all measured slices together: what is allocated after a slice's last
 * collection is counted in the next one, so one slice is off by up to ≈ 1 MiB / its handshakes,
 * the whole run by ≈ 1 MiB / all of them.
 */
const allocTotal = new Map<string, { bytes: number; n: number }>();
/** GC events seen so far per echgate (with --gc-count). */
const gcSeen = new Map<string, { sc: number; mc: number }>();
const gcMark = (name: string) => ({ ...(gcSeen.get(name) ?? { sc: 0, mc: 0 }) });
const gcSince = (name: string, m: { sc: number; mc: number }) => {
  if (!gcSeen.has(name)) return '';
  const n = gcSeen.get(name)!;
  return ` [GC: ${n.sc - m.sc} scavenges, ${n.mc - m.mc} mark-compacts]`;
};
const CLIENT_PAUSE = Number(opt('client-pause', '0'));
/** --rss: print each process's RSS once all are up and after each of its handshake and bulk measurements. */
const RSS = args.includes('--rss');
if (RSS) args.splice(args.indexOf('--rss'), 1);
const rssNote = (pid: number) => (RSS ? ` (RSS ${(rssKiB(pid) / 1024).toFixed(1)} MiB)` : '');
/** ROOT#FLAGS: node flags for that echgate only (comma-separated), e.g. `.#--max-semi-space-size=16`: the same build with and without a flag. */
const roots = args.map((a) => resolve(a.split('#')[0]!));
const rootFlags = args.map((a) => (a.split('#')[1] ?? '').split(',').filter(Boolean));
if (roots.length === 0) {
  process.stderr.write('usage: term-ab [--rounds N] [--seconds S] [--bulk MiB] [--ech N] [--only hs,bulk,ech] [--prof DIR] ROOT...\n');
  process.exit(2);
}
const NAME = 'app.example.test';
const here = resolve(import.meta.dirname, '..', '..');
const log = (s: string) => process.stdout.write(`${s}\n`);

/** CPU ms of the main thread and of all other threads together (/proc/PID/task/TID/stat). */
function threadsMs(pid: number): Map<string, number> {
  const m = new Map<string, number>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const st = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const comm = tid === String(pid) ? 'main' : 'others';
      const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
      m.set(comm, (m.get(comm) ?? 0) + ((Number(f[11]) + Number(f[12])) * 1000) / 100);
    } catch {
      // the thread ended
    }
  }
  return m;
}
const THREADS = process.env.TERM_AB_THREADS === '1';
function threadDelta(before: Map<string, number>, after: Map<string, number>): string {
  return [...after].map(([k, v]) => `${k} ${(v - (before.get(k) ?? 0)).toFixed(0)}`).join(', ');
}

function bulk(port: number, bytes: number, ctx: tls.SecureContext): Promise<void> {
  return new Promise((res, rej) => {
    let got = 0;
    const s = tls.connect({ port, host: '127.0.0.1', servername: NAME, secureContext: ctx, rejectUnauthorized: false, minVersion: 'TLSv1.3' }, () => s.write('g'));
    s.on('data', (d: Buffer) => {
      got += d.length;
    });
    s.once('error', rej);
    s.once('close', () => (got === bytes ? res() : rej(new Error(`bulk got ${got} of ${bytes}`))));
  });
}


function bulkIn(port: number, bytes: number): Promise<void> {
  return new Promise((res, rej) => {
    const p = spawn('nice', ['-n', CLIENT_NICE, 'node', join(here, 'dist', 'bench', 'term-ab.js'), 'bulk-client', String(port), String(bytes), String(CLIENT_PAUSE)], { stdio: ['ignore', 'inherit', 'inherit'] });
    p.once('exit', (code) => (code === 0 ? res() : rej(new Error(`bulk client exited ${code}`))));
  });
}

if (args[0] === 'bulk-client') {
  const [, port, bytes, pause] = args.map(Number);
  let got = 0;
  let mark = 1 << 20;
  const s = tls.connect({ port: port!, host: '127.0.0.1', servername: NAME, rejectUnauthorized: false, minVersion: 'TLSv1.3' }, () => s.write('g'));
  s.on('data', (d: Buffer) => {
    got += d.length;
    if (pause! > 0 && got >= mark) {
      mark += 1 << 20;
      s.pause();
      setTimeout(() => s.resume(), pause);
    }
  });
  s.once('close', () => process.exit(got === bytes ? 0 : 1));
} else {
  main().catch((e) => {
    process.stderr.write(`${(e as Error).stack ?? e}\n`);
    process.exit(1);
  });
}

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'echgate-ab-'));
  const cert = join(dir, 'c.pem');
  const key = join(dir, 'k.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-subj', `/CN=${NAME}`, '-addext', `subjectAltName=DNS:${NAME}`, '-keyout', key, '-out', cert], { stdio: 'ignore' });
  const keysDir = join(dir, 'ech-keys');
  const cli = join(here, 'bin', 'echgate.js');
  execFileSync('node', [cli, 'keys', 'generate', '--dir', keysDir, '--public-name', 'public.example.test'], { stdio: 'ignore' });
  const echList = execFileSync('node', [cli, 'keys', 'export', '--dir', keysDir, '--format', 'base64']).toString().trim();
  const backend = (mode: string, ...a: string[]) => start('node', [join(here, 'dist', 'bench', 'backend.js'), mode, ...a], /PORT (\d+)/);
  const byte = Number((await backend('byte')).match[1]);
  const stream = Number((await backend('stream', String(BULK))).match[1]);
  const hold = Number((await backend('hold', String(MEM_BULK))).match[1]);

  const builds: { name: string; pid: number; term: number; bulk: number }[] = [];
  for (const [i, root] of roots.entries()) {
    const ep = { term: await freePort(), bulk: await freePort() };
    const cfg = join(dir, `eg${i}.yml`);
    writeFileSync(
      cfg,
      `log: { level: warn }
ech: { keysDir: ${JSON.stringify(keysDir)} }
entryPoints:
  term: { address: "127.0.0.1:${ep.term}", maxConnections: 100000 }
  bulk: { address: "127.0.0.1:${ep.bulk}", maxConnections: 100000 }
tcp:
  routers:
    term: { entryPoints: [term], rule: "HostSNI(\`*\`)", service: byte, tls: {} }
    bulk: { entryPoints: [bulk], rule: "HostSNI(\`*\`)", service: stream, tls: {} }
  services:
    byte: { loadBalancer: { servers: [{ address: "127.0.0.1:${byte}" }] } }
    stream: { loadBalancer: { servers: [{ address: "127.0.0.1:${stream}" }] } }
tls:
  certificates:
    - { certFile: ${JSON.stringify(cert)}, keyFile: ${JSON.stringify(key)} }
`,
    );
    const nodeArgs = [
      ...NODE_ARGS,
      ...(GC_COUNT ? ['--trace-gc'] : []),
      // A 1 MiB young generation: a collection (and its `allocated=`) every ≈ 1 MiB, so what is
      // allocated after a measurement's last collection is at most ≈ 1 MiB of a slice's total.
      ...(ALLOC ? ['--trace-gc-nvp', '--min-semi-space-size=1', '--max-semi-space-size=1'] : []),
      ...rootFlags[i]!,
      ...(PROF ? ['--cpu-prof', '--cpu-prof-dir', PROF, '--cpu-prof-name', `eg${i}.cpuprofile`] : []),
    ];
    const p = spawn('node', [...nodeArgs, join(root, 'bin', 'echgate.js'), 'serve', '--config', cfg], { stdio: ['ignore', GC_COUNT || ALLOC ? 'pipe' : NODE_ARGS.length ? 'inherit' : 'ignore', 'inherit'] });
    children.push(p);
    if (GC_COUNT) {
      const seen = { sc: 0, mc: 0 };
      gcSeen.set(`eg${i}`, seen);
      let rest = '';
      p.stdout!.on('data', (d: Buffer) => {
        const lines = (rest + d.toString()).split('\n');
        rest = lines.pop()!;
        for (const l of lines) {
          if (l.includes(': Scavenge ')) seen.sc++;
          else if (l.includes(': Mark-Compact ')) seen.mc++;
          if (NODE_ARGS.length) process.stdout.write(`${l}\n`);
        }
      });
    }
    if (ALLOC) {
      const seen = { bytes: 0 };
      allocSeen.set(`eg${i}`, seen);
      let rest = '';
      p.stdout!.on('data', (d: Buffer) => {
        const lines = (rest + d.toString()).split('\n');
        rest = lines.pop()!;
        for (const l of lines) {
          const m = / allocated=(\d+)/.exec(l);
          if (m) seen.bytes += Number(m[1]);
        }
      });
    }
    // Startup can take longer than waitPort's 10 s on the busy machine.
    for (const port of [ep.term, ep.bulk]) await waitPort(port).catch(() => waitPort(port)).catch(() => waitPort(port));
    builds.push({ name: `eg${i}`, pid: p.pid!, ...ep });
  }
  const tp = await start('node', [join(here, 'dist', 'bench', 'tls-proxy.js'), cert, key, `0:${byte}`, `0:${stream}`], /PORTS (\d+) (\d+)/);
  const peers = [...builds, { name: 'node:tls', pid: tp.proc.pid!, term: Number(tp.match[1]), bulk: Number(tp.match[2]) }];
  log(`PIDS ${peers.map((p) => `${p.name}=${p.pid}`).join(' ')}`);
  if (RSS) log(`RSS at start: ${peers.map((p) => `${p.name} ${(rssKiB(p.pid) / 1024).toFixed(1)} MiB`).join(', ')}`);
  // --wait S: time to attach strace/perf to the PIDS above before the rounds start.
  await sleep(WAIT * 1000);
  if (WARM > 0) {
    for (const p of peers) log(`warm ${p.name}: ${await sTime(p.term, WARM)} handshakes in ${WARM} s`);
  }
  const ctx = tls.createSecureContext({});
  const res: Record<string, Record<string, number[]>> = { hs: {}, user: {}, sys: {}, bulk: {}, plain: {}, ech: {}, mem: {}, alloc: {} };
  for (const k of Object.keys(res)) for (const p of peers) res[k]![p.name] = [];

  if (ONLY.includes('hs')) for (const p of peers) await sTime(p.term, 1);
  const lg = ONLY.includes('ech') ? fork(join(here, 'dist', 'bench', 'ech-load.js'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }) : undefined;
  if (lg) {
    children.push(lg);
    await new Promise((r) => lg.once('message', r));
  }
  const ask = (m: object) =>
    new Promise<Record<string, unknown>>((res2, rej) => {
      lg!.send(m);
      lg!.once('message', (r: Record<string, unknown>) => (r.error ? rej(new Error(String(r.error))) : res2(r)));
    });
  if (lg) for (const b of builds) await ask({ cmd: 'term', port: b.term, n: 100, c: 4, ech: echList });

  for (let r = 0; r < ROUNDS; r++) {
    // Rotate the order each round so no build always runs first.
    const order = peers.map((_, i) => peers[(i + r) % peers.length]!);
    if (ONLY.includes('hs')) {
      for (const p of order) {
        const c0 = cpuMs(p.pid);
        const s0 = cpuSplit(p.pid);
        const g0 = gcMark(p.name);
        const a0 = allocMark(p.name);
        const n = await sTime(p.term, SECONDS);
        res.hs![p.name]!.push((cpuMs(p.pid) - c0) / n);
        const s1 = cpuSplit(p.pid);
        res.user![p.name]!.push((s1.user - s0.user) / n);
        res.sys![p.name]!.push((s1.sys - s0.sys) / n);
        let alloc = '';
        if (allocSeen.has(p.name)) {
          const perHs = (allocMark(p.name) - a0) / n;
          res.alloc![p.name]!.push(perHs);
          const t = allocTotal.get(p.name) ?? { bytes: 0, n: 0 };
          t.bytes += allocMark(p.name) - a0;
          t.n += n;
          allocTotal.set(p.name, t);
          alloc = ` [JS heap allocated: ${(perHs / 1024).toFixed(1)} KiB per handshake]`;
        }
        const split = ` [user ${res.user![p.name]!.at(-1)!.toFixed(3)}, sys ${res.sys![p.name]!.at(-1)!.toFixed(3)}]`;
        log(`round ${r + 1} hs ${p.name}: ${res.hs![p.name]!.at(-1)!.toFixed(3)} ms CPU per handshake (${n})${split}${gcSince(p.name, g0)}${alloc}${rssNote(p.pid)}`);
      }
    }
    if (ONLY.includes('bulk')) {
      for (const p of order) {
        const c0 = cpuMs(p.pid);
        const t0 = THREADS ? threadsMs(p.pid) : undefined;
        const g0 = gcMark(p.name);
        await (CLIENT_NICE ? bulkIn(p.bulk, BULK) : bulk(p.bulk, BULK, ctx));
        res.bulk![p.name]!.push(BULK / 1e6 / ((cpuMs(p.pid) - c0) / 1000));
        log(`round ${r + 1} bulk ${p.name}: ${res.bulk![p.name]!.at(-1)!.toFixed(0)} MB per CPU-second${t0 ? ` (ms per thread: ${threadDelta(t0, threadsMs(p.pid))})` : ''}${gcSince(p.name, g0)}${rssNote(p.pid)}`);
      }
    }
    if (MEM_N) {
      // A fresh process per measurement (RSS growth in a process that already held connections
      // reads the pages it kept, not what a connection costs), as bench/terminate.ts does.
      for (const p of order) {
        const i = builds.findIndex((b) => b.name === p.name);
        let proc: ChildProcess;
        let port: number;
        if (i >= 0) {
          port = await freePort();
          const cfg = join(dir, `mem${i}.yml`);
          writeFileSync(cfg, idleMemoryConfig(port, hold, true, cert, key));
          const flags = [...NODE_ARGS, ...rootFlags[i]!, ...(HEAP ? ['--heapsnapshot-signal=SIGUSR2', `--diagnostic-dir=${HEAP}`] : [])];
          proc = spawn('node', [...flags, join(roots[i]!, 'bin', 'echgate.js'), 'serve', '--config', cfg], { stdio: ['ignore', 'ignore', 'inherit'] });
          children.push(proc);
          await waitPort(port).catch(() => waitPort(port));
        } else {
          const t = await start('node', [join(here, 'dist', 'bench', 'tls-proxy.js'), cert, key, `0:${hold}`], /PORTS (\d+)/);
          proc = t.proc;
          port = Number(t.match[1]);
        }
        const pid = proc.pid!;
        // Warm the path, let the warm-up connections go, then the baseline.
        for (const s of await openIdle(port, true, 200, NAME, new Uint8Array(0))) s.destroy();
        await sleep(1000);
        const snap = HEAP && r === 0 && i >= 0;
        if (snap) await heapSnapshot(pid);
        const before = rssKiB(pid);
        const socks = MEM_BULK ? await openAfterBulk(port, MEM_N) : await openIdle(port, true, MEM_N, NAME, new Uint8Array(0));
        await sleep(2000);
        const kib = (rssKiB(pid) - before) / MEM_N;
        if (snap) await heapSnapshot(pid);
        for (const s of socks) s.destroy();
        proc.kill('SIGTERM');
        res.mem![p.name]!.push(kib);
        log(`round ${r + 1} mem ${p.name}: ${kib.toFixed(1)} KiB RSS per idle terminated connection (${MEM_N} open, fresh process)`);
        await sleep(500);
      }
    }
    if (lg) {
      // ABBA slices of plain and ECH per build, builds rotated.
      for (const b of order.filter((p) => p.name !== 'node:tls')) {
        const cpu = { plain: 0, ech: 0 };
        for (let i = 0; i < 4; i++) {
          for (const kind of i % 2 === 0 ? (['plain', 'ech'] as const) : (['ech', 'plain'] as const)) {
            const c0 = cpuMs(b.pid);
            await ask({ cmd: 'term', port: b.term, n: ECH_N / 4, c: 8, ech: kind === 'ech' ? echList : undefined });
            cpu[kind] += cpuMs(b.pid) - c0;
          }
        }
        res.plain![b.name]!.push(cpu.plain / ECH_N);
        res.ech![b.name]!.push(cpu.ech / ECH_N);
        log(`round ${r + 1} echload ${b.name}: plain ${(cpu.plain / ECH_N).toFixed(3)} ms, ECH ${(cpu.ech / ECH_N).toFixed(3)} ms, ratio ${(cpu.ech / cpu.plain).toFixed(2)}`);
      }
    }
  }
  lg?.kill();
  log('');
  log(`medians over ${ROUNDS} rounds (roots: ${builds.map((b, i) => `${b.name}=${roots[i]}`).join(', ')})`);
  for (const b of builds) {
    const parts: string[] = [];
    if (ONLY.includes('hs')) {
      const perRound = res.hs![b.name]!.map((x, i) => x / res.hs!['node:tls']![i]!);
      parts.push(`hs ${median(res.hs![b.name]!).toFixed(3)} ms = ${median(perRound).toFixed(2)}× node:tls (rounds ${perRound.map((x) => x.toFixed(2)).join(' ')})`);
      parts.push(`user ${median(res.user![b.name]!).toFixed(3)} ms, sys ${median(res.sys![b.name]!).toFixed(3)} ms`);
    }
    const at = allocTotal.get(b.name);
    if (at) parts.push(`JS heap allocated ${(at.bytes / at.n / 1024).toFixed(1)} KiB per handshake (${at.n} handshakes)`);
    if (ONLY.includes('bulk')) {
      const perRound = res.bulk![b.name]!.map((x, i) => x / res.bulk!['node:tls']![i]!);
      parts.push(`bulk ${median(res.bulk![b.name]!).toFixed(0)} MB/CPU-s = ${median(perRound).toFixed(2)}× node:tls (rounds ${perRound.map((x) => x.toFixed(2)).join(' ')})`);
    }
    if (lg) {
      const perRound = res.ech![b.name]!.map((x, i) => x / res.plain![b.name]![i]!);
      parts.push(`ECH/plain ${median(perRound).toFixed(2)}× (plain ${median(res.plain![b.name]!).toFixed(3)}, ECH ${median(res.ech![b.name]!).toFixed(3)} ms; rounds ${perRound.map((x) => x.toFixed(2)).join(' ')})`);
    }
    if (MEM_N) {
      const perRound = res.mem![b.name]!.map((x, i) => x - res.mem!['node:tls']![i]!);
      parts.push(`idle ${median(res.mem![b.name]!).toFixed(1)} KiB per terminated connection (node:tls ${median(res.mem!['node:tls']!).toFixed(1)}; rounds ${res.mem![b.name]!.map((x) => x.toFixed(1)).join(' ')}; minus node:tls ${perRound.map((x) => x.toFixed(1)).join(' ')})`);
    }
    log(`${b.name}: ${parts.join('; ')}`);
  }
  if (ONLY.includes('hs')) log(`node:tls: hs ${median(res.hs!['node:tls']!).toFixed(3)} ms; user ${median(res.user!['node:tls']!).toFixed(3)} ms, sys ${median(res.sys!['node:tls']!).toFixed(3)} ms`);
  if (ONLY.includes('bulk')) log(`node:tls: bulk ${median(res.bulk!['node:tls']!).toFixed(0)} MB/CPU-s`);
  for (const c of children) c.kill('SIGINT');
  await sleep(PROF ? 3000 : 200);
  process.exit(0);
}

