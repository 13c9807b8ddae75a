/**
 * `npm start` is the first thing a newcomer runs: the embedded demo must do
 * what it prints. Every printed line is tried with the real tool it names
 * (curl, echgate connect with ECH, dig), then SIGTERM must stop it cleanly.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { ROOT } from './helpers.js';

const run = promisify(execFile);

describe('the embedded demo (npm start)', () => {
  let proc: ChildProcess;
  let printed = '';
  let port = 0;
  let dnsPort = 0;
  let echConfig = '';

  before(async () => {
    proc = spawn('node', [join(ROOT, 'bin', 'echgate.js'), 'serve', '--demo'], { env: { ...process.env, ECHGATE_DEMO_PORT: '0', ECHGATE_DEMO_DNS_PORT: '0' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let errors = '';
    proc.stdout!.on('data', (d) => {
      printed += d;
    });
    proc.stderr!.on('data', (d) => {
      errors += d;
    });
    const t0 = Date.now();
    while (!printed.includes('Run your own configuration')) {
      if (Date.now() - t0 > 20000 || proc.exitCode !== null) throw new Error(`the demo did not start (exit ${proc.exitCode}):\n${printed}\nstderr:\n${errors}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    port = Number(/listens on 127\.0\.0\.1:(\d+)/.exec(printed)![1]);
    echConfig = /--ech-config (\S+)/.exec(printed)![1]!;
    dnsPort = Number(/dig -p (\d+)/.exec(printed)![1]);
  });
  after(() => proc.kill('SIGKILL'));

  it('the curl lines reach the two passthrough backends by SNI', async () => {
    for (const [host, backend] of [
      ['app.example.test', 'app'],
      ['api-demo.example.test', 'api'],
    ] as const) {
      const { stdout } = await run('curl', ['-sk', '--max-time', '5', '--resolve', `${host}:${port}:127.0.0.1`, `https://${host}:${port}/`]);
      assert.match(stdout, new RegExp(`hello from the "${backend}" backend \\(SNI ${host.replace(/\./g, '\\.')}\\)`));
    }
  });
  it('the hidden name: the printed connect line reaches it with ECH accepted; curl without ECH is refused', async () => {
    const line = /npx echgate (connect .*)$/m.exec(printed)![1]!;
    const { stdout } = await run('sh', ['-c', `node ${join(ROOT, 'bin', 'echgate.js')} ${line}`]);
    const r = JSON.parse(stdout);
    assert.equal(r.ech, 'accepted');
    assert.match(r.reply ?? '', /^HTTP\/1\.0 200 OK\r\n[\s\S]*hello from the hidden "secret" backend/);
    await assert.rejects(run('curl', ['-sk', '--max-time', '5', '--resolve', `secret.example.test:${port}:127.0.0.1`, `https://secret.example.test:${port}/`]));
  });
  it('the printed dig line shows the same key in the HTTPS record', async () => {
    const { stdout } = await run('dig', ['-p', String(dnsPort), '@127.0.0.1', '+short', `_${port}._https.secret.example.test`, 'HTTPS']);
    assert.equal(stdout.trim(), `1 secret.example.test. alpn="http/1.1" port=${port} ech=${echConfig}`);
  });
  it('SIGTERM stops it with exit code 0', async () => {
    const code = new Promise((r) => proc.once('exit', (c) => r(c)));
    proc.kill('SIGTERM');
    assert.equal(await code, 0);
  });
});
