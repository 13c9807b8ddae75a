#!/usr/bin/env -S node --initial-old-space-size=96
// The flag is the V8 heap floor serve wants (src/cli/heap-floor.ts); `env -S` splits the line.
// Thin launcher: the CLI is compiled to dist/ by `npm install` (prepare → tsc).
import { main } from '../dist/src/cli/main.js';

main(process.argv.slice(2)).then(
  (code) => {
    if (typeof code === 'number') process.exitCode = code;
  },
  (err) => {
    process.stderr.write(`echgate: ${err?.message ?? err}\n`);
    process.exitCode = 1;
  },
);
