/**
 * One fuzz target in a worker thread: coverage on, target loaded, then
 * mutate → run → classify until the deadline. The input being run is mirrored
 * into shared memory before each execution, so the parent can name the input
 * when the worker hangs (it terminates the worker) or runs out of memory.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parentPort, workerData } from 'node:worker_threads';
import { Coverage } from './coverage.js';
import { type MutateContext, mutate, Rng } from './mutate.js';

export interface WorkerInput {
  target: string;
  seconds: number;
  out: string;
  seed: number;
  /** [0]=runs (all, for the watchdog), [1]=input length, [2]=phase (0 loading, 1 fuzzing), [3]=mutated inputs run */
  ctl: SharedArrayBuffer;
  buf: SharedArrayBuffer;
  slowMs: number;
  /** Stop after this many mutated inputs (0: at the deadline only). */
  execs?: number;
  /** Re-run only these inputs (reproduce mode), no mutation. */
  replay?: string[];
}

export type WorkerMessage =
  | { type: 'stats'; execs: number; corpus: number; features: number; seeds: number }
  | { type: 'crash'; key: string; message: string; stack: string; hex: string }
  | { type: 'slow'; ms: number; hex: string }
  | { type: 'replay'; file: string; ok: boolean; message: string; stack: string }
  | { type: 'done'; execs: number; corpus: number; features: number; seeds: number };

const w = workerData as WorkerInput;
const post = (m: WorkerMessage) => parentPort!.postMessage(m);

// Only the project's own code counts as coverage.
const cov = new Coverage((url) => url.includes('/dist/src/') || url.includes('/dist/fuzz/harness'));
const { TARGETS } = await import('./targets.js');
const { isEchgateError } = await import('../src/errors.js');
const target = TARGETS.find((t) => t.name === w.target);
if (!target) throw new Error(`no target ${w.target}`);
target.setup?.();

const ctl = new Int32Array(w.ctl);
const shared = new Uint8Array(w.buf);

/** Run one input; returns the non-typed error, if any. */
function exec(data: Uint8Array): unknown {
  shared.set(data.length > shared.length ? data.subarray(0, shared.length) : data);
  Atomics.store(ctl, 1, data.length);
  try {
    target!.run(data);
    return undefined;
  } catch (e) {
    return isEchgateError(e) ? undefined : (e ?? new Error(String(e)));
  } finally {
    Atomics.add(ctl, 0, 1);
  }
}

/** Crash identity: the error type and the first project frames. */
function crashKey(e: unknown): { key: string; message: string; stack: string } {
  const err = e instanceof Error ? e : new Error(String(e));
  const stack = err.stack ?? String(err);
  const frames = stack
    .split('\n')
    .filter((l) => l.trim().startsWith('at '))
    .slice(0, 3)
    .map((l) => l.replace(/:\d+\)?$/, '').replace(/^\s*at\s+/, ''));
  return { key: `${err.name}|${frames.join('|')}`, message: `${err.name}: ${err.message}`, stack };
}

if (w.replay) {
  for (const file of w.replay) {
    const e = exec(new Uint8Array(readFileSync(file)));
    const k = e === undefined ? undefined : crashKey(e);
    post({ type: 'replay', file, ok: e === undefined, message: k?.message ?? '', stack: k?.stack ?? '' });
  }
  process.exit(0);
}

const corpusDir = join(w.out, 'corpus', target.name);
mkdirSync(corpusDir, { recursive: true });
const corpus: Uint8Array[] = [];
const seen = new Set<string>();
const digest = (b: Uint8Array) => createHash('sha1').update(b).digest('hex');
const rng = new Rng(w.seed);
const crashes = new Set<string>();

function onCrash(e: unknown, data: Uint8Array): void {
  const k = crashKey(e);
  if (crashes.has(k.key)) return;
  crashes.add(k.key);
  post({ type: 'crash', ...k, hex: Buffer.from(data).toString('hex') });
}

