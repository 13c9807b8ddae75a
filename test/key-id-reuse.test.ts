/**
 * ECH config_ids come back (docs/ech.md "config_ids"): automatic rotation
 * never runs out of the 256 ids. A retired key's id may be taken again once
 * it has rested ID_REUSE_MARGIN_MS after the retirement, the one retired
 * longest ago first; an id of a key in its decrypt window is never taken;
 * retired metadata is deleted after RETIRED_KEEP_MS, so files do not pile up.
 * A stale client that presents a reused id is rejected with retry_configs
 * (RFC 9849 §7.1). All on an injected clock: nothing waits.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { pino } from 'pino';
import { nodeProvider } from '../src/crypto/node.js';
import { buildEchClientHello } from '../src/ech/client.js';
import { decryptEch } from '../src/ech/server.js';
import type { EchgateError } from '../src/errors.js';
import { ESNI_RETAIN_S, generateEsniKey, loadEsniKeys, rotateEsniKeys, sweepEsniKeys } from '../src/keys/esni-store.js';
import { Keyring } from '../src/keys/keyring.js';
import { startRotation } from '../src/cli/rotation.js';
import type { Config } from '../src/config/types.js';
import { Metrics } from '../src/proxy/metrics.js';
import { generateKey, ID_REUSE_MARGIN_MS, idUse, listKeys, makeKey, RETIRED_KEEP_MS, retireKey, rotateKeys, rotationIdWarnings, sweepKeys } from '../src/keys/manager.js';
import { planRotation } from '../src/keys/schedule.js';
import { KeyDir, type KeyMeta, type StoredKey } from '../src/keys/store.js';
import { decodeClientHelloMessage } from '../src/wire/tls/client-hello.js';
import { ROOT, sleep } from './helpers.js';

const run = promisify(execFile);
const BIN = join(ROOT, 'bin', 'echgate.js');
const tmp = () => mkdtempSync(join(tmpdir(), 'echgate-idreuse-'));
const M = 60_000;
const H = 60 * M;
const T0 = Date.parse('2026-01-01T00:00:00Z');
const iso = (ms: number) => new Date(ms).toISOString();
const PN = 'public.example.test';
const key = (configId: number, state: KeyMeta['state'], more: Partial<KeyMeta> = {}): StoredKey => ({
  meta: { configId, publicName: PN, state, created: iso(T0 - 100 * H), ...more },
  // Every state but retired has its key file (KeyDir.load drops the others).
  ...(state === 'retired' ? {} : { file: `/k/ech-${configId}.pem` }),
});
const pick = (keys: StoredKey[], now = T0) => makeKey(idUse(keys, [], now), { publicName: PN, now: new Date(now) }).meta.configId;

describe('config_id choice (pure)', () => {
  it('every id in a decrypt window (active, decrypt-only, even past its notAfter but not yet retired): refused, never reused', () => {
    const keys = [key(0, 'active'), ...Array.from({ length: 255 }, (_, i) => key(i + 1, 'decrypt-only', { notAfter: iso(i % 2 ? T0 + H : T0 - H) }))];
    assert.throws(() => pick(keys), (e: EchgateError) => e.code === 'ERR_KEYSTORE' && /all 256 config_ids are in use/.test(e.message));
  });
  it('a retired id is not taken before its rest (ID_REUSE_MARGIN_MS after the retirement) is over', () => {
    const keys = [key(0, 'active'), ...Array.from({ length: 254 }, (_, i) => key(i + 1, 'decrypt-only', { notAfter: iso(T0 + H) })), key(255, 'retired', { notAfter: iso(T0 - ID_REUSE_MARGIN_MS + 1) })];
    assert.throws(() => pick(keys), (e: EchgateError) => /config_id 255\) is free at/.test(e.message));
    assert.equal(pick(keys, T0 + 1), 255, 'free once the rest is over');
  });
  it('no fresh id: the one retired longest ago, never one in a window', () => {
    const keys: StoredKey[] = [key(0, 'active')];
    for (let i = 1; i < 200; i++) keys.push(key(i, 'decrypt-only', { notAfter: iso(T0 + H) }));
    for (let i = 200; i < 256; i++) keys.push(key(i, 'retired', { notAfter: iso(T0 - 2 * H - (i % 7) * M - (i === 231 ? 30 * M : 0)) }));
    for (let n = 0; n < 20; n++) assert.equal(pick(keys), 231);
  });
  it('a fresh id (no file names it) comes before any retired one', () => {
    const keys = [key(0, 'active'), key(1, 'retired', { notAfter: iso(T0 - 10 * H) })];
    const seen = new Set<number>();
    for (let n = 0; n < 200; n++) seen.add(pick(keys));
    assert.ok(!seen.has(0) && !seen.has(1), [...seen].join());
  });
  it('retired metadata whose date cannot be read keeps its id (never taken)', () => {
    const keys = [key(0, 'active'), ...Array.from({ length: 255 }, (_, i) => key(i + 1, 'retired', { notAfter: i === 7 ? 'garbage' : iso(T0 + H) }))];
    assert.throws(() => pick(keys));
    const later = T0 + 2 * H + ID_REUSE_MARGIN_MS;
    for (let n = 0; n < 20; n++) assert.notEqual(pick(keys, later), 8);
  });
  it('--config-id of a key retired moments ago is refused; after its rest it is allowed', () => {
    const keys = [key(0, 'active'), key(9, 'retired', { notAfter: iso(T0) })];
    const use = (now: number) => makeKey(idUse(keys, [], now), { publicName: PN, configId: 9, now: new Date(now) });
    assert.throws(() => use(T0 + ID_REUSE_MARGIN_MS - 1), /already in use or retired less than/);
    assert.equal(use(T0 + ID_REUSE_MARGIN_MS).meta.configId, 9);
  });
});

describe('rotation past 256 rotations (a real folder, an injected clock)', () => {
  it('every 5m, grace 10m: 300 rotations never fail, no id is taken inside its window or rest, files stay bounded', () => {
    const dir = tmp();
    const every = 5 * M;
    const grace = 10 * M;
    let now = T0;
    generateKey(dir, { publicName: PN, now: new Date(now) });
    /** config_id -> when it was retired (its rest starts). */
    const retiredAt = new Map<number, number>();
    const counts: number[] = [];
    let reused = 0;
    for (let i = 0; i < 300; i++) {
      now += every;
      // What serve's scheduler does at each look (src/cli/rotation.ts): retire what planRotation says, sweep, rotate.
      const before = listKeys(dir).keys.map((k) => k.meta);
      const plan = planRotation(before, now, { everyMs: every });
      for (const id of plan.retire) retireKey(dir, id, new Date(now));
      sweepKeys(dir, new Date(now));
      const after = listKeys(dir).keys.map((k) => k.meta);
      for (const m of after) if (m.state === 'retired' && !retiredAt.has(m.configId)) retiredAt.set(m.configId, Date.parse(m.notAfter!));
      const inWindow = new Set(after.filter((m) => m.state !== 'retired').map((m) => m.configId));
      assert.ok(plan.rotateAt! <= now, `rotation ${i} is due`);
      const { created } = rotateKeys(dir, { graceMs: grace, now: new Date(now) });
      const id = created.configId;
      assert.ok(!inWindow.has(id), `rotation ${i}: config_id ${id} was still in a decrypt window`);
      const was = retiredAt.get(id);
      if (was !== undefined) {
        reused++;
        assert.ok(now - was >= ID_REUSE_MARGIN_MS, `rotation ${i}: config_id ${id} retired only ${(now - was) / M} min ago`);
        retiredAt.delete(id);
      }
      counts.push(readdirSync(dir).filter((n) => n.startsWith('ech-')).length);
    }
    // 256 ids cycle in 256 × 5 min ≈ 21 h: past rotation 256 ids come back, each rested ~21 h, the oldest first.
    assert.ok(reused > 30, `ids reused: ${reused}`);
    const live = listKeys(dir).keys;
    assert.equal(live.filter((k) => k.meta.state === 'active').length, 1);
    assert.ok(live.filter((k) => k.file).length <= 4, 'private keys only for the keys in their window');
    // Retired metadata is kept for RETIRED_KEEP_MS (24 h > the 21 h cycle here), so at most one file per id.
    assert.ok(Math.max(...counts) <= 256 + 4, `files: ${Math.max(...counts)}`);
  });

  it('every 1h, grace 2h: retired metadata older than a day is deleted, so the folder holds about a day of files', () => {
    const dir = tmp();
    let now = T0;
    generateKey(dir, { publicName: PN, now: new Date(now) });
    const counts: number[] = [];
    for (let i = 0; i < 60; i++) {
      now += H;
      const plan = planRotation(
        listKeys(dir).keys.map((k) => k.meta),
        now,
        { everyMs: H },
      );
      for (const id of plan.retire) retireKey(dir, id, new Date(now));
      sweepKeys(dir, new Date(now));
      rotateKeys(dir, { graceMs: 2 * H, now: new Date(now) });
      counts.push(readdirSync(dir).filter((n) => n.startsWith('ech-')).length);
    }
    // Steady state: 1 active + 2 decrypt-only (json + pem each) + ~24 retired json.
    const tail = counts.slice(30);
    assert.ok(Math.max(...tail) <= 3 * 2 + RETIRED_KEEP_MS / H + 2, `files: ${Math.max(...tail)}`);
    assert.equal(Math.max(...tail), Math.min(...tail), 'no growth');
  });
});

