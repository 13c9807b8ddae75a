/**
 * The passthrough proxy against real peers: node:tls, openssl s_client and
 * curl as clients; node:tls servers with distinct certificates and a
 * server-speaks-first TCP server as backends.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { nodeProvider } from '../src/crypto/node.js';
import { TlsClient } from '../src/tls13/client.js';
import { AlertDescription } from '../src/wire/tls/constants.js';
import { frameHandshake, parseHelloRecords } from '../src/wire/tls/record.js';
import { type Backend, certFor, rawExchange, serverFirstBackend, sleep, startGateway, tlsAsk, tlsBackend, vector } from './helpers.js';

const run = promisify(execFile);
const alertBytes = (name: keyof typeof AlertDescription) => Buffer.from([21, 3, 3, 0, 2, 2, AlertDescription[name]]);

/** A plain TCP backend that records everything it receives and answers "ok". */
async function recordingBackend(): Promise<{ port: number; got: Buffer[]; conns: number; close(): void }> {
  const b = { port: 0, got: [] as Buffer[], conns: 0, close: () => {} };
  const srv = net.createServer((s) => {
    b.conns++;
    const mine: Buffer[] = [];
    b.got.push(Buffer.alloc(0));
    const idx = b.got.length - 1;
    s.on('data', (d) => {
      mine.push(d);
      b.got[idx] = Buffer.concat(mine);
      s.write('ok');
    });
    s.on('error', () => {});
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  b.port = (srv.address() as net.AddressInfo).port;
  b.close = () => srv.close();
  return b;
}

describe('passthrough routing with real TLS peers', () => {
  let app: Backend;
  let app2: Backend;
  let api: Backend;
  let db: Awaited<ReturnType<typeof serverFirstBackend>>;
  let g: Awaited<ReturnType<typeof startGateway>>;

  before(async () => {
    app = await tlsBackend('app');
    app2 = await tlsBackend('app2', 'app.example.test');
    api = await tlsBackend('api', 'api-eu.example.test');
    db = await serverFirstBackend('MYSQL-GREETING\n');
    g = await startGateway(`
entryPoints:
  websecure: { address: "127.0.0.1:0", clientHelloTimeout: 2s }
  db: { address: "127.0.0.1:0" }
tcp:
  routers:
    app:
      entryPoints: [websecure]
      rule: "HostSNI(\`app.example.test\`)"
      service: app
      tls: { passthrough: true }
    api:
      entryPoints: [websecure]
      rule: "HostSNIRegexp(\`^api-[a-z]+\\\\.example\\\\.test$\`) && ALPN(\`h2\`)"
      service: api
      tls: { passthrough: true }
    db:
      entryPoints: [db]
      rule: "HostSNI(\`*\`)"
      service: db
  services:
    app: { loadBalancer: { servers: [{ address: "127.0.0.1:${app.port}" }, { address: "127.0.0.1:${app2.port}" }] } }
    api: { loadBalancer: { servers: [{ address: "127.0.0.1:${api.port}" }] } }
    db: { loadBalancer: { servers: [{ address: "127.0.0.1:${db.port}" }] } }
`);
  });
  after(async () => {
    await g.close();
    await Promise.all([app.close(), app2.close(), api.close(), db.close()]);
  });

  it('node:tls: SNI picks the backend; round-robin across servers', async () => {
    const answers = [await tlsAsk(g.port(), 'app.example.test'), await tlsAsk(g.port(), 'app.example.test')];
    assert.deepEqual(answers.map((a) => a.split(' ')[0]).sort(), ['app', 'app2']);
    // Routing ignores case; passthrough leaves the client's bytes untouched, so the backend sees them as sent.
    assert.equal(await tlsAsk(g.port(), 'API-EU.example.test', ['h2']), 'api API-EU.example.test h2');
  });

  it('ALPN is part of the rule: without h2 the api router does not match', async () => {
    await assert.rejects(tlsAsk(g.port(), 'api-eu.example.test', ['http/1.1']), /unrecognized name|alert number 112|ECONNRESET|socket hang up/i);
  });

  it('openssl s_client -servername reaches the backend with that certificate', async () => {
    const { stdout } = await run('sh', ['-c', `(printf 'hello\\n'; sleep 1) | timeout 10 openssl s_client -connect 127.0.0.1:${g.port()} -servername api-eu.example.test -alpn h2 2>&1`]);
    assert.match(stdout, /subject=CN ?= ?api-eu\.example\.test/);
    assert.match(stdout, /api api-eu\.example\.test h2/);
  });

  it('curl --resolve reaches the right backend', async () => {
    const { stdout } = await run('curl', ['-sk', '--http1.1', '--max-time', '10', '--resolve', `app.example.test:${g.port()}:127.0.0.1`, `https://app.example.test:${g.port()}/`]);
    assert.match(stdout, /^app2? app\.example\.test http\/1\.1$/m);
  });

  it('unknown SNI: fatal unrecognized_name alert, logged with the SNI', async () => {
    const { stdout } = await run('sh', ['-c', `timeout 10 openssl s_client -connect 127.0.0.1:${g.port()} -servername nobody.example.test </dev/null 2>&1 || true`]);
    assert.match(stdout, /unrecognized name|alert number 112/);
    assert.ok(g.logs.some((l) => l.msg === 'no router for SNI' && l.sni === 'nobody.example.test'));
  });

  it('no SNI at all: alert, and the log says the client sent no SNI', async () => {
    const { stdout } = await run('sh', ['-c', `timeout 10 openssl s_client -connect 127.0.0.1:${g.port()} -noservername </dev/null 2>&1 || true`]);
    assert.match(stdout, /unrecognized name|alert number 112/);
    assert.ok(g.logs.some((l) => String(l.msg).includes('the client sent no SNI')));
  });

  it('server-speaks-first: the greeting arrives before the client sends anything', async () => {
    const s = net.connect(g.port('db'), '127.0.0.1');
    const first = await new Promise<string>((r) => s.once('data', (d) => r(d.toString())));
    assert.equal(first, 'MYSQL-GREETING\n');
    s.write('SELECT 1\n');
    const echo = await new Promise<string>((r) => s.once('data', (d) => r(d.toString())));
    assert.equal(echo, 'SELECT 1\n');
    s.destroy();
  });

  it('a captured Chromium hello, sent 1 byte per segment, reaches the backend byte for byte', async () => {
    const rec = await recordingBackend();
    const g2 = await startGateway(`
entryPoints: { websecure: { address: "127.0.0.1:0" } }
tcp:
  routers: { r: { rule: "HostSNI(\`public.example.test\`)", service: s, tls: { passthrough: true } } }
  services: { s: { loadBalancer: { servers: [{ address: "127.0.0.1:${rec.port}" }] } } }
`);
    try {
      const bytes = vector('captures/chr-ech2a-app-alpn.bin');
      // Also reframe into 100-byte records: several records must work the same.
      const reframed = frameHandshake(parseHelloRecords(bytes)!.message, 100);
      for (const input of [bytes, reframed]) {
        const s = net.connect(g2.port(), '127.0.0.1');
        await new Promise((r) => s.once('connect', r));
        s.setNoDelay(true);
        for (let i = 0; i < input.length; i += 1) {
          s.write(input.subarray(i, i + 1));
          if (i % 64 === 0) await sleep(1);
        }
        await new Promise((r) => s.once('data', r));
        s.destroy();
        assert.deepEqual(new Uint8Array(rec.got.at(-1)!), input);
      }
    } finally {
      await g2.close();
      rec.close();
    }
  });
});

describe('mixed entrypoint, PROXY protocol, weights, failures', () => {
  it('non-TLS bytes go to the HostSNI(`*`) router without tls; TLS to the TLS router', async () => {
    const plain = await recordingBackend();
    const secure = await tlsBackend('secure');
    const g = await startGateway(`
entryPoints: { websecure: { address: "127.0.0.1:0" } }
tcp:
  routers:
    t: { rule: "HostSNI(\`secure.example.test\`)", service: t, tls: { passthrough: true } }
    p: { rule: "HostSNI(\`*\`)", service: p }
  services:
    t: { loadBalancer: { servers: [{ address: "127.0.0.1:${secure.port}" }] } }
    p: { loadBalancer: { servers: [{ address: "127.0.0.1:${plain.port}" }] } }
`);
    try {
      assert.equal(await tlsAsk(g.port(), 'secure.example.test'), 'secure secure.example.test -');
      const s = net.connect(g.port(), '127.0.0.1', () => s.write('PING\r\n'));
      await new Promise((r) => s.once('data', r));
      s.destroy();
      assert.equal(plain.got.at(-1)!.toString(), 'PING\r\n');
    } finally {
      await g.close();
      plain.close();
      await secure.close();
    }
  });

  for (const version of [1, 2] as const) {
    it(`PROXY protocol v${version} header precedes the replayed ClientHello`, async () => {
      const rec = await recordingBackend();
      const g = await startGateway(`
entryPoints: { websecure: { address: "127.0.0.1:0" } }
tcp:
  routers: { r: { rule: "HostSNI(\`public.example.test\`)", service: s, tls: { passthrough: true } } }
  services: { s: { loadBalancer: { proxyProtocol: { version: ${version} }, servers: [{ address: "127.0.0.1:${rec.port}" }] } } }
`);
      try {
        const hello = vector('captures/chr-grease-secret.bin');
        const cap = Buffer.from(vector('captures/chr-ech2a-app-alpn.bin'));
        await rawExchange(g.port(), [cap], { timeoutMs: 300 }).catch(() => {});
        const got = rec.got.at(-1)!;
        if (version === 1) {
          const line = got.toString('latin1', 0, got.indexOf('\r\n') + 2);
          assert.match(line, /^PROXY TCP4 127\.0\.0\.1 127\.0\.0\.1 \d+ \d+\r\n$/);
          assert.equal(Number(line.trim().split(' ')[5]), g.port());
          assert.deepEqual(got.subarray(line.length), cap);
        } else {
          assert.deepEqual(got.subarray(0, 12), Buffer.from('0d0a0d0a000d0a515549540a', 'hex'));
          assert.equal(got[12], 0x21);
          assert.equal(got[13], 0x11);
          assert.equal(got.readUInt16BE(14), 12);
          assert.deepEqual([...got.subarray(16, 20)], [127, 0, 0, 1]);
          assert.equal(got.readUInt16BE(26), g.port());
          assert.deepEqual(got.subarray(28), cap);
        }
        assert.ok(hello.length > 0);
      } finally {
        await g.close();
        rec.close();
      }
    });
  }

  it('weighted services split 3:1', async () => {
    const a = await recordingBackend();
    const b = await recordingBackend();
    const g = await startGateway(`
entryPoints: { db: { address: "127.0.0.1:0" } }
tcp:
  routers: { r: { rule: "HostSNI(\`*\`)", service: w } }
  services:
    w: { weighted: { services: [{ name: a, weight: 3 }, { name: b, weight: 1 }] } }
    a: { loadBalancer: { servers: [{ address: "127.0.0.1:${a.port}" }] } }
    b: { loadBalancer: { servers: [{ address: "127.0.0.1:${b.port}" }] } }
`);
    try {
      for (let i = 0; i < 8; i++) await rawExchange(g.port('db'), [Buffer.from('x')], { timeoutMs: 200 }).catch(() => {});
      await sleep(50);
      assert.equal(a.conns, 6);
      assert.equal(b.conns, 2);
    } finally {
      await g.close();
      a.close();
      b.close();
    }
  });

  it('backend connect failure closes the client, is logged and counted', async () => {
    const dead = net.createServer();
    await new Promise<void>((r) => dead.listen(0, '127.0.0.1', () => r()));
    const port = (dead.address() as net.AddressInfo).port;
    dead.close();
    const g = await startGateway(`
entryPoints: { websecure: { address: "127.0.0.1:0" } }
tcp:
  routers: { r: { rule: "HostSNI(\`app.example.test\`)", service: s, tls: { passthrough: true } } }
  services: { s: { loadBalancer: { servers: [{ address: "127.0.0.1:${port}" }] } } }
`);
    try {
      await assert.rejects(tlsAsk(g.port(), 'app.example.test'));
      // The client may see its close before the gateway's error handler has counted (a loaded machine): poll, bounded.
      for (let i = 0; i < 100 && g.gw.metrics.backendErrors.get({ service: 's', kind: 'connect' }) === 0; i++) await sleep(50);
      assert.equal(g.gw.metrics.backendErrors.get({ service: 's', kind: 'connect' }), 1);
      assert.ok(g.logs.some((l) => l.msg === 'backend connect failed'));
    } finally {
      await g.close();
    }
  });

  it('half-close and a large transfer both ways keep every byte (backpressure)', async () => {
    // Backend: reads everything until EOF, then answers with the SHA-256 and 8 MiB of its own.
    const payloadBack = randomBytes(8 << 20);
    const srv = net.createServer({ allowHalfOpen: true }, (s) => {
      const h = createHash('sha256');
      s.on('data', (d) => h.update(d));
      s.on('end', () => {
        s.write(h.digest());
        s.end(payloadBack);
      });
    });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
    const g = await startGateway(`
entryPoints: { db: { address: "127.0.0.1:0" } }
tcp:
  routers: { r: { rule: "HostSNI(\`*\`)", service: s } }
  services: { s: { loadBalancer: { servers: [{ address: "127.0.0.1:${(srv.address() as net.AddressInfo).port}" }] } } }
`);
    try {
      const up = randomBytes(16 << 20);
      const s = net.connect({ port: g.port('db'), host: '127.0.0.1', allowHalfOpen: true });
      const got: Buffer[] = [];
      s.on('data', (d) => got.push(d));
      s.end(up); // half-close after sending
      await new Promise((r) => s.once('end', r));
      const all = Buffer.concat(got);
      assert.deepEqual(all.subarray(0, 32), createHash('sha256').update(up).digest());
      assert.ok(all.subarray(32).equals(payloadBack));
      s.destroy();
    } finally {
      await g.close();
      srv.close();
    }
  });
});

describe('TLS termination on the TLS 1.3 engine', () => {
  it('node:tls and curl reach a plaintext backend through a tls: {} router; certificate by SNI; ALPN from the router', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'echgate-term-'));
    const files = ['term.example.test', 'other.example.test'].map((h) => {
      const c = certFor(h);
      writeFileSync(join(dir, `${h}.crt`), c.cert);
      writeFileSync(join(dir, `${h}.key`), c.key);
      return `    - { certFile: "${join(dir, `${h}.crt`)}", keyFile: "${join(dir, `${h}.key`)}" }`;
    });
    // Plaintext HTTP/1.1 backend that names the request it got.
    const srv = net.createServer((s) => {
      s.on('error', () => {});
      s.once('data', (d) => {
        const body = `plain backend got: ${d.toString().split('\r\n')[0]}\n`;
        s.end(`HTTP/1.1 200 OK\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`);
      });
    });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
    const g = await startGateway(`
tls:
  certificates:
${files.join('\n')}
entryPoints: { websecure: { address: "127.0.0.1:0" } }
tcp:
  routers:
    t: { rule: "HostSNI(\`term.example.test\`, \`other.example.test\`)", service: s, tls: { alpn: [http/1.1] } }
  services: { s: { loadBalancer: { servers: [{ address: "127.0.0.1:${(srv.address() as net.AddressInfo).port}" }] } } }
`);
    try {
      const { stdout } = await run('curl', ['-sk', '--max-time', '10', '--resolve', `term.example.test:${g.port()}:127.0.0.1`, `https://term.example.test:${g.port()}/hello`]);
      assert.equal(stdout, 'plain backend got: GET /hello HTTP/1.1\n');
      const got = await new Promise<{ cn: string; alpn: string | false | null; body: string }>((resolve, reject) => {
        const c = tls.connect({ port: g.port(), host: '127.0.0.1', servername: 'other.example.test', rejectUnauthorized: false, ALPNProtocols: ['h2', 'http/1.1'] });
        let body = '';
        c.on('data', (d) => {
          body += d;
        });
        c.once('secureConnect', () => c.write('GET /x HTTP/1.1\r\nhost: other\r\n\r\n'));
        c.once('end', () => resolve({ cn: String(c.getPeerCertificate().subject.CN), alpn: c.alpnProtocol, body }));
        c.once('error', reject);
      });
      assert.equal(got.cn, 'other.example.test');
      assert.equal(got.alpn, 'http/1.1');
      assert.match(got.body, /plain backend got: GET \/x HTTP\/1\.1/);
      // Garbage after a good ClientHello: an encrypted alert, a closed connection, a proxy still serving.
      const hello = new TlsClient({ provider: nodeProvider, serverName: 'term.example.test' }).hello()[0]!;
      const reply = await rawExchange(g.port(), [hello, Buffer.from([23, 3, 3, 0, 20, ...randomBytes(20)])]);
      assert.equal(reply[0], 22, 'the server flight came first');
      assert.equal(g.gw.metrics.peekFailures.get({ entrypoint: 'websecure', reason: 'tls_handshake' }), 1);
      const again = await run('curl', ['-sk', '--max-time', '10', '--resolve', `term.example.test:${g.port()}:127.0.0.1`, `https://term.example.test:${g.port()}/again`]);
      assert.equal(again.stdout, 'plain backend got: GET /again HTTP/1.1\n');
    } finally {
      await g.close();
      srv.close();
    }
  });
});

