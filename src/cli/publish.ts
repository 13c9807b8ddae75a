/**
 * `echgate publish`: put the key folder's active ECHConfigList into an
 * existing DNS zone with a TSIG-signed RFC 2136 update, then read it back over
 * DoH. Exit 0 only when DNS serves what was published. `keys rotate --publish`
 * runs the same steps after a rotation (publishActive).
 */
import { readFileSync } from 'node:fs';
import { parseDuration } from '../config/duration.js';
import { parseAddress } from '../config/validate.js';
import { publishHttps, readBackEch } from '../dns/publisher.js';
import { EchgateError } from '../errors.js';
import { listKeys, publishedList } from '../keys/manager.js';
import { parseTsigKeyFile } from '../wire/dns/tsig.js';
import { type Args, str } from './args.js';

export const PUBLISH_FLAGS = `--name HOST --server HOST:PORT --zone ZONE [--tsig-key FILE] [--ttl 300] [--alpn h2,http/1.1]
         [--port N] [--verify-doh URL [--ca FILE] [--verify-timeout 30s]]`;

export interface PublishPlan {
  run(out: (s: string) => void): Promise<{ verified: boolean }>;
}

/** Check every publishing flag before anything changes (a rotation must not start on a typo). */
export function planPublish(a: Args, dir: string, o: { requireReadBack?: boolean } = {}): PublishPlan {
  const name = str(a, 'name');
  const server = parseAddress(str(a, 'server'));
  const zone = str(a, 'zone');
  if (!name || !server || !zone) throw new EchgateError('ERR_USAGE', `publishing needs ${PUBLISH_FLAGS}`);
  const ttlText = str(a, 'ttl') ?? '300';
  if (!/^\d+$/.test(ttlText) || Number(ttlText) > 86400) throw new EchgateError('ERR_USAGE', '--ttl takes seconds, 0..86400');
  const portText = str(a, 'port');
  if (portText !== undefined && (!/^\d+$/.test(portText) || Number(portText) < 1 || Number(portText) > 65535)) throw new EchgateError('ERR_USAGE', '--port takes a port number');
  const keyFile = str(a, 'tsig-key');
  const key = keyFile ? parseTsigKeyFile(readFileSync(keyFile, 'utf8')) : undefined;
  const doh = str(a, 'verify-doh');
  if (o.requireReadBack && !doh) throw new EchgateError('ERR_USAGE', 'a rotation is trusted only after a read-back: give --verify-doh URL');
  const timeoutMs = parseDuration(str(a, 'verify-timeout') ?? '30s');
  if (timeoutMs === undefined) throw new EchgateError('ERR_USAGE', '--verify-timeout takes a duration such as 30s');
  const caFile = str(a, 'ca');
  const ca = caFile ? readFileSync(caFile, 'utf8') : undefined;

  return {
    async run(out) {
      const { keys, problems } = listKeys(dir);
      for (const p of problems) process.stderr.write(`echgate: skipped ${p.file}: ${p.message}\n`);
      const list = publishedList(keys);
      if (!list) throw new EchgateError('ERR_KEYSTORE', `no active key in ${dir}: nothing to publish`);
      const ids = keys.filter((k) => k.meta.state === 'active').map((k) => k.meta.configId);
      await publishHttps({ ...server, zone, key }, { name, ttl: Number(ttlText), echConfigList: list, alpn: str(a, 'alpn')?.split(','), port: portText ? Number(portText) : undefined });
      out(`published ${name} HTTPS (ech= config_id ${ids.join(', ')}, TTL ${ttlText}) to ${server.host}:${server.port}${key ? ` with TSIG key ${key.name}` : ''}\n`);
      if (!doh) return { verified: false };
      const r = await readBackEch(doh, name, list, { ca, timeoutMs });
      out(`read back over ${doh}: ech= matches (${r.attempts} attempt${r.attempts > 1 ? 's' : ''})\n`);
      return { verified: true };
    },
  };
}

export async function publishCommand(a: Args, out: (s: string) => void): Promise<number> {
  await planPublish(a, str(a, 'dir') ?? 'keys').run(out);
  return 0;
}
