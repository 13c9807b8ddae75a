/**
 * The V8 heap floor of `serve` (src/cli/heap-floor.ts; docs/configuration.md,
 * "Node flags"): the flag helpers, the launcher that starts node with it, the
 * log line of a process started without it, and the V8 behaviour the floor is
 * for — terminated bulk (node:crypto records sealed by crypto/node.ts) pays a
 * mark-compact every few scavenges in the state after handshakes, and none with
 * the floor.
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { freePort } from '../src/cli/free-port.js';
import { HEAP_FLOOR_FLAG, HEAP_FLOOR_MIB, setsHeapFloor, workerExecArgv } from '../src/cli/heap-floor.js';
import { ROOT } from './helpers.js';

const run = promisify(execFile);
const BIN = join(ROOT, 'bin', 'echgate.js');

describe('heap floor flags', () => {
  it('a worker gets the primary’s node flags plus the floor; a floor the operator set stands', () => {
    assert.equal(HEAP_FLOOR_FLAG, `--initial-old-space-size=${HEAP_FLOOR_MIB}`);
    assert.deepEqual(workerExecArgv([]), [HEAP_FLOOR_FLAG]);
    assert.deepEqual(workerExecArgv(['--enable-source-maps']), ['--enable-source-maps', HEAP_FLOOR_FLAG]);
    for (const own of ['--initial-old-space-size=200', '--initial_old_space_size=200', '--initial-heap-size=300', '--initial_heap_size=300']) {
      assert.ok(setsHeapFloor([own]), own);
      assert.deepEqual(workerExecArgv(['--trace-gc', own]), ['--trace-gc', own], own);
    }
    for (const other of ['--max-old-space-size=512', '--max-semi-space-size=16', '--initial-old-space-sizes=1', 'initial-old-space-size=1']) {
      assert.ok(!setsHeapFloor([other]), other);
    }
  });
});

/** `serve` on one free loopback port; resolves with the process's node flags (/proc) and its log lines once it listens. */
async function serveOnce(argv: string[]): Promise<{ cmdline: string[]; lines: { msg: string; nodeFlag?: string }[] }> {
  const dir = mkdtempSync(join(tmpdir(), 'echgate-floor-'));
  const f = join(dir, 'echgate.yml');
  writeFileSync(f, `entryPoints: { websecure: { address: "127.0.0.1:${await freePort()}" } }\n`);
  const child = spawn(argv[0]!, [...argv.slice(1), 'serve', '--config', f], { stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: { msg: string; nodeFlag?: string }[] = [];
  let buf = '';
  try {
    await new Promise<void>((res, rej) => {
      const t = setTimeout(() => rej(new Error('serve did not start within 20 s')), 20_000);
      child.once('exit', (code) => rej(new Error(`serve exited ${code}`)));
      child.stdout.on('data', (d) => {
        buf += d;
        const parts = buf.split('\n');
        buf = parts.pop()!;
        for (const p of parts) if (p.startsWith('{')) lines.push(JSON.parse(p));
        // The heap-floor line, when there is one, comes right after the listening lines: wait a moment for it.
        if (lines.some((l) => l.msg === 'listening'))
          setTimeout(() => {
            clearTimeout(t);
            res();
          }, 300);
      });
    });
    const cmdline = readFileSync(`/proc/${child.pid}/cmdline`, 'utf8').split('\0');
    return { cmdline, lines };
  } finally {
    child.kill('SIGKILL');
  }
}

describe('serve and the heap floor', () => {
  it('bin/echgate.js run as a program starts node with the floor, and serve logs nothing about it', async () => {
    const { cmdline, lines } = await serveOnce([BIN]);
    assert.ok(cmdline.includes(HEAP_FLOOR_FLAG), cmdline.join(' '));
    assert.ok(!lines.some((l) => l.nodeFlag), JSON.stringify(lines));
  });
  it('started as `node bin/echgate.js serve` (no floor): one info line names the flag to add', async () => {
    const { cmdline, lines } = await serveOnce(['node', BIN]);
    assert.ok(!cmdline.includes(HEAP_FLOOR_FLAG));
    const said = lines.filter((l) => l.nodeFlag);
    assert.equal(said.length, 1, JSON.stringify(lines));
    assert.equal(said[0]!.nodeFlag, HEAP_FLOOR_FLAG);
  });
});

/**
 * A child process seals 160 MiB as terminated bulk does (tls13/record-crypto.ts
 * sealChunk, 64 KiB reads as four 16 KiB AES-128-GCM records) in the state
 * measured after handshakes: the young generation at its 16 MiB maximum
 * (--min-semi-space-size=16) and V8's growing factor at the 1.1 it picks when
 * almost nothing is promoted (--heap-growing-percent=10), after a full GC
 * has set the old generation's limit. Prints the
 * mark-compacts seen while sealing. About 15 MB stays live, as in `serve` after
 * handshakes (below 8 MB V8 starts no incremental marking at all).
 */
const SEAL_CHILD = `
import { PerformanceObserver, constants } from 'node:perf_hooks';
import { randomBytes } from 'node:crypto';
const { sealChunk } = await import(${JSON.stringify(join(ROOT, 'dist', 'src', 'tls13', 'record-crypto.js'))});
const keep = [];
for (let r = 0; r < 40; r++) { const t = []; for (let i = 0; i < 20000; i++) t.push({ i, s: 'x' + i, a: [i] }); keep.push(t.slice(0, 1500)); await new Promise((s) => setImmediate(s)); }
// A full GC now, as the handshakes' own mark-compacts would have run: V8 sets the old generation's limit from it.
globalThis.gc();
let major = 0;
new PerformanceObserver((l) => { for (const e of l.getEntries()) if (e.detail?.kind === constants.NODE_PERFORMANCE_GC_MAJOR) major++; }).observe({ entryTypes: ['gc'] });
const key = randomBytes(16), chunk = randomBytes(65536), nonce = new Uint8Array(12);
let into;
for (let n = 0; n < 160 * 16; n++) {
  into = sealChunk('aes-128-gcm', key, { nonceAt: () => nonce }, 0, chunk, 23, n % 2 ? into : undefined);
  if (n % 32 === 0) await new Promise((s) => setImmediate(s));
}
await new Promise((s) => setTimeout(s, 100));
process.stdout.write(String(major) + ' ' + keep.length);
`;

describe('why: terminated bulk and V8 old-generation room (docs/benchmarks.md, seventh pass)', () => {
  const sealIn = async (flags: string[]) => {
    const { stdout } = await run('node', [...flags, '--heap-growing-percent=10', '--min-semi-space-size=16', '--expose-gc', '--input-type=module', '-e', SEAL_CHILD], { timeout: 60_000 });
    return Number(stdout.split(' ')[0]);
  };
  it('without the floor, sealing pays repeated mark-compacts; with it, at most one', async () => {
    const without = await sealIn([]);
    const withFloor = await sealIn([HEAP_FLOOR_FLAG]);
    assert.ok(without >= 3, `mark-compacts without the floor: ${without}`);
    assert.ok(withFloor <= 1, `mark-compacts with the floor: ${withFloor}`);
  });
});
