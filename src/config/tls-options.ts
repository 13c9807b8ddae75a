/**
 * Traefik's `tls.options`: named sets of TLS parameters a terminating router
 * selects with `tls.options: NAME` (the set named `default` otherwise). The
 * spellings are Traefik's (Go's crypto/tls names); this file maps them to TLS
 * code points for echgate's TLS 1.3 engine and to OpenSSL names for node:tls,
 * which serves TLS 1.2 clients. Every unknown name is an error naming its key.
 */
import { GROUPS as ENGINE_GROUPS } from '../tls13/groups.js';
import type { TlsOptions } from './types.js';

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Traefik's version names. TLS 1.0 and 1.1 are refused outright (RFC 8996). */
const VERSIONS: Record<string, 0x0303 | 0x0304> = { VersionTLS12: 0x0303, VersionTLS13: 0x0304 };
const DEPRECATED_VERSIONS = new Set(['VersionTLS10', 'VersionTLS11', 'VersionSSL30']);

/** Go's TLS 1.2 cipher suite names → OpenSSL's (node:tls `ciphers`). */
export const TLS12_CIPHERS: Readonly<Record<string, string>> = {
  TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256: 'ECDHE-ECDSA-AES128-GCM-SHA256',
  TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256: 'ECDHE-RSA-AES128-GCM-SHA256',
  TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384: 'ECDHE-ECDSA-AES256-GCM-SHA384',
  TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384: 'ECDHE-RSA-AES256-GCM-SHA384',
  TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256: 'ECDHE-ECDSA-CHACHA20-POLY1305',
  TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305: 'ECDHE-ECDSA-CHACHA20-POLY1305',
  TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256: 'ECDHE-RSA-CHACHA20-POLY1305',
  TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305: 'ECDHE-RSA-CHACHA20-POLY1305',
  TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256: 'ECDHE-ECDSA-AES128-SHA256',
  TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256: 'ECDHE-RSA-AES128-SHA256',
  TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA: 'ECDHE-ECDSA-AES128-SHA',
  TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA: 'ECDHE-RSA-AES128-SHA',
  TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA: 'ECDHE-ECDSA-AES256-SHA',
  TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA: 'ECDHE-RSA-AES256-SHA',
  TLS_RSA_WITH_AES_128_GCM_SHA256: 'AES128-GCM-SHA256',
  TLS_RSA_WITH_AES_256_GCM_SHA384: 'AES256-GCM-SHA384',
  TLS_RSA_WITH_AES_128_CBC_SHA256: 'AES128-SHA256',
  TLS_RSA_WITH_AES_128_CBC_SHA: 'AES128-SHA',
  TLS_RSA_WITH_AES_256_CBC_SHA: 'AES256-SHA',
  TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA: 'ECDHE-RSA-DES-CBC3-SHA',
  TLS_RSA_WITH_3DES_EDE_CBC_SHA: 'DES-CBC3-SHA',
};

/** Suites Go knows that OpenSSL 3 no longer has (RC4, RFC 7465): refused with a reason. */
const REMOVED_CIPHERS = new Set(['TLS_RSA_WITH_RC4_128_SHA', 'TLS_ECDHE_ECDSA_WITH_RC4_128_SHA', 'TLS_ECDHE_RSA_WITH_RC4_128_SHA']);

/** TLS 1.3 suites (RFC 8446 §B.4) → code points; echgate's engine implements all three. */
export const TLS13_SUITES: Readonly<Record<string, number>> = {
  TLS_AES_128_GCM_SHA256: 0x1301,
  TLS_AES_256_GCM_SHA384: 0x1302,
  TLS_CHACHA20_POLY1305_SHA256: 0x1303,
};

/**
 * curvePreferences: Go's names and the RFC 8446 §4.2.7 names → NamedGroup code
 * point and the OpenSSL group name node:tls takes in `ecdhCurve` (undefined:
 * a TLS 1.3-only group, never offered to TLS 1.2 clients).
 */
