/**
 * The V8 heap floor every `serve` process should run with:
 * `node --initial-old-space-size=96`.
 *
 * Why (docs/benchmarks.md, "Terminated bulk, seventh pass"): every TLS record
 * that `serve` seals for a terminated connection is a node:crypto output
 * Buffer with an off-heap backing store of its own. In Node 20's V8 (11.3) the
 * old generation's free allocation room is its limit minus its size minus the
 * external memory allocated since the last mark-compact, and incremental
 * marking starts as soon as that room is not larger than the young
 * generation's capacity (16 MiB once handshakes have grown it). During bulk the
 * young backing stores reach 32 MiB between two scavenges, so with the limit
 * V8 sets when little is promoted (live size + 8 MiB + young capacity) every
 * scavenge cycle also pays a full mark-compact. `--initial-old-space-size=N`
 * makes N MiB the lowest limit V8 ever sets (`min_old_generation_size_`), which
 * keeps that room above 32 + 16 MiB for a live heap up to about N − 48 MiB. It
 * allocates nothing: the cost is only that old-generation garbage may reach N
 * MiB before a full collection is due.
 *
 * V8 reads the flag only when the isolate is created: it is not accepted in
 * NODE_OPTIONS and `v8.setFlagsFromString` is too late. So a single `serve`
 * process gets it from the command line that starts node (bin/echgate.js's
 * `#!` line, deploy/echgate.service, deploy/Containerfile), and the workers of
 * a process group get it from the primary (cli/workers.ts) even when the
 * primary itself was started without it.
 */

/** MiB; the default the launcher, the deploy files and the workers use. */
export const HEAP_FLOOR_MIB = 96;

/** The node flag that carries the floor. */
export const HEAP_FLOOR_FLAG = `--initial-old-space-size=${HEAP_FLOOR_MIB}`;

/**
 * Node flags that already set V8's initial old-generation size (then the
 * operator's value stands): `--initial-old-space-size`, `--initial-heap-size`,
 * in V8's dash or underscore spelling.
 */
export function setsHeapFloor(execArgv: readonly string[]): boolean {
  return execArgv.some((a) => /^--initial[-_](old[-_]space|heap)[-_]size(=|$)/.test(a));
}

/** The node flags for a worker process: the primary's, plus the floor unless they set one. */
export function workerExecArgv(execArgv: readonly string[]): string[] {
  return setsHeapFloor(execArgv) ? [...execArgv] : [...execArgv, HEAP_FLOOR_FLAG];
}
