/**
 * Active health checks of load-balancer servers (Traefik v3's TCP
 * `healthCheck`): each server is probed every `interval` (a server that is
 * down every `unhealthyInterval`) by a TCP connect, optionally a TLS
 * handshake, and optionally `send` then a reply containing `expect`, all
 * within `timeout`. `unhealthyAfter` consecutive failures take it out of the
 * rotation, `healthyAfter` consecutive passes bring it back (echgate
 * extensions; Traefik acts on one). State is the gauge
 * echgate_backend_up{service,server} and one log line per change (both
 * without names for services only ECH routers reach, see healthLogPrivacy).
 *
 * Checkers outlive a reload when their service is unchanged (same servers and
 * check), so a server that is down stays down across a SIGHUP.
 */
import net from 'node:net';
import tls from 'node:tls';
import type { Logger } from 'pino';
import type { Config, HealthCheckConfig, RouterConfig, ServerConfig, ServiceConfig } from '../config/types.js';
import { HIDDEN_ROUTE } from './connection.js';
import type { Metrics } from './metrics.js';

/**
 * Services reached only through `requireECH` routers (directly or through a
 * weighted service): their routers match only names a client sent inside ECH,
 * so their names and servers stay out of logs unless log.echRoutes or
 * log.innerSni, as the connection's own log lines do (connection.ts
 * HIDDEN_ROUTE). A service any other router reaches is named already by that
 * router's log lines.
 */
export function echOnlyServices(cfg: Pick<Config, 'routers' | 'services'> & Partial<Pick<Config, 'entryPoints'>>): Set<string> {
  const reached = new Map<string, boolean>(); // service → reached by a router without requireECH
  const walk = (name: string, open: boolean, seen: Set<string>) => {
    if (seen.has(name)) return;
    seen.add(name);
    reached.set(name, (reached.get(name) ?? false) || open);
    const s = cfg.services.get(name);
    if (s?.kind === 'weighted') for (const c of s.services) walk(c.name, open, seen);
  };
  for (const r of cfg.routers) walk(r.service, !echOnlyRouter(cfg, r), new Set());
  return new Set([...reached].filter(([, open]) => !open).map(([n]) => n));
}

/**
 * Whether a router's rule names only inner SNIs: a requireECH router, and a
 * router on an `echBackend: true` entrypoint (the split-mode backend, RFC 9849
 * §7.2: the names it routes on arrived inside ECH at the client-facing server;
 * its access lines and metrics already say `(ech)`). A router also on an
 * ordinary entrypoint is hidden too: one name shown there would still say which
 * inner names the backend serves. The dashboard shows such routers as `(ech)`;
 * health lines and echgate_backend_up hide the services only they reach.
 */
export function echOnlyRouter(cfg: Partial<Pick<Config, 'entryPoints'>>, r: Pick<RouterConfig, 'requireECH' | 'entryPoints'>): boolean {
  return r.requireECH || (cfg.entryPoints !== undefined && r.entryPoints.some((e) => cfg.entryPoints!.get(e)?.echBackend === true));
}

/** What health-check log lines and the echgate_backend_up gauge may name: everything, or nothing about ECH-only services. */
export interface HealthLogPrivacy {
  /** Services whose log lines show HIDDEN_ROUTE and no server address or error text. */
  hidden: Set<string>;
  /** Services whose gauge series are labelled service="(ech)", server="(ech)#N" (see backendUpLabels). */
  metricsHidden?: Set<string>;
}

/**
 * log.echRoutes / log.innerSni off: ECH-only services are hidden in
 * health-check log lines. The gauge follows the rule of every other metric
 * (connection.ts): hidden unless log.echRoutes, whatever log.innerSni says,
 * since a scrape endpoint usually has a wider audience than the log files.
 */
export function healthLogPrivacy(cfg: Pick<Config, 'routers' | 'services' | 'log'>): HealthLogPrivacy {
  const echOnly = cfg.log.echRoutes && cfg.log.innerSni ? new Set<string>() : echOnlyServices(cfg);
  return { hidden: cfg.log.echRoutes || cfg.log.innerSni ? new Set() : echOnly, metricsHidden: cfg.log.echRoutes ? new Set() : echOnly };
}

export type BackendLabels = { service: string; server: string };

