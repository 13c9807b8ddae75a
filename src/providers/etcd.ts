/**
 * The etcd provider (`providers.etcd`): reads the keys under `rootKey/` at one
 * etcd revision and watches them. It only fetches: config/kv.ts converts the
 * keys, and cli/serve.ts validates and applies the result through the same
 * step as a file reload. This layer owns the network access to etcd (the
 * etcd3 client, gRPC) and reads the TLS and password files it names.
 *
 * Store outages: the last snapshot delivered stays in force (serve keeps
 * serving it); the provider says once that the store is down, retries with
 * a backoff (250 ms doubling to 5 s), and on reconnect reads the prefix
 * afresh and delivers it if it changed. A burst of changes is read once,
 * DEBOUNCE_MS after the first (a writer's keys for one router usually land
 * together).
 */
import { readFileSync } from 'node:fs';
import { Etcd3, type Watcher } from 'etcd3';
import type { KvPair } from '../config/kv.js';
import type { EtcdProviderConfig } from '../config/types.js';

/** The keys read at one revision. */
export interface EtcdSnapshot {
  pairs: KvPair[];
  /** etcd's store revision the read saw (the header revision), as a decimal string. */
  revision: string;
}

export interface EtcdProviderEvents {
  snapshot(s: EtcdSnapshot): void;
  /** The store became reachable (true) or unreachable (false); `err` says why it is down. */
  store(up: boolean, err?: string): void;
}

export const DEBOUNCE_MS = 100;
const RETRY_FIRST_MS = 250;
const RETRY_MAX_MS = 5_000;
/** A read that takes longer counts as a failure (and is retried). */
const READ_DEADLINE_MS = 3_000;

/**
 * A cockatiel-compatible backoff (IBackoff) for the client's watch reconnections: 250 ms doubling to 5 s
 * (etcd3's default grows to 30 s, so a watch could lag an etcd that is back by that long). The fleet's
 * client uses it too (cli/fleet.ts).
 */
export class EtcdWatchBackoff {
  constructor(readonly duration = RETRY_FIRST_MS) {}
  next(): EtcdWatchBackoff {
    return new EtcdWatchBackoff(Math.min(this.duration * 2, RETRY_MAX_MS));
  }
}

export class EtcdProvider {
  private readonly client: Etcd3;
  private watcher: Watcher | undefined;
  private timer: NodeJS.Timeout | undefined;
  private retryMs = RETRY_FIRST_MS;
  private up: boolean | undefined;
  private lastContent: string | undefined;
  private closed = false;
  private reading = false;
  private again = false;

  constructor(
    private readonly cfg: EtcdProviderConfig,
    private readonly on: EtcdProviderEvents,
    /** Tests: an etcd3 client (or a stand-in) instead of one built from cfg. */
    client?: Etcd3,
  ) {
    const read = (f: string) => readFileSync(f);
    const tls = cfg.tls;
    this.client = client ?? new Etcd3({
      hosts: cfg.endpoints,
      dialTimeout: 2_000,
      ...(tls ? { credentials: { rootCertificate: tls.ca ? read(tls.ca) : (undefined as unknown as Buffer), ...(tls.key ? { privateKey: read(tls.key) } : {}), ...(tls.cert ? { certChain: read(tls.cert) } : {}) } } : {}),
      ...(cfg.auth ? { auth: { username: cfg.auth.username, password: readFileSync(cfg.auth.passwordFile, 'utf8').replace(/\r?\n$/, '') } } : {}),
      faultHandling: { watchBackoff: new EtcdWatchBackoff() },
    });
  }

  get prefix(): string {
    return `${this.cfg.rootKey}/`;
  }

  /**
   * Read the prefix once. Resolves with the snapshot, or undefined when etcd
   * cannot be reached (then it keeps trying in the background and delivers
   * through `snapshot` when it can). Starts the watch either way.
   */
  async start(): Promise<EtcdSnapshot | undefined> {
    const s = await this.read().catch((e: Error) => {
      this.storeState(false, e.message);
      return undefined;
    });
    if (s) {
      this.storeState(true);
      this.lastContent = JSON.stringify(s.pairs);
    } else this.schedule(this.retryMs);
    await this.watch(s?.revision);
    return s;
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    this.watcher?.cancel().catch(() => {});
    this.client.close();
  }

  private async read(): Promise<EtcdSnapshot> {
    const res = await this.client
      .getAll()
      .prefix(this.prefix)
      .options({ deadline: Date.now() + READ_DEADLINE_MS })
      .exec();
    const pairs = res.kvs.map((kv) => ({ key: kv.key.toString('utf8'), value: kv.value.toString('utf8') })).sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    return { pairs, revision: String(res.header.revision) };
  }

  private async watch(revision: string | undefined): Promise<void> {
    const b = this.client.watch().prefix(this.prefix);
    if (revision !== undefined) b.startRevision(String(BigInt(revision) + 1n));
    // create() resolves once the watch is set up, which needs etcd: do not wait for it while etcd is down.
    const created = b.create().then(
      (w) => {
        if (this.closed) {
          w.cancel().catch(() => {});
          return;
        }
        this.watcher = w;
        w.on('data', () => this.schedule(DEBOUNCE_MS));
        // The watch's member went away: that is not the store down while the other members answer. A read
        // (which the client sends to another endpoint) decides; it reports the store down only if it fails.
        w.on('disconnected', () => this.schedule(0));
        w.on('connected', () => {
          if (this.up === false) this.schedule(0);
        });
        w.on('error', (err) => {
          // etcd cancelled the watch (its start revision compacted away while disconnected, a role changed):
          // etcd3 drops a cancelled watcher, so nothing more would ever arrive on it. Watched again (the
          // read after the new watch begins covers what changed meanwhile).
          if (this.watcher === w) this.watcher = undefined;
          this.storeState(false, err.message);
          this.schedule(this.retryMs);
          if (!this.closed) setTimeout(() => void this.watch(undefined), RETRY_FIRST_MS).unref();
        });
        // Without a start revision the watch begins at the revision etcd has when it answers, which may be
        // later than the last read (etcd down at start, or watching again): a change in between would be in
        // neither until the next one, so the prefix is read again now that the watch runs.
        if (revision === undefined) this.schedule(0);
      },
      (err: Error) => {
        this.storeState(false, err.message);
        if (!this.closed) setTimeout(() => this.watch(undefined), RETRY_MAX_MS).unref();
      },
    );
    if (revision !== undefined) await created;
  }

  private schedule(ms: number): void {
    if (this.closed || this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.refresh();
    }, ms);
    this.timer.unref?.();
  }

  /** Read again; deliver when the keys changed. One read at a time; a request during a read runs after it. */
  private async refresh(): Promise<void> {
    if (this.reading) {
      this.again = true;
      return;
    }
    this.reading = true;
    try {
      const s = await this.read();
      this.retryMs = RETRY_FIRST_MS;
      this.storeState(true);
      const content = JSON.stringify(s.pairs);
      if (content !== this.lastContent) {
        this.lastContent = content;
        this.on.snapshot(s);
      }
    } catch (e) {
      this.storeState(false, (e as Error).message);
      this.schedule(this.retryMs);
      this.retryMs = Math.min(this.retryMs * 2, RETRY_MAX_MS);
    } finally {
      this.reading = false;
      if (this.again && !this.closed) {
        this.again = false;
        this.schedule(0);
      }
    }
  }

  private storeState(up: boolean, err?: string): void {
    if (this.closed || this.up === up) return;
    this.up = up;
    this.on.store(up, err);
  }
}
