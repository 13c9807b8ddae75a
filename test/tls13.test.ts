/**
 * TLS 1.3 engine: RFC 8448 §3 key schedule and record protection, then the
 * server state machine against real clients (node:tls, openssl s_client, curl).
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { concat, fromHex, toHex } from '../src/bytes/util.js';
import { nodeProvider } from '../src/crypto/node.js';
import { certificateSelector, loadCertificate } from '../src/tls13/certs.js';
import { deriveSecret, finishedVerifyData, KeySchedule, suiteById, trafficKeys } from '../src/tls13/key-schedule.js';
import { RecordCipher } from '../src/tls13/record-protection.js';
import { TlsServer } from '../src/tls13/server.js';
import { decodeClientHelloMessage, routingView } from '../src/wire/tls/client-hello.js';
import { NamedGroup } from '../src/wire/tls/constants.js';
import { ClientHelloAssembler } from '../src/wire/tls/record.js';
import { certFor, json } from './helpers.js';

const run = promisify(execFile);

/**
 * openssl s_client driven by events, not sleeps: `send` goes to its stdin once
 * it has printed its handshake summary ("New, TLSv1.3"), and stdin is closed
 * (s_client then sends close_notify and exits) only once `until` is in its
 * output, or after 10 s. A fixed `(printf x; sleep 1) |` closed stdin after
 * 1 s whatever had happened: on a loaded machine the handshake took longer,
 * s_client read the text and the EOF together and closed before the echo came.
 */
