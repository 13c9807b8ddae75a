/**
 * The key folder lock across processes: one holder at a time, a dead
 * holder's lock taken over by exactly one of several writers, and two
 * `keys rotate` run at once both rotating, one after the other, no key lost.
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { generateKey, listKeys, rotateKeys } from '../src/keys/manager.js';
import { ROOT } from './helpers.js';

const run = promisify(execFile);
const BIN = join(ROOT, 'bin', 'echgate.js');

describe('key folder lock', () => {
  it('several processes racing for a dead holder\'s lock: one holder at a time, every critical section runs', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'echgate-lock-'));
    // A lock left by a process that no longer exists: every worker sees it dead at the same moment.
    writeFileSync(join(dir, '.lock.1'), '999999999\n2026-01-01T00:00:00.000Z\n');
    writeFileSync(join(dir, 'counter'), '0');
    const store = join(ROOT, 'dist', 'src', 'keys', 'store.js');
    // Each worker: 10 times, under the lock, claim an "inside" marker with O_EXCL (fails if another
    // holder is inside), read the counter, wait, write it + 1, release the marker.
    const worker = `
      import { KeyDir } from ${JSON.stringify(store)};
      import { openSync, closeSync, readFileSync, writeFileSync, unlinkSync } from 'node:fs';
      const dir = ${JSON.stringify(dir)};
      const kd = new KeyDir(dir);
      const nap = (ms) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
      // Start together, so that the dead holder is seen by all at once.
      while (Date.now() < START) {}
      for (let i = 0; i < 10; i++) {
        kd.withLock(() => {
          closeSync(openSync(dir + '/inside', 'wx'));
          const n = Number(readFileSync(dir + '/counter', 'utf8'));
          nap(2);
          writeFileSync(dir + '/counter', String(n + 1));
          unlinkSync(dir + '/inside');
        }, { waitMs: 30000 });
      }`;
    const start = Date.now() + 1500;
    const workers = Array.from({ length: 4 }, () => run('node', ['--input-type=module', '-e', worker.replace('START', String(start))], { timeout: 60_000 }));
    const results = await Promise.allSettled(workers);
    assert.deepEqual(
      results.map((r) => (r.status === 'rejected' ? String((r.reason as { stderr?: string }).stderr ?? r.reason) : 'ok')),
      ['ok', 'ok', 'ok', 'ok'],
    );
    assert.equal(readFileSync(join(dir, 'counter'), 'utf8'), '40', 'no critical section was lost or overlapped');
  });

  it('`keys rotate` run by four processes at once: all rotate, one after the other; one active key after, none lost', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'echgate-rotate-'));
    const first = generateKey(dir, { publicName: 'public.example.test' });
    const n = 4;
    const outs = await Promise.all(Array.from({ length: n }, () => run('node', [BIN, 'keys', 'rotate', '--dir', dir, '--grace', '1h'], { timeout: 30_000 })));
    const created = outs.map((o) => Number(/new active key config_id (\d+)/.exec(o.stdout)![1]));
    const demoted = outs.map((o) => Number(/decrypt-only: (\d+) until/.exec(o.stdout)![1]));
    const after = listKeys(dir).keys;
    assert.equal(after.length, n + 1, 'the first key and one new key per rotation');
    assert.ok(after.some((k) => k.meta.configId === first.configId), 'the first key is kept');
    const active = after.filter((k) => k.meta.state === 'active').map((k) => k.meta.configId);
    assert.equal(active.length, 1, `one active key, not ${active.length}`);
    assert.equal(after.filter((k) => k.meta.state === 'decrypt-only').length, n);
    // Serial: each rotation demoted exactly one key, each key was demoted once, and the chain runs
    // from the first key through every created key to the one left active.
    assert.deepEqual([...demoted].sort(), [first.configId, ...created.filter((c) => c !== active[0])].sort(), JSON.stringify({ first: first.configId, created, demoted }));
  });

  it('a rotation reads the folder under the lock: a change made by the holder it waited for is seen, not overwritten', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'echgate-rotate-'));
    const a = generateKey(dir, { publicName: 'public.example.test' });
    // Another writer holds the lock and retires key a meanwhile.
    const holder = spawn('node', ['--input-type=module', '-e', `
      import { KeyDir } from ${JSON.stringify(join(ROOT, 'dist', 'src', 'keys', 'store.js'))};
      const kd = new KeyDir(${JSON.stringify(dir)});
      kd.withLock(() => {
        process.stdout.write('locked\\n');
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 400);
        const k = kd.load().keys[0];
        kd.writeMeta({ ...k.meta, state: 'retired', notAfter: new Date().toISOString() });
        kd.deleteKeyFile(k.meta.configId);
      });`], { stdio: ['ignore', 'pipe', 'inherit'] });
    const exited = new Promise((r) => holder.once('exit', r));
    await new Promise<void>((r) => holder.stdout.once('data', () => r()));
    const r = rotateKeys(dir, { publicName: 'public.example.test', graceMs: 3_600_000 });
    assert.equal(await exited, 0);
    assert.deepEqual(r.demoted, [], 'nothing left to demote: a was retired before the rotation read the folder');
    const after = new Map(listKeys(dir).keys.map((k) => [k.meta.configId, k.meta.state]));
    assert.equal(after.get(a.configId), 'retired', 'the retirement is not overwritten with decrypt-only');
    assert.equal(after.get(r.created.configId), 'active');
  });
});
