/**
 * Strict command-line options. Each command declares its options once, in a
 * spec (one line per option); node's util.parseArgs reads argv against it in
 * strict mode. Anything else is a usage error (exit code 2) before the
 * command does anything: an unknown option (named, with the closest valid
 * one), a missing or malformed value, an option given twice, an argument the
 * command does not take. The same spec prints `--help`.
 */
import { X509Certificate } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { parseArgs as nodeParseArgs } from 'node:util';
import { parseDuration } from '../config/duration.js';
import { EchgateError, isEchgateError } from '../errors.js';

export interface OptionSpec {
  /** flag: no value; string, int (whole number), duration (10s, 24h): one value, checked before the command runs. */
  kind: 'flag' | 'string' | 'int' | 'duration';
  help: string;
  /** The value's placeholder in --help (FILE, N, ...). */
  arg?: string;
  min?: number;
  max?: number;
  choices?: readonly string[];
  required?: boolean;
}

/** Option builders: `name: text('FILE', 'what it is')` is one line of a command's spec. */
export const flag = (help: string): OptionSpec => ({ kind: 'flag', help });
export const text = (arg: string, help: string, more: Partial<OptionSpec> = {}): OptionSpec => ({ kind: 'string', arg, help, ...more });
export const int = (arg: string, help: string, min: number, max: number, more: Partial<OptionSpec> = {}): OptionSpec => ({ kind: 'int', arg, help, min, max, ...more });
export const duration = (help: string, more: Partial<OptionSpec> = {}): OptionSpec => ({ kind: 'duration', arg: 'DURATION', help, ...more });
export const oneOf = (choices: readonly string[], help: string, more: Partial<OptionSpec> = {}): OptionSpec => ({ kind: 'string', arg: choices.join('|'), choices, help, ...more });

export interface CommandSpec {
  /** As typed: "serve", "keys rotate". */
  name: string;
  /** Positional part of the synopsis ("HOST:PORT", "FILE|-"); empty when the command takes none. */
  args?: string;
  /** How many positional arguments the command takes. */
  positionals?: { min: number; max: number };
  summary: string;
  options: Record<string, OptionSpec>;
  /** Extra lines for --help. */
  notes?: string;
}

export interface Args {
  flags: Map<string, string | true>;
  positional: string[];
}

export type Parsed = { help: true } | ({ help: false } & Args);

function usageError(spec: CommandSpec, message: string): EchgateError {
  return new EchgateError('ERR_USAGE', `${message} (see: echgate ${spec.name} --help)`);
}

