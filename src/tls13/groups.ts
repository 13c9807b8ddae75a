/**
 * TLS 1.3 key-exchange groups (RFC 8446 §4.2.7, §4.2.8, §7.4): how each named
 * group's key_share bytes are laid out, made and checked, on both sides.
 *
 *   x25519          0x001d  32-byte u-coordinate (RFC 7748), provider X25519
 *   secp256r1       0x0017  65-byte uncompressed point (RFC 8446 §4.2.8.2), node:crypto ECDH
 *   X25519MLKEM768  0x11ec  draft-ietf-tls-ecdhe-mlkem: ML-KEM-768 first, then X25519
 *
 * Every refusal of a peer's share is an illegal_parameter alert (RFC 8446
 * §4.2.8.1, §4.2.8.2, §7.4.2; draft-ietf-tls-ecdhe-mlkem §4.1).
 */
import { concat } from '../bytes/util.js';
import { MLKEM768, mlkem768Decapsulate, mlkem768Encapsulate, mlkem768Generate, p256, p256Generate } from '../crypto/kex.js';
import type { CryptoProvider, X25519Private } from '../crypto/provider.js';
import { EchgateError, isEchgateError } from '../errors.js';
import { NamedGroup } from '../wire/tls/constants.js';

/** A client's key share: what goes into key_share, and how to finish with the server's share. */
export interface ClientKeyShare {
  readonly group: number;
  /** The key_exchange bytes the client sends. */
  readonly publicKey: Uint8Array;
  /** The shared secret from the server's key_exchange; throws illegal_parameter for a bad one. */
  complete(serverShare: Uint8Array): Uint8Array;
}

export interface KeyExchangeGroup {
  readonly id: number;
  /** The IANA name. */
  readonly name: string;
  offer(p: CryptoProvider): ClientKeyShare;
  /**
   * The server's answer to a client share: the key_exchange for ServerHello
   * and the shared secret. `x25519Key` supplies the X25519 ephemeral (tests
   * pin it to replay a handshake); absent = a fresh one from the provider.
   */
  accept(p: CryptoProvider, clientShare: Uint8Array, x25519Key?: () => X25519Private): { share: Uint8Array; secret: Uint8Array };
}

const illegal = (msg: string, cause?: unknown) => new EchgateError('ERR_ILLEGAL', msg, { alert: 'illegal_parameter', cause });

/** Primitive errors about the peer's bytes (ERR_CRYPTO_ARG) become illegal_parameter. */
function peerInput<T>(what: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (isEchgateError(e) && e.code === 'ERR_CRYPTO_ARG') throw illegal(`${what}: ${e.message}`, e);
    throw e;
  }
}

/**
 * X25519 with the peer's 32 bytes. RFC 8446 §7.4.2 / RFC 7748 §6.1: an
 * all-zero result (the peer sent a low-order point: 0, 1, the order-8
 * points, their non-canonical aliases) must be refused; the providers throw
 * ERR_CRYPTO_ARG for it.
 */
function x25519Dh(p: CryptoProvider, sk: X25519Private, peer: Uint8Array, what: string): Uint8Array {
  if (peer.length !== 32) throw illegal(`${what}: X25519 share must be 32 bytes, got ${peer.length}`);
  return peerInput(what, () => p.x25519(sk, peer));
}

const x25519: KeyExchangeGroup = {
  id: NamedGroup.x25519,
  name: 'x25519',
  offer(p) {
    const sk = p.x25519Generate();
    return { group: NamedGroup.x25519, publicKey: sk.publicKey, complete: (s) => x25519Dh(p, sk, s, 'server X25519 share') };
  },
  accept(p, clientShare, x25519Key) {
    const sk = x25519Key ? x25519Key() : p.x25519Generate();
    return { share: sk.publicKey, secret: x25519Dh(p, sk, clientShare, 'client X25519 share') };
  },
};

