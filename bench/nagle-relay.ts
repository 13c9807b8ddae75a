/**
 * Why the relay sets TCP_NODELAY on both of its sockets (docs/benchmarks.md,
 * "Passthrough cost, seventh pass"): Nagle's algorithm (RFC 896) on a relay
 * socket holds a small write while an earlier small write on it is unacked,
 * and the peer that waits for the whole message delays its ACK (RFC 1122
 * §4.2.3.2, up to 40 ms on Linux). Through a relay that copies the peer's
 * writes one by one, that turns an endpoint's two quick writes into a stall
 * the endpoints (which set TCP_NODELAY themselves) never asked for.
 *
 * A backend answers each request in two writes GAP ms apart (head, body); the
 * client waits for both. Or, with SPLIT=request, the client sends each request
 * in two writes and the backend answers when it has both. Between them, a
 * naive pipe() relay with TCP_NODELAY on both sockets, only the client side,
 * only the backend side, or neither. Prints request latency p50/p90/p99 (ms).
 *
 * Usage: npm run build && [N=150] [GAP=2] [SPLIT=request] node dist/bench/nagle-relay.js
 */
import net from 'node:net';

const N = Number(process.env.N ?? 150);
const GAP = Number(process.env.GAP ?? 2);
const splitRequest = process.env.SPLIT === 'request';

function listen(srv: net.Server): Promise<number> {
  return new Promise((resolve) => srv.listen(0, '127.0.0.1', () => resolve((srv.address() as net.AddressInfo).port)));
}

const backend = net.createServer({ noDelay: true }, (s) => {
  let seen = 0;
  s.on('data', (d) => {
    if (splitRequest) {
      seen += d.length;
      if (seen >= 200) {
        seen -= 200;
        s.write('R'.repeat(200));
      }
      return;
    }
    s.write('H'.repeat(100));
    setTimeout(() => s.write('B'.repeat(100)), GAP);
  });
});
const backendPort = await listen(backend);

function relay(clientNoDelay: boolean, backendNoDelay: boolean): Promise<number> {
  const srv = net.createServer({ noDelay: clientNoDelay }, (c) => {
    const b = net.connect({ port: backendPort, host: '127.0.0.1', noDelay: backendNoDelay });
    c.pipe(b).pipe(c);
    b.on('error', () => c.destroy());
    c.on('error', () => b.destroy());
  });
  return listen(srv);
}

async function run(port: number): Promise<string> {
  const s = net.connect({ port, host: '127.0.0.1', noDelay: true });
  await new Promise((r) => s.once('connect', r));
  const lat: number[] = [];
  for (let i = 0; i < N; i++) {
    const t0 = performance.now();
    await new Promise<void>((resolve) => {
      let got = 0;
      const on = (d: Buffer) => {
        got += d.length;
        if (got < 200) return;
        s.off('data', on);
        resolve();
      };
      s.on('data', on);
      if (splitRequest) {
        s.write('Q'.repeat(100));
        setTimeout(() => s.write('Q'.repeat(100)), GAP);
      } else s.write('GET\n');
    });
    lat.push(performance.now() - t0);
  }
  s.destroy();
  lat.sort((a, b) => a - b);
  const q = (p: number) => lat[Math.min(N - 1, Math.floor(N * p))]!.toFixed(1);
  return `p50 ${q(0.5)}  p90 ${q(0.9)}  p99 ${q(0.99)}`;
}

const relays: [string, number][] = [
  ['direct (no relay)', backendPort],
  ['relay, NODELAY both', await relay(true, true)],
  ['relay, client side only', await relay(true, false)],
  ['relay, backend side only', await relay(false, true)],
  ['relay, neither', await relay(false, false)],
];
process.stdout.write(`${splitRequest ? 'request' : 'response'} in two writes ${GAP} ms apart, ${N} requests on one connection, latency ms:\n`);
for (let round = 0; round < 2; round++) for (const [name, port] of relays) process.stdout.write(`  ${name.padEnd(26)} ${await run(port)}\n`);
process.exit(0);
