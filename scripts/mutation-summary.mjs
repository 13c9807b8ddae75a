#!/usr/bin/env node
// node scripts/mutation-summary.mjs reports/mutation/<target>.json [--survivors] [--ranges 'file:from-to,file']
//   or <target>.jsonl: the lines scripts/mutation-jsonl-reporter.mjs wrote (also of a stopped run)
//   --ranges: one row per given range (a mutant counts in the first range holding its start line;
//   a file without lines is the whole file) instead of one per file; mutants outside every range
//   are left out.
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
const rangesArg = flags.includes('--ranges') ? flags[flags.indexOf('--ranges') + 1] : undefined;
const ranges = (rangesArg ?? '')
  .split(',')
  .filter(Boolean)
  .map((r) => {
    const m = /^(.*?)(?::(\d+)-(\d+))?$/.exec(r.trim());
    return { name: r.trim(), file: m[1], from: m[2] ? Number(m[2]) : 1, to: m[3] ? Number(m[3]) : Number.POSITIVE_INFINITY };
  });
/** The row a mutant is counted in: its file, or with --ranges the first range holding it (undefined: none). */
const rowOf = (path, line) => (ranges.length ? ranges.find((r) => path.endsWith(r.file) && line >= r.from && line <= r.to)?.name : path);
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
const byRow = new Map();
const left = [];
for (const r of ranges) byRow.set(r.name, { path: r.name, total: 0, before: 0, after: 0, timeout: 0, survived: 0, noCoverage: 0 });
for (const [path, f] of Object.entries(report.files)) {
  for (const m of f.mutants) {
    if (['Ignored', 'CompileError', 'RuntimeError'].includes(m.status)) continue;
    const key = rowOf(path, m.location.start.line);
    if (key === undefined) continue;
    if (!byRow.has(key)) byRow.set(key, { path: key, total: 0, before: 0, after: 0, timeout: 0, survived: 0, noCoverage: 0 });
    const n = byRow.get(key);
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
      const raw = f.source.split('\n')[m.location.start.line - 1] ?? '';
      const { start, end } = m.location;
      // The replacement is only the mutated sub-expression (`length / 256` for `length * 256` in
      // `length * 256 + c`): show the whole line as Stryker ran it when the mutant is on one line,
      // so a mutant applied by hand is the one Stryker ran.
      const mutated =
        end && end.line === start.line && m.replacement !== undefined
          ? `${raw.slice(0, start.column - 1)}${m.replacement}${raw.slice(end.column - 1)}`.trim()
          : (m.replacement ?? '').replace(/\s+/g, ' ');
      left.push(`${path}:${start.line}:${start.column} ${m.status} ${m.mutatorName}: ${raw.trim()}  →  ${mutated.slice(0, 160)}`);
    }
  }
}
const rows = [...byRow.values()];
const pct = (a, b) => (b ? ((100 * a) / b).toFixed(1) : '-');
// The *-kfirst targets (and tls13-server-fast, tls13-engine-fast) run the killer files first: a mutant they kill is never run against the
// other files, so the score without them is not measured by such a run (only the score with).
const kfirst = /-kfirst|tls13-server-fast|engine-fast/.test(file);
if (kfirst) console.log('(a -kfirst target: killer files first, so "without mutation-killers" is not measured)\n');
console.log(`file | mutants | score without mutation-killers${kfirst ? ' (not measured)' : ''} | score with | survived | no coverage | timeouts`);
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
