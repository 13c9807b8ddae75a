/**
 * The one relay between a client and a backend, both directions, with
 * backpressure and half-close. Every handler that has a backend uses it:
 * passthrough and split mode move bytes as they are, TLS 1.2 termination
 * relays node:tls's plaintext side, TLS 1.3 termination puts the engine in
 * between (client bytes → `receive`, backend bytes → `encrypt`).
 *
 * Backpressure, the whole rule:
 * - the backend is read only while the client's write buffer is not full;
 * - the client is read only while the backend's write buffer is not full, and
 *   also, when reading the client can itself produce writes to the client
 *   (`clientEchoes`: the TLS engine answers KeyUpdate, sends alerts), only
 *   while the client's own write buffer is not full;
 * - a full buffer is a flag set when write() returns false and cleared on its
 *   own 'drain'; after any change, `flow()` pauses or resumes both sides.
 *
 * backend → client (usually the bulk direction) reads with `onread`: no
 * Readable machinery. Until a backend has sent one large read (≥ BULK_READ),
 * it reads into one buffer shared by every relay of the process, and a chunk
 * written to the client as it is is copied first (reads are synchronous: the
 * callback consumes the shared buffer before any other read can fill it). So
 * an idle or chatty connection holds no read buffer of its own (a private
 * 64 KiB buffer per connection was ≈ 5.4 KiB of RSS per idle connection and
 * 64 KiB of V8 external memory; docs/benchmarks.md, "Relaying cost and
 * memory"). After a large read a relay without a `fromBackend` transform
 * (a transform consumes the chunk inside the callback and never needs one)
 * takes a private pooled buffer and
 * no copy is made: that buffer is reused only when the write of the chunk
 * completed synchronously (otherwise the queued write still holds it and the
 * next read takes a fresh one). When a `fromBackend` transform makes new
 * bytes (the engine seals into new records), no copy is made either: the
 * transform must not keep the chunk it is given.
 * client → backend uses the socket's 'data' events (an accepted socket cannot
 * take `onread`).
 *
 * Several chunks bound for one socket (the records sealed from one backend
 * chunk, the server's first flight) go out in one write: a profile of TLS 1.3
 * handshakes showed the per-write cost of separate records.
 *
 * EOF on one side ends the other (allowHalfOpen keeps the reverse open)
 * unless the handler maps it itself (close_notify).
 */
import net from 'node:net';
import { concat } from '../bytes/util.js';
import type { IdleEntry, IdleSweep } from './deadlines.js';

const READ_SIZE = 64 * 1024;
/** A backend read at least this large marks a bulk connection: it gets a private read buffer from then on. */
const BULK_READ = 16 * 1024;
/** Up to this many bytes, several chunks are copied into one buffer; above it, corked into one writev. */
const CONCAT_MAX = 32 * 1024;

// Read buffers are pooled: a fresh 64 KiB ArrayBuffer per connection showed up
// as GC time in the per-connection profile. A buffer goes back to the pool when
// its connection closes (no queued write can reference it then); one handed to
// a queued write is simply dropped and left to the GC.
const pool: Buffer[] = [];
const POOL_MAX = 256;
const acquire = () => pool.pop() ?? Buffer.allocUnsafe(READ_SIZE);
const release = (b: Buffer) => {
  if (pool.length < POOL_MAX) pool.push(b);
};
/** The read buffer of every relay that has no private one yet; its bytes are consumed within the read callback. */
const shared = Buffer.allocUnsafe(READ_SIZE);

export interface BackendTarget {
  host: string;
  port: number;
}

/** Write `chunks` to `s` as one write (one syscall); returns write()'s answer. */
export function writeAll(s: net.Socket, chunks: readonly Uint8Array[]): boolean {
  if (chunks.length === 1) return s.write(chunks[0]!);
  if (chunks.length === 0) return s.writableLength < s.writableHighWaterMark;
  let total = 0;
  for (const c of chunks) total += c.length;
  if (total <= CONCAT_MAX) return s.write(concat(...chunks));
  s.cork();
  let ok = true;
  for (const c of chunks) ok = s.write(c) && ok;
  s.uncork();
  return ok;
}

