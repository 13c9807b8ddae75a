/**
 * "A protocol preamble, then the ClientHello": entrypoints whose clients
 * negotiate TLS in cleartext first (STARTTLS-style: PostgreSQL's SSLRequest).
 *
 * An entrypoint with `protocol: NAME` runs that protocol's PreambleProtocol
 * (src/proxy/protocols/NAME.ts) on the client's first bytes before the usual
 * peek → classify → route (proxy/connection.ts). The protocol module only
 * parses and builds its own messages; everything with a side effect (answers
 * written, connections refused, logs, the backend side) is here, once, for
 * every protocol. Adding a protocol is one module and its name in
 * config/types.ts PREAMBLE_PROTOCOLS. docs/databases.md has the wire diagrams.
 *
 * Client side (ClientStep):
 *   answer  a reply, keep reading the preamble (PostgreSQL: GSSENCRequest → 'N')
 *   tls     a reply that says "go ahead with TLS"; the next bytes must be a ClientHello
 *   direct  the bytes already are a TLS record (PostgreSQL 17 sslnegotiation=direct)
 *   plain   a cleartext session: a router without `tls` (HostSNI(`*`)) gets the bytes
 *           as they are, else the client gets the protocol's "TLS required" refusal
 *   forward a side request with no name in it (PostgreSQL CancelRequest): sent to
 *           every server reachable from the entrypoint, then the client is closed
 *   refuse  malformed or unsupported: the protocol's error message, then close
 *
 * Backend side (passthrough and split only; a terminating router speaks
 * plaintext to its backend): the protocol's request is written first, its
 * answer checked, and only then is the ClientHello replayed.
 */
import net from 'node:net';
import type { Config, PreambleProtocolName, ServerConfig } from '../config/types.js';
import { concat } from '../bytes/util.js';
import { normalizeIp } from '../bytes/ip.js';
import { encodeProxyV1, encodeProxyV2 } from '../wire/proxy/proxy-protocol.js';
import { encodeAlertRecord } from '../wire/tls/alert.js';
import type { EntryContext } from './context.js';
import type { Conn, Handler } from './handler.js';
import { postgres } from './protocols/postgres.js';

export type ClientStep =
  | { kind: 'more' }
  | { kind: 'answer'; consumed: number; reply: Uint8Array }
  | { kind: 'tls'; consumed: number; reply: Uint8Array }
  | { kind: 'direct' }
  | { kind: 'plain'; refusal: Uint8Array }
  | { kind: 'forward' }
  | { kind: 'refuse'; why: string; reply: Uint8Array };

export type BackendStep = { kind: 'more' } | { kind: 'ok' } | { kind: 'refuse'; why: string };

/** One STARTTLS-style protocol: its messages, no I/O. */
export interface PreambleProtocol {
  readonly name: PreambleProtocolName;
  /** A fresh reader for one client connection's preamble. */
  client(): { step(buf: Uint8Array): ClientStep };
  /** Sent to the backend before the replayed ClientHello. */
  readonly backendRequest: Uint8Array;
  /** Checks the backend's answer to backendRequest (everything it sent so far). */
  backendReply(buf: Uint8Array): BackendStep;
  /** A message for a client that has not started TLS (cleartext). */
  refusal(message: string): Uint8Array;
}

const PROTOCOLS: Record<PreambleProtocolName, PreambleProtocol> = { postgres };

export function preambleProtocol(name: PreambleProtocolName): PreambleProtocol {
  return PROTOCOLS[name];
}

/** What proxy/connection.ts lends the client-side preamble. */
export interface PreambleOps {
  /** Stop the ClientHello deadline and stop reading (the preamble ended the peek). */
  stopPeek(): void;
  /** End the connection with this peek failure, sending `reply` first. */
  fail(reason: 'preamble' | 'tls_required', reply?: Uint8Array): void;
  /** Route the bytes as a non-TLS connection (HostSNI(`*`) without tls), else refuse with `refusal`. */
  routePlain(bytes: Uint8Array, refusal: Uint8Array): void;
  /** The connection is over with this outcome (the socket is closed by the caller of `ops`). */
  setOutcome(o: 'cancel_forwarded'): void;
  clientIp(): string;
}

/**
 * The client side of one connection's preamble. `push` returns the bytes to
 * peek as TLS (a direct ClientHello, or what followed the "go ahead"), or
 * undefined when it handled the chunk itself.
 */
export class ClientPreamble {
  private buf: Uint8Array = new Uint8Array(0);
  private readonly reader: { step(buf: Uint8Array): ClientStep };
  /** True once the client was told to go ahead with TLS: only a ClientHello may follow. */
  tlsAnswered = false;
  done = false;

