/** `echgate resolve NAME --doh URL [--type HTTPS] [--post] [--ca FILE]`: one DoH query, JSON out. */
import { describeAnswers } from '../dns/doh-client.js';
import { DohResolver } from '../dns/resolver.js';
import { EchgateError } from '../errors.js';
import { RRType, rcodeName } from '../wire/dns/message.js';
import { type Args, type CommandSpec, dohFailure, dohUrlOption, flag, has, readCaFile, str, text } from './args.js';
import type { Command } from './command.js';

export const resolveSpec: CommandSpec = {
  name: 'resolve',
  args: 'NAME',
  positionals: { min: 1, max: 1 },
  summary: 'one DNS-over-HTTPS query; JSON out (an ech= value decoded)',
  options: {
    doh: text('URL', 'the DoH endpoint, https://host/dns-query', { required: true }),
    type: text('TYPE', 'the record type: HTTPS (default), SVCB, A, AAAA, ...'),
    post: flag('send the query with POST (default GET)'),
    ca: text('FILE', 'trust this CA certificate (PEM) for the DoH server'),
  },
};

export async function resolveCommand(a: Args, out: (s: string) => void): Promise<number> {
  const name = a.positional[0]!;
  const doh = dohUrlOption(a, 'doh')!;
  const typeName = (str(a, 'type') ?? 'HTTPS').toUpperCase();
  const type = (RRType as Record<string, number>)[typeName];
  if (type === undefined) throw new EchgateError('ERR_USAGE', `unknown --type ${typeName} (see: echgate resolve --help)`);
  const caFile = str(a, 'ca');
  const resolver = new DohResolver(doh, { method: has(a, 'post') ? 'POST' : 'GET', ca: caFile ? readCaFile('--ca', caFile) : undefined });
  const m = await resolver.query(name, type).catch((e) => {
    throw dohFailure(doh, e);
  });
  out(`${JSON.stringify({ name, type: typeName, rcode: rcodeName(m.rcode), answers: describeAnswers(m, m.raw) }, null, 2)}\n`);
  return m.rcode === 0 ? 0 : 1;
}

export const resolve: Command = { spec: resolveSpec, run: resolveCommand };
