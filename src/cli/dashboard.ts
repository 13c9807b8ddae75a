/**
 * The dashboard (metrics.dashboard): a read-only web page and the JSON API
 * behind it, on the metrics listener (routes hooked into proxy/metrics.ts).
 * Page and scripts read the same /api/ answers; the page (dashboard/ at the
 * package root: plain HTML, CSS and one script, no build) polls them.
 *
 * Privacy follows the log rules (docs/ech.md "Logging and privacy"): a
 * router with requireECH matches only names sent inside ECH, so its rule is
 * shown only with log.innerSni, and its name, its service and that service's
 * servers only with log.echRoutes or log.innerSni; otherwise `(ech)`.
 * Counters come from the metrics registry, whose labels already hide ECH
 * routes; recent errors are the process's own warn/error log lines, which
 * never carry an inner SNI unless log.innerSni.
 *
 * Access: off unless configured; by default only clients on a loopback
 * address, asking for a loopback Host (a web page elsewhere cannot read it
 * through DNS rebinding); optional HTTP basic auth (RFC 7617) from a file,
 * compared in constant time.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { isIP } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Config, DashboardConfig, RouterConfig } from '../config/types.js';
import { EchgateError } from '../errors.js';
import { planRotation } from '../keys/schedule.js';
import { KeyDir, type StoredKey } from '../keys/store.js';
import { HIDDEN_ROUTE } from '../proxy/connection.js';
import type { Gateway } from '../proxy/gateway.js';
import { backendUpLabels, echOnlyRouter, echOnlyServices, healthLogPrivacy } from '../proxy/health.js';
import type { MetricsSnapshot } from '../proxy/metrics.js';
import { type PublicationState, publicationState } from './publish.js';

/** The page's files, at the package root (dist/src/cli/ → ../../../dashboard). */
export const ASSETS_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'dashboard');
const ASSETS: Record<string, [file: string, type: string]> = {
  '/': ['index.html', 'text/html; charset=utf-8'],
  '/assets/dashboard.js': ['dashboard.js', 'text/javascript; charset=utf-8'],
  '/assets/dashboard.css': ['dashboard.css', 'text/css; charset=utf-8'],
};


// ---------------------------------------------------------------- recent errors

export interface RecentError {
  time: string;
  level: 'warn' | 'error' | 'fatal';
  msg: string;
  fields: Record<string, unknown>;
}

/**
 * The last warn/error log lines, bounded twice: at most `size` kept, and at
 * most `perWindow` taken per `windowMs` (a flood of one error cannot push
 * the others out or cost more than a few parses a second); the rest counted.
 */
export class ErrorRing {
  private readonly items: RecentError[] = [];
  private windowStart = 0;
  private inWindow = 0;
  dropped = 0;
  constructor(
    readonly size = 100,
    readonly perWindow = 20,
    readonly windowMs = 10_000,
    private readonly now = Date.now,
  ) {}

  /** Take one pino JSON line if it is warn or above; cheap for the others (no parse). */
  offer(line: string): void {
    // pino writes the level first: {"level":40,...
    const m = /^\{"level":(\d+)/.exec(line);
    if (!m || Number(m[1]) < 40) return;
    const t = this.now();
    if (t - this.windowStart >= this.windowMs) {
      this.windowStart = t;
      this.inWindow = 0;
    }
    if (this.inWindow >= this.perWindow) {
      this.dropped++;
      return;
    }
    this.inWindow++;
    let o: Record<string, unknown>;
    try {
      o = JSON.parse(line);
    } catch {
      return;
    }
    const { level, time, msg, app: _a, pid: _p, hostname: _h, ...fields } = o;
    for (const [k, v] of Object.entries(fields)) if (typeof v === 'string' && v.length > 500) fields[k] = `${v.slice(0, 500)}…`;
    const n = Number(level);
    this.items.push({ time: typeof time === 'string' ? time : new Date(t).toISOString(), level: n >= 60 ? 'fatal' : n >= 50 ? 'error' : 'warn', msg: String(msg ?? '').slice(0, 500), fields });
    if (this.items.length > this.size) this.items.shift();
  }

  list(): RecentError[] {
    return [...this.items].reverse();
  }
}

/** What teeLog needs of a pino destination (SonicBoom, a test's sink). */
export interface LogDestination {
  write(s: string): unknown;
  flush?(cb?: (err?: Error) => void): void;
  flushSync?(): void;
}

/** A pino destination that writes to `dest` and shows warn/error lines to `ring`. */
export function teeLog(dest: LogDestination, ring: ErrorRing): NodeJS.WritableStream {
  const tee: LogDestination = {
    write(s: string) {
      ring.offer(s);
      return dest.write(s);
    },
    flush: (cb) => (dest.flush ? dest.flush(cb) : cb?.()),
    flushSync: () => dest.flushSync?.(),
  };
  return tee as unknown as NodeJS.WritableStream;
}

// ---------------------------------------------------------------- counters

/** `a="x",b="y"` (proxy/metrics.ts labelKey) → {a: 'x', b: 'y'}. */
export function parseLabels(key: string): Record<string, string> {
  const out: Record<string, string> = {};
  const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
  for (let m = re.exec(key); m; m = re.exec(key)) out[m[1]!] = m[2]!.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
  return out;
}

/** The series of one metric summed by one label. */
function sumBy(series: [string, number][] | undefined, label: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of series ?? []) {
    const l = parseLabels(k)[label] ?? '';
    out[l] = (out[l] ?? 0) + v;
  }
  return out;
}

