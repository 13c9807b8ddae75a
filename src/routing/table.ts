/**
 * The routing table of one entrypoint: routers sorted as Traefik sorts them
 * (pkg/muxer/tcp): explicit priority, else the rule's length; a bare
 * HostSNI(`*`) without an explicit priority gets -1 so the catch-all is tried
 * last. Ties break on router name so the order never depends on YAML order.
 */
import type { ConnData } from './ast.js';
import { type CompiledRule, compileRule, needsClientHello } from './compile.js';
import { RuleError } from './parse.js';

export interface RouterSpec<T> {
  name: string;
  rule: string;
  priority?: number;
  /** Routers with a `tls` section see only TLS connections (Traefik semantics). */
  tls: boolean;
  /** Match only connections whose SNI came from a decrypted ECH inner hello. */
  requireECH?: boolean;
  target: T;
}

export interface Route<T> {
  name: string;
  priority: number;
  rule: CompiledRule;
  tls: boolean;
  requireECH: boolean;
  target: T;
}

export class RoutingTable<T> {
  readonly routes: readonly Route<T>[];
  /** True when no router needs to see a ClientHello: connect at once (server-speaks-first). */
  readonly immediate: boolean;

  constructor(specs: RouterSpec<T>[]) {
    const routes: Route<T>[] = [];
    for (const s of specs) {
      let rule: CompiledRule;
      try {
        rule = compileRule(s.rule);
      } catch (e) {
        if (e instanceof RuleError) {
          throw new RuleError(`router "${s.name}": ${e.message.replace(/ at column \d+$/, '')}`, e.column);
        }
        throw e;
      }
      let priority = s.priority ?? 0;
      if (priority === 0) priority = s.rule.trim() === 'HostSNI(`*`)' ? -1 : s.rule.length;
      routes.push({ name: s.name, priority, rule, tls: s.tls, requireECH: s.requireECH ?? false, target: s.target });
    }
    routes.sort((a, b) => b.priority - a.priority || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    this.routes = routes;
    this.immediate = routes.length > 0 && routes.every((r) => !r.tls && !needsClientHello(r.rule.tree));
  }

  /** The first route that takes the connection, or undefined. */
  match(c: ConnData): Route<T> | undefined {
    for (const r of this.routes) {
      if (!c.tls && r.tls) continue;
      if (r.requireECH && c.ech !== 'accepted') continue;
      if (r.rule.match(c)) return r;
    }
    return undefined;
  }

  /** Is there any route that could take a non-TLS connection? */
  get acceptsNonTls(): boolean {
    return this.routes.some((r) => !r.tls);
  }
}
