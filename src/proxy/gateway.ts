/**
 * The running proxy: one listener per entrypoint, a context per entrypoint
 * rebuilt on every (re)load, graceful shutdown. Reload never drops open
 * connections: they keep the context they started with.
 *
 * A (re)load is all or nothing: prepare() builds everything that can fail
 * (certificates read, routing tables compiled, new listeners bound and
 * holding their first connections) while the old state keeps serving;
 * commit() then swaps it in one synchronous step, abort() drops it.
 */
import net from 'node:net';
import type { Logger } from 'pino';
import type { Config, EntryPointConfig } from '../config/types.js';
import { RoutingTable } from '../routing/table.js';
import { errField, handleConnection } from './connection.js';
import { type Classifier, type EntryContext, plainClassifier, type RouteTarget } from './context.js';
import { echBackendClassifier } from './ech-classifier.js';
import { certificateSelector } from '../tls13/certs.js';
import { loadCertificates } from './certificates.js';
import { LogLimiter } from '../observe/log-limit.js';
import { Metrics } from './metrics.js';
import { compileMiddlewares, InFlightCounts } from './middlewares.js';
import { OpenSet } from './open-set.js';
import { normalizeIp } from '../bytes/ip.js';
import { reachableServers } from './preamble.js';
import { buildPickers } from './services.js';
import { echOnlyRouter, echOnlyServices, HealthChecks, healthLogPrivacy, type ServiceHealth } from './health.js';

interface Listener {
  server: net.Server;
  ctx: EntryContext;
  open: OpenSet;
  /** False until the load that bound it is committed: connections wait in `held`. */
  live: boolean;
  held: net.Socket[];
}

/** A load built and bound, not yet in place. */
export interface PreparedLoad {
  commit(): void;
  abort(): void;
}

/** Where ClientHellos are classified (the ECH keystore) and retry_configs come from. */
export interface EchHooks {
  classify: Classifier;
  retryConfigs: () => Uint8Array | undefined;
}

export interface GatewayOptions {
  log: Logger;
  metrics?: Metrics;
  classify?: Classifier;
}

export class Gateway {
  readonly metrics: Metrics;
  private readonly log: Logger;
  private listeners = new Map<string, Listener>();
  private classify: Classifier;
  private config: Config | undefined;
  private readonly limiter = new LogLimiter();
  /** inFlightConn counts, kept across reloads (open connections still count). */
  private readonly inFlight = new InFlightCounts();
  private retryConfigs: () => Uint8Array | undefined = () => undefined;
  private readonly health: HealthChecks;

  constructor(opts: GatewayOptions) {
    this.log = opts.log;
    this.metrics = opts.metrics ?? new Metrics();
    this.classify = opts.classify ?? plainClassifier;
    this.health = new HealthChecks(this.metrics, this.log);
  }

  /**
   * Replace the ClientHello classifier (the ECH keystore plugs in here) and,
   * with it, where retry_configs come from.
   */
  setClassifier(c: Classifier, retryConfigs: () => Uint8Array | undefined = () => undefined): void {
    this.classify = c;
    this.retryConfigs = retryConfigs;
    for (const l of this.listeners.values()) l.ctx = { ...l.ctx, classify: l.ctx.ep.echBackend ? l.ctx.classify : c, retryConfigs };
  }

  private buildContexts(cfg: Config, classify: Classifier, retryConfigs: () => Uint8Array | undefined, health: Map<string, ServiceHealth>): Map<string, EntryContext> {
    const pickers = buildPickers(cfg.services, health);
    const certificate = certificateSelector(loadCertificates(cfg));
    const out = new Map<string, EntryContext>();
    for (const ep of cfg.entryPoints.values()) {
      const specs = cfg.routers
        .filter((r) => r.entryPoints.includes(ep.name))
        .map((r) => ({
          name: r.name,
          rule: r.rule,
          priority: r.priority,
          tls: r.tls !== undefined,
          requireECH: r.requireECH,
          target: { router: r, picker: pickers.get(r.service)!, middlewares: compileMiddlewares(r.middlewares, this.inFlight) },
        }));
      out.set(ep.name, {
        ep,
        table: new RoutingTable<RouteTarget>(specs),
        metrics: this.metrics,
        log: this.log,
        limiter: this.limiter,
        logInnerSni: cfg.log.innerSni,
        logEchRoutes: cfg.log.echRoutes,
        accessLog: cfg.log.access,
        classify: ep.echBackend ? echBackendClassifier(this.metrics) : classify,
        certificate,
        retryConfigs,
        ...(ep.protocol ? { preambleTargets: reachableServers(cfg, ep.name) } : {}),
      });
    }
    return out;
  }

