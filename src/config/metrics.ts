/** `metrics`: the address of the Prometheus listener (/metrics). */
import { type Ctx, isObj, parseAddress, section } from './fields.js';
import type { Config } from './types.js';

export const metricsSection = section<Config['metrics']>({
  path: 'metrics',
  keys: { address: 'string' },
  parse(raw: unknown, ctx: Ctx) {
    if (raw === undefined) return undefined;
    const a = isObj(raw) ? parseAddress(raw.address) : undefined;
    if (!a) ctx.bad('metrics.address', 'expected "host:port"');
    return a;
  },
  assign(cfg, v) {
    if (v) cfg.metrics = v;
  },
});
