/**
 * The proxy's own listeners against what a remote client may do to them:
 * an exception while handling one connection or request ends that one, is
 * counted (echgate_handler_errors_total{listener}) and logged, and the process
 * goes on serving; the metrics listener has timeouts, a connection cap and
 * answers only GET/HEAD /metrics (RFC 9110 §15.5.6: 405 with Allow otherwise).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import type { Server } from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import { freePort } from '../src/cli/free-port.js';
import { Metrics, Series } from '../src/proxy/metrics.js';
import { rawExchange, ROOT, sleep, startGateway, tlsAsk, tlsBackend } from './helpers.js';

const BIN = join(ROOT, 'bin', 'echgate.js');
const dist = (p: string) => pathToFileURL(join(ROOT, 'dist', 'src', p)).href;

describe('an exception in a listener handler never reaches the process (echgate serve)', () => {
  it('proxy connection handler and metrics HTTP handler: the faulty one ends, the next client is served', async () => {
    const alpha = await tlsBackend('alpha');
    const dir = mkdtempSync(join(tmpdir(), 'echgate-guard-'));
    // Faults injected into the real serve process before it starts: routing throws for one
    // name (inside the proxy's data handler), the first metrics render throws.
    const hook = join(dir, 'faults.mjs');
    writeFileSync(
      hook,
      `import { RoutingTable } from ${JSON.stringify(dist('routing/table.js'))};
import { Metrics } from ${JSON.stringify(dist('proxy/metrics.js'))};
const match = RoutingTable.prototype.match;
RoutingTable.prototype.match = function (conn) {
  if (conn.sni === 'boom.example.test') throw new TypeError('injected fault in the proxy handler');
  return match.call(this, conn);
};
const render = Metrics.prototype.render;
let first = true;
Metrics.prototype.render = function () {
  if (first) { first = false; throw new TypeError('injected fault in the metrics handler'); }
  return render.call(this);
};
`,
    );
    const [port, metricsPort] = [await freePort(), await freePort()];
    const f = join(dir, 'echgate.yml');
    writeFileSync(
      f,
      `
entryPoints: { websecure: { address: "127.0.0.1:${port}" } }
metrics: { address: "127.0.0.1:${metricsPort}" }
tcp:
  routers:
    r: { rule: "HostSNI(\`app.example.test\`) || HostSNI(\`boom.example.test\`)", service: alpha, tls: { passthrough: true } }
  services: { alpha: { loadBalancer: { servers: [{ address: "127.0.0.1:${alpha.port}" }] } } }
`,
    );
    const child = spawn('node', ['--import', pathToFileURL(hook).href, BIN, 'serve', '--config', f], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => {
      out += d;
    });
    child.stderr.on('data', (d) => {
      err += d;
    });
    try {
      for (let i = 0; i < 100 && !out.includes('"listening"'); i++) await sleep(50);
      assert.match(out, /"listening"/, err);
      assert.match(await tlsAsk(port, 'app.example.test'), /^alpha /);

      await assert.rejects(tlsAsk(port, 'boom.example.test'));
      const failed = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
      assert.equal(failed.status, 500);
      await failed.text();
      await sleep(200);
      assert.equal(child.exitCode, null, `serve exited: ${err}`);

      assert.match(await tlsAsk(port, 'app.example.test'), /^alpha /);
      const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
      assert.match(text, /echgate_handler_errors_total\{listener="proxy"\} 1\n/);
      assert.match(text, /echgate_handler_errors_total\{listener="metrics"\} 1\n/);
      assert.match(text, /echgate_connections_total\{entrypoint="websecure",outcome="handler_error",router="-"\} 1\n/);
      for (let i = 0; i < 40 && !out.includes('metrics request'); i++) await sleep(25);
      assert.match(out, /"err":"TypeError: injected fault in the proxy handler[^\n]*"msg":"internal error handling a connection/);
      assert.match(out, /"err":"TypeError: injected fault in the metrics handler[^\n]*"msg":"internal error answering a metrics request/);
    } finally {
      child.kill('SIGKILL');
      await alpha.close();
    }
  });
});

describe('an exception in an asynchronous connection callback (in process)', () => {
  it('thrown from the close handler: counted, logged, the connection released, the next one served', async () => {
    const alpha = await tlsBackend('alpha');
    const g = await startGateway(`
entryPoints: { websecure: { address: "127.0.0.1:0" } }
tcp:
  routers:
    boom: { rule: "HostSNI(\`boom.example.test\`)", service: alpha, tls: { passthrough: true } }
    r: { rule: "HostSNI(\`app.example.test\`)", service: alpha, tls: { passthrough: true } }
  services: { alpha: { loadBalancer: { servers: [{ address: "127.0.0.1:${alpha.port}" }] } } }
`);
    // Counting bytes for router "boom" throws: that runs in the socket's close handler, long after accept.
    // (A connection updates metric series resolved once, proxy/metrics.ts Series: the fault goes there.)
    const proto = Series.prototype;
    const inc = proto.inc;
    proto.inc = function (this: Series, by?: number) {
      if (this.key.includes('direction="in"') && this.key.includes('router="boom"')) throw new RangeError('injected fault in the close handler');
      return inc.call(this, by);
    };
    try {
      assert.match(await tlsAsk(g.port(), 'boom.example.test'), /^alpha /);
      for (let i = 0; i < 80 && g.gw.metrics.handlerErrors.get({ listener: 'proxy' }) < 1; i++) await sleep(25);
      assert.equal(g.gw.metrics.handlerErrors.get({ listener: 'proxy' }), 1);
      assert.ok(g.logs.some((l) => String(l.err).includes('injected fault in the close handler')));
      assert.equal(g.gw.openConnections(), 0, 'the connection was released');
      assert.match(await tlsAsk(g.port(), 'app.example.test'), /^alpha /);
    } finally {
      proto.inc = inc;
      await g.close();
      await alpha.close();
    }
  });
});

describe('the metrics listener: timeouts, connection cap, GET /metrics only', () => {
  let srv: Server;
  let port = 0;
  let capped: Server;
  let cappedPort = 0;
  before(async () => {
    const m = new Metrics();
    srv = await m.serve('127.0.0.1', 0, { limits: { headersTimeoutMs: 300, requestTimeoutMs: 600, keepAliveTimeoutMs: 300, checkIntervalMs: 100 } });
    port = (srv.address() as net.AddressInfo).port;
    // Cap test on its own listener with the default (long) timeouts, so nothing but the cap closes a socket.
    capped = await new Metrics().serve('127.0.0.1', 0, { limits: { maxConnections: 3 } });
    cappedPort = (capped.address() as net.AddressInfo).port;
  });
  after(() => {
    srv?.close();
    srv?.closeAllConnections();
    capped?.close();
    capped?.closeAllConnections();
  });

  it('a request head that never completes is cut after headersTimeout (slowloris)', async () => {
    const got = await rawExchange(port, [Buffer.from('GET /metrics HTTP/1.1\r\nHost: x\r\n')], { timeoutMs: 5000 });
    assert.match(got.toString(), /^(HTTP\/1\.1 408|$)/);
  });
  it('a socket that sends nothing is cut too', async () => {
    await rawExchange(port, [], { timeoutMs: 5000 });
  });
  it('a request head over the header cap: 431', async () => {
    const got = await rawExchange(port, [Buffer.from(`GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(10_000)}\r\n\r\n`)], { timeoutMs: 5000 });
    assert.match(got.toString(), /^HTTP\/1\.1 431/);
  });
  it('only GET and HEAD /metrics: 405 with Allow for other methods, 404 for other paths', async () => {
    const post = await fetch(`http://127.0.0.1:${port}/metrics`, { method: 'POST', body: 'x' });
    assert.equal(post.status, 405);
    assert.equal(post.headers.get('allow'), 'GET, HEAD');
    await post.text();
    const other = await fetch(`http://127.0.0.1:${port}/`);
    assert.equal(other.status, 404);
    await other.text();
    const head = await fetch(`http://127.0.0.1:${port}/metrics`, { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(await head.text(), '');
    const get = await fetch(`http://127.0.0.1:${port}/metrics?scrape=1`);
    assert.equal(get.status, 200);
    assert.match(await get.text(), /# TYPE echgate_handler_errors_total counter/);
  });
  it('connection cap: beyond maxConnections the oldest idle connection is closed to make room, the others stay usable', async () => {
    const held: net.Socket[] = [];
    try {
      for (let i = 0; i < 3; i++) {
        const s = net.connect(cappedPort, '127.0.0.1');
        s.on('error', () => {});
        await new Promise((r) => s.once('connect', r));
        held.push(s);
      }
      await sleep(50);
      // The fourth gets its answer: the oldest of the three idle ones was closed for it (proxy/metrics.ts).
      const closed = new Promise((r) => held[0]!.once('close', r));
      held[0]!.resume();
      const got = await rawExchange(cappedPort, [Buffer.from('GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')], { timeoutMs: 3000 });
      assert.match(got.toString(), /^HTTP\/1\.1 200/);
      await closed;
      // A held one still gets its answer.
      const answer = await new Promise<string>((resolve) => {
        const s = held[1]!;
        let buf = '';
        s.on('data', (d) => {
          buf += d;
          if (buf.includes('\r\n\r\n')) resolve(buf);
        });
        s.write('GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n');
      });
      assert.match(answer, /^HTTP\/1\.1 200/);
    } finally {
      for (const s of held) s.destroy();
    }
  });
});
