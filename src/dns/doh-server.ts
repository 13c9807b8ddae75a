/**
 * The embedded DoH server (RFC 8484 §4.1, §5): GET ?dns= (base64url) and POST
 * application/dns-message over HTTPS, HTTP/2 with HTTP/1.1 fallback. Every bad
 * request gets an HTTP error or a DNS rcode, never a crash: 400 for a body that
 * is not a DNS query, 415 for the wrong media type, 413 past 64 KiB, FORMERR
 * for a query we cannot answer, NOTIMP for opcodes other than QUERY, and 500
 * when answering fails unexpectedly (counted and logged by the caller).
 *
 * What a client can hold is bounded, as Traefik bounds an entrypoint
 * (respondingTimeouts): a connection must finish its TLS handshake and its
 * first request within `readTimeoutMs`, every request must be read whole
 * within `readTimeoutMs` of its start, and a connection with no request in
 * flight closes after `idleTimeoutMs`. Connections are capped
 * (`maxConnections`, a cap of this listener's own, so the proxy entrypoints
 * keep theirs), and so are HTTP/2 streams per connection and header lists.
 */
import http2 from 'node:http2';
import type { TLSSocket } from 'node:tls';
import { answerQuery } from './answer.js';
import type { Zone } from './zone.js';

/** RFC 1035 §4.2.2 via RFC 8484 §6: a DNS message over DoH is at most 65,535 octets; a longer POST body gets 413. */
export const MAX_DOH_QUERY = 65535;
const MAX_QUERY = MAX_DOH_QUERY;

/** The parts of a DoH request that are decided on before any body is read. */
export interface DohRequestHead {
  method: string | undefined;
  /** The request target as received (path and query). */
  url: string | undefined;
  contentType: string | undefined;
  /** Header names and values, alternating, as received (node's rawHeaders). */
  rawHeaders: readonly string[];
}

/**
 * What a DoH request's head asks for (RFC 8484 §4.1): an HTTP status to
 * refuse it with, the DNS query a GET carries, or a POST body to read. Pure,
 * so the fuzzer can feed it hostile heads without a socket.
 */
export type DohRequestStep = { kind: 'refuse'; status: number } | { kind: 'query'; query: Uint8Array } | { kind: 'read-body' };

export function dohRequestStep(head: DohRequestHead, path: string, maxHeaderListSize: number): DohRequestStep {
  // RFC 9113 §6.5.2: nghttp2 only advertises the limit, so it is checked here (HTTP/1.1 too): 431 (RFC 6585 §5).
  if (headerListSize(head.rawHeaders) > maxHeaderListSize) return { kind: 'refuse', status: 431 };
  let url: URL | undefined;
  // The usual POST target is the path itself: nothing for a URL parser to do.
  if (head.url !== path) {
    try {
      url = new URL(head.url ?? '/', 'https://doh.invalid');
    } catch {
      return { kind: 'refuse', status: 400 };
    }
    if (url.pathname !== path) return { kind: 'refuse', status: 404 };
  }
  if (head.method === 'GET') {
    // §4.1: the query is the `dns` variable, base64url without padding (§6); longer than a 64 KiB message can encode is refused.
    const dns = url?.searchParams.get('dns');
    if (!dns || !/^[A-Za-z0-9_-]+$/.test(dns) || dns.length > (MAX_QUERY * 4) / 3 + 4) return { kind: 'refuse', status: 400 };
    return { kind: 'query', query: new Uint8Array(Buffer.from(dns, 'base64url')) };
  }
  if (head.method !== 'POST') return { kind: 'refuse', status: 405 };
  // §4.1: POST carries application/dns-message; anything else is 415.
  if (!String(head.contentType ?? '').startsWith('application/dns-message')) return { kind: 'refuse', status: 415 };
  return READ_BODY;
}
/** The usual step, made once. */
const READ_BODY: DohRequestStep = { kind: 'read-body' };
/** DoH answers over a stream: never truncated (RFC 8484 §6: the 65,535-octet limit of TCP), and a copy of its own (the write holds it). */
const OVER_DOH = { udp: false };

