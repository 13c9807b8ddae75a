/**
 * An entrypoint's open connections (proxy/gateway.ts: the maxConnections
 * check, openConnections(), shutdown's cut), as an intrusive list: each
 * connection carries its own links (proxy/connection.ts), so adding and
 * removing one is a few stores, where a Set hashed the socket (a new
 * identity hash for every socket) and grew and shrank its table with the
 * load (docs/benchmarks.md, "Passthrough cost, eleventh pass").
 *
 * It also counts its connections per client address, for the entrypoint's
 * maxConnectionsPerIP (checked at accept, proxy/gateway.ts): a connection
 * added with `openIp` set is counted under it until it leaves the set, so the
 * count is released where the connection is, on every way out, with no
 * listener of its own per connection.
 */
import type net from 'node:net';

/** The fields a connection carries to be in one OpenSet. */
export interface OpenEntry {
  readonly socket: net.Socket;
  openPrev: OpenEntry | undefined;
  openNext: OpenEntry | undefined;
  openIn: OpenSet | undefined;
  /** The client address it is counted under (set before `add`), or undefined when the entrypoint has no per-address cap. */
  openIp: string | undefined;
}

export class OpenSet {
  private head: OpenEntry | undefined;
  /** Connections in the set. */
  size = 0;
  /** Connections in the set by client address (only those added with `openIp`); an address leaves at 0. */
  private readonly perIp = new Map<string, number>();

  /** Connections in the set counted under `ip`. */
  countOf(ip: string): number {
    return this.perIp.get(ip) ?? 0;
  }

  /** Client addresses with a connection counted (tests: nothing left after the connections closed). */
  get addresses(): number {
    return this.perIp.size;
  }

  add(e: OpenEntry): void {
    if (e.openIn) {
      // Moved from another set: it is counted here under the same address.
      const ip = e.openIp;
      e.openIn.delete(e);
      e.openIp = ip;
    }
    e.openIn = this;
    e.openPrev = undefined;
    e.openNext = this.head;
    if (this.head) this.head.openPrev = e;
    this.head = e;
    this.size++;
    if (e.openIp !== undefined) this.perIp.set(e.openIp, (this.perIp.get(e.openIp) ?? 0) + 1);
  }

  /** Take `e` out (nothing if it is not in this set). */
  delete(e: OpenEntry): void {
    if (e.openIn !== this) return;
    if (e.openPrev) e.openPrev.openNext = e.openNext;
    else this.head = e.openNext;
    if (e.openNext) e.openNext.openPrev = e.openPrev;
    e.openPrev = e.openNext = e.openIn = undefined;
    this.size--;
    const ip = e.openIp;
    if (ip !== undefined) {
      e.openIp = undefined;
      const left = (this.perIp.get(ip) ?? 1) - 1;
      if (left > 0) this.perIp.set(ip, left);
      else this.perIp.delete(ip);
    }
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
