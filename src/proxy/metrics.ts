/**
 * A small Prometheus registry (text exposition format 0.0.4). Counters and
 * histograms keyed by a pre-joined label string, so the per-connection cost
 * is one Map lookup and an add.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { createHistogram, type RecordableHistogram } from 'node:perf_hooks';
import type { Logger } from 'pino';
import { LogLimiter } from '../observe/log-limit.js';

type Labels = Record<string, string>;

function labelKey(l: Labels): string {
  const parts: string[] = [];
  for (const k of Object.keys(l).sort()) parts.push(`${k}="${String(l[k]).replace(/[\\"\n]/g, (c) => (c === '\n' ? '\\n' : `\\${c}`))}"`);
  return parts.join(',');
}

/**
 * Label sets → rendered key, cached by the values joined in call order
 * (call sites always pass the same keys in the same order), so the hot path
 * does one string join and one Map lookup instead of a sort and escapes.
 */
class KeyCache {
  private readonly cache = new Map<string, string>();
  key(labels: Labels): string {
    let fast = '';
    for (const k in labels) fast += `${k}\u0000${labels[k]}\u0001`;
    let v = this.cache.get(fast);
    if (v === undefined) {
      v = labelKey(labels);
      if (this.cache.size < 10_000) this.cache.set(fast, v);
    }
    return v;
  }
}

/**
 * One label set of a counter or gauge, its key rendered once: `inc` is a Map
 * update, with no key built per call. A series appears in the output at its
 * first update, as through `inc(labels)`, so /metrics reads the same either way.
 */
export class Series {
  constructor(
    private readonly values: Map<string, number>,
    readonly key: string,
  ) {}
  inc(by = 1): void {
    this.values.set(this.key, (this.values.get(this.key) ?? 0) + by);
  }
}

