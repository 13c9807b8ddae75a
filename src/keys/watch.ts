/**
 * Watching a file or a folder for changes: `fs.watch` (inotify on Linux)
 * when the system gives one, else polling with `fs.watchFile`.
 *
 * Why not `fs.watch` alone: inotify instances and watches are per-user
 * limits of the host (`fs.inotify.max_user_instances`, 128 on Debian 12;
 * `max_user_watches`), shared with every other process of that user (in a
 * container, of the node). Where others have used them up, `fs.watch`
 * throws EMFILE or ENOSPC, and serve would not start for want of a
 * convenience: reloads by SIGHUP and the rotation timer do not need it. A
 * watcher may also emit 'error' later, and an 'error' event with no
 * listener ends the process. So a watch that cannot be had, or fails, becomes
 * a poll (a stat every POLL_MS) and the caller is told once, to warn.
 *
 * A folder's mtime changes when an entry is added, removed or renamed over
 * (the key store writes by rename), and a file replaced by rename gets a new
 * inode: the poll compares both, with ctime for an in-place write.
 */
import { type FSWatcher, type Stats, type WatchListener, unwatchFile, watch, watchFile } from 'node:fs';

/** How often a polled path is looked at. */
export const POLL_MS = 2_000;

export interface PathWatch {
  /** Whether the path is polled (fs.watch could not be had, or failed). */
  readonly polling: boolean;
  close(): void;
}

export interface WatchOptions {
  /** Told once when the watch falls back to polling, with the reason (to log as a warning). */
  onFallback?(err: Error): void;
  /** The poll's interval (tests). */
  pollMs?: number;
  /** fs.watch itself (tests inject one that fails). */
  watchImpl?: (path: string, listener: WatchListener<string>) => FSWatcher;
}

export function watchPath(path: string, onChange: () => void, o: WatchOptions = {}): PathWatch {
  let watcher: FSWatcher | undefined;
  let polling = false;
  const onStat = (cur: Stats, prev: Stats) => {
    if (cur.mtimeMs !== prev.mtimeMs || cur.ctimeMs !== prev.ctimeMs || cur.ino !== prev.ino) onChange();
  };
  const poll = (err: Error) => {
    if (polling) return;
    polling = true;
    const w = watcher;
    watcher = undefined;
    w?.close();
    o.onFallback?.(err);
    // Not persistent: the poll alone must not keep a process alive that has nothing else to do.
    watchFile(path, { interval: o.pollMs ?? POLL_MS, persistent: false }, onStat);
  };
  try {
    watcher = (o.watchImpl ?? watch)(path, () => onChange());
    watcher.on('error', (e: Error) => poll(e));
  } catch (e) {
    poll(e instanceof Error ? e : new Error(String(e)));
  }
  return {
    get polling() {
      return polling;
    },
    close() {
      watcher?.close();
      watcher = undefined;
      if (polling) unwatchFile(path, onStat);
    },
  };
}
