/**
 * draft-ietf-tls-esni-02 keys rotated and retired like ECH keys: `keys rotate
 * --esni` adds a key and retires the others (out of the `_esni` TXT, §4, and
 * decrypting through the grace, never past not_after + the retention), `keys
 * retire --esni` deletes one, and publish reads the `_esni` TXT back over
 * DoH (RFC 8484) as it does the HTTPS record.
 */
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import type http2 from 'node:http2';
import type net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { startDohServer } from '../src/dns/doh-server.js';
import { readBackEsni } from '../src/dns/publisher.js';
import { Zone } from '../src/dns/zone.js';
import { isEchgateError } from '../src/errors.js';
import {
  decodeEsniFile,
  decryptingEsni,
  ESNI_RETAIN_S,
  encodeEsniFile,
  esniState,
  generateEsniKey,
  loadEsniKeys,
  publishedEsni,
  retireEsniKey,
  rotateEsniKeys,
  undoEsniRotation,
} from '../src/keys/esni-store.js';
import { generateKey } from '../src/keys/manager.js';
import { caAndLeaf, fakeUpdatePrimary, ROOT, updateNoError } from './helpers.js';

const run = promisify(execFile);
const BIN = join(ROOT, 'bin', 'echgate.js');
const b64 = (r: Uint8Array) => Buffer.from(r).toString('base64');

function folder(): string {
  const d = join(mkdtempSync(join(tmpdir(), 'echgate-esni-rot-')), 'keys');
  mkdirSync(d, { mode: 0o700 });
  return d;
}

describe('ESNI rotation and retirement (keys/esni-store.ts)', () => {
  it('§4: rotate adds a key and retires the others: only the new record is published; the old decrypts through the grace', () => {
    const dir = folder();
    const t0 = new Date('2026-01-01T00:00:00Z');
    const s0 = t0.getTime() / 1000;
    const old = generateEsniKey(dir, { lifetimeS: 7200, paddedLength: 200, now: t0 });
    const r = rotateEsniKeys(dir, { graceS: 600, now: new Date((s0 + 60) * 1000) });
    assert.deepEqual(
      r.retired.map((x) => [x.id, x.decryptUntil]),
      [[old.id, s0 + 660]],
    );
    // The new key takes the newest key's lifetime and padded_length.
    assert.equal(r.created.record.notAfter - r.created.record.notBefore, 7200);
    assert.equal(r.created.record.paddedLength, 200);
    const keys = loadEsniKeys(dir).keys;
    const now = s0 + 61;
    assert.deepEqual(publishedEsni(keys, now, 300)!.records.map(b64), [b64(r.created.raw)]);
    assert.deepEqual(decryptingEsni(keys, now).map((k) => k.id).sort(), [old.id, r.created.id].sort());
    assert.deepEqual(
      decryptingEsni(keys, s0 + 661).map((k) => k.id),
      [r.created.id],
    );
    const o = keys.find((k) => k.id === old.id)!;
    assert.equal(esniState(o, now), 'decrypt-only');
    assert.equal(esniState(o, s0 + 661), 'expired');
  });

  it('§4 not_after: a retired key never decrypts past not_after + the retention, whatever the grace', () => {
    const dir = folder();
    const t0 = new Date('2026-01-01T00:00:00Z');
    const s0 = t0.getTime() / 1000;
    const old = generateEsniKey(dir, { lifetimeS: 3600, now: t0 });
    const r = rotateEsniKeys(dir, { graceS: 30 * 86400, now: new Date((s0 + 100) * 1000) });
    assert.equal(r.retired[0]!.decryptUntil, old.record.notAfter + ESNI_RETAIN_S);
    // §4 not_before: a record not yet valid is not published (the rotation's new key starts now).
    assert.equal(publishedEsni(loadEsniKeys(dir).keys, r.created.record.notBefore - 1, 300), undefined);
  });

  it('undo (DNS refused the new record): the retired keys are published again, the new one kept decrypt-only', () => {
    const dir = folder();
    const old = generateEsniKey(dir, { lifetimeS: 3600 });
    const r = rotateEsniKeys(dir, { graceS: 600 });
    undoEsniRotation(dir, r, 600);
    const keys = loadEsniKeys(dir).keys;
    const now = Math.floor(Date.now() / 1000);
    assert.deepEqual(publishedEsni(keys, now, 300)!.records.map(b64), [b64(old.raw)]);
    assert.ok(keys.find((k) => k.id === r.created.id)!.retired);
    assert.equal(decryptingEsni(keys, now).length, 2);
  });

  it('the state lines: both or neither, dates that parse; a bad file is named and skipped', () => {
    const dir = folder();
    const k = generateEsniKey(dir, { lifetimeS: 3600 });
    const text = readFileSync(k.file, 'utf8');
    const priv = decodeEsniFile(text).privateKey;
    assert.deepEqual(decodeEsniFile(encodeEsniFile(priv, k.raw, { at: 10, decryptUntil: 20 })).retired, { at: 10, decryptUntil: 20 });
    for (const [head, why] of [
      ['Retired: 2026-01-01T00:00:00.000Z\n', /both Retired: and Decrypt-Until:/],
      ['Retired: yesterday\nDecrypt-Until: 2026-01-01T00:00:00.000Z\n', /Retired: not a date/],
    ] as const) {
      writeFileSync(k.file, head + text, { mode: 0o600 });
      const l = loadEsniKeys(dir);
      assert.equal(l.keys.length, 0);
      assert.match(l.problems[0]!.message, why);
    }
  });

  it('keys retire --esni deletes the key file; an unknown id is refused', () => {
    const dir = folder();
    const k = generateEsniKey(dir, { lifetimeS: 3600 });
    assert.throws(() => retireEsniKey(dir, 'deadbeef'), (e: unknown) => isEchgateError(e) && e.code === 'ERR_KEYSTORE');
    retireEsniKey(dir, k.id.toUpperCase());
    assert.equal(existsSync(k.file), false);
  });
});

