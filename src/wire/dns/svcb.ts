/**
 * SVCB and HTTPS RDATA (RFC 9460 §2.2) in wire and presentation form, with the
 * ech SvcParam (RFC 9848). Wire decoding is strict: SvcParamKeys in strictly
 * increasing order, each value well formed for its key, and the §8 rules on
 * "mandatory". Presentation parsing follows RFC 9460 Appendix A (char-strings
 * with \DDD and \X escapes, then comma-separated value lists).
 */
import { Reader } from '../../bytes/reader.js';
import { Writer } from '../../bytes/writer.js';
import { EchgateError } from '../../errors.js';
import { parseIp } from '../../bytes/ip.js';
import { encodeName, readUncompressedName } from './name.js';

export const SvcParamKey = { mandatory: 0, alpn: 1, 'no-default-alpn': 2, port: 3, ipv4hint: 4, ech: 5, ipv6hint: 6 } as const;
const KEY_NAMES = new Map<number, string>(Object.entries(SvcParamKey).map(([k, v]) => [v, k]));

export interface Svcb {
  priority: number;
  /** Presentation form without the trailing dot; "" is the root ("."). */
  target: string;
  /** Raw values by key, in increasing key order. */
  params: Map<number, Uint8Array>;
}

const bad = (msg: string) => new EchgateError('ERR_DECODE', msg);

export function keyName(k: number): string {
  return KEY_NAMES.get(k) ?? `key${k}`;
}

function keyNumber(name: string): number {
  const k = (SvcParamKey as Record<string, number>)[name];
  if (k !== undefined) return k;
  const m = /^key(\d{1,5})$/.exec(name);
  if (!m || Number(m[1]) > 65535) throw bad(`unknown SvcParamKey "${name}"`);
  // key65535 is reserved (RFC 9460 §14.3.2).
  if (Number(m[1]) === 65535) throw bad('key65535 is reserved');
  return Number(m[1]);
}

/** Check one value against its key's wire format (RFC 9460 §7, RFC 9848 §3). */
function checkValue(k: number, v: Uint8Array): void {
  const r = new Reader(v);
  switch (k) {
    case SvcParamKey.mandatory:
      if (v.length < 2 || v.length % 2) throw bad('mandatory: must list at least one key');
      return;
    case SvcParamKey.alpn:
      if (v.length === 0) throw bad('alpn: empty');
      while (!r.atEnd()) r.vec8('alpn-id', 1);
      return;
    case SvcParamKey['no-default-alpn']:
      if (v.length) throw bad('no-default-alpn: must be empty');
      return;
    case SvcParamKey.port:
      if (v.length !== 2) throw bad('port: must be 2 octets');
      return;
    case SvcParamKey.ipv4hint:
      if (v.length < 4 || v.length % 4) throw bad('ipv4hint: bad length');
      return;
    case SvcParamKey.ipv6hint:
      if (v.length < 16 || v.length % 16) throw bad('ipv6hint: bad length');
      return;
    case SvcParamKey.ech:
      if (v.length === 0) throw bad('ech: empty');
      return;
  }
}

/** RFC 9460 §8: mandatory keys must be present, not include "mandatory", not repeat. */
function checkMandatory(params: Map<number, Uint8Array>): void {
  const m = params.get(SvcParamKey.mandatory);
  if (!m) return;
  const seen = new Set<number>();
  for (let i = 0; i < m.length; i += 2) {
    const k = (m[i]! << 8) | m[i + 1]!;
    if (k === SvcParamKey.mandatory) throw bad('mandatory lists "mandatory"');
    if (seen.has(k)) throw bad(`mandatory lists ${keyName(k)} twice`);
    if (!params.has(k)) throw bad(`mandatory key ${keyName(k)} is missing`);
    seen.add(k);
  }
}

export function decodeSvcb(rdata: Uint8Array): Svcb {
  const r = new Reader(rdata);
  const priority = r.u16('SvcPriority');
  const target = readUncompressedName(r);
  const params = new Map<number, Uint8Array>();
  let last = -1;
  while (!r.atEnd()) {
    const k = r.u16('SvcParamKey');
    if (k <= last) throw bad('SvcParamKeys not in strictly increasing order');
    last = k;
    const v = r.vec16('SvcParamValue');
    checkValue(k, v);
    params.set(k, v);
  }
  checkMandatory(params);
  return { priority, target, params };
}

