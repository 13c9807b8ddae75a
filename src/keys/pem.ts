/**
 * RFC 9934 ECH key files: a PKCS#8 `PRIVATE KEY` block (X25519, RFC 8410)
 * followed by an `ECHCONFIG` block holding the base64 ECHConfigList.
 */
import { createPrivateKey } from 'node:crypto';
import { EchgateError } from '../errors.js';

// RFC 8410 §7: PrivateKeyInfo { version 0, AlgorithmIdentifier id-X25519 (1.3.101.110), OCTET STRING { OCTET STRING key } }
const PKCS8_X25519_PREFIX = Uint8Array.from([0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x04, 0x22, 0x04, 0x20]);

export interface PemBlock {
  label: string;
  der: Uint8Array;
}

export function decodePemBlocks(text: string): PemBlock[] {
  const out: PemBlock[] = [];
  const re = /-----BEGIN ([A-Z0-9 ]+)-----\r?\n([\s\S]*?)-----END \1-----/g;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    const body = m[2]!.replace(/\s+/g, '');
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(body)) throw new EchgateError('ERR_KEYSTORE', `PEM block ${m[1]} is not base64`);
    out.push({ label: m[1]!, der: new Uint8Array(Buffer.from(body, 'base64')) });
  }
  return out;
}

function pemBlock(label: string, der: Uint8Array): string {
  const b64 = Buffer.from(der).toString('base64');
  const lines = b64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

/** The raw 32-byte X25519 key inside a PKCS#8 PrivateKeyInfo (any valid encoding node accepts). */
export function x25519FromPkcs8(der: Uint8Array): Uint8Array {
  if (der.length === 48 && PKCS8_X25519_PREFIX.every((b, i) => der[i] === b)) return Uint8Array.from(der.subarray(16));
  let jwk: { kty?: string; crv?: string; d?: string };
  try {
    const k = createPrivateKey({ key: Buffer.from(der), format: 'der', type: 'pkcs8' });
    if (k.asymmetricKeyType !== 'x25519') throw new Error(`key type ${k.asymmetricKeyType}`);
    jwk = k.export({ format: 'jwk' });
  } catch (e) {
    throw new EchgateError('ERR_KEYSTORE', `PRIVATE KEY is not an X25519 PKCS#8 key: ${(e as Error).message}`);
  }
  return new Uint8Array(Buffer.from(jwk.d!, 'base64url'));
}

export function pkcs8FromX25519(sk: Uint8Array): Uint8Array {
  const out = new Uint8Array(48);
  out.set(PKCS8_X25519_PREFIX);
  out.set(sk, 16);
  return out;
}

export interface EchKeyFile {
  privateKey: Uint8Array;
  echConfigList: Uint8Array;
}

export function decodeEchPem(text: string): EchKeyFile {
  const blocks = decodePemBlocks(text);
  const pk = blocks.filter((b) => b.label === 'PRIVATE KEY');
  const ec = blocks.filter((b) => b.label === 'ECHCONFIG');
  if (pk.length !== 1 || ec.length !== 1) {
    throw new EchgateError('ERR_KEYSTORE', `expected one PRIVATE KEY and one ECHCONFIG block, found ${pk.length} and ${ec.length}`);
  }
  return { privateKey: x25519FromPkcs8(pk[0]!.der), echConfigList: ec[0]!.der };
}

export function encodeEchPem(f: EchKeyFile): string {
  return pemBlock('PRIVATE KEY', pkcs8FromX25519(f.privateKey)) + pemBlock('ECHCONFIG', f.echConfigList);
}
