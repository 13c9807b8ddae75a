/**
 * Strict command-line options: every command refuses an unknown option
 * (named, with the closest valid one), a malformed or missing value, an
 * option given twice and an argument it does not take, with exit code 2 and
 * before doing anything; every command has a --help that lists its options.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { closest, parseCommand } from '../src/cli/args.js';
import { allCommands } from '../src/cli/main.js';
import { ROOT } from './helpers.js';

const exec = promisify(execFile);
const BIN = join(ROOT, 'bin', 'echgate.js');

/** Run echgate; resolve with the exit code and output whether or not it failed. */
async function echgate(args: string[], timeout = 30_000): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await exec('node', [BIN, ...args], { timeout });
    return { code: 0, ...r };
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string; killed: boolean };
    assert.equal(x.killed, false, `echgate ${args.join(' ')} did not exit`);
    return { code: x.code, stdout: x.stdout, stderr: x.stderr };
  }
}

/** A plausible typo of an option name: one letter dropped from the middle. */
const typo = (name: string) => name.slice(0, Math.floor(name.length / 2)) + name.slice(Math.floor(name.length / 2) + 1);

/** Arguments each command needs besides options, so that only the option is wrong. */
const POSITIONALS: Record<string, string[]> = { inspect: ['-'], connect: ['127.0.0.1:1'], resolve: ['example.test'], check: [], convert: [] };

const EXPECTED = ['serve', 'check', 'convert', 'inspect', 'connect', 'resolve', 'publish', 'keys generate', 'keys list', 'keys rotate', 'keys retire', 'keys export', 'keys adopt', 'fleet status', 'fleet import'];

describe('every command: a misspelt option is refused (exit 2, named, with the closest valid one); --help exits 0', () => {
  it('the command list is the one tested', () => {
    assert.deepEqual(allCommands().map((c) => c.name).sort(), [...EXPECTED].sort());
  });
  for (const { name, spec } of allCommands()) {
    it(`echgate ${name}`, async () => {
      const dir = mkdtempSync(join(tmpdir(), 'echgate-opts-'));
      const option = Object.keys(spec.options)[0]!;
      const wrong = typo(option);
      assert.notEqual(wrong, option);
      const where = 'dir' in spec.options ? ['--dir', dir] : [];
      const r = await echgate([...name.split(' '), ...(POSITIONALS[name] ?? []), `--${wrong}`, 'x', ...where]);
      assert.equal(r.code, 2, `${name}: ${r.stderr}`);
      assert.match(r.stderr, new RegExp(`unknown option --${wrong} \\(did you mean --${option}\\?\\)`));
      assert.deepEqual(readdirSync(dir), [], 'nothing was done');

      const h = await echgate([...name.split(' '), '--help']);
      assert.equal(h.code, 0);
      assert.match(h.stdout, new RegExp(`^usage: echgate ${name}`));
      for (const o of Object.keys(spec.options)) assert.match(h.stdout, new RegExp(`--${o}\\b`), `${name} --help lists --${o}`);
      // -h too, and --help wins over a mistake next to it.
      assert.equal((await echgate([...name.split(' '), '--nonsense', '-h'])).code, 0);
    });
  }
});

describe('echgate itself', () => {
  it('--help lists every command and exits 0; no command or an unknown one exits 2', async () => {
    const h = await echgate(['--help']);
    assert.equal(h.code, 0);
    for (const n of EXPECTED) assert.match(h.stdout, new RegExp(`^  ${n} `, 'm'));
    assert.match(h.stdout, /Exit codes: 0 success, 1 the command failed, 2 usage error/);
    assert.equal((await echgate([])).code, 2);
    const u = await echgate(['serv', '--config', 'x']);
    assert.equal(u.code, 2);
    assert.match(u.stderr, /unknown command "serv" \(did you mean "serve"\?\)/);
    const k = await echgate(['keys', 'rotte']);
    assert.equal(k.code, 2);
    assert.match(k.stderr, /unknown keys command "rotte" \(did you mean "rotate"\?\)/);
    assert.equal((await echgate(['keys', '--help'])).code, 0);
  });
});

