/**
 * Load-independent counts for the passthrough path, per build: bytes the V8
 * heap allocates per relayed connection and scavenges per 1000 connections
 * (serve under `--trace-gc-nvp`: the sum of each GC's `allocated=` over the
 * measured connections), and the same for the naive Node proxy
 * (bench/naive-proxy.ts). The load is ab-proxy's `conn` load: the captured
 * Chromium hello through a passthrough router to a one-byte backend,
 * concurrency 50. CPU time moves with the machine's load; allocation per
 * connection does not (only which GC line falls at the window's edges: at
 * most one young generation, ≈ 16 MB, spread over N connections).
 *
 * With `--idle N DIR`, instead: what one idle relayed connection holds. A
 * fresh serve per build with one catch-all passthrough router to a backend
 * that holds connections (util.ts idleMemoryConfig); a heap snapshot before
 * and after N connections each sent the captured hello and went quiet, and
 * bench/heap-diff.ts's count per constructor, divided by N (DIR keeps the
 * snapshots).
 *
 * Usage: npm run build && node dist/bench/pass-alloc.js [N] ROOT_A ROOT_B ...
 *        node dist/bench/pass-alloc.js --idle N DIR ROOT_A ROOT_B ...
 *   (ROOT: a folder with bin/echgate.js and dist/; `naive` for the naive proxy, not with --idle;
 *    ROOT#SETTINGS adds entrypoint settings for that build, e.g. `.#maxConnectionsPerIP: 100000`)
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '../src/cli/free-port.js';
import { children, connLoad, idleMemoryConfig, openIdle, SERVE_NODE_FLAGS, sleep, start, waitPort } from './util.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const args = process.argv.slice(2);
const IDLE = args[0] === '--idle' ? { n: Number(args[1]), dir: resolve(args[2]!) } : undefined;
if (IDLE) args.splice(0, 3);
const N = /^\d+$/.test(args[0] ?? '') ? Number(args.shift()) : 30_000;
const WARM = 3000;
const capture = readFileSync(join(ROOT, 'test', 'vectors', 'captures', 'chr-ech2a-app-alpn.bin'));

/** The GC lines a process printed so far: allocated bytes and kinds. */
function gcLines(out: string): { allocated: number; kind: string }[] {
  const rows: { allocated: number; kind: string }[] = [];
  for (const line of out.split('\n')) {
    const a = line.match(/ allocated=(\d+)/);
    const k = line.match(/ gc=(\w+)/);
    if (a && k) rows.push({ allocated: Number(a[1]), kind: k[1]! });
  }
  return rows;
}

/** The newest snapshot in `dir` once its size stops growing (--heapsnapshot-signal writes it synchronously, then the process goes on). */
async function snapshot(pid: number, dir: string): Promise<string> {
  const before = new Set(readdirSync(dir));
  process.kill(pid, 'SIGUSR2');
  for (let i = 0; i < 600; i++) {
    await sleep(200);
    const fresh = readdirSync(dir).filter((f) => !before.has(f) && f.endsWith('.heapsnapshot'));
    if (fresh.length === 1) {
      const f = join(dir, fresh[0]!);
      const a = readFileSync(f).length;
      await sleep(1000);
      if (a > 0 && readFileSync(f).length === a) return f;
    }
  }
  throw new Error('no heap snapshot');
}

