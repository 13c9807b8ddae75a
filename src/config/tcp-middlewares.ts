/** `tcp.middlewares.NAME`: Traefik's two TCP middlewares, ipAllowList (old name ipWhiteList) and inFlightConn. */
import { parseRange } from '../bytes/ip.js';
import { type Ctx, isObj, mapping, section } from './fields.js';
import type { TcpMiddlewareConfig } from './types.js';

export interface TcpMiddlewares {
  byName: Map<string, TcpMiddlewareConfig>;
  /** Names declared, even when their settings are wrong (a router naming one is then not a second problem). */
  declared: Set<string>;
}

const allowList = { sourceRange: 'list' } as const;

export const tcpMiddlewaresSection = section<TcpMiddlewares>({
  path: 'tcp.middlewares',
  // '!': an entry's kind other than these is an error (reported by parse), never a warning.
  keys: { '*': { '!': true, ipAllowList: allowList, ipWhiteList: allowList, inFlightConn: { amount: 'number' } } },
  parse(raw: unknown, ctx: Ctx): TcpMiddlewares {
    const byName = new Map<string, TcpMiddlewareConfig>();
    const all = mapping(ctx, raw, 'tcp.middlewares') ?? {};
    for (const [name, m] of Object.entries(all)) {
      const p = `tcp.middlewares.${name}`;
      if (!isObj(m) || Object.keys(m).length !== 1) {
        ctx.bad(p, 'expected exactly one of ipAllowList, inFlightConn (ipWhiteList: the old name of ipAllowList)');
        continue;
      }
      const [kind, body] = Object.entries(m)[0]!;
      const bp = `${p}.${kind}`;
      if (kind === 'ipAllowList' || kind === 'ipWhiteList') {
        if (kind === 'ipWhiteList') ctx.warn(`${bp}: ipWhiteList is deprecated (Traefik v3): write ipAllowList`);
        if (!isObj(body)) {
          ctx.bad(bp, 'expected a mapping with sourceRange');
          continue;
        }
        for (const k of Object.keys(body)) if (k !== 'sourceRange') ctx.warn(`${bp}.${k}: unknown key, ignored`);
        const sr = body.sourceRange;
        // Traefik refuses an empty list too (no trusted IPs): an allow-list that allows nothing is a mistake.
        if (!Array.isArray(sr) || sr.length === 0) ctx.bad(`${bp}.sourceRange`, 'expected a list of addresses or CIDR ranges (at least one)');
        else {
          sr.forEach((r, i) => {
            if (typeof r !== 'string' || !parseRange(r.trim())) ctx.bad(`${bp}.sourceRange[${i}]`, `not an address or CIDR range: ${JSON.stringify(r)}`);
          });
          byName.set(name, { kind: 'ipAllowList', name, sourceRange: sr.map((r) => String(r).trim()) });
        }
      } else if (kind === 'inFlightConn') {
        if (!isObj(body)) {
          ctx.bad(bp, 'expected a mapping with amount');
          continue;
        }
        for (const k of Object.keys(body)) if (k !== 'amount') ctx.warn(`${bp}.${k}: unknown key, ignored`);
        if (typeof body.amount !== 'number' || !Number.isInteger(body.amount) || body.amount < 1) ctx.bad(`${bp}.amount`, 'expected a whole number ≥ 1 (connections per client address)');
        else byName.set(name, { kind: 'inFlightConn', name, amount: body.amount });
      } else ctx.bad(bp, `unknown TCP middleware "${kind}" (echgate has ipAllowList and inFlightConn, as Traefik)`);
    }
    return { byName, declared: new Set(Object.keys(all)) };
  },
  assign(cfg, v) {
    cfg.tcpMiddlewares = v.byName;
  },
});
