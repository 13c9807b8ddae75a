/**
 * The running proxy's view of the key folder: an immutable lookup swapped
 * whole on every reload, so a connection in flight keeps the keys it started
 * with and nothing is dropped. The folder is watched; changes apply after a
 * short debounce. A reload that fails (the folder became unreadable, or
 * others could write it: ERR_KEY_TRUST) keeps the previous snapshot.
 */
import { nodeProvider } from '../crypto/node.js';
import { type EsniLookup, type EsniServerKey, prepareEsniKey } from '../ech/esni.js';
import { type EchServerKey, type KeyLookup, prepareServerKey } from '../ech/server.js';
import { decryptingEsni, type EsniRetired, loadEsniKeys, publishedEsni } from './esni-store.js';
import { decryptingKeys, publishedList, settledRetryList } from './manager.js';
import { KeyDir, type LoadResult } from './store.js';
import { type PathWatch, watchPath } from './watch.js';

/**
 * How long a newly active key waits before it is first in retry_configs
 * (manager.ts settledRetryList): longer than it takes every worker to see
 * the folder change and reload it (the watch's 100 ms debounce, the read, and
 * an event loop stalled by a loaded host: the soak saw stalls of 1.5 s). The
 * key it replaced is offered meanwhile; it decrypts through its grace.
 */
export const KEY_SETTLE_MS = 3_000;
/** How soon a reload put off because another process held the folder lock is tried again. */
const RELOAD_RETRY_MS = 250;

class Snapshot implements KeyLookup {
  private readonly byId = new Map<number, EchServerKey[]>();
  constructor(
    readonly keys: EchServerKey[],
    readonly retryConfigs: Uint8Array | undefined,
    readonly published: Uint8Array | undefined,
    /** `retired`: keys rotate --esni took it out of DNS; it decrypts until its Decrypt-Until. */
    readonly esni: readonly (EsniServerKey & { retired?: EsniRetired })[] = [],
  ) {
    for (const k of keys) {
      const l = this.byId.get(k.configId);
      if (l) l.push(k);
      else this.byId.set(k.configId, [k]);
    }
  }
  byConfigId(id: number): readonly EchServerKey[] {
    return this.byId.get(id) ?? [];
  }
  all(): readonly EchServerKey[] {
    return this.keys;
  }
}

export interface KeyringEvents {
  onLoad?(r: { keys: number; problems: LoadResult['problems']; notices: LoadResult['notices'] }): void;
  /** A reload from the watcher or the expiry timer failed (folder unreadable, or refused by the trust check): the previous keys stay in use. */
  onError?(err: Error): void;
  /** The folder could not be watched (fs.watch failed: the host's inotify limits) and is polled instead (keys/watch.ts). */
  onWatchFallback?(err: Error): void;
}

export class Keyring implements KeyLookup, EsniLookup {
  private snap: Snapshot = new Snapshot([], undefined, undefined);
  private retiredIds: ReadonlySet<number> = new Set();
  private watcher: PathWatch | undefined;
  private timer: NodeJS.Timeout | undefined;
  private expiryTimer: NodeJS.Timeout | undefined;
  /** Readable-key warnings already given (file and message): the folder watch reloads at every rotation, and one warning per file is enough. */
  private warnedReadable = new Set<string>();

  constructor(
    readonly dir: string,
    private readonly events: KeyringEvents = {},
  ) {}

