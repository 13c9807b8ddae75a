/**
 * The DoH answer's write completing after its stream is gone (src/dns/doh-server.ts
 * `quietLateWrite`). nghttp2 closes a stream once both sides sent END_STREAM
 * (RFC 9113 §5.1, "closed"); node destroys it there, and the answer's DATA
 * write completes after that. node then builds an ERR_STREAM_DESTROYED that
 * nothing receives: we let it be built without a stack (its capture was ~10 %
 * of a query's CPU). These tests show that this late completion happens for
 * answers over HTTP/2, that it then runs with stack capture off and restores
 * the limit, and that answers and stream closing are unchanged.
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
import { decodeMessage, encodeQuery, RCode, RRType } from '../src/wire/dns/message.js';

describe('RFC 9113 §5.1: an answer whose stream closed before its write completed', () => {
  const dir = mkdtempSync(join(tmpdir(), 'echgate-doh-late-'));
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-subj', '/CN=doh', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', join(dir, 'k'), '-out', join(dir, 'c')], { stdio: 'ignore' });
  const cert = readFileSync(join(dir, 'c'), 'utf8');
  const zone = new Zone({ ttl: 30, names: { 'app.example.test': { a: ['127.0.0.1'] } } }, () => undefined);
  let srv: http2.Http2SecureServer;
  let url = '';
  before(async () => {
    srv = await startDohServer({ host: '127.0.0.1', port: 0, cert, key: readFileSync(join(dir, 'k'), 'utf8'), zone: () => zone });
    url = `https://127.0.0.1:${(srv.address() as { port: number }).port}/dns-query`;
  });
  after(() => srv.close());

  it('POST answers: the late write callback runs with Error.stackTraceLimit 0, the limit comes back, every answer arrives and every stream closes', async () => {
    const N = 20;
    // Every stream the server opens: did its writable side finish before it closed?
    const streams: { finished: boolean; closed: Promise<void> }[] = [];
    srv.on('stream', (s: http2.ServerHttp2Stream) => {
      const e = { finished: false, closed: new Promise<void>((r) => s.once('close', () => r())) };
      s.once('finish', () => {
        e.finished = true;
      });
      streams.push(e);
    });
    // Watch what Error.stackTraceLimit is set to while the answers go out (then put the plain value back).
    const original = Object.getOwnPropertyDescriptor(Error, 'stackTraceLimit')!;
    let limit = original.value as number;
    const set: number[] = [];
    Object.defineProperty(Error, 'stackTraceLimit', {
      configurable: true,
      get: () => limit,
      set: (v: number) => {
        set.push(v);
        limit = v;
      },
    });
    const session = http2.connect(url, { ca: cert });
    try {
      const q = Buffer.from(encodeQuery('app.example.test', RRType.A, { id: 0 }));
      for (let i = 0; i < N; i++) {
        const body = await new Promise<Buffer>((resolve, reject) => {
          const req = session.request({ ':method': 'POST', ':path': '/dns-query', 'content-type': 'application/dns-message', 'content-length': q.length });
          const parts: Buffer[] = [];
          req.on('data', (d: Buffer) => parts.push(d));
          req.on('end', () => resolve(Buffer.concat(parts)));
          req.on('error', reject);
          req.end(q);
        });
        const m = decodeMessage(body);
        assert.equal(m.rcode, RCode.NOERROR);
        assert.equal(m.answers.length, 1);
      }
      await Promise.all(streams.map((s) => s.closed));
    } finally {
      session.close();
      Object.defineProperty(Error, 'stackTraceLimit', { ...original, value: limit });
    }
    assert.equal(streams.length, N);
    // The case exists: streams closed (destroyed) before their answer's write completed, so 'finish' never came.
    const late = streams.filter((s) => !s.finished).length;
    assert.ok(late > 0, 'no answer completed its write after its stream closed');
    // Each such completion ran with stack capture off, and set the limit back after.
    assert.equal(set.filter((v) => v === 0).length, late);
    assert.equal(set.length, 2 * late);
    assert.equal(limit, original.value);
  });
});
