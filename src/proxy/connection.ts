/**
 * One client connection, from accept to close:
 *
 *   peek      read records until one whole ClientHello (deadline, size cap)
 *   classify  ctx.classify: SNI/ALPN, ECH decrypted or not (proxy/ech-classifier.ts)
 *   route     ctx.table.match → a router, or a refusal (no route / the public-name answer)
 *   choose    chooseHandler(): one Handler, decided once (proxy/handler.ts):
 *               passthrough (proxy/passthrough.ts)   split (proxy/split.ts)
 *               TLS 1.3 engine (proxy/terminate.ts)  TLS 1.2 on node:tls (proxy/tls12.ts)
 *               the public-name answer (proxy/public-name.ts)
 *   start     handler.start(conn): it owns the bytes from here; backends are
 *             reached through conn.connect → proxy/relay.ts
 *   close     the socket's 'close' → closed() → finish(): metrics, the access line
 *
 * Each step is a method of the class Connection below, in that order; its
 * fields are the connection's whole state.
 *
 * The connection-wide rules live here and only here: the outcome, metrics and
 * access log; the privacy of ECH routes (HIDDEN_ROUTE); the exception guard
 * around every callback; the backend connect with its PROXY header, connect
 * timeout and idle timeout. See docs/architecture.md "One connection".
 */
import { channel } from 'node:diagnostics_channel';
import type net from 'node:net';
import { DEFAULT_TLS_OPTIONS } from '../config/tls-options.js';
import { type AlertName, isEchgateError } from '../errors.js';
import type { ConnData } from '../routing/ast.js';
import { normalizeIp } from '../bytes/ip.js';
import type { Route } from '../routing/table.js';
import { encodeProxyV1, encodeProxyV2 } from '../wire/proxy/proxy-protocol.js';
import { alertFor, alertName, encodeAlertRecord, trailingAlert } from '../wire/tls/alert.js';
import { scanClientHelloMessage } from '../wire/tls/client-hello.js';
import { ClientHelloAssembler, sniffTls } from '../wire/tls/record.js';
import { certificateCovers } from './certificates.js';
import type { OpenEntry, OpenSet } from './open-set.js';
import { type DeadlineEntry, type DeadlineList, Deadlines, IdleSweeps } from './deadlines.js';
import { CLIENT_ERROR_CODES, type ConnectionSeries } from './metrics.js';
import { admit } from './middlewares.js';
import type { Classified, EntryContext, PerEntrypoint, RouteTarget } from './context.js';
import type { Upstream } from './services.js';
import type { Answer, Conn, Handler, Outcome, PeekFailure, TlsFailure } from './handler.js';
import { passthrough } from './passthrough.js';
import { ClientPreamble, type PreambleOps, preambleProtocol, withBackendPreamble } from './preamble.js';
import { publicNameHandler } from './public-name.js';
import { OWNER, Relay, type RelayOptions, type RelayOwner } from './relay.js';
import { splitHandler } from './split.js';
import { terminateHandler } from './terminate.js';
import { chooseVersion, tls12Handler } from './tls12.js';

export type { Outcome, PeekFailure } from './handler.js';

/** Published once per routing decision; tests and operators subscribe. Inner SNI is included only when log.innerSni is on. */
export const routeChannel = channel('echgate:route');

/**
 * The router (and service) shown for an ECH-accepted connection when its
 * route names may not be: routers are often named after the host they serve,
 * so the name would give away the hidden SNI (docs/ech.md, logging).
 */
export const HIDDEN_ROUTE = '(ech)';

/** An unexpected exception as a log field: what and where, never connection data. */
export function errField(e: unknown): string {
  if (!(e instanceof Error)) return String(e);
  // The first stack frame says where; the message says what (neither carries connection data).
  const frame = e.stack?.split('\n')[1]?.trim();
  return frame ? `${e.name}: ${e.message} (${frame})` : `${e.name}: ${e.message}`;
}

/**
 * The access line's `reason` for a failure: the engine's own token where it set one (EchgateError.reason,
 * e.g. no_common_group), else the error's stable code (docs/errors.md), else node's code (node:tls, TLS 1.2).
 * Codes only, never a message: messages may carry connection data.
 */
