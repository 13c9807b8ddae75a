/**
 * The embedded authoritative DNS over UDP and TCP, and its DoH face, asked by
 * real resolvers' tools: BIND's dig and Knot's kdig (plain, TCP, truncation,
 * EDNS, DoH over HTTP/2), then hostile datagrams and streams that must leave
 * it answering.
 */
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import dgram from 'node:dgram';
import { mkdtempSync, readFileSync } from 'node:fs';
import type http2 from 'node:http2';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import fc from 'fast-check';
import { type DnsServer, literalLookup, startDnsServer } from '../src/dns/dns-server.js';
import { startDohServer } from '../src/dns/doh-server.js';
import { Zone } from '../src/dns/zone.js';
import { encodeECHConfig, encodeECHConfigList } from '../src/wire/ech/config.js';
import { decodeMessage, encodeQuery, RRType } from '../src/wire/dns/message.js';

const run = promisify(execFile);

const echList = encodeECHConfigList([
  encodeECHConfig({ configId: 3, kemId: 0x20, publicKey: new Uint8Array(32).fill(3), cipherSuites: [{ kdfId: 1, aeadId: 1 }], maximumNameLength: 0, publicName: 'public.example.test', extensions: [] }),
]);
const echB64 = Buffer.from(echList).toString('base64');
const zone = new Zone(
  {
    ttl: 30,
    names: {
      'secret.example.test': { a: ['127.0.0.1'], https: { alpn: ['h2', 'http/1.1'], port: 8443 } },
      // 40 A records: 40 × 16 octets of answers, past the 512 octets of a UDP answer without EDNS.
      'many.example.test': { a: Array.from({ length: 40 }, (_, i) => `10.0.0.${i + 1}`) },
    },
  },
  () => echList,
);

async function dig(port: number, ...args: string[]): Promise<string> {
  return (await run('dig', ['-p', String(port), '@127.0.0.1', '+norecurse', '+time=2', '+tries=1', ...args])).stdout;
}

describe('authoritative DNS over UDP and TCP, asked by dig and kdig', () => {
  let srv: DnsServer;
  before(async () => {
    srv = await startDnsServer({ host: '127.0.0.1', port: 0, zone: () => zone });
  });
  after(() => srv.close());

  it('dig over UDP: the HTTPS record with ech= as the key folder holds it, authoritative', async () => {
    const out = await dig(srv.port, 'secret.example.test', 'HTTPS');
    assert.match(out, /flags: qr aa;/);
    assert.match(out, new RegExp(`secret\\.example\\.test\\.\\s+30\\s+IN\\s+HTTPS\\s+1 \\. alpn="h2,http/1\\.1" port=8443 ech=${echB64.replace(/[+/=]/g, '\\$&')}`));
  });
  it('kdig over TCP: the _8443._https name with its explicit target', async () => {
    const { stdout } = await run('kdig', ['-p', String(srv.port), '@127.0.0.1', '+tcp', '+short', '_8443._https.secret.example.test', 'HTTPS']);
    assert.equal(stdout.trim(), `1 secret.example.test. alpn=h2,http/1.1 port=8443 ech=${echB64}`);
  });
  it('a UDP answer past 512 octets without EDNS is truncated (TC), and dig then gets it whole over TCP', async () => {
    assert.match(await dig(srv.port, '+noedns', '+ignore', 'many.example.test', 'A'), /flags: qr aa tc;/);
    const full = await dig(srv.port, '+noedns', '+short', 'many.example.test', 'A');
    assert.equal(full.trim().split('\n').length, 40);
  });
  it('EDNS: our OPT in the answer, BADVERS for version 1, NXDOMAIN below a name we hold, REFUSED for others (no zone)', async () => {
    assert.match(await dig(srv.port, 'secret.example.test', 'A'), /EDNS: version: 0, flags:; udp: 1232/);
    assert.match(await dig(srv.port, '+edns=1', '+noednsneg', 'secret.example.test', 'A'), /status: BADVERS/);
    assert.match(await dig(srv.port, 'nothing.secret.example.test', 'A'), /status: NXDOMAIN/);
    // Without dns.zone we hold no zone: a name that is not ours is REFUSED, not an authoritative NXDOMAIN.
    const other = await dig(srv.port, 'nothing.example.test', 'A');
    assert.match(other, /status: REFUSED/);
    assert.doesNotMatch(other, /flags: [a-z ]*aa/);
  });
  it('hostile datagrams and streams: no crash, FORMERR where a header was readable, still answering', async () => {
    const sock = dgram.createSocket('udp4');
    const replies: Buffer[] = [];
    sock.on('message', (m) => replies.push(m));
    await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
    const q = encodeQuery('secret.example.test', RRType.A, { id: 0x4242 });
    q[5] = 9; // nine questions claimed, one present
    sock.send(q, srv.port, '127.0.0.1');
    await new Promise((r) => setTimeout(r, 100));
    // 500 random datagrams, in bursts the loopback socket buffers can hold.
    const samples = fc.sample(fc.uint8Array({ minLength: 0, maxLength: 600 }), { numRuns: 500, seed: 7 });
    for (let i = 0; i < samples.length; i += 50) {
      for (const b of samples.slice(i, i + 50)) sock.send(b, srv.port, '127.0.0.1');
      await new Promise((r) => setTimeout(r, 10));
    }
    sock.close();
    const formerr = replies.map((m) => decodeMessage(new Uint8Array(m))).find((m) => m.id === 0x4242);
    assert.equal(formerr?.rcode, 1);
    // TCP: a zero length closes the connection; a length with no body just waits for more.
    for (const bytes of [Buffer.from([0, 0]), Buffer.from([0xff, 0xff, 1, 2, 3]), Buffer.from('GET / HTTP/1.1\r\n\r\n')]) {
      const c = net.connect(srv.port, '127.0.0.1');
      c.on('error', () => {});
      c.end(bytes);
      await new Promise((r) => c.once('close', r));
    }
    assert.match(await dig(srv.port, '+tcp', 'secret.example.test', 'A'), /status: NOERROR/);
    assert.match(await dig(srv.port, 'secret.example.test', 'A'), /127\.0\.0\.1/);
  });
});

