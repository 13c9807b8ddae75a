/**
 * `providers`: where dynamic configuration comes from besides this file.
 * `kubernetesCRDFiles` is expanded before validation (config/kubernetes.ts
 * validates it; its keys are listed here so the docs check covers them);
 * `etcd` reads Traefik's KV layout from etcd v3 (config/kv.ts converts it,
 * providers/etcd.ts watches it). Other Traefik providers are warned about.
 */
import { type Ctx, mapping, section } from './fields.js';
import type { EtcdProviderConfig } from './types.js';

/** Traefik's default root key. */
export const DEFAULT_ROOT_KEY = 'traefik';

/** An etcd client URL: http(s)://host:port, or host:port (the scheme then follows `tls`). */
const ENDPOINT = /^(?:(https?):\/\/)?(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/;

function etcd(ctx: Ctx, raw: unknown): EtcdProviderConfig | undefined {
  const P = 'providers.etcd';
  const e = mapping(ctx, raw, P, 'expected a mapping { endpoints, rootKey, tls, username, passwordFile }');
  if (!e) return undefined;
  const tls = mapping(ctx, e.tls, `${P}.tls`);
  const file = (v: unknown, path: string): string | undefined => {
    if (v === undefined) return undefined;
    if (typeof v !== 'string' || v === '') ctx.bad(path, 'expected a file path');
    return typeof v === 'string' && v !== '' ? v : undefined;
  };
  const ca = file(tls?.ca, `${P}.tls.ca`);
  const cert = file(tls?.cert, `${P}.tls.cert`);
  const key = file(tls?.key, `${P}.tls.key`);
  if ((cert === undefined) !== (key === undefined)) ctx.bad(`${P}.tls`, 'cert and key go together (a client certificate and its private key)');
  const endpoints: string[] = [];
  if (!Array.isArray(e.endpoints) || e.endpoints.length === 0) ctx.bad(`${P}.endpoints`, 'expected a list of etcd client URLs (http://host:port, https://host:port, or host:port)');
  else
    e.endpoints.forEach((u, i) => {
      const m = typeof u === 'string' ? ENDPOINT.exec(u.trim()) : null;
      if (!m || Number(m[3]) < 1 || Number(m[3]) > 65535) ctx.bad(`${P}.endpoints[${i}]`, `not an etcd client URL: ${JSON.stringify(u)}`);
      else if (m[1] === 'http' && tls) ctx.bad(`${P}.endpoints[${i}]`, 'http:// with a tls section: write https://');
      else endpoints.push(`${m[1] ?? (tls ? 'https' : 'http')}://${m[2]}:${m[3]}`);
    });
  const rootKey = e.rootKey ?? DEFAULT_ROOT_KEY;
  if (typeof rootKey !== 'string' || !/^[^/\s]+(?:\/[^/\s]+)*$/.test(rootKey)) ctx.bad(`${P}.rootKey`, 'expected a key prefix such as traefik (no leading or trailing /)');
  // Secrets stay out of the configuration (which is logged, printed by convert, kept in git): a file holds the password.
  if (e.password !== undefined) ctx.bad(`${P}.password`, 'write the password in a file and give passwordFile');
  if (e.username !== undefined && (typeof e.username !== 'string' || e.username === '')) ctx.bad(`${P}.username`, 'expected a user name');
  const passwordFile = file(e.passwordFile, `${P}.passwordFile`);
  if ((typeof e.username === 'string') !== (passwordFile !== undefined)) ctx.bad(`${P}.username`, 'username and passwordFile go together');
  return {
    endpoints,
    rootKey: String(rootKey),
    ...(tls ? { tls: { ...(ca ? { ca } : {}), ...(cert ? { cert } : {}), ...(key ? { key } : {}) } } : {}),
    ...(typeof e.username === 'string' && passwordFile ? { auth: { username: e.username, passwordFile } } : {}),
  };
}

export const providersSection = section<{ etcd?: EtcdProviderConfig }>({
  path: 'providers',
  keys: {
    kubernetesCRDFiles: { paths: 'list', secretsDir: 'string', addresses: 'any' },
    etcd: { endpoints: 'list', rootKey: 'string', tls: { ca: 'string', cert: 'string', key: 'string' }, username: 'string', passwordFile: 'string', password: 'string' },
  },
  parse(raw: unknown, ctx: Ctx) {
    const p = mapping(ctx, raw, 'providers');
    const e = p?.etcd === undefined ? undefined : etcd(ctx, p.etcd);
    return e ? { etcd: e } : {};
  },
  assign(cfg, v) {
    if (v.etcd) cfg.providers = { etcd: v.etcd };
  },
});
