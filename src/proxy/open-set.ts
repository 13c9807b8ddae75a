/**
 * An entrypoint's open connections (proxy/gateway.ts: the maxConnections
 * check, openConnections(), shutdown's cut), as an intrusive list: each
 * connection carries its own links (proxy/connection.ts), so adding and
 * removing one is a few stores, where a Set hashed the socket (a new
 * identity hash for every socket) and grew and shrank its table with the
 * load (docs/benchmarks.md, "Passthrough cost, eleventh pass").
 */
import type net from 'node:net';

/** The fields a connection carries to be in one OpenSet. */
export interface OpenEntry {
  readonly socket: net.Socket;
  openPrev: OpenEntry | undefined;
  openNext: OpenEntry | undefined;
  openIn: OpenSet | undefined;
}

export class OpenSet {
  private head: OpenEntry | undefined;
  /** Connections in the set. */
  size = 0;

  add(e: OpenEntry): void {
    if (e.openIn) e.openIn.delete(e);
    e.openIn = this;
    e.openPrev = undefined;
    e.openNext = this.head;
    if (this.head) this.head.openPrev = e;
    this.head = e;
    this.size++;
  }

  /** Take `e` out (nothing if it is not in this set). */
  delete(e: OpenEntry): void {
    if (e.openIn !== this) return;
    if (e.openPrev) e.openPrev.openNext = e.openNext;
    else this.head = e.openNext;
    if (e.openNext) e.openNext.openPrev = e.openPrev;
    e.openPrev = e.openNext = e.openIn = undefined;
    this.size--;
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
