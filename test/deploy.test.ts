/**
 * deploy/echgate.service is a unit systemd accepts as written (systemd-analyze
 * verify: no parse warning, every command executable) with the hardening
 * docs/deploy.md promises, and an exposure score systemd itself rates OK.
 * deploy/Containerfile ships what the program needs at run time (the
 * dashboard's files too) and runs as a user that is not root. The image is
 * not built here (no container daemon).
 */
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { ROOT } from './helpers.js';

const run = promisify(execFile);
const UNIT = join(ROOT, 'deploy', 'echgate.service');
const hasAnalyze = (() => {
  try {
    execFileSync('systemd-analyze', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();
const noAnalyze = hasAnalyze ? false : 'systemd-analyze is not installed (Debian package systemd; .ci/run installs it)';

/** The unit as systemd-analyze should see it: node where this machine has it, if not at /usr/bin/node. */
function unitCopy(edit: (text: string) => string = (t) => t): string {
  const dir = mkdtempSync(join(tmpdir(), 'echgate-unit-'));
  let text = readFileSync(UNIT, 'utf8');
  if (!existsSync('/usr/bin/node')) text = text.replaceAll('/usr/bin/node ', `${process.execPath} `);
  const f = join(dir, 'echgate.service');
  writeFileSync(f, edit(text));
  return f;
}

async function verify(file: string): Promise<{ code: number; stderr: string }> {
  // verify exits 0 on an unknown key or a bad value (it only warns on stderr): both count here.
  return run('systemd-analyze', ['verify', '--man=no', file]).then(
    (r) => ({ code: 0, stderr: r.stderr }),
    (e: { code: number; stderr: string }) => ({ code: e.code, stderr: e.stderr }),
  );
}

/** Key=value lines of the unit (the last value of a key, or all of them). */
function directives(text: string): Map<string, string[]> {
  const m = new Map<string, string[]>();
  for (const line of text.split('\n')) {
    const x = /^([A-Za-z]+)=(.*)$/.exec(line.trim());
    if (x) m.set(x[1]!, [...(m.get(x[1]!) ?? []), x[2]!]);
  }
  return m;
}

describe('deploy/echgate.service (systemd)', () => {
  it('hardening: its own user, CAP_NET_BIND_SERVICE only, ProtectSystem=strict, a StateDirectory for the keys, read-only configuration, journald', () => {
    const d = directives(readFileSync(UNIT, 'utf8'));
    const one = (k: string) => d.get(k)?.at(-1);
    assert.equal(one('DynamicUser'), 'yes');
    assert.equal(one('CapabilityBoundingSet'), 'CAP_NET_BIND_SERVICE');
    assert.equal(one('AmbientCapabilities'), 'CAP_NET_BIND_SERVICE');
    assert.equal(one('NoNewPrivileges'), 'yes');
    assert.equal(one('ProtectSystem'), 'strict');
    assert.equal(one('StateDirectory'), 'echgate');
    assert.equal(one('StateDirectoryMode'), '0700');
    assert.equal(one('ReadOnlyPaths'), '/etc/echgate');
    assert.equal(one('StandardOutput'), 'journal');
    assert.match(one('ExecStart')!, /echgate\.js serve --config \/etc\/echgate\/echgate\.yml$/);
    assert.match(one('ExecStartPre')!, /echgate\.js check --config/);
    assert.equal(one('ExecReload'), '/bin/kill -HUP $MAINPID');
  });

  it('systemd-analyze verify: accepted with no warning', { skip: noAnalyze }, async () => {
    const r = await verify(unitCopy());
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr.trim(), '', r.stderr);
  });

  it('systemd-analyze verify catches a misspelt key and a bad value (so the check above means something)', { skip: noAnalyze }, async () => {
    assert.match((await verify(unitCopy((t) => t.replace('DynamicUser=yes', 'DynamicUsr=yes')))).stderr, /Unknown key 'DynamicUsr'/);
    assert.match((await verify(unitCopy((t) => t.replace('ProtectSystem=strict', 'ProtectSystem=stricter')))).stderr, /protect system value/);
  });

  it('systemd-analyze security: overall exposure rated OK (below 3.0 of 10)', { skip: noAnalyze }, async (t) => {
    const r = await run('systemd-analyze', ['security', '--offline=true', '--no-pager', unitCopy()]).catch((e: { stdout: string; stderr: string }) => e);
    const m = /Overall exposure level for echgate\.service: ([\d.]+)/.exec(r.stdout);
    if (!m) return t.skip(`this systemd-analyze has no --offline security report: ${r.stderr.trim().split('\n')[0]}`);
    assert.ok(Number(m[1]) < 3, `exposure ${m[1]}`);
  });
});

describe('deploy/Containerfile (not built here: no container daemon)', () => {
  const text = readFileSync(join(ROOT, 'deploy', 'Containerfile'), 'utf8');
  it('copies the program, its production dependencies and the dashboard files; never a keys folder', () => {
    for (const p of ['./dist/src', './node_modules', './bin', 'dashboard ./dashboard']) assert.ok(text.includes(p), p);
    assert.doesNotMatch(text, /^COPY \. /m, 'copies the whole context (a local keys/ folder would go in)');
    assert.doesNotMatch(text, /^COPY\s+keys/m);
  });
  it('runs as a user that is not root, with the key folder 0700 and the same check before serve', () => {
    const users = [...text.matchAll(/^USER\s+(\S+)/gm)].map((m) => m[1]);
    assert.ok(users.length > 0 && users.at(-1) !== 'root' && users.at(-1) !== '0');
    assert.match(text, /chmod 0700 \/var\/lib\/echgate \/var\/lib\/echgate\/keys/);
    assert.match(text, /echgate\.js check --config .* && exec node .*echgate\.js serve --config/);
  });
});
