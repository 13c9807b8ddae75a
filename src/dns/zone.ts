/**
 * The embedded authoritative zone: A/AAAA and HTTPS records for the names in
 * the configuration, with the ech= SvcParam filled from the key folder's
 * active keys at query time, so a rotation is visible in DNS at once.
 *
 * For a name served on a port other than 443 the HTTPS record is also
 * published at _PORT._https.NAME with an explicit TargetName (RFC 9460 §9.1:
 * that is the name clients ask for; "." there would mean the _https name).
 *
 * Without an apex, names that are neither configured nor below a configured
 * name get REFUSED. With an apex (`zone`), the server is authoritative for that zone only: SOA
 * and NS at the apex, the SOA in the authority section of negative answers
 * (RFC 2308 §3) so resolvers cache them, REFUSED outside the zone. The SOA
 * serial moves forward whenever the published ECHConfigList changes, so
 * secondaries that poll it see a rotation.
 */
import { parseIp } from '../bytes/ip.js';
import { Writer } from '../bytes/writer.js';
import { equal } from '../bytes/util.js';
import { type AnswerRecord, RCode, RRType } from '../wire/dns/message.js';
import { encodeName } from '../wire/dns/name.js';
import { httpsServiceRdata } from '../wire/dns/svcb.js';

export interface ZoneName {
  a?: string[];
  aaaa?: string[];
  /** alias: publish an AliasMode record (SvcPriority 0) to this TargetName instead (RFC 9460 §2.4.2). */
  https?: { priority?: number; alpn?: string[]; port?: number; ech?: boolean; alias?: string };
}

export interface ZoneConfig {
  ttl: number;
  names: Record<string, ZoneName>;
  /** The apex this server is authoritative for; absent: answer for the listed names only, without SOA. */
  zone?: string;
  /** NS names at the apex (default ns1.ZONE). */
  nameservers?: string[];
}

export interface ZoneAnswer {
  rcode: number;
  answers: AnswerRecord[];
  /** The authority section: the SOA of a negative answer. */
  authority: AnswerRecord[];
  /** false outside our zone (REFUSED carries no AA bit). */
  authoritative: boolean;
  /** Set when the answer depends on the clock, not only on the generation (the `_esni` TXT's TTL counts down to not_after): never cached. */
  timeDependent?: boolean;
}

const norm = (n: string) => n.toLowerCase().replace(/\.$/, '');

export type EchListSource = () => Uint8Array | undefined;
/** ESNI (draft-ietf-tls-esni-02, experimental): the ESNIKeys records valid now and their TTL, at most maxTtl. */
export type EsniSource = (maxTtl: number) => { records: Uint8Array[]; ttl: number } | undefined;

/** TXT RDATA (RFC 1035 §3.3.14): the base64 text in character-strings of at most 255 octets (draft-02 §4). */
function txtRdata(text: string): Uint8Array {
  const w = new Writer(text.length + 8);
  for (let at = 0; at < text.length; at += 255) {
    const part = text.slice(at, at + 255);
    w.u8(part.length).bytes(new TextEncoder().encode(part));
  }
  return w.finish();
}

export class Zone {
  private readonly names = new Map<string, ZoneName & { target?: string }>();
  /** Names that exist only because something below them does (RFC 8020: NODATA, not NXDOMAIN). */
  private readonly nonTerminals = new Set<string>();
  private readonly apex: string | undefined;
  private serial = Math.floor(Date.now() / 1000);
  private lastEch: Uint8Array | undefined;

  constructor(
    private readonly cfg: ZoneConfig,
    private readonly ech: EchListSource,
    private readonly esni?: EsniSource,
  ) {
    this.apex = cfg.zone === undefined ? undefined : norm(cfg.zone);
    for (const [raw, n] of Object.entries(cfg.names)) {
      const name = norm(raw);
      this.names.set(name, n);
      if (n.https?.port && n.https.port !== 443) this.names.set(`_${n.https.port}._https.${name}`, { https: n.https, target: name });
    }
    for (const name of this.names.keys()) {
      for (let at = name.indexOf('.'); at >= 0; at = name.indexOf('.', at + 1)) this.nonTerminals.add(name.slice(at + 1));
    }
    if (this.apex !== undefined) this.nonTerminals.add(this.apex);
  }

  /**
   * With an apex: the apex and everything below it. Without one we hold no
   * zone, only the configured names and what lies below them (the _PORT._https
   * names): anything else is REFUSED (no AA), as a server that is not
   * authoritative for a name answers (RFC 1035 §4.3.1), never an
   * authoritative NXDOMAIN that a resolver would cache for someone else's name.
   */
  private inZone(name: string): boolean {
    if (this.apex === undefined) {
      for (let suffix = name; ; ) {
        if (this.names.has(suffix)) return true;
        const dot = suffix.indexOf('.');
        if (dot < 0) return false;
        suffix = suffix.slice(dot + 1);
      }
    }
    return this.apex === '' || name === this.apex || name.endsWith(`.${this.apex}`);
  }

