/**
 * RFC 8446 §4.4.2.2: the server's certificate MUST be one the client can
 * verify with a scheme from its signature_algorithms. With an ECDSA and an
 * RSA certificate for one name, each client gets the one it can verify (as
 * Go's crypto/tls picks the first certificate the hello supports), in the
 * engine and against a real peer (openssl s_client).
 */
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { nodeProvider } from '../src/crypto/node.js';
import { certificateSelector, type LoadedCertificate, loadCertificate, SigScheme } from '../src/tls13/certs.js';
import { TlsClient } from '../src/tls13/client.js';
import type { CertifiedKey } from '../src/tls13/server.js';
import { type ClientHello, decodeClientHelloMessage } from '../src/wire/tls/client-hello.js';
import { ExtensionType } from '../src/wire/tls/constants.js';
import { parseHelloRecords } from '../src/wire/tls/record.js';
import { startGateway } from './helpers.js';
import { newServer } from './tls13-craft.js';

const run = promisify(execFile);
const W = mkdtempSync(join(tmpdir(), 'echgate-sigalgs-'));

function make(name: string, keyArgs: string[], sans: string[]): { certFile: string; keyFile: string; cert: LoadedCertificate } {
  const keyFile = join(W, `${name}.key`);
  const certFile = join(W, `${name}.pem`);
  execFileSync('openssl', ['req', '-x509', '-newkey', ...keyArgs, '-nodes', '-keyout', keyFile, '-out', certFile, '-days', '30', '-subj', `/CN=${name}`, '-addext', `subjectAltName=${sans.map((n) => `DNS:${n}`).join(',')}`], { stdio: 'ignore' });
  return { certFile, keyFile, cert: loadCertificate(readFileSync(certFile, 'utf8'), readFileSync(keyFile, 'utf8')) };
}

const EC = ['ec', '-pkeyopt', 'ec_paramgen_curve:P-256'];
const RSA = ['rsa:2048'];
const ec = make('dual-ec', EC, ['dual.example.test']);
const rsa = make('dual-rsa', RSA, ['dual.example.test']);
const wildRsa = make('wild-rsa', RSA, ['*.example.test']);
const other = make('other-ec', EC, ['other.example.test']);

const PSS = [SigScheme.rsa_pss_rsae_sha256];
const P256 = [SigScheme.ecdsa_secp256r1_sha256];

/** Our client's hello with signature_algorithms replaced (the transcript hashes `raw`, which the engine alone reads here). */
function helloWith(sigAlgs: number[]): ClientHello {
  const client = new TlsClient({ provider: nodeProvider, serverName: 'dual.example.test' });
  const ch = decodeClientHelloMessage(parseHelloRecords(client.hello()[0]!)!.message);
  const data = new Uint8Array(2 + 2 * sigAlgs.length);
  data[1] = 2 * sigAlgs.length;
  sigAlgs.forEach((s, i) => {
    data[2 + 2 * i] = s >> 8;
    data[3 + 2 * i] = s & 0xff;
  });
  return { ...ch, extensions: ch.extensions.map((e) => (e.type === ExtensionType.signature_algorithms ? { type: e.type, data } : e)) };
}

