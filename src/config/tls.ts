/**
 * `tls`: Traefik's dynamic TLS section. Certificates for terminating routers
 * (`certificates[]` and the default store's `defaultCertificate`) and the named
 * option sets of `tls.options` (config/tls-options.ts). Routers refer to the
 * option sets, so this section runs before tcp.routers.
 */
import { type Ctx, isObj, mapping, section } from './fields.js';
import { parseTlsOptions, TLS_OPTION_KEYS } from './tls-options.js';
import type { CertificateFiles, TlsOptions } from './types.js';

export interface TlsSection {
  options: Map<string, TlsOptions>;
  certificates: CertificateFiles[];
}

const pair = { certFile: 'string', keyFile: 'string' } as const;

export const tlsSection = section<TlsSection>({
  path: 'tls',
  keys: {
    certificates: { '[]': pair },
    stores: { default: { defaultCertificate: pair } },
    options: { '*': TLS_OPTION_KEYS },
  },
  parse(raw: unknown, ctx: Ctx): TlsSection {
    const options = parseTlsOptions(isObj(raw) ? raw.options : undefined, ctx.bad, ctx.warn);
    const certificates: CertificateFiles[] = [];
    const certPair = (v: unknown, path: string) => {
      if (!isObj(v) || typeof v.certFile !== 'string' || typeof v.keyFile !== 'string') ctx.bad(path, 'expected { certFile, keyFile }');
      else certificates.push({ certFile: v.certFile, keyFile: v.keyFile });
    };
    const t = mapping(ctx, raw, 'tls');
    if (t) {
      const stores = isObj(t.stores) ? t.stores : {};
      const dflt = isObj(stores.default) ? stores.default.defaultCertificate : undefined;
      if (dflt !== undefined) certPair(dflt, 'tls.stores.default.defaultCertificate');
      if (t.certificates !== undefined) {
        if (!Array.isArray(t.certificates)) ctx.bad('tls.certificates', 'expected a list');
        else for (const [i, c] of t.certificates.entries()) certPair(c, `tls.certificates[${i}]`);
      }
    }
    return { options, certificates };
  },
  assign(cfg, v) {
    cfg.tlsOptions = v.options;
    cfg.certificates = v.certificates;
  },
  check(cfg, ctx) {
    if (cfg.routers.some((r) => r.tls && !r.tls.passthrough) && cfg.certificates.length === 0) {
      ctx.bad('tls.certificates', 'a router terminates TLS (tls without passthrough) but no certificate is configured');
    }
  },
});
