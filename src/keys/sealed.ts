/**
 * Private keys at rest in a shared store (the fleet's etcd, docs/fleet.md):
 * sealed with AES-256-GCM under a key-encryption key (KEK) that only the
 * echgate instances hold, so etcd (its disks, backups, anyone with read
 * access) never sees an ECH private key in clear.
 *
 * - A fresh 96-bit random nonce per seal (NIST SP 800-38D §8.2.2: random
 *   nonces are safe far beyond the few hundred seals a fleet ever makes).
 * - The associated data binds the ciphertext to its key record: a label, the
 *   config_id and the ECHConfigList it belongs to. A sealed key copied onto
 *   another record does not open.
 * - Every sealed key names the KEK's id (a hash of the KEK, not the KEK), so
 *   a wrong KEK is told apart from a damaged record before any write:
 *   ERR_KEK, and the caller writes nothing.
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { EchgateError } from '../errors.js';

export const KEK_BYTES = 32;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const LABEL = 'echgate ech private key v1';

export interface SealedKey {
  /** kekId() of the KEK it is sealed with. */
  kek: string;
  /** base64 of nonce (12) || ciphertext || tag (16). */
  box: string;
}

/**
 * The KEK from the text of a file or an environment variable: 64 hex digits
 * or base64 of 32 bytes (`openssl rand -hex 32`), surrounding white space ignored.
 */
export function parseKek(text: string, from: string): Uint8Array {
  const t = text.trim();
  let k: Buffer | undefined;
  if (/^[0-9a-fA-F]{64}$/.test(t)) k = Buffer.from(t, 'hex');
  else if (/^[A-Za-z0-9+/]{43}=$/.test(t)) k = Buffer.from(t, 'base64');
  if (!k || k.length !== KEK_BYTES) throw new EchgateError('ERR_KEK', `${from}: a key-encryption key is 32 bytes, written as 64 hex digits or base64 (openssl rand -hex 32)`);
  return new Uint8Array(k);
}

/** A short public id of a KEK (SHA-256 of a label and the KEK, 8 bytes hex): names it in records and errors, reveals nothing. */
export function kekId(kek: Uint8Array): string {
  return createHash('sha256').update('echgate kek id\0').update(kek).digest('hex').slice(0, 16);
}

function aad(configId: number, echConfigList: Uint8Array): Buffer {
  return Buffer.concat([Buffer.from(`${LABEL}\0`), Buffer.from([configId]), Buffer.from(echConfigList)]);
}

function checkKek(kek: Uint8Array): void {
  if (kek.length !== KEK_BYTES) throw new EchgateError('ERR_KEK', `a key-encryption key is ${KEK_BYTES} bytes, not ${kek.length}`);
}

export function sealPrivateKey(kek: Uint8Array, configId: number, echConfigList: Uint8Array, privateKey: Uint8Array, nonce: Uint8Array = randomBytes(NONCE_BYTES)): SealedKey {
  checkKek(kek);
  if (nonce.length !== NONCE_BYTES) throw new EchgateError('ERR_CRYPTO_ARG', 'AES-GCM nonce is 12 bytes');
  const c = createCipheriv('aes-256-gcm', kek, nonce, { authTagLength: TAG_BYTES });
  c.setAAD(aad(configId, echConfigList));
  const ct = Buffer.concat([c.update(privateKey), c.final()]);
  return { kek: kekId(kek), box: Buffer.concat([nonce, ct, c.getAuthTag()]).toString('base64') };
}

/** The private key, or ERR_KEK (another KEK, or a record changed since it was sealed). */
export function openPrivateKey(kek: Uint8Array, configId: number, echConfigList: Uint8Array, sealed: SealedKey): Uint8Array {
  checkKek(kek);
  const mine = kekId(kek);
  if (sealed.kek !== mine) throw new EchgateError('ERR_KEK', `config_id ${configId} is sealed with key-encryption key ${sealed.kek}, this instance has ${mine}: wrong KEK`);
  const box = Buffer.from(sealed.box, 'base64');
  if (box.length < NONCE_BYTES + TAG_BYTES) throw new EchgateError('ERR_KEK', `config_id ${configId}: sealed key too short`);
  const d = createDecipheriv('aes-256-gcm', kek, box.subarray(0, NONCE_BYTES), { authTagLength: TAG_BYTES });
  d.setAAD(aad(configId, echConfigList));
  d.setAuthTag(box.subarray(box.length - TAG_BYTES));
  try {
    return new Uint8Array(Buffer.concat([d.update(box.subarray(NONCE_BYTES, box.length - TAG_BYTES)), d.final()]));
  } catch {
    throw new EchgateError('ERR_KEK', `config_id ${configId}: the sealed key does not open (AES-256-GCM authentication failed: the record was changed, or sealed for another config)`);
  }
}

/** A short digest of an ECHConfigList (SHA-256, 16 bytes, hex): a fleet instance names the key it holds under a config_id that may have held another (fleet/records.ts configs). */
export function configDigest(list: Uint8Array): string {
  return createHash('sha256').update(list).digest('hex').slice(0, 32);
}
