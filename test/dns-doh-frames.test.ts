/**
 * The DoH answer on the wire, read frame by frame with a raw HTTP/2 client
 * (RFC 9113 §4.1, §6.1, §6.2; HPACK literals, RFC 7541 §6.2.2): each answer is
 * one HEADERS frame and one DATA frame that carries the whole DNS message and
 * END_STREAM (RFC 8484 §4.2.1). An empty DATA frame after the body is legal
 * HTTP/2, but DoH clients that read one message per END_STREAM (dnsperf 2.10)
 * then mix up the answers of streams in flight together.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import type http2 from 'node:http2';
import type net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import tls from 'node:tls';
import { startDohServer } from '../src/dns/doh-server.js';
import { Zone } from '../src/dns/zone.js';
import { decodeMessage, encodeQuery, RRType } from '../src/wire/dns/message.js';

const FRAME = { DATA: 0, HEADERS: 1, SETTINGS: 4 } as const;
const END_STREAM = 0x1;
const END_HEADERS = 0x4;

const frame = (type: number, flags: number, stream: number, payload: Buffer) => {
  const h = Buffer.alloc(9);
  h.writeUIntBE(payload.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(stream, 5);
  return Buffer.concat([h, payload]);
};
/** A literal header field without indexing, its name from the static table (RFC 7541 §6.2.2, Appendix A). */
const literal = (nameIndex: number, value: string) => {
  const v = Buffer.from(value);
  assert.ok(nameIndex < 15 && v.length < 127);
  return Buffer.concat([Buffer.from([nameIndex, v.length]), v]);
};

describe('RFC 8484 §4.2.1 over RFC 9113: one DATA frame with END_STREAM per DoH answer', () => {
  const dir = mkdtempSync(join(tmpdir(), 'echgate-doh-frames-'));
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-subj', '/CN=dns.test', '-keyout', join(dir, 'k'), '-out', join(dir, 'c')], { stdio: 'ignore' });
  const zone = new Zone({ ttl: 30, names: { 'app.example.test': { a: ['127.0.0.1'], https: { alpn: ['h2'] } } } }, () => undefined);
  let srv: http2.Http2SecureServer;
  let port = 0;
  before(async () => {
    srv = await startDohServer({ host: '127.0.0.1', port: 0, cert: readFileSync(join(dir, 'c'), 'utf8'), key: readFileSync(join(dir, 'k'), 'utf8'), zone: () => zone });
    port = (srv.address() as net.AddressInfo).port;
  });
  after(() => srv.close());

  it('GET and POST, six streams in flight on one connection: each answer is HEADERS then a single DATA frame with END_STREAM', async () => {
    const sock = tls.connect({ host: '127.0.0.1', port, ALPNProtocols: ['h2'], rejectUnauthorized: false });
    await new Promise<void>((r, j) => sock.once('secureConnect', () => r()).once('error', j));
    const queries = new Map<number, Uint8Array>();
    let out = Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), frame(FRAME.SETTINGS, 0, 0, Buffer.alloc(0))]);
    for (let i = 0; i < 6; i++) {
      const stream = 2 * i + 1;
      const q = encodeQuery('app.example.test', i % 2 ? RRType.HTTPS : RRType.A, { id: 0 });
      queries.set(stream, q);
      const common = [literal(1, '127.0.0.1'), literal(4, i < 3 ? `/dns-query?dns=${Buffer.from(q).toString('base64url')}` : '/dns-query')];
      if (i < 3) {
        // :method GET (static 2), :scheme https (static 7)
        out = Buffer.concat([out, frame(FRAME.HEADERS, END_HEADERS | END_STREAM, stream, Buffer.concat([Buffer.from([0x82, 0x87]), ...common]))]);
      } else {
        // :method POST (static 3), :scheme https, content-type (static 31: 4-bit prefix 15, then 16)
        const ct = Buffer.concat([Buffer.from([0x0f, 0x10, 23]), Buffer.from('application/dns-message')]);
        out = Buffer.concat([out, frame(FRAME.HEADERS, END_HEADERS, stream, Buffer.concat([Buffer.from([0x83, 0x87]), ...common, ct])), frame(FRAME.DATA, END_STREAM, stream, Buffer.from(q))]);
      }
    }
    sock.write(out);
    const seen = new Map<number, { type: number; flags: number; payload: Buffer }[]>();
    const ended = new Set<number>();
    let buf = Buffer.alloc(0);
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`answers: ${JSON.stringify([...seen].map(([s, f]) => [s, f.map((x) => [x.type, x.flags, x.payload.length])]))}`)), 5000);
      sock.on('data', (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        while (buf.length >= 9 && buf.length >= 9 + buf.readUIntBE(0, 3)) {
          const len = buf.readUIntBE(0, 3);
          const f = { type: buf[3]!, flags: buf[4]!, stream: buf.readUInt32BE(5) & 0x7fffffff, payload: buf.subarray(9, 9 + len) };
          buf = buf.subarray(9 + len);
          if (f.type === FRAME.SETTINGS && !(f.flags & 1)) sock.write(frame(FRAME.SETTINGS, 1, 0, Buffer.alloc(0)));
          if (f.stream === 0) continue;
          seen.set(f.stream, [...(seen.get(f.stream) ?? []), f]);
          if ((f.type === FRAME.DATA || f.type === FRAME.HEADERS) && f.flags & END_STREAM) ended.add(f.stream);
        }
        if (ended.size === queries.size) {
          clearTimeout(t);
          resolve();
        }
      });
    });
    sock.destroy();
    for (const [stream, q] of queries) {
      const frames = seen.get(stream)!;
      assert.deepEqual(
        frames.map((f) => [f.type, f.flags & END_STREAM]),
        [
          [FRAME.HEADERS, 0],
          [FRAME.DATA, END_STREAM],
        ],
        `stream ${stream}`,
      );
      const m = decodeMessage(new Uint8Array(frames[1]!.payload));
      assert.equal(m.questions[0]!.type, decodeMessage(q).questions[0]!.type);
      assert.equal(m.answers.length, 1);
    }
  });
});
