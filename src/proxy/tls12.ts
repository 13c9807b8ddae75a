/**
 * Which TLS stack terminates a connection, and the TLS 1.2 one.
 *
 * Every ClientHello that offers TLS 1.3 (RFC 8446 §4.2.1 supported_versions)
 * goes to echgate's own TLS 1.3 engine, ECH or not, so there is one code path
 * for ECH (RFC 9849 is TLS 1.3 only; Node's OpenSSL cannot accept ECH). A
 * client whose best version is TLS 1.2 — older database drivers, Java 8,
 * embedded devices — or one whose router's tls.options stop at TLS 1.2 is
 * handed to node:tls: the peeked ClientHello bytes are pushed back into the
 * socket (`unshift`) and a server-side `tls.TLSSocket` is built over it; on
 * construction it reads what the socket has buffered before the handle, so
 * OpenSSL sees the hello exactly as the client sent it. (Measured on Node
 * 20.20: this and emitting 'connection' on a tls.Server after the unshift both
 * complete `openssl s_client -tls1_2`; the TLSSocket is built directly so the
 * certificate and options chosen from the peeked hello apply, with no
 * SNICallback round trip.)
 */
import { createSecureContext, type SecureContext, TLSSocket } from 'node:tls';
import type net from 'node:net';
import type { TlsOptions } from '../config/types.js';
import { type AlertName, EchgateError, isEchgateError } from '../errors.js';
import { opensslCurves } from '../config/tls-options.js';
import { type LoadedCertificate, otherKindsFor } from '../tls13/certs.js';
import { type ClientHello, findExtension } from '../wire/tls/client-hello.js';
import { ExtensionType, ProtocolVersion } from '../wire/tls/constants.js';
import { decodeSupportedVersions } from '../wire/tls/extensions.js';
import { encodeAlertRecord } from '../wire/tls/alert.js';
import { pemOf } from './certificates.js';
import type { Handler } from './handler.js';
import type { Relay } from './relay.js';

export type VersionChoice = 'tls1.3' | 'tls1.2' | 'protocol_version';

/**
 * RFC 8446 §4.2.1: with supported_versions the client's list is all that
 * counts (legacy_version is ignored); without it, legacy_version is the
 * highest version the client has (RFC 5246 §E.1). An accepted ECH hello
 * never goes to TLS 1.2: ECH is TLS 1.3 only (RFC 9849 §6.1, §7.1).
 * Throws an EchgateError (decode_error) for a malformed supported_versions.
 */
export function chooseVersion(hello: ClientHello, echAccepted: boolean, o: TlsOptions): VersionChoice {
  const sv = findExtension(hello, ExtensionType.supported_versions);
  let offers13 = false;
  let offers12 = false;
  if (sv) {
    for (const v of decodeSupportedVersions(sv.data)) {
      if (v === ProtocolVersion.TLS13) offers13 = true;
      else if (v === ProtocolVersion.TLS12) offers12 = true;
    }
  } else offers12 = hello.legacyVersion >= ProtocolVersion.TLS12;
  if (offers13 && o.maxVersion >= ProtocolVersion.TLS13) return 'tls1.3';
  if (echAccepted) return 'protocol_version';
  if (offers12 && o.minVersion <= ProtocolVersion.TLS12) return 'tls1.2';
  return 'protocol_version';
}

/**
 * The hello the TLS 1.3 engine negotiates with, when tls.options lists TLS
 * 1.3 suites: the same message (its `raw` bytes, which the transcript hashes,
 * are untouched) with the offered suites cut to the allowed ones. The
 * prototype link keeps every other field, including a lazily encoded `raw`.
 */
export function restrictSuites(hello: ClientHello, allowed: readonly number[] | undefined): ClientHello {
  if (!allowed) return hello;
  return Object.create(hello, { cipherSuites: { value: hello.cipherSuites.filter((s) => allowed.includes(s)), enumerable: true } }) as ClientHello;
}

// One secure context per certificate (with the other key kinds for its name) and option set, built on
// first use: createSecureContext parses the key and chain, too slow for every connection. Both keys are
// replaced on reload, so the maps let go of old contexts.
const contexts = new WeakMap<LoadedCertificate, WeakMap<TlsOptions, Map<string, SecureContext>>>();

const certIds = new WeakMap<LoadedCertificate, number>();
let lastCertId = 0;
function certId(c: LoadedCertificate): number {
  let id = certIds.get(c);
  if (id === undefined) {
    id = ++lastCertId;
    certIds.set(c, id);
  }
  return id;
}

function secureContext(cert: LoadedCertificate, others: readonly LoadedCertificate[], o: TlsOptions): SecureContext | undefined {
  let byOpts = contexts.get(cert);
  if (!byOpts) {
    byOpts = new WeakMap();
    contexts.set(cert, byOpts);
  }
  let bySet = byOpts.get(o);
  if (!bySet) {
    bySet = new Map();
    byOpts.set(o, bySet);
  }
  // Which other certificates are in it (cert first, always): '' for the usual single one.
  const id = others.length ? others.map(certId).join(',') : '';
  let sc = bySet.get(id);
  if (!sc) {
    const pem = pemOf(cert);
    if (!pem) return undefined;
    const pems = [pem];
    for (const c of others) {
      const p = pemOf(c);
      if (p) pems.push(p);
    }
    const curves = o.groups ? opensslCurves(o.groups) : undefined;
    sc = createSecureContext({
      // RFC 5246 §7.4.2: the certificate must suit the suite chosen and the client's signature_algorithms.
      // OpenSSL holds one certificate per key kind and picks among them for each hello (otherKindsFor).
      cert: pems.length > 1 ? pems.map((p) => p.cert) : pem.cert,
      key: pems.length > 1 ? pems.map((p) => p.key) : pem.key,
      // Only TLS 1.2 clients come here; capping at 1.2 also keeps OpenSSL from
      // writing the TLS 1.3 downgrade sentinel (RFC 8446 §4.1.3) when a router's options stop at 1.2.
      minVersion: 'TLSv1.2',
      maxVersion: 'TLSv1.2',
      ...(o.ciphers12 ? { ciphers: o.ciphers12.join(':') } : {}),
      ...(curves ? { ecdhCurve: curves } : {}),
      honorCipherOrder: true,
    });
    bySet.set(id, sc);
  }
  return sc;
}

