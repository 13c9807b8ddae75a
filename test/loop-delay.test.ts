/**
 * echgate_event_loop_delay_seconds: a blocked event loop shows in the next
 * scrape (quantile 1 = the longest stall since the previous scrape), and the
 * interval starts again after each scrape.
 */
import assert from 'node:assert/strict';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, it } from 'node:test';
import { Metrics, watchEventLoop } from '../src/proxy/metrics.js';
import { sleep } from './helpers.js';

let srv: Server | undefined;
after(() => srv?.close());

/** The loop monitor's tick (src/proxy/metrics.ts LOOP_TICK_MS) plus rounding: the most one sample can add to an interval. */
const TICK = 0.011;

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
  const start = performance.now();
  const stalled = maxDelay(await (await fetch(url)).text());
  assert.ok(stalled >= 0.25, `max delay after a 300 ms stall: ${stalled}`);
  await sleep(100);
  const calm = maxDelay(await (await fetch(url)).text());
  // Not a speed assertion: the scrape after starts a new interval, and no delay in it can be longer
  // than the interval itself (bounded by the time since the stalled scrape was sent) plus one tick.
  // On a loaded machine the calm interval itself may see a real delay (it once saw more than 0.25 s
  // at load > 20), but never the earlier stall carried over.
  const interval = (performance.now() - start) / 1000;
  assert.ok(calm <= interval + TICK, `max delay in the next interval ${calm} s, longer than the interval (${interval} s)`);
});

it('a scrape with no tick since the previous one reports no delay, not the previous interval again', async () => {
  const m = new Metrics();
  watchEventLoop();
  const until = performance.now() + 300;
  while (performance.now() < until) {
    // block the loop
  }
  await sleep(50);
  m.sampleEventLoop('main');
  assert.ok(maxDelay(m.render()) >= 0.25);
  // Two scrapes in a row (two Prometheus servers, a dashboard and a scraper): no timer ran between them.
  m.sampleEventLoop('main');
  assert.equal(maxDelay(m.render()), 0, 'the stall was reported again by the second scrape');
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
