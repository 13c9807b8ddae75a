/**
 * The DoH connection's idle timeout (src/dns/doh-server.ts `ConnectionClock`),
 * now one timer per connection rescheduled when the last request in flight
 * ends: a session that keeps asking stays open past several idle timeouts
 * counted from its first request, and closes one idle timeout after its last
 * (Traefik's respondingTimeouts.idleTimeout; RFC 9113 §9.1 lets a server
 * close an idle connection); a request in flight when that timer comes due
 * is not cut off.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import http2 from 'node:http2';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startDohServer } from '../src/dns/doh-server.js';
import { Zone } from '../src/dns/zone.js';
import { encodeQuery, RRType } from '../src/wire/dns/message.js';
import { sleep } from './helpers.js';

const IDLE_MS = 1200;

describe('DoH idle timeout: one rescheduled timer per connection', () => {
  const dir = mkdtempSync(join(tmpdir(), 'echgate-doh-idle-'));
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-subj', '/CN=doh', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', join(dir, 'k'), '-out', join(dir, 'c')], { stdio: 'ignore' });
  const cert = readFileSync(join(dir, 'c'), 'utf8');
  const zone = new Zone({ ttl: 30, names: { 'app.example.test': { a: ['127.0.0.1'] } } }, () => undefined);
  let srv: http2.Http2SecureServer;
  let origin = '';
  before(async () => {
    srv = await startDohServer({ host: '127.0.0.1', port: 0, cert, key: readFileSync(join(dir, 'k'), 'utf8'), zone: () => zone, limits: { idleTimeoutMs: IDLE_MS, readTimeoutMs: 30_000 } });
    origin = `https://127.0.0.1:${(srv.address() as { port: number }).port}`;
  });
  after(() => srv.close());

  it('requests spaced below the idle timeout keep the session past three idle timeouts; after the last it closes', async () => {
    const session = http2.connect(origin, { ca: cert });
    session.on('error', () => {});
    let closedAt = 0;
    const closed = new Promise<void>((r) =>
      session.once('close', () => {
        closedAt = Date.now();
        r();
      }),
    );
    const q = Buffer.from(encodeQuery('app.example.test', RRType.A, { id: 0 })).toString('base64url');
    const ask = () =>
      new Promise<number>((resolve, reject) => {
        const req = session.request({ ':path': `/dns-query?dns=${q}` });
        req.on('response', (h) => resolve(Number(h[':status'])));
        req.on('error', reject);
        req.resume();
        req.end();
      });
    const began = Date.now();
    let last = began;
    while (Date.now() - began < 3.5 * IDLE_MS) {
      assert.equal(closedAt, 0, `the session closed ${closedAt - last} ms after a request, before its idle timeout`);
      assert.equal(await ask(), 200);
      last = Date.now();
      await sleep(IDLE_MS / 4);
    }
    await Promise.race([closed, sleep(10 * IDLE_MS)]);
    assert.ok(closedAt > 0, 'the idle session was never closed');
    assert.ok(closedAt - last >= IDLE_MS - 50, `closed ${closedAt - last} ms after the last request`);
    session.destroy();
  });

  it('a request still in flight when the idle timer comes due is answered, and the session stays open', async () => {
    const session = http2.connect(origin, { ca: cert });
    session.on('error', () => {});
    const q = Buffer.from(encodeQuery('app.example.test', RRType.A, { id: 0 }));
    const first = await new Promise<number>((resolve, reject) => {
      const req = session.request({ ':path': `/dns-query?dns=${q.toString('base64url')}` });
      req.on('response', (h) => resolve(Number(h[':status'])));
      req.on('error', reject);
      req.resume();
      req.end();
    });
    assert.equal(first, 200); // the idle timer is armed from here
    // A POST whose body takes twice the idle timeout to arrive (well inside the read timeout).
    const req = session.request({ ':method': 'POST', ':path': '/dns-query', 'content-type': 'application/dns-message' });
    const status = new Promise<number>((resolve, reject) => {
      req.on('response', (h) => resolve(Number(h[':status'])));
      req.on('error', reject);
      req.on('close', () => reject(new Error('the stream closed before its answer')));
    });
    req.resume();
    for (let i = 0; i < q.length; i += 8) {
      req.write(q.subarray(i, i + 8));
      await sleep((2 * IDLE_MS) / Math.ceil(q.length / 8));
    }
    req.end();
    assert.equal(await status, 200);
    assert.equal(session.closed || session.destroyed, false);
    session.destroy();
  });
});
