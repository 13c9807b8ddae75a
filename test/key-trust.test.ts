/**
 * Key folder trust: a folder or key file that another user could write (mode
 * bits, owner) is refused whole by check, serve and the keyring watcher; a
 * PEM file without metadata is pending (decrypts, never published) until
 * adopted. Tests run as root: ownership is tested with files chowned to 65534.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readFileSync, type Stats, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import type { EchgateError } from '../src/errors.js';
import { Keyring } from '../src/keys/keyring.js';
import { adoptKey, generateKey, listKeys, publishedList, retryList } from '../src/keys/manager.js';
import { KeyDir, trustProblem } from '../src/keys/store.js';
import { json, ROOT, sleep } from './helpers.js';

const run = promisify(execFile);
const BIN = join(ROOT, 'bin', 'echgate.js');
const manifest = json('captures/manifest.json');
const isTrust = (what: string) => (e: EchgateError) => e.code === 'ERR_KEY_TRUST' && e.message.includes(what);

function keyFolder(): { dir: string; pem: string; meta: string } {
  const dir = join(mkdtempSync(join(tmpdir(), 'echgate-trust-')), 'keys');
  mkdirSync(dir, { mode: 0o700 });
  generateKey(dir, { publicName: 'public.example.test', configId: 7 });
  return { dir, pem: join(dir, 'ech-007.pem'), meta: join(dir, 'ech-007.json') };
}

describe('key folder trust: mode bits', () => {
  it('a folder writable by others or by group is refused; 0700 and 0755 load', () => {
    const k = keyFolder();
    assert.equal(new KeyDir(k.dir).load().keys.length, 1);
    chmodSync(k.dir, 0o755);
    assert.equal(new KeyDir(k.dir).load().keys.length, 1);
    for (const mode of [0o777, 0o770, 0o702]) {
      chmodSync(k.dir, mode);
      assert.throws(() => new KeyDir(k.dir).load(), isTrust(k.dir), mode.toString(8));
    }
    // Sticky (like /tmp) is still writable by others.
    chmodSync(k.dir, 0o1777);
    assert.throws(() => new KeyDir(k.dir).load(), isTrust('writable by group and others'));
  });
  it('a key file or metadata file writable by group or others is refused, and named', () => {
    const k = keyFolder();
    for (const f of [k.pem, k.meta]) {
      for (const mode of [0o666, 0o620, 0o602]) {
        chmodSync(f, mode);
        assert.throws(() => new KeyDir(k.dir).load(), isTrust(f), `${f} ${mode.toString(8)}`);
        assert.throws(() => listKeys(k.dir), isTrust(f));
      }
      chmodSync(f, 0o600);
    }
    chmodSync(k.pem, 0o644); // readable is not writable
    assert.equal(new KeyDir(k.dir).load().keys.length, 1);
  });
  it('nothing is written into a refused folder (generate and rotate load it first, under the lock)', () => {
    const k = keyFolder();
    chmodSync(k.pem, 0o666);
    assert.throws(() => generateKey(k.dir, { publicName: 'public.example.test' }), isTrust(k.pem));
    chmodSync(k.pem, 0o600);
    assert.equal(listKeys(k.dir).keys.length, 1);
  });
});

describe('key folder trust: owner', () => {
  it('trustProblem: the running user or root may own; anyone else may not', () => {
    const st = (uid: number, mode = 0o100600) => ({ uid, mode }) as Stats;
    assert.equal(trustProblem(st(1000), 'f', 1000), undefined);
    assert.equal(trustProblem(st(0), 'f', 1000), undefined);
    assert.match(trustProblem(st(65534), 'f', 1000)!, /owned by uid 65534, not by uid 1000/);
    assert.match(trustProblem(st(1000, 0o100622), 'f', 1000)!, /writable by group and others \(mode 0622\)/);
  });
  it('a key file, a metadata file, or the folder owned by another uid (65534) is refused', () => {
    for (const which of ['pem', 'meta', 'dir'] as const) {
      const k = keyFolder();
      chownSync(k[which], 65534, 65534);
      assert.throws(() => new KeyDir(k.dir).load(), isTrust('owned by uid 65534'), which);
      chownSync(k[which], process.getuid!(), process.getgid!());
      assert.equal(new KeyDir(k.dir).load().keys.length, 1, which);
    }
  });
});

describe('key folder trust: check, serve, and the running keyring', () => {
  const config = (keysDir: string) => {
    const f = join(mkdtempSync(join(tmpdir(), 'echgate-trust-cfg-')), 'echgate.yml');
    writeFileSync(f, `entryPoints: { websecure: { address: "127.0.0.1:0" } }\nech: { keysDir: ${JSON.stringify(keysDir)} }\n`);
    return f;
  };
  it('echgate check and echgate serve exit 1 naming the file and why; a trusted folder checks ok', async () => {
    const k = keyFolder();
    const f = config(k.dir);
    assert.match((await run('node', [BIN, 'check', '--config', f])).stdout, /ok .*1 ECH keys/);
    chmodSync(k.pem, 0o664);
    for (const cmd of ['check', 'serve']) {
      await assert.rejects(run('node', [BIN, cmd, '--config', f], { timeout: 10_000 }), (e: { code: number; stderr: string }) => {
        assert.equal(e.code, 1, cmd);
        assert.match(e.stderr, /refusing key folder .*ech-007\.pem is writable by group \(mode 0664\).*\[ERR_KEY_TRUST\]/, cmd);
        return true;
      });
    }
    chmodSync(k.pem, 0o600);
    chownSync(k.dir, 65534, 65534);
    await assert.rejects(run('node', [BIN, 'check', '--config', f]), (e: { code: number; stderr: string }) => e.code === 1 && /owned by uid 65534/.test(e.stderr));
  });
  it('the watcher refuses a reload when a key file others can write appears: the old keys stay, the error is reported', async () => {
    const k = keyFolder();
    const errors: string[] = [];
    const ring = new Keyring(k.dir, { onError: (e) => errors.push(e.message) });
    ring.reload();
    ring.watch();
    try {
      const before = Buffer.from(ring.published!).toString('base64');
      // A key dropped in by someone else: world-writable, no metadata.
      const dropped = join(k.dir, 'ech-099.pem');
      writeFileSync(dropped, manifest.captures[0].keys.pem, { mode: 0o666 });
      chmodSync(dropped, 0o666);
      for (let i = 0; i < 60 && errors.length === 0; i++) await sleep(50);
      assert.match(errors[0] ?? '', /refusing key folder .*ech-099\.pem is writable by group and others/);
      assert.equal(ring.size, 1, 'only the trusted key decrypts');
      assert.equal(Buffer.from(ring.published!).toString('base64'), before, 'DNS still carries the old list');
    } finally {
      ring.close();
    }
  });
});

describe('a PEM file without metadata is pending', () => {
  it('decrypts, is never published nor in retry_configs, is reported; keys adopt makes it active', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'echgate-pending-'));
    const pem = join(dir, 'from-elsewhere.pem');
    writeFileSync(pem, manifest.captures[0].keys.pem, { mode: 0o600 });
    const r = listKeys(dir);
    assert.equal(r.keys.length, 1);
    const id = r.keys[0]!.meta.configId;
    assert.equal(r.keys[0]!.meta.state, 'pending');
    assert.deepEqual(r.problems, []);
    assert.equal(r.notices.length, 1);
    assert.match(r.notices[0]!.message, new RegExp(`loaded as pending .*keys adopt --config-id ${id}`));
    assert.equal(publishedList(r.keys), undefined, 'not published');
    assert.equal(retryList(r.keys), undefined, 'not in retry_configs');
    const ring = new Keyring(dir);
    ring.reload();
    assert.equal(ring.size, 1, 'it decrypts');
    assert.equal(ring.published, undefined);
    ring.close();

    // The CLI shows it as pending and export refuses (nothing active); adopt publishes it.
    const listed = JSON.parse((await run('node', [BIN, 'keys', 'list', '--json', '--dir', dir])).stdout);
    assert.equal(listed[0].state, 'pending');
    await assert.rejects(run('node', [BIN, 'keys', 'export', '--dir', dir]), (e: { code: number; stderr: string }) => e.code === 1 && /no active key/.test(e.stderr));
    const { stdout } = await run('node', [BIN, 'keys', 'adopt', '--dir', dir, '--config-id', String(id)]);
    assert.match(stdout, new RegExp(`adopted config_id ${id} .* as active`));
    assert.equal(listKeys(dir).keys[0]!.meta.state, 'active');
    assert.equal(listKeys(dir).notices.length, 0);
    assert.ok(publishedList(listKeys(dir).keys));
    assert.deepEqual(readFileSync(pem, 'utf8'), manifest.captures[0].keys.pem, 'the key file itself is untouched');
    assert.throws(() => adoptKey(dir, id), (e: EchgateError) => e.code === 'ERR_KEYSTORE' && /already has metadata/.test(e.message));
  });
});
