/**
 * `tcp.routers.NAME`: a rule, the service it sends to, and how TLS is handled
 * (absent: not TLS; passthrough; or terminated with `tls.options`). Reads the
 * results of entryPoints, tcp.services, tls and tcp.middlewares, so it is
 * registered after them. The rule is compiled here so that a bad rule is a
 * configuration problem naming the router and the column.
 */
import { needsClientHello } from '../routing/compile.js';
import { RuleError } from '../routing/parse.js';
import { RoutingTable } from '../routing/table.js';
import { entryPointsSection } from './entry-points.js';
import { type Ctx, isObj, type Obj, section } from './fields.js';
import { tcpMiddlewaresSection } from './tcp-middlewares.js';
import { tcpServicesSection } from './tcp-services.js';
import { tlsSection } from './tls.js';
import type { RouterConfig, TcpMiddlewareConfig } from './types.js';

/**
 * Traefik qualifies a reference with its provider (NAME@file). echgate's
 * providers (the file, Kubernetes manifests converted into it, etcd) share one
 * namespace, so @file and @etcd both name it; any other provider is refused.
 */
const OWN_PROVIDER = /@(file|etcd)$/;

function routerTls(ctx: Ctx, raw: Obj, p: string): RouterConfig['tls'] {
  const tlsOptions = ctx.get(tlsSection).options;
  const tls: NonNullable<RouterConfig['tls']> = { passthrough: raw.passthrough === true };
  if (!tls.passthrough) tls.options = tlsOptions.get('default')!;
  if (raw.options !== undefined) {
    const ref = typeof raw.options === 'string' ? raw.options.replace(OWN_PROVIDER, '') : undefined;
    const o = ref === undefined ? undefined : tlsOptions.get(ref);
    if (ref === undefined) ctx.bad(`${p}.tls.options`, 'expected the name of an entry in tls.options');
    else if (!o) ctx.bad(`${p}.tls.options`, `no TLS options named "${ref}" in tls.options`);
    else if (tls.passthrough) ctx.warn(`${p}.tls.options: ignored with passthrough (the backend terminates TLS)`);
    else tls.options = o;
  }
  if (raw.echSplit !== undefined) {
    if (typeof raw.echSplit !== 'boolean') ctx.bad(`${p}.tls.echSplit`, 'expected true or false');
    else if (raw.echSplit && !tls.passthrough) ctx.bad(`${p}.tls.echSplit`, 'split mode forwards the hello: it needs passthrough: true');
    else if (raw.echSplit) tls.echSplit = true;
  }
  if (raw.alpn !== undefined) {
    if (!Array.isArray(raw.alpn) || !raw.alpn.every((x) => typeof x === 'string' && x.length > 0 && x.length < 256)) {
      ctx.bad(`${p}.tls.alpn`, 'expected a list of protocol names');
    } else tls.alpn = raw.alpn as string[];
  }
  return tls;
}

/** Applied in the order listed; a missing one is an error, never a router that silently lets everyone in. */
function routerMiddlewares(ctx: Ctx, raw: unknown, p: string): TcpMiddlewareConfig[] {
  const { byName, declared } = ctx.get(tcpMiddlewaresSection);
  const out: TcpMiddlewareConfig[] = [];
  if (raw === undefined) return out;
  if (!Array.isArray(raw)) {
    ctx.bad(`${p}.middlewares`, 'expected a list of names from tcp.middlewares');
    return out;
  }
  raw.forEach((ref, i) => {
    const n = typeof ref === 'string' ? ref.replace(OWN_PROVIDER, '') : undefined;
    if (n === undefined) ctx.bad(`${p}.middlewares[${i}]`, 'expected a name from tcp.middlewares');
    else if (/@/.test(n)) ctx.bad(`${p}.middlewares[${i}]`, `"${n}" names another provider; only @file (this file) and @etcd exist here`);
    else if (!declared.has(n)) ctx.bad(`${p}.middlewares[${i}]`, `no middleware named "${n}" in tcp.middlewares`);
    else {
      const m = byName.get(n);
      if (m) out.push(m);
    }
  });
  return out;
}

