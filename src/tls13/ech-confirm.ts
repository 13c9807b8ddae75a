/**
 * RFC 9849 §7.2 and §7.2.1: the ECH accept confirmations. In ServerHello, the
 * last 8 bytes of its random; in HelloRetryRequest, the 8-byte payload of its
 * encrypted_client_hello extension:
 *   HKDF-Expand-Label(HKDF-Extract(0, ClientHelloInner.random), LABEL,
 *                     Hash(transcript .. the message with those 8 bytes zeroed), 8)
 * with LABEL "ech accept confirmation" or "hrr ech accept confirmation".
 * Shared by the server (to set it) and the client (to check it).
 */
import type { CryptoProvider, HashName } from '../crypto/provider.js';
import { HASH_SIZE } from '../crypto/provider.js';
import { expandLabel } from './key-schedule.js';
import type { Transcript } from './transcript.js';

/** Offset of the confirmation in a ServerHello handshake message: header 4, version 2, random[24..32]. */
export const ECH_CONFIRMATION_AT = 4 + 2 + 24;

/** HKDF-Extract's "0" salt (RFC 8446 §7.1: a string of Hash.length zero bytes), per hash: read-only, shared. */
const ZERO_SALT: Record<HashName, Uint8Array> = { sha256: new Uint8Array(HASH_SIZE.sha256), sha384: new Uint8Array(HASH_SIZE.sha384), sha512: new Uint8Array(HASH_SIZE.sha512) };

function confirmation(p: CryptoProvider, hash: HashName, innerRandom: Uint8Array, before: Transcript, message: Uint8Array, at: number, label: string): Uint8Array {
  const prk = p.hmac(hash, ZERO_SALT[hash], innerRandom);
  return expandLabel(p, hash, prk, label, before.hashWithZeroed(message, at, 8), 8);
}

/** For a ServerHello message; `throughInnerHello` ends with ClientHelloInner. */
export function echAcceptConfirmation(p: CryptoProvider, hash: HashName, innerRandom: Uint8Array, throughInnerHello: Transcript, serverHello: Uint8Array): Uint8Array {
  return confirmation(p, hash, innerRandom, throughInnerHello, serverHello, ECH_CONFIRMATION_AT, 'ech accept confirmation');
}

/** For a HelloRetryRequest whose ECH extension payload starts at `at`; `before` is message_hash(ClientHelloInner1). */
export function hrrEchConfirmation(p: CryptoProvider, hash: HashName, innerRandom: Uint8Array, before: Transcript, hrr: Uint8Array, at: number): Uint8Array {
  return confirmation(p, hash, innerRandom, before, hrr, at, 'hrr ech accept confirmation');
}
