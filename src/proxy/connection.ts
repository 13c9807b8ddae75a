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
 *   close     the socket's 'close' → finish(): metrics, the access line
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
import { alertFor, encodeAlertRecord, trailingAlert } from '../wire/tls/alert.js';
import { decodeClientHelloMessage, routingView } from '../wire/tls/client-hello.js';
import { ClientHelloAssembler, sniffTls } from '../wire/tls/record.js';
import { certificateCovers } from './certificates.js';
import { admit } from './middlewares.js';
import type { Classified, EntryContext, RouteTarget } from './context.js';
import type { Upstream } from './services.js';
import type { Answer, Conn, Handler, Outcome, PeekFailure } from './handler.js';
import { passthrough } from './passthrough.js';
import { ClientPreamble, preambleProtocol, withBackendPreamble } from './preamble.js';
import { publicNameHandler } from './public-name.js';
import { Relay } from './relay.js';
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

/** A route that gets no handler: the peek failure to end with, and the route event's `answer` when the version was chosen. */
interface Refusal {
  refuse: PeekFailure;
  alert?: Uint8Array;
  answer?: Answer;
  /** Not a refusal of the client but a bug: answer internal_error and count it. */
  internal?: unknown;
}

const EMPTY = new Uint8Array(0);

/** Why a ClientHello may carry no server_name (RFC 6066 §3), said in the log lines about it. */
const NO_SNI =
  'no SNI: the client sent no SNI (no server_name extension; common: redis-cli --tls sends one only with --sni, the MariaDB/MySQL clients never do, and clients connecting to an IP address do not)';

/**
 * The handler for a routed connection, decided once from the router's `tls`
 * section and the classified hello. `cls` is absent for non-TLS bytes and on
 * server-first entrypoints: those routers have no `tls` (passthrough only).
 */
function chooseHandler(ctx: EntryContext, route: Route<RouteTarget>, cls: Classified | undefined, peeked: Uint8Array, rest: Uint8Array, logRouter: () => string): Handler | Refusal {
  const tlsCfg = route.target.router.tls;
  if (tlsCfg && !tlsCfg.passthrough && cls) {
    const opts = tlsCfg.options ?? DEFAULT_TLS_OPTIONS;
    let version: ReturnType<typeof chooseVersion>;
    try {
      version = chooseVersion(cls.hello, cls.ech === 'accepted', opts);
    } catch (e) {
      if (!isEchgateError(e)) return { refuse: 'tls_handshake', internal: e };
      return { refuse: 'tls_handshake', alert: encodeAlertRecord(alertFor(e)) };
    }
    // RFC 8446 §4.2.1: nothing both sides accept → protocol_version.
    if (version === 'protocol_version') return { refuse: 'tls_handshake', alert: encodeAlertRecord('protocol_version') };
    const cert = ctx.certificate(cls.sni || undefined);
    // sniStrict (Traefik): no default certificate for a name no certificate covers.
    if (opts.sniStrict && !(cert && certificateCovers(cert.names, cls.sni))) return { refuse: 'tls_handshake', alert: encodeAlertRecord('unrecognized_name'), answer: version };
    const alpn = tlsCfg.alpn ?? opts.alpnProtocols;
    if (version === 'tls1.3') return terminateHandler(cls, opts, alpn);
    if (!cert) return { refuse: 'tls_handshake', alert: encodeAlertRecord('unrecognized_name'), answer: version };
    return tls12Handler(cert, opts, alpn);
  }
  // ESNI needs neither: a passthrough backend gets the hello unchanged, as a split-mode ESNI front forwards it (draft-02 §5.2).
  if (cls?.ech === 'accepted' && !ctx.ep.echBackend && !cls.esni) {
    // Split mode (RFC 9849 §3.1, §7.1): the backend server gets ClientHelloInner and confirms ECH itself.
    if (tlsCfg?.echSplit) return splitHandler(cls, rest);
    // A passthrough backend cannot produce the ECH accept confirmation.
    ctx.metrics.ech.inc({ entrypoint: ctx.ep.name, result: 'accepted_on_passthrough' });
    ctx.limiter.log(ctx.log, 'warn', { entrypoint: ctx.ep.name, router: logRouter() }, 'ECH connection routed to a passthrough router; the backend cannot complete ECH');
  }
  return passthrough(peeked);
}

