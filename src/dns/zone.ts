/**
 * The embedded authoritative zone: A/AAAA and HTTPS records for the names in
 * the configuration, with the ech= SvcParam filled from the key folder's
 * active keys at query time, so a rotation is visible in DNS at once.
 *
 * For a name served on a port other than 443 the HTTPS record is also
 * published at _PORT._https.NAME with an explicit TargetName (RFC 9460 §9.1:
 * that is the name clients ask for; "." there would mean the _https name).
 */
import { parseIp } from '../routing/ip.js';
import { type AnswerRecord, RCode, RRType } from '../wire/dns/message.js';
import { httpsServiceRdata } from '../wire/dns/svcb.js';

export interface ZoneName {
  a?: string[];
  aaaa?: string[];
  https?: { priority?: number; alpn?: string[]; port?: number; ech?: boolean };
}

export interface ZoneConfig {
  ttl: number;
  names: Record<string, ZoneName>;
}

export type EchListSource = () => Uint8Array | undefined;

export class Zone {
  private readonly names = new Map<string, ZoneName & { target?: string }>();

  constructor(
    private readonly cfg: ZoneConfig,
    private readonly ech: EchListSource,
  ) {
    for (const [raw, n] of Object.entries(cfg.names)) {
      const name = raw.toLowerCase().replace(/\.$/, '');
      this.names.set(name, n);
      if (n.https?.port && n.https.port !== 443) this.names.set(`_${n.https.port}._https.${name}`, { https: n.https, target: name });
    }
  }

  /** Answer one question. NXDOMAIN for names we do not hold; NODATA for a type we do not have. */
  answer(qname: string, qtype: number): { rcode: number; answers: AnswerRecord[] } {
    const name = qname.toLowerCase().replace(/\.$/, '');
    const n = this.names.get(name);
    if (!n) return { rcode: RCode.NXDOMAIN, answers: [] };
    const ttl = this.cfg.ttl;
    const answers: AnswerRecord[] = [];
    if (qtype === RRType.A) {
      for (const a of n.a ?? []) answers.push({ name: qname, type: RRType.A, ttl, rdata: parseIp(a)!.bytes });
    } else if (qtype === RRType.AAAA) {
      for (const a of n.aaaa ?? []) answers.push({ name: qname, type: RRType.AAAA, ttl, rdata: parseIp(a)!.bytes });
    } else if (qtype === RRType.HTTPS && n.https) {
      answers.push({ name: qname, type: RRType.HTTPS, ttl, rdata: httpsServiceRdata({ ...n.https, target: n.target ?? '', ech: n.https.ech === false ? undefined : this.ech() }) });
    }
    return { rcode: RCode.NOERROR, answers };
  }
}
