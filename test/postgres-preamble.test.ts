/**
 * Entrypoint `protocol: postgres` (proxy/preamble.ts, proxy/protocols/postgres.ts):
 * the PostgreSQL TLS preamble (PostgreSQL docs, "Message Flow: SSL Session
 * Encryption", "Message Formats") before the ClientHello, on both sides.
 * Clients: raw sockets for the preamble, then node:tls over the same socket.
 * Backends: a server that speaks the preamble and then TLS (node:tls over the
 * socket), and plain TCP servers that record what they got.
 * The real psql/pgbench against PostgreSQL 15 are in test-e2e/databases.test.ts.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import tls from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { parseConfigText } from '../src/config/load.js';
import { CANCEL_REQUEST_CODE, errorResponse, GSSENC_REQUEST_CODE, SSL_REQUEST, specialRequest } from '../src/proxy/protocols/postgres.js';
import { certFor, rawExchange, sleep, startGateway } from './helpers.js';

const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
};
/** A StartupMessage for protocol 3.0 (user=postgres). */
const startup = () => {
  const body = Buffer.concat([u32(196608), Buffer.from('user\0postgres\0\0')]);
  return Buffer.concat([u32(body.length + 4), body]);
};
const cancelRequest = (pid: number, key: number) => Buffer.concat([u32(16), u32(CANCEL_REQUEST_CODE), u32(pid), u32(key)]);

type Answer = 'S' | 'N' | 'S+junk' | 'silent';
/**
 * A PostgreSQL-like TLS server: reads the 8-byte SSLRequest, answers, then
 * runs TLS over the same socket and answers each line with "<name> <sni> <alpn>".
 * `direct`: a ClientHello first (PostgreSQL 17 direct TLS) is also taken.
 */