function addCorpus(b: Uint8Array, persist: boolean): boolean {
  const h = digest(b);
  if (seen.has(h)) return false;
  seen.add(h);
  corpus.push(b);
  if (persist) writeFileSync(join(corpusDir, h), b);
  return true;
}

// Seeds: the target's own (vectors, captures, live handshakes) and what earlier runs kept.
const initial = [...target.seeds()];
for (const f of readdirSync(corpusDir)) initial.push(new Uint8Array(readFileSync(join(corpusDir, f))));
if (!initial.length) initial.push(new Uint8Array(0));
// From here on every execution is timed by the parent's watchdog (seeds too).
Atomics.store(ctl, 2, 1);
cov.reset();
for (const s of initial) {
  const e = exec(s);
  if (e !== undefined) onCrash(e, s);
  cov.collect();
  addCorpus(s.length > target.maxLen ? s.subarray(0, target.maxLen) : s, false);
}
const seeds = corpus.length;

const mctx: MutateContext = { rng, maxLen: target.maxLen, dict: target.dict ?? [], other: () => corpus[rng.below(corpus.length)]! };
const deadline = performance.now() + w.seconds * 1000;
let batchSize = 64;
let lastStats = 0;
const batch: Uint8Array[] = [];
const stats = (type: 'stats' | 'done') => post({ type, execs: Atomics.load(ctl, 3), corpus: corpus.length, features: cov.features, seeds });

/** Re-run halves of a batch known to hold new coverage until single inputs remain; keep those that add features. */
function bisect(inputs: Uint8Array[]): void {
  if (inputs.length === 1) {
    cov.reset();
    exec(inputs[0]!);
    if (cov.collect() > 0) addCorpus(inputs[0]!, true);
    return;
  }
  const mid = inputs.length >> 1;
  for (const half of [inputs.slice(0, mid), inputs.slice(mid)]) {
    cov.reset();
    for (const d of half) exec(d);
    if (cov.collect(true) > 0) bisect(half);
  }
}

const goal = w.execs && w.execs > 0 ? w.execs : Number.POSITIVE_INFINITY;
while (performance.now() < deadline && Atomics.load(ctl, 3) < goal) {
  const t0 = performance.now();
  batch.length = 0;
  for (let i = 0; i < batchSize; i++) {
    // Mostly mutate recent finds; sometimes any entry.
    const base = rng.chance(3) ? corpus[corpus.length - 1 - rng.below(Math.min(corpus.length, 16))]! : corpus[rng.below(corpus.length)]!;
    const data = mutate(base, mctx);
    batch.push(data);
    const s = performance.now();
    const e = exec(data);
    const ms = performance.now() - s;
    Atomics.add(ctl, 3, 1);
    if (e !== undefined) onCrash(e, data);
    if (ms > w.slowMs) post({ type: 'slow', ms, hex: Buffer.from(data).toString('hex') });
  }
  // Something in the batch reached new code: find which inputs by halving.
  const tc = performance.now();
  if (cov.collect(true) > 0) {
    bisect(batch);
    if (process.env.FUZZ_DEBUG) console.log(`bisect batch ${batch.length} run ${Math.round(tc - t0)} ms, take+bisect ${Math.round(performance.now() - tc)} ms, features ${cov.features}`);
  } else if (process.env.FUZZ_DEBUG) console.log(`batch ${batch.length} run ${Math.round(tc - t0)} ms, take ${Math.round(performance.now() - tc)} ms`);
  // Aim for batches of ~150 ms of running inputs (a coverage take costs a few ms). Sized on the run
  // time alone: counting a bisection in would shrink the batches exactly while new code is being found,
  // and more, smaller batches mean more takes.
  const took = tc - t0;
  batchSize = Math.max(4, Math.min(16384, Math.round(batchSize * (took < 120 ? 1.25 : took > 200 ? 0.8 : 1))));
  if (t0 - lastStats > 1000) {
    lastStats = t0;
    stats('stats');
  }
}
stats('done');
