/**
 * Node API calls per passthrough connection, per proxy (issue #8: which
 * calls does echgate make that the naive Node proxy does not?). Each proxy
 * runs under bench/pass-calls-hook.ts, takes 1 000 warm-up connections of
 * ab-proxy's `conn` load (the captured Chromium hello, one-byte backend,
 * 50 at a time), then N counted ones. Counts, not time: load does not move
 * them.
 *
 *   node dist/bench/pass-calls.js [--conns N] BUILD... [naive]
 *
 * BUILD is a folder with bin/echgate.js; `naive` is bench/naive-proxy.ts.
 * Prints a table of calls per connection (rows that differ by ≥ 0.01 first).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '../src/cli/free-port.js';
import { children, connLoad, SERVE_NODE_FLAGS, sleep, start, takeOption, waitPort } from './util.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const args = process.argv.slice(2);
const CONNS = Number(takeOption(args, 'conns', '3000'));
const capture = readFileSync(join(ROOT, 'test', 'vectors', 'captures', 'chr-ech2a-app-alpn.bin'));
const HOOK = join(ROOT, 'dist', 'bench', 'pass-calls-hook.js');

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'pass-calls-'));
  const byte = Number((await start('node', [join(ROOT, 'dist', 'bench', 'backend.js'), 'byte'], /PORT (\d+)/)).match[1]);
  const table = new Map<string, number[]>();
  for (const [i, t] of args.entries()) {
    const port = await freePort();
    const out = join(dir, `${i}.json`);
    const env = { ...process.env, PASS_CALLS_OUT: out };
    let proc: ChildProcess;
    if (t === 'naive') proc = spawn('node', [...SERVE_NODE_FLAGS, '--import', HOOK, join(ROOT, 'dist', 'bench', 'naive-proxy.js'), String(port), String(byte)], { stdio: 'ignore', env });
    else {
      const cfg = join(dir, `${i}.yml`);
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
      proc = spawn('node', [...SERVE_NODE_FLAGS, '--import', HOOK, join(resolve(t), 'bin', 'echgate.js'), 'serve', '--config', cfg], { stdio: ['ignore', 'ignore', 'inherit'], env });
    }
    children.push(proc);
    await waitPort(port);
    await connLoad(port, 1000, 50, capture);
    await sleep(300);
    proc.kill('SIGWINCH');
    await sleep(300);
    await connLoad(port, CONNS, 50, capture);
    await sleep(500);
    proc.kill('SIGPWR');
    await sleep(500);
    const c = JSON.parse(readFileSync(out, 'utf8')) as Record<string, number>;
    for (const [k, v] of Object.entries(c)) {
      if (!table.has(k)) table.set(k, args.map(() => 0));
      table.get(k)![i] = v / CONNS;
    }
    proc.kill('SIGTERM');
  }
  const rows = [...table].sort((a, b) => Math.max(...b[1]) - Math.min(...b[1]) - (Math.max(...a[1]) - Math.min(...a[1])));
  console.log(`calls per connection (${CONNS} connections after 1000 warm-up)\n${args.join('\t')}\tcall`);
  let tot = args.map(() => 0);
  for (const [k, v] of rows) {
    if (Math.max(...v) < 0.01) continue;
    tot = tot.map((x, i) => x + v[i]!);
    console.log(`${v.map((x) => x.toFixed(2)).join('\t')}\t${k}`);
  }
  console.log(`${tot.map((x) => x.toFixed(2)).join('\t')}\ttotal`);
  process.exit(0);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
