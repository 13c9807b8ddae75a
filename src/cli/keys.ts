/** `echgate keys generate|list|rotate|retire|export|adopt`: the ECH key folder. */
import { mkdirSync } from 'node:fs';
import { EchgateError } from '../errors.js';
import { type AeadChoice, adoptKey, generateKey, listKeys, publishedList, retireKey, sweepKeys } from '../keys/manager.js';
import { esniState, generateEsniKey, loadEsniKeys, retireEsniKey, sweepEsniKeys } from '../keys/esni-store.js';
import { encodeEchPem } from '../keys/pem.js';
import { type Args, type CommandSpec, duration, existingDir, flag, has, int, ms, num, oneOf, type OptionSpec, str, text } from './args.js';
import type { Command } from './command.js';
import { PUBLISH_OPTIONS, planPublish, rotateAndPublish, rotateEsniAndPublish, stepWriter } from './publish.js';

const DIR: Record<string, OptionSpec> = { dir: text('DIR', 'the key folder (default keys)') };
const AEAD = oneOf(['aes128gcm', 'aes256gcm', 'chacha20poly1305'], 'the HPKE AEAD of the new key (default aes128gcm)');
const dirOf = (a: Args) => str(a, 'dir') ?? 'keys';
/** The key folder of a command that reads or changes keys (all but generate): it must exist (its error names --dir). */
const keyDirOf = (a: Args) => existingDir('--dir', dirOf(a));

/**
 * The shortest --grace `keys rotate` takes without --force: twice the TTL of the published record (RFC 9849
 * §6.1.6 needs the old key to decrypt while resolvers may still hand out the old list; the configuration's
 * ech.rotation.grace has the same 2×TTL floor, config/rotation.ts). Without --publish the CLI cannot know the
 * TTL and takes the one `echgate publish` uses by default.
 */
export function graceFloorS(ttlS = DEFAULT_PUBLISH_TTL_S): number {
  return 2 * ttlS;
}
const DEFAULT_PUBLISH_TTL_S = 300;

const generate: Command = {
  spec: {
    name: 'keys generate',
    summary: 'make a new active ECH key (RFC 9934 PEM file and its metadata)',
    options: {
      ...DIR,
      'public-name': text('NAME', 'the public name clients put in the outer SNI (RFC 9849 §6.1.7); required unless --esni'),
      'config-id': int('N', 'the config_id (default: a random free one)', 0, 255),
      aead: AEAD,
      'max-name-length': int('N', 'maximum_name_length of the ECHConfig (default 0)', 0, 255),
      esni: flag('instead: an experimental ESNI key (draft-ietf-tls-esni-02: X25519, TLS_AES_128_GCM_SHA256; docs/esni.md)'),
      lifetime: duration('--esni: from not_before to not_after (default 24h)'),
      'padded-length': int('N', '--esni: padded_length of the record (default 260)', 16, 65535),
    },
  },
  async run(a, out) {
    const dir = dirOf(a);
    if (has(a, 'esni')) {
      const stray = ['public-name', 'config-id', 'aead', 'max-name-length'].find((o) => a.flags.has(o));
      if (stray) throw new EchgateError('ERR_USAGE', `--${stray} is for ECH keys, not with --esni (see: echgate keys generate --help)`);
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      const k = generateEsniKey(dir, { lifetimeS: (ms(a, 'lifetime') ?? 24 * 3_600_000) / 1000, paddedLength: num(a, 'padded-length') });
      const iso = (s: number) => new Date(s * 1000).toISOString();
      out(`generated ESNI key ${k.id} (X25519, TLS_AES_128_GCM_SHA256, padded_length ${k.record.paddedLength}), valid ${iso(k.record.notBefore)} to ${iso(k.record.notAfter)}, in ${dir}\n`);
      return 0;
    }
    for (const o of ['lifetime', 'padded-length']) if (a.flags.has(o)) throw new EchgateError('ERR_USAGE', `--${o} goes with --esni (see: echgate keys generate --help)`);
    if (!str(a, 'public-name')) throw new EchgateError('ERR_USAGE', '--public-name is required (or --esni for an ESNI key)');
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const m = generateKey(dir, {
      publicName: str(a, 'public-name')!,
      configId: num(a, 'config-id'),
      aead: str(a, 'aead') as AeadChoice | undefined,
      maxNameLength: num(a, 'max-name-length'),
    });
    out(`generated config_id ${m.configId} (${m.publicName}), state ${m.state}, in ${dir}\n`);
    return 0;
  },
};

