/**
 * `echgate check --config F [--strict]`: validate and exit non-zero with the
 * file, key path and problem; then warn about what validates but will fail
 * traffic (a public name or a terminating router's names no certificate
 * covers, a certificate about to expire, a router that can never match).
 * `--strict` makes any warning a failure (exit 1).
 */
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { type Config, DEFAULTS, type RouterConfig } from '../config/types.js';
import type { RuleNode } from '../routing/ast.js';
import { normalizeHost } from '../routing/compile.js';
import { parseRule } from '../routing/parse.js';
import { RoutingTable } from '../routing/table.js';
import { loadConfigFile } from './config-file.js';
import { readDohCredentials } from '../dns/service.js';
import { EchgateError } from '../errors.js';
import { loadEsniKeys } from '../keys/esni-store.js';
import { rotationIdWarnings } from '../keys/manager.js';
import { KeyDir, type StoredKey } from '../keys/store.js';
import { certificateCovers, loadCertificates } from '../proxy/certificates.js';
import type { LoadedCertificate } from '../tls13/certs.js';
import { type Args, type CommandSpec, flag, has, str, text } from './args.js';
import type { Command } from './command.js';

export const checkSpec: CommandSpec = {
  name: 'check',
  args: '[FILE]',
  positionals: { min: 0, max: 1 },
  summary: 'validate a configuration: its certificates, DoH credentials and ECH key folder too',
  options: {
    config: text('FILE', 'the configuration file (YAML); may also be given as the argument'),
    strict: flag('treat every warning as an error (exit 1)'),
  },
};

/** A certificate expiring sooner than this is warned about. */
export const EXPIRY_WARNING_DAYS = 14;

export async function checkCommand(a: Args, out: (s: string) => void): Promise<number> {
  const flagged = str(a, 'config');
  if (flagged && a.positional[0]) throw new EchgateError('ERR_USAGE', 'give the configuration once: --config FILE or FILE (see: echgate check --help)');
  const file = flagged ?? a.positional[0];
  if (!file) throw new EchgateError('ERR_USAGE', 'missing the configuration: --config FILE (see: echgate check --help)');
  const cfg = loadConfigFile(file);
  const certs = loadCertificates(cfg, file);
  if (cfg.dns?.doh) readDohCredentials(cfg.dns.doh, file);
  let keys = '';
  const warnings = [...cfg.warnings];
  const publicNames: string[] = [];
  if (cfg.ech) {
    // The same trust checks and parsing as serve: a folder serve would refuse fails here.
    const dir = resolve(cfg.ech.keysDir);
    const r = new KeyDir(dir).load();
    for (const p of r.problems) out(`${file}: warning: ${p.file}: ${p.message}\n`);
    for (const n of r.notices) if (!n.readable) out(`${file}: note: ${n.file}: ${n.message}\n`);
    // A private key others can read: a warning (an error with --strict), not refused, as in serve.
    warnings.push(...[...r.notices, ...loadEsniKeys(dir).notices].filter((n) => n.readable).map((n) => `ech.keysDir: ${n.message}`));
    if (cfg.ech.rotation) warnings.push(...rotationIdWarnings(cfg.ech.rotation));
    const live = r.keys.filter((k) => k.meta.state !== 'retired');
    keys = `, ${live.length} ECH keys in ${dir}`;
    warnings.push(...publicNameWarnings(live, certs));
    publicNames.push(...live.flatMap((k) => (k.config ? [k.config.publicName.toLowerCase()] : [])));
  }
  warnings.push(...hiddenNameWarnings(cfg, certs, publicNames), ...terminatingNameWarnings(cfg, certs), ...expiryWarnings(cfg), ...shadowedRouterWarnings(cfg));
  // A cap on the whole entrypoint with none per address: one address can take every slot (docs/configuration.md,
  // maxConnectionsPerIP). A note, not a warning: off is the default on purpose (carrier NAT), and --strict passes.
  for (const ep of cfg.entryPoints.values()) {
    if (ep.maxConnections !== DEFAULTS.maxConnections && ep.maxConnectionsPerIP === 0) {
      out(`${file}: note: entryPoints.${ep.name}: maxConnections ${ep.maxConnections} with no maxConnectionsPerIP: one client address can hold all ${ep.maxConnections} connections (see docs/configuration.md)\n`);
    }
  }
  const strict = has(a, 'strict');
  for (const w of warnings) out(`${file}: ${strict ? 'error' : 'warning'}: ${w}\n`);
  const summary = `${cfg.entryPoints.size} entrypoints, ${cfg.routers.length} routers, ${cfg.services.size} services${keys}`;
  if (strict && warnings.length) {
    out(`${file}: refused with --strict: ${warnings.length} warning${warnings.length > 1 ? 's' : ''} (${summary})\n`);
    return 1;
  }
  out(`${file}: ok (${summary})\n`);
  return 0;
}

