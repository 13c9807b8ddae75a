/** The ECH key folder: RFC 9934 files, lifecycle, atomic 0600 writes, locks, bad files. */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { nodeProvider } from '../src/crypto/node.js';
import { buildEchClientHello } from '../src/ech/client.js';
import { decryptEch } from '../src/ech/server.js';
import { EchgateError } from '../src/errors.js';
import { Keyring } from '../src/keys/keyring.js';
import { decryptingKeys, generateKey, listKeys, publishedList, restartGrace, retireKey, retryList, rotateKeys, undoRotation } from '../src/keys/manager.js';
import { decodeEchPem, encodeEchPem } from '../src/keys/pem.js';
import { KeyDir } from '../src/keys/store.js';
import { decodeECHConfigList } from '../src/wire/ech/config.js';
import { decodeClientHelloMessage, summarize } from '../src/wire/tls/client-hello.js';
import { json, ROOT } from './helpers.js';

const run = promisify(execFile);
const BIN = join(ROOT, 'bin', 'echgate.js');
const tmp = () => mkdtempSync(join(tmpdir(), 'echgate-keys-'));
const manifest = json('captures/manifest.json');
const openssl = json('ech/openssl-echconfiglist-vectors.json');

describe('RFC 9934 PEM', () => {
  it('the capture key file (RFC 9934 form) decodes to the recorded key and config', () => {
    const k = manifest.captures[0].keys;
    const f = decodeEchPem(k.pem);
    assert.equal(Buffer.from(f.privateKey).toString('hex'), k.private_key_hex);
    assert.equal(Buffer.from(f.echConfigList).toString('base64'), k.echconfiglist_b64);
    assert.equal(encodeEchPem(f), k.pem.endsWith('\n') ? k.pem : `${k.pem}\n`);
  });
  it("OpenSSL's test keypairs (PKCS#8 + ECHConfigList) load into a key folder unchanged, as pending keys", () => {
    for (const kp of openssl.keypairs) {
      const dir = tmp();
      const pem = `-----BEGIN PRIVATE KEY-----\n${kp.private_key_pkcs8_base64}\n-----END PRIVATE KEY-----\n-----BEGIN ECHCONFIG-----\n${kp.ech_config_list_base64}\n-----END ECHCONFIG-----\n`;
      writeFileSync(join(dir, 'from-openssl.pem'), pem, { mode: 0o600 });
      const { keys, problems } = new KeyDir(dir).load();
      assert.deepEqual(problems, [], kp.name);
      assert.equal(keys.length, 1);
      assert.equal(Buffer.from(keys[0]!.privateKey!).toString('hex'), kp.x25519_private_key_hex);
      // No metadata: pending (decrypts, not published) until `keys adopt` (docs/ech.md).
      assert.equal(keys[0]!.meta.state, 'pending');
    }
  });
  it("OpenSSL's own key files, copied byte for byte into a key folder: they load, stay unchanged, and decrypt", () => {
    for (const name of ['echconfig.pem', 'echwithexts.pem']) {
      const dir = tmp();
      const original = readFileSync(join(ROOT, 'test', 'vectors', 'openssl-pem', name));
      writeFileSync(join(dir, name), original, { mode: 0o600 });
      const { keys, problems } = new KeyDir(dir).load();
      assert.deepEqual(problems, [], name);
      assert.equal(keys.length, 1, name);
      assert.equal(keys[0]!.meta.publicName, 'example.com');
      const ring = new Keyring(dir);
      ring.reload();
      const h = buildEchClientHello(nodeProvider, { config: keys[0]!.config!, innerSni: 'hidden.example.com' });
      const r = decryptEch(nodeProvider, decodeClientHelloMessage(h.outerMessage), ring);
      assert.equal(r.status, 'accepted', name);
      if (r.status === 'accepted') assert.equal(summarize(r.inner).sni, 'hidden.example.com');
      ring.close();
      assert.deepEqual(readFileSync(join(dir, name)), original, `${name} was rewritten`);
    }
  });
  it('rejects a non-X25519 key and a file without both blocks', () => {
    assert.throws(() => decodeEchPem('-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n'), EchgateError);
    assert.throws(() => decodeEchPem(''), EchgateError);
  });
});

