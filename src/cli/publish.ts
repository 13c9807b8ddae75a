/**
 * `echgate publish`: put the key folder's active ECHConfigList into an
 * existing DNS zone with a TSIG-signed RFC 2136 update, then read it back over
 * DoH. Exit 0 only when DNS serves what was published. `keys rotate --publish`
 * runs the same steps after a rotation (publishActive).
 */
import { readFileSync } from 'node:fs';
import { parseAddress } from '../config/validate.js';
import { publishHttps, readBackEch, readBackEsni } from '../dns/publisher.js';
import { EchgateError } from '../errors.js';
import type { PublishSettings } from '../config/types.js';
import { type EsniRotation, loadEsniKeys, publishedEsni, restartEsniGrace, rotateEsniKeys, undoEsniRotation } from '../keys/esni-store.js';
import { listKeys, publishedList, type RotateOptions, restartGrace, rotateKeys, undoRotation } from '../keys/manager.js';
import type { KeyMeta } from '../keys/store.js';
import { parseTsigKeyFile } from '../wire/dns/tsig.js';
import { type Args, type CommandSpec, dohUrlOption, duration, int, ms, num, type OptionSpec, readCaFile, readNamedFile, str, text } from './args.js';
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

/**
 * One step of a multi-step command (`publish`, `keys rotate [--publish]`, a
 * rotation inside serve), reported as it happens: `msg` is the sentence a
 * person reads; the other fields are for scripts and the dashboard.
 */
export interface Step {
  step: 'staged' | 'published' | 'read back' | 'active' | 'undone';
  msg: string;
  [field: string]: unknown;
}
export type StepReporter = (s: Step) => void;

/**
 * How a command shows its steps: on a terminal one line each, as it happens
 * (`[published] …`); otherwise (a pipe, a file, a supervisor) one JSON line
 * each, with the time, the step, its fields and `msg`.
 */
export function stepWriter(out: (s: string) => void, tty = process.stdout.isTTY === true, now = () => new Date()): StepReporter {
  if (tty) return (s) => out(`[${s.step}] ${s.msg}\n`);
  return (s) => out(`${JSON.stringify({ time: now().toISOString(), ...s })}\n`);
}

/** The last publication and read-back this process made (the dashboard shows them). */
export interface PublicationState {
  publish?: { at: string; ok: boolean; name: string; server: string; configIds: number[]; ttl: number; error?: string };
  readBack?: { at: string; ok: boolean; doh: string; attempts?: number; error?: string };
}
export const publicationState: PublicationState = {};

const errText = (e: unknown) => (e instanceof Error ? e.message : String(e));

export interface PublishPlan {
  run(report: StepReporter): Promise<{ verified: boolean }>;
}

/** Whether `name` is `zone` or under it (names compare without case and trailing dot, RFC 4343). */
export function inZone(name: string, zone: string): boolean {
  const n = name.toLowerCase().replace(/\.$/, '');
  const z = zone.toLowerCase().replace(/\.$/, '');
  return z === '' || n === z || n.endsWith(`.${z}`);
}

/** Check every publishing flag before anything changes (a rotation must not start on a typo). */
export function planPublish(a: Args, dir: string, o: { requireReadBack?: boolean } = {}): PublishPlan {
  const name = str(a, 'name');
  const server = parseAddress(str(a, 'server'));
  const zone = str(a, 'zone');
  // The malformed --server first: without its port it read as missing, and the generic line below did not say which.
  if (str(a, 'server') && !server) throw new EchgateError('ERR_USAGE', `--server takes HOST:PORT (the primary's DNS port, usually 53), not "${str(a, 'server')}"`);
  if (!name || !server || !zone) throw new EchgateError('ERR_USAGE', `publishing needs ${PUBLISH_FLAGS}`);
  // RFC 2136 §3.4.1.3: an update's names must be in the zone it names (else NOTZONE, found only at the network).
  if (!inZone(name, zone)) throw new EchgateError('ERR_USAGE', `--name ${name} is not in --zone ${zone}: the record's name must be the zone or under it (RFC 2136 §3.4.1.3)`);
  // The files are read now, named by their option, not as a bare ENOENT after the key folder changed.
  const tsig = str(a, 'tsig-key');
  if (tsig) readNamedFile('--tsig-key', tsig);
  const ca = str(a, 'ca');
  if (ca) readCaFile('--ca', ca);
  const doh = dohUrlOption(a, 'verify-doh');
  if (o.requireReadBack && !doh) throw new EchgateError('ERR_USAGE', 'a rotation is trusted only after a read-back: give --verify-doh URL');
  return planPublishSettings(
    { name, server, zone, tsigKey: str(a, 'tsig-key'), ttl: num(a, 'ttl') ?? 300, alpn: str(a, 'alpn')?.split(','), port: num(a, 'port'), verifyDoh: doh, ca: str(a, 'ca'), verifyTimeoutMs: ms(a, 'verify-timeout') ?? 30_000 },
    dir,
  );
}

