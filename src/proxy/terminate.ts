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
import { isEchgateError } from '../errors.js';
import { type Output, TlsServer } from '../tls13/server.js';
import type { Classified, EntryContext } from './context.js';

export interface Termination {
  engine: TlsServer;
  /** Records to send first (ServerHello … Finished). */
  first: Uint8Array[];
}

/** Run the server's first flight. Throws an EchgateError carrying `sendAlert` on failure. */
export function startTermination(ctx: EntryContext, cls: Classified, alpn: readonly string[] | undefined, groups?: readonly number[]): Termination {
  const engine = new TlsServer({
    groups,
    provider: nodeProvider,
    random: (n) => nodeProvider.randomBytes(n),
    ephemeral: () => nodeProvider.x25519Generate(),
    certificate: ctx.certificate,
    alpn,
    retryConfigs: ctx.retryConfigs(),
  });
  const out = engine.start(cls.hello, cls.sni || undefined, { offered: cls.echOffered, accepted: cls.ech === 'accepted', decryptSecond: cls.decryptSecond });
  return { engine, first: out.send };
}

/**
 * Wire client ⇄ engine ⇄ backend. `extra` = client bytes that came after the
 * ClientHello. `onFail(alert, err)` is called once when the TLS side fails.
 */
export function relayTerminated(
  client: net.Socket,
  backend: net.Socket,
  engine: TlsServer,
  extra: Uint8Array,
  onFail: (alert: Uint8Array | undefined, err: unknown) => void,
): void {
  let failed = false;
  const failWith = (e: unknown) => {
    if (failed) return;
    failed = true;
    client.removeListener('data', feed);
    onFail(isEchgateError(e) ? (e as { sendAlert?: Uint8Array }).sendAlert : undefined, e);
  };
  const apply = (o: Output) => {
    for (const r of o.send) client.write(r);
    for (const d of o.data) if (!backend.write(d)) client.pause();
    if (o.closed) backend.end();
  };
  function feed(d: Uint8Array) {
    try {
      apply(engine.receive(d));
    } catch (e) {
      failWith(e);
    }
  }
  client.on('data', feed);
  backend.on('drain', () => client.resume());
  client.once('end', () => backend.end());
  const resumeBackend = () => backend.resume();
  backend.on('data', (d: Buffer) => {
    if (failed || client.destroyed) return;
    try {
      let ok = true;
      for (const r of engine.encrypt(d)) ok = client.write(r);
      if (!ok) {
        backend.pause();
        client.once('drain', resumeBackend);
      }
    } catch (e) {
      failWith(e);
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
  client.resume();
}
