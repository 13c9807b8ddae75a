/**
 * `npm run fuzz -- [--seconds N] [--execs E] [--target NAME[,NAME]] [--jobs J] [--out DIR] [--hang-ms MS] [--list]`
 * `npm run fuzz -- --replay FILE... --target NAME`
 *
 * Runs each target in its own worker thread for N seconds (default 30), J
 * targets at a time (default 1), or until E mutated inputs ran if that comes first, and prints executions, corpus size,
 * coverage features and crashes per target. A crash is any exception other
 * than EchgateError; a hang is an input that runs longer than --hang-ms
 * (default 5000; the worker is terminated and restarted); an input slower
 * than --slow-ms (default 250) is listed as slow. Crash inputs are written to
 * OUT/crashes/TARGET-HASH.bin, new corpus entries to OUT/corpus/TARGET/,
 * and a summary to OUT/summary.json. Exit code 1 when anything crashed or hung.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { TARGETS } from './targets.js';
import type { WorkerInput, WorkerMessage } from './worker.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

interface Args {
  seconds: number;
  /** Stop a target once this many mutated inputs ran (0: run the whole time). */
  execs: number;
  targets: string[];
  jobs: number;
  out: string;
  hangMs: number;
  slowMs: number;
  list: boolean;
  replay: string[];
  seed: number;
}

function parseArgs(argv: string[]): Args {
  const a: Args = { seconds: 30, execs: 0, targets: [], jobs: 1, out: join(ROOT, 'fuzz', 'out'), hangMs: 5000, slowMs: 250, list: false, replay: [], seed: Date.now() & 0x7fffffff };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i]!;
    const v = () => {
      const x = argv[++i];
      if (x === undefined) throw new Error(`${k} needs a value`);
      return x;
    };
    if (k === '--seconds') a.seconds = Number(v());
    else if (k === '--execs') a.execs = Math.max(0, Number(v()));
    else if (k === '--target') a.targets.push(...v().split(','));
    else if (k === '--jobs') a.jobs = Math.max(1, Number(v()));
    else if (k === '--out') a.out = resolve(v());
    else if (k === '--hang-ms') a.hangMs = Number(v());
    else if (k === '--slow-ms') a.slowMs = Number(v());
    else if (k === '--seed') a.seed = Number(v());
    else if (k === '--list') a.list = true;
    else if (k === '--replay') a.replay.push(resolve(v()));
    else throw new Error(`unknown argument ${k}`);
  }
  if (!(a.seconds > 0)) throw new Error('--seconds must be a positive number');
  for (const t of a.targets) if (!TARGETS.some((x) => x.name === t)) throw new Error(`no target ${t}; --list shows them`);
  return a;
}

interface Result {
  target: string;
  seconds: number;
  execs: number;
  execsPerSecond: number;
  seeds: number;
  corpus: number;
  features: number;
  crashes: { key: string; message: string; file: string; hex: string; stack: string }[];
  hangs: { file: string; hex: string }[];
  slow: { ms: number; hex: string }[];
  restarts: number;
}

const INPUT_CAP = 1 << 16;

/** CPU time of this process (all its threads, so the workers too), in ms. */
const cpuMs = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

