/**
 * Connection deadlines without a node timer per connection: the ClientHello
 * deadline (clientHelloTimeout) and the backend connect deadline
 * (connectTimeout) of every connection wait in one list per duration, and
 * each list has one node timer, armed for its earliest deadline.
 *
 * All entries of a list have the same duration, so they are added in
 * deadline order: adding appends, removing unlinks, both O(1), and the head
 * is always the next to fire (node's own timer lists work the same way, but
 * make a Timeout object, an async resource and a libuv clock read per
 * setTimeout; docs/benchmarks.md, "Passthrough cost, seventh pass"). A
 * deadline fires no earlier than its duration after it was set, and as late
 * as a node timer would: the list's timer is a node timer for that instant.
 *
 * The entry is the connection itself (the fields below), so arming a
 * deadline allocates nothing. Nearly every entry leaves its list long before
 * its deadline (a ClientHello, a connect, a handshake completes), so the
 * list's timer is not cleared when the list empties: where connections come
 * one at a time, clearing it would make a node Timeout per connection anyway
 * (docs/benchmarks.md, "Termination handshake, eighth pass"). The timer
 * stays armed for the deadline it was set for; when it fires it expires what
 * is due and re-arms for the new head, if any, so a list makes at most one
 * node timer per duration of time. It is unref'd: the connections keep the
 * process alive, and an idle process can exit.
 */

/** The fields a connection carries to wait in one deadline list at a time. */
export interface DeadlineEntry {
  dlAt: number;
  dlPrev: DeadlineEntry | undefined;
  dlNext: DeadlineEntry | undefined;
  dlList: DeadlineList | undefined;
}

export class DeadlineList {
  private head: DeadlineEntry | undefined;
  private tail: DeadlineEntry | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    readonly ms: number,
    /** Called with each entry whose deadline passed, after it left the list; must not throw. */
    private readonly expire: (e: DeadlineEntry) => void,
  ) {}

  /** Start `e`'s deadline `ms` from now (it leaves whatever list it was in). */
  add(e: DeadlineEntry): void {
    this.addFrom(e, performance.now());
  }

  /**
   * Start `e`'s deadline `ms` from `now`, a clock read (performance.now()) the caller just took for
   * itself (a connection's start: one clock read fewer per connection). Entries stay in deadline
   * order only if `now` is no earlier than the last entry's: it must be a read of this instant.
   */
  addFrom(e: DeadlineEntry, now: number): void {
    e.dlList?.remove(e);
    e.dlAt = now + this.ms;
    e.dlList = this;
    e.dlNext = undefined;
    e.dlPrev = this.tail;
    if (this.tail) this.tail.dlNext = e;
    else this.head = e;
    this.tail = e;
    // An armed timer is for an earlier deadline (same duration, set before): it re-arms for this one.
    if (this.timer === undefined) this.arm();
  }

  /** Stop `e`'s deadline (nothing if it is not in this list). The timer stays armed. */
  remove(e: DeadlineEntry): void {
    if (e.dlList !== this) return;
    if (e.dlPrev) e.dlPrev.dlNext = e.dlNext;
    else this.head = e.dlNext;
    if (e.dlNext) e.dlNext.dlPrev = e.dlPrev;
    else this.tail = e.dlPrev;
    e.dlPrev = e.dlNext = e.dlList = undefined;
  }

  /** Entries waiting (tests). */
  get size(): number {
    let n = 0;
    for (let e = this.head; e; e = e.dlNext) n++;
    return n;
  }

  /** Whether a node timer is armed (tests). */
  get armed(): boolean {
    return this.timer !== undefined;
  }

  private arm(): void {
    const head = this.head;
    if (!head) return;
    this.timer = setTimeout(fireList, Math.max(1, Math.ceil(head.dlAt - performance.now())), this);
    this.timer.unref();
  }

  /** The timer: expire every entry whose deadline has passed, then arm for the next one, if any. */
  fire(): void {
    this.timer = undefined;
    const now = performance.now();
    let e = this.head;
    while (e && e.dlAt <= now) {
      this.remove(e);
      this.expire(e);
      e = this.head;
    }
    if (this.timer === undefined) this.arm();
  }
}

function fireList(l: DeadlineList): void {
  l.fire();
}

/** One list per duration, per kind of deadline (each entrypoint or service has one duration). */
export class Deadlines {
  private readonly lists = new Map<number, DeadlineList>();
  constructor(private readonly expire: (e: DeadlineEntry) => void) {}
  list(ms: number): DeadlineList {
    let l = this.lists.get(ms);
    if (!l) {
      l = new DeadlineList(ms, this.expire);
      this.lists.set(ms, l);
    }
    return l;
  }
}

