/** Parse and validate YAML configuration text; cli/config-file.ts reads the file (config/ does no I/O). */
import { parse as parseYaml, YAMLParseError } from 'yaml';
import { ConfigError } from '../errors.js';
import { expandKubernetes, originOf } from './kubernetes.js';
import { validateConfig } from './validate.js';
import type { Config } from './types.js';

export function parseConfigText(text: string, file: string): Config {
  let raw: unknown;
  try {
    raw = parseYaml(text, { prettyErrors: true, uniqueKeys: true });
  } catch (e) {
    if (e instanceof YAMLParseError) {
      const pos = e.linePos?.[0];
      throw new ConfigError(file, [{ path: pos ? `line ${pos.line}, column ${pos.col}` : '(yaml)', message: e.message.split('\n')[0]! }]);
    }
    throw e;
  }
  return validateRaw(raw ?? {}, file);
}

/**
 * Validate a parsed configuration, first expanding providers.kubernetesCRDFiles
 * (config/kubernetes.ts) so manifests go through the same validator; problems
 * in converted entries name the manifest they came from.
 */
export function validateRaw(raw: unknown, file: string): Config {
  const x = expandKubernetes(raw, file);
  try {
    const cfg = validateConfig(x.raw, file);
    cfg.warnings.unshift(...x.warnings);
    return cfg;
  } catch (e) {
    if (e instanceof ConfigError && x.origins.length > 0) {
      throw new ConfigError(
        file,
        e.problems.map((p) => ({ path: originOf(p.path, x.origins), message: p.message })),
      );
    }
    throw e;
  }
}