async function idle(): Promise<void> {
  const { n, dir: snapDir } = IDLE!;
  mkdirSync(snapDir, { recursive: true });
  const hold = Number((await start('node', [join(ROOT, 'dist', 'bench', 'backend.js'), 'hold'], /PORT (\d+)/)).match[1]);
  const dir = mkdtempSync(join(tmpdir(), 'echgate-pass-idle-'));
  for (const root of args) {
    const port = await freePort();
    const cfg = join(dir, `${port}.yml`);
    // The configuration carries a certificate (for its terminated twin); a passthrough router never uses it.
    const cert = join(dir, 'c.pem');
    const key = join(dir, 'k.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-subj', '/CN=x', '-keyout', key, '-out', cert], { stdio: 'ignore' });
    writeFileSync(cfg, idleMemoryConfig(port, hold, false, cert, key));
    const sub = join(snapDir, root.replace(/\W/g, '_'));
    mkdirSync(sub, { recursive: true });
    const proc = spawn('node', [...SERVE_NODE_FLAGS, '--heapsnapshot-signal=SIGUSR2', `--diagnostic-dir=${sub}`, join(resolve(root), 'bin', 'echgate.js'), 'serve', '--config', cfg], { stdio: ['ignore', 'ignore', 'inherit'] });
    children.push(proc);
    await waitPort(port);
    for (const s of await openIdle(port, false, 200, 'x', capture)) s.destroy();
    await sleep(1000);
    const a = await snapshot(proc.pid!, sub);
    const socks = await openIdle(port, false, n, 'x', capture);
    await sleep(1500);
    const b = await snapshot(proc.pid!, sub);
    const diff = execFileSync('node', [join(ROOT, 'dist', 'bench', 'heap-diff.js'), a, b, String(n), '25']).toString();
    process.stdout.write(`== ${root}: what one idle relayed connection holds (${n} open)\n${diff}`);
    for (const s of socks) s.destroy();
    proc.kill('SIGTERM');
    await new Promise((r) => proc.once('exit', r));
  }
  for (const c of children) c.kill('SIGTERM');
  process.exit(0);
}

async function main() {
  if (IDLE) return idle();
  const dir = mkdtempSync(join(tmpdir(), 'echgate-pass-alloc-'));
  const backend = await start('node', [join(ROOT, 'dist', 'bench', 'backend.js'), 'byte'], /PORT (\d+)/);
  const byte = Number(backend.match[1]);
  const out: string[] = [`load average at start: ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`];
  for (const arg of args) {
    // ROOT#SETTINGS: more settings for that build's entrypoint (e.g. `.#maxConnectionsPerIP: 100000`).
    const [root, extra] = arg.split('#') as [string, string | undefined];
    const port = await freePort();
    let proc: ChildProcess;
    if (root === 'naive') {
      proc = spawn('node', ['--trace-gc-nvp', join(ROOT, 'dist', 'bench', 'naive-proxy.js'), String(port), String(byte)], { stdio: ['ignore', 'pipe', 'inherit'] });
    } else {
      const cfg = join(dir, `${port}.yml`);
      writeFileSync(
        cfg,
        `log: { level: warn }
entryPoints:
  conn: { address: "127.0.0.1:${port}", maxConnections: 100000${extra ? `, ${extra}` : ''} }
tcp:
  routers:
    conn: { entryPoints: [conn], rule: "HostSNI(\`public.example.test\`)", service: byte, tls: { passthrough: true } }
  services:
    byte: { loadBalancer: { servers: [{ address: "127.0.0.1:${byte}" }] } }
`,
      );
      proc = spawn('node', [...SERVE_NODE_FLAGS, '--trace-gc-nvp', join(resolve(root), 'bin', 'echgate.js'), 'serve', '--config', cfg], { stdio: ['ignore', 'pipe', 'inherit'] });
    }
    children.push(proc);
    let text = '';
    proc.stdout!.on('data', (d: Buffer) => {
      text += d.toString();
    });
    await waitPort(port);
    await connLoad(port, WARM, 50, capture);
    await sleep(200);
    const before = gcLines(text).length;
    await connLoad(port, N, 50, capture);
    await sleep(200);
    const rows = gcLines(text).slice(before);
    const bytes = rows.reduce((t, r) => t + r.allocated, 0);
    const scav = rows.filter((r) => r.kind === 's').length;
    const full = rows.length - scav;
    out.push(`${root}: ${(bytes / N).toFixed(0)} bytes allocated per connection, ${((scav * 1000) / N).toFixed(2)} scavenges and ${((full * 1000) / N).toFixed(3)} other GCs per 1000 connections (${N} connections, ${rows.length} GCs)`);
    proc.kill('SIGTERM');
    await new Promise((r) => proc.once('exit', r));
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
