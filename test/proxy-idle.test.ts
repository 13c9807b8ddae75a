/**
 * The idle deadline of relayed connections (respondingTimeouts.idleTimeout,
 * proxy/deadlines.ts IdleSweep): one sweep per duration instead of a node
 * timer per connection. Any read from the client and any write to it moves
 * the deadline; a write in flight that makes progress does too, one that
 * makes none does not. A connection is cut no earlier than idleTimeout after
 * its last activity, and at most one sweep slice later. The plain "idle
 * connection is cut" case is in test/proxy.test.ts and
 * test/metrics-outcomes.test.ts.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, it } from 'node:test';
import { IDLE_SLICES, type IdleEntry, IdleSweep } from '../src/proxy/deadlines.js';
import { sleep, startGateway } from './helpers.js';

const entry = (queue = () => 0): IdleEntry => ({
  idleActive: false,
  idleSlices: 0,
  idleQueue: 0,
  idlePrev: undefined,
  idleNext: undefined,
  idleList: undefined,
  writeQueueSize: queue,
});
const armed = (s: IdleSweep) => (s as unknown as { timer?: unknown }).timer !== undefined;

/** Resolves with the time `e` expired (or undefined after `limit` ms). */
function expiry(fired: Map<IdleEntry, number>, e: IdleEntry, limit: number): Promise<number | undefined> {
  return (async () => {
    const t0 = performance.now();
    while (!fired.has(e) && performance.now() - t0 < limit) await sleep(5);
    return fired.get(e);
  })();
}

describe('IdleSweep', () => {
  it('expires an entry no earlier than its duration after it was added, and within one slice (plus timer slack) after', async () => {
    const fired = new Map<IdleEntry, number>();
    // 400 ms, so that the slack a loaded CI machine needs (350 ms: timers fired 170 ms late at load 13) still
    // stays under twice the duration: an entry kept for a second round of slices would fail the upper bound.
    const s = new IdleSweep(400, (e) => fired.set(e, performance.now()));
    assert.equal(s.period, 25);
    const a = entry();
    const t0 = performance.now();
    s.add(a);
    const at = await expiry(fired, a, 2000);
    assert.ok(at !== undefined, 'expired');
    assert.ok(at - t0 >= 400, `expired after ${at - t0} ms`);
    assert.ok(at - t0 < 400 + 25 + 350, `expired after ${at - t0} ms`);
    assert.equal(s.size, 0);
    assert.equal(armed(s), false, 'an empty sweep holds no timer');
    assert.equal(a.idleList, undefined);
  });

  it('counts from the last activity: an entry marked active every 40 ms never expires, then expires idle ms after the last mark', async () => {
    const fired = new Map<IdleEntry, number>();
    const s = new IdleSweep(160, (e) => fired.set(e, performance.now()));
    const a = entry();
    s.add(a);
    let last = performance.now();
    for (let i = 0; i < 12; i++) {
      await sleep(40);
      a.idleActive = true;
      last = performance.now();
    }
    assert.equal(fired.size, 0, 'active for 480 ms (3 × idle) and not cut');
    const at = await expiry(fired, a, 2000);
    assert.ok(at !== undefined && at - last >= 160, `expired ${at === undefined ? 'never' : at - last} ms after the last activity`);
  });

  it('a write in flight that moves is activity; one stuck at the same size is not', async () => {
    const fired = new Map<IdleEntry, number>();
    const s = new IdleSweep(160, (e) => fired.set(e, performance.now()));
    let moving = 100_000;
    const slow = entry(() => moving);
    const stuck = entry(() => 65_536);
    s.add(slow);
    const t0 = performance.now();
    s.add(stuck);
    for (let i = 0; i < 12; i++) {
      await sleep(40);
      moving -= 1000; // the client takes a little every 40 ms
    }
    assert.ok(!fired.has(slow), 'a slow reader that keeps taking bytes is not cut');
    assert.ok(fired.has(stuck), 'a reader that takes nothing is cut');
    assert.ok(fired.get(stuck)! - t0 >= 160);
    const last = performance.now();
    const at = await expiry(fired, slow, 2000);
    assert.ok(at !== undefined && at - last >= 160 - 10, 'and once it stops taking bytes it is cut');
  });

  it('never expires a removed entry, and clears its timer when the last one leaves', async () => {
    const fired: IdleEntry[] = [];
    const s = new IdleSweep(40, (e) => fired.push(e));
    const a = entry();
    const b = entry();
    const c = entry();
    s.add(a);
    s.add(b);
    s.add(c);
    s.remove(b); // the middle one
    assert.equal(s.size, 2);
    s.remove(a);
    s.remove(c);
    assert.equal(armed(s), false);
    s.remove(c); // twice: nothing
    await sleep(150);
    assert.deepEqual(fired, []);
  });

  it('expires many entries added at different times, each no earlier than its duration', async () => {
    const fired = new Map<IdleEntry, number>();
    const s = new IdleSweep(80, (e) => fired.set(e, performance.now()));
    const added = new Map<IdleEntry, number>();
    for (let i = 0; i < 20; i++) {
      const e = entry();
      s.add(e);
      added.set(e, performance.now());
      await sleep(3);
    }
    for (let i = 0; i < 100 && fired.size < 20; i++) await sleep(20);
    assert.equal(fired.size, 20);
    for (const [e, t] of added) assert.ok(fired.get(e)! - t >= 80, `expired ${fired.get(e)! - t} ms after it was added`);
    assert.equal(armed(s), false);
    assert.ok(IDLE_SLICES >= 8);
  });
});

