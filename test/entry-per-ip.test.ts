/**
 * entryPoints.NAME.maxConnectionsPerIP (proxy/gateway.ts, proxy/open-set.ts):
 * checked at accept, before any byte is read, so one address holding idle
 * ClientHellos cannot take every maxConnections slot. A refused connection is
 * counted over_limit (and echgate_over_limit_total{reason}), warned (rate
 * limited); another address still gets in; the count is released however the
 * connection ends (no leak over 1000 connect/close cycles); the setting is
 * validated; `echgate check` notes an entrypoint with maxConnections and no
 * per-address cap.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type Args, parseCommand } from '../src/cli/args.js';
import { checkCommand, checkSpec } from '../src/cli/check.js';
import { parseConfigText } from '../src/config/load.js';
import { sleep, startGateway } from './helpers.js';

function connect(port: number, localAddress = '127.0.0.1'): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: '127.0.0.1', localAddress });
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

/** Whether the server closes `s` within `ms` (it sends nothing before a ClientHello). */
function closedWithin(s: net.Socket, ms: number): Promise<boolean> {
  if (s.destroyed) return Promise.resolve(true);
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), ms);
    s.on('error', () => {});
    s.once('close', () => {
      clearTimeout(t);
      resolve(true);
    });
    s.resume();
  });
}

describe('entryPoints.NAME.maxConnectionsPerIP', { timeout: 60_000 }, () => {
  let g: Awaited<ReturnType<typeof startGateway>>;
  before(async () => {
    // A long ClientHello deadline: the held connections stay until the test closes them.
    g = await startGateway(`
entryPoints: { web: { address: "127.0.0.1:0", maxConnections: 10, maxConnectionsPerIP: 3, clientHelloTimeout: 20s } }
tcp:
  routers: { r: { rule: "HostSNI(\`a.example.test\`)", service: s, tls: { passthrough: true } } }
  services: { s: { loadBalancer: { servers: [{ address: "127.0.0.1:9" }] } } }
`);
  });
  after(() => g.close());
  const overLimit = (reason: string) => g.gw.metrics.overLimit.get({ entrypoint: 'web', reason });
  const waitDrained = async () => {
    for (let i = 0; i < 200 && g.gw.openConnections() > 0; i++) await sleep(10);
    assert.equal(g.gw.openConnections(), 0, 'connections left open on the server');
  };

  it('past the cap one address is closed at accept, counted over_limit with its reason and warned; another address still gets in', async () => {
    const held = await Promise.all([1, 2, 3].map(() => connect(g.port('web'))));
    const over = await connect(g.port('web'));
    assert.ok(await closedWithin(over, 1000), 'the 4th connection from 127.0.0.1 stayed open');
    assert.equal(g.gw.metrics.connections.get({ entrypoint: 'web', router: '-', outcome: 'over_limit' }), 1);
    assert.equal(overLimit('max_connections_per_ip'), 1);
    assert.equal(overLimit('max_connections'), 0);
    const warn = g.logs.find((l) => l.msg === 'entrypoint at maxConnectionsPerIP for this client address: new connection closed');
    assert.ok(warn, 'a warning for the refused connection');
    assert.equal(warn.entrypoint, 'web');
    assert.equal(warn.client, '127.0.0.1');
    assert.equal(warn.maxConnectionsPerIP, 3);
    const other = await Promise.all([1, 2, 3].map(() => connect(g.port('web'), '127.0.0.2')));
    for (const s of other) assert.equal(await closedWithin(s, 200), false, 'a connection from 127.0.0.2 was refused');
    for (const s of [...held, ...other]) s.destroy();
    await waitDrained();
  });

  it('the count is released as connections close: after 1000 connect/close cycles the address again gets exactly 3; counting stops when the set empties and starts again', async () => {
    const before = overLimit('max_connections_per_ip');
    // Three held from another address keep the set at the cap, so every cycle is counted (open-set.ts counts by
    // address only while the set holds maxConnectionsPerIP connections).
    const others = await Promise.all([1, 2, 3].map(() => connect(g.port('web'), '127.0.0.2')));
    const settled = async (n: number) => {
      for (let i = 0; i < 200 && g.gw.openConnections() !== n; i++) await sleep(10);
      assert.equal(g.gw.openConnections(), n, 'connections left open on the server');
    };
    await settled(3);
    // Half closed by the client at once, half after a turn of the loop (the server has taken them in).
    for (let i = 0; i < 1000; i++) {
      const s = await connect(g.port('web'));
      if (i % 2) await sleep(0);
      s.destroy();
      // At most 3 in flight on the server's side: wait for it to catch up now and then.
      if (i % 3 === 2) await settled(3);
    }
    await settled(3);
    assert.equal(overLimit('max_connections_per_ip'), before, 'a cycle was refused: the count leaked');
    const held = await Promise.all([1, 2, 3].map(() => connect(g.port('web'))));
    for (const s of held) assert.equal(await closedWithin(s, 200), false, 'refused after the cycles: the count leaked');
    const over = await connect(g.port('web'));
    assert.ok(await closedWithin(over, 1000), 'the 4th got in after the cycles');
    for (const s of [...held, ...others]) s.destroy();
    await waitDrained();
    // Empty: counting stopped. Three more from one address, then the 4th: counting starts again with those three.
    const again = await Promise.all([1, 2, 3].map(() => connect(g.port('web'))));
    await settled(3);
    const fourth = await connect(g.port('web'));
    assert.ok(await closedWithin(fourth, 1000), 'the 4th got in once counting started again');
    for (const s of again) s.destroy();
    await waitDrained();
  });
});

