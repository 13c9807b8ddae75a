/**
 * V8 sweeps dead ArrayBuffers on the main thread in a `serve` process:
 * `--no-concurrent-array-buffer-sweeping`, set at run time with
 * `v8.setFlagsFromString` (sweepOnMainThread, for serve to call once at start).
 *
 * Why (docs/benchmarks.md, "Terminated bulk upload, eleventh pass"): every
 * record that a terminated connection opens or seals leaves a node:crypto
 * output Buffer with a 16 KiB off-heap backing store, and every 64 KiB read
 * from a socket leaves one more. V8 (11.3, Node 20) frees those backing stores
 * after each scavenge, by default on a background thread. Measured through
 * `serve`, 1 GiB uploads: with the frees on the main thread the process took
 * 7× fewer page faults per MiB (perf stat: 21.6 → 3.0) and 1.11× the MB per
 * CPU-second (three runs of 8 rounds); downloads 1.00–1.12×; the handshake
 * did not change. The flag on the command line and set at run time gave the
 * same figures. The frees then come from the thread that made the
 * allocations, so malloc hands the same memory straight back.
 *
 * V8 reads this flag each time it starts sweeping, so setting it after start
 * takes effect (unlike the heap floor, cli/heap-floor.ts). An operator who
 * chose the sweeping mode (either spelling of the flag, or
 * `--single-threaded-gc`, in node's flags or NODE_OPTIONS) keeps it. In cli/
 * because only cli/ may reach node:v8 (test/layers.test.ts).
 */
import { setFlagsFromString } from 'node:v8';

/** The V8 flag this module sets. */
export const SWEEP_FLAG = '--no-concurrent-array-buffer-sweeping';

/** Node flags that already decide where array buffers are swept. */
const OPERATOR_CHOICE = /^--(no[-_])?(concurrent[-_]array[-_]buffer[-_]sweeping|single[-_]threaded[-_]gc)(=|$)/;

/** The flag to set for a process started with `execArgv` and `nodeOptions` (NODE_OPTIONS), or undefined when the operator chose. */
export function bulkGcFlag(execArgv: readonly string[], nodeOptions = ''): string | undefined {
  const given = [...execArgv, ...nodeOptions.split(/\s+/)];
  return given.some((a) => OPERATOR_CHOICE.test(a)) ? undefined : SWEEP_FLAG;
}

let applied = false;

/**
 * Set SWEEP_FLAG once per process (later calls return at once). Returns the
 * flag set, or undefined. `set` is for tests.
 */
export function sweepOnMainThread(set: (flags: string) => void = setFlagsFromString): string | undefined {
  if (applied) return undefined;
  applied = true;
  const flag = bulkGcFlag(process.execArgv, process.env.NODE_OPTIONS);
  if (flag) set(flag);
  return flag;
}

