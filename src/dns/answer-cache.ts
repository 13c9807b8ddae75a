/**
 * Encoded responses, kept per zone, for the common shape of query: a plain
 * QUERY (opcode 0) with one question, nothing in the answer and authority
 * sections, and either no additional record or one OPT with no options (EDNS
 * version 0, RFC 6891 §6.1.2). For such a query the response depends only on
 * the question's octets (names are echoed with the query's case, RFC 1035
 * §7.3 / RFC 4343 §4), on whether EDNS was present, on the size the response
 * may have (RFC 1035 §4.2.1, RFC 6891 §6.2.5) and on the zone; the message ID
 * and the RD bit are copied from the query (RFC 1035 §4.1.1). So a cached
 * response is the first one's octets with those three fields patched.
 *
 * A hit costs one pass over the question's octets (shape checks and a hash
 * together), one Map lookup by number, one comparison of those octets with
 * the entry's, and a copy of the response (none where the caller sends it
 * before the next query: `cachedAnswer`'s `shared`): no decoding, no string built.
 *
 * Anything else (more OPTs, EDNS options such as cookies, a compressed
 * question name, trailing octets, errors) takes the full path in answer.ts,
 * uncached. The cache is dropped when the zone's generation moves (a new
 * ech= list and SOA serial) and when it is full, so a flood of random names
 * costs no more memory than its cap.
 */
import type { DnsQuestion } from '../wire/dns/message.js';
import type { Zone } from './zone.js';

/** Entries per zone at most; past it the cache starts again empty. */
const MAX_ENTRIES = 4096;

export interface CachedAnswer {
  /** 200, so that a hit is returned as it is for a QueryResult (answer.ts). */
  status: 200;
  body: Uint8Array;
  ttl: number;
  question: DnsQuestion;
  rcode: number;
}

interface Entry extends CachedAnswer {
  /** What else the response depends on: transport, OPT present, payload size (see `probe`). */
  meta: number;
  /** The question's octets as asked: name (case kept), QTYPE, QCLASS. */
  qbytes: Uint8Array;
}

class ZoneCache {
  readonly map = new Map<number, Entry>();
  constructor(public gen: number) {}
}

const caches = new WeakMap<Zone, ZoneCache>();

/**
 * Where a probed query's question ends and what else its answer depends on;
 * set by `probe` (one query at a time: the server is single-threaded and
 * nothing runs between a probe and the use of its result).
 */
let probedEnd = 0;
let probedMeta = 0;

/**
 * A hash of a query of the common shape, or -1 for any other message. The
 * transport, the presence of an OPT and the payload size it advertises go into
 * the entry (`meta`), so UDP clients with different payload sizes, TCP and DoH
 * never share an entry. `held` (DoH, see `cachedAnswer`) keeps entries apart
 * from TCP's, whose octets are patched in place.
 */
export function probe(q: Uint8Array, udp: boolean, held = false): number {
  const len = q.length;
  // Header: QR=0 and opcode 0 (byte 2 bits 7..3), QDCOUNT 1, ANCOUNT 0, NSCOUNT 0, ARCOUNT 0 or 1.
  if (len < 17 || (q[2]! & 0xf8) !== 0 || q[4] !== 0 || q[5] !== 1 || q[6] !== 0 || q[7] !== 0 || q[8] !== 0 || q[9] !== 0 || q[10] !== 0) return -1;
  const arcount = q[11]!;
  if (arcount > 1) return -1;
  // The question name: plain labels only (a pointer in the question takes the full path), at most 255 octets.
  // FNV-1a over the question's octets as we walk them.
  let h = 0x811c9dc5;
  let at = 12;
  for (;;) {
    if (at >= len) return -1;
    const l = q[at]!;
    if (l === 0) break;
    if (l > 63) return -1;
    const next = at + l + 1;
    if (next - 12 > 254 || next > len) return -1;
    for (; at < next; at++) h = Math.imul(h ^ q[at]!, 0x01000193);
  }
  const qend = at + 5; // the root octet, QTYPE, QCLASS
  if (qend > len) return -1;
  for (; at < qend; at++) h = Math.imul(h ^ q[at]!, 0x01000193);
  let limit: number;
  if (arcount === 0) {
    if (qend !== len) return -1;
    limit = udp ? 512 : 65535;
  } else {
    // One OPT, root owner, version 0, RDLENGTH 0, ending the message: 00 0029 SIZE EXT VERSION FLAGS 0000.
    if (qend + 11 !== len || q[qend] !== 0 || q[qend + 1] !== 0 || q[qend + 2] !== 41 || q[qend + 6] !== 0 || q[qend + 9] !== 0 || q[qend + 10] !== 0) return -1;
    limit = udp ? (q[qend + 3]! << 8) | q[qend + 4]! : 65535;
  }
  probedEnd = qend;
  probedMeta = (held ? 0x40000 : 0) | (udp ? 0x20000 : 0) | (arcount << 16) | limit;
  return (h ^ probedMeta) >>> 0;
}

