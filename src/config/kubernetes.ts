/**
 * Traefik's Kubernetes CRD manifests read from files (no API server):
 * `providers.kubernetesCRDFiles` names YAML files or folders holding
 * IngressRouteTCP, TLSOption, TLSStore and MiddlewareTCP objects. They are
 * converted into the raw file-provider object (tcp.routers, tcp.services,
 * tcp.middlewares, tls.options, tls.certificates, tls.stores) that
 * config/validate.ts validates, so there is one validator. Problems name the
 * manifest file, the document (counted from 1) and the field; a problem the
 * validator finds in a converted entry is mapped back to the manifest too.
 * See docs/kubernetes.md.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { ConfigError, parseAddress } from './validate.js';

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

export const API_VERSIONS = ['traefik.io/v1alpha1', 'traefik.containo.us/v1alpha1'];
const KINDS = ['IngressRouteTCP', 'TLSOption', 'TLSStore', 'MiddlewareTCP'];
/** Traefik kinds echgate has no counterpart for: skipped with a warning, never an error. */
const OTHER_TRAEFIK_KINDS = ['IngressRoute', 'IngressRouteUDP', 'Middleware', 'TraefikService', 'ServersTransport', 'ServersTransportTCP'];

export interface Expanded {
  /** The raw configuration with the manifests merged in and providers.kubernetesCRDFiles removed. */
  raw: Obj;
  warnings: string[];
  /** Key path prefix of a generated entry → where it came from. */
  origins: [string, string][];
}

interface Doc {
  where: string;
  kind: string;
  ns: string;
  name: string;
  spec: Obj;
}

/** List the manifest files of one path: a file, or a folder's *.yaml / *.yml / *.json (not recursive, sorted). */
function manifestFiles(path: string): string[] {
  if (!statSync(path).isDirectory()) return [path];
  return readdirSync(path)
    .filter((f) => /\.(ya?ml|json)$/i.test(f))
    .sort()
    .map((f) => join(path, f))
    .filter((f) => statSync(f).isFile());
}

/** Kubernetes object names (RFC 1123 subdomain); echgate joins them with `-` into file-provider names. */
const K8S_NAME = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;

/**
 * Expand `providers.kubernetesCRDFiles` of a raw configuration. Returns the
 * raw object unchanged (a copy) when the section is absent. Throws
 * ConfigError(file) listing every problem found.
 */
