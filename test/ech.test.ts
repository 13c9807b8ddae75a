/**
 * RFC 9849: ECHConfigList parsing (OpenSSL, Go, RFC 9848 vectors), server-side
 * decryption (NSS fixed-key vectors), and real Chromium captures.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { fromHex, toHex } from '../src/bytes/util.js';
import { setupReceiver } from '../src/crypto/hpke.js';
import { nodeProvider } from '../src/crypto/node.js';
import { decryptEch, type EchServerKey, type KeyLookup, outerAad, prepareServerKey } from '../src/ech/server.js';
import { isSupportedSuite } from '../src/crypto/hpke.js';
import { unusableReason as unusableReasonWith, usableConfigs as usableWith } from '../src/wire/ech/usable.js';
import { EchgateError } from '../src/errors.js';
import { decodeECHConfigList, type ECHConfigContents, encodeECHConfig, encodeECHConfigList } from '../src/wire/ech/config.js';
import { decodeClientHelloMessage, findExtension, summarize } from '../src/wire/tls/client-hello.js';
import { decodeECHClientHello } from '../src/wire/tls/extensions.js';
import { parseHelloRecords } from '../src/wire/tls/record.js';
import { json, vector } from './helpers.js';

const openssl = json('ech/openssl-echconfiglist-vectors.json');
const go = json('ech/go-ech-parse-vectors.json');
const rfc9848 = json('ech/rfc9848-echconfiglist-example.json');
const nss = json('ech/nss-fixed-key-ech-decrypt-vectors.json');
const manifest = json('captures/manifest.json');

const usableConfigs = (l: Parameters<typeof usableWith>[0]) => usableWith(l, isSupportedSuite);
const unusableReason = (c: Parameters<typeof unusableReasonWith>[0]) => unusableReasonWith(c, isSupportedSuite);

export function lookupOf(keys: EchServerKey[]): KeyLookup {
  return { byConfigId: (id) => keys.filter((k) => k.configId === id), all: () => keys };
}

function keyFrom(skHex: string, listB64orHex: string, hex = false): EchServerKey {
  const list = decodeECHConfigList(hex ? fromHex(listB64orHex) : new Uint8Array(Buffer.from(listB64orHex, 'base64')));
  const cfg = usableConfigs(list)[0]!;
  return prepareServerKey(nodeProvider, cfg, nodeProvider.x25519Private(fromHex(skHex)));
}

/** Parse the way a server would: a framing error rejects the list; otherwise count usable configs. */
function usableCount(hex: string): number | 'error' {
  try {
    return usableConfigs(decodeECHConfigList(fromHex(hex))).length;
  } catch (e) {
    if (e instanceof EchgateError) return 'error';
    throw e;
  }
}

