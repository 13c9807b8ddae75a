/**
 * TLS 1.3 termination: the server's first flight (ServerHello … Finished)
 * goes to the client through the relay (proxy/terminate.ts begin(),
 * `relay.toClient(flight)`, commit 2e8d495), so that write() returning false
 * marks the client full and the relay's backpressure rule applies from the
 * first byte: with `clientEchoes`, reading the client can make records for
 * it, so the client is not read while its write queue is over the mark, and
 * the backend is not read either (proxy/relay.ts flow()).
 *
 * Before 2e8d495 the flight was written with `c.socket.write()` and its
 * answer dropped: a flight over the socket's 16 KiB high-water mark left the
 * relay believing the client had room, so it read the client and the backend
 * while the flight sat in the queue.
 *
 * The case: a certificate chain of at least 8 MiB (the leaf and one opaque
 * "intermediate" block: loadCertificate parses only the leaf), and a client
 * that sends its ClientHello and reads nothing. The loopback kernel buffers
 * of a client that does not read take less than that (a 960 KiB flight was
 * taken whole: not enough), so the flight stays queued (measured at load 1:
 * all 8.4 MB still in the proxy's write queue when the backend had
 * connected) and the relay's state can be read in process
 * (test/backpressure.ts proxySide) while it is. Then the client reads the
 * flight raw (the client engine caps a handshake message at 1 MiB, so the
 * handshake cannot complete with this chain): the flag clears, both sides
 * are read again, and a record that does not decrypt is answered with an
 * alert, which shows the client is read.
 *
 * Seen red with the old line back by hand (dist/src/proxy/terminate.js begin():
 * `client.write(flight.length === 1 ? flight[0] : concat(...flight))` in place of
 * `this.relay.toClient(flight)`): "the client is marked full" fails (false !== true).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { nodeProvider } from '../src/crypto/node.js';
import { TlsClient } from '../src/tls13/client.js';
import { LIMIT_MS, proxySide } from './backpressure.js';
import { certFor, sleep, startGateway } from './helpers.js';

const NAME = 'flight.example.test';
/**
 * The opaque chain entry: more than the loopback kernel buffers of a stalled client take (the
 * proxy's send buffer can grow to net.ipv4.tcp_wmem's maximum, 4 MiB here), as in
 * relay-backpressure.test.ts. A Certificate message stays under 2^24 bytes (RFC 8446 §4.4.2).
 */
const EXTRA = Math.max(8 << 20, wmemMax() + (4 << 20));
const HIGH_WATER = 16 * 1024;

function wmemMax(): number {
  try {
    return Number(readFileSync('/proc/sys/net/ipv4/tcp_wmem', 'utf8').trim().split(/\s+/)[2]) || 0;
  } catch {
    return 0;
  }
}

function pemBlock(der: Uint8Array): string {
  const b64 = Buffer.from(der).toString('base64');
  const lines: string[] = [];
  for (let i = 0; i < b64.length; i += 64) lines.push(b64.slice(i, i + 64));
  return `-----BEGIN CERTIFICATE-----\n${lines.join('\n')}\n-----END CERTIFICATE-----\n`;
}

