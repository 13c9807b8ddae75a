/**
 * CLI messages an operator was told wrongly or not at all (audit s12 gaps 6, 8,
 * 11): each names the option, file or URL, and exits with the documented code
 * (docs/cli.md: 2 for a command-line mistake, 1 for a command that ran and failed).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { connectOnce } from '../src/cli/connect.js';
import { generateKey } from '../src/keys/manager.js';
import { caAndLeaf, ROOT, startGateway } from './helpers.js';

const BIN = join(ROOT, 'bin', 'echgate.js');
const W = mkdtempSync(join(tmpdir(), 'echgate-cli-s12-'));
caAndLeaf(W, ['term.example.test']);
const keysDir = join(W, 'keys');
mkdirSync(keysDir);
generateKey(keysDir, { publicName: 'public.example.test' });
const empty = join(W, 'empty');
mkdirSync(empty);

function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string; ms: number }> {
  const t = performance.now();
  return new Promise((resolve) => {
    execFile('node', [BIN, ...args], { timeout: 30_000 }, (err, stdout, stderr) => {
      const code = err ? ((err as { code?: unknown }).code as number) : 0;
      resolve({ code: typeof code === 'number' ? code : 1, stdout, stderr, ms: performance.now() - t });
    });
  });
}

describe('keys rotate --grace under twice the DNS TTL (gap 6)', () => {
  it('--grace 0s: refused (exit 2), saying what clients with cached DNS answers will see', async () => {
    const r = await cli(['keys', 'rotate', '--dir', keysDir, '--grace', '0s']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--grace 0s is under 600s, twice the DNS TTL/);
    assert.match(r.stderr, /ECH rejected once the old key stops decrypting.*retry_configs.*--force/);
  });

  it('--publish --ttl 60: the floor is 120 s', async () => {
    const r = await cli(['keys', 'rotate', '--dir', keysDir, '--grace', '100s', '--publish', '--ttl', '60', '--name', 'public.example.test', '--server', '127.0.0.1:53', '--zone', 'example.test', '--verify-doh', 'https://127.0.0.1/dns-query']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--grace 100s is under 120s, twice the DNS TTL \(--ttl\)/);
  });

  it('--force takes it', async () => {
    const r = await cli(['keys', 'rotate', '--dir', keysDir, '--grace', '0s', '--force']);
    assert.equal(r.code, 0, r.stderr);
  });
});

describe('connect --send: a reply then an open connection is success; --timeout (gap 8)', () => {
  let g: Awaited<ReturnType<typeof startGateway>>;
  let echo: net.Server;
  let silent: net.Server;
  before(async () => {
    // An echo backend keeps its connection open after answering, as HTTP/1.1 keep-alive does.
    echo = net.createServer((s) => s.on('error', () => {}).pipe(s));
    silent = net.createServer((s) => s.on('error', () => {}));
    await Promise.all([echo, silent].map((srv) => new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()))));
    g = await startGateway(`
tls: { certificates: [{ certFile: "${join(W, 'server.pem')}", keyFile: "${join(W, 'server.key')}" }] }
entryPoints: { websecure: { address: "127.0.0.1:0" } }
tcp:
  routers: { term: { rule: "HostSNI(\`term.example.test\`)", service: echo, tls: {} } }
  services: { echo: { loadBalancer: { servers: [{ address: "127.0.0.1:${(echo.address() as net.AddressInfo).port}" }] } } }
`);
  });
  after(async () => {
    await g?.close();
    echo?.close();
    silent?.close();
  });

  it('connectOnce: the echoed reply, keptOpen, no error, well before the 10 s timeout', async () => {
    const t = performance.now();
    const r = await connectOnce('127.0.0.1', g.port(), { sni: 'term.example.test', send: 'ping' });
    assert.equal(r.reply, 'ping');
    assert.equal(r.keptOpen, true);
    assert.equal(r.error, undefined);
    assert.ok(performance.now() - t < 5000);
  });

  it('the CLI exits 0 for it', async () => {
    const r = await cli(['connect', `127.0.0.1:${g.port()}`, '--sni', 'term.example.test', '--send', 'ping']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.equal(JSON.parse(r.stdout).reply, 'ping');
  });

  it('--timeout 300ms against a server that never answers: exit 1, the timeout named', async () => {
    const r = await cli(['connect', `127.0.0.1:${(silent.address() as net.AddressInfo).port}`, '--sni', 'x.example.test', '--timeout', '300ms']);
    assert.equal(r.code, 1);
    assert.match(JSON.parse(r.stdout).error, /timeout: nothing from the server for 300 ms/);
    assert.ok(r.ms < 8000);
  });

  it('resolve against a DoH URL whose TLS fails: ERR_DOH naming the URL, not OpenSSL\'s raw text (exit 1)', async () => {
    const url = `https://127.0.0.1:${g.port()}/dns-query`;
    const r = await cli(['resolve', 'x.example.test', '--doh', url, '--ca', join(W, 'ca.pem')]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`DoH ${url.replace(/[./]/g, '\\$&')}: ERR_SSL_\\w+.*\\[ERR_DOH\\]`));
    assert.doesNotMatch(r.stderr, /deps\/openssl/);
  });
});

describe('CLI errors name the option, file or URL (gap 11)', () => {
  const cases: [string, string[], number, RegExp][] = [
    ['resolve --doh notaurl', ['resolve', 'x', '--doh', 'notaurl'], 2, /--doh takes a DoH URL such as https:\/\/dns\.example\/dns-query, not "notaurl" \[ERR_USAGE\]/],
    ['resolve --doh http://', ['resolve', 'x', '--doh', 'http://127.0.0.1/dns-query'], 2, /--doh takes an https:\/\/ URL/],
    ['connect --ca (not PEM)', ['connect', '127.0.0.1:9', '--ca', '/etc/passwd'], 2, /--ca \/etc\/passwd: not a PEM certificate/],
    ['connect --ca (missing)', ['connect', '127.0.0.1:9', '--ca', join(W, 'nonexist.pem')], 2, /--ca \S*nonexist\.pem: cannot read it \(ENOENT: no such file\)/],
    ['connect --ech-config AAAA', ['connect', '127.0.0.1:9', '--ech-config', 'AAAA'], 2, /--ech-config is not a usable ECHConfigList: .*\(ERR_TRAILING\)/],
    ['inspect (missing file)', ['inspect', join(W, 'nonexist.bin')], 2, /FILE \S*nonexist\.bin: cannot read it \(ENOENT/],
    ['keys rotate --dir (missing)', ['keys', 'rotate', '--dir', join(W, 'nodir'), '--grace', '1h'], 2, /--dir \S*nodir: no such folder/],
    ['publish --tsig-key (missing)', ['publish', '--dir', keysDir, '--name', 'public.example.test', '--server', '127.0.0.1:53', '--zone', 'example.test', '--tsig-key', join(W, 'nonexist.key')], 2, /--tsig-key \S*nonexist\.key: cannot read it \(ENOENT/],
    ['publish --server without a port', ['publish', '--dir', keysDir, '--name', 'public.example.test', '--server', '127.0.0.1', '--zone', 'example.test'], 2, /--server takes HOST:PORT .*not "127\.0\.0\.1"/],
    ['publish --zone not holding --name', ['publish', '--dir', keysDir, '--name', 'a.example.test', '--server', '127.0.0.1:53', '--zone', 'other.test'], 2, /--name a\.example\.test is not in --zone other\.test/],
  ];
  for (const [what, args, code, msg] of cases) {
    it(what, async () => {
      const r = await cli(args);
      assert.equal(r.code, code, r.stderr);
      assert.match(r.stderr + r.stdout, msg);
    });
  }

  it('keys list on a folder without keys says so on stderr (exit 0: an empty folder is no failure)', async () => {
    const r = await cli(['keys', 'list', '--dir', empty]);
    assert.equal(r.code, 0);
    assert.match(r.stderr, /no ECH or ESNI keys in \S*empty \(is --dir the key folder\?\)/);
  });
});
