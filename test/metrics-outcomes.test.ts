/**
 * echgate_connections_total{outcome}: every way a connection can end has its
 * own label value (docs/configuration.md, metrics), each produced here by a
 * real client against a running gateway and read back from the metrics text.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { freePort } from '../src/cli/free-port.js';
import { RoutingTable } from '../src/routing/table.js';
import { frameHandshake, parseHelloRecords } from '../src/wire/tls/record.js';
import { type Backend, certFor, rawExchange, sleep, startGateway, tlsAsk, tlsBackend, vector } from './helpers.js';

const capture = vector('captures/chr-ech2a-app-alpn.bin'); // outer SNI public.example.test

describe('echgate_connections_total: one outcome per way a connection ends', () => {
  let g: Awaited<ReturnType<typeof startGateway>>;
  let app: Backend;
  before(async () => {
    app = await tlsBackend('app');
    const dead = await freePort();
    const dir = mkdtempSync(join(tmpdir(), 'echgate-outcomes-'));
    const c = certFor('public.example.test');
    writeFileSync(join(dir, 'p.crt'), c.cert);
    writeFileSync(join(dir, 'p.key'), c.key);
    g = await startGateway(`
tls: { certificates: [{ certFile: "${join(dir, 'p.crt')}", keyFile: "${join(dir, 'p.key')}" }] }
entryPoints:
  websecure: { address: "127.0.0.1:0", clientHelloTimeout: 5s }
  short:
    address: "127.0.0.1:0"
    clientHelloTimeout: 300ms
    maxClientHelloBytes: 1024
    transport: { respondingTimeouts: { idleTimeout: 300ms } }
  tiny: { address: "127.0.0.1:0", maxConnections: 1 }
tcp:
  routers:
    ok: { entryPoints: [websecure, short, tiny], rule: "HostSNI(\`app.example.test\`) || HostSNI(\`boom.example.test\`)", service: app, tls: { passthrough: true } }
    down: { entryPoints: [websecure], rule: "HostSNI(\`down.example.test\`)", service: dead, tls: { passthrough: true } }
    term: { entryPoints: [websecure], rule: "HostSNI(\`public.example.test\`)", service: app, tls: {} }
  services:
    app: { loadBalancer: { servers: [{ address: "127.0.0.1:${app.port}" }] } }
    dead: { loadBalancer: { servers: [{ address: "127.0.0.1:${dead}" }] } }
`);
  });
  after(async () => {
    await g?.close();
    await app?.close();
  });

  const count = (entrypoint: string, router: string, outcome: string) => g.gw.metrics.connections.get({ entrypoint, router, outcome });
  /** Wait (bounded) for the outcome to be counted, then check the exposition text says it too. */
  async function expectOutcome(entrypoint: string, router: string, outcome: string, n = 1) {
    for (let i = 0; i < 120 && count(entrypoint, router, outcome) < n; i++) await sleep(25);
    assert.equal(count(entrypoint, router, outcome), n, `${entrypoint}/${router}/${outcome}`);
    assert.match(g.gw.metrics.render(), new RegExp(`echgate_connections_total\\{entrypoint="${entrypoint}",outcome="${outcome}",router="${router}"\\} ${n}\\n`));
  }

  it('relayed: the backend answered and the connection ran to its end', async () => {
    assert.match(await tlsAsk(g.port(), 'app.example.test'), /^app /);
    await expectOutcome('websecure', 'ok', 'relayed');
  });
  it('backend_error: the backend refused the connection (not "relayed")', async () => {
    await assert.rejects(tlsAsk(g.port(), 'down.example.test'));
    await expectOutcome('websecure', 'down', 'backend_error');
    assert.equal(count('websecure', 'down', 'relayed'), 0);
    assert.equal(g.gw.metrics.backendErrors.get({ service: 'dead', kind: 'connect' }), 1);
  });
  it('tls_alert: a terminated handshake failed (RFC 8446 §5.2: a record that does not authenticate → bad_record_mac)', async () => {
    const garbage = Uint8Array.from([23, 3, 3, 0, 32, ...new Array(32).fill(7)]);
    const got = await rawExchange(g.port(), [capture, garbage], { gapMs: 100, timeoutMs: 5000 });
    // The last record is the alert: fatal (2) bad_record_mac (20), sent as a protected record or in the clear.
    assert.ok(got.length > 0);
    await expectOutcome('websecure', 'term', 'tls_alert');
    assert.equal(count('websecure', 'term', 'relayed'), 0);
    assert.equal(g.gw.metrics.peekFailures.get({ entrypoint: 'websecure', reason: 'tls_handshake' }), 1);
  });
  it('no_route and no_sni_no_route: RFC 6066 §3 unrecognized_name', async () => {
    await assert.rejects(tlsAsk(g.port(), 'nobody.example.test'), /unrecognized name/i);
    await expectOutcome('websecure', '-', 'no_route');
    await assert.rejects(tlsAsk(g.port(), undefined));
    await expectOutcome('websecure', '-', 'no_sni_no_route');
  });
  it('timeout: no ClientHello within clientHelloTimeout', async () => {
    await rawExchange(g.port('short'), [], { timeoutMs: 5000 });
    await expectOutcome('short', '-', 'timeout');
  });
  it('too_large: a ClientHello over maxClientHelloBytes (record_overflow)', async () => {
    const got = await rawExchange(g.port('short'), [capture], { timeoutMs: 5000 });
    assert.deepEqual([...got.subarray(0, 7)], [21, 3, 3, 0, 2, 2, 22]);
    await expectOutcome('short', '-', 'too_large');
  });
  it('too_many_records: the hello in more records than MAX_HELLO_RECORDS', async () => {
    const got = await rawExchange(g.port(), [frameHandshake(parseHelloRecords(capture)!.message, 1)], { timeoutMs: 5000 });
    assert.deepEqual([...got.subarray(0, 7)], [21, 3, 3, 0, 2, 2, 10]);
    await expectOutcome('websecure', '-', 'too_many_records');
  });
  it('not_tls, sslv2_hello, malformed: first bytes that are not a usable ClientHello', async () => {
    await rawExchange(g.port(), [Buffer.from('GET / HTTP/1.1\r\n\r\n')], { timeoutMs: 5000 });
    await expectOutcome('websecure', '-', 'not_tls');
    // RFC 5246 App. E.2: an SSL 2.0 CLIENT-HELLO (2-byte header with the high bit, msg_type 1).
    await rawExchange(g.port(), [Uint8Array.from([0x80, 0x2e, 0x01, 0x03, 0x01])], { timeoutMs: 5000 });
    await expectOutcome('websecure', '-', 'sslv2_hello');
    // A handshake record whose message is a ServerHello (type 2).
    await rawExchange(g.port(), [Uint8Array.from([22, 3, 1, 0, 4, 2, 0, 0, 0])], { timeoutMs: 5000 });
    await expectOutcome('websecure', '-', 'malformed');
  });
  it('closed_early: the client ended its side mid-hello; closed: it reset the connection', async () => {
    await new Promise<void>((resolve) => {
      const s = net.connect(g.port(), '127.0.0.1', () => s.end(Uint8Array.from([22, 3, 1])));
      s.on('error', () => {});
      s.on('close', () => resolve());
      s.resume();
    });
    await expectOutcome('websecure', '-', 'closed_early');
    await new Promise<void>((resolve) => {
      const s = net.connect(g.port(), '127.0.0.1', () => {
        s.write(Uint8Array.from([22]));
        setTimeout(() => {
          s.resetAndDestroy();
          resolve();
        }, 50);
      });
      s.on('error', () => {});
    });
    await expectOutcome('websecure', '-', 'closed');
  });
  it('over_limit: maxConnections reached', async () => {
    const hold = net.connect(g.port('tiny'), '127.0.0.1');
    hold.on('error', () => {});
    await new Promise((r) => hold.once('connect', r));
    await sleep(50);
    await rawExchange(g.port('tiny'), [Uint8Array.from([22])], { timeoutMs: 5000 });
    await expectOutcome('tiny', '-', 'over_limit');
    hold.destroy();
  });
  it('idle_timeout: a relayed connection cut by respondingTimeouts.idleTimeout', async () => {
    await new Promise<void>((resolve, reject) => {
      const s = tls.connect({ host: '127.0.0.1', port: g.port('short'), servername: 'app.example.test', rejectUnauthorized: false });
      s.once('secureConnect', () => s.write('hi\n'));
      s.once('data', () => {}); // then say nothing: the proxy's idle timer ends it
      s.on('close', () => resolve());
      s.on('error', () => {});
      setTimeout(() => reject(new Error('not cut')), 5000).unref();
    });
    await expectOutcome('short', 'ok', 'idle_timeout');
    assert.equal(count('short', 'ok', 'relayed'), 0);
  });
  it('handler_error: an exception while handling the connection ends it, is counted, the next one is served', async () => {
    const match = RoutingTable.prototype.match;
    RoutingTable.prototype.match = function (this: RoutingTable<unknown>, conn) {
      if (conn.sni === 'boom.example.test') throw new TypeError('injected fault');
      return match.call(this, conn);
    } as typeof match;
    try {
      await assert.rejects(tlsAsk(g.port(), 'boom.example.test'));
      await expectOutcome('websecure', '-', 'handler_error');
      assert.equal(g.gw.metrics.handlerErrors.get({ listener: 'proxy' }), 1);
      assert.ok(g.logs.some((l) => l.msg.startsWith('internal error handling a connection') && String(l.err).includes('injected fault')));
      assert.match(await tlsAsk(g.port(), 'app.example.test'), /^app /);
    } finally {
      RoutingTable.prototype.match = match;
    }
  });
});
