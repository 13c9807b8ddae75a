/**
 * Load generator for the ECH rows, in a process of its own (forked by
 * run.ts, driven over IPC) so that its CPU and heap never mix with the
 * measured process. It drives echgate's own TLS client (src/tls13/client.ts
 * with src/ech/client.ts, as `echgate connect` uses it).
 *
 * Messages in → out:
 *   { cmd: 'term', port, n, c, ech? }       → { wallMs, latencies } after n full handshakes, c at a time,
 *                                              each closed with close_notify once established
 *   { cmd: 'prepare', n, ech }               → { ready } after building n fresh ECH hellos and n plain ones
 *   { cmd: 'route', port, kind, c, n? }      → { wallMs } after sending n (default: every) prepared hello of that kind,
 *                                              reading the backend's one byte, closing
 *   { cmd: 'lat', port, n, ech }             → { plain, ech } ms per handshake, n of each, one at a time, plain and
 *                                              ECH alternating (ABBA): connect → the backend's first byte (one
 *                                              byte sent once established; the hello is built before the clock
 *                                              starts, so the client's own HPKE seal is not counted)
 * `ech` is a base64 ECHConfigList; the name is always app.example.test.
 */
import net from 'node:net';
import { isSupportedSuite } from '../src/crypto/hpke.js';
import { nodeProvider } from '../src/crypto/node.js';
import { buildEchClientHello, echOffer } from '../src/ech/client.js';
import { TlsClient } from '../src/tls13/client.js';
import { decodeECHConfigList } from '../src/wire/ech/config.js';
import { usableConfigs } from '../src/wire/ech/usable.js';
import { frameHandshake } from '../src/wire/tls/record.js';

const SNI = 'app.example.test';
type Msg = { cmd: 'lat'; port: number; n: number; ech: string } | { cmd: 'term'; port: number; n: number; c: number; ech?: string } | { cmd: 'prepare'; n: number; ech: string } | { cmd: 'route'; port: number; kind: 'ech' | 'plain'; c: number; n?: number };

const configOf = (b64: string) => {
  const c = usableConfigs(decodeECHConfigList(new Uint8Array(Buffer.from(b64, 'base64'))), isSupportedSuite)[0];
  if (!c) throw new Error('ech-load: no usable ECHConfig');
  return c;
};

/** n connections, c at a time; `one` resolves when its connection is over. */
async function pool(n: number, c: number, one: (i: number) => Promise<void>): Promise<number> {
  const t0 = performance.now();
  let next = 0;
  const worker = async () => {
    while (next < n) await one(next++);
  };
  await Promise.all(Array.from({ length: Math.min(c, n) }, worker));
  return performance.now() - t0;
}

/**
 * One connection and full handshake (the ECH offer, when given, must be accepted). `untilByte` false
 * (`term`): ms from the TCP connect to established, then close_notify. `untilByte` true (`lat`): ms
 * from just before `connect` to the backend's first byte, after sending one byte once established
 * (bench/latency.ts's end event; the hello is built before the clock starts).
 */
function session(port: number, ech: ReturnType<typeof configOf> | undefined, untilByte: boolean): Promise<number> {
  return new Promise((resolve, reject) => {
    const client = new TlsClient({ provider: nodeProvider, serverName: SNI, ech: ech && echOffer(ech) });
    const hello = client.hello();
    let t0 = performance.now();
    const s = net.connect({ port, host: '127.0.0.1', noDelay: true });
    s.once('connect', () => {
      if (!untilByte) t0 = performance.now();
      for (const r of hello) s.write(r);
    });
    let ms = -1;
    s.on('data', (d) => {
      try {
        const out = client.receive(d);
        for (const r of out.send) s.write(r);
        if (out.established) {
          if (ech && out.established.ech !== 'accepted') throw new Error(`ECH ${out.established.ech}`);
          if (untilByte) for (const r of client.encrypt(new Uint8Array([0x67]))) s.write(r);
          else {
            ms = performance.now() - t0;
            s.end(client.close());
          }
        }
        if (untilByte && ms < 0 && out.data.some((x) => x.length > 0)) {
          ms = performance.now() - t0;
          // The backend's byte may come with its close_notify (it closes after answering): nothing to send then.
          if (out.closed) s.end();
          else s.end(client.close());
        }
      } catch (e) {
        s.destroy();
        reject(e);
      }
    });
    s.once('error', reject);
    s.once('close', () => (ms >= 0 ? resolve(ms) : reject(new Error('ech-load: closed before the handshake (and the byte) completed'))));
  });
}

const prepared: Record<'ech' | 'plain', Uint8Array[]> = { ech: [], plain: [] };

function route(port: number, hello: Uint8Array): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: '127.0.0.1', noDelay: true }, () => s.write(hello));
    s.once('data', (d) => {
      // The backend answers "y"; an alert (0x15) means the hello was not routed as expected.
      if (d[0] !== 0x79) reject(new Error(`route: got ${d[0]} instead of the backend's byte`));
      s.end();
    });
    s.once('close', () => resolve());
    s.once('error', reject);
  });
}

process.on('message', async (m: Msg) => {
  try {
    if (m.cmd === 'lat') {
      const config = configOf(m.ech);
      const out = { plain: [] as number[], ech: [] as number[] };
      for (let i = 0; i < m.n; i++) {
        for (const kind of i % 2 === 0 ? (['plain', 'ech'] as const) : (['ech', 'plain'] as const)) {
          out[kind].push(await session(m.port, kind === 'ech' ? config : undefined, true));
        }
      }
      process.send!(out);
    } else if (m.cmd === 'term') {
      const ech = m.ech ? configOf(m.ech) : undefined;
      const lat: number[] = [];
      const wallMs = await pool(m.n, m.c, async () => {
        lat.push(await session(m.port, ech, false));
      });
      process.send!({ wallMs, latencies: lat });
    } else if (m.cmd === 'prepare') {
      const config = configOf(m.ech);
      for (let i = 0; i < m.n; i++) {
        prepared.ech.push(frameHandshake(buildEchClientHello(nodeProvider, { config, innerSni: SNI }).outerMessage));
        prepared.plain.push(new TlsClient({ provider: nodeProvider, serverName: SNI }).hello()[0]!);
      }
      process.send!({ ready: true });
    } else {
      const hellos = prepared[m.kind].splice(0, m.n ?? prepared[m.kind].length);
      const wallMs = await pool(hellos.length, m.c, (i) => route(m.port, hellos[i]!));
      process.send!({ wallMs });
    }
  } catch (e) {
    process.send!({ error: String((e as Error).stack ?? e) });
  }
});
process.send!({ up: true });