/**
 * The echgate_backend_up labels of every health-checked server, by service
 * (in server order). A server of a service in `metricsHidden` is
 * service="(ech)", server="(ech)#N", N counting such servers from 1 in
 * configuration order: the series stay one per server (an alert can still
 * say which one is down) without naming the service or its address, which
 * would give away what the hidden routers serve (RFC 9849 §1). Every worker
 * and the dashboard number them alike from the same configuration.
 */
export function backendUpLabels(services: Map<string, ServiceConfig>, metricsHidden: ReadonlySet<string>): Map<string, BackendLabels[]> {
  const out = new Map<string, BackendLabels[]>();
  let n = 0;
  for (const s of services.values()) {
    if (s.kind !== 'loadBalancer' || !s.healthCheck) continue;
    const hide = metricsHidden.has(s.name);
    out.set(
      s.name,
      s.servers.map((sv) => (hide ? { service: HIDDEN_ROUTE, server: `${HIDDEN_ROUTE}#${++n}` } : { service: s.name, server: `${sv.host}:${sv.port}` })),
    );
  }
  return out;
}

/** One probe: undefined when it passed, else why it failed. */
export async function probe(server: ServerConfig, hc: HealthCheckConfig): Promise<string | undefined> {
  return (await probeResult(server, hc))?.why;
}

/** A failed probe: the message (may name the address) and a short code that names nothing. */
interface ProbeFailure {
  why: string;
  code: string;
}

function probeResult(server: ServerConfig, hc: HealthCheckConfig): Promise<ProbeFailure | undefined> {
  return new Promise((resolve) => {
    let settled = false;
    let sock: net.Socket | tls.TLSSocket;
    const finish = (why: string | undefined, code = 'failed') => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.destroy();
      resolve(why === undefined ? undefined : { why, code });
    };
    const timer = setTimeout(() => finish(`no answer within ${hc.timeoutMs} ms`, 'timeout'), hc.timeoutMs);
    const port = hc.port ?? server.port;
    let got = '';
    const ready = () => {
      if (hc.send !== undefined) sock.write(hc.send);
      if (hc.expect === undefined) return finish(undefined);
      sock.on('data', (d: Buffer) => {
        // Bounded: only what can still contain `expect` is kept.
        got = (got + d.toString('latin1')).slice(-(hc.expect!.length + 4096));
        if (got.includes(hc.expect!)) finish(undefined);
      });
    };
    if (hc.tls) {
      // Liveness, not identity: the certificate is not verified (the data path does not verify it either).
      sock = tls.connect({ host: server.host, port, rejectUnauthorized: false, ...(net.isIP(server.host) ? {} : { servername: server.host }) }, ready);
    } else {
      sock = net.connect({ host: server.host, port }, ready);
    }
    sock.on('error', (e: NodeJS.ErrnoException) => finish(e.message, e.code ?? 'error'));
    sock.on('close', () => finish(hc.expect !== undefined ? 'closed before the expected reply' : 'closed', 'closed'));
  });
}

class ServerHealth {
  up = true;
  private fails = 0;
  private passes = 0;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(
    private readonly service: string,
    readonly server: ServerConfig,
    private readonly hc: HealthCheckConfig,
    private readonly metrics: Metrics,
    private readonly log: Logger,
    /** An ECH-only service (echOnlyServices) under log privacy: log lines name neither it nor the server. */
    private readonly hidden = false,
    /** Its echgate_backend_up labels (backendUpLabels): the real ones, or "(ech)" ones under metrics privacy. */
    readonly metricLabel: BackendLabels = { service, server: `${server.host}:${server.port}` },
  ) {}

  /** What a log line may say about this server. */
  private get logLabel() {
    return this.hidden ? { service: HIDDEN_ROUTE } : this.label;
  }

  get label() {
    return { service: this.service, server: `${this.server.host}:${this.server.port}` };
  }

  publish(): void {
    this.metrics.backendUp.set(this.metricLabel, this.up ? 1 : 0);
  }