/** The errno codes echgate_client_errors_total names; any other is `other`. */
export const CLIENT_ERROR_CODES: ReadonlySet<string> = new Set(['ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'ECONNABORTED', 'EHOSTUNREACH', 'ENETUNREACH']);

class Counter {
  readonly values = new Map<string, number>();
  protected readonly keys = new KeyCache();
  constructor(
    readonly name: string,
    readonly help: string,
  ) {}
  inc(labels: Labels, by = 1): void {
    const k = this.keys.key(labels);
    this.values.set(k, (this.values.get(k) ?? 0) + by);
  }
  /** The series of these labels, for a caller that updates it often (see Series). */
  series(labels: Labels): Series {
    return new Series(this.values, labelKey(labels));
  }
  get(labels: Labels): number {
    return this.values.get(labelKey(labels)) ?? 0;
  }
  /** Add another process's series (already rendered label keys) into this one. */
  mergeEntries(entries: [string, number][]): void {
    for (const [k, v] of entries) this.values.set(k, (this.values.get(k) ?? 0) + v);
  }
  render(): string {
    let s = `# HELP ${this.name} ${this.help}\n# TYPE ${this.name} counter\n`;
    for (const [k, v] of this.values) s += `${this.name}{${k}} ${v}\n`;
    return s;
  }
}

class Gauge extends Counter {
  dec(labels: Labels, by = 1): void {
    this.inc(labels, -by);
  }
  set(labels: Labels, v: number): void {
    this.values.set(this.keys.key(labels), v);
  }
  delete(labels: Labels): void {
    this.values.delete(labelKey(labels));
  }
  override render(): string {
    return super.render().replace(' counter\n', ' gauge\n');
  }
}

interface HistogramSeries {
  counts: number[];
  sum: number;
  n: number;
}

/**
 * One process's metrics as plain data (structured-clone safe, for IPC):
 * series by metric name, keyed by the rendered label string.
 */
export interface MetricsSnapshot {
  counters: Record<string, [string, number][]>;
  gauges: Record<string, [string, number][]>;
  histograms: Record<string, [string, HistogramSeries][]>;
}

class Histogram {
  private readonly series = new Map<string, HistogramSeries>();
  constructor(
    readonly name: string,
    readonly help: string,
    readonly buckets: number[],
  ) {}
  private readonly keys = new KeyCache();
  observe(labels: Labels, v: number): void {
    this.observeKey(this.keys.key(labels), v);
  }
  /** The series of these labels with its key rendered once (see Series). */
  seriesOf(labels: Labels): HistogramHandle {
    return new HistogramHandle(this, labelKey(labels));
  }
  observeKey(k: string, v: number): void {
    let s = this.series.get(k);
    if (!s) {
      s = { counts: new Array(this.buckets.length).fill(0), sum: 0, n: 0 };
      this.series.set(k, s);
    }
    for (let i = 0; i < this.buckets.length; i++) if (v <= this.buckets[i]!) s.counts[i]!++;
    s.sum += v;
    s.n++;
  }
  /** Delete the series whose rendered label key `drop` says (Metrics.forgetNames). */
  deleteWhere(drop: (key: string) => boolean): void {
    for (const k of [...this.series.keys()]) if (drop(k)) this.series.delete(k);
  }
  entries(): [string, HistogramSeries][] {
    return [...this.series].map(([k, s]) => [k, { counts: [...s.counts], sum: s.sum, n: s.n }]);
  }
  /** Add another process's series: bucket counts, sums and counts add (same buckets: same code). */
  mergeEntries(entries: [string, HistogramSeries][]): void {
    for (const [k, o] of entries) {
      let s = this.series.get(k);
      if (!s) {
        s = { counts: new Array(this.buckets.length).fill(0), sum: 0, n: 0 };
        this.series.set(k, s);
      }
      for (let i = 0; i < this.buckets.length; i++) s.counts[i]! += o.counts[i] ?? 0;
      s.sum += o.sum;
      s.n += o.n;
    }
  }
  render(): string {
    let out = `# HELP ${this.name} ${this.help}\n# TYPE ${this.name} histogram\n`;
    for (const [k, s] of this.series) {
      const sep = k ? `${k},` : '';
      this.buckets.forEach((b, i) => {
        out += `${this.name}_bucket{${sep}le="${b}"} ${s.counts[i]}\n`;
      });
      out += `${this.name}_bucket{${sep}le="+Inf"} ${s.n}\n${this.name}_sum{${k}} ${s.sum}\n${this.name}_count{${k}} ${s.n}\n`;
    }
    return out;
  }
}

/** One label set of a histogram, its key rendered once. */
export class HistogramHandle {
  constructor(
    private readonly h: Histogram,
    readonly key: string,
  ) {}
  observe(v: number): void {
    this.h.observeKey(this.key, v);
  }
}

/** The series one router's connections update when they close (ConnectionSeries.router). */
export interface RouterSeries {
  bytesIn: Series;
  bytesOut: Series;
  duration: HistogramHandle;
  /** echgate_connections_total by outcome, made on first use. */
  outcomes: Map<string, Series>;
}

/** Bound on the routers remembered per entrypoint (names come from the configuration; reloads may rename). */
const MAX_ROUTER_SERIES = 10_000;

/**
 * The series a connection of one entrypoint updates, resolved once per
 * entrypoint and router instead of a label key built per update (six per
 * relayed connection; docs/benchmarks.md, "Passthrough cost, seventh pass").
 */
export class ConnectionSeries {
  readonly open: Series;
  private readonly routers = new Map<string, RouterSeries>();
  /** echgate_ech_total by result. */
  private readonly echResults = new Map<string, Series>();
  constructor(
    private readonly m: Metrics,
    readonly entrypoint: string,
  ) {
    this.open = m.open.series({ entrypoint });
  }
  router(router: string): RouterSeries {
    let r = this.routers.get(router);
    if (r) return r;
    const { m, entrypoint } = this;
    r = {
      bytesIn: m.bytes.series({ entrypoint, router, direction: 'in' }),
      bytesOut: m.bytes.series({ entrypoint, router, direction: 'out' }),
      duration: m.duration.seriesOf({ entrypoint, router }),
      outcomes: new Map(),
    };
    if (this.routers.size < MAX_ROUTER_SERIES) this.routers.set(router, r);
    return r;
  }
  /** echgate_connections_total{entrypoint,router,outcome}. */
  connection(router: string, outcome: string): Series {
    const r = this.router(router);
    let c = r.outcomes.get(outcome);
    if (!c) {
      c = this.m.connections.series({ entrypoint: this.entrypoint, router, outcome });
      r.outcomes.set(outcome, c);
    }
    return c;
  }
  /** Forget the cached series of these routers (Metrics.forgetNames deleted their values). */
  forgetRouters(names: ReadonlySet<string>): void {
    for (const n of names) this.routers.delete(n);
  }
  /** echgate_ech_total{entrypoint,result}. */
  ech(result: string): Series {
    let c = this.echResults.get(result);
    if (!c) {
      c = this.m.ech.series({ entrypoint: this.entrypoint, result });
      this.echResults.set(result, c);
    }
    return c;
  }
}

/**
 * This process's event-loop delay: how late a 10 ms timer fires. One blocked
 * loop delays every connection of the process, so it is the first thing to
 * read when latency grows. (perf_hooks' monitorEventLoopDelay on Node 20
 * reported 15 ms for a 300 ms stall here, so the lag is measured directly.)
 * Started once per process by whoever reports it (the scrape listener, a
 * worker of a process group); the timer is unref'd.
 */
const LOOP_TICK_MS = 10;
let loopMonitor: RecordableHistogram | undefined;

export function watchEventLoop(): void {
  if (loopMonitor) return;
  const h = createHistogram();
  let last = performance.now();
  setInterval(() => {
    const now = performance.now();
    h.record(Math.max(1, Math.round((now - last - LOOP_TICK_MS) * 1e6)));
    last = now;
  }, LOOP_TICK_MS).unref();
  loopMonitor = h;
}

export class Metrics {
  readonly connections = new Counter('echgate_connections_total', 'Connections by entrypoint, router and outcome.');
  readonly open = new Gauge('echgate_open_connections', 'Connections currently open, by entrypoint.');
  /**
   * Connections an entrypoint closed at accept, by reason: `max_connections` (the entrypoint's cap) or
   * `max_connections_per_ip` (its per-address cap). Each is also in connections{outcome="over_limit"}.
   */
  readonly overLimit = new Counter('echgate_over_limit_total', 'Connections an entrypoint closed at accept, by entrypoint and reason (max_connections, max_connections_per_ip).');
  readonly peekFailures = new Counter('echgate_peek_failures_total', 'ClientHello peeks that failed, by reason.');
  /**
   * Fatal alerts echgate itself sent to end a connection's TLS (RFC 8446 §6.2): the handshake failures by
   * alert. The label is an alert name from wire/tls/constants.ts AlertDescription (a bounded set).
   */
  readonly alertsSent = new Counter('echgate_tls_alerts_sent_total', 'Fatal TLS alerts echgate sent to end a handshake, by entrypoint and alert.');
  readonly bytes = new Counter('echgate_bytes_total', 'Bytes relayed, by entrypoint, router and direction.');
  readonly backendErrors = new Counter('echgate_backend_errors_total', 'Backend connect or stream failures, by service.');
  /** Health-checked servers: 1 in the rotation, 0 out of it (src/proxy/health.ts). Summed over the workers of a process group. */
  readonly backendUp = new Gauge('echgate_backend_up', 'Health-checked backend servers: 1 healthy (in the rotation), 0 unhealthy, by service and server.');
  /**
   * By result: accepted; stale (the config_id of a recently retired key: a client holding an old ECHConfig);
   * grease (an id no key had); rejected (a key has the id but did not open the payload); malformed;
   * accepted_on_passthrough. The access line's `ech` says the same (proxy/ech-classifier.ts).
   */
  readonly ech = new Counter('echgate_ech_total', 'ECH ClientHellos by entrypoint and result (accepted, stale, grease, rejected, malformed, accepted_on_passthrough).');
  readonly reloads = new Counter('echgate_config_reloads_total', 'Configuration reloads by result.');
  readonly dnsQueries = new Counter('echgate_dns_queries_total', 'Queries to the embedded DNS, by transport, query type and rcode.');
  readonly handlerErrors = new Counter('echgate_handler_errors_total', 'Unexpected exceptions caught while handling one connection or request, by listener.');
  /**
   * What the listeners beside the proxy entrypoints (dns_udp, dns_tcp, dns_doh, metrics) refused or cut, by
   * reason (a fixed set per listener, docs/configuration.md): their sheddings, as the entrypoints'
   * over_limit, timeout, ... outcomes are. Counted where they happen; summed over a group like every counter.
   */
  readonly listenerRefusals = new Counter('echgate_listener_refusals_total', 'Connections, requests or queries the DNS, DoH and metrics listeners refused or cut, by listener and reason.');
  /**
   * Errors node reported on a client socket (a reset, a broken pipe): the remote side ended its connection
   * abnormally. The connection ends (its access line keeps its outcome); nothing is logged per error, since
   * resets are routine on the internet. `code` is one of CLIENT_ERROR_CODES, else `other` (bounded series).
   */
  readonly clientErrors = new Counter('echgate_client_errors_total', 'Client socket errors (resets, broken pipes, timeouts from the kernel) by entrypoint and errno code.');
  readonly keyRotations = new Counter('echgate_key_rotations_total', 'Automatic ECH key rotations by result (ok, failed).');
  /** Fleet (ech.store.etcd, docs/fleet.md): 1 while etcd answers; 0 while the instance serves the keys it last read. */
  readonly fleetStoreUp = new Gauge('echgate_fleet_store_up', 'Fleet: 1 while the etcd store answers, 0 while unreachable (the instance serves the keys it holds).');
  readonly fleetReady = new Gauge('echgate_fleet_ready', 'Fleet: 1 when GET /ready answers 200 (holds the current keys and configuration).');
  readonly fleetLeader = new Gauge('echgate_fleet_leader', 'Fleet: 1 on the instance that leads key rotation.');
  readonly fleetLateInstances = new Gauge('echgate_fleet_late_instances', 'Fleet (leader): instances that did not acknowledge the staged key within ackTimeout.');
  /** GET /ready on the metrics address: set by serve (the fleet's readiness); without it /ready is 200 while serving. */
  readyCheck?: () => { ready: boolean; reason: string };
  readonly nextKeyRotation = new Gauge('echgate_key_rotation_next_timestamp_seconds', 'When serve next rotates the ECH keys (Unix time; absent without ech.rotation).');
  /** providers.etcd: the etcd revision of the configuration in force, and whether etcd answers; by process (a group's gauges are summed). */
  readonly configRevision = new Gauge('echgate_config_revision', 'etcd revision of the configuration in force (providers.etcd), by process.');
  readonly configStoreUp = new Gauge('echgate_config_store_up', 'Whether the configuration store (providers.etcd) answers: 1 or 0, by process.');
  readonly duration = new Histogram('echgate_connection_duration_seconds', 'Connection lifetime, by entrypoint and router.', [
    0.005, 0.05, 0.5, 1, 5, 30, 120, 600,
  ]);

  /** Process group (workers > 1): worker processes restarted after they died, by exit reason. Kept by the primary. */
  readonly workerRestarts = new Counter('echgate_worker_restarts_total', 'Worker processes that died and were replaced, by reason (signal name or exit code).');
  /** Process group: worker processes running now. Kept by the primary. */
  readonly workers = new Gauge('echgate_workers', 'Worker processes running, and how many answered this scrape.');

  /** Process group: connections each running worker has counted (its echgate_connections_total); restarts from 0 with the worker. */
  readonly workerConnections = new Counter('echgate_worker_connections_total', 'Connections counted by each running worker process (how the kernel or the primary spread them).');

  /** Event-loop delay per process since the previous scrape (see watchEventLoop). */
  readonly loopDelay = new Gauge(
    'echgate_event_loop_delay_seconds',
    'Event-loop delay of each process since the previous scrape: quantile 0.5, 0.99 and 1 (the maximum).',
  );

  /** Memory of each process at the scrape (process.memoryUsage()), so growth shows without a shell on the host. */
  readonly memory = new Gauge(
    'echgate_process_memory_bytes',
    'Memory of each process at the scrape, by kind: rss, heap_total, heap_used, external, array_buffers (node process.memoryUsage()).',
  );

  /**
   * Put this process's event-loop delay since the last call into
   * echgate_event_loop_delay_seconds{process,quantile} and start a new
   * interval; and its memory now into echgate_process_memory_bytes{process,kind}.
   */
  sampleEventLoop(processName: string): void {
    const mem = process.memoryUsage();
    const kinds: [string, number][] = [
      ['rss', mem.rss],
      ['heap_total', mem.heapTotal],
      ['heap_used', mem.heapUsed],
      ['external', mem.external],
      ['array_buffers', mem.arrayBuffers],
    ];
    for (const [kind, bytes] of kinds) this.memory.set({ process: processName, kind }, bytes);
    if (!loopMonitor) return;
    // No tick since the previous call (two scrapes within one tick): no delay was measured in this
    // interval. Leaving the gauges as they were reported the previous interval's stall a second time.
    const none = loopMonitor.count === 0;
    const q: [string, number][] = [
      ['0.5', none ? 0 : loopMonitor.percentile(50)],
      ['0.99', none ? 0 : loopMonitor.percentile(99)],
      ['1', none ? 0 : loopMonitor.max],
    ];
    for (const [quantile, ns] of q) this.loopDelay.set({ process: processName, quantile }, ns / 1e9);
    loopMonitor.reset();
  }

  private readonly perEntrypoint = new Map<string, ConnectionSeries>();
  /** The series one entrypoint's connections update (made once per entrypoint name). */
  connectionSeries(entrypoint: string): ConnectionSeries {
    let c = this.perEntrypoint.get(entrypoint);
    if (!c) {
      c = new ConnectionSeries(this, entrypoint);
      if (this.perEntrypoint.size < MAX_ROUTER_SERIES) this.perEntrypoint.set(entrypoint, c);
    }
    return c;
  }

  /**
   * Delete every series labelled with one of these routers or services (router="…", service="…"), and the
   * cached series objects that would write them again. A reload that turns log.echRoutes off calls it with
   * the ECH-only routers and services (gateway.ts): their names were labels while echRoutes was on, and a
   * scrape must stop showing them at once, not at the next restart (audit s12 gap 9; RFC 9849 §1: the names
   * are what ECH hides). Their counts are gone with them; from here on they count under `(ech)`.
   */
  forgetNames(routers: ReadonlySet<string>, services: ReadonlySet<string>): number {
    if (routers.size === 0 && services.size === 0) return 0;
    const tokens = [...[...routers].map((r) => labelKey({ router: r })), ...[...services].map((v) => labelKey({ service: v }))];
    // A rendered key is `a="x",b="y"` with quotes and backslashes in values escaped, so a whole `name="value"`
    // part between commas matches only that label.
    const drop = (key: string) => {
      const k = `,${key},`;
      return tokens.some((t) => k.includes(`,${t},`));
    };
    let n = 0;
    for (const m of this.all()) {
      if (m instanceof Histogram) {
        const before = m.entries().length;
        m.deleteWhere(drop);
        n += before - m.entries().length;
      } else {
        for (const k of [...m.values.keys()]) if (drop(k) && m.values.delete(k)) n++;
      }
    }
    for (const c of this.perEntrypoint.values()) c.forgetRouters(routers);
    return n;
  }

  private all(): (Counter | Histogram)[] {
    return [this.connections, this.overLimit, this.open, this.peekFailures, this.alertsSent, this.bytes, this.backendErrors, this.backendUp, this.ech, this.reloads, this.dnsQueries, this.handlerErrors, this.clientErrors, this.listenerRefusals, this.duration, this.workerRestarts, this.workers, this.workerConnections, this.loopDelay, this.memory, this.keyRotations, this.nextKeyRotation, this.configRevision, this.configStoreUp, this.fleetStoreUp, this.fleetReady, this.fleetLeader, this.fleetLateInstances];
  }

  render(): string {
    return this.all()
      .map((m) => m.render())
      .join('');
  }

  /** This process's series as plain data, for the primary of a process group to sum. */
  snapshot(): MetricsSnapshot {
    const snap: MetricsSnapshot = { counters: {}, gauges: {}, histograms: {} };
    for (const m of this.all()) {
      if (m instanceof Histogram) snap.histograms[m.name] = m.entries();
      else if (m instanceof Gauge) snap.gauges[m.name] = [...m.values];
      else snap.counters[m.name] = [...m.values];
    }
    return snap;
  }

  /**
   * Add a snapshot of another process into this registry: counters and
   * histograms add; gauges add too unless `gauges: false` (a dead worker's
   * open connections are gone, its counts are not). Unknown names are skipped.
   */
  merge(snap: MetricsSnapshot, opts: { gauges?: boolean } = {}): void {
    for (const m of this.all()) {
      if (m instanceof Histogram) m.mergeEntries(snap.histograms[m.name] ?? []);
      else if (m instanceof Gauge) {
        if (opts.gauges !== false) m.mergeEntries(snap.gauges[m.name] ?? []);
      } else m.mergeEntries(snap.counters[m.name] ?? []);
    }
  }

  /**
   * The scrape listener: GET (or HEAD) /metrics and nothing else, with the
   * limits in METRICS_LISTENER_LIMITS. An exception while answering ends that
   * request with a 500, is counted (handlerErrors{listener="metrics"}) and
   * logged rate limited; it never reaches the process.
   */
  serve(host: string, port: number, opts: { log?: Logger; limits?: Partial<MetricsListenerLimits>; source?: () => Promise<string>; routes?: ExtraRoutes } = {}): Promise<Server> {
    const lim = { ...METRICS_LISTENER_LIMITS, ...opts.limits };
    watchEventLoop();
    const limiter = new LogLimiter();
    const srv = createServer(
      {
        headersTimeout: lim.headersTimeoutMs,
        requestTimeout: lim.requestTimeoutMs,
        keepAliveTimeout: lim.keepAliveTimeoutMs,
        connectionsCheckingInterval: lim.checkIntervalMs,
        maxHeaderSize: lim.maxHeaderBytes,
      },
      (req, res) => {
        const fail = (e: unknown) => {
          try {
            this.handlerErrors.inc({ listener: 'metrics' });
            if (opts.log) limiter.log(opts.log, 'warn', { listener: 'metrics', err: e instanceof Error ? `${e.name}: ${e.message}` : String(e) }, 'internal error answering a metrics request');
          } finally {
            if (!res.headersSent) res.writeHead(500, { connection: 'close', 'content-length': 0 }).end();
            else res.destroy();
          }
        };
        try {
          const body = this.answer(req, res, opts.source, opts.routes);
          // A process group's text is gathered from the workers first (src/cli/workers.ts).
          if (body) body.then((text) => this.send(req, res, text)).catch(fail);
        } catch (e) {
          fail(e);
        }
      },
    );
    /** A refusal: counted, and said in a warning (rate limited: a client can make these at its packet rate). */
    const refused = (reason: MetricsRefusal, remote: string | undefined) => {
      this.listenerRefusals.inc({ listener: 'metrics', reason });
      if (opts.log) limiter.log(opts.log, 'warn', { listener: 'metrics', reason, client: remote }, 'metrics listener refused or cut a connection');
    };
    // The caps (audit s11 gap 3, s12): the listener's maxConnections and maxConnectionsPerIP, kept here rather than
    // by node's server.maxConnections, which can only refuse. When a new connection finds no room, the connection
    // open longest with no request being answered (idle between requests, or its head not whole yet) is closed to
    // make room, as nginx reuses its idle keep-alive connections when worker_connections run out; only when every
    // connection is in the middle of an answer is the new one refused. So idle or slow connections (from any number
    // of addresses, or from the probe's own) cannot keep /ready from answering: a probe that sends its head at once
    // is answered before it is the oldest idle connection of a full listener (docs/dashboard.md, the listener).
    // Checked first on each connection, before node's HTTP.
    const open = new Map<Socket, string>(); // open connections and their client address, oldest first
    const perIp = new Map<string, number>();
    const release = (ip: string) => {
      const left = (perIp.get(ip) ?? 1) - 1;
      if (left > 0) perIp.set(ip, left);
      else perIp.delete(ip);
    };
    /** Close the oldest connection (from `ip`, if given) with no request being answered; false if there is none. */
    const makeRoom = (ip: string | undefined): boolean => {
      for (const [sock, from] of open) {
        if ((ip !== undefined && from !== ip) || (sock as Socket & { _httpMessage?: unknown })._httpMessage) continue;
        open.delete(sock);
        release(from);
        refused('idle_closed_for_room', from);
        sock.destroy();
        return true;
      }
      return false;
    };
    srv.prependListener('connection', (sock: Socket) => {
      const ip = sock.remoteAddress ?? '';
      let full: MetricsRefusal | undefined;
      // Room made from this address's own connections leaves the listener's count below its cap too.
      if ((perIp.get(ip) ?? 0) >= lim.maxConnectionsPerIP) {
        if (!makeRoom(ip)) full = 'max_connections_per_ip';
      } else if (open.size >= lim.maxConnections && !makeRoom(undefined)) full = 'max_connections';
      if (full) {
        refused(full, ip);
        sock.on('error', () => {});
        return void sock.destroy();
      }
      open.set(sock, ip);
      perIp.set(ip, (perIp.get(ip) ?? 0) + 1);
      sock.once('close', () => {
        if (open.delete(sock)) release(ip);
      });
    });
    // A socket with no activity for requestTimeout (a response the client does not read), counted; node's
    // keep-alive close between requests (keepAliveTimeout + 1 s) comes here too, and is routine: not counted.
    srv.setTimeout(lim.requestTimeoutMs, (sock) => {
      if ((sock as Socket & { _httpMessage?: unknown })._httpMessage) refused('timeout', sock.remoteAddress);
      sock.destroy();
    });
    // Malformed (400), oversized (431) or timed-out (408: no whole head within headersTimeout, a silent
    // connection included) requests: node's own answer, as node writes it without a listener, and counted.
    // A reset by the client is not a refusal.
    // (node's parser may report one bad head once per chunk already read: counted once per socket.)
    const clientErrors = new WeakSet<Socket>();
    srv.on('clientError', (err: NodeJS.ErrnoException, sock: Socket) => {
      const http = sock as Socket & { _httpMessage?: { headersSent?: boolean } };
      const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
      if (err.code !== 'ECONNRESET' && !clientErrors.has(sock)) {
        clientErrors.add(sock);
        refused(status === 431 ? 'header_too_large' : status === 408 ? 'request_timeout' : 'bad_request', sock.remoteAddress);
        if (sock.writable && !http._httpMessage?.headersSent) sock.write(CLIENT_ERROR_ANSWER[status]);
      }
      sock.destroy();
    });
    return new Promise((resolve, reject) => {
      srv.once('error', reject);
      srv.listen(port, host, () => {
        srv.removeListener('error', reject);
        srv.on('error', (err) => opts.log?.error({ listener: 'metrics', err: err.message }, 'metrics listener error'));
        resolve(srv);
      });
    });
  }

  private answer(req: IncomingMessage, res: ServerResponse, source?: () => Promise<string>, routes?: ExtraRoutes): Promise<string> | undefined {
    // A request that announces a body gets no keep-alive: we never read bodies.
    if (req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined) res.shouldKeepAlive = false;
    const q = req.url?.indexOf('?') ?? -1;
    const path = q >= 0 ? req.url!.slice(0, q) : req.url;
    if (path === '/ready' && (req.method === 'GET' || req.method === 'HEAD')) {
      // Readiness for load balancers and Kubernetes probes (docs/fleet.md "GET /ready"): 200 or 503, the reason as text.
      const r = this.readyCheck?.() ?? { ready: true, reason: 'serving' };
      const body = `${r.ready ? 'ready' : 'not ready'}: ${r.reason}\n`;
      res.writeHead(r.ready ? 200 : 503, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' });
      res.end(req.method === 'HEAD' ? undefined : body);
      return undefined;
    }
    // Other pages on this listener (the dashboard, cli/dashboard.ts) answer their own paths.
    if (path !== '/metrics' && routes?.(req, res, path ?? '')) return undefined;
    if (path !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain', 'content-length': 10 }).end('not found\n');
      return undefined;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      // RFC 9110 §15.5.6: a 405 carries Allow.
      res.writeHead(405, { allow: 'GET, HEAD', 'content-length': 0 }).end();
      return undefined;
    }
    if (source) return source();
    this.sampleEventLoop('main');
    this.send(req, res, this.render());
    return undefined;
  }

  private send(req: IncomingMessage, res: ServerResponse, body: string): void {
    if (res.destroyed) return;
    res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4', 'content-length': Buffer.byteLength(body) });
    res.end(req.method === 'HEAD' ? undefined : body);
  }
}

/** Why the metrics listener refused or cut a connection (echgate_listener_refusals_total{listener="metrics"}). */
type MetricsRefusal = 'max_connections' | 'max_connections_per_ip' | 'idle_closed_for_room' | 'timeout' | 'header_too_large' | 'request_timeout' | 'bad_request';

/** node's own clientError answers (lib/_http_server.js), written as node writes them. */
const CLIENT_ERROR_ANSWER: Record<400 | 408 | 431, string> = {
  400: 'HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n',
  408: 'HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n\r\n',
  431: 'HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\n\r\n',
};

/** More paths on the metrics listener: true when the request was answered (or is being answered). */
export type ExtraRoutes = (req: IncomingMessage, res: ServerResponse, path: string) => boolean;

/** Limits of the metrics listener: a scraper needs one or two connections and answers in milliseconds. */
export interface MetricsListenerLimits {
  /** Whole request head must arrive within this. */
  headersTimeoutMs: number;
  /** Whole request must arrive within this; also the idle cut for a socket that sends nothing. */
  requestTimeoutMs: number;
  /** Idle time allowed between requests on a kept-alive connection. */
  keepAliveTimeoutMs: number;
  /** How often node checks the two timeouts above. */
  checkIntervalMs: number;
  /** Connections open at once; past it the oldest idle one is closed to make room, else the new one. */
  maxConnections: number;
  /** Connections open at once from one client address (metrics.maxConnectionsPerIP); past it as above, among that address's. */
  maxConnectionsPerIP: number;
  /** Request line + headers. */
  maxHeaderBytes: number;
}

export const METRICS_LISTENER_LIMITS: MetricsListenerLimits = {
  headersTimeoutMs: 5_000,
  requestTimeoutMs: 10_000,
  keepAliveTimeoutMs: 5_000,
  checkIntervalMs: 1_000,
  maxConnections: 16,
  // Half the slots: one client (a browser on the dashboard opens up to six) cannot take the scraper's and /ready's.
  maxConnectionsPerIP: 8,
  maxHeaderBytes: 8_192,
};

/** The listener limits the configuration sets (metrics.maxConnectionsPerIP); the rest are fixed. */
export function metricsLimits(m: { maxConnectionsPerIP?: number }): Partial<MetricsListenerLimits> {
  return m.maxConnectionsPerIP === undefined ? {} : { maxConnectionsPerIP: m.maxConnectionsPerIP };
}
