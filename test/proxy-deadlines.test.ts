/**
 * The ClientHello and backend connect deadlines (proxy/deadlines.ts): one list
 * per duration with one node timer, no timer per connection. Each deadline
 * fires no earlier than its configured duration and within a bound after it;
 * a removed entry never fires; the timer is not cleared when the list
 * empties (one node timer per duration of time, not per connection), yet an
 * entry added while it is armed for a removed one still waits its own
 * duration, and a list whose timer fired with nothing left holds none. End to end: a backend that never accepts is cut at connectTimeout
 * (the client that sends nothing and the idle relay are in
 * test/metrics-outcomes.test.ts and test/proxy.test.ts).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import net from 'node:net';
import { describe, it } from 'node:test';
import { type DeadlineEntry, DeadlineList } from '../src/proxy/deadlines.js';
import { sleep, startGateway, vector } from './helpers.js';

const entry = (): DeadlineEntry & { fired?: number } => ({ dlAt: 0, dlPrev: undefined, dlNext: undefined, dlList: undefined });
const armed = (l: DeadlineList) => l.armed;

describe('DeadlineList', () => {
  it('fires each entry no earlier than its duration, in the order added, and then holds no timer', async () => {
    const order: number[] = [];
    const t0 = performance.now();
    const fired = new Map<DeadlineEntry, number>();
    const l = new DeadlineList(80, (e) => fired.set(e, performance.now()));
    const a = entry();
    const b = entry();
    l.add(a);
    await sleep(20);
    const tb = performance.now();
    l.add(b);
    assert.equal(l.size, 2);
    for (let i = 0; i < 100 && fired.size < 2; i++) await sleep(20);
    assert.equal(fired.size, 2);
    order.push(fired.get(a)!, fired.get(b)!);
    assert.ok(order[0]! - t0 >= 80, `a fired after ${order[0]! - t0} ms`);
    assert.ok(order[1]! - tb >= 80, `b fired after ${order[1]! - tb} ms`);
    assert.ok(order[0]! <= order[1]!);
    assert.equal(l.size, 0);
    assert.equal(armed(l), false);
    assert.equal(a.dlList, undefined);
  });

  it('never fires a removed entry; the timer stays armed when the last one leaves, and is gone once it fired', async () => {
    const fired: DeadlineEntry[] = [];
    const l = new DeadlineList(40, (e) => fired.push(e));
    const a = entry();
    const b = entry();
    l.add(a);
    l.add(b);
    l.remove(a);
    assert.equal(l.size, 1);
    l.remove(b);
    assert.equal(armed(l), true, 'not cleared per connection');
    l.remove(b); // twice: nothing
    await sleep(120);
    assert.deepEqual(fired, []);
    assert.equal(armed(l), false, 'an empty list holds no timer once its timer has fired');
  });

  it('an entry added while the timer is armed for a removed one expires at its own deadline, not earlier', async () => {
    const fired: { e: DeadlineEntry; at: number }[] = [];
    const l = new DeadlineList(80, (e) => fired.push({ e, at: performance.now() }));
    const a = entry();
    l.add(a);
    l.remove(a);
    await sleep(40);
    const b = entry();
    const added = performance.now();
    l.add(b);
    for (let i = 0; i < 100 && fired.length === 0; i++) await sleep(20);
    assert.deepEqual(
      fired.map((f) => f.e),
      [b],
      'only the entry still in the list expires',
    );
    assert.ok(fired[0]!.at - added >= 79, `expired ${(fired[0]!.at - added).toFixed(1)} ms after it was added, before its 80 ms`);
    await sleep(20);
    assert.equal(armed(l), false);
  });

  it('moves an entry that is added again to the back of the list (one deadline at a time)', async () => {
    const fired: DeadlineEntry[] = [];
    const l = new DeadlineList(60, (e) => fired.push(e));
    const other = new DeadlineList(10_000, () => assert.fail('the first deadline fired'));
    const a = entry();
    other.add(a);
    l.add(a);
    assert.equal(other.size, 0);
    for (let i = 0; i < 100 && fired.length === 0; i++) await sleep(20);
    assert.deepEqual(fired, [a]);
  });
});

/** A listener that never accepts (python: listen(0), never accept()) whose queue the test fills: later SYNs are dropped. */
async function neverAccepts(): Promise<{ port: number; close(): void; fill: net.Socket[] }> {
  const py = spawn('python3', ['-c', 'import socket,sys,time\ns=socket.socket()\ns.bind(("127.0.0.1",0))\ns.listen(0)\nprint(s.getsockname()[1],flush=True)\ntime.sleep(60)'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    py.stdout.once('data', (d) => resolve(Number(String(d).trim())));
    py.once('error', reject);
  });
  // Fill the accept queue (backlog 0 holds one) and wait until a connect no longer completes.
  const fill: net.Socket[] = [];
  for (let i = 0; i < 3; i++) {
    const s = net.connect(port, '127.0.0.1');
    s.on('error', () => {});
    fill.push(s);
  }
  await sleep(200);
  const close = () => {
    py.kill();
    for (const s of fill) s.destroy();
  };
  return { port, fill, close };
}

describe('backend connect deadline (connectTimeout)', () => {
  it('a backend that never accepts is cut after connectTimeout: backend_error, kind connect', async () => {
    const dead = await neverAccepts();
    const g = await startGateway(`
entryPoints: { websecure: { address: "127.0.0.1:0" } }
tcp:
  routers:
    slow: { entryPoints: [websecure], rule: "HostSNI(\`public.example.test\`)", service: slow, tls: { passthrough: true } }
  services:
    slow: { loadBalancer: { servers: [{ address: "127.0.0.1:${dead.port}" }], connectTimeout: 300ms } }
`);
    try {
      const t0 = performance.now();
      const c = net.connect(g.port(), '127.0.0.1');
      c.on('error', () => {});
      c.write(vector('captures/chr-ech2a-app-alpn.bin'));
      await Promise.race([new Promise((r) => c.once('close', r)), sleep(10_000)]);
      c.destroy();
      const took = performance.now() - t0;
      assert.equal(g.gw.metrics.backendErrors.get({ service: 'slow', kind: 'connect' }), 1);
      const outcome = () => g.gw.metrics.connections.get({ entrypoint: 'websecure', router: 'slow', outcome: 'backend_error' });
      for (let i = 0; i < 100 && outcome() === 0; i++) await sleep(20);
      assert.equal(outcome(), 1);
      // Not before the deadline; the upper bound only says it fired at all (a loaded machine may be slow).
      assert.ok(took >= 290, `closed after ${took} ms, before connectTimeout`);
      assert.ok(took < 10_000, `closed after ${took} ms`);
    } finally {
      await g.close();
      dead.close();
    }
  });
});
