/**
 * `echgate publish`: put the key folder's active ECHConfigList into an
 * existing DNS zone with a TSIG-signed RFC 2136 update, then read it back over
 * DoH. Exit 0 only when DNS serves what was published.
 */
import { readFileSync } from 'node:fs';
import { parseDuration } from '../config/duration.js';
import { parseAddress } from '../config/validate.js';
import { publishHttps, readBackEch } from '../dns/publisher.js';
import { EchgateError } from '../errors.js';
import { listKeys, publishedList } from '../keys/manager.js';
import { parseTsigKeyFile } from '../wire/dns/tsig.js';
import { type Args, str } from './args.js';

const USAGE = `usage: echgate publish --name HOST --server HOST:PORT --zone ZONE [--tsig-key FILE] [--dir keys]
         [--ttl 300] [--alpn h2,http/1.1] [--port N] [--verify-doh URL [--ca FILE] [--verify-timeout 30s]]`;

export async function publishCommand(a: Args, out: (s: string) => void): Promise<number> {
  const name = str(a, 'name');
  const server = parseAddress(str(a, 'server'));
  const zone = str(a, 'zone');
  if (!name || !server || !zone) throw new EchgateError('ERR_USAGE', USAGE);
  const dir = str(a, 'dir') ?? 'keys';
  const { keys, problems } = listKeys(dir);
  for (const p of problems) process.stderr.write(`echgate: skipped ${p.file}: ${p.message}\n`);
  const list = publishedList(keys);
  if (!list) throw new EchgateError('ERR_KEYSTORE', `no active key in ${dir}: nothing to publish`);
  const ttlText = str(a, 'ttl') ?? '300';
  if (!/^\d+$/.test(ttlText) || Number(ttlText) > 86400) throw new EchgateError('ERR_USAGE', '--ttl takes seconds, 0..86400');
  const portText = str(a, 'port');
  if (portText !== undefined && (!/^\d+$/.test(portText) || Number(portText) < 1 || Number(portText) > 65535)) throw new EchgateError('ERR_USAGE', '--port takes a port number');
  const keyFile = str(a, 'tsig-key');
  const key = keyFile ? parseTsigKeyFile(readFileSync(keyFile, 'utf8')) : undefined;
  const ids = keys.filter((k) => k.meta.state === 'active').map((k) => k.meta.configId);

  await publishHttps(
    { ...server, zone, key },
    { name, ttl: Number(ttlText), echConfigList: list, alpn: str(a, 'alpn')?.split(','), port: portText ? Number(portText) : undefined },
  );
  out(`published ${name} HTTPS (ech= config_id ${ids.join(', ')}, TTL ${ttlText}) to ${server.host}:${server.port}${key ? ` with TSIG key ${key.name}` : ''}\n`);

  const doh = str(a, 'verify-doh');
  if (doh) {
    const timeoutMs = parseDuration(str(a, 'verify-timeout') ?? '30s');
    if (timeoutMs === undefined) throw new EchgateError('ERR_USAGE', '--verify-timeout takes a duration such as 30s');
    const caFile = str(a, 'ca');
    const r = await readBackEch(doh, name, list, { ca: caFile ? readFileSync(caFile, 'utf8') : undefined, timeoutMs });
    out(`read back over ${doh}: ech= matches (${r.attempts} attempt${r.attempts > 1 ? 's' : ''}); keys replaced by this list may be retired once ${ttlText} s (the TTL) have passed\n`);
  }
  return 0;
}