/** The cache of this zone, emptied if the zone's answers may have changed since it was filled. */
function cacheOf(zone: Zone): ZoneCache {
  const gen = zone.generation();
  let c = caches.get(zone);
  if (!c) {
    c = new ZoneCache(gen);
    caches.set(zone, c);
  } else if (c.gen !== gen) {
    c.map.clear();
    c.gen = gen;
  }
  return c;
}

/**
 * The cached response for the query `probe` just gave `hash` for, its ID and
 * RD bit taken from `query`; undefined on a miss. The entry must hold the
 * same question octets and the same transport, OPT and size: a hash alone
 * never answers.
 *
 * `shared`: the caller has finished with the response's octets before any
 * other query is answered (UDP with nothing queued on the socket, TCP which
 * copies it into its frame). The entry's own octets are then patched in
 * place and the entry itself is returned: no buffer and no object per hit.
 * Otherwise (DoH, whose write holds the buffer until HTTP/2 sends it) the
 * response is a copy of its own, except with `held`: the caller keeps the
 * octets past later queries but never changes them (DoH), its entries are
 * never patched in place (`probe` keeps them apart from TCP's), and when the
 * entry's ID and RD already are this query's, as for every DoH client that
 * uses ID 0 (RFC 8484 §4.1 asks them to), the entry itself is the answer:
 * no copy and no object.
 */
export function cachedAnswer(zone: Zone, hash: number, query: Uint8Array, shared = false, held = false): CachedAnswer | undefined {
  const hit = cacheOf(zone).map.get(hash);
  if (!hit || hit.meta !== probedMeta) return undefined;
  const k = hit.qbytes;
  if (k.length !== probedEnd - 12) return undefined;
  for (let i = 0; i < k.length; i++) if (k[i] !== query[12 + i]) return undefined;
  const src = hit.body;
  // RFC 1035 §4.1.1: the ID and RD are copied from the query; every other octet is the first response's.
  const id0 = query[0]!;
  const id1 = query[1]!;
  const flags = (src[2]! & 0xfe) | (query[2]! & 0x01);
  if (held && src[0] === id0 && src[1] === id1 && src[2] === flags) return hit;
  if (shared) {
    src[0] = id0;
    src[1] = id1;
    src[2] = flags;
    return hit;
  }
  const body = Buffer.allocUnsafe(src.length);
  body.set(src);
  body[0] = id0;
  body[1] = id1;
  body[2] = flags;
  return { status: 200, body, ttl: hit.ttl, question: hit.question, rcode: hit.rcode };
}

/** Keep `a` as the answer to `query` (of the common shape) over this transport. */
export function rememberAnswer(zone: Zone, query: Uint8Array, udp: boolean, a: CachedAnswer, held = false): void {
  // Probed again: whatever ran since the first probe (the zone's answer) may have probed another query.
  const hash = probe(query, udp, held);
  if (hash < 0) return;
  const c = cacheOf(zone);
  if (c.map.size >= MAX_ENTRIES) c.map.clear();
  // A Buffer: DoH sends a held entry as it is, without wrapping it (doh-server.ts `send`).
  c.map.set(hash, { status: 200, body: Buffer.from(a.body), ttl: a.ttl, question: a.question, rcode: a.rcode, meta: probedMeta, qbytes: query.slice(12, probedEnd) });
}

/** How many responses the zone's cache holds (for tests). */
export function cachedEntries(zone: Zone): number {
  return caches.get(zone)?.map.size ?? 0;
}