/** The literal names a rule's HostSNI matchers take (not under a negation; `*` left out). */
function hostSniNames(n: RuleNode, negated = false): string[] {
  switch (n.kind) {
    case 'not':
      return hostSniNames(n.expr, !negated);
    case 'and':
    case 'or':
      return [...hostSniNames(n.left, negated), ...hostSniNames(n.right, negated)];
    case 'matcher':
      return n.name === 'HostSNI' && !negated ? n.args.filter((x) => x !== '*').map(normalizeHost) : [];
  }
}

/**
 * A terminating router answers with the certificate that covers the client's
 * SNI, else the default (first) one, which the client then refuses (RFC 6125
 * §6): every name its HostSNI takes should be covered by some certificate.
 */
function terminatingNameWarnings(cfg: Config, certs: LoadedCertificate[]): string[] {
  const out: string[] = [];
  for (const r of cfg.routers) {
    if (!r.tls || r.tls.passthrough) continue;
    const missing = [...new Set(hostSniNames(parseRule(r.rule)))].filter((n) => !certs.some((c) => certificateCovers(c.names, n)));
    if (missing.length) {
      out.push(
        `tcp.routers.${r.name}: terminates TLS for ${missing.join(', ')} but no certificate in tls.certificates covers ${missing.length > 1 ? 'them' : 'it'}; clients get the default certificate and refuse it`,
      );
    }
  }
  return out;
}

/** A router reached only through ECH: requireECH, or every entrypoint it is on is an ECH backend (split mode, RFC 9849 §7.2). */
function hiddenRouter(cfg: Config, r: RouterConfig): boolean {
  return r.requireECH || (r.entryPoints.length > 0 && r.entryPoints.every((e) => cfg.entryPoints.get(e)?.echBackend === true));
}

/** Whether a router can match names that are not literal HostSNI names (a regexp, HostSNI(`*`), no HostSNI at all). */
function matchesOtherNames(rule: string): boolean {
  return /HostSNIRegexp|HostSNI\(\s*`\*`\s*\)/.test(rule) || hostSniNames(parseRule(rule)).length === 0;
}

/**
 * RFC 9849 §6.1.6 and §10.5: a hello without ECH, or with ECH rejected, is
 * answered with the certificate for its (outer) SNI; for a rejected ECH that
 * is the key's public_name. The client reads that certificate in full, so a
 * name on it that only requireECH (or ECH-backend) routers serve is handed
 * to anyone who connects without ECH or with a stale key: the name ECH
 * exists to hide. Which certificates can go out that way: every one covering
 * a public name or a plain terminating router's HostSNI name (any of them may
 * be chosen by the client's signature_algorithms, tls13/certs.ts), and the
 * default (first) one when some such name has no certificate or a plain
 * terminating router matches names beyond its literal HostSNI ones. A hidden
 * name is a literal HostSNI name of a hidden router that no other router
 * names; a wildcard on the certificate does not reveal it, so only the exact
 * name (a DNS subjectAltName or the subject CN) is looked for.
 * This message goes to the operator's terminal (`check`), never to a log.
 */
export function hiddenNameWarnings(cfg: Config, certs: LoadedCertificate[], publicNames: readonly string[]): string[] {
  return hiddenNameLeaks(cfg, certs, publicNames).map(
    ({ index, file, servedFor, leaked }) =>
      `tls.certificates[${index}]: ${file} is sent to clients without ECH or with ECH rejected (for ${servedFor}) and names ${leaked.join(', ')}, served only through ECH (requireECH): anyone can read ${leaked.length > 1 ? 'those names' : 'that name'} from it; give the hidden names a certificate of their own (RFC 9849 §6.1.6, §10.5)`,
  );
}

/** One certificate hiddenNameWarnings reports: where it is, what it is sent for, and the hidden names on it. */
export interface HiddenNameLeak {
  index: number;
  file: string;
  servedFor: string;
  leaked: string[];
}

/** hiddenNameWarnings' findings, for a caller that must not print the hidden names (serve's log). */
export function hiddenNameLeaks(cfg: Config, certs: LoadedCertificate[], publicNames: readonly string[]): HiddenNameLeak[] {
  if (certs.length === 0) return [];
  const hidden = new Set<string>();
  const open = new Set<string>();
  for (const r of cfg.routers) for (const n of hostSniNames(parseRule(r.rule))) (hiddenRouter(cfg, r) ? hidden : open).add(n);
  for (const n of open) hidden.delete(n);
  if (hidden.size === 0) return [];
  // Names a certificate is sent for without ECH, and whether the default certificate can be.
  const served = new Set(publicNames.map(normalizeHost));
  let defaultServed = false;
  for (const r of cfg.routers) {
    if (!r.tls || r.tls.passthrough || hiddenRouter(cfg, r)) continue;
    for (const n of hostSniNames(parseRule(r.rule))) served.add(n);
    if (matchesOtherNames(r.rule)) defaultServed = true;
  }
  const sentFor = new Map<LoadedCertificate, string>();
  for (const n of served) {
    const covering = certs.filter((c) => certificateCovers(c.names, n));
    if (covering.length === 0) defaultServed = true;
    for (const c of covering) if (!sentFor.has(c)) sentFor.set(c, n);
  }
  if (defaultServed && !sentFor.has(certs[0]!)) sentFor.set(certs[0]!, '(any name no certificate covers: the default certificate)');
  const out: HiddenNameLeak[] = [];
  for (const [c, name] of sentFor) {
    const i = certs.indexOf(c);
    const file = cfg.certificates[i]?.certFile ?? '?';
    const onCert = new Set(c.names);
    const cn = subjectCommonName(file);
    if (cn) onCert.add(cn);
    const leaked = [...hidden].filter((h) => onCert.has(h));
    if (leaked.length) out.push({ index: i, file, servedFor: name, leaked });
  }
  return out;
}