describe('TLS 1.3 termination: the first flight goes through the relay', () => {
  let backend: net.Server;
  let backendPort = 0;
  let g: Awaited<ReturnType<typeof startGateway>>;

  before(async () => {
    // An echo backend.
    backend = net.createServer((s) => {
      s.on('error', () => {});
      s.pipe(s);
    });
    await new Promise<void>((r) => backend.listen(0, '127.0.0.1', () => r()));
    backendPort = (backend.address() as net.AddressInfo).port;
    const dir = mkdtempSync(join(tmpdir(), 'echgate-flight-'));
    const c = certFor(NAME);
    writeFileSync(join(dir, 'e.crt'), c.cert + pemBlock(randomBytes(EXTRA)));
    writeFileSync(join(dir, 'e.key'), c.key);
    g = await startGateway(`
tls:
  certificates:
    - { certFile: "${join(dir, 'e.crt')}", keyFile: "${join(dir, 'e.key')}" }
entryPoints: { websecure: { address: "127.0.0.1:0" } }
tcp:
  routers:
    t: { rule: "HostSNI(\`${NAME}\`)", service: s, tls: {} }
  services: { s: { loadBalancer: { servers: [{ address: "127.0.0.1:${backendPort}" }] } } }
`);
  });

  after(async () => {
    await g.close();
    await new Promise<void>((r) => backend.close(() => r()));
  });

  it('a flight over the high-water mark marks the client full; the relay reads neither side until the client has read it', async () => {
    const tc = new TlsClient({ provider: nodeProvider, serverName: NAME });
    const s = net.connect({ port: g.port(), host: '127.0.0.1' });
    s.on('error', () => {});
    // Paused from the start: node reads at most its 16 KiB readable buffer, then leaves the rest in the kernel.
    s.pause();
    await new Promise<void>((r, j) => {
      s.once('connect', () => r());
      s.once('error', j);
    });
    for (const x of tc.hello()) s.write(x);

    const { raw, relay } = await proxySide(g.gw, 'websecure', s);
    // Precondition, not the check: the flight must still be queued for the state to be observable.
    for (let waited = 0; raw.writableLength === 0 && waited < 2000; waited += 10) await sleep(10);
    assert.ok(
      raw.writableLength >= HIGH_WATER,
      `precondition: ${raw.writableLength} bytes of the ${EXTRA}-byte flight queued; the kernel took it all, so this machine cannot show the state`,
    );
    // A few event-loop turns: a 'drain' or a flow() that resumes would have run by now.
    await sleep(50);
    assert.ok(raw.writableLength >= HIGH_WATER, `the flight is still queued (${raw.writableLength} bytes)`);
    assert.equal(relay.clientFull, true, 'the client is marked full (write() of the flight returned false)');
    assert.equal(raw.isPaused(), true, 'the client is not read while its queue is over the mark (clientEchoes)');
    assert.equal(relay.backend.isPaused(), true, 'the backend is not read while the client is full');

    // Now the client reads the flight (raw: the client engine caps a handshake message at 1 MiB, so it
    // cannot take this chain): the queue drains, 'drain' clears the flag and both sides are read again.
    let received = 0;
    s.on('data', (d: Buffer) => {
      received += d.length;
    });
    const closed = new Promise<void>((r) => s.once('close', () => r()));
    s.resume();
    for (let waited = 0; (relay.clientFull || raw.writableLength > 0) && waited < LIMIT_MS; waited += 10) await sleep(10);
    assert.equal(raw.writableLength, 0, 'the client read the whole flight');
    assert.equal(relay.clientFull, false, "the client's 'drain' cleared the flag");
    assert.equal(raw.isPaused(), false, 'the client is read again');
    assert.equal(relay.backend.isPaused(), false, 'the backend is read again');
    // The queue is empty once the kernel has the last byte; the client may not have read it all yet. Wait
    // until nothing more comes (100 ms quiet on loopback), so what comes next is the answer to our record.
    for (let last = -1, waited = 0; received !== last && waited < LIMIT_MS; waited += 100) {
      last = received;
      await sleep(100);
    }
    // And it is: a protected record that does not decrypt (RFC 8446 §5.2) ends the connection with an alert.
    const flight = received;
    s.write(Buffer.concat([Buffer.from([0x17, 0x03, 0x03, 0x00, 0x20]), Buffer.alloc(0x20)]));
    let timer: NodeJS.Timeout | undefined;
    const stalled = new Promise<never>((_, j) => {
      timer = setTimeout(() => j(new Error('the proxy did not read the client after the drain')), LIMIT_MS);
    });
    await Promise.race([closed, stalled]).finally(() => clearTimeout(timer));
    assert.ok(received > flight, 'an alert came after the flight');
    assert.ok(flight > EXTRA, `the whole flight came (${flight} bytes)`);
  });
});
