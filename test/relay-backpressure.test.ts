/**
 * Backpressure through the one relay (proxy/relay.ts), for every handler that
 * has a backend and in both directions (issue #8, "The data path": "one relay
 * with correct backpressure in both directions"): passthrough, ECH split mode,
 * TLS 1.3 termination (echgate's engine), TLS 1.2 termination (node:tls).
 *
 * Each case stalls the FAR side (a socket that does not read), has the NEAR
 * side push PUSH bytes, waits until the proxy stops taking the near side's
 * bytes, and asserts that what the proxy holds in user space for that
 * direction stays under BOUND at every poll (test/backpressure.ts says what
 * is counted and why the bound is 256 KiB). Then the far side reads and must
 * get every byte, in order. PUSH (8 MiB here) is well over what the loopback
 * kernel buffers of a stalled connection take (the proxy stops after about
 * 4.3 MiB), so a relay that does not pause holds MiBs; each case also checks
 * that the proxy stopped before it had taken everything.
 *
 * Each case was seen red with a mutant of the compiled relay (applied by
 * hand, run, reverted; the figures are what the failing assert printed, load 8–17):
 * - mutant A, flow() never pauses the client (`this.client.pause()` removed):
 *   every "client → backend" case (the proxy held 0.9–4.2 MiB) and the
 *   KeyUpdate case (149 KiB against its 128 KiB bound);
 * - mutant B, the backend is never paused (fromBackendRead returns true, flow()
 *   does not call `this.backend.pause()`): every "backend → client" case
 *   (0.4–4.2 MiB) and the KeyUpdate case (its first phase);
 * - mutant C, flow() ignores `clientEchoes` (pauses the client only while the
 *   backend is full): the KeyUpdate case (178 KiB against 128 KiB).
 * Measured with correct code (BP_DEBUG=1): at most 131 KiB held client →
 * backend, 74 KiB backend → client; the KeyUpdate answers added nothing.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import tls from 'node:tls';
import { nodeProvider } from '../src/crypto/node.js';
import { buildEchClientHello } from '../src/ech/client.js';
import { echClassifier } from '../src/proxy/ech-classifier.js';
import { frameHandshake } from '../src/wire/tls/record.js';
import { TlsClient } from '../src/tls13/client.js';
import { collect, heldToBackend, heldToClient, LIMIT_MS, proxySide, pump, stallBounded } from './backpressure.js';
import { memoryEchKey, sleep, startGateway, startTerminatingGateway } from './helpers.js';

/**
 * What the near side pushes: more than the kernel buffers between the proxy
 * and a stalled far side take (the proxy's send buffer can grow to
 * net.ipv4.tcp_wmem's maximum, 4 MiB here; the far receive buffer stays near
 * its default while nothing reads it), with 4 MiB to spare, at least 8 MiB.
 */
const PUSH = Math.max(8 << 20, wmemMax() + (4 << 20));
const payload = randomBytes(PUSH);

function wmemMax(): number {
  try {
    return Number(readFileSync('/proc/sys/net/ipv4/tcp_wmem', 'utf8').trim().split(/\s+/)[2]) || 0;
  } catch {
    return 0;
  }
}

type Gw = Awaited<ReturnType<typeof startGateway>>;

