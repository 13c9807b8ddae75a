/**
 * `echgate fleet status` and `echgate fleet import` refuse what they cannot
 * do with a clear message and the documented exit code (docs/cli.md: 2 usage,
 * 1 failure): no --config, a stray argument, a configuration that is not a
 * fleet, no KEK, nothing to import, etcd not answering. The paths that reach
 * a real etcd are in test-e2e/fleet-faults.test.ts.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { type FleetStatus, formatFleetStatus, groupConfigRevisions } from '../src/cli/fleet.js';
import { freePort } from '../src/cli/free-port.js';
import { ROOT } from './helpers.js';

const run = promisify(execFile);
async function echgate(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await run('node', [join(ROOT, 'bin', 'echgate.js'), ...args], { timeout: 20_000 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string };
    return { code: x.code, stdout: x.stdout, stderr: x.stderr };
  }
}

describe('echgate fleet status / fleet import: bad options and unreachable etcd → clear errors', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'echgate-fleet-cli-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const keys = join(dir, 'keys');
  mkdirSync(keys, { mode: 0o700 });
  // A port nothing listens on (taken free, then released): etcd "down".
  const closed = await freePort();
  const fleet = join(dir, 'fleet.yml');
  writeFileSync(
    fleet,
    `entryPoints: { websecure: { address: "127.0.0.1:0" } }\nech:\n  keysDir: ${JSON.stringify(keys)}\n  store:\n    etcd:\n      endpoints: ["http://127.0.0.1:${closed}"]\n      kek: { file: ${JSON.stringify(join(dir, 'kek'))} }\n`,
  );
  const plain = join(dir, 'plain.yml');
  writeFileSync(plain, 'entryPoints: { websecure: { address: "127.0.0.1:0" } }\n');

  for (const cmd of ['status', 'import']) {
    it(`fleet ${cmd} without --config: exit 2, names the option`, async () => {
      const r = await echgate(['fleet', cmd]);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, new RegExp(`fleet ${cmd} needs --config FILE .*\\[ERR_USAGE\\]`));
    });
    it(`fleet ${cmd} with a stray argument: exit 2`, async () => {
      const r = await echgate(['fleet', cmd, '--config', fleet, 'extra']);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, /takes no argument "extra"/);
    });
    it(`fleet ${cmd} with a configuration without ech.store.etcd: exit 2, "not a fleet"`, async () => {
      const r = await echgate(['fleet', cmd, '--config', plain]);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, /has no ech\.store\.etcd: not a fleet \[ERR_USAGE\]/);
    });
    it(`fleet ${cmd} with a configuration file that does not exist: exit 1, names the file`, async () => {
      const r = await echgate(['fleet', cmd, '--config', join(dir, 'nope.yml')]);
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /nope\.yml/);
    });
  }

  it('fleet import without the KEK file: exit 1, ERR_KEK, before any etcd request', async () => {
    const r = await echgate(['fleet', 'import', '--config', fleet]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /ech\.store\.etcd\.kek\.file .*kek.*\[ERR_KEK\]/);
  });

  it('fleet import of an empty key folder: exit 1, ERR_KEYSTORE, nothing to import', async () => {
    writeFileSync(join(dir, 'kek'), `${'c3'.repeat(32)}\n`, { mode: 0o600 });
    const r = await echgate(['fleet', 'import', '--config', fleet]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /holds no key to import .*\[ERR_KEYSTORE\]/);
  });

  it('fleet status and fleet import with etcd not answering: exit 1, ERR_FLEET naming the endpoint, one readable line', async () => {
    const g = await echgate(['keys', 'generate', '--dir', keys, '--public-name', 'fleet.example.test']);
    assert.equal(g.code, 0, g.stderr);
    for (const cmd of ['status', 'import']) {
      const r = await echgate(['fleet', cmd, '--config', fleet]);
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, new RegExp(`etcd http://127\\.0\\.0\\.1:${closed} (unreachable|did not answer within 5s).*\\[ERR_FLEET\\]`));
      assert.doesNotMatch(r.stderr, /Resolution note/);
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    }
  });
});

describe('echgate fleet status output: the configuration revisions the instances run', () => {
  const inst = (id: string, configRevision: string) => ({ id, addresses: ['127.0.0.1:443'], keys: [1], configRevision, ready: true, started: '', updated: '' });
  const status = (revs: FleetStatus['configRevisions']): FleetStatus => ({ prefix: 'echgate/', leader: 'i1', configRevisions: revs, keys: [], members: ['i1', 'i2', 'i3'], instances: [inst('i1', '812'), inst('i2', '812'), inst('i3', '790')], rotation: null });
  it('one revision: printed as is', () => {
    assert.match(formatFleetStatus(status([{ revision: '812', instances: ['i1', 'i2', 'i3'] }])), /^fleet echgate\/ {2}leader: i1 {2}configuration revision: 812$/m);
  });
  it('more than one: DIFFER, and which instance runs which', () => {
    const out = formatFleetStatus(status([{ revision: '812', instances: ['i1', 'i2'] }, { revision: '790', instances: ['i3'] }]));
    assert.match(out, /configuration revision: DIFFER: 812 on i1,i2; 790 on i3$/m);
    assert.match(out, /^ {2}i3 +ready +keys 1 +revision 790 /m);
  });
  it('no live instance', () => {
    assert.match(formatFleetStatus(status([])), /configuration revision: \(no live instance\)/);
  });
  it('providers.etcd: the same keys read at different store revisions are one configuration (grouped by digest, newest revision shown); other content differs', () => {
    const etcd = (id: string, revision: number, digest: string) => ({ ...inst(id, String(revision)), config: { rootKey: 'traefik', revision, digest, since: '' } });
    assert.deepEqual(groupConfigRevisions([etcd('i1', 812, 'aa'), etcd('i2', 815, 'aa'), etcd('i3', 790, 'aa')]), [{ revision: '815', instances: ['i1', 'i2', 'i3'] }]);
    assert.deepEqual(groupConfigRevisions([etcd('i1', 812, 'aa'), etcd('i2', 815, 'aa'), etcd('i3', 830, 'bb')]), [
      { revision: '815', instances: ['i1', 'i2'] },
      { revision: '830', instances: ['i3'] },
    ]);
    // Configuration files: the revision is a hash of the file, grouped as it is.
    assert.deepEqual(groupConfigRevisions([inst('i1', 'abc'), inst('i2', 'def'), inst('i3', 'abc')]), [
      { revision: 'abc', instances: ['i1', 'i3'] },
      { revision: 'def', instances: ['i2'] },
    ]);
  });
});
