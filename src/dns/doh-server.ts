/**
 * The embedded DoH server (RFC 8484 §4.1, §5): GET ?dns= (base64url) and POST
 * application/dns-message over HTTPS, HTTP/2 with HTTP/1.1 fallback. Every bad
 * request gets an HTTP error or a DNS rcode, never a crash: 400 for a body that
 * is not a DNS query, 415 for the wrong media type, 413 past 64 KiB, FORMERR
 * for a query we cannot answer, NOTIMP for opcodes other than QUERY.
 */
import http2 from 'node:http2';
import { answerQuery } from './answer.js';
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
      if (r.question && o.onQuery) o.onQuery({ name: r.question.name, type: r.question.type, rcode: r.rcode! });
      // RFC 8484 §4.2.1: a request that is not a DNS query is answered with an HTTP error, not a DNS message.
      if (r.status === 400) send(400);
      else send(200, r.body, r.ttl);
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
