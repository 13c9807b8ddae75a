/**
 * `ech.rotation`: how `serve` rotates the ECH keys on its own (docs/ech.md
 * "Automatic rotation"). Checked with the rest of the configuration; the
 * grace period must cover what DNS caches may still hold (twice the TTL).
 */
import type { DnsConfig, PublishSettings, RotationConfig } from './types.js';
import { parseDuration } from './duration.js';
import { type Ctx, isObj, parseAddress, section } from './fields.js';
import { dnsSection } from './dns.js';

/** The default shortest `every`; below it a configuration is refused unless the test switch is set. */
export const MIN_EVERY_MS = 60_000;
/**
 * Tests rotate every few seconds: ECHGATE_ROTATION_SHORT=1 lowers the floor
 * of `every` to 1s. Not for production: 256 config_ids last 256 rotations,
 * and a retired id rests an hour before it is reused (keys/manager.ts
 * ID_REUSE_MARGIN_MS), so rotations this fast soon wait for a free id.
 */
export const SHORT_ENV = 'ECHGATE_ROTATION_SHORT';
export const DEFAULT_PUBLISH_TTL = 300;

export const rotationSection = section<RotationConfig | undefined>({
  path: 'ech.rotation',
  keys: {
    every: 'value',
    grace: 'value',
    publicName: 'string',
    // publish is `embedded` or this mapping.
    publish: { name: 'string', server: 'string', zone: 'string', tsigKey: 'string', ttl: 'number', alpn: 'list', port: 'number', verifyDoh: 'string', ca: 'string', verifyTimeout: 'value' },
  },
  parse(raw: unknown, ctx: Ctx) {
    return raw === undefined ? undefined : parseRotation(raw, ctx);
  },
  assign(cfg, v) {
    if (v && cfg.ech) cfg.ech.rotation = v;
  },
  check(cfg, ctx) {
    if (!cfg.ech?.rotation) return;
    const p = rotationTtlProblem(cfg.ech.rotation, ctx.get(dnsSection));
    if (p) ctx.bad(p.path, p.message);
  },
});

export function parseRotation(v: unknown, ctx: Ctx): RotationConfig | undefined {
  const { bad, env } = ctx;
  const P = 'ech.rotation';
  if (!isObj(v)) {
    bad(P, 'expected a mapping { every, grace, publish }');
    return undefined;
  }
  const floor = env[SHORT_ENV] === '1' ? 1000 : MIN_EVERY_MS;
  const dur = (key: string, dflt: number | undefined, min: number): number | undefined => {
    if (v[key] === undefined) {
      if (dflt === undefined) bad(`${P}.${key}`, 'required (a duration such as 24h)');
      return dflt;
    }
    const ms = parseDuration(v[key]);
    if (ms === undefined) bad(`${P}.${key}`, `invalid duration ${JSON.stringify(v[key])} (write e.g. 24h, 90m)`);
    else if (ms < min) bad(`${P}.${key}`, `${v[key]} is below the shortest allowed, ${min / 1000}s${min === MIN_EVERY_MS ? ` (${SHORT_ENV}=1 lowers it to 1s, for tests)` : ''}`);
    return ms;
  };
  const everyMs = dur('every', undefined, floor);
  const graceMs = dur('grace', undefined, 0);
  if (v.publicName !== undefined && typeof v.publicName !== 'string') bad(`${P}.publicName`, 'expected a host name');
  let publish: RotationConfig['publish'] | undefined;
  const p = v.publish;
  if (p === 'embedded') publish = 'embedded';
  else if (!isObj(p)) bad(`${P}.publish`, 'expected "embedded" (the embedded DNS serves the key folder) or { name, server, zone, tsigKey, verifyDoh, ... }');
  else {
    const pp = `${P}.publish`;
    const str = (k: string, required: boolean): string | undefined => {
      if (p[k] === undefined) {
        if (required) bad(`${pp}.${k}`, 'required');
        return undefined;
      }
      if (typeof p[k] !== 'string' || p[k] === '') bad(`${pp}.${k}`, 'expected a string');
      return typeof p[k] === 'string' ? (p[k] as string) : undefined;
    };
    const name = str('name', true);
    const zone = str('zone', true);
    const server = parseAddress(p.server);
    if (!server) bad(`${pp}.server`, 'expected "host:port" of the primary that takes the update (RFC 2136)');
    // A rotation is trusted only once DNS is read back carrying the new list, as keys rotate --publish.
    const verifyDoh = str('verifyDoh', true);
    const ttl = p.ttl ?? DEFAULT_PUBLISH_TTL;
    if (typeof ttl !== 'number' || !Number.isInteger(ttl) || ttl < 0 || ttl > 86400) bad(`${pp}.ttl`, 'expected seconds, 0..86400');
    if (p.port !== undefined && (typeof p.port !== 'number' || !Number.isInteger(p.port) || p.port < 1 || p.port > 65535)) bad(`${pp}.port`, 'expected a port number');
    if (p.alpn !== undefined && (!Array.isArray(p.alpn) || !p.alpn.every((x) => typeof x === 'string' && x.length > 0 && x.length < 256))) bad(`${pp}.alpn`, 'expected a list of protocol names');
    let verifyTimeoutMs = 30_000;
    if (p.verifyTimeout !== undefined) {
      const ms = parseDuration(p.verifyTimeout);
      if (ms === undefined || ms < 1) bad(`${pp}.verifyTimeout`, 'expected a duration such as 30s');
      else verifyTimeoutMs = ms;
    }
    if (name && zone && server && verifyDoh) {
      const s: PublishSettings = { name, server, zone, ttl: Number(ttl), verifyDoh, verifyTimeoutMs };
      const tsigKey = str('tsigKey', false);
      const ca = str('ca', false);
      if (tsigKey) s.tsigKey = tsigKey;
      if (ca) s.ca = ca;
      if (Array.isArray(p.alpn)) s.alpn = p.alpn as string[];
      if (typeof p.port === 'number') s.port = p.port;
      publish = s;
    }
  }
  if (everyMs === undefined || graceMs === undefined || publish === undefined) return undefined;
  return { everyMs, graceMs, publish, ...(typeof v.publicName === 'string' ? { publicName: v.publicName } : {}) };
}

/**
 * The grace period must outlast what resolvers may cache: a client that
 * fetched the old record just before the switch may use it for one TTL, and
 * the switch itself takes up to one more TTL to be seen everywhere. Below
 * 2×TTL such a client's ECH is rejected (it then needs retry_configs).
 */
export function rotationTtlProblem(r: RotationConfig, dns: DnsConfig | undefined): { path: string; message: string } | undefined {
  let ttl: number;
  let what: string;
  if (r.publish === 'embedded') {
    if (!dns) return { path: 'ech.rotation.publish', message: 'publish: embedded needs the dns section (the embedded DNS serves the keys)' };
    ttl = dns.ttl;
    what = 'dns.ttl';
  } else {
    ttl = r.publish.ttl;
    what = 'ech.rotation.publish.ttl';
  }
  if (r.graceMs < 2 * ttl * 1000) {
    return { path: 'ech.rotation.grace', message: `grace ${r.graceMs / 1000}s is shorter than twice the DNS TTL (${what} ${ttl}s): give at least ${2 * ttl}s, or lower the TTL` };
  }
  return undefined;
}
