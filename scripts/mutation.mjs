#!/usr/bin/env node
// npm run mutation -- <target> [stryker options]
//   target: tls13 | tls13-engine | ech | hpke | wire-tls | relay, or src/tls13, src/ech, src/crypto/hpke.ts, src/wire/tls, src/proxy/relay.ts
//   e.g. npm run mutation -- src/tls13 --mutate 'src/tls13/server.ts:200-260,src/tls13/client.ts:400-500'
//   (one --mutate with a comma-separated list: a second --mutate replaces the first)
// Runs StrykerJS with the target's configuration from stryker.config.mjs. No build
// here: Stryker copies src/ and test/ into its sandbox and compiles them there (its
// buildCommand), so a build of dist/ would only cost minutes on a busy machine.
// Reports: reports/mutation/<target>.{json,html} (or <target>-<MUTATION_PART>).
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { TARGETS, targetFor } from './mutation-targets.mjs';

const [arg, ...rest] = process.argv.slice(2);
const name = arg && targetFor(arg);
if (!name) {
  console.error(`usage: npm run mutation -- <${Object.keys(TARGETS).join('|')}|src/tls13|src/ech|src/crypto/hpke.ts|src/wire/tls|src/proxy/relay.ts> [stryker options]`);
  process.exit(2);
}
const env = { ...process.env, MUTATION_TARGET: name };
// Test files not present (e.g. no mutation-killers yet) are dropped by the tap runner's glob.
for (const t of TARGETS[name].tests) if (!existsSync(`test/${t}.test.ts`)) console.warn(`note: test/${t}.test.ts not found, skipped`);
const r = spawnSync(process.execPath, ['node_modules/@stryker-mutator/core/bin/stryker.js', 'run', 'stryker.config.mjs', ...rest], { stdio: 'inherit', env });
process.exit(r.status ?? 1);
