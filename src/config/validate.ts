/**
 * Raw YAML object → Config. Accepts Traefik's file-provider shape (static and
 * dynamic parts in one file); sections echgate does not use (http, udp, api,
 * ...) are ignored with a warning. Every problem names its key path, e.g.
 * `tcp.routers.app.rule`.
 *
 * The work is done section by section (config/sections.ts lists them, one
 * file each); this file only runs them: unknown keys first (from the
 * sections' key shapes), then each section's parse in order, then the checks
 * across sections. All problems are collected and thrown as one ConfigError.
 */
import { ConfigError } from '../errors.js';
import { type Ctx, isObj, type Problem, type Section, walkUnknown } from './fields.js';
import { configShape, IGNORED_TOP, SECTIONS } from './sections.js';
import { DEFAULT_TLS_OPTIONS } from './tls-options.js';
import { type Config, DEFAULTS } from './types.js';

/** ConfigError lives in src/errors.ts (dns/ and proxy/ throw it too); re-exported here for existing importers. */
export { ConfigError };
export { parseAddress } from './fields.js';
export { MAX_WORKERS } from './workers.js';

/** The value at a dotted path, or undefined when any step is missing or not a mapping. */
function at(raw: Record<string, unknown>, path: string): unknown {
  let v: unknown = raw;
  for (const k of path.split('.')) {
    if (!isObj(v)) return undefined;
    v = v[k];
  }
  return v;
}

/** A configuration with nothing configured: what each section's `assign` fills in. */
function emptyConfig(): Config {
  return {
    entryPoints: new Map(),
    routers: [],
    services: new Map(),
    tcpMiddlewares: new Map(),
    log: { level: DEFAULTS.logLevel, innerSni: false, access: false, echRoutes: false },
    tlsOptions: new Map([['default', DEFAULT_TLS_OPTIONS]]),
    certificates: [],
    workers: DEFAULTS.workers,
    warnings: [],
  };
}

export function validateConfig(raw: unknown, file: string, sections: readonly Section<unknown>[] = SECTIONS, env: NodeJS.ProcessEnv = process.env): Config {
  if (!isObj(raw)) throw new ConfigError(file, [{ path: '(top)', message: 'expected a mapping' }]);
  const problems: Problem[] = [];
  const cfg = emptyConfig();
  const results = new Map<Section<unknown>, unknown>();
  const ctx: Ctx = {
    bad: (path, message) => problems.push({ path, message }),
    warn: (message) => cfg.warnings.push(message),
    get: <T>(s: Section<T>) => {
      if (!results.has(s as Section<unknown>)) throw new Error(`configuration section ${s.path} read before it ran: register it earlier in config/sections.ts`);
      return results.get(s as Section<unknown>) as T;
    },
    env,
  };

  const top = new Set(sections.map((s) => s.path.split('.')[0]!));
  for (const k of Object.keys(raw)) {
    if (top.has(k)) continue;
    if (IGNORED_TOP.has(k)) ctx.warn(`${k}: section not used by echgate, ignored`);
    else ctx.bad(k, 'unknown top-level key');
  }
  const shape = configShape(sections);
  for (const k of Object.keys(raw)) if (top.has(k)) walkUnknown(raw[k], shape[k]!, k, ctx.warn);

  for (const s of sections) {
    const v = s.parse(at(raw, s.path), ctx);
    results.set(s, v);
    s.assign?.(cfg, v);
  }
  for (const s of sections) s.check?.(cfg, ctx);
  if (problems.length > 0) throw new ConfigError(file, problems);
  return cfg;
}
