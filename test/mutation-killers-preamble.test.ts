/**
 * Mutation killers for the PostgreSQL preamble (src/proxy/protocols/postgres.ts:
 * the client's first bytes on a `protocol: postgres` entrypoint, remote input
 * before any TLS; PostgreSQL protocol 3.0, "Message Flow" and "Message
 * Formats", and the server's own checks in postmaster ProcessStartupPacket).
 * The reader is pure, so each check is fed its bad input directly and its
 * boundary both ways. The checks the twelfth session's Stryker run
 * (`preamble` target, t12) found unguarded; each case was seen red with its
 * mutant written into dist/ by hand (docs/mutation.md, "Twelfth session
 * (tests)").
 *
 * The last cases go through a gateway for what proxy/preamble.ts does with
 * the reader's answers (its I/O side): a request cut over two reads, and the CancelRequest forwarded to every server of
 * the entrypoint (with the PROXY header a service asks for, and the client
 * closed only once every server has closed).
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { CANCEL_REQUEST_CODE, errorResponse, GSSENC_REQUEST_CODE, MAX_STARTUP_PACKET, postgres, SSL_REQUEST_CODE, TLS_REQUIRED } from '../src/proxy/protocols/postgres.js';
import { nodeProvider } from '../src/crypto/node.js';
import { TlsClient } from '../src/tls13/client.js';
import { rawExchange, sleep, startGateway } from './helpers.js';

/** Int32 length, Int32 code, then `extra` bytes (the length field says `len`, whatever follows). */
function packet(len: number, code: number, extra = 0): Uint8Array {
  const b = new Uint8Array(8 + extra);
  const v = new DataView(b.buffer);
  v.setUint32(0, len);
  v.setUint32(4, code);
  return b;
}
const step = (b: Uint8Array) => postgres.client().step(b);
const S = Uint8Array.of(0x53);
const N = Uint8Array.of(0x4e);

/** The SQLSTATE (field 'C') of an ErrorResponse. */
function sqlstate(reply: Uint8Array | undefined): string | undefined {
  if (!reply || reply[0] !== 0x45) return undefined;
  const text = Buffer.from(reply.subarray(5)).toString('latin1');
  for (const f of text.split('\0')) if (f.startsWith('C')) return f.slice(1);
  return undefined;
}
function refused(s: ReturnType<typeof step>, state: string): void {
  assert.equal(s.kind, 'refuse', JSON.stringify(s));
  assert.equal(sqlstate((s as { reply: Uint8Array }).reply), state);
}