describe("serve's rotation scheduler (src/cli/rotation.ts) keeps rotating and cleans up", () => {
  it('rotates with every id retired, deletes metadata retired over a day ago, logs both', async () => {
    const dir = tmp();
    const now = T0 + 1000 * H;
    // 256 retired ids: one at T0 (over a day ago), the rest retired 2 h ago (rested, still kept); one active key to rotate.
    const kd = new KeyDir(dir);
    const active = generateKey(dir, { publicName: PN, configId: 0, now: new Date(now - 2 * H) });
    for (let id = 1; id < 256; id++) kd.writeMeta({ configId: id, publicName: PN, state: 'retired', created: iso(T0), notAfter: iso(id === 200 ? T0 : now - 2 * H - id * M) });
    const lines: string[] = [];
    const log = pino({ level: 'info' }, { write: (l: string) => void lines.push(l) });
    const cfg = { ech: { keysDir: dir, trialDecrypt: false, rotation: { everyMs: H, graceMs: 2 * H, publish: 'embedded' } } } as unknown as Config;
    const s = startRotation(cfg, { log, metrics: new Metrics(), now: () => now })!;
    try {
      for (let i = 0; i < 200 && !lines.some((l) => /ECH keys rotated/.test(l)); i++) await sleep(25);
      await s.idle();
    } finally {
      s.stop();
    }
    const text = lines.join('');
    assert.match(text, /ECH retired key metadata deleted: the config_ids are free again/);
    assert.match(text, /"configIds":\[200\]/);
    assert.match(text, /ECH keys rotated/, text);
    const keys = listKeys(dir).keys;
    const made = keys.find((k) => k.meta.state === 'active')!;
    assert.equal(made.meta.configId, 200, 'the id whose metadata went is the only fresh one');
    assert.equal(keys.find((k) => k.meta.configId === active.configId)!.meta.state, 'decrypt-only');
  });
});

