/**
 * A plain passthrough keeps the connection's own client 'data' and 'end'
 * listeners for the relay (proxy/connection.ts `keep`, Conn.relayClient):
 * nothing pauses the client between the route and the backend's connect. So
 * bytes and an EOF that come in that window must be held for the relay, not
 * lost. The backend connect is slowed here (net.Socket.prototype.connect
 * delayed for the backend's port) so that the window is wide and certain.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { sleep, startGateway, vector } from './helpers.js';

const hello = Buffer.from(vector('captures/chr-ech2a-app-alpn.bin'));

/** A backend that records each connection's bytes and whether its EOF came; it answers "ok" once and ends when the client does. */
async function eofBackend() {
  const conns: { got: Buffer[]; ended: boolean }[] = [];
  const srv = net.createServer({ allowHalfOpen: true }, (s) => {
    const c = { got: [] as Buffer[], ended: false };
    conns.push(c);
    let answered = false;
    s.on('data', (d) => {
      c.got.push(d);
      if (!answered) s.write('ok');
      answered = true;
    });
    s.on('end', () => {
      c.ended = true;
      s.end();
    });
    s.on('error', () => {});
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  return { port: (srv.address() as net.AddressInfo).port, conns, close: () => srv.close() };
}

async function until(what: string, ok: () => boolean, ms = 3000): Promise<void> {
  for (const end = Date.now() + ms; !ok(); ) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

describe('plain passthrough: client bytes and EOF before the backend connects', () => {
  let b: Awaited<ReturnType<typeof eofBackend>>;
  let g: Awaited<ReturnType<typeof startGateway>>;
  const connect = net.Socket.prototype.connect;
  const DELAY = 200;

  before(async () => {
    b = await eofBackend();
    // Every connect to the backend starts DELAY ms late: the relay is in place, the backend not connected.
    net.Socket.prototype.connect = function (this: net.Socket, ...args: unknown[]) {
      const a0 = args[0] as { port?: number } | { port?: number }[];
      const opts = Array.isArray(a0) ? a0[0] : a0;
      if (opts?.port === b.port) {
        setTimeout(() => connect.apply(this, args as Parameters<typeof connect>), DELAY);
        return this;
      }
      return connect.apply(this, args as Parameters<typeof connect>);
    } as typeof connect;
    g = await startGateway(`
entryPoints: { websecure: { address: "127.0.0.1:0" } }
tcp:
  routers:
    r: { rule: "HostSNI(\`public.example.test\`)", service: s, tls: { passthrough: true } }
  services: { s: { loadBalancer: { servers: [{ address: "127.0.0.1:${b.port}" }] } } }
`);
  });
  after(async () => {
    net.Socket.prototype.connect = connect;
    await g.close();
    b.close();
  });

  async function exchange(send: (c: net.Socket) => Promise<void>): Promise<{ got: Buffer; ended: boolean; answer: string; clientEnded: boolean }> {
    const before = b.conns.length;
    const c = net.connect({ port: g.port(), host: '127.0.0.1', allowHalfOpen: true });
    let answer = '';
    let clientEnded = false;
    c.on('data', (d) => {
      answer += d.toString('latin1');
    });
    c.on('end', () => {
      clientEnded = true;
      c.end();
    });
    c.on('error', () => {});
    await new Promise<void>((r) => c.once('connect', () => r()));
    await send(c);
    await until('the backend connection', () => b.conns.length > before);
    const bc = b.conns[before]!;
    await until("the backend's EOF", () => bc.ended);
    await until("the client's EOF", () => clientEnded);
    c.destroy();
    return { got: Buffer.concat(bc.got), ended: bc.ended, answer, clientEnded };
  }

  it('bytes sent after the hello, before the backend connects, reach it in order, then the EOF', async () => {
    const r = await exchange(async (c) => {
      c.write(hello);
      await sleep(DELAY / 4);
      c.write('first-');
      await sleep(DELAY / 4);
      c.write('second');
      c.end();
    });
    assert.deepEqual(r.got, Buffer.concat([hello, Buffer.from('first-second')]));
    assert.equal(r.answer, 'ok');
  });

  it("the client's EOF right behind the hello (before the backend connects) reaches the backend", async () => {
    const r = await exchange(async (c) => {
      c.end(Buffer.concat([hello, Buffer.from('tail')]));
    });
    assert.deepEqual(r.got, Buffer.concat([hello, Buffer.from('tail')]));
    assert.equal(r.answer, 'ok');
  });

  it('without the delay the same bytes go through (the relay reads through the same listener)', async () => {
    const slow = net.Socket.prototype.connect;
    net.Socket.prototype.connect = connect;
    try {
      const r = await exchange(async (c) => {
        c.write(hello);
        await sleep(50);
        c.write('later');
        await sleep(50);
        c.end();
      });
      assert.deepEqual(r.got, Buffer.concat([hello, Buffer.from('later')]));
    } finally {
      net.Socket.prototype.connect = slow;
    }
  });
});
