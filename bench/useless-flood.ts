/**
 * Records that carry nothing, sent to a terminating router after the
 * handshake (the audit's gap 5): N empty application_data records, or N
 * user_canceled warning alerts, in one write. For each echgate build (ROOT),
 * rounds interleaved: serve's CPU from the end of the handshake until the
 * connection closes or serve's CPU stops moving, and whether the connection
 * was closed with an alert (the cap) or stayed open (no cap).
 *
 * Usage: node dist/bench/useless-flood.js [--rounds R] [--records N] ROOT_A ROOT_B ...
 * The client is this build's TlsClient; records are sealed here under its
 * application key, so the server sees what a hostile client would send.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { concat } from '../src/bytes/util.js';
import { freePort } from '../src/cli/free-port.js';
import { nodeProvider } from '../src/crypto/node.js';
import { TlsClient } from '../src/tls13/client.js';
import { type CipherSuite, trafficKeys } from '../src/tls13/key-schedule.js';
import { RecordCipher } from '../src/tls13/record-protection.js';
import { AlertDescription, ContentType } from '../src/wire/tls/constants.js';
import { cpuNs } from './cpu.js';
import { median, SERVE_NODE_FLAGS, selfSigned, sleep, takeOption, waitPort } from './util.js';

const NAME = 'flood.example.test';
const args = process.argv.slice(2);
const rounds = Number(takeOption(args, 'rounds', '5'));
const records = Number(takeOption(args, 'records', '100000'));
const roots = args.map((r) => resolve(r));
if (roots.length === 0) throw new Error('usage: useless-flood [--rounds R] [--records N] ROOT ...');

const dir = mkdtempSync(join(tmpdir(), 'echgate-flood-'));
const { cert, key } = selfSigned(dir, NAME);

/** The client's state, read as test/tls13-craft.ts does: its application secret seals our records. */
const inside = (c: TlsClient) => (c as unknown as { state: { suite: CipherSuite; app: { client: Uint8Array } } }).state;

async function serve(root: string, backendPort: number): Promise<{ proc: ChildProcess; port: number }> {
  const port = await freePort();
  const cfg = join(dir, `c-${port}.yml`);
  writeFileSync(
    cfg,
    `entryPoints: { websecure: { address: "127.0.0.1:${port}" } }
log: { level: error }
tls: { certificates: [{ certFile: "${cert}", keyFile: "${key}" }] }
tcp:
  routers: { r: { rule: "HostSNI(\`${NAME}\`)", service: b, tls: {} } }
  services: { b: { loadBalancer: { servers: [{ address: "127.0.0.1:${backendPort}" }] } } }
`,
  );
  const proc = spawn('node', [...SERVE_NODE_FLAGS, join(root, 'bin', 'echgate.js'), 'serve', '--config', cfg], { stdio: ['ignore', 'ignore', 'inherit'] });
  await waitPort(port);
  return { proc, port };
}

/** One connection: handshake, then the flood in one write; serve's CPU (ns) for the flood, and how it ended. */
async function flood(pid: number, port: number, kind: 'empty' | 'alert'): Promise<{ ms: number; closed: boolean }> {
  const sock = net.connect(port, '127.0.0.1');
  const client = new TlsClient({ provider: nodeProvider, serverName: NAME });
  await new Promise<void>((res, rej) => {
    sock.once('connect', () => sock.write(concat(...client.hello())));
    sock.on('data', (d) => {
      const o = client.receive(d);
      for (const r of o.send) sock.write(r);
      if (o.error) rej(o.error);
      if (o.established) res();
    });
    sock.once('error', rej);
  });
  sock.removeAllListeners('data');
  let closed = false;
  sock.on('data', () => {});
  sock.once('close', () => {
    closed = true;
  });
  sock.on('error', () => {});
  await sleep(50);
  const { suite, app } = inside(client);
  const w = new RecordCipher(suite, trafficKeys(nodeProvider, suite, app.client));
  const one = () => (kind === 'empty' ? w.seal(ContentType.application_data, new Uint8Array(0)) : w.seal(ContentType.alert, Uint8Array.of(1, AlertDescription.user_canceled)));
  const bytes = concat(...Array.from({ length: records }, one));
  const before = cpuNs(pid);
  sock.write(bytes);
  // Until closed, or serve's CPU has not moved for 300 ms (it read everything and kept the connection).
  let last = cpuNs(pid);
  for (let still = 0; still < 3 && !closed; ) {
    await sleep(100);
    const now = cpuNs(pid);
    still = now === last ? still + 1 : 0;
    last = now;
  }
  const ms = (cpuNs(pid) - before) / 1e6;
  const wasClosed = closed;
  sock.destroy();
  return { ms, closed: wasClosed };
}

async function main(): Promise<void> {
  const backend = net.createServer((s) => {
    s.on('error', () => {});
    s.resume();
  });
  await new Promise<void>((r) => backend.listen(0, '127.0.0.1', () => r()));
  const bport = (backend.address() as net.AddressInfo).port;
  const servers = [];
  for (const root of roots) servers.push(await serve(root, bport));
  const results = new Map<string, number[]>();
  const closedBy = new Map<string, boolean>();
  for (let r = 0; r < rounds; r++) {
    for (const kind of ['empty', 'alert'] as const) {
      for (let i = 0; i < roots.length; i++) {
        const s = servers[i]!;
        const out = await flood(s.proc.pid!, s.port, kind);
        const k = `${roots[i]} ${kind}`;
        results.set(k, [...(results.get(k) ?? []), out.ms]);
        closedBy.set(k, out.closed);
        console.log(`round ${r + 1} ${k}: ${out.ms.toFixed(1)} ms serve CPU, ${out.closed ? 'closed (alert)' : 'still open'}`);
      }
    }
  }
  console.log(`\nmedians over ${rounds} rounds, ${records} records each:`);
  for (const [k, v] of results) console.log(`${k}: ${median(v).toFixed(1)} ms serve CPU, ${closedBy.get(k) ? 'closed' : 'open'}`);
  for (const s of servers) s.proc.kill();
  backend.close();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