  /** Apply a validated configuration: start, update or stop listeners. All or nothing. */
  async apply(cfg: Config, ech?: EchHooks): Promise<void> {
    (await this.prepare(cfg, ech)).commit();
  }

  /**
   * Build a configuration's state while the current one keeps serving:
   * contexts (certificates, routing tables, service pickers) and listeners
   * for new or moved entrypoints (bound; their connections wait for commit).
   * Throws, with nothing changed and nothing left bound, if any of it fails.
   */
  async prepare(cfg: Config, ech?: EchHooks): Promise<PreparedLoad> {
    const classify = ech?.classify ?? this.classify;
    const retryConfigs = ech?.retryConfigs ?? this.retryConfigs;
    const checks = this.health.prepare(cfg.services, healthLogPrivacy(cfg));
    let contexts: Map<string, EntryContext>;
    try {
      contexts = this.buildContexts(cfg, classify, retryConfigs, checks);
    } catch (e) {
      this.health.abort(checks);
      throw e;
    }
    const fresh = new Map<string, Listener>();
    const drop = () => {
      this.health.abort(checks);
      for (const l of fresh.values()) {
        for (const s of l.held) s.destroy();
        l.server.close();
      }
    };
    try {
      for (const [name, ctx] of contexts) {
        const l = this.listeners.get(name);
        if (l && l.ctx.ep.host === ctx.ep.host && l.ctx.ep.port === ctx.ep.port) continue;
        fresh.set(name, await this.listen(ctx, false));
      }
    } catch (e) {
      drop();
      throw e;
    }
    let settled = false;
    return {
      commit: () => {
        if (settled) return;
        settled = true;
        for (const [name, l] of this.listeners) {
          if (!contexts.has(name) || fresh.has(name)) {
            l.server.close();
            this.listeners.delete(name);
          }
        }
        for (const [name, ctx] of contexts) {
          const l = this.listeners.get(name);
          if (l) l.ctx = ctx;
        }
        for (const [name, l] of fresh) {
          this.listeners.set(name, l);
          l.live = true;
          for (const s of l.held.splice(0)) this.accept(l, s);
        }
        this.classify = classify;
        this.retryConfigs = retryConfigs;
        // Without log.echRoutes no metric may name an ECH-only router or service; a previous configuration
        // with it on left such series (audit s12 gap 9): they go now, not at the next restart.
        if (!cfg.log.echRoutes) this.forgetEchNames(this.config, cfg);
        this.config = cfg;
        this.health.commit(checks);
      },
      abort: () => {
        if (settled) return;
        settled = true;
        drop();
      },
    };
  }

  /** The ECH-only routers and services of both configurations, out of every metric (Metrics.forgetNames). */
  private forgetEchNames(prev: Config | undefined, next: Config): void {
    const routers = new Set<string>();
    const services = new Set<string>();
    for (const c of prev ? [prev, next] : [next]) {
      for (const r of c.routers) if (echOnlyRouter(c, r)) routers.add(r.name);
      for (const v of echOnlyServices(c)) services.add(v);
    }
    this.metrics.forgetNames(routers, services);
  }

