/**
 * ECH split mode (RFC 9849 §3.1): a client-facing echgate decrypts the hello
 * and forwards ClientHelloInner; a second echgate, on an `echBackend`
 * entrypoint, terminates TLS for the hidden name and confirms ECH itself.
 * The client checks that confirmation against its own inner transcript, so a
 * handshake that reports ECH accepted proves the backend saw ClientHelloInner.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { concat } from '../src/bytes/util.js';
import { connectOnce } from '../src/cli/connect.js';
import { nodeProvider } from '../src/crypto/node.js';
import { buildEchClientHello } from '../src/ech/client.js';
import { decryptEch, decryptSecondHello } from '../src/ech/server.js';
import { EchgateError } from '../src/errors.js';
import type { Keyring } from '../src/keys/keyring.js';
import { generateKey, listKeys, publishedList } from '../src/keys/manager.js';
import { SplitClientStream } from '../src/proxy/split.js';
import { decodeClientHelloMessage, summarize } from '../src/wire/tls/client-hello.js';
import { frameHandshake, parseHelloRecords } from '../src/wire/tls/record.js';
import { attachKeys, caAndLeaf, memoryEchKey, startGateway } from './helpers.js';

describe('split mode: client-facing echgate → ECH backend echgate', () => {
  const W = mkdtempSync(join(tmpdir(), 'echgate-split-'));
  const keysDir = join(W, 'keys');
  let front: Awaited<ReturnType<typeof startGateway>>;
  let back: Awaited<ReturnType<typeof startGateway>>;
  let ring: Keyring;
  let app: net.Server;
  const seen: string[] = [];
  let ca = '';

  before(async () => {
    caAndLeaf(W, ['secret.example.test']);
    ca = readFileSync(join(W, 'ca.pem'), 'utf8');
    mkdirSync(keysDir);
    generateKey(keysDir, { publicName: 'public.example.test' });
    app = net.createServer((s) => {
      s.on('error', () => {});
      s.once('data', (d) => {
        seen.push(d.toString());
        s.end('hidden app');
      });
    });
    await new Promise<void>((r) => app.listen(0, '127.0.0.1', () => r()));
    // The backend server: no ECH keys at all; it only sees decrypted inner hellos.
    back = await startGateway(`
tls: { certificates: [{ certFile: "${join(W, 'server.pem')}", keyFile: "${join(W, 'server.key')}" }] }
entryPoints: { websecure: { address: "127.0.0.1:0", echBackend: true } }
tcp:
  routers:
    hidden: { rule: "HostSNI(\`secret.example.test\`)", requireECH: true, service: app, tls: {} }
  services: { app: { loadBalancer: { servers: [{ address: "127.0.0.1:${(app.address() as net.AddressInfo).port}" }] } } }
`);
    front = await startGateway(`
entryPoints: { websecure: { address: "127.0.0.1:0" } }
tcp:
  routers:
    hidden: { rule: "HostSNI(\`secret.example.test\`)", requireECH: true, service: backend, tls: { passthrough: true, echSplit: true } }
  services: { backend: { loadBalancer: { servers: [{ address: "127.0.0.1:${back.port()}" }] } } }
`);
    ring = attachKeys(front.gw, keysDir);
  });
  after(async () => {
    ring?.close();
    await front?.close();
    await back?.close();
    app?.close();
  });

  it('ECH is accepted end to end: the backend server confirms it and serves the hidden name', async () => {
    const r = await connectOnce('127.0.0.1', front.port(), { sni: 'secret.example.test', ech: publishedList(listKeys(keysDir).keys), send: 'GET /', ca });
    assert.equal(r.error, undefined);
    assert.equal(r.ech, 'accepted');
    assert.equal(r.certificateVerified, true);
    assert.equal(r.reply, 'hidden app');
    assert.equal(seen.at(-1), 'GET /');
    assert.equal(front.gw.metrics.ech.get({ entrypoint: 'websecure', result: 'accepted' }), 1);
    assert.equal(back.gw.metrics.ech.get({ entrypoint: 'websecure', result: 'accepted' }), 1);
  });
  it('HelloRetryRequest from the backend server: the second ClientHelloOuter is opened at the client-facing server and forwarded as the second inner', async () => {
    const r = await connectOnce('127.0.0.1', front.port(), { sni: 'secret.example.test', ech: publishedList(listKeys(keysDir).keys), send: 'after hrr', ca, helloRetry: true });
    assert.equal(r.error, undefined);
    assert.equal(r.ech, 'accepted');
    assert.equal(r.reply, 'hidden app');
    assert.equal(seen.at(-1), 'after hrr');
  });
  it('without ECH the hidden name is not routed at the client-facing server', async () => {
    const r = await connectOnce('127.0.0.1', front.port(), { sni: 'secret.example.test', send: 'x' });
    assert.match(r.error ?? '', /unrecognized_name/);
  });
  it('an encrypted (outer) hello sent straight to the backend server is refused with illegal_parameter (RFC 9849 §7)', async () => {
    const r = await connectOnce('127.0.0.1', back.port(), { sni: 'secret.example.test', ech: publishedList(listKeys(keysDir).keys), send: 'x' });
    assert.match(r.error ?? '', /illegal_parameter/);
    assert.equal(r.connected, false);
  });
});

describe('the client stream in split mode (offline)', () => {
  const { config, lookup } = memoryEchKey(5);
  const setup = () => {
    const h = buildEchClientHello(nodeProvider, { config, innerSni: 'secret.example.test', keyShare: false });
    const first = decryptEch(nodeProvider, decodeClientHelloMessage(h.outerMessage), lookup);
    assert.equal(first.status, 'accepted');
    const second = h.retry({ innerKey: nodeProvider.x25519Generate(), outerKey: nodeProvider.x25519Generate() });
    const stream = new SplitClientStream((o) => decryptSecondHello(first as Extract<typeof first, { status: 'accepted' }>, o), 65536);
    return { second, stream };
  };
  const ccs = Uint8Array.of(20, 3, 3, 0, 1, 1);
  const appData = Uint8Array.of(23, 3, 3, 0, 2, 9, 9);

  it('CCS passes, the second outer hello (fed one byte at a time) leaves as the second inner, then everything after the first application_data is untouched', () => {
    const { second, stream } = setup();
    const input = concat(ccs, frameHandshake(second.outerMessage, 100), appData, Uint8Array.of(21, 0, 0));
    const out: Uint8Array[] = [];
    for (let i = 0; i < input.length; i++) out.push(...stream.push(input.subarray(i, i + 1)));
    const all = concat(...out);
    assert.deepEqual(all.subarray(0, 6), ccs);
    const forwarded = parseHelloRecords(all.subarray(6))!;
    assert.equal(summarize(decodeClientHelloMessage(forwarded.message)).sni, 'secret.example.test');
    assert.deepEqual(all.subarray(6 + forwarded.consumed), concat(appData, Uint8Array.of(21, 0, 0)));
  });
  it('a tampered second hello: decrypt_error; an oversized handshake message: refused before it is buffered', () => {
    const { second, stream } = setup();
    const bad = frameHandshake(second.outerMessage);
    bad[bad.length - 3]! ^= 1;
    assert.throws(() => stream.push(bad), (e: unknown) => e instanceof EchgateError && e.alert === 'decrypt_error');
    const { stream: s2 } = setup();
    assert.throws(() => s2.push(Uint8Array.of(22, 3, 3, 0, 4, 1, 0xff, 0xff, 0xff)), (e: unknown) => e instanceof EchgateError && e.code === 'ERR_LIMIT');
  });
});
