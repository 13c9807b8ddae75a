/**
 * Terminated bulk in both directions, echgate builds beside the node:tls
 * terminating proxy (bench/tls-proxy.ts), rounds interleaved, each proxy's own
 * CPU from /proc/PID/stat: MB moved per CPU-second of the proxy.
 *   down: the backend streams N MiB to the client (the proxy seals records);
 *   up:   the client sends N MiB to a backend that only counts (the proxy opens records).
 * term-ab measures only `down`; this adds `up` (docs/benchmarks.md,
 * "Terminated bulk, ninth pass").
 *
 * Usage: node dist/bench/term-bulk.js [--rounds N] [--mib N] [--dir down,up]
 *          [--prof DIR] [--wait S] [--warm N] ROOT_A[#FLAGS] ROOT_B ...
 * Every echgate runs with SERVE_NODE_FLAGS (as `serve` is deployed) plus its
 * #FLAGS (comma-separated). --prof DIR: each echgate under `--cpu-prof`.
 * --wait S: time to attach perf to the PIDS printed before the rounds.
 */
import { spawn } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import tls from 'node:tls';
import { freePort } from '../src/cli/free-port.js';
import { cpuMs } from './cpu.js';
import { children, median, SERVE_NODE_FLAGS, sleep, start, takeOption, waitPort } from './util.js';

const args = process.argv.slice(2);
const opt = (name: string, def: string) => takeOption(args, name, def);
const ROUNDS = Number(opt('rounds', '3'));
const BYTES = Number(opt('mib', '256')) << 20;
const DIRS = opt('dir', 'down,up').split(',');
const PROF = opt('prof', '');
const WAIT = Number(opt('wait', '0'));
/** --warm N: N unmeasured transfers per direction and proxy before the rounds (V8 tier-up; a fresh process compiles for a whole 256 MiB round). */
const WARM = Number(opt('warm', '1'));
const roots = args.map((a) => resolve(a.split('#')[0]!));
const rootFlags = args.map((a) => (a.split('#')[1] ?? '').split(',').filter(Boolean));
if (roots.length === 0) {
  process.stderr.write('usage: term-bulk [--rounds N] [--mib N] [--dir down,up] [--prof DIR] ROOT[#FLAGS]...\n');
  process.exit(2);
}
const NAME = 'app.example.test';
const here = resolve(import.meta.dirname, '..', '..');
const log = (s: string) => process.stdout.write(`${s}\n`);
/** User and system CPU ms of a process (/proc/PID/stat utime, stime). */
function userSys(pid: number): [number, number] {
  const st = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
  return [Number(f[11]) * 10, Number(f[12]) * 10];
}
/** Context switches of a process's main thread (/proc/PID/status: voluntary + involuntary): each voluntary one is an epoll wait that found nothing to do. */
function ctxt(pid: number): number {
  const st = readFileSync(`/proc/${pid}/status`, 'utf8');
  let n = 0;
  for (const m of st.matchAll(/ctxt_switches:\s+(\d+)/g)) n += Number(m[1]);
  return n;
}
/** Minor page faults of a process (/proc/PID/stat minflt): a count load does not move (malloc'd buffers touched for the first time, heap grown and trimmed). */
function minflt(pid: number): number {
  const st = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return Number(st.slice(st.lastIndexOf(')') + 2).split(' ')[7]);
}

/** The upload sink: counts bytes per connection; `expect` resolves when one connection has delivered n bytes. */
let waiting: { n: number; res: () => void } | undefined;
const sink = net.createServer((s) => {
  let got = 0;
  s.on('data', (d: Buffer) => {
    got += d.length;
    if (waiting && got >= waiting.n) {
      const w = waiting;
      waiting = undefined;
      w.res();
    }
  });
  s.on('error', () => s.destroy());
});

const chunk = Buffer.alloc(64 * 1024, 0x62);

function down(port: number): Promise<void> {
  return new Promise((res, rej) => {
    let got = 0;
    const s = tls.connect({ port, host: '127.0.0.1', servername: NAME, rejectUnauthorized: false, minVersion: 'TLSv1.3' }, () => s.write('g'));
    s.on('data', (d: Buffer) => {
      got += d.length;
    });
    s.once('error', rej);
    s.once('close', () => (got === BYTES ? res() : rej(new Error(`down got ${got} of ${BYTES}`))));
  });
}

