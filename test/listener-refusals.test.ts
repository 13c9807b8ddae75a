/**
 * The listeners beside the proxy entrypoints (DNS over TCP and UDP, DoH, the
 * metrics listener) count every connection, request or query they refuse or
 * cut, in echgate_listener_refusals_total{listener, reason}, and say so in a
 * rate-limited warning; DoH and the metrics listener cap connections per
 * client address, so one client cannot starve the others (/ready included);
 * a DoH HTTP/1.1 body past 64 KiB gets its 413 before the connection closes.
 * Real sockets against real listeners, through the wiring serve uses
 * (startDnsService with queryCounter, Metrics.serve).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import tls from 'node:tls';
import { pino } from 'pino';
import { parseConfigText } from '../src/config/load.js';
import type { DnsConfig } from '../src/config/types.js';
import { type DnsService, queryCounter, startDnsService } from '../src/dns/service.js';
import { Metrics } from '../src/proxy/metrics.js';
import { encodeQuery, RRType } from '../src/wire/dns/message.js';
import { certFor } from './helpers.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const W = mkdtempSync(join(tmpdir(), 'echgate-refusals-'));
const c = certFor('doh.example.test');
writeFileSync(join(W, 'doh.crt'), c.cert);
writeFileSync(join(W, 'doh.key'), c.key);

/** A free TCP port on 127.0.0.1 (listened on and closed). */
async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const p = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return p;
}

function connect(port: number, localAddress = '127.0.0.1'): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: '127.0.0.1', localAddress });
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

/** Whether the socket is closed by the server within `ms` (having sent nothing). */
function closedWithin(s: net.Socket, ms: number): Promise<boolean> {
  if (s.destroyed) return Promise.resolve(true);
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), ms);
    s.on('error', () => {});
    s.once('close', () => {
      clearTimeout(t);
      resolve(true);
    });
    s.resume();
  });
}

/** Everything the server sends until it closes (or `ms` passes). */
function readAll(s: net.Socket | tls.TLSSocket, ms: number): Promise<string> {
  return new Promise((resolve) => {
    let out = '';
    const t = setTimeout(() => resolve(out), ms);
    s.on('data', (d: Buffer) => {
      out += d.toString('latin1');
    });
    s.on('error', () => {});
    s.once('close', () => {
      clearTimeout(t);
      resolve(out);
    });
  });
}

function dohTls(port: number, localAddress = '127.0.0.1'): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: '127.0.0.1', localAddress });
    const t = tls.connect({ socket, servername: 'doh.example.test', rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] });
    t.once('secureConnect', () => resolve(t));
    t.once('error', reject);
  });
}

const GET = `/dns-query?dns=${Buffer.from(encodeQuery('plain.example.test', RRType.A, { id: 0 })).toString('base64url')}`;

