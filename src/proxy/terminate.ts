/**
 * TLS termination on echgate's own TLS 1.3 engine (tls13/server.ts): the
 * client's records go through the engine, plaintext goes to the backend, and
 * the backend's bytes come back as protected records, over proxy/relay.ts
 * (its backpressure rule with `clientEchoes`: reading the client can make
 * records for the client). close_notify and EOF are mapped onto each other.
 *
 * Nothing thrown here may escape into an event handler: a bad record ends
 * this connection with an alert, an unexpected error ends it without one, and
 * the process goes on.
 */
import type net from 'node:net';
import { concat } from '../bytes/util.js';
import type { TlsOptions } from '../config/types.js';
import { nodeProvider } from '../crypto/node.js';
import { type AlertName, EchgateError, isEchgateError } from '../errors.js';
import { type Output, TlsServer } from '../tls13/server.js';
import { describeAlert, encodeAlertRecord } from '../wire/tls/alert.js';
import { ExtensionType } from '../wire/tls/constants.js';
import { encodeServerEncryptedSNI } from '../wire/tls/esni.js';
import type { Classified, EntryContext } from './context.js';
import type { Conn, Handler } from './handler.js';
import { type Relay, type RelayOptions, relayOptionsOf } from './relay.js';
import { type DeadlineEntry, type DeadlineList, Deadlines } from './deadlines.js';
import { restrictSuites } from './tls12.js';

export interface Termination {
  engine: TlsServer;
  /** The engine's answer to the ClientHello: records to send first (ServerHello … Finished), or a failure with its alert record. */
  first: Output;
}

// One pair for every connection (each engine keeps its options for the connection's lifetime).
const random = (n: number) => nodeProvider.randomBytes(n);
const ephemeral = () => nodeProvider.x25519Generate();

/** Run the server's first flight. A failure is in `first.error`/`first.alert`, never thrown for client input. */
export function startTermination(ctx: EntryContext, cls: Classified, alpn: readonly string[] | undefined, groups?: readonly number[]): Termination {
  const engine = new TlsServer({
    groups,
    provider: nodeProvider,
    random,
    ephemeral,
    certificate: ctx.certificate,
    alpn,
    retryConfigs: ctx.retryConfigs(),
    maxClientHelloBytes: ctx.ep.maxClientHelloBytes,
    // ESNI Shared Mode (draft-02 §5.2): the nonce goes back in EncryptedExtensions.
    extraEncryptedExtensions: cls.esni ? [{ type: ExtensionType.encrypted_server_name, data: encodeServerEncryptedSNI(cls.esni.nonce) }] : undefined,
  });
  const out = engine.start(cls.hello, cls.sni || undefined, { offered: cls.echOffered, accepted: cls.ech === 'accepted' && !cls.esni, decryptSecond: cls.decryptSecond });
  return { engine, first: out };
}

/** A terminating router, client offering TLS 1.3: the engine answers, the backend gets plaintext. */
export function terminateHandler(cls: Classified, opts: TlsOptions, alpn: readonly string[] | undefined): Handler {
  return {
    answer: 'tls1.3',
    start(c) {
      let term: Termination;
      try {
        term = startTermination(c.ctx, opts.suites13 ? { ...cls, hello: restrictSuites(cls.hello, opts.suites13) } : cls, alpn, opts.groups);
      } catch (e) {
        // Never let an unexpected error take the process down: end this connection and say why.
        c.internalError(e, 'internal error starting TLS');
        return c.fail('tls_handshake', encodeAlertRecord('internal_error'));
      }
      const first = term.first;
      if (first.error !== undefined) {
        if (!isEchgateError(first.error)) c.internalError(first.error, 'internal error starting TLS');
        return c.fail('tls_handshake', first.send.length ? concat(...first.send) : undefined, first.alert, first.error);
      }
      runEngine(c, term.engine, first.send);
    },
  };
}

/**
 * Wire client ⇄ engine ⇄ backend. The handshake goes on while the backend
 * connects; plaintext waits in the backend socket's queue. A handshake not
 * complete within handshakeTimeout fails with ERR_HANDSHAKE_TIMEOUT and no
 * alert; a client error alert (RFC 8446 §6.2) ends it with nothing sent.
 */
function runEngine(c: Conn, engine: TlsServer, flight: Uint8Array[]): void {
  new Terminated(c, engine).begin(c, flight);
}

/** A callback's exception, handed to the connection's guard (only on that path does it allocate). */
const rethrow = (e: unknown): void => {
  throw e;
};

/**
 * The socket → its Terminated, for the listeners below: shared by every
 * connection (no closure per socket). The Terminated is its relay's options,
 * found through the relay's one OWNER tag: a second tag on the socket gave
 * node's stream code another socket shape (relay.ts).
 */
const termOf = (s: net.Socket) => relayOptionsOf(s) as Terminated;

function onTermData(this: net.Socket, d: Buffer): void {
  termOf(this).feed(d);
}
/** The client's EOF before its Finished (RFC 8446 §4.4.4): the handshake can no longer complete. */
function onTermEnd(this: net.Socket): void {
  termOf(this).clientEnded();
}
function onTermClose(this: net.Socket): void {
  termOf(this).clientClosed();
}

