/** Load the configured certificate files for terminating routers. */
import { readFileSync } from 'node:fs';
import type { Config } from '../config/types.js';
import { ConfigError } from '../errors.js';
import { type LoadedCertificate, loadCertificate } from '../tls13/certs.js';

/**
 * The PEM text each loaded certificate came from: node:tls (the TLS 1.2 path)
 * builds its secure contexts from it. Kept beside the certificate object, not
 * in it, so the TLS 1.3 engine's type stays what it is.
 */
const pemText = new WeakMap<LoadedCertificate, { cert: string; key: string }>();

export function loadCertificates(cfg: Config, file = '(config)'): LoadedCertificate[] {
  return cfg.certificates.map((c, i) => {
    try {
      const cert = readFileSync(c.certFile, 'utf8');
      const key = readFileSync(c.keyFile, 'utf8');
      const loaded = loadCertificate(cert, key);
      pemText.set(loaded, { cert, key });
      return loaded;
    } catch (e) {
      throw new ConfigError(file, [{ path: `tls.certificates[${i}]`, message: `${c.certFile}: ${(e as Error).message}` }]);
    }
  });
}

/** The PEM certificate chain and key a certificate was loaded from (undefined for one not loaded here). */
export function pemOf(c: LoadedCertificate): { cert: string; key: string } | undefined {
  return pemText.get(c);
}

/**
 * Whether a certificate's DNS names cover `host`: an exact name, or a
 * wildcard for exactly one leftmost label (RFC 6125 §6.4.3).
 */
export function certificateCovers(names: readonly string[], host: string): boolean {
  const h = host.toLowerCase().replace(/\.$/, '');
  if (h === '') return false;
  if (names.includes(h)) return true;
  const dot = h.indexOf('.');
  return dot > 0 && names.includes(`*${h.slice(dot)}`);
}
