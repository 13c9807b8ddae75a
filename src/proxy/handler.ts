/**
 * The handler interface: connection.ts peeks, classifies and routes, then
 * picks one Handler (passthrough, split, terminate on the TLS 1.3 engine,
 * TLS 1.2 on node:tls, the public-name answer) and starts it. From there the
 * handler owns the connection's bytes; what it may do to the connection as a
 * whole (end it with an outcome, count a failure, reach the backend) goes
 * through `Conn`, which keeps the outcome, metrics, logs and the privacy rules
 * in one place (connection.ts).
 */
import type net from 'node:net';
import type { AlertName } from '../errors.js';
import type { Route } from '../routing/table.js';
import type { Classified, EntryContext, RouteTarget } from './context.js';
import type { Relay, RelayOptions } from './relay.js';

/** Who completes the TLS handshake when echgate does: the `answer` of an echgate:route event. */
export type Answer = 'public_name' | 'tls1.3' | 'tls1.2';

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
  | 'handshake_timeout'
  /** Entrypoint `protocol`: a preamble the protocol does not allow (proxy/preamble.ts). */
  | 'preamble'
  /** Entrypoint `protocol`: a cleartext session and no router without `tls` to take it. */
  | 'tls_required';

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
  /** A TCP middleware of the chosen router (ipAllowList, inFlightConn) refused it; closed with nothing sent. */
  | 'refused_by_middleware'
  /** Entrypoint `protocol`: a request naming no server (PostgreSQL CancelRequest) was sent to every server of the entrypoint. */
  | 'cancel_forwarded'
  /**
   * The TLS session failed after its handshake had completed (a bad record, a KeyUpdate over the cap, a fatal
   * alert from the client): not a handshake failure, so not a peek failure either (audit s12 gap 3).
   */
  | 'tls_session_error'
  | Exclude<PeekFailure, 'tls_handshake'>;

/**
 * How a TLS side failed, for Conn.handshakeFailed: during the handshake (a peek failure, outcome tls_alert),
 * the handshake deadline (handshake_timeout), or after the handshake completed (`tls_session`: outcome
 * tls_session_error, no peek failure).
 */
export type TlsFailure = 'tls_handshake' | 'handshake_timeout' | 'tls_session';

export interface Handler {
  /** Set when echgate itself completes the TLS handshake. */
  readonly answer?: Answer;
  /** Take the connection over. Runs inside the connection's exception guard. */
  start(c: Conn): void;
  /**
   * The handler relays the client's bytes as they are through Conn.relayClient (a plain passthrough):
   * the connection then keeps its own 'data' listener on the client rather than swapping it.
   */
  readonly relaysClientAsIs?: boolean;
}

/** What a handler may do to its connection. */
export interface Conn {
  readonly ctx: EntryContext;
  readonly socket: net.Socket;
  /** The classified hello (absent on a server-first entrypoint or for non-TLS bytes). */
  readonly cls: Classified | undefined;
  /** Every byte read from the client so far (the ClientHello first); empty when nothing was peeked. */
  readonly peeked: Uint8Array;
  /** The client's bytes after the ClientHello. */
  readonly rest: Uint8Array;
  /** The router name as logs may show it (HIDDEN_ROUTE for a hidden ECH route). */
  logRouter(): string;
  /** The router name as metric labels may show it (HIDDEN_ROUTE for a hidden ECH route). */
  metricRouter(): string;
  // guard, handshakeFailed and internalError may be taken off this object and kept for the life of the
  // connection (proxy/terminate.ts does, so that it does not keep the hello): they must not use `this`.
  /** Wrap a callback: an exception ends this connection as handler_error, never the process. */
  guard<A extends unknown[]>(fn: (...a: A) => void): (...a: A) => void;
  /**
   * End the connection now with a peek failure, sending `alert` first when given. The alert sent is
   * counted by name (echgate_tls_alerts_sent_total): `alertName`, else read from a plaintext alert record.
   */
  fail(reason: PeekFailure, alert?: Uint8Array, alertName?: AlertName, why?: unknown): void;
  /**
   * The TLS side failed after the hello: counted as a peek failure unless `tls_session` (and `alert`, the one
   * we sent, by name); the outcome, unless one is set already. `why` (the error) gives the access line its
   * `reason`; `peerAlert` is the fatal alert the client sent, when that is what ended it.
   */
  handshakeFailed(reason: TlsFailure, alert?: AlertName, why?: unknown, peerAlert?: number): void;
  /** Count and log (rate limited) an unexpected exception; the caller ends the connection. */
  internalError(e: unknown, msg: string): void;
  /** The connection is over with this outcome (idempotent). */
  finish(outcome: Outcome): void;
  /**
   * Pick a server of the route and connect to it through a Relay to `client`
   * (the plaintext side). Connect timeout, backend errors, the PROXY protocol
   * header and the idle timeout are handled here; `onConnect` runs once the
   * backend is connected, after the PROXY header is written.
   */
  connect(client: net.Socket, opts: RelayOptions, onConnect: (r: Relay) => void): Relay;
  /**
   * Start relaying the client's bytes, as they are, to `r`'s backend (in place of r.readClient()):
   * through the connection's own listeners when the handler said relaysClientAsIs.
   */
  relayClient(r: Relay): void;
  readonly route: Route<RouteTarget> | undefined;
}
