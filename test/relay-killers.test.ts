/**
 * Killers for the mutants of proxy/relay.ts that the relay's other test files
 * let live (the eleventh session's run: 66 survived, 19 without coverage;
 * docs/mutation.md, "Relay, eleventh session (relaymut)", has the table).
 *
 * Each case drives a Relay made here over real loopback sockets (a front
 * server whose accepted socket is the relay's client, a backend server whose
 * accepted socket is the far end), except where a stand-in client must say
 * "my write is still queued" or record what it was handed (the buffer reuse
 * cases), and writeAll, whose stand-in records what reaches the socket.
 * Every wait is for a condition, bounded by LIMIT_MS; no case asserts a time.
 * Each case was seen red with the mutants it names in docs/mutation.md's
 * table, applied by hand to dist/src/proxy/relay.js (and green without).
 *
 * The read-buffer pool is module state: the first case needs it empty (it
 * counts what the pool keeps), so it stays first in this file (node --test and
 * Stryker's tap runner start one process per file).
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { OWNER, Relay, type RelayOptions, type RelayOwner, relayOptionsOf, writeAll } from '../src/proxy/relay.js';

const LIMIT_MS = 20_000;
/** BULK_READ of relay.ts: a backend read at least this large gives the relay a private read buffer. */
const BULK_READ = 16 * 1024;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Wait (bounded) until `cond()` holds. */
async function until(cond: () => boolean, what: string): Promise<void> {
  for (let waited = 0; !cond(); waited += 5) {
    if (waited > LIMIT_MS) throw new Error(`never: ${what}`);
    await sleep(5);
  }
}

/** Read `n` bytes from `s` (then pause it again). */
function collect(s: net.Socket, n: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let got = 0;
    const timer = setTimeout(() => reject(new Error(`stalled with ${got} of ${n} bytes`)), LIMIT_MS);
    const onData = (d: Buffer) => {
      parts.push(d);
      got += d.length;
      if (got >= n) {
        clearTimeout(timer);
        s.off('data', onData);
        s.pause();
        resolve(Buffer.concat(parts));
      }
    };
    s.on('data', onData);
    s.resume();
  });
}

