/**
 * `dns`: the embedded authoritative DNS (UDP and TCP, RFC 1035 / RFC 7766) and
 * DoH (RFC 8484) listeners, their limits, and the names they answer for.
 */
import { parseIp } from '../bytes/ip.js';
import { parseDuration } from './duration.js';
import { type Ctx, isHostname, isObj, isPort, isProtocolList, mapping, type Obj, parseAddress, section } from './fields.js';
import type { DnsConfig } from './types.js';

type Names = DnsConfig['names'];
type DohLimits = NonNullable<NonNullable<DnsConfig['doh']>['limits']>;

/** Limits are positive integers and durations; what is left out takes the listener's default. */
function count(ctx: Ctx, o: Obj, key: string, path: string, max: number): number | undefined {
  const v = o[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > max) ctx.bad(`${path}.${key}`, `expected a whole number, 1..${max}`);
  return Number(v);
}
function limitDuration(ctx: Ctx, o: Obj, key: string, path: string): number | undefined {
  if (o[key] === undefined) return undefined;
  const ms = parseDuration(o[key]);
  if (ms === undefined || ms < 1 || ms > 3_600_000) ctx.bad(`${path}.${key}`, 'expected a duration such as 10s (1ms..1h)');
  return ms;
}
const sub = (ctx: Ctx, o: Obj, key: string, path: string): Obj | undefined => (o[key] === undefined ? undefined : (mapping(ctx, o[key], `${path}.${key}`) ?? {}));
const prune = <T extends Record<string, number | undefined>>(o: T): T | undefined => {
  const kept = Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
  return Object.keys(kept).length ? kept : undefined;
};

function tcpLimits(ctx: Ctx, d: Obj): DnsConfig['tcp'] {
  const t = sub(ctx, d, 'tcp', 'dns');
  if (!t) return undefined;
  return prune({
    maxConnections: count(ctx, t, 'maxConnections', 'dns.tcp', 65535),
    maxConnectionsPerIP: count(ctx, t, 'maxConnectionsPerIP', 'dns.tcp', 65535),
    idleTimeoutMs: limitDuration(ctx, t, 'idleTimeout', 'dns.tcp'),
    queryTimeoutMs: limitDuration(ctx, t, 'queryTimeout', 'dns.tcp'),
  });
}

function dohListener(ctx: Ctx, d: Obj): DnsConfig['doh'] {
  if (d.doh === undefined) return undefined;
  const doh = mapping(ctx, d.doh, 'dns.doh');
  if (!doh) return undefined;
  const rt = sub(ctx, doh, 'respondingTimeouts', 'dns.doh');
  const h2 = sub(ctx, doh, 'http2', 'dns.doh');
  const limits: DohLimits | undefined = prune({
    maxConnections: count(ctx, doh, 'maxConnections', 'dns.doh', 65535),
    maxConnectionsPerIP: count(ctx, doh, 'maxConnectionsPerIP', 'dns.doh', 65535),
    readTimeoutMs: rt && limitDuration(ctx, rt, 'readTimeout', 'dns.doh.respondingTimeouts'),
    idleTimeoutMs: rt && limitDuration(ctx, rt, 'idleTimeout', 'dns.doh.respondingTimeouts'),
    maxConcurrentStreams: h2 && count(ctx, h2, 'maxConcurrentStreams', 'dns.doh.http2', 1000),
    // At least what one legitimate GET needs: a 64 KiB query is ~87 KiB in base64url.
    maxHeaderListSize: h2 && count(ctx, h2, 'maxHeaderListSize', 'dns.doh.http2', 1 << 20),
  });
  const addr = parseAddress(doh.address);
  if (!addr) ctx.bad('dns.doh.address', 'expected "host:port"');
  if (typeof doh.certFile !== 'string' || typeof doh.keyFile !== 'string') ctx.bad('dns.doh', 'certFile and keyFile are required (DoH is HTTPS)');
  if (!addr) return undefined;
  return { ...addr, certFile: String(doh.certFile), keyFile: String(doh.keyFile), path: typeof doh.path === 'string' ? doh.path : '/dns-query', ...(limits ? { limits } : {}) };
}

