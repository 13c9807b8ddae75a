/**
 * ESNI (draft-ietf-tls-esni-02, experimental) end to end, with the real
 * binaries: `echgate keys generate --esni`, `echgate serve` (proxy, embedded
 * DNS over UDP/TCP and DoH), `echgate connect --esni` finding the key in the
 * `_esni` TXT record over DoH, dig asking for that record, and `echgate
 * inspect --keys` opening a captured hello. Hostile hellos get the draft's
 * alert and leave the proxy serving.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { toHex } from '../src/bytes/util.js';
import { freePort } from '../src/cli/free-port.js';
import { nodeProvider } from '../src/crypto/node.js';
import { esniOffer } from '../src/ech/esni.js';
import { decodeEsniFile, loadEsniKeys } from '../src/keys/esni-store.js';
import { TlsClient } from '../src/tls13/client.js';
import { encodeClientHello, findExtension, decodeClientHelloMessage } from '../src/wire/tls/client-hello.js';
import { ExtensionType, HandshakeType } from '../src/wire/tls/constants.js';
import { decodeClientEncryptedSNI, encodeClientEncryptedSNI } from '../src/wire/tls/esni.js';
import { encodeHandshake } from '../src/wire/tls/handshake.js';
import { parseHelloRecords, plaintextRecords } from '../src/wire/tls/record.js';
import { caAndLeaf, fakeUpdatePrimary, rawExchange, ROOT, sleep, updateNoError } from './helpers.js';

const run = promisify(execFile);
const BIN = join(ROOT, 'bin', 'echgate.js');
/** An alert record: fatal, then the description (RFC 8446 §6). */
const alertRecord = (desc: number) => `150303000202${desc.toString(16).padStart(2, '0')}`;
const ALERT = { illegal_parameter: 47, decrypt_error: 51 } as const;

