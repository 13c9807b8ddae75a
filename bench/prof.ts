/**
 * Summarise a V8 .cpuprofile (from `node --cpu-prof`): self time per
 * function and total (inclusive) time per function, as a share of busy time
 * (idle excluded). Usage: node dist/bench/prof.js FILE.cpuprofile [TOP] [FILTER]
 * FILTER: a substring; lists only functions whose url or name contains it.
 * PROF_LAST=S in the environment: only the samples of the profile's last S
 * seconds (e.g. the bulk transfer that ended a run, without the handshakes before it).
 */
import { readFileSync } from 'node:fs';

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: Node[];
  samples: number[];
  timeDeltas: number[];
}

const [file, topArg = '30', filter = ''] = process.argv.slice(2);
if (!file) {
  process.stderr.write('usage: prof FILE.cpuprofile [TOP] [FILTER]\n');
  process.exit(2);
}
const p = JSON.parse(readFileSync(file, 'utf8')) as Profile;
const byId = new Map(p.nodes.map((n) => [n.id, n]));
const parent = new Map<number, number>();
for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);

const selfUs = new Map<number, number>();
const lastUs = Number(process.env.PROF_LAST ?? 0) * 1e6;
let fromIdx = 0;
if (lastUs > 0) {
  let acc = 0;
  for (fromIdx = p.samples.length; fromIdx > 0 && acc < lastUs; fromIdx--) acc += p.timeDeltas[fromIdx - 1] ?? 0;
}
for (let i = fromIdx; i < p.samples.length; i++) selfUs.set(p.samples[i]!, (selfUs.get(p.samples[i]!) ?? 0) + (p.timeDeltas[i] ?? 0));

const key = (n: Node) => {
  const url = n.callFrame.url.replace(/^file:\/\/.*?\/(dist|node_modules)\//, '$1/').replace(/^node:/, 'node:');
  return `${n.callFrame.functionName || '(anonymous)'} ${url}${url ? `:${n.callFrame.lineNumber + 1}` : ''}`;
};
let busy = 0;
let idle = 0;
const self = new Map<string, number>();
const total = new Map<string, number>();
for (const [id, us] of selfUs) {
  const n = byId.get(id)!;
  if (n.callFrame.functionName === '(idle)' || n.callFrame.functionName === '(program)' && false) {
    idle += us;
    continue;
  }
  busy += us;
  self.set(key(n), (self.get(key(n)) ?? 0) + us);
  // Inclusive: count each distinct function once per stack.
  const seen = new Set<string>();
  for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
    const k = key(byId.get(cur)!);
    if (seen.has(k)) continue;
    seen.add(k);
    total.set(k, (total.get(k) ?? 0) + us);
  }
}
const top = Number(topArg);
const show = (title: string, m: Map<string, number>) => {
  process.stdout.write(`\n${title} (busy ${(busy / 1e6).toFixed(2)} s, idle ${(idle / 1e6).toFixed(2)} s)\n`);
  const rows = [...m].filter(([k]) => !filter || k.includes(filter)).sort((a, b) => b[1] - a[1]).slice(0, top);
  for (const [k, us] of rows) process.stdout.write(`${((100 * us) / busy).toFixed(1).padStart(5)} %  ${k}\n`);
};
show('self time', self);
show('total time (inclusive)', total);