// The listeners a relay puts on its two sockets are shared by every relay (no
// closures or `once` wrappers per connection): each finds its relay through
// the one tag on the socket it was called on, the connection that owns both
// sockets (proxy/connection.ts tags the client when it accepts it, the relay
// tags the backend it makes). One symbol for both, added once to each socket:
// a second property added in a different order on the two sockets gave node's
// stream code more socket shapes to meet (megamorphic property loads in the
// passthrough profile; docs/benchmarks.md, "Passthrough cost, eighth pass").
// Events that fire once anyway (end, close) use on(), not once().
export const OWNER = Symbol('echgate.connection');
/** What a socket's OWNER tag holds: whoever owns the connection, with its relay once there is one. */
export interface RelayOwner {
  relay: Relay | undefined;
  /** The connection's guard (proxy/connection.ts handlerError): counts, logs, closes both sockets. */
  handlerError?(e: unknown): void;
  /**
   * The backend's 'close', after the relay's own work for it: called from the relay's one 'close'
   * listener, so the owner adds no second one (a second listener makes the event's listener list an
   * array, cloned on every emit).
   */
  backendClosed?(): void;
}
type Tagged = { [OWNER]?: RelayOwner };
const relayOf = (s: net.Socket) => (s as Tagged)[OWNER]!.relay!;
/** The options a socket's relay was made with: a handler that is its own RelayOptions (terminate.ts) finds itself here, through the one tag. */
export const relayOptionsOf = (s: net.Socket): RelayOptions | undefined => (s as Tagged)[OWNER]?.relay?.o;

/**
 * A shared listener's exception ends that connection through its owner's
 * guard (counted and logged there), never the process (docs/robustness.md).
 * Without an owner's guard (tests), both sockets are closed.
 */
function failed(s: net.Socket, e: unknown): void {
  const owner = (s as Tagged)[OWNER];
  if (owner?.handlerError) return owner.handlerError(e);
  owner?.relay?.backend.destroy();
  owner?.relay?.client.destroy();
  s.destroy();
}

function onBackendEnd(this: net.Socket): void {
  try {
    relayOf(this).backendEnded();
  } catch (e) {
    failed(this, e);
  }
}
function onBackendClose(this: net.Socket): void {
  try {
    const owner = (this as Tagged)[OWNER]!;
    owner.relay!.backendClosed();
    owner.backendClosed?.();
  } catch (e) {
    failed(this, e);
  }
}
function onClientEnd(this: net.Socket): void {
  try {
    relayOf(this).clientEnded();
  } catch (e) {
    failed(this, e);
  }
}
function onClientData(this: net.Socket, d: Buffer): void {
  try {
    relayOf(this).clientData(d);
  } catch (e) {
    failed(this, e);
  }
}
/** readClient(onData): the handler's own consumer of client bytes, behind the same activity mark. */
function onClientDataTo(this: net.Socket, d: Buffer): void {
  try {
    const r = relayOf(this);
    r.idleActive = true;
    // Called on the client socket, as a 'data' listener would be: a shared listener (terminate.ts) finds its
    // connection through the socket.
    r.onData!.call(this, d);
  } catch (e) {
    failed(this, e);
  }
}
/**
 * The backend's reads (onread: node calls it as a method of the backend
 * socket, so one function serves every relay). Returns false to stop reading
 * while the client's write buffer is full.
 */
function onBackendRead(this: net.Socket, n: number, b: Uint8Array): boolean {
  try {
    return relayOf(this).fromBackendRead(n, b);
  } catch (e) {
    failed(this, e);
    return false;
  }
}
function onClientDrain(this: net.Socket): void {
  try {
    const r = relayOf(this);
    r.clientFull = false;
    r.flow();
  } catch (e) {
    failed(this, e);
  }
}
function onBackendDrain(this: net.Socket): void {
  try {
    const r = relayOf(this);
    r.backendFull = false;
    r.flow();
  } catch (e) {
    failed(this, e);
  }
}