export const GROUPS: Readonly<Record<string, { code: number; openssl?: string }>> = {
  CurveP256: { code: 0x0017, openssl: 'P-256' },
  secp256r1: { code: 0x0017, openssl: 'P-256' },
  'P-256': { code: 0x0017, openssl: 'P-256' },
  CurveP384: { code: 0x0018, openssl: 'P-384' },
  secp384r1: { code: 0x0018, openssl: 'P-384' },
  'P-384': { code: 0x0018, openssl: 'P-384' },
  CurveP521: { code: 0x0019, openssl: 'P-521' },
  secp521r1: { code: 0x0019, openssl: 'P-521' },
  'P-521': { code: 0x0019, openssl: 'P-521' },
  X25519: { code: 0x001d, openssl: 'X25519' },
  x25519: { code: 0x001d, openssl: 'X25519' },
  // The hybrid post-quantum group (draft-ietf-tls-ecdhe-mlkem); TLS 1.3 only.
  X25519MLKEM768: { code: 0x11ec },
};

const OPENSSL_BY_CODE = new Map(Object.values(GROUPS).map((g) => [g.code, g.openssl]));

/** The OpenSSL `ecdhCurve` string for a group list (TLS 1.2 groups only), or undefined when none applies. */
export function opensslCurves(groups: readonly number[]): string | undefined {
  const names = groups.map((c) => OPENSSL_BY_CODE.get(c)).filter((n): n is string => n !== undefined);
  return names.length ? [...new Set(names)].join(':') : undefined;
}

export const DEFAULT_TLS_OPTIONS: TlsOptions = { name: 'default', minVersion: 0x0303, maxVersion: 0x0304, sniStrict: false };

/** The keys of one option set (unknown ones are warned about by config/fields.ts walkUnknown). */
export const TLS_OPTION_KEYS = {
  minVersion: 'string',
  maxVersion: 'string',
  cipherSuites: 'list',
  curvePreferences: 'list',
  alpnProtocols: 'list',
  sniStrict: 'boolean',
  clientAuth: { caFiles: 'list', clientAuthType: 'string' },
  preferServerCipherSuites: 'boolean',
  disableSessionTickets: 'boolean',
} as const;

/**
 * Parse `tls.options`. Always returns a `default` entry (Traefik's defaults:
 * minimum TLS 1.2, maximum TLS 1.3) unless the file defines its own.
 */