async function pgLikeBackend(name: string, answer: Answer = 'S') {
  const b = { port: 0, name, requests: [] as Buffer[], conns: 0, answer, close: () => {} };
  const srv = net.createServer((s) => {
    b.conns++;
    s.on('error', () => {});
    s.once('readable', function first() {
      const head = s.read(8) as Buffer | null;
      if (!head) return void s.once('readable', first);
      b.requests.push(head);
      // A CancelRequest gets no answer: the server closes (as PostgreSQL does).
      if (head.readUInt32BE(4) === CANCEL_REQUEST_CODE) return void s.end();
      if (b.answer === 'silent') return;
      if (b.answer === 'N') return void s.write('N');
      s.write(b.answer === 'S+junk' ? 'Sxyz' : 'S');
      const t = new tls.TLSSocket(s, { isServer: true, ...certFor(`${name}.example.test`), ALPNProtocols: ['postgresql'] });
      t.on('error', () => t.destroy());
      t.on('data', () => t.write(`${name} ${(t as unknown as { servername?: string }).servername || '-'} ${t.alpnProtocol || '-'}\n`));
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  b.port = (srv.address() as net.AddressInfo).port;
  b.close = () => srv.close();
  return b;
}

/** A plain TCP server that records what it receives (the HostSNI(`*`) cleartext backend, cancel targets). */
async function recorder() {
  const b = { port: 0, got: [] as Buffer[], close: () => {} };
  const srv = net.createServer((s) => {
    const mine: Buffer[] = [];
    s.on('data', (d) => {
      mine.push(d);
      s.write('plain-ok');
    });
    s.on('end', () => {
      b.got.push(Buffer.concat(mine));
      s.end();
    });
    s.on('error', () => {});
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  b.port = (srv.address() as net.AddressInfo).port;
  b.close = () => srv.close();
  return b;
}

/** Read exactly n bytes (or what came before close). */
function readN(s: net.Socket, n: number, timeoutMs = 3000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let got = Buffer.alloc(0);
    const t = setTimeout(() => reject(new Error(`timeout waiting for ${n} bytes, got ${got.length}`)), timeoutMs);
    const onData = (d: Buffer) => {
      got = Buffer.concat([got, d]);
      if (got.length >= n) done();
    };
    const done = () => {
      clearTimeout(t);
      s.removeListener('data', onData);
      s.removeListener('close', done);
      s.pause();
      resolve(got);
    };
    s.on('data', onData);
    s.once('close', done);
    s.resume();
  });
}

/** What libpq does: SSLRequest, wait for 'S', then TLS on the same socket. Resolves with the backend's line. */
async function pgTls(port: number, servername: string | undefined, opts: { gssFirst?: boolean; alpn?: string[] } = {}): Promise<string> {
  const s = net.connect(port, '127.0.0.1');
  await new Promise((r) => s.once('connect', r));
  if (opts.gssFirst) {
    s.write(specialRequest(GSSENC_REQUEST_CODE));
    assert.equal((await readN(s, 1)).toString(), 'N');
  }
  s.write(SSL_REQUEST);
  assert.equal((await readN(s, 1)).toString(), 'S');
  return tlsLine(tls.connect({ socket: s, servername, rejectUnauthorized: false, ALPNProtocols: opts.alpn }));
}

function tlsLine(t: tls.TLSSocket): Promise<string> {
  return new Promise((resolve, reject) => {
    t.setTimeout(5000, () => t.destroy(new Error('timeout')));
    t.once('secureConnect', () => t.write('hi\n'));
    t.once('data', (d) => {
      resolve(d.toString().trim());
      t.destroy();
    });
    t.once('error', reject);
    t.once('close', () => reject(new Error('closed before an answer')));
  });
}

describe('entrypoint protocol: postgres (PostgreSQL SSLRequest preamble)', () => {
  let db1: Awaited<ReturnType<typeof pgLikeBackend>>;
  let db2: Awaited<ReturnType<typeof pgLikeBackend>>;
  let refusing: Awaited<ReturnType<typeof pgLikeBackend>>;
  let junk: Awaited<ReturnType<typeof pgLikeBackend>>;
  let silent: Awaited<ReturnType<typeof pgLikeBackend>>;
  let plain: Awaited<ReturnType<typeof recorder>>;
  let plainTerm: Awaited<ReturnType<typeof recorder>>;
  let g: Awaited<ReturnType<typeof startGateway>>;
  let g2: Awaited<ReturnType<typeof startGateway>>;
  let certDir = '';

  before(async () => {
    db1 = await pgLikeBackend('db1');
    db2 = await pgLikeBackend('db2');
    refusing = await pgLikeBackend('off', 'N');
    junk = await pgLikeBackend('junk', 'S+junk');
    silent = await pgLikeBackend('silent', 'silent');
    plain = await recorder();
    plainTerm = await recorder();
    const svc = (n: string, port: number) => `    ${n}: { loadBalancer: { servers: [{ address: "127.0.0.1:${port}" }] } }\n`;
    const { cert, key } = certFor('term.example.test');
    const { mkdtempSync, writeFileSync } = await import('node:fs');
    const { join } = await import('node:path');
    const { tmpdir } = await import('node:os');
    certDir = mkdtempSync(join(tmpdir(), 'echgate-pg-unit-'));
    const dir = certDir;
    writeFileSync(join(dir, 'term.pem'), cert);
    writeFileSync(join(dir, 'term.key'), key);
    const routers = (ep: string, withPlain: boolean) => `
    ${ep}-db1: { entryPoints: [${ep}], rule: "HostSNI(\`db1.example.test\`)", service: db1, tls: { passthrough: true } }
    ${ep}-db2: { entryPoints: [${ep}], rule: "HostSNI(\`db2.example.test\`)", service: db2, tls: { passthrough: true } }
    ${ep}-off: { entryPoints: [${ep}], rule: "HostSNI(\`off.example.test\`)", service: off, tls: { passthrough: true } }
    ${ep}-junk: { entryPoints: [${ep}], rule: "HostSNI(\`junk.example.test\`)", service: junk, tls: { passthrough: true } }
    ${ep}-silent: { entryPoints: [${ep}], rule: "HostSNI(\`silent.example.test\`)", service: silent, tls: { passthrough: true } }
    ${ep}-direct: { entryPoints: [${ep}], rule: "HostSNI(\`direct.example.test\`) && ALPN(\`postgresql\`)", service: db2, tls: { passthrough: true } }
    ${ep}-term: { entryPoints: [${ep}], rule: "HostSNI(\`term.example.test\`)", service: plainTerm, tls: {} }
${withPlain ? `    ${ep}-plain: { entryPoints: [${ep}], rule: "HostSNI(\`*\`)", service: plain }\n` : ''}`;
    const services = `${svc('db1', db1.port)}${svc('db2', db2.port)}${svc('off', refusing.port)}${svc('junk', junk.port)}${svc('silent', silent.port)}${svc('plain', plain.port)}${svc('plainTerm', plainTerm.port)}`;
    const tlsSection = `tls:\n  certificates:\n    - { certFile: "${join(dir, 'term.pem')}", keyFile: "${join(dir, 'term.key')}" }\n`;
    g = await startGateway(`
entryPoints:
  pg: { address: "127.0.0.1:0", protocol: postgres, clientHelloTimeout: 1s }
${tlsSection}tcp:
  routers:${routers('pg', false)}
  services:
${services}`);
    g2 = await startGateway(`
entryPoints:
  pgplain: { address: "127.0.0.1:0", protocol: postgres, clientHelloTimeout: 1s }
  tlsonly: { address: "127.0.0.1:0", clientHelloTimeout: 1s }
${tlsSection}tcp:
  routers:${routers('pgplain', true)}
    direct17: { entryPoints: [tlsonly], rule: "HostSNI(\`db2.example.test\`) && ALPN(\`postgresql\`)", service: direct, tls: { passthrough: true } }
  services:
${services}    direct: { loadBalancer: { servers: [{ address: "127.0.0.1:${db2.port}" }] } }
`);
  });
  after(async () => {
    await g.close();
    await g2.close();
    for (const b of [db1, db2, refusing, junk, silent, plain, plainTerm]) b.close();
    if (certDir) (await import('node:fs')).rmSync(certDir, { recursive: true, force: true });
  });

  it('SSLRequest → S, then the ClientHello SNI picks the server; the backend is asked with SSLRequest first', async () => {
    const before1 = db1.requests.length;
    assert.match(await pgTls(g.port('pg'), 'db1.example.test'), /^db1 db1\.example\.test /);
    assert.match(await pgTls(g.port('pg'), 'db2.example.test'), /^db2 db2\.example\.test /);
    assert.deepEqual(db1.requests[before1], Buffer.from(SSL_REQUEST));
  });

  it('an unknown name gets unrecognized_name after the S (RFC 6066 §3)', async () => {
    const s = net.connect(g.port('pg'), '127.0.0.1');
    await new Promise((r) => s.once('connect', r));
    s.write(SSL_REQUEST);
    assert.equal((await readN(s, 1)).toString(), 'S');
    const t = tls.connect({ socket: s, servername: 'nope.example.test', rejectUnauthorized: false });
    const err = await new Promise<Error>((r) => t.once('error', r));
    assert.match(err.message, /unrecognized name/i);
  });

  it('GSSENCRequest → N, then SSLRequest → S (GSSAPI encryption carries no name to route on)', async () => {
    assert.match(await pgTls(g.port('pg'), 'db1.example.test', { gssFirst: true }), /^db1 /);
  });

  it('a second GSSENCRequest is refused with an ErrorResponse', async () => {
    const got = await rawExchange(g.port('pg'), [specialRequest(GSSENC_REQUEST_CODE), specialRequest(GSSENC_REQUEST_CODE)], { gapMs: 100 });
    assert.equal(got[0], 0x4e);
    assert.equal(got[1], 0x45);
  });

  it('a cleartext StartupMessage with no HostSNI(`*`) router: ErrorResponse "TLS required" (28000), closed', async () => {
    const got = await rawExchange(g.port('pg'), [startup()]);
    assert.deepEqual(got.subarray(0, 1).toString(), 'E');
    assert.match(got.toString('latin1'), /C28000\0MTLS required/);
    assert.ok(g.gw.metrics.connections.get({ entrypoint: 'pg', router: '-', outcome: 'tls_required' })! >= 1);
  });

  it('a cleartext StartupMessage goes, unchanged, to the HostSNI(`*`) router when there is one', async () => {
    const got = await rawExchange(g2.port('pgplain'), [startup()], { collectMs: 500 });
    assert.equal(got.toString(), 'plain-ok');
    await sleep(100);
    assert.ok(plain.got.some((b) => b.equals(startup())));
  });

  it('CancelRequest is forwarded to every server of the entrypoint, then the client is closed', async () => {
    const before = plain.got.length;
    const cr = cancelRequest(4242, 0x01020304);
    const got = await rawExchange(g2.port('pgplain'), [cr]);
    assert.equal(got.length, 0);
    await sleep(200);
    // The cleartext recorder is one of the entrypoint's servers; the TLS ones got it as well (they only record 8 bytes).
    assert.ok(plain.got.slice(before).some((b) => b.equals(cr)));
    assert.ok(db1.requests.some((b) => b.equals(cr.subarray(0, 8))));
    assert.ok(g2.gw.metrics.connections.get({ entrypoint: 'pgplain', router: '-', outcome: 'cancel_forwarded' })! >= 1);
  });

  it('direct TLS (PostgreSQL 17 sslnegotiation=direct, ALPN postgresql) on the postgres entrypoint: routed by the ALPN rule', async () => {
    const line = await tlsLine(tls.connect({ host: '127.0.0.1', port: g.port('pg'), servername: 'direct.example.test', ALPNProtocols: ['postgresql'], rejectUnauthorized: false }));
    assert.match(line, /^db2 direct\.example\.test postgresql$/);
  });

  it('direct TLS on an ordinary TLS entrypoint: plain TLS routing with an ALPN rule', async () => {
    // The backend here expects an SSLRequest first, so a PostgreSQL 17 server would be needed for the full
    // session; what echgate does is visible in the route: the hello is routed by ALPN and replayed unchanged.
    const routes: unknown[] = [];
    const { subscribe, unsubscribe } = await import('node:diagnostics_channel');
    const onRoute = (m: unknown) => routes.push(m);
    subscribe('echgate:route', onRoute);
    try {
      const t = tls.connect({ host: '127.0.0.1', port: g2.port('tlsonly'), servername: 'db2.example.test', ALPNProtocols: ['postgresql'], rejectUnauthorized: false });
      t.on('error', () => {});
      await sleep(300);
      t.destroy();
      assert.ok(routes.some((r) => (r as { router: string }).router === 'direct17'));
    } finally {
      unsubscribe('echgate:route', onRoute);
    }
  });

  it('a terminating router: echgate completes TLS after the S and the backend gets plaintext, no SSLRequest', async () => {
    const before = plainTerm.got.length;
    const s = net.connect(g.port('pg'), '127.0.0.1');
    await new Promise((r) => s.once('connect', r));
    s.write(SSL_REQUEST);
    assert.equal((await readN(s, 1)).toString(), 'S');
    const t = tls.connect({ socket: s, servername: 'term.example.test', rejectUnauthorized: false });
    await new Promise((r) => t.once('secureConnect', r));
    t.write(startup());
    const d = await new Promise<Buffer>((r) => t.once('data', r));
    assert.equal(d.toString(), 'plain-ok');
    t.end();
    await sleep(200);
    assert.ok(plainTerm.got.slice(before).some((b) => b.equals(startup())));
  });

  describe('bad input: a clear error, a closed connection, the proxy unharmed', () => {
    const stillWorks = async () => assert.match(await pgTls(g.port('pg'), 'db1.example.test'), /^db1 /);

    it('a truncated SSLRequest then EOF: closed, nothing sent', async () => {
      const got = await rawExchange(g.port('pg'), [SSL_REQUEST.subarray(0, 5)]);
      // rawExchange ends nothing; the 1 s deadline closes it.
      assert.equal(got.length, 0);
      await stillWorks();
    });

    it('a truncated SSLRequest then silence: closed at clientHelloTimeout, the log says the preamble was incomplete', async () => {
      const got = await rawExchange(g.port('pg'), [SSL_REQUEST.subarray(0, 3)], { timeoutMs: 4000 });
      assert.equal(got.length, 0);
      assert.ok(g.logs.some((l) => l.msg.includes('incomplete protocol preamble') && l.bytes === 3));
      await stillWorks();
    });

    it('an oversized SSLRequest (length 12): ErrorResponse 08P01, closed', async () => {
      const big = Buffer.concat([u32(12), u32(80877103), u32(0)]);
      const got = await rawExchange(g.port('pg'), [big]);
      assert.equal(got[0], 0x45);
      assert.match(got.toString('latin1'), /C08P01\0Minvalid length of SSLRequest/);
      assert.ok(g.logs.some((l) => String(l.why).includes('SSLRequest with length 12')));
      await stillWorks();
    });

    it('a startup packet length out of range (> 10000): ErrorResponse, closed', async () => {
      const got = await rawExchange(g.port('pg'), [Buffer.concat([u32(1 << 30), u32(196608)])]);
      assert.match(got.toString('latin1'), /invalid length of startup packet/);
      await stillWorks();
    });

    it('an unknown startup code: ErrorResponse, closed', async () => {
      const got = await rawExchange(g.port('pg'), [Buffer.concat([u32(8), u32(0x00020000)])]);
      assert.match(got.toString('latin1'), /C0A000\0Munsupported frontend protocol/);
    });

    it('bytes after the SSLRequest, before its answer, are refused (CVE-2021-23214)', async () => {
      const got = await rawExchange(g.port('pg'), [Buffer.concat([SSL_REQUEST, Buffer.from('\x16\x03\x01')])]);
      assert.equal(got[0], 0x45);
      assert.match(got.toString('latin1'), /received unencrypted data after SSLRequest/);
      await stillWorks();
    });

    it('garbage instead of the ClientHello after S: closed, never sent to the cleartext router', async () => {
      const before = plain.got.length;
      const got = await rawExchange(g2.port('pgplain'), [SSL_REQUEST, Buffer.from('GET / HTTP/1.1\r\n\r\n')], { gapMs: 100 });
      assert.equal(got.toString(), 'S');
      await sleep(100);
      assert.equal(plain.got.length, before);
      assert.ok(g2.logs.some((l) => String(l.why).includes('expected a TLS ClientHello')));
      await stillWorks();
    });

    it('SSLRequest then silence: S, then closed at clientHelloTimeout with a log line that says so', async () => {
      const got = await rawExchange(g.port('pg'), [SSL_REQUEST], { timeoutMs: 4000 });
      assert.equal(got.toString(), 'S');
      assert.ok(g.logs.some((l) => l.msg.includes('sent no ClientHello before clientHelloTimeout')));
      await stillWorks();
    });

    it("a backend that answers N: the client gets a handshake_failure alert, the log says the backend refused TLS", async () => {
      const s = net.connect(g.port('pg'), '127.0.0.1');
      await new Promise((r) => s.once('connect', r));
      s.write(SSL_REQUEST);
      assert.equal((await readN(s, 1)).toString(), 'S');
      const t = tls.connect({ socket: s, servername: 'off.example.test', rejectUnauthorized: false });
      const err = await new Promise<Error>((r) => t.once('error', r));
      assert.match(err.message, /handshake failure/i);
      assert.ok(g.logs.some((l) => l.msg.includes('backend refused the TLS preamble') && String(l.why).includes("answered 'N'")));
      assert.ok(g.gw.metrics.backendErrors.get({ service: 'off', kind: 'preamble' })! >= 1);
      // The alert is counted with its router, as every other alert is (one label set per series).
      assert.ok(g.gw.metrics.alertsSent.get({ entrypoint: 'pg', router: 'pg-off', alert: 'handshake_failure' })! >= 1);
      await stillWorks();
    });

    it("a backend that sends more than S before the ClientHello is refused (CVE-2021-23222)", async () => {
      const s = net.connect(g.port('pg'), '127.0.0.1');
      await new Promise((r) => s.once('connect', r));
      s.write(SSL_REQUEST);
      await readN(s, 1);
      const t = tls.connect({ socket: s, servername: 'junk.example.test', rejectUnauthorized: false });
      const err = await new Promise<Error>((r) => t.once('error', r));
      assert.match(err.message, /handshake failure/i);
      assert.ok(g.logs.some((l) => String(l.why).includes("bytes after the backend's 'S'")));
      await stillWorks();
    });

    it('a backend that never answers the SSLRequest: refused at clientHelloTimeout', async () => {
      const s = net.connect(g.port('pg'), '127.0.0.1');
      await new Promise((r) => s.once('connect', r));
      s.write(SSL_REQUEST);
      await readN(s, 1);
      const t = tls.connect({ socket: s, servername: 'silent.example.test', rejectUnauthorized: false });
      const err = await new Promise<Error>((r) => t.once('error', r));
      assert.match(err.message, /handshake failure/i);
      assert.ok(g.logs.some((l) => String(l.why).includes('no answer to the TLS request')));
    });
  });

  it('ErrorResponse encoding: type E, length counts itself, NUL-terminated fields and list', () => {
    const e = Buffer.from(errorResponse('boom', '08P01'));
    assert.equal(e[0], 0x45);
    assert.equal(e.readUInt32BE(1), e.length - 1);
    assert.equal(e.subarray(5).toString('latin1'), 'SFATAL\0VFATAL\0C08P01\0Mboom\0\0');
  });

  it('configuration: protocol must name a known protocol', () => {
    assert.throws(() => parseConfigText('entryPoints:\n  a: { address: "127.0.0.1:0", protocol: mysql }\n', 't.yml'), /entryPoints\.a\.protocol.*postgres/);
    assert.equal(parseConfigText('entryPoints:\n  a: { address: "127.0.0.1:0", protocol: postgres }\n', 't.yml').entryPoints.get('a')!.protocol, 'postgres');
  });
});
