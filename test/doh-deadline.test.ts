/**
 * The DoH read deadline per HTTP/2 request (src/dns/doh-server.ts
 * `ConnectionClock`), kept by one lazy timer per connection: a request that
 * begins while the timer is already armed for an earlier request still gets
 * its whole read timeout from its own start (not the earlier request's), and
 * is ended when it runs out (408), also when it is alone on the connection.
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

const READ_MS = 1000;

describe('DoH read deadline: one lazy timer per connection', () => {
  const dir = mkdtempSync(join(tmpdir(), 'echgate-doh-deadline-'));
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-subj', '/CN=doh', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', join(dir, 'k'), '-out', join(dir, 'c')], { stdio: 'ignore' });
  const cert = readFileSync(join(dir, 'c'), 'utf8');
  const zone = new Zone({ ttl: 30, names: { 'app.example.test': { a: ['127.0.0.1'] } } }, () => undefined);
  let srv: http2.Http2SecureServer;
  let origin = '';
  before(async () => {
    srv = await startDohServer({ host: '127.0.0.1', port: 0, cert, key: readFileSync(join(dir, 'k'), 'utf8'), zone: () => zone, limits: { readTimeoutMs: READ_MS, idleTimeoutMs: 30_000 } });
    origin = `https://127.0.0.1:${(srv.address() as { port: number }).port}`;
  });
  /** Destroyed after the tests, failed or not (a stalled stream would keep the server open). */
  const sessions: http2.ClientHttp2Session[] = [];
  after(() => {
    for (const s of sessions) s.destroy();
    srv.close();
  });

  const q = Buffer.from(encodeQuery('app.example.test', RRType.A, { id: 0 }));
  const get = (session: http2.ClientHttp2Session) =>
    new Promise<number>((resolve, reject) => {
      const req = session.request({ ':path': `/dns-query?dns=${q.toString('base64url')}` });
      req.on('response', (h) => resolve(Number(h[':status'])));
      req.on('error', reject);
      req.resume();
      req.end();
    });
  /** A POST that sends half its body and waits: its status (0 if none came) and how long after its start its stream closed. */
  const stalledPost = (session: http2.ClientHttp2Session) => {
    const began = performance.now();
    const req = session.request({ ':method': 'POST', ':path': '/dns-query', 'content-type': 'application/dns-message' });
    req.on('error', () => {});
    let status = 0;
    req.on('response', (h) => {
      status = Number(h[':status']);
    });
    req.resume();
    req.write(q.subarray(0, 8));
    return new Promise<{ status: number; after: number }>((resolve) => req.once('close', () => resolve({ status, after: performance.now() - began })));
  };

  it('a request begun while the timer is armed for an earlier one gets its whole read timeout, then 408', async () => {
    const session = http2.connect(origin, { ca: cert });
    session.on('error', () => {});
    sessions.push(session);
    // The first request arms the connection's deadline timer for READ_MS from now, and ends at once.
    assert.equal(await get(session), 200);
    await sleep(READ_MS / 2);
    // Begun half a read timeout later: the timer fires halfway through this request's time.
    const r = await Promise.race([stalledPost(session), sleep(5 * READ_MS).then(() => undefined)]);
    assert.ok(r, 'the stalled POST was never ended');
    assert.ok(r.after >= READ_MS - 30, `ended ${r.after.toFixed(0)} ms after its start, before its read timeout`);
    assert.equal(r.status, 408);
  });

  it('a request alone on its connection, after the timer has fired with nothing in flight, is ended too', async () => {
    const session = http2.connect(origin, { ca: cert });
    session.on('error', () => {});
    sessions.push(session);
    assert.equal(await get(session), 200);
    // The timer comes due with no request in flight, and is disarmed.
    await sleep(READ_MS + 200);
    const r = await Promise.race([stalledPost(session), sleep(5 * READ_MS).then(() => undefined)]);
    assert.ok(r, 'the stalled POST was never ended');
    assert.ok(r.after >= READ_MS - 30, `ended ${r.after.toFixed(0)} ms after its start`);
    assert.equal(r.status, 408);
  });
});

describe('DoH idle timeout: the lazy idle timer', () => {
  const IDLE_MS = 800;
  const dir = mkdtempSync(join(tmpdir(), 'echgate-doh-idle2-'));
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-subj', '/CN=doh', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', join(dir, 'k'), '-out', join(dir, 'c')], { stdio: 'ignore' });
  const cert = readFileSync(join(dir, 'c'), 'utf8');
  const zone = new Zone({ ttl: 30, names: { 'app.example.test': { a: ['127.0.0.1'] } } }, () => undefined);
  let srv: http2.Http2SecureServer;
  const sessions: http2.ClientHttp2Session[] = [];
  before(async () => {
    srv = await startDohServer({ host: '127.0.0.1', port: 0, cert, key: readFileSync(join(dir, 'k'), 'utf8'), zone: () => zone, limits: { readTimeoutMs: 30_000, idleTimeoutMs: IDLE_MS } });
  });
  after(() => {
    for (const s of sessions) s.destroy();
    srv.close();
  });

  it('when it comes due with a request in flight, it waits again: the session closes one idle timeout after that request', async () => {
    const session = http2.connect(`https://127.0.0.1:${(srv.address() as { port: number }).port}`, { ca: cert });
    session.on('error', () => {});
    sessions.push(session);
    let closedAt = 0;
    const closed = new Promise<void>((r) =>
      session.once('close', () => {
        closedAt = performance.now();
        r();
      }),
    );
    const q = Buffer.from(encodeQuery('app.example.test', RRType.A, { id: 0 }));
    const ask = (drip: number) =>
      new Promise<number>((resolve, reject) => {
        const req = session.request({ ':method': 'POST', ':path': '/dns-query', 'content-type': 'application/dns-message' });
        req.on('response', (h) => resolve(Number(h[':status'])));
        req.on('error', reject);
        req.resume();
        void (async () => {
          for (let i = 0; i < q.length; i += 8) {
            req.write(q.subarray(i, i + 8));
            await sleep(drip / Math.ceil(q.length / 8));
          }
          req.end();
        })();
      });
    // The first answer arms the idle timer; the second request is in flight when it comes due.
    assert.equal(await ask(0), 200);
    assert.equal(await ask(2 * IDLE_MS), 200);
    const answered = performance.now();
    await Promise.race([closed, sleep(6 * IDLE_MS)]);
    assert.ok(closedAt > 0, 'the idle session was never closed');
    assert.ok(closedAt - answered >= IDLE_MS - 50, `closed ${(closedAt - answered).toFixed(0)} ms after the last answer`);
  });
});