describe('DNS (TCP, UDP) and DoH: refusals counted and warned; DoH per-address cap; 413 delivered', { timeout: 60_000 }, () => {
  const metrics = new Metrics();
  const lines: string[] = [];
  const log = pino({ level: 'info' }, { write: (s: string) => lines.push(s) });
  let svc: DnsService;
  let dnsPort: number;
  let dohPort: number;
  const refusals = (listener: string, reason: string) => metrics.listenerRefusals.get({ listener, reason });
  const warned = (listener: string, reason: string) =>
    lines.some((l) => {
      const o = JSON.parse(l) as { level: number; listener?: string; reason?: string };
      return o.level === 40 && o.listener === listener && o.reason === reason;
    });

  before(async () => {
    dohPort = await freePort();
    const cfg = parseConfigText(
      `
entryPoints: { web: { address: "127.0.0.1:0" } }
dns:
  address: "127.0.0.1:0"
  tcp: { maxConnections: 50, maxConnectionsPerIP: 3, idleTimeout: 10s, queryTimeout: 400ms }
  doh:
    address: "127.0.0.1:${dohPort}"
    certFile: "${join(W, 'doh.crt')}"
    keyFile: "${join(W, 'doh.key')}"
    maxConnectionsPerIP: 3
    respondingTimeouts: { readTimeout: 2s, idleTimeout: 10s }
  ttl: 30
  names: { plain.example.test: { a: [127.0.0.2] } }
`,
      'refusals.yml',
    );
    svc = await startDnsService(cfg.dns as DnsConfig, () => undefined, log, queryCounter(metrics));
    dnsPort = svc.port!;
  });
  after(() => svc?.close());

  it('DNS over TCP: past maxConnectionsPerIP a connection is closed at once, counted and warned; another address still gets in', async () => {
    const held = await Promise.all([1, 2, 3].map(() => connect(dnsPort)));
    const over = await connect(dnsPort);
    assert.ok(await closedWithin(over, 1000), 'the 4th connection from one address stays open');
    assert.equal(refusals('dns_tcp', 'max_connections_per_ip'), 1);
    assert.ok(warned('dns_tcp', 'max_connections_per_ip'), lines.join(''));
    const other = await connect(dnsPort, '127.0.0.2');
    assert.equal(await closedWithin(other, 300), false, 'a connection from another address was refused');
    for (const s of [...held, other]) s.destroy();
  });

  it('DNS over TCP: a query not whole within queryTimeout, and a zero-length message, are counted', async () => {
    await sleep(100); // the held connections of the test before are gone on the server's side
    const s = await connect(dnsPort);
    s.write(Buffer.from([0x00, 0x40, 0x12])); // 64 octets announced, 1 sent
    assert.ok(await closedWithin(s, 3000));
    assert.equal(refusals('dns_tcp', 'query_timeout'), 1, metrics.render());
    const z = await connect(dnsPort);
    z.write(Buffer.from([0, 0]));
    assert.ok(await closedWithin(z, 1000));
    assert.equal(refusals('dns_tcp', 'malformed'), 1);
  });

  it('DNS over UDP: a datagram that is no query is counted malformed (dns_queries_total does not see it)', async () => {
    const dgram = await import('node:dgram');
    const u = dgram.createSocket('udp4');
    await new Promise<void>((r) => u.send(Buffer.from('not a dns message at all'), dnsPort, '127.0.0.1', () => r()));
    for (let i = 0; i < 50 && refusals('dns_udp', 'malformed') === 0; i++) await sleep(10);
    u.close();
    assert.equal(refusals('dns_udp', 'malformed'), 1);
  });

  it('DoH: past maxConnectionsPerIP a connection is closed at once, counted and warned; another address is answered', async () => {
    const held = await Promise.all([1, 2, 3].map(() => connect(dohPort)));
    const over = await connect(dohPort);
    assert.ok(await closedWithin(over, 1000), 'the 4th connection from one address stays open');
    assert.equal(refusals('dns_doh', 'max_connections_per_ip'), 1);
    assert.equal(refusals('dns_doh', 'tls_handshake'), 0, 'the capped socket was counted twice');
    assert.ok(warned('dns_doh', 'max_connections_per_ip'));
    const t = await dohTls(dohPort, '127.0.0.2');
    t.write(`GET ${GET} HTTP/1.1\r\nhost: doh\r\naccept: application/dns-message\r\nconnection: close\r\n\r\n`);
    assert.match(await readAll(t, 3000), /^HTTP\/1\.1 200/);
    for (const s of held) s.destroy();
  });

  it('DoH: a connection that completes no request within readTimeout is counted read_timeout', async () => {
    await sleep(100); // the held connections of the test before are gone on the server's side
    const before = refusals('dns_doh', 'read_timeout');
    const t = await dohTls(dohPort);
    assert.ok(await closedWithin(t as unknown as net.Socket, 4000));
    assert.equal(refusals('dns_doh', 'read_timeout'), before + 1);
  });

  it('DoH HTTP/1.1: a 100 KiB head is 431, a bad query 400: both counted', async () => {
    const t = await dohTls(dohPort);
    t.write(`GET ${GET} HTTP/1.1\r\nhost: doh\r\nx-big: ${'a'.repeat(100 * 1024)}\r\n\r\n`);
    assert.match(await readAll(t, 3000), /^HTTP\/1\.1 431/);
    assert.equal(refusals('dns_doh', 'header_too_large'), 1, metrics.render());
    const b = await dohTls(dohPort);
    b.write('GET /dns-query?dns=*** HTTP/1.1\r\nhost: doh\r\nconnection: close\r\n\r\n');
    assert.match(await readAll(b, 3000), /^HTTP\/1\.1 400/);
    assert.equal(refusals('dns_doh', 'bad_request'), 1);
  });

  it('DoH HTTP/1.1: a body past 64 KiB, still streaming, gets its 413 and then an orderly close (FIN, not a reset), counted', async () => {
    for (let round = 0; round < 5; round++) {
      const t = await dohTls(dohPort);
      // RFC 9112 §9.6: a reset while the client still sends can discard the 413 before it is read; the
      // server must close its side first (the client sees its end) and read on for a while.
      let ended = false;
      let resetFirst = false;
      t.once('end', () => {
        ended = true;
      });
      t.on('error', () => {
        if (!ended) resetFirst = true;
      });
      const got = readAll(t, 5000);
      t.write('POST /dns-query HTTP/1.1\r\nhost: doh\r\ncontent-type: application/dns-message\r\ncontent-length: 100000000\r\n\r\n');
      // A burst first: bytes the server has not read yet when it answers (what turns a close into a reset).
      t.write(Buffer.alloc(1024 * 1024));
      // Keep sending after the limit, as a client streaming a large body does, until the server closes.
      const chunk = Buffer.alloc(16 * 1024);
      let sending = true;
      t.once('close', () => {
        sending = false;
      });
      (async () => {
        for (let i = 0; i < 400 && sending && !t.destroyed; i++) {
          if (!t.write(chunk)) await new Promise((r) => setTimeout(r, 5));
        }
      })().catch(() => {});
      const out = await got;
      sending = false;
      t.destroy();
      assert.match(out, /^HTTP\/1\.1 413/, `round ${round}: ${JSON.stringify(out.slice(0, 40))}`);
      assert.ok(ended && !resetFirst, `round ${round}: the server reset the connection instead of closing its side (end: ${ended})`);
    }
    assert.equal(refusals('dns_doh', 'body_too_large'), 5);
  });
});