describe('postgres preamble, client side: every startup-packet check at its boundary', () => {
  it('nothing yet, or fewer than 8 bytes: more', () => {
    assert.deepEqual(step(new Uint8Array(0)), { kind: 'more' });
    for (let n = 1; n < 8; n++) assert.deepEqual(step(packet(8, SSL_REQUEST_CODE).subarray(0, n)), { kind: 'more' }, `${n} bytes`);
  });

  it('a TLS handshake record first (0x16): direct TLS, from its first byte', () => {
    assert.deepEqual(step(Uint8Array.of(0x16)), { kind: 'direct' });
    assert.deepEqual(step(Uint8Array.of(0x16, 3, 1, 0, 5, 1, 0, 0, 1)), { kind: 'direct' });
    // 0x15 (an alert) or 0x17 is not a ClientHello: a length of 0x15030100 is out of range.
    refused(step(Uint8Array.of(0x15, 3, 1, 0, 5, 1, 0, 0)), '08P01');
  });

  it('length 8..10000 is a startup packet; 7 and 10001 are refused (08P01)', () => {
    refused(step(packet(7, 196608)), '08P01');
    refused(step(packet(0, 196608)), '08P01');
    refused(step(packet(MAX_STARTUP_PACKET + 1, 196608)), '08P01');
    refused(step(packet(0xffffffff, 196608)), '08P01');
    assert.equal(step(packet(MAX_STARTUP_PACKET, 196608)).kind, 'more');
    assert.equal(step(packet(8, 196608)).kind, 'plain');
  });

  it('SSLRequest: exactly 8 bytes → S (consumed 8); another length or bytes before the answer are refused', () => {
    assert.deepEqual(step(packet(8, SSL_REQUEST_CODE)), { kind: 'tls', consumed: 8, reply: S });
    refused(step(packet(12, SSL_REQUEST_CODE)), '08P01');
    refused(step(packet(9, SSL_REQUEST_CODE)), '08P01');
    // CVE-2021-23214: one byte behind the request, before 'S', is refused.
    refused(step(packet(8, SSL_REQUEST_CODE, 1)), '08P01');
  });

  it('GSSENCRequest: N once (consumed 8), the second refused; its length and trailing bytes as SSLRequest', () => {
    const r = postgres.client();
    assert.deepEqual(r.step(packet(8, GSSENC_REQUEST_CODE)), { kind: 'answer', consumed: 8, reply: N });
    refused(r.step(packet(8, GSSENC_REQUEST_CODE)), '08P01');
    // The first of another reader is answered: the flag is per connection.
    assert.equal(step(packet(8, GSSENC_REQUEST_CODE)).kind, 'answer');
    refused(step(packet(16, GSSENC_REQUEST_CODE)), '08P01');
    refused(step(packet(8, GSSENC_REQUEST_CODE, 2)), '08P01');
    // After N the same reader still answers SSLRequest with S.
    assert.equal(r.step(packet(8, SSL_REQUEST_CODE)).kind, 'tls');
  });

  it('CancelRequest: exactly 16 bytes → forward; 15 → more; 17, or a length other than 16 → refused', () => {
    const cancel = packet(16, CANCEL_REQUEST_CODE, 8);
    assert.deepEqual(step(cancel), { kind: 'forward' });
    assert.deepEqual(step(cancel.subarray(0, 15)), { kind: 'more' });
    assert.deepEqual(step(cancel.subarray(0, 8)), { kind: 'more' });
    refused(step(packet(16, CANCEL_REQUEST_CODE, 9)), '08P01');
    refused(step(packet(12, CANCEL_REQUEST_CODE, 4)), '08P01');
    refused(step(packet(20, CANCEL_REQUEST_CODE, 12)), '08P01');
  });

  it('a protocol 3.x StartupMessage: more until `length` bytes, then plain with the TLS-required refusal (28000)', () => {
    const len = 40;
    const start = packet(len, 196608, len - 8);
    assert.deepEqual(step(start.subarray(0, len - 1)), { kind: 'more' });
    const s = step(start);
    assert.equal(s.kind, 'plain');
    assert.deepEqual((s as { refusal: Uint8Array }).refusal, errorResponse(TLS_REQUIRED));
    assert.equal(step(packet(8, 196609)).kind, 'plain', '3.1 is protocol 3 too');
  });

  it('another code (protocol 2.0, 4.0, an unknown request): refused, 0A000', () => {
    for (const code of [131072, 262144, 80877105, 0]) refused(step(packet(8, code)), '0A000');
  });
});

describe('postgres preamble, backend side: the answer to our SSLRequest', () => {
  it("'S' alone is ok; nothing yet is more", () => {
    assert.deepEqual(postgres.backendReply(new Uint8Array(0)), { kind: 'more' });
    assert.deepEqual(postgres.backendReply(S), { kind: 'ok' });
  });
  it("'S' and anything behind it (CVE-2021-23222), 'N', 'E', another byte: refused", () => {
    for (const b of [Uint8Array.of(0x53, 0x16), Uint8Array.of(0x4e), Uint8Array.of(0x45, 0, 0, 0, 8), Uint8Array.of(0x00), Uint8Array.of(0x16)]) {
      assert.equal(postgres.backendReply(b).kind, 'refuse', Buffer.from(b).toString('hex'));
    }
  });
});