const total = (r: Record<string, number>) => Object.values(r).reduce((a, b) => a + b, 0);

interface Sample {
  at: number;
  connections: Record<string, number>;
  alerts: Record<string, number>;
  dns: number;
  /** A process group: each worker's connections total, by worker number. */
  perWorker: Record<number, number>;
}

export interface Counters {
  at: string;
  /** Rates are over the last `windowS` seconds (up to 10). */
  windowS: number;
  open: number;
  connections: { total: number; byOutcome: Record<string, number>; perSecond: number; perSecondByOutcome: Record<string, number> };
  /** echgate_ech_total by result: accepted, rejected (a current key that failed to decrypt), stale (a recently retired key's config_id), grease, malformed, accepted_on_passthrough. */
  ech: { accepted: number; rejected: number; grease: number; malformed: number; [result: string]: number };
  /** echgate_peek_failures_total by reason. */
  handshakeFailures: Record<string, number>;
  /** echgate_tls_alerts_sent_total by alert: the fatal alerts echgate sent (RFC 8446 §6.2 names), total and per second. */
  handshakeFailuresByAlert: Record<string, number>;
  handshakeFailuresByAlertPerSecond: Record<string, number>;
  /** A process group (workers > 1): workers running, how many answered for this view, and each worker's own counts. */
  workers?: { running: number; answered: number; each?: WorkerCounters[] };
  dnsQueries: { total: number; perSecond: number; byTransport: Record<string, number>; byRcode: Record<string, number> };
}

/** One worker of a process group, from its own registry (the group's figures are their sum plus the workers gone). */
export interface WorkerCounters {
  worker: number;
  /** false: it did not answer this time; its figures are from its last answer. */
  answered: boolean;
  connections: number;
  connectionsPerSecond: number;
  open: number;
  /** Its connections that ended relayed (the handshake, if any, succeeded and the backend was reached). */
  relayed: number;
  /** echgate_peek_failures_total: every failed handshake, any reason. */
  handshakeFailures: number;
  /** echgate_tls_alerts_sent_total by alert. */
  alerts: Record<string, number>;
  /** Warn and error lines in its recent-errors ring (and how many its rate limit dropped). */
  errors: number;
  errorsDropped: number;
}

/** What a group's primary knows of one worker for the dashboard (cli/workers.ts). */
export interface WorkerView {
  worker: number;
  answered: boolean;
  snapshot?: MetricsSnapshot;
  errors: number;
  dropped: number;
}

// ---------------------------------------------------------------- the dashboard

/**
 * Everything the dashboard shows, at one moment. One process builds it from
 * its own state (localView); the primary of a process group gathers it from
 * the workers over IPC (cli/workers.ts): metrics summed as /metrics sums them,
 * errors merged, the configuration the workers run.
 */