export function parseTlsOptions(raw: unknown, bad: (path: string, message: string) => void, warn: (msg: string) => void): Map<string, TlsOptions> {
  const out = new Map<string, TlsOptions>([['default', DEFAULT_TLS_OPTIONS]]);
  if (raw === undefined) return out;
  if (!isObj(raw)) {
    bad('tls.options', 'expected a mapping of option names');
    return out;
  }
  for (const [name, o] of Object.entries(raw)) {
    const p = `tls.options.${name}`;
    if (!isObj(o)) {
      bad(p, 'expected a mapping');
      continue;
    }
    if (o.preferServerCipherSuites !== undefined) warn(`${p}.preferServerCipherSuites: deprecated in Traefik and ignored (the server's order is used)`);
    if (o.disableSessionTickets !== undefined) warn(`${p}.disableSessionTickets: ignored (echgate issues no session tickets)`);
    // Client certificates are not implemented: accepting the key silently would serve clients the operator meant to refuse.
    if (o.clientAuth !== undefined) {
      const ca = isObj(o.clientAuth) ? o.clientAuth : {};
      const type = ca.clientAuthType ?? 'NoClientCert';
      const files = Array.isArray(ca.caFiles) ? ca.caFiles : [];
      if (type !== 'NoClientCert' || files.length > 0) bad(`${p}.clientAuth`, 'client certificate authentication is not supported by echgate');
    }

    const version = (key: 'minVersion' | 'maxVersion', dflt: 0x0303 | 0x0304) => {
      const v = o[key];
      if (v === undefined) return dflt;
      if (typeof v === 'string' && VERSIONS[v] !== undefined) return VERSIONS[v]!;
      if (typeof v === 'string' && DEPRECATED_VERSIONS.has(v)) bad(`${p}.${key}`, `${v} is not served: TLS 1.0 and 1.1 are deprecated (RFC 8996); use VersionTLS12 or VersionTLS13`);
      else bad(`${p}.${key}`, `expected VersionTLS12 or VersionTLS13, got ${JSON.stringify(v)}`);
      return dflt;
    };
    const minVersion = version('minVersion', 0x0303);
    const maxVersion = version('maxVersion', 0x0304);
    if (minVersion > maxVersion) bad(p, 'minVersion is above maxVersion');

    const opts: TlsOptions = { name, minVersion, maxVersion, sniStrict: false };
    if (o.sniStrict !== undefined) {
      if (typeof o.sniStrict !== 'boolean') bad(`${p}.sniStrict`, 'expected true or false');
      else opts.sniStrict = o.sniStrict;
    }
    const list = (key: string): unknown[] | undefined => {
      const v = o[key];
      if (v === undefined) return undefined;
      if (!Array.isArray(v) || v.length === 0) {
        bad(`${p}.${key}`, 'expected a non-empty list');
        return undefined;
      }
      return v;
    };
    const suites = list('cipherSuites');
    if (suites) {
      const c12: string[] = [];
      const c13: number[] = [];
      suites.forEach((s, i) => {
        const at = `${p}.cipherSuites[${i}]`;
        if (typeof s !== 'string') bad(at, 'expected a cipher suite name');
        else if (TLS12_CIPHERS[s]) c12.push(TLS12_CIPHERS[s]!);
        else if (TLS13_SUITES[s]) c13.push(TLS13_SUITES[s]!);
        else if (REMOVED_CIPHERS.has(s)) bad(at, `${s} is not supported (RC4 is prohibited, RFC 7465)`);
        else bad(at, `unknown cipher suite ${JSON.stringify(s)} (use Go's names, e.g. TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 or TLS_AES_128_GCM_SHA256)`);
      });
      if (c12.length) opts.ciphers12 = [...new Set(c12)];
      if (c13.length) opts.suites13 = [...new Set(c13)];
      if (!c12.length && minVersion <= 0x0303 && c13.length) warn(`${p}.cipherSuites: only TLS 1.3 suites listed; TLS 1.2 clients get OpenSSL's default suites`);
    }
    const curves = list('curvePreferences');
    if (curves) {
      const groups: number[] = [];
      curves.forEach((c, i) => {
        const g = typeof c === 'string' ? (GROUPS[c] ?? Object.entries(GROUPS).find(([k]) => k.toLowerCase() === c.toLowerCase())?.[1]) : undefined;
        if (!g) bad(`${p}.curvePreferences[${i}]`, `unknown curve ${JSON.stringify(c)} (expected X25519MLKEM768, X25519, CurveP256, CurveP384 or CurveP521, or secp256r1/secp384r1/secp521r1)`);
        else if (!groups.includes(g.code)) groups.push(g.code);
      });
      if (groups.length) {
        opts.groups = groups;
        // The engine ignores groups it does not implement; with none left, every TLS 1.3 client would fail.
        if (maxVersion >= 0x0304 && !groups.some((g) => ENGINE_GROUPS.has(g))) {
          bad(`${p}.curvePreferences`, 'no group the TLS 1.3 engine implements (X25519MLKEM768, X25519, CurveP256): every TLS 1.3 client would fail; add one, or set maxVersion: VersionTLS12');
        }
        if (minVersion <= 0x0303 && opensslCurves(groups) === undefined) warn(`${p}.curvePreferences: no group usable with TLS 1.2 (X25519MLKEM768 is TLS 1.3 only); TLS 1.2 clients get OpenSSL's default curves`);
      }
    }
    const alpn = list('alpnProtocols');
    if (alpn) {
      if (!alpn.every((x) => typeof x === 'string' && x.length > 0 && x.length < 256)) bad(`${p}.alpnProtocols`, 'expected a list of protocol names');
      else opts.alpnProtocols = alpn as string[];
    }
    out.set(name, opts);
  }
  return out;
}