function up(port: number): Promise<void> {
  return new Promise((res, rej) => {
    const done = new Promise<void>((r) => {
      waiting = { n: BYTES, res: r };
    });
    const s = tls.connect({ port, host: '127.0.0.1', servername: NAME, rejectUnauthorized: false, minVersion: 'TLSv1.3' }, () => {
      let left = BYTES;
      const pump = () => {
        while (left > 0) {
          const c = left >= chunk.length ? chunk : chunk.subarray(0, left);
          left -= c.length;
          if (!s.write(c)) return void s.once('drain', pump);
        }
      };
      pump();
    });
    s.once('error', rej);
    done.then(() => {
      s.destroy();
      res();
    });
  });
}

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'echgate-bulk-'));
  const cert = join(dir, 'c.pem');
  const key = join(dir, 'k.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-subj', `/CN=${NAME}`, '-addext', `subjectAltName=DNS:${NAME}`, '-keyout', key, '-out', cert], { stdio: 'ignore' });
  const stream = Number((await start('node', [join(here, 'dist', 'bench', 'backend.js'), 'stream', String(BYTES)], /PORT (\d+)/)).match[1]);
  await new Promise<void>((r) => sink.listen(0, '127.0.0.1', r));
  const sinkPort = (sink.address() as net.AddressInfo).port;

  const peers: { name: string; pid: number; down: number; up: number }[] = [];
  for (const [i, root] of roots.entries()) {
    const ep = { down: await freePort(), up: await freePort() };
    const cfg = join(dir, `eg${i}.yml`);
    writeFileSync(
      cfg,
      `log: { level: warn }
entryPoints:
  down: { address: "127.0.0.1:${ep.down}" }
  up: { address: "127.0.0.1:${ep.up}" }
tcp:
  routers:
    down: { entryPoints: [down], rule: "HostSNI(\`*\`)", service: stream, tls: {} }
    up: { entryPoints: [up], rule: "HostSNI(\`*\`)", service: sink, tls: {} }
  services:
    stream: { loadBalancer: { servers: [{ address: "127.0.0.1:${stream}" }] } }
    sink: { loadBalancer: { servers: [{ address: "127.0.0.1:${sinkPort}" }] } }
tls:
  certificates:
    - { certFile: ${JSON.stringify(cert)}, keyFile: ${JSON.stringify(key)} }
`,
    );
    const nodeArgs = [...SERVE_NODE_FLAGS, ...rootFlags[i]!, ...(PROF ? ['--cpu-prof', '--cpu-prof-dir', PROF, '--cpu-prof-name', `eg${i}.cpuprofile`] : [])];
    const p = spawn('node', [...nodeArgs, join(root, 'bin', 'echgate.js'), 'serve', '--config', cfg], { stdio: ['ignore', 'inherit', 'inherit'] });
    children.push(p);
    for (const port of [ep.down, ep.up]) await waitPort(port);
    peers.push({ name: `eg${i}`, pid: p.pid!, ...ep });
  }
  const tp = await start('node', [join(here, 'dist', 'bench', 'tls-proxy.js'), cert, key, `0:${stream}`, `0:${sinkPort}`], /PORTS (\d+) (\d+)/);
  peers.push({ name: 'node:tls', pid: tp.proc.pid!, down: Number(tp.match[1]), up: Number(tp.match[2]) });
  for (let w = 0; w < WARM; w++) for (const d of DIRS) for (const p of peers) await (d === 'up' ? up(p.up) : down(p.down));
  log(`PIDS ${peers.map((p) => `${p.name}=${p.pid}`).join(' ')}`);
  await sleep(WAIT * 1000);

  const res: Record<string, Record<string, number[]>> = {};
  for (const d of DIRS) {
    res[d] = {};
    for (const p of peers) res[d]![p.name] = [];
  }
  for (let r = 0; r < ROUNDS; r++) {
    const order = peers.map((_, i) => peers[(i + r) % peers.length]!);
    for (const d of DIRS) {
      for (const p of order) {
        const c0 = cpuMs(p.pid);
        const [u0, s0] = userSys(p.pid);
        const f0 = minflt(p.pid);
        const x0 = ctxt(p.pid);
        await (d === 'up' ? up(p.up) : down(p.down));
        const v = BYTES / 1e6 / ((cpuMs(p.pid) - c0) / 1000);
        const [u1, s1] = userSys(p.pid);
        const faults = minflt(p.pid) - f0;
        const switches = ctxt(p.pid) - x0;
        res[d]![p.name]!.push(v);
        // Per MiB: user and system ms (the system part is mostly the socket copies, the same work for every proxy).
        const mib = BYTES / (1 << 20);
        log(`round ${r + 1} ${d} ${p.name}: ${v.toFixed(0)} MB per CPU-second (per MiB: user ${((u1 - u0) / mib).toFixed(2)} ms, system ${((s1 - s0) / mib).toFixed(2)} ms, ${(faults / mib).toFixed(1)} minor faults, ${(switches / mib).toFixed(1)} context switches)`);
      }
    }
  }
  for (const d of DIRS) {
    const ref = res[d]!['node:tls']!;
    log(`${d}: node:tls ${median(ref).toFixed(0)} MB/CPU-s`);
    for (const p of peers.slice(0, -1)) {
      const mine = res[d]![p.name]!;
      const per = mine.map((x, i) => x / ref[i]!);
      const vsFirst = mine.map((x, i) => x / res[d]![peers[0]!.name]![i]!);
      log(`${d} ${p.name} (${args[peers.indexOf(p)]}): ${median(mine).toFixed(0)} MB/CPU-s = ${median(per).toFixed(2)}× node:tls (rounds ${per.map((x) => x.toFixed(2)).join(' ')}); ${median(vsFirst).toFixed(2)}× eg0`);
    }
  }
  for (const p of peers) process.kill(p.pid, 'SIGTERM');
  await sleep(PROF ? 3000 : 300);
  process.exit(0);
}

main().catch((e) => {
  process.stderr.write(`${(e as Error).stack ?? e}\n`);
  process.exit(1);
});
