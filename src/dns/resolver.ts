/**
 * A DoH stub resolver that finds a service the way a browser does: the HTTPS
 * record of the origin (at _PORT._https.NAME for a port other than 443,
 * RFC 9460 §9.1), AliasMode followed to its TargetName with a bounded chain
 * (RFC 9460 §2.4.2), the port / alpn / ech SvcParams of the ServiceMode
 * record read, and the address of the TargetName (or the origin when there
 * is no record). Answers are cached in memory for their freshness lifetime:
 * the minimum TTL of the answer records, capped by the DoH response's
 * Cache-Control max-age (RFC 8484 §5.1). A caller that polls for a change
 * (the publish read-back) asks with `fresh: true` and bypasses the cache.
 */
import { EchgateError } from '../errors.js';
import { type DnsMessage, RRType } from '../wire/dns/message.js';
import { decodeSvcb, type Svcb, SvcParamKey } from '../wire/dns/svcb.js';
import { type DohOptions, dohQuery } from './doh-client.js';

/** Cached answers at most; the oldest entry goes first. */
export const MAX_CACHE_ENTRIES = 1024;

/** RFC 9460 §2.4.2 asks for a chain-length limit; 8 is the example figure it gives for loops (§3). */
export const MAX_ALIAS_CHAIN = 8;

export interface ResolverOptions extends DohOptions {
  /** The clock (ms), injectable so tests can step past a TTL without waiting. */
  now?: () => number;
}

export interface Answer extends DnsMessage {
  raw: Uint8Array;
  /** Served from the cache, not from the network. */
  cached: boolean;
  /** Seconds the answer stays fresh from when it was fetched (0: not cached). */
  lifetime: number;
}

export interface HttpsService {
  /** The name asked first: NAME or _PORT._https.NAME. */
  queried: string;
  /** The names the AliasMode records led through, in order (empty: no alias). */
  aliases: string[];
  /** The name whose address is used (the ServiceMode TargetName, or the origin without a record). */
  target: string;
  address: string;
  port: number;
  /** The alpn SvcParam, with http/1.1 added unless no-default-alpn (RFC 9460 §7.1.2). */
  alpn?: string[];
  /** The ech SvcParam (RFC 9848 §3): the ECHConfigList to offer. */
  ech?: Uint8Array;
  /** The ServiceMode record used, if any. */
  record?: Svcb;
}

const norm = (n: string) => n.toLowerCase().replace(/\.$/, '');

/** The freshness lifetime in seconds: min TTL of the answers, capped by max-age; undefined when not cacheable. */
export function freshness(m: DnsMessage, http: { maxAge?: number; noStore: boolean }): number {
  if (http.noStore) return 0;
  // A negative answer lives as long as its SOA says (RFC 2308 §5): the SOA TTL, capped by its MINIMUM.
  const soa = m.authorities.find((r) => r.type === RRType.SOA);
  let ttl: number;
  if (m.answers.length) ttl = Math.min(...m.answers.map((r) => r.ttl));
  else if (soa && soa.rdata.length >= 4) ttl = Math.min(soa.ttl, Buffer.from(soa.rdata).readUInt32BE(soa.rdata.length - 4));
  else ttl = 0;
  return Math.max(0, Math.min(ttl, http.maxAge ?? Number.POSITIVE_INFINITY));
}

export class DohResolver {
  private readonly cache = new Map<string, { expires: number; answer: Omit<Answer, 'cached'> }>();
  private readonly now: () => number;
  /** Entries in the cache now. */
  get cacheSize(): number {
    return this.cache.size;
  }
  /** Queries that went to the network (for reports and tests). */
  networkQueries = 0;

  constructor(
    readonly url: string,
    private readonly o: ResolverOptions = {},
  ) {
    this.now = o.now ?? Date.now;
  }

  async query(name: string, type: number, q: { fresh?: boolean; timeoutMs?: number } = {}): Promise<Answer> {
    const key = `${norm(name)}/${type}`;
    const hit = this.cache.get(key);
    if (!q.fresh && hit && hit.expires > this.now()) return { ...hit.answer, cached: true };
    this.networkQueries++;
    const m = await dohQuery(this.url, name, type, { ...this.o, ...(q.timeoutMs !== undefined ? { timeoutMs: q.timeoutMs } : {}) });
    const lifetime = freshness(m, m.http);
    const answer = { ...m, lifetime };
    this.cache.delete(key);
    if (lifetime > 0) {
      // Map order is insertion order: the first key is the oldest.
      if (this.cache.size >= MAX_CACHE_ENTRIES) this.cache.delete(this.cache.keys().next().value!);
      this.cache.set(key, { expires: this.now() + lifetime * 1000, answer });
    }
    return { ...answer, cached: false };
  }