export interface DashboardView {
  /** The configuration in use (changes with reloads). */
  config: Config;
  snapshot: MetricsSnapshot;
  /** Bound entrypoint addresses by name. */
  addresses: Map<string, { host: string; port: number }>;
  /** The embedded DNS's bound port, if it runs. */
  dnsPort?: number;
  /** Recent warn/error lines, newest first, and how many the rate limit dropped. */
  errors: RecentError[];
  dropped: number;
  publication: PublicationState;
  /** A process group: workers running, and how many answered. */
  workers?: { running: number; answered: number };
  /** A process group: each live worker on its own. */
  perWorker?: WorkerView[];
}

/** The view of one process: its gateway, its configuration, its error ring. */
export function localView(o: { gateway: Gateway; config: () => Config; errors: ErrorRing; dnsPort?: () => number | undefined; publication?: PublicationState }): () => DashboardView {
  return () => ({
    config: o.config(),
    snapshot: o.gateway.metrics.snapshot(),
    addresses: o.gateway.addresses(),
    dnsPort: o.dnsPort?.(),
    errors: o.errors.list(),
    dropped: o.errors.dropped,
    publication: o.publication ?? publicationState,
  });
}

export interface DashboardSources {
  /** What to show now: synchronous in one process; a process group's primary gathers it (a promise). */
  view: () => DashboardView | Promise<DashboardView>;
  /** metrics.dashboard at start (undefined: off until a reload turns it on). */
  settings: DashboardConfig | undefined;
  startedAt?: number;
  now?: () => number;
}

/** The access settings in force: prepared (auth file read) before a reload commits. */
interface Access {
  on: boolean;
  remote: boolean;
  expected?: Buffer;
}

const KEM: Record<number, string> = { 16: 'DHKEM(P-256, HKDF-SHA256)', 32: 'DHKEM(X25519, HKDF-SHA256)', 33: 'DHKEM(X448, HKDF-SHA512)' };
const KDF: Record<number, string> = { 1: 'HKDF-SHA256', 2: 'HKDF-SHA384', 3: 'HKDF-SHA512' };
const AEAD: Record<number, string> = { 1: 'AES-128-GCM', 2: 'AES-256-GCM', 3: 'ChaCha20Poly1305' };
const hex = (n: number) => `0x${n.toString(16).padStart(4, '0')}`;

export function tlsMode(r: RouterConfig): 'none' | 'passthrough' | 'split' | 'terminate' {
  if (!r.tls) return 'none';
  if (r.tls.passthrough) return r.tls.echSplit ? 'split' : 'passthrough';
  return 'terminate';
}

function isLoopback(addr: string | undefined): boolean {
  if (!addr) return false;
  const a = addr.startsWith('::ffff:') ? addr.slice(7) : addr;
  return a === '::1' || (isIP(a) === 4 && a.startsWith('127.'));
}

/** A Host header naming this machine's loopback: localhost, 127.x.y.z or [::1], with any port. */
function isLoopbackHost(host: string | undefined): boolean {
  if (!host) return false;
  const h = host.startsWith('[') ? host.slice(1, host.indexOf(']')) : host.replace(/:\d+$/, '');
  return h.toLowerCase() === 'localhost' || isLoopback(h);
}

/** One `user:password` line (RFC 7617 user-id may not contain ':'). */
export function readBasicAuthFile(file: string): { user: string; pass: string } {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new EchgateError('ERR_CONFIG', `metrics.dashboard.basicAuthFile: cannot read ${file}: ${(e as Error).message}`);
  }
  const line = text.split('\n').find((l) => l.trim() !== '' && !l.startsWith('#'))?.replace(/\r$/, '');
  const i = line?.indexOf(':') ?? -1;
  if (!line || i < 1 || i === line.length - 1) throw new EchgateError('ERR_CONFIG', `metrics.dashboard.basicAuthFile: ${file} must hold one user:password line`);
  return { user: line.slice(0, i), pass: line.slice(i + 1) };
}

const digest = (s: string | Buffer) => createHash('sha256').update(s).digest();

function authorized(h: string | undefined, expected: Buffer): boolean {
  const m = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(h ?? '');
  const given = digest(m ? Buffer.from(m[1]!, 'base64') : Buffer.alloc(0));
  return timingSafeEqual(given, expected);
}

/**
 * metrics.dashboard → the access rules in force. Reads the basic-auth file
 * now: an unreadable or malformed file throws ERR_CONFIG, so a reload that
 * names one is refused before anything changes (docs/dashboard.md "Reload").
 */