describe('maxConnectionsPerIP in the configuration', () => {
  const yaml = (v: string) => `entryPoints: { web: { address: "127.0.0.1:0", maxConnections: 100${v} } }\n`;
  it('absent is no cap (0); 1..maxConnections taken; 0, a fraction, a string or more than maxConnections refused, naming the key', () => {
    assert.equal(parseConfigText(yaml(''), 'a.yml').entryPoints.get('web')!.maxConnectionsPerIP, 0);
    assert.equal(parseConfigText(yaml(', maxConnectionsPerIP: 1'), 'a.yml').entryPoints.get('web')!.maxConnectionsPerIP, 1);
    assert.equal(parseConfigText(yaml(', maxConnectionsPerIP: 100'), 'a.yml').entryPoints.get('web')!.maxConnectionsPerIP, 100);
    for (const v of ['0', '2.5', '"8"', '101', '-1']) {
      assert.throws(() => parseConfigText(yaml(`, maxConnectionsPerIP: ${v}`), 'a.yml'), /entryPoints\.web\.maxConnectionsPerIP: expected a whole number from 1 to the entrypoint's maxConnections \(100\)/, v);
    }
  });

  it('echgate check: a note (not a warning: --strict passes) for maxConnections without maxConnectionsPerIP; none with it, none with neither', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'echgate-perip-check-'));
    const run = async (body: string, strict = false) => {
      const f = join(dir, 'c.yml');
      writeFileSync(f, body);
      let out = '';
      const rc = await checkCommand(parseCommand(checkSpec, ['--config', f, ...(strict ? ['--strict'] : [])]) as Args, (s) => {
        out += s;
      });
      return { rc, out };
    };
    const noted = await run(yaml(''), true);
    assert.equal(noted.rc, 0, noted.out);
    assert.match(noted.out, /note: entryPoints\.web: maxConnections 100 with no maxConnectionsPerIP: one client address can hold all 100 connections/);
    assert.doesNotMatch((await run(yaml(', maxConnectionsPerIP: 20'))).out, /note:/);
    assert.doesNotMatch((await run('entryPoints: { web: { address: "127.0.0.1:0" } }\n')).out, /note:/);
  });
});