  private accept(l: Listener, socket: net.Socket): void {
    if (l.open.size >= l.ctx.ep.maxConnections) {
      this.metrics.connections.inc({ entrypoint: l.ctx.ep.name, router: '-', outcome: 'over_limit' });
      this.metrics.overLimit.inc({ entrypoint: l.ctx.ep.name, reason: 'max_connections' });
      // No access line for a connection never handled; the operator still hears that the cap is being hit
      // (rate-limited: a flood past the cap is one line per interval, with how many were suppressed).
      l.ctx.limiter.log(l.ctx.log, 'warn', { entrypoint: l.ctx.ep.name, maxConnections: l.ctx.ep.maxConnections }, 'entrypoint at maxConnections: new connection closed');
      socket.destroy();
      return;
    }
    // Per client address, at accept and before any read (0: no cap): one address cannot hold every slot
    // with idle hellos. l.open counts by address (proxy/open-set.ts) once it holds `perIp` connections (below
    // that no address can be at the cap, and the address read is not paid); a count is released as its
    // connection leaves the set.
    const perIp = l.ctx.ep.maxConnectionsPerIP;
    let ip: string | undefined;
    if (perIp !== 0 && (l.open.counting || l.open.size >= perIp)) {
      if (!l.open.counting) l.open.startCounting(perIp >> 1);
      ip = normalizeIp(socket.remoteAddress);
      if (l.open.countOf(ip) >= perIp) {
        this.metrics.connections.inc({ entrypoint: l.ctx.ep.name, router: '-', outcome: 'over_limit' });
        this.metrics.overLimit.inc({ entrypoint: l.ctx.ep.name, reason: 'max_connections_per_ip' });
        l.ctx.limiter.log(l.ctx.log, 'warn', { entrypoint: l.ctx.ep.name, client: ip, maxConnectionsPerIP: perIp }, 'entrypoint at maxConnectionsPerIP for this client address: new connection closed');
        socket.destroy();
        return;
      }
    }
    try {
      // The connection puts itself in l.open, and takes itself out when it finishes or if this throws.
      handleConnection(l.ctx, socket, l.open, ip);
    } catch (e) {
      // handleConnection guards its own callbacks; this is the last line for its synchronous part.
      // One connection's exception ends that connection, never the process.
      socket.destroy();
      this.metrics.handlerErrors.inc({ listener: 'proxy' });
      this.limiter.log(this.log, 'warn', { entrypoint: l.ctx.ep.name, err: errField(e) }, 'internal error handling a connection; that connection was closed');
    }
  }

  private listen(ctx: EntryContext, live: boolean): Promise<Listener> {
    const l: Listener = { server: undefined as unknown as net.Server, ctx, open: new OpenSet(), live, held: [] };
    // noDelay: TCP_NODELAY is set as the socket is accepted, with no JS call per connection.
    l.server = net.createServer({ allowHalfOpen: true, pauseOnConnect: false, noDelay: true }, (socket) => {
      if (l.live) return this.accept(l, socket);
      // Bound by a load not yet committed: the connection waits (its bytes buffer in the socket).
      if (l.held.length >= l.ctx.ep.maxConnections) return void socket.destroy();
      socket.on('error', () => socket.destroy());
      l.held.push(socket);
    });
    return new Promise((resolve, reject) => {
      l.server.once('error', reject);
      l.server.listen({ host: ctx.ep.host, port: ctx.ep.port }, () => {
        l.server.removeListener('error', reject);
        l.server.on('error', (err) => this.log.error({ entrypoint: ctx.ep.name, err: err.message }, 'listener error'));
        resolve(l);
      });
    });
  }

  /** Bound addresses by entrypoint (port 0 in the config becomes the real port). */
  addresses(): Map<string, { host: string; port: number }> {
    const out = new Map<string, { host: string; port: number }>();
    for (const [name, l] of this.listeners) {
      const a = l.server.address() as net.AddressInfo | null;
      if (a) out.set(name, { host: a.address, port: a.port });
    }
    return out;
  }

  get current(): Config | undefined {
    return this.config;
  }

  get entryPoints(): EntryPointConfig[] {
    return [...this.listeners.values()].map((l) => l.ctx.ep);
  }

  openConnections(): number {
    let n = 0;
    for (const l of this.listeners.values()) n += l.open.size;
    return n;
  }

  /**
   * Stop accepting, let open connections finish for up to the longest
   * entrypoint grace period, then cut what is left.
   */
  async shutdown(graceMs?: number): Promise<void> {
    const grace = graceMs ?? Math.max(0, ...[...this.listeners.values()].map((l) => l.ctx.ep.graceTimeoutMs));
    this.health.stop();
    const all = [...this.listeners.values()];
    const closed = all.map((l) => new Promise<void>((r) => l.server.close(() => r())));
    await this.waitDrained(grace);
    for (const l of all) for (const s of l.open.sockets()) s.destroy();
    await Promise.all(closed);
    this.listeners.clear();
  }

  private waitDrained(graceMs: number): Promise<void> {
    return new Promise((resolve) => {
      const deadline = Date.now() + graceMs;
      const tick = () => {
        if (this.openConnections() === 0 || Date.now() >= deadline) return resolve();
        setTimeout(tick, 50).unref();
      };
      tick();
    });
  }
}
