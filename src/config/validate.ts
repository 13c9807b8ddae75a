/**
 * Raw YAML object → Config. Accepts Traefik's file-provider shape (static and
 * dynamic parts in one file); sections echgate does not use (http, udp, tls,
 * providers, api, ...) are ignored with a warning. Every problem names its key
 * path, e.g. `tcp.routers.app.rule`.
 */
import { availableParallelism } from 'node:os';
import { ConfigError } from '../errors.js';
import { needsClientHello } from '../routing/compile.js';
import { parseIp, parseRange } from '../bytes/ip.js';
import { RuleError } from '../routing/parse.js';
import { RoutingTable } from '../routing/table.js';
import { parseDuration } from './duration.js';
import { parseRotation, rotationTtlProblem } from './rotation.js';
import { parseTlsOptions } from './tls-options.js';
import {
  type Config,
  DEFAULTS,
  type EntryPointConfig,
  type HealthCheckConfig,
  type RouterConfig,
  type ServerConfig,
  type ServiceConfig,
  type TcpMiddlewareConfig,
} from './types.js';

/** ConfigError lives in src/errors.ts (dns/ and proxy/ throw it too); re-exported here for existing importers. */
export { ConfigError };

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

const KNOWN_TOP = new Set(['entryPoints', 'tcp', 'metrics', 'log', 'ech', 'tls', 'dns', 'workers']);
/** Upper bound of `workers`: far above any core count, low enough that a typo (10000) is refused, not forked. */
export const MAX_WORKERS = 256;
const IGNORED_TOP = new Set(['http', 'udp', 'providers', 'api', 'global', 'serversTransport', 'accessLog', 'ping']);

export function parseAddress(s: unknown): { host: string; port: number } | undefined {
  if (typeof s !== 'string') return undefined;
  // "host:port", "[v6]:port", ":port" (all interfaces, as Traefik)
  const m = /^(?:\[([^\]]+)\]|([^:[\]]*)):(\d{1,5})(?:\/tcp)?$/.exec(s.trim());
  if (!m) return undefined;
  const port = Number(m[3]);
  if (port > 65535) return undefined;
  const host = m[1] ?? (m[2] || '0.0.0.0');
  return { host, port };
}

