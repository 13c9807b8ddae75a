/**
 * Added latency per handshake (issue #8: "report p50/p99 added latency per
 * handshake for echgate and the peers"), shared by the relaying rows
 * (bench/run.ts) and the termination rows (bench/terminate.ts).
 *
 * One sample = one fresh TCP connection and one full TLS 1.3 handshake from a
 * node:tls client in the bench process, timed from just before `connect` to
 * the first application byte from the BACKEND. Not to `secureConnect`: a
 * terminating proxy finishes its handshake with the client first and connects
 * the backend afterwards (node:tls proxy, HAProxy) or alongside it, so a clock
 * stopped at secureConnect leaves out the backend connection and the relay
 * hop, which is what a proxy adds; the backend's first byte is the same event
 * for every peer and for the direct server.
 *
 * Samples are taken one at a time (sequential, nothing else in flight) and
 * interleaved sample by sample: sample i visits every peer, starting with the
 * (i mod peers)-th (util.ts rotate), so the load of the moment and the
 * position after a given peer fall on all of them alike.
 *
 * "Added" at quantile q = quantile q of the latencies through the proxy minus
 * quantile q of the direct latencies (difference of quantiles, not a quantile
 * of paired differences): it is what a client's own p50/p99 moves by when the
 * proxy is put in front, which is the question; a quantile of per-pair
 * differences is not that (p99 of A − B is not p99(A) − p99(B): the direct
 * side's outliers widen it in both directions). The median of paired
 * differences is computed beside it as a check (`pairedMedian`).
 */
import tls from 'node:tls';
import { quantile, rotate } from './util.js';

/**
 * One handshake: ms from `connect` to the first application byte. `send`:
 * write one byte once the handshake is done (a backend that answers only
 * when spoken to, bench/backend.ts `byte` / `tls-byte`); without it the
 * backend speaks first (`tls`).
 */
export function firstByteMs(port: number, name: string, ctx: tls.SecureContext, send: boolean): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const s = tls.connect({ port, host: '127.0.0.1', servername: name, secureContext: ctx, rejectUnauthorized: false, minVersion: 'TLSv1.3' });
    s.setNoDelay(true);
    if (send) s.once('secureConnect', () => s.write('g'));
    let ms = -1;
    s.once('data', () => {
      ms = performance.now() - t0;
      s.end();
    });
    s.once('error', reject);
    // The next sample starts once this connection is closed, so samples never overlap.
    s.once('close', () => (ms >= 0 ? resolve(ms) : reject(new Error(`latency: port ${port} closed before the backend's byte`))));
  });
}

export interface LatencyPeer {
  name: string;
  sample: () => Promise<number>;
}

/** `warm` then `n` samples per peer, interleaved sample by sample (rotated). */
export async function interleavedLatency(peers: readonly LatencyPeer[], n: number, warm: number): Promise<Record<string, number[]>> {
  const out: Record<string, number[]> = {};
  for (const p of peers) out[p.name] = [];
  for (let i = 0; i < warm; i++) for (const p of peers) await p.sample();
  for (let i = 0; i < n; i++) for (const p of rotate(peers, i)) out[p.name]!.push(await p.sample());
  return out;
}

/** quantile q of `through` − quantile q of `direct` (see the top comment for why not paired). */
export const added = (through: number[], direct: number[], q: number) => quantile(through, q) - quantile(direct, q);

/** Median of per-sample differences (sample i of both was taken in the same rotation): the check beside `added`. */
export function pairedMedian(through: number[], direct: number[]): number {
  return quantile(
    through.map((x, i) => x - direct[i]!),
    0.5,
  );
}

/** "p50 / p99" of xs, in ms, two decimals. */
export const p50p99 = (xs: number[]) => `${quantile(xs, 0.5).toFixed(2)} / ${quantile(xs, 0.99).toFixed(2)}`;

/** "+p50 / +p99" added over direct, in ms, two decimals, signed. */
export const addedP50P99 = (through: number[], direct: number[]) => {
  const sig = (x: number) => `${x >= 0 ? '+' : '−'}${Math.abs(x).toFixed(2)}`;
  return `${sig(added(through, direct, 0.5))} / ${sig(added(through, direct, 0.99))}`;
};