/**
 * The HTTP answer to one query's bytes: 200 with the DNS response (whatever
 * its rcode), or 400 for bytes that are not a DNS query at all (RFC 8484
 * §4.2.1: that is an HTTP error, not a DNS message).
 */
export function dohAnswer(zone: Zone, bytes: Uint8Array): { status: 200 | 400; body?: Uint8Array; ttl?: number; question?: { name: string; type: number }; rcode?: number } {
  const r = answerQuery(zone, bytes, OVER_DOH);
  if (r.status === 400) return { status: 400, question: r.question, rcode: r.rcode };
  return { status: 200, body: r.body, ttl: r.ttl, question: r.question, rcode: r.rcode };
}

export interface DohLimits {
  /** Open connections at most (the listener's own cap); more are closed at once. */
  maxConnections: number;
  /** Traefik's respondingTimeouts.readTimeout: handshake + first request, and each request's whole body. */
  readTimeoutMs: number;
  /** Traefik's respondingTimeouts.idleTimeout: a connection with no request in flight closes after this long. */
  idleTimeoutMs: number;
  /** HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS (RFC 9113 §6.5.2). */
  maxConcurrentStreams: number;
  /** HTTP/2 SETTINGS_MAX_HEADER_LIST_SIZE (RFC 9113 §6.5.2), in octets. */
  maxHeaderListSize: number;
}

export const DEFAULT_DOH_LIMITS: DohLimits = {
  maxConnections: 256,
  readTimeoutMs: 10_000,
  idleTimeoutMs: 60_000,
  maxConcurrentStreams: 100,
  maxHeaderListSize: 16 * 1024,
};

export interface DohServerOptions {
  host: string;
  port: number;
  cert: string;
  key: string;
  path?: string;
  zone: () => Zone;
  limits?: Partial<DohLimits>;
  /** Called for every query answered, with its question and rcode (arguments, not an object: one call per query). */
  onQuery?: (name: string, type: number, rcode: number) => void;
  /** Called with unexpected internal errors (the request gets a 500, the server goes on). */
  onError?: (err: unknown) => void;
}

/**
 * Requests in flight on one connection, and the timer that closes it: the
 * read deadline until its first request, the idle timeout whenever nothing
 * is in flight.
 */
class ConnectionClock {
  private active = 0;
  private stopped = false;
  /** The read deadline of a connection that has not begun a request yet. */
  private first: NodeJS.Timeout | undefined;
  /**
   * The idle timeout: one timer per connection, rescheduled (`refresh`) each
   * time the last request in flight ends rather than made anew (with many
   * short requests that was a timer per request). It may fire while requests
   * are in flight again: then it does nothing, and their end reschedules it.
   */
  private idle: NodeJS.Timeout | undefined;
  constructor(
    private readonly close: () => void,
    private readonly limits: DohLimits,
  ) {
    this.first = setTimeout(close, limits.readTimeoutMs);
    this.first.unref();
  }
  begin() {
    this.active++;
    if (this.first) {
      clearTimeout(this.first);
      this.first = undefined;
    }
  }
  end() {
    if (--this.active !== 0 || this.stopped) return;
    if (this.idle) this.idle.refresh();
    else {
      this.idle = setTimeout(() => {
        if (this.active === 0) this.close();
      }, this.limits.idleTimeoutMs);
      this.idle.unref();
    }
  }
  stop() {
    this.stopped = true;
    clearTimeout(this.first);
    clearTimeout(this.idle);
  }
}

/** One request, whatever carried it: what `handle` reads of it and how it answers. */
interface DohExchange {
  method: string | undefined;
  /** The request target (`:path` over HTTP/2). */
  url: string | undefined;
  contentType: string | undefined;
  /** The request body: 'data', 'end', 'error'. */
  body: http2.ServerHttp2Stream | http2.Http2ServerRequest;
  /** Sent already, or the stream is gone: nothing more can be sent. */
  done(): boolean;
  /** The status alone, or a DNS message (content-type application/dns-message, max-age=`ttl`). */
  send(status: number, body?: Uint8Array, ttl?: number): void;
  /** Abandon the request (headers went out already and answering failed). */
  reset(): void;
}

