/** Load the configured certificate files for terminating routers. */
import { readFileSync } from 'node:fs';
import type { Config } from '../config/types.js';
import { ConfigError } from '../config/validate.js';
import { type LoadedCertificate, loadCertificate } from '../tls13/certs.js';

export function loadCertificates(cfg: Config, file = '(config)'): LoadedCertificate[] {
  return cfg.certificates.map((c, i) => {
    try {
      return loadCertificate(readFileSync(c.certFile, 'utf8'), readFileSync(c.keyFile, 'utf8'));
    } catch (e) {
      throw new ConfigError(file, [{ path: `tls.certificates[${i}]`, message: `${c.certFile}: ${(e as Error).message}` }]);
    }
  });
}