export function failureReason(e: unknown): string | undefined {
  if (isEchgateError(e)) return e.reason ?? e.code;
  const code = (e as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** What the access line says about a failed TLS (docs/configuration.md, "Access log"). */
interface TlsWhy {
  /** The fatal alert echgate sent. */
  alert?: AlertName;
  /** The fatal alert the client sent (a name, or its number when no RFC we implement names it). */
  peerAlert?: string;
  reason?: string;
}

/** A route that gets no handler: the peek failure to end with, and the route event's `answer` when the version was chosen. */
interface Refusal {
  refuse: PeekFailure;
  alert?: Uint8Array;
  /** The access line's reason. */
  why?: unknown;
  answer?: Answer;
  /** Not a refusal of the client but a bug: answer internal_error and count it. */
  internal?: unknown;
}

const EMPTY = new Uint8Array(0);

/** The access line's reasons for the refusals chooseHandler makes itself (failureReason reads `code` off these). */
const NO_COMMON_VERSION = { code: 'no_common_version' };
const SNI_STRICT = { code: 'sni_strict' };
const NO_CERTIFICATE = { code: 'no_certificate' };

/** Why a ClientHello may carry no server_name (RFC 6066 §3), said in the log lines about it. */
const NO_SNI =
  'no SNI: the client sent no SNI (no server_name extension; common: redis-cli --tls sends one only with --sni, the MariaDB/MySQL clients never do, and clients connecting to an IP address do not)';

/**
 * The handler for a routed connection, decided once from the router's `tls`
 * section and the classified hello. `cls` is absent for non-TLS bytes and on
 * server-first entrypoints: those routers have no `tls` (passthrough only).
 */
function chooseHandler(ctx: EntryContext, route: Route<RouteTarget>, cls: Classified | undefined, peeked: Uint8Array, consumed: number, logRouter: string): Handler | Refusal {
  const tlsCfg = route.target.router.tls;
  if (tlsCfg && !tlsCfg.passthrough && cls) {
    const opts = tlsCfg.options ?? DEFAULT_TLS_OPTIONS;
    let version: ReturnType<typeof chooseVersion>;
    try {
      version = chooseVersion(cls.hello, cls.ech === 'accepted', opts);
    } catch (e) {
      if (!isEchgateError(e)) return { refuse: 'tls_handshake', internal: e };
      return { refuse: 'tls_handshake', alert: encodeAlertRecord(alertFor(e)), why: e };
    }
    // RFC 8446 §4.2.1: nothing both sides accept → protocol_version.
    if (version === 'protocol_version') return { refuse: 'tls_handshake', alert: encodeAlertRecord('protocol_version'), why: NO_COMMON_VERSION };
    const cert = ctx.certificate(cls.sni || undefined);
    // sniStrict (Traefik): no default certificate for a name no certificate covers.
    if (opts.sniStrict && !(cert && certificateCovers(cert.names, cls.sni))) return { refuse: 'tls_handshake', alert: encodeAlertRecord('unrecognized_name'), answer: version, why: SNI_STRICT };
    const alpn = tlsCfg.alpn ?? opts.alpnProtocols;
    if (version === 'tls1.3') return terminateHandler(cls, opts, alpn);
    if (!cert) return { refuse: 'tls_handshake', alert: encodeAlertRecord('unrecognized_name'), answer: version, why: NO_CERTIFICATE };
    return tls12Handler(cert, opts, alpn);
  }
  // ESNI needs neither: a passthrough backend gets the hello unchanged, as a split-mode ESNI front forwards it (draft-02 §5.2).
  if (cls?.ech === 'accepted' && !ctx.ep.echBackend && !cls.esni) {
    // Split mode (RFC 9849 §3.1, §7.1): the backend server gets ClientHelloInner and confirms ECH itself.
    if (tlsCfg?.echSplit) return splitHandler(cls, peeked.subarray(consumed));
    // A passthrough backend cannot produce the ECH accept confirmation.
    ctx.metrics.ech.inc({ entrypoint: ctx.ep.name, result: 'accepted_on_passthrough' });
    ctx.limiter.log(ctx.log, 'warn', { entrypoint: ctx.ep.name, router: logRouter }, 'ECH connection routed to a passthrough router; the backend cannot complete ECH');
  }
  return passthrough(peeked);
}

/**
 * Accept one client connection: everything from here to its close is one
 * Connection. `open` is the listener's set of open connections; the
 * connection is in it from here until it finishes (or until begin() throws).
 */
export function handleConnection(ctx: EntryContext, socket: net.Socket, open: OpenSet, ip?: string): void {
  const k = new Connection(ctx, socket, open, ip);
  // The address, when the accept path read it (gateway.ts, maxConnectionsPerIP): the set counts it under it.
  k.openIp = ip;
  open.add(k);
  try {
    k.begin();
  } catch (e) {
    open.delete(k);
    throw e;
  }
}

// The sockets' listeners and the timers are shared by every connection rather
// than made per connection (18 closures and 11 `once` wrappers each, a GC cost
// the passthrough profile showed; docs/benchmarks.md "Relaying cost, third
// pass"). A listener finds its connection on the socket it was called on: the
// OWNER tag, the one the relay's listeners read too (proxy/relay.ts).
type Owned = { [OWNER]?: Connection };

/**
 * A listener for `s.on(event, …)`: `this` is the socket, the connection is
 * the one tagged on it, and an exception inside goes to that connection's
 * guard (handlerError), never the process.
 */
function listener<A = void>(body: (k: Connection, a: A) => void): (this: net.Socket, a: A) => void {
  return function (this: net.Socket, a: A) {
    const k = (this as Owned)[OWNER]!;
    try {
      body(k, a);
    } catch (e) {
      k.handlerError(e);
    }
  };
}

/** A timer callback given its connection as setTimeout's argument; guarded like a listener. */
function timer(body: (k: Connection) => void): (k: Connection) => void {
  return (k) => {
    try {
      body(k);
    } catch (e) {
      k.handlerError(e);
    }
  };
}

// 'data' and 'end': one listener each from accept to close when the connection goes to a plain passthrough
// (clientData, clientEnded hand the relay its bytes and EOF), taken off at the route for every other handler.
const onClientData = listener<Buffer>((k, d) => k.clientData(d));
const onClientError = listener<Error>((k, err) => {
  k.clientError(err);
  k.backend?.destroy();
  k.socket.destroy();
});
const onClientClose = listener((k) => k.closed());
const onClientEnd = listener((k) => k.clientEnded());
const onPeekTimeout = timer((k) => k.peekTimedOut());
/** The ClientHello and backend connect deadlines: one list per duration, no node timer per connection (proxy/deadlines.ts). */
const peekDeadlines = new Deadlines((e) => onPeekTimeout(e as Connection));
const onBackendError = listener<Error>((k, err) => k.backendError(err));
const onBackendConnect = listener((k) => k.backendConnected());
const onConnectTimeout = timer((k) => k.backend?.destroy(new Error('connect timeout')));
const connectDeadlines = new Deadlines((e) => onConnectTimeout(e as Connection));
const onIdleTimeout = timer((k) => {
  k.outcome ??= 'idle_timeout';
  k.client?.destroy();
});
/** The idle deadline of every relayed connection: one sweep per duration, no node timer per connection (proxy/deadlines.ts). */
const idleSweeps = new IdleSweeps((e) => onIdleTimeout(((e as Relay).client as Owned)[OWNER]!));

/** What routing rules read (routing/ast.ts ConnData); the peer address is looked up only when a rule or middleware asks. */
class RouteData implements ConnData {
  constructor(
    private readonly k: Connection,
    readonly sni: string,
    readonly alpn: readonly string[],
    readonly tls: boolean,
    readonly ech: ConnData['ech'],
  ) {}
  get clientIp(): string {
    return this.k.clientIp();
  }
}

const NOT_TLS = (k: Connection) => new RouteData(k, '', [], false, 'none');

/** The entrypoint's series, deadline list and idle sweep, found once per context (EntryContext.perConn). */
function perEntrypoint(ctx: EntryContext): PerEntrypoint {
  const ms = ctx.ep.idleTimeoutMs;
  ctx.perConn = {
    series: ctx.metrics.connectionSeries(ctx.ep.name),
    peek: peekDeadlines.list(ctx.ep.clientHelloTimeoutMs),
    idle: ms > 0 ? idleSweeps.sweep(ms) : undefined,
  };
  return ctx.perConn;
}

/**
 * One client connection, accept to close, in the order things happen:
 * begin (listeners, peek deadline) → peek (records until one ClientHello) →
 * classify → route → dispatch (middlewares, server, chooseHandler, start) →
 * connect (the backend, through a Relay) → closed (metrics, access line).
 * Its fields are the connection's whole state.
 */
class Connection implements PreambleOps, DeadlineEntry, RelayOwner, OpenEntry {
  private readonly started = performance.now();
  private readonly ep: string;
  /** The metric series this connection updates, resolved once per entrypoint (proxy/metrics.ts). */
  private readonly series: ConnectionSeries;
  /** What the entrypoint's connections share (EntryContext.perConn). */
  private readonly shared: PerEntrypoint;
  /** The peer address, once asked (a getpeername(2): only ClientIP rules, PROXY headers and logs need it). */
  private ip: string | undefined;
  private finished = false;
  private routerName = '-';
  /** The backend socket and the client side the relay serves (the socket, or node:tls's plaintext side for TLS 1.2). */
  backend: net.Socket | undefined;
  client: net.Socket | undefined;
  private connected = false;
  /** Set by whatever ended the connection; `closed` falls back to relayed / closed. */
  outcome: Outcome | undefined;
  /** The deadline this connection waits on (ClientHello, then backend connect), as an entry of its list (proxy/deadlines.ts). */
  dlAt = 0;
  dlPrev: DeadlineEntry | undefined = undefined;
  dlNext: DeadlineEntry | undefined = undefined;
  dlList: DeadlineList | undefined = undefined;
  /** The listener's open connections (proxy/open-set.ts): this connection's links. */
  openPrev: OpenEntry | undefined = undefined;
  openNext: OpenEntry | undefined = undefined;
  openIn: OpenSet | undefined = undefined;
  openIp: string | undefined = undefined;
  /** Gives back what the router's middlewares counted for this connection (inFlightConn). */
  private release: (() => void) | undefined;
  /** The backend server, picked once the route is known (health checks may have left none). */
  private upstream: Upstream | undefined;
  private route: Route<RouteTarget> | undefined;
  // An ECH-accepted connection's route names stay out of logs and the route channel
  // unless log.innerSni or log.echRoutes, and out of metric labels unless log.echRoutes.
  private hideInLogs = false;
  private hideInMetrics = false;
  /**
   * What the access line may show: the SNI (never an inner one unless log.innerSni), the ECH verdict and, once
   * the TLS side failed, why (TlsWhy: kept here, not in a field of its own, so that a connection without the
   * access log is no bigger; docs/benchmarks.md "Operator view, twelfth pass").
   */
  private readonly access: ({ client: string; sni: string | undefined; ech: ConnData['ech'] | 'grease' | 'stale' } & TlsWhy) | undefined;
  /** The ClientHello being read; dropped once routed, so an idle connection keeps none of it. */
  private asm: ClientHelloAssembler | undefined;
  private sniffed = false;
  /** Entrypoint `protocol` (proxy/preamble.ts): the protocol's cleartext preamble comes before the ClientHello. */
  private pre: ClientPreamble | undefined;
  /** The handler's callback for the backend connect, dropped once used. */
  private afterConnect: ((r: Relay) => void) | undefined;
  /** RelayOwner: the relay's listeners find it here, through the sockets' OWNER tag. */
  relay: Relay | undefined = undefined;
  /** The peek's 'data' listener is on the socket. */
  private dataOn = false;
  /**
   * A plain passthrough keeps the peek's 'data' and 'end' listeners for the relay (Conn.relayClient):
   * no listener taken off and put back, no pause and resume of the client between the route and the
   * backend's connect (docs/benchmarks.md, "Passthrough cost, tenth pass").
   */
  private keep = false;
  /** In `keep` mode: the client's EOF came before the relay read the client; relayClient passes it on. */
  private eofHeld = false;

  constructor(
    readonly ctx: EntryContext,
    readonly socket: net.Socket,
    private readonly open: OpenSet,
    ip?: string,
  ) {
    // The address the accept path normalised already (maxConnectionsPerIP), else read when first needed.
    this.ip = ip;
    this.ep = ctx.ep.name;
    this.shared = ctx.perConn ?? perEntrypoint(ctx);
    this.series = this.shared.series;
    this.access = ctx.accessLog ? { client: this.clientIp(), sni: undefined, ech: 'none' } : undefined;
  }

  clientIp(): string {
    this.ip ??= normalizeIp(this.socket.remoteAddress);
    return this.ip;
  }

  /** The router name as logs may show it. */
  logRouter(): string {
    return this.hideInLogs ? HIDDEN_ROUTE : this.routerName;
  }

  /** The router name as metric labels may show it. */
  metricRouter(): string {
    return this.hideInMetrics ? HIDDEN_ROUTE : this.routerName;
  }

  begin(): void {
    const { ctx, socket } = this;
    this.series.open.inc();
    (socket as Owned)[OWNER] = this;
    socket.on('error', onClientError);
    socket.on('close', onClientClose);

    // Server-speaks-first entrypoints: no router needs a ClientHello, so never wait for one.
    if (ctx.table.immediate) {
      try {
        const data = NOT_TLS(this);
        const route = ctx.table.match(data);
        if (!route) return this.fail('no_route');
        this.dispatch(route, data, undefined, EMPTY, 0);
      } catch (e) {
        this.handlerError(e);
      }
      return;
    }

    this.asm = new ClientHelloAssembler(ctx.ep.maxClientHelloBytes);
    // The connection's start is this instant's clock read: no second one for the deadline.
    this.shared.peek.addFrom(this, this.started);
    if (ctx.ep.protocol) this.pre = new ClientPreamble(preambleProtocol(ctx.ep.protocol), ctx, socket, this);
    socket.on('data', onClientData);
    this.dataOn = true;
    socket.on('end', onClientEnd);
  }

  // ---- close ----

  /** The client socket's 'close': whatever happened, the connection is over. */
  closed(): void {
    // A deadline still waiting (the client reset the connection during the peek or the connect) has nothing left to end.
    this.dlList?.remove(this);
    const r = this.relay;
    r?.idleList?.remove(r);
    this.backend?.destroy();
    this.release?.();
    this.finish(this.outcome ?? (this.connected ? 'relayed' : 'closed'));
  }

  /** The connection is over with this outcome (idempotent): the connection metrics and the access line. */
  finish(how: Outcome): void {
    if (this.finished) return;
    this.finished = true;
    const { ctx, socket, ep } = this;
    try {
      const router = this.metricRouter();
      const { series } = this;
      series.connection(router, how).inc();
      series.open.inc(-1);
      if (this.backend) {
        const r = series.router(router);
        r.bytesIn.inc(socket.bytesRead);
        r.bytesOut.inc(socket.bytesWritten);
        r.duration.observe((performance.now() - this.started) / 1000);
      }
      if (this.access) {
        ctx.log.info(
          { entrypoint: ep, router: this.logRouter(), outcome: how, ...this.access, bytesIn: socket.bytesRead, bytesOut: socket.bytesWritten, ms: Math.round(performance.now() - this.started) },
          'access',
        );
      }
    } finally {
      this.open.delete(this);
    }
  }

  // Rule for this whole file and every handler: an exception while handling one
  // connection ends that connection, is counted and logged (rate limited), and
  // never reaches the process. Every listener and timer here runs inside it
  // (listener(), timer()); handlers wrap theirs with guard().
  handlerError(e: unknown): void {
    try {
      this.ctx.metrics.handlerErrors.inc({ listener: 'proxy' });
      this.ctx.limiter.log(this.ctx.log, 'warn', { entrypoint: this.ep, err: errField(e) }, 'internal error handling a connection; that connection was closed');
    } catch {
      // Counting or logging failed too: closing the connection is all that is left.
    }
    this.outcome = 'handler_error';
    this.stopPeek();
    this.backend?.destroy();
    this.socket.destroy();
    // Normally `close` finishes; when the error came from the close handler itself, finish here.
    if (this.socket.closed) this.finish('handler_error');
  }

  guard<A extends unknown[]>(fn: (...a: A) => void): (...a: A) => void {
    return (...a: A): void => {
      try {
        fn(...a);
      } catch (e) {
        this.handlerError(e);
      }
    };
  }

  /**
   * Count the alert we sent, by router once one was chosen ('-' before; `(ech)` for a hidden ECH route unless
   * log.echRoutes: the label set is bounded by the configuration), and keep it, with the reason, for the access line.
   */
  private countAlert(name: AlertName | undefined, why?: unknown): void {
    if (name) this.ctx.metrics.alertsSent.inc({ entrypoint: this.ep, router: this.metricRouter(), alert: name });
    const w = this.access;
    if (!w) return;
    if (name) w.alert ??= name;
    if (why !== undefined) w.reason ??= failureReason(why);
  }

  fail(reason: PeekFailure, alert?: Uint8Array, alertName?: AlertName, why?: unknown): void {
    const { ctx, socket } = this;
    this.stopData();
    ctx.metrics.peekFailures.inc({ entrypoint: this.ep, reason });
    const how: Outcome = reason === 'tls_handshake' ? 'tls_alert' : reason;
    if (alert && socket.writable) {
      this.countAlert(alertName ?? trailingAlert(alert), why);
      // Send the alert, then close. Keep draining input so the kernel does
      // not answer unread bytes with a RST that could overtake the alert.
      socket.end(alert);
      socket.resume();
      setTimeout(() => socket.destroy(), 2000).unref();
      this.finish(how);
    } else {
      this.countAlert(undefined, why);
      socket.destroy();
      this.finish(how);
    }
  }

  /** Not a decoding problem but a bug: count it as one, answer internal_error (RFC 8446 §6.2). */
  private internalFail(e: unknown): void {
    const { ctx, socket } = this;
    this.stopData();
    this.outcome = 'handler_error';
    try {
      ctx.metrics.handlerErrors.inc({ listener: 'proxy' });
      ctx.limiter.log(ctx.log, 'warn', { entrypoint: this.ep, err: errField(e) }, 'internal error handling a connection; that connection was closed');
    } finally {
      if (socket.writable) {
        this.countAlert('internal_error');
        socket.end(encodeAlertRecord('internal_error'));
        setTimeout(() => socket.destroy(), 2000).unref();
      } else socket.destroy();
    }
  }

  handshakeFailed(reason: TlsFailure, alert?: AlertName, why?: unknown, peerAlert?: number): void {
    // After the handshake the ClientHello peek had long succeeded: not a peek failure (audit s12 gap 3).
    if (reason !== 'tls_session') this.ctx.metrics.peekFailures.inc({ entrypoint: this.ep, reason });
    this.countAlert(alert, why);
    if (peerAlert !== undefined && this.access) this.access.peerAlert ??= alertName(peerAlert) ?? String(peerAlert);
    this.outcome ??= reason === 'handshake_timeout' ? 'handshake_timeout' : reason === 'tls_session' ? 'tls_session_error' : 'tls_alert';
  }

  internalError(e: unknown, msg: string): void {
    this.ctx.metrics.handlerErrors.inc({ listener: 'proxy' });
    this.ctx.limiter.log(this.ctx.log, 'warn', { entrypoint: this.ep, router: this.logRouter(), err: errField(e) }, msg);
  }

  // ---- peek ----

  /** The ClientHello deadline. */
  peekTimedOut(): void {
    const { pre, socket } = this;
    socket.removeListener('data', onClientData);
    if (pre && !pre.done) pre.timedOut();
    else if (pre?.tlsAnswered && !this.sniffed) pre.timedOut();
    else if (socket.bytesRead === 0) {
      this.ctx.limiter.log(
        this.ctx.log,
        'info',
        () => ({ entrypoint: this.ep, client: this.clientIp() }),
        'the client sent nothing before clientHelloTimeout: a server-first protocol? (MySQL/MariaDB, SMTP, FTP clients wait for the server greeting and never send a ClientHello first; route them on an entrypoint whose routers are all HostSNI(`*`) without tls, see docs/databases.md)',
      );
    }
    this.fail('timeout');
  }

  /** The client's EOF before anything was routed. */
  endedEarly(): void {
    // Only while the ClientHello is being read (asm): from the route on, a handler owns the EOF (the
    // public-name answer has no backend, so counting it here too made one replayed hello two peek
    // failures, closed_early and tls_handshake; audit s12 gap 3).
    if (this.asm !== undefined && !this.backend && !this.finished && this.outcome === undefined) {
      this.stopPeek();
      this.fail('closed_early');
    }
  }

  /** Stop the ClientHello deadline (the connection leaves its deadline list) and stop reading for it. */
  stopPeek(): void {
    this.dlList?.remove(this);
    this.stopData();
  }

  /** Take the peek's 'data' listener off (no more reads for the connection itself). */
  private stopData(): void {
    if (!this.dataOn) return;
    this.dataOn = false;
    this.socket.removeListener('data', onClientData);
  }

  /** The client's 'data': the ClientHello while peeking; in `keep` mode, then, the relay's. */
  clientData(d: Buffer): void {
    if (this.asm) return this.peek(d);
    const r = this.relay;
    if (r?.reading) return r.clientData(d);
    // `keep` mode, routed, the backend not connected yet: the socket holds the bytes until the relay
    // reads the client (as the paused socket did when the listener was swapped).
    this.socket.pause();
    this.socket.unshift(d);
  }

  /** The client's 'end': before the route, an early EOF; in `keep` mode, the relay's. */
  clientEnded(): void {
    if (!this.keep) return this.endedEarly();
    const r = this.relay;
    if (r?.reading) r.clientEnded();
    else this.eofHeld = true;
  }

  /** Conn.relayClient: start relaying the client's bytes as they are (proxy/passthrough.ts). */
  relayClient(r: Relay): void {
    if (!this.keep) return r.readClient();
    r.readClientFromOwner();
    if (this.eofHeld) r.clientEnded();
  }

  /** Client bytes until one whole ClientHello (or proof there is none). */
  peek(input: Buffer): void {
    const asmb = this.asm;
    if (!asmb) return;
    const { ctx, pre } = this;
    let chunk = input;
    if (pre && !pre.done) {
      const tlsBytes = pre.push(chunk);
      if (!tlsBytes) return;
      chunk = Buffer.from(tlsBytes.buffer, tlsBytes.byteOffset, tlsBytes.length);
    }
    let hello: ReturnType<ClientHelloAssembler['push']>;
    try {
      if (!this.sniffed) {
        const head = asmb.buffered === 0 ? chunk : Buffer.concat([asmb.bytes(), chunk]);
        const kind = sniffTls(head);
        if (kind === 'need_more') {
          asmb.append(chunk);
          return;
        }
        this.sniffed = true;
        if (kind !== 'tls') {
          this.stopPeek();
          asmb.append(chunk);
          return this.routeNonTls(kind === 'sslv2_hello' ? 'sslv2_hello' : 'not_tls');
        }
      }
      hello = asmb.push(chunk);
    } catch (e) {
      this.stopPeek();
      if (!isEchgateError(e)) return this.internalFail(e);
      if (e.code === 'ERR_NOT_TLS') return this.routeNonTls('not_tls');
      const reason = e.code === 'ERR_PEEK_TOO_LARGE' ? 'too_large' : e.code === 'ERR_LIMIT' ? 'too_many_records' : 'malformed';
      return this.fail(reason, encodeAlertRecord(alertFor(e)), undefined, e);
    }
    if (!hello) return;
    // The ClientHello deadline; the 'data' listener comes off in dispatch, or stays for a plain passthrough.
    this.dlList?.remove(this);
    // classify
    let cls: Classified;
    try {
      // The routing view straight from the bytes; the hello's fields are decoded only if a handler or ECH reads them.
      const scan = scanClientHelloMessage(hello.message);
      cls = ctx.classify(scan.hello, scan.view, this.ep);
    } catch (e) {
      if (!isEchgateError(e)) return this.internalFail(e);
      return this.fail('malformed', encodeAlertRecord(alertFor(e)), undefined, e);
    }
    const data = new RouteData(this, cls.sni, cls.alpn, true, cls.ech);
    if (this.access) {
      // The access line says what echgate_ech_total says: grease and stale by name, other rejections as rejected.
      const why = cls.echReason;
      this.access.ech = why === 'grease' || why === 'stale' ? why : cls.ech;
      this.access.sni = cls.ech === 'accepted' && !ctx.logInnerSni ? undefined : cls.sni;
    }
    const peeked = asmb.bytes();
    this.asm = undefined;
    // The bytes after the hello (`rest`) are cut out only when a handler asks (split, terminate).
    const consumed = hello.consumed;
    // route
    const route = ctx.table.match(data);
    if (route) {
      if (cls.sni === '') ctx.limiter.log(ctx.log, 'info', () => ({ entrypoint: this.ep, client: this.clientIp(), router: route.name }), `${NO_SNI}: routed by a rule that needs no name (HostSNI(\`*\`))`);
      return this.dispatch(route, data, cls, peeked, consumed);
    }
    if (cls.publicName) {
      // RFC 9849 §6.1.6/§7.1: no router for the public name of a rejected ECH hello; echgate answers
      // for it itself, so the client learns the current keys (retry_configs). See proxy/public-name.ts.
      const h = publicNameHandler(ctx, cls);
      if (h) {
        this.publishRoute('-', data, cls, h.answer);
        this.stopData();
        return h.start(new HandlerConn(this, undefined, cls, peeked, consumed));
      }
      ctx.limiter.log(ctx.log, 'warn', { entrypoint: this.ep, sni: cls.sni }, 'ECH rejected for a public name that no certificate covers: the client cannot receive retry_configs');
    }
    const shownSni = cls.ech === 'accepted' && !ctx.logInnerSni ? '(hidden: ECH inner SNI)' : cls.sni;
    if (cls.sni === '') ctx.limiter.log(ctx.log, 'info', () => ({ entrypoint: this.ep, client: this.clientIp() }), `no router for ClientHello: ${NO_SNI}; refused with unrecognized_name (a proxy that answered with a default certificate instead would leave the client reporting an unknown CA or a name mismatch)`);
    else ctx.limiter.log(ctx.log, 'info', () => ({ entrypoint: this.ep, client: this.clientIp(), sni: shownSni, ech: cls.ech }), 'no router for SNI');
    // RFC 6066 §3: a server that does not recognise the name may send a fatal unrecognized_name alert.
    return this.fail(cls.sni === '' ? 'no_sni_no_route' : 'no_route', encodeAlertRecord('unrecognized_name'));
  }

  private routeNonTls(reason: 'not_tls' | 'sslv2_hello' | 'tls_required', refusal?: Uint8Array): void {
    // After a preamble's "go ahead with TLS" only a ClientHello may come.
    if (this.pre?.tlsAnswered) return this.pre.notTls();
    const data = NOT_TLS(this);
    const route = this.ctx.table.match(data);
    if (!route) return this.fail(reason, refusal);
    const peeked = this.asm?.bytes() ?? EMPTY;
    this.asm = undefined;
    this.dispatch(route, data, undefined, peeked, peeked.length);
  }

  // PreambleOps (proxy/preamble.ts) beside stopPeek, fail and clientIp.
  routePlain(bytes: Uint8Array, refusal: Uint8Array): void {
    this.asm?.append(bytes);
    this.routeNonTls('tls_required', refusal);
  }

  setOutcome(o: 'cancel_forwarded'): void {
    this.outcome = o;
  }

  // ---- route → handler ----

  /** `answer`: who completes the TLS handshake when echgate does (no value: the backend, or not decided). */
  private publishRoute(router: string, conn: ConnData, cls: Classified | undefined, answer?: Answer): void {
    if (!routeChannel.hasSubscribers) return;
    // A subscriber that throws is re-thrown by node on process.nextTick, out
    // of reach of any try/catch here: subscribers are in-process code and must not throw.
    routeChannel.publish({
      entrypoint: this.ep,
      router,
      sni: cls?.ech === 'accepted' && !this.ctx.logInnerSni ? undefined : conn.sni,
      ech: conn.ech,
      echReason: cls?.echReason,
      tls: conn.tls,
      ...(answer ? { answer } : {}),
    });
  }

  /** Routed: decide the handler once, say so on the route channel, start it. */
  private dispatch(route: Route<RouteTarget>, data: ConnData, cls: Classified | undefined, peeked: Uint8Array, consumed: number): void {
    const { ctx, socket } = this;
    this.routerName = route.name;
    this.route = route;
    if (data.ech === 'accepted') {
      this.hideInMetrics = !ctx.logEchRoutes;
      this.hideInLogs = !ctx.logEchRoutes && !ctx.logInnerSni;
    }
    // Traefik's TCP middlewares run once the router is chosen; a refused connection is closed, nothing sent.
    const gate = admit(ctx, route.target, data, this.logRouter());
    if (!gate.ok) {
      this.outcome = 'refused_by_middleware';
      return void socket.destroy();
    }
    this.release = gate.release;
    const upstream = route.target.picker.pick();
    this.upstream = upstream;
    if (upstream.unavailable) {
      // Health checks took every server out (src/proxy/health.ts): fail fast rather than try a dead one.
      this.outcome = 'backend_error';
      ctx.metrics.backendErrors.inc({ service: this.hideInMetrics ? HIDDEN_ROUTE : upstream.service, kind: 'unavailable' });
      ctx.limiter.log(ctx.log, 'warn', { entrypoint: this.ep, router: this.logRouter(), ...(this.hideInLogs ? {} : { service: upstream.service }) }, 'no healthy server in the service: client closed');
      return void socket.destroy();
    }
    let h = chooseHandler(ctx, route, cls, peeked, consumed, this.logRouter());
    // A TLS preamble protocol (proxy/preamble.ts): a backend that gets the client's ClientHello must be asked for TLS first.
    if (ctx.ep.protocol && cls && !('refuse' in h) && !h.answer) h = withBackendPreamble(preambleProtocol(ctx.ep.protocol), h);
    this.publishRoute(this.logRouter(), data, cls, h.answer);
    if ('refuse' in h) return h.internal !== undefined ? this.internalFail(h.internal) : this.fail(h.refuse, h.alert, undefined, h.why);
    // A plain passthrough keeps the 'data' listener (relayClient); any other handler reads the client its
    // own way from a paused socket once it is ready.
    if (h.relaysClientAsIs && this.dataOn) this.keep = true;
    else {
      this.stopData();
      socket.pause();
    }
    h.start(new HandlerConn(this, route, cls, peeked, consumed));
  }

  // ---- connect → relay ----

  /** Conn.connect: see proxy/handler.ts. */
  connect(route: Route<RouteTarget> | undefined, client: net.Socket, opts: RelayOptions, onConnect: (r: Relay) => void): Relay {
    if (!route) throw new Error('connect() without a route');
    const { socket } = this;
    const up = this.upstream ?? route.target.picker.pick();
    this.upstream = up;
    // The relay tags the backend with this connection (and the client when it is node:tls's plaintext side).
    const relay = new Relay(client, up.server, opts, this);
    const b = relay.backend;
    this.backend = b;
    this.client = client;
    if (up.proxyProtocol) {
      // Written now, queued by the socket until it connects: ahead of any byte a handler sends.
      const addrs = { srcIp: this.clientIp(), srcPort: socket.remotePort ?? 0, dstIp: normalizeIp(socket.localAddress), dstPort: socket.localPort ?? 0 };
      b.write(up.proxyProtocol === 1 ? encodeProxyV1(addrs) : encodeProxyV2(addrs));
    }
    // The deadline leaves its list and the callback is dropped once used: the callback holds the ClientHello (idle RSS).
    connectDeadlines.list(up.connectTimeoutMs).add(this);
    this.afterConnect = onConnect;
    b.on('error', onBackendError);
    b.on('connect', onBackendConnect);
    return relay;
  }

  /** The client's socket failed (node's 'error': a reset, a broken pipe): counted by code; the caller closes both sides. */
  clientError(err: Error): void {
    const code = (err as NodeJS.ErrnoException).code;
    this.ctx.metrics.clientErrors.inc({ entrypoint: this.ep, code: code !== undefined && CLIENT_ERROR_CODES.has(code) ? code : 'other' });
  }

  backendError(err: Error): void {
    const { ctx, upstream: up } = this;
    this.dlList?.remove(this);
    this.afterConnect = undefined;
    this.outcome ??= 'backend_error';
    const service = this.hideInMetrics ? HIDDEN_ROUTE : up!.service;
    if (this.backend!.connecting || !this.connected) {
      ctx.metrics.backendErrors.inc({ service, kind: 'connect' });
      // node's message names the address ("connect ECONNREFUSED host:port"): hidden routes get the code only.
      const where = this.hideInLogs
        ? { router: HIDDEN_ROUTE, err: (err as NodeJS.ErrnoException).code ?? 'error' }
        : { router: this.route!.name, service: up!.service, server: `${up!.server.host}:${up!.server.port}`, err: err.message };
      ctx.limiter.log(ctx.log, 'warn', { entrypoint: this.ep, ...where }, 'backend connect failed');
    } else {
      ctx.metrics.backendErrors.inc({ service, kind: 'stream' });
    }
    this.socket.destroy();
  }

  /**
   * RelayOwner: the backend's 'close' (from the relay's listener) ends the client once the backend had connected.
   * The only thing that closes the client when a handler gave up after sending its alert (client.end(alert) and
   * backend.destroy(): terminate.ts failWith, a split-mode rewrite error) and the client keeps its side open:
   * without it the connection waited for idleTimeout (test/backend-closed.test.ts).
   */
  backendClosed(): void {
    if (this.connected) this.client?.destroy();
  }

  backendConnected(): void {
    this.connected = true;
    this.dlList?.remove(this);
    const then = this.afterConnect;
    this.afterConnect = undefined;
    then?.(this.relay!);
    // The idle deadline: reads from the client and writes to it both count as activity (the relay marks them).
    const idle = this.shared.idle;
    if (idle && !this.finished) idle.add(this.relay!);
  }
}

/**
 * The Conn a handler gets (proxy/handler.ts): the connection plus what was
 * peeked. Kept apart from Connection so that the hello bytes and their
 * decoded form live only as long as the handler holds this object.
 */
class HandlerConn implements Conn {
  constructor(
    private readonly k: Connection,
    readonly route: Route<RouteTarget> | undefined,
    readonly cls: Classified | undefined,
    readonly peeked: Uint8Array,
    /** Where the ClientHello's records end in `peeked`. */
    private readonly consumed: number,
  ) {}
  get rest(): Uint8Array {
    return this.peeked.subarray(this.consumed);
  }
  // These three give closures over `k` alone, not methods: a handler may keep them for the life of the
  // connection without keeping this object, which holds the hello (proxy/terminate.ts takes them apart).
  // Made when read, not in the constructor: passthrough, the common handler, reads none of them.
  get guard(): Conn['guard'] {
    const k = this.k;
    return (fn) => k.guard(fn);
  }
  get handshakeFailed(): Conn['handshakeFailed'] {
    const k = this.k;
    return (reason, alert, why, peerAlert) => k.handshakeFailed(reason, alert, why, peerAlert);
  }
  get internalError(): Conn['internalError'] {
    const k = this.k;
    return (e, msg) => k.internalError(e, msg);
  }
  get ctx(): EntryContext {
    return this.k.ctx;
  }
  get socket(): net.Socket {
    return this.k.socket;
  }
  logRouter(): string {
    return this.k.logRouter();
  }
  metricRouter(): string {
    return this.k.metricRouter();
  }
  fail(reason: PeekFailure, alert?: Uint8Array, alertName?: AlertName, why?: unknown): void {
    this.k.fail(reason, alert, alertName, why);
  }
  finish(outcome: Outcome): void {
    this.k.finish(outcome);
  }
  connect(client: net.Socket, opts: RelayOptions, onConnect: (r: Relay) => void): Relay {
    return this.k.connect(this.route, client, opts, onConnect);
  }
  relayClient(r: Relay): void {
    this.k.relayClient(r);
  }
}
