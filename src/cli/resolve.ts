/** `echgate resolve NAME --doh URL [--type HTTPS] [--post] [--ca FILE]`: one DoH query, JSON out. */
import { readFileSync } from 'node:fs';
import { describeAnswers, dohQuery } from '../dns/doh-client.js';
import { EchgateError } from '../errors.js';
import { RRType, rcodeName } from '../wire/dns/message.js';
import { type Args, str } from './args.js';

export async function resolveCommand(a: Args, out: (s: string) => void): Promise<number> {
  const name = a.positional[0];
  const doh = str(a, 'doh');
  if (!name || !doh) throw new EchgateError('ERR_USAGE', 'usage: echgate resolve NAME --doh https://host/dns-query [--type HTTPS|SVCB|A|AAAA] [--post] [--ca FILE]');
  const typeName = (str(a, 'type') ?? 'HTTPS').toUpperCase();
  const type = (RRType as Record<string, number>)[typeName];
  if (type === undefined) throw new EchgateError('ERR_USAGE', `unknown --type ${typeName}`);
  const caFile = str(a, 'ca');
  const m = await dohQuery(doh, name, type, { method: a.flags.get('post') === true ? 'POST' : 'GET', ca: caFile ? readFileSync(caFile, 'utf8') : undefined });
  out(`${JSON.stringify({ name, type: typeName, rcode: rcodeName(m.rcode), answers: describeAnswers(m, m.raw) }, null, 2)}\n`);
  return m.rcode === 0 ? 0 : 1;
}