/**
 * The publishing steps from settings (the flags above, or ech.rotation.publish
 * in the configuration): the TSIG key and CA files are read now, so a missing
 * file fails before anything changes.
 */
export function planPublishSettings(s: PublishSettings, dir: string): PublishPlan {
  const { name, server, zone, ttl, port } = s;
  const key = s.tsigKey ? parseTsigKeyFile(readFileSync(s.tsigKey, 'utf8')) : undefined;
  const doh = s.verifyDoh;
  const ca = s.ca ? readFileSync(s.ca, 'utf8') : undefined;
  return {
    async run(report) {
      const { keys, problems } = listKeys(dir);
      for (const p of problems) process.stderr.write(`echgate: skipped ${p.file}: ${p.message}\n`);
      const list = publishedList(keys);
      if (!list) throw new EchgateError('ERR_KEYSTORE', `no active key in ${dir}: nothing to publish`);
      const ids = keys.filter((k) => k.meta.state === 'active').map((k) => k.meta.configId);
      // ESNI (draft-02, experimental): when the folder holds ESNI keys, _esni.NAME TXT is replaced in the same
      // UPDATE by the records valid now, its TTL capped at the seconds left to the earliest not_after (§4).
      const esniKeys = loadEsniKeys(dir);
      const live = esniKeys.keys.length ? publishedEsni(esniKeys.keys, Math.floor(Date.now() / 1000), ttl) : undefined;
      const esni = esniKeys.keys.length ? { records: (live?.records ?? []).map((r) => Buffer.from(r).toString('base64')), ttl: live?.ttl ?? ttl } : undefined;
      const primary = `${server.host}:${server.port}`;
      try {
        await publishHttps({ ...server, zone, key }, { name, ttl, echConfigList: list, alpn: s.alpn, port, esni });
      } catch (e) {
        publicationState.publish = { at: new Date().toISOString(), ok: false, name, server: primary, configIds: ids, ttl, error: errText(e) };
        throw e;
      }
      publicationState.publish = { at: new Date().toISOString(), ok: true, name, server: primary, configIds: ids, ttl };
      report({
        step: 'published',
        name,
        server: primary,
        configIds: ids,
        ttl,
        msg: `published ${name} HTTPS (ech= config_id ${ids.join(', ')}, TTL ${ttl}) to ${primary}${key ? ` with TSIG key ${key.name}` : ''}`,
      });
      if (esni) report({ step: 'published', name: `_esni.${name}`, server: primary, ttl: esni.ttl, msg: `published _esni.${name} TXT: ${esni.records.length} ESNI record${esni.records.length === 1 ? '' : 's'}, TTL ${esni.ttl}` });
      if (!doh) return { verified: false };
      let r: Awaited<ReturnType<typeof readBackEch>>;
      try {
        r = await readBackEch(doh, name, list, { ca, timeoutMs: s.verifyTimeoutMs });
      } catch (e) {
        publicationState.readBack = { at: new Date().toISOString(), ok: false, doh, error: errText(e) };
        throw e;
      }
      publicationState.readBack = { at: new Date().toISOString(), ok: true, doh, attempts: r.attempts };
      report({ step: 'read back', doh, attempts: r.attempts, msg: `read back over ${doh}: ech= matches (${r.attempts} attempt${r.attempts > 1 ? 's' : ''})` });
      if (esni) {
        // The _esni TXT RRset is read back the same way: exactly the records just published (draft-02 §4).
        let e: { attempts: number };
        try {
          e = await readBackEsni(doh, name, esni.records, { ca, timeoutMs: s.verifyTimeoutMs });
        } catch (err) {
          publicationState.readBack = { at: new Date().toISOString(), ok: false, doh, error: errText(err) };
          throw err;
        }
        report({ step: 'read back', name: `_esni.${name}`, doh, attempts: e.attempts, msg: `read back _esni.${name} TXT over ${doh}: ${esni.records.length} ESNI record${esni.records.length === 1 ? '' : 's'} as published (${e.attempts} attempt${e.attempts > 1 ? 's' : ''})` });
      }
      return { verified: true };
    },
  };
}

