/**
 * Traefik's TCP middlewares, applied once a router is chosen and before
 * anything is sent to the client or the backend: `ipAllowList` (client
 * address in one of the ranges) and `inFlightConn` (at most `amount` open
 * connections per client address). As in Traefik, a refused connection is
 * closed, with nothing sent. The connection path calls admit() once per
 * connection and release() when the connection ends.
 */
import type { TcpMiddlewareConfig } from '../config/types.js';
import { inRange, type IpRange, parseIp, parseRange } from '../bytes/ip.js';
import type { EntryContext, RouteTarget } from './context.js';

/** One middleware ready to run: ranges parsed, in-flight counters attached. */
export type CompiledMiddleware =
  | { kind: 'ipAllowList'; name: string; ranges: IpRange[] }
  | { kind: 'inFlightConn'; name: string; amount: number; open: Map<string, number> };

export type Admission = { ok: true; release(): void } | { ok: false; middleware: string; reason: 'not_allowed' | 'too_many_connections' };

/**
 * In-flight counts by middleware name, then client address. Owned by the
 * gateway and kept across reloads, so connections opened before a reload
 * still count against the limit after it. Per process (with `workers` > 1,
 * each worker counts its own connections).
 */
export class InFlightCounts {
  private readonly byMiddleware = new Map<string, Map<string, number>>();
  for(name: string): Map<string, number> {
    let m = this.byMiddleware.get(name);
    if (!m) {
      m = new Map();
      this.byMiddleware.set(name, m);
    }
    return m;
  }
}

export function compileMiddlewares(list: readonly TcpMiddlewareConfig[], counts: InFlightCounts): CompiledMiddleware[] {
  return list.map((m) =>
    m.kind === 'ipAllowList'
      ? // Validated at load (config/validate.ts): every entry parses.
        { kind: 'ipAllowList', name: m.name, ranges: m.sourceRange.map((r) => parseRange(r)!).filter(Boolean) }
      : { kind: 'inFlightConn', name: m.name, amount: m.amount, open: counts.for(m.name) },
  );
}

const NOTHING = () => {};
const ADMITTED: Admission = { ok: true, release: NOTHING };

/**
 * Run the route's middlewares in order for a connection from `peer()` (read only when there are middlewares).
 * Refusals are logged (rate limited); `router` is the name the logs may show.
 * On `ok`, call release() exactly once when the connection ends (more calls do nothing).
 */
export function admit(ctx: EntryContext, target: RouteTarget, peer: { readonly clientIp: string }, router: string): Admission {
  const chain = target.middlewares;
  if (!chain || chain.length === 0) return ADMITTED;
  // Asked only here: the peer address is a getpeername(2) per connection, which a route without middlewares never needs.
  const clientIp = peer.clientIp;
  const held: Map<string, number>[] = [];
  const addr = parseIp(clientIp);
  const releaseAll = () => {
    for (const open of held.splice(0)) {
      const n = (open.get(clientIp) ?? 1) - 1;
      if (n <= 0) open.delete(clientIp);
      else open.set(clientIp, n);
    }
  };
  for (const m of chain) {
    let refused: 'not_allowed' | 'too_many_connections' | undefined;
    if (m.kind === 'ipAllowList') {
      if (!addr || !m.ranges.some((r) => inRange(addr, r))) refused = 'not_allowed';
    } else {
      const n = m.open.get(clientIp) ?? 0;
      if (n >= m.amount) refused = 'too_many_connections';
      else {
        m.open.set(clientIp, n + 1);
        held.push(m.open);
      }
    }
    if (refused) {
      releaseAll();
      ctx.limiter.log(ctx.log, 'info', { entrypoint: ctx.ep.name, router, middleware: m.name, client: clientIp, reason: refused }, 'connection refused by middleware');
      return { ok: false, middleware: m.name, reason: refused };
    }
  }
  return held.length === 0 ? ADMITTED : { ok: true, release: releaseAll };
}