describe('key lifecycle', () => {
  it('generate → rotate → retire; files 0600; exports; a retired id is not reused within its rest', () => {
    const dir = tmp();
    const t0 = new Date('2026-01-01T00:00:00Z');
    const a = generateKey(dir, { publicName: 'public.example.test', configId: 7, aead: 'chacha20poly1305', maxNameLength: 32, now: t0 });
    assert.equal(a.state, 'active');
    for (const f of readdirSync(dir).filter((n) => n.startsWith('ech-'))) assert.equal(statSync(join(dir, f)).mode & 0o777, 0o600, f);
    assert.throws(() => generateKey(dir, { publicName: 'public.example.test', configId: 7 }), /already in use/);
    assert.throws(() => generateKey(dir, { publicName: '10.0.0.1' }), /invalid public name/);

    const r = rotateKeys(dir, { graceMs: 3_600_000, now: t0 });
    assert.notEqual(r.created.configId, 7);
    assert.deepEqual(r.demoted.map((d) => [d.configId, d.state, d.notAfter]), [[7, 'decrypt-only', '2026-01-01T01:00:00.000Z']]);
    const { keys } = listKeys(dir);
    assert.deepEqual(decryptingKeys(keys, t0).map((k) => k.meta.configId).sort(), [7, r.created.configId].sort());
    assert.deepEqual(decryptingKeys(keys, new Date('2026-01-01T02:00:00Z')).map((k) => k.meta.configId), [r.created.configId]);
    // Published list: only the active key; retry_configs: active then retry.
    assert.deepEqual(decodeECHConfigList(publishedList(keys)!).map((c) => ('configId' in c ? c.configId : -1)), [r.created.configId]);
    assert.ok(retryList(keys));

    retireKey(dir, 7);
    assert.throws(() => statSync(join(dir, 'ech-007.pem')), /ENOENT/);
    assert.equal(listKeys(dir).keys.find((k) => k.meta.configId === 7)!.meta.state, 'retired');
    assert.throws(() => generateKey(dir, { publicName: 'public.example.test', configId: 7 }), /already in use or retired/);
  });
  it('a rotation whose DNS step failed is undone; one that succeeded restarts the grace period at read-back time', () => {
    const dir = tmp();
    const t0 = new Date('2026-01-01T00:00:00Z');
    generateKey(dir, { publicName: 'public.example.test', configId: 1, now: t0 });
    const before = publishedList(listKeys(dir).keys)!;
    const r = rotateKeys(dir, { graceMs: 3_600_000, now: t0 });
    undoRotation(dir, r);
    const keys = listKeys(dir).keys;
    assert.deepEqual(publishedList(keys), before, 'DNS still holds the old list, and so do we');
    assert.deepEqual(keys.map((k) => [k.meta.configId, k.meta.state, k.meta.notAfter]).sort(), [[1, 'active', undefined], [r.created.configId, 'retry', undefined]].sort());
    // Both keys decrypt, whatever a client fetched, for as long as they stay.
    assert.deepEqual(decryptingKeys(keys, new Date('2027-01-01T00:00:00Z')).length, 2);

    const r2 = rotateKeys(dir, { graceMs: 3_600_000, now: t0 });
    const t1 = new Date('2026-01-01T00:30:00Z');
    const regraced = restartGrace(dir, r2.demoted, 3_600_000, t1);
    assert.deepEqual(regraced.map((m) => [m.configId, m.notAfter]), [[1, '2026-01-01T01:30:00.000Z']]);
  });
  it('a corrupt file is reported by name and skipped, never regenerated over', () => {
    const dir = tmp();
    generateKey(dir, { publicName: 'public.example.test', configId: 1 });
    writeFileSync(join(dir, 'ech-002.pem'), 'garbage', { mode: 0o600 });
    const before = readFileSync(join(dir, 'ech-002.pem'), 'utf8');
    const { keys, problems } = listKeys(dir);
    assert.equal(keys.length, 1);
    assert.equal(problems.length, 1);
    assert.match(problems[0]!.file, /ech-002\.pem$/);
    generateKey(dir, { publicName: 'public.example.test' });
    assert.equal(readFileSync(join(dir, 'ech-002.pem'), 'utf8'), before);
    // Every config_id but one named by a file (the good keys' or a corrupt one): the new key can
    // only take the one left (a random choice among ids that merely failed to load would write over one).
    const good = new Set(listKeys(dir).keys.map((k) => k.meta.configId));
    const left = [...Array(256).keys()].filter((id) => !good.has(id) && id !== 2).pop()!;
    for (let id = 0; id < 256; id++) {
      if (good.has(id) || id === left) continue;
      writeFileSync(join(dir, `ech-${String(id).padStart(3, '0')}.${id % 2 ? 'pem' : 'json'}`), 'garbage', { mode: 0o600 });
    }
    assert.equal(generateKey(dir, { publicName: 'public.example.test' }).configId, left);
    assert.equal(readFileSync(join(dir, 'ech-002.pem'), 'utf8'), before);
  });
  it('the folder lock refuses a second writer and takes over a dead one', () => {
    const dir = tmp();
    const kd = new KeyDir(dir);
    kd.withLock(() => assert.throws(() => kd.withLock(() => 0), (e: EchgateError) => e.code === 'ERR_LOCKED'));
    writeFileSync(join(dir, '.lock.7'), '999999999\n2026-01-01T00:00:00.000Z\n');
    assert.equal(kd.withLock(() => 42), 42);
    assert.deepEqual(readdirSync(dir).filter((n) => n.startsWith('.lock')).sort(), ['.lock.8', '.lock.8.free'], 'the dead ticket is taken over by the next one, kept when released');
  });
  it('a generated key decrypts what a client encrypts to its config', () => {
    const dir = tmp();
    generateKey(dir, { publicName: 'public.example.test', maxNameLength: 40 });
    const ring = new Keyring(dir);
    ring.reload();
    const cfg = ring.all()[0]!.config;
    const h = buildEchClientHello(nodeProvider, { config: cfg, innerSni: 'secret.example.test', alpn: ['h2'] });
    const r = decryptEch(nodeProvider, decodeClientHelloMessage(h.outerMessage), ring);
    assert.equal(r.status, 'accepted');
    if (r.status === 'accepted') assert.equal(summarize(r.inner).sni, 'secret.example.test');
  });
});

