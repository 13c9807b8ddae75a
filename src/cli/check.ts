/** `echgate check --config F`: validate and exit non-zero with the file, key path and problem. */
import { resolve } from 'node:path';
import type { Config } from '../config/types.js';
import { loadConfigFile } from '../config/load.js';
import { EchgateError } from '../errors.js';
import { readDohCredentials } from '../dns/service.js';
import { decryptingKeys, listKeys } from '../keys/manager.js';
import { certificateCovers, loadCertificates } from '../proxy/certificates.js';
import type { LoadedCertificate } from '../tls13/certs.js';
import { type Args, str } from './args.js';

export async function checkCommand(a: Args, out: (s: string) => void): Promise<number> {
  const file = str(a, 'config') ?? a.positional[0];
  if (!file) throw new EchgateError('ERR_USAGE', 'usage: echgate check --config FILE');
  const cfg = loadConfigFile(file);
  const certs = loadCertificates(cfg, file);
  if (cfg.dns?.doh) readDohCredentials(cfg.dns.doh, file);
  for (const w of [...cfg.warnings, ...publicNameWarnings(cfg, certs)]) out(`${file}: warning: ${w}\n`);
  out(`${file}: ok (${cfg.entryPoints.size} entrypoints, ${cfg.routers.length} routers, ${cfg.services.size} services)\n`);
  return 0;
}

/**
 * RFC 9849 §6.1.6/§7.1: when ECH is rejected, echgate answers for the key's
 * public_name itself and sends retry_configs, authenticated as that name
 * (§6.1.7). With no certificate for it the client can never learn new keys.
 */
function publicNameWarnings(cfg: Config, certs: LoadedCertificate[]): string[] {
  if (!cfg.ech) return [];
  let keys: ReturnType<typeof listKeys>['keys'];
  try {
    keys = decryptingKeys(listKeys(resolve(cfg.ech.keysDir)).keys);
  } catch (e) {
    return [`ech.keysDir: ${(e as Error).message}`];
  }
  const names = [...new Set(keys.map((k) => k.config!.publicName.toLowerCase()))];
  return names
    .filter((n) => !certs.some((c) => certificateCovers(c.names, n)))
    .map(
      (n) =>
        `ech.keysDir: no certificate in tls.certificates covers the public name ${n}; clients whose ECH is rejected (a stale key) cannot receive retry_configs and will fail until their DNS answer changes`,
    );
}
