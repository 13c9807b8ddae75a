/** `log`: level and the privacy switches (inner SNI, ECH routes) and the access line. */
import { bool, type Ctx, isObj, section } from './fields.js';
import { type Config, DEFAULTS } from './types.js';

const LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'];

export const logSection = section<Config['log']>({
  path: 'log',
  keys: { level: 'string', innerSni: 'boolean', access: 'boolean', echRoutes: 'boolean' },
  parse(raw: unknown, ctx: Ctx) {
    const l = isObj(raw) ? raw : {};
    const level = l.level ?? DEFAULTS.logLevel;
    if (typeof level !== 'string' || !LEVELS.includes(level.toLowerCase())) ctx.bad('log.level', `expected one of ${LEVELS.join(', ')}`);
    return {
      level: String(level).toLowerCase(),
      innerSni: bool(ctx, l.innerSni, 'log.innerSni'),
      access: bool(ctx, l.access, 'log.access'),
      echRoutes: bool(ctx, l.echRoutes, 'log.echRoutes'),
    };
  },
  assign(cfg, v) {
    cfg.log = v;
  },
});