describe('draft-ietf-tls-esni-02 end to end: keys generate --esni, serve, connect --esni, dig, inspect', () => {
  const W = mkdtempSync(join(tmpdir(), 'echgate-esni-'));
  const keysDir = join(W, 'keys');
  const seen: { backend: string; first: Buffer }[] = [];
  const servers: net.Server[] = [];
  let child: ChildProcess;
  let out = '';
  let port = 0;
  let dnsPort = 0;
  let dohPort = 0;
  const backendPort: Record<string, number> = {};

  /** A plain TCP backend that names itself in its answer and remembers the first bytes it got. */
  async function backend(name: string): Promise<number> {
    const srv = net.createServer((s) => {
      s.on('error', () => {});
      s.once('data', (d) => {
        seen.push({ backend: name, first: d });
        s.end(`${name} got ${d.length} bytes`);
      });
    });
    servers.push(srv);
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
    return (srv.address() as net.AddressInfo).port;
  }

  before(async () => {
    caAndLeaf(W, ['secret.example.test', 'other.example.test']);
    // The DoH listener's own certificate, for the address the client asks (https://127.0.0.1:PORT).
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', join(W, 'doh.key'), '-out', join(W, 'doh.pem'), '-days', '2', '-subj', '/CN=doh', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
    for (const n of ['secret', 'other', 'pass']) backendPort[n] = await backend(n);
    [port, dnsPort, dohPort] = [await freePort(), await freePort(), await freePort()];
    await run('node', [BIN, 'keys', 'generate', '--esni', '--dir', keysDir, '--lifetime', '2h']);
    const cert = `{ certFile: "${join(W, 'server.pem')}", keyFile: "${join(W, 'server.key')}" }`;
    writeFileSync(
      join(W, 'echgate.yml'),
      `
tls: { certificates: [${cert}] }
entryPoints: { websecure: { address: "127.0.0.1:${port}" } }
ech: { keysDir: ${JSON.stringify(keysDir)} }
log: { access: true }
dns:
  address: "127.0.0.1:${dnsPort}"
  doh: { address: "127.0.0.1:${dohPort}", certFile: "${join(W, 'doh.pem')}", keyFile: "${join(W, 'doh.key')}" }
  ttl: 600
  names:
    secret.example.test: { a: [127.0.0.1] }
    pass.example.test: { a: [127.0.0.1] }
tcp:
  routers:
    secret: { rule: "HostSNI(\`secret.example.test\`)", service: secret, tls: {} }
    other: { rule: "HostSNI(\`other.example.test\`)", service: other, tls: {} }
    pass: { rule: "HostSNI(\`pass.example.test\`)", service: pass, tls: { passthrough: true } }
  services:
    secret: { loadBalancer: { servers: [{ address: "127.0.0.1:${backendPort.secret}" }] } }
    other: { loadBalancer: { servers: [{ address: "127.0.0.1:${backendPort.other}" }] } }
    pass: { loadBalancer: { servers: [{ address: "127.0.0.1:${backendPort.pass}" }] } }
`,
    );
    child = spawn('node', [BIN, 'serve', '--config', join(W, 'echgate.yml')], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout!.on('data', (d) => {
      out += d;
    });
    child.stderr!.on('data', (d) => {
      out += d;
    });
    for (let i = 0; i < 200 && !(out.includes('DoH server listening') && out.includes('"listening"')); i++) await sleep(50);
    assert.match(out, /DoH server listening/);
  });

  after(async () => {
    child?.kill('SIGKILL');
    for (const s of servers) s.close();
  });

  const connect = async (...args: string[]) => {
    try {
      const { stdout } = await run('node', [BIN, 'connect', ...args], { timeout: 20_000 });
      return { code: 0, report: JSON.parse(stdout) };
    } catch (e) {
      const x = e as { code: number; stdout: string; stderr: string };
      return { code: x.code, report: x.stdout ? JSON.parse(x.stdout) : { stderr: x.stderr } };
    }
  };

  it('keys generate --esni: one .esni file, mode 0600, holding a valid record; keys list shows it', async () => {
    const files = readdirSync(keysDir).filter((f) => f.endsWith('.esni'));
    assert.equal(files.length, 1);
    assert.equal(statSync(join(keysDir, files[0]!)).mode & 0o777, 0o600);
    const k = loadEsniKeys(keysDir).keys[0]!;
    assert.equal(k.record.notAfter - k.record.notBefore, 7200);
    assert.equal(k.record.paddedLength, 260);
    assert.deepEqual(k.record.cipherSuites, [0x1301]);
    const { stdout } = await run('node', [BIN, 'keys', 'list', '--dir', keysDir]);
    assert.match(stdout, new RegExp(`^esni ${k.id}  active`, 'm'));
  });

  it('§4 dig asks the embedded DNS for _esni.NAME TXT: the base64 record, TTL capped by the zone TTL and not_after', async () => {
    const { stdout } = await run('dig', ['-p', String(dnsPort), '@127.0.0.1', '+norecurse', '+time=2', '+tries=1', '+noall', '+answer', '_esni.secret.example.test', 'TXT']);
    const k = loadEsniKeys(keysDir).keys[0]!;
    const m = /^_esni\.secret\.example\.test\.\s+(\d+)\s+IN\s+TXT\s+(.+)$/m.exec(stdout);
    assert.ok(m, stdout);
    const text = m[2]!.split('"').filter((_, i) => i % 2 === 1).join('');
    assert.equal(text, Buffer.from(k.raw).toString('base64'));
    assert.equal(decodeEsniFile(readFileSync(k.file, 'utf8')).raw.length, k.raw.length);
    // 600 s zone TTL, more than 7000 s to not_after: the zone TTL wins.
    assert.ok(Number(m[1]) <= 600 && Number(m[1]) > 500, m[1]);
    // kdig over TCP sees the same record; a name the zone does not hold has none.
    const tcp = await run('kdig', ['-p', String(dnsPort), '@127.0.0.1', '+tcp', '+short', '_esni.secret.example.test', 'TXT']);
    assert.equal(tcp.stdout.trim().replace(/"/g, '').replace(/\s+/g, ''), text);
    const none = await run('dig', ['-p', String(dnsPort), '@127.0.0.1', '+norecurse', '+time=2', '+tries=1', '+short', '_esni.unknown.example.test', 'TXT']);
    assert.equal(none.stdout.trim(), '');
  });

  it('connect --esni --doh: the key from the _esni TXT over DoH, the name only in ESNI, the right backend, the nonce echoed', async () => {
    const before = out.length;
    const { code, report } = await connect(`secret.example.test:${port}`, '--esni', '--doh', `https://127.0.0.1:${dohPort}/dns-query`, '--doh-ca', join(W, 'doh.pem'), '--ca', join(W, 'ca.pem'), '--send', 'hello');
    assert.equal(code, 0, JSON.stringify(report));
    assert.equal(report.esni, 'accepted');
    assert.equal(report.certificateVerified, true);
    assert.equal(report.reply, 'secret got 5 bytes');
    assert.equal(seen.at(-1)!.backend, 'secret');
    // The (ech) privacy treatment: neither the decrypted name nor the router is in the log.
    await sleep(200);
    const logged = out.slice(before);
    assert.match(logged, /\(ech\)|hidden/);
    assert.doesNotMatch(logged, /secret\.example\.test/);
  });

  it('connect --esni --keys: another name in ESNI goes to its own router (same rules as a cleartext SNI)', async () => {
    const { code, report } = await connect(`127.0.0.1:${port}`, '--sni', 'other.example.test', '--esni', '--keys', keysDir, '--ca', join(W, 'ca.pem'), '--send', 'hey', '--cover', 'cover.example.test');
    assert.equal(code, 0, JSON.stringify(report));
    assert.equal(report.reply, 'other got 3 bytes');
  });

  it('split mode: a passthrough router forwards the ESNI hello unchanged (§5.2 "does not make any changes")', async () => {
    const client = new TlsClient({ provider: nodeProvider, serverName: 'pass.example.test', esni: esniOffer(nodeProvider, loadEsniKeys(keysDir).keys[0]!.raw) });
    const hello = Buffer.concat(client.hello());
    await rawExchange(port, [hello], { timeoutMs: 5000 });
    const got = seen.at(-1)!;
    assert.equal(got.backend, 'pass');
    assert.equal(toHex(got.first.subarray(0, hello.length)), toHex(hello));
  });

  /** A real ESNI hello for `name` with its ClientEncryptedSNI changed by `edit`, re-framed. */
  function tampered(name: string, edit: (c: ReturnType<typeof decodeClientEncryptedSNI>) => ReturnType<typeof decodeClientEncryptedSNI>): Uint8Array[] {
    const client = new TlsClient({ provider: nodeProvider, serverName: name, esni: esniOffer(nodeProvider, loadEsniKeys(keysDir).keys[0]!.raw) });
    const ch = decodeClientHelloMessage(parseHelloRecords(new Uint8Array(Buffer.concat(client.hello())))!.message);
    const ext = findExtension(ch, ExtensionType.encrypted_server_name)!;
    const data = encodeClientEncryptedSNI(edit(decodeClientEncryptedSNI(ext.data)));
    const extensions = ch.extensions.map((e) => (e.type === ExtensionType.encrypted_server_name ? { type: e.type, data } : { type: e.type, data: e.data }));
    return plaintextRecords(22, encodeHandshake(HandshakeType.client_hello, encodeClientHello({ ...ch, extensions })));
  }

  it('§5.2 hostile hellos get the draft alert, reach no backend, and the proxy keeps serving', async () => {
    const count = seen.length;
    const cases: [string, Uint8Array[], number][] = [
      ['wrong record_digest', tampered('secret.example.test', (c) => ({ ...c, recordDigest: c.recordDigest.map((b) => b ^ 1) })), ALERT.illegal_parameter],
      ['unknown suite', tampered('secret.example.test', (c) => ({ ...c, suite: 0x1399 })), ALERT.illegal_parameter],
      ['truncated encrypted_sni', tampered('secret.example.test', (c) => ({ ...c, encryptedSni: c.encryptedSni.subarray(0, 40) })), ALERT.illegal_parameter],
      ['tampered ciphertext', tampered('secret.example.test', (c) => ({ ...c, encryptedSni: c.encryptedSni.map((b, i) => (i === 3 ? b ^ 1 : b)) })), ALERT.decrypt_error],
    ];
    for (const [what, records, alert] of cases) {
      const got = await rawExchange(port, records, { timeoutMs: 5000 });
      assert.equal(got.toString('hex'), alertRecord(alert), what);
    }
    // A truncated extension body: decode_error (50).
    const cut = tampered('secret.example.test', (c) => c);
    const ch = decodeClientHelloMessage(parseHelloRecords(Buffer.concat(cut))!.message);
    const extensions = ch.extensions.map((e) => (e.type === ExtensionType.encrypted_server_name ? { type: e.type, data: e.data.subarray(0, 20) } : e));
    const got = await rawExchange(port, plaintextRecords(22, encodeHandshake(HandshakeType.client_hello, encodeClientHello({ ...ch, extensions }))), { timeoutMs: 5000 });
    assert.equal(got.toString('hex'), alertRecord(50));
    assert.equal(seen.length, count, 'no hostile hello reached a backend');
    const { code, report } = await connect(`127.0.0.1:${port}`, '--sni', 'secret.example.test', '--esni', '--keys', keysDir, '--ca', join(W, 'ca.pem'), '--send', 'again');
    assert.equal(code, 0, JSON.stringify(report));
    assert.equal(report.reply, 'secret got 5 bytes');
  });

  it('inspect --keys decrypts a captured ESNI hello: the name, the nonce, the key id', async () => {
    const offer = esniOffer(nodeProvider, loadEsniKeys(keysDir).keys[0]!.raw);
    const client = new TlsClient({ provider: nodeProvider, serverName: 'secret.example.test', esni: offer });
    const f = join(W, 'hello.hex');
    writeFileSync(f, toHex(Buffer.concat(client.hello())));
    const { stdout } = await run('node', [BIN, 'inspect', '--hex', f, '--keys', keysDir]);
    const r = JSON.parse(stdout);
    assert.equal(r.esni, true);
    assert.equal(r.outerSni, null);
    assert.equal(r.innerSni, 'secret.example.test');
    assert.equal(r.esniDetails.decrypted, true);
    assert.equal(r.esniDetails.nonce, toHex(offer.nonce));
    // Without the key folder's key: the error and the alert a server would send.
    const other = join(W, 'other-keys');
    await run('node', [BIN, 'keys', 'generate', '--esni', '--dir', other]);
    const r2 = JSON.parse((await run('node', [BIN, 'inspect', '--hex', f, '--keys', other])).stdout);
    assert.equal(r2.esniDetails.decrypted, false);
    assert.match(r2.esniDetails.error, /record_digest.*illegal_parameter/);
  });
});

describe('draft-ietf-tls-esni-02 §4 through publish: _esni TXT in the same RFC 2136 UPDATE as the HTTPS record', () => {
  it('publish replaces _esni.NAME TXT with the valid ESNI records, TTL at most the HTTPS TTL and the time left', async () => {
    const { decodeMessage, RRType } = await import('../src/wire/dns/message.js');
    const { decodeTxtStrings } = await import('../src/wire/tls/esni.js');
    const W = mkdtempSync(join(tmpdir(), 'echgate-esni-pub-'));
    const dir = join(W, 'keys');
    await run('node', [BIN, 'keys', 'generate', '--dir', dir, '--public-name', 'public.example.test']);
    await run('node', [BIN, 'keys', 'generate', '--esni', '--dir', dir, '--lifetime', '90s']);
    const updates: Buffer[] = [];
    // A fake primary: takes one UPDATE over TCP and answers NOERROR with its id and opcode (RFC 2136 §3.8).
    const srv = await fakeUpdatePrimary((msg) => {
      updates.push(msg);
      return updateNoError(msg);
    });
    try {
      const { stdout } = await run('node', [BIN, 'publish', '--dir', dir, '--name', 'secret.example.test', '--zone', 'example.test', '--server', `127.0.0.1:${srv.port}`, '--ttl', '300']);
      // Not a terminal: one JSON line per step (docs/cli.md), the sentence in `msg`.
      // The TTL is capped by the seconds left to not_after (90 s from generation, less the time the commands took), not --ttl 300.
      const ttl = Number(/"step":"published".*"msg":"published _esni\.secret\.example\.test TXT: 1 ESNI record, TTL (\d+)"/.exec(stdout)?.[1]);
      assert.ok(ttl > 0 && ttl <= 90, stdout);
      const m = decodeMessage(new Uint8Array(updates[0]!));
      // The update section: delete HTTPS, delete _esni TXT, add HTTPS, add TXT.
      const txt = m.authorities.filter((r) => r.type === RRType.TXT && r.rdata.length > 0);
      assert.equal(txt.length, 1);
      assert.equal(txt[0]!.name, '_esni.secret.example.test');
      assert.ok(txt[0]!.ttl <= 90, String(txt[0]!.ttl));
      assert.equal(decodeTxtStrings(txt[0]!.rdata).join(''), Buffer.from(loadEsniKeys(dir).keys[0]!.raw).toString('base64'));
      assert.ok(m.authorities.some((r) => r.type === RRType.TXT && r.rdata.length === 0 && r.ttl === 0), 'the old _esni RRset is deleted first');
    } finally {
      srv.close();
    }
  });
});
