/**
 * Which ECHConfigs can be used (RFC 9849 §4, §4.2, §6.1.7). A config that
 * cannot be used is skipped, never an error for the whole list.
 */
import { isSupportedSuite, KEM_X25519_SHA256 } from '../crypto/hpke.js';
import { type ECHConfig, type ECHConfigContents, ECH_VERSION, hasUnknownMandatoryExtension, isValidPublicName } from '../wire/ech/config.js';

export type UnusableReason = 'version' | 'kem' | 'public_key' | 'cipher_suites' | 'mandatory_extension' | 'public_name';

export function unusableReason(c: ECHConfig): UnusableReason | undefined {
  if (c.version !== ECH_VERSION || 'unsupported' in c) return 'version';
  if (c.kemId !== KEM_X25519_SHA256) return 'kem';
  if (c.publicKey.length !== 32) return 'public_key';
  if (!usableSuites(c).length) return 'cipher_suites';
  if (hasUnknownMandatoryExtension(c)) return 'mandatory_extension';
  if (!isValidPublicName(c.publicName)) return 'public_name';
  return undefined;
}

/** Suites we can run for ECH: supported and not export-only (ECH must encrypt). */
export function usableSuites(c: ECHConfigContents) {
  return c.cipherSuites.filter((s) => s.aeadId !== 0xffff && isSupportedSuite(c.kemId, s.kdfId, s.aeadId));
}

export function usableConfigs(list: ECHConfig[]): (ECHConfigContents & { raw: Uint8Array })[] {
  return list.filter((c) => unusableReason(c) === undefined) as (ECHConfigContents & { raw: Uint8Array })[];
}
