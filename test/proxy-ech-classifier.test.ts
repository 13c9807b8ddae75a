/**
 * The ECH classifier hands its options to decryptEch (proxy/ech-classifier.ts):
 * trial decryption (RFC 9849 §10.4) reaches a key whose config_id does not
 * match the hello's, and only when the operator turned it on.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fromHex } from '../src/bytes/util.js';
import { isSupportedSuite } from '../src/crypto/hpke.js';
import { nodeProvider } from '../src/crypto/node.js';
import { type EchServerKey, type KeyLookup, prepareServerKey } from '../src/ech/server.js';
import { echClassifier } from '../src/proxy/ech-classifier.js';
import { Metrics } from '../src/proxy/metrics.js';
import { decodeECHConfigList } from '../src/wire/ech/config.js';
import { usableConfigs } from '../src/wire/ech/usable.js';
import { decodeClientHelloMessage, routingView, scanClientHelloMessage } from '../src/wire/tls/client-hello.js';
import { parseHelloRecords } from '../src/wire/tls/record.js';
import { json, vector } from './helpers.js';

const cap = json('captures/manifest.json').captures.find((c: any) => c.real_ech && c.inner_sni === 'app.example.test');

function key(): EchServerKey {
  const cfg = usableConfigs(decodeECHConfigList(new Uint8Array(Buffer.from(cap.keys.echconfiglist_b64, 'base64'))), isSupportedSuite)[0]!;
  return prepareServerKey(nodeProvider, cfg, nodeProvider.x25519Private(fromHex(cap.keys.private_key_hex)));
}

describe('echClassifier options (RFC 9849 §10.4 trial decryption)', () => {
  const hello = decodeClientHelloMessage(parseHelloRecords(vector(`captures/${cap.file}`))!.message);
  const k = key();
  // The right private key filed under another config_id: only trial decryption finds it.
  const moved: EchServerKey = { ...k, configId: (k.configId + 1) & 0xff };
  const lookup: KeyLookup = { byConfigId: (id) => (id === moved.configId ? [moved] : []), all: () => [moved] };

  it('trialDecrypt: true opens a hello whose config_id names no key, and routes on the inner SNI', () => {
    const cls = echClassifier(lookup, new Metrics(), { trialDecrypt: true })(hello, routingView(hello), 'e');
    assert.equal(cls.ech, 'accepted');
    assert.equal(cls.sni, 'app.example.test');
  });

  it('trialDecrypt: false leaves that hello rejected (no_config: counted as GREASE)', () => {
    const metrics = new Metrics();
    const cls = echClassifier(lookup, metrics, { trialDecrypt: false })(hello, routingView(hello), 'e');
    assert.equal(cls.ech, 'rejected');
    assert.equal(cls.echReason, 'grease');
    assert.equal(metrics.ech.get({ entrypoint: 'e', result: 'grease' }), 1);
  });
});

describe('echClassifier on GREASE ECH (RFC 9849 §6.2): no key to try, nothing decoded', () => {
  const grease = json('captures/manifest.json').captures.find((c: any) => !c.real_ech);
  const scan = scanClientHelloMessage(parseHelloRecords(vector(`captures/${grease.file}`))!.message);
  const k = key();
  const lookup: KeyLookup = { byConfigId: (id) => (id === k.configId ? [k] : []), all: () => [k] };

  it('answers grease on the outer SNI and leaves the scanned hello undecoded', () => {
    const metrics = new Metrics();
    const cls = echClassifier(lookup, metrics, { trialDecrypt: false })(scan.hello, scan.view, 'e');
    assert.equal(cls.ech, 'rejected');
    assert.equal(cls.echReason, 'grease');
    assert.equal(cls.sni, grease.outer_sni);
    assert.equal(metrics.ech.get({ entrypoint: 'e', result: 'grease' }), 1);
    assert.equal((scan.hello as unknown as { full?: unknown }).full, undefined);
  });

  it('with trial decryption and a key loaded, tries the key (and still answers grease)', () => {
    const metrics = new Metrics();
    const s = scanClientHelloMessage(parseHelloRecords(vector(`captures/${grease.file}`))!.message);
    const cls = echClassifier(lookup, metrics, { trialDecrypt: true })(s.hello, s.view, 'e');
    assert.equal(cls.echReason, 'grease');
    assert.notEqual((s.hello as unknown as { full?: unknown }).full, undefined);
  });
});