function sClient(args: string[], send: string, until: RegExp): Promise<string> {
  return new Promise((resolve) => {
    const p = spawn('openssl', ['s_client', ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let sent = false;
    const kill = setTimeout(() => p.kill(), 10_000);
    const seen = (d: Buffer) => {
      out += d.toString('latin1');
      if (!sent && /New, TLSv1\.3/.test(out)) {
        sent = true;
        p.stdin.write(send);
      }
      if (sent && until.test(out)) p.stdin.end();
    };
    p.stdout.on('data', seen);
    p.stderr.on('data', seen);
    p.stdin.on('error', () => {});
    p.once('close', () => {
      clearTimeout(kill);
      resolve(out);
    });
  });
}
const v = json('rfc8448-simple-1rtt.json');
const m = (k: string) => fromHex(v.messages[k]);
const suite = suiteById(0x1301)!;

describe('RFC 8448 §3: key schedule and record protection', () => {
  const ks = new KeySchedule(nodeProvider, 'sha256');
  const th = (...parts: Uint8Array[]) => nodeProvider.hash('sha256', concat(...parts));
  const hs = ks.handshake(fromHex(v.key_schedule.ecdhe_shared_secret), th(m('client_hello'), m('server_hello')));
  it('handshake traffic secrets', () => {
    assert.equal(toHex(th(m('client_hello'), m('server_hello'))), v.key_schedule.transcript_hash_client_hello_server_hello);
    assert.equal(toHex(hs.client), v.key_schedule.client_handshake_traffic_secret);
    assert.equal(toHex(hs.server), v.key_schedule.server_handshake_traffic_secret);
  });
  const throughSF = th(m('client_hello'), m('server_hello'), m('encrypted_extensions'), m('certificate'), m('certificate_verify'), m('server_finished'));
  it('Finished and application secrets', () => {
    const throughCV = th(m('client_hello'), m('server_hello'), m('encrypted_extensions'), m('certificate'), m('certificate_verify'));
    assert.equal(toHex(finishedVerifyData(nodeProvider, 'sha256', hs.server, throughCV)), v.key_schedule.server_finished_verify_data);
    assert.equal(toHex(throughSF), v.key_schedule.transcript_hash_through_server_finished);
    assert.equal(toHex(finishedVerifyData(nodeProvider, 'sha256', hs.client, throughSF)), v.key_schedule.client_finished_verify_data);
    const ap = ks.application(throughSF);
    assert.equal(toHex(ap.client), v.key_schedule.client_application_traffic_secret_0);
    assert.equal(toHex(ap.server), v.key_schedule.server_application_traffic_secret_0);
    assert.equal(toHex(ap.exporter), v.key_schedule.exporter_master_secret);
    assert.equal(toHex(deriveSecret(nodeProvider, 'sha256', fromHex(v.key_schedule.master_secret), 'res master', th(m('client_hello'), m('server_hello'), m('encrypted_extensions'), m('certificate'), m('certificate_verify'), m('server_finished'), m('client_finished')))), v.key_schedule.resumption_master_secret);
  });
  it('traffic keys and IVs', () => {
    const k = trafficKeys(nodeProvider, suite, hs.server);
    assert.equal(toHex(k.key), v.traffic_keys.server_handshake_write_key);
    assert.equal(toHex(k.iv), v.traffic_keys.server_handshake_write_iv);
  });
  it('records open to the trace messages and seal back to the same bytes', () => {
    const rec = fromHex(v.records.server_encrypted_handshake);
    const opener = new RecordCipher(suite, trafficKeys(nodeProvider, suite, hs.server));
    const { type, content } = opener.open(rec.subarray(0, 5), rec.subarray(5));
    assert.equal(type, 22);
    assert.deepEqual(content, concat(m('encrypted_extensions'), m('certificate'), m('certificate_verify'), m('server_finished')));
    const sealer = new RecordCipher(suite, trafficKeys(nodeProvider, suite, hs.server));
    assert.deepEqual(sealer.seal(22, content), rec);
    const cf = fromHex(v.records.client_finished);
    const c = new RecordCipher(suite, trafficKeys(nodeProvider, suite, hs.client)).open(cf.subarray(0, 5), cf.subarray(5));
    assert.deepEqual(c.content, m('client_finished'));
    const tampered = rec.slice();
    tampered[20]! ^= 1;
    assert.throws(() => new RecordCipher(suite, trafficKeys(nodeProvider, suite, hs.server)).open(tampered.subarray(0, 5), tampered.subarray(5)), /bad record MAC/);
  });
});

/** A terminating echo server on our engine, for real clients. */
async function engineServer(hosts: string[], alpn?: string[]): Promise<{ port: number; close(): void; errors: Error[] }> {
  const certs = hosts.map((h) => {
    const c = certFor(h);
    return loadCertificate(c.cert, c.key);
  });
  const errors: Error[] = [];
  const srv = net.createServer((sock) => {
    const asm = new ClientHelloAssembler(65536);
    let engine: TlsServer | undefined;
    const flush = (o: { send: Uint8Array[]; data: Uint8Array[]; closed: boolean; error?: unknown; peerAlert?: number }) => {
      if (o.error !== undefined) errors.push(o.error as Error);
      if (o.peerAlert !== undefined) return sock.destroy();
      for (const r of o.send) sock.write(r);
      if (o.error !== undefined) return sock.end();
      for (const d of o.data) {
        if (Buffer.from(d).toString('latin1', 0, 4) === 'GET ') {
          // An HTTP client (curl): answer properly, then close_notify.
          const line = Buffer.from(d).toString('latin1').split('\r\n')[0];
          const body = `echo:${line}\n`;
          for (const r of engine!.encrypt(Buffer.from(`HTTP/1.1 200 OK\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`))) sock.write(r);
          sock.end(engine!.alert('close_notify'));
          return;
        }
        for (const r of engine!.encrypt(concat(Buffer.from('echo:'), d))) sock.write(r);
      }
      if (o.closed) sock.end();
    };
    const guard = (fn: () => void) => {
      try {
        fn();
      } catch (e) {
        errors.push(e as Error);
        sock.destroy();
      }
    };
    sock.on('error', () => {});
    sock.on('data', (d) =>
      guard(() => {
        if (engine) return flush(engine.receive(d));
        const h = asm.push(d);
        if (!h) return;
        const ch = decodeClientHelloMessage(h.message);
        engine = new TlsServer({
          provider: nodeProvider,
          random: (n) => new Uint8Array(randomBytes(n)),
          ephemeral: () => nodeProvider.x25519Generate(),
          certificate: certificateSelector(certs),
          alpn,
          // X25519 only, so a client offering a P-256 share first gets HelloRetryRequest.
          groups: [NamedGroup.x25519],
        });
        const sni = routingView(ch).sni;
        flush(engine.start(ch, sni, { offered: false, accepted: false }));
        const rest = asm.bytes().subarray(h.consumed);
        if (rest.length) flush(engine.receive(rest));
      }),
    );
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  return { port: (srv.address() as net.AddressInfo).port, close: () => srv.close(), errors };
}

describe('TLS 1.3 server engine with real clients', () => {
  let s: Awaited<ReturnType<typeof engineServer>>;
  before(async () => {
    s = await engineServer(['app.example.test', 'other.example.test'], ['h2', 'http/1.1']);
  });
  after(() => s.close());

  for (const ciphers of ['TLS_AES_128_GCM_SHA256', 'TLS_AES_256_GCM_SHA384', 'TLS_CHACHA20_POLY1305_SHA256']) {
    it(`node:tls client, ${ciphers}: handshake, certificate by SNI, ALPN, data both ways`, async () => {
      const got = await new Promise<{ data: string; cert: string; alpn: string | false; cipher: string }>((resolve, reject) => {
        const c = tls.connect({ port: s.port, host: '127.0.0.1', servername: 'other.example.test', rejectUnauthorized: false, ALPNProtocols: ['http/1.1'], ciphers, minVersion: 'TLSv1.3' });
        c.once('secureConnect', () => c.write('ping'));
        c.once('data', (d) => {
          resolve({ data: d.toString(), cert: String(c.getPeerCertificate().subject.CN), alpn: c.alpnProtocol ?? false, cipher: c.getCipher().standardName });
          c.end();
        });
        c.once('error', reject);
      });
      assert.deepEqual(got, { data: 'echo:ping', cert: 'other.example.test', alpn: 'http/1.1', cipher: ciphers });
    });
  }

  it('a large write crosses many records intact', async () => {
    const payload = randomBytes(200_000);
    const got = await new Promise<Buffer>((resolve, reject) => {
      const c = tls.connect({ port: s.port, host: '127.0.0.1', servername: 'app.example.test', rejectUnauthorized: false });
      const chunks: Buffer[] = [];
      c.on('data', (d) => {
        chunks.push(d);
        // every received record is echoed with a 5-byte prefix; stop when all payload bytes came back
        if (Buffer.concat(chunks).toString('latin1').split('echo:').join('').length >= payload.length) {
          resolve(Buffer.concat(chunks));
          c.end();
        }
      });
      c.once('secureConnect', () => c.write(payload));
      c.once('error', reject);
    });
    assert.equal(Buffer.from(got.toString('latin1').split('echo:').join(''), 'latin1').equals(payload), true);
  });

  it('openssl s_client: TLS 1.3 handshake verifies, ALPN h2', async () => {
    const stdout = await sClient(['-connect', `127.0.0.1:${s.port}`, '-servername', 'app.example.test', '-alpn', 'h2', '-tls1_3'], 'hello', /echo:hello/);
    assert.match(stdout, /New, TLSv1\.3, Cipher is/);
    assert.match(stdout, /ALPN protocol: h2/);
    assert.match(stdout, /subject=CN ?= ?app\.example\.test/);
    assert.match(stdout, /echo:hello/);
  });

  it('openssl s_client offering only a P-256 share: HelloRetryRequest for X25519, then success', async () => {
    const stdout = await sClient(['-connect', `127.0.0.1:${s.port}`, '-servername', 'app.example.test', '-groups', 'P-256:X25519', '-tls1_3', '-msg'], 'hrr', /echo:hrr/);
    // OpenSSL prints the HRR as a ServerHello; it is one by its random (RFC 8446 §4.1.3), and the client sends a second ClientHello.
    assert.equal(stdout.match(/>>> TLS 1.3, Handshake \[length [0-9a-f]+\], ClientHello/g)?.length, 2);
    assert.match(stdout, /cf 21 ad 74 e5 9a 61 11/);
    assert.match(stdout, /echo:hrr/);
  });

  it('curl over TLS 1.3', async () => {
    const { stdout } = await run('curl', ['-sk', '--tlsv1.3', '--http1.1', '--max-time', '10', '--resolve', `app.example.test:${s.port}:127.0.0.1`, `https://app.example.test:${s.port}/x`]);
    assert.match(stdout, /^echo:GET \/x HTTP\/1\.1/);
  });

  it('a TLS 1.2-only client gets protocol_version', async () => {
    await assert.rejects(
      new Promise((resolve, reject) => {
        const c = tls.connect({ port: s.port, host: '127.0.0.1', servername: 'app.example.test', rejectUnauthorized: false, maxVersion: 'TLSv1.2' });
        c.once('secureConnect', resolve);
        c.once('error', reject);
      }),
      /protocol version|alert number 70/i,
    );
  });
});
