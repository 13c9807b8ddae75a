/**
 * echgate_event_loop_delay_seconds: a blocked event loop shows in the next
 * scrape (quantile 1 = the longest stall since the previous scrape), and the
 * interval starts again after each scrape.
 */
import assert from 'node:assert/strict';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, it } from 'node:test';
import { Metrics } from '../src/proxy/metrics.js';
import { sleep } from './helpers.js';

let srv: Server | undefined;
after(() => srv?.close());

const maxDelay = (text: string) => Number(/echgate_event_loop_delay_seconds\{process="main",quantile="1"\} ([\d.e-]+)/.exec(text)?.[1] ?? Number.NaN);

it('a 300 ms stall of the event loop is reported by the next scrape, and not by the one after', async () => {
  const m = new Metrics();
  srv = await m.serve('127.0.0.1', 0);
  const url = `http://127.0.0.1:${(srv.address() as AddressInfo).port}/metrics`;
  await sleep(50);
  await fetch(url); // starts a fresh interval
  const until = performance.now() + 300;
  while (performance.now() < until) {
    // block the loop, as a synchronous bug would
  }
  await sleep(50);
  const stalled = maxDelay(await (await fetch(url)).text());
  assert.ok(stalled >= 0.25, `max delay after a 300 ms stall: ${stalled}`);
  await sleep(100);
  const calm = maxDelay(await (await fetch(url)).text());
  assert.ok(calm < 0.25, `max delay in the next, calm interval: ${calm}`);
});

it('each scrape carries this process memory (rss, heap_total, heap_used, external, array_buffers) as echgate_process_memory_bytes', async () => {
  const m = new Metrics();
  const s = await m.serve('127.0.0.1', 0);
  try {
    const url = `http://127.0.0.1:${(s.address() as AddressInfo).port}/metrics`;
    const text = await (await fetch(url)).text();
    const got = (kind: string) => Number(new RegExp(`^echgate_process_memory_bytes\\{kind="${kind}",process="main"\\} (\\d+)$`, 'm').exec(text)?.[1] ?? Number.NaN);
    const rss = got('rss');
    const used = got('heap_used');
    assert.ok(rss > 1e6, `rss ${rss}`);
    assert.ok(used > 1e5 && used <= got('heap_total'), `heap_used ${used}, heap_total ${got('heap_total')}`);
    assert.ok(got('array_buffers') >= 0 && got('external') >= got('array_buffers'), `external ${got('external')}, array_buffers ${got('array_buffers')}`);
    assert.match(text, /^# TYPE echgate_process_memory_bytes gauge$/m);
  } finally {
    s.close();
  }
});
