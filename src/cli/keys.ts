/** `echgate keys generate|list|rotate|retire|export`: the ECH key folder. */
import { mkdirSync } from 'node:fs';
import { parseDuration } from '../config/duration.js';
import { EchgateError } from '../errors.js';
import { type AeadChoice, generateKey, listKeys, publishedList, restartGrace, retireKey, rotateKeys, undoRotation } from '../keys/manager.js';
import { encodeEchPem } from '../keys/pem.js';
import { type Args, str } from './args.js';
import { PUBLISH_FLAGS, planPublish } from './publish.js';

const USAGE = `usage: echgate keys <command> [--dir DIR]
  generate --public-name NAME [--config-id N] [--aead aes128gcm|aes256gcm|chacha20poly1305] [--max-name-length N]
  list [--json]
  rotate [--public-name NAME] [--grace 24h] [--publish ${PUBLISH_FLAGS}]
         with --publish: the new list goes to DNS and is read back over DoH (--verify-doh is required);
         the old key's grace starts once DNS carries the new list; if DNS fails, the rotation is undone
  retire --config-id N
  export --format base64|https-rr|pem [--name HOST] [--ttl 300] [--alpn h2,http/1.1]
`;

function intFlag(a: Args, name: string): number | undefined {
  const v = str(a, name);
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v)) throw new EchgateError('ERR_USAGE', `--${name} takes a whole number`);
  return Number(v);
}

export async function keysCommand(a: Args, out: (s: string) => void): Promise<number> {
  const [sub] = a.positional;
  const dir = str(a, 'dir') ?? 'keys';
  switch (sub) {
    case 'generate': {
      const publicName = str(a, 'public-name');
      if (!publicName) throw new EchgateError('ERR_USAGE', `--public-name is required\n${USAGE}`);
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      const m = generateKey(dir, {
        publicName,
        configId: intFlag(a, 'config-id'),
        aead: str(a, 'aead') as AeadChoice | undefined,
        maxNameLength: intFlag(a, 'max-name-length'),
      });
      out(`generated config_id ${m.configId} (${m.publicName}), state ${m.state}, in ${dir}\n`);
      return 0;
    }
    case 'list': {
      const { keys, problems } = listKeys(dir);
      for (const p of problems) process.stderr.write(`echgate: skipped ${p.file}: ${p.message}\n`);
      const rows = keys.map((k) => ({
        configId: k.meta.configId,
        publicName: k.meta.publicName,
        state: k.meta.state,
        created: k.meta.created,
        notAfter: k.meta.notAfter ?? null,
        file: k.file ?? null,
      }));
      if (a.flags.get('json') === true) out(`${JSON.stringify(rows, null, 2)}\n`);
      else for (const r of rows) out(`${String(r.configId).padStart(3)}  ${r.state.padEnd(12)}  ${r.publicName}  created ${r.created}${r.notAfter ? `  not after ${r.notAfter}` : ''}\n`);
      return problems.length ? 1 : 0;
    }
    case 'rotate': {
      const graceMs = parseDuration(str(a, 'grace') ?? '24h');
      if (graceMs === undefined) throw new EchgateError('ERR_USAGE', '--grace takes a duration such as 24h');
      // Every publishing flag is checked before the key folder changes.
      const publish = a.flags.get('publish') === true ? planPublish(a, dir, { requireReadBack: true }) : undefined;
      const r = rotateKeys(dir, { publicName: str(a, 'public-name'), graceMs, aead: str(a, 'aead') as AeadChoice | undefined });
      out(`new active key config_id ${r.created.configId}; decrypt-only: ${r.demoted.map((d) => `${d.configId} until ${d.notAfter}`).join(', ') || 'none'}\n`);
      if (publish) {
        try {
          await publish.run(out);
        } catch (e) {
          undoRotation(dir, r);
          out(`DNS did not take the new key: rotation undone (config_id ${r.demoted.map((d) => d.configId).join(', ') || '-'} active again; ${r.created.configId} kept as retry, still decrypting)\n`);
          throw e;
        }
        const regraced = restartGrace(dir, r.demoted, graceMs);
        if (regraced.length) out(`DNS carries the new key; decrypt-only from now: ${regraced.map((d) => `${d.configId} until ${d.notAfter}`).join(', ')}\n`);
      }
      return 0;
    }
    case 'retire': {
      const id = intFlag(a, 'config-id');
      if (id === undefined) throw new EchgateError('ERR_USAGE', '--config-id is required');
      const m = retireKey(dir, id);
      out(`retired config_id ${m.configId}: private key deleted\n`);
      return 0;
    }
    case 'export': {
      const { keys } = listKeys(dir);
      const list = publishedList(keys);
      if (!list) throw new EchgateError('ERR_KEYSTORE', `no active key in ${dir}`);
      const b64 = Buffer.from(list).toString('base64');
      const format = str(a, 'format') ?? 'base64';
      if (format === 'base64') out(`${b64}\n`);
      else if (format === 'https-rr') {
        const name = str(a, 'name') ?? keys.find((k) => k.meta.state === 'active')!.meta.publicName;
        const ttl = intFlag(a, 'ttl') ?? 300;
        const alpn = str(a, 'alpn');
        // RFC 9460 §9 presentation form; RFC 9848 §3 ech= SvcParam (base64 ECHConfigList).
        out(`${name.endsWith('.') ? name : `${name}.`} ${ttl} IN HTTPS 1 .${alpn ? ` alpn="${alpn}"` : ''} ech="${b64}"\n`);
      } else if (format === 'pem') {
        // The public part only: an ECHCONFIG block (never the private key).
        out(encodeEchPem({ privateKey: new Uint8Array(32), echConfigList: list }).replace(/-----BEGIN PRIVATE KEY-----[\s\S]*?-----END PRIVATE KEY-----\n/, ''));
      } else throw new EchgateError('ERR_USAGE', `unknown --format ${format} (base64, https-rr, pem)`);
      return 0;
    }
    default:
      out(USAGE);
      return sub === undefined || sub === 'help' ? 0 : 2;
  }
}
