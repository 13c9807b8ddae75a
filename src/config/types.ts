/** The validated, normalised configuration. Durations are milliseconds. */

export interface EntryPointConfig {
  name: string;
  host: string;
  port: number;
  clientHelloTimeoutMs: number;
  /** Terminated TLS: the handshake must complete (client Finished) this long after the ClientHello; 0 = no deadline. */
  handshakeTimeoutMs: number;
  maxClientHelloBytes: number;
  maxConnections: number;
  /** Open connections from one client address at most, checked at accept (proxy/gateway.ts); 0 = no cap (the default). */
  maxConnectionsPerIP: number;
  idleTimeoutMs: number;
  graceTimeoutMs: number;
  /**
   * ECH backend server (RFC 9849 §7.2, split mode): hellos here come from a
   * client-facing server and carry the inner ECH extension, which counts as
   * accepted ECH; an outer ECH extension is refused with illegal_parameter.
   */
  echBackend: boolean;
  /**
   * A protocol whose clients negotiate TLS in a cleartext preamble before the
   * ClientHello (src/proxy/preamble.ts, docs/databases.md); absent: the first bytes are TLS.
   */
  protocol?: PreambleProtocolName;
}

/** Entrypoint `protocol` values: one module each in src/proxy/protocols/. */
export const PREAMBLE_PROTOCOLS = ['postgres'] as const;
export type PreambleProtocolName = (typeof PREAMBLE_PROTOCOLS)[number];

export interface ServerConfig {
  host: string;
  port: number;
}

/**
 * Active health checks of a load balancer's servers (Traefik v3's TCP
 * healthCheck: interval, unhealthyInterval, timeout, port, send, expect; echgate
 * adds tls, unhealthyAfter and healthyAfter).
 */
export interface HealthCheckConfig {
  intervalMs: number;
  /** How often a server that is down is checked (default: intervalMs). */
  unhealthyIntervalMs: number;
  timeoutMs: number;
  /** Check this port instead of the server's. */
  port?: number;
  /** Written once connected (after the TLS handshake with tls). */
  send?: string;
  /** The check passes only when the reply contains this. */
  expect?: string;
  /** Complete a TLS handshake (certificate not verified: this checks liveness, not identity). */
  tls: boolean;
  /** Consecutive failed checks that take a server out of the rotation (echgate extension; Traefik: 1). */
  unhealthyAfter: number;
  /** Consecutive passed checks that bring it back (echgate extension; Traefik: 1). */
  healthyAfter: number;
}

export type ServiceConfig =
  | { kind: 'loadBalancer'; name: string; servers: ServerConfig[]; proxyProtocol: 0 | 1 | 2; connectTimeoutMs: number; healthCheck?: HealthCheckConfig }
  | { kind: 'weighted'; name: string; services: { name: string; weight: number }[] };

export interface RouterConfig {
  name: string;
  entryPoints: string[];
  rule: string;
  service: string;
  priority?: number;
  /** undefined: no TLS section (non-TLS router); otherwise passthrough or terminate. */
  tls?: {
    passthrough: boolean;
    alpn?: string[];
    /** Split mode (RFC 9849 §3.1): with passthrough, forward the decrypted ClientHelloInner to a backend that completes ECH. */
    echSplit?: boolean;
    /** Terminating routers: the TLS options (`tls.options: NAME`, else the set named `default`); absent with passthrough. */
    options?: TlsOptions;
  };
  requireECH: boolean;
  /** Traefik's TCP middlewares in the order the router lists them, applied once the router is chosen (proxy/middlewares.ts). */
  middlewares: TcpMiddlewareConfig[];
}

/** One entry of `tcp.middlewares`: the two TCP middlewares Traefik has. */
export type TcpMiddlewareConfig =
  /** Refuse (close) connections whose client address is in none of the ranges. */
  | { kind: 'ipAllowList'; name: string; sourceRange: string[] }
  /** Refuse (close) a connection when its client address already has `amount` open through this middleware. */
  | { kind: 'inFlightConn'; name: string; amount: number };

/** One named set of Traefik's `tls.options`, mapped to code points and OpenSSL names (config/tls-options.ts). */
export interface TlsOptions {
  name: string;
  /** TLS versions as code points: 0x0303 = TLS 1.2, 0x0304 = TLS 1.3. */
  minVersion: 0x0303 | 0x0304;
  maxVersion: 0x0303 | 0x0304;
  /** TLS 1.2 cipher suites as OpenSSL names, in preference order (node:tls `ciphers`); absent = OpenSSL's defaults. */
  ciphers12?: string[];
  /** TLS 1.3 cipher suites (code points) the engine may choose; absent = all it implements. */
  suites13?: number[];
  /** curvePreferences as NamedGroup code points, in preference order; absent = defaults. */
  groups?: number[];
  /** ALPN protocols, used when the router gives no `tls.alpn`. */
  alpnProtocols?: string[];
  /** Refuse (unrecognized_name) a client whose SNI no certificate covers, instead of serving the default certificate. */
  sniStrict: boolean;
}

export interface EchConfig {
  keysDir: string;
  trialDecrypt: boolean;
  /** Automatic rotation by `serve` (docs/ech.md "Automatic rotation"). */
  rotation?: RotationConfig;
  /** Where the keys live (absent: keysDir alone). ech.store.etcd: a fleet (docs/fleet.md); keysDir is then the local copy. */
  store?: import('./store.js').StoreConfig;
}

