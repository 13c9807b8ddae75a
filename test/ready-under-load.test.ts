/**
 * /ready keeps answering while the metrics listener is full of idle or slow
 * connections (audit s11 gap 3, twelfth pass): a new connection that finds
 * no room closes the oldest connection with no request being answered (from
 * its own address when that address is at maxConnectionsPerIP), counted
 * echgate_listener_refusals_total{listener="metrics",reason="idle_closed_for_room"};
 * a connection in the middle of an answer is never closed for room, so when
 * all are, the new one is refused as before.
 */
import assert from 'node:assert/strict';
import type { Server } from 'node:http';
import net from 'node:net';
import { after, describe, it } from 'node:test';
import { Metrics } from '../src/proxy/metrics.js';

function connect(port: number, localAddress: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: '127.0.0.1', localAddress });
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

/** A whole request on a fresh connection from `localAddress`: the status line's code, or 0 if closed (or 2 s passed) first. */
async function ask(port: number, localAddress: string, path = '/ready'): Promise<number> {
  const s = await connect(port, localAddress);
  return new Promise((resolve) => {
    let got = '';
    const t = setTimeout(() => done(0), 2000);
    const done = (code: number) => {
      clearTimeout(t);
      s.destroy();
      resolve(code);
    };
    s.on('data', (d: Buffer) => {
      got += d.toString('latin1');
      const m = /^HTTP\/1\.1 (\d{3})/.exec(got);
      if (m) done(Number(m[1]));
    });
    s.on('error', () => {});
    s.once('close', () => done(0));
    s.write(`GET ${path} HTTP/1.1\r\nhost: probe\r\n\r\n`);
  });
}

/** Resolves when the server has `n` connections (it counts them once accepted). */
async function serverHas(srv: Server, n: number): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const c = await new Promise<number>((r) => srv.getConnections((_e, k) => r(k)));
    if (c === n) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  assert.fail(`the server never had ${n} connections`);
}

describe('metrics listener: /ready answers while the listener is full of idle or slow connections', { timeout: 30_000 }, () => {
  const metrics = new Metrics();
  const servers: Server[] = [];
  const sockets: net.Socket[] = [];
  after(() => {
    for (const s of sockets) s.destroy();
    for (const s of servers) s.close();
  });
  const closedForRoom = () => metrics.listenerRefusals.get({ listener: 'metrics', reason: 'idle_closed_for_room' });

  it('16 held (8 idle from 127.0.0.1, 8 with half a head from 127.0.0.2): /ready from either address and from a third gets 200, the oldest idle closed each time', async () => {
    const srv = await metrics.serve('127.0.0.1', 0);
    servers.push(srv);
    const port = (srv.address() as net.AddressInfo).port;
    for (let i = 0; i < 8; i++) sockets.push(await connect(port, '127.0.0.1'));
    for (let i = 0; i < 8; i++) {
      const s = await connect(port, '127.0.0.2');
      s.write('GET /rea'); // a slow head: never finished
      sockets.push(s);
    }
    for (const s of sockets) s.on('error', () => {});
    await serverHas(srv, 16);
    // 127.0.0.1 is at its per-address cap (8): its own oldest idle connection makes room.
    assert.equal(await ask(port, '127.0.0.1'), 200);
    assert.equal(sockets[0]!.destroyed || (await closed(sockets[0]!)), true, 'the oldest of 127.0.0.1 was not the one closed');
    // 127.0.0.2 likewise (its connections hold half a head each).
    assert.equal(await ask(port, '127.0.0.2'), 200);
    assert.equal(await closed(sockets[8]!), true, 'the oldest of 127.0.0.2 was not the one closed');
    // A third address finds the listener full (16): the oldest idle connection of any address goes.
    await serverHas(srv, 14);
    for (let i = 0; i < 2; i++) sockets.push(await connect(port, '127.0.0.3'));
    await serverHas(srv, 16);
    assert.equal(await ask(port, '127.0.0.4'), 200);
    assert.equal(await ask(port, '127.0.0.4', '/metrics'), 200);
    assert.ok(closedForRoom() >= 4, `closed for room: ${closedForRoom()}`);
    assert.equal(metrics.listenerRefusals.get({ listener: 'metrics', reason: 'max_connections' }), 0);
    assert.equal(metrics.listenerRefusals.get({ listener: 'metrics', reason: 'max_connections_per_ip' }), 0);
  });

  it('a connection in the middle of an answer is never closed for room: with all 16 answering, a new one is refused', async () => {
    // A path whose answer never comes (as a /metrics gathered from slow workers would be, for a while).
    const held: { end(): void }[] = [];
    const srv = await new Metrics().serve('127.0.0.1', 0, {
      routes: (_req, res, path) => {
        if (path !== '/hold') return false;
        held.push({ end: () => res.end() });
        return true;
      },
    });
    servers.push(srv);
    const port = (srv.address() as net.AddressInfo).port;
    const busy: net.Socket[] = [];
    for (const from of ['127.0.0.1', '127.0.0.2']) {
      for (let i = 0; i < 8; i++) {
        const s = await connect(port, from);
        s.on('error', () => {});
        s.write('GET /hold HTTP/1.1\r\nhost: x\r\n\r\n');
        busy.push(s);
      }
    }
    sockets.push(...busy);
    for (let i = 0; i < 200 && held.length < 16; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(held.length, 16);
    assert.equal(await ask(port, '127.0.0.3'), 0, 'a 17th connection got in past 16 answering ones');
    assert.equal(await ask(port, '127.0.0.1'), 0, 'a 9th connection from 127.0.0.1 got in past its 8 answering ones');
    for (const s of busy) assert.equal(s.destroyed, false);
    for (const h of held) h.end();
  });
});

/** Whether the server closed `s` (within 1 s). */
function closed(s: net.Socket): Promise<boolean> {
  if (s.destroyed || s.readableEnded) return Promise.resolve(true);
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), 1000);
    s.once('close', () => {
      clearTimeout(t);
      resolve(true);
    });
    s.resume();
  });
}
