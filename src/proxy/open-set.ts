/**
 * An entrypoint's open connections (proxy/gateway.ts: the maxConnections
 * check, openConnections(), shutdown's cut), as an intrusive list: each
 * connection carries its own links (proxy/connection.ts), so adding and
 * removing one is a few stores, where a Set hashed the socket (a new
 * identity hash for every socket) and grew and shrank its table with the
 * load (docs/benchmarks.md, "Passthrough cost, eleventh pass").
 *
 * It also counts its connections per client address, for the entrypoint's
 * maxConnectionsPerIP (checked at accept, proxy/gateway.ts), but only while
 * the set holds at least that many connections (below it no address can be
 * at the cap): reading a socket's address is a getpeername(2) and an object,
 * ≈ 1.3 µs per connection, 3–5 % of a passthrough connection's CPU when paid
 * on every accept (docs/benchmarks.md, "Per-address caps, twelfth pass").
 * Counting starts by counting every connection already in the set, and stops
 * once the set falls below half the cap, so each start is paid for by at
 * least cap/2 accepts. A counted connection stays counted until it leaves the
 * set, on every way out, with no listener of its own per connection.
 */
import type net from 'node:net';
import { normalizeIp } from '../bytes/ip.js';

/** The fields a connection carries to be in one OpenSet. */
export interface OpenEntry {
  readonly socket: net.Socket;
  openPrev: OpenEntry | undefined;
  openNext: OpenEntry | undefined;
  openIn: OpenSet | undefined;
  /** Its client address, normalised (set by the accept path when known; read when counting starts). */
  openIp: string | undefined;
}

export class OpenSet {
  private head: OpenEntry | undefined;
  /** Connections in the set. */
  size = 0;
  /** While counting: the set's connections by client address (an address leaves at 0). */
  private readonly perIp = new Map<string, number>();
  /** Counting by address (see above), until the set is smaller than `stopBelow`. */
  counting = false;
  private stopBelow = 0;

  /** Connections in the set from `ip` (while counting). */
  countOf(ip: string): number {
    return this.perIp.get(ip) ?? 0;
  }

  /** Addresses counted (0 when not counting; tests: nothing left over). */
  get addresses(): number {
    return this.perIp.size;
  }

  /** Count every connection in the set by address, and every one added from now on, until the set is smaller than `stopBelow`. */
  startCounting(stopBelow: number): void {
    this.counting = true;
    this.stopBelow = stopBelow;
    this.perIp.clear();
    for (let e = this.head; e; e = e.openNext) this.count(e);
  }

  /** Count `e` under its address (read now if the accept path did not). */
  private count(e: OpenEntry): void {
    e.openIp ??= normalizeIp(e.socket.remoteAddress);
    this.perIp.set(e.openIp, (this.perIp.get(e.openIp) ?? 0) + 1);
  }

  add(e: OpenEntry): void {
    if (e.openIn) e.openIn.delete(e);
    e.openIn = this;
    e.openPrev = undefined;
    e.openNext = this.head;
    if (this.head) this.head.openPrev = e;
    this.head = e;
    this.size++;
    if (this.counting) this.count(e);
  }

  /** Take `e` out (nothing if it is not in this set). */
  delete(e: OpenEntry): void {
    if (e.openIn !== this) return;
    if (e.openPrev) e.openPrev.openNext = e.openNext;
    else this.head = e.openNext;
    if (e.openNext) e.openNext.openPrev = e.openPrev;
    e.openPrev = e.openNext = e.openIn = undefined;
    this.size--;
    if (!this.counting) return;
    if (this.size < this.stopBelow) {
      this.counting = false;
      this.perIp.clear();
      return;
    }
    // Counted when it was added, or when counting started (startCounting sets openIp on every entry).
    const ip = e.openIp!;
    const left = (this.perIp.get(ip) ?? 1) - 1;
    if (left > 0) this.perIp.set(ip, left);
    else this.perIp.delete(ip);
  }

  /** The sockets, as a Set of them iterated (tests look into a listener's open connections). */
  [Symbol.iterator](): Iterator<net.Socket> {
    return this.sockets()[Symbol.iterator]();
  }

  /** The sockets of the connections in the set, as a new array (safe to destroy them while walking it). */
  sockets(): net.Socket[] {
    const out: net.Socket[] = [];
    for (let e = this.head; e; e = e.openNext) out.push(e.socket);
    return out;
  }
}
