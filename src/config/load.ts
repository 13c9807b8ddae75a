/** Parse and validate YAML configuration text; cli/config-file.ts reads the file (config/ does no I/O). */
import { parse as parseYaml, YAMLParseError } from 'yaml';
import { ConfigError } from '../errors.js';
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
  return validateConfig(raw ?? {}, file);
}
