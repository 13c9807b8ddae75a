/**
 * RFC 9849 §7.1 through the proxy: a ClientHelloInner that does not offer TLS
 * 1.3, or that also offers TLS 1.2 or below, is refused with illegal_parameter
 * by the client-facing server itself. This matters most on the route-only
 * paths (split mode, passthrough), where no TLS engine of echgate's ever sees
 * the inner hello, so nothing downstream would catch it.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { nodeProvider } from '../src/crypto/node.js';
import { buildEchClientHello } from '../src/ech/client.js';
import { echClassifier } from '../src/proxy/ech-classifier.js';
import { frameHandshake } from '../src/wire/tls/record.js';
import { memoryEchKey, rawExchange, startGateway } from './helpers.js';

const ILLEGAL_PARAMETER = [21, 3, 3, 0, 2, 2, 47];

describe('RFC 9849 §7.1: the inner hello must offer TLS 1.3 and nothing older (route-only paths)', () => {
  const k = memoryEchKey(7);
  let backend: net.Server;
  let reached = 0;
  let g: Awaited<ReturnType<typeof startGateway>>;

  before(async () => {
    backend = net.createServer((s) => {
      reached++;
      s.on('error', () => {});
      s.end();
    });
    await new Promise<void>((r) => backend.listen(0, '127.0.0.1', () => r()));
    const port = (backend.address() as net.AddressInfo).port;
    g = await startGateway(`
entryPoints: { websecure: { address: "127.0.0.1:0" } }
tcp:
  routers:
    split: { rule: "HostSNI(\`split.example.test\`)", requireECH: true, service: b, tls: { passthrough: true, echSplit: true } }
    pass: { rule: "HostSNI(\`pass.example.test\`)", service: b, tls: { passthrough: true } }
  services: { b: { loadBalancer: { servers: [{ address: "127.0.0.1:${port}" }] } } }
`);
    g.gw.setClassifier(echClassifier(k.lookup, g.gw.metrics, { trialDecrypt: false }));
  });
  after(async () => {
    await g?.close();
    backend?.close();
  });

  const hello = (innerSni: string, innerVersions?: number[]) =>
    frameHandshake(buildEchClientHello(nodeProvider, { config: k.config, innerSni, innerVersions }).outerMessage);

  for (const router of ['split', 'pass']) {
    for (const [what, versions] of [
      ['only TLS 1.2', [0x0303]],
      ['TLS 1.3 and TLS 1.2', [0x0304, 0x0303]],
      ['TLS 1.2 before TLS 1.3', [0x0303, 0x0304]],
    ] as const) {
      it(`${router}: an inner hello offering ${what} gets illegal_parameter and never reaches the backend`, async () => {
        const before = reached;
        const got = await rawExchange(g.port(), [hello(`${router}.example.test`, [...versions])]);
        assert.deepEqual([...got], ILLEGAL_PARAMETER);
        assert.equal(reached, before);
      });
    }
    it(`${router}: a well-formed inner hello (TLS 1.3 only) is routed to the backend`, async () => {
      const before = reached;
      await rawExchange(g.port(), [hello(`${router}.example.test`)]);
      assert.equal(reached, before + 1);
    });
  }
});
