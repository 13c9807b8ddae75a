/**
 * One client connection: peek the ClientHello, classify (ECH), route,
 * connect, replay, pipe. This file owns the per-connection data path; see
 * docs/architecture.md for the picture.
 */
import { channel } from 'node:diagnostics_channel';
import net from 'node:net';
import type { TLSSocket } from 'node:tls';
import { DEFAULT_TLS_OPTIONS } from '../config/tls-options.js';
import { isEchgateError } from '../errors.js';
import type { ConnData } from '../routing/ast.js';
import { normalizeIp } from '../routing/ip.js';
import type { Route } from '../routing/table.js';
import { encodeProxyV1, encodeProxyV2 } from '../wire/proxy/proxy-protocol.js';
import { alertFor, encodeAlertRecord } from '../wire/tls/alert.js';
import { decodeClientHelloMessage, routingView } from '../wire/tls/client-hello.js';
import { ClientHelloAssembler, sniffTls } from '../wire/tls/record.js';
import { concat } from '../bytes/util.js';
import { certificateCovers } from './certificates.js';
import { answerPublicName } from './public-name.js';
import { innerHelloRecords, SplitClientStream } from './split.js';
import { chooseVersion, restrictSuites, startTls12 } from './tls12.js';
import type { Classified, EntryContext, RouteTarget } from './context.js';
import { connectRelayed, relayClientToBackend } from './relay.js';
import { relayTerminated, startTermination, type Termination } from './terminate.js';

/** Published once per routing decision; tests and operators subscribe. Inner SNI is included only when log.innerSni is on. */
export const routeChannel = channel('echgate:route');

export type PeekFailure =
  | 'timeout'
  | 'too_large'
  | 'too_many_records'
  | 'not_tls'
  | 'sslv2_hello'
  | 'malformed'
  | 'closed_early'
  | 'no_route'
  | 'no_sni_no_route'
  | 'tls_handshake'
  | 'handshake_timeout';

/**
 * How a connection ended: the `outcome` label of echgate_connections_total and
 * the access line (docs/configuration.md lists them). Peek failures other than
 * tls_handshake end the connection with their reason as the outcome.
 */