/** The leaf's subject CN, lower case (undefined when it has none or the file cannot be read again). */
function subjectCommonName(file: string): string | undefined {
  try {
    const m = /(?:^|\n)CN=([^\n]*)/.exec(new X509Certificate(readFileSync(file)).subject);
    return m ? normalizeHost(m[1]!.trim()) : undefined;
  } catch {
    return undefined;
  }
}

/** Certificates (tls.certificates and the DoH listener's) that expire within EXPIRY_WARNING_DAYS, or have. */
export function expiryWarnings(cfg: Config, now = Date.now()): string[] {
  const files: [string, string][] = cfg.certificates.map((c, i) => [`tls.certificates[${i}]`, c.certFile]);
  if (cfg.dns?.doh) files.push(['dns.doh.certFile', cfg.dns.doh.certFile]);
  const out: string[] = [];
  for (const [path, f] of files) {
    let leaf: X509Certificate;
    try {
      leaf = new X509Certificate(readFileSync(f));
    } catch {
      continue; // loadCertificates / readDohCredentials already refused an unreadable one
    }
    const end = Date.parse(leaf.validTo);
    const days = (end - now) / 86_400_000;
    if (days < 0) out.push(`${path}: ${f} expired on ${new Date(end).toISOString()}`);
    else if (days < EXPIRY_WARNING_DAYS) out.push(`${path}: ${f} expires in ${days < 1 ? 'less than a day' : `${Math.floor(days)} days`} (${new Date(end).toISOString()}); renew it`);
  }
  return out;
}

/** A rule tree without positions, host names normalised: equal text means the same predicate. */
const shape = (n: RuleNode): string => JSON.stringify(n, (k, v) => (k === 'pos' ? undefined : v));

/**
 * Whether every connection `b` takes would be taken by `a` first. Only what
 * can be proven from the rules' syntax: the same rule, a single HostSNI whose
 * names include all of b's, or HostSNI(`*`); and a's other conditions no
 * stricter than b's (a TLS-only router cannot cover a non-TLS one; requireECH
 * on a only if on b too). Middlewares refuse after routing: they never let a
 * connection fall through to the next router.
 */
function covers(a: RouterConfig, b: RouterConfig): boolean {
  if (a.tls && !b.tls) return false;
  if (a.requireECH && !b.requireECH) return false;
  const ra = parseRule(a.rule);
  const rb = parseRule(b.rule);
  if (ra.kind === 'matcher' && ra.name === 'HostSNI' && ra.args.includes('*')) return true;
  if (shape(ra) === shape(rb)) return true;
  if (ra.kind === 'matcher' && rb.kind === 'matcher' && ra.name === 'HostSNI' && rb.name === 'HostSNI') {
    const names = new Set(ra.args.map(normalizeHost));
    return rb.args.every((x) => names.has(normalizeHost(x)));
  }
  return false;
}

/** Routers that can never match on some entrypoint: a router tried before them takes all they would. */
function shadowedRouterWarnings(cfg: Config): string[] {
  const out: string[] = [];
  for (const ep of cfg.entryPoints.values()) {
    // The same order the proxy tries them in (routing/table.ts: priority, then name).
    const routes = new RoutingTable(cfg.routers.filter((r) => r.entryPoints.includes(ep.name)).map((r) => ({ name: r.name, rule: r.rule, priority: r.priority, tls: r.tls !== undefined, requireECH: r.requireECH, target: r }))).routes;
    routes.forEach((b, i) => {
      const a = routes.slice(0, i).find((x) => covers(x.target, b.target));
      if (a) out.push(`tcp.routers.${b.name}: never matches on entrypoint ${ep.name}: router ${a.name} (priority ${a.priority}, rule ${a.target.rule}) is tried first and takes every connection it would (priority ${b.priority})`);
    });
  }
  return out;
}

/**
 * RFC 9849 §6.1.6/§7.1: when ECH is rejected, echgate answers for the key's
 * public_name itself and sends retry_configs, authenticated as that name
 * (§6.1.7). With no certificate for it the client can never learn new keys.
 */
function publicNameWarnings(keys: StoredKey[], certs: LoadedCertificate[]): string[] {
  const names = [...new Set(keys.flatMap((k) => (k.config ? [k.config.publicName.toLowerCase()] : [])))];
  return names
    .filter((n) => !certs.some((c) => certificateCovers(c.names, n)))
    .map(
      (n) =>
        `ech.keysDir: no certificate in tls.certificates covers the public name ${n}; clients whose ECH is rejected (a stale key) cannot receive retry_configs and will fail until their DNS answer changes`,
    );
}

export const check: Command = { spec: checkSpec, run: checkCommand };