describe('metrics listener: refusals counted and warned; per-address cap keeps /ready reachable', { timeout: 30_000 }, () => {
  const metrics = new Metrics();
  const lines: string[] = [];
  const log = pino({ level: 'info' }, { write: (s: string) => lines.push(s) });
  let srv: Awaited<ReturnType<Metrics['serve']>>;
  let port: number;
  const refusals = (reason: string) => metrics.listenerRefusals.get({ listener: 'metrics', reason });
  /** Answers of /hold, held until the test ends them (a connection in the middle of an answer). */
  const holding: { end(): void }[] = [];
  before(async () => {
    const routes = (_req: unknown, res: { end(): void }, path: string) => {
      if (path !== '/hold') return false;
      holding.push(res);
      return true;
    };
    srv = await metrics.serve('127.0.0.1', 0, { log, routes, limits: { maxConnections: 6, maxConnectionsPerIP: 3, headersTimeoutMs: 400, keepAliveTimeoutMs: 200, checkIntervalMs: 100 } });
    port = (srv.address() as net.AddressInfo).port;
  });
  after(() => srv?.close());
  /** `n` connections from `from`, each in the middle of an answer. */
  const busy = async (n: number, from: string) => {
    const want = holding.length + n;
    const out = await Promise.all(Array.from({ length: n }, () => connect(port, from)));
    for (const s of out) s.write('GET /hold HTTP/1.1\r\nhost: x\r\n\r\n');
    for (let i = 0; i < 100 && holding.length < want; i++) await sleep(10);
    assert.equal(holding.length, want);
    return out;
  };
  const release = (held: net.Socket[]) => {
    for (const h of holding.splice(0)) h.end();
    for (const s of held) s.destroy();
  };

  it('one address holding its 3 idle: its 4th gets in and its oldest idle one is closed, counted and warned; /ready answers another address', async () => {
    const held = await Promise.all([1, 2, 3].map(() => connect(port)));
    const oldest = closedWithin(held[0]!, 1000);
    const fourth = await connect(port);
    assert.ok(await oldest, 'the oldest idle connection of the address was not closed');
    assert.equal(await closedWithin(fourth, 300), false, 'the 4th was refused');
    assert.equal(refusals('idle_closed_for_room'), 1);
    assert.equal(refusals('max_connections_per_ip'), 0);
    assert.ok(lines.some((l) => /"reason":"idle_closed_for_room"/.test(l) && /"level":40/.test(l)));
    const r = await connect(port, '127.0.0.2');
    r.write('GET /ready HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n');
    assert.match(await readAll(r, 3000), /^HTTP\/1\.1 200/);
    for (const s of [...held, fourth]) s.destroy();
  });

  it('one address with its 3 in the middle of answers: the 4th is closed, counted max_connections_per_ip and warned', async () => {
    await sleep(100);
    const held = await busy(3, '127.0.0.1');
    const over = await connect(port);
    assert.ok(await closedWithin(over, 1000));
    assert.equal(refusals('max_connections_per_ip'), 1);
    assert.ok(lines.some((l) => /"reason":"max_connections_per_ip"/.test(l) && /"level":40/.test(l)));
    release(held);
  });

  it('past maxConnections (from several addresses, all answering) a connection is dropped and counted max_connections', async () => {
    await sleep(100);
    const held = [...(await busy(3, '127.0.0.1')), ...(await busy(3, '127.0.0.3'))];
    const over = await connect(port, '127.0.0.4');
    assert.ok(await closedWithin(over, 1000));
    for (let i = 0; i < 50 && refusals('max_connections') === 0; i++) await sleep(10);
    assert.equal(refusals('max_connections'), 1);
    release(held);
  });

  it('a silent connection gets 408 at headersTimeout (counted request_timeout); a 20 KiB head gets 431 (header_too_large); garbage 400', async () => {
    await sleep(100);
    const s = await connect(port);
    assert.match(await readAll(s, 3000), /^HTTP\/1\.1 408/);
    assert.equal(refusals('request_timeout'), 1);
    const h = await connect(port);
    h.write(`GET /metrics HTTP/1.1\r\nx: ${'a'.repeat(20 * 1024)}\r\n\r\n`);
    assert.match(await readAll(h, 3000), /^HTTP\/1\.1 431/);
    assert.equal(refusals('header_too_large'), 1);
    const g = await connect(port);
    g.write('\x16\x03\x01garbage\r\n\r\n');
    assert.match(await readAll(g, 3000), /^HTTP\/1\.1 400/);
    assert.equal(refusals('bad_request'), 1);
  });

  it('the routine keep-alive close after an answer is not counted', async () => {
    await sleep(100);
    const before = JSON.stringify(metrics.snapshot().counters.echgate_listener_refusals_total);
    const s = await connect(port);
    s.write('GET /ready HTTP/1.1\r\nhost: x\r\n\r\n');
    assert.match(await readAll(s, 3000), /^HTTP\/1\.1 200[\s\S]*keep-alive/i);
    assert.equal(JSON.stringify(metrics.snapshot().counters.echgate_listener_refusals_total), before);
  });

  it('the counter is in /metrics and in the snapshot a process group sums', async () => {
    assert.match(metrics.render(), /echgate_listener_refusals_total\{listener="metrics",reason="max_connections_per_ip"\} 1/);
    const sum = new Metrics();
    sum.merge(metrics.snapshot());
    sum.merge(metrics.snapshot());
    assert.equal(sum.listenerRefusals.get({ listener: 'metrics', reason: 'max_connections_per_ip' }), 2);
  });
});
