/**
 * Traefik's KV layout (the etcd, Consul, Redis and ZooKeeper providers) →
 * the raw `tcp` and `tls` sections the validator reads. One key per value:
 * `ROOT/tcp/routers/NAME/rule`, list items numbered (`entryPoints/0`),
 * segments matched without regard to case (Traefik: "keys are
 * case-insensitive"). The section shapes (config/sections.ts) give each
 * segment its canonical spelling and each value its type, so this file knows
 * no key by name: a key added to a section is readable from etcd at once.
 * Pure: providers/etcd.ts does the reading.
 */
import { isObj, type Leaf, type Obj, type Problem, type Shape } from './fields.js';
import { configShape } from './sections.js';

export interface KvPair {
  key: string;
  value: string;
}

export interface KvConfig {
  /** `{ tcp?, tls? }` in the file provider's shape. */
  raw: Obj;
  warnings: string[];
  problems: Problem[];
  /** Key path prefix of an entry (`tcp.routers.app`) → where it came from (`etcd traefik/tcp/routers/app`). */
  origins: [string, string][];
}

/** The parts of Traefik's dynamic configuration echgate reads from a KV store. */
const DYNAMIC = ['tcp', 'tls'];

type Node = Shape | Leaf | boolean | undefined;

function child(node: Node, seg: string): { name: string | number; shape: Node } {
  if (typeof node === 'object') {
    const lower = seg.toLowerCase();
    const k = Object.keys(node).find((x) => x !== '*' && x !== '[]' && x !== '!' && x.toLowerCase() === lower);
    if (k !== undefined) return { name: k, shape: node[k] };
    if (node['*'] !== undefined) return { name: seg, shape: node['*'] };
    if (node['[]'] !== undefined && /^\d+$/.test(seg)) return { name: Number(seg), shape: node['[]'] };
  }
  // A scalar list (`entryPoints/0`): items are strings.
  if (node === 'list' && /^\d+$/.test(seg)) return { name: Number(seg), shape: 'string' };
  return { name: seg, shape: undefined };
}

function typed(value: string, shape: Node): unknown {
  if (shape === 'number' && /^-?\d+$/.test(value.trim())) return Number(value.trim());
  if (shape === 'boolean' && /^(true|false)$/i.test(value.trim())) return value.trim().toLowerCase() === 'true';
  return value;
}

/** Numbered keys become lists (in index order) where the shape says list. */
function lists(v: unknown, shape: Node): unknown {
  if (!isObj(v)) return v;
  const isList = shape === 'list' || (typeof shape === 'object' && shape['[]'] !== undefined);
  if (isList && Object.keys(v).every((k) => /^\d+$/.test(k))) {
    const item = shape === 'list' ? 'string' : (shape as Shape)['[]'];
    return Object.keys(v)
      .map(Number)
      .sort((a, b) => a - b)
      .map((i) => lists(v[i], item));
  }
  return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, lists(x, child(shape, k).shape)]));
}

/** Convert the pairs under `rootKey/` into the raw dynamic sections. */
export function kvToRaw(pairs: readonly KvPair[], rootKey: string, source = 'etcd', shape: Shape = configShape()): KvConfig {
  const raw: Obj = {};
  const warnings: string[] = [];
  const problems: Problem[] = [];
  const origins = new Map<string, string>();
  const ignored = new Set<string>();
  const prefix = `${rootKey}/`;
  for (const { key, value } of pairs) {
    if (!key.startsWith(prefix)) continue;
    const segs = key.slice(prefix.length).split('/');
    const top = segs[0]!.toLowerCase();
    if (!DYNAMIC.includes(top) || segs.length < 2 || segs.some((s) => s === '')) {
      ignored.add(`${prefix}${segs[0]}`);
      continue;
    }
    let node: Node = shape[top];
    let target: Obj = raw;
    let name: string | number = top;
    let path = top;
    for (let i = 1; i < segs.length; i++) {
      // Step into `name`, creating the mapping on the way.
      if (!isObj(target[name])) target[name] = {};
      target = target[name] as Obj;
      const c = child(node, segs[i]!);
      name = c.name;
      node = c.shape;
      path += typeof name === 'number' ? `[${name}]` : `.${name}`;
      // An entry (tcp.routers.NAME, tls.certificates[0]) remembers its etcd key for problems about it.
      if (i === 2) origins.set(path, `${source} ${prefix}${segs.slice(0, 3).join('/')}`);
    }
    const here = target[name];
    if (typeof node === 'object') {
      // A value on a mapping: Traefik's `tls = true` (an empty section); keys below it take precedence.
      if (!/^(true|false)$/i.test(value.trim())) problems.push({ path: `${source} ${key}`, message: `expected keys below it (or true), got ${JSON.stringify(value)}` });
      else if (!isObj(here) && /^true$/i.test(value.trim())) target[name] = {};
    } else if (isObj(here)) problems.push({ path: `${source} ${key}`, message: 'a value and keys below it' });
    else target[name] = typed(value, node);
  }
  for (const k of ignored) warnings.push(`${source} ${k}/…: not a section echgate reads from a KV store (tcp, tls), ignored`);
  const out: Obj = {};
  for (const top of DYNAMIC) if (raw[top] !== undefined) out[top] = lists(raw[top], shape[top]);
  return { raw: out, warnings, problems, origins: [...origins] };
}

/**
 * Merge the KV store's `tcp` and `tls` entries into the file's raw
 * configuration. One namespace: a name defined in both is a problem.
 */
export function mergeDynamic(file: Obj, kv: KvConfig, source = 'etcd'): { raw: Obj; problems: Problem[] } {
  const problems: Problem[] = [];
  const merged: Obj = { ...file };
  const named = (sec: string, key: string) => {
    const add = isObj(kv.raw[sec]) ? (kv.raw[sec] as Obj)[key] : undefined;
    if (!isObj(add)) {
      if (add !== undefined) problems.push({ path: `${source} ${sec}/${key}`, message: 'expected named entries below it' });
      return;
    }
    const base = isObj(merged[sec]) ? { ...(merged[sec] as Obj) } : {};
    const have = isObj(base[key]) ? { ...(base[key] as Obj) } : {};
    for (const [k, v] of Object.entries(add)) {
      if (k in have) problems.push({ path: `${sec}.${key}.${k}`, message: `defined both in the file and in ${source}` });
      else have[k] = v;
    }
    base[key] = have;
    merged[sec] = base;
  };
  if (kv.raw.tcp !== undefined) for (const k of ['routers', 'services', 'middlewares']) named('tcp', k);
  if (kv.raw.tls !== undefined) {
    named('tls', 'options');
    const t = kv.raw.tls as Obj;
    const base = isObj(merged.tls) ? { ...(merged.tls as Obj) } : {};
    if (t.certificates !== undefined) base.certificates = [...(Array.isArray(base.certificates) ? base.certificates : []), ...(Array.isArray(t.certificates) ? t.certificates : [t.certificates])];
    if (isObj(t.stores)) {
      const stores = isObj(base.stores) ? { ...(base.stores as Obj) } : {};
      for (const [k, v] of Object.entries(t.stores)) {
        if (k in stores) problems.push({ path: `tls.stores.${k}`, message: `defined both in the file and in ${source}` });
        else stores[k] = v;
      }
      base.stores = stores;
    }
    if (Object.keys(base).length > 0) merged.tls = base;
  }
  return { raw: merged, problems };
}
