// StrykerJS configuration for `npm run mutation -- <target>` (see docs/mutation.md).
// Not part of `npm test` or CI. The target comes from scripts/mutation.mjs via
// MUTATION_TARGET; each target mutates one area and runs only the compiled test
// files that exercise it, through the tap runner (node:test prints TAP when piped).
import { resolve } from 'node:path';
import { TARGETS } from './scripts/mutation-targets.mjs';

const name = process.env.MUTATION_TARGET ?? 'tls13';
const target = TARGETS[name];
if (!target) throw new Error(`unknown mutation target ${name}; one of ${Object.keys(TARGETS).join(', ')}`);
// MUTATION_PART=b names one part of a target run split with --mutate: its own report
// (reports/mutation/<target>-b.json) and sandbox, so parts can run one after another or at once.
const part = process.env.MUTATION_PART ? `${name}-${process.env.MUTATION_PART}` : name;
process.env.MUTATION_REPORT_NAME = part;

/** @type {import('@stryker-mutator/api/core').PartialStrykerOptions} */
export default {
  testRunner: 'tap',
  tap: {
    testFiles: target.tests.map((t) => `dist/test/${t}.test.js`),
    forceBail: true,
  },
  // The mutants are switched at run time (__STRYKER_ACTIVE_MUTANT__), so one build
  // of the instrumented sandbox serves them all; `// @ts-nocheck` is added to the
  // instrumented files, so tsc emits them as they are. The sandbox's node_modules
  // link is made after the build, so tsc is named by its path in the project (the
  // sandbox lies inside the project, so @types/node is found by walking up).
  buildCommand: `node ${resolve('node_modules/typescript/bin/tsc')} -p tsconfig.json`,
  mutate: target.mutate,
  ignorePatterns: ['/dist', '/reports', '/.stryker-tmp', '/keys', '/docs'],
  // Error-message strings are not behaviour; their mutants only cost time.
  mutator: { excludedMutations: ['StringLiteral'] },
  coverageAnalysis: 'perTest',
  // 2 cores shared with other work: one test process at a time by default.
  concurrency: Number(process.env.MUTATION_CONCURRENCY ?? 1),
  timeoutMS: 15000,
  timeoutFactor: 2,
  // jsonl: one line per mutant as it is tested (scripts/mutation-jsonl-reporter.mjs), so a stopped run still tells what it found.
  appendPlugins: [resolve('scripts/mutation-jsonl-reporter.mjs')],
  reporters: ['clear-text', 'progress-append-only', 'json', 'html', 'jsonl'],
  clearTextReporter: { allowColor: false, logTests: false, reportMutants: true, reportScoreTable: true },
  jsonReporter: { fileName: `reports/mutation/${part}.json` },
  htmlReporter: { fileName: `reports/mutation/${part}.html` },
  // One sandbox folder per target, so runs of two targets at once do not clean up each other's sandbox.
  tempDirName: `.stryker-tmp/${part}`,
  cleanTempDir: true,
};