export function validateConfig(raw: unknown, file: string): Config {
  const problems: { path: string; message: string }[] = [];
  const warnings: string[] = [];
  const bad = (path: string, message: string) => problems.push({ path, message });
  const warnUnknown = (o: Obj, path: string, known: string[]) => {
    for (const k of Object.keys(o)) if (!known.includes(k)) warnings.push(`${path}.${k}: unknown key, ignored`);
  };

  if (!isObj(raw)) throw new ConfigError(file, [{ path: '(top)', message: 'expected a mapping' }]);
  for (const k of Object.keys(raw)) {
    if (!KNOWN_TOP.has(k)) {
      if (IGNORED_TOP.has(k)) warnings.push(`${k}: section not used by echgate, ignored`);
      else bad(k, 'unknown top-level key');
    }
  }

  const duration = (v: unknown, path: string, dflt: number): number => {
    if (v === undefined) return dflt;
    const d = parseDuration(v);
    if (d === undefined) {
      bad(path, `invalid duration ${JSON.stringify(v)} (write e.g. 10s, 500ms, 2m, or a number of seconds)`);
      return dflt;
    }
    return d;
  };
  /** Traefik's TCP healthCheck (defaults interval 30s, timeout 5s) plus echgate's tls, unhealthyAfter, healthyAfter. */
  const healthCheck = (v: unknown, p: string): HealthCheckConfig => {
    const h = isObj(v) ? v : {};
    if (!isObj(v)) bad(p, 'expected a mapping');
    warnUnknown(h, p, ['interval', 'unhealthyInterval', 'timeout', 'port', 'send', 'expect', 'tls', 'unhealthyAfter', 'healthyAfter']);
    const positive = (key: string, dflt: number) => {
      const d = duration(h[key], `${p}.${key}`, dflt);
      if (d <= 0) {
        bad(`${p}.${key}`, 'expected a duration above 0');
        return dflt;
      }
      return d;
    };
    const intervalMs = positive('interval', 30_000);
    const timeoutMs = positive('timeout', 5_000);
    if (h.port !== undefined && (typeof h.port !== 'number' || !Number.isInteger(h.port) || h.port < 1 || h.port > 65535)) bad(`${p}.port`, 'expected a port number');
    for (const k of ['send', 'expect'] as const) if (h[k] !== undefined && (typeof h[k] !== 'string' || h[k] === '')) bad(`${p}.${k}`, 'expected a non-empty string');
    if (h.tls !== undefined && typeof h.tls !== 'boolean') bad(`${p}.tls`, 'expected true or false');
    return {
      intervalMs,
      unhealthyIntervalMs: positive('unhealthyInterval', intervalMs),
      timeoutMs,
      ...(typeof h.port === 'number' ? { port: h.port } : {}),
      ...(typeof h.send === 'string' && h.send ? { send: h.send } : {}),
      ...(typeof h.expect === 'string' && h.expect ? { expect: h.expect } : {}),
      tls: h.tls === true,
      unhealthyAfter: posInt(h.unhealthyAfter, `${p}.unhealthyAfter`, 1, 1000),
      healthyAfter: posInt(h.healthyAfter, `${p}.healthyAfter`, 1, 1000),
    };
  };
  const posInt = (v: unknown, path: string, dflt: number, max = Number.MAX_SAFE_INTEGER): number => {
    if (v === undefined) return dflt;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > max) {
      bad(path, `expected a whole number from 1 to ${max}`);
      return dflt;
    }
    return v;
  };

  // ---- entryPoints ----
  const entryPoints = new Map<string, EntryPointConfig>();
  const eps = raw.entryPoints;
  // Names declared, even when their settings are wrong, so one typo is reported once.
  const declaredEps = new Set(isObj(eps) ? Object.keys(eps) : []);
  if (!isObj(eps) || Object.keys(eps).length === 0) bad('entryPoints', 'at least one entrypoint is required');
  else {
    for (const [name, e] of Object.entries(eps)) {
      const p = `entryPoints.${name}`;
      if (!isObj(e)) {
        bad(p, 'expected a mapping');
        continue;
      }
      warnUnknown(e, p, ['address', 'clientHelloTimeout', 'handshakeTimeout', 'maxClientHelloBytes', 'maxConnections', 'transport', 'echBackend']);
      if (e.echBackend !== undefined && typeof e.echBackend !== 'boolean') bad(`${p}.echBackend`, 'expected true or false');
      const addr = parseAddress(e.address);
      if (!addr) {
        bad(`${p}.address`, `expected "host:port", got ${JSON.stringify(e.address)}`);
        continue;
      }
      const transport = isObj(e.transport) ? e.transport : {};
      const responding = isObj(transport.respondingTimeouts) ? transport.respondingTimeouts : {};
      const lifeCycle = isObj(transport.lifeCycle) ? transport.lifeCycle : {};
      entryPoints.set(name, {
        name,
        ...addr,
        clientHelloTimeoutMs: duration(e.clientHelloTimeout, `${p}.clientHelloTimeout`, DEFAULTS.clientHelloTimeoutMs),
        handshakeTimeoutMs: duration(e.handshakeTimeout, `${p}.handshakeTimeout`, DEFAULTS.handshakeTimeoutMs),
        maxClientHelloBytes: posInt(e.maxClientHelloBytes, `${p}.maxClientHelloBytes`, DEFAULTS.maxClientHelloBytes, 16 * 1024 * 1024),
        maxConnections: posInt(e.maxConnections, `${p}.maxConnections`, DEFAULTS.maxConnections),
        idleTimeoutMs: duration(responding.idleTimeout, `${p}.transport.respondingTimeouts.idleTimeout`, DEFAULTS.idleTimeoutMs),
        graceTimeoutMs: duration(lifeCycle.graceTimeOut, `${p}.transport.lifeCycle.graceTimeOut`, DEFAULTS.graceTimeoutMs),
        echBackend: e.echBackend === true,
      });
    }
  }

  // ---- services ----
  const services = new Map<string, ServiceConfig>();
  const tcp = raw.tcp;
  if (tcp !== undefined && !isObj(tcp)) bad('tcp', 'expected a mapping');
  const tcpObj = isObj(tcp) ? tcp : {};
  warnUnknown(tcpObj, 'tcp', ['routers', 'services', 'middlewares', 'serversTransports']);
  const svcs = isObj(tcpObj.services) ? tcpObj.services : {};
  for (const [name, s] of Object.entries(svcs)) {
    const p = `tcp.services.${name}`;
    if (!isObj(s)) {
      bad(p, 'expected a mapping');
      continue;
    }
    if (isObj(s.loadBalancer)) {
      const lb = s.loadBalancer;
      warnUnknown(lb, `${p}.loadBalancer`, ['servers', 'proxyProtocol', 'terminationDelay', 'serversTransport', 'connectTimeout', 'healthCheck']);
      const servers: ServerConfig[] = [];
      if (!Array.isArray(lb.servers) || lb.servers.length === 0) bad(`${p}.loadBalancer.servers`, 'at least one server is required');
      else
        lb.servers.forEach((srv, i) => {
          const a = isObj(srv) ? parseAddress(srv.address) : undefined;
          if (!a) bad(`${p}.loadBalancer.servers[${i}].address`, 'expected "host:port"');
          else servers.push(a);
        });
      let proxyProtocol: 0 | 1 | 2 = 0;
      if (lb.proxyProtocol !== undefined) {
        const v = isObj(lb.proxyProtocol) ? (lb.proxyProtocol.version ?? 2) : undefined;
        if (v === 1 || v === 2) proxyProtocol = v;
        else bad(`${p}.loadBalancer.proxyProtocol.version`, 'expected 1 or 2');
      }
      services.set(name, {
        kind: 'loadBalancer',
        name,
        servers,
        proxyProtocol,
        connectTimeoutMs: duration(lb.connectTimeout, `${p}.loadBalancer.connectTimeout`, DEFAULTS.connectTimeoutMs),
        ...(lb.healthCheck !== undefined ? { healthCheck: healthCheck(lb.healthCheck, `${p}.loadBalancer.healthCheck`) } : {}),
      });
    } else if (isObj(s.weighted)) {
      const list = s.weighted.services;
      const out: { name: string; weight: number }[] = [];
      if (!Array.isArray(list) || list.length === 0) bad(`${p}.weighted.services`, 'at least one service is required');
      else
        for (const [i, w] of list.entries()) {
          const weight = isObj(w) ? (w.weight ?? 1) : undefined;
          if (!isObj(w) || typeof w.name !== 'string') bad(`${p}.weighted.services[${i}].name`, 'expected a service name');
          else if (typeof weight !== 'number' || !Number.isInteger(weight) || weight < 0) {
            bad(`${p}.weighted.services[${i}].weight`, 'expected a whole number ≥ 0');
          } else out.push({ name: w.name, weight });
        }
      services.set(name, { kind: 'weighted', name, services: out });
    } else bad(p, 'expected loadBalancer or weighted');
  }
  for (const s of services.values()) {
    if (s.kind !== 'weighted') continue;
    s.services.forEach((w, i) => {
      const t = services.get(w.name);
      if (!t) bad(`tcp.services.${s.name}.weighted.services[${i}].name`, `no service named "${w.name}"`);
      else if (t.kind === 'weighted') bad(`tcp.services.${s.name}.weighted.services[${i}].name`, 'nested weighted services are not supported');
    });
    if (s.services.length > 0 && s.services.every((w) => w.weight === 0)) bad(`tcp.services.${s.name}.weighted`, 'all weights are 0');
  }

  // ---- tls.options first: routers refer to them by name ----
  const tlsOptions = parseTlsOptions(isObj(raw.tls) ? raw.tls.options : undefined, bad, (w) => warnings.push(w));

  // ---- tcp.middlewares (Traefik: ipAllowList, its old spelling ipWhiteList, inFlightConn) ----
  const tcpMiddlewares = new Map<string, TcpMiddlewareConfig>();
  if (tcpObj.middlewares !== undefined && !isObj(tcpObj.middlewares)) bad('tcp.middlewares', 'expected a mapping');
  for (const [name, m] of Object.entries(isObj(tcpObj.middlewares) ? tcpObj.middlewares : {})) {
    const p = `tcp.middlewares.${name}`;
    if (!isObj(m) || Object.keys(m).length !== 1) {
      bad(p, 'expected exactly one of ipAllowList, inFlightConn (ipWhiteList: the old name of ipAllowList)');
      continue;
    }
    const [kind, body] = Object.entries(m)[0]!;
    const bp = `${p}.${kind}`;
    if (kind === 'ipAllowList' || kind === 'ipWhiteList') {
      if (kind === 'ipWhiteList') warnings.push(`${bp}: ipWhiteList is deprecated (Traefik v3): write ipAllowList`);
      if (!isObj(body)) {
        bad(bp, 'expected a mapping with sourceRange');
        continue;
      }
      warnUnknown(body, bp, ['sourceRange']);
      const sr = body.sourceRange;
      // Traefik refuses an empty list too (no trusted IPs): an allow-list that allows nothing is a mistake.
      if (!Array.isArray(sr) || sr.length === 0) bad(`${bp}.sourceRange`, 'expected a list of addresses or CIDR ranges (at least one)');
      else {
        sr.forEach((r, i) => {
          if (typeof r !== 'string' || !parseRange(r.trim())) bad(`${bp}.sourceRange[${i}]`, `not an address or CIDR range: ${JSON.stringify(r)}`);
        });
        tcpMiddlewares.set(name, { kind: 'ipAllowList', name, sourceRange: sr.map((r) => String(r).trim()) });
      }
    } else if (kind === 'inFlightConn') {
      if (!isObj(body)) {
        bad(bp, 'expected a mapping with amount');
        continue;
      }
      warnUnknown(body, bp, ['amount']);
      if (typeof body.amount !== 'number' || !Number.isInteger(body.amount) || body.amount < 1) bad(`${bp}.amount`, 'expected a whole number ≥ 1 (connections per client address)');
      else tcpMiddlewares.set(name, { kind: 'inFlightConn', name, amount: body.amount });
    } else bad(bp, `unknown TCP middleware "${kind}" (echgate has ipAllowList and inFlightConn, as Traefik)`);
  }
  const declaredMiddlewares = new Set(isObj(tcpObj.middlewares) ? Object.keys(tcpObj.middlewares) : []);

  // ---- routers ----
  const routers: RouterConfig[] = [];
  const rts = isObj(tcpObj.routers) ? tcpObj.routers : {};
  for (const [name, r] of Object.entries(rts)) {
    const p = `tcp.routers.${name}`;
    if (!isObj(r)) {
      bad(p, 'expected a mapping');
      continue;
    }
    warnUnknown(r, p, ['entryPoints', 'rule', 'service', 'priority', 'tls', 'requireECH', 'middlewares', 'ruleSyntax']);
    if (typeof r.rule !== 'string') {
      bad(`${p}.rule`, 'a rule is required');
      continue;
    }
    if (typeof r.service !== 'string') bad(`${p}.service`, 'a service is required');
    else if (!services.has(r.service)) bad(`${p}.service`, `no service named "${r.service}"`);
    let eps: string[] = [...declaredEps]; // Traefik: no entryPoints = all of them
    if (r.entryPoints !== undefined) {
      if (!Array.isArray(r.entryPoints) || !r.entryPoints.every((x) => typeof x === 'string')) {
        bad(`${p}.entryPoints`, 'expected a list of entrypoint names');
      } else {
        eps = r.entryPoints as string[];
        for (const e of eps) if (!declaredEps.has(e)) bad(`${p}.entryPoints`, `no entrypoint named "${e}"`);
      }
    }
    let priority: number | undefined;
    if (r.priority !== undefined) {
      if (typeof r.priority !== 'number' || !Number.isInteger(r.priority)) bad(`${p}.priority`, 'expected a whole number');
      else priority = r.priority;
    }
    let tls: RouterConfig['tls'];
    if (r.tls !== undefined && r.tls !== null) {
      if (!isObj(r.tls)) bad(`${p}.tls`, 'expected a mapping');
      else {
        warnUnknown(r.tls, `${p}.tls`, ['passthrough', 'alpn', 'echSplit', 'options', 'certResolver', 'domains']);
        tls = { passthrough: r.tls.passthrough === true };
        if (!tls.passthrough) tls.options = tlsOptions.get('default')!;
        if (r.tls.options !== undefined) {
          // Traefik writes a file-provider reference as NAME@file; this file is that provider.
          const ref = typeof r.tls.options === 'string' ? r.tls.options.replace(/@file$/, '') : undefined;
          const o = ref === undefined ? undefined : tlsOptions.get(ref);
          if (ref === undefined) bad(`${p}.tls.options`, 'expected the name of an entry in tls.options');
          else if (!o) bad(`${p}.tls.options`, `no TLS options named "${ref}" in tls.options`);
          else if (tls.passthrough) warnings.push(`${p}.tls.options: ignored with passthrough (the backend terminates TLS)`);
          else tls.options = o;
        }
        if (r.tls.echSplit !== undefined) {
          if (typeof r.tls.echSplit !== 'boolean') bad(`${p}.tls.echSplit`, 'expected true or false');
          else if (r.tls.echSplit && !tls.passthrough) bad(`${p}.tls.echSplit`, 'split mode forwards the hello: it needs passthrough: true');
          else if (r.tls.echSplit) tls.echSplit = true;
        }
        if (r.tls.alpn !== undefined) {
          if (!Array.isArray(r.tls.alpn) || !r.tls.alpn.every((x) => typeof x === 'string' && x.length > 0 && x.length < 256)) {
            bad(`${p}.tls.alpn`, 'expected a list of protocol names');
          } else tls.alpn = r.tls.alpn as string[];
        }
      }
    }
    const requireECH = r.requireECH === true;
    if (r.requireECH !== undefined && typeof r.requireECH !== 'boolean') bad(`${p}.requireECH`, 'expected true or false');
    if (requireECH && tls?.passthrough && !tls.echSplit) {
      bad(`${p}.requireECH`, 'a passthrough backend cannot complete an ECH handshake (it cannot send the accept confirmation); use tls: {} (termination) or echSplit: true towards an ECH backend server');
    }
    if (requireECH && !tls) bad(`${p}.requireECH`, 'requireECH needs a tls section');
    // RFC 9849: ECH is TLS 1.3 only, so options that stop at TLS 1.2 could never serve this router.
    if (requireECH && tls?.options && tls.options.maxVersion < 0x0304) {
      bad(`${p}.tls.options`, `requireECH needs TLS 1.3, but tls.options.${tls.options.name}.maxVersion is VersionTLS12`);
    }
    // Validate the rule now so the error names this router and the column.
    try {
      const table = new RoutingTable([{ name, rule: r.rule, tls: tls !== undefined, target: null }]);
      if (!tls && needsClientHello(table.routes[0]!.rule.tree)) {
        bad(`${p}.rule`, 'a router without a tls section can only use HostSNI(`*`) (and ClientIP); add tls: { passthrough: true }');
      }
    } catch (e) {
      if (e instanceof RuleError) bad(`${p}.rule`, e.message.replace(/^router "[^"]*": /, ''));
      else throw e;
    }
    // Applied in the order listed; a missing one is an error, never a router that silently lets everyone in.
    const middlewares: TcpMiddlewareConfig[] = [];
    if (r.middlewares !== undefined) {
      if (!Array.isArray(r.middlewares)) bad(`${p}.middlewares`, 'expected a list of names from tcp.middlewares');
      else
        r.middlewares.forEach((ref, i) => {
          // Traefik writes a file-provider reference as NAME@file; this file is that provider.
          const n = typeof ref === 'string' ? ref.replace(/@file$/, '') : undefined;
          if (n === undefined) bad(`${p}.middlewares[${i}]`, 'expected a name from tcp.middlewares');
          else if (/@/.test(n)) bad(`${p}.middlewares[${i}]`, `"${n}" names another provider; only @file (this file) exists here`);
          else if (!declaredMiddlewares.has(n)) bad(`${p}.middlewares[${i}]`, `no middleware named "${n}" in tcp.middlewares`);
          else {
            const m = tcpMiddlewares.get(n);
            if (m) middlewares.push(m);
          }
        });
    }
    routers.push({ name, entryPoints: eps, rule: r.rule, service: String(r.service), priority, tls, requireECH, middlewares });
  }

  // ---- workers (processes sharing the listeners) ----
  let workers: number = DEFAULTS.workers;
  if (raw.workers === 'auto') workers = Math.min(MAX_WORKERS, availableParallelism());
  else if (raw.workers !== undefined) {
    if (typeof raw.workers !== 'number' || !Number.isInteger(raw.workers) || raw.workers < 1 || raw.workers > MAX_WORKERS) {
      bad('workers', `expected auto or a whole number from 1 to ${MAX_WORKERS}`);
    } else workers = raw.workers;
  }

  // ---- metrics, log, ech ----
  let metrics: Config['metrics'];
  if (raw.metrics !== undefined) {
    const m = raw.metrics;
    const a = isObj(m) ? parseAddress(m.address) : undefined;
    if (!a) bad('metrics.address', 'expected "host:port"');
    else metrics = a;
    const d = isObj(m) ? m.dashboard : undefined;
    if (metrics && d !== undefined && d !== false) {
      const o = isObj(d) ? d : {};
      if (d !== true && !isObj(d)) bad('metrics.dashboard', 'expected true, false or a mapping');
      warnUnknown(o, 'metrics.dashboard', ['basicAuthFile', 'remote']);
      if (o.basicAuthFile !== undefined && (typeof o.basicAuthFile !== 'string' || !o.basicAuthFile)) bad('metrics.dashboard.basicAuthFile', 'expected a file name');
      if (o.remote !== undefined && typeof o.remote !== 'boolean') bad('metrics.dashboard.remote', 'expected true or false');
      metrics.dashboard = { remote: o.remote === true, ...(typeof o.basicAuthFile === 'string' ? { basicAuthFile: o.basicAuthFile } : {}) };
      if (o.remote === true && o.basicAuthFile === undefined) warnings.push('metrics.dashboard: remote: true without basicAuthFile: anyone who reaches metrics.address reads the dashboard');
      if (workers > 1) warnings.push('metrics.dashboard: not served with workers > 1 yet (the primary holds no routers, keys or health state); /metrics still is');
    }
  }
  const logRaw = isObj(raw.log) ? raw.log : {};
  warnUnknown(logRaw, 'log', ['level', 'innerSni', 'access', 'echRoutes']);
  const level = logRaw.level ?? DEFAULTS.logLevel;
  if (typeof level !== 'string' || !['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'].includes(level.toLowerCase())) {
    bad('log.level', 'expected one of trace, debug, info, warn, error, fatal, silent');
  }
  if (logRaw.innerSni !== undefined && typeof logRaw.innerSni !== 'boolean') bad('log.innerSni', 'expected true or false');
  if (logRaw.access !== undefined && typeof logRaw.access !== 'boolean') bad('log.access', 'expected true or false');
  if (logRaw.echRoutes !== undefined && typeof logRaw.echRoutes !== 'boolean') bad('log.echRoutes', 'expected true or false');
  let ech: Config['ech'];
  if (raw.ech !== undefined) {
    if (!isObj(raw.ech)) bad('ech', 'expected a mapping');
    else {
      const keysDir = raw.ech.keysDir ?? 'keys';
      if (typeof keysDir !== 'string') bad('ech.keysDir', 'expected a folder path');
      ech = { keysDir: String(keysDir), trialDecrypt: raw.ech.trialDecrypt === true };
      if (raw.ech.rotation !== undefined) {
        const rotation = parseRotation(raw.ech.rotation, bad, warnUnknown, parseAddress);
        if (rotation) ech.rotation = rotation;
      }
    }
  }
  // ---- tls (Traefik's dynamic TLS section): certificates for terminating routers ----
  const certificates: { certFile: string; keyFile: string }[] = [];
  const certPair = (v: unknown, path: string) => {
    if (!isObj(v) || typeof v.certFile !== 'string' || typeof v.keyFile !== 'string') bad(path, 'expected { certFile, keyFile }');
    else certificates.push({ certFile: v.certFile, keyFile: v.keyFile });
  };
  if (raw.tls !== undefined) {
    if (!isObj(raw.tls)) bad('tls', 'expected a mapping');
    else {
      warnUnknown(raw.tls, 'tls', ['certificates', 'stores', 'options']);
      const stores = isObj(raw.tls.stores) ? raw.tls.stores : {};
      const dflt = isObj(stores.default) ? stores.default.defaultCertificate : undefined;
      if (dflt !== undefined) certPair(dflt, 'tls.stores.default.defaultCertificate');
      if (raw.tls.certificates !== undefined) {
        if (!Array.isArray(raw.tls.certificates)) bad('tls.certificates', 'expected a list');
        else for (const [i, c] of raw.tls.certificates.entries()) certPair(c, `tls.certificates[${i}]`);
      }
    }
  }
  // ---- dns: the embedded authoritative zone over DoH ----
  let dns: Config['dns'];
  if (raw.dns !== undefined) {
    const d = raw.dns;
    if (!isObj(d)) bad('dns', 'expected a mapping');
    else {
      warnUnknown(d, 'dns', ['address', 'tcp', 'doh', 'ttl', 'names', 'zone', 'nameservers']);
      // Limits: positive integers and durations; what is left out takes the listener's default.
      const count = (o: Obj, key: string, path: string, max: number): number | undefined => {
        const v = o[key];
        if (v === undefined) return undefined;
        if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > max) bad(`${path}.${key}`, `expected a whole number, 1..${max}`);
        return Number(v);
      };
      const duration = (o: Obj, key: string, path: string): number | undefined => {
        if (o[key] === undefined) return undefined;
        const ms = parseDuration(o[key]);
        if (ms === undefined || ms < 1 || ms > 3_600_000) bad(`${path}.${key}`, 'expected a duration such as 10s (1ms..1h)');
        return ms;
      };
      const section = (o: Obj, key: string, path: string): Obj | undefined => {
        if (o[key] === undefined) return undefined;
        if (!isObj(o[key])) bad(`${path}.${key}`, 'expected a mapping');
        return isObj(o[key]) ? o[key] : {};
      };
      const prune = <T extends Record<string, number | undefined>>(o: T): T | undefined => {
        const kept = Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
        return Object.keys(kept).length ? kept : undefined;
      };
      const tcpRaw = section(d, 'tcp', 'dns');
      if (tcpRaw) warnUnknown(tcpRaw, 'dns.tcp', ['maxConnections', 'maxConnectionsPerIP', 'idleTimeout', 'queryTimeout']);
      const tcp = tcpRaw
        ? prune({
            maxConnections: count(tcpRaw, 'maxConnections', 'dns.tcp', 65535),
            maxConnectionsPerIP: count(tcpRaw, 'maxConnectionsPerIP', 'dns.tcp', 65535),
            idleTimeoutMs: duration(tcpRaw, 'idleTimeout', 'dns.tcp'),
            queryTimeoutMs: duration(tcpRaw, 'queryTimeout', 'dns.tcp'),
          })
        : undefined;
      const hostname = (v: unknown) => typeof v === 'string' && /^(?=.{1,253}\.?$)([A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?\.?$/.test(v);
      if (d.zone !== undefined && !hostname(d.zone)) bad('dns.zone', 'expected a domain name');
      if (d.nameservers !== undefined && (!Array.isArray(d.nameservers) || d.nameservers.length === 0 || !d.nameservers.every(hostname))) bad('dns.nameservers', 'expected a list of host names');
      if (d.nameservers !== undefined && d.zone === undefined) bad('dns.nameservers', 'nameservers are the NS records of dns.zone: give zone too');
      if (d.doh !== undefined && !isObj(d.doh)) bad('dns.doh', 'expected a mapping');
      const doh = isObj(d.doh) ? d.doh : undefined;
      if (doh) warnUnknown(doh, 'dns.doh', ['address', 'certFile', 'keyFile', 'path', 'maxConnections', 'respondingTimeouts', 'http2']);
      let dohLimits: NonNullable<NonNullable<Config['dns']>['doh']>['limits'];
      if (doh) {
        const rt = section(doh, 'respondingTimeouts', 'dns.doh');
        const h2 = section(doh, 'http2', 'dns.doh');
        if (rt) warnUnknown(rt, 'dns.doh.respondingTimeouts', ['readTimeout', 'idleTimeout']);
        if (h2) warnUnknown(h2, 'dns.doh.http2', ['maxConcurrentStreams', 'maxHeaderListSize']);
        dohLimits = prune({
          maxConnections: count(doh, 'maxConnections', 'dns.doh', 65535),
          readTimeoutMs: rt && duration(rt, 'readTimeout', 'dns.doh.respondingTimeouts'),
          idleTimeoutMs: rt && duration(rt, 'idleTimeout', 'dns.doh.respondingTimeouts'),
          maxConcurrentStreams: h2 && count(h2, 'maxConcurrentStreams', 'dns.doh.http2', 1000),
          // At least what one legitimate GET needs: a 64 KiB query is ~87 KiB in base64url.
          maxHeaderListSize: h2 && count(h2, 'maxHeaderListSize', 'dns.doh.http2', 1 << 20),
        });
      }
      const addr = doh ? parseAddress(doh.address) : undefined;
      if (doh && !addr) bad('dns.doh.address', 'expected "host:port"');
      if (doh && (typeof doh.certFile !== 'string' || typeof doh.keyFile !== 'string')) bad('dns.doh', 'certFile and keyFile are required (DoH is HTTPS)');
      const listen = d.address === undefined ? undefined : parseAddress(d.address);
      if (d.address !== undefined && !listen) bad('dns.address', 'expected "host:port"');
      if (d.address === undefined && !doh) bad('dns', 'give address (plain DNS over UDP and TCP), doh, or both');
      const ttl = d.ttl ?? 60;
      if (typeof ttl !== 'number' || !Number.isInteger(ttl) || ttl < 0 || ttl > 86400) bad('dns.ttl', 'expected seconds, 0..86400');
      const names: NonNullable<Config['dns']>['names'] = {};
      for (const [name, n] of Object.entries(isObj(d.names) ? d.names : {})) {
        const p = `dns.names.${name}`;
        if (!isObj(n)) {
          bad(p, 'expected a mapping');
          continue;
        }
        warnUnknown(n, p, ['a', 'aaaa', 'https']);
        const ips = (v: unknown, key: string, v6: boolean) => {
          if (v === undefined) return undefined;
          if (!Array.isArray(v) || !v.every((x) => typeof x === 'string' && parseIp(x)?.v6 === v6)) {
            bad(`${p}.${key}`, `expected a list of IPv${v6 ? 6 : 4} addresses`);
            return undefined;
          }
          return v as string[];
        };
        let https: NonNullable<Config['dns']>['names'][string]['https'];
        if (n.https !== undefined) {
          const h = isObj(n.https) ? n.https : {};
          if (!isObj(n.https)) bad(`${p}.https`, 'expected a mapping');
          warnUnknown(h, `${p}.https`, ['priority', 'alpn', 'port', 'ech', 'alias']);
          if (h.alias !== undefined && (typeof h.alias !== 'string' || !hostname(h.alias))) bad(`${p}.https.alias`, 'expected a host name (the AliasMode TargetName)');
          if (h.alias !== undefined && (h.priority !== undefined || h.alpn !== undefined)) bad(`${p}.https.alias`, 'an AliasMode record carries no priority or alpn (RFC 9460 §2.4.2)');
          if (h.port !== undefined && (typeof h.port !== 'number' || !Number.isInteger(h.port) || h.port < 1 || h.port > 65535)) bad(`${p}.https.port`, 'expected a port number');
          if (h.alpn !== undefined && (!Array.isArray(h.alpn) || !h.alpn.every((x) => typeof x === 'string' && x.length > 0 && x.length < 256))) bad(`${p}.https.alpn`, 'expected a list of protocol names');
          if (h.priority !== undefined && (typeof h.priority !== 'number' || !Number.isInteger(h.priority) || h.priority < 1 || h.priority > 65535)) bad(`${p}.https.priority`, 'expected 1..65535 (ServiceMode)');
          https = { priority: h.priority as number | undefined, alpn: h.alpn as string[] | undefined, port: h.port as number | undefined, ech: h.ech !== false, ...(typeof h.alias === 'string' ? { alias: h.alias } : {}) };
        }
        names[name] = { a: ips(n.a, 'a', false), aaaa: ips(n.aaaa, 'aaaa', true), https };
      }
      if (typeof d.zone === 'string') {
        const apex = d.zone.toLowerCase().replace(/\.$/, '');
        for (const name of Object.keys(names)) {
          const n = name.toLowerCase().replace(/\.$/, '');
          if (n !== apex && !n.endsWith(`.${apex}`)) bad(`dns.names.${name}`, `outside dns.zone ${d.zone}: it would never be answered`);
        }
      }
      dns = {
        listen,
        ...(tcp ? { tcp } : {}),
        doh:
          doh && addr
            ? { ...addr, certFile: String(doh.certFile), keyFile: String(doh.keyFile), path: typeof doh.path === 'string' ? doh.path : '/dns-query', ...(dohLimits ? { limits: dohLimits } : {}) }
            : undefined,
        ttl: Number(ttl),
        names,
        ...(typeof d.zone === 'string' ? { zone: d.zone } : {}),
        ...(Array.isArray(d.nameservers) ? { nameservers: d.nameservers as string[] } : {}),
      };
    }
  }
  if (routers.some((r) => r.tls && !r.tls.passthrough) && certificates.length === 0) {
    bad('tls.certificates', 'a router terminates TLS (tls without passthrough) but no certificate is configured');
  }
  if (ech?.rotation) {
    const p = rotationTtlProblem(ech.rotation, dns);
    if (p) bad(p.path, p.message);
  }
  if (problems.length > 0) throw new ConfigError(file, problems);
  return {
    entryPoints,
    routers,
    services,
    tcpMiddlewares,
    metrics,
    log: { level: String(level).toLowerCase(), innerSni: logRaw.innerSni === true, access: logRaw.access === true, echRoutes: logRaw.echRoutes === true },
    ech,
    tlsOptions,
    certificates,
    dns,
    workers,
    warnings,
  };
}
