#!/usr/bin/env node
// node scripts/mutation-summary.mjs reports/mutation/<target>.json [--survivors]
//   or <target>.jsonl: the lines scripts/mutation-jsonl-reporter.mjs wrote (also of a stopped run)
// Per-file mutation score from a StrykerJS JSON report, twice: with every test
// file, and without test/mutation-killers (the tests written against survivors).
// The second is exact only when the run used --disableBail (every covering test
// file runs, so killedBy lists them all); with bail it is a lower bound.
import { readFileSync } from 'node:fs';

const [file, ...flags] = process.argv.slice(2);
if (!file) {
  console.error('usage: node scripts/mutation-summary.mjs reports/mutation/<target>.json [--survivors]');
  process.exit(2);
}
const report = file.endsWith('.jsonl') ? fromLines(readFileSync(file, 'utf8')) : JSON.parse(readFileSync(file, 'utf8'));

/** The JSON report's shape from jsonl lines (killedBy there holds test names already). */
function fromLines(text) {
  const files = {};
  for (const l of text.split('\n').filter(Boolean).map((x) => JSON.parse(x))) {
    const path = l.file.slice(l.file.indexOf('src/'));
    files[path] ??= { source: readFileSync(path, 'utf8'), mutants: [] };
    files[path].mutants.push({ status: l.status, killedBy: l.killedBy, mutatorName: l.mutator, replacement: l.replacement, location: { start: { line: l.line, column: l.column } } });
  }
  return { files };
}
const KILLER = /mutation-killers/;
// killedBy holds test ids; the tap runner's tests are the test files, named in testFiles.
const nameOf = new Map();
for (const [path, tf] of Object.entries(report.testFiles ?? {})) for (const t of tf.tests ?? []) nameOf.set(t.id, t.name ?? path);
const rows = [];
const left = [];
for (const [path, f] of Object.entries(report.files)) {
  const n = { total: 0, before: 0, after: 0, timeout: 0, survived: 0, noCoverage: 0 };
  for (const m of f.mutants) {
    if (['Ignored', 'CompileError', 'RuntimeError'].includes(m.status)) continue;
    n.total++;
    if (m.status === 'Timeout') {
      n.timeout++;
      n.after++;
      n.before++;
    } else if (m.status === 'Killed') {
      n.after++;
      if ((m.killedBy ?? []).some((t) => !KILLER.test(nameOf.get(t) ?? t))) n.before++;
    } else {
      if (m.status === 'NoCoverage') n.noCoverage++;
      else n.survived++;
      const line = f.source.split('\n')[m.location.start.line - 1]?.trim();
      left.push(`${path}:${m.location.start.line}:${m.location.start.column} ${m.status} ${m.mutatorName}: ${line}  →  ${(m.replacement ?? '').replace(/\s+/g, ' ').slice(0, 100)}`);
    }
  }
  rows.push({ path, ...n });
}
const pct = (a, b) => (b ? ((100 * a) / b).toFixed(1) : '-');
console.log('file | mutants | score without mutation-killers | score with | survived | no coverage | timeouts');
console.log('---|---|---|---|---|---|---');
const sum = { total: 0, before: 0, after: 0, survived: 0, noCoverage: 0, timeout: 0 };
for (const r of rows) {
  console.log(`${r.path} | ${r.total} | ${pct(r.before, r.total)}% | ${pct(r.after, r.total)}% | ${r.survived} | ${r.noCoverage} | ${r.timeout}`);
  for (const k of Object.keys(sum)) sum[k] += r[k];
}
if (rows.length > 1) console.log(`all | ${sum.total} | ${pct(sum.before, sum.total)}% | ${pct(sum.after, sum.total)}% | ${sum.survived} | ${sum.noCoverage} | ${sum.timeout}`);
if (flags.includes('--survivors')) {
  console.log(`\n${left.length} not detected:`);
  for (const l of left) console.log(l);
}