  /** `loaded`: a load the caller made (safeReload, between two looks at the folder lock). */
  reload(now = new Date(), loaded?: LoadResult): LoadResult {
    const r = loaded ?? new KeyDir(this.dir).load();
    const usable = decryptingKeys(r.keys, now);
    // config_ids the folder remembers that no longer decrypt (retired metadata, kept RETIRED_KEEP_MS; a
    // decrypt-only key past its grace until the sweep): a hello naming one is stale, not GREASE (proxy/ech-classifier.ts).
    const live = new Set(usable.map((k) => k.meta.configId));
    this.retiredIds = new Set(r.keys.map((k) => k.meta.configId).filter((id) => !live.has(id)));
    // ESNI keys (draft-02, experimental) live in the same folder: `.esni` files (keys/esni-store.ts).
    const esni = loadEsniKeys(this.dir);
    r.problems.push(...esni.problems);
    r.notices.push(...esni.notices);
    const retry = settledRetryList(r.keys, now.getTime(), KEY_SETTLE_MS);
    this.snap = new Snapshot(
      usable.map((k) => prepareServerKey(nodeProvider, k.config!, nodeProvider.x25519Private(k.privateKey!))),
      retry.list,
      publishedList(r.keys),
      esni.keys.map((k) => ({ ...prepareEsniKey(nodeProvider, k.raw, nodeProvider.x25519Private(k.privateKey)), ...(k.retired ? { retired: k.retired } : {}) })),
    );
    // Re-evaluate when the next decrypt-only key passes its notAfter, or a new key has settled (retry_configs change).
    clearTimeout(this.expiryTimer);
    const next = Math.min(...usable.filter((k) => k.meta.notAfter).map((k) => Date.parse(k.meta.notAfter!)), retry.settlesAt ?? Number.POSITIVE_INFINITY);
    if (Number.isFinite(next)) this.expiryTimer = setTimeout(() => this.refresh(), Math.min(2 ** 31 - 1, Math.max(0, next - Date.now()) + 10)).unref();
    // A readable key file is warned about once per file and mode (the message names both), not at
    // every reload; a file fixed and then loosened again is warned about again.
    const readable = new Set(r.notices.filter((n) => n.readable).map((n) => `${n.file}\0${n.message}`));
    const notices = r.notices.filter((n) => !n.readable || !this.warnedReadable.has(`${n.file}\0${n.message}`));
    this.warnedReadable = readable;
    this.events.onLoad?.({ keys: usable.length, problems: r.problems, notices });
    return r;
  }

  /**
   * A reload from the watch or a timer. Not while another process writes the
   * folder (a rotation in another worker): a load then can see its writes half
   * done and would log them as broken key files (the soak's second worker
   * logged 136 such errors in 26 minutes of rotations every 2 s). The writer's
   * release is itself a change the watch sees, and a timer looks again in case
   * it never comes (the writer was killed holding the lock). Returns whether
   * it reloaded.
   */
  refresh(): boolean {
    const kd = new KeyDir(this.dir);
    let before: { ticket: number; held: boolean };
    try {
      before = kd.lockState();
    } catch {
      before = { ticket: 0, held: false }; // an unreadable folder: reload() says why
    }
    if (before.held) {
      this.later();
      return false;
    }
    try {
      const r = kd.load();
      const after = kd.lockState();
      // A writer came and went during the load: what it read may be torn; the writer's changes bring another reload.
      if (after.held || after.ticket !== before.ticket) {
        this.later();
        return false;
      }
      this.reload(new Date(), r);
      return true;
    } catch (e) {
      if (this.events.onError) this.events.onError(e as Error);
      else this.events.onLoad?.({ keys: this.snap.keys.length, problems: [{ file: this.dir, message: (e as Error).message }], notices: [] });
      return false;
    }
  }

  /** Look again shortly (a writer held the folder); a watch event usually comes first and replaces this. */
  private later(): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.refresh(), RELOAD_RETRY_MS);
  }

  watch(): void {
    const fallback = this.events.onWatchFallback;
    this.watcher = watchPath(
      this.dir,
      () => {
        clearTimeout(this.timer);
        this.timer = setTimeout(() => this.refresh(), 100);
      },
      fallback ? { onFallback: (e) => fallback(e) } : {},
    );
  }

  /** Whether the folder is polled rather than watched (keys/watch.ts). */
  get polling(): boolean {
    return this.watcher?.polling ?? false;
  }

  close(): void {
    this.watcher?.close();
    clearTimeout(this.timer);
    clearTimeout(this.expiryTimer);
  }

  byConfigId(id: number): readonly EchServerKey[] {
    return this.snap.byConfigId(id);
  }

  /** Whether `configId` was a key's that no longer decrypts and is still remembered (RetiredLookup, proxy/ech-classifier.ts). */
  retired(configId: number): boolean {
    return this.retiredIds.has(configId);
  }

  all(): readonly EchServerKey[] {
    return this.snap.all();
  }

  get retryConfigs(): Uint8Array | undefined {
    return this.snap.retryConfigs;
  }

  /** The ECHConfigList to publish in DNS (active keys). */
  get published(): Uint8Array | undefined {
    return this.snap.published;
  }

  /** ESNI keys that decrypt now (validity checked per call: an ESNI key expires without a reload). */
  esniKeys(): readonly EsniServerKey[] {
    return this.snap.esni.length ? decryptingEsni(this.snap.esni, Math.floor(Date.now() / 1000)) : this.snap.esni;
  }

  /** The ESNIKeys records to publish in `_esni` TXT now, and the TTL they may have (at most maxTtl). */
  esniPublished(maxTtl: number): { records: Uint8Array[]; ttl: number } | undefined {
    return publishedEsni(this.snap.esni, Math.floor(Date.now() / 1000), maxTtl);
  }

  get size(): number {
    return this.snap.keys.length;
  }
}