/** Edit distance, for "did you mean". */
function distance(a: string, b: string): number {
  const d = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = d[0]!;
    d[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = d[j]!;
      d[j] = Math.min(d[j]! + 1, d[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = cur;
    }
  }
  return d[b.length]!;
}

/** The closest of `names` to `typed`, if it is close enough to be a typo. */
export function closest(typed: string, names: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestD = Number.POSITIVE_INFINITY;
  for (const n of names) {
    const dist = n.startsWith(typed) || typed.startsWith(n) ? 1 : distance(typed, n);
    if (dist < bestD) {
      best = n;
      bestD = dist;
    }
  }
  return bestD <= Math.max(2, Math.floor(typed.length / 3)) ? best : undefined;
}

function nodeOptions(spec: CommandSpec) {
  const o: Record<string, { type: 'string' | 'boolean'; short?: string }> = { help: { type: 'boolean', short: 'h' } };
  for (const [name, s] of Object.entries(spec.options)) o[name] = { type: s.kind === 'flag' ? 'boolean' : 'string' };
  return o;
}

function checkValue(spec: CommandSpec, name: string, s: OptionSpec, v: string): void {
  if (s.kind === 'int') {
    if (!/^\d+$/.test(v) || Number(v) < (s.min ?? 0) || Number(v) > (s.max ?? Number.MAX_SAFE_INTEGER)) {
      throw usageError(spec, `--${name} takes a whole number${s.max !== undefined ? ` ${s.min ?? 0}..${s.max}` : ''}, not "${v}"`);
    }
  } else if (s.kind === 'duration') {
    if (parseDuration(v) === undefined) throw usageError(spec, `--${name} takes a duration such as 30s or 24h, not "${v}"`);
  } else if (s.kind === 'string') {
    if (s.choices && !s.choices.includes(v)) throw usageError(spec, `--${name} is one of ${s.choices.join(', ')}, not "${v}"`);
    if (v === '') throw usageError(spec, `--${name} needs a value`);
  }
}

/** Read argv (the words after the command) against the command's spec; refuse anything else. */
export function parseCommand(spec: CommandSpec, argv: string[]): Parsed {
  const options = nodeOptions(spec);
  const known = Object.keys(options);
  // First pass, lenient, to name every unknown option with a suggestion (node's strict error names
  // only the first, without one) and to let --help win over any other mistake.
  const { tokens } = nodeParseArgs({ args: argv, options, strict: false, allowPositionals: true, tokens: true });
  const seen = new Set<string>();
  let help = false;
  const unknown: string[] = [];
  for (const t of tokens) {
    if (t.kind !== 'option') continue;
    if (t.name === 'help') help = true;
    else if (!(t.name in options)) {
      const near = t.rawName.startsWith('--') ? closest(t.name, known) : undefined;
      unknown.push(`unknown option ${t.rawName}${near ? ` (did you mean --${near}?)` : ''}`);
    } else if (seen.has(t.name)) throw usageError(spec, `--${t.name} is given twice`);
    else seen.add(t.name);
  }
  if (help) return { help: true };
  if (unknown.length) throw usageError(spec, unknown.join('; '));

  let parsed: ReturnType<typeof nodeParseArgs>;
  try {
    parsed = nodeParseArgs({ args: argv, options, strict: true, allowPositionals: true });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (typeof code !== 'string' || !code.startsWith('ERR_PARSE_ARGS')) throw e;
    // e.g. "Option '--config <value>' argument missing"
    throw usageError(spec, (e as Error).message.split('. ')[0]!.replace(/\.$/, ''));
  }
  const flags = new Map<string, string | true>();
  for (const [name, v] of Object.entries(parsed.values)) {
    if (name === 'help' || v === undefined) continue;
    const s = spec.options[name]!;
    if (typeof v === 'string') checkValue(spec, name, s, v);
    if (v === false) continue;
    flags.set(name, v as string | true);
  }
  for (const [name, s] of Object.entries(spec.options)) {
    if (s.required && !flags.has(name)) throw usageError(spec, `--${name} is required`);
  }
  const { min, max } = spec.positionals ?? { min: 0, max: 0 };
  const positional = parsed.positionals;
  if (positional.length > max) {
    const extra = positional[max]!;
    throw usageError(spec, max === 0 ? `echgate ${spec.name} takes no argument "${extra}"` : `unexpected argument "${extra}"`);
  }
  if (positional.length < min) throw usageError(spec, `missing ${spec.args ?? 'argument'}`);
  return { help: false, flags, positional };
}

/** The --help text: synopsis, summary, every option. */
export function helpText(spec: CommandSpec): string {
  const rows: [string, string][] = Object.entries(spec.options).map(([name, s]) => [
    `--${name}${s.arg ? ` ${s.arg}` : ''}`,
    `${s.help}${s.required ? ' (required)' : ''}`,
  ]);
  rows.push(['-h, --help', 'show this help']);
  const w = Math.max(...rows.map((r) => r[0].length));
  return [
    `usage: echgate ${spec.name}${spec.args ? ` ${spec.args}` : ''} [options]`,
    '',
    `  ${spec.summary}`,
    '',
    'options:',
    ...rows.map(([l, r]) => `  ${l.padEnd(w)}  ${r}`),
    ...(spec.notes ? ['', spec.notes.replace(/\n$/, '')] : []),
    '',
  ].join('\n');
}

export function str(a: Args, name: string): string | undefined {
  const v = a.flags.get(name);
  return typeof v === 'string' ? v : undefined;
}

/** A value the spec declared `int`: already checked. */
export function num(a: Args, name: string): number | undefined {
  const v = str(a, name);
  return v === undefined ? undefined : Number(v);
}

/** A value the spec declared `duration`, in milliseconds: already checked. */
export function ms(a: Args, name: string): number | undefined {
  const v = str(a, name);
  return v === undefined ? undefined : parseDuration(v);
}

export function has(a: Args, name: string): boolean {
  return a.flags.get(name) === true;
}

/** node's errno code of a failed file operation, as the messages below name it ("ENOENT: no such file"). */
function fsWhy(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  const what: Record<string, string> = { ENOENT: 'no such file', EACCES: 'permission denied', EISDIR: 'a folder, not a file', ENOTDIR: 'a path through a file' };
  return err.code ? `${err.code}${what[err.code] ? `: ${what[err.code]}` : ''}` : String(err.message ?? e);
}

/**
 * Read a file the command line names (`what`: the option or argument, "--ca", "FILE"). One that cannot be
 * read is a usage error naming both (exit 2), not node's bare ENOENT (audit s12 gap 11).
 */
export function readNamedFile(what: string, file: string | 0): Buffer;
export function readNamedFile(what: string, file: string | 0, encoding: 'utf8'): string;
export function readNamedFile(what: string, file: string | 0, encoding?: 'utf8'): Buffer | string {
  try {
    return encoding ? readFileSync(file, encoding) : readFileSync(file);
  } catch (e) {
    throw new EchgateError('ERR_USAGE', `${what} ${file === 0 ? '-' : file}: cannot read it (${fsWhy(e)})`);
  }
}

/** A CA file (PEM) the command line names: read and parsed now, so a wrong file is named, not an "internal error" mid-handshake. */
export function readCaFile(what: string, file: string): string {
  const pem = readNamedFile(what, file, 'utf8');
  try {
    new X509Certificate(pem);
  } catch (e) {
    throw new EchgateError('ERR_USAGE', `${what} ${file}: not a PEM certificate (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  return pem;
}

/** A DoH endpoint the command line names: an https:// URL (RFC 8484 §5 says https), else a usage error naming the option. */
export function dohUrlOption(a: Args, name: string): string | undefined {
  const v = str(a, name);
  if (v === undefined) return undefined;
  let u: URL;
  try {
    u = new URL(v);
  } catch {
    throw new EchgateError('ERR_USAGE', `--${name} takes a DoH URL such as https://dns.example/dns-query, not "${v}"`);
  }
  if (u.protocol !== 'https:') throw new EchgateError('ERR_USAGE', `--${name} takes an https:// URL (DoH is HTTP over TLS, RFC 8484 §5), not "${v}"`);
  return v;
}

/** A folder the command line names that must exist already (`keys` commands other than generate). */
export function existingDir(what: string, dir: string): string {
  let st: ReturnType<typeof statSync>;
  try {
    st = statSync(dir);
  } catch (e) {
    throw new EchgateError('ERR_USAGE', `${what} ${dir}: no such folder (${fsWhy(e)}; echgate keys generate makes one)`);
  }
  if (!st.isDirectory()) throw new EchgateError('ERR_USAGE', `${what} ${dir}: not a folder`);
  return dir;
}

/**
 * A DoH exchange that failed below DNS (TLS refused, connection refused, an HTTP error): ERR_DOH naming the
 * URL and node's or OpenSSL's code, in place of OpenSSL's raw text. echgate's own errors pass unchanged.
 */
export function dohFailure(url: string, e: unknown): Error {
  if (isEchgateError(e)) return e;
  const err = e as NodeJS.ErrnoException & { reason?: string };
  const code = err.code ?? 'error';
  // OpenSSL's reason ("tlsv1 unrecognized name") without its error-queue prefix and source path.
  const reason = typeof err.reason === 'string' ? err.reason : /:([^:]+):\.\.\/deps/.exec(err.message ?? '')?.[1];
  return new EchgateError('ERR_DOH', `DoH ${url}: ${code}${reason ? ` (${reason})` : ''}`, { cause: e });
}
