/**
 * Before/after measurement of the relaying paths for issue #8, builds side by
 * side in one run (the VM's speed drifts, so only same-run ratios count):
 *
 *   AB_BUILDS="base=/tmp/eg-base,new=."   each a folder with bin/echgate.js and dist/
 *   AB_ONLY=conn,ech,mem                   sections (default: all)
 *   AB_ROUNDS, AB_CONNS, AB_ROUTE_N, AB_MEM_N
 *   AB_PROF=NAME                           run that build's serve under --cpu-prof (profile in AB_PROF_DIR)
 *   AB_SLICES (ech, default 20)            plain/ECH alternations per round (ABBA order)
 *   AB_PROF_FLAGS='--heap-prof …'          node flags for the prof section instead of --cpu-prof
 *   AB_PROF_KINDS=ech,plain,conn,naive   what the prof section profiles (naive: the naive proxy under the conn load)
 *   AB_ONLY=perfpair                       perf record an ECH-only and a plain-only serve over the same ABBA slices
 *   AB_ONLY=termpair                       the same for a terminating router: full handshakes, ECH accepted against none
 *   AB_PERF_FREQ=N                         perf record's sampling rate for AB_ONLY=prof AB_PERF=1 (default 997 Hz)
 *   AB_CONN_EP_NAME='key: value, …'        more settings for build NAME's conn entrypoint (e.g. maxConnectionsPerIP: 100000)
 *   AB_PIN=0                               do not pin (default: every serve on CPU 1, load and backends on CPU 0)
 *
 * conn: passthrough CPU per connection (the captured Chromium hello, one-byte
 *       backend, concurrency 50), every build and the naive Node proxy
 *       interleaved per round, medians.
 * ech:  route-only ECH (split mode, requireECH) vs plain passthrough for the
 *       same name, fresh hellos from bench/ech-load.ts, ABBA slices per round;
 *       extra µs per ECH connection beside the HPKE-open floor of bench/ech.ts
 *       measured before each round, on the same CPU. The extra is a difference
 *       of two totals about 1.6× apart, so it amplifies their noise about 4×:
 *       what keeps it stable is CPU time to the nanosecond (schedstat, every
 *       thread; /proc/PID/stat counts 10 ms ticks), many short alternating
 *       slices (contention on a shared machine changes over seconds, so both
 *       kinds see the same), pinning (no migration between the cores), and
 *       medians of several rounds, each round's extra read against that
 *       round's floor.
 * mem:  RSS per idle relayed and terminated connection, a fresh serve per case.
 *
 * Usage: npm run build && node dist/bench/ab-proxy.js
 */