  /**
   * Looks at the published list: when it changed, the SOA serial moves forward
   * (never back) and the generation counts up. The key folder hands out the
   * same array until it changes, so this is one comparison per query.
   */
  private refresh(): void {
    const now = this.ech();
    if (now === this.lastEch) return;
    const same = now !== undefined && this.lastEch !== undefined && equal(now, this.lastEch);
    this.lastEch = now;
    if (same) return;
    this.serial = Math.max(this.serial + 1, Math.floor(Date.now() / 1000)) % 2 ** 32;
    this.gen++;
  }
  private gen = 0;

  /**
   * A number that changes whenever an answer of this zone could change (the
   * names are fixed for the life of a Zone; the ech= value and with it the SOA
   * serial are not): answers cached under one generation hold while it lasts.
   */
  generation(): number {
    this.refresh();
    return this.gen;
  }

  private currentSerial(): number {
    this.refresh();
    return this.serial;
  }

  private soa(): AnswerRecord {
    const apex = this.apex!;
    const ns = this.cfg.nameservers?.[0] ?? `ns1.${apex}`;
    const ttl = this.cfg.ttl;
    // MNAME, RNAME, SERIAL, REFRESH, RETRY, EXPIRE, MINIMUM (RFC 1035 §3.3.13); MINIMUM is the negative-cache TTL (RFC 2308 §4).
    const rdata = new Writer(96)
      .bytes(encodeName(ns))
      .bytes(encodeName(`hostmaster.${apex}`))
      .u32(this.currentSerial())
      .u32(3600)
      .u32(600)
      .u32(86400 * 7)
      .u32(ttl)
      .finish();
    return { name: apex, type: RRType.SOA, ttl, rdata };
  }

  /** Answer one question. NXDOMAIN for names we do not hold; NODATA for a type we do not have. */
  answer(qname: string, qtype: number): ZoneAnswer {
    const name = norm(qname);
    if (!this.inZone(name)) return { rcode: RCode.REFUSED, answers: [], authority: [], authoritative: false };
    const negative = (rcode: number): ZoneAnswer => ({ rcode, answers: [], authority: this.apex !== undefined ? [this.soa()] : [], authoritative: true });
    const ttl = this.cfg.ttl;
    const answers: AnswerRecord[] = [];
    if (this.apex !== undefined && name === this.apex) {
      if (qtype === RRType.SOA) answers.push({ ...this.soa(), name: qname });
      if (qtype === RRType.NS) for (const ns of this.cfg.nameservers ?? [`ns1.${this.apex}`]) answers.push({ name: qname, type: RRType.NS, ttl, rdata: encodeName(ns) });
    }
    // `_esni.NAME` TXT (draft-ietf-tls-esni-02 §4) for every configured name while the key folder holds a valid
    // ESNI key. TTL: never past the earliest not_after, so caches drop the record before the key expires.
    if (this.esni && name.startsWith('_esni.') && this.names.has(name.slice(6))) {
      const e = this.esni(ttl);
      if (e) {
        if (qtype === RRType.TXT) for (const r of e.records) answers.push({ name: qname, type: RRType.TXT, ttl: e.ttl, rdata: txtRdata(Buffer.from(r).toString('base64')) });
        return { ...(answers.length ? { rcode: RCode.NOERROR, answers, authority: [], authoritative: true } : negative(RCode.NOERROR)), timeDependent: true };
      }
    }
    const n = this.names.get(name);
    if (!n && answers.length === 0) return negative(this.nonTerminals.has(name) ? RCode.NOERROR : RCode.NXDOMAIN);
    if (n && qtype === RRType.A) {
      for (const a of n.a ?? []) answers.push({ name: qname, type: RRType.A, ttl, rdata: parseIp(a)!.bytes });
    } else if (n && qtype === RRType.AAAA) {
      for (const a of n.aaaa ?? []) answers.push({ name: qname, type: RRType.AAAA, ttl, rdata: parseIp(a)!.bytes });
    } else if (n && qtype === RRType.HTTPS && n.https?.alias) {
      // AliasMode carries no SvcParams (RFC 9460 §2.4.2): only the TargetName.
      answers.push({ name: qname, type: RRType.HTTPS, ttl, rdata: httpsServiceRdata({ priority: 0, target: norm(n.https.alias) }) });
    } else if (n && qtype === RRType.HTTPS && n.https) {
      answers.push({ name: qname, type: RRType.HTTPS, ttl, rdata: httpsServiceRdata({ ...n.https, target: n.target ?? '', ech: n.https.ech === false ? undefined : this.ech() }) });
    }
    return answers.length ? { rcode: RCode.NOERROR, answers, authority: [], authoritative: true } : negative(RCode.NOERROR);
  }
}