function names(ctx: Ctx, d: Obj): Names {
  const out: Names = {};
  for (const [name, n] of Object.entries(isObj(d.names) ? d.names : {})) {
    const p = `dns.names.${name}`;
    if (!isObj(n)) {
      ctx.bad(p, 'expected a mapping');
      continue;
    }
    const ips = (v: unknown, key: string, v6: boolean) => {
      if (v === undefined) return undefined;
      if (!Array.isArray(v) || !v.every((x) => typeof x === 'string' && parseIp(x)?.v6 === v6)) {
        ctx.bad(`${p}.${key}`, `expected a list of IPv${v6 ? 6 : 4} addresses`);
        return undefined;
      }
      return v as string[];
    };
    let https: Names[string]['https'];
    if (n.https !== undefined) {
      const h = isObj(n.https) ? n.https : {};
      if (!isObj(n.https)) ctx.bad(`${p}.https`, 'expected a mapping');
      if (h.alias !== undefined && !isHostname(h.alias)) ctx.bad(`${p}.https.alias`, 'expected a host name (the AliasMode TargetName)');
      if (h.alias !== undefined && (h.priority !== undefined || h.alpn !== undefined)) ctx.bad(`${p}.https.alias`, 'an AliasMode record carries no priority or alpn (RFC 9460 §2.4.2)');
      if (h.port !== undefined && !isPort(h.port)) ctx.bad(`${p}.https.port`, 'expected a port number');
      if (h.alpn !== undefined && !isProtocolList(h.alpn)) ctx.bad(`${p}.https.alpn`, 'expected a list of protocol names');
      if (h.priority !== undefined && (typeof h.priority !== 'number' || !Number.isInteger(h.priority) || h.priority < 1 || h.priority > 65535)) {
        ctx.bad(`${p}.https.priority`, 'expected 1..65535 (ServiceMode)');
      }
      https = {
        priority: h.priority as number | undefined,
        alpn: h.alpn as string[] | undefined,
        port: h.port as number | undefined,
        ech: h.ech !== false,
        ...(typeof h.alias === 'string' ? { alias: h.alias } : {}),
      };
    }
    out[name] = { a: ips(n.a, 'a', false), aaaa: ips(n.aaaa, 'aaaa', true), https };
  }
  if (typeof d.zone === 'string') {
    const apex = d.zone.toLowerCase().replace(/\.$/, '');
    for (const name of Object.keys(out)) {
      const n = name.toLowerCase().replace(/\.$/, '');
      if (n !== apex && !n.endsWith(`.${apex}`)) ctx.bad(`dns.names.${name}`, `outside dns.zone ${d.zone}: it would never be answered`);
    }
  }
  return out;
}

export const dnsSection = section<DnsConfig | undefined>({
  path: 'dns',
  keys: {
    address: 'string',
    tcp: { maxConnections: 'number', maxConnectionsPerIP: 'number', idleTimeout: 'value', queryTimeout: 'value' },
    doh: {
      address: 'string',
      certFile: 'string',
      keyFile: 'string',
      path: 'string',
      maxConnections: 'number',
      maxConnectionsPerIP: 'number',
      respondingTimeouts: { readTimeout: 'value', idleTimeout: 'value' },
      http2: { maxConcurrentStreams: 'number', maxHeaderListSize: 'number' },
    },
    ttl: 'number',
    names: { '*': { a: 'list', aaaa: 'list', https: { priority: 'number', alpn: 'list', port: 'number', ech: 'boolean', alias: 'string' } } },
    zone: 'string',
    nameservers: 'list',
  },
  parse(raw: unknown, ctx: Ctx): DnsConfig | undefined {
    const d = mapping(ctx, raw, 'dns');
    if (!d) return undefined;
    const tcp = tcpLimits(ctx, d);
    if (d.zone !== undefined && !isHostname(d.zone)) ctx.bad('dns.zone', 'expected a domain name');
    if (d.nameservers !== undefined && (!Array.isArray(d.nameservers) || d.nameservers.length === 0 || !d.nameservers.every(isHostname))) ctx.bad('dns.nameservers', 'expected a list of host names');
    if (d.nameservers !== undefined && d.zone === undefined) ctx.bad('dns.nameservers', 'nameservers are the NS records of dns.zone: give zone too');
    const doh = dohListener(ctx, d);
    const listen = d.address === undefined ? undefined : parseAddress(d.address);
    if (d.address !== undefined && !listen) ctx.bad('dns.address', 'expected "host:port"');
    if (d.address === undefined && !isObj(d.doh)) ctx.bad('dns', 'give address (plain DNS over UDP and TCP), doh, or both');
    const ttl = d.ttl ?? 60;
    if (typeof ttl !== 'number' || !Number.isInteger(ttl) || ttl < 0 || ttl > 86400) ctx.bad('dns.ttl', 'expected seconds, 0..86400');
    return {
      listen,
      ...(tcp ? { tcp } : {}),
      doh,
      ttl: Number(ttl),
      names: names(ctx, d),
      ...(typeof d.zone === 'string' ? { zone: d.zone } : {}),
      ...(Array.isArray(d.nameservers) ? { nameservers: d.nameservers as string[] } : {}),
    };
  },
  assign(cfg, v) {
    if (v) cfg.dns = v;
  },
});
