/**
 * Private key files readable by group or others (0644, 0640) are warned
 * about, never refused (docs/ech.md "Key files"; a Kubernetes secret volume
 * is 0644 unless defaultMode says otherwise): the loader gives one `readable`
 * notice per file naming it, its mode and `chmod 600`; serve logs it once per
 * file (not at every folder reload); check warns, and fails with --strict.
 * Metadata files hold no secret and are not warned about.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { generateEsniKey, loadEsniKeys } from '../src/keys/esni-store.js';
import { Keyring } from '../src/keys/keyring.js';
import { generateKey } from '../src/keys/manager.js';
import { KeyDir, type LoadResult } from '../src/keys/store.js';
import { ROOT, sleep } from './helpers.js';

const run = promisify(execFile);
const BIN = join(ROOT, 'bin', 'echgate.js');

function keyFolder(): { dir: string; pem: string; meta: string } {
  const dir = join(mkdtempSync(join(tmpdir(), 'echgate-modes-')), 'keys');
  mkdirSync(dir, { mode: 0o700 });
  generateKey(dir, { publicName: 'public.example.test', configId: 7 });
  return { dir, pem: join(dir, 'ech-007.pem'), meta: join(dir, 'ech-007.json') };
}
const readable = (r: { notices: LoadResult['notices'] }) => r.notices.filter((n) => n.readable);

describe('private key files readable by others', () => {
  it('0600: no notice; 0644 and 0640: one notice naming the file, the mode and chmod 600; the key still loads', () => {
    const k = keyFolder();
    assert.deepEqual(readable(new KeyDir(k.dir).load()), []);
    chmodSync(k.meta, 0o644); // metadata: public, not warned about
    assert.deepEqual(readable(new KeyDir(k.dir).load()), []);
    chmodSync(k.pem, 0o644);
    let r = new KeyDir(k.dir).load();
    assert.equal(r.keys.length, 1, 'warned, not refused');
    assert.equal(readable(r).length, 1);
    assert.equal(readable(r)[0]!.file, k.pem);
    assert.match(readable(r)[0]!.message, /ech-007\.pem is readable by group and others \(mode 0644\): chmod 600 .*ech-007\.pem/);
    chmodSync(k.pem, 0o640);
    r = new KeyDir(k.dir).load();
    assert.match(readable(r)[0]!.message, /readable by group \(mode 0640\)/);
  });

  it('ESNI key files too', () => {
    const k = keyFolder();
    const e = generateEsniKey(k.dir, { lifetimeS: 3600 });
    assert.deepEqual(loadEsniKeys(k.dir).notices, []);
    chmodSync(e.file, 0o604);
    const n = loadEsniKeys(k.dir).notices;
    assert.equal(n.length, 1);
    assert.match(n[0]!.message, /\.esni is readable by others \(mode 0604\): chmod 600/);
  });

  it('the keyring reports it once per file and mode, not at every reload; again after it was fixed and loosened', () => {
    const k = keyFolder();
    chmodSync(k.pem, 0o644);
    const seen: string[] = [];
    const ring = new Keyring(k.dir, { onLoad: ({ notices }) => seen.push(...notices.filter((n) => n.readable).map((n) => n.file)) });
    ring.reload();
    ring.reload();
    ring.reload();
    assert.deepEqual(seen, [k.pem]);
    chmodSync(k.pem, 0o600);
    ring.reload();
    chmodSync(k.pem, 0o644);
    ring.reload();
    assert.deepEqual(seen, [k.pem, k.pem]);
    ring.close();
  });

  it('check: a warning (exit 0); with --strict an error (exit 1)', async () => {
    const k = keyFolder();
    const f = join(mkdtempSync(join(tmpdir(), 'echgate-modes-cfg-')), 'echgate.yml');
    writeFileSync(f, `entryPoints: { websecure: { address: "127.0.0.1:0" } }\nech: { keysDir: ${JSON.stringify(k.dir)} }\n`);
    const line = /ech\.keysDir: private key file .*ech-007\.pem is readable by group and others \(mode 0644\): chmod 600/;
    assert.doesNotMatch((await run('node', [BIN, 'check', '--config', f])).stdout, line);
    chmodSync(k.pem, 0o644);
    const plain = await run('node', [BIN, 'check', '--config', f]);
    assert.match(plain.stdout, new RegExp(`warning: ${line.source}`));
    await assert.rejects(run('node', [BIN, 'check', '--strict', '--config', f]), (e: { code: number; stdout: string }) => {
      assert.equal(e.code, 1);
      assert.match(e.stdout, new RegExp(`error: ${line.source}`));
      return true;
    });
  });

  it('serve: one warning naming the file at start, none more at the folder reload a new key causes', async () => {
    const k = keyFolder();
    chmodSync(k.pem, 0o644);
    const f = join(mkdtempSync(join(tmpdir(), 'echgate-modes-cfg-')), 'echgate.yml');
    writeFileSync(f, `entryPoints: { websecure: { address: "127.0.0.1:0" } }\nech: { keysDir: ${JSON.stringify(k.dir)} }\n`);
    const child: ChildProcess = spawn('node', [BIN, 'serve', '--config', f], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const collect = (d: Buffer) => {
      out += d;
    };
    child.stdout!.on('data', collect);
    child.stderr!.on('data', collect);
    const count = (re: RegExp) => out.match(new RegExp(re.source, 'g'))?.length ?? 0;
    const waitFor = async (re: RegExp, n: number) => {
      for (let i = 0; i < 600 && count(re) < n; i++) await sleep(50);
      assert.ok(count(re) >= n, `waited for ${n} x ${re}:\n${out}`);
    };
    try {
      await waitFor(/ECH keys loaded/, 1);
      assert.equal(count(/ech-007\.pem is readable by group and others \(mode 0644\): chmod 600/), 1, out);
      generateKey(k.dir, { publicName: 'public.example.test', configId: 8 });
      await waitFor(/ECH keys loaded/, 2);
      assert.equal(count(/ech-007\.pem is readable/), 1, out);
    } finally {
      child.kill();
    }
  });
});
