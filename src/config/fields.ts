/**
 * The pieces every section validator is built from (config/sections.ts lists
 * the sections): the `Section` interface, the validation context, the key
 * shape a section accepts, and typed field readers that report a problem with
 * its key path and return a usable default, so one pass finds every problem.
 *
 * A section's `keys` shape is the single list of what it accepts. It drives
 * three things: the "unknown key, ignored" warnings (walkUnknown), the Traefik
 * KV layout read from etcd (config/kv.ts: canonical key case and value types),
 * and the check that docs/configuration.md documents exactly these keys
 * (test/config-doc.test.ts).
 */
import type { Config } from './types.js';
import { parseDuration } from './duration.js';

export type Obj = Record<string, unknown>;
export const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * A leaf: what kind of value a key holds. Used to type values read from a KV
 * store (all strings there) and shown in the key index of the docs.
 * `list`: a list of scalars (KV: `key/0`, `key/1`, …).
 * `value`: a scalar whose type the validator decides (a duration, a port or `auto`, …).
 */
export type Leaf = 'string' | 'number' | 'boolean' | 'list' | 'value' | 'any';

/**
 * The keys a section accepts. `'*'`: any name (a mapping of named entries,
 * such as routers); `'[]'`: the items of a list. A node whose `'!'` is set
 * reports unknown keys itself (as errors), so the walker leaves it alone.
 */
export interface Shape {
  readonly [key: string]: Shape | Leaf | boolean;
}

export interface Problem {
  path: string;
  message: string;
}

/** What a section validator reads from and reports to. */
export interface Ctx {
  /** Report a problem: the configuration is refused, every problem listed. */
  bad(path: string, message: string): void;
  /** A non-fatal finding, logged at load. */
  warn(message: string): void;
  /** The result of a section registered (and so run) before this one. */
  get<T>(section: Section<T>): T;
  env: NodeJS.ProcessEnv;
}

/**
 * One section of the configuration file. `path` is where it sits ('tcp.routers',
 * 'ech.rotation'); `parse` receives the raw value there (undefined when absent).
 * Sections run in registration order; `check` runs after all have parsed, for
 * rules across sections.
 */
export interface Section<T> {
  readonly path: string;
  /** The keys it accepts; a Leaf for a scalar section such as `workers`. */
  readonly keys: Shape | Leaf;
  parse(raw: unknown, ctx: Ctx): T;
  /** Put the result into the configuration being built. */
  assign?(cfg: Config, value: T): void;
  check?(cfg: Config, ctx: Ctx): void;
}

export function section<T>(s: Section<T>): Section<T> {
  return s;
}

// ---- field readers: each reports `path: message` and returns a default ----

export function mapping(ctx: Ctx, v: unknown, path: string, message = 'expected a mapping'): Obj | undefined {
  if (v === undefined) return undefined;
  if (!isObj(v)) {
    ctx.bad(path, message);
    return undefined;
  }
  return v;
}

export function duration(ctx: Ctx, v: unknown, path: string, dflt: number): number {
  if (v === undefined) return dflt;
  const d = parseDuration(v);
  if (d === undefined) {
    ctx.bad(path, `invalid duration ${JSON.stringify(v)} (write e.g. 10s, 500ms, 2m, or a number of seconds)`);
    return dflt;
  }
  return d;
}

export function wholeNumber(ctx: Ctx, v: unknown, path: string, dflt: number, max = Number.MAX_SAFE_INTEGER): number {
  if (v === undefined) return dflt;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > max) {
    ctx.bad(path, `expected a whole number from 1 to ${max}`);
    return dflt;
  }
  return v;
}

export function bool(ctx: Ctx, v: unknown, path: string): boolean {
  if (v !== undefined && typeof v !== 'boolean') ctx.bad(path, 'expected true or false');
  return v === true;
}

export const isPort = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= 65535;

export function port(ctx: Ctx, v: unknown, path: string): number | undefined {
  if (v === undefined) return undefined;
  if (!isPort(v)) {
    ctx.bad(path, 'expected a port number');
    return undefined;
  }
  return v;
}

export const isProtocolList = (v: unknown): v is string[] => Array.isArray(v) && v.every((x) => typeof x === 'string' && x.length > 0 && x.length < 256);

/** ALPN protocol names (RFC 7301 §3.1: 1..255 octets each). */
export function protocols(ctx: Ctx, v: unknown, path: string): string[] | undefined {
  if (v === undefined) return undefined;
  if (!isProtocolList(v)) {
    ctx.bad(path, 'expected a list of protocol names');
    return undefined;
  }
  return v;
}

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

/** Host names as DNS writes them (RFC 1035 §2.3.1, underscores allowed for service labels). */
export const isHostname = (v: unknown): v is string =>
  typeof v === 'string' && /^(?=.{1,253}\.?$)([A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?\.?$/.test(v);

// ---- shapes ----

/** A shape with `child` placed at the relative `path` (dotted) inside `parent`. */
export function graft(parent: Shape, path: string[], child: Shape | Leaf): Shape {
  const [head, ...rest] = path;
  if (head === undefined) return parent;
  const here = parent[head];
  const sub = rest.length === 0 ? child : graft(typeof here === 'object' ? here : {}, rest, child);
  const merged = rest.length === 0 && typeof here === 'object' && typeof child === 'object' ? { ...here, ...child } : sub;
  return { ...parent, [head]: merged };
}

/** Warn about every key the shape does not name (`path.key: unknown key, ignored`). */
export function walkUnknown(raw: unknown, shape: Shape | Leaf | boolean, path: string, warn: (m: string) => void): void {
  if (typeof shape !== 'object') return;
  if (Array.isArray(raw)) {
    const item = shape['[]'];
    if (item !== undefined) for (const [i, v] of raw.entries()) walkUnknown(v, item, `${path}[${i}]`, warn);
    return;
  }
  if (!isObj(raw) || shape['!'] === true) return;
  for (const [k, v] of Object.entries(raw)) {
    const sub = shape[k] ?? shape['*'];
    const at = path ? `${path}.${k}` : k;
    if (sub === undefined) warn(`${at}: unknown key, ignored`);
    else walkUnknown(v, sub, at, warn);
  }
}

/**
 * Every key path a shape accepts, as docs/configuration.md writes them (`NAME`
 * for `*`, `[]` for list items), with `leaf` false for a mapping that has keys below it.
 */
export function keyPaths(shape: Shape | Leaf | boolean, prefix: string): { path: string; leaf: boolean }[] {
  if (typeof shape !== 'object') return [{ path: prefix, leaf: true }];
  const out: { path: string; leaf: boolean }[] = prefix ? [{ path: prefix, leaf: false }] : [];
  for (const [k, v] of Object.entries(shape)) {
    if (k === '!') continue;
    const at = k === '[]' ? `${prefix}[]` : prefix ? `${prefix}.${k === '*' ? 'NAME' : k}` : k;
    out.push(...keyPaths(v, at));
  }
  return out;
}
