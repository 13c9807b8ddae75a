/**
 * DoH over HTTP/2, a POST body past 64 KiB (RFC 8484 §6 via RFC 1035 §4.2.2):
 * the server answers 413 with END_STREAM, then asks the client to stop
 * sending with RST_STREAM(NO_ERROR) (RFC 9113 §8.1), and keeps the session:
 * node:http2 as the client sees the whole 413, its stream closed with
 * NO_ERROR while its body was still streaming, and its next request on the
 * same session answered. Counted once as body_too_large.
 */
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import type net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { type DohRefusal, startDohServer } from '../src/dns/doh-server.js';
import { Zone } from '../src/dns/zone.js';
import { encodeQuery, RRType } from '../src/wire/dns/message.js';
import { certFor } from './helpers.js';

describe('DoH over HTTP/2: a body past 64 KiB gets 413, then RST_STREAM(NO_ERROR); the session stays', { timeout: 30_000 }, () => {
  const c = certFor('doh.example.test');
  const zone = new Zone({ ttl: 30, names: { 'plain.example.test': { a: ['127.0.0.2'] } } }, () => undefined);
  const refusals: DohRefusal[] = [];
  let srv: http2.Http2SecureServer;
  let port = 0;
  before(async () => {
    srv = await startDohServer({ host: '127.0.0.1', port: 0, cert: c.cert, key: c.key, zone: () => zone, onRefuse: (r) => refusals.push(r) });
    port = (srv.address() as net.AddressInfo).port;
  });
  after(() => srv.close());

  it('a body that never ends: 413 (whole, END_STREAM), the stream closed NO_ERROR, then a GET on the same session answers 200', async () => {
    const session = http2.connect(`https://127.0.0.1:${port}`, { ca: c.cert, servername: 'doh.example.test' });
    let goaway = false;
    session.on('goaway', () => {
      goaway = true;
    });
    session.on('error', () => {});
    const req = session.request({ ':method': 'POST', ':path': '/dns-query', 'content-type': 'application/dns-message' });
    // Stream the body for as long as the stream is open (never end()): only the server can stop it.
    const chunk = Buffer.alloc(16 * 1024);
    let sent = 0;
    const pump = () => {
      while (!req.destroyed && !req.closed) {
        sent += chunk.length;
        if (!req.write(chunk)) return;
      }
    };
    req.on('drain', pump);
    pump();
    const outcome = await new Promise<{ status: number; ended: boolean; rstCode: number | undefined }>((resolve, reject) => {
      let status = 0;
      let ended = false;
      const t = setTimeout(() => reject(new Error(`no close within 5 s (status ${status}, ${sent} octets sent)`)), 5000);
      req.on('response', (h) => {
        status = Number(h[':status']);
      });
      req.on('data', () => {});
      req.on('end', () => {
        ended = true;
      });
      req.on('error', () => {});
      req.on('close', () => {
        clearTimeout(t);
        resolve({ status, ended, rstCode: req.rstCode });
      });
    });
    assert.equal(outcome.status, 413);
    assert.equal(outcome.ended, true, 'the 413 did not end with END_STREAM before the stream closed');
    assert.equal(outcome.rstCode, http2.constants.NGHTTP2_NO_ERROR, `RST_STREAM code ${outcome.rstCode}`);
    assert.ok(sent > 64 * 1024, `only ${sent} octets sent`);
    // The same session takes the next request.
    assert.equal(session.destroyed || session.closed, false, 'the session was closed');
    const q = Buffer.from(encodeQuery('plain.example.test', RRType.A, { id: 0 })).toString('base64url');
    const status = await new Promise<number>((resolve, reject) => {
      const r = session.request({ ':method': 'GET', ':path': `/dns-query?dns=${q}` });
      r.on('response', (h) => resolve(Number(h[':status'])));
      r.on('error', reject);
      r.resume();
      r.end();
    });
    assert.equal(status, 200);
    assert.equal(goaway, false, 'the server sent GOAWAY');
    assert.deepEqual(refusals, ['body_too_large']);
    session.close();
  });
});
