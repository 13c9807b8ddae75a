/**
 * Tools for backpressure tests that can fail (test/relay-backpressure.test.ts,
 * test/proxy-relay.test.ts): how many bytes the proxy holds in user space for
 * one direction of one relayed connection, and a wait for "the proxy stopped
 * taking bytes" that checks that figure against BOUND at every step.
 *
 * Why a bound and not "the bytes arrive intact": node queues writes without
 * limit, so a relay that never pauses the side it reads still delivers every
 * byte once the far side reads again; it only holds them all in between. The
 * figure that tells the two apart is what the proxy holds while the far side
 * does not read.
 *
 * What "held in user space" is, per direction (read in process through the
 * gateway's listener and the sockets' OWNER tag, as the relay finds them):
 * - client → backend: the relay client's readable buffer (a paused socket
 *   still reads until its buffer reaches readableHighWaterMark, 16 KiB, and
 *   the read that crosses it is ≤ 64 KiB), the raw socket's readable buffer
 *   when node:tls sits on it, and the backend socket's write queue;
 * - backend → client: the relay client's write queue, and for TLS 1.2 that
 *   of the raw socket under node:tls.
 * A write queue is node's writableLength: it counts a write until its
 * callback, so it already holds what libuv has not yet handed to the kernel
 * (`_handle.writeQueueSize` is part of it, not added again).
 * Kernel buffers are not counted: the kernel bounds them (net.ipv4.tcp_wmem,
 * tcp_rmem) whatever the relay does; node cannot set SO_SNDBUF/SO_RCVBUF on a
 * TCP socket, so they are left at the system's values.
 *
 * BOUND: with the rule of proxy/relay.ts a write queue passes its
 * writableHighWaterMark (16 KiB) by at most the write that filled it: one
 * read (READ_SIZE, 64 KiB; sealed into records, 64 KiB + 4 × 22 bytes), or
 * the readable buffer handed over on resume. So per direction ≤ 16 + 64
 * (write queue) + 16 + 64 (readable buffer) = 160 KiB; 256 KiB leaves room
 * for one more 64 KiB read in flight. Measured (BP_DEBUG=1, four runs of
 * relay-backpressure.test.ts, load 8–10): at most 131 KiB client → backend
 * and 74 KiB backend → client, over the four handlers. A relay that never
 * pauses holds what the near side pushed minus what the kernel took: with
 * 8 MiB pushed, 0.5–4 MiB at the first poll over BOUND.
 */
import assert from 'node:assert/strict';
import type net from 'node:net';
import type tls from 'node:tls';
import type { Gateway } from '../src/proxy/gateway.js';
import { OWNER, type Relay } from '../src/proxy/relay.js';
import { sleep } from './helpers.js';

export const BOUND = 256 * 1024;
/** Polls without a byte taken that count as "stopped": each poll is a timer after an I/O phase, where a relay that still reads would read. */
const STILL = 8;
const POLL_MS = 10;
/** The longest wait for any condition (a loaded machine is slow; a passing case takes well under a second). */
export const LIMIT_MS = 30_000;

type Tagged = { [OWNER]?: { relay?: Relay } };

/**
 * The proxy's side of the connection from `client` on entrypoint `ep` (the
 * accepted socket whose remote port is the client's local port) and its
 * relay, once the backend is connected. Matched by port, not "the one open
 * connection": the previous case's connection may not be closed yet.
 */
export async function proxySide(gw: Gateway, ep: string, client: net.Socket): Promise<{ raw: net.Socket; relay: Relay }> {
  const listeners = (gw as unknown as { listeners: Map<string, { open: Set<net.Socket> }> }).listeners;
  for (let waited = 0; waited < LIMIT_MS; waited += POLL_MS) {
    for (const raw of listeners.get(ep)?.open ?? []) {
      if (client.localPort === undefined || raw.remotePort !== client.localPort) continue;
      const relay = (raw as Tagged)[OWNER]?.relay;
      if (relay && !relay.backend.connecting && !relay.backend.pending) return { raw, relay };
    }
    await sleep(POLL_MS);
  }
  throw new Error(`no relayed connection from port ${client.localPort} on entrypoint ${ep}`);
}

