/**
 * RFC 9849 §7.2: the ECH accept confirmation, the last 8 bytes of
 * ServerHello.random =
 *   HKDF-Expand-Label(HKDF-Extract(0, ClientHelloInner.random), "ech accept confirmation",
 *                     Hash(ClientHelloInner .. ServerHello with those 8 bytes zeroed), 8)
 * Shared by the server (to set it) and the client (to check it).
 */
import { copy } from '../bytes/util.js';
import type { CryptoProvider, HashName } from '../crypto/provider.js';
import { HASH_SIZE } from '../crypto/provider.js';
import { expandLabel } from './key-schedule.js';
import type { Transcript } from './transcript.js';

/** Offset of the confirmation in a ServerHello handshake message: header 4, version 2, random[24..32]. */
export const ECH_CONFIRMATION_AT = 4 + 2 + 24;

export function echAcceptConfirmation(p: CryptoProvider, hash: HashName, innerRandom: Uint8Array, throughInnerHello: Transcript, serverHello: Uint8Array): Uint8Array {
  const zeroed = copy(serverHello);
  zeroed.fill(0, ECH_CONFIRMATION_AT, ECH_CONFIRMATION_AT + 8);
  const t = throughInnerHello.fork();
  t.add(zeroed);
  const prk = p.hmac(hash, new Uint8Array(HASH_SIZE[hash]), innerRandom);
  return expandLabel(p, hash, prk, 'ech accept confirmation', t.hash(), 8);
}