/**
 * Hand `socket` to node:tls as a TLS 1.2 server, replaying `peeked` (every
 * byte read so far, ClientHello first). Returns the TLS socket (plaintext on
 * its side), or undefined when the certificate was not loaded from files
 * here. `onSecure`/`onFail` report the handshake's end; the caller relays.
 */
export function startTls12(
  socket: net.Socket,
  peeked: Uint8Array,
  cert: LoadedCertificate,
  o: TlsOptions,
  alpn: readonly string[] | undefined,
  handshakeTimeoutMs: number,
  onFail: (err: Error) => void,
  sni?: string,
): TLSSocket | undefined {
  const sc = secureContext(cert, otherKindsFor(cert, sni), o);
  if (!sc) return undefined;
  socket.pause();
  socket.unshift(Buffer.from(peeked.buffer, peeked.byteOffset, peeked.byteLength));
  const t = new TLSSocket(socket, { isServer: true, secureContext: sc, requestCert: false, ...(alpn ? { ALPNProtocols: [...alpn] } : {}) });
  let secure = false;
  // OpenSSL has sent its alert (protocol_version, handshake_failure, ...) when 'error' fires during the handshake.
  // The deadline fails with the code the TLS 1.3 path uses (terminate.ts), so both count `handshake_timeout`;
  // 0 is no deadline (configuration.md handshakeTimeout), as there.
  const timer =
    handshakeTimeoutMs > 0
      ? setTimeout(() => t.destroy(new EchgateError('ERR_HANDSHAKE_TIMEOUT', `TLS 1.2 handshake not complete after ${handshakeTimeoutMs} ms`)), handshakeTimeoutMs)
      : undefined;
  t.once('secure', () => {
    secure = true;
    clearTimeout(timer);
  });
  t.on('error', (e) => {
    clearTimeout(timer);
    if (!secure) onFail(e);
    t.destroy();
    socket.destroy();
  });
  t.once('close', () => {
    clearTimeout(timer);
    socket.destroy();
  });
  return t;
}

/**
 * The alert OpenSSL (under node:tls) sent when a TLS 1.2 handshake failed,
 * from the error node:tls reports (`code`: ERR_SSL_ + OpenSSL's reason),
 * for echgate_tls_alerts_sent_total. Only reasons that OpenSSL 3.0's server
 * always ends with one alert are named (its SSLfatal(s, SSL_AD_..., reason)
 * pairs; the first two seen on the wire with openssl s_client, test/tls12-
 * termination.test.ts). Anything else (a reason raised with different alerts
 * in different places, a client's own alert, a reset, the handshake timeout)
 * is not named and not counted: docs/configuration.md lists both.
 */
const NODE_TLS_ALERTS: Record<string, AlertName> = {
  // tls_choose_cipher found no suite both sides accept (RFC 5246 §7.4.1.3).
  ERR_SSL_NO_SHARED_CIPHER: 'handshake_failure',
  // ssl_choose_server_version: the client's versions are all outside min/max (RFC 5246 §E.1, RFC 8446 §4.2.1).
  ERR_SSL_UNSUPPORTED_PROTOCOL: 'protocol_version',
  ERR_SSL_VERSION_TOO_LOW: 'protocol_version',
  // A record whose MAC or AEAD tag does not verify (RFC 5246 §7.2.2).
  ERR_SSL_DECRYPTION_FAILED_OR_BAD_RECORD_MAC: 'bad_record_mac',
};

export function nodeTlsAlert(err: Error): AlertName | undefined {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' && Object.hasOwn(NODE_TLS_ALERTS, code) ? NODE_TLS_ALERTS[code] : undefined;
}

/** A terminating router, client at TLS 1.2: node:tls answers over the peeked bytes, its plaintext side is relayed. */
export function tls12Handler(cert: LoadedCertificate, o: TlsOptions, alpn: readonly string[] | undefined): Handler {
  return {
    answer: 'tls1.2',
    start(c) {
      let relay: Relay | undefined;
      const t = startTls12(
        c.socket,
        c.peeked,
        cert,
        o,
        alpn,
        c.ctx.ep.handshakeTimeoutMs,
        c.guard((err: Error) => {
          if (isEchgateError(err) && err.code === 'ERR_HANDSHAKE_TIMEOUT') c.handshakeFailed('handshake_timeout', undefined, err);
          else c.handshakeFailed('tls_handshake', nodeTlsAlert(err), err);
          relay?.backend.destroy();
        }),
        c.cls?.sni || undefined,
      );
      if (!t) return c.fail('tls_handshake', encodeAlertRecord('internal_error'));
      relay = c.connect(t, {}, (r) => r.readClient());
    },
  };
}