function runTarget(name: string, a: Args): Promise<Result> {
  const res: Result = { target: name, seconds: a.seconds, execs: 0, execsPerSecond: 0, seeds: 0, corpus: 0, features: 0, crashes: [], hangs: [], slow: [], restarts: 0 };
  const crashDir = join(a.out, 'crashes');
  mkdirSync(crashDir, { recursive: true });
  const save = (kind: string, hex: string) => {
    const file = join(crashDir, `${name}-${kind}-${createHash('sha1').update(hex).digest('hex').slice(0, 12)}.bin`);
    writeFileSync(file, Buffer.from(hex, 'hex'));
    return file;
  };
  const started = performance.now();
  const deadline = started + a.seconds * 1000;
  let execsBefore = 0;
  let lastProgress = started;

  return new Promise((done) => {
    const spawn = () => {
      const left = (deadline - performance.now()) / 1000;
      if (left <= 0.5 || (a.execs > 0 && execsBefore >= a.execs)) return finish();
      const ctl = new SharedArrayBuffer(16);
      const buf = new SharedArrayBuffer(INPUT_CAP);
      const input: WorkerInput = { target: name, seconds: left, out: a.out, seed: (a.seed + res.restarts * 7919) >>> 0, ctl, buf, slowMs: a.slowMs, execs: a.execs > 0 ? a.execs - execsBefore : 0 };
      const w = new Worker(new URL('./worker.js', import.meta.url), { workerData: input, resourceLimits: { maxOldGenerationSizeMb: 1024 } });
      const c = new Int32Array(ctl);
      let lastExecs = -1;
      let lastChange = performance.now();
      let cpuAtChange = cpuMs();
      let over = false;
      const current = () => Buffer.from(new Uint8Array(buf, 0, Math.min(Atomics.load(c, 1), INPUT_CAP))).toString('hex');
      let fuzzing = false;
      const watchdog = setInterval(() => {
        const n = Atomics.load(c, 0);
        if (!fuzzing && Atomics.load(c, 2) === 1) {
          // Set-up is over: the clock for the first input starts now.
          fuzzing = true;
          lastExecs = n;
          lastChange = performance.now();
          cpuAtChange = cpuMs();
          return;
        }
        if (n !== lastExecs) {
          lastExecs = n;
          lastChange = performance.now();
          cpuAtChange = cpuMs();
          return;
        }
        // Set-up (certificates, handshakes) is not an input: only time execution once fuzzing started.
        // A hang is hang-ms of wall time during which this process also burnt hang-ms of CPU: under
        // `nice` on a loaded machine a worker can get no CPU for seconds, which is not the input's doing
        // (past 20× hang-ms of wall time it counts anyway).
        const wall = performance.now() - lastChange;
        if (fuzzing && wall > a.hangMs && (cpuMs() - cpuAtChange > a.hangMs || wall > 20 * a.hangMs)) {
          const hex = current();
          res.hangs.push({ file: save('hang', hex), hex });
          console.log(`[${name}] HANG > ${a.hangMs} ms on input ${hex.slice(0, 120)}${hex.length > 120 ? '…' : ''}`);
          over = true;
          void w.terminate();
        }
      }, 250);
      w.on('message', (m: WorkerMessage) => {
        if (m.type === 'stats' || m.type === 'done') {
          res.execs = execsBefore + m.execs;
          // A line a minute: a campaign stopped early still says how far each target got.
          if (performance.now() - lastProgress > 60_000) {
            lastProgress = performance.now();
            console.log(`[${name}] progress: ${res.execs} execs in ${Math.round((lastProgress - started) / 1000)} s, corpus ${m.corpus}, features ${m.features}`);
          }
          res.corpus = m.corpus;
          res.features = m.features;
          res.seeds = Math.max(res.seeds, m.seeds);
        } else if (m.type === 'crash') {
          if (res.crashes.some((x) => x.key === m.key)) return;
          const file = save('crash', m.hex);
          res.crashes.push({ key: m.key, message: m.message, file, hex: m.hex, stack: m.stack });
          console.log(`[${name}] CRASH ${m.message}\n  input (${m.hex.length / 2} bytes): ${m.hex.slice(0, 200)}${m.hex.length > 200 ? '…' : ''}\n  ${m.stack.split('\n').slice(1, 5).join('\n  ')}`);
        } else if (m.type === 'slow') {
          if (res.slow.length < 20) res.slow.push({ ms: Math.round(m.ms), hex: m.hex });
        }
      });
      w.on('error', (e) => {
        // Out of memory or an error outside run(): name the input being executed.
        const hex = current();
        const key = `worker|${(e as Error).message}`;
        if (!res.crashes.some((x) => x.key === key)) {
          res.crashes.push({ key, message: `worker died: ${(e as Error).message}`, file: save('crash', hex), hex, stack: (e as Error).stack ?? '' });
          console.log(`[${name}] WORKER DIED ${(e as Error).message} on input ${hex.slice(0, 120)}`);
        }
        over = true;
      });
      w.on('exit', () => {
        clearInterval(watchdog);
        execsBefore += Atomics.load(c, 3);
        res.execs = execsBefore;
        if (over) {
          res.restarts++;
          if (res.restarts < 20) return spawn();
        }
        finish();
      });
    };
    const finish = () => {
      const secs = (performance.now() - started) / 1000;
      res.seconds = Math.round(secs);
      res.execsPerSecond = Math.round(res.execs / secs);
      done(res);
    };
    spawn();
  });
}