export function dashboardAccess(d: DashboardConfig | undefined): Access {
  if (!d) return { on: false, remote: false };
  // The expected credentials as a digest: every comparison is between two 32-byte values (no length leak).
  if (d.basicAuthFile) {
    const { user, pass } = readBasicAuthFile(d.basicAuthFile);
    return { on: true, remote: d.remote === true, expected: digest(`${user}:${pass}`) };
  }
  return { on: true, remote: d.remote === true };
}

export class Dashboard {
  private readonly samples: Sample[] = [];
  private readonly timer: NodeJS.Timeout;
  private access: Access;
  private readonly now: () => number;
  private readonly startedAt: number;
  private keysCache?: { at: number; dir: string; keys: StoredKey[]; problems: { file: string; message: string }[]; error?: string };
  private lastRequest = 0;
  /** Set by the first view that came back as a promise (a process group). */
  private isRemoteView = false;

  constructor(private readonly src: DashboardSources) {
    this.access = dashboardAccess(src.settings);
    this.now = src.now ?? Date.now;
    this.startedAt = src.startedAt ?? this.now();
    void this.sample();
    // One sample a second, 11 kept: the rates of the last 10 s.
    this.timer = setInterval(() => void this.sample(), 1000);
    this.timer.unref();
  }

  /** Whether the page and /api/ are served now. */
  get enabled(): boolean {
    return this.access.on;
  }

  /**
   * A reload's metrics.dashboard, checked now (the auth file read: a bad one
   * throws and the reload is refused), put in force by the returned commit.
   */
  prepare(d: DashboardConfig | undefined): { commit(): void; change: string | undefined } {
    const next = dashboardAccess(d);
    const cur = this.access;
    const change =
      next.on !== cur.on
        ? next.on
          ? 'dashboard turned on'
          : 'dashboard turned off'
        : next.on && (next.remote !== cur.remote || !(next.expected && cur.expected ? next.expected.equals(cur.expected) : next.expected === cur.expected))
          ? 'dashboard access changed'
          : undefined;
    return {
      change,
      commit: () => {
        this.access = next;
      },
    };
  }

  close(): void {
    clearInterval(this.timer);
  }

  /** The view now; a group's primary asks its workers for it (the page polls once a second). */
  private async fresh(): Promise<DashboardView> {
    const r = this.src.view();
    if (r instanceof Promise) this.isRemoteView = true;
    return r instanceof Promise ? await r : r;
  }

  private async sample(): Promise<void> {
    if (!this.access.on) return;
    // A process group's view costs every worker an IPC answer: sample only while someone reads the page.
    if (this.isRemoteView && this.samples.length > 0 && this.now() - this.lastRequest > 30_000) return;
    let v: DashboardView;
    try {
      v = await this.fresh();
    } catch {
      return;
    }
    const snap = v.snapshot;
    this.samples.push({
      at: this.now(),
      connections: sumBy(snap.counters.echgate_connections_total, 'outcome'),
      alerts: sumBy(snap.counters.echgate_tls_alerts_sent_total, 'alert'),
      dns: total(sumBy(snap.counters.echgate_dns_queries_total, 'transport')),
      perWorker: Object.fromEntries((v.perWorker ?? []).map((w) => [w.worker, w.snapshot ? total(sumBy(w.snapshot.counters.echgate_connections_total, 'outcome')) : 0])),
    });
    if (this.samples.length > 11) this.samples.shift();
  }

