import { type AlertName, type ErrorCode, isEchgateError } from '../../errors.js';
import { AlertDescription } from './constants.js';
import { alertRecord } from './record.js';

/**
 * The one table from error family to the TLS alert we send (RFC 8446 §6.2)
 * when the error carries no alert of its own. Families not listed (limits we
 * enforce that the RFC has no alert for, crypto misuse, I/O) become
 * internal_error; where the RFC names an alert for a check (bad_record_mac
 * for a record that does not deprotect, record_overflow, ...), the check
 * attaches it to the error it raises.
 */
export const ALERT_FOR_CODE: Readonly<Partial<Record<ErrorCode, AlertName>>> = {
  // §6.2: "a message could not be decoded because some field was out of the specified range or the length of the message was incorrect"
  ERR_DECODE: 'decode_error',
  ERR_TRAILING: 'decode_error',
  // §6.2: "a field in the handshake was incorrect or inconsistent with other fields"
  ERR_DUPLICATE: 'illegal_parameter',
  ERR_ILLEGAL: 'illegal_parameter',
  ERR_ECH_INNER: 'illegal_parameter',
  // draft-ietf-tls-esni-02 §5.2 names illegal_parameter for every ESNI check but decryption itself.
  ERR_ESNI: 'illegal_parameter',
  // §5.1: a ClientHello flight over our cap is treated like an over-long record.
  ERR_PEEK_TOO_LARGE: 'record_overflow',
};

/**
 * The single place that maps an error to the TLS alert we send: the alert
 * the error names, else the table above, else internal_error.
 */
export function alertFor(err: unknown): AlertName {
  if (isEchgateError(err)) return err.alert ?? ALERT_FOR_CODE[err.code] ?? 'internal_error';
  return 'internal_error';
}

/** The two bytes of an Alert message (RFC 8446 §6): level 1 for close_notify and user_canceled, 2 (fatal) for every error alert. */
export function alertBody(name: AlertName): Uint8Array {
  return Uint8Array.of(name === 'close_notify' || name === 'user_canceled' ? 1 : 2, AlertDescription[name]);
}

/** A plaintext alert record. Sent before the handshake is encrypted. */
export function encodeAlertRecord(name: AlertName): Uint8Array {
  return alertRecord(alertBody(name));
}

/**
 * RFC 8446 §6.1: close_notify and user_canceled are closure alerts; every
 * other alert, known or not, is an error alert and ends the connection at once.
 */
export function isClosureAlert(description: number): boolean {
  return description === AlertDescription.close_notify || description === AlertDescription.user_canceled;
}

/** The RFC 8446 §6 name of an alert number, or undefined for a number no RFC we implement names. */
export function alertName(code: number): AlertName | undefined {
  return (Object.entries(AlertDescription) as [AlertName, number][]).find(([, v]) => v === code)?.[0];
}

/**
 * The alert a run of plaintext bytes ends with, when its last record is a
 * plaintext alert (content type 21, length 2: what encodeAlertRecord makes);
 * undefined otherwise (an encrypted record, a protocol's own message).
 */
export function trailingAlert(bytes: Uint8Array): AlertName | undefined {
  const n = bytes.length;
  if (n < 7 || bytes[n - 7] !== 21 || bytes[n - 6] !== 3 || bytes[n - 4] !== 0 || bytes[n - 3] !== 2) return undefined;
  return alertName(bytes[n - 1]!);
}

/** "112 (unrecognized_name)": an alert number as people read it. */
export function describeAlert(code: number | undefined): string {
  const name = Object.entries(AlertDescription).find(([, v]) => v === code)?.[0];
  return name ? `${code} (${name})` : String(code);
}