export function encodeSvcb(s: Svcb): Uint8Array {
  const w = new Writer(64).u16(s.priority).bytes(encodeName(s.target === '' ? '.' : s.target));
  for (const k of [...s.params.keys()].sort((a, b) => a - b)) w.u16(k).vec16(s.params.get(k)!);
  return w.finish();
}

// ---- presentation form (RFC 9460 §2.1, Appendix A) ----

function tokenize(s: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  let any = false;
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (c === '\\' && i + 1 < s.length) {
      cur += c + s[i + 1];
      i++;
      any = true;
    } else if (c === '"') {
      quoted = !quoted;
      cur += c;
      any = true;
    } else if (/\s/.test(c) && !quoted) {
      if (any) out.push(cur);
      cur = '';
      any = false;
    } else {
      cur += c;
      any = true;
    }
  }
  if (quoted) throw bad('unterminated quoted string');
  if (any) out.push(cur);
  return out;
}

/** Appendix A.1 char-string: strip quotes, resolve \DDD and \X. */
function charString(v: string): number[] {
  if (v.startsWith('"')) {
    if (!v.endsWith('"') || v.length < 2) throw bad('bad quoting');
    v = v.slice(1, -1);
  }
  const out: number[] = [];
  for (let i = 0; i < v.length; i++) {
    if (v[i] === '\\') {
      const d = /^\d{3}/.exec(v.slice(i + 1));
      if (d) {
        if (Number(d[0]) > 255) throw bad('escape over 255');
        out.push(Number(d[0]));
        i += 3;
      } else {
        if (i + 1 >= v.length) throw bad('dangling escape');
        out.push(v.charCodeAt(i + 1));
        i++;
      }
    } else {
      const c = v.charCodeAt(i);
      if (c > 0xff) throw bad('non-Latin-1 character');
      out.push(c);
    }
  }
  return out;
}

/** Appendix A.1 value-list: split on commas not escaped by a backslash. */
function valueList(bytes: number[]): number[][] {
  const items: number[][] = [[]];
  for (let i = 0; i < bytes.length; i++) {
    const c = bytes[i]!;
    if (c === 0x5c && i + 1 < bytes.length) {
      items[items.length - 1]!.push(bytes[++i]!);
    } else if (c === 0x2c) items.push([]);
    else items[items.length - 1]!.push(c);
  }
  if (items.some((x) => x.length === 0)) throw bad('empty item in a value list');
  return items;
}

const latin1 = (b: number[]) => String.fromCharCode(...b);

function presentationValue(k: number, raw: string | undefined): Uint8Array {
  const needs = k !== SvcParamKey['no-default-alpn'];
  if (raw === undefined) {
    if (needs && k <= SvcParamKey.ipv6hint) throw bad(`${keyName(k)} needs a value`);
    return new Uint8Array(0);
  }
  if (!needs) throw bad('no-default-alpn takes no value');
  const bytes = charString(raw);
  const w = new Writer(64);
  switch (k) {
    case SvcParamKey.mandatory:
      for (const k2 of valueList(bytes)
        .map((x) => keyNumber(latin1(x)))
        .sort((a, b) => a - b))
        w.u16(k2);
      break;
    case SvcParamKey.alpn:
      for (const id of valueList(bytes)) w.vec8(Uint8Array.from(id));
      break;
    case SvcParamKey.port: {
      const s = latin1(bytes);
      if (!/^\d{1,5}$/.test(s) || Number(s) > 65535) throw bad(`bad port ${s}`);
      w.u16(Number(s));
      break;
    }
    case SvcParamKey.ipv4hint:
    case SvcParamKey.ipv6hint:
      for (const item of valueList(bytes)) {
        const ip = parseIp(latin1(item));
        const v6 = k === SvcParamKey.ipv6hint;
        // parseIp folds ::ffff:a.b.c.d into IPv4; ipv6hint keeps 16 octets.
        if (!ip) throw bad(`bad address ${latin1(item)}`);
        if (v6) w.bytes(ip.v6 ? ip.bytes : Uint8Array.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, ...ip.bytes]));
        else if (ip.v6) throw bad('ipv4hint needs IPv4 addresses');
        else w.bytes(ip.bytes);
      }
      break;
    case SvcParamKey.ech: {
      const b64 = latin1(bytes);
      if (!/^[A-Za-z0-9+/]+={0,2}$/.test(b64)) throw bad('ech: not base64');
      w.bytes(new Uint8Array(Buffer.from(b64, 'base64')));
      break;
    }
    default:
      w.bytes(Uint8Array.from(bytes));
  }
  const v = w.finish();
  checkValue(k, v);
  return v;
}