/**
 * Response header lists for answers, by TTL and length: built once, not per
 * answer (a DoH answer's headers vary only in those two). At most 1024 kept.
 */
const answerHeaders = new Map<number, http2.OutgoingHttpHeaders>();
function headersFor(status: number, ttl: number, length: number): http2.OutgoingHttpHeaders {
  // A key exact in a double: TTL below 2^20 s, length below 2^16, status below 2^10; others are built afresh.
  const keep = ttl >= 0 && ttl < 0x100000 && length < 0x10000 && status < 1024;
  const k = keep ? (ttl * 0x10000 + length) * 1024 + status : -1;
  let h = keep ? answerHeaders.get(k) : undefined;
  if (h === undefined) {
    h = { ':status': status, 'content-type': 'application/dns-message', 'content-length': length, 'cache-control': `max-age=${ttl}` };
    if (keep && answerHeaders.size < 1024) answerHeaders.set(k, h);
  }
  return h;
}

type WriteCallback = (err?: Error | null) => void;
type Write = (chunk: unknown, encoding: BufferEncoding, cb: WriteCallback) => void;

/**
 * Without a stack for the error node builds and drops after every answer.
 *
 * nghttp2 closes a stream when our END_STREAM goes out; node then destroys
 * the stream (its readable side has ended) before the DATA write completes,
 * and the late completion (Writable `afterWrite` → `errorBuffer`) builds an
 * ERR_STREAM_DESTROYED that nothing receives. Capturing its stack was ~10 %
 * of a DoH query's CPU (profile in docs/benchmarks.md). The write callback
 * of the answer is run with `Error.stackTraceLimit = 0` only when the stream
 * is already destroyed, so only that discarded error loses its stack: a
 * failed write's own error was built before, and events from it are emitted
 * on later ticks. Answering before the request's end, so that the stream
 * would still be readable at its close, avoids the error altogether but
 * changes when answers are written, and dnsperf 2.10 then loses answers.
 */
function quietLateWrite(stream: http2.ServerHttp2Stream): void {
  const own = stream as unknown as { _write: Write };
  const write = own._write;
  own._write = (chunk, encoding, cb) =>
    write.call(stream, chunk, encoding, (err) => {
      if (!stream.destroyed) return cb(err);
      const limit = Error.stackTraceLimit;
      Error.stackTraceLimit = 0;
      try {
        cb(err);
      } finally {
        Error.stackTraceLimit = limit;
      }
    });
}

const ignore = () => {};
const EMPTY = new Uint8Array(0);

/** RFC 9113 §6.5.2: a header list counts names + values + 32 octets per field (`raw`: name, value, name, value, ...). */
function headerListSize(raw: readonly string[]): number {
  let n = 0;
  for (let i = 0; i < raw.length; i += 2) n += raw[i]!.length + (raw[i + 1] ?? '').length + 32;
  return n;
}

/** The request an HTTP/2 stream carries (set by `H2Request`, read when the stream closes). */
const kRequest = Symbol('dohRequest');
type RequestStream = http2.ServerHttp2Stream & { [kRequest]?: H2Request };

/**
 * One HTTP/2 request (RFC 8484 over the core stream API): what `handle`
 * reads, how it answers, and its bookkeeping (the connection's clock, the
 * read deadline: the whole request within the read timeout of its start).
 * A class with its methods on the prototype, and listeners and a timer that
 * reach it without a closure: a DoH query made six closures, a `once`
 * wrapper and an exchange object here before.
 */