describe('limits and timeouts', () => {
  it('no SNI (openssl -noservername, the redis-cli case) reaches a HostSNI(`*`) TLS router', async () => {
    const b = await tlsBackend('any');
    const g = await startGateway(`
entryPoints: { websecure: { address: "127.0.0.1:0" } }
tcp:
  routers:
    named: { rule: "HostSNI(\`named.example.test\`)", service: s, tls: { passthrough: true } }
    any: { rule: "HostSNI(\`*\`)", service: s, tls: { passthrough: true } }
  services: { s: { loadBalancer: { servers: [{ address: "127.0.0.1:${b.port}" }] } } }
`);
    try {
      const { stdout } = await run('sh', ['-c', `(printf 'hello\\n'; sleep 1) | timeout 10 openssl s_client -connect 127.0.0.1:${g.port()} -noservername 2>&1`]);
      assert.match(stdout, /any - -/);
    } finally {
      await g.close();
      await b.close();
    }
  });
  it('an idle relayed connection is closed after idleTimeout', async () => {
    const db = await serverFirstBackend('hi\n');
    const g = await startGateway(`
entryPoints: { db: { address: "127.0.0.1:0", transport: { respondingTimeouts: { idleTimeout: 300ms } } } }
tcp:
  routers: { r: { rule: "HostSNI(\`*\`)", service: s } }
  services: { s: { loadBalancer: { servers: [{ address: "127.0.0.1:${db.port}" }] } } }
`);
    try {
      const t0 = Date.now();
      const got = await rawExchange(g.port('db'), [], { timeoutMs: 3000 });
      assert.equal(got.toString(), 'hi\n');
      const took = Date.now() - t0;
      assert.ok(took >= 250 && took < 2000, `closed after ${took} ms`);
    } finally {
      await g.close();
      await db.close();
    }
  });
  it('maxConnections: connections past the limit are closed and counted', async () => {
    const db = await serverFirstBackend('hi\n');
    const g = await startGateway(`
entryPoints: { db: { address: "127.0.0.1:0", maxConnections: 2 } }
tcp:
  routers: { r: { rule: "HostSNI(\`*\`)", service: s } }
  services: { s: { loadBalancer: { servers: [{ address: "127.0.0.1:${db.port}" }] } } }
`);
    try {
      const held = [net.connect(g.port('db'), '127.0.0.1'), net.connect(g.port('db'), '127.0.0.1')];
      await Promise.all(held.map((s) => new Promise((r) => s.once('data', r))));
      const third = await rawExchange(g.port('db'), [], { timeoutMs: 2000 });
      assert.equal(third.length, 0);
      assert.equal(g.gw.metrics.connections.get({ entrypoint: 'db', router: '-', outcome: 'over_limit' }), 1);
      // Counted and said: an over-limit connection gets no access line, so a warning names the cap.
      const warn = g.logs.find((l) => l.msg === 'entrypoint at maxConnections: new connection closed');
      assert.ok(warn, 'a warning for the refused connection');
      assert.equal(warn.entrypoint, 'db');
      assert.equal(warn.maxConnections, 2);
      for (const s of held) s.destroy();
    } finally {
      await g.close();
      await db.close();
    }
  });
});

