/**
 * Passthrough bulk, builds side by side: one connection per round through a
 * passthrough router to bench/backend.ts `stream` (the backend streams
 * BYTES after the captured hello), each build's serve CPU per GB (schedstat,
 * all threads), rounds interleaved with the order reversed every round,
 * medians. The same load as `npm run bench`'s bulk row, without HAProxy (the
 * HAProxy ratio is that run's): what this tells is whether a change moved the
 * relay's bulk cost against the base build in the same run.
 *
 * Usage: npm run build && node dist/bench/pass-bulk.js [--rounds R] [--mib M] NAME=ROOT ...
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '../src/cli/free-port.js';
import { cpuNs } from './cpu.js';
import { children, median, SERVE_NODE_FLAGS, start, takeOption, waitPort } from './util.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const args = process.argv.slice(2);
const opt = (name: string, def: string) => takeOption(args, name, def);
const ROUNDS = Number(opt('rounds', '5'));
const BYTES = Number(opt('mib', '512')) << 20;
const capture = readFileSync(join(ROOT, 'test', 'vectors', 'captures', 'chr-ech2a-app-alpn.bin'));

/** CPU time of a process in ms, from schedstat (bench/cpu.ts cpuNs: fine-grained, unlike cpuMs's ticks). */
const cpuNsMs = (pid: number): number => cpuNs(pid) / 1e6;

function bulk(port: number): Promise<void> {
  return new Promise((res, rej) => {
    let got = 0;
    const s = net.connect(port, '127.0.0.1', () => s.write(capture));
    s.on('data', (d) => {
      got += d.length;
    });
    s.once('error', rej);
    s.once('close', () => (got === BYTES ? res() : rej(new Error(`bulk got ${got} of ${BYTES}`))));
  });
}

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'echgate-pass-bulk-'));
  const stream = Number((await start('node', [join(ROOT, 'dist', 'bench', 'backend.js'), 'stream', String(BYTES)], /PORT (\d+)/)).match[1]);
  const builds: { name: string; pid: number; port: number; proc: ChildProcess }[] = [];
  for (const a of args) {
    const [name, root] = a.split('=');
    const port = await freePort();
    const cfg = join(dir, `${name}.yml`);
    writeFileSync(
      cfg,
      `log: { level: warn }
entryPoints:
  bulk: { address: "127.0.0.1:${port}" }
tcp:
  routers:
    bulk: { entryPoints: [bulk], rule: "HostSNI(\`public.example.test\`)", service: stream, tls: { passthrough: true } }
  services:
    stream: { loadBalancer: { servers: [{ address: "127.0.0.1:${stream}" }] } }
`,
    );
    const proc = spawn('node', [...SERVE_NODE_FLAGS, join(resolve(root!), 'bin', 'echgate.js'), 'serve', '--config', cfg], { stdio: ['ignore', 'ignore', 'inherit'] });
    children.push(proc);
    await waitPort(port);
    builds.push({ name: name!, pid: proc.pid!, port, proc });
  }
  const load = () => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  const out = [`load average at start: ${load()}`];
  for (const b of builds) await bulk(b.port); // warm-up
  const res: Record<string, number[]> = {};
  for (let r = 0; r < ROUNDS; r++) {
    for (const b of r % 2 === 0 ? builds : [...builds].reverse()) {
      const c0 = cpuNsMs(b.pid);
      await bulk(b.port);
      const gbPerCpuS = BYTES / 1e9 / ((cpuNsMs(b.pid) - c0) / 1000);
      if (!res[b.name]) res[b.name] = [];
      res[b.name]!.push(gbPerCpuS);
      process.stderr.write(`round ${r + 1} ${b.name}: ${gbPerCpuS.toFixed(2)} GB per CPU-second\n`);
    }
  }
  const first = builds[0]!.name;
  out.push(`passthrough bulk (${BYTES >> 20} MiB per round, one connection, ${ROUNDS} rounds, medians, GB per CPU-second of serve):`);
  for (const b of builds) {
    const xs = res[b.name]!;
    out.push(`  ${b.name}: ${median(xs).toFixed(2)} (rounds ${xs.map((x) => x.toFixed(2)).join(' ')}) = ${(median(xs) / median(res[first]!)).toFixed(2)}× ${first}`);
  }
  out.push(`load average at end: ${load()}`);
  process.stdout.write(`${out.join('\n')}\n`);
  for (const c of children) c.kill('SIGTERM');
  process.exit(0);
}

main().catch((e) => {
  process.stderr.write(`${e.stack ?? e}\n`);
  process.exit(1);
});
