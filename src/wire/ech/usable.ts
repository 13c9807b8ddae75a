/**
 * Which ECHConfigs can be used (RFC 9849 §4, §4.2, §6.1.7). A config that
 * cannot be used is skipped, never an error for the whole list. What the
 * crypto layer supports is passed in, so this codec layer stays crypto-free.
 */
import { type ECHConfig, type ECHConfigContents, ECH_VERSION, hasUnknownMandatoryExtension, isValidPublicName } from './config.js';

export type UnusableReason = 'version' | 'kem' | 'public_key' | 'cipher_suites' | 'mandatory_extension' | 'public_name';

/** Does the crypto layer implement this HPKE suite? (crypto/hpke.ts isSupportedSuite) */
export type SuitePredicate = (kemId: number, kdfId: number, aeadId: number) => boolean;

const X25519_KEM = 0x0020;

export function unusableReason(c: ECHConfig, supports: SuitePredicate): UnusableReason | undefined {
  if (c.version !== ECH_VERSION || 'unsupported' in c) return 'version';
  if (c.kemId !== X25519_KEM) return 'kem';
  if (c.publicKey.length !== 32) return 'public_key';
  if (!usableSuites(c, supports).length) return 'cipher_suites';
  if (hasUnknownMandatoryExtension(c)) return 'mandatory_extension';
  if (!isValidPublicName(c.publicName)) return 'public_name';
  return undefined;
}

/** Suites we can run for ECH: supported and not export-only (ECH must encrypt). */
export function usableSuites(c: ECHConfigContents, supports: SuitePredicate) {
  return c.cipherSuites.filter((s) => s.aeadId !== 0xffff && supports(c.kemId, s.kdfId, s.aeadId));
}

export function usableConfigs(list: ECHConfig[], supports: SuitePredicate): (ECHConfigContents & { raw: Uint8Array })[] {
  return list.filter((c) => unusableReason(c, supports) === undefined) as (ECHConfigContents & { raw: Uint8Array })[];
}