describe('keys rotate --esni --publish: the _esni TXT published and read back over DoH (RFC 8484)', () => {
  const W = mkdtempSync(join(tmpdir(), 'echgate-esni-pub-'));
  const keys = join(W, 'keys');
  let doh: http2.Http2SecureServer;
  let dohUrl = '';
  /** What the DoH resolver serves for _esni: the folder's published records, or a stale set the test pins. */
  let pinned: Uint8Array[] | undefined;
  before(async () => {
    mkdirSync(keys, { mode: 0o700 });
    generateKey(keys, { publicName: 'public.example.test' });
    generateEsniKey(keys, { lifetimeS: 3600 });
    caAndLeaf(W, ['doh.example.test']);
    writeFileSync(join(W, 'ip.ext'), 'subjectAltName=IP:127.0.0.1\n');
    execFileSync('openssl', ['x509', '-req', '-in', join(W, 'server.csr'), '-CA', join(W, 'ca.pem'), '-CAkey', join(W, 'ca.key'), '-CAcreateserial', '-out', join(W, 'server.pem'), '-days', '2', '-extfile', join(W, 'ip.ext')], { stdio: 'ignore' });
    const { listKeys, publishedList } = await import('../src/keys/manager.js');
    const zone = new Zone(
      { ttl: 1, names: { 'svc.example.test': { https: { alpn: ['h2'], ech: true } } } },
      () => publishedList(listKeys(keys).keys),
      (maxTtl) => (pinned ? { records: pinned, ttl: 1 } : publishedEsni(loadEsniKeys(keys).keys, Math.floor(Date.now() / 1000), maxTtl)),
    );
    doh = await startDohServer({ host: '127.0.0.1', port: 0, cert: readFileSync(join(W, 'server.pem'), 'utf8'), key: readFileSync(join(W, 'server.key'), 'utf8'), zone: () => zone });
    dohUrl = `https://127.0.0.1:${(doh.address() as net.AddressInfo).port}/dns-query`;
  });
  after(() => doh?.close());

  const rotate = async (port: number) =>
    run(process.execPath, [
      BIN, 'keys', 'rotate', '--esni', '--dir', keys, '--grace', '10m', '--publish', '--name', 'svc.example.test', '--server', `127.0.0.1:${port}`, '--zone', 'example.test',
      '--ttl', '1', '--verify-doh', dohUrl, '--ca', join(W, 'ca.pem'), '--verify-timeout', '3s',
    ]).then(
      (r) => ({ code: 0, stdout: r.stdout }),
      (e: { code: number; stdout: string }) => ({ code: e.code, stdout: e.stdout }),
    );

  it('staged, published (HTTPS and _esni), read back (both), active; the old key retired in keys list', async () => {
    const primary = await fakeUpdatePrimary((u) => updateNoError(u));
    try {
      const before = loadEsniKeys(keys).keys.map((k) => k.id);
      const r = await rotate(primary.port);
      assert.equal(r.code, 0, r.stdout);
      const steps = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { step: string; name?: string; esni?: string });
      assert.deepEqual(
        steps.map((s) => `${s.step}${s.name?.startsWith('_esni.') ? ' _esni' : ''}`),
        ['staged', 'published', 'published _esni', 'read back', 'read back _esni', 'active'],
      );
      const list = JSON.parse((await run(process.execPath, [BIN, 'keys', 'list', '--dir', keys, '--json'])).stdout) as { esni?: string; state: string; decryptUntil?: string }[];
      const esni = list.filter((x) => x.esni);
      assert.deepEqual(esni.find((x) => x.esni === steps[0]!.esni)!.state, 'active');
      for (const id of before) {
        const o = esni.find((x) => x.esni === id)!;
        assert.equal(o.state, 'decrypt-only');
        assert.ok(o.decryptUntil);
      }
    } finally {
      primary.close();
    }
  });

  it('the resolver still serves the old _esni set: read-back fails (ERR_DNS_READBACK), the rotation is undone', async () => {
    const primary = await fakeUpdatePrimary((u) => updateNoError(u));
    const live = publishedEsni(loadEsniKeys(keys).keys, Math.floor(Date.now() / 1000), 300)!.records;
    pinned = live;
    try {
      const r = await rotate(primary.port);
      assert.notEqual(r.code, 0);
      const steps = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { step: string });
      assert.deepEqual(steps.at(-1)!.step, 'undone');
      // What was published before is published again.
      assert.deepEqual(publishedEsni(loadEsniKeys(keys).keys, Math.floor(Date.now() / 1000), 300)!.records.map(b64), live.map(b64));
    } finally {
      pinned = undefined;
      primary.close();
    }
  });

  it('readBackEsni: exactly the expected set, in any order; a missing record is named in the error', async () => {
    const recs = publishedEsni(loadEsniKeys(keys).keys, Math.floor(Date.now() / 1000), 300)!.records.map(b64);
    const ca = readFileSync(join(W, 'ca.pem'), 'utf8');
    assert.equal((await readBackEsni(dohUrl, 'svc.example.test', [...recs].reverse(), { ca, timeoutMs: 3000 })).attempts, 1);
    await assert.rejects(readBackEsni(dohUrl, 'svc.example.test', [...recs, 'AAAA'], { ca, timeoutMs: 600, intervalMs: 200 }), (e: unknown) => isEchgateError(e) && e.code === 'ERR_DNS_READBACK' && /_esni\.svc\.example\.test TXT/.test(e.message));
  });
});
