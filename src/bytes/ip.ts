/** IP addresses and CIDR ranges (text ↔ bytes), for ClientIP() rules, SVCB ipv4hint/ipv6hint and PROXY headers. Pure, no node:net. */

export interface IpRange {
  v6: boolean;
  bytes: Uint8Array;
  prefix: number;
}

function parseV4(s: string): Uint8Array | undefined {
  const parts = s.split('.');
  if (parts.length !== 4) return undefined;
  const out = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    const p = parts[i]!;
    if (!/^\d{1,3}$/.test(p) || (p.length > 1 && p[0] === '0')) return undefined;
    const n = Number(p);
    if (n > 255) return undefined;
    out[i] = n;
  }
  return out;
}

function parseV6(s: string): Uint8Array | undefined {
  if (s.includes('%')) s = s.slice(0, s.indexOf('%'));
  let tail4: Uint8Array | undefined;
  const lastColon = s.lastIndexOf(':');
  if (s.includes('.')) {
    tail4 = parseV4(s.slice(lastColon + 1));
    if (!tail4) return undefined;
    s = `${s.slice(0, lastColon + 1)}0:0`;
  }
  const halves = s.split('::');
  if (halves.length > 2) return undefined;
  const head = halves[0] ? halves[0].split(':') : [];
  const tail = halves.length === 2 && halves[1] ? halves[1].split(':') : [];
  const groups = head.length + tail.length;
  if (halves.length === 1 ? groups !== 8 : groups > 7) return undefined;
  const all = [...head, ...Array(8 - groups).fill('0'), ...tail];
  const out = new Uint8Array(16);
  for (let i = 0; i < 8; i++) {
    const g = all[i]!;
    if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return undefined;
    const n = Number.parseInt(g, 16);
    out[2 * i] = n >> 8;
    out[2 * i + 1] = n & 0xff;
  }
  if (tail4) out.set(tail4, 12);
  return out;
}

/** Parse an address; IPv4-mapped IPv6 (::ffff:a.b.c.d) becomes IPv4. */
export function parseIp(s: string): { v6: boolean; bytes: Uint8Array } | undefined {
  const v4 = parseV4(s);
  if (v4) return { v6: false, bytes: v4 };
  const v6 = parseV6(s);
  if (!v6) return undefined;
  if (v6.subarray(0, 10).every((b) => b === 0) && v6[10] === 0xff && v6[11] === 0xff) {
    return { v6: false, bytes: v6.slice(12) };
  }
  return { v6: true, bytes: v6 };
}

export function parseRange(s: string): IpRange | undefined {
  const slash = s.indexOf('/');
  const ip = parseIp(slash < 0 ? s : s.slice(0, slash));
  if (!ip) return undefined;
  const max = ip.v6 ? 128 : 32;
  let prefix = max;
  if (slash >= 0) {
    const p = s.slice(slash + 1);
    if (!/^\d{1,3}$/.test(p)) return undefined;
    prefix = Number(p);
    if (prefix > max) return undefined;
    // A mapped v4 range keeps its meaning relative to the v4 address.
    if (!ip.v6 && parseV4(s.slice(0, slash)) === undefined) prefix -= 96;
    if (prefix < 0) return undefined;
  }
  return { ...ip, prefix };
}

export function inRange(addr: { v6: boolean; bytes: Uint8Array }, r: IpRange): boolean {
  if (addr.v6 !== r.v6) return false;
  let bits = r.prefix;
  for (let i = 0; bits > 0; i++, bits -= 8) {
    const mask = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff;
    if ((addr.bytes[i]! & mask) !== (r.bytes[i]! & mask)) return false;
  }
  return true;
}

/** Normalise a socket's remoteAddress: unwrap ::ffff:a.b.c.d. */
export function normalizeIp(s: string | undefined): string {
  if (!s) return '';
  if (s.startsWith('::ffff:') && s.includes('.')) return s.slice(7);
  return s;
}