const list: Command = {
  spec: {
    name: 'keys list',
    summary: 'the keys and their states (exit 1 if a file was skipped)',
    options: { ...DIR, json: flag('JSON instead of a table') },
  },
  async run(a, out) {
    const { keys, problems, notices } = listKeys(keyDirOf(a));
    for (const p of problems) process.stderr.write(`echgate: skipped ${p.file}: ${p.message}\n`);
    for (const n of notices) process.stderr.write(`echgate: ${n.file}: ${n.message}\n`);
    const rows = keys.map((k) => ({
      configId: k.meta.configId,
      publicName: k.meta.publicName,
      state: k.meta.state,
      created: k.meta.created,
      notAfter: k.meta.notAfter ?? null,
      file: k.file ?? null,
    }));
    // ESNI keys (draft-02, experimental): `.esni` files in the same folder.
    const esni = loadEsniKeys(dirOf(a));
    for (const p of esni.problems) process.stderr.write(`echgate: skipped ${p.file}: ${p.message}\n`);
    const now = Math.floor(Date.now() / 1000);
    const iso = (s: number) => new Date(s * 1000).toISOString();
    const esniRows = esni.keys.map((k) => ({
      esni: k.id,
      state: esniState(k, now),
      ...(k.retired ? { retired: iso(k.retired.at), decryptUntil: iso(k.retired.decryptUntil) } : {}),
      notBefore: iso(k.record.notBefore),
      notAfter: iso(k.record.notAfter),
      paddedLength: k.record.paddedLength,
      file: k.file,
    }));
    // An empty listing said nothing before (audit s12 gap 11: `keys list --dir /etc`); say where we looked.
    if (rows.length === 0 && esniRows.length === 0 && problems.length === 0) process.stderr.write(`echgate: no ECH or ESNI keys in ${dirOf(a)} (is --dir the key folder?)\n`);
    if (has(a, 'json')) out(`${JSON.stringify(esniRows.length ? [...rows, ...esniRows] : rows, null, 2)}\n`);
    else {
      for (const r of rows) out(`${String(r.configId).padStart(3)}  ${r.state.padEnd(12)}  ${r.publicName}  created ${r.created}${r.notAfter ? `  not after ${r.notAfter}` : ''}\n`);
      for (const r of esniRows) out(`esni ${r.esni}  ${r.state.padEnd(12)}  valid ${r.notBefore} to ${r.notAfter}  padded_length ${r.paddedLength}${r.decryptUntil ? `  retired, decrypts until ${r.decryptUntil}` : ''}\n`);
    }
    return problems.length || esni.problems.length ? 1 : 0;
  },
};