describe('a listen host given by name', () => {
  it('RFC 1035 §4.2: UDP and TCP serve the same address, the one the name resolved to for the TCP listen', async () => {
    const srv = await startDnsServer({ host: 'localhost', port: 0, zone: () => zone });
    try {
      // Where TCP listens: the address a connection to it reaches.
      const c = net.connect(srv.port, 'localhost');
      c.on('error', () => {});
      await new Promise((r) => c.once('connect', r));
      const address = c.remoteAddress!;
      c.destroy();
      const sock = dgram.createSocket(net.isIPv6(address) ? 'udp6' : 'udp4');
      try {
        const reply = new Promise<Buffer>((r) => sock.once('message', r));
        sock.send(encodeQuery('secret.example.test', RRType.A, { id: 0x5151 }), srv.port, address);
        const m = decodeMessage(new Uint8Array(await reply));
        assert.equal(m.id, 0x5151);
        assert.equal(m.answers.length, 1);
      } finally {
        sock.close();
      }
    } finally {
      await srv.close();
    }
  });
});

describe('an apex: SOA and NS, negative answers with the SOA, REFUSED outside, the serial follows the keys', () => {
  let list = echList;
  const apexZone = new Zone(
    { ttl: 30, zone: 'example.test', nameservers: ['ns1.example.test', 'ns2.example.test'], names: { 'secret.example.test': { a: ['127.0.0.1'], https: { port: 8443 } }, 'ns1.example.test': { a: ['127.0.0.1'] } } },
    () => list,
  );
  let srv: DnsServer;
  before(async () => {
    srv = await startDnsServer({ host: '127.0.0.1', port: 0, zone: () => apexZone });
  });
  after(() => srv.close());
  const serialOf = (out: string) => Number(out.trim().split(/\s+/)[2]);

  it('dig: SOA and NS at the apex; NXDOMAIN and NODATA carry the SOA; an empty non-terminal is NODATA; outside the zone REFUSED', async () => {
    const soa = await dig(srv.port, '+short', 'example.test', 'SOA');
    assert.match(soa, /^ns1\.example\.test\. hostmaster\.example\.test\. \d+ 3600 600 604800 30$/m);
    assert.deepEqual((await dig(srv.port, '+short', 'example.test', 'NS')).trim().split('\n').sort(), ['ns1.example.test.', 'ns2.example.test.']);
    const nx = await dig(srv.port, 'nothing.example.test', 'A');
    assert.match(nx, /status: NXDOMAIN/);
    assert.match(nx, /AUTHORITY SECTION:\nexample\.test\.\s+30\s+IN\s+SOA/);
    assert.match(nx, /flags: qr aa;/);
    const nodata = await dig(srv.port, 'secret.example.test', 'AAAA');
    assert.match(nodata, /status: NOERROR/);
    assert.match(nodata, /ANSWER: 0, AUTHORITY: 1/);
    // _https.secret.example.test exists only because _8443._https.secret.example.test does (RFC 8020).
    assert.match(await dig(srv.port, '_https.secret.example.test', 'A'), /status: NOERROR/);
    const out = await dig(srv.port, 'www.example.org', 'A');
    assert.match(out, /status: REFUSED/);
    assert.doesNotMatch(out, /flags: [a-z ]*aa/);
  });
  it('a rotation moves the SOA serial forward', async () => {
    const before = serialOf(await dig(srv.port, '+short', 'example.test', 'SOA'));
    list = encodeECHConfigList([
      encodeECHConfig({ configId: 4, kemId: 0x20, publicKey: new Uint8Array(32).fill(4), cipherSuites: [{ kdfId: 1, aeadId: 1 }], maximumNameLength: 0, publicName: 'public.example.test', extensions: [] }),
    ]);
    const after = serialOf(await dig(srv.port, '+short', 'example.test', 'SOA'));
    assert.ok(after > before, `${after} > ${before}`);
    assert.equal(serialOf(await dig(srv.port, '+short', 'example.test', 'SOA')), after, 'and stays while the keys do');
  });
});