describe('sweepKeys', () => {
  it('a decrypt-only key past its grace loses its private key; retired metadata older than a day goes', () => {
    const dir = tmp();
    const a = generateKey(dir, { publicName: PN, now: new Date(T0) });
    rotateKeys(dir, { graceMs: H, now: new Date(T0 + H) });
    assert.deepEqual(sweepKeys(dir, new Date(T0 + 2 * H - 1)), { retired: [], forgotten: [] });
    assert.deepEqual(sweepKeys(dir, new Date(T0 + 2 * H)), { retired: [a.configId], forgotten: [] });
    assert.ok(!readdirSync(dir).includes(new KeyDir(dir).pemPath(a.configId).split('/').pop()!), 'private key deleted');
    assert.equal(listKeys(dir).keys.find((k) => k.meta.configId === a.configId)?.meta.state, 'retired');
    assert.deepEqual(sweepKeys(dir, new Date(T0 + 2 * H + RETIRED_KEEP_MS - 1)).forgotten, []);
    assert.deepEqual(sweepKeys(dir, new Date(T0 + 2 * H + RETIRED_KEEP_MS)).forgotten, [a.configId]);
    assert.equal(listKeys(dir).keys.find((k) => k.meta.configId === a.configId), undefined);
  });
});

describe('ESNI keys past their decrypt window are deleted (sweepEsniKeys, keys rotate --esni)', () => {
  it('a retired key after its Decrypt-Until, a key after not_after + retention: file and private key gone; the others stay', () => {
    const dir = tmp();
    const s0 = T0 / 1000;
    const old = generateEsniKey(dir, { lifetimeS: 7200, now: new Date(T0) });
    const r = rotateEsniKeys(dir, { graceS: 600, now: new Date((s0 + 60) * 1000) });
    assert.deepEqual(sweepEsniKeys(dir, new Date((s0 + 660) * 1000)), [], 'the old key still decrypts');
    assert.deepEqual(sweepEsniKeys(dir, new Date((s0 + 661) * 1000)), [old.file]);
    assert.deepEqual(
      loadEsniKeys(dir).keys.map((k) => k.id),
      [r.created.id],
    );
    const end = r.created.record.notAfter + ESNI_RETAIN_S;
    assert.deepEqual(sweepEsniKeys(dir, new Date(end * 1000)), []);
    assert.deepEqual(sweepEsniKeys(dir, new Date((end + 1) * 1000)), [r.created.file]);
    assert.equal(readdirSync(dir).filter((n) => n.endsWith('.esni')).length, 0);
  });
});

