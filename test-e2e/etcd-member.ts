/**
 * etcd members for the end-to-end tests: one way to start one (Debian's
 * /usr/bin/etcd on loopback), to notice that one died when the test did not
 * stop it, and to remove their data folders afterwards.
 *
 * Why these exist (CI on 2026-12-03 ended fleet-provider-cluster with its
 * three cases "cancelled": the event loop emptied while `before()` awaited):
 * - a member that dies on its own (a full disk makes etcd panic while it
 *   writes its WAL) left the tests waiting on a gRPC call whose retry timers
 *   are unref'd, so nothing held the process and node:test cancelled the
 *   suite with no message and no logs. `settle()` races each probe with a
 *   timer, and `died()` turns the death into a failure that quotes the log.
 * - every 3-member test left ≈ 370 MB of data (etcd preallocates 64 MB WAL
 *   segments) in the temporary folder, run after run; a CI machine has been
 *   seen with 287 MB free. `removeEtcdData()` keeps the logs and drops the rest.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';

export const ETCD = '/usr/bin/etcd';

export interface EtcdMember {
  name: string;
  client: number;
  peer: number;
  proc?: ChildProcess;
  /** Set when the member exited without the test stopping it. */
  death?: string;
}

export interface EtcdStart {
  /** Holds `<name>/` (data) and `<name>.log`. */
  dir: string;
  /** Every member of the cluster (the --initial-cluster list). */
  cluster: readonly EtcdMember[];
  token: string;
  state: 'new' | 'existing';
}

const logOf = (dir: string, m: EtcdMember) => join(dir, `${m.name}.log`);

export function startEtcdMember(m: EtcdMember, o: EtcdStart): ChildProcess {
  const url = `http://127.0.0.1:${m.client}`;
  const peer = `http://127.0.0.1:${m.peer}`;
  const proc = spawn(
    ETCD,
    [
      '--name', m.name, '--data-dir', join(o.dir, m.name),
      '--listen-client-urls', url, '--advertise-client-urls', url,
      '--listen-peer-urls', peer, '--initial-advertise-peer-urls', peer,
      '--initial-cluster', o.cluster.map((x) => `${x.name}=http://127.0.0.1:${x.peer}`).join(','),
      '--initial-cluster-token', o.token, '--initial-cluster-state', o.state,
      '--log-outputs', logOf(o.dir, m), '--logger', 'zap',
    ],
    { stdio: 'ignore' },
  );
  m.proc = proc;
  m.death = undefined;
  proc.once('exit', (code, signal) => {
    // A stop the test made clears m.proc first (stopEtcdMember), so only a death on its own is recorded.
    if (m.proc !== proc) return;
    m.proc = undefined;
    m.death = `etcd member ${m.name} exited on its own (code ${code}, signal ${signal}); its log ends:\n${logTail(o.dir, m)}`;
  });
  return proc;
}

/** Stops a member the test means to stop (SIGKILL or SIGTERM); not recorded as a death. */
export async function stopEtcdMember(m: EtcdMember, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  const p = m.proc;
  m.proc = undefined;
  if (!p || p.exitCode !== null || p.signalCode !== null) return;
  const gone = new Promise((r) => p.once('exit', r));
  p.kill(signal);
  await gone;
}

/** The first member that died on its own, with its log's end; undefined while none has. */
export function died(members: readonly EtcdMember[]): string | undefined {
  return members.find((m) => m.death)?.death;
}

function logTail(dir: string, m: EtcdMember, lines = 15): string {
  const f = logOf(dir, m);
  if (!existsSync(f)) return '(no log)';
  return readFileSync(f, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
}

/**
 * `p`, or `fallback` after `ms`: the timer holds the event loop, so a gRPC
 * call that can never settle (its peer gone, its retries on unref'd timers)
 * is a retry of the caller's loop, not a silently cancelled test.
 */
export function settle<T>(p: Promise<T>, ms: number, fallback: T): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<T>((r) => {
    timer = setTimeout(() => r(fallback), ms);
  });
  return Promise.race([p.catch(() => fallback), late]).finally(() => clearTimeout(timer));
}

/** Drops the members' data folders (the bulk of the bytes), keeps their logs. */
export function removeEtcdData(dir: string, members: readonly EtcdMember[]): void {
  for (const m of members) rmSync(join(dir, m.name), { recursive: true, force: true });
}

/**
 * Holds the event loop for the suite's life and writes a member's death to
 * stderr once: whatever call is left hanging by it then ends at the suite's
 * timeout, with its `after()` run and the logs kept, instead of node:test
 * cancelling every case silently. Returns the function that stops it.
 */
export function etcdWatchdog(members: readonly EtcdMember[]): () => void {
  let told = false;
  const t = setInterval(() => {
    const d = died(members);
    if (d && !told) {
      told = true;
      process.stderr.write(`${d}\n`);
    }
  }, 1000);
  return () => clearInterval(t);
}
