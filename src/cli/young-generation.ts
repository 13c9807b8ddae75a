/**
 * Process-wide V8 tuning for `serve` (a CLI concern: a library that embeds
 * the proxy keeps its own heap settings).
 */
import { setFlagsFromString } from 'node:v8';

/**
 * Keep V8's young generation at its starting size instead of letting it grow
 * to 16 MiB. Why: every record proxy/terminate.ts seals for a client is a
 * `Cipheriv.update` output with an off-heap backing store of its own
 * (≈ 16 KiB; Node 20 cannot write GCM output into a given buffer), which only
 * a scavenge frees. After a few hundred handshakes V8 has grown the young
 * generation (their objects survive), a scavenge then comes only every
 * ≈ 16 MiB of JS allocation — thousands of records — and before it comes the
 * off-heap total passes V8's 64 MiB external limit, which starts a full
 * mark-compact of the whole heap instead: ≈ 16 per GiB sealed, the bulk row's
 * 0.53× node:tls after handshakes. With the young generation kept small,
 * scavenges come often enough to free the records first (docs/benchmarks.md,
 * "Cost, fifth pass"). The growth factor is read each time V8 would grow the
 * space, so setting it at run time works. A semi-space flag given to node by
 * the operator (growth factor, min or max size) wins. Returns whether the
 * flag was set.
 */
export function keepYoungGenerationSmall(execArgv: readonly string[] = process.execArgv, nodeOptions = process.env.NODE_OPTIONS ?? ''): boolean {
  const own = [...execArgv, ...nodeOptions.split(/\s+/)].some((a) => /^--(semi[-_]space[-_]growth[-_]factor|max[-_]semi[-_]space[-_]size|min[-_]semi[-_]space[-_]size)/.test(a));
  if (own) return false;
  setFlagsFromString('--semi-space-growth-factor=1');
  return true;
}