export type Outcome =
  | 'relayed'
  | 'idle_timeout'
  | 'backend_error'
  | 'tls_alert'
  | 'closed'
  | 'over_limit'
  | 'handler_error'
  /** ECH was rejected for a public name no router takes; echgate answered with retry_configs itself (proxy/public-name.ts). */
  | 'public_name'
  | Exclude<PeekFailure, 'tls_handshake'>;

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

  // Rule for this whole file: an exception while handling one connection ends
  // that connection, is counted and logged (rate limited), and never reaches
  // the process. Every callback registered below goes through guard().
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
      finish(outcome ?? (connected ? 'relayed' : 'closed'));
    }),
  );

  const fail = (reason: PeekFailure, alert?: Uint8Array) => {
    ctx.metrics.peekFailures.inc({ entrypoint: ep, reason });
    const how: Outcome = reason === 'tls_handshake' ? 'tls_alert' : reason;
    if (alert && socket.writable) {
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

  /** `answer`: who completes the TLS handshake when echgate does (no value: the backend, or not decided yet). */
  const publishRoute = (router: string, conn: ConnData, cls: Classified | undefined, answer?: 'public_name' | 'tls1.3' | 'tls1.2') => {
    if (!routeChannel.hasSubscribers) return;
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

  const connect = (route: Route<RouteTarget>, replay: Uint8Array | undefined, conn: ConnData, cls?: Classified, helloBytes = 0) => {
    routerName = route.name;
    if (conn.ech === 'accepted') {
      hideInMetrics = !ctx.logEchRoutes;
      hideInLogs = !ctx.logEchRoutes && !ctx.logInnerSni;
    }
    // A subscriber that throws is re-thrown by node on process.nextTick, out
    // of reach of any try/catch here: subscribers are in-process code and must not throw.
    const tlsCfg = route.target.router.tls;
    let term: Termination | undefined;
    let split: SplitClientStream | undefined;
    /** The plaintext side of a TLS 1.2 termination (node:tls); the client socket for every other path. */
    let client: net.Socket = socket;
    let tls12: TLSSocket | undefined;
    if (tlsCfg && !tlsCfg.passthrough && cls) {
      const opts = tlsCfg.options ?? DEFAULT_TLS_OPTIONS;
      let version: ReturnType<typeof chooseVersion>;
      try {
        version = chooseVersion(cls.hello, cls.ech === 'accepted', opts);
      } catch (e) {
        publishRoute(logRouter(), conn, cls);
        if (!isEchgateError(e)) return internalFail(e);
        return fail('tls_handshake', encodeAlertRecord(alertFor(e)));
      }
      publishRoute(logRouter(), conn, cls, version === 'protocol_version' ? undefined : version);
      // RFC 8446 §4.2.1: nothing both sides accept → protocol_version.
      if (version === 'protocol_version') return fail('tls_handshake', encodeAlertRecord('protocol_version'));
      const cert = ctx.certificate(cls.sni || undefined);
      // sniStrict (Traefik): no default certificate for a name no certificate covers.
      if (opts.sniStrict && !(cert && certificateCovers(cert.names, cls.sni))) return fail('tls_handshake', encodeAlertRecord('unrecognized_name'));
      const alpn = tlsCfg.alpn ?? opts.alpnProtocols;
      if (version === 'tls1.2') {
        if (!cert) return fail('tls_handshake', encodeAlertRecord('unrecognized_name'));
        tls12 = startTls12(
          socket,
          replay ?? new Uint8Array(0),
          cert,
          opts,
          alpn,
          ctx.ep.clientHelloTimeoutMs,
          guard(() => {
            ctx.metrics.peekFailures.inc({ entrypoint: ep, reason: 'tls_handshake' });
            outcome ??= 'tls_alert';
            backend?.destroy();
          }),
        );
        if (!tls12) return fail('tls_handshake', encodeAlertRecord('internal_error'));
        client = tls12;
      } else {
        try {
          term = startTermination(ctx, opts.suites13 ? { ...cls, hello: restrictSuites(cls.hello, opts.suites13) } : cls, alpn, opts.groups);
        } catch (e) {
          // Never let an unexpected error take the process down: end this connection and say why.
          ctx.metrics.handlerErrors.inc({ listener: 'proxy' });
          ctx.limiter.log(ctx.log, 'warn', { entrypoint: ep, router: logRouter(), err: errField(e) }, 'internal error starting TLS');
          return fail('tls_handshake', encodeAlertRecord('internal_error'));
        }
        if (term.first.error !== undefined) {
          if (!isEchgateError(term.first.error)) {
            ctx.metrics.handlerErrors.inc({ listener: 'proxy' });
            ctx.limiter.log(ctx.log, 'warn', { entrypoint: ep, router: logRouter(), err: errField(term.first.error) }, 'internal error starting TLS');
          }
          return fail('tls_handshake', term.first.send.length ? concat(...term.first.send) : undefined);
        }
        for (const r of term.first.send) socket.write(r);
        replay = replay?.subarray(helloBytes);
      }
    } else {
      publishRoute(logRouter(), conn, cls);
      if (conn.ech === 'accepted' && tlsCfg?.echSplit && cls && !ctx.ep.echBackend) {
        // Split mode (RFC 9849 §3.1, §7.1): the backend server gets ClientHelloInner in place of
        // the outer hello, then the client's bytes unchanged but for a second hello after a
        // HelloRetryRequest; the backend server confirms ECH itself.
        replay = concat(innerHelloRecords(cls.hello), replay?.subarray(helloBytes) ?? new Uint8Array(0));
        if (cls.decryptSecond) split = new SplitClientStream(cls.decryptSecond, ctx.ep.maxClientHelloBytes);
      } else if (conn.ech === 'accepted' && !ctx.ep.echBackend) {
        // A passthrough backend cannot produce the ECH accept confirmation.
        ctx.metrics.ech.inc({ entrypoint: ep, result: 'accepted_on_passthrough' });
        ctx.limiter.log(ctx.log, 'warn', { entrypoint: ep, router: logRouter() }, 'ECH connection routed to a passthrough router; the backend cannot complete ECH');
      }
    }
    const up = route.target.picker.pick();
    if (up.unavailable) {
      // Health checks took every server out (src/proxy/health.ts): fail fast rather than try a dead one.
      outcome ??= 'backend_error';
      ctx.metrics.backendErrors.inc({ service: hideInMetrics ? HIDDEN_ROUTE : up.service, kind: 'unavailable' });
      ctx.limiter.log(ctx.log, 'warn', { entrypoint: ep, router: hideInLogs ? HIDDEN_ROUTE : route.name, ...(hideInLogs ? {} : { service: up.service }) }, 'no healthy server in the service: client closed');
      return void socket.destroy();
    }
    socket.pause();
    const b = term
      ? net.connect({ host: up.server.host, port: up.server.port, allowHalfOpen: true, noDelay: true })
      : connectRelayed(up.server, client);
    backend = b;
    if (term) {
      // The handshake goes on while the backend connects; plaintext waits in the socket's buffer.
      relayTerminated(
        socket,
        b,
        term.engine,
        replay ?? new Uint8Array(0),
        ctx.ep.handshakeTimeoutMs,
        guard((records: Uint8Array[], err: unknown) => {
          const timedOut = isEchgateError(err) && err.code === 'ERR_HANDSHAKE_TIMEOUT';
          ctx.metrics.peekFailures.inc({ entrypoint: ep, reason: timedOut ? 'handshake_timeout' : 'tls_handshake' });
          outcome ??= timedOut ? 'handshake_timeout' : 'tls_alert';
          if (!isEchgateError(err)) {
            ctx.metrics.handlerErrors.inc({ listener: 'proxy' });
            ctx.limiter.log(ctx.log, 'warn', { entrypoint: ep, router: logRouter(), err: errField(err) }, 'internal error in TLS termination');
          }
          if (records.length) socket.end(concat(...records));
          else socket.destroy();
          b.destroy();
        }),
      );
    }
    const service = hideInMetrics ? HIDDEN_ROUTE : up.service;
    const connectTimer = setTimeout(
      guard(() => b.destroy(new Error('connect timeout'))),
      up.connectTimeoutMs,
    );
    b.once(
      'error',
      guard((err: Error) => {
        clearTimeout(connectTimer);
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
        if (up.proxyProtocol) {
          const addrs = {
            srcIp: clientIp(),
            srcPort: socket.remotePort ?? 0,
            dstIp: normalizeIp(socket.localAddress),
            dstPort: socket.localPort ?? 0,
          };
          b.write(up.proxyProtocol === 1 ? encodeProxyV1(addrs) : encodeProxyV2(addrs));
        }
        if (tls12) relayClientToBackend(tls12, b);
        else if (!term) {
          if (replay && replay.length > 0) b.write(replay);
          relayClientToBackend(
            socket,
            b,
            split,
            guard((e: unknown) => {
              ctx.metrics.peekFailures.inc({ entrypoint: ep, reason: 'tls_handshake' });
              outcome ??= 'tls_alert';
              if (socket.writable) socket.end(encodeAlertRecord(alertFor(e)));
              b.destroy();
            }),
          );
        }
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
  };

  // Not a decoding problem but a bug: count it as one, answer internal_error (RFC 8446 §6.2).
  const internalFail = (e: unknown) => {
    outcome = 'handler_error';
    try {
      ctx.metrics.handlerErrors.inc({ listener: 'proxy' });
      ctx.limiter.log(ctx.log, 'warn', { entrypoint: ep, err: errField(e) }, 'internal error handling a connection; that connection was closed');
    } finally {
      if (socket.writable) {
        socket.end(encodeAlertRecord('internal_error'));
        setTimeout(() => socket.destroy(), 2000).unref();
      } else socket.destroy();
    }
  };

  // Server-speaks-first entrypoints: no router needs a ClientHello, so never wait for one.
  if (ctx.table.immediate) {
    guard(() => {
      const conn = connData('', [], false, 'none');
      const route = ctx.table.match(conn);
      if (!route) return fail('no_route');
      connect(route, undefined, conn);
    })();
    return;
  }

  const asm = new ClientHelloAssembler(ctx.ep.maxClientHelloBytes);
  let sniffed = false;
  const timer = setTimeout(
    guard(() => {
      socket.removeListener('data', onData);
      fail('timeout');
    }),
    ctx.ep.clientHelloTimeoutMs,
  );
  peekTimer = timer;

  const routeNonTls = (reason: 'not_tls' | 'sslv2_hello') => {
    const conn = connData('', [], false, 'none');
    const route = ctx.table.match(conn);
    if (!route) return fail(reason);
    connect(route, asm.bytes(), conn);
  };

  const peek = (chunk: Buffer) => {
    let hello: ReturnType<ClientHelloAssembler['push']>;
    try {
      if (!sniffed) {
        const head = asm.buffered === 0 ? chunk : Buffer.concat([asm.bytes(), chunk]);
        const kind = sniffTls(head);
        if (kind === 'need_more') {
          asm.append(chunk);
          return;
        }
        sniffed = true;
        if (kind !== 'tls') {
          clearTimeout(timer);
          socket.removeListener('data', onData);
          asm.append(chunk);
          return routeNonTls(kind === 'sslv2_hello' ? 'sslv2_hello' : 'not_tls');
        }
      }
      hello = asm.push(chunk);
    } catch (e) {
      clearTimeout(timer);
      socket.removeListener('data', onData);
      if (!isEchgateError(e)) return internalFail(e);
      if (e.code === 'ERR_NOT_TLS') return routeNonTls('not_tls');
      const reason = e.code === 'ERR_PEEK_TOO_LARGE' ? 'too_large' : e.code === 'ERR_LIMIT' ? 'too_many_records' : 'malformed';
      return fail(reason, encodeAlertRecord(alertFor(e)));
    }
    if (!hello) return;
    clearTimeout(timer);
    socket.removeListener('data', onData);
    let cls: Classified;
    try {
      const ch = decodeClientHelloMessage(hello.message);
      cls = ctx.classify(ch, routingView(ch), ep);
    } catch (e) {
      if (!isEchgateError(e)) return internalFail(e);
      return fail('malformed', encodeAlertRecord(alertFor(e)));
    }
    const conn = connData(cls.sni, cls.alpn, true, cls.ech);
    if (access) {
      access.ech = cls.ech;
      access.sni = cls.ech === 'accepted' && !ctx.logInnerSni ? undefined : cls.sni;
    }
    const route = ctx.table.match(conn);
    if (!route && cls.publicName) {
      // RFC 9849 §6.1.6/§7.1: no router for the public name of a rejected ECH hello; echgate answers
      // for it itself, so the client learns the current keys (retry_configs). See proxy/public-name.ts.
      publishRoute('-', conn, cls, 'public_name');
      const took = answerPublicName(ctx, socket, cls, asm.bytes().subarray(hello.consumed), (r) => {
        if (r === 'failed') ctx.metrics.peekFailures.inc({ entrypoint: ep, reason: 'tls_handshake' });
        finish(r === 'answered' ? 'public_name' : 'tls_alert');
      });
      if (took) return;
      ctx.limiter.log(ctx.log, 'warn', { entrypoint: ep, sni: cls.sni }, 'ECH rejected for a public name that no certificate covers: the client cannot receive retry_configs');
    }
    if (!route) {
      const shownSni = cls.ech === 'accepted' && !ctx.logInnerSni ? '(hidden: ECH inner SNI)' : cls.sni;
      if (cls.sni === '') ctx.limiter.log(ctx.log, 'info', { entrypoint: ep, client: clientIp() }, 'no router for ClientHello: the client sent no SNI');
      else ctx.limiter.log(ctx.log, 'info', { entrypoint: ep, client: clientIp(), sni: shownSni, ech: cls.ech }, 'no router for SNI');
      // RFC 6066 §3: a server that does not recognise the name may send a fatal unrecognized_name alert.
      return fail(cls.sni === '' ? 'no_sni_no_route' : 'no_route', encodeAlertRecord('unrecognized_name'));
    }
    connect(route, asm.bytes(), conn, cls, hello.consumed);
  };
  const onData = guard(peek);

  socket.on('data', onData);
  socket.once(
    'end',
    guard(() => {
      if (!backend && !finished) {
        clearTimeout(timer);
        fail('closed_early');
      }
    }),
  );
}
