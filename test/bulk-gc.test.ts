/**
 * cli/bulk-gc.ts: `serve` sweeps dead ArrayBuffers on the main thread
 * (`--no-concurrent-array-buffer-sweeping`, set at run time), unless the
 * operator chose the sweeping mode in node's flags or NODE_OPTIONS
 * (docs/benchmarks.md, "Terminated bulk upload, eleventh pass").
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { bulkGcFlag, SWEEP_FLAG, sweepOnMainThread } from '../src/cli/bulk-gc.js';

describe('bulk GC: array buffers swept on the main thread in serve', () => {
  it('sets the flag when node was started without a choice of its own', () => {
    assert.equal(bulkGcFlag([]), SWEEP_FLAG);
    assert.equal(bulkGcFlag(['--initial-old-space-size=96', '--max-semi-space-size=16'], '--enable-source-maps'), SWEEP_FLAG);
    // Only the whole flag name counts.
    assert.equal(bulkGcFlag(['--concurrent-array-buffer-sweepings', 'concurrent-array-buffer-sweeping']), SWEEP_FLAG);
  });

  it("keeps the operator's choice: either spelling, either sense, --single-threaded-gc, in execArgv or NODE_OPTIONS", () => {
    for (const a of ['--concurrent-array-buffer-sweeping', '--no-concurrent-array-buffer-sweeping', '--concurrent_array_buffer_sweeping', '--no-concurrent_array_buffer_sweeping', '--single-threaded-gc', '--single_threaded_gc']) {
      assert.equal(bulkGcFlag([a]), undefined, a);
      assert.equal(bulkGcFlag([], `--max-old-space-size=512 ${a}`), undefined, `NODE_OPTIONS ${a}`);
    }
  });

  it('sets the flag once per process', () => {
    const calls: string[] = [];
    const set = (f: string) => calls.push(f);
    // This test process runs without a choice of its own (node --test passes none).
    assert.equal(sweepOnMainThread(set), SWEEP_FLAG);
    assert.equal(sweepOnMainThread(set), undefined);
    assert.deepEqual(calls, [SWEEP_FLAG]);
  });
});
