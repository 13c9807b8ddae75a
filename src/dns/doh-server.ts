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
import type { Socket } from 'node:net';
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
    // Unpadded base64url of n octets is ceil(4n / 3) characters: 87,380 for 65,535.
    if (!dns || !/^[A-Za-z0-9_-]+$/.test(dns) || dns.length > Math.ceil((MAX_QUERY * 4) / 3)) return { kind: 'refuse', status: 400 };
    return { kind: 'query', query: new Uint8Array(Buffer.from(dns, 'base64url')) };
  }
  if (head.method !== 'POST') return { kind: 'refuse', status: 405 };
  // §4.1: POST carries application/dns-message; anything else is 415.
  // The media type is what precedes any parameter, compared without case (RFC 9110 §8.3.1): not a prefix match.
  const mediaType = String(head.contentType ?? '').split(';', 1)[0]!.trim().toLowerCase();
  if (mediaType !== 'application/dns-message') return { kind: 'refuse', status: 415 };
  return READ_BODY;
}
/** The usual step, made once. */
const READ_BODY: DohRequestStep = { kind: 'read-body' };
/**
 * DoH answers over a stream: never truncated (RFC 8484 §6: the 65,535-octet
 * limit of TCP); the write holds the answer and never changes it, so a cached
 * answer that fits as it is (ID 0) is sent from the cache's own octets.
 */
const OVER_DOH = { udp: false, held: true };

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
  /** Open connections from one client address at most; more are closed at once (as dns.tcp.maxConnectionsPerIP). */
  maxConnectionsPerIP: number;
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
  // As DNS over TCP: one client cannot hold the listener (a NAT of many clients gets 16 at once).
  maxConnectionsPerIP: 16,
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
  /** Called for each connection or request refused or cut (echgate_listener_refusals_total{listener="dns_doh"}). */
  onRefuse?: (reason: DohRefusal) => void;
}

/**
 * Why the DoH listener refused or cut a connection or a request (docs/configuration.md, the metric's reasons).
 * The idle timeout after requests is not among them: it is how every client's connection ends, and a warning
 * per connection would be noise; a connection that never completes a request is a read_timeout.
 */
export type DohRefusal =
  | 'max_connections'
  | 'max_connections_per_ip'
  | 'read_timeout'
  | 'tls_handshake'
  | 'header_too_large'
  | 'body_too_large'
  | 'bad_request'
  | 'malformed';

/** The reason for an HTTP status `dohRequestStep` refuses with: 431 is its own, 400/404/405/415 are bad requests. */
const refusalOf = (status: number): DohRefusal => (status === 431 ? 'header_too_large' : 'bad_request');

/**
 * How long a connection that got 413 stays open half-closed, its further bytes read and dropped, before it
 * is destroyed: closing a socket with unread bytes makes the kernel send a reset, which can discard the 413
 * before the client reads it (RFC 9112 §9.6, "lingering close"). Bounded by the read timeout too.
 */
const LINGER_MS = 2_000;

/** A monotonic clock in milliseconds, for the lazy deadlines below. */
const now = () => performance.now();

/**
 * Requests in flight on one connection, and the timers that end them: the
 * read deadline until its first request, each HTTP/2 request's read deadline,
 * and the idle timeout whenever nothing is in flight.
 *
 * Both per-request timers are lazy, one `Timeout` per connection each: a
 * request notes when it began and joins a list in start order (the oldest
 * first, so the first deadline); a request that ends leaves the list and
 * touches no timer. The deadline timer, when it fires, expires the requests
 * whose deadline has passed and is armed again for the oldest left (or not at
 * all, until a request begins). The idle timer, when it fires, closes the
 * connection if it has been idle a whole idle timeout, or is armed again for
 * what is left. Each fires at most once per timeout per connection; before,
 * every request made a timer and every idle spell rescheduled one (a timer
 * per query with one query in flight, as dnsperf sends).
 */
