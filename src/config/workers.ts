/** `workers`: how many processes accept connections (node:cluster), or `auto`. */
import { availableParallelism } from 'node:os';
import { type Ctx, section } from './fields.js';
import { DEFAULTS } from './types.js';

/** Upper bound of `workers`: far above any core count, low enough that a typo (10000) is refused, not forked. */
export const MAX_WORKERS = 256;

export const workersSection = section<number>({
  path: 'workers',
  keys: 'value',
  parse(raw: unknown, ctx: Ctx) {
    if (raw === 'auto') return Math.min(MAX_WORKERS, availableParallelism());
    if (raw === undefined) return DEFAULTS.workers;
    if (typeof raw !== 'number' || !Number.isInteger(raw) || raw < 1 || raw > MAX_WORKERS) {
      ctx.bad('workers', `expected auto or a whole number from 1 to ${MAX_WORKERS}`);
      return DEFAULTS.workers;
    }
    return raw;
  },
  assign(cfg, v) {
    cfg.workers = v;
  },
});