  constructor(
    private readonly proto: PreambleProtocol,
    private readonly ctx: EntryContext,
    private readonly socket: net.Socket,
    private readonly ops: PreambleOps,
  ) {
    this.reader = proto.client();
  }

  push(chunk: Uint8Array): Uint8Array | undefined {
    this.buf = this.buf.length === 0 ? chunk : concat(this.buf, chunk);
    for (;;) {
      const s = this.reader.step(this.buf);
      switch (s.kind) {
        case 'more':
          return undefined;
        case 'answer':
          this.socket.write(s.reply);
          this.buf = this.buf.subarray(s.consumed);
          if (this.buf.length === 0) return undefined;
          continue;
        case 'tls': {
          this.socket.write(s.reply);
          this.tlsAnswered = true;
          this.done = true;
          const rest = this.buf.subarray(s.consumed);
          this.buf = new Uint8Array(0);
          return rest.length > 0 ? rest : undefined;
        }
        case 'direct': {
          this.done = true;
          const all = this.buf;
          this.buf = new Uint8Array(0);
          return all;
        }
        case 'plain':
          this.done = true;
          this.ops.stopPeek();
          this.ops.routePlain(this.buf, s.refusal);
          return undefined;
        case 'forward':
          this.done = true;
          this.ops.stopPeek();
          this.forward(this.buf);
          return undefined;
        case 'refuse':
          this.done = true;
          this.ops.stopPeek();
          this.log('info', { why: s.why }, 'preamble refused: the client sent what the protocol does not allow here; connection closed');
          this.ops.fail('preamble', s.reply);
          return undefined;
      }
    }
  }

  /** After the "go ahead": the client's next bytes were not a ClientHello. */
  notTls(): void {
    this.log('info', { why: 'expected a TLS ClientHello after the TLS answer' }, 'preamble refused: the client sent what the protocol does not allow here; connection closed');
    this.ops.fail('preamble');
  }

  /** The ClientHello deadline passed: say what was (not) seen, with the likely cause. */
  timedOut(): void {
    if (this.tlsAnswered) this.log('info', {}, 'client asked for TLS and was answered, then sent no ClientHello before clientHelloTimeout; connection closed');
    else this.log('info', { bytes: this.buf.length }, 'incomplete protocol preamble before clientHelloTimeout; connection closed');
  }

  private log(level: 'info' | 'warn', fields: Record<string, unknown>, msg: string): void {
    this.ctx.limiter.log(this.ctx.log, level, { entrypoint: this.ctx.ep.name, protocol: this.proto.name, client: this.ops.clientIp(), ...fields }, msg);
  }

  /**
   * A side request that names no server (PostgreSQL CancelRequest): every
   * server reachable from this entrypoint gets the same bytes on a fresh
   * connection; the one that knows the key acts, the others ignore it. The
   * client is closed once every server has closed (or failed, or timed out),
   * which is what a PostgreSQL client waits for.
   */
  private forward(bytes: Uint8Array): void {
    const targets = this.ctx.preambleTargets ?? [];
    this.ops.setOutcome('cancel_forwarded');
    this.log('info', { servers: targets.length }, 'request without a server name forwarded to every server of the entrypoint');
    let open = targets.length;
    const done = () => {
      if (--open <= 0) this.socket.end();
    };
    if (open === 0) return void this.socket.end();
    const addrs = { srcIp: this.ops.clientIp(), srcPort: this.socket.remotePort ?? 0, dstIp: normalizeIp(this.socket.localAddress), dstPort: this.socket.localPort ?? 0 };
    for (const t of targets) {
      const b = net.connect({ host: t.server.host, port: t.server.port });
      let settled = false;
      const end = () => {
        if (settled) return;
        settled = true;
        b.destroy();
        done();
      };
      b.setTimeout(t.connectTimeoutMs, end);
      b.on('error', end);
      b.on('close', end);
      b.resume();
      if (t.proxyProtocol) b.write(t.proxyProtocol === 1 ? encodeProxyV1(addrs) : encodeProxyV2(addrs));
      b.end(bytes);
    }
  }
}

/** A server a side request is forwarded to. */
export interface PreambleTarget {
  server: ServerConfig;
  proxyProtocol: 0 | 1 | 2;
  connectTimeoutMs: number;
}

/** Every server (distinct host:port) of every router on entrypoint `ep`, weighted services resolved. */
export function reachableServers(cfg: Config, ep: string): PreambleTarget[] {
  const out = new Map<string, PreambleTarget>();
  const visit = (name: string, depth: number) => {
    const s = cfg.services.get(name);
    if (!s || depth > 16) return;
    if (s.kind === 'weighted') for (const w of s.services) visit(w.name, depth + 1);
    else for (const server of s.servers) out.set(`${server.host}:${server.port}`, { server, proxyProtocol: s.proxyProtocol, connectTimeoutMs: s.connectTimeoutMs });
  };
  for (const r of cfg.routers) if (r.entryPoints.includes(ep)) visit(r.service, 0);
  return [...out.values()];
}

