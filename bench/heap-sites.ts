/**
 * The allocation sites of a V8 sampling heap profile (.heapprofile, as
 * bench/dns-alloc.ts writes it), by bytes sampled: `node dist/bench/heap-sites.js FILE [TOP]`.
 * Prints each site's share and its caller chain (innermost first, 4 frames).
 */
import { readFileSync } from 'node:fs';

interface Node {
  callFrame: { functionName: string; url: string; lineNumber: number };
  selfSize: number;
  children: Node[];
}
const [file = '', top = '30'] = process.argv.slice(2);
const { head } = JSON.parse(readFileSync(file, 'utf8')) as { head: Node };
const sites = new Map<string, number>();
let total = 0;
const walk = (n: Node, stack: string[]) => {
  const f = n.callFrame;
  const here = [`${f.functionName || '(anon)'} ${f.url.replace(/^.*\//, '')}:${f.lineNumber + 1}`, ...stack];
  if (n.selfSize) {
    const k = here.slice(0, 4).join(' < ');
    sites.set(k, (sites.get(k) ?? 0) + n.selfSize);
    total += n.selfSize;
  }
  for (const c of n.children) walk(c, here);
};
walk(head, []);
for (const [k, v] of [...sites].sort((a, b) => b[1] - a[1]).slice(0, Number(top))) process.stdout.write(`${((100 * v) / total).toFixed(1).padStart(5)} %  ${k}\n`);
