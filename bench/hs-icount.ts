/**
 * Instructions per full TLS 1.3 handshake of a terminating proxy, counted by
 * valgrind (cachegrind without its cache model, "I refs" of the whole
 * process): echgate `serve` builds beside the node:tls terminating proxy
 * (bench/tls-proxy.ts), the same one-byte backend, the same node:tls client
 * (handshake, one byte each way, end). A count that the machine's load does
 * not move (docs/benchmarks.md, "Termination handshake, tenth pass"); not CPU
 * time (a cache miss costs no instruction), read beside term-ab's figures.
 *
 * Method (as bench/workers-icount.ts): per target, two runs under valgrind,
 * each with the same warm-up of W handshakes, then M1 (run A) or M2 (run B)
 * more; per handshake = (I_B − I_A) / (M2 − M1): start-up, warm-up and exit
 * cancel out. The clients run natively in this process.
 *
 * Usage: node dist/bench/hs-icount.js [--w W] [--m1 M1] [--m2 M2] [--repeat R] ROOT... [node:tls]
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { freePort } from '../src/cli/free-port.js';
import { children, loop, median, SERVE_NODE_FLAGS, takeOption, waitPort } from './util.js';

const HERE = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const args = process.argv.slice(2);
const W = Number(takeOption(args, 'w', '200'));
const M1 = Number(takeOption(args, 'm1', '100'));
const M2 = Number(takeOption(args, 'm2', '400'));
const REPEAT = Number(takeOption(args, 'repeat', '1'));
const NAME = 'app.example.test';
const ctx = tls.createSecureContext({});

const handshakes = (port: number, n: number) =>
  loop(n, 4, () => {
    const s = tls.connect({ port, host: '127.0.0.1', servername: NAME, secureContext: ctx, rejectUnauthorized: false, minVersion: 'TLSv1.3' });
    s.once('secureConnect', () => s.write('x'));
    s.once('data', () => s.end());
    return s;
  });

async function run(dir: string, target: string, backend: number, m: number): Promise<number> {
  const port = await freePort();
  let cmd: string[];
  if (target === 'node:tls') {
    cmd = ['node', join(HERE, 'dist', 'bench', 'tls-proxy.js'), join(dir, 'c.pem'), join(dir, 'k.pem'), `${port}:${backend}`];
  } else {
    const file = join(dir, 'eg.yml');
    writeFileSync(
      file,
      `log: { level: warn }
entryPoints:
  term: { address: "127.0.0.1:${port}", maxConnections: 100000 }
tls:
  certificates: [{ certFile: "${join(dir, 'c.pem')}", keyFile: "${join(dir, 'k.pem')}" }]
tcp:
  routers:
    term: { entryPoints: [term], rule: "HostSNI(\`*\`)", service: byte, tls: {} }
  services:
    byte: { loadBalancer: { servers: [{ address: "127.0.0.1:${backend}" }] } }
`,
    );
    cmd = ['node', ...SERVE_NODE_FLAGS, join(resolve(target), 'bin', 'echgate.js'), 'serve', '--config', file];
  }
  const p = spawn('valgrind', ['--tool=cachegrind', '--cache-sim=no', '--cachegrind-out-file=/dev/null', ...cmd], { stdio: ['ignore', 'ignore', 'pipe'] });
  children.push(p);
  let err = '';
  p.stderr!.on('data', (d) => {
    err += String(d);
  });
  // Start-up under valgrind takes minutes on a busy machine.
  for (let i = 0; ; i++) {
    try {
      await waitPort(port);
      break;
    } catch (e) {
      if (i === 60 || p.exitCode !== null) throw e;
    }
  }
  await handshakes(port, W);
  await handshakes(port, m);
  p.kill('SIGTERM');
  await new Promise((done) => p.once('exit', done));
  const refs = /==\d+== I\s+refs:\s+([\d,]+)/.exec(err);
  if (!refs) throw new Error(`no valgrind summary:\n${err.slice(-1500)}`);
  return Number(refs[1]!.replaceAll(',', ''));
}

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'hs-icount-'));
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-subj', `/CN=${NAME}`, '-addext', `subjectAltName=DNS:${NAME}`, '-keyout', join(dir, 'k.pem'), '-out', join(dir, 'c.pem')], { stdio: 'ignore' });
  const be = spawn('node', [join(HERE, 'dist', 'bench', 'backend.js'), 'byte'], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(be);
  const backend = await new Promise<number>((r) => be.stdout!.on('data', (d) => r(Number(/PORT (\d+)/.exec(String(d))?.[1]))));
  const out = new Map<string, number[]>(args.map((t) => [t, []]));
  for (let r = 0; r < REPEAT; r++) {
    for (const t of args) {
      const a = await run(dir, t, backend, M1);
      const b = await run(dir, t, backend, M2);
      out.get(t)!.push((b - a) / (M2 - M1));
      process.stderr.write(`repeat ${r + 1} ${t}: ${((b - a) / (M2 - M1) / 1e6).toFixed(3)} M instructions per handshake (A ${a}, B ${b})\n`);
    }
  }
  const ref = out.get('node:tls');
  process.stdout.write(`Node ${process.version}; valgrind cachegrind (no cache model); warm-up ${W}, then ${M1} vs ${M2} handshakes; ${REPEAT} repeat(s), medians\n`);
  for (const [t, v] of out) {
    process.stdout.write(`${t}\t${(median(v) / 1e6).toFixed(3)} M per handshake${ref && t !== 'node:tls' ? ` = ${(median(v) / median(ref)).toFixed(3)}× node:tls` : ''} (${v.map((x) => (x / 1e6).toFixed(3)).join(' ')})\n`);
  }
  be.kill();
  rmSync(dir, { recursive: true, force: true });
  process.exit(0);
}

main().catch((e) => {
  console.error(e);
  for (const c of children) c.kill('SIGKILL');
  process.exit(1);
});
