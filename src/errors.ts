/**
 * The one public error base class. Every error echgate throws on purpose is an
 * EchgateError with a stable `code` (documented in docs/errors.md); callers
 * switch on `code`, never on message text. An error that arose from TLS input
 * may carry the alert (RFC 8446 §6.2) the peer should be sent; `alertFor()`
 * in wire/tls/alert.ts is the single place that turns any error into an alert.
 */
export type ErrorCode =
  // codec
  | 'ERR_DECODE' // malformed or truncated bytes
  | 'ERR_TRAILING' // bytes left over after a complete structure
  | 'ERR_DUPLICATE' // a value that must be unique appeared twice
  | 'ERR_LIMIT' // a named size or count limit was exceeded
  | 'ERR_ENCODE' // a value does not fit its wire field
  | 'ERR_ILLEGAL' // well-formed but forbidden by the protocol
  | 'ERR_NOT_TLS' // the first bytes are not a TLS handshake record
  // crypto
  | 'ERR_CRYPTO_ARG' // a bad key, nonce or length handed to a primitive
  | 'ERR_AEAD_OPEN' // authentication failed
  | 'ERR_HPKE' // HPKE misuse (unsupported suite, sequence overflow, ...)
  // ECH
  | 'ERR_ECH_CONFIG' // an ECHConfig(List) that cannot be used
  | 'ERR_ECH_INNER' // the decrypted ClientHelloInner is malformed
  // ESNI (draft-ietf-tls-esni-02, experimental)
  | 'ERR_ESNI' // an ESNIKeys record or encrypted_server_name extension that cannot be used
  // routing / config
  | 'ERR_RULE' // a rule that does not parse or does not validate
  | 'ERR_CONFIG' // a configuration that does not validate
  // keys
  | 'ERR_KEYSTORE' // a key file that cannot be read or written
  | 'ERR_LOCKED' // the key folder is locked by another process
  | 'ERR_KEY_TRUST' // a key folder or key file others could write (mode, owner): refused whole
  | 'ERR_KEK' // a key-encryption key that is malformed, or not the one the fleet's keys are sealed with
  | 'ERR_FLEET' // the fleet's etcd store is unreachable, or a record in it is malformed
  | 'ERR_TSIG' // a TSIG key that cannot be used, or a response whose TSIG does not verify
  | 'ERR_DNS_UPDATE' // the primary refused or failed a dynamic update (RFC 2136)
  | 'ERR_DNS_READBACK' // DNS does not serve what was published (read back over DoH)
  | 'ERR_DNS_TIMEOUT' // a DoH query or DNS exchange did not complete within its overall deadline
  | 'ERR_DNS_MISMATCH' // a DNS answer that is not the answer to our query (id, QR, opcode or question differ)
  | 'ERR_DNS_ALIAS' // an HTTPS AliasMode chain that loops or is longer than the limit (RFC 9460 §2.4.2)
  | 'ERR_DNS_NO_ADDRESS' // a service name with no A or AAAA record to connect to
  | 'ERR_DOH' // a DoH server the CLI asked could not be reached, or its TLS or HTTP failed (the URL and the code named)
  // proxy
  | 'ERR_PEEK_TIMEOUT'
  | 'ERR_PEEK_TOO_LARGE'
  | 'ERR_HANDSHAKE_TIMEOUT' // a terminated TLS handshake did not complete within the entrypoint's handshakeTimeout
  | 'ERR_USAGE';

/** TLS alert descriptions we send (RFC 8446 §6.2, RFC 6066 §3, RFC 9849 §7). */
export type AlertName =
  | 'bad_record_mac'
  | 'bad_certificate'
  | 'certificate_unknown'
  | 'unknown_ca'
  | 'user_canceled'
  | 'decode_error'
  | 'illegal_parameter'
  | 'unrecognized_name'
  | 'internal_error'
  | 'handshake_failure'
  | 'protocol_version'
  | 'record_overflow'
  | 'unexpected_message'
  | 'missing_extension'
  | 'unsupported_extension'
  | 'decrypt_error'
  | 'ech_required'
  | 'no_application_protocol'
  | 'close_notify';

export class EchgateError extends Error {
  readonly code: ErrorCode;
  readonly alert: AlertName | undefined;
  /**
   * A finer stable token than `code` for why a TLS handshake failed (e.g. `no_common_group`), where the
   * engine knows it: the access line's `reason` (docs/configuration.md, "Access log"). Never connection data.
   */
  readonly reason: string | undefined;

  constructor(code: ErrorCode, message: string, options?: { alert?: AlertName; cause?: unknown; reason?: string }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'EchgateError';
    this.code = code;
    this.alert = options?.alert;
    this.reason = options?.reason;
  }
}

/** A configuration that does not validate: the file and every problem, each with its key path (e.g. `tcp.routers.app.rule`). */
export class ConfigError extends EchgateError {
  readonly file: string;
  readonly problems: { path: string; message: string }[];
  constructor(file: string, problems: { path: string; message: string }[]) {
    super('ERR_CONFIG', `${file}: ${problems.map((p) => `${p.path}: ${p.message}`).join('; ')}`);
    this.file = file;
    this.problems = problems;
  }
}

export function isEchgateError(e: unknown): e is EchgateError {
  return e instanceof EchgateError;
}