const rotate: Command = {
  spec: {
    name: 'keys rotate',
    summary: 'a new active key; the old one decrypt-only for the grace period',
    options: {
      ...DIR,
      'public-name': text('NAME', 'the public name to rotate (default: that of the first active key)'),
      grace: duration('how long the old key still decrypts (default 24h)'),
      aead: AEAD,
      esni: flag('rotate the ESNI keys instead (draft-ietf-tls-esni-02, experimental; docs/esni.md): a new one, the others out of _esni TXT'),
      lifetime: duration('--esni: the new key from not_before to not_after (default: that of the newest ESNI key, else 24h)'),
      'padded-length': int('N', '--esni: padded_length of the new record (default: that of the newest ESNI key, else 260)', 16, 65535),
      publish: flag('put the new list in DNS and read it back; undo the rotation if DNS does not take it'),
      force: flag('take a --grace under twice the TTL (see below)'),
      ...PUBLISH_OPTIONS,
    },
    notes: `With --publish: the publishing options are those of echgate publish (--verify-doh is required);
the old key's grace starts once DNS carries the new list; if DNS fails, the rotation is undone.
--grace under twice the DNS TTL (--ttl with --publish, else ${DEFAULT_PUBLISH_TTL_S} s, publish's default: ${graceFloorS()} s) is
refused unless --force: clients holding the previous DNS answer would lose ECH when the old key stops decrypting.`,
  },
  async run(a, out) {
    const dir = keyDirOf(a);
    const graceMs = ms(a, 'grace') ?? 24 * 3_600_000;
    const floorS = graceFloorS(has(a, 'publish') ? (num(a, 'ttl') ?? DEFAULT_PUBLISH_TTL_S) : DEFAULT_PUBLISH_TTL_S);
    if (graceMs < floorS * 1000 && !has(a, 'force')) {
      // Audit s12 gap 6: --grace 0s was taken, and the old key stopped decrypting at once.
      throw new EchgateError(
        'ERR_USAGE',
        `--grace ${graceMs / 1000}s is under ${floorS}s, twice the DNS TTL (${has(a, 'publish') ? '--ttl' : `${DEFAULT_PUBLISH_TTL_S} s, publish's default`}): resolvers may hand out the previous ECHConfigList for a TTL after the new one is published, and clients using it would have ECH rejected once the old key stops decrypting; they recover only through retry_configs (RFC 9849 §6.1.6), and only if a certificate covers the public name. Give --grace ${floorS}s or more, or add --force`,
      );
    }
    const stray = Object.keys(PUBLISH_OPTIONS).find((o) => a.flags.has(o));
    if (stray && !has(a, 'publish')) throw new EchgateError('ERR_USAGE', `--${stray} is a publishing option: add --publish (see: echgate keys rotate --help)`);
    // Every publishing flag is checked before the key folder changes.
    const publish = has(a, 'publish') ? planPublish(a, dir, { requireReadBack: true }) : undefined;
    if (has(a, 'esni')) {
      const stray2 = ['public-name', 'aead'].find((o) => a.flags.has(o));
      if (stray2) throw new EchgateError('ERR_USAGE', `--${stray2} is for ECH keys, not with --esni (see: echgate keys rotate --help)`);
      const lifetime = ms(a, 'lifetime');
      // Expired ESNI keys are deleted first (forward secrecy; they would pile up, one per rotation).
      for (const f of sweepEsniKeys(dir)) out(`deleted expired ESNI key ${f}\n`);
      await rotateEsniAndPublish(dir, { graceS: graceMs / 1000, ...(lifetime !== undefined ? { lifetimeS: lifetime / 1000 } : {}), ...(a.flags.has('padded-length') ? { paddedLength: num(a, 'padded-length') } : {}) }, publish, stepWriter(out));
      return 0;
    }
    for (const o of ['lifetime', 'padded-length']) if (a.flags.has(o)) throw new EchgateError('ERR_USAGE', `--${o} goes with --esni (see: echgate keys rotate --help)`);
    // Keys past their grace lose their private key now (forward secrecy), without serve's rotation
    // doing it; a day-old retired metadata file goes (its config_id is free again).
    const swept = sweepKeys(dir);
    if (swept.retired.length) out(`retired config_id ${swept.retired.join(', ')}: grace over, private key deleted\n`);
    if (swept.forgotten.length) out(`deleted the metadata of config_id ${swept.forgotten.join(', ')}: retired more than a day ago\n`);
    await rotateAndPublish(dir, { publicName: str(a, 'public-name'), graceMs, aead: str(a, 'aead') as AeadChoice | undefined }, publish, stepWriter(out));
    return 0;
  },
};

