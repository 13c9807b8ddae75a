/**
 * `echgate convert --config F`: print the file-provider YAML equivalent of a
 * configuration, with providers.kubernetesCRDFiles expanded (config/kubernetes.ts).
 * The result is validated first, so what is printed passes `echgate check`.
 */
import { readFileSync } from 'node:fs';
import { parse as parseYaml, stringify, YAMLParseError } from 'yaml';
import { expandKubernetes } from '../config/kubernetes.js';
import { validateRaw } from '../config/load.js';
import { ConfigError } from '../config/validate.js';
import { EchgateError } from '../errors.js';
import { type Args, type CommandSpec, str, text } from './args.js';
import type { Command } from './command.js';

export const convertSpec: CommandSpec = {
  name: 'convert',
  args: '[FILE]',
  positionals: { min: 0, max: 1 },
  summary: 'print the configuration as one file-provider YAML, Kubernetes CRD manifests (providers.kubernetesCRDFiles) converted',
  options: {
    config: text('FILE', 'the configuration file (YAML); may also be given as the argument'),
  },
};

export async function convertCommand(a: Args, out: (s: string) => void): Promise<number> {
  const flagged = str(a, 'config');
  if (flagged && a.positional[0]) throw new EchgateError('ERR_USAGE', 'give the configuration once: --config FILE or FILE (see: echgate convert --help)');
  const file = flagged ?? a.positional[0];
  if (!file) throw new EchgateError('ERR_USAGE', 'missing the configuration: --config FILE (see: echgate convert --help)');
  let raw: unknown;
  try {
    raw = parseYaml(readFileSync(file, 'utf8'), { uniqueKeys: true }) ?? {};
  } catch (e) {
    if (e instanceof YAMLParseError) throw new ConfigError(file, [{ path: '(yaml)', message: e.message.split('\n')[0]! }]);
    throw new ConfigError(file, [{ path: '(file)', message: (e as Error).message }]);
  }
  // Validate (manifests included) before printing: an invalid configuration prints nothing.
  const cfg = validateRaw(raw, file);
  for (const w of cfg.warnings) process.stderr.write(`${file}: warning: ${w}\n`);
  const { raw: expanded } = expandKubernetes(raw, file);
  out(`# echgate convert ${file}: the same configuration with Kubernetes manifests converted (docs/kubernetes.md)\n`);
  out(stringify(expanded, { lineWidth: 0 }));
  return 0;
}

export const convert: Command = { spec: convertSpec, run: convertCommand };
