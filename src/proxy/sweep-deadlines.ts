/**
 * Deadlines that most entries leave early (the TLS handshake deadline: almost
 * every handshake completes long before it), one list per duration, with a
 * node timer that is not cleared when the list empties.
 *
 * proxy/deadlines.ts clears its list's timer when the last entry leaves and
 * arms a new one when the next arrives. Where connections come one at a time
 * (each handshake done before the next begins, as under `openssl s_time`) that
 * is a setTimeout and a clearTimeout per connection anyway: the serve
 * allocation profile in docs/benchmarks.md ("Termination handshake, eighth
 * pass") shows deadlines.ts `add` allocating a Timeout per list per
 * handshake. Here the timer stays armed for the deadline it was set for;
 * when it fires it expires what is due and re-arms for the new head, if any.
 * So a list makes at most one node timer per duration of time, however many
 * entries come and go. The timer is unref'd: the connections themselves keep
 * the process alive, and an idle process can still exit.
 *
 * All entries of a list have the same duration, so they are added in
 * deadline order: adding appends, removing unlinks, both O(1), and the head
 * is always the next to fire. The entry is the connection's own object (the
 * fields below), so arming a deadline allocates nothing. A deadline fires no
 * earlier than its duration after it was set.
 */

/** The fields an object carries to wait in one sweep list at a time. */
export interface SweepEntry {
  swAt: number;
  swPrev: SweepEntry | undefined;
  swNext: SweepEntry | undefined;
  swList: SweepList | undefined;
}

export class SweepList {
  private head: SweepEntry | undefined;
  private tail: SweepEntry | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    readonly ms: number,
    /** Called with each entry whose deadline passed, after it left the list; must not throw. */
    private readonly expire: (e: SweepEntry) => void,
  ) {}

  /** Start `e`'s deadline `ms` from now (it leaves whatever list it was in). */
  add(e: SweepEntry): void {
    e.swList?.remove(e);
    e.swAt = performance.now() + this.ms;
    e.swList = this;
    e.swNext = undefined;
    e.swPrev = this.tail;
    if (this.tail) this.tail.swNext = e;
    else this.head = e;
    this.tail = e;
    // An armed timer is for an earlier deadline (same duration, set before): it will re-arm for this one.
    if (this.timer === undefined) this.arm(e.swAt);
  }

  /** Stop `e`'s deadline (nothing if it is not in this list). The timer stays armed. */
  remove(e: SweepEntry): void {
    if (e.swList !== this) return;
    if (e.swPrev) e.swPrev.swNext = e.swNext;
    else this.head = e.swNext;
    if (e.swNext) e.swNext.swPrev = e.swPrev;
    else this.tail = e.swPrev;
    e.swPrev = e.swNext = e.swList = undefined;
  }

  /** Entries waiting (tests). */
  get size(): number {
    let n = 0;
    for (let e = this.head; e; e = e.swNext) n++;
    return n;
  }

  /** Whether a node timer is armed (tests). */
  get armed(): boolean {
    return this.timer !== undefined;
  }

  private arm(at: number): void {
    this.timer = setTimeout(fireSweep, Math.max(1, Math.ceil(at - performance.now())), this);
    this.timer.unref();
  }

  /** The timer: expire every entry whose deadline has passed, then arm for the next one, if any. */
  fire(): void {
    this.timer = undefined;
    const now = performance.now();
    let e = this.head;
    while (e && e.swAt <= now) {
      this.remove(e);
      this.expire(e);
      e = this.head;
    }
    if (this.timer === undefined && this.head) this.arm(this.head.swAt);
  }
}

function fireSweep(l: SweepList): void {
  l.fire();
}

/** One list per duration (each entrypoint has one handshake duration). */
export class SweepDeadlines {
  private readonly lists = new Map<number, SweepList>();
  constructor(private readonly expire: (e: SweepEntry) => void) {}
  list(ms: number): SweepList {
    let l = this.lists.get(ms);
    if (!l) {
      l = new SweepList(ms, this.expire);
      this.lists.set(ms, l);
    }
    return l;
  }
}
