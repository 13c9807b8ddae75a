/**
 * The embedded DoH server (RFC 8484 §4.1, §5): GET ?dns= (base64url) and POST
 * application/dns-message over HTTPS, HTTP/2 with HTTP/1.1 fallback. Every bad
 * request gets an HTTP error or a DNS rcode, never a crash: 400 for a body that
 * is not a DNS query, 415 for the wrong media type, 413 past 64 KiB, FORMERR
 * for a query we cannot answer, NOTIMP for opcodes other than QUERY.
 */
import http2 from 'node:http2';
import { isEchgateError } from '../errors.js';
import { type DnsMessage, decodeMessage, encodeResponse, RCode } from '../wire/dns/message.js';
import type { Zone } from './zone.js';

const MAX_QUERY = 65535;

export interface DohServerOptions {
  host: string;
  port: number;
  cert: string;
  key: string;
  path?: string;
  zone: () => Zone;
  onQuery?: (q: { name: string; type: number; rcode: number }) => void;
}

export function answerQuery(zone: Zone, bytes: Uint8Array): { status: number; body?: Uint8Array; ttl?: number } {
  let q: DnsMessage;
  try {
    q = decodeMessage(bytes);
  } catch (e) {
    if (isEchgateError(e)) return { status: 400 };
    throw e;
  }
  if (q.flags & 0x8000) return { status: 400 }; // a response, not a query
  const opcode = (q.flags >> 11) & 0x0f;
  if (opcode !== 0) return { status: 200, body: encodeResponse(q, RCode.NOTIMP, []) };
  if (q.questions.length !== 1) return { status: 200, body: encodeResponse(q, RCode.FORMERR, []) };
  const question = q.questions[0]!;
  const { rcode, answers } = zone.answer(question.name, question.type);
  return { status: 200, body: encodeResponse(q, rcode, answers), ttl: answers.length ? Math.min(...answers.map((a) => a.ttl)) : 60 };
}

export function startDohServer(o: DohServerOptions): Promise<http2.Http2SecureServer> {
  const path = o.path ?? '/dns-query';
  const srv = http2.createSecureServer({ cert: o.cert, key: o.key, allowHTTP1: true }, (req, res) => {
    const send = (status: number, body?: Uint8Array, ttl?: number) => {
      if (res.headersSent || res.destroyed) return;
      if (!body) return void res.writeHead(status).end();
      res.writeHead(status, { 'content-type': 'application/dns-message', 'content-length': body.length, 'cache-control': `max-age=${ttl ?? 60}` });
      res.end(Buffer.from(body));
    };
    const reply = (bytes: Uint8Array) => {
      const r = answerQuery(o.zone(), bytes);
      if (r.body && o.onQuery) {
        try {
          const q = decodeMessage(bytes).questions[0];
          if (q) o.onQuery({ name: q.name, type: q.type, rcode: r.body[3]! & 0x0f });
        } catch {}
      }
      send(r.status, r.body, r.ttl);
    };
    req.on('error', () => {});
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'https://doh.invalid');
    } catch {
      return send(400);
    }
    if (url.pathname !== path) return send(404);
    if (req.method === 'GET') {
      const dns = url.searchParams.get('dns');
      if (!dns || !/^[A-Za-z0-9_-]+$/.test(dns) || dns.length > (MAX_QUERY * 4) / 3 + 4) return send(400);
      return reply(new Uint8Array(Buffer.from(dns, 'base64url')));
    }
    if (req.method !== 'POST') return send(405);
    if (!String(req.headers['content-type'] ?? '').startsWith('application/dns-message')) return send(415);
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_QUERY) {
        send(413);
        req.destroy();
      } else chunks.push(c);
    });
    req.on('end', () => {
      if (size <= MAX_QUERY) reply(new Uint8Array(Buffer.concat(chunks)));
    });
  });
  srv.on('sessionError', () => {});
  return new Promise((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(o.port, o.host, () => {
      srv.removeListener('error', reject);
      resolve(srv);
    });
  });
}