describe('the failures this guards against', () => {
  // The demo would run until killed, so any bound catches it; 20 s leaves room for node's own
  // start-up on a loaded machine (3 s measured at load 22, where a 5 s bound failed).
  it('serve --confg FILE does not start the embedded demo: exit 2 at once', async () => {
    const r = await echgate(['serve', '--confg', 'echgate.yml'], 20_000);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /unknown option --confg \(did you mean --config\?\)/);
    assert.doesNotMatch(r.stdout, /demo/);
    const p = await echgate(['serve', 'echgate.yml'], 20_000);
    assert.equal(p.code, 2);
    assert.match(p.stderr, /takes no argument "echgate\.yml"/);
  });
  it('resolve --cafile is not ignored', async () => {
    const r = await echgate(['resolve', 'a.example.test', '--doh', 'https://127.0.0.1:1/dns-query', '--cafile', 'ca.pem']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /unknown option --cafile \(did you mean --ca\?\)/);
  });
  it('values are checked before anything runs: whole numbers, ranges, durations, choices, required, once', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'echgate-opts-'));
    const cases: [string[], RegExp][] = [
      [['keys', 'generate', '--dir', dir, '--public-name', 'p.example.test', '--config-id', '256'], /--config-id takes a whole number 0\.\.255, not "256"/],
      [['keys', 'generate', '--dir', dir, '--public-name', 'p.example.test', '--config-id', '1x'], /--config-id takes a whole number/],
      [['keys', 'generate', '--dir', dir, '--public-name', 'p.example.test', '--aead', 'aes512'], /--aead is one of aes128gcm, aes256gcm, chacha20poly1305, not "aes512"/],
      [['keys', 'generate', '--dir', dir], /--public-name is required/],
      [['keys', 'generate', '--dir', dir, '--public-name'], /--public-name <value>' argument missing/],
      [['keys', 'rotate', '--dir', dir, '--grace', 'soon'], /--grace takes a duration such as 30s or 24h, not "soon"/],
      [['keys', 'rotate', '--dir', dir, '--name', 'a.example.test'], /--name is a publishing option: add --publish/],
      [['keys', 'retire', '--dir', dir], /--config-id is required/],
      [['keys', 'export', '--dir', dir, '--format', 'yaml'], /--format is one of base64, https-rr, pem/],
      [['publish', '--dir', dir, '--ttl', '-1'], /--ttl/],
      [['publish', '--dir', dir, '--port', '70000', '--name', 'a', '--server', '127.0.0.1:53', '--zone', 'z'], /--port takes a whole number 1\.\.65535/],
      [['check', '--config', 'a.yml', '--config', 'b.yml'], /--config is given twice/],
      [['check', '--config', 'a.yml', 'b.yml'], /give the configuration once/],
      [['serve', '--config', 'a.yml', '--demo'], /--config and --demo exclude each other/],
      [['connect', '127.0.0.1:1', '--ech-config', 'AAAA', '--keys', dir], /--ech-config and --keys exclude each other/],
      [['connect', 'nohostport'], /"nohostport" is not HOST:PORT/],
      [['connect'], /missing HOST:PORT/],
      [['inspect', 'a', 'b'], /unexpected argument "b"/],
      [['inspect', '--trial-decrypt', '-'], /--trial-decrypt needs --keys/],
      [['resolve', 'a.example.test'], /--doh is required/],
      [['serve', '--demo=yes'], /--demo/],
    ];
    for (const [args, message] of cases) {
      const r = await echgate(args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, message, args.join(' '));
    }
    assert.deepEqual(readdirSync(dir), [], 'no usage error changed the key folder');
  });
  it('closest: a typo gets a suggestion, an unrelated word does not', () => {
    assert.equal(closest('confg', ['config', 'demo']), 'config');
    assert.equal(closest('cafile', ['doh', 'type', 'post', 'ca']), 'ca');
    assert.equal(closest('zzzzzz', ['config', 'demo']), undefined);
  });
  it('parseCommand: --name=value and --name value both work; a flag takes no value', () => {
    const spec = { name: 't', summary: '', options: { a: { kind: 'string', help: '' }, b: { kind: 'flag', help: '' } } } as const;
    const p = parseCommand(spec as never, ['--a=1', '--b']);
    assert.equal(p.help, false);
    if (!p.help) {
      assert.equal(p.flags.get('a'), '1');
      assert.equal(p.flags.get('b'), true);
    }
    assert.throws(() => parseCommand(spec as never, ['--b=1']), /--b/);
  });
});