/** A backend that writes one byte every `everyMs` for `forMs`, then goes quiet (holding the connection). */
async function tricklingBackend(everyMs: number, forMs: number): Promise<{ port: number; close(): Promise<void> }> {
  const socks = new Set<net.Socket>();
  const srv = net.createServer((s) => {
    socks.add(s);
    s.on('error', () => {});
    const t0 = Date.now();
    const t = setInterval(() => {
      if (Date.now() - t0 >= forMs || s.destroyed) return clearInterval(t);
      s.write('x');
    }, everyMs);
    s.on('close', () => clearInterval(t));
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  return {
    port: (srv.address() as net.AddressInfo).port,
    close: async () => {
      for (const s of socks) s.destroy();
      await new Promise((r) => srv.close(r));
    },
  };
}

const gatewayFor = (port: number) =>
  startGateway(`
entryPoints: { db: { address: "127.0.0.1:0", transport: { respondingTimeouts: { idleTimeout: 300ms } } } }
tcp:
  routers: { r: { rule: "HostSNI(\`*\`)", service: s } }
  services: { s: { loadBalancer: { servers: [{ address: "127.0.0.1:${port}" }] } } }
`);

/** Connect, say nothing, and report how many bytes came and when the connection closed. */
function silentClient(port: number, limitMs: number): Promise<{ bytes: number; closedAfter: number | undefined }> {
  return new Promise((resolve) => {
    const t0 = Date.now();
    let bytes = 0;
    const s = net.connect(port, '127.0.0.1');
    s.on('data', (d) => {
      bytes += d.length;
    });
    s.on('error', () => {});
    const limit = setTimeout(() => {
      s.destroy();
      resolve({ bytes, closedAfter: undefined });
    }, limitMs);
    s.on('close', () => {
      clearTimeout(limit);
      resolve({ bytes, closedAfter: Date.now() - t0 });
    });
  });
}

describe('idleTimeout end to end', () => {
  it('bytes from the backend to a silent client keep the connection (a write to the client is activity); it is cut idleTimeout after the last', async () => {
    // One byte every 100 ms for 1.2 s (four idle timeouts), then nothing.
    const b = await tricklingBackend(100, 1200);
    const g = await gatewayFor(b.port);
    try {
      const r = await silentClient(g.port('db'), 5000);
      assert.ok(r.bytes >= 8, `got ${r.bytes} bytes`);
      assert.ok(r.closedAfter !== undefined, 'closed once the backend went quiet');
      assert.ok(r.closedAfter >= 1200 + 300 - 100 && r.closedAfter < 3000, `closed after ${r.closedAfter} ms`);
      const idle = () => g.gw.metrics.connections.get({ entrypoint: 'db', router: 'r', outcome: 'idle_timeout' });
      for (let i = 0; i < 40 && idle() !== 1; i++) await sleep(25); // counted on the proxy's own 'close'
      assert.equal(idle(), 1);
    } finally {
      await g.close();
      await b.close();
    }
  });

  it('a client stuck behind a backend that never reads is cut (backpressure pauses the client: no read, no write, no progress)', async () => {
    const socks = new Set<net.Socket>();
    const srv = net.createServer({ pauseOnConnect: true }, (s) => {
      socks.add(s);
      s.on('error', () => {});
    });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const g = await gatewayFor((srv.address() as net.AddressInfo).port);
    try {
      const t0 = Date.now();
      const s = net.connect(g.port('db'), '127.0.0.1');
      s.on('error', () => {});
      const closed = new Promise<number>((r) => s.once('close', () => r(Date.now() - t0)));
      const chunk = Buffer.alloc(64 * 1024, 0x61);
      // 8 MiB, far more than the kernel buffers and the relay's write buffer hold.
      const pump = () => {
        for (let i = 0; i < 128 && !s.destroyed; i++) if (!s.write(chunk)) return void s.once('drain', pump);
      };
      s.once('connect', pump);
      const after = await Promise.race([closed, sleep(5000).then(() => undefined)]);
      assert.ok(after !== undefined, 'cut by the idle timeout');
      assert.ok(after >= 300, `closed after ${after} ms`);
    } finally {
      await g.close();
      for (const b of socks) b.destroy();
      await new Promise((r) => srv.close(r));
    }
  });

  it('bytes from a client the backend never answers keep the connection (a read from the client is activity)', async () => {
    const b = await tricklingBackend(1000, 0); // accepts, never writes
    const g = await gatewayFor(b.port);
    try {
      const t0 = Date.now();
      const s = net.connect(g.port('db'), '127.0.0.1');
      s.on('error', () => {});
      let closedAt: number | undefined;
      s.on('close', () => {
        closedAt = Date.now() - t0;
      });
      for (let i = 0; i < 12; i++) {
        await sleep(100);
        s.write('y');
      }
      assert.equal(closedAt, undefined, 'open after 1.2 s of client bytes');
      for (let i = 0; i < 60 && closedAt === undefined; i++) await sleep(50);
      assert.ok(closedAt !== undefined && closedAt >= 1200 + 300 - 50, `closed after ${closedAt} ms`);
    } finally {
      await g.close();
      await b.close();
    }
  });
});