/** A server whose accepted sockets (paused: pauseOnConnect, half-open allowed) are handed out in order. */
async function acceptor() {
  const ready: net.Socket[] = [];
  const waiting: ((s: net.Socket) => void)[] = [];
  const all = new Set<net.Socket>();
  const srv = net.createServer({ pauseOnConnect: true, allowHalfOpen: true }, (s) => {
    s.on('error', () => {});
    all.add(s);
    const w = waiting.shift();
    if (w) w(s);
    else ready.push(s);
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  return {
    port: (srv.address() as net.AddressInfo).port,
    next: (): Promise<net.Socket> => {
      const s = ready.shift();
      return s ? Promise.resolve(s) : new Promise((r) => waiting.push(r));
    },
    close: () => {
      for (const s of all) s.destroy();
      srv.close();
    },
  };
}

/** What relay.ts keeps private, read here to see which buffer a read went into. */
const priv = (r: Relay) => r as unknown as { buf: Buffer | undefined; bulk: boolean };

let front: Awaited<ReturnType<typeof acceptor>>;
let back: Awaited<ReturnType<typeof acceptor>>;
const open: (() => void)[] = [];

/**
 * A relay between `server` (the accepted end of `c`) and a backend whose
 * accepted end is `far`, connected. `c` reads nothing until a case says so;
 * `server` and `far` are paused (pauseOnConnect).
 */
async function harness(opts: RelayOptions = {}, owner?: RelayOwner) {
  const c = net.connect({ port: front.port, host: '127.0.0.1', allowHalfOpen: true });
  c.on('error', () => {});
  c.pause();
  const server = await front.next();
  const relay = new Relay(server, { host: '127.0.0.1', port: back.port }, opts, owner);
  relay.backend.on('error', () => {});
  const far = await back.next();
  await until(() => !relay.backend.connecting, 'the backend connected');
  const closed = new Promise((r) => relay.backend.once('close', r));
  const close = () => {
    c.destroy();
    server.destroy();
    far.destroy();
    relay.backend.destroy();
  };
  open.push(close);
  return { c, server, far, relay, close, closed };
}
type H = Awaited<ReturnType<typeof harness>>;

/**
 * Make `h`'s relay a bulk one: one read of exactly BULK_READ bytes (as
 * onBackendRead hands it over), then a real 1-byte read, after which node
 * asks the relay for its next read buffer: the private one, taken from the
 * pool. Returns that buffer once the client has every byte.
 */
async function goBulk(h: H): Promise<Buffer | undefined> {
  h.relay.fromBackendRead(BULK_READ, Buffer.alloc(BULK_READ, 7));
  h.far.write('x');
  await collect(h.c, BULK_READ + 1);
  assert.equal(priv(h.relay).bulk, true, 'a read of BULK_READ bytes marks the connection bulk');
  return priv(h.relay).buf;
}

before(async () => {
  front = await acceptor();
  back = await acceptor();
});
after(() => {
  for (const c of open) c();
  front.close();
  back.close();
});

describe('relay read buffers and their pool (memory and copies; first: the pool must start empty)', () => {
  it('the pool keeps at most 256 buffers: of 300 released, the next bulk connection gets the 256th', async () => {
    const h = await harness();
    const released: Buffer[] = Array.from({ length: 300 }, () => Buffer.allocUnsafe(64 * 1024));
    // backendClosed() is what the backend's 'close' does: the private buffer goes back to the pool (the client has nothing queued).
    for (const b of released) {
      priv(h.relay).buf = b;
      h.relay.backendClosed();
      assert.equal(priv(h.relay).buf, undefined);
    }
    const g = await harness();
    const got = await goBulk(g);
    assert.ok(got !== undefined, 'a bulk connection has a private read buffer');
    assert.equal(released.indexOf(got), 255, 'the last buffer the pool took is the 256th (POOL_MAX): no more, no fewer');
    // Closed before the next case, whose pool order must not change under it.
    h.close();
    g.close();
    await Promise.all([h.closed, g.closed]);
  });

  it('a backend that sends only small reads: no private buffer; the first read of BULK_READ bytes gets a 64 KiB one', async () => {
    const h = await harness();
    for (let i = 0; i < 5; i++) {
      h.far.write(Buffer.alloc(300, i));
      const got = await collect(h.c, 300);
      assert.ok(got.equals(Buffer.alloc(300, i)));
    }
    assert.equal(priv(h.relay).bulk, false, 'reads of 300 bytes do not make a bulk connection');
    assert.equal(priv(h.relay).buf, undefined, 'a chatty connection holds no read buffer of its own');
    const buf = await goBulk(h);
    assert.ok(Buffer.isBuffer(buf) && buf.length === 64 * 1024, 'after a read of BULK_READ bytes the relay reads into a private 64 KiB buffer');
    h.close();
    await h.closed;
  });

  it("a closed bulk connection's buffer goes to the next bulk connection; a connection without one gives the pool nothing", async () => {
    const a = await harness();
    const bufA = await goBulk(a);
    assert.ok(bufA);
    // A second open bulk connection takes one more buffer, so the pool (full after the first case) has room for a hole.
    const x = await harness();
    assert.ok(await goBulk(x));
    // The backend closes (as its owner closes it; a backend's FIN alone leaves the half-open relay writing to it).
    a.relay.backend.destroy();
    await a.closed;
    assert.equal(priv(a.relay).buf, undefined);
    // A connection that never went bulk closes: it must not put a hole (undefined) on top of the pool.
    const c = await harness();
    c.relay.backend.destroy();
    await c.closed;
    const d = await harness();
    assert.equal(await goBulk(d), bufA, 'the buffer released by the first connection is reused');
    a.close();
    c.close();
    d.close();
    x.close();
  });
});

/** A stand-in client that records each chunk written to it (a copy of its bytes, and the chunk itself); `queued` is its writableLength. */
function recordingClient(queued: number) {
  const chunks: Uint8Array[] = [];
  const copies: Buffer[] = [];
  const s = {
    destroyed: false,
    writableLength: queued,
    writableHighWaterMark: 1 << 30,
    write(b: Uint8Array) {
      chunks.push(b);
      copies.push(Buffer.from(b));
      return true;
    },
    once() {},
    on() {},
    removeAllListeners() {},
    pause() {},
    resume() {},
    end() {},
    destroy() {},
  };
  return { client: s as unknown as net.Socket, chunks, copies };
}

/** A relay from a backend (far) to a recording client, made bulk by one BULK_READ read. */
async function bulkToRecorder(queued: number) {
  const rec = recordingClient(queued);
  const relay = new Relay(rec.client, { host: '127.0.0.1', port: back.port });
  relay.backend.on('error', () => {});
  const far = await back.next();
  open.push(() => {
    far.destroy();
    relay.backend.destroy();
  });
  await until(() => !relay.backend.connecting, 'the backend connected');
  relay.fromBackendRead(BULK_READ, Buffer.alloc(BULK_READ));
  return { rec, relay, far };
}

describe('relay: the private read buffer is written as it is, reused only when its write is done', () => {
  it('a write that completed: the next read reuses the same buffer, and the client gets the read buffer itself (no copy)', async () => {
    const { rec, relay, far } = await bulkToRecorder(0);
    for (let i = 0; i < 4; i++) {
      far.write(Buffer.alloc(1000, i + 1));
      await until(() => rec.chunks.length === i + 2, `read ${i + 1} relayed`);
    }
    // Read 1 went into the shared buffer (node asked for the next buffer before the connection turned bulk); reads 2-4 into the private one.
    const own = priv(relay).buf;
    assert.ok(own);
    for (let i = 2; i <= 4; i++) {
      assert.equal(rec.chunks[i]!.buffer, own.buffer, `read ${i} handed to the client in the private buffer itself, which is kept`);
      assert.ok(rec.copies[i]!.equals(Buffer.alloc(1000, i)));
    }
  });

  it('a write still queued: the next read goes into another buffer, so the queued bytes stay intact', async () => {
    const { rec, far } = await bulkToRecorder(1);
    const N = 12;
    for (let i = 0; i < N; i++) {
      far.write(Buffer.alloc(1000, i + 1));
      await until(() => rec.chunks.length === i + 2, `read ${i + 1} relayed`);
    }
    for (let i = 1; i <= N; i++) assert.ok(Buffer.from(rec.chunks[i]!).equals(Buffer.alloc(1000, i)), `queued chunk ${i} not overwritten by a later read`);
    assert.notEqual(rec.chunks[3]!.buffer, rec.chunks[2]!.buffer, 'the read after a queued write went into another buffer');
  });
});

describe('relay backpressure: pauses that must hold', () => {
  it('a full client pauses the backend, and a backend drain while the client is still full does not resume it; one drain listener each', async () => {
    const h = await harness();
    const { relay, server } = h;
    relay.readClient();
    const clientDrains = server.listenerCount('drain');
    const backendDrains = relay.backend.listenerCount('drain');
    const big = Buffer.alloc(64 * 1024);
    for (let i = 0; i < 2000 && !relay.clientFull; i++) relay.toClient([big]);
    assert.ok(relay.clientFull, 'the client (not reading) filled');
    assert.equal(relay.backend.isPaused(), true, 'a full client pauses the backend');
    relay.toClient([big]);
    relay.toClient([big]);
    assert.equal(server.listenerCount('drain'), clientDrains + 1, 'one drain listener for the client, however many writes while full');
    for (let i = 0; i < 2000 && !relay.backendFull; i++) relay.toBackend([big]);
    assert.ok(relay.backendFull, 'the backend (not reading) filled');
    relay.toBackend([big]);
    relay.toBackend1(big);
    assert.equal(relay.backend.listenerCount('drain'), backendDrains + 1, 'one drain listener for the backend, however many writes while full');
    assert.equal(server.isPaused(), true, 'a full backend pauses the client');
    // The backend drains: flow() runs again with the client still full.
    h.far.on('data', () => {});
    h.far.resume();
    await until(() => !relay.backendFull, 'the backend drained');
    assert.ok(relay.clientFull);
    assert.equal(relay.backend.isPaused(), true, 'the backend stays paused while the client is full');
    assert.equal(server.isPaused(), false, 'the client is read again');
    h.close();
  });

  it('flow() before the handler reads the client leaves it alone: the bytes it sent wait for readClient', async () => {
    const h = await harness();
    h.c.write('early');
    h.relay.flow();
    assert.notEqual(h.server.readableFlowing, true, 'not resumed before anyone listens');
    h.relay.readClient();
    const got = await collect(h.far, 5);
    assert.equal(got.toString(), 'early');
    h.close();
  });

  it("readClientFromOwner starts the relay's reading of the client (the owner's listeners get the bytes)", async () => {
    const h = await harness();
    let got = '';
    h.server.on('data', (d: Buffer) => {
      if (h.relay.reading) h.relay.clientData(d);
      got += d;
    });
    h.server.pause();
    h.relay.readClientFromOwner();
    assert.equal(h.relay.reading, true);
    assert.equal(h.server.isPaused(), false, 'flow() resumed the client');
    h.c.write('abc');
    assert.equal((await collect(h.far, 3)).toString(), 'abc');
    assert.equal(got, 'abc');
    h.close();
  });

  it('a destroyed backend takes no writes and does not mark itself full (the client is not paused for it)', async () => {
    const h = await harness();
    h.relay.readClient();
    h.relay.backend.destroy();
    h.relay.toBackend([Buffer.from('x')]);
    h.relay.toBackend1(Buffer.from('y'));
    assert.equal(h.relay.backendFull, false);
    assert.equal(h.server.isPaused(), false);
    h.close();
  });
});

describe('relay: half-close and stop', () => {
  it('the backend EOF ends the client, and the client can still send to the backend (allowHalfOpen)', async () => {
    const h = await harness();
    h.relay.readClient();
    h.far.write('bye');
    h.far.end();
    const ended = new Promise((r) => h.c.once('end', r));
    assert.equal((await collect(h.c, 3)).toString(), 'bye');
    h.c.resume();
    await ended;
    assert.equal(h.relay.backend.writableEnded, false, "the backend's EOF does not end the relay's writes to it");
    h.c.write('more');
    assert.equal((await collect(h.far, 4)).toString(), 'more');
    const farEnded = new Promise((r) => h.far.once('end', r));
    h.far.resume();
    h.c.end();
    await farEnded;
    h.close();
  });

  it("after stop(), the backend's bytes do not reach the client", async () => {
    const h = await harness();
    h.relay.readClient();
    h.relay.stop();
    h.far.write('late');
    await until(() => h.relay.backend.bytesRead >= 4, 'the relay read the backend');
    // The read was refused (onread's callback returned false), so node stopped reading the backend: it is not drained into nowhere.
    assert.equal((h.relay.backend as unknown as { _handle: { reading: boolean } })._handle.reading, false, 'reading stopped');
    // Anything the relay wrote for that read was written before this marker.
    h.server.write('M');
    assert.equal((await collect(h.c, 1)).toString(), 'M');
    h.close();
  });

  it("after stop(), the backend's EOF does not end the client, and flow() no longer resumes it", async () => {
    const h = await harness();
    h.relay.readClient();
    h.server.pause();
    h.relay.stop();
    h.relay.flow();
    assert.equal(h.server.isPaused(), true, 'flow() after stop() leaves the client paused');
    h.far.end();
    // The relay's 'end' listener came first: by this one, it has run.
    await new Promise((r) => h.relay.backend.once('end', r));
    assert.equal(h.server.writableEnded, false);
    h.close();
  });
});

describe('relay: the idle mark (proxy/deadlines.ts) and the write queue it watches', () => {
  it('a new relay counts as active; client bytes to a handler and the client EOF mark it; an empty write to the client does not', async () => {
    const h = await harness();
    assert.equal(h.relay.idleActive, true, 'active when made');
    let seen = 0;
    h.relay.readClient(() => {
      seen++;
    });
    h.relay.idleActive = false;
    h.c.write('x');
    await until(() => seen === 1, 'the handler got the byte');
    assert.equal(h.relay.idleActive, true, "a client read through the handler's consumer is activity");
    h.relay.idleActive = false;
    h.relay.toClient([]);
    assert.equal(h.relay.idleActive, false, 'nothing written is no activity');
    h.c.end();
    await until(() => h.relay.backend.writableEnded, "the client's EOF ended the backend");
    assert.equal(h.relay.idleActive, true, "the client's EOF is activity");
    h.close();
  });

  it("writeQueueSize is node's queue plus libuv's, and 0 once the client is gone", async () => {
    const h = await harness();
    const big = Buffer.alloc(64 * 1024);
    for (let i = 0; i < 2000 && !h.relay.clientFull; i++) h.relay.toClient([big]);
    const handle = (h.server as unknown as { _handle: { writeQueueSize: number } })._handle;
    assert.ok(handle.writeQueueSize > 0, "libuv holds part of the client's queue");
    assert.equal(h.relay.writeQueueSize(), h.server.writableLength + handle.writeQueueSize);
    h.server.destroy();
    assert.equal(typeof h.relay.writeQueueSize(), 'number', 'no throw without a handle');
    h.close();
  });
});

describe('relay: an exception in a shared listener ends the connection, never the process', () => {
  // The failing listener closes both sockets before it returns: checked once the listener has run.
  const bothClosed = (h: H) => assert.ok(h.server.destroyed && h.relay.backend.destroyed, 'both sockets destroyed');

  it('without an owner guard (no handlerError): a throwing client consumer closes both sockets', async () => {
    const h = await harness();
    let called = false;
    h.relay.readClient(() => {
      called = true;
      throw new Error('a bug in a handler');
    });
    h.c.write('x');
    await until(() => called, 'the consumer ran');
    bothClosed(h);
    h.close();
  });

  it('a throwing onBackendEnd closes both sockets', async () => {
    const h = await harness({
      onBackendEnd: () => {
        throw new Error('a bug at EOF');
      },
    });
    h.far.end();
    await new Promise((r) => h.relay.backend.once('end', r));
    assert.ok(h.server.destroyed, 'the client closed with the failed EOF handler');
    h.close();
  });

  it("a throwing owner's backendClosed closes the client", async () => {
    const owner: RelayOwner = {
      relay: undefined,
      backendClosed() {
        throw new Error('a bug at close');
      },
    };
    const h = await harness({}, owner);
    h.relay.backend.destroy();
    await h.closed;
    assert.ok(h.server.destroyed);
    h.close();
  });

  it('a throwing fromBackend transform closes both sockets', async () => {
    const h = await harness({
      fromBackend: () => {
        throw new Error('a bug in a transform');
      },
    });
    h.far.write('x');
    await until(() => h.relay.backend.bytesRead >= 1, 'the backend read');
    bothClosed(h);
    h.close();
  });
});

describe('relay: writeAll and relayOptionsOf', () => {
  function stub(writableLength: number, accept = () => true) {
    const writes: number[] = [];
    let corks = 0;
    const s = {
      writableLength,
      writableHighWaterMark: 16384,
      write(b: Uint8Array) {
        writes.push(b.length);
        return accept();
      },
      cork() {
        corks++;
      },
      uncork() {},
    };
    return { s: s as unknown as net.Socket, writes, corks: () => corks };
  }

  it('no chunks: nothing written, the answer is whether the socket is below its high-water mark', () => {
    for (const [len, want] of [
      [0, true],
      [100, true],
      [16384, false],
      [20000, false],
    ] as const) {
      const t = stub(len);
      assert.equal(writeAll(t.s, []), want, `writableLength ${len}`);
      assert.deepEqual(t.writes, []);
    }
  });

  it('chunks totalling exactly 32 KiB are copied into one write; above that, corked, and the answer is every write\'s', () => {
    const t = stub(0);
    assert.equal(writeAll(t.s, [new Uint8Array(16384), new Uint8Array(16384)]), true);
    assert.deepEqual(t.writes, [32768]);
    assert.equal(t.corks(), 0);
    const u = stub(0);
    assert.equal(writeAll(u.s, [new Uint8Array(20000), new Uint8Array(20000)]), true, 'every write accepted');
    assert.deepEqual(u.writes, [20000, 20000]);
    assert.equal(u.corks(), 1);
    let n = 0;
    const v = stub(0, () => n++ > 0);
    assert.equal(writeAll(v.s, [new Uint8Array(20000), new Uint8Array(20000)]), false, 'one write refused');
  });

  it('relayOptionsOf: the options of the relay on a socket, undefined for a socket without a relay', async () => {
    assert.equal(relayOptionsOf(new net.Socket()), undefined);
    const tagged = new net.Socket();
    (tagged as unknown as Record<symbol, unknown>)[OWNER] = { relay: undefined };
    assert.equal(relayOptionsOf(tagged), undefined);
    const opts: RelayOptions = { clientEchoes: false };
    const h = await harness(opts);
    assert.equal(relayOptionsOf(h.server), opts);
    assert.equal(relayOptionsOf(h.relay.backend), opts);
    h.close();
  });
});