/** A backend that hands each accepted socket, not reading (pauseOnConnect), to the test in order. */
async function stallingBackend(): Promise<{ port: number; next(): Promise<net.Socket>; close(): void }> {
  const waiting: ((s: net.Socket) => void)[] = [];
  const ready: net.Socket[] = [];
  const socks = new Set<net.Socket>();
  const srv = net.createServer({ pauseOnConnect: true, allowHalfOpen: true }, (s) => {
    s.on('error', () => {});
    socks.add(s);
    const w = waiting.shift();
    if (w) w(s);
    else ready.push(s);
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  return {
    port: (srv.address() as net.AddressInfo).port,
    next: () => {
      const s = ready.shift();
      return s ? Promise.resolve(s) : new Promise((r) => waiting.push(r));
    },
    close: () => {
      for (const s of socks) s.destroy();
      srv.close();
    },
  };
}
type StallingBackend = Awaited<ReturnType<typeof stallingBackend>>;

/**
 * client → backend: the backend does not read; the client writes `lead` (a
 * handler's framing, once the connection is relayed), then pushes PUSH bytes;
 * then the backend reads and must get `head` bytes (what came before the
 * payload: given, or their length as a function of the first 5 bytes), then
 * the payload.
 */
async function clientToBackend(g: Gw, ep: string, backend: StallingBackend, client: net.Socket | tls.TLSSocket, head: Uint8Array | ((first5: Buffer) => number), lead?: Uint8Array) {
  const far = await backend.next();
  const { raw, relay } = await proxySide(g.gw, ep, client);
  if (lead) client.write(lead);
  pump(client, payload);
  const r = await stallBounded(
    () => raw.bytesRead,
    () => heldToBackend(raw, relay),
    'client → backend',
    PUSH,
  );
  assert.ok(r.taken < PUSH, `the proxy took all ${r.taken} bytes: PUSH must exceed the kernel buffers for the test to mean anything`);
  const got = await collect(far, typeof head === 'function' ? (b) => head(b) + PUSH : head.length + PUSH);
  const skip = got.length - PUSH;
  if (typeof head !== 'function') assert.ok(got.subarray(0, skip).equals(head), 'the bytes sent before the payload first');
  assert.ok(got.subarray(skip).equals(payload), 'every byte, in order');
  client.destroy();
  far.destroy();
}

/** backend → client: the client does not read; the backend pushes PUSH bytes; then the client reads and must get them all, in order. */
async function backendToClient(g: Gw, ep: string, backend: StallingBackend, client: net.Socket | tls.TLSSocket) {
  const near = await backend.next();
  const { raw, relay } = await proxySide(g.gw, ep, client);
  near.on('data', () => {}).resume(); // reads (and drops) what the client or the handler sends
  pump(near, payload);
  const r = await stallBounded(
    () => relay.backend.bytesRead,
    () => heldToClient(raw, relay),
    'backend → client',
    PUSH,
  );
  assert.ok(r.taken < PUSH, `the proxy took all ${r.taken} bytes: PUSH must exceed the kernel buffers for the test to mean anything`);
  const got = await collect(client, PUSH);
  assert.equal(got.length, PUSH);
  assert.ok(got.equals(payload), 'every byte, in order');
  client.destroy();
  near.destroy();
}

/** A plain client to 127.0.0.1:port that sends `first` and reads nothing until collect(). */
function plainClient(port: number, first: Uint8Array): net.Socket {
  const s = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
  s.on('error', () => {});
  s.pause();
  s.write(first);
  return s;
}

/** A node:tls client (TLS 1.3 to echgate's engine, or TLS 1.2 to node:tls), established, reading nothing until collect(). */
async function tlsClient(port: number, name: string, version: tls.SecureVersion): Promise<tls.TLSSocket> {
  const t = tls.connect({ port, host: '127.0.0.1', servername: name, rejectUnauthorized: false, maxVersion: version });
  t.on('error', () => {});
  t.pause();
  await new Promise<void>((resolve, reject) => {
    t.once('secureConnect', () => resolve());
    t.once('error', reject);
  });
  assert.equal(t.getProtocol(), version);
  return t;
}

describe('relay backpressure: the proxy holds a bounded amount when the far side does not read (issue #8)', () => {
  let backend: StallingBackend;
  before(async () => {
    backend = await stallingBackend();
  });
  after(() => backend.close());

  describe('passthrough (HostSNI(`*`), bytes as they are)', () => {
    let g: Gw;
    before(async () => {
      g = await startGateway(`
entryPoints: { db: { address: "127.0.0.1:0" } }
tcp:
  routers: { r: { rule: "HostSNI(\`*\`)", service: s } }
  services: { s: { loadBalancer: { servers: [{ address: "127.0.0.1:${backend.port}" }] } } }
`);
    });
    after(() => g.close());

    it('client → backend: a backend that does not read pauses the client (red with mutant A)', async () => {
      const head = Buffer.from('hello');
      await clientToBackend(g, 'db', backend, plainClient(g.port('db'), head), head);
    });
    it('backend → client: a client that does not read pauses the backend (red with mutant B)', async () => {
      await backendToClient(g, 'db', backend, plainClient(g.port('db'), Buffer.from('x')));
    });
  });

  describe('ECH split mode (RFC 9849 §3.1: ClientHelloInner to the backend, then the client\'s bytes)', () => {
    const k = memoryEchKey(9);
    let g: Gw;
    before(async () => {
      g = await startGateway(`
entryPoints: { websecure: { address: "127.0.0.1:0" } }
tcp:
  routers:
    split: { rule: "HostSNI(\`split.example.test\`)", requireECH: true, service: b, tls: { passthrough: true, echSplit: true } }
  services: { b: { loadBalancer: { servers: [{ address: "127.0.0.1:${backend.port}" }] } } }
`);
      g.gw.setClassifier(echClassifier(k.lookup, g.gw.metrics, { trialDecrypt: false }));
    });
    after(() => g.close());
    const hello = () => frameHandshake(buildEchClientHello(nodeProvider, { config: k.config, innerSni: 'split.example.test' }).outerMessage);
    /** An application_data record header: from the end of its record on, split mode relays the client's bytes untouched (split.ts). */
    const APP_DATA = Uint8Array.of(23, 3, 3, 0x40, 0);

    it('client → backend: a backend that does not read pauses the client (red with mutant A)', async () => {
      // The header goes out once the connection is relayed: sent with the hello it would be `rest`
      // (see the split-mode case below). The backend gets ClientHelloInner (one record), the header, the payload.
      await clientToBackend(g, 'websecure', backend, plainClient(g.port(), hello()), (b) => 5 + b.readUInt16BE(3) + APP_DATA.length, APP_DATA);
    });
    it('backend → client: a client that does not read pauses the backend (red with mutant B)', async () => {
      await backendToClient(g, 'websecure', backend, plainClient(g.port(), hello()));
    });
  });

  describe("TLS 1.3 termination (echgate's engine: client records → receive, backend bytes → encrypt)", () => {
    let g: Gw;
    before(async () => {
      g = await startTerminatingGateway('bp13.example.test', backend.port);
    });
    after(() => g.close());

    it('client → backend: a backend that does not read pauses the client (red with mutant A)', async () => {
      await clientToBackend(g, 'websecure', backend, await tlsClient(g.port(), 'bp13.example.test', 'TLSv1.3'), new Uint8Array(0));
    });
    it('backend → client: a client that does not read pauses the backend (red with mutant B)', async () => {
      await backendToClient(g, 'websecure', backend, await tlsClient(g.port(), 'bp13.example.test', 'TLSv1.3'));
    });

    it('client → client: reading the client makes records for it (KeyUpdate answers), so a client that does not read is paused though the backend reads (red with mutant C)', async () => {
      // Mutant C: flow() ignores `clientEchoes` (the client is paused only while the backend is full).
      // The client asks for a KeyUpdate (RFC 8446 §4.6.3, update_requested) in every other record and
      // reads nothing: each answer is a 27-byte record for the client. The backend reads all it gets.
      const tc = new TlsClient({ provider: nodeProvider, serverName: 'bp13.example.test' });
      const s = net.connect({ port: g.port(), host: '127.0.0.1' });
      s.on('error', () => {});
      const early: Buffer[] = [];
      await new Promise<void>((resolve, reject) => {
        s.once('connect', () => {
          for (const x of tc.hello()) s.write(x);
        });
        const onData = (d: Buffer) => {
          const out = tc.receive(d);
          for (const x of out.send) s.write(x);
          for (const x of out.data) early.push(Buffer.from(x));
          if (out.error) reject(out.error);
          if (out.established) {
            s.off('data', onData);
            s.pause();
            resolve();
          }
        };
        s.on('data', onData);
        s.once('error', reject);
      });
      const near = await backend.next();
      const { raw, relay } = await proxySide(g.gw, 'websecure', s);
      let toBackend = 0;
      near.on('data', (d: Buffer) => {
        toBackend += d.length;
      });
      near.resume();
      // First the client's path fills from the backend (as in the case above), so its write buffer is full...
      pump(near, payload);
      const filled = await stallBounded(
        () => relay.backend.bytesRead,
        () => heldToClient(raw, relay),
        'backend → client',
        PUSH,
      );
      // ...then the client sends CYCLES × (KeyUpdate, 1 byte of data), 50 bytes a cycle, each worth a 27-byte answer
      // (the data record earns back the KeyUpdate allowance, server.ts KEY_UPDATE_BURST). With the client paused, at
      // most the read in progress (64 KiB: 1300 cycles, 36 KiB of answers) is answered, so the client's queue grows
      // by less than 64 KiB; read whole, the cycles would add 132 KiB.
      const CYCLES = 5000;
      const cycles: Uint8Array[] = [];
      for (let i = 0; i < CYCLES; i++) cycles.push(tc.keyUpdate(1), ...tc.encrypt(Uint8Array.of(i & 0xff)));
      pump(s, Buffer.concat(cycles));
      await stallBounded(
        () => raw.bytesRead,
        () => heldToClient(raw, relay),
        'client → client (KeyUpdate answers)',
        CYCLES * 50,
        filled.maxHeld + 64 * 1024,
      );
      assert.ok(toBackend < CYCLES, `the proxy stopped reading the client (${toBackend} of ${CYCLES} data bytes passed)`);
      // Then the client reads: the payload arrives whole, the KeyUpdate answers processed on the way; the backend gets every data byte.
      let got = early.reduce((n, b) => n + b.length, 0);
      const parts = [...early];
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`stalled with ${got} of ${PUSH} bytes`)), LIMIT_MS);
        s.on('data', (d: Buffer) => {
          const out = tc.receive(d);
          if (out.error) reject(out.error);
          for (const x of out.send) s.write(x);
          for (const x of out.data) {
            parts.push(Buffer.from(x));
            got += x.length;
          }
          if (got >= PUSH) {
            clearTimeout(timer);
            resolve();
          }
        });
        s.resume();
      });
      assert.ok(Buffer.concat(parts).equals(payload), 'every byte, in order');
      for (let i = 0; i < 3000 && toBackend < CYCLES; i++) await sleep(10);
      assert.equal(toBackend, CYCLES);
      s.destroy();
      near.destroy();
    });
  });

  describe("TLS 1.2 termination (node:tls; its plaintext side is the relay's client)", () => {
    let g: Gw;
    before(async () => {
      g = await startTerminatingGateway('bp12.example.test', backend.port);
    });
    after(() => g.close());

    it('client → backend: a backend that does not read pauses the client (red with mutant A)', async () => {
      await clientToBackend(g, 'websecure', backend, await tlsClient(g.port(), 'bp12.example.test', 'TLSv1.2'), new Uint8Array(0));
    });
    it('backend → client: a client that does not read pauses the backend (red with mutant B)', async () => {
      await backendToClient(g, 'websecure', backend, await tlsClient(g.port(), 'bp12.example.test', 'TLSv1.2'));
    });
  });
});