export function handleConnection(ctx: EntryContext, socket: net.Socket, onDone: () => void): void {
  const started = performance.now();
  const ep = ctx.ep.name;
  // The peer address costs a getpeername(2); only ClientIP rules, PROXY headers and logs need it.
  let ip: string | undefined;
  const clientIp = () => {
    ip ??= normalizeIp(socket.remoteAddress);
    return ip;
  };
  const connData = (sni: string, alpn: readonly string[], tls: boolean, ech: ConnData['ech']): ConnData => ({
    sni,
    alpn,
    tls,
    ech,
    get clientIp() {
      return clientIp();
    },
  });
  let finished = false;
  let routerName = '-';
  let backend: net.Socket | undefined;
  let connected = false;
  /** Set by whatever ended the connection; `close` falls back to relayed / closed. */
  let outcome: Outcome | undefined;
  let peekTimer: NodeJS.Timeout | undefined;
  /** Gives back what the router's middlewares counted for this connection (inFlightConn). */
  let release: (() => void) | undefined;
  /** The backend server, picked once the route is known (health checks may have left none). */
  let upstream: Upstream | undefined;
  // An ECH-accepted connection's route names stay out of logs and the route channel
  // unless log.innerSni or log.echRoutes, and out of metric labels unless log.echRoutes.
  let hideInLogs = false;
  let hideInMetrics = false;
  const logRouter = () => (hideInLogs ? HIDDEN_ROUTE : routerName);
  const metricRouter = () => (hideInMetrics ? HIDDEN_ROUTE : routerName);
  // What the access line may show: the SNI (never an inner one unless log.innerSni) and the ECH verdict.
  const access = ctx.accessLog ? { client: clientIp(), sni: undefined as string | undefined, ech: 'none' as ConnData['ech'] } : undefined;

  const finish = (how: Outcome) => {
    if (finished) return;
    finished = true;
    try {
      const router = metricRouter();
      ctx.metrics.connections.inc({ entrypoint: ep, router, outcome: how });
      ctx.metrics.open.dec({ entrypoint: ep });
      if (backend) {
        ctx.metrics.bytes.inc({ entrypoint: ep, router, direction: 'in' }, socket.bytesRead);
        ctx.metrics.bytes.inc({ entrypoint: ep, router, direction: 'out' }, socket.bytesWritten);
        ctx.metrics.duration.observe({ entrypoint: ep, router }, (performance.now() - started) / 1000);
      }
      if (access) {
        ctx.log.info(
          { entrypoint: ep, router: logRouter(), outcome: how, ...access, bytesIn: socket.bytesRead, bytesOut: socket.bytesWritten, ms: Math.round(performance.now() - started) },
          'access',
        );
      }
    } finally {
      onDone();
    }
  };

  // Rule for this whole file and every handler: an exception while handling one
  // connection ends that connection, is counted and logged (rate limited), and
  // never reaches the process. Every callback registered goes through guard().
  const onHandlerError = (e: unknown) => {
    try {
      ctx.metrics.handlerErrors.inc({ listener: 'proxy' });
      ctx.limiter.log(ctx.log, 'warn', { entrypoint: ep, err: errField(e) }, 'internal error handling a connection; that connection was closed');
    } catch {
      // Counting or logging failed too: closing the connection is all that is left.
    }
    outcome = 'handler_error';
    clearTimeout(peekTimer);
    backend?.destroy();
    socket.destroy();
    // Normally `close` finishes; when the error came from the close handler itself, finish here.
    if (socket.closed) finish('handler_error');
  };
  const guard =
    <A extends unknown[]>(fn: (...a: A) => void) =>
    (...a: A): void => {
      try {
        fn(...a);
      } catch (e) {
        onHandlerError(e);
      }
    };

  ctx.metrics.open.inc({ entrypoint: ep });
  socket.on(
    'error',
    guard(() => {
      backend?.destroy();
      socket.destroy();
    }),
  );
  socket.once(
    'close',
    guard(() => {
      backend?.destroy();
      release?.();
      finish(outcome ?? (connected ? 'relayed' : 'closed'));
    }),
  );

  const countAlert = (name: AlertName | undefined) => {
    if (name) ctx.metrics.alertsSent.inc({ entrypoint: ep, alert: name });
  };
  const fail = (reason: PeekFailure, alert?: Uint8Array, alertName?: AlertName) => {
    ctx.metrics.peekFailures.inc({ entrypoint: ep, reason });
    const how: Outcome = reason === 'tls_handshake' ? 'tls_alert' : reason;
    if (alert && socket.writable) {
      countAlert(alertName ?? trailingAlert(alert));
      // Send the alert, then close. Keep draining input so the kernel does
      // not answer unread bytes with a RST that could overtake the alert.
      socket.end(alert);
      socket.resume();
      setTimeout(() => socket.destroy(), 2000).unref();
      finish(how);
    } else {
      socket.destroy();
      finish(how);
    }
  };

  // Not a decoding problem but a bug: count it as one, answer internal_error (RFC 8446 §6.2).
  const internalFail = (e: unknown) => {
    outcome = 'handler_error';
    try {
      ctx.metrics.handlerErrors.inc({ listener: 'proxy' });
      ctx.limiter.log(ctx.log, 'warn', { entrypoint: ep, err: errField(e) }, 'internal error handling a connection; that connection was closed');
    } finally {
      if (socket.writable) {
        countAlert('internal_error');
        socket.end(encodeAlertRecord('internal_error'));
        setTimeout(() => socket.destroy(), 2000).unref();
      } else socket.destroy();
    }
  };

  /** `answer`: who completes the TLS handshake when echgate does (no value: the backend, or not decided). */
  const publishRoute = (router: string, conn: ConnData, cls: Classified | undefined, answer?: Answer) => {
    if (!routeChannel.hasSubscribers) return;
    // A subscriber that throws is re-thrown by node on process.nextTick, out
    // of reach of any try/catch here: subscribers are in-process code and must not throw.
    routeChannel.publish({
      entrypoint: ep,
      router,
      sni: cls?.ech === 'accepted' && !ctx.logInnerSni ? undefined : conn.sni,
      ech: conn.ech,
      echReason: cls?.echReason,
      tls: conn.tls,
      ...(answer ? { answer } : {}),
    });
  };

  const conn = (route: Route<RouteTarget> | undefined, cls: Classified | undefined, peeked: Uint8Array, rest: Uint8Array): Conn => ({
    ctx,
    socket,
    cls,
    peeked,
    rest,
    route,
    logRouter,
    guard,
    fail,
    finish,
    handshakeFailed(reason, alert) {
      ctx.metrics.peekFailures.inc({ entrypoint: ep, reason });
      countAlert(alert);
      outcome ??= reason === 'handshake_timeout' ? 'handshake_timeout' : 'tls_alert';
    },
    internalError(e, msg) {
      ctx.metrics.handlerErrors.inc({ listener: 'proxy' });
      ctx.limiter.log(ctx.log, 'warn', { entrypoint: ep, router: logRouter(), err: errField(e) }, msg);
    },
    connect(client, opts, onConnect) {
      if (!route) throw new Error('connect() without a route');
      const up = upstream ?? route.target.picker.pick();
      const relay = new Relay(client, up.server, opts);
      const b = relay.backend;
      backend = b;
      if (up.proxyProtocol) {
        // Written now, queued by the socket until it connects: ahead of any byte a handler sends.
        const addrs = { srcIp: clientIp(), srcPort: socket.remotePort ?? 0, dstIp: normalizeIp(socket.localAddress), dstPort: socket.localPort ?? 0 };
        b.write(up.proxyProtocol === 1 ? encodeProxyV1(addrs) : encodeProxyV2(addrs));
      }
      const service = hideInMetrics ? HIDDEN_ROUTE : up.service;
      // Both dropped once used: the error listener below lives as long as the backend and keeps this
      // scope alive, and the handler's callback holds the ClientHello and its decoded form (idle RSS).
      let connectTimer: NodeJS.Timeout | undefined = setTimeout(
        guard(() => b.destroy(new Error('connect timeout'))),
        up.connectTimeoutMs,
      );
      let afterConnect: ((r: Relay) => void) | undefined = onConnect;
      b.once(
        'error',
        guard((err: Error) => {
          clearTimeout(connectTimer);
          connectTimer = undefined;
          afterConnect = undefined;
          outcome ??= 'backend_error';
          if (b.connecting || !connected) {
            ctx.metrics.backendErrors.inc({ service, kind: 'connect' });
            // node's message names the address ("connect ECONNREFUSED host:port"): hidden routes get the code only.
            const where = hideInLogs
              ? { router: HIDDEN_ROUTE, err: (err as NodeJS.ErrnoException).code ?? 'error' }
              : { router: route.name, service: up.service, server: `${up.server.host}:${up.server.port}`, err: err.message };
            ctx.limiter.log(ctx.log, 'warn', { entrypoint: ep, ...where }, 'backend connect failed');
          } else {
            ctx.metrics.backendErrors.inc({ service, kind: 'stream' });
          }
          socket.destroy();
        }),
      );
      b.once(
        'connect',
        guard(() => {
          connected = true;
          clearTimeout(connectTimer);
          connectTimer = undefined;
          const then = afterConnect;
          afterConnect = undefined;
          then?.(relay);
          b.once(
            'close',
            guard(() => client.destroy()),
          );
          // One idle timer on the client: reads from it and writes to it both count as activity.
          client.setTimeout(
            ctx.ep.idleTimeoutMs,
            guard(() => {
              outcome ??= 'idle_timeout';
              client.destroy();
            }),
          );
        }),
      );
      return relay;
    },
  });

  /** Routed: decide the handler once, say so on the route channel, start it. */
  const dispatch = (route: Route<RouteTarget>, data: ConnData, cls: Classified | undefined, peeked: Uint8Array, rest: Uint8Array) => {
    routerName = route.name;
    if (data.ech === 'accepted') {
      hideInMetrics = !ctx.logEchRoutes;
      hideInLogs = !ctx.logEchRoutes && !ctx.logInnerSni;
    }
    // Traefik's TCP middlewares run once the router is chosen; a refused connection is closed, nothing sent.
    const gate = admit(ctx, route.target, clientIp, logRouter());
    if (!gate.ok) {
      outcome = 'refused_by_middleware';
      return void socket.destroy();
    }
    release = gate.release;
    upstream = route.target.picker.pick();
    if (upstream.unavailable) {
      // Health checks took every server out (src/proxy/health.ts): fail fast rather than try a dead one.
      outcome = 'backend_error';
      ctx.metrics.backendErrors.inc({ service: hideInMetrics ? HIDDEN_ROUTE : upstream.service, kind: 'unavailable' });
      ctx.limiter.log(ctx.log, 'warn', { entrypoint: ep, router: logRouter(), ...(hideInLogs ? {} : { service: upstream.service }) }, 'no healthy server in the service: client closed');
      return void socket.destroy();
    }
    let h = chooseHandler(ctx, route, cls, peeked, rest, logRouter);
    // A TLS preamble protocol (proxy/preamble.ts): a backend that gets the client's ClientHello must be asked for TLS first.
    if (ctx.ep.protocol && cls && !('refuse' in h) && !h.answer) h = withBackendPreamble(preambleProtocol(ctx.ep.protocol), h);
    publishRoute(logRouter(), data, cls, h.answer);
    if ('refuse' in h) return h.internal !== undefined ? internalFail(h.internal) : fail(h.refuse, h.alert);
    socket.pause();
    h.start(conn(route, cls, peeked, rest));
  };

  // Server-speaks-first entrypoints: no router needs a ClientHello, so never wait for one.
  if (ctx.table.immediate) {
    guard(() => {
      const data = connData('', [], false, 'none');
      const route = ctx.table.match(data);
      if (!route) return fail('no_route');
      dispatch(route, data, undefined, EMPTY, EMPTY);
    })();
    return;
  }

  // Dropped once the hello is routed: this scope lives as long as the connection (its close
  // listener), and the assembler holds the peeked bytes, which the handler keeps only as long as it needs them.
  let asm: ClientHelloAssembler | undefined = new ClientHelloAssembler(ctx.ep.maxClientHelloBytes);
  let sniffed = false;
  peekTimer = setTimeout(
    guard(() => {
      socket.removeListener('data', onData);
      if (pre && !pre.done) pre.timedOut();
      else if (pre?.tlsAnswered && !sniffed) pre.timedOut();
      else if (socket.bytesRead === 0) {
        ctx.limiter.log(
          ctx.log,
          'info',
          { entrypoint: ep, client: clientIp() },
          'the client sent nothing before clientHelloTimeout: a server-first protocol? (MySQL/MariaDB, SMTP, FTP clients wait for the server greeting and never send a ClientHello first; route them on an entrypoint whose routers are all HostSNI(`*`) without tls, see docs/databases.md)',
        );
      }
      fail('timeout');
    }),
    ctx.ep.clientHelloTimeoutMs,
  );
  // Cleared and dropped once the hello is in (a cleared Timeout would stay referenced for the connection's life).
  const stopPeekTimer = () => {
    clearTimeout(peekTimer);
    peekTimer = undefined;
  };

  const routeNonTls = (reason: 'not_tls' | 'sslv2_hello' | 'tls_required', refusal?: Uint8Array) => {
    // After a preamble's "go ahead with TLS" only a ClientHello may come.
    if (pre?.tlsAnswered) return pre.notTls();
    const data = connData('', [], false, 'none');
    const route = ctx.table.match(data);
    if (!route) return fail(reason, refusal);
    const peeked = asm?.bytes() ?? EMPTY;
    asm = undefined;
    dispatch(route, data, undefined, peeked, EMPTY);
  };

  const peek = (input: Buffer) => {
    const asmb = asm;
    if (!asmb) return;
    let chunk = input;
    if (pre && !pre.done) {
      const tlsBytes = pre.push(chunk);
      if (!tlsBytes) return;
      chunk = Buffer.from(tlsBytes.buffer, tlsBytes.byteOffset, tlsBytes.length);
    }
    let hello: ReturnType<ClientHelloAssembler['push']>;
    try {
      if (!sniffed) {
        const head = asmb.buffered === 0 ? chunk : Buffer.concat([asmb.bytes(), chunk]);
        const kind = sniffTls(head);
        if (kind === 'need_more') {
          asmb.append(chunk);
          return;
        }
        sniffed = true;
        if (kind !== 'tls') {
          stopPeekTimer();
          socket.removeListener('data', onData);
          asmb.append(chunk);
          return routeNonTls(kind === 'sslv2_hello' ? 'sslv2_hello' : 'not_tls');
        }
      }
      hello = asmb.push(chunk);
    } catch (e) {
      stopPeekTimer();
      socket.removeListener('data', onData);
      if (!isEchgateError(e)) return internalFail(e);
      if (e.code === 'ERR_NOT_TLS') return routeNonTls('not_tls');
      const reason = e.code === 'ERR_PEEK_TOO_LARGE' ? 'too_large' : e.code === 'ERR_LIMIT' ? 'too_many_records' : 'malformed';
      return fail(reason, encodeAlertRecord(alertFor(e)));
    }
    if (!hello) return;
    stopPeekTimer();
    socket.removeListener('data', onData);
    let cls: Classified;
    try {
      const ch = decodeClientHelloMessage(hello.message);
      cls = ctx.classify(ch, routingView(ch), ep);
    } catch (e) {
      if (!isEchgateError(e)) return internalFail(e);
      return fail('malformed', encodeAlertRecord(alertFor(e)));
    }
    const data = connData(cls.sni, cls.alpn, true, cls.ech);
    if (access) {
      access.ech = cls.ech;
      access.sni = cls.ech === 'accepted' && !ctx.logInnerSni ? undefined : cls.sni;
    }
    const peeked = asmb.bytes();
    asm = undefined;
    const rest = peeked.subarray(hello.consumed);
    const route = ctx.table.match(data);
    if (route) {
      if (cls.sni === '') ctx.limiter.log(ctx.log, 'info', { entrypoint: ep, client: clientIp(), router: route.name }, `${NO_SNI}: routed by a rule that needs no name (HostSNI(\`*\`))`);
      return dispatch(route, data, cls, peeked, rest);
    }
    if (cls.publicName) {
      // RFC 9849 §6.1.6/§7.1: no router for the public name of a rejected ECH hello; echgate answers
      // for it itself, so the client learns the current keys (retry_configs). See proxy/public-name.ts.
      const h = publicNameHandler(ctx, cls);
      if (h) {
        publishRoute('-', data, cls, h.answer);
        return h.start(conn(undefined, cls, peeked, rest));
      }
      ctx.limiter.log(ctx.log, 'warn', { entrypoint: ep, sni: cls.sni }, 'ECH rejected for a public name that no certificate covers: the client cannot receive retry_configs');
    }
    const shownSni = cls.ech === 'accepted' && !ctx.logInnerSni ? '(hidden: ECH inner SNI)' : cls.sni;
    if (cls.sni === '') ctx.limiter.log(ctx.log, 'info', { entrypoint: ep, client: clientIp() }, `no router for ClientHello: ${NO_SNI}; refused with unrecognized_name (a proxy that answered with a default certificate instead would leave the client reporting an unknown CA or a name mismatch)`);
    else ctx.limiter.log(ctx.log, 'info', { entrypoint: ep, client: clientIp(), sni: shownSni, ech: cls.ech }, 'no router for SNI');
    // RFC 6066 §3: a server that does not recognise the name may send a fatal unrecognized_name alert.
    return fail(cls.sni === '' ? 'no_sni_no_route' : 'no_route', encodeAlertRecord('unrecognized_name'));
  };
  const onData = guard(peek);
  // Entrypoint `protocol` (proxy/preamble.ts): the protocol's cleartext preamble comes before the ClientHello.
  const pre = ctx.ep.protocol
    ? new ClientPreamble(preambleProtocol(ctx.ep.protocol), ctx, socket, {
        stopPeek() {
          stopPeekTimer();
          socket.removeListener('data', onData);
        },
        fail: (reason, reply) => fail(reason, reply),
        routePlain(bytes, refusal) {
          asm?.append(bytes);
          routeNonTls('tls_required', refusal);
        },
        setOutcome(o) {
          outcome = o;
        },
        clientIp,
      })
    : undefined;

  socket.on('data', onData);
  socket.once(
    'end',
    guard(() => {
      if (!backend && !finished && outcome === undefined) {
        stopPeekTimer();
        fail('closed_early');
      }
    }),
  );
}
