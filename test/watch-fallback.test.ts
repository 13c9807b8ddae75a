/**
 * keys/watch.ts: a path that cannot be watched (fs.watch throws EMFILE/ENOSPC
 * when the host's inotify instances or watches are used up) or whose watcher
 * fails later is polled instead: the change is still seen, the caller is told
 * once, and nothing throws or emits an unhandled 'error'. (The keyring, serve
 * and the workers' primary watch through it; before, serve refused to start
 * when fs.watch threw. Not driven end to end here: that would mean using up
 * the host's inotify instances, which other processes share.)
 */
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import type { FSWatcher } from 'node:fs';
import { mkdtempSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { watchPath } from '../src/keys/watch.js';
import { sleep } from './helpers.js';

function emfile(): FSWatcher {
  const e = new Error('EMFILE: too many open files, watch') as NodeJS.ErrnoException;
  e.code = 'EMFILE';
  throw e;
}

/** Resolves when `pred` holds, polling every 20 ms, or rejects after `ms`. */
async function until(pred: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

describe('keys/watch: a watch that cannot be had becomes a poll', () => {
  it('fs.watch throws EMFILE: polled, told once, a rename over the file is seen', async () => {
    const d = mkdtempSync(join(tmpdir(), 'echgate-watch-'));
    const f = join(d, 'c.yml');
    writeFileSync(f, 'a: 1\n');
    const told: Error[] = [];
    let changes = 0;
    const w = watchPath(f, () => changes++, { watchImpl: emfile, pollMs: 50, onFallback: (e) => told.push(e) });
    try {
      assert.equal(w.polling, true);
      assert.equal(told.length, 1);
      assert.match(told[0]!.message, /EMFILE/);
      await sleep(120);
      writeFileSync(join(d, 'c.yml.tmp'), 'a: 2\n');
      renameSync(join(d, 'c.yml.tmp'), f); // an atomic replace: a new inode
      await until(() => changes > 0, 3000, 'the polled change');
    } finally {
      w.close();
    }
  });

  it('a folder: an entry renamed in is seen by the poll', async () => {
    const d = mkdtempSync(join(tmpdir(), 'echgate-watch-'));
    let changes = 0;
    const w = watchPath(d, () => changes++, { watchImpl: emfile, pollMs: 50 });
    try {
      await sleep(120);
      writeFileSync(join(d, '.k.tmp'), 'x');
      renameSync(join(d, '.k.tmp'), join(d, 'k.pem'));
      await until(() => changes > 0, 3000, 'the folder change');
    } finally {
      w.close();
    }
  });

  it("a watcher that emits 'error' later: no unhandled error, polled from then on, told once", async () => {
    const d = mkdtempSync(join(tmpdir(), 'echgate-watch-'));
    const fake = new EventEmitter() as EventEmitter & { close(): void; closed?: boolean };
    fake.close = () => {
      fake.closed = true;
    };
    const told: Error[] = [];
    let changes = 0;
    const w = watchPath(d, () => changes++, { watchImpl: () => fake as unknown as FSWatcher, pollMs: 50, onFallback: (e) => told.push(e) });
    try {
      assert.equal(w.polling, false);
      fake.emit('error', new Error('ENOSPC: System limit for number of file watchers reached'));
      fake.emit('error', new Error('again'));
      assert.equal(w.polling, true);
      assert.equal(told.length, 1);
      assert.equal(fake.closed, true, 'the failed watcher is closed');
      await sleep(120);
      writeFileSync(join(d, 'n'), 'x');
      await until(() => changes > 0, 3000, 'the change after the fallback');
    } finally {
      w.close();
    }
  });

  it('fs.watch available: watched, not polled, nobody told', async () => {
    const d = mkdtempSync(join(tmpdir(), 'echgate-watch-'));
    let told = 0;
    let changes = 0;
    const w = watchPath(d, () => changes++, { onFallback: () => told++ });
    try {
      assert.equal(w.polling, false);
      writeFileSync(join(d, 'n'), 'x');
      await until(() => changes > 0, 3000, 'the watched change');
      assert.equal(told, 0);
    } finally {
      w.close();
    }
  });
});