  /** The metrics listener's route hook: true when this request is the dashboard's (answered now or once the view is in). */
  readonly routes = (req: IncomingMessage, res: ServerResponse, path: string): boolean => {
    const acc = this.access;
    if (!acc.on) return false;
    const asset = ASSETS[path === '/index.html' ? '/' : path];
    const api = path.startsWith('/api/') ? this.api(path.slice(5)) : undefined;
    if (!asset && !api) return false;
    const head = { 'cache-control': 'no-store', 'x-content-type-options': 'nosniff', 'referrer-policy': 'no-referrer', 'x-frame-options': 'DENY' };
    const deny = (code: number, extra: Record<string, string> = {}) => {
      res.writeHead(code, { ...head, ...extra, 'content-length': 0 }).end();
      return true;
    };
    if (!acc.remote && (!isLoopback(req.socket.remoteAddress) || !isLoopbackHost(req.headers.host))) return deny(403);
    if (req.method !== 'GET' && req.method !== 'HEAD') return deny(405, { allow: 'GET, HEAD' });
    if (acc.expected && !authorized(req.headers.authorization, acc.expected)) return deny(401, { 'www-authenticate': 'Basic realm="echgate", charset="UTF-8"' });
    const send = (body: Buffer, type: string) => {
      if (res.destroyed) return;
      res.writeHead(200, {
        ...head,
        'content-type': type,
        'content-length': body.length,
        // Only this origin's script and style; nothing inline, no frames, no other connections.
        'content-security-policy': "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
      });
      res.end(req.method === 'HEAD' ? undefined : body);
    };
    if (asset) {
      send(readFileSync(join(ASSETS_DIR, asset[0])), asset[1]);
      return true;
    }
    this.lastRequest = this.now();
    this.fresh().then(
      (v) => send(Buffer.from(`${JSON.stringify(api!(v), null, 1)}\n`), 'application/json'),
      () => {
        if (!res.headersSent) res.writeHead(503, { ...head, 'content-length': 0 }).end();
      },
    );
    return true;
  };

  private api(name: string): ((v: DashboardView) => unknown) | undefined {
    const table: Record<string, (v: DashboardView) => unknown> = {
      overview: (v) => this.overview(v),
      entrypoints: (v) => this.entrypoints(v),
      routers: (v) => this.routers(v),
      services: (v) => this.services(v),
      keys: (v) => this.keys(v),
      dns: (v) => this.dns(v),
      counters: (v) => this.counters(v),
      errors: (v) => ({ dropped: v.dropped, errors: v.errors }),
    };
    return Object.hasOwn(table, name) ? table[name] : undefined;
  }

  // ---- the answers

  private privacy(v: DashboardView) {
    const cfg = v.config;
    const names = cfg.log.echRoutes || cfg.log.innerSni;
    // Routers on an echBackend entrypoint are hidden as requireECH ones are (echOnlyRouter, proxy/health.ts); their services with them.
    return { cfg, names, rules: cfg.log.innerSni, hidden: (r: RouterConfig) => echOnlyRouter(cfg, r), hiddenServices: names ? new Set<string>() : echOnlyServices(cfg) };
  }

  overview(v: DashboardView) {
    const { cfg } = this.privacy(v);
    const k = this.keys(v);
    return {
      startedAt: new Date(this.startedAt).toISOString(),
      uptimeS: Math.round((this.now() - this.startedAt) / 1000),
      entrypoints: cfg.entryPoints.size,
      routers: cfg.routers.length,
      services: cfg.services.size,
      keys: { active: k.keys.filter((x) => x.state === 'active').length, total: k.keys.length, nextRotation: k.nextRotation },
      counters: this.counters(v),
      errors: v.errors.length,
    };
  }

  entrypoints(v: DashboardView) {
    const cfg = v.config;
    const bound = v.addresses;
    const open = sumBy(v.snapshot.gauges.echgate_open_connections, 'entrypoint');
    return [...cfg.entryPoints.values()].map((ep) => {
      const a = bound.get(ep.name);
      return { name: ep.name, address: a ? `${a.host}:${a.port}` : `${ep.host}:${ep.port}`, echBackend: ep.echBackend, maxConnections: ep.maxConnections, open: open[ep.name] ?? 0 };
    });
  }

  routers(v: DashboardView) {
    const { cfg, names, rules, hidden: isHidden } = this.privacy(v);
    return cfg.routers.map((r) => {
      const hidden = isHidden(r);
      return {
        name: hidden && !names ? HIDDEN_ROUTE : r.name,
        entryPoints: r.entryPoints,
        rule: hidden && !rules ? HIDDEN_ROUTE : r.rule,
        service: hidden && !names ? HIDDEN_ROUTE : r.service,
        tls: tlsMode(r),
        requireECH: r.requireECH,
        priority: r.priority ?? null,
        middlewares: hidden && !names ? [] : r.middlewares.map((m) => m.name),
      };
    });
  }