/**
 * One rotation, as `keys rotate [--publish]` and the scheduler of `serve` run
 * it: the locked rotation of the key folder (rotateKeys), then, with a plan,
 * the DNS update and its read-back. DNS failing undoes the rotation (the old
 * keys active again, the new one kept as retry) and rethrows; DNS carrying
 * the new list starts the old keys' grace period again from now.
 */
export async function rotateAndPublish(dir: string, o: RotateOptions, publish: PublishPlan | undefined, report: StepReporter): Promise<{ created: KeyMeta; demoted: KeyMeta[] }> {
  const r = rotateKeys(dir, o);
  const until = (ds: KeyMeta[]) => ds.map((d) => ({ configId: d.configId, notAfter: d.notAfter }));
  const grace = (ds: KeyMeta[]) => ds.map((d) => `${d.configId} until ${d.notAfter}`).join(', ');
  report({
    step: 'staged',
    configId: r.created.configId,
    publicName: r.created.publicName,
    decryptOnly: until(r.demoted),
    msg: `new active key config_id ${r.created.configId}; decrypt-only: ${grace(r.demoted) || 'none'}`,
  });
  if (!publish) {
    report({ step: 'active', configId: r.created.configId, msg: `config_id ${r.created.configId} is active (no DNS step: publish it, or the embedded DNS serves it at once)` });
    return r;
  }
  try {
    await publish.run(report);
  } catch (e) {
    undoRotation(dir, r);
    report({
      step: 'undone',
      configId: r.created.configId,
      error: errText(e),
      msg: `DNS did not take the new key: rotation undone (config_id ${r.demoted.map((d) => d.configId).join(', ') || '-'} active again; ${r.created.configId} kept as retry, still decrypting)`,
    });
    throw e;
  }
  const regraced = restartGrace(dir, r.demoted, o.graceMs);
  report({
    step: 'active',
    configId: r.created.configId,
    decryptOnly: until(regraced.length ? regraced : r.demoted),
    msg: regraced.length ? `DNS carries the new key; decrypt-only from now: ${grace(regraced)}` : `DNS carries the new key config_id ${r.created.configId}`,
  });
  return { created: r.created, demoted: regraced.length ? regraced : r.demoted };
}

/**
 * `keys rotate --esni [--publish]` (draft-02, experimental): a new ESNI key,
 * the others retired (out of `_esni` TXT, decrypting through the grace); with
 * a plan, published and read back, the rotation undone when DNS does not take
 * it, and the grace restarted once it does — the same steps as for ECH keys.
 */
export async function rotateEsniAndPublish(dir: string, o: { graceS: number; lifetimeS?: number; paddedLength?: number }, publish: PublishPlan | undefined, report: StepReporter): Promise<EsniRotation> {
  const r = rotateEsniKeys(dir, o);
  const iso = (s: number) => new Date(s * 1000).toISOString();
  const grace = (rs: EsniRotation['retired']) => rs.map((x) => `${x.id} until ${iso(x.decryptUntil)}`).join(', ');
  report({ step: 'staged', esni: r.created.id, notBefore: iso(r.created.record.notBefore), notAfter: iso(r.created.record.notAfter), decryptOnly: r.retired.map((x) => ({ esni: x.id, until: iso(x.decryptUntil) })), msg: `new ESNI key ${r.created.id} (valid ${iso(r.created.record.notBefore)} to ${iso(r.created.record.notAfter)}); retired, decrypt-only: ${grace(r.retired) || 'none'}` });
  if (!publish) {
    report({ step: 'active', esni: r.created.id, msg: `ESNI key ${r.created.id} is the one published (no DNS step: publish it, or the embedded DNS serves it at once)` });
    return r;
  }
  try {
    await publish.run(report);
  } catch (e) {
    undoEsniRotation(dir, r, o.graceS);
    report({ step: 'undone', esni: r.created.id, error: errText(e), msg: `DNS did not take the new ESNI record: rotation undone (${r.retired.map((x) => x.id).join(', ') || '-'} published again; ${r.created.id} kept decrypt-only for the grace)` });
    throw e;
  }
  const regraced = restartEsniGrace(dir, r, o.graceS);
  report({ step: 'active', esni: r.created.id, decryptOnly: regraced.map((x) => ({ esni: x.id, until: iso(x.decryptUntil) })), msg: `DNS carries ESNI key ${r.created.id}${regraced.length ? `; decrypt-only from now: ${grace(regraced)}` : ''}` });
  return { created: r.created, retired: regraced };
}

export async function publishCommand(a: Args, out: (s: string) => void): Promise<number> {
  await planPublish(a, str(a, 'dir') ?? 'keys').run(stepWriter(out));
  return 0;
}

export const publish: Command = { spec: publishSpec, run: publishCommand };
