/** Parse and validate YAML configuration text; cli/config-file.ts reads the file (config/ does no I/O). */
import { parse as parseYaml, YAMLParseError } from 'yaml';
import { ConfigError } from '../errors.js';
import { isObj, type Problem } from './fields.js';
import { expandKubernetes, originOf } from './kubernetes.js';
import { type KvConfig, mergeDynamic } from './kv.js';
import type { Config } from './types.js';
import { validateConfig } from './validate.js';

/** Dynamic configuration from other providers, merged into the file's before validation. */
export interface DynamicSources {
  /** providers.etcd: what config/kv.ts made of the keys, and the etcd revision they were read at. */
  etcd?: KvConfig & { revision: string };
}

export function parseYamlText(text: string, file: string): unknown {
  try {
    return parseYaml(text, { prettyErrors: true, uniqueKeys: true }) ?? {};
  } catch (e) {
    if (e instanceof YAMLParseError) {
      const pos = e.linePos?.[0];
      throw new ConfigError(file, [{ path: pos ? `line ${pos.line}, column ${pos.col}` : '(yaml)', message: e.message.split('\n')[0]! }]);
    }
    throw e;
  }
}

export function parseConfigText(text: string, file: string, dynamic: DynamicSources = {}): Config {
  return validateRaw(parseYamlText(text, file), file, dynamic);
}

/**
 * Validate a parsed configuration, first expanding providers.kubernetesCRDFiles
 * (config/kubernetes.ts) and merging the etcd provider's entries (config/kv.ts)
 * so that everything goes through the same validator; problems in converted
 * entries name the manifest or the etcd key they came from.
 */
export function validateRaw(raw: unknown, file: string, dynamic: DynamicSources = {}): Config {
  const x = expandKubernetes(raw, file);
  const origins = [...x.origins];
  const warnings = [...x.warnings];
  let merged = x.raw;
  if (dynamic.etcd && isObj(merged)) {
    const m = mergeDynamic(merged, dynamic.etcd);
    const early: Problem[] = [...dynamic.etcd.problems, ...m.problems];
    if (early.length > 0) throw new ConfigError(file, early);
    merged = m.raw;
    origins.push(...dynamic.etcd.origins);
    warnings.push(...dynamic.etcd.warnings);
  }
  try {
    const cfg = validateConfig(merged, file);
    cfg.warnings.unshift(...warnings);
    return cfg;
  } catch (e) {
    if (e instanceof ConfigError && origins.length > 0) {
      throw new ConfigError(
        file,
        e.problems.map((p) => ({ path: originOf(p.path, origins), message: p.message })),
      );
    }
    throw e;
  }
}