/** Bytes the proxy holds in user space on their way to the backend. */
export function heldToBackend(raw: net.Socket, r: Relay): number {
  const b = r.backend;
  return r.client.readableLength + (raw === r.client ? 0 : raw.readableLength) + b.writableLength;
}

/** Bytes the proxy holds in user space on their way to the client. */
export function heldToClient(raw: net.Socket, r: Relay): number {
  const c = r.client;
  return c.writableLength + (raw === c ? 0 : raw.writableLength);
}

export interface Stall {
  /** The most the proxy held at any poll. */
  maxHeld: number;
  /** The proxy's read counter on the near side when it stopped. */
  taken: number;
}

/**
 * Wait until `taken()` (the proxy's read counter on the near side) has not
 * moved for STILL polls, asserting `held() ≤ bound` at every poll (so a
 * relay that never pauses fails at the first poll over it, not at a
 * timeout). `pushed` is only for the message; `bound` replaces BOUND where a
 * case knows a tighter one.
 */
export async function stallBounded(taken: () => number, held: () => number, what: string, pushed: number, bound = BOUND): Promise<Stall> {
  let last = -1;
  let still = 0;
  let maxHeld = 0;
  for (let waited = 0; waited < LIMIT_MS; waited += POLL_MS) {
    await sleep(POLL_MS);
    const h = held();
    maxHeld = Math.max(maxHeld, h);
    assert.ok(h <= bound, `${what}: the proxy holds ${h} bytes (> ${bound}) after taking ${taken()} of ${pushed}: nothing paused the side it reads`);
    const t = taken();
    if (t === last) {
      if (++still >= STILL) {
        if (process.env.BP_DEBUG) console.error(`${what}: held at most ${maxHeld}, the proxy took ${t} of ${pushed}`);
        return { maxHeld, taken: t };
      }
    } else {
      still = 0;
      last = t;
    }
  }
  throw new Error(`${what}: the proxy never stopped taking bytes (${taken()} taken)`);
}

/** Push `data` into `s` as fast as it takes it (write until false, then wait for 'drain'). */
export function pump(s: net.Socket | tls.TLSSocket, data: Uint8Array): void {
  const CHUNK = 64 * 1024;
  let off = 0;
  const more = () => {
    while (off < data.length && !s.destroyed) {
      const end = Math.min(off + CHUNK, data.length);
      const ok = s.write(data.subarray(off, end));
      off = end;
      if (!ok) return void s.once('drain', more);
    }
  };
  more();
}

/**
 * Read `s` (resumed now) until `total` bytes came (or a function of the
 * first 5 bytes gives the total); resolves with them. Fails at EOF, on an
 * error or after LIMIT_MS.
 */
export function collect(s: net.Socket | tls.TLSSocket, total: number | ((first5: Buffer) => number)): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let got = 0;
    let n = typeof total === 'number' ? total : Number.POSITIVE_INFINITY;
    const fail = (why: string) => {
      clearTimeout(timer);
      s.off('data', onData);
      reject(new Error(`${why} with ${got} of ${n} bytes`));
    };
    const timer = setTimeout(() => fail('stalled'), LIMIT_MS);
    const onData = (d: Buffer) => {
      parts.push(d);
      got += d.length;
      if (typeof total === 'function' && n === Number.POSITIVE_INFINITY && got >= 5) n = total(Buffer.concat(parts).subarray(0, 5));
      if (got >= n) {
        clearTimeout(timer);
        s.off('data', onData);
        s.pause();
        resolve(Buffer.concat(parts));
      }
    };
    s.on('data', onData);
    s.once('end', () => got < n && fail('EOF'));
    s.once('close', () => got < n && fail('closed'));
    s.once('error', (e) => fail(String(e)));
    s.resume();
  });
}