class ConnectionClock {
  private active = 0;
  private stopped = false;
  /** The read deadline of a connection that has not begun a request yet. */
  private first: NodeJS.Timeout | undefined;
  /** When the connection last became idle (`now()`); meaningful while `active` is 0. */
  private idleSince = 0;
  /** The idle timer, made when the connection first becomes idle and armed again as it fires. */
  private idle: NodeJS.Timeout | undefined;
  /** HTTP/2 requests in flight, oldest first (an intrusive list: no allocation per request). */
  head: H2Request | undefined;
  private tail: H2Request | undefined;
  /** The read-deadline timer of the requests in the list, and whether it is pending. */
  private deadline: NodeJS.Timeout | undefined;
  private deadlineArmed = false;
  constructor(
    private readonly close: (why: 'read_timeout' | 'idle_timeout') => void,
    private readonly limits: DohLimits,
  ) {
    // No request begun within the read timeout (the TLS handshake done, the head not yet whole): a cut.
    this.first = setTimeout(close, limits.readTimeoutMs, 'read_timeout');
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
    this.idleSince = now();
    if (!this.idle) {
      this.idle = setTimeout(idleCheck, this.limits.idleTimeoutMs, this);
      this.idle.unref();
    }
  }
  /** The idle timer came due: close if idle for a whole idle timeout, else wait for what is left. */
  idleDue() {
    if (this.stopped) return;
    if (this.active !== 0) return void this.idle!.refresh();
    const left = this.idleSince + this.limits.idleTimeoutMs - now();
    if (left <= 0) return this.close('idle_timeout');
    this.idle = setTimeout(idleCheck, Math.ceil(left), this);
    this.idle.unref();
  }
  /** An HTTP/2 request begins: it joins the list, and the deadline timer is armed if it was not. */
  beginRequest(r: H2Request) {
    this.begin();
    r.started = now();
    r.prev = this.tail;
    if (this.tail) this.tail.next = r;
    else this.head = r;
    this.tail = r;
    if (this.deadlineArmed || this.stopped) return;
    this.deadlineArmed = true;
    if (this.deadline) this.deadline.refresh();
    else {
      this.deadline = setTimeout(deadlineCheck, this.limits.readTimeoutMs, this);
      this.deadline.unref();
    }
  }
  /** An HTTP/2 request is over: it leaves the list (the timer stays as it is). */
  endRequest(r: H2Request) {
    if (r.prev) r.prev.next = r.next;
    else this.head = r.next;
    if (r.next) r.next.prev = r.prev;
    else this.tail = r.prev;
    r.prev = r.next = undefined;
    this.end();
  }
  /** The deadline timer came due: expire the requests past their read timeout, then wait for the oldest left. */
  deadlineDue() {
    this.deadlineArmed = false;
    if (this.stopped) return;
    const t = now();
    const limit = this.limits.readTimeoutMs;
    // `expire` ends the request, which takes it off the list.
    for (let r = this.head; r && t - r.started >= limit; r = this.head) r.expire();
    if (!this.head || this.stopped) return;
    this.deadlineArmed = true;
    // The timer may fire a little before the deadline by this clock: at least 1 ms more, so this ends.
    this.deadline = setTimeout(deadlineCheck, Math.max(1, Math.ceil(this.head.started + limit - t)), this);
    this.deadline.unref();
  }
  stop() {
    this.stopped = true;
    clearTimeout(this.first);
    clearTimeout(this.idle);
    clearTimeout(this.deadline);
  }
}
function idleCheck(c: ConnectionClock): void {
  c.idleDue();
}
function deadlineCheck(c: ConnectionClock): void {
  c.deadlineDue();
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
  /** Compatibility objects: the body passed 64 KiB; 413, then close (HTTP/1.1) or RST_STREAM(NO_ERROR) (HTTP/2; the H2Request does its own). */
  tooLarge?(): void;
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
type Write = (this: http2.ServerHttp2Stream, chunk: unknown, encoding: BufferEncoding, cb: WriteCallback) => void;

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
 *
 * `lateWrite` is the stream's own `_write` (one function for all streams,
 * node's `_write` of the class is called from it); the callback it hands on
 * is the request's, made once per request.
 */
function lateWrite(this: RequestStream, chunk: unknown, encoding: BufferEncoding, cb: WriteCallback): void {
  const r = this[kRequest]!;
  r.writeDone = cb;
  (Object.getPrototypeOf(this) as { _write: Write })._write.call(this, chunk, encoding, r.afterWrite);
}

const ignore = () => {};
const EMPTY = new Uint8Array(0);

/** RFC 9113 §6.5.2: a header list counts names + values + 32 octets per field (`raw`: name, value, name, value, ...). */
function headerListSize(raw: readonly string[]): number {
  let n = 0;
  for (let i = 0; i < raw.length; i += 2) n += raw[i]!.length + (raw[i + 1] ?? '').length + 32;
  return n;
}

/** The request an HTTP/2 stream carries (set by `H2Request`, read by the stream's listeners). */
const kRequest = Symbol('dohRequest');
type RequestStream = http2.ServerHttp2Stream & { [kRequest]?: H2Request };

/** What an HTTP/2 request needs of its server: answering a whole query, and reporting a failure. */
interface H2Server {
  /** The answer to a query's octets (200 or 400), sent on `x`; may throw. */
  reply(x: H2Request, bytes: Uint8Array): void;
  fail(e: unknown): void;
  refuse(reason: DohRefusal): void;
}

/**
 * One HTTP/2 request (RFC 8484 over the core stream API): what `handle`
 * reads, how it answers, and its bookkeeping (the connection's clock, the
 * read deadline: the whole request within the read timeout of its start).
 * A class with its methods on the prototype, and listeners that reach it
 * without a closure (the request hangs off the stream under a symbol): a DoH
 * query made six closures, a `once` wrapper and an exchange object here
 * before the eighth pass, and after it still a timer, two closures for the
 * body and two for the late write.
 */
class H2Request implements DohExchange {
  readonly method: string | undefined;
  readonly url: string | undefined;
  readonly contentType: string | undefined;
  private ended = false;
  /** When it began (`now()`), and its neighbours in its connection's list (ConnectionClock). */
  started = 0;
  prev: H2Request | undefined;
  next: H2Request | undefined;
  /** The POST body: nearly always one chunk (a query is tens of octets), an array only past it. */
  private first: Buffer | undefined;
  private more: Buffer[] | undefined;
  private size = 0;
  /** node's callback for the answer's write, and ours around it (see `lateWrite`). */
  writeDone: WriteCallback | undefined;
  readonly afterWrite: WriteCallback;
  constructor(
    readonly body: RequestStream,
    headers: http2.IncomingHttpHeaders,
    private readonly clock: ConnectionClock | undefined,
    private readonly server: H2Server,
  ) {
    this.method = headers[':method'] as string | undefined;
    this.url = headers[':path'] as string | undefined;
    this.contentType = headers['content-type'];
    this.afterWrite = (err) => this.wrote(err);
    body[kRequest] = this;
    clock?.beginRequest(this);
    // 'close' comes once; `on` without `once`'s wrapper.
    body.on('close', streamClosed);
    body.on('error', ignore);
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
    (stream as unknown as { _write: Write })._write = lateWrite;
    stream.end(data instanceof Buffer ? data : Buffer.from(data.buffer, data.byteOffset, data.length));
  }
  /** The answer's write completed (see `lateWrite`). */
  private wrote(err: Error | null | undefined): void {
    const cb = this.writeDone!;
    if (!this.body.destroyed) return cb(err);
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    try {
      cb(err);
    } finally {
      Error.stackTraceLimit = limit;
    }
  }
  /** A POST: its body is read (RFC 8484 §4.1), at most MAX_QUERY octets, and answered at its end. */
  readBody(): void {
    this.body.on('data', bodyData);
    this.body.on('end', bodyEnd);
  }
  take(c: Buffer): void {
    // Past the limit: answered already; what the client sent before our RST_STREAM reached it is dropped.
    if (this.size > MAX_QUERY) return;
    this.size += c.length;
    if (this.size > MAX_QUERY) {
      this.server.refuse('body_too_large');
      this.send(413);
      stopAfterAnswer(this.body);
    } else if (this.first === undefined) this.first = c;
    else if (this.more === undefined) this.more = [this.first, c];
    else this.more.push(c);
  }
  bodyEnded(): void {
    if (this.size > MAX_QUERY) return;
    try {
      this.server.reply(this, this.more ? Buffer.concat(this.more) : (this.first ?? EMPTY));
    } catch (e) {
      this.server.fail(e);
      if (!this.done()) this.send(500);
    }
  }
  /** The request is over (its stream closed, or its deadline passed): once. */
  finish(): void {
    if (this.ended) return;
    this.ended = true;
    this.clock?.endRequest(this);
  }
  /** Not read whole within the read timeout: 408 if nothing was sent yet, and the stream goes. */
  expire(): void {
    const stream = this.body;
    this.server.refuse('read_timeout');
    if (!stream.headersSent && !stream.destroyed) stream.respond({ ':status': 408 }, { endStream: true });
    stream.destroy();
    this.finish();
  }
}
/**
 * HTTP/2, a body past 64 KiB, after the 413 (sent with END_STREAM): RFC 9113 §8.1 lets a server that has sent a
 * complete response ask the client to stop sending the request with RST_STREAM(NO_ERROR). close() with NO_ERROR
 * submits it once our side has finished (the 413's END_STREAM written), and only this stream ends: the session
 * and its other streams go on, and the client can send its next request on it (a stream destroyed outright, or a
 * connection closed, would cost the client a new session for one oversized query).
 */
function stopAfterAnswer(stream: http2.ServerHttp2Stream): void {
  if (!stream.destroyed && !stream.closed) stream.close(http2.constants.NGHTTP2_NO_ERROR);
}
function streamClosed(this: RequestStream): void {
  this[kRequest]?.finish();
}
function bodyData(this: RequestStream, c: Buffer): void {
  this[kRequest]!.take(c);
}
function bodyEnd(this: RequestStream): void {
  this[kRequest]!.bodyEnded();
}

/**
 * HTTP/1.1, a body past 64 KiB: 413, then the connection is closed once the
 * 413 has gone out. The response keeps the connection (node would destroy the
 * socket right after the write, with the client's further body bytes unread:
 * a reset, which can take the 413 with it); our end is shut (FIN) once the
 * 413 is written, the client's further bytes are read and dropped (the
 * request's 'data' handler ignores them; nothing of the body is kept), and
 * the socket is destroyed when the client closes, or after LINGER_MS (at most
 * the read timeout) whatever it does.
 */
function lingerAfter413(req: http2.Http2ServerRequest, res: http2.Http2ServerResponse, readTimeoutMs: number): void {
  const sock = req.socket as Socket;
  const linger = setTimeout(() => sock.destroy(), Math.min(LINGER_MS, readTimeoutMs));
  linger.unref();
  sock.once('close', () => clearTimeout(linger));
  if (res.headersSent || res.destroyed) return void sock.destroy();
  res.writeHead(413, { 'content-length': 0 });
  res.end(() => sock.end());
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
        refuse('read_timeout');
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
        tooLarge: () => {
          if (req.httpVersionMajor !== 2) return lingerAfter413(req, res, limits.readTimeoutMs);
          x.send(413);
          stopAfterAnswer(req.stream);
        },
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
    serve(new H2Request(stream, headers, stream.session ? clocks.get(stream.session) : undefined, h2server), rawHeaders);
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
  const refuse = (reason: DohRefusal) => {
    try {
      o.onRefuse?.(reason);
    } catch (e) {
      fail(e);
    }
  };
  // The listener's own connection cap: node closes connections past it as they arrive, and says so ('drop').
  srv.maxConnections = limits.maxConnections;
  srv.on('drop', () => refuse('max_connections'));
  // Per client address, before TLS: one client holding every slot would starve everyone else (audit s11 gap 3).
  const perIp = new Map<string, number>();
  const capped = new WeakSet<Socket>();
  srv.prependListener('connection', (sock: Socket) => {
    const ip = sock.remoteAddress ?? '';
    const n = perIp.get(ip) ?? 0;
    if (n >= limits.maxConnectionsPerIP) {
      refuse('max_connections_per_ip');
      capped.add(sock);
      sock.on('error', ignore);
      return void sock.destroy();
    }
    perIp.set(ip, n + 1);
    sock.once('close', () => {
      const left = (perIp.get(ip) ?? 1) - 1;
      if (left > 0) perIp.set(ip, left);
      else perIp.delete(ip);
    });
  });
  srv.on('secureConnection', (socket: TLSSocket) => {
    // HTTP/1.1 fallback: requests arrive on this socket. (HTTP/2 sessions get their own clock below.)
    if (socket.alpnProtocol === 'h2') return;
    const clock = new ConnectionClock((why) => {
      if (why === 'read_timeout') refuse(why);
      socket.destroy();
    }, limits);
    clocks.set(socket, clock);
    socket.once('close', () => clock.stop());
  });
  srv.on('session', (session: http2.ServerHttp2Session) => {
    const clock = new ConnectionClock((why) => {
      if (why === 'read_timeout') refuse(why);
      session.destroy();
    }, limits);
    clocks.set(session, clock);
    session.once('close', () => clock.stop());
    session.on('error', () => {});
  });
  // TLS handshakes that fail or time out, and raw sockets that break: that connection only. A handshake
  // past the read timeout is a read_timeout, any other failure tls_handshake; a reset, or a socket the
  // per-address cap closed (counted there), is not counted again.
  srv.on('tlsClientError', (e: NodeJS.ErrnoException, socket: TLSSocket) => {
    const raw = (socket as TLSSocket & { _parent?: Socket })._parent;
    if (!(raw && capped.has(raw)) && e.code !== 'ECONNRESET') refuse(e.code === 'ERR_TLS_HANDSHAKE_TIMEOUT' ? 'read_timeout' : 'tls_handshake');
    socket.destroy();
  });
  srv.on('sessionError', () => {});
  // HTTP/1.1 requests node's parser refuses (a head past its 16 KiB: 431; a malformed one: 400): node's own
  // answer, as it writes it without a listener (lib/_http_server.js), and counted.
  // (node's parser may report one bad head once per chunk already read: counted once per socket.)
  const clientErrors = new WeakSet<Socket>();
  srv.on('clientError', (err: NodeJS.ErrnoException, sock: Socket) => {
    if (err.code !== 'ECONNRESET' && !clientErrors.has(sock)) {
      clientErrors.add(sock);
      const tooLarge = err.code === 'HPE_HEADER_OVERFLOW';
      refuse(tooLarge ? 'header_too_large' : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 'read_timeout' : 'bad_request');
      const http = sock as Socket & { _httpMessage?: { headersSent?: boolean } };
      if (sock.writable && !http._httpMessage?.headersSent) {
        sock.write(tooLarge ? 'HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\n\r\n' : 'HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
      }
    }
    sock.destroy();
  });

  const onQuery = o.onQuery;
  /** The answer to one query's octets, as `dohAnswer` gives it: 200 with the DNS message, or 400. */
  const reply = (x: DohExchange, bytes: Uint8Array) => {
    const r = answerQuery(o.zone(), bytes, OVER_DOH);
    if (r.question) {
      if (onQuery) onQuery(r.question.name, r.question.type, r.rcode!);
    } else refuse('malformed');
    if (r.status === 400) x.send(400);
    else x.send(200, r.body, r.ttl);
  };
  const h2server: H2Server = { reply, fail, refuse };
  const handle = (x: DohExchange, rawHeaders: readonly string[]) => {
    const req = x.body;
    // An H2Request listens for errors itself.
    if (!(x instanceof H2Request)) req.on('error', ignore);
    const step = dohRequestStep({ method: x.method, url: x.url, contentType: x.contentType, rawHeaders }, path, limits.maxHeaderListSize);
    if (step.kind === 'refuse') {
      refuse(refusalOf(step.status));
      return x.send(step.status);
    }
    if (step.kind === 'query') return reply(x, step.query);
    if (x instanceof H2Request) return x.readBody();
    // HTTP/1.1: the body is nearly always one chunk (a query is tens of octets): kept as it is, an array only past it.
    let first: Buffer | undefined;
    let more: Buffer[] | undefined;
    let size = 0;
    req.on('data', (c: Buffer) => {
      if (size > MAX_QUERY) return; // past the limit: answered already, the rest read and dropped
      size += c.length;
      if (size > MAX_QUERY) {
        refuse('body_too_large');
        x.tooLarge?.();
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
