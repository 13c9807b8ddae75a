/** `echgate inspect [--hex] FILE|-`: decode a captured ClientHello and print JSON. */
import { fromHex } from '../bytes/util.js';
import { EchgateError } from '../errors.js';
import { decodeClientHelloMessage, summarize } from '../wire/tls/client-hello.js';
import { extensionName } from '../wire/tls/constants.js';
import { parseHelloRecords } from '../wire/tls/record.js';
import { type Args, type CommandSpec, flag, has, readNamedFile, str, text } from './args.js';
import type { Command } from './command.js';

export const inspectSpec: CommandSpec = {
  name: 'inspect',
  args: 'FILE|-',
  positionals: { min: 1, max: 1 },
  summary: 'decode a captured ClientHello (file, or - for stdin) to JSON; with --keys, decrypt its ECH (or its 2018 ESNI)',
  options: {
    hex: flag('the input is hex text, not raw bytes'),
    keys: text('DIR', 'an ECH key folder: decrypt the ECH extension and add the inner hello (ESNI: the name, from the folder\'s .esni keys)'),
    'trial-decrypt': flag('with --keys: try every key, not only the one with the hello\'s config_id'),
  },
};

export interface InspectResult {
  records: number;
  recordVersion: number;
  legacyVersion: number;
  outerSni: string | null;
  alpn: string[];
  versions: number[];
  keyShareGroups: number[];
  cipherSuites: number[];
  extensions: number[];
  extensionNames: string[];
  esni: boolean;
  ech:
    | { present: false }
    | { present: true; type: 'inner' }
    | { present: true; type: 'outer'; configId: number; kdfId: number; aeadId: number; encLength: number; payloadLength: number };
  [k: string]: unknown;
}

export function readInput(file: string, hex: boolean): Uint8Array {
  const data = readNamedFile('FILE', file === '-' ? 0 : file);
  return hex ? fromHex(data.toString('utf8')) : new Uint8Array(data);
}

export function inspectBytes(bytes: Uint8Array): InspectResult {
  const asm = parseHelloRecords(bytes);
  if (!asm) throw new EchgateError('ERR_DECODE', 'input ends before the ClientHello is complete');
  const ch = decodeClientHelloMessage(asm.message);
  const s = summarize(ch);
  const e = s.ech;
  return {
    records: asm.records,
    recordVersion: asm.recordVersion,
    legacyVersion: ch.legacyVersion,
    outerSni: s.sni ?? null,
    alpn: s.alpn,
    versions: s.versions,
    keyShareGroups: s.keyShareGroups,
    cipherSuites: ch.cipherSuites,
    extensions: ch.extensions.map((x) => x.type),
    extensionNames: ch.extensions.map((x) => extensionName(x.type)),
    esni: s.esni,
    ech: !e
      ? { present: false }
      : e.type === 'inner'
        ? { present: true, type: 'inner' }
        : { present: true, type: 'outer', configId: e.configId, kdfId: e.kdfId, aeadId: e.aeadId, encLength: e.enc.length, payloadLength: e.payload.length },
  };
}

export async function inspectCommand(a: Args, out: (s: string) => void): Promise<number> {
  const file = a.positional[0]!;
  if (has(a, 'trial-decrypt') && !str(a, 'keys')) throw new EchgateError('ERR_USAGE', '--trial-decrypt needs --keys DIR (see: echgate inspect --help)');
  const bytes = readInput(file, has(a, 'hex'));
  const result = inspectBytes(bytes);
  const keys = str(a, 'keys');
  if (keys) {
    const { addDecryption } = await import('./inspect-ech.js');
    addDecryption(result, bytes, keys, has(a, 'trial-decrypt'));
  }
  out(`${JSON.stringify(result, null, 2)}\n`);
  return 0;
}

export const inspect: Command = { spec: inspectSpec, run: inspectCommand };
