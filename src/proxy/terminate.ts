/**
 * TLS termination on echgate's own TLS 1.3 engine (tls13/server.ts): the
 * client's records go through the engine, plaintext goes to the backend, and
 * the backend's bytes come back as protected records. Backpressure is kept
 * both ways; close_notify and EOF are mapped onto each other.
 *
 * Nothing thrown here may escape into an event handler: a bad record ends
 * this connection with an alert, an unexpected error ends it without one, and
 * the process goes on.
 */
import type net from 'node:net';
import { nodeProvider } from '../crypto/node.js';
import { EchgateError } from '../errors.js';
import { type Output, TlsServer } from '../tls13/server.js';
import { describeAlert } from '../wire/tls/alert.js';
import type { Classified, EntryContext } from './context.js';

export interface Termination {
  engine: TlsServer;
  /** The engine's answer to the ClientHello: records to send first (ServerHello … Finished), or a failure with its alert record. */
  first: Output;
}

/** Run the server's first flight. A failure is in `first.error`/`first.alert`, never thrown for client input. */
export function startTermination(ctx: EntryContext, cls: Classified, alpn: readonly string[] | undefined, groups?: readonly number[]): Termination {
  const engine = new TlsServer({
    groups,
    provider: nodeProvider,
    random: (n) => nodeProvider.randomBytes(n),
    ephemeral: () => nodeProvider.x25519Generate(),
    certificate: ctx.certificate,
    alpn,
    retryConfigs: ctx.retryConfigs(),
    maxClientHelloBytes: ctx.ep.maxClientHelloBytes,
  });
  const out = engine.start(cls.hello, cls.sni || undefined, { offered: cls.echOffered, accepted: cls.ech === 'accepted', decryptSecond: cls.decryptSecond });
  return { engine, first: out };
}

/**
 * Wire client ⇄ engine ⇄ backend. `extra` = client bytes that came after the
 * ClientHello. `onFail(records, err)` is called once when the TLS side fails:
 * `records` are what is still to be sent (ending with our alert), empty when
 * nothing may be sent (the client sent an error alert, RFC 8446 §6.2; or the
 * handshake deadline passed). A handshake not complete within
 * `handshakeTimeoutMs` (0 = no deadline) fails with ERR_HANDSHAKE_TIMEOUT.
 */
export function relayTerminated(
  client: net.Socket,
  backend: net.Socket,
  engine: TlsServer,
  extra: Uint8Array,
  handshakeTimeoutMs: number,
  onFail: (records: Uint8Array[], err: unknown) => void,
): void {
  let failed = false;
  // Backpressure: stop reading from the client while the backend or the client itself
  // (KeyUpdate answers, alerts, the handshake) has a full write buffer; stop reading
  // from the backend while the client's is full. Each flag clears on its own 'drain'.
  let clientFull = false;
  let backendFull = false;
  const flow = () => {
    if (failed || client.destroyed) return;
    if (clientFull || backendFull) client.pause();
    else client.resume();
    if (clientFull) backend.pause();
    else backend.resume();
  };
  const onClientDrain = () => {
    clientFull = false;
    flow();
  };
  const onBackendDrain = () => {
    backendFull = false;
    flow();
  };
  const toClient = (records: Uint8Array[]) => {
    let ok = true;
    for (const r of records) ok = client.write(r) && ok;
    if (!ok && !clientFull) {
      clientFull = true;
      client.once('drain', onClientDrain);
    }
  };
  const toBackend = (data: Uint8Array) => {
    if (!backend.write(data) && !backendFull) {
      backendFull = true;
      backend.once('drain', onBackendDrain);
    }
  };
  let hsTimer: NodeJS.Timeout | undefined;
  const failWith = (records: Uint8Array[], e: unknown) => {
    if (failed) return;
    failed = true;
    clearTimeout(hsTimer);
    client.removeListener('data', feed);
    onFail(records, e);
  };
  const apply = (o: Output) => {
    if (o.peerAlert !== undefined) {
      return failWith([], new EchgateError('ERR_ILLEGAL', `client sent alert ${describeAlert(o.peerAlert)}`));
    }
    if (o.error !== undefined) return failWith(o.send, o.error);
    if (o.established) clearTimeout(hsTimer);
    toClient(o.send);
    for (const d of o.data) toBackend(d);
    if (o.closed) backend.end();
    flow();
  };
  function feed(d: Uint8Array) {
    try {
      apply(engine.receive(d));
    } catch (e) {
      // receive() turns client input errors into an Output; this is a bug, not the client.
      failWith([], e);
    }
  }
  if (handshakeTimeoutMs > 0 && !engine.established) {
    hsTimer = setTimeout(() => failWith([], new EchgateError('ERR_HANDSHAKE_TIMEOUT', `TLS handshake not complete after ${handshakeTimeoutMs} ms`)), handshakeTimeoutMs);
    client.once('close', () => clearTimeout(hsTimer));
  }
  client.on('data', feed);
  client.once('end', () => backend.end());
  backend.on('data', (d: Buffer) => {
    if (failed || client.destroyed) return;
    try {
      toClient(engine.encrypt(d));
      flow();
    } catch (e) {
      failWith([], e);
    }
  });
  backend.once('end', () => {
    if (failed || client.destroyed) return;
    try {
      client.end(engine.alert('close_notify'));
    } catch {
      client.end();
    }
  });
  if (extra.length) feed(extra);
  if (!failed) flow();
}
