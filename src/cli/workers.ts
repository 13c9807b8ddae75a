/**
 * The process group behind `workers: N` (N > 1): one primary process that
 * accepts nothing itself, and N node:cluster workers that each run the whole
 * `serve` body (entrypoints, ECH keyring, embedded DNS) on listening sockets
 * they share. The primary owns: forking, restarting a worker that died (with
 * backoff), relaying SIGHUP, draining everything on SIGTERM/SIGINT, and the one
 * /metrics listener that sums the workers' registries, fetched over the
 * cluster IPC channel at scrape time.
 *
 * Scheduling (docs/benchmarks.md, "Processes"): by default the kernel hands
 * connections to the workers (cluster.SCHED_NONE: every worker accepts on the
 * one shared socket); ECHGATE_CLUSTER_SCHED=rr selects node's round-robin in
 * the primary (SCHED_RR), which spreads evenly but costs the primary an accept
 * and a descriptor pass per connection.
 */
import cluster, { type Worker } from 'node:cluster';
import { POLL_MS, watchPath } from '../keys/watch.js';
import type { Server } from 'node:http';
import type { Logger } from 'pino';
import type { Config } from '../config/types.js';
import { isEchgateError } from '../errors.js';
import { Metrics, type MetricsSnapshot, metricsLimits, watchEventLoop } from '../proxy/metrics.js';
import { loadConfigFile } from './config-file.js';
import { workerExecArgv } from './heap-floor.js';
import { Dashboard, type DashboardView, type ErrorRing, type RecentError } from './dashboard.js';
import type { PublicationState } from './publish.js';

/** Messages on the cluster IPC channel; `echgate` tags them apart from node's own. */
type ToWorker = { echgate: 'metrics' | 'dashboard'; id: number };
type ToPrimary = { echgate: 'ready' } | { echgate: 'metrics'; id: number; snapshot: MetricsSnapshot } | { echgate: 'dashboard'; id: number; view: DashboardView; snapshot: MetricsSnapshot };

/** How long a scrape waits for the workers' registries. */
const SCRAPE_TIMEOUT_MS = 2_000;
/**
 * A worker that ran at least this long before dying restarts at the first
 * backoff step again. ECHGATE_WORKER_STABLE_MS overrides it for tests only (a
 * loaded test machine can take longer than 10 s between two deaths the test
 * means as quick; not a configuration setting).
 */
const STABLE_AFTER_MS = Number(process.env.ECHGATE_WORKER_STABLE_MS) > 0 ? Number(process.env.ECHGATE_WORKER_STABLE_MS) : 10_000;
/** Restart delays: 250 ms doubling per consecutive quick death, at most 10 s. */
export function restartDelayMs(quickDeaths: number): number {
  return Math.min(10_000, 250 * 2 ** Math.max(0, quickDeaths - 1));
}

export const isWorker = (): boolean => cluster.isWorker;

/**
 * Whether this process runs the automatic key rotation (ech.rotation): a
 * single process, or the worker in slot 1 of a group (its replacement after a
 * crash takes the slot over). Rotation is derived from the key folder's
 * metadata under the folder lock, so a second rotator for a moment would find
 * nothing due rather than rotate twice.
 */
export const runsRotation = (): boolean => !cluster.isWorker || process.env.ECHGATE_WORKER === '1';

/**
 * Worker side, called by `serve` once its listeners are up: tell the primary,
 * and answer its metrics requests with this process's registry.
 */
export function joinGroup(metrics: Metrics, view?: () => DashboardView): void {
  if (!cluster.isWorker || !process.send) return;
  watchEventLoop();
  process.on('message', (m: ToWorker) => {
    if (m?.echgate === 'dashboard' && view) {
      // The dashboard's view of this worker (cli/dashboard.ts): plain data, structured-cloned over IPC.
      const v = view();
      try {
        process.send?.({ echgate: 'dashboard', id: m.id, view: v, snapshot: v.snapshot } satisfies ToPrimary);
      } catch {
        // Something in the view that cannot be cloned must not end the worker: the registry alone, as for /metrics.
        process.send?.({ echgate: 'metrics', id: m.id, snapshot: v.snapshot } satisfies ToPrimary);
      }
      return;
    }
    if (m?.echgate !== 'metrics') return;
    metrics.sampleEventLoop(`worker-${cluster.worker?.id ?? process.pid}`);
    process.send?.({ echgate: 'metrics', id: m.id, snapshot: metrics.snapshot() } satisfies ToPrimary);
  });
  process.send({ echgate: 'ready' } satisfies ToPrimary);
}

