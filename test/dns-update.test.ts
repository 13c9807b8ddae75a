/**
 * RFC 2136 UPDATE and RFC 8945 TSIG, offline: key files, the message layout,
 * and total parsing of whatever comes back. BIND 9 itself checks our MACs in
 * test-e2e/bind9-publish.test.ts.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { EchgateError } from '../src/errors.js';
import { decodeMessage, RRType } from '../src/wire/dns/message.js';
import { parseTsigKeyFile, signRequest, type TsigHmac, verifyResponse } from '../src/wire/dns/tsig.js';
import { nodeProvider } from '../src/crypto/node.js';

// wire/ does no crypto: the HMAC is the crypto provider's.
const hmac: TsigHmac = nodeProvider.hmac;
import { encodeUpdate } from '../src/wire/dns/update.js';

// As tsig-keygen -a hmac-sha256 writes it.
const KEY_FILE = 'key "upd" {\n\talgorithm hmac-sha256;\n\tsecret "oY7hSOd1DXuV3L3bkX7mJ3sJY3eHWz7mLCz0O4UrrGk=";\n};\n';

describe('TSIG keys and signed UPDATE messages', () => {
  it('reads BIND key files; refuses unknown algorithms and missing secrets without echoing the secret', () => {
    const k = parseTsigKeyFile(KEY_FILE);
    assert.equal(k.name, 'upd');
    assert.equal(k.algorithm, 'hmac-sha256');
    assert.equal(k.secret.length, 32);
    assert.throws(() => parseTsigKeyFile(KEY_FILE.replace('hmac-sha256', 'hmac-md5')), (e: unknown) => e instanceof EchgateError && e.code === 'ERR_TSIG' && !e.message.includes('oY7h'));
    assert.throws(() => parseTsigKeyFile('key "upd" { algorithm hmac-sha256; };'), { code: 'ERR_TSIG' });
    assert.throws(() => parseTsigKeyFile('nothing here'), { code: 'ERR_TSIG' });
  });
  it('an UPDATE: opcode 5, the zone, delete-RRset then add, and a TSIG record last when signed', () => {
    const msg = encodeUpdate({ id: 7, zone: 'example.test', deleteRRsets: [{ name: 'svc.example.test', type: RRType.HTTPS }], add: [{ name: 'svc.example.test', type: RRType.HTTPS, ttl: 60, rdata: Uint8Array.of(0, 1, 0) }] });
    const m = decodeMessage(msg);
    assert.equal((m.flags >> 11) & 0xf, 5);
    assert.deepEqual(m.questions, [{ name: 'example.test', type: RRType.SOA, cls: 1 }]);
    assert.deepEqual(m.authorities.map((r) => [r.name, r.type, r.cls, r.ttl, r.rdata.length]), [
      ['svc.example.test', RRType.HTTPS, 255, 0, 0],
      ['svc.example.test', RRType.HTTPS, 1, 60, 3],
    ]);
    const signed = signRequest(msg, parseTsigKeyFile(KEY_FILE), hmac, { now: 1_700_000_000_000 });
    const s = decodeMessage(signed.message);
    assert.equal(s.additionals.length, 1);
    assert.equal(s.additionals[0]!.type, RRType.TSIG);
    assert.equal(signed.mac.length, 32);
    // The same input signs the same way; another second does not.
    assert.deepEqual(signRequest(msg, parseTsigKeyFile(KEY_FILE), hmac, { now: 1_700_000_000_000 }).mac, signed.mac);
    assert.notDeepEqual(signRequest(msg, parseTsigKeyFile(KEY_FILE), hmac, { now: 1_700_000_001_000 }).mac, signed.mac);
  });
  it('any bytes as a response: a typed error or a verdict, never anything else', () => {
    const key = parseTsigKeyFile(KEY_FILE);
    const req = signRequest(encodeUpdate({ id: 1, zone: 'example.test', deleteRRsets: [], add: [] }), key, hmac);
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 400 }), (b) => {
        try {
          verifyResponse(b, req, key, hmac);
        } catch (e) {
          assert.ok(e instanceof EchgateError, String(e));
        }
      }),
      { numRuns: 3000 },
    );
  });
});