describe('certificate choice by the client\'s signature_algorithms (RFC 8446 §4.4.2.2)', () => {
  it('the selector: among the certificates for the name, the first the client can verify; the exact name before a wildcard, unless only the wildcard one is verifiable', () => {
    const pick = certificateSelector([ec.cert, rsa.cert, other.cert]);
    assert.equal(pick('dual.example.test', PSS), rsa.cert);
    assert.equal(pick('dual.example.test', P256), ec.cert);
    assert.equal(pick('dual.example.test', [...PSS, ...P256]), ec.cert, 'both verifiable: configuration order');
    assert.equal(pick('dual.example.test'), ec.cert, 'no schemes given: the first for the name');
    assert.equal(pick('dual.example.test', [SigScheme.ed25519]), ec.cert, 'none verifiable: the first for the name (the handshake fails on it)');
    const withWild = certificateSelector([other.cert, ec.cert, wildRsa.cert]);
    assert.equal(withWild('dual.example.test', PSS), wildRsa.cert);
    assert.equal(withWild('dual.example.test', P256), ec.cert);
    assert.equal(withWild('nobody.test', PSS), other.cert, 'no certificate names it: the default, whatever the schemes');
  });

  it('the engine: an RSA-PSS-only hello gets the RSA certificate, an ECDSA-only one the ECDSA certificate', () => {
    for (const [algs, want, scheme] of [
      [PSS, rsa.cert, SigScheme.rsa_pss_rsae_sha256],
      [P256, ec.cert, SigScheme.ecdsa_secp256r1_sha256],
    ] as const) {
      const pick = certificateSelector([ec.cert, rsa.cert]);
      let chosen: CertifiedKey | undefined;
      let signedWith = -1;
      const server = newServer({
        certificate: (sni, sigAlgs) => {
          chosen = pick(sni, sigAlgs);
          const c = chosen;
          if (!c) return undefined;
          const sign = (s: number, d: Uint8Array) => {
            signedWith = s;
            return c.sign(s, d);
          };
          return { ...c, sign };
        },
      });
      const out = server.start(helloWith([...algs]), 'dual.example.test', { offered: false, accepted: false });
      assert.equal(out.error, undefined, String(out.error));
      assert.equal(chosen, want);
      assert.equal(signedWith, scheme);
    }
  });

  describe('a real peer: openssl s_client through a gateway with both certificates for one name', () => {
    let backend: net.Server;
    let g: Awaited<ReturnType<typeof startGateway>>;
    before(async () => {
      backend = net.createServer((s) => {
        s.on('error', () => {});
        s.once('data', () => s.end('backend says hi\n'));
      });
      await new Promise<void>((r) => backend.listen(0, '127.0.0.1', () => r()));
      const port = (backend.address() as net.AddressInfo).port;
      g = await startGateway(`
tls:
  certificates:
    - { certFile: "${ec.certFile}", keyFile: "${ec.keyFile}" }
    - { certFile: "${rsa.certFile}", keyFile: "${rsa.keyFile}" }
  options: { both: { minVersion: VersionTLS12 } }
entryPoints: { websecure: { address: "127.0.0.1:0" } }
tcp:
  routers:
    dual: { rule: "HostSNI(\`dual.example.test\`)", service: b, tls: { options: both } }
  services: { b: { loadBalancer: { servers: [{ address: "127.0.0.1:${port}" }] } } }
`);
    });
    after(async () => {
      await g?.close();
      backend?.close();
    });
    const sClient = async (args: string[]) => {
      const cmd = `printf 'ping\\n' | timeout 10 openssl s_client -ign_eof -connect 127.0.0.1:${g.port()} -servername dual.example.test ${args.join(' ')} 2>&1 || true`;
      return (await run('sh', ['-c', cmd])).stdout;
    };

    it('TLS 1.3, -sigalgs rsa_pss_rsae_sha256: the RSA certificate, signed with RSA-PSS', async () => {
      const out = await sClient(['-tls1_3', '-sigalgs', 'rsa_pss_rsae_sha256']);
      assert.match(out, /subject=CN = dual-rsa/);
      assert.match(out, /Peer signature type: RSA-PSS/);
      assert.match(out, /backend says hi/);
    });
    it('TLS 1.3, -sigalgs ecdsa_secp256r1_sha256: the ECDSA certificate', async () => {
      const out = await sClient(['-tls1_3', '-sigalgs', 'ecdsa_secp256r1_sha256']);
      assert.match(out, /subject=CN = dual-ec/);
      assert.match(out, /Peer signature type: ECDSA/);
      assert.match(out, /backend says hi/);
    });
    it('TLS 1.3, -sigalgs ed25519 (neither): handshake_failure', async () => {
      const out = await sClient(['-tls1_3', '-sigalgs', 'ed25519']);
      assert.match(out, /alert handshake failure|alert number 40/);
      assert.doesNotMatch(out, /backend says hi/);
    });
    it('TLS 1.2 (node:tls), an ECDHE-RSA suite with RSA signatures only: the RSA certificate', async () => {
      const out = await sClient(['-tls1_2', '-cipher', 'ECDHE-RSA-AES128-GCM-SHA256', '-sigalgs', 'RSA+SHA256:rsa_pss_rsae_sha256']);
      assert.match(out, /subject=CN = dual-rsa/);
      assert.match(out, /backend says hi/);
    });
    it('TLS 1.2 (node:tls), an ECDHE-ECDSA suite: the ECDSA certificate', async () => {
      const out = await sClient(['-tls1_2', '-cipher', 'ECDHE-ECDSA-AES128-GCM-SHA256']);
      assert.match(out, /subject=CN = dual-ec/);
      assert.match(out, /backend says hi/);
    });
  });
});
