/**
 * `tcp.services.NAME`: a load balancer over servers (with Traefik v3's TCP
 * healthCheck) or a weighted round-robin over load balancers.
 */
import { type Ctx, duration, isObj, isPort, parseAddress, section, wholeNumber } from './fields.js';
import { DEFAULTS, type HealthCheckConfig, type ServerConfig, type ServiceConfig } from './types.js';

/** Traefik's TCP healthCheck (defaults interval 30s, timeout 5s) plus echgate's tls, unhealthyAfter, healthyAfter. */
function healthCheck(ctx: Ctx, v: unknown, p: string): HealthCheckConfig {
  const h = isObj(v) ? v : {};
  if (!isObj(v)) ctx.bad(p, 'expected a mapping');
  const positive = (key: string, dflt: number) => {
    const d = duration(ctx, h[key], `${p}.${key}`, dflt);
    if (d <= 0) {
      ctx.bad(`${p}.${key}`, 'expected a duration above 0');
      return dflt;
    }
    return d;
  };
  const intervalMs = positive('interval', 30_000);
  const timeoutMs = positive('timeout', 5_000);
  if (h.port !== undefined && !isPort(h.port)) ctx.bad(`${p}.port`, 'expected a port number');
  for (const k of ['send', 'expect'] as const) if (h[k] !== undefined && (typeof h[k] !== 'string' || h[k] === '')) ctx.bad(`${p}.${k}`, 'expected a non-empty string');
  if (h.tls !== undefined && typeof h.tls !== 'boolean') ctx.bad(`${p}.tls`, 'expected true or false');
  return {
    intervalMs,
    unhealthyIntervalMs: positive('unhealthyInterval', intervalMs),
    timeoutMs,
    ...(typeof h.port === 'number' ? { port: h.port } : {}),
    ...(typeof h.send === 'string' && h.send ? { send: h.send } : {}),
    ...(typeof h.expect === 'string' && h.expect ? { expect: h.expect } : {}),
    tls: h.tls === true,
    unhealthyAfter: wholeNumber(ctx, h.unhealthyAfter, `${p}.unhealthyAfter`, 1, 1000),
    healthyAfter: wholeNumber(ctx, h.healthyAfter, `${p}.healthyAfter`, 1, 1000),
  };
}

function loadBalancer(ctx: Ctx, name: string, lb: Record<string, unknown>, p: string): ServiceConfig {
  const servers: ServerConfig[] = [];
  if (!Array.isArray(lb.servers) || lb.servers.length === 0) ctx.bad(`${p}.loadBalancer.servers`, 'at least one server is required');
  else
    lb.servers.forEach((srv, i) => {
      const a = isObj(srv) ? parseAddress(srv.address) : undefined;
      if (!a) ctx.bad(`${p}.loadBalancer.servers[${i}].address`, 'expected "host:port"');
      else servers.push(a);
    });
  let proxyProtocol: 0 | 1 | 2 = 0;
  if (lb.proxyProtocol !== undefined) {
    const v = isObj(lb.proxyProtocol) ? (lb.proxyProtocol.version ?? 2) : undefined;
    if (v === 1 || v === 2) proxyProtocol = v;
    else ctx.bad(`${p}.loadBalancer.proxyProtocol.version`, 'expected 1 or 2');
  }
  return {
    kind: 'loadBalancer',
    name,
    servers,
    proxyProtocol,
    connectTimeoutMs: duration(ctx, lb.connectTimeout, `${p}.loadBalancer.connectTimeout`, DEFAULTS.connectTimeoutMs),
    ...(lb.healthCheck !== undefined ? { healthCheck: healthCheck(ctx, lb.healthCheck, `${p}.loadBalancer.healthCheck`) } : {}),
  };
}

function weighted(ctx: Ctx, name: string, list: unknown, p: string): ServiceConfig {
  const out: { name: string; weight: number }[] = [];
  if (!Array.isArray(list) || list.length === 0) ctx.bad(`${p}.weighted.services`, 'at least one service is required');
  else
    for (const [i, w] of list.entries()) {
      const weight = isObj(w) ? (w.weight ?? 1) : undefined;
      if (!isObj(w) || typeof w.name !== 'string') ctx.bad(`${p}.weighted.services[${i}].name`, 'expected a service name');
      else if (typeof weight !== 'number' || !Number.isInteger(weight) || weight < 0) ctx.bad(`${p}.weighted.services[${i}].weight`, 'expected a whole number ≥ 0');
      else out.push({ name: w.name, weight });
    }
  return { kind: 'weighted', name, services: out };
}

export const tcpServicesSection = section<Map<string, ServiceConfig>>({
  path: 'tcp.services',
  keys: {
    '*': {
      loadBalancer: {
        servers: { '[]': { address: 'string' } },
        proxyProtocol: { version: 'number' },
        terminationDelay: 'value',
        serversTransport: 'string',
        connectTimeout: 'value',
        healthCheck: {
          interval: 'value',
          unhealthyInterval: 'value',
          timeout: 'value',
          port: 'number',
          send: 'string',
          expect: 'string',
          tls: 'boolean',
          unhealthyAfter: 'number',
          healthyAfter: 'number',
        },
      },
      weighted: { services: { '[]': { name: 'string', weight: 'number' } } },
    },
  },
  parse(raw: unknown, ctx: Ctx) {
    const services = new Map<string, ServiceConfig>();
    for (const [name, s] of Object.entries(isObj(raw) ? raw : {})) {
      const p = `tcp.services.${name}`;
      if (!isObj(s)) ctx.bad(p, 'expected a mapping');
      else if (isObj(s.loadBalancer)) services.set(name, loadBalancer(ctx, name, s.loadBalancer, p));
      else if (isObj(s.weighted)) services.set(name, weighted(ctx, name, s.weighted.services, p));
      else ctx.bad(p, 'expected loadBalancer or weighted');
    }
    // A weighted service spreads over load balancers that exist, one level deep.
    for (const s of services.values()) {
      if (s.kind !== 'weighted') continue;
      s.services.forEach((w, i) => {
        const t = services.get(w.name);
        if (!t) ctx.bad(`tcp.services.${s.name}.weighted.services[${i}].name`, `no service named "${w.name}"`);
        else if (t.kind === 'weighted') ctx.bad(`tcp.services.${s.name}.weighted.services[${i}].name`, 'nested weighted services are not supported');
      });
      if (s.services.length > 0 && s.services.every((w) => w.weight === 0)) ctx.bad(`tcp.services.${s.name}.weighted`, 'all weights are 0');
    }
    return services;
  },
  assign(cfg, v) {
    cfg.services = v;
  },
});