/**
 * handshakeTimeout without a node timer per connection: the connection waits
 * in one deadline list per duration whose timer is not cleared when the list
 * empties (proxy/deadlines.ts: nearly every handshake leaves its list
 * long before the deadline). A Timeout, its callback and a `once('close')`
 * wrapper per connection were ≈ 5 objects and a timer-list insert each
 * (docs/benchmarks.md, "Termination handshake, eighth pass"). Exported for tests.
 */
export const handshakeDeadlines = new Deadlines((e) => (e as Terminated).timedOut());

/**
 * One terminated connection: the engine between the relay's two sides. One
 * object with methods, not a closure per callback: the relay calls
 * `fromBackend` and `onBackendEnd` on this object as its RelayOptions, the
 * client's listeners find it through a tag on the socket, and it is the
 * handshake deadline's list entry.
 *
 * It takes from `c` only the functions it calls, never `c` itself: `c` holds
 * the ClientHello, its decoded form and the peeked bytes, ≈ 2 KiB of heap per
 * idle terminated connection (docs/benchmarks.md, "Termination cost, fourth
 * pass"). Those three functions are closures over the connection that do not
 * use `this` (HandlerConn in proxy/connection.ts), so they work taken apart.
 */
class Terminated implements RelayOptions, DeadlineEntry {
  readonly clientEchoes = true;
  private readonly client: net.Socket;
  private readonly guard: Conn['guard'];
  private readonly handshakeFailed: Conn['handshakeFailed'];
  private readonly internalError: Conn['internalError'];
  private relay!: Relay;
  private failed = false;
  /** The client's Finished was verified (engine.established turns false again once the connection closes). */
  private handshakeDone: boolean;
  /** Sealed buffers in the client's write queue, handed back to the spares on 'drain'. */
  private queued: Uint8Array[] | undefined;
  /** The handshake deadline (DeadlineEntry; proxy/deadlines.ts). */
  dlAt = 0;
  dlPrev: DeadlineEntry | undefined = undefined;
  dlNext: DeadlineEntry | undefined = undefined;
  dlList: DeadlineList | undefined = undefined;
  private readonly deadlineMs: number;

  constructor(
    c: Conn,
    private readonly engine: TlsServer,
  ) {
    this.client = c.socket;
    this.guard = c.guard;
    this.handshakeFailed = c.handshakeFailed;
    this.internalError = c.internalError;
    this.handshakeDone = engine.established;
    this.deadlineMs = c.ctx.ep.handshakeTimeoutMs;
  }

  /** `flight`: the server's first flight (ServerHello … Finished). */
  begin(c: Conn, flight: Uint8Array[]): void {
    const client = this.client;
    this.relay = c.connect(client, this, noop);
    // Through the relay, in one write (relay.ts writeAll; separate writes were a quarter of a handshake's
    // CPU), so that write() returning false (a flight over the socket's 16 KiB mark) marks the client full.
    this.relay.toClient(flight);
    if (this.deadlineMs > 0 && !this.engine.established) {
      handshakeDeadlines.list(this.deadlineMs).add(this);
      // A client that goes away mid-handshake (a reset, no EOF) leaves the list at once, not at its deadline.
      client.on('close', onTermClose);
    }
    // Without this the connection, its maxConnections slot and its backend connection stayed until
    // handshakeTimeout (docs/robustness.md, "a client that closes during the handshake").
    // 'end' comes after the last 'data', so a Finished sent just before the FIN is read first.
    if (!this.handshakeDone) client.on('end', onTermEnd);
    this.relay.readClient(onTermData);
    if (c.rest.length) this.feed(c.rest);
  }

  /** Called once when the TLS side fails: `records` are what is still to be sent (ending with our alert). */
  private failWith(records: Uint8Array[], err: unknown, alert?: AlertName, peerAlert?: number): void {
    if (this.failed) return;
    this.failed = true;
    try {
      this.dlList?.remove(this);
      this.relay.stop();
      const timedOut = isEchgateError(err) && err.code === 'ERR_HANDSHAKE_TIMEOUT';
      // After the client's Finished it is the session that failed, not the handshake (audit s12 gap 3).
      this.handshakeFailed(timedOut ? 'handshake_timeout' : this.handshakeDone ? 'tls_session' : 'tls_handshake', records.length ? alert : undefined, err, peerAlert);
      if (!isEchgateError(err)) this.internalError(err, 'internal error in TLS termination');
      if (records.length) this.client.end(concat(...records));
      else this.client.destroy();
      this.relay.backend.destroy();
    } catch (e) {
      // Never into the event loop: the connection's guard ends it as handler_error.
      this.guard(rethrow)(e);
    }
  }

