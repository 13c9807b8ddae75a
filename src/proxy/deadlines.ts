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
 * deadline allocates nothing. A list whose last entry leaves clears its timer,
 * so an idle process holds no timer (and can exit).
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
    e.dlList?.remove(e);
    e.dlAt = performance.now() + this.ms;
    e.dlList = this;
    e.dlNext = undefined;
    e.dlPrev = this.tail;
    if (this.tail) this.tail.dlNext = e;
    else this.head = e;
    this.tail = e;
    if (this.timer === undefined) this.arm();
  }

  /** Stop `e`'s deadline (nothing if it is not in this list). */
  remove(e: DeadlineEntry): void {
    if (e.dlList !== this) return;
    if (e.dlPrev) e.dlPrev.dlNext = e.dlNext;
    else this.head = e.dlNext;
    if (e.dlNext) e.dlNext.dlPrev = e.dlPrev;
    else this.tail = e.dlPrev;
    e.dlPrev = e.dlNext = e.dlList = undefined;
    if (!this.head && this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
  }

  /** Entries waiting (tests). */
  get size(): number {
    let n = 0;
    for (let e = this.head; e; e = e.dlNext) n++;
    return n;
  }

  private arm(): void {
    const head = this.head;
    if (!head) return;
    this.timer = setTimeout(fireList, Math.max(1, Math.ceil(head.dlAt - performance.now())), this);
  }

  /** The timer: expire every entry whose deadline has passed, then arm for the next one. */
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