/** The settings of `echgate publish` / `keys rotate --publish`, as configuration. */
export interface PublishSettings {
  name: string;
  server: { host: string; port: number };
  zone: string;
  /** BIND key file of the TSIG key that signs the update. */
  tsigKey?: string;
  /** The record's TTL in seconds (default 300). */
  ttl: number;
  alpn?: string[];
  port?: number;
  /** DoH URL the record is read back from (required for rotation). */
  verifyDoh?: string;
  /** CA certificate (PEM file) for the DoH endpoint. */
  ca?: string;
  verifyTimeoutMs: number;
}

export interface RotationConfig {
  everyMs: number;
  graceMs: number;
  /** The public name to rotate (default: that of the first active key). */
  publicName?: string;
  /** `embedded`: the embedded DNS serves the key folder at query time; else an RFC 2136 update + DoH read-back. */
  publish: 'embedded' | PublishSettings;
}

export interface CertificateFiles {
  certFile: string;
  keyFile: string;
}

export interface DnsConfig {
  /** Plain DNS over UDP and TCP on one port. */
  listen?: { host: string; port: number };
  /** Limits of the plain DNS TCP listener; absent keys take the defaults of src/dns/dns-server.ts. */
  tcp?: { maxConnections?: number; maxConnectionsPerIP?: number; idleTimeoutMs?: number; queryTimeoutMs?: number };
  /** DNS over HTTPS (RFC 8484); absent limits take the defaults of src/dns/doh-server.ts. */
  doh?: {
    host: string;
    port: number;
    certFile: string;
    keyFile: string;
    path: string;
    limits?: { maxConnections?: number; maxConnectionsPerIP?: number; readTimeoutMs?: number; idleTimeoutMs?: number; maxConcurrentStreams?: number; maxHeaderListSize?: number };
  };
  ttl: number;
  names: Record<string, { a?: string[]; aaaa?: string[]; https?: { priority?: number; alpn?: string[]; port?: number; ech?: boolean; alias?: string } }>;
  /** The apex this server is authoritative for (SOA, NS, REFUSED outside it). */
  zone?: string;
  nameservers?: string[];
}

/** `providers.etcd`: Traefik's KV layout in etcd v3, watched (docs/configuration.md, providers.etcd). */
export interface EtcdProviderConfig {
  /** Client URLs with their scheme (http:// or https://). */
  endpoints: string[];
  /** Keys are read under `${rootKey}/` (Traefik's default: traefik). */
  rootKey: string;
  /** PEM files: the CA that signs the etcd servers' certificates, and a client certificate and key. */
  tls?: { ca?: string; cert?: string; key?: string };
  /** etcd's user authentication; the password is read from a file. */
  auth?: { username: string; passwordFile: string };
}

/** metrics.dashboard: off unless given. */
export interface DashboardConfig {
  /** A file holding one `user:password` line: the page and /api/ ask for HTTP basic auth. */
  basicAuthFile?: string;
  /** false (the default): answer only clients on a loopback address. */
  remote: boolean;
}

export interface Config {
  entryPoints: Map<string, EntryPointConfig>;
  routers: RouterConfig[];
  services: Map<string, ServiceConfig>;
  /** tcp.middlewares by name. */
  tcpMiddlewares: Map<string, TcpMiddlewareConfig>;
  /** The metrics listener; `dashboard` adds the read-only web page and /api/ there (cli/dashboard.ts). */
  /** `maxConnectionsPerIP`: the listener's per-client cap (absent: METRICS_LISTENER_LIMITS in proxy/metrics.ts). */
  metrics?: { host: string; port: number; maxConnectionsPerIP?: number; dashboard?: DashboardConfig };
  /**
   * access: one log line per connection when it ends. echRoutes: show the
   * router, service and backend of ECH-accepted connections (they may name the hidden host).
   */
  log: { level: string; innerSni: boolean; access: boolean; echRoutes: boolean };
  ech?: EchConfig;
  /** Traefik's tls.options by name; always has `default`. */
  tlsOptions: Map<string, TlsOptions>;
  /** Certificates for terminating routers (Traefik's tls.certificates and the default store's defaultCertificate first). */
  certificates: CertificateFiles[];
  /** The embedded authoritative DNS served over DoH (RFC 8484). */
  dns?: DnsConfig;
  /**
   * Processes that accept connections (node:cluster workers sharing the
   * listening sockets). 1 (the default): one process, no cluster. `auto` in the
   * file becomes os.availableParallelism() at load.
   */
  workers: number;
  /** Dynamic configuration sources besides the file (Kubernetes manifests are expanded before validation). */
  providers?: { etcd?: EtcdProviderConfig };
  /** Non-fatal findings (unknown keys, ...) to log at load. */
  warnings: string[];
}

export const DEFAULTS = {
  clientHelloTimeoutMs: 10_000,
  handshakeTimeoutMs: 10_000,
  maxClientHelloBytes: 65_536,
  maxConnections: 10_000,
  idleTimeoutMs: 180_000,
  graceTimeoutMs: 10_000,
  connectTimeoutMs: 5_000,
  logLevel: 'info',
  workers: 1,
} as const;