describe('bad input never takes the proxy down', () => {
  let good: Backend;
  let g: Awaited<ReturnType<typeof startGateway>>;
  before(async () => {
    good = await tlsBackend('good');
    g = await startGateway(`
entryPoints: { websecure: { address: "127.0.0.1:0", clientHelloTimeout: 400ms, maxClientHelloBytes: 4096 } }
tcp:
  routers: { r: { rule: "HostSNI(\`good.example.test\`)", service: s, tls: { passthrough: true } } }
  services: { s: { loadBalancer: { servers: [{ address: "127.0.0.1:${good.port}" }] } } }
`);
  });
  after(async () => {
    await g.close();
    await good.close();
  });
  const failures = (reason: string) => g.gw.metrics.peekFailures.get({ entrypoint: 'websecure', reason });
  const stillServes = async () => assert.equal(await tlsAsk(g.port(), 'good.example.test'), 'good good.example.test -');

  it('random bytes: closed, counted not_tls', async () => {
    const before = failures('not_tls');
    await rawExchange(g.port(), [Buffer.from('GET / HTTP/1.1\r\n\r\n')]);
    await rawExchange(g.port(), [Buffer.concat([Buffer.from([0x42]), randomBytes(500)])]);
    assert.equal(failures('not_tls'), before + 2);
    await stillServes();
  });
  it('truncated ClientHello then FIN: closed, counted closed_early', async () => {
    const cap = vector('captures/chr-ech2a-app-alpn.bin');
    const before = failures('closed_early');
    await rawExchange(g.port(), [cap.subarray(0, 300)], { timeoutMs: 3000 }).catch(() => {});
    // rawExchange never half-closes; do it explicitly
    await new Promise<void>((resolve) => {
      const s = net.connect(g.port(), '127.0.0.1', () => s.end(cap.subarray(0, 300)));
      s.on('close', () => resolve());
      s.on('error', () => {});
      s.resume();
    });
    assert.ok(failures('closed_early') >= before + 1);
    await stillServes();
  });
  it('ClientHello larger than the cap: record_overflow alert, counted too_large', async () => {
    const cap = vector('captures/chr-ech2a-app-alpn.bin');
    const m = parseHelloRecords(cap)!.message;
    const big = new Uint8Array(5000);
    big.set(m.subarray(0, 4));
    big[1] = 0;
    big[2] = (4996 >> 8) & 0xff;
    big[3] = 4996 & 0xff;
    const got = await rawExchange(g.port(), [frameHandshake(big, 1000)]);
    assert.deepEqual(got, alertBytes('record_overflow'));
    assert.ok(failures('too_large') >= 1);
    await stillServes();
  });
  it('a record with a bad length: alert and close', async () => {
    const got = await rawExchange(g.port(), [Buffer.from([22, 3, 1, 0xff, 0xff, 1, 0, 0, 1])]);
    assert.deepEqual(got, alertBytes('record_overflow'));
    await stillServes();
  });
  it('a malformed ClientHello body: decode_error alert', async () => {
    const body = Buffer.alloc(60, 0);
    body[0] = 1;
    body.writeUIntBE(56, 1, 3);
    const got = await rawExchange(g.port(), [frameHandshake(body)]);
    assert.deepEqual(got, alertBytes('decode_error'));
    assert.ok(failures('malformed') >= 1);
  });
  it('SSLv2-style hello: closed, counted sslv2_hello', async () => {
    const v2 = Buffer.from('802e0103010015000000100000030000060000040000050000', 'hex');
    await rawExchange(g.port(), [v2]);
    assert.equal(failures('sslv2_hello'), 1);
    await stillServes();
  });
  it('slowloris (sends nothing, or a byte at a time past the deadline): closed by the deadline', async () => {
    const before = failures('timeout');
    const t0 = Date.now();
    await rawExchange(g.port(), [], { timeoutMs: 3000 });
    const cap = vector('captures/chr-ech2a-app-alpn.bin');
    await rawExchange(g.port(), Array.from({ length: 40 }, (_, i) => cap.subarray(i, i + 1)), { gapMs: 20, timeoutMs: 3000 });
    assert.equal(failures('timeout'), before + 2);
    assert.ok(Date.now() - t0 < 2500);
  });
  it('two thousand half-open connections: all closed by the deadline while a good client is served', async () => {
    const before = failures('timeout');
    const cap = vector('captures/chr-ech2a-app-alpn.bin');
    const socks: net.Socket[] = [];
    const closed: Promise<void>[] = [];
    for (let i = 0; i < 2000; i++) {
      const s = net.connect(g.port(), '127.0.0.1', () => s.write(cap.subarray(0, 10)));
      s.on('error', () => {});
      closed.push(new Promise((r) => s.once('close', () => r())));
      socks.push(s);
    }
    await stillServes();
    await Promise.all(closed);
    assert.ok(failures('timeout') >= before + 2000 - 5, `timeouts ${failures('timeout') - before}`);
    await stillServes();
  });
  it('metrics are exposed in Prometheus text form', async () => {
    const m = await g.gw.metrics.serve('127.0.0.1', 0);
    try {
      const port = (m.address() as net.AddressInfo).port;
      const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      assert.match(text, /echgate_connections_total\{entrypoint="websecure",outcome="relayed",router="r"\} \d+/);
      assert.match(text, /echgate_peek_failures_total\{entrypoint="websecure",reason="timeout"\} \d+/);
      assert.match(text, /echgate_connection_duration_seconds_count/);
      assert.match(text, /echgate_bytes_total/);
    } finally {
      m.close();
    }
  });
});
