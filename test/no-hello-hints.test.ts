/**
 * What the log says when a database client does not give the proxy what
 * SNI routing needs (docs/databases.md): a server-first client (MySQL,
 * MariaDB) on a TLS entrypoint sends nothing at all; a TLS client without
 * server_name (RFC 6066 §3; redis-cli --tls without --sni) is either taken by
 * HostSNI(`*`) or refused with unrecognized_name. The real clients are in
 * test-e2e/databases.test.ts; here node's own sockets stand in for them.
 */
import assert from 'node:assert/strict';
import tls from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { type Backend, rawExchange, serverFirstBackend, startGateway, tlsAsk, tlsBackend } from './helpers.js';

describe('log lines for clients that send no ClientHello or no SNI', () => {
  let db: Awaited<ReturnType<typeof serverFirstBackend>>;
  let r1: Backend;
  let g: Awaited<ReturnType<typeof startGateway>>;

  before(async () => {
    db = await serverFirstBackend('GREETING\n');
    r1 = await tlsBackend('r1');
    g = await startGateway(`
entryPoints:
  websecure: { address: "127.0.0.1:0", clientHelloTimeout: 500ms }
  catchall: { address: "127.0.0.1:0", clientHelloTimeout: 500ms }
tcp:
  routers:
    named: { entryPoints: [websecure], rule: "HostSNI(\`db.example.test\`)", service: db, tls: { passthrough: true } }
    r1: { entryPoints: [catchall], rule: "HostSNI(\`r1.example.test\`)", service: r1, tls: { passthrough: true } }
    any: { entryPoints: [catchall], rule: "HostSNI(\`*\`)", service: r1, tls: { passthrough: true } }
  services:
    db: { loadBalancer: { servers: [{ address: "127.0.0.1:${db.port}" }] } }
    r1: { loadBalancer: { servers: [{ address: "127.0.0.1:${r1.port}" }] } }
`);
  });
  after(async () => {
    await g.close();
    await db.close();
    await r1.close();
  });

  it('a client that sends nothing (server-first protocol) on a TLS entrypoint: closed at clientHelloTimeout with the hint', async () => {
    const got = await rawExchange(g.port(), [], { timeoutMs: 3000 });
    assert.equal(got.length, 0);
    assert.equal(db.connections, 0);
    const line = g.logs.find((l) => l.msg.startsWith('the client sent nothing before clientHelloTimeout'));
    assert.ok(line, 'no hint logged');
    assert.match(line.msg, /server-first protocol\? \(MySQL\/MariaDB/);
  });

  it('a client that sent part of a hello then stalled gets no server-first hint', async () => {
    const before = g.logs.filter((l) => l.msg.includes('server-first')).length;
    await rawExchange(g.port(), [Buffer.from([0x16, 0x03, 0x01])], { timeoutMs: 3000 });
    assert.equal(g.logs.filter((l) => l.msg.includes('server-first')).length, before);
  });

  it('no SNI and no HostSNI(`*`) router: unrecognized_name, the log line says why SNI may be missing (RFC 6066 §3)', async () => {
    const err = await new Promise<Error>((resolve) => {
      const s = tls.connect({ host: '127.0.0.1', port: g.port(), rejectUnauthorized: false });
      s.once('error', resolve);
    });
    assert.match(err.message, /unrecognized name/i);
    const line = g.logs.find((l) => l.msg.startsWith('no router for ClientHello: no SNI'));
    assert.ok(line);
    assert.match(line.msg, /redis-cli --tls sends one only with --sni/);
    assert.match(line.msg, /unknown CA/);
  });

  it('no SNI and a HostSNI(`*`) router: routed there, and logged as no SNI', async () => {
    // node:tls sends no server_name when servername is '' (an IP address host sends none either).
    const answer = await tlsAsk(g.port('catchall'), '');
    assert.match(answer, /^r1 - /);
    assert.ok(g.logs.some((l) => l.msg.startsWith('no SNI: the client sent no SNI') && l.router === 'any'));
  });
});