export interface RelayOptions {
  /** Backend bytes → what the client gets (new buffers); absent: the bytes as they are. */
  fromBackend?: (chunk: Uint8Array) => Uint8Array[];
  /** Reading the client can produce writes to the client (see the backpressure rule). */
  clientEchoes?: boolean;
  /** The backend's EOF; default: end the client. */
  onBackendEnd?: () => void;
}

export class Relay implements IdleEntry {
  readonly backend: net.Socket;
  /** The private read buffer, once the backend has sent a large read (`bulk`). */
  private buf: Buffer | undefined;
  private bulk = false;
  /** Set when write() returned false, cleared by that socket's 'drain' (onClientDrain, onBackendDrain). */
  clientFull = false;
  backendFull = false;
  /** Whether the client is being relayed (readClient or readClientFromOwner was called). */
  reading = false;
  private stopped = false;
  /** readClient's consumer of client bytes when it is not "to the backend as they are". */
  onData: ((this: net.Socket, d: Buffer) => void) | undefined = undefined;
  // The idle deadline (proxy/deadlines.ts IdleSweep): this relay is the entry, marked on every client
  // read and every write to the client.
  idleActive = true;
  idleSlices = 0;
  idleQueue = 0;
  idlePrev: IdleEntry | undefined = undefined;
  idleNext: IdleEntry | undefined = undefined;
  idleList: IdleSweep | undefined = undefined;

  /**
   * Connect to the backend with the backend → client half already wired, so
   * not even a server-first greeting can arrive before the relay is in place.
   * `owner` is the connection that tagged the client (proxy/connection.ts);
   * without one (tests) the relay tags both sockets with a holder of its own.
   */
  constructor(
    readonly client: net.Socket,
    target: BackendTarget,
    readonly o: RelayOptions = {},
    owner?: RelayOwner,
  ) {
    const holder = owner ?? { relay: this };
    holder.relay = this;
    this.backend = net.connect({
      host: target.host,
      port: target.port,
      allowHalfOpen: true,
      noDelay: true,
      onread: {
        // Called when the handle is set up and after every read, without `this`: the buffer for the next read.
        buffer: () => {
          // A transform (TLS termination seals the chunk into new records) consumes the chunk inside
          // the callback, so it never needs a private buffer: a terminated connection that carried bulk
          // data and then idles holds none (≈ 64 KiB each; docs/benchmarks.md, "Termination cost, fourth pass").
          if (!this.bulk || o.fromBackend) return shared;
          this.buf ??= acquire();
          return this.buf;
        },
        callback: onBackendRead,
      },
    });
    (this.backend as Tagged)[OWNER] = holder;
    if ((client as Tagged)[OWNER] === undefined) (client as Tagged)[OWNER] = holder;
    this.backend.on('end', onBackendEnd);
    this.backend.on('close', onBackendClose);
  }

  /** One read of the backend, `n` bytes in `b` (onBackendRead). */
  fromBackendRead(n: number, b: Uint8Array): boolean {
    const { client, o } = this;
    if (this.stopped || client.destroyed) return false;
    const chunk = b.subarray(0, n);
    if (o.fromBackend) this.toClient(o.fromBackend(chunk));
    else if (b === shared) this.toClient([Buffer.from(chunk)]);
    else {
      this.toClient([chunk]);
      // A queued write still references `b`: the next read gets another buffer.
      if (client.writableLength > 0) this.buf = undefined;
    }
    if (n >= BULK_READ) this.bulk = true;
    return !this.clientFull;
  }

  /** IdleEntry: the client's bytes not yet done, in node's queue or libuv's (any change is progress). */
  writeQueueSize(): number {
    const c = this.client;
    return c.writableLength + ((c as unknown as { _handle?: { writeQueueSize?: number } })._handle?.writeQueueSize ?? 0);
  }