class H2Request implements DohExchange {
  readonly method: string | undefined;
  readonly url: string | undefined;
  readonly contentType: string | undefined;
  private ended = false;
  private readonly deadline: NodeJS.Timeout;
  constructor(
    readonly body: RequestStream,
    headers: http2.IncomingHttpHeaders,
    private readonly clock: ConnectionClock | undefined,
    readTimeoutMs: number,
  ) {
    this.method = headers[':method'] as string | undefined;
    this.url = headers[':path'] as string | undefined;
    this.contentType = headers['content-type'];
    clock?.begin();
    this.deadline = setTimeout(requestExpired, readTimeoutMs, this);
    this.deadline.unref();
    body[kRequest] = this;
    // 'close' comes once; `on` without `once`'s wrapper.
    body.on('close', streamClosed);
  }
  done(): boolean {
    return this.body.headersSent || this.body.destroyed;
  }
  reset(): void {
    this.body.destroy();
  }
  send(status: number, data?: Uint8Array, ttl?: number): void {
    const stream = this.body;
    if (stream.headersSent || stream.destroyed) return;
    if (!data) return void stream.respond({ ':status': status }, { endStream: true });
    // The compat layer's response always waited for trailers, so its last DATA frame went out empty,
    // after the body, with END_STREAM (RFC 9113 §8.1 allows that). Clients that take one response per
    // END_STREAM frame (dnsperf 2.10) mixed bodies of interleaved streams. respond() without
    // waitForTrailers, then end(body) in the same tick, sends one DATA frame with END_STREAM.
    stream.respond(headersFor(status, ttl ?? 60, data.length));
    quietLateWrite(stream);
    stream.end(Buffer.from(data.buffer, data.byteOffset, data.length));
  }
  /** The request is over (its stream closed, or its deadline passed): once. */
  finish(): void {
    if (this.ended) return;
    this.ended = true;
    clearTimeout(this.deadline);
    this.clock?.end();
  }
  /** Not read whole within the read timeout: 408 if nothing was sent yet, and the stream goes. */
  expire(): void {
    const stream = this.body;
    if (!stream.headersSent && !stream.destroyed) stream.respond({ ':status': 408 }, { endStream: true });
    stream.destroy();
    this.finish();
  }
}
function requestExpired(r: H2Request): void {
  r.expire();
}
function streamClosed(this: RequestStream): void {
  this[kRequest]?.finish();
}

