/**
 * One ClientHello builder (tls13/client-hello-builder.ts) for the plain hello
 * of tls13/client.ts and both hellos of an ECH offer (ech/client.ts): the
 * same signature_algorithms, cipher suites and extension order everywhere, so
 * a server cannot tell an ECH inner hello from a plain one by them, and the
 * client never offers a scheme it cannot verify.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { nodeProvider } from '../src/crypto/node.js';
import { buildEchClientHello, echOffer } from '../src/ech/client.js';
import { SigScheme } from '../src/tls13/certs.js';
import { TlsClient } from '../src/tls13/client.js';
import { CLIENT_CIPHER_SUITES, CLIENT_SIG_ALGS } from '../src/tls13/client-hello-builder.js';
import { type ClientHello, decodeClientHelloMessage } from '../src/wire/tls/client-hello.js';
import { ExtensionType } from '../src/wire/tls/constants.js';
import { decodeServerName } from '../src/wire/tls/extensions.js';
import { memoryEchKey } from './helpers.js';

const u16s = (d: Uint8Array): number[] => {
  const out: number[] = [];
  for (let i = 2; i + 1 < d.length; i += 2) out.push((d[i]! << 8) | d[i + 1]!);
  return out;
};
const sigAlgs = (h: ClientHello) => u16s(h.extensions.find((e) => e.type === ExtensionType.signature_algorithms)!.data);
/** The extension order without the ones only one kind of hello has (ECH itself). */
const order = (h: ClientHello) => h.extensions.map((e) => e.type).filter((t) => t !== ExtensionType.encrypted_client_hello);

describe('RFC 8446 §4.1.2, RFC 9849 §6.1: one ClientHello builder for plain and ECH hellos', () => {
  const k = memoryEchKey(3);
  const plain = decodeClientHelloMessage(new TlsClient({ provider: nodeProvider, serverName: 'secret.example.test', alpn: ['h2'] }).hello()[0]!.subarray(5));
  const ech = buildEchClientHello(nodeProvider, { config: k.config, innerSni: 'secret.example.test', alpn: ['h2'] });

  it('§4.2.3: signature_algorithms is the one list, the schemes the client can verify a CertificateVerify with', () => {
    assert.deepEqual([...CLIENT_SIG_ALGS].sort(), Object.values(SigScheme).sort());
    for (const h of [plain, ech.inner, ech.outer]) assert.deepEqual(sigAlgs(h), [...CLIENT_SIG_ALGS]);
  });

  it('§4.1.2: the same cipher suites and extension order in the plain hello and both ECH hellos', () => {
    for (const h of [ech.inner, ech.outer]) {
      assert.deepEqual(h.cipherSuites, [...CLIENT_CIPHER_SUITES]);
      assert.deepEqual(order(h), order(plain));
    }
    assert.deepEqual(plain.cipherSuites, [...CLIENT_CIPHER_SUITES]);
  });

  it('RFC 9849 §6.1: TlsClient offers ECH through the injected echOffer: the outer hello names the public name', () => {
    const c = new TlsClient({ provider: nodeProvider, serverName: 'secret.example.test', ech: echOffer(k.config) });
    const outer = decodeClientHelloMessage(c.hello()[0]!.subarray(5));
    assert.equal(decodeServerName(outer.extensions.find((e) => e.type === ExtensionType.server_name)!.data), 'public.example.test');
    assert.ok(outer.extensions.some((e) => e.type === ExtensionType.encrypted_client_hello));
    assert.deepEqual(sigAlgs(outer), [...CLIENT_SIG_ALGS]);
  });
});