import { type ChildProcess, execFileSync, fork, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '../src/cli/free-port.js';
import { cpuMs, cpuNs } from './cpu.js';
import { children, connLoad, idleMemoryConfig, median, openIdle, rotate, rssKiB, sleep, start, waitPort, SERVE_NODE_FLAGS } from './util.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const env = process.env;
const BUILDS = (env.AB_BUILDS ?? `new=${ROOT}`).split(',').map((x) => {
  const [name, dir] = x.split('=');
  return { name: name!, dir: resolve(dir!) };
});
const ONLY = (env.AB_ONLY ?? 'conn,ech,mem').split(',');
const ROUNDS = Number(env.AB_ROUNDS ?? 3);
const CONNS = Number(env.AB_CONNS ?? 5000);
const ROUTE_N = Number(env.AB_ROUTE_N ?? 2000);
const MEM_N = Number(env.AB_MEM_N ?? 2000);
const NAME = 'app.example.test';
const capture = readFileSync(join(ROOT, 'test', 'vectors', 'captures', 'chr-ech2a-app-alpn.bin'));
const log = (s: string) => process.stderr.write(`${s}\n`);
const f = (x: number, d = 3) => x.toFixed(d);
const SLICES = Number(env.AB_SLICES ?? 20);
/** Pinning: the measured serve processes on one CPU, everything else (load, backends) on the other. */
const PIN = env.AB_PIN !== '0' && (() => {
  try {
    execFileSync('taskset', ['-p', String(process.pid)], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();
const SERVE_CPU = '1';
const LOAD_CPU = '0';
function pin(pid: number | undefined, cpu: string): void {
  if (PIN && pid) execFileSync('taskset', ['-a', '-cp', cpu, String(pid)], { stdio: 'ignore' });
}

/** CPU time of a process in ms, from schedstat (bench/cpu.ts cpuNs: fine-grained, unlike cpuMs's ticks). */
const cpuNsMs = (pid: number): number => cpuNs(pid) / 1e6;
const spread = (xs: number[], d = 0) => `min ${f(Math.min(...xs), d)} max ${f(Math.max(...xs), d)}`;

/** m[k], made by `mk` the first time. */
function slot<T>(m: Record<string, T>, k: string, mk: () => T): T {
  if (!(k in m)) m[k] = mk();
  return m[k]!;
}


function serve(build: { name: string; dir: string }, cfg: string): ChildProcess {
  const prof = env.AB_PROF === build.name ? ['--cpu-prof', `--cpu-prof-dir=${env.AB_PROF_DIR ?? '/tmp/ab-prof'}`] : [];
  const p = spawn('node', [...SERVE_NODE_FLAGS, ...prof, join(build.dir, 'bin', 'echgate.js'), 'serve', '--config', cfg], { stdio: ['ignore', 'ignore', 'inherit'] });
  children.push(p);
  pin(p.pid, SERVE_CPU);
  return p;
}

function loadGen(): Promise<{ ask: (m: object) => Promise<Record<string, unknown>>; proc: ChildProcess }> {
  const proc = fork(join(ROOT, 'dist', 'bench', 'ech-load.js'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  children.push(proc);
  pin(proc.pid, LOAD_CPU);
  const ask = (m: object) =>
    new Promise<Record<string, unknown>>((res, rej) => {
      proc.send(m);
      proc.once('message', (r: Record<string, unknown>) => (r.error ? rej(new Error(String(r.error))) : res(r)));
    });
  return new Promise((res) => proc.once('message', () => res({ ask, proc })));
}

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'echgate-ab-'));
  const backend = (mode: string) => start('node', [join(ROOT, 'dist', 'bench', 'backend.js'), mode], /PORT (\d+)/);
  const byte = Number((await backend('byte')).match[1]);
  const hold = Number((await backend('hold')).match[1]);
  pin(process.pid, LOAD_CPU);
  for (const c of children) pin(c.pid, LOAD_CPU);
  const cert = join(dir, 'c.pem');
  const key = join(dir, 'k.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-subj', `/CN=${NAME}`, '-addext', `subjectAltName=DNS:${NAME}`, '-keyout', key, '-out', cert], { stdio: 'ignore' });
  const keysDir = join(dir, 'ech-keys');
  const cli = join(ROOT, 'bin', 'echgate.js');
  execFileSync('node', [cli, 'keys', 'generate', '--dir', keysDir, '--public-name', 'public.example.test'], { stdio: 'ignore' });
  const echList = execFileSync('node', [cli, 'keys', 'export', '--dir', keysDir, '--format', 'base64']).toString().trim();
  /** One route-only serve configuration: ECH split mode with requireECH, or plain passthrough, for `rule` to the one-byte backend. */
  const routeOnlyConfig = (file: string, port: number, rule: string, ech: boolean) =>
    writeFileSync(
      file,
      `log: { level: warn }
ech: { keysDir: ${JSON.stringify(keysDir)} }
entryPoints:
  e: { address: "127.0.0.1:${port}", maxConnections: 100000 }
tcp:
  routers:
    r: { entryPoints: [e], rule: "${rule}", service: byte, tls: ${ech ? '{ passthrough: true, echSplit: true }, requireECH: true' : '{ passthrough: true }'} }
  services:
    byte: { loadBalancer: { servers: [{ address: "127.0.0.1:${byte}" }] } }
`,
    );
  /** A terminating router (echgate's engine, the P-256 certificate) for every name, to the one-byte backend; ECH keys loaded. */
  const terminateConfig = (file: string, port: number) =>
    writeFileSync(
      file,
      `log: { level: warn }
ech: { keysDir: ${JSON.stringify(keysDir)} }
entryPoints:
  e: { address: "127.0.0.1:${port}", maxConnections: 100000 }
tcp:
  routers:
    r: { entryPoints: [e], rule: "HostSNI(\`*\`)", service: byte, tls: {} }
  services:
    byte: { loadBalancer: { servers: [{ address: "127.0.0.1:${byte}" }] } }
tls:
  certificates:
    - { certFile: ${JSON.stringify(cert)}, keyFile: ${JSON.stringify(key)} }
`,
    );
  const out: string[] = [`load average at start: ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`];

  if (ONLY.includes('conn') || ONLY.includes('ech')) {
    const procs: { name: string; pid: number; conn: number; ech: number; plain: number }[] = [];
    for (const b of BUILDS) {
      const ports = { conn: await freePort(), ech: await freePort(), plain: await freePort() };
      const cfg = join(dir, `${b.name}.yml`);
      writeFileSync(
        cfg,
        `log: { level: warn }
ech: { keysDir: ${JSON.stringify(keysDir)} }
entryPoints:
  conn: { address: "127.0.0.1:${ports.conn}", maxConnections: 100000${env[`AB_CONN_EP_${b.name}`] ? `, ${env[`AB_CONN_EP_${b.name}`]}` : ''} }
  routeech: { address: "127.0.0.1:${ports.ech}", maxConnections: 100000 }
  routeplain: { address: "127.0.0.1:${ports.plain}", maxConnections: 100000 }
tcp:
  routers:
    conn: { entryPoints: [conn], rule: "HostSNI(\`public.example.test\`)", service: byte, tls: { passthrough: true } }
    routeech: { entryPoints: [routeech], rule: "HostSNI(\`${NAME}\`)", requireECH: true, service: byte, tls: { passthrough: true, echSplit: true } }
    routeplain: { entryPoints: [routeplain], rule: "HostSNI(\`${NAME}\`)", service: byte, tls: { passthrough: true } }
  services:
    byte: { loadBalancer: { servers: [{ address: "127.0.0.1:${byte}" }] } }
`,
      );
      const p = serve(b, cfg);
      for (const port of Object.values(ports)) await waitPort(port);
      procs.push({ name: b.name, pid: p.pid!, ...ports });
    }
    const naivePort = await freePort();
    const naive = await start('node', [...SERVE_NODE_FLAGS, join(ROOT, 'dist', 'bench', 'naive-proxy.js'), String(naivePort), String(byte)], /READY/);
    pin(naive.proc.pid, SERVE_CPU);
    const all = [...procs.map((p) => ({ name: p.name, pid: p.pid, port: p.conn })), { name: 'naive', pid: naive.proc.pid!, port: naivePort }];

    if (ONLY.includes('conn')) {
      for (const p of all) await connLoad(p.port, 3000, 50, capture); // warm-up: the first round ran 15–25 % above the others with 1000
      const res: Record<string, number[]> = {};
      // Each round in 5 slices per proxy, the order rotated every slice (util.ts rotate), so all see the same contention
      // and each takes each position: reversing it kept the middle proxy in the middle, 5–7 % off the others
      // (docs/benchmarks.md, "Passthrough cost, ninth pass").
      const CONN_SLICES = 5;
      const per = Math.ceil(CONNS / CONN_SLICES);
      for (let r = 0; r < ROUNDS; r++) {
        const cpu: Record<string, number> = {};
        for (let i = 0; i < CONN_SLICES; i++) {
          for (const p of rotate(all, r * CONN_SLICES + i)) {
            const c0 = cpuNsMs(p.pid);
            await connLoad(p.port, per, 50, capture);
            cpu[p.name] = (cpu[p.name] ?? 0) + cpuNsMs(p.pid) - c0;
          }
        }
        for (const p of all) {
          slot(res, p.name, () => []).push(cpu[p.name]! / (per * CONN_SLICES));
          log(`conn round ${r + 1} ${p.name}: ${f(res[p.name]!.at(-1)!)} ms CPU/conn`);
        }
      }
      out.push(`passthrough CPU per connection (${per * CONN_SLICES} per round in ${CONN_SLICES} alternating slices, concurrency 50, ${ROUNDS} rounds, medians, ms; CPU from schedstat${PIN ? ', proxies pinned to one CPU' : ''}):`);
      for (const p of all) {
        const ratios = res[p.name]!.map((x, i) => x / res.naive![i]!);
        out.push(`  ${p.name}: ${f(median(res[p.name]!))}  (rounds ${res[p.name]!.map((x) => f(x)).join(' ')}) = ${f(median(res[p.name]!) / median(res.naive!), 2)}× naive (per-round ratios ${ratios.map((x) => f(x, 2)).join(' ')})`);
      }
    }

    if (ONLY.includes('ech')) {
      /** The HPKE-open floor of bench/ech.ts in a process of its own, on the serve CPU: µs per open. */
      const floorUs = () => {
        const args = [join(ROOT, 'dist', 'bench', 'ech-child.js'), '4000'];
        const cmd = PIN ? ['taskset', ['-c', SERVE_CPU, 'node', ...args]] as const : (['node', args] as const);
        return 1e6 / (JSON.parse(execFileSync(cmd[0], [...cmd[1]]).toString()).rows[0].perSec as number);
      };
      const lg = await loadGen();
      const orderOf = (i: number) => (i % 2 === 0 ? (['plain', 'ech'] as const) : (['ech', 'plain'] as const));
      const extra: Record<string, number[]> = {};
      const ratio: Record<string, number[]> = {};
      const floors: number[] = [];
      const abs: Record<string, { plain: number[]; ech: number[] }> = {};
      const per = Math.ceil(ROUTE_N / SLICES);
      // warm-up: past the optimizing compiler on both paths
      await lg.ask({ cmd: 'prepare', n: 1000 * procs.length, ech: echList });
      for (const p of procs) for (const kind of ['plain', 'ech'] as const) await lg.ask({ cmd: 'route', port: kind === 'ech' ? p.ech : p.plain, kind, c: 16, n: 1000 });
      for (let r = 0; r < ROUNDS; r++) {
        const fl = floorUs();
        floors.push(fl);
        await lg.ask({ cmd: 'prepare', n: per * SLICES * procs.length, ech: echList });
        const cpu: Record<string, { plain: number; ech: number }> = {};
        for (let i = 0; i < SLICES; i++) {
          for (const p of i % 2 === 0 ? procs : [...procs].reverse()) {
            for (const kind of orderOf(i)) {
              const c0 = cpuNsMs(p.pid);
              await lg.ask({ cmd: 'route', port: kind === 'ech' ? p.ech : p.plain, kind, c: 16, n: per });
              slot(cpu, p.name, () => ({ plain: 0, ech: 0 }))[kind] += cpuNsMs(p.pid) - c0;
            }
          }
        }
        const n = per * SLICES;
        for (const p of procs) {
          const c = cpu[p.name]!;
          slot(abs, p.name, () => ({ plain: [] as number[], ech: [] as number[] })).plain.push(c.plain / n);
          abs[p.name]!.ech.push(c.ech / n);
          const us = ((c.ech - c.plain) / n) * 1000;
          slot(extra, p.name, () => []).push(us);
          slot(ratio, p.name, () => []).push(us / fl);
          log(`ech round ${r + 1} ${p.name}: plain ${f(c.plain / n)} ech ${f(c.ech / n)} ms, extra ${f(us, 1)} µs, floor ${f(fl, 1)} µs = ${f(us / fl, 2)}×`);
        }
      }
      lg.proc.kill();
      out.push(
        `route-only ECH (split mode, ${per * SLICES} fresh hellos per kind per round in ${SLICES} ABBA slices, ${ROUNDS} rounds, medians; CPU from schedstat${PIN ? ', serve and the floor pinned to one CPU' : ''}); floor ${f(median(floors), 1)} µs (${spread(floors, 1)}):`,
      );
      for (const p of procs) {
        out.push(
          `  ${p.name}: plain ${f(median(abs[p.name]!.plain))} ms, ECH ${f(median(abs[p.name]!.ech))} ms, extra ${f(median(extra[p.name]!), 1)} µs (${spread(extra[p.name]!)}) = ${f(median(ratio[p.name]!), 2)}× floor (per-round ratios ${ratio[p.name]!.map((x) => f(x, 2)).join(' ')})`,
        );
      }
    }
    for (const p of procs) process.kill(p.pid, 'SIGTERM');
    naive.proc.kill('SIGTERM');
    await sleep(500);
  }

  if (ONLY.includes('prof')) {
    mkdirSync(env.AB_PROF_DIR ?? '/tmp/ab-prof', { recursive: true });
    // One fresh serve of the first build per kind under --cpu-prof: ECH-only, plain-only, passthrough conn (or the naive proxy).
    const profDir = env.AB_PROF_DIR ?? '/tmp/ab-prof';
    const lg = await loadGen();
    for (const kind of (env.AB_PROF_KINDS ?? 'ech,plain,conn').split(',')) {
      const port = await freePort();
      const cfg = join(dir, `prof-${kind}.yml`);
      routeOnlyConfig(cfg, port, kind === 'conn' ? 'HostSNI(`public.example.test`)' : `HostSNI(\`${NAME}\`)`, kind === 'ech');
      // AB_PERF=1: perf record (on-CPU samples only; the V8 profiler samples wall time, which a busy machine skews).
      const perf = env.AB_PERF === '1';
      const flags = env.AB_PROF_FLAGS ? env.AB_PROF_FLAGS.split(' ') : perf ? ['--perf-basic-prof'] : ['--cpu-prof', `--cpu-prof-dir=${profDir}`, `--cpu-prof-name=${kind}-${Date.now()}.cpuprofile`];
      // `naive`: the naive Node proxy (bench/naive-proxy.ts) under the same flags and the same load as `conn`.
      const naive = kind === 'naive';
      const args = naive ? [...SERVE_NODE_FLAGS, join(ROOT, 'dist', 'bench', 'naive-proxy.js'), String(port), String(byte)] : [...SERVE_NODE_FLAGS, join(BUILDS[0]!.dir, 'bin', 'echgate.js'), 'serve', '--config', cfg];
      const p = spawn('node', [...flags, ...args], { stdio: ['ignore', 'ignore', 'inherit'] });
      children.push(p);
      await waitPort(port);
      let rec: ChildProcess | undefined;
      if (perf) {
        if (kind === 'conn' || naive) await connLoad(port, 1000, 50, capture);
        rec = spawn('perf', ['record', '-F', env.AB_PERF_FREQ ?? '997', '-g', '-p', String(p.pid), '-o', join(profDir, `${kind}.perf.data`)], { stdio: 'ignore' });
        await sleep(500);
      }
      const c0 = cpuMs(p.pid!);
      if (kind === 'conn' || naive) await connLoad(port, CONNS, 50, capture);
      else {
        await lg.ask({ cmd: 'prepare', n: ROUTE_N, ech: echList });
        await lg.ask({ cmd: 'route', port, kind, c: 16, n: ROUTE_N });
      }
      if (rec) {
        rec.kill('SIGINT');
        await new Promise((r) => rec!.once('exit', r));
      }
      const n = kind === 'conn' || naive ? CONNS : ROUTE_N;
      out.push(`prof ${kind}: ${f((cpuMs(p.pid!) - c0) / n)} ms CPU per connection (${n}), profile in ${profDir}`);
      p.kill('SIGTERM');
      await new Promise((r) => p.once('exit', r));
    }
    lg.proc.kill();
  }

  for (const mode of ['perfpair', 'termpair'] as const) {
    if (!ONLY.includes(mode)) continue;
    // Two serves of the first build, one given only ECH connections and one only plain ones, pinned to the
    // same CPU and driven in the same ABBA slices as the ech section, both recorded by one `perf record`
    // (on-CPU samples, --perf-basic-prof symbols) over the same seconds: the per-symbol difference between the
    // two is the ECH connection's extra with the load drift between two separate runs cancelled.
    // perfpair: the route-only path (split mode, fresh hellos, the backend's one byte); termpair: a
    // terminating router (full handshakes with echgate's client, ECH accepted against none, close_notify).
    const term = mode === 'termpair';
    const profDir = env.AB_PROF_DIR ?? '/tmp/ab-prof';
    mkdirSync(profDir, { recursive: true });
    const lg = await loadGen();
    const pair: Record<'ech' | 'plain', { pid: number; port: number }> = {} as never;
    for (const kind of ['ech', 'plain'] as const) {
      const port = await freePort();
      const cfg = join(dir, `${mode}-${kind}.yml`);
      if (term) terminateConfig(cfg, port);
      else routeOnlyConfig(cfg, port, `HostSNI(\`${NAME}\`)`, kind === 'ech');
      const p = spawn('node', [...SERVE_NODE_FLAGS, '--perf-basic-prof', join(BUILDS[0]!.dir, 'bin', 'echgate.js'), 'serve', '--config', cfg], { stdio: ['ignore', 'ignore', 'inherit'] });
      children.push(p);
      pin(p.pid, SERVE_CPU);
      await waitPort(port);
      pair[kind] = { pid: p.pid!, port };
    }
    const drive = (kind: 'ech' | 'plain', n: number) =>
      term
        ? lg.ask({ cmd: 'term', port: pair[kind].port, n, c: 8, ech: kind === 'ech' ? echList : undefined })
        : lg.ask({ cmd: 'route', port: pair[kind].port, kind, c: 16, n });
    if (!term) await lg.ask({ cmd: 'prepare', n: 2000, ech: echList });
    for (const kind of ['plain', 'ech'] as const) await drive(kind, term ? 1000 : 2000);
    const per = Math.ceil(ROUTE_N / SLICES);
    if (!term) await lg.ask({ cmd: 'prepare', n: per * SLICES, ech: echList });
    const data = join(profDir, `${term ? 'term' : 'pair'}.perf.data`);
    const rec = spawn('perf', ['record', '-F', '997', '-g', '-p', `${pair.ech.pid},${pair.plain.pid}`, '-o', data], { stdio: 'ignore' });
    await sleep(500);
    const cpu = { ech: 0, plain: 0 };
    for (let i = 0; i < SLICES; i++) {
      for (const kind of i % 2 === 0 ? (['plain', 'ech'] as const) : (['ech', 'plain'] as const)) {
        const c0 = cpuNsMs(pair[kind].pid);
        await drive(kind, per);
        cpu[kind] += cpuNsMs(pair[kind].pid) - c0;
      }
    }
    rec.kill('SIGINT');
    await new Promise((r) => rec.once('exit', r));
    lg.proc.kill();
    const n = per * SLICES;
    out.push(
      `${mode}: plain ${f(cpu.plain / n)} ms, ECH ${f(cpu.ech / n)} ms CPU per ${term ? 'handshake' : 'connection'} (${n} each, ${SLICES} ABBA slices); ` +
        `perf data ${data}: ECH serve pid ${pair.ech.pid}, plain serve pid ${pair.plain.pid} (perf report --pid)`,
    );
    for (const p of Object.values(pair)) process.kill(p.pid, 'SIGTERM');
  }

  if (ONLY.includes('mem')) {
    const open = (port: number, terminated: boolean, n: number) => openIdle(port, terminated, n, NAME, capture);
    const res: Record<string, { relay: number[]; term: number[] }> = {};
    for (let r = 0; r < Math.max(1, Math.min(ROUNDS, 2)); r++) {
      for (const b of BUILDS) {
        for (const terminated of [false, true]) {
          const port = await freePort();
          const cfg = join(dir, `mem-${b.name}-${terminated}.yml`);
          writeFileSync(cfg, idleMemoryConfig(port, hold, terminated, cert, key));
          const p = serve(b, cfg);
          await waitPort(port);
          for (const s of await open(port, terminated, 200)) s.destroy();
          await sleep(1000);
          const before = rssKiB(p.pid!);
          const socks = await open(port, terminated, MEM_N);
          await sleep(2000);
          const after = rssKiB(p.pid!);
          for (const s of socks) s.destroy();
          p.kill('SIGTERM');
          const kib = (after - before) / MEM_N;
          const e = slot(res, b.name, () => ({ relay: [] as number[], term: [] as number[] }));
          (terminated ? e.term : e.relay).push(kib);
          log(`mem round ${r + 1} ${b.name} ${terminated ? 'terminated' : 'relayed'}: ${f(kib, 1)} KiB per idle connection`);
          await sleep(300);
        }
      }
    }
    out.push(`RSS per idle connection (${MEM_N} open, KiB, medians):`);
    for (const b of BUILDS) out.push(`  ${b.name}: relayed ${f(median(res[b.name]!.relay), 1)} (${res[b.name]!.relay.map((x) => f(x, 1)).join(' ')}), terminated ${f(median(res[b.name]!.term), 1)} (${res[b.name]!.term.map((x) => f(x, 1)).join(' ')})`);
  }
  out.push(`load average at end: ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`);
  process.stdout.write(`${out.join('\n')}\n`);
  for (const c of children) c.kill('SIGTERM');
  process.exit(0);
}

main().catch((e) => {
  process.stderr.write(`${e.stack ?? e}\n`);
  process.exit(1);
});
