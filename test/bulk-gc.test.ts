/**
 * proxy/bulk-gc.ts: a process that terminates TLS sweeps dead ArrayBuffers on
 * the main thread (`--no-concurrent-array-buffer-sweeping`, set at run time by
 * the first terminated connection), unless the operator chose the sweeping
 * mode in node's flags or NODE_OPTIONS (docs/benchmarks.md, "Terminated bulk
 * upload, eleventh pass").
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, it } from 'node:test';
import tls from 'node:tls';
import { bulkGcFlag, SWEEP_FLAG, sweepDecided, sweepOnMainThread } from '../src/proxy/bulk-gc.js';
import { startTerminatingGateway } from './helpers.js';

describe('bulk GC: array buffers swept on the main thread in a terminating process', () => {
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

  it('the first terminated connection decides, once per process', async () => {
    const backend = net.createServer((s) => {
      s.on('error', () => {});
      s.on('data', (d) => s.write(d));
    });
    await new Promise<void>((r) => backend.listen(0, '127.0.0.1', () => r()));
    const name = 'gc.example.test';
    const g = await startTerminatingGateway(name, (backend.address() as net.AddressInfo).port);
    try {
      assert.equal(sweepDecided(), false, 'no terminated connection yet');
      const echoed = await new Promise<string>((resolve, reject) => {
        const t = tls.connect({ port: g.port(), host: '127.0.0.1', servername: name, rejectUnauthorized: false, minVersion: 'TLSv1.3' }, () => t.write('ping'));
        t.once('data', (d: Buffer) => {
          resolve(d.toString());
          t.destroy();
        });
        t.once('error', reject);
      });
      assert.equal(echoed, 'ping');
      assert.equal(sweepDecided(), true, 'a terminated connection sets the sweeping mode');
      const calls: string[] = [];
      assert.equal(
        sweepOnMainThread((f) => calls.push(f)),
        undefined,
      );
      assert.deepEqual(calls, [], 'set once per process');
    } finally {
      await g.close();
      backend.close();
    }
  });
});