async function replay(a: Args): Promise<void> {
  const name = a.targets[0];
  if (!name) throw new Error('--replay needs --target');
  const w = new Worker(new URL('./worker.js', import.meta.url), {
    workerData: { target: name, seconds: 0, out: a.out, seed: 1, ctl: new SharedArrayBuffer(16), buf: new SharedArrayBuffer(INPUT_CAP), slowMs: a.slowMs, replay: a.replay } satisfies WorkerInput,
  });
  let bad = 0;
  w.on('message', (m: WorkerMessage) => {
    if (m.type !== 'replay') return;
    if (!m.ok) bad++;
    console.log(`${m.ok ? 'ok   ' : 'CRASH'} ${m.file}${m.ok ? '' : `\n${m.stack}`}`);
  });
  await new Promise((r) => w.once('exit', r));
  process.exitCode = bad ? 1 : 0;
}

async function main(): Promise<void> {
  const a = parseArgs(process.argv.slice(2));
  if (a.list) {
    for (const t of TARGETS) console.log(`${t.name}\n  ${t.about}\n`);
    return;
  }
  mkdirSync(a.out, { recursive: true });
  if (a.replay.length) return replay(a);
  const names = a.targets.length ? a.targets : TARGETS.map((t) => t.name);
  console.log(`fuzzing ${names.length} target(s), ${a.seconds} s each, ${a.jobs} at a time, seed ${a.seed}, output in ${a.out}`);
  const queue = [...names];
  const results: Result[] = [];
  const lane = async () => {
    for (let n = queue.shift(); n !== undefined; n = queue.shift()) {
      const r = await runTarget(n, a);
      results.push(r);
      writeFileSync(join(a.out, `result-${n}-${Date.now()}.json`), JSON.stringify(r, null, 2));
      console.log(`[${n}] ${r.execs} execs in ${r.seconds} s (${r.execsPerSecond}/s), corpus ${r.corpus} (seeds ${r.seeds}), features ${r.features}, crashes ${r.crashes.length}, hangs ${r.hangs.length}, slow ${r.slow.length}`);
    }
  };
  await Promise.all(Array.from({ length: Math.min(a.jobs, names.length) }, lane));
  results.sort((x, y) => names.indexOf(x.target) - names.indexOf(y.target));
  console.log('\ntarget            execs        exec/s  corpus  features  crashes  hangs  slow');
  for (const r of results) {
    console.log(
      `${r.target.padEnd(16)} ${String(r.execs).padStart(10)} ${String(r.execsPerSecond).padStart(9)} ${String(r.corpus).padStart(7)} ${String(r.features).padStart(9)} ${String(r.crashes.length).padStart(8)} ${String(r.hangs.length).padStart(6)} ${String(r.slow.length).padStart(5)}`,
    );
  }
  writeFileSync(join(a.out, `summary-${Date.now()}.json`), JSON.stringify({ args: { ...a, out: undefined }, results }, null, 2));
  process.exitCode = results.some((r) => r.crashes.length || r.hangs.length) ? 1 : 0;
}

main().catch((e) => {
  console.error((e as Error).message);
  process.exit(2);
});