export function expandKubernetes(raw: unknown, file: string): Expanded {
  if (!isObj(raw) || !isObj(raw.providers) || raw.providers.kubernetesCRDFiles === undefined) return { raw: isObj(raw) ? raw : {}, warnings: [], origins: [] };
  const problems: { path: string; message: string }[] = [];
  const warnings: string[] = [];
  const origins: [string, string][] = [];
  const bad = (path: string, message: string) => problems.push({ path, message });
  const S = 'providers.kubernetesCRDFiles';
  const sec = raw.providers.kubernetesCRDFiles;
  if (!isObj(sec)) throw new ConfigError(file, [{ path: S, message: 'expected a mapping with paths' }]);
  for (const k of Object.keys(sec)) if (!['paths', 'addresses', 'secretsDir'].includes(k)) warnings.push(`${S}.${k}: unknown key, ignored`);
  const paths = sec.paths;
  if (!Array.isArray(paths) || paths.length === 0 || !paths.every((p) => typeof p === 'string' && p.length > 0)) {
    throw new ConfigError(file, [{ path: `${S}.paths`, message: 'expected a list of manifest files or folders' }]);
  }
  const secretsDir = sec.secretsDir ?? 'secrets';
  if (typeof secretsDir !== 'string' || secretsDir === '') bad(`${S}.secretsDir`, 'expected a folder path');
  const addresses = new Map<string, string>();
  if (sec.addresses !== undefined) {
    if (!isObj(sec.addresses)) bad(`${S}.addresses`, 'expected a mapping of "name.namespace" (or "name.namespace:port") to "host:port" or "host"');
    else
      for (const [k, v] of Object.entries(sec.addresses)) {
        if (typeof v !== 'string' || v === '') bad(`${S}.addresses.${k}`, 'expected "host:port" or "host"');
        else addresses.set(k, v);
      }
  }

  // ---- read every document ----
  const docs: Doc[] = [];
  for (const [pi, p] of (paths as string[]).entries()) {
    let files: string[];
    try {
      files = manifestFiles(p);
    } catch (e) {
      bad(`${S}.paths[${pi}]`, `${p}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
      continue;
    }
    if (files.length === 0) warnings.push(`${S}.paths[${pi}]: ${p}: no .yaml, .yml or .json files`);
    for (const f of files) {
      let text: string;
      try {
        text = readFileSync(f, 'utf8');
      } catch (e) {
        bad(f, (e as NodeJS.ErrnoException).code ?? (e as Error).message);
        continue;
      }
      const all = parseAllDocuments(text, { uniqueKeys: true });
      const list = Array.isArray(all) ? all : [all];
      for (const [di, d] of list.entries()) {
        const at = `${f}: document ${di + 1}`;
        if (d.errors.length > 0) {
          const e = d.errors[0]!;
          const pos = e.linePos?.[0];
          bad(at, `${pos ? `line ${pos.line}, column ${pos.col}: ` : ''}${e.message.split('\n')[0]}`);
          continue;
        }
        let v: unknown;
        try {
          // The yaml library caps alias expansion (a "billion laughs" document throws instead of growing).
          v = d.toJS({ maxAliasCount: 100 });
        } catch (e) {
          bad(at, (e as Error).message.split('\n')[0]!);
          continue;
        }
        if (v === null || v === undefined) continue; // an empty document (a trailing ---)
        // kubectl's `kind: List` output holds the objects in items.
        const objs: [string, unknown][] = isObj(v) && v.kind === 'List' && Array.isArray(v.items) ? v.items.map((it, ii) => [`${at}, items[${ii}]`, it]) : [[at, v]];
        for (const [w, o] of objs) {
          if (!isObj(o)) {
            bad(w, 'expected a Kubernetes object (a mapping with apiVersion, kind, metadata, spec)');
            continue;
          }
          const kind = o.kind;
          if (typeof kind !== 'string') {
            bad(`${w}: kind`, 'missing');
            continue;
          }
          if (!KINDS.includes(kind)) {
            if (OTHER_TRAEFIK_KINDS.includes(kind)) warnings.push(`${w}: ${kind}: not used by echgate (TCP only), ignored`);
            else warnings.push(`${w}: ${kind}: not a kind echgate reads, ignored`);
            continue;
          }
          if (typeof o.apiVersion !== 'string' || !API_VERSIONS.includes(o.apiVersion)) {
            bad(`${w}: apiVersion`, `expected ${API_VERSIONS.join(' or ')} for ${kind}, got ${JSON.stringify(o.apiVersion)}`);
            continue;
          }
          const md = isObj(o.metadata) ? o.metadata : {};
          const name = md.name;
          const ns = md.namespace ?? 'default';
          if (typeof name !== 'string' || !K8S_NAME.test(name)) {
            bad(`${w}: metadata.name`, 'expected a Kubernetes object name (lower case letters, digits, - and .)');
            continue;
          }
          if (typeof ns !== 'string' || !K8S_NAME.test(ns)) {
            bad(`${w}: metadata.namespace`, 'expected a Kubernetes namespace name');
            continue;
          }
          if (!isObj(o.spec)) {
            bad(`${w} (${kind} ${ns}/${name}): spec`, 'expected a mapping');
            continue;
          }
          docs.push({ where: `${w} (${kind} ${ns}/${name})`, kind, ns, name, spec: o.spec });
        }
      }
    }
  }

  // ---- convert ----
  const out = {
    routers: {} as Obj,
    services: {} as Obj,
    middlewares: {} as Obj,
    options: {} as Obj,
    certificates: [] as { certFile: string; keyFile: string }[],
    stores: {} as Obj,
  };
  const seen = new Map<string, string>();
  const once = (d: Doc): boolean => {
    const id = `${d.kind} ${d.ns}/${d.name}`;
    const prev = seen.get(id);
    if (prev) {
      bad(d.where, `defined twice (first in ${prev.replace(/ \(.*$/, '')})`);
      return false;
    }
    seen.set(id, d.where);
    return true;
  };
  const id = (ns: string, name: string) => `${ns}-${name}`;
  const secretFiles = (ns: string, secret: string) => ({
    certFile: join(String(secretsDir), ns, secret, 'tls.crt'),
    keyFile: join(String(secretsDir), ns, secret, 'tls.key'),
  });
  const addCert = (c: { certFile: string; keyFile: string }) => {
    if (!out.certificates.some((x) => x.certFile === c.certFile)) out.certificates.push(c);
  };
  const secretName = (v: unknown, path: string, d: Doc): string | undefined => {
    if (typeof v !== 'string' || !K8S_NAME.test(v)) {
      bad(`${d.where}: ${path}`, 'expected the name of a kubernetes.io/tls Secret');
      return undefined;
    }
    return v;
  };
  const warnUnknown = (o: Obj, d: Doc, path: string, known: string[], why = 'not supported by echgate, ignored') => {
    for (const k of Object.keys(o)) if (!known.includes(k)) warnings.push(`${d.where}: ${path}${path ? '.' : ''}${k}: ${why}`);
  };

  // TLSOptions first: routes refer to them. Traefik: the one named `default` is the default options.
  const optionIds = new Set<string>();
  for (const d of docs.filter((x) => x.kind === 'TLSOption')) {
    if (!once(d)) continue;
    const oid = d.name === 'default' ? 'default' : id(d.ns, d.name);
    if (optionIds.has(oid)) {
      bad(d.where, 'a second TLSOption named default: Traefik and echgate allow one default TLSOption across namespaces');
      continue;
    }
    optionIds.add(oid);
    out.options[oid] = d.spec;
    origins.push([`tls.options.${oid}`, `${d.where}: spec`]);
  }
  for (const d of docs.filter((x) => x.kind === 'TLSStore')) {
    if (!once(d)) continue;
    if (d.name !== 'default') {
      bad(`${d.where}: metadata.name`, 'only the TLSStore named default is used (as in Traefik)');
      continue;
    }
    if (isObj(out.stores.default)) {
      bad(d.where, 'a second TLSStore named default (one across namespaces)');
      continue;
    }
    warnUnknown(d.spec, d, 'spec', ['defaultCertificate', 'certificates']);
    const dc = d.spec.defaultCertificate;
    if (dc !== undefined) {
      const s = isObj(dc) ? secretName(dc.secretName, 'spec.defaultCertificate.secretName', d) : secretName(undefined, 'spec.defaultCertificate.secretName', d);
      if (s) out.stores.default = { defaultCertificate: secretFiles(d.ns, s) };
    }
    if (d.spec.certificates !== undefined) {
      if (!Array.isArray(d.spec.certificates)) bad(`${d.where}: spec.certificates`, 'expected a list of { secretName }');
      else
        d.spec.certificates.forEach((c, i) => {
          const s = secretName(isObj(c) ? c.secretName : undefined, `spec.certificates[${i}].secretName`, d);
          if (s) addCert(secretFiles(d.ns, s));
        });
    }
  }
  for (const d of docs.filter((x) => x.kind === 'MiddlewareTCP')) {
    if (!once(d)) continue;
    const mid = id(d.ns, d.name);
    // Kubernetes decodes JSON field names without regard to case (Go), and Traefik's own examples write `sourcerange`.
    const spec: Obj = {};
    for (const [k, v] of Object.entries(d.spec)) {
      if (isObj(v) && (k === 'ipAllowList' || k === 'ipWhiteList')) {
        spec[k] = Object.fromEntries(Object.entries(v).map(([kk, vv]) => [kk.toLowerCase() === 'sourcerange' ? 'sourceRange' : kk, vv]));
      } else spec[k] = v;
    }
    out.middlewares[mid] = spec;
    origins.push([`tcp.middlewares.${mid}`, `${d.where}: spec`]);
  }
  const middlewareIds = new Set(Object.keys(out.middlewares));

  for (const d of docs.filter((x) => x.kind === 'IngressRouteTCP')) {
    if (!once(d)) continue;
    const spec = d.spec;
    warnUnknown(spec, d, 'spec', ['entryPoints', 'routes', 'tls']);
    if (spec.entryPoints !== undefined && (!Array.isArray(spec.entryPoints) || !spec.entryPoints.every((e) => typeof e === 'string'))) {
      bad(`${d.where}: spec.entryPoints`, 'expected a list of entrypoint names');
    }
    let tls: Obj | undefined;
    if (spec.tls !== undefined) {
      if (!isObj(spec.tls)) bad(`${d.where}: spec.tls`, 'expected a mapping');
      else {
        const t = spec.tls;
        warnUnknown(t, d, 'spec.tls', ['secretName', 'passthrough', 'options']);
        tls = {};
        if (t.passthrough !== undefined) {
          if (typeof t.passthrough !== 'boolean') bad(`${d.where}: spec.tls.passthrough`, 'expected true or false');
          else if (t.passthrough) tls.passthrough = true;
        }
        if (t.secretName !== undefined) {
          const s = secretName(t.secretName, 'spec.tls.secretName', d);
          if (s && t.passthrough === true) warnings.push(`${d.where}: spec.tls.secretName: ignored with passthrough (the backend terminates TLS)`);
          else if (s) addCert(secretFiles(d.ns, s));
        }
        if (t.options !== undefined) {
          const o = t.options;
          if (!isObj(o) || typeof o.name !== 'string' || (o.namespace !== undefined && typeof o.namespace !== 'string')) {
            bad(`${d.where}: spec.tls.options`, 'expected { name, namespace } of a TLSOption');
          } else {
            const oid = o.name === 'default' ? 'default' : id(String(o.namespace ?? d.ns), o.name);
            if (oid !== 'default' && !optionIds.has(oid)) bad(`${d.where}: spec.tls.options`, `no TLSOption ${String(o.namespace ?? d.ns)}/${o.name} in the manifests`);
            else tls.options = oid;
          }
        }
      }
    }
    if (!Array.isArray(spec.routes) || spec.routes.length === 0) {
      bad(`${d.where}: spec.routes`, 'expected a list of routes (at least one)');
      continue;
    }
    spec.routes.forEach((route, ri) => {
      const rp = `spec.routes[${ri}]`;
      if (!isObj(route)) {
 bad(`${d.where}: ${rp}`, 'expected a mapping');
 return;
 }
      warnUnknown(route, d, rp, ['match', 'priority', 'services', 'middlewares', 'syntax']);
      if (typeof route.match !== 'string' || route.match.trim() === '') {
 bad(`${d.where}: ${rp}.match`, 'a rule is required, e.g. HostSNI(`db.example.com`)');
 return;
 }
      const rid = `${id(d.ns, d.name)}-${ri}`;
      const router: Obj = { rule: route.match, service: rid };
      if (Array.isArray(spec.entryPoints)) router.entryPoints = spec.entryPoints;
      if (route.priority !== undefined) router.priority = route.priority;
      if (tls) router.tls = { ...tls };
      if (route.middlewares !== undefined) {
        if (!Array.isArray(route.middlewares)) bad(`${d.where}: ${rp}.middlewares`, 'expected a list of { name, namespace }');
        else {
          const refs: string[] = [];
          route.middlewares.forEach((m, mi) => {
            const mp = `${d.where}: ${rp}.middlewares[${mi}]`;
            if (!isObj(m) || typeof m.name !== 'string' || (m.namespace !== undefined && typeof m.namespace !== 'string')) {
 bad(mp, 'expected { name, namespace } of a MiddlewareTCP');
 return;
 }
            const mid = id(String(m.namespace ?? d.ns), m.name);
            if (!middlewareIds.has(mid)) {
 bad(mp, `no MiddlewareTCP ${String(m.namespace ?? d.ns)}/${m.name} in the manifests`);
 return;
 }
            refs.push(mid);
          });
          router.middlewares = refs;
        }
      }
      // Services: one → a load balancer; several → weighted over one load balancer each.
      const svcs = route.services;
      if (!Array.isArray(svcs) || svcs.length === 0) {
 bad(`${d.where}: ${rp}.services`, 'expected a list of { name, port } (at least one)');
 return;
 }
      const lbs: { name: string; weight: number }[] = [];
      svcs.forEach((s, si) => {
        const sp = `${d.where}: ${rp}.services[${si}]`;
        if (!isObj(s)) {
 bad(sp, 'expected { name, port, weight }');
 return;
 }
        warnUnknown(s, d, `${rp}.services[${si}]`, ['name', 'namespace', 'port', 'weight', 'proxyProtocol', 'kind']);
        if (s.kind !== undefined && s.kind !== 'Service') {
 bad(`${sp}.kind`, 'only Service is supported');
 return;
 }
        if (typeof s.name !== 'string' || !K8S_NAME.test(s.name)) {
 bad(`${sp}.name`, 'expected a Service name');
 return;
 }
        const sns = s.namespace ?? d.ns;
        if (typeof sns !== 'string' || !K8S_NAME.test(sns)) {
 bad(`${sp}.namespace`, 'expected a namespace name');
 return;
 }
        const port = s.port;
        const numeric = typeof port === 'number' && Number.isInteger(port) && port >= 1 && port <= 65535;
        if (!numeric && (typeof port !== 'string' || port === '')) {
 bad(`${sp}.port`, 'expected a port number (1..65535) or a port name');
 return;
 }
        const mapped = addresses.get(`${s.name}.${sns}:${port}`) ?? addresses.get(`${s.name}.${sns}`);
        let address: string;
        if (mapped !== undefined && parseAddress(mapped)) address = mapped;
        else if (mapped !== undefined) {
          if (!numeric) {
 bad(`${sp}.port`, `a named port needs a "host:port" in ${S}.addresses["${s.name}.${sns}"]`);
 return;
 }
          address = `${mapped.includes(':') ? `[${mapped}]` : mapped}:${port}`;
        } else {
          if (!numeric) {
 bad(`${sp}.port`, `a named port ("${port}") needs an entry "${s.name}.${sns}" in ${S}.addresses (echgate has no API server to look the port up)`);
 return;
 }
          address = `${s.name}.${sns}.svc.cluster.local:${port}`;
        }
        const weight = s.weight ?? 1;
        if (typeof weight !== 'number' || !Number.isInteger(weight) || weight < 0) {
 bad(`${sp}.weight`, 'expected a whole number ≥ 0');
 return;
 }
        const lb: Obj = { servers: [{ address }] };
        if (s.proxyProtocol !== undefined) lb.proxyProtocol = s.proxyProtocol;
        const name = svcs.length === 1 ? rid : `${rid}-${si}`;
        out.services[name] = { loadBalancer: lb };
        origins.push([`tcp.services.${name}`, `${d.where}: ${rp}.services[${si}]`]);
        lbs.push({ name, weight });
      });
      if (svcs.length > 1) {
        out.services[rid] = { weighted: { services: lbs } };
        origins.push([`tcp.services.${rid}`, `${d.where}: ${rp}.services`]);
      }
      out.routers[rid] = router;
      origins.push([`tcp.routers.${rid}`, `${d.where}: ${rp}`]);
    });
  }

  // ---- merge into the raw configuration ----
  const merged: Obj = { ...raw };
  const providers = { ...(raw.providers as Obj) };
  delete providers.kubernetesCRDFiles;
  if (Object.keys(providers).length > 0) merged.providers = providers;
  else delete merged.providers;
  const tcp: Obj = isObj(raw.tcp) ? { ...raw.tcp } : {};
  const mergeInto = (target: Obj, key: string, add: Obj, path: string) => {
    if (Object.keys(add).length === 0) return;
    const have = isObj(target[key]) ? { ...(target[key] as Obj) } : {};
    for (const [k, v] of Object.entries(add)) {
      if (k in have) bad(`${path}.${k}`, `defined in this file and converted from a manifest (${origins.find((o) => o[0] === `${path}.${k}`)?.[1] ?? '?'})`);
      else have[k] = v;
    }
    target[key] = have;
  };
  if (raw.tcp === undefined || isObj(raw.tcp)) {
    mergeInto(tcp, 'routers', out.routers, 'tcp.routers');
    mergeInto(tcp, 'services', out.services, 'tcp.services');
    mergeInto(tcp, 'middlewares', out.middlewares, 'tcp.middlewares');
    if (Object.keys(tcp).length > 0) merged.tcp = tcp;
  }
  if (raw.tls === undefined || isObj(raw.tls)) {
    const tlsSec: Obj = isObj(raw.tls) ? { ...raw.tls } : {};
    mergeInto(tlsSec, 'options', out.options, 'tls.options');
    if (out.stores.default) {
      const stores = isObj(tlsSec.stores) ? { ...(tlsSec.stores as Obj) } : {};
      if (isObj(stores.default) && stores.default.defaultCertificate !== undefined) bad('tls.stores.default.defaultCertificate', 'set in this file and by a TLSStore manifest');
      else stores.default = { ...(isObj(stores.default) ? stores.default : {}), ...(out.stores.default as Obj) };
      tlsSec.stores = stores;
    }
    if (out.certificates.length > 0) tlsSec.certificates = [...(Array.isArray(tlsSec.certificates) ? tlsSec.certificates : []), ...out.certificates];
    if (Object.keys(tlsSec).length > 0) merged.tls = tlsSec;
  }
  if (problems.length > 0) throw new ConfigError(file, problems);
  return { raw: merged, warnings, origins };
}

/** Rewrite a validator problem about a converted entry so it names the manifest it came from. */
export function originOf(path: string, origins: [string, string][]): string {
  let best: [string, string] | undefined;
  for (const o of origins) {
    if ((path === o[0] || path.startsWith(`${o[0]}.`) || path.startsWith(`${o[0]}[`)) && (!best || o[0].length > best[0].length)) best = o;
  }
  return best ? `${best[1]} (converted to ${path})` : path;
}