export function startDohServer(o: DohServerOptions): Promise<http2.Http2SecureServer> {
  const limits: DohLimits = { ...DEFAULT_DOH_LIMITS, ...o.limits };
  const path = o.path ?? '/dns-query';
  const clocks = new WeakMap<object, ConnectionClock>();
  /**
   * Starts one request's bookkeeping: the connection's clock, and the read
   * deadline (the whole request, its body for POST, within the read timeout of
   * its start). `finish` ends it, once.
   */
  const track = (clock: ConnectionClock | undefined, onDeadline: () => void) => {
    clock?.begin();
    let ended = false;
    const finish = () => {
      if (ended) return;
      ended = true;
      clearTimeout(deadline);
      clock?.end();
    };
    const deadline = setTimeout(() => {
      onDeadline();
      finish();
    }, limits.readTimeoutMs);
    deadline.unref();
    return finish;
  };
  /** `handle`; an exception while answering is a 500 (or a reset once headers went out). */
  const serve = (x: DohExchange, rawHeaders: readonly string[]) => {
    try {
      handle(x, rawHeaders);
    } catch (e) {
      fail(e);
      if (!x.done()) x.send(500);
      else x.reset();
    }
  };
  const srv = http2.createSecureServer(
    {
      cert: o.cert,
      key: o.key,
      allowHTTP1: true,
      handshakeTimeout: limits.readTimeoutMs,
      settings: { maxConcurrentStreams: limits.maxConcurrentStreams, maxHeaderListSize: limits.maxHeaderListSize },
      maxSessionMemory: 4, // MiB per HTTP/2 session; DNS messages are small
      maxHeaderListPairs: 64,
    },
    // HTTP/1.1 (and HTTP/2 when the core stream path below is not in place): node's request/response objects.
    (req, res) => {
      const clock = req.httpVersionMajor === 2 ? clocks.get(req.stream.session!) : clocks.get(req.socket);
      const finish = track(clock, () => {
        if (!res.headersSent && !res.destroyed) res.writeHead(408, { connection: 'close' }).end();
        req.destroy();
      });
      res.once('close', finish);
      res.once('finish', finish);
      const x: DohExchange = {
        method: req.method,
        url: req.url,
        contentType: req.headers['content-type'],
        body: req,
        done: () => res.headersSent || res.destroyed,
        reset: () => res.destroy(),
        send: (status, body, ttl) => {
          if (res.headersSent || res.destroyed) return;
          if (!body) return void res.writeHead(status).end();
          const headers = headersFor(status, ttl ?? 60, body.length);
          const data = Buffer.from(body.buffer, body.byteOffset, body.length);
          if (req.httpVersionMajor === 2) {
            // See respondStream below: one DATA frame with END_STREAM.
            res.stream.respond(headers);
            res.stream.end(data);
          } else {
            const { ':status': _, ...h1 } = headers;
            res.writeHead(status, h1);
            res.end(data);
          }
        },
      };
      serve(x, req.rawHeaders);
    },
  );
  /**
   * HTTP/2 through the core stream API, without the compatibility layer's
   * request and response objects (two objects, their listeners and a URL per
   * request). node installs that layer as a 'stream' listener when a request
   * handler is given; when it is the only one, it is swapped for this path
   * (HTTP/1.1 keeps the handler above). Should a node version differ, the
   * handler above serves HTTP/2 too.
   */
  const h2 = (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, _flags: number, rawHeaders: string[]) => {
    serve(new H2Request(stream, headers, stream.session ? clocks.get(stream.session) : undefined, limits.readTimeoutMs), rawHeaders);
  };
  const compat = srv.listeners('stream');
  if (compat.length === 1) {
    srv.removeListener('stream', compat[0] as (...a: unknown[]) => void);
    srv.on('stream', h2);
  }
  const fail = (e: unknown) => {
    try {
      o.onError?.(e);
    } catch {
      // a failing error hook must not take the listener down either
    }
  };
  // The listener's own connection cap: node closes connections past it as they arrive.
  srv.maxConnections = limits.maxConnections;
  srv.on('secureConnection', (socket: TLSSocket) => {
    // HTTP/1.1 fallback: requests arrive on this socket. (HTTP/2 sessions get their own clock below.)
    if (socket.alpnProtocol === 'h2') return;
    const clock = new ConnectionClock(() => socket.destroy(), limits);
    clocks.set(socket, clock);
    socket.once('close', () => clock.stop());
  });
  srv.on('session', (session: http2.ServerHttp2Session) => {
    const clock = new ConnectionClock(() => session.destroy(), limits);
    clocks.set(session, clock);
    session.once('close', () => clock.stop());
    session.on('error', () => {});
  });
  // TLS handshakes that fail or time out, and raw sockets that break: that connection only.
  srv.on('tlsClientError', (_e, socket) => socket.destroy());
  srv.on('sessionError', () => {});

  const onQuery = o.onQuery;
  /** The answer to one query's octets, as `dohAnswer` gives it: 200 with the DNS message, or 400. */
  const reply = (x: DohExchange, bytes: Uint8Array) => {
    const r = answerQuery(o.zone(), bytes, OVER_DOH);
    if (r.question && onQuery) onQuery(r.question.name, r.question.type, r.rcode!);
    if (r.status === 400) x.send(400);
    else x.send(200, r.body, r.ttl);
  };
  const handle = (x: DohExchange, rawHeaders: readonly string[]) => {
    const req = x.body;
    req.on('error', ignore);
    const step = dohRequestStep({ method: x.method, url: x.url, contentType: x.contentType, rawHeaders }, path, limits.maxHeaderListSize);
    if (step.kind === 'refuse') return x.send(step.status);
    if (step.kind === 'query') return reply(x, step.query);
    // The body is nearly always one chunk (a query is tens of octets): kept as it is, an array only past it.
    let first: Buffer | undefined;
    let more: Buffer[] | undefined;
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_QUERY) {
        x.send(413);
        req.destroy();
      } else if (first === undefined) first = c;
      else if (more === undefined) more = [first, c];
      else more.push(c);
    });
    req.on('end', () => {
      if (size > MAX_QUERY) return;
      try {
        reply(x, more ? Buffer.concat(more) : (first ?? EMPTY));
      } catch (e) {
        fail(e);
        if (!x.done()) x.send(500);
      }
    });
  };

  return new Promise((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(o.port, o.host, () => {
      srv.removeListener('error', reject);
      srv.on('error', (e) => fail(e));
      resolve(srv);
    });
  });
}
