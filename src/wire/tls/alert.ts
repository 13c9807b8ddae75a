import { type AlertName, isEchgateError } from '../../errors.js';
import { AlertDescription, ContentType } from './constants.js';

/**
 * The single place that maps an error to the TLS alert we send
 * (RFC 8446 §6.2). Errors that do not name an alert become internal_error;
 * codec errors already carry decode_error or illegal_parameter.
 */
export function alertFor(err: unknown): AlertName {
  if (isEchgateError(err)) {
    if (err.alert) return err.alert;
    switch (err.code) {
      case 'ERR_DECODE':
      case 'ERR_TRAILING':
        return 'decode_error';
      case 'ERR_DUPLICATE':
      case 'ERR_ILLEGAL':
      case 'ERR_ECH_INNER':
        return 'illegal_parameter';
      case 'ERR_PEEK_TOO_LARGE':
        return 'record_overflow';
      default:
        return 'internal_error';
    }
  }
  return 'internal_error';
}

/** A plaintext fatal alert record (level 2). Sent before the handshake is encrypted. */
export function encodeAlertRecord(name: AlertName): Uint8Array {
  return new Uint8Array([ContentType.alert, 0x03, 0x03, 0x00, 0x02, 2, AlertDescription[name]]);
}

/** "112 (unrecognized_name)": an alert number as people read it. */
export function describeAlert(code: number | undefined): string {
  const name = Object.entries(AlertDescription).find(([, v]) => v === code)?.[0];
  return name ? `${code} (${name})` : String(code);
}
