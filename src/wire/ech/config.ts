/**
 * ECHConfig and ECHConfigList (RFC 9849 §4).
 *
 *   struct { uint16 version; uint16 length; select (version) { case 0xfe0d: ECHConfigContents } } ECHConfig;
 *   ECHConfig ECHConfigList<4..2^16-1>;
 *
 * Decoding keeps each config's original bytes (the HPKE info is built from
 * them, §6.1). Configs with an unknown version are kept as `unsupported` and
 * skipped by callers (§4: "Clients MUST ignore any ECHConfig structure with a
 * version they do not support"); so are configs with an unknown mandatory
 * extension (§4.2) and configs whose KEM/suites we cannot use.
 */
import { Reader } from '../../bytes/reader.js';
import { Writer } from '../../bytes/writer.js';
import { EchgateError } from '../../errors.js';

export const ECH_VERSION = 0xfe0d;

export interface HpkeSymmetricCipherSuite {
  kdfId: number;
  aeadId: number;
}

export interface ECHConfigExtension {
  type: number;
  data: Uint8Array;
}

export interface ECHConfigContents {
  configId: number;
  kemId: number;
  publicKey: Uint8Array;
  cipherSuites: HpkeSymmetricCipherSuite[];
  maximumNameLength: number;
  publicName: string;
  extensions: ECHConfigExtension[];
}

export type ECHConfig =
  | ({ version: typeof ECH_VERSION; raw: Uint8Array } & ECHConfigContents)
  | { version: number; raw: Uint8Array; unsupported: true };

const bad = (msg: string) => new EchgateError('ERR_ECH_CONFIG', msg, { alert: 'decode_error' });

/** RFC 9849 §4: public_name is a dot-separated DNS name of LDH labels, not an IP address, no trailing dot. */
export function isValidPublicName(name: string): boolean {
  if (name.length === 0 || name.length > 255 || name.endsWith('.')) return false;
  const labels = name.split('.');
  if (!labels.every((l) => /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/.test(l))) return false;
  // §6.1.7: a name whose last label is all digits (or 0x-hex) is an IPv4 address; refuse it.
  const last = labels[labels.length - 1]!;
  return !/^[0-9]+$/.test(last) && !/^0x[0-9a-f]*$/i.test(last);
}

function decodeContents(r: Reader): ECHConfigContents {
  const configId = r.u8('config_id');
  const kemId = r.u16('kem_id');
  const publicKey = r.vec16('public_key', 1);
  const cs = r.sub16('cipher_suites');
  if (cs.left < 4 || cs.left % 4 !== 0) throw bad(`cipher_suites: bad length ${cs.left}`);
  const cipherSuites: HpkeSymmetricCipherSuite[] = [];
  while (!cs.atEnd()) cipherSuites.push({ kdfId: cs.u16(), aeadId: cs.u16() });
  const maximumNameLength = r.u8('maximum_name_length');
  const pn = r.vec8('public_name', 1);
  // Validity of the name is a usability question (§6.1.7: clients ignore such
  // a config), not a framing error, so it is judged by the caller.
  const publicName = Buffer.from(pn).toString('latin1');
  const ext = r.sub16('extensions');
  const extensions: ECHConfigExtension[] = [];
  const seen = new Set<number>();
  while (!ext.atEnd()) {
    const type = ext.u16('extension type');
    if (seen.has(type)) throw bad(`duplicate ECHConfig extension ${type}`);
    seen.add(type);
    extensions.push({ type, data: ext.vec16('extension data') });
  }
  r.expectEnd('ECHConfigContents');
  return { configId, kemId, publicKey, cipherSuites, maximumNameLength, publicName, extensions };
}

export function decodeECHConfig(r: Reader): ECHConfig {
  const start = r.offset;
  const version = r.u16('ECHConfig version');
  const body = r.sub16('ECHConfig contents');
  const raw = r.buf.subarray(start, r.offset);
  if (version !== ECH_VERSION) return { version, raw, unsupported: true };
  return { version: ECH_VERSION, raw, ...decodeContents(body) };
}

/** Decode a whole ECHConfigList. Malformed framing anywhere rejects the list. */
export function decodeECHConfigList(bytes: Uint8Array): ECHConfig[] {
  const r = new Reader(bytes);
  const list = r.sub16('ECHConfigList');
  r.expectEnd('ECHConfigList');
  if (list.left < 4) throw bad('empty ECHConfigList');
  const out: ECHConfig[] = [];
  while (!list.atEnd()) out.push(decodeECHConfig(list));
  return out;
}

export function encodeECHConfig(c: ECHConfigContents): Uint8Array {
  return new Writer()
    .u16(ECH_VERSION)
    .withLen16((w) => {
      w.u8(c.configId).u16(c.kemId).vec16(c.publicKey);
      w.withLen16((w) => {
        for (const s of c.cipherSuites) w.u16(s.kdfId).u16(s.aeadId);
      });
      w.u8(c.maximumNameLength).vec8(Buffer.from(c.publicName, 'latin1'));
      w.withLen16((w) => {
        for (const e of c.extensions) w.u16(e.type).vec16(e.data);
      });
    })
    .finish();
}

export function encodeECHConfigList(configs: Uint8Array[]): Uint8Array {
  return new Writer()
    .withLen16((w) => {
      for (const c of configs) w.bytes(c);
    })
    .finish();
}

/** Mandatory ECHConfig extensions have the high bit of their type set (§4.2). */
export function hasUnknownMandatoryExtension(c: ECHConfigContents, known: ReadonlySet<number> = new Set()): boolean {
  return c.extensions.some((e) => (e.type & 0x8000) !== 0 && !known.has(e.type));
}
