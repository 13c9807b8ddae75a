/** `echgate serve --config F` (or `--demo`): run the proxy until SIGTERM/SIGINT. */
import { loadConfigFile } from './config-file.js';
import { ConfigSources } from './config-sources.js';
import { queryCounter, startDnsService } from '../dns/service.js';
import type { Config, DnsConfig } from '../config/types.js';
import { ConfigError, EchgateError, isEchgateError } from '../errors.js';
import { resolve } from 'node:path';
import { Keyring } from '../keys/keyring.js';
import { POLL_MS, watchPath } from '../keys/watch.js';
import { plainClassifier } from '../proxy/context.js';
import { echClassifier } from '../proxy/ech-classifier.js';
import { withEsni } from '../proxy/esni-classifier.js';
import { Gateway } from '../proxy/gateway.js';
import { createLogger } from '../proxy/logger.js';
import { pino } from 'pino';
import { Dashboard, ErrorRing, localView, teeLog } from './dashboard.js';
import { type Args, type CommandSpec, flag, has, str, text } from './args.js';
import type { Command } from './command.js';
import { startDemo } from './demo.js';
import { isWorker, joinGroup, runPrimary, runsRotation } from './workers.js';
import { sweepOnMainThread } from './bulk-gc.js';
import { HEAP_FLOOR_FLAG, setsHeapFloor } from './heap-floor.js';
import { hiddenNameLeaks } from './check.js';
import { loadCertificates } from '../proxy/certificates.js';
import { type RotationScheduler, startRotation } from './rotation.js';
import type { ConfigInForce } from '../fleet/records.js';
import { type FleetMember, startFleetMember } from './fleet.js';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { metricsLimits } from '../proxy/metrics.js';

export const serveSpec: CommandSpec = {
  name: 'serve',
  summary: 'run the proxy until SIGTERM/SIGINT (without --config: the embedded demo)',
  options: {
    config: text('FILE', 'the configuration file (YAML); SIGHUP or a change of the file reloads it'),
    demo: flag('run the embedded demo (the default when --config is not given)'),
  },
};