  services(v: DashboardView) {
    const { cfg, hiddenServices } = this.privacy(v);
    const up = v.snapshot.gauges.echgate_backend_up ?? [];
    const health = new Map<string, number>();
    // A process group's gauges are summed over the workers: up where any worker's check says up.
    for (const [k, n] of up) {
      const l = parseLabels(k);
      health.set(`${l.service}\u0000${l.server}`, n);
    }
    // The gauge's labels for each server (ECH-only services are "(ech)#N" there unless log.echRoutes).
    const labels = backendUpLabels(cfg.services, healthLogPrivacy(cfg).metricsHidden ?? new Set());
    return [...cfg.services.values()].map((s) => {
      const hidden = hiddenServices.has(s.name);
      const name = hidden ? HIDDEN_ROUTE : s.name;
      if (s.kind === 'weighted') return { name, kind: 'weighted', services: s.services.map((c) => ({ name: hiddenServices.has(c.name) ? HIDDEN_ROUTE : c.name, weight: c.weight })) };
      const servers = s.servers.map((sv, i) => {
        const l = labels.get(s.name)?.[i];
        const h = l && health.get(`${l.service}\u0000${l.server}`);
        return { address: hidden ? HIDDEN_ROUTE : `${sv.host}:${sv.port}`, health: !s.healthCheck || h === undefined ? 'unchecked' : h > 0 ? 'up' : 'down' };
      });
      return { name, kind: 'loadBalancer', healthCheck: s.healthCheck !== undefined, up: servers.filter((x) => x.health !== 'down').length, servers };
    });
  }

  private loadKeys(dir: string) {
    // Read at most once a second (the page polls; the folder changes rarely).
    const t = this.now();
    if (this.keysCache && this.keysCache.dir === dir && t - this.keysCache.at < 1000) return this.keysCache;
    try {
      const r = new KeyDir(dir).load();
      this.keysCache = { at: t, dir, keys: r.keys, problems: r.problems };
    } catch (e) {
      this.keysCache = { at: t, dir, keys: [], problems: [], error: (e as Error).message };
    }
    return this.keysCache;
  }

  keys(v: DashboardView) {
    const cfg = v.config;
    if (!cfg.ech) return { keysDir: null, rotation: null, nextRotation: null, keys: [] as { state: string }[], problems: [] };
    const dir = resolve(cfg.ech.keysDir);
    const r = this.loadKeys(dir);
    const t = this.now();
    const rot = cfg.ech.rotation;
    // The scheduler's own next date (a retry after a failure included), else the plan from the metadata.
    const gauge = v.snapshot.gauges.echgate_key_rotation_next_timestamp_seconds?.[0]?.[1];
    let next: number | undefined;
    if (rot) next = gauge !== undefined && Number.isFinite(gauge) ? gauge * 1000 : planRotation(r.keys.map((k) => k.meta), t, { everyMs: rot.everyMs, publicName: rot.publicName }).rotateAt;
    const since = (iso: string | undefined) => (iso && Number.isFinite(Date.parse(iso)) ? Math.max(0, Math.round((t - Date.parse(iso)) / 1000)) : null);
    return {
      keysDir: dir,
      error: r.error ?? null,
      rotation: rot ? { everyS: rot.everyMs / 1000, graceS: rot.graceMs / 1000, publish: rot.publish === 'embedded' ? 'embedded' : rot.publish.name } : null,
      nextRotation: next === undefined ? null : new Date(next).toISOString(),
      keys: r.keys
        .map((k) => ({
          configId: k.meta.configId,
          publicName: k.meta.publicName,
          state: k.meta.state,
          suite: k.config ? { kem: KEM[k.config.kemId] ?? hex(k.config.kemId), symmetric: k.config.cipherSuites.map((c) => `${KDF[c.kdfId] ?? hex(c.kdfId)} / ${AEAD[c.aeadId] ?? hex(c.aeadId)}`) } : null,
          created: k.meta.created,
          ageS: since(k.meta.created),
          activated: k.meta.activated ?? null,
          notAfter: k.meta.notAfter ?? null,
        }))
        .sort((a, b) => a.configId - b.configId),
      problems: r.problems.map((p) => ({ file: p.file, message: p.message })),
    };
  }