describe('DoH asked by kdig over HTTP/2 (RFC 8484)', () => {
  let srv: http2.Http2SecureServer;
  let port = 0;
  const dir = mkdtempSync(join(tmpdir(), 'echgate-kdig-'));
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-subj', '/CN=dns.test', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:dns.test', '-keyout', join(dir, 'k'), '-out', join(dir, 'c')], { stdio: 'ignore' });
  before(async () => {
    srv = await startDohServer({ host: '127.0.0.1', port: 0, cert: readFileSync(join(dir, 'c'), 'utf8'), key: readFileSync(join(dir, 'k'), 'utf8'), zone: () => zone });
    port = (srv.address() as { port: number }).port;
  });
  after(() => srv.close());

  for (const method of ['+https', '+https-get']) {
    it(`kdig ${method}, certificate verified: the same HTTPS record`, async () => {
      const { stdout } = await run('kdig', ['-p', String(port), '@127.0.0.1', method, `+tls-ca=${join(dir, 'c')}`, '+tls-hostname=dns.test', '+short', 'secret.example.test', 'HTTPS']);
      assert.equal(stdout.trim(), `1 . alpn=h2,http/1.1 port=8443 ech=${echB64}`);
    });
  }
});

describe('the UDP socket lookup (dns-server.ts literalLookup): IP literals only, the last one remembered', () => {
  const ask = (a: string) =>
    new Promise<{ err: string | undefined; address: string; family: number }>((r) => literalLookup(a, 0, (err, address, family) => r({ err: err?.code, address, family })));
  it('a literal is answered with its family; a name is refused every time, also right after a literal was remembered', async () => {
    assert.deepEqual(await ask('127.0.0.1'), { err: undefined, address: '127.0.0.1', family: 4 });
    assert.equal((await ask('localhost')).err, 'EINVAL');
    assert.deepEqual(await ask('::1'), { err: undefined, address: '::1', family: 6 });
    assert.deepEqual(await ask('::1'), { err: undefined, address: '::1', family: 6 });
    assert.equal((await ask('localhost')).err, 'EINVAL');
    assert.equal((await ask('')).err, 'EINVAL');
    assert.deepEqual(await ask('127.0.0.1'), { err: undefined, address: '127.0.0.1', family: 4 });
  });
});