  private apply(o: Output): void {
    if (o.peerAlert !== undefined) return this.failWith([], new EchgateError('ERR_ILLEGAL', `client sent alert ${describeAlert(o.peerAlert)}`, { reason: 'client_alert' }), undefined, o.peerAlert);
    if (o.error !== undefined) return this.failWith(o.send, o.error, o.alert);
    if (o.established) {
      this.handshakeDone = true;
      this.dlList?.remove(this);
    }
    this.relay.toClient(o.send);
    this.relay.toBackend(o.data);
    if (o.closed) this.relay.backend.end();
  }

  /** The client's bytes. */
  feed(d: Uint8Array): void {
    if (this.failed) return;
    try {
      this.apply(this.engine.receive(d));
    } catch (e) {
      // receive() turns client input errors into an Output; this is a bug, not the client.
      this.failWith([], e);
    }
  }

  /** RelayOptions.fromBackend: the backend's bytes, sealed and written here (the relay gets nothing back). */
  fromBackend(d: Uint8Array): Uint8Array[] {
    if (this.failed) return [];
    try {
      // Seal into one of the process's spare buffers when there is one, and write the records here,
      // so that right after the write we know when the buffer is free again (see spares).
      const into = spares.pop();
      const out = this.engine.encrypt(d, into);
      this.relay.toClient(out);
      const b = out[0];
      const reused = b !== undefined && into !== undefined && b.buffer === into.buffer;
      if (into && !reused) spares.push(into);
      const whole = reused ? into : b;
      if (whole && whole.byteLength >= SEALED_KEEP) {
        if (this.client.writableLength === 0) {
          // The write completed inside write(): nothing references the records' buffer any more.
          spareSeal(whole);
        } else {
          // Queued: the buffer is free once the queue has drained (every write of it completed).
          // write() returned false for a queued write this large, so 'drain' will come.
          if (!this.queued) {
            const held: Uint8Array[] = [];
            this.queued = held;
            this.client.on('drain', () => {
              for (const q of held) spareSeal(q);
              held.length = 0;
            });
          }
          this.queued.push(whole);
        }
      }
      return [];
    } catch (e) {
      this.failWith([], e);
      return [];
    }
  }

  /** RelayOptions.onBackendEnd. */
  onBackendEnd(): void {
    if (this.failed) return;
    const client = this.client;
    // RFC 8446 §6.1: we MUST send close_notify before closing our write side, even when the
    // client has already sent its FIN: a client that half-closed still reads.
    if (!client.writable) return void client.destroy();
    try {
      endWithoutStack(client, this.engine.alert('close_notify'));
    } catch {
      client.end();
    }
  }

  clientEnded(): void {
    if (!this.handshakeDone) this.failWith([], new EchgateError('ERR_ILLEGAL', 'client closed its side during the TLS handshake', { reason: 'client_closed' }));
  }

  clientClosed(): void {
    this.dlList?.remove(this);
  }

  /** The handshake deadline passed (the list has already let go of this entry). */
  timedOut(): void {
    if (this.handshakeDone || this.failed) return;
    this.failWith([], new EchgateError('ERR_HANDSHAKE_TIMEOUT', `TLS handshake not complete after ${this.deadlineMs} ms`));
  }
}

function noop(): void {}

/** A sealed buffer this large (a full 64 KiB read as four records) is kept for reuse; small ones are not. */
const SEALED_KEEP = 64 * 1024;

/**
 * Buffers for the whole process to seal backend reads into (the rule
 * relay.ts uses for its shared read buffer): after a read's records were
 * written, the buffer is free again when that write completed inside write()
 * (the client's write queue is empty: no pending write references it), or,
 * for a write that was queued, when the client's queue drained. The next
 * read of any terminated connection seals into a spare. So a connection
 * that has carried bulk data and then idles holds no 64 KiB buffer of its
 * own (it did before: ≈ 65 KiB per connection that once read a full chunk;
 * docs/benchmarks.md, "Termination cost, fourth pass"), and a client slower
 * than its backend does not make every read allocate a new 64 KiB buffer
 * that outlives two scavenges and is left for a full collection ("Cost,
 * fifth pass"). Reads run one at a time on the event loop, so no two
 * connections seal into one spare at once. At most SPARES_MAX are kept.
 */
const spares: Uint8Array[] = [];
const SPARES_MAX = 4;
function spareSeal(b: Uint8Array): void {
  if (spares.length < SPARES_MAX) spares.push(b);
}

/**
 * `socket.end(last)` where a failing write costs no stack trace. A client
 * that has already gone (s_time and most clients close right after their
 * close_notify, often with a RST) makes this write fail with EPIPE
 * synchronously, and Node builds the ErrnoException and formats its stack
 * on the spot (onwrite reads `err.stack`): ≈ 2.5 % of a terminated
 * connection's CPU in the profile in docs/benchmarks.md. The error only
 * destroys the socket (connection.ts), nothing logs its stack, so it is
 * made with none. The limit is restored before anything else runs: errors
 * are emitted on a later tick.
 */
export function endWithoutStack(socket: { end(b: Uint8Array): unknown }, last: Uint8Array): void {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    socket.end(last);
  } finally {
    Error.stackTraceLimit = limit;
  }
}
