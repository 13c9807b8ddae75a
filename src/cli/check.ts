/** `echgate check --config F`: validate and exit non-zero with the file, key path and problem. */
import { loadConfigFile } from '../config/load.js';
import { EchgateError } from '../errors.js';
import { readDohCredentials } from '../dns/service.js';
import { loadCertificates } from '../proxy/certificates.js';
import { type Args, str } from './args.js';

export async function checkCommand(a: Args, out: (s: string) => void): Promise<number> {
  const file = str(a, 'config') ?? a.positional[0];
  if (!file) throw new EchgateError('ERR_USAGE', 'usage: echgate check --config FILE');
  const cfg = loadConfigFile(file);
  loadCertificates(cfg, file);
  if (cfg.dns?.doh) readDohCredentials(cfg.dns.doh, file);
  for (const w of cfg.warnings) out(`${file}: warning: ${w}\n`);
  out(`${file}: ok (${cfg.entryPoints.size} entrypoints, ${cfg.routers.length} routers, ${cfg.services.size} services)\n`);
  return 0;
}