describe('ECHConfigList (RFC 9849 §4)', () => {
  it('RFC 9848 example decodes to its stated fields and re-encodes', () => {
    const bytes = fromHex(rfc9848.ech_config_list_hex);
    const [c] = decodeECHConfigList(bytes) as (ECHConfigContents & { raw: Uint8Array })[];
    assert.equal(c!.configId, 1);
    assert.equal(c!.publicName, 'ech-sites.example.net');
    assert.equal(c!.maximumNameLength, 100);
    assert.deepEqual(c!.cipherSuites, [{ kdfId: 1, aeadId: 1 }]);
    assert.equal(toHex(c!.publicKey).slice(0, 8), '1d77eb1c');
    assert.deepEqual(encodeECHConfigList([encodeECHConfig(c!)]), bytes);
  });

  // Where our answer differs from OpenSSL's, it is OpenSSL policy, not RFC 9849:
  const differs: Record<string, { ours: number | 'error'; why: string }> = {
    // §4: unknown/unsupported configs are skipped, never poison the list; OpenSSL rejects the whole list.
    'bin_bad_then_good (aead 0xffff config, then good config)': { ours: 1, why: 'RFC 9849 §4 / §6.1: skip the unusable config, use the good one' },
    // An all-zero X25519 key cannot produce a shared secret (RFC 7748 §6.1); OpenSSL accepts the config.
    'bin_zero (all-zero x25519 public key)': { ours: 1, why: 'accepted as parseable; the DH fails at use (RFC 9180 §7.1.4) — same count as OpenSSL' },
  };
  for (const c of openssl.parse_cases) {
    it(`OpenSSL: ${c.name}`, () => {
      const ours = usableCount(c.ech_config_list_hex);
      const d = differs[c.name];
      if (d) {
        assert.equal(ours, d.ours, d.why);
        return;
      }
      const expected = c.openssl_accepts ? c.openssl_usable_configs : 0;
      assert.equal(ours === 'error' ? 0 : ours, expected);
    });
  }
  it('Go: ECHConfigList cases (unknown versions skipped)', () => {
    for (const c of go.ech_config_list_cases) {
      const list = decodeECHConfigList(fromHex(c.hex));
      assert.equal(list.filter((x) => x.version === 0xfe0d).length, c.num_configs_parsed, c.name);
    }
    for (const c of go.pick_config_cases ?? []) {
      let n = 0;
      try {
        n = usableConfigs(decodeECHConfigList(fromHex(c.hex))).length;
      } catch (e) {
        assert.ok(e instanceof EchgateError);
      }
      assert.equal(n, 0, c.name);
    }
  });
  it('Go: ECHClientHello extension bodies', () => {
    for (const c of go.ech_client_hello_extension_cases) {
      if (!c.valid) {
        assert.throws(() => decodeECHClientHello(fromHex(c.hex)), EchgateError, c.name);
        continue;
      }
      const e = decodeECHClientHello(fromHex(c.hex));
      assert.equal(e.type, c.type, c.name);
      if (e.type === 'outer') {
        assert.deepEqual([e.kdfId, e.aeadId, e.configId, toHex(e.enc), toHex(e.payload)], [c.kdf_id, c.aead_id, c.config_id, c.enc, c.payload]);
      }
    }
  });
  it('unusable reasons', () => {
    // OpenSSL refuses bin_long_ext for its 512-octet extension cap, which RFC 9849 does not have;
    // we refuse it too, but because its type 0xffff has the mandatory bit set (§4.2).
    const long = decodeECHConfigList(fromHex(openssl.parse_cases.find((c: any) => c.name.startsWith('bin_long_ext')).ech_config_list_hex));
    assert.equal(unusableReason(long[0]!), 'mandatory_extension');
    const list = decodeECHConfigList(fromHex(openssl.parse_cases.find((c: any) => c.name.startsWith('bin_mand_ext')).ech_config_list_hex));
    assert.equal(unusableReason(list[0]!), 'mandatory_extension');
    const pn = decodeECHConfigList(fromHex(openssl.parse_cases.find((c: any) => c.name.startsWith('bin_pn_dot_at_end')).ech_config_list_hex));
    assert.equal(unusableReason(pn[0]!), 'public_name');
  });
  it('GREASE extension types: optional ones (0x0a0a) are tolerated, mandatory-bit ones (0xfafa) make the config unusable (§4.2)', () => {
    const base = {
      configId: 1,
      kemId: 0x20,
      publicKey: new Uint8Array(32).fill(9),
      cipherSuites: [{ kdfId: 1, aeadId: 1 }],
      maximumNameLength: 0,
      publicName: 'public.example.test',
    };
    const ok = decodeECHConfigList(encodeECHConfigList([encodeECHConfig({ ...base, extensions: [{ type: 0x0a0a, data: Uint8Array.of(1) }] })]));
    assert.equal(unusableReason(ok[0]!), undefined);
    const mand = decodeECHConfigList(encodeECHConfigList([encodeECHConfig({ ...base, extensions: [{ type: 0xfafa, data: new Uint8Array(0) }] })]));
    assert.equal(unusableReason(mand[0]!), 'mandatory_extension');
  });
  it('random bytes never throw anything but EchgateError; round trip of random configs', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (b) => {
        try {
          decodeECHConfigList(b);
        } catch (e) {
          assert.ok(e instanceof EchgateError);
        }
      }),
      { numRuns: 2000 },
    );
    fc.assert(
      fc.property(
        fc.record({
          configId: fc.integer({ min: 0, max: 255 }),
          kemId: fc.integer({ min: 0, max: 0xffff }),
          publicKey: fc.uint8Array({ minLength: 1, maxLength: 64 }),
          cipherSuites: fc.array(fc.record({ kdfId: fc.integer({ min: 0, max: 0xffff }), aeadId: fc.integer({ min: 0, max: 0xffff }) }), { minLength: 1, maxLength: 4 }),
          maximumNameLength: fc.integer({ min: 0, max: 255 }),
          publicName: fc.stringMatching(/^[a-z]{1,10}(\.[a-z]{1,10}){0,2}$/),
          extensions: fc.uniqueArray(fc.record({ type: fc.integer({ min: 0, max: 0xffff }), data: fc.uint8Array({ maxLength: 8 }) }), { maxLength: 3, selector: (e) => e.type }),
        }),
        (c) => {
          const enc = encodeECHConfigList([encodeECHConfig(c)]);
          const [d] = decodeECHConfigList(enc);
          assert.deepEqual(encodeECHConfigList([d!.raw]), enc);
          for (let n = 0; n < enc.length; n++) assert.throws(() => decodeECHConfigList(enc.subarray(0, n)), EchgateError);
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe('ECH decryption: NSS fixed-key vectors (RFC 9849 §7.1)', () => {
  const key = keyFrom(nss.server_x25519_private_key, nss.ech_config_list, true);
  it('the HPKE info is "tls ech" || 0 || ECHConfig', () => {
    assert.equal(toHex(key.info), nss.hpke_info);
  });
  const alertName: Record<string, string> = {
    kTlsAlertIllegalParameter: 'illegal_parameter',
    kTlsAlertDecodeError: 'decode_error',
    kTlsAlertProtocolVersion: 'protocol_version',
  };
  // RFC 9849 §7.1: an inner that offers TLS 1.2 or below is refused by the client-facing
  // server with illegal_parameter; BoringSSL's vector expects the protocol_version its
  // handshake would send later, after the inner hello is already accepted.
  const rfcAlert: Record<string, string> = { EchVersion12InnerSupportedVersions: 'illegal_parameter' };
  for (const c of nss.cases) {
    const want = rfcAlert[c.test] ?? alertName[c.expected_server_alert];
    it(`${c.test}: decrypts, AAD matches, ends in ${want}`, () => {
      const outer = decodeClientHelloMessage(fromHex(c.client_hello_outer));
      const ext = findExtension(outer, 0xfe0d)!;
      const ech = decodeECHClientHello(ext.data);
      assert.ok(ech.type === 'outer');
      assert.equal(toHex(outerAad(outer, ext, ech)), c.client_hello_outer_aad);
      const ctx = setupReceiver(nodeProvider, ech, ech.enc, key.sk, key.info);
      assert.equal(toHex(ctx.open(fromHex(c.client_hello_outer_aad), ech.payload)), c.encoded_client_hello_inner);
      assert.throws(
        () => decryptEch(nodeProvider, outer, lookupOf([key])),
        (e: EchgateError) => e instanceof EchgateError && e.alert === want,
      );
    });
  }
});

describe('ECH decryption: real Chromium ClientHellos', () => {
  for (const c of manifest.captures) {
    it(`${c.file}: ${c.real_ech ? `decrypts to ${c.inner_sni}` : 'GREASE is not decryptable'}`, () => {
      const key = keyFrom(c.keys.private_key_hex, c.keys.echconfiglist_b64);
      const outer = decodeClientHelloMessage(parseHelloRecords(vector(`captures/${c.file}`))!.message);
      for (const trialDecrypt of [false, true]) {
        const r = decryptEch(nodeProvider, outer, lookupOf([key]), { trialDecrypt });
        if (!c.real_ech) {
          assert.equal(r.status, 'rejected');
          continue;
        }
        assert.equal(r.status, 'accepted');
        if (r.status !== 'accepted') return;
        const s = summarize(r.inner);
        assert.equal(s.sni, c.inner_sni);
        assert.deepEqual(s.alpn, c.inner_alpn);
        assert.deepEqual(r.inner.sessionId, outer.sessionId);
        assert.equal(r.configId, c.config_id);
      }
    });
  }
  it('regression: a hello held in a Buffer (as the proxy holds it) decrypts, twice, and stays unchanged', () => {
    const c = manifest.captures[0];
    const key = keyFrom(c.keys.private_key_hex, c.keys.echconfiglist_b64);
    const buf = Buffer.from(vector(`captures/${c.file}`));
    const copy = Buffer.from(buf);
    for (let i = 0; i < 2; i++) {
      const outer = decodeClientHelloMessage(parseHelloRecords(buf)!.message);
      assert.equal(decryptEch(nodeProvider, outer, lookupOf([key])).status, 'accepted');
    }
    assert.ok(buf.equals(copy), 'the AAD must be built on a copy, never through a Buffer view');
  });
  it('a wrong key with the same config_id: rejected as decrypt_failed, not an error', () => {
    const c = manifest.captures[0];
    const real = keyFrom(c.keys.private_key_hex, c.keys.echconfiglist_b64);
    const wrong = { ...real, sk: nodeProvider.x25519Generate() };
    const outer = decodeClientHelloMessage(parseHelloRecords(vector(`captures/${c.file}`))!.message);
    assert.deepEqual(decryptEch(nodeProvider, outer, lookupOf([wrong])), { status: 'rejected', reason: 'decrypt_failed', configId: 42 });
    assert.deepEqual(decryptEch(nodeProvider, outer, lookupOf([])), { status: 'rejected', reason: 'no_config', configId: 42 });
  });
  it('mutated real ECH hellos: only typed errors or a clean reject', () => {
    const c = manifest.captures[0];
    const key = keyFrom(c.keys.private_key_hex, c.keys.echconfiglist_b64);
    const cap = parseHelloRecords(vector(`captures/${c.file}`))!.message;
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }), (muts) => {
        const m = cap.slice();
        for (const [at, v] of muts) m[4 + (at % (m.length - 4))] = v;
        try {
          const outer = decodeClientHelloMessage(m);
          const r = decryptEch(nodeProvider, outer, lookupOf([key]), { trialDecrypt: true });
          assert.ok(['accepted', 'rejected', 'absent'].includes(r.status));
        } catch (e) {
          assert.ok(e instanceof EchgateError, String(e));
        }
      }),
      { numRuns: 500 },
    );
  });
});