export async function serveCommand(a: Args, out: (s: string) => void): Promise<number> {
  const file = str(a, 'config');
  if (file && has(a, 'demo')) throw new EchgateError('ERR_USAGE', '--config and --demo exclude each other (see: echgate serve --help)');
  const demo = !file;
  let cfg: Config;
  let closeDemo = () => {};
  let demoInfo: Awaited<ReturnType<typeof startDemo>> | undefined;
  if (demo) {
    demoInfo = await startDemo(Number(process.env.ECHGATE_DEMO_PORT ?? 8443), Number(process.env.ECHGATE_DEMO_DNS_PORT ?? 8053));
    cfg = demoInfo.config;
    closeDemo = demoInfo.close;
  } else {
    cfg = loadConfigFile(file);
  }
  // The dashboard shows recent warn/error lines: the log goes through its ring too, in every process of a
  // group, whenever there is a metrics listener (a reload may turn the dashboard on).
  const errors = cfg.metrics ? new ErrorRing() : undefined;
  const log = createLogger(cfg.log.level, errors ? teeLog(pino.destination({ sync: false }), errors) : undefined);
  for (const w of cfg.warnings) log.warn({ file: file ?? '(demo)' }, w);
  // workers > 1: this process becomes the group's primary; each worker runs the rest of this function.
  if (file && cfg.workers > 1 && !isWorker()) return runPrimary(file, cfg, log, errors);
  // The file and, with providers.etcd, etcd: what a reload validates and applies (cli/config-sources.ts).
  let sources: ConfigSources | undefined;
  if (file) ({ sources, cfg } = await ConfigSources.open(file, cfg, log));
  const gw = new Gateway({ log });
  // A fleet instance is not ready until it has joined and holds the fleet's keys (docs/fleet.md "GET /ready").
  if (cfg.ech?.store) gw.metrics.readyCheck = () => ({ ready: false, reason: 'joining the fleet' });
  // ECH: the keyring watches its folder; reloading the configuration may point it elsewhere.
  let ring: Keyring | undefined;
  /**
   * The keyring a configuration needs: the current one when the folder is the
   * same, else a new one, loaded (trust-checked) and watching, not yet used.
   */
  const openRing = (c: Config): Keyring | undefined => {
    const dir = c.ech ? resolve(c.ech.keysDir) : undefined;
    if (!dir) return undefined;
    if (ring?.dir === dir) return ring;
    const r = new Keyring(dir, {
      onLoad: ({ keys, problems, notices }) => {
        for (const p of problems) log.error({ file: p.file, err: p.message }, 'ECH key file skipped');
        for (const n of notices) log.warn({ file: n.file }, n.message);
        // A folder read for a reload that is then refused never serves: say "loaded" only for the live one.
        if (ring === r) log.info({ keysDir: dir, keys }, 'ECH keys loaded');
      },
      onError: (err) => log.error({ keysDir: dir, err: err.message }, 'ECH key folder reload refused: the previous keys stay in use'),
      onWatchFallback: (err) => log.warn({ keysDir: dir, err: err.message, pollMs: POLL_MS }, 'ECH key folder cannot be watched (the host\'s inotify limits?): polled instead'),
    });
    r.reload(); // throws for an unreadable or untrusted folder
    try {
      r.watch();
    } catch (e) {
      r.close();
      throw e;
    }
    return r;
  };
  const echHooks = (c: Config, r: Keyring | undefined) =>
    // ESNI (draft-02, docs/esni.md) goes first when the folder holds ESNI keys; otherwise the hello passes through.
    r && c.ech ? { classify: withEsni(r, echClassifier(r, gw.metrics, { trialDecrypt: c.ech.trialDecrypt }), gw.metrics), retryConfigs: () => r.retryConfigs } : { classify: plainClassifier, retryConfigs: () => undefined };
  /** Everything a configuration needs, built while the current state serves; swapped in by commit(). */
  const prepare = async (c: Config) => {
    const r = openRing(c);
    const closeNew = () => {
      if (r !== ring) r?.close();
    };
    let load: Awaited<ReturnType<Gateway['prepare']>>;
    try {
      load = await gw.prepare(c, echHooks(c, r));
    } catch (e) {
      closeNew();
      throw e;
    }
    return {
      commit() {
        load.commit();
        if (r === ring) return;
        ring?.close();
        ring = r;
        if (r) log.info({ keysDir: r.dir, keys: r.size }, 'ECH keys loaded');
      },
      abort() {
        load.abort();
        closeNew();
      },
    };
  };
  let metricsSrv: { close(): void } | undefined;
  let dashboard: Dashboard | undefined;
  let dns: Awaited<ReturnType<typeof startDnsService>> | undefined;
  /**
   * A certificate sent without ECH (or with ECH rejected) that names a host only ECH routes serve hands
   * that name to anyone who connects without ECH (RFC 9849 §6.1.6, §10.5; check.ts hiddenNameLeaks).
   * `echgate check` names the host on the operator's terminal; this log line names the certificate and
   * never the host (a log is not the place for a hidden name). Once per process group.
   */
  const warnHiddenNameCertificates = (c: Config) => {
    if (!runsRotation()) return;
    try {
      const publicNames = ring ? ring.all().map((k) => k.config.publicName) : [];
      for (const l of hiddenNameLeaks(c, loadCertificates(c, file ?? '(demo)'), publicNames)) {
        log.warn({ certificate: l.file, index: l.index, hiddenNames: l.leaked.length }, 'a certificate sent to clients without ECH names a host only ECH routes serve, so anyone can read it there: run `echgate check` for which; give hidden names a certificate of their own');
      }
    } catch (e) {
      // The gateway has loaded these files already; a read failing now is not a reason to stop serving.
      log.warn({ err: reason(e) }, 'could not look for hidden names on the certificates');
    }
  };
  try {
    (await prepare(cfg)).commit();
    warnHiddenNameCertificates(cfg);
    sources?.applied(cfg, gw.metrics);
    // In a process group the primary serves /metrics for all workers (src/cli/workers.ts).
    if (cfg.metrics && !isWorker()) {
      if (errors) dashboard = new Dashboard({ view: localView({ gateway: gw, config: () => gw.current ?? cfg, errors, dnsPort: () => dns?.port }), settings: cfg.metrics.dashboard });
      metricsSrv = await gw.metrics.serve(cfg.metrics.host, cfg.metrics.port, { log, limits: metricsLimits(cfg.metrics), ...(dashboard ? { routes: dashboard.routes } : {}) });
    }
    // The embedded authoritative DNS; ech= comes from the key folder at query time.
    const dnsCfg = cfg.dns ?? demoInfo?.dns(gw.addresses().get('websecure')!.port);
    // A fleet instance that is not ready (joining, stale copy) answers without ech= rather than with keys that may be out of date.
    const startDns = (c: DnsConfig) =>
      startDnsService(c, () => (gw.metrics.readyCheck?.().ready === false ? undefined : ring?.published), log, queryCounter(gw.metrics), (maxTtl) => ring?.esniPublished(maxTtl));
    if (dnsCfg) {
      dns = await startDns(dnsCfg).catch((e) => {
        // The demo's DNS port (8053) is a common one: when it is taken, any free port will do.
        if (!demoInfo || !dnsCfg.listen || (e as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw e;
        return startDns({ ...dnsCfg, listen: { ...dnsCfg.listen, port: 0 } });
      });
    }
  } catch (e) {
    // A listener that cannot start (address in use, ...) ends the process: close what did
    // start, or its open handles would keep a half-started echgate running, silent.
    ring?.close();
    dashboard?.close();
    metricsSrv?.close();
    dns?.close();
    sources?.close();
    closeDemo();
    await gw.shutdown(0);
    throw e;
  }

  // Automatic ECH key rotation (ech.rotation). With worker processes, only one process runs it (workers.ts runsRotation).
  // In a fleet (ech.store.etcd) the elected leader rotates for every instance (src/fleet/leader.ts), not this scheduler.
  const rotates = runsRotation() && !cfg.ech?.store;
  let rotation: RotationScheduler | undefined = rotates ? startRotation(cfg, { log, metrics: gw.metrics }) : undefined;
  // Fleet: register, copy the keys from etcd into the key folder, acknowledge them, answer GET /ready (docs/fleet.md).
  let fleet: FleetMember | undefined;
  // The revision this instance runs (in its instance record; `fleet status` lists them): with providers.etcd, the etcd
  // revision of the configuration in force; else a hash of the file.
  const revision = (c: Config) => sources?.describe(c).revision ?? (file ? createHash('sha256').update(readFileSync(file)).digest('hex').slice(0, 12) : 'demo');
  let configRevision = revision(cfg);
  // providers.etcd: the etcd configuration in force, compared with the other instances' (docs/fleet.md "GET /ready").
  const inForce = (c: Config, was?: ConfigInForce): ConfigInForce | undefined => {
    const st = sources?.etcdState(c);
    if (!st) return undefined;
    return was && was.revision === st.revision && was.digest === st.digest ? was : { ...st, since: new Date().toISOString() };
  };
  let configInForce = inForce(cfg);
  try {
    fleet = await startFleetMember(cfg, {
      log,
      metrics: gw.metrics,
      reloadKeys: () => {
        ring?.reload();
        return ring ? ring.all().map((k) => k.configId) : [];
      },
      addresses: () => [...gw.addresses().values()].map((a) => `${a.host}:${a.port}`),
      configRevision: () => configRevision,
      configInForce: () => configInForce,
    });
  } catch (e) {
    rotation?.stop();
    ring?.close();
    metricsSrv?.close();
    dns?.close();
    await gw.shutdown(0);
    throw e;
  }
  if (fleet) gw.metrics.readyCheck = () => fleet!.ready();
  for (const [name, addr] of gw.addresses()) {
    log.info({ entrypoint: name, address: `${addr.host}:${addr.port}` }, 'listening');
  }
  // Workers always have the floor (cli/workers.ts); a single process only from node's command line (cli/heap-floor.ts).
  if (!setsHeapFloor(process.execArgv)) log.info({ nodeFlag: HEAP_FLOOR_FLAG }, 'node runs without a V8 heap floor: terminated bulk can pay a full GC every 32 MiB (docs/configuration.md, "Node flags")');
  // Dead record and read buffers freed on the main thread (cli/bulk-gc.ts): 1.1x terminated upload per CPU-second, 7x fewer page faults.
  const sweepFlag = sweepOnMainThread();
  if (sweepFlag) log.debug({ nodeFlag: sweepFlag }, 'V8 array buffers swept on the main thread');
  joinGroup(gw.metrics, errors ? localView({ gateway: gw, config: () => gw.current ?? cfg, errors, dnsPort: () => dns?.port }) : undefined);
  if (demoInfo) {
    const port = gw.addresses().get('websecure')!.port;
    const dnsPort = dns?.port;
    const { echConfig } = demoInfo;
    out(
      [
        `echgate is running its embedded demo: entrypoint "websecure" listens on 127.0.0.1:${port}`,
        'It routes by SNI (TLS passthrough) to two demo TLS backends it started itself:',
        `  curl -k --resolve app.example.test:${port}:127.0.0.1 https://app.example.test:${port}/`,
        `  curl -k --resolve api-demo.example.test:${port}:127.0.0.1 https://api-demo.example.test:${port}/`,
        `  openssl s_client -connect 127.0.0.1:${port} -servername nobody.example.test   # → unrecognized_name alert`,
        'The name secret.example.test is served only when it travels encrypted (ECH); echgate terminates TLS for it:',
        `  npx echgate connect 127.0.0.1:${port} --sni secret.example.test --ech-config ${echConfig} --send 'GET / HTTP/1.0\\r\\n\\r\\n'`,
        `  curl -k --resolve secret.example.test:${port}:127.0.0.1 https://secret.example.test:${port}/   # no ECH → unrecognized_name`,
        `  dig -p ${dnsPort} @127.0.0.1 _${port}._https.secret.example.test HTTPS   # the ech= a browser finds in DNS (echgate answers)`,
        'Run your own configuration with: npx echgate serve --config echgate.yml   (Ctrl-C stops)',
        '',
      ].join('\n'),
    );
  }

  /**
   * Reload: all or nothing. The new configuration is validated, then its
   * whole state is built (certificates, key folder, routing tables, new
   * listeners) while the old one serves; any failure leaves the old state
   * serving unchanged and is logged with its reason. Reloads run one at a time.
   */
  const reloadOnce = async (why: string) => {
    if (!file) return;
    let next: Config;
    try {
      next = sources ? sources.load() : loadConfigFile(file);
    } catch (e) {
      gw.metrics.reloads.inc({ result: 'invalid' });
      log.error({ file, why, err: reason(e) }, 'reload refused: the configuration does not validate; the previous one keeps serving unchanged');
      fleet?.agent.configChanged(true);
      return;
    }
    let p: Awaited<ReturnType<typeof prepare>> | undefined;
    let dash: ReturnType<Dashboard['prepare']> | undefined;
    try {
      // metrics.dashboard applies with the rest (its auth file read now; a bad one refuses the reload).
      dash = dashboard?.prepare(next.metrics?.dashboard);
      p = await prepare(next);
      // The DNS names go live with the rest, in the same synchronous step (ring?.published follows the commit).
      if (next.dns && dns) dns.update(next.dns);
    } catch (e) {
      p?.abort();
      gw.metrics.reloads.inc({ result: 'error' });
      log.error({ file, why, err: reason(e) }, 'reload refused: the new configuration could not be put in place; the previous one keeps serving unchanged');
      fleet?.agent.configChanged(true);
      return;
    }
    p!.commit();
    dash?.commit();
    warnHiddenNameCertificates(next);
    sources?.applied(next, gw.metrics);
    configRevision = revision(next);
    configInForce = inForce(next, configInForce);
    fleet?.agent.configChanged(false);
    rotation?.stop();
    rotation = rotates ? startRotation(next, { log, metrics: gw.metrics }) : undefined;
    if (Boolean(next.dns) !== Boolean(dns)) log.warn({ file }, 'the dns section was added or removed: DNS listeners start or stop at the next restart');
    gw.metrics.reloads.inc({ result: 'ok' });
    log.info({ file, why, ...sources?.describe(next), ...(dash?.change ? { dashboard: dash.change } : {}) }, 'configuration reloaded');
  };
  let reloads = Promise.resolve();
  const reload = (why: string) => {
    reloads = reloads.then(() => reloadOnce(why));
  };
  process.on('SIGHUP', () => reload('SIGHUP'));
  if (sources) sources.onChange = reload;
  let debounce: NodeJS.Timeout | undefined;
  const watcher = file
    ? watchPath(
        file,
        () => {
          clearTimeout(debounce);
          debounce = setTimeout(() => reload('file changed'), 200);
        },
        { onFallback: (err) => log.warn({ config: file, err: err.message, pollMs: POLL_MS }, 'configuration file cannot be watched (the host\'s inotify limits?): polled instead; SIGHUP reloads as always') },
      )
    : undefined;

  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (sig: string) => {
      if (stopping) return;
      stopping = true;
      log.info({ signal: sig, open: gw.openConnections() }, 'shutting down: no new connections, draining open ones');
      watcher?.close();
      sources?.close();
      rotation?.stop();
      // Leaving the fleet (revoking leases, resigning) talks to etcd, which may be unreachable: it gets a
      // deadline, so a SIGTERM always ends the process; the leases then expire on their own.
      const leaving = fleet
        ? Promise.race([
            fleet.stop().catch(() => {}),
            new Promise<void>((r) =>
              setTimeout(() => {
                log.warn({ deadlineMs: FLEET_STOP_DEADLINE_MS }, 'leaving the fleet did not finish in time (etcd unreachable?): stopping anyway');
                r();
              }, FLEET_STOP_DEADLINE_MS).unref(),
            ),
          ])
        : Promise.resolve();
      ring?.close();
      dashboard?.close();
      metricsSrv?.close();
      dns?.close();
      Promise.all([gw.shutdown(), leaving]).then(() => {
        closeDemo();
        log.info('stopped');
        log.flush();
        resolve(0);
        // Everything is closed; a client library that keeps a handle open (the etcd client's reconnect timer
        // toward an unreachable store) must not keep a stopped instance alive. Unref'd: a clean exit wins.
        setTimeout(() => process.exit(process.exitCode ?? 0), 2000).unref();
      });
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
}

/** How long a stopping instance waits for its fleet store to hear it leave. */
const FLEET_STOP_DEADLINE_MS = 5000;

function reason(e: unknown): string {
  if (e instanceof ConfigError) return e.problems.map((p) => `${p.path}: ${p.message}`).join('; ');
  return isEchgateError(e) ? `${e.message} [${e.code}]` : e instanceof Error ? e.message : String(e);
}

export const serve: Command = { spec: serveSpec, run: serveCommand };