describe('echgate keys (CLI)', () => {
  it('generate, list --json, export in three formats, rotate, retire', async () => {
    const dir = tmp();
    await run('node', [BIN, 'keys', 'generate', '--dir', dir, '--public-name', 'public.example.test', '--config-id', '42', '--aead', 'aes256gcm', '--max-name-length', '64']);
    const list = JSON.parse((await run('node', [BIN, 'keys', 'list', '--json', '--dir', dir])).stdout);
    assert.deepEqual(Object.keys(list[0]).sort(), ['configId', 'created', 'file', 'notAfter', 'publicName', 'state']);
    assert.equal(list[0].configId, 42);
    const b64 = (await run('node', [BIN, 'keys', 'export', '--dir', dir, '--format', 'base64'])).stdout.trim();
    const [c] = decodeECHConfigList(new Uint8Array(Buffer.from(b64, 'base64')));
    assert.ok(c && 'cipherSuites' in c && c.cipherSuites[0]!.aeadId === 2 && c.maximumNameLength === 64);
    const rr = (await run('node', [BIN, 'keys', 'export', '--dir', dir, '--format', 'https-rr', '--name', 'secret.example.test', '--alpn', 'h2'])).stdout;
    assert.equal(rr, `secret.example.test. 300 IN HTTPS 1 . alpn="h2" ech="${b64}"\n`);
    const pem = (await run('node', [BIN, 'keys', 'export', '--dir', dir, '--format', 'pem'])).stdout;
    assert.ok(!pem.includes('PRIVATE KEY'), 'export never prints the private key');
    assert.match(pem, /BEGIN ECHCONFIG/);
    await run('node', [BIN, 'keys', 'rotate', '--dir', dir, '--grace', '1h']);
    const after = JSON.parse((await run('node', [BIN, 'keys', 'list', '--json', '--dir', dir])).stdout);
    assert.deepEqual(after.map((k: any) => k.state).sort(), ['active', 'decrypt-only']);
    await run('node', [BIN, 'keys', 'retire', '--dir', dir, '--config-id', '42']);
    const last = JSON.parse((await run('node', [BIN, 'keys', 'list', '--json', '--dir', dir])).stdout);
    assert.equal(last.find((k: any) => k.configId === 42).state, 'retired');
  });
  it('inspect --keys decrypts a capture; a wrong key reports ech.error', async () => {
    const c = manifest.captures[0];
    const dir = tmp();
    writeFileSync(join(dir, 'capture.pem'), c.keys.pem, { mode: 0o600 });
    const file = join(ROOT, 'test', 'vectors', 'captures', c.file);
    const r = JSON.parse((await run('node', [BIN, 'inspect', '--keys', dir, file])).stdout);
    assert.equal(r.ech.decrypted, true);
    assert.equal(r.innerSni, c.inner_sni);
    assert.deepEqual(r.innerAlpn, c.inner_alpn);
    const g = manifest.captures.find((x: any) => !x.real_ech);
    const r2 = JSON.parse((await run('node', [BIN, 'inspect', '--keys', dir, join(ROOT, 'test', 'vectors', 'captures', g.file)])).stdout);
    assert.equal(r2.ech.decrypted, false);
    assert.match(r2.ech.error, /GREASE|unknown key/);
    assert.equal(r2.innerSni, undefined);
  });
  it('a key folder that cannot be read is an error naming it', () => {
    const missing = join(tmp(), 'nope');
    assert.throws(() => new KeyDir(missing).load(), (e: EchgateError) => e.code === 'ERR_KEYSTORE' && e.message.includes(missing));
  });
});