function router(ctx: Ctx, name: string, r: Obj): RouterConfig | undefined {
  const p = `tcp.routers.${name}`;
  if (typeof r.rule !== 'string') {
    ctx.bad(`${p}.rule`, 'a rule is required');
    return undefined;
  }
  const services = ctx.get(tcpServicesSection);
  if (typeof r.service !== 'string') ctx.bad(`${p}.service`, 'a service is required');
  else if (!services.has(r.service.replace(OWN_PROVIDER, ''))) ctx.bad(`${p}.service`, `no service named "${r.service}"`);
  const declaredEps = ctx.get(entryPointsSection).declared;
  let eps: string[] = [...declaredEps]; // Traefik: no entryPoints = all of them
  if (r.entryPoints !== undefined) {
    if (!Array.isArray(r.entryPoints) || !r.entryPoints.every((x) => typeof x === 'string')) {
      ctx.bad(`${p}.entryPoints`, 'expected a list of entrypoint names');
    } else {
      eps = r.entryPoints as string[];
      for (const e of eps) if (!declaredEps.has(e)) ctx.bad(`${p}.entryPoints`, `no entrypoint named "${e}"`);
    }
  }
  let priority: number | undefined;
  if (r.priority !== undefined) {
    if (typeof r.priority !== 'number' || !Number.isInteger(r.priority)) ctx.bad(`${p}.priority`, 'expected a whole number');
    else priority = r.priority;
  }
  let tls: RouterConfig['tls'];
  if (r.tls !== undefined && r.tls !== null) {
    if (!isObj(r.tls)) ctx.bad(`${p}.tls`, 'expected a mapping');
    else tls = routerTls(ctx, r.tls, p);
  }
  const requireECH = r.requireECH === true;
  if (r.requireECH !== undefined && typeof r.requireECH !== 'boolean') ctx.bad(`${p}.requireECH`, 'expected true or false');
  if (requireECH && tls?.passthrough && !tls.echSplit) {
    ctx.bad(
      `${p}.requireECH`,
      'a passthrough backend cannot complete an ECH handshake (it cannot send the accept confirmation); use tls: {} (termination) or echSplit: true towards an ECH backend server',
    );
  }
  if (requireECH && !tls) ctx.bad(`${p}.requireECH`, 'requireECH needs a tls section');
  // RFC 9849: ECH is TLS 1.3 only, so options that stop at TLS 1.2 could never serve this router.
  if (requireECH && tls?.options && tls.options.maxVersion < 0x0304) {
    ctx.bad(`${p}.tls.options`, `requireECH needs TLS 1.3, but tls.options.${tls.options.name}.maxVersion is VersionTLS12`);
  }
  try {
    const table = new RoutingTable([{ name, rule: r.rule, tls: tls !== undefined, target: null }]);
    if (!tls && needsClientHello(table.routes[0]!.rule.tree)) {
      ctx.bad(`${p}.rule`, 'a router without a tls section can only use HostSNI(`*`) (and ClientIP); add tls: { passthrough: true }');
    }
  } catch (e) {
    if (e instanceof RuleError) ctx.bad(`${p}.rule`, e.message.replace(/^router "[^"]*": /, ''));
    else throw e;
  }
  const middlewares = routerMiddlewares(ctx, r.middlewares, p);
  const service = typeof r.service === 'string' ? r.service.replace(OWN_PROVIDER, '') : String(r.service);
  return { name, entryPoints: eps, rule: r.rule, service, priority, tls, requireECH, middlewares };
}

export const tcpRoutersSection = section<RouterConfig[]>({
  path: 'tcp.routers',
  keys: {
    '*': {
      entryPoints: 'list',
      rule: 'string',
      service: 'string',
      priority: 'number',
      tls: { passthrough: 'boolean', alpn: 'list', echSplit: 'boolean', options: 'string', certResolver: 'string', domains: 'any' },
      requireECH: 'boolean',
      middlewares: 'list',
      ruleSyntax: 'string',
    },
  },
  parse(raw: unknown, ctx: Ctx) {
    const routers: RouterConfig[] = [];
    for (const [name, r] of Object.entries(isObj(raw) ? raw : {})) {
      if (!isObj(r)) ctx.bad(`tcp.routers.${name}`, 'expected a mapping');
      else {
        const out = router(ctx, name, r);
        if (out) routers.push(out);
      }
    }
    return routers;
  },
  assign(cfg, v) {
    cfg.routers = v;
  },
});