describe('RFC 9849 §7.1: a stale client presenting a reused config_id', () => {
  it('is rejected (decrypt_failed) and gets retry_configs, not a wrong decryption', () => {
    const dir = tmp();
    const old = generateKey(dir, { publicName: PN, configId: 5, now: new Date(T0) });
    const ring = new Keyring(dir);
    ring.reload();
    const staleCfg = ring.all()[0]!.config;
    ring.close();
    retireKey(dir, old.configId, new Date(T0 + H));
    // The id rests, then a new key takes it (as a rotation would once no fresh id is left).
    generateKey(dir, { publicName: PN, configId: 5, now: new Date(T0 + H + ID_REUSE_MARGIN_MS) });
    const ring2 = new Keyring(dir);
    ring2.reload();
    assert.equal(ring2.all()[0]!.configId, 5);
    const h = buildEchClientHello(nodeProvider, { config: staleCfg, innerSni: 'hidden.example.test' });
    const r = decryptEch(nodeProvider, decodeClientHelloMessage(h.outerMessage), ring2);
    assert.equal(r.status, 'rejected');
    if (r.status === 'rejected') assert.equal(r.reason, 'decrypt_failed');
    assert.ok(ring2.retryConfigs, 'retry_configs to send');
    ring2.close();
  });
});

describe('check: rotation settings that bring an id back within a day', () => {
  it('warns under the bound, names it; silent at every 1h', () => {
    assert.deepEqual(rotationIdWarnings({ everyMs: H, graceMs: 48 * H }), []);
    assert.deepEqual(rotationIdWarnings({ everyMs: 6 * M, graceMs: 10 * M }), []);
    const w = rotationIdWarnings({ everyMs: 5 * M, graceMs: 10 * M });
    assert.equal(w.length, 1);
    assert.match(w[0]!, /comes back about 21h after its key was retired, under 24h/);
    assert.doesNotMatch(w[0]!, /run later/);
    assert.match(rotationIdWarnings({ everyMs: M, graceMs: 4 * H })[0]!, /rotations will wait for one and run later than every/);
  });
  it('echgate check: a warning at every 5m; an error with --strict; nothing at every 1h', async () => {
    const dir = tmp();
    generateKey(dir, { publicName: PN });
    const f = join(dir, 'echgate.yml');
    const cfg = (every: string) =>
      writeFileSync(f, `entryPoints: { websecure: { address: "127.0.0.1:1" } }\nech:\n  keysDir: ${JSON.stringify(dir)}\n  rotation: { every: ${every}, grace: 10m, publish: embedded }\ndns: { address: "127.0.0.1:3", ttl: 60, names: {} }\n`);
    cfg('5m');
    assert.match((await run('node', [BIN, 'check', f])).stdout, /warning: ech\.rotation: every 5m with grace 10m cycles all 256 config_ids in 21h/);
    await assert.rejects(run('node', [BIN, 'check', '--strict', f]), (e: { code: number; stdout: string }) => e.code === 1 && /error: ech\.rotation: every 5m/.test(e.stdout));
    cfg('1h');
    assert.doesNotMatch((await run('node', [BIN, 'check', f])).stdout, /ech\.rotation/);
  });
});

