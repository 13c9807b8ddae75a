/**
 * Per-connection log lines are rate limited: a client can open connections far
 * faster than anyone can read log lines about them, and a flood of bad hellos
 * must not turn into a flood of disk writes. Each message kind gets a token
 * bucket; lines dropped are counted and reported in the next line that passes.
 */
import type { Logger } from 'pino';

export class LogLimiter {
  private readonly buckets = new Map<string, { tokens: number; last: number; dropped: number }>();

  constructor(
    private readonly perSecond = 20,
    private readonly burst = 100,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * Log `msg` at `level` unless its bucket is empty. `fields` may be a function, called only when the line is
   * written: a field that costs a system call (the client's address is a getpeername) is then not paid on every
   * connection at a level that writes nothing (measured ≈ 2 µs per handshake; docs/benchmarks.md, "Termination
   * handshake, ninth pass").
   */
  log(log: Logger, level: 'info' | 'warn', fields: Record<string, unknown> | (() => Record<string, unknown>), msg: string): void {
    if (!log.isLevelEnabled(level)) return;
    const t = this.now();
    let b = this.buckets.get(msg);
    if (!b) {
      b = { tokens: this.burst, last: t, dropped: 0 };
      this.buckets.set(msg, b);
    }
    b.tokens = Math.min(this.burst, b.tokens + ((t - b.last) / 1000) * this.perSecond);
    b.last = t;
    if (b.tokens < 1) {
      b.dropped++;
      return;
    }
    b.tokens--;
    if (typeof fields === 'function') fields = fields();
    if (b.dropped > 0) {
      log[level]({ ...fields, suppressed: b.dropped }, msg);
      b.dropped = 0;
    } else log[level](fields, msg);
  }
}