/** Parse presentation RDATA: `1 . alpn=h2 ech="..."`. */
export function parseSvcbPresentation(text: string): Svcb {
  const t = tokenize(text.trim());
  if (t.length < 2) throw bad('need SvcPriority and TargetName');
  if (!/^\d{1,5}$/.test(t[0]!) || Number(t[0]) > 65535) throw bad(`bad SvcPriority ${t[0]}`);
  const target = t[1] === '.' ? '' : t[1]!.replace(/\.$/, '');
  const params = new Map<number, Uint8Array>();
  for (const tok of t.slice(2)) {
    const eq = tok.indexOf('=');
    const k = keyNumber(eq < 0 ? tok : tok.slice(0, eq));
    if (params.has(k)) throw bad(`${keyName(k)} appears twice`);
    params.set(k, presentationValue(k, eq < 0 ? undefined : tok.slice(eq + 1)));
  }
  checkMandatory(params);
  return { priority: Number(t[0]), target, params: new Map([...params].sort((a, b) => a[0] - b[0])) };
}

function escapeItem(b: Uint8Array, list: boolean): string {
  let s = '';
  for (const c of b) {
    if (list && (c === 0x2c || c === 0x5c)) s += c === 0x2c ? '\\\\,' : '\\\\\\\\';
    else if (c === 0x22 || c === 0x5c) s += `\\${String.fromCharCode(c)}`;
    else if (c > 0x20 && c < 0x7f) s += String.fromCharCode(c);
    else s += `\\${String(c).padStart(3, '0')}`;
  }
  return s;
}

/** Wire → presentation (keys in wire order, values quoted where needed). */
export function formatSvcb(s: Svcb): string {
  const parts = [String(s.priority), s.target === '' ? '.' : `${s.target}.`];
  for (const [k, v] of s.params) {
    const r = new Reader(v);
    let val: string | undefined;
    switch (k) {
      case SvcParamKey.mandatory: {
        const ks: string[] = [];
        while (!r.atEnd()) ks.push(keyName(r.u16()));
        val = ks.join(',');
        break;
      }
      case SvcParamKey.alpn: {
        const ids: string[] = [];
        while (!r.atEnd()) ids.push(escapeItem(r.vec8(), true));
        val = `"${ids.join(',')}"`;
        break;
      }
      case SvcParamKey['no-default-alpn']:
        break;
      case SvcParamKey.port:
        val = String(r.u16());
        break;
      case SvcParamKey.ipv4hint: {
        const ips: string[] = [];
        while (!r.atEnd()) ips.push(Array.from(r.bytes(4)).join('.'));
        val = ips.join(',');
        break;
      }
      case SvcParamKey.ipv6hint: {
        const ips: string[] = [];
        while (!r.atEnd()) {
          const b = r.bytes(16);
          ips.push(Array.from({ length: 8 }, (_, i) => ((b[2 * i]! << 8) | b[2 * i + 1]!).toString(16)).join(':'));
        }
        val = `"${ips.join(',')}"`;
        break;
      }
      case SvcParamKey.ech:
        val = `"${Buffer.from(v).toString('base64')}"`;
        break;
      default:
        val = `"${escapeItem(v, false)}"`;
    }
    parts.push(val === undefined ? keyName(k) : `${keyName(k)}=${val}`);
  }
  return parts.join(' ');
}

/**
 * The ServiceMode HTTPS record echgate publishes (RFC 9460 §2.4.3, §7):
 * priority (1 unless given), TargetName ("" is "."), alpn, port and the
 * ech= ECHConfigList (RFC 9848 §3), each only when present.
 */
export function httpsServiceRdata(o: { priority?: number; target?: string; alpn?: string[]; port?: number; ech?: Uint8Array }): Uint8Array {
  const params = new Map<number, Uint8Array>();
  if (o.alpn?.length) {
    const w = new Writer(32);
    for (const id of o.alpn) w.vec8(Buffer.from(id, 'latin1'));
    params.set(SvcParamKey.alpn, w.finish());
  }
  if (o.port) params.set(SvcParamKey.port, Uint8Array.of(o.port >> 8, o.port & 0xff));
  if (o.ech) params.set(SvcParamKey.ech, o.ech);
  return encodeSvcb({ priority: o.priority ?? 1, target: o.target ?? '', params });
}