/**
 * The backend side for a handler that replays the client's ClientHello
 * (passthrough, split): its connect() writes the protocol's request first and
 * lets the handler go on only after the backend's answer says "go ahead".
 * Until then the backend's bytes are the answer, not for the client.
 */
/** Client bytes held while the backend answers the preamble (proxy/preamble.ts withBackendPreamble): one TLS record's worth. */
const HOLD_MAX = 16 * 1024 + 256;

export function withBackendPreamble(proto: PreambleProtocol, inner: Handler): Handler {
  return {
    ...(inner.answer ? { answer: inner.answer } : {}),
    start(c) {
      const ctx = c.ctx;
      // The handler's Conn with connect() replaced; everything else is the connection's own (read through the prototype).
      const wrapped: Conn = Object.create(c);
      wrapped.connect = (client, opts, onConnect) => {
          let open = false;
          let got: Uint8Array = new Uint8Array(0);
          let timer: NodeJS.Timeout | undefined;
          let refused = false;
          const refuse = (why: string) => {
            refused = true;
            client.removeListener('data', hold);
            clearTimeout(timer);
            relay.stop();
            ctx.metrics.backendErrors.inc({ service: c.logRouter() === c.route?.name ? (c.route?.target.router.service ?? '-') : c.logRouter(), kind: 'preamble' });
            ctx.limiter.log(ctx.log, 'warn', { entrypoint: ctx.ep.name, protocol: proto.name, router: c.logRouter(), why }, 'backend refused the TLS preamble; client closed');
            c.finish('backend_error');
            // The client is already in its TLS handshake (it was told to go ahead before the route was
            // known), so a message of the protocol would reach its TLS stack as garbage (psql: "SSL error:
            // wrong version number"). A fatal handshake_failure alert (RFC 8446 §6.2) is what it can read;
            // the log line says why. docs/databases.md.
            if (client.writable) {
              ctx.metrics.alertsSent.inc({ entrypoint: ctx.ep.name, router: c.metricRouter(), alert: 'handshake_failure' });
              client.end(encodeAlertRecord('handshake_failure'));
              client.resume();
              setTimeout(() => client.destroy(), 2000).unref();
            } else client.destroy();
            relay.backend.destroy();
          };
          const relay = c.connect(
            client,
            {
              ...opts,
              fromBackend: (chunk) => {
                if (open) return opts.fromBackend ? opts.fromBackend(chunk) : [Uint8Array.from(chunk)]; // Relay reuses `chunk`'s buffer: copy
                got = concat(got, chunk);
                const s = proto.backendReply(got);
                if (s.kind === 'more') return [];
                if (s.kind === 'refuse') {
                  refuse(s.why);
                  return [];
                }
                clearTimeout(timer);
                open = true;
                unwatchClient();
                c.guard(onConnect)(relay);
                return [];
              },
            },
            (r) => {
              r.toBackend([proto.backendRequest]);
              timer = setTimeout(
                c.guard(() => refuse('no answer to the TLS request before clientHelloTimeout')),
                ctx.ep.clientHelloTimeoutMs,
              );
            },
          );
          // The client (or anything else) ended the connection first: no refusal to report later.
          relay.backend.once('close', () => clearTimeout(timer));
          // Until the backend has answered, the relay does not read the client, so a client that leaves
          // would not be seen: the deadline would then refuse (count, log) a connection that is gone and
          // hold the backend until clientHelloTimeout. So the client is read meanwhile: its EOF or close ends
          // the wait; the few bytes a client may send before our ServerHello are held and put back for the
          // relay (a TLS client sends nothing more before it; HOLD_MAX bounds one that does, which is then
          // no longer read, as before).
          const held: Buffer[] = [];
          let heldBytes = 0;
          const hold = (d: Buffer) => {
            held.push(d);
            heldBytes += d.length;
            if (heldBytes > HOLD_MAX) client.pause();
          };
          const gone = () => {
            if (open || refused) return;
            unwatchClient();
            clearTimeout(timer);
            relay.stop();
            c.finish('closed');
            client.destroy();
            relay.backend.destroy();
          };
          const unwatchClient = () => {
            client.removeListener('data', hold);
            client.removeListener('end', gone);
            client.removeListener('close', gone);
            client.pause();
            for (let i = held.length - 1; i >= 0; i--) client.unshift(held[i]!);
            held.length = 0;
          };
          client.on('data', hold);
          client.once('end', gone);
          client.once('close', gone);
          client.resume();
          return relay;
      };
      inner.start(wrapped);
    },
  };
}
