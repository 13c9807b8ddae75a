/**
 * The client-facing server answers for its own public names (RFC 9849
 * §6.1.6, §7.1). When ECH was rejected — a stale or unknown key, GREASE, a
 * payload that does not open — the connection goes on with ClientHelloOuter,
 * whose SNI is the public_name of the client's ECHConfig. If no router takes
 * that name, echgate completes the handshake itself on its TLS 1.3 engine,
 * with a certificate that covers the public name, and sends retry_configs in
 * EncryptedExtensions. A real ECH client authenticates the public name
 * (§6.1.7), keeps the retry configs and aborts with ech_required; it then
 * reconnects with the new keys (§6.1.6).
 *
 * There is no backend behind such a connection. A client that does not abort
 * (one that sent only GREASE ECH: it ignores retry_configs, §6.2) gets a fatal
 * unrecognized_name alert as soon as its Finished is in, protected under the
 * application keys: the same answer a name without a router gets during the
 * handshake (RFC 6066 §3), so the client reports why, rather than a bare
 * close_notify that looks like an empty reply.
 *
 * A router that matches the public name always wins (the caller only comes
 * here when none did): the public name may be a real site for clients
 * without ECH.
 */
import { concat } from '../bytes/util.js';
import { type AlertName, isEchgateError } from '../errors.js';
import { encodeAlertRecord } from '../wire/tls/alert.js';
import { certificateCovers } from './certificates.js';
import type { Classified, EntryContext } from './context.js';
import type { Handler } from './handler.js';
import { writeAll } from './relay.js';
import { startTermination } from './terminate.js';

/** The access line's reasons (proxy/connection.ts failureReason) for the ends the engine does not name. */
const PUBLIC_NAME_TIMEOUT = { code: 'handshake_timeout' };
const CLIENT_CLOSED = { code: 'client_closed' };

/**
 * The handler that runs the handshake for a public name, or undefined when no
 * certificate covers the name (the caller refuses the name as before, having
 * sent nothing). The connection ends as `public_name` when the client got
 * through the handshake (retry_configs delivered), `tls_alert` when it did not.
 */
export function publicNameHandler(ctx: EntryContext, cls: Classified): Handler | undefined {
  const cert = ctx.certificate(cls.sni);
  if (!cert || !certificateCovers(cert.names, cls.sni)) return undefined;
  return {
    answer: 'public_name',
    start(c) {
      const socket = c.socket;
      let over = false;
      let handshook = false;
      let deadline: NodeJS.Timeout | undefined;
      const end = (r: 'answered' | 'failed', last?: Uint8Array, alert?: AlertName, why?: unknown, peerAlert?: number) => {
        if (over) return;
        over = true;
        clearTimeout(deadline);
        socket.removeListener('data', onData);
        if (socket.writable) {
          if (last) socket.end(last);
          else socket.end();
          // Keep draining so unread client bytes do not turn the close into a RST that overtakes the alert.
          socket.resume();
          setTimeout(() => socket.destroy(), 2000).unref();
        } else socket.destroy();
        if (r === 'failed') c.handshakeFailed('tls_handshake', last ? alert : undefined, why, peerAlert);
        c.finish(r === 'answered' ? 'public_name' : 'tls_alert');
      };
      /** The engine failed the connection (its alert record ends `records`) or threw an internal error. */
      const failWith = (e: unknown, records?: Uint8Array[], alert?: AlertName) => {
        if (!isEchgateError(e)) ctx.limiter.log(ctx.log, 'warn', { entrypoint: ctx.ep.name, err: String(e) }, 'internal error answering for an ECH public name');
        end('failed', records ? (records.length ? concat(...records) : undefined) : encodeAlertRecord('internal_error'), records ? alert : 'internal_error', e);
      };

      let term: ReturnType<typeof startTermination>;
      try {
        // No router, so no ALPN list: the engine negotiates none.
        term = startTermination(ctx, cls, undefined);
      } catch (e) {
        failWith(e);
        return;
      }
      // The client has as long for the rest of its handshake as it had for its hello.
      deadline = setTimeout(
        c.guard(() => end('failed', undefined, undefined, PUBLIC_NAME_TIMEOUT)),
        ctx.ep.clientHelloTimeoutMs,
      );
      const feed = (d: Uint8Array) => {
        if (over) return;
        try {
          const out = term.engine.receive(d);
          if (out.error !== undefined) return failWith(out.error, out.send, out.alert);
          if (out.send.length) writeAll(socket, out.send);
          // The client aborted: ech_required right after its Finished is the expected end (§6.1.6).
          if (out.established) handshook = true;
          if (out.closed) return end(handshook ? 'answered' : 'failed', undefined, undefined, handshook ? undefined : CLIENT_CLOSED, out.peerAlert);
          // Application data (a GREASE client's request) has nowhere to go: dropped.
          if (out.established) return end('answered', term.engine.alert('unrecognized_name'));
        } catch (e) {
          failWith(e);
        }
      };
      const onData = c.guard(feed);
      if (term.first.error !== undefined) return failWith(term.first.error, term.first.send, term.first.alert);
      // The first flight in one write.
      writeAll(socket, term.first.send);
      socket.on('data', onData);
      socket.once(
        'end',
        c.guard(() => end(handshook ? 'answered' : 'failed', undefined, undefined, handshook ? undefined : CLIENT_CLOSED)),
      );
      if (c.rest.length) feed(c.rest);
      socket.resume();
    },
  };
}
