/**
 * What an entrypoint's connections share: the routing table, the pickers,
 * metrics, the logger, and the ClientHello classifier (ECH decryption plugs
 * in there). Swapped whole on reload; connections keep the one they started with.
 */
import type { Logger } from 'pino';
import type { EntryPointConfig, RouterConfig } from '../config/types.js';
import type { ConnData } from '../routing/ast.js';
import type { RoutingTable } from '../routing/table.js';
import type { LoadedCertificate } from '../tls13/certs.js';
import type { ClientHello, RoutingView } from '../wire/tls/client-hello.js';
import type { LogLimiter } from '../observe/log-limit.js';
import type { DeadlineList, IdleSweep } from './deadlines.js';
import type { ConnectionSeries, Metrics } from './metrics.js';
import type { CompiledMiddleware } from './middlewares.js';
import type { PreambleTarget } from './preamble.js';
import type { Picker } from './services.js';

export interface RouteTarget {
  router: RouterConfig;
  picker: Picker;
  /** The router's TCP middlewares, in order (proxy/middlewares.ts). */
  middlewares?: CompiledMiddleware[];
}

/** The routing view of a ClientHello, after ECH (if any) was handled. */
export interface Classified {
  sni: string;
  alpn: string[];
  ech: ConnData['ech'];
  /** The hello a terminating router negotiates with: the inner one when ECH was accepted. */
  hello: ClientHello;
  /** Whether the client sent an outer ECH extension (real or GREASE). */
  echOffered: boolean;
  /**
   * Set when the ECH extension was there but could not be used: grease (a config_id no key has), stale (the
   * config_id of a recently retired key), decrypt_failed (a key has the id but did not open it); the same as
   * echgate_ech_total's result (`rejected` for decrypt_failed) and the access line's `ech`.
   */
  echReason?: 'grease' | 'stale' | 'decrypt_failed' | 'malformed' | 'no_keys';
  /** With accepted ECH: opens the second ClientHelloOuter after a HelloRetryRequest (RFC 9849 §7.1.1). */
  decryptSecond?: (outer: ClientHello) => ClientHello;
  /**
   * With rejected ECH: the outer SNI is the public_name of a loaded ECH key,
   * so echgate may answer for it itself (RFC 9849 §6.1.6, §7.1) when no router does.
   */
  publicName?: boolean;
  /** ESNI (draft-ietf-tls-esni-02) decrypted the name: a terminating router echoes this nonce in EncryptedExtensions (§5.2). */
  esni?: { nonce: Uint8Array };
}

export type Classifier = (hello: ClientHello, view: RoutingView, entrypoint: string) => Classified;

export interface EntryContext {
  ep: EntryPointConfig;
  table: RoutingTable<RouteTarget>;
  metrics: Metrics;
  log: Logger;
  /** Rate limit for per-connection log lines. */
  limiter: LogLimiter;
  logInnerSni: boolean;
  /** log.echRoutes: name the router, service and backend of ECH-accepted connections in logs and metrics. */
  logEchRoutes: boolean;
  /** One `access` log line per connection when it ends (log.access). */
  accessLog: boolean;
  classify: Classifier;
  /** Certificate by server name, for terminating routers (the default one when none names it). */
  /** With the client's signature_algorithms (TLS 1.3 engine): among those covering the name, one the client can verify (tls13/certs.ts). */
  certificate: (sni: string | undefined, sigAlgs?: readonly number[]) => LoadedCertificate | undefined;
  /** The ECHConfigList sent as retry_configs when ECH was offered but not accepted. */
  retryConfigs: () => Uint8Array | undefined;
  /** Entrypoint `protocol`: the servers a request that names none is forwarded to (proxy/preamble.ts). */
  preambleTargets?: PreambleTarget[];
  /**
   * What every connection of the entrypoint looks up by name or duration, looked up once, by the
   * first connection (proxy/connection.ts): not four Map lookups per connection.
   */
  perConn?: PerEntrypoint;
}

/** The entrypoint's metric series, ClientHello deadline list and idle sweep (proxy/connection.ts fills it). */
export interface PerEntrypoint {
  series: ConnectionSeries;
  peek: DeadlineList;
  idle: IdleSweep | undefined;
}

/** Without a keystore, an ECH extension cannot be opened: route on the outer hello. */
// Two literals, not one with `...(outer ? { echReason } : {})`: that spread is a CopyDataProperties call
// per connection (docs/benchmarks.md, "Passthrough cost, ninth pass").
export const plainClassifier: Classifier = (hello, s) =>
  s.ech?.type === 'outer'
    ? { sni: s.sni ?? '', alpn: s.alpn, ech: 'rejected', hello, echOffered: true, echReason: 'no_keys' }
    : { sni: s.sni ?? '', alpn: s.alpn, ech: 'none', hello, echOffered: false };