  dns(v: DashboardView) {
    const cfg = v.config;
    const pub = v.publication;
    const rot = cfg.ech?.rotation;
    const mode = rot ? (rot.publish === 'embedded' ? 'embedded' : 'rfc2136') : cfg.dns ? 'embedded' : 'none';
    return {
      mode,
      embedded: cfg.dns
        ? { port: v.dnsPort ?? cfg.dns.listen?.port ?? null, doh: cfg.dns.doh ? `https://${cfg.dns.doh.host}:${cfg.dns.doh.port}${cfg.dns.doh.path}` : null, ttl: cfg.dns.ttl, names: Object.keys(cfg.dns.names) }
        : null,
      target: rot && rot.publish !== 'embedded' ? { name: rot.publish.name, server: `${rot.publish.server.host}:${rot.publish.server.port}`, verifyDoh: rot.publish.verifyDoh ?? null } : null,
      lastPublish: pub.publish ?? null,
      lastReadBack: pub.readBack ?? null,
    };
  }

  counters(v: DashboardView): Counters {
    const snap: MetricsSnapshot = v.snapshot;
    const byOutcome = sumBy(snap.counters.echgate_connections_total, 'outcome');
    const dnsByTransport = sumBy(snap.counters.echgate_dns_queries_total, 'transport');
    const ech = sumBy(snap.counters.echgate_ech_total, 'result');
    const first = this.samples[0];
    const t = this.now();
    const dt = first ? (t - first.at) / 1000 : 0;
    const rate = (now: number, then: number) => (dt > 0 ? Math.max(0, (now - then) / dt) : 0);
    const perSecondByOutcome: Record<string, number> = {};
    for (const [o, n] of Object.entries(byOutcome)) perSecondByOutcome[o] = Math.round(rate(n, first?.connections[o] ?? 0) * 100) / 100;
    const byAlert = sumBy(snap.counters.echgate_tls_alerts_sent_total, 'alert');
    const perSecondByAlert: Record<string, number> = {};
    for (const [a, n] of Object.entries(byAlert)) perSecondByAlert[a] = Math.round(rate(n, first?.alerts[a] ?? 0) * 100) / 100;
    const dnsTotal = total(dnsByTransport);
    return {
      at: new Date(t).toISOString(),
      windowS: Math.round(dt * 10) / 10,
      open: total(sumBy(snap.gauges.echgate_open_connections, 'entrypoint')),
      connections: {
        total: total(byOutcome),
        byOutcome,
        perSecond: Math.round(rate(total(byOutcome), first ? total(first.connections) : 0) * 100) / 100,
        perSecondByOutcome,
      },
      ech: { accepted: 0, rejected: 0, grease: 0, malformed: 0, ...ech },
      handshakeFailures: sumBy(snap.counters.echgate_peek_failures_total, 'reason'),
      handshakeFailuresByAlert: byAlert,
      handshakeFailuresByAlertPerSecond: perSecondByAlert,
      ...(v.workers ? { workers: { ...v.workers, ...(v.perWorker ? { each: v.perWorker.map((w) => this.workerCounters(w, rate, first)) } : {}) } } : {}),
      dnsQueries: { total: dnsTotal, perSecond: Math.round(rate(dnsTotal, first?.dns ?? 0) * 100) / 100, byTransport: dnsByTransport, byRcode: sumBy(snap.counters.echgate_dns_queries_total, 'rcode') },
    };
  }

  private workerCounters(w: WorkerView, rate: (now: number, then: number) => number, first: Sample | undefined): WorkerCounters {
    const snap = w.snapshot;
    const byOutcome = snap ? sumBy(snap.counters.echgate_connections_total, 'outcome') : {};
    const conns = total(byOutcome);
    return {
      worker: w.worker,
      answered: w.answered,
      connections: conns,
      connectionsPerSecond: Math.round(rate(conns, first?.perWorker[w.worker] ?? conns) * 100) / 100,
      open: snap ? total(sumBy(snap.gauges.echgate_open_connections, 'entrypoint')) : 0,
      relayed: byOutcome.relayed ?? 0,
      handshakeFailures: snap ? total(sumBy(snap.counters.echgate_peek_failures_total, 'reason')) : 0,
      alerts: snap ? sumBy(snap.counters.echgate_tls_alerts_sent_total, 'alert') : {},
      errors: w.errors,
      errorsDropped: w.dropped,
    };
  }
}