describe('postgres preamble through a gateway (proxy/preamble.ts)', () => {
  let g: Awaited<ReturnType<typeof startGateway>>;
  const servers: net.Server[] = [];
  /** What each server got, per connection, and when it closed its side. */
  const fastGot: Buffer[] = [];
  const slowGot: Buffer[] = [];
  const slowClosedAt: number[] = [];
  /** Connections to the server of a router on another entrypoint. */
  let elsewhereConns = 0;
  /** What the PostgreSQL-like server got after answering 'S'. */
  const pgGot: Buffer[] = [];
  const SLOW_MS = 400;

  async function listen(onConn: (s: net.Socket) => void): Promise<number> {
    const srv = net.createServer({ allowHalfOpen: true }, (s) => {
      s.on('error', () => {});
      onConn(s);
    });
    servers.push(srv);
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
    return (srv.address() as net.AddressInfo).port;
  }

  before(async () => {
    // fast: records everything, closes at the client's EOF. slow: closes SLOW_MS after it.
    const fast = await listen((s) => {
      const parts: Buffer[] = [];
      s.on('data', (d: Buffer) => parts.push(d));
      s.on('end', () => {
        fastGot.push(Buffer.concat(parts));
        s.end();
      });
    });
    const slow = await listen((s) => {
      const parts: Buffer[] = [];
      s.on('data', (d: Buffer) => parts.push(d));
      s.on('end', () =>
        setTimeout(() => {
          slowGot.push(Buffer.concat(parts));
          slowClosedAt.push(Date.now());
          s.end();
        }, SLOW_MS),
      );
    });
    const elsewhere = await listen((s) => {
      elsewhereConns++;
      s.resume();
      s.on('end', () => s.end());
    });
    // pg: answers our SSLRequest with 'S', then keeps what follows (the replayed ClientHello).
    const pg = await listen((s) => {
      let head = Buffer.alloc(0);
      let rest: Buffer[] | undefined;
      s.on('data', (d: Buffer) => {
        if (rest) return void rest.push(d);
        head = Buffer.concat([head, d]);
        if (head.length < 8) return;
        s.write('S');
        rest = [head.subarray(8)];
        pgGot.push(Buffer.alloc(0));
      });
      s.on('end', () => s.end());
      const keep = setInterval(() => {
        if (rest) pgGot[pgGot.length - 1] = Buffer.concat(rest);
      }, 5);
      s.on('close', () => clearInterval(keep));
    });
    // gone: a port nothing listens on (connection refused: 'error', then 'close', for one server).
    const probe = net.createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', () => r()));
    const gone = (probe.address() as net.AddressInfo).port;
    await new Promise<void>((r) => probe.close(() => r()));
    g = await startGateway(`
entryPoints:
  pgc: { address: "127.0.0.1:0", protocol: postgres, clientHelloTimeout: 1s }
  pgempty: { address: "127.0.0.1:0", protocol: postgres, clientHelloTimeout: 3s }
  other: { address: "127.0.0.1:0" }
tcp:
  routers:
    a: { entryPoints: [pgc], rule: "HostSNI(\`a.example.test\`)", service: fast, tls: { passthrough: true } }
    b: { entryPoints: [pgc], rule: "HostSNI(\`b.example.test\`)", service: slow, tls: { passthrough: true } }
    c: { entryPoints: [pgc], rule: "HostSNI(\`c.example.test\`)", service: gone, tls: { passthrough: true } }
    d: { entryPoints: [pgc], rule: "HostSNI(\`d.example.test\`)", service: pg, tls: { passthrough: true } }
    e: { entryPoints: [other], rule: "HostSNI(\`e.example.test\`)", service: elsewhere, tls: { passthrough: true } }
  services:
    fast: { loadBalancer: { proxyProtocol: { version: 1 }, servers: [{ address: "127.0.0.1:${fast}" }] } }
    slow: { loadBalancer: { proxyProtocol: { version: 2 }, servers: [{ address: "127.0.0.1:${slow}" }] } }
    pg: { loadBalancer: { servers: [{ address: "127.0.0.1:${pg}" }] } }
    elsewhere: { loadBalancer: { servers: [{ address: "127.0.0.1:${elsewhere}" }] } }
    gone: { loadBalancer: { servers: [{ address: "127.0.0.1:${gone}" }] } }
`);
  });
  after(async () => {
    await g.close();
    for (const s of servers) s.close();
  });

  it('an SSLRequest cut over two reads is answered S (the reads are joined)', async () => {
    const req = packet(8, SSL_REQUEST_CODE);
    const got = await rawExchange(g.port('pgc'), [req.subarray(0, 4), req.subarray(4)], { gapMs: 100, collectMs: 600 });
    assert.deepEqual([...got], [0x53]);
  });

  it('GSSENCRequest, then SSLRequest in a later read: N, then S (bytes behind the GSSENCRequest in its read are refused)', async () => {
    const got = await rawExchange(g.port('pgc'), [packet(8, GSSENC_REQUEST_CODE), packet(8, SSL_REQUEST_CODE)], { gapMs: 100, collectMs: 600 });
    assert.deepEqual([...got], [0x4e, 0x53]);
    const both = await rawExchange(g.port('pgc'), [Buffer.concat([packet(8, GSSENC_REQUEST_CODE), packet(8, SSL_REQUEST_CODE)])]);
    assert.equal(sqlstate(both), '08P01');
  });

  it('CancelRequest: each server gets it (behind the PROXY v1 header its service asks for); the client is closed after the last server closed, a refused one counted once', async () => {
    const cancel = packet(16, CANCEL_REQUEST_CODE, 8);
    new DataView(cancel.buffer).setUint32(8, 4242);
    new DataView(cancel.buffer).setUint32(12, 0x01020304);
    const beforeFast = fastGot.length;
    const beforeSlow = slowClosedAt.length;
    const c = net.connect(g.port('pgc'), '127.0.0.1');
    c.on('error', () => {});
    await new Promise<void>((r) => c.once('connect', () => r()));
    const clientPort = c.localPort;
    const closedAt = new Promise<number>((r) => c.once('close', () => r(Date.now())));
    c.resume();
    c.write(cancel);
    const t = await closedAt;
    for (let waited = 0; fastGot.length === beforeFast && waited < 5000; waited += 10) await sleep(10);
    assert.equal(slowClosedAt.length, beforeSlow + 1, 'the slow server had closed when the client was closed');
    assert.ok(t >= slowClosedAt[beforeSlow]!, `the client was closed ${slowClosedAt[beforeSlow]! - t} ms before the slow server closed`);
    const header = `PROXY TCP4 127.0.0.1 127.0.0.1 ${clientPort} ${g.port('pgc')}\r\n`;
    assert.equal(fastGot[beforeFast]!.toString('latin1'), header + Buffer.from(cancel).toString('latin1'));
    // The v2 service: the binary header (RFC: PROXY protocol v2 §2.2, its 12-byte signature), then the request.
    const v2 = slowGot[beforeSlow]!;
    assert.deepEqual([...v2.subarray(0, 12)], [0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
    assert.deepEqual(v2.subarray(v2.length - 16), Buffer.from(cancel));
    assert.equal(elsewhereConns, 0, "a router of another entrypoint: its server is not this entrypoint's");
  });

  it('CancelRequest on an entrypoint with no server: the client is closed at once', async () => {
    const cancel = packet(16, CANCEL_REQUEST_CODE, 8);
    const got = await rawExchange(g.port('pgempty'), [cancel], { timeoutMs: 2000 });
    assert.equal(got.length, 0);
  });

  // TODO for proxy/preamble.ts's owner (found 2026-12-04, twelfth session): this fails today, 2 !== 1. A client
  // that leaves before the backend answers does not clear the deadline: the backend is not ended (the relay does not
  // read the client before the backend's 'S'), so its 'close' (preamble.ts :282, the only clearTimeout) never comes;
  // at clientHelloTimeout refuse() counts echgate_backend_errors_total{kind="preamble"}, logs "backend refused the
  // TLS preamble" for a connection that is gone, and the backend connection is held until then.
  it('a backend that does not answer our SSLRequest: refused at clientHelloTimeout, but not once the client has gone', async () => {
    const errors = () => g.gw.metrics.backendErrors.get({ service: 'slow', kind: 'preamble' }) ?? 0;
    const hello = Buffer.concat(new TlsClient({ provider: nodeProvider, serverName: 'b.example.test' }).hello());
    const e0 = errors();
    // Stays: after S and the hello, the backend says nothing for 1 s: a handshake_failure alert (40) and one count.
    const stays = rawExchange(g.port('pgc'), [packet(8, SSL_REQUEST_CODE), hello], { gapMs: 50, timeoutMs: 5000 });
    // Leaves 200 ms after its hello: the deadline must go with the connection.
    const leaves = rawExchange(g.port('pgc'), [packet(8, SSL_REQUEST_CODE), hello], { gapMs: 50, collectMs: 300 });
    assert.deepEqual([...(await stays)], [0x53, 21, 3, 3, 0, 2, 2, 40]);
    await leaves;
    await sleep(1300);
    assert.equal(errors() - e0, 1, 'one refusal counted: the connection that stayed');
  });

  it('direct TLS with the ClientHello cut over two reads: the rest of the hello is not read as a startup packet', async () => {
    const hello = Buffer.concat(new TlsClient({ provider: nodeProvider, serverName: 'd.example.test' }).hello());
    const cut = 60;
    assert.notEqual(hello[cut], 0x16);
    const before = pgGot.length;
    const got = await rawExchange(g.port('pgc'), [hello.subarray(0, cut), hello.subarray(cut)], { gapMs: 100, collectMs: 700 });
    assert.equal(got.length, 0, `nothing for the client yet (${got.toString('latin1')})`);
    assert.equal(pgGot.length, before + 1, 'the backend was asked with SSLRequest');
    assert.ok(pgGot[before]!.equals(hello), `the backend got the whole ClientHello after its S (${pgGot[before]!.length} of ${hello.length} bytes)`);
  });
});