  /** The first A (then AAAA) address of a name. */
  async address(name: string): Promise<string | undefined> {
    for (const type of [RRType.A, RRType.AAAA]) {
      const m = await this.query(name, type);
      for (const rr of m.answers) {
        if (rr.type === RRType.A && rr.rdata.length === 4) return Array.from(rr.rdata).join('.');
        if (rr.type === RRType.AAAA && rr.rdata.length === 16) {
          return Array.from({ length: 8 }, (_, i) => ((rr.rdata[2 * i]! << 8) | rr.rdata[2 * i + 1]!).toString(16)).join(':');
        }
      }
    }
    return undefined;
  }

  /** The browser path for https://NAME:PORT: HTTPS record (aliases followed), then the address. */
  async https(origin: string, port: number): Promise<HttpsService> {
    const host = norm(origin);
    // RFC 9460 §9.1: the default port is queried at the name itself, any other at _PORT._https.NAME.
    const queried = port === 443 ? host : `_${port}._https.${host}`;
    const aliases: string[] = [];
    let qname = queried;
    for (;;) {
      const m = await this.query(qname, RRType.HTTPS);
      const records = m.answers.filter((r) => r.type === RRType.HTTPS).map((r) => ({ owner: norm(r.name), s: decodeSvcb(r.rdata) }));
      // RFC 9460 §2.4.1: an AliasMode record in the set makes the ServiceMode records in it ignored.
      const alias = records.find((r) => r.s.priority === 0);
      if (alias) {
        // RFC 9460 §2.5.1: AliasMode to "." means the service does not exist: fall back to the origin.
        if (alias.s.target === '') return this.plain(queried, aliases, host, port);
        const next = norm(alias.s.target);
        if (aliases.length >= MAX_ALIAS_CHAIN || aliases.includes(next) || next === queried) {
          throw new EchgateError('ERR_DNS_ALIAS', `HTTPS AliasMode chain from ${queried} is longer than ${MAX_ALIAS_CHAIN} or loops (at ${next})`);
        }
        aliases.push(next);
        qname = next;
        continue;
      }
      if (!records.length) return this.plain(queried, aliases, aliases.at(-1) ?? host, port);
      // RFC 9460 §2.4.3: the lowest SvcPriority is the most preferred.
      const best = records.sort((a, b) => a.s.priority - b.s.priority)[0]!;
      // RFC 9460 §2.5.2: "." in ServiceMode is the record's owner name.
      const target = best.s.target === '' ? best.owner : norm(best.s.target);
      const p = best.s.params.get(SvcParamKey.port);
      const alpnRaw = best.s.params.get(SvcParamKey.alpn);
      let alpn: string[] | undefined;
      if (alpnRaw) {
        alpn = [];
        for (let i = 0; i < alpnRaw.length; ) {
          const n = alpnRaw[i]!;
          alpn.push(Buffer.from(alpnRaw.subarray(i + 1, i + 1 + n)).toString('latin1'));
          i += 1 + n;
        }
        if (!best.s.params.has(SvcParamKey['no-default-alpn']) && !alpn.includes('http/1.1')) alpn.push('http/1.1');
      }
      const address = await this.address(target);
      if (!address) throw new EchgateError('ERR_DNS_NO_ADDRESS', `no A or AAAA record for ${target} (the target of ${qname} HTTPS)`);
      return { queried, aliases, target, address, port: p && p.length === 2 ? (p[0]! << 8) | p[1]! : port, alpn, ech: best.s.params.get(SvcParamKey.ech), record: best.s };
    }
  }

  private async plain(queried: string, aliases: string[], host: string, port: number): Promise<HttpsService> {
    const address = await this.address(host);
    if (!address) throw new EchgateError('ERR_DNS_NO_ADDRESS', `no HTTPS, A or AAAA record for ${host}`);
    return { queried, aliases, target: host, address, port };
  }
}