  /** The backend's EOF: end the client (half-close), or what the handler maps it to (close_notify). */
  backendEnded(): void {
    if (this.stopped || this.client.destroyed) return;
    if (this.o.onBackendEnd) this.o.onBackendEnd();
    else this.client.end();
  }

  backendClosed(): void {
    if (this.buf && this.client.writableLength === 0) release(this.buf);
    this.buf = undefined;
  }

  /** The client's EOF ends the backend. */
  clientEnded(): void {
    this.idleActive = true;
    // Not twice: TLS termination already ended the backend on close_notify, and a second end()
    // builds an ERR_STREAM_ALREADY_FINISHED with its stack (1–2 % of a terminated connection's CPU).
    if (!this.stopped && !this.backend.writableEnded) this.backend.end();
  }

  /** Bytes for the client, in one write. */
  toClient(chunks: readonly Uint8Array[]): void {
    if (chunks.length === 0 || this.client.destroyed) return;
    this.idleActive = true;
    if (!writeAll(this.client, chunks)) this.clientFilled();
  }

  private clientFilled(): void {
    if (this.clientFull) return;
    this.clientFull = true;
    this.client.once('drain', onClientDrain);
    this.flow();
  }

  private backendFilled(): void {
    if (this.backendFull) return;
    this.backendFull = true;
    this.backend.once('drain', onBackendDrain);
    this.flow();
  }

  /** Bytes for the backend, in one write (queued by the socket while it connects). */
  toBackend(chunks: readonly Uint8Array[]): void {
    if (chunks.length === 0 || this.backend.destroyed) return;
    if (!writeAll(this.backend, chunks)) this.backendFilled();
  }

  /** One chunk for the backend, as it is (the client's bytes in passthrough). */
  toBackend1(chunk: Uint8Array): void {
    if (this.backend.destroyed) return;
    if (!this.backend.write(chunk)) this.backendFilled();
  }

  /**
   * Start reading the client: each chunk goes to `onData` (default: to the
   * backend as it is), called with the client socket as `this`; the client's
   * EOF ends the backend.
   */
  readClient(onData?: (this: net.Socket, d: Buffer) => void): void {
    this.reading = true;
    this.onData = onData;
    this.client.on('data', onData ? onClientDataTo : onClientData);
    this.client.on('end', onClientEnd);
    // The client's EOF may already have been read while the handler got ready (a server-speaks-first
    // entrypoint never peeks, so a client that connects and closes at once is read to its end before the
    // backend connects): its 'end' went out before this listener existed, and would never reach the backend.
    if (this.client.readableEnded) this.clientEnded();
    this.flow();
  }

  /**
   * Start relaying the client, bytes as they are, when its owner's own 'data'
   * and 'end' listeners stay on the client for the connection's whole life
   * and hand each chunk to clientData() and the EOF to clientEnded() once
   * `reading` is set (proxy/connection.ts, a plain passthrough): no listener
   * is taken off and put back between the ClientHello and the relay.
   */
  readClientFromOwner(): void {
    this.reading = true;
    this.flow();
  }

  /** One client chunk to the backend as it is: onClientData's work, and the owner's in readClientFromOwner's mode. */
  clientData(d: Buffer): void {
    this.idleActive = true;
    this.toBackend1(d);
  }

  /** Stop relaying (the connection failed): no more reads from the client, nothing more to it from the backend. */
  stop(): void {
    this.stopped = true;
    this.client.removeAllListeners('data');
  }

  /** Pause or resume both sides after a buffer filled or drained. */
  flow(): void {
    if (this.stopped || this.client.destroyed) return;
    if (this.reading) {
      if (this.backendFull || (this.o.clientEchoes && this.clientFull)) this.client.pause();
      else this.client.resume();
    }
    if (this.clientFull) this.backend.pause();
    else this.backend.resume();
  }
}
