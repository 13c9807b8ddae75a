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

/** Whether the key can sign with a scheme the client offered (RFC 8446 §4.4.2.2, §4.4.3). */
export function signableFor(c: { schemes: readonly number[] }, sigAlgs: readonly number[]): boolean {
  for (const s of c.schemes) if (sigAlgs.includes(s)) return true;
  return false;
}

/**
 * Pick the certificate for a name: exact SAN, then a one-label wildcard, else
 * the default (first). With the client's signature_algorithms, among the
 * certificates that cover the name the first it can verify wins (RFC 8446
 * §4.4.2.2: the certificate MUST be signable with a scheme the client
 * offered; Go's crypto/tls picks the first certificate the hello supports):
 * an ECDSA and an RSA certificate for one name each serve the clients that
 * take them. An exact name the client cannot verify yields to a wildcard it
 * can; when none can, the first covering one is returned and the handshake
 * fails there (handshake_failure). The default certificate does not change
 * with the client's schemes: the name is not on it anyway, and `echgate
 * check` reasons about the one default (cli/check.ts hiddenNameWarnings).
 */
export function certificateSelector(certs: LoadedCertificate[]): (sni: string | undefined, sigAlgs?: readonly number[]) => LoadedCertificate | undefined {
  for (const c of certs) configuredWith.set(c, certs);
  // Loops, not find() with a closure over the name: this runs once per terminated handshake.
  return (sni, sigAlgs) => {
    if (sni) {
      let covering: LoadedCertificate | undefined;
      for (const c of certs) {
        if (!c.names.includes(sni)) continue;
        if (!sigAlgs || signableFor(c, sigAlgs)) return c;
        covering ??= c;
      }
      const dot = sni.indexOf('.');
      if (dot > 0) {
        const wild = `*${sni.slice(dot)}`;
        for (const c of certs) {
          if (!c.names.includes(wild)) continue;
          if (!sigAlgs || signableFor(c, sigAlgs)) return c;
          covering ??= c;
        }
      }
      if (covering) return covering;
    }
    return certs[0];
  };
}

/** Each certificate → the list its selector was built from (one configuration's tls.certificates). */
const configuredWith = new WeakMap<LoadedCertificate, readonly LoadedCertificate[]>();

/**
 * The key's kind as OpenSSL files a server certificate (one per kind in a
 * context: RSA, EC, Ed25519), from the schemes it signs with.
 */
export function keyKind(c: { schemes: readonly number[] }): 'ec' | 'rsa' | 'ed25519' {
  const s = c.schemes[0];
  return s === SigScheme.ed25519 ? 'ed25519' : s === SigScheme.ecdsa_secp256r1_sha256 || s === SigScheme.ecdsa_secp384r1_sha384 ? 'ec' : 'rsa';
}

/**
 * For the TLS 1.2 path (node:tls chooses among the certificates of its
 * context by the suites and signature_algorithms the client offers, RFC 5246
 * §7.4.2): besides `chosen`, the first certificate of each other key kind
 * that covers `sni` (the selector's order: exact names, then a wildcard), so
 * that a client offering only ECDHE-RSA suites gets the RSA certificate
 * listed after an ECDSA one. Empty for the usual single certificate per name.
 */
export function otherKindsFor(chosen: LoadedCertificate, sni: string | undefined): LoadedCertificate[] {
  const all = configuredWith.get(chosen);
  if (!all || !sni || all.length < 2) return [];
  const kinds = new Set([keyKind(chosen)]);
  const out: LoadedCertificate[] = [];
  const dot = sni.indexOf('.');
  const wild = dot > 0 ? `*${sni.slice(dot)}` : undefined;
  for (const pass of [sni, wild]) {
    if (!pass) continue;
    for (const c of all) {
      if (c === chosen || !c.names.includes(pass) || kinds.has(keyKind(c))) continue;
      kinds.add(keyKind(c));
      out.push(c);
    }
  }
  return out;
}
