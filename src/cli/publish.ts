/**
 * `echgate publish`: put the key folder's active ECHConfigList into an
 * existing DNS zone with a TSIG-signed RFC 2136 update, then read it back over
 * DoH. Exit 0 only when DNS serves what was published. `keys rotate --publish`
 * runs the same steps after a rotation (publishActive).
 */
import { readFileSync } from 'node:fs';
import { parseAddress } from '../config/validate.js';
import { publishHttps, readBackEch } from '../dns/publisher.js';
import { EchgateError } from '../errors.js';
import { listKeys, publishedList } from '../keys/manager.js';
import { parseTsigKeyFile } from '../wire/dns/tsig.js';
import { type Args, type CommandSpec, duration, int, ms, num, type OptionSpec, str, text } from './args.js';
import type { Command } from './command.js';

/** The publishing options, shared by `publish` and `keys rotate --publish`. */
export const PUBLISH_OPTIONS: Record<string, OptionSpec> = {
  name: text('HOST', 'the name whose HTTPS record carries ech='),
  server: text('HOST:PORT', 'the primary that takes the dynamic update (RFC 2136)'),
  zone: text('ZONE', 'the zone the name is in'),
  'tsig-key': text('FILE', 'sign the update with this TSIG key (BIND key file)'),
  ttl: int('SECONDS', 'the record\'s TTL (default 300)', 0, 86400),
  alpn: text('LIST', 'alpn= of the record, comma separated'),
  port: int('N', 'port= of the record', 1, 65535),
  'verify-doh': text('URL', 'read the record back over this DoH endpoint until it carries the new list'),
  ca: text('FILE', 'trust this CA certificate (PEM) for the DoH endpoint'),
  'verify-timeout': duration('how long to wait for the read-back (default 30s)'),
};

export const PUBLISH_FLAGS = '--name HOST --server HOST:PORT --zone ZONE [--tsig-key FILE] [--ttl 300] [--alpn LIST] [--port N] [--verify-doh URL [--ca FILE] [--verify-timeout 30s]]';

export const publishSpec: CommandSpec = {
  name: 'publish',
  summary: 'put the active ECHConfigList in DNS (RFC 2136 + TSIG) and read it back over DoH',
  options: {
    dir: text('DIR', 'the key folder (default keys)'),
    ...PUBLISH_OPTIONS,
  },
};

export interface PublishPlan {
  run(out: (s: string) => void): Promise<{ verified: boolean }>;
}

/** Check every publishing flag before anything changes (a rotation must not start on a typo). */
export function planPublish(a: Args, dir: string, o: { requireReadBack?: boolean } = {}): PublishPlan {
  const name = str(a, 'name');
  const server = parseAddress(str(a, 'server'));
  const zone = str(a, 'zone');
  if (!name || !server || !zone) throw new EchgateError('ERR_USAGE', `publishing needs ${PUBLISH_FLAGS}`);
  if (str(a, 'server') && !server) throw new EchgateError('ERR_USAGE', `--server takes HOST:PORT, not "${str(a, 'server')}"`);
  const ttl = num(a, 'ttl') ?? 300;
  const port = num(a, 'port');
  const keyFile = str(a, 'tsig-key');
  const key = keyFile ? parseTsigKeyFile(readFileSync(keyFile, 'utf8')) : undefined;
  const doh = str(a, 'verify-doh');
  if (o.requireReadBack && !doh) throw new EchgateError('ERR_USAGE', 'a rotation is trusted only after a read-back: give --verify-doh URL');
  const timeoutMs = ms(a, 'verify-timeout') ?? 30_000;
  const caFile = str(a, 'ca');
  const ca = caFile ? readFileSync(caFile, 'utf8') : undefined;

  return {
    async run(out) {
      const { keys, problems } = listKeys(dir);
      for (const p of problems) process.stderr.write(`echgate: skipped ${p.file}: ${p.message}\n`);
      const list = publishedList(keys);
      if (!list) throw new EchgateError('ERR_KEYSTORE', `no active key in ${dir}: nothing to publish`);
      const ids = keys.filter((k) => k.meta.state === 'active').map((k) => k.meta.configId);
      await publishHttps({ ...server, zone, key }, { name, ttl, echConfigList: list, alpn: str(a, 'alpn')?.split(','), port });
      out(`published ${name} HTTPS (ech= config_id ${ids.join(', ')}, TTL ${ttl}) to ${server.host}:${server.port}${key ? ` with TSIG key ${key.name}` : ''}\n`);
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

export const publish: Command = { spec: publishSpec, run: publishCommand };
