/** `metrics`: the address of the Prometheus listener (/metrics, /ready) and the optional dashboard on it. */
import { type Ctx, isObj, mapping, parseAddress, section } from './fields.js';
import type { Config } from './types.js';

export const metricsSection = section<Config['metrics']>({
  path: 'metrics',
  keys: { address: 'string', maxConnectionsPerIP: 'number', dashboard: { basicAuthFile: 'string', remote: 'boolean' } },
  parse(raw: unknown, ctx: Ctx) {
    if (raw === undefined) return undefined;
    const a = isObj(raw) ? parseAddress(raw.address) : undefined;
    if (!a) {
      ctx.bad('metrics.address', 'expected "host:port"');
      return undefined;
    }
    // At most the listener's 16 connections: a larger cap would be no cap.
    const perIp = isObj(raw) ? raw.maxConnectionsPerIP : undefined;
    if (perIp !== undefined && (typeof perIp !== 'number' || !Number.isInteger(perIp) || perIp < 1 || perIp > 16)) {
      ctx.bad('metrics.maxConnectionsPerIP', 'expected a whole number, 1..16 (the listener takes 16 connections in all)');
    }
    if (typeof perIp === 'number') Object.assign(a, { maxConnectionsPerIP: perIp });
    const d = isObj(raw) ? raw.dashboard : undefined;
    if (d === undefined || d === false) return a;
    // `dashboard: true` or a mapping (docs/dashboard.md): off unless given.
    const o = d === true ? {} : (mapping(ctx, d, 'metrics.dashboard', 'expected true, false or a mapping') ?? {});
    if (o.basicAuthFile !== undefined && (typeof o.basicAuthFile !== 'string' || !o.basicAuthFile)) ctx.bad('metrics.dashboard.basicAuthFile', 'expected a file name');
    if (o.remote !== undefined && typeof o.remote !== 'boolean') ctx.bad('metrics.dashboard.remote', 'expected true or false');
    if (o.remote === true && o.basicAuthFile === undefined) ctx.warn('metrics.dashboard: remote: true without basicAuthFile: anyone who reaches metrics.address reads the dashboard');
    return { ...a, dashboard: { remote: o.remote === true, ...(typeof o.basicAuthFile === 'string' ? { basicAuthFile: o.basicAuthFile } : {}) } };
  },
  assign(cfg, v) {
    if (v) cfg.metrics = v;
  },
});