/** Worker side, after `serve` returned (drained): drop the IPC channel so the process can end. */
export function leaveGroup(): void {
  if (cluster.isWorker && process.connected) process.disconnect();
}

interface Slot {
  n: number;
  worker?: Worker;
  startedAt: number;
  quickDeaths: number;
  ready: boolean;
  timer?: NodeJS.Timeout;
  /** Last registry this worker sent (its counters survive its death). */
  last?: MetricsSnapshot;
  /** Last dashboard view this worker sent. */
  view?: DashboardView;
}

/**
 * Primary side of `serve` with workers > 1. Resolves with the exit code once
 * every worker has exited after SIGTERM/SIGINT (0), or at once (1) when the
 * first start of a worker fails (a port in use, ...): a start that cannot work
 * is not retried in a loop.
 */
export async function runPrimary(file: string, cfg: Config, log: Logger, errors?: ErrorRing): Promise<number> {
  const sched = process.env.ECHGATE_CLUSTER_SCHED;
  cluster.schedulingPolicy = sched === 'rr' ? cluster.SCHED_RR : cluster.SCHED_NONE;
  // 'advanced' (structured clone): the dashboard's view carries Maps (the configuration, the bound addresses).
  // Each worker relays and terminates, so each gets the V8 heap floor (cli/heap-floor.ts) even when the primary was started without it.
  cluster.setupPrimary({ exec: process.argv[1], args: process.argv.slice(2), execArgv: workerExecArgv(process.execArgv), serialization: 'advanced' });
  const own = new Metrics();
  // Counts of workers that died, kept so the group's counters never go backwards.
  const retired = new Metrics();
  const slots: Slot[] = [];
  let stopping = false;
  let started = false;
  let finish: (code: number) => void = () => {};
  const done = new Promise<number>((r) => {
    finish = r;
  });
  const live = () => slots.filter((s) => s.worker && !s.worker.isDead());

  const fork = (slot: Slot) => {
    slot.ready = false;
    slot.startedAt = Date.now();
    const w = cluster.fork({ ECHGATE_WORKER: String(slot.n) });
    slot.worker = w;
    w.on('message', (m: ToPrimary) => {
      if (m?.echgate === 'ready') {
        slot.ready = true;
        log.info({ worker: slot.n, pid: w.process.pid }, 'worker ready');
        if (!started && slots.every((s) => s.ready)) {
          started = true;
          log.info({ workers: slots.length, scheduling: sched === 'rr' ? 'rr' : 'kernel' }, 'all workers ready');
          // /metrics opens once every worker listens, as a single process opens it after its entrypoints.
          if (cfg.metrics && !stopping) {
            dashboard = new Dashboard({ view: gatherView, settings: cfg.metrics.dashboard });
            own.serve(cfg.metrics.host, cfg.metrics.port, { log, limits: metricsLimits(cfg.metrics), source: gather, routes: dashboard.routes }).then(
              (srv) => {
                metricsSrv = srv;
                if (stopping) srv.close();
              },
              (e) => {
                log.error({ listener: 'metrics', err: (e as Error).message }, 'metrics listener cannot start; stopping the group');
                stopAll('startup failure', 1);
              },
            );
          }
        }
      } else if (m?.echgate === 'metrics' || m?.echgate === 'dashboard') {
        slot.last = m.snapshot;
        if (m.echgate === 'dashboard') slot.view = m.view;
        pending.get(m.id)?.(slot);
      }
    });
    w.on('exit', (code, signal) => {
      if (slot.worker !== w) return;
      slot.worker = undefined;
      // The dead worker's counters stay in the sums; its open connections do not.
      if (slot.last) retired.merge(slot.last, { gauges: false });
      slot.last = undefined;
      slot.view = undefined;
      if (stopping) {
        if (live().length === 0) finish(0);
        return;
      }
      const reason = signal ?? `exit ${code}`;
      if (!started) {
        // A worker that cannot start (port in use, unreadable key folder) will not start on a retry either.
        log.error({ worker: slot.n, pid: w.process.pid, reason }, 'worker failed to start; stopping the group');
        stopAll('startup failure', 1);
        return;
      }
      own.workerRestarts.inc({ reason });
      slot.quickDeaths = Date.now() - slot.startedAt < STABLE_AFTER_MS ? slot.quickDeaths + 1 : 1;
      const delay = restartDelayMs(slot.quickDeaths);
      log.error({ worker: slot.n, pid: w.process.pid, reason, restartInMs: delay }, 'worker died; restarting it, the others keep serving');
      slot.timer = setTimeout(() => {
        if (!stopping) fork(slot);
      }, delay);
    });
  };

  let metricsSrv: Server | undefined;
  let exitCode = 0;
  const stopAll = (why: string, code = 0) => {
    if (stopping) return;
    stopping = true;
    exitCode = code;
    log.info({ signal: why, workers: live().length }, 'shutting down: every worker drains its open connections');
    watcherStop();
    dashboard?.close();
    metricsSrv?.close();
    for (const s of slots) clearTimeout(s.timer);
    const alive = live();
    if (alive.length === 0) finish(0);
    for (const s of alive) s.worker!.process.kill('SIGTERM');
  };

  // /metrics: one listener for the group, the sum of every worker's registry.
  let nextId = 1;
  const pending = new Map<number, (s: Slot) => void>();
  /** Ask every live worker; resolves when all answered or after SCRAPE_TIMEOUT_MS. */
  const ask = async (kind: ToWorker['echgate']) => {
    const id = nextId++;
    const asked = live();
    const answered = new Set<Slot>();
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, SCRAPE_TIMEOUT_MS);
      pending.set(id, (s) => {
        answered.add(s);
        if (answered.size >= asked.length) {
          clearTimeout(timer);
          resolve();
        }
      });
      for (const s of asked) {
        try {
          s.worker!.send({ echgate: kind, id } satisfies ToWorker);
        } catch {
          // a worker exiting right now; it is counted as not answering
        }
      }
      if (asked.length === 0) {
        clearTimeout(timer);
        resolve();
      }
    });
    pending.delete(id);
    return { asked, answered };
  };
  /** The group's registry: the dead workers' counts, the primary's own, every live worker's last registry. */
  const sumOf = (asked: Slot[], answered: Set<Slot>): Metrics => {
    const sum = new Metrics();
    sum.merge(retired.snapshot());
    own.sampleEventLoop('primary');
    sum.merge(own.snapshot());
    // A worker that did not answer in time contributes its previous registry.
    for (const s of asked) {
      if (!s.last) continue;
      sum.merge(s.last, { gauges: answered.has(s) });
      let conns = 0;
      for (const [, v] of s.last.counters[sum.connections.name] ?? []) conns += v;
      sum.workerConnections.inc({ worker: String(s.n) }, conns);
    }
    sum.workers.inc({ state: 'running' }, asked.length);
    sum.workers.inc({ state: 'answered_scrape' }, answered.size);
    return sum;
  };
  const gather = async (): Promise<string> => {
    const { asked, answered } = await ask('metrics');
    return sumOf(asked, answered).render();
  };

  /**
   * The dashboard of a process group (docs/dashboard.md "Process groups"):
   * counters and health summed like /metrics; routers, services and addresses
   * as the lowest-numbered answering worker runs them (every worker applies
   * the same file); recent errors of the primary and every worker, merged,
   * each tagged with its worker; the newest publication any worker made.
   */
  let dashboard: Dashboard | undefined;
  const gatherView = async (): Promise<DashboardView> => {
    const { asked, answered } = await ask('dashboard');
    const snapshot = sumOf(asked, answered).snapshot();
    const views = asked.filter((s) => s.view).sort((a, b) => a.n - b.n);
    const first = views[0]?.view;
    const errs: RecentError[] = [...(errors?.list() ?? []).map((e) => ({ ...e, fields: { ...e.fields, process: 'primary' } }))];
    for (const s of views) for (const e of s.view!.errors) errs.push({ ...e, fields: { ...e.fields, worker: s.n } });
    errs.sort((a, b) => (a.time < b.time ? 1 : a.time > b.time ? -1 : 0));
    const newest = <K extends keyof PublicationState>(k: K): PublicationState[K] =>
      views.map((s) => s.view!.publication[k]).reduce<PublicationState[K]>((a, b) => (b && (!a || b.at > a.at) ? b : a), undefined);
    return {
      config: first?.config ?? cfg,
      snapshot,
      addresses: first?.addresses ?? new Map(),
      dnsPort: first?.dnsPort,
      errors: errs.slice(0, errors?.size ?? 100),
      dropped: (errors?.dropped ?? 0) + views.reduce((n, s) => n + s.view!.dropped, 0),
      publication: { publish: newest('publish'), readBack: newest('readBack') },
      workers: { running: asked.length, answered: answered.size },
      // Each worker on its own (its last registry: a worker that did not answer shows its previous figures).
      perWorker: [...asked].sort((a, b) => a.n - b.n).map((s) => ({ worker: s.n, answered: answered.has(s), snapshot: s.last, errors: s.view?.errors.length ?? 0, dropped: s.view?.dropped ?? 0 })),
    };
  };
  /** metrics.dashboard from the file: the primary applies it itself (the workers apply everything else). */
  const applyDashboard = (next: Config, why: string) => {
    if (!dashboard) return;
    try {
      const p = dashboard.prepare(next.metrics?.dashboard);
      p.commit();
      if (p.change) log.info({ file, why }, `configuration reloaded: ${p.change}`);
    } catch (e) {
      log.error({ file, why, err: isEchgateError(e) ? e.message : String(e) }, 'reload of metrics.dashboard refused: the previous dashboard settings stay in force');
    }
  };

  // Reload: each worker re-reads the file itself (its own file and key folder
  // watchers, as a single process does); SIGHUP to the primary is relayed.
  const onHup = () => {
    let next: Config | undefined;
    try {
      next = loadConfigFile(file);
    } catch (e) {
      // The workers refuse it too and log why; the primary only notes it.
      log.warn({ file, err: isEchgateError(e) ? e.message : String(e) }, 'SIGHUP: the configuration does not validate; relayed anyway, the workers keep the previous one');
    }
    if (next && next.workers !== slots.length) log.warn({ file, workers: next.workers, running: slots.length }, 'workers changed: takes effect at the next restart');
    if (next) applyDashboard(next, 'SIGHUP');
    // Only to workers past startup: before serve installs its handler, SIGHUP would end the process
    // (a worker still starting reads the file as it starts).
    for (const s of live()) if (s.ready) s.worker!.process.kill('SIGHUP');
  };
  const onTerm = () => stopAll('SIGTERM');
  const onInt = () => stopAll('SIGINT');
  process.on('SIGHUP', onHup);
  process.once('SIGTERM', onTerm);
  process.once('SIGINT', onInt);
  // The workers watch the file themselves; the primary watches it for metrics.dashboard only.
  let debounce: NodeJS.Timeout | undefined;
  const fileWatch = watchPath(
    file,
    () => {
      clearTimeout(debounce);
      debounce = setTimeout(() => {
        try {
          applyDashboard(loadConfigFile(file), 'file changed');
        } catch {
          // Not valid: the workers refuse it and log why.
        }
      }, 200);
    },
    { onFallback: (err) => log.warn({ config: file, err: err.message, pollMs: POLL_MS }, "configuration file cannot be watched (the host's inotify limits?): polled instead") },
  );
  const watcherStop = () => {
    process.removeListener('SIGHUP', onHup);
    clearTimeout(debounce);
    fileWatch.close();
  };

  for (let n = 1; n <= cfg.workers; n++) slots.push({ n, startedAt: 0, quickDeaths: 0, ready: false });
  for (const s of slots) fork(s);

  await done;
  log.info({ exitCode }, 'stopped');
  log.flush();
  return exitCode;
}
