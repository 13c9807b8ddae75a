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
// this tag on the socket it was called on. Events that fire once anyway
// (end, close) use on(), not once().
const RELAY = Symbol('echgate.relay');
type Tagged = { [RELAY]?: Relay };
const relayOf = (s: net.Socket) => (s as Tagged)[RELAY]!;

function onBackendEnd(this: net.Socket): void {
  relayOf(this).backendEnded();
}
function onBackendClose(this: net.Socket): void {
  relayOf(this).backendClosed();
}
function onClientEnd(this: net.Socket): void {
  relayOf(this).clientEnded();
}
function onClientData(this: net.Socket, d: Buffer): void {
  relayOf(this).toBackend1(d);
}
function onClientDrain(this: net.Socket): void {
  const r = relayOf(this);
  r.clientFull = false;
  r.flow();
}
function onBackendDrain(this: net.Socket): void {
  const r = relayOf(this);
  r.backendFull = false;
  r.flow();
}

export interface RelayOptions {
  /** Backend bytes → what the client gets (new buffers); absent: the bytes as they are. */
  fromBackend?: (chunk: Uint8Array) => Uint8Array[];
  /** Reading the client can produce writes to the client (see the backpressure rule). */
  clientEchoes?: boolean;
  /** The backend's EOF; default: end the client. */
  onBackendEnd?: () => void;
}

export class Relay {
  readonly backend: net.Socket;
  /** The private read buffer, once the backend has sent a large read (`bulk`). */
  private buf: Buffer | undefined;
  private bulk = false;
  /** Set when write() returned false, cleared by that socket's 'drain' (onClientDrain, onBackendDrain). */
  clientFull = false;
  backendFull = false;
  private reading = false;
  private stopped = false;

  /**
   * Connect to the backend with the backend → client half already wired, so
   * not even a server-first greeting can arrive before the relay is in place.
   */
  constructor(
    private readonly client: net.Socket,
    target: BackendTarget,
    private readonly o: RelayOptions = {},
  ) {
    this.backend = net.connect({
      host: target.host,
      port: target.port,
      allowHalfOpen: true,
      noDelay: true,
      onread: {
        // Called when the handle is set up and after every read: the buffer for the next read.
        buffer: () => {
          // A transform (TLS termination seals the chunk into new records) consumes the chunk inside
          // the callback, so it never needs a private buffer: a terminated connection that carried bulk
          // data and then idles holds none (≈ 64 KiB each; docs/benchmarks.md, "Termination cost, fourth pass").
          if (!this.bulk || o.fromBackend) return shared;
          this.buf ??= acquire();
          return this.buf;
        },
        callback: (n: number, b: Uint8Array): boolean => {
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
        },
      },
    });
    (this.backend as Tagged)[RELAY] = this;
    (client as Tagged)[RELAY] = this;
    this.backend.on('end', onBackendEnd);
    this.backend.on('close', onBackendClose);
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
    // Not twice: TLS termination already ended the backend on close_notify, and a second end()
    // builds an ERR_STREAM_ALREADY_FINISHED with its stack (1–2 % of a terminated connection's CPU).
    if (!this.stopped && !this.backend.writableEnded) this.backend.end();
  }

  /** Bytes for the client, in one write. */
  toClient(chunks: readonly Uint8Array[]): void {
    if (chunks.length === 0 || this.client.destroyed) return;
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
   * backend as it is); the client's EOF ends the backend.
   */
  readClient(onData?: (d: Buffer) => void): void {
    this.reading = true;
    this.client.on('data', onData ?? onClientData);
    this.client.on('end', onClientEnd);
    this.flow();
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
