/**
 * Read a YAML configuration file and validate it. The file is read here, in
 * cli/, so that config/ stays free of I/O (docs/architecture.md, "Folders and
 * who may import whom"): config/ turns text into a Config, cli/ finds the text.
 */
import { readFileSync } from 'node:fs';
import { type DynamicSources, parseConfigText } from '../config/load.js';
import type { Config } from '../config/types.js';
import { ConfigError } from '../errors.js';

/** `dynamic`: what other providers (providers.etcd) hold, merged in before validation. */
export function loadConfigFile(file: string, dynamic: DynamicSources = {}): Config {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new ConfigError(file, [{ path: '(file)', message: (e as Error).message }]);
  }
  return parseConfigText(text, file, dynamic);
}
