/**
 * `ech`: the key folder and how keys are tried. Its sub-sections have their
 * own files: `ech.rotation` (config/rotation.ts) and `ech.store`
 * (config/store.ts); each registers itself in config/sections.ts after this one.
 */
import { type Ctx, mapping, section } from './fields.js';
import type { EchConfig } from './types.js';

export const echSection = section<EchConfig | undefined>({
  path: 'ech',
  keys: { keysDir: 'string', trialDecrypt: 'boolean' },
  parse(raw: unknown, ctx: Ctx) {
    const e = mapping(ctx, raw, 'ech');
    if (!e) return undefined;
    const keysDir = e.keysDir ?? 'keys';
    if (typeof keysDir !== 'string') ctx.bad('ech.keysDir', 'expected a folder path');
    return { keysDir: String(keysDir), trialDecrypt: e.trialDecrypt === true };
  },
  assign(cfg, v) {
    if (v) cfg.ech = v;
  },
});
