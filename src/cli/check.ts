/** `echgate check --config F`: validate and exit non-zero with the file, key path and problem. */
import { resolve } from 'node:path';
import { loadConfigFile } from '../config/load.js';
import { readDohCredentials } from '../dns/service.js';
import { EchgateError } from '../errors.js';
import { KeyDir } from '../keys/store.js';
import { loadCertificates } from '../proxy/certificates.js';
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
  loadCertificates(cfg, file);
  if (cfg.dns?.doh) readDohCredentials(cfg.dns.doh, file);
  let keys = '';
  if (cfg.ech) {
    // The same trust checks and parsing as serve: a folder serve would refuse fails here.
    const dir = resolve(cfg.ech.keysDir);
    const r = new KeyDir(dir).load();
    for (const p of r.problems) out(`${file}: warning: ${p.file}: ${p.message}\n`);
    for (const n of r.notices) out(`${file}: note: ${n.file}: ${n.message}\n`);
    keys = `, ${r.keys.filter((k) => k.meta.state !== 'retired').length} ECH keys in ${dir}`;
  }
  for (const w of cfg.warnings) out(`${file}: warning: ${w}\n`);
  out(`${file}: ok (${cfg.entryPoints.size} entrypoints, ${cfg.routers.length} routers, ${cfg.services.size} services${keys})\n`);
  return 0;
}

export const check: Command = { spec: checkSpec, run: checkCommand };