/**
 * The idle deadline (respondingTimeouts.idleTimeout) of every relayed
 * connection, without a node timer per connection: one sweep per duration.
 *
 * node's `socket.setTimeout` made a Timeout, a bound callback and an async
 * resource per connection and moved the Timeout in node's timer list on every
 * read and write completion (a libuv clock read each). Here
 * activity is one store (`idleActive = true`, by the relay on each client
 * read, the client's EOF and each write to the client), and the sweep, a node
 * timer every `ms / SLICES`, walks its entries: an active one starts counting
 * again, a quiet one counts one more slice, and one quiet for SLICES whole
 * slices has had no activity for at least `ms` and expires. So a connection
 * is cut no earlier than `ms` after its last read or write (as node's timer)
 * and at most one slice (`ms / SLICES`) later.
 *
 * A write to the client counts when it is made, and its progress counts
 * too: the sweep reads the client's queued bytes and a change since the last
 * sweep is activity (node refreshed on each write completion and, in
 * `Socket._onTimeout`, on a write in flight whose queue moved). So a slow
 * reader that keeps taking bytes is not cut, and one that takes none is.
 *
 * Entries are the relays themselves (intrusive links, no allocation to arm).
 * The sweep's timer is unref'd (as node's socket timers are) and cleared when
 * the last entry leaves.
 */
export interface IdleEntry {
  /** Set on every read and write; cleared by the sweep. */
  idleActive: boolean;
  /** Whole sweep slices without activity. */
  idleSlices: number;
  /** writeQueueSize() at the last sweep (progress of the writes in flight). */
  idleQueue: number;
  idlePrev: IdleEntry | undefined;
  idleNext: IdleEntry | undefined;
  idleList: IdleSweep | undefined;
  /** The client's bytes written but not yet completed or taken by the kernel: any change is progress. */
  writeQueueSize(): number;
}

/** Sweeps per idle duration: a connection is cut between `ms` and `ms × (1 + 1/SLICES)` after its last activity. */
export const IDLE_SLICES = 16;

export class IdleSweep {
  private head: IdleEntry | undefined;
  private timer: NodeJS.Timeout | undefined;
  /** The sweep period; never less than ms / IDLE_SLICES (rounded up), so SLICES periods cover ms. */
  readonly period: number;

  constructor(
    readonly ms: number,
    /** Called with each entry idle for `ms`, after it left the sweep; must not throw. */
    private readonly expire: (e: IdleEntry) => void,
  ) {
    this.period = Math.max(1, Math.ceil(ms / IDLE_SLICES));
  }

  /** Start `e`'s idle deadline now (it leaves whatever sweep it was in). */
  add(e: IdleEntry): void {
    e.idleList?.remove(e);
    e.idleActive = true;
    e.idleSlices = 0;
    e.idleQueue = 0;
    e.idleList = this;
    e.idlePrev = undefined;
    e.idleNext = this.head;
    if (this.head) this.head.idlePrev = e;
    this.head = e;
    if (this.timer === undefined) {
      this.timer = setTimeout(sweepList, this.period, this);
      this.timer.unref();
    }
  }

  /** Stop `e`'s idle deadline (nothing if it is not in this sweep). */
  remove(e: IdleEntry): void {
    if (e.idleList !== this) return;
    if (e.idlePrev) e.idlePrev.idleNext = e.idleNext;
    else this.head = e.idleNext;
    if (e.idleNext) e.idleNext.idlePrev = e.idlePrev;
    e.idlePrev = e.idleNext = e.idleList = undefined;
    if (!this.head && this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
  }

  /** Entries waiting (tests). */
  get size(): number {
    let n = 0;
    for (let e = this.head; e; e = e.idleNext) n++;
    return n;
  }

  /** The timer: count one more quiet slice for each entry, expire those quiet for SLICES slices, then re-arm. */
  sweep(): void {
    this.timer = undefined;
    let e = this.head;
    while (e) {
      const next = e.idleNext;
      // A write to the client that moved (bytes taken by the kernel, or completed) since the last sweep
      // is activity: node refreshes on each write completion and, in _onTimeout, on a write in flight
      // whose queue shrank. A write that takes nothing (the client does not read) is not.
      const q = e.writeQueueSize();
      if (e.idleActive || q !== e.idleQueue) {
        e.idleActive = false;
        e.idleQueue = q;
        e.idleSlices = 0;
      } else if (++e.idleSlices >= IDLE_SLICES) {
        this.remove(e);
        this.expire(e);
      }
      e = next;
    }
    if (this.head && this.timer === undefined) {
      this.timer = setTimeout(sweepList, this.period, this);
      this.timer.unref();
    }
  }
}

function sweepList(s: IdleSweep): void {
  s.sweep();
}

/** One idle sweep per duration (each entrypoint has one idleTimeout). */
export class IdleSweeps {
  private readonly sweeps = new Map<number, IdleSweep>();
  constructor(private readonly expire: (e: IdleEntry) => void) {}
  sweep(ms: number): IdleSweep {
    let s = this.sweeps.get(ms);
    if (!s) {
      s = new IdleSweep(ms, this.expire);
      this.sweeps.set(ms, s);
    }
    return s;
  }
}
