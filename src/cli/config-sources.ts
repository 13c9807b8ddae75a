/**
 * Where `serve` gets its configuration: the file, plus the etcd provider when
 * `providers.etcd` is set (providers/etcd.ts fetches and watches, config/kv.ts
 * converts). `load()` gives what a reload validates and applies: the file
 * read now merged with the last etcd snapshot, through the one validator; the
 * apply step in serve.ts is the same for a file change and an etcd change.
 */
import cluster from 'node:cluster';
import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import { kvToRaw } from '../config/kv.js';
import type { Config, EtcdProviderConfig } from '../config/types.js';
import { storeRefusal } from '../fleet/refusal.js';
import type { Metrics } from '../proxy/metrics.js';
import type { EtcdProvider, EtcdSnapshot } from '../providers/etcd.js';
import { loadConfigFile } from './config-file.js';

export class ConfigSources {
  private snapshot: EtcdSnapshot | undefined;
  private readonly revisions = new WeakMap<Config, string>();
  /** A digest of the etcd keys and values each configuration was built from (fleet readiness compares them). */
  private readonly digests = new WeakMap<Config, string>();
  private metrics: Metrics | undefined;
  private up: boolean | undefined;
  /** Called when etcd delivered a changed snapshot. */
  onChange: (why: string) => void = () => {};
  private readonly processLabel = cluster.isWorker ? `worker-${cluster.worker?.id ?? process.pid}` : 'main';

  private constructor(
    readonly file: string,
    private readonly log: Logger,
    private readonly etcd: EtcdProvider | undefined,
    private readonly settings?: EtcdProviderConfig,
  ) {}

  /**
   * Open the sources `cfg` (the file alone) names. With providers.etcd, read
   * etcd once: `cfg` is then the file merged with it, or the file alone when
   * etcd cannot be reached or its configuration does not validate (logged).
   */
  static async open(file: string, fileOnly: Config, log: Logger): Promise<{ sources: ConfigSources; cfg: Config }> {
    const settings = fileOnly.providers?.etcd;
    if (!settings) return { sources: new ConfigSources(file, log, undefined), cfg: fileOnly };
    let self: ConfigSources | undefined;
    // Loaded only when configured: the etcd client (gRPC, protobufjs) costs every other serve its start-up time.
    const { EtcdProvider } = await import('../providers/etcd.js');
    const provider = new EtcdProvider(settings, {
      snapshot: (s) => self?.take(s),
      store: (up, err) => self?.storeState(up, err),
    });
    self = new ConfigSources(file, log, provider, settings);
    const where = { endpoints: settings.endpoints, rootKey: settings.rootKey };
    const first = await provider.start();
    if (!first) return { sources: self, cfg: fileOnly };
    self.snapshot = first;
    try {
      const cfg = self.load();
      log.info({ ...where, revision: first.revision, keys: first.pairs.length }, 'configuration read from etcd');
      return { sources: self, cfg };
    } catch (e) {
      log.error({ ...where, revision: first.revision, err: (e as Error).message }, 'the configuration in etcd does not validate: starting with the file alone');
      return { sources: self, cfg: fileOnly };
    }
  }

  /** The file read now, merged with the last etcd snapshot; throws ConfigError like loadConfigFile. */
  load(): Config {
    const s = this.snapshot;
    const settings = this.etcd ? s && { ...kvToRaw(s.pairs, this.etcdRoot()), revision: s.revision } : undefined;
    const cfg = loadConfigFile(this.file, settings ? { etcd: settings } : {});
    if (s) {
      this.revisions.set(cfg, s.revision);
      this.digests.set(cfg, createHash('sha256').update(JSON.stringify(s.pairs)).digest('hex').slice(0, 16));
    }
    return cfg;
  }

  /** Log fields that say which sources a configuration came from. */
  describe(cfg: Config): Record<string, string> {
    const r = this.revisions.get(cfg);
    return r === undefined ? {} : { revision: r };
  }

  /** The etcd configuration `cfg` was built from (root key, read revision, digest of the keys); undefined: the file alone. */
  etcdState(cfg: Config): { rootKey: string; revision: number; digest: string } | undefined {
    const r = this.revisions.get(cfg);
    const d = this.digests.get(cfg);
    return this.etcd && r !== undefined && d !== undefined ? { rootKey: this.etcdRoot(), revision: Number(r), digest: d } : undefined;
  }

  /** `cfg` is now in force: export its etcd revision. */
  applied(cfg: Config, metrics: Metrics): void {
    this.metrics = metrics;
    const r = this.revisions.get(cfg);
    if (r !== undefined) metrics.configRevision.set({ process: this.processLabel }, Number(r));
    if (this.etcd) metrics.configStoreUp.set({ process: this.processLabel }, this.up === false ? 0 : 1);
  }

  close(): void {
    this.etcd?.close();
  }

  private etcdRoot(): string {
    return this.etcd!.prefix.replace(/\/$/, '');
  }

  private take(s: EtcdSnapshot): void {
    this.snapshot = s;
    this.onChange(`etcd revision ${s.revision}`);
  }

  private storeState(up: boolean, err?: string): void {
    const was = this.up;
    this.up = up;
    this.metrics?.configStoreUp.set({ process: this.processLabel }, up ? 1 : 0);
    if (up && was === false) this.log.info({ rootKey: this.etcdRoot() }, 'configuration store reachable again');
    else if (!up) {
      // etcd refusing this instance (TLS, client certificate, credentials, RBAC) is a setting to fix, said as such.
      const refused = this.settings && err !== undefined ? storeRefusal({ ...this.settings, prefix: `${this.settings.rootKey}/` }, new Error(err), 'providers.etcd') : undefined;
      if (refused) this.log.error({ rootKey: this.etcdRoot(), err: refused }, 'configuration store refused this instance: serving the configuration applied last, retrying');
      else this.log.error({ rootKey: this.etcdRoot(), err }, 'configuration store unreachable: serving the configuration applied last, retrying');
    }
  }
}
