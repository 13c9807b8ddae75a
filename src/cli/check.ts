/** `echgate check --config F`: validate and exit non-zero with the file, key path and problem. */
import { resolve } from 'node:path';
import { loadConfigFile } from './config-file.js';
import { readDohCredentials } from '../dns/service.js';
import { EchgateError } from '../errors.js';
import { KeyDir, type StoredKey } from '../keys/store.js';
import { certificateCovers, loadCertificates } from '../proxy/certificates.js';
import type { LoadedCertificate } from '../tls13/certs.js';
import { type Args, type CommandSpec, str, text } from './args.js';
import type { Command } from './command.js';

export const checkSpec: CommandSpec = {
  name: 'check',
  args: '[FILE]',
  positionals: { min: 0, max: 1 },
  summary: 'validate a configuration: its certificates, DoH credentials and ECH key folder too',
  options: {
    config: text('FILE', 'the configuration file (YAML); may also be given as the argument'),
  },
};

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
  if (cfg.ech) {
    // The same trust checks and parsing as serve: a folder serve would refuse fails here.
    const dir = resolve(cfg.ech.keysDir);
    const r = new KeyDir(dir).load();
    for (const p of r.problems) out(`${file}: warning: ${p.file}: ${p.message}\n`);
    for (const n of r.notices) out(`${file}: note: ${n.file}: ${n.message}\n`);
    const live = r.keys.filter((k) => k.meta.state !== 'retired');
    keys = `, ${live.length} ECH keys in ${dir}`;
    warnings.push(...publicNameWarnings(live, certs));
  }
  for (const w of warnings) out(`${file}: warning: ${w}\n`);
  out(`${file}: ok (${cfg.entryPoints.size} entrypoints, ${cfg.routers.length} routers, ${cfg.services.size} services${keys})\n`);
  return 0;
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
