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