const secp256r1: KeyExchangeGroup = {
  id: NamedGroup.secp256r1,
  name: 'secp256r1',
  offer() {
    const sk = p256Generate();
    return { group: NamedGroup.secp256r1, publicKey: sk.publicKey, complete: (s) => peerInput('server P-256 share', () => p256(sk, s)) };
  },
  accept(_p, clientShare) {
    // p256() takes the uncompressed form only (§4.2.8.2) and checks the point is on the curve.
    const sk = p256Generate();
    return { share: sk.publicKey, secret: peerInput('client P-256 share', () => p256(sk, clientShare)) };
  },
};

const EK = MLKEM768.encapsulationKeyLen;
const CT = MLKEM768.ciphertextLen;

/**
 * draft-ietf-tls-ecdhe-mlkem §3–4: client share = ek (1184) || X25519 (32);
 * server share = ciphertext (1088) || X25519 (32); secret = ML-KEM secret ||
 * X25519 secret (ML-KEM first for this group, unlike the other hybrids).
 */
const x25519mlkem768: KeyExchangeGroup = {
  id: NamedGroup.X25519MLKEM768,
  name: 'X25519MLKEM768',
  offer(p) {
    const kem = mlkem768Generate();
    const sk = p.x25519Generate();
    return {
      group: NamedGroup.X25519MLKEM768,
      publicKey: concat(kem.publicKey, sk.publicKey),
      complete(s) {
        if (s.length !== CT + 32) throw illegal(`server X25519MLKEM768 share must be ${CT + 32} bytes, got ${s.length}`);
        const ss = peerInput('server ML-KEM ciphertext', () => mlkem768Decapsulate(kem.secretKey, s.subarray(0, CT)));
        return concat(ss, x25519Dh(p, sk, s.subarray(CT), 'server X25519MLKEM768 share'));
      },
    };
  },
  accept(p, clientShare, x25519Key) {
    if (clientShare.length !== EK + 32) throw illegal(`client X25519MLKEM768 share must be ${EK + 32} bytes, got ${clientShare.length}`);
    // §4.1: the server MUST run the FIPS 203 §7.2 encapsulation key check (inside mlkem768Encapsulate).
    const { ciphertext, sharedSecret } = peerInput('client ML-KEM encapsulation key', () => mlkem768Encapsulate(clientShare.subarray(0, EK)));
    const sk = x25519Key ? x25519Key() : p.x25519Generate();
    const dh = x25519Dh(p, sk, clientShare.subarray(EK), 'client X25519MLKEM768 share');
    return { share: concat(ciphertext, sk.publicKey), secret: concat(sharedSecret, dh) };
  },
};

export const GROUPS: ReadonlyMap<number, KeyExchangeGroup> = new Map([x25519, secp256r1, x25519mlkem768].map((g) => [g.id, g]));

/**
 * The server's preference when none is configured: X25519, then P-256.
 * X25519MLKEM768 is implemented but left out: on Node 20 its ML-KEM half is
 * pure JS, and the server's first flight costs 2.7× the CPU of an X25519
 * one (docs/benchmarks.md, "Key exchange"). Operators opt in with `groups`
 * (curvePreferences in the configuration).
 */
export const DEFAULT_GROUPS: readonly number[] = [NamedGroup.x25519, NamedGroup.secp256r1];

/** The group for a code point we implement, or undefined. */
export const groupById = (id: number): KeyExchangeGroup | undefined => GROUPS.get(id);

/** IANA name of a code point ("0x1234" for one we do not know). */
export function groupName(id: number): string {
  return GROUPS.get(id)?.name ?? `0x${id.toString(16).padStart(4, '0')}`;
}

/**
 * A group from a name as operators write it: IANA (x25519, secp256r1,
 * X25519MLKEM768), Go/Traefik curvePreferences (X25519, CurveP256), or
 * P-256/p256; case-insensitive. Undefined for anything else.
 */
export function parseGroupName(name: string): number | undefined {
  switch (name.trim().toLowerCase().replace(/[-_]/g, '')) {
    case 'x25519':
      return NamedGroup.x25519;
    case 'secp256r1':
    case 'p256':
    case 'curvep256':
    case 'prime256v1':
      return NamedGroup.secp256r1;
    case 'x25519mlkem768':
      return NamedGroup.X25519MLKEM768;
    default:
      return undefined;
  }
}
