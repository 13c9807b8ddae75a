/**
 * The passthrough hello parse in-process, builds side by side: ns per
 * `scanClientHelloMessage` + `plainClassifier` of the captured Chromium hello
 * (1 918 bytes, an ECH GREASE extension), given as a Buffer the way a socket
 * read gives it. Rounds interleave the builds; prints the median and the
 * minimum (on a loaded machine the minimum moves least).
 *
 * Usage: npm run build && node dist/bench/pass-scan.js [--rounds R] [--n N] ROOT ...
 *   (ROOT: a folder with dist/src/)
 */
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { median, takeOption } from './util.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const args = process.argv.slice(2);
const ROUNDS = Number(takeOption(args, 'rounds', '31'));
const N = Number(takeOption(args, 'n', '50000'));
const capture = readFileSync(join(ROOT, 'test', 'vectors', 'captures', 'chr-ech2a-app-alpn.bin'));
// One record: the handshake message follows the 5-byte record header.
const message = capture.subarray(5, 5 + ((capture[3]! << 8) | capture[4]!));

type Scan = (m: Uint8Array) => { hello: unknown; view: unknown };
type Classify = (h: unknown, v: unknown, ep: string) => { sni: string };

async function main() {
  const builds: { root: string; run: () => { sni: string } }[] = [];
  for (const r of args) {
    const dir = resolve(r);
    const ch = (await import(pathToFileURL(join(dir, 'dist', 'src', 'wire', 'tls', 'client-hello.js')).href)) as { scanClientHelloMessage: Scan };
    const ctx = (await import(pathToFileURL(join(dir, 'dist', 'src', 'proxy', 'context.js')).href)) as { plainClassifier: Classify };
    builds.push({
      root: r,
      run: () => {
        const s = ch.scanClientHelloMessage(message);
        return ctx.plainClassifier(s.hello, s.view, 'e');
      },
    });
  }
  const ns: number[][] = builds.map(() => []);
  for (let round = 0; round < ROUNDS; round++) {
    for (const [i, b] of builds.entries()) {
      let sink = 0;
      const t = process.hrtime.bigint();
      for (let k = 0; k < N; k++) sink += b.run().sni.length;
      ns[i]!.push(Number(process.hrtime.bigint() - t) / N);
      if (sink === 0) throw new Error('no SNI');
    }
  }
  for (const [i, b] of builds.entries()) console.log(`${b.root}: median ${median(ns[i]!).toFixed(0)} ns, min ${Math.min(...ns[i]!).toFixed(0)} ns (${ROUNDS} rounds of ${N})`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