  start(): void {
    this.publish();
    this.schedule(0);
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => void this.check(), ms);
    this.timer.unref();
  }

  private async check(): Promise<void> {
    const r = await probeResult(this.server, this.hc);
    if (this.stopped) return;
    this.record(r?.why, r?.code);
    this.schedule(this.up ? this.hc.intervalMs : this.hc.unhealthyIntervalMs);
  }

  /** One probe's result; the state changes after enough consecutive ones. */
  record(why: string | undefined, code = 'failed'): void {
    if (why === undefined) {
      this.fails = 0;
      this.passes++;
      if (!this.up && this.passes >= this.hc.healthyAfter) {
        this.up = true;
        this.metrics.backendUp.set(this.metricLabel, 1);
        this.log.info({ ...this.logLabel, checks: this.passes }, 'backend server healthy: back in the rotation');
      }
    } else {
      this.passes = 0;
      this.fails++;
      if (this.up && this.fails >= this.hc.unhealthyAfter) {
        this.up = false;
        this.metrics.backendUp.set(this.metricLabel, 0);
        // node's messages name the address ("connect ECONNREFUSED host:port"): hidden services get the code only.
        this.log.warn({ ...this.logLabel, checks: this.fails, err: this.hidden ? code : why }, 'backend server unhealthy: out of the rotation');
      }
    }
  }
}

/** The health of one load-balancer service's servers, by index. */
export class ServiceHealth {
  readonly servers: ServerHealth[];
  constructor(
    readonly key: string,
    svc: Extract<ServiceConfig, { kind: 'loadBalancer' }>,
    hc: HealthCheckConfig,
    metrics: Metrics,
    log: Logger,
    hidden = false,
    labels?: BackendLabels[],
  ) {
    this.servers = svc.servers.map((s, i) => new ServerHealth(svc.name, s, hc, metrics, log, hidden, labels?.[i]));
    for (const s of this.servers) s.start();
  }
  isUp(i: number): boolean {
    return this.servers[i]?.up ?? true;
  }
  anyUp(): boolean {
    return this.servers.some((s) => s.up);
  }
  stop(): void {
    for (const s of this.servers) s.stop();
  }
}

/**
 * The running checkers of a gateway. prepare() for a configuration reuses the
 * checkers of unchanged services and starts new ones; commit() stops those the
 * configuration no longer has; abort() stops only what prepare() started.
 */
export class HealthChecks {
  private running = new Map<string, ServiceHealth>();
  private started = new Set<ServiceHealth>();

  constructor(
    private readonly metrics: Metrics,
    private readonly log: Logger,
  ) {}

  prepare(services: Map<string, ServiceConfig>, privacy: HealthLogPrivacy = { hidden: new Set() }): Map<string, ServiceHealth> {
    const out = new Map<string, ServiceHealth>();
    const labels = backendUpLabels(services, privacy.metricsHidden ?? new Set());
    for (const s of services.values()) {
      if (s.kind !== 'loadBalancer' || !s.healthCheck) continue;
      const hidden = privacy.hidden.has(s.name);
      const metricLabels = labels.get(s.name)!;
      // The gauge labels are part of the identity: a checker publishing under other labels is a new one.
      const key = JSON.stringify([s.name, s.servers, s.healthCheck, hidden, metricLabels]);
      let h = this.running.get(key) ?? [...this.started].find((x) => x.key === key);
      if (!h) {
        h = new ServiceHealth(key, s, s.healthCheck, this.metrics, this.log, hidden, metricLabels);
        this.started.add(h);
      }
      out.set(s.name, h);
    }
    return out;
  }

  commit(checks: Map<string, ServiceHealth>): void {
    const keep = new Set(checks.values());
    for (const h of [...this.running.values(), ...this.started]) {
      if (keep.has(h)) continue;
      h.stop();
      // A server that is no longer checked has no state to report.
      for (const s of h.servers) this.metrics.backendUp.delete(s.metricLabel);
    }
    // A kept checker may share a series with one just dropped (same service and server, another check).
    for (const h of keep) for (const s of h.servers) s.publish();
    this.running = new Map([...keep].map((h) => [h.key, h]));
    this.started.clear();
  }

  abort(checks: Map<string, ServiceHealth>): void {
    for (const h of checks.values()) {
      if (this.running.get(h.key) === h) continue;
      h.stop();
      this.started.delete(h);
    }
  }

  stop(): void {
    for (const h of [...this.running.values(), ...this.started]) h.stop();
    this.running.clear();
    this.started.clear();
  }
}
