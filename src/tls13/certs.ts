/**
 * Certificates for termination: PEM chain + private key → a CertifiedKey
 * whose signer is a parsed KeyObject (never a PEM string on the hot path:
 * 15× slower, see shared notes). Signature schemes per RFC 8446 §4.2.3.
 */
import { constants, createPrivateKey, type KeyObject, sign, X509Certificate } from 'node:crypto';
import { EchgateError } from '../errors.js';
import type { CertifiedKey } from './server.js';

export const SigScheme = {
  ecdsa_secp256r1_sha256: 0x0403,
  ecdsa_secp384r1_sha384: 0x0503,
  rsa_pss_rsae_sha256: 0x0804,
  rsa_pss_rsae_sha384: 0x0805,
  rsa_pss_rsae_sha512: 0x0806,
  ed25519: 0x0807,
} as const;

export interface LoadedCertificate extends CertifiedKey {
  /** DNS names the leaf is valid for (lower case; may start with "*."). */
  names: string[];
}

function pemBlocks(text: string, label: string): Uint8Array[] {
  const re = new RegExp(`-----BEGIN ${label}-----([\\s\\S]*?)-----END ${label}-----`, 'g');
  return [...text.matchAll(re)].map((m) => new Uint8Array(Buffer.from(m[1]!.replace(/\s+/g, ''), 'base64')));
}

/**
 * The signature as a Uint8Array view of node's Buffer, not a copy: sign()
 * returns a Buffer over an ArrayBuffer of its own (never the shared pool), so
 * nothing else is in it. A copy of a 70-byte ECDSA signature was one more
 * malloc'd backing store per handshake (V8 keeps only arrays up to 64 bytes
 * in its heap).
 */
const view = (b: Buffer): Uint8Array => new Uint8Array(b.buffer, b.byteOffset, b.byteLength);

function signerFor(key: KeyObject): { schemes: number[]; sign: (scheme: number, data: Uint8Array) => Uint8Array } {
  const t = key.asymmetricKeyType;
  if (t === 'ec') {
    const curve = key.asymmetricKeyDetails?.namedCurve;
    const [scheme, hash] = curve === 'prime256v1' ? [SigScheme.ecdsa_secp256r1_sha256, 'sha256'] : curve === 'secp384r1' ? [SigScheme.ecdsa_secp384r1_sha384, 'sha384'] : [];
    if (!scheme) throw new EchgateError('ERR_CONFIG', `unsupported EC curve ${curve}`);
    const opts = { key, dsaEncoding: 'der' } as const;
    return { schemes: [scheme], sign: (_s, data) => view(sign(hash!, data, opts)) };
  }
  if (t === 'rsa') {
    const hashes: Record<number, string> = { [SigScheme.rsa_pss_rsae_sha256]: 'sha256', [SigScheme.rsa_pss_rsae_sha384]: 'sha384', [SigScheme.rsa_pss_rsae_sha512]: 'sha512' };
    return {
      schemes: [SigScheme.rsa_pss_rsae_sha256, SigScheme.rsa_pss_rsae_sha384, SigScheme.rsa_pss_rsae_sha512],
      sign: (s, data) => view(sign(hashes[s]!, data, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_DIGEST })),
    };
  }
  if (t === 'ed25519') return { schemes: [SigScheme.ed25519], sign: (_s, data) => view(sign(null, data, key)) };
  throw new EchgateError('ERR_CONFIG', `unsupported certificate key type ${t}`);
}

export function loadCertificate(certPem: string, keyPem: string): LoadedCertificate {
  const chain = pemBlocks(certPem, 'CERTIFICATE');
  if (chain.length === 0) throw new EchgateError('ERR_CONFIG', 'no CERTIFICATE block');
  const leaf = new X509Certificate(Buffer.from(chain[0]!));
  const key = createPrivateKey(keyPem);
  if (!leaf.checkPrivateKey(key)) throw new EchgateError('ERR_CONFIG', 'the private key does not match the certificate');
  const names = (leaf.subjectAltName ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.startsWith('DNS:'))
    .map((s) => s.slice(4).toLowerCase());
  return { chain, names, ...signerFor(key) };
}

/** Pick the certificate for a name: exact SAN, then a one-label wildcard, else the default (first). */
export function certificateSelector(certs: LoadedCertificate[]): (sni: string | undefined) => LoadedCertificate | undefined {
  // Loops, not find() with a closure over the name: this runs once per terminated handshake.
  return (sni) => {
    if (sni) {
      for (const c of certs) if (c.names.includes(sni)) return c;
      const dot = sni.indexOf('.');
      if (dot > 0) {
        const wild = `*${sni.slice(dot)}`;
        for (const c of certs) if (c.names.includes(wild)) return c;
      }
    }
    return certs[0];
  };
}