const retire: Command = {
  spec: {
    name: 'keys retire',
    summary: 'delete a private key; its config_id rests (at least 1 h) before a new key may take it',
    options: { ...DIR, 'config-id': int('N', 'the key to retire', 0, 255), esni: text('ID', 'instead: delete the ESNI key with this id (keys list shows it)') },
  },
  async run(a, out) {
    const esni = str(a, 'esni');
    if (esni !== undefined) {
      if (a.flags.has('config-id')) throw new EchgateError('ERR_USAGE', 'give --config-id or --esni, not both');
      const file = retireEsniKey(keyDirOf(a), esni);
      out(`retired ESNI key ${esni.toLowerCase()}: ${file} deleted\n`);
      return 0;
    }
    if (!a.flags.has('config-id')) throw new EchgateError('ERR_USAGE', '--config-id is required (or --esni ID)');
    const m = retireKey(keyDirOf(a), num(a, 'config-id')!);
    out(`retired config_id ${m.configId}: private key deleted\n`);
    return 0;
  },
};

const adopt: Command = {
  spec: {
    name: 'keys adopt',
    summary: 'give a key file made by another tool (state pending) its metadata: active or retry',
    options: {
      ...DIR,
      'config-id': int('N', 'the pending key', 0, 255, { required: true }),
      state: oneOf(['active', 'retry'], 'its state from now (default active: published and sent in retry_configs)'),
    },
  },
  async run(a, out) {
    const m = adoptKey(keyDirOf(a), num(a, 'config-id')!, (str(a, 'state') ?? 'active') as 'active' | 'retry');
    out(`adopted config_id ${m.configId} (${m.publicName}) as ${m.state}\n`);
    return 0;
  },
};

const exportKeys: Command = {
  spec: {
    name: 'keys export',
    summary: 'the published ECHConfigList (active keys) as base64, an HTTPS record, or PEM',
    options: {
      ...DIR,
      format: oneOf(['base64', 'https-rr', 'pem'], 'output form (default base64)'),
      name: text('HOST', 'https-rr: the owner name (default the public name)'),
      ttl: int('SECONDS', 'https-rr: the TTL (default 300)', 0, 86400),
      alpn: text('LIST', 'https-rr: alpn=, comma separated'),
    },
  },
  async run(a, out) {
    const dir = keyDirOf(a);
    const { keys } = listKeys(dir);
    const list = publishedList(keys);
    if (!list) throw new EchgateError('ERR_KEYSTORE', `no active key in ${dir}`);
    const b64 = Buffer.from(list).toString('base64');
    const format = str(a, 'format') ?? 'base64';
    if (format !== 'https-rr' && (a.flags.has('name') || a.flags.has('ttl') || a.flags.has('alpn'))) {
      throw new EchgateError('ERR_USAGE', '--name, --ttl and --alpn go with --format https-rr (see: echgate keys export --help)');
    }
    if (format === 'base64') out(`${b64}\n`);
    else if (format === 'https-rr') {
      const name = str(a, 'name') ?? keys.find((k) => k.meta.state === 'active')!.meta.publicName;
      const ttl = num(a, 'ttl') ?? 300;
      const alpn = str(a, 'alpn');
      // RFC 9460 §9 presentation form; RFC 9848 §3 ech= SvcParam (base64 ECHConfigList).
      out(`${name.endsWith('.') ? name : `${name}.`} ${ttl} IN HTTPS 1 .${alpn ? ` alpn="${alpn}"` : ''} ech="${b64}"\n`);
    } else {
      // The public part only: an ECHCONFIG block (never the private key).
      out(encodeEchPem({ privateKey: new Uint8Array(32), echConfigList: list }).replace(/-----BEGIN PRIVATE KEY-----[\s\S]*?-----END PRIVATE KEY-----\n/, ''));
    }
    return 0;
  },
};

export const keysCommands: Record<string, Command> = { generate, list, rotate, retire, export: exportKeys, adopt };

/** The specs, for tests and docs. */
export const keysSpecs: CommandSpec[] = Object.values(keysCommands).map((c) => c.spec);
