/**
 * Coverage feedback from V8's own block coverage, through the in-process
 * inspector (Profiler.startPreciseCoverage with detailed: true, binary
 * counts). Every take returns what ran since the last take and resets the
 * counters, so one take after a batch of inputs says whether the batch reached
 * anything new; only then are the inputs re-run one by one to find which.
 *
 * V8 reports, per function that ran, the block ranges whose count differs
 * from the enclosing range: in binary mode that is the blocks that did NOT run
 * (count 0). A block is "covered" in a take when its function ran and it is
 * not inside any zero range of that take. Blocks become known the first time
 * V8 lists them as not run; a feature is a function that ran, or a known
 * block that ran.
 */
import inspector from 'node:inspector';

interface Range {
  startOffset: number;
  endOffset: number;
  count: number;
}

interface FunctionCoverage {
  ranges: Range[];
}

interface ScriptCoverage {
  url: string;
  functions: FunctionCoverage[];
}

interface FnState {
  /** Known blocks of this function: start*2^20+end → covered yet? */
  blocks: Map<number, boolean>;
}

export class Coverage {
  private readonly session = new inspector.Session();
  private readonly fns = new Map<string, FnState>();
  features = 0;

  /** Start before the code under test is loaded, so all of it is instrumented. */
  constructor(private readonly filter: (url: string) => boolean) {
    this.session.connect();
    this.post('Profiler.enable');
    this.post('Profiler.startPreciseCoverage', { callCount: false, detailed: true });
  }

  private post(method: string, params?: object): unknown {
    let out: unknown;
    let err: unknown;
    // The in-thread inspector session answers synchronously.
    this.session.post(method, params, (e, r) => {
      err = e;
      out = r;
    });
    if (err) throw err;
    return out;
  }

  private take(): ScriptCoverage[] {
    return (this.post('Profiler.takePreciseCoverage') as { result: ScriptCoverage[] }).result;
  }

  /** Forget what ran since the last take. */
  reset(): void {
    this.take();
  }

  /** Fold what ran since the last take into the known features; returns how many are new (0 = nothing new). */
  collect(dryRun = false): number {
    let fresh = 0;
    for (const s of this.take()) {
      if (!this.filter(s.url)) continue;
      for (const f of s.functions) {
        const top = f.ranges[0];
        if (!top || top.count === 0) continue;
        const key = `${s.url}:${top.startOffset}`;
        let st = this.fns.get(key);
        if (!st) {
          fresh++;
          if (dryRun) continue;
          st = { blocks: new Map() };
          this.fns.set(key, st);
        }
        const zeros: Range[] = [];
        for (let i = 1; i < f.ranges.length; i++) if (f.ranges[i]!.count === 0) zeros.push(f.ranges[i]!);
        if (!dryRun) for (const z of zeros) if (!st.blocks.has(z.startOffset * 2 ** 20 + z.endOffset)) st.blocks.set(z.startOffset * 2 ** 20 + z.endOffset, false);
        for (const [b, covered] of st.blocks) {
          if (covered) continue;
          const start = Math.floor(b / 2 ** 20);
          const end = b % 2 ** 20;
          if (zeros.some((z) => z.startOffset <= start && end <= z.endOffset)) continue;
          fresh++;
          if (!dryRun) st.blocks.set(b, true);
        }
      }
    }
    if (!dryRun) this.features += fresh;
    return fresh;
  }
}
