/** RFC 9460 Appendix D vectors (SVCB/HTTPS), the RFC 9848 ech SvcParam, property tests. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { fromHex, toHex } from '../src/bytes/util.js';
import { EchgateError } from '../src/errors.js';
import { decodeName, encodeName } from '../src/wire/dns/name.js';
import { decodeSvcb, encodeSvcb, formatSvcb, parseSvcbPresentation, SvcParamKey } from '../src/wire/dns/svcb.js';
import { json } from './helpers.js';

const vectors = json('svcb-vectors.json').vectors as any[];
const rfc9848 = json('ech/rfc9848-echconfiglist-example.json');

describe('RFC 9460 Appendix D', () => {
  for (const v of vectors) {
    if (v.valid === 'True' || v.valid === true) {
      it(`${v.name}: presentation → wire, wire → presentation → wire`, () => {
        const parsed = parseSvcbPresentation(v.rdata_presentation);
        assert.equal(toHex(encodeSvcb(parsed)), v.wire_hex);
        const decoded = decodeSvcb(fromHex(v.wire_hex));
        assert.equal(toHex(encodeSvcb(decoded)), v.wire_hex);
        assert.equal(toHex(encodeSvcb(parseSvcbPresentation(formatSvcb(decoded)))), v.wire_hex);
      });
    } else {
      it(`${v.name}: refused`, () => {
        assert.throws(() => parseSvcbPresentation(v.rdata_presentation), EchgateError);
      });
    }
  }
});

describe('RFC 9848: the ech SvcParam', () => {
  it('the example HTTPS RDATA carries the example ECHConfigList', () => {
    const s = decodeSvcb(fromHex(rfc9848.https_rdata_example_wire_hex));
    assert.equal(s.priority, 1);
    assert.equal(s.target, '');
    assert.equal(toHex(s.params.get(SvcParamKey.ech)!), rfc9848.ech_config_list_hex);
    assert.equal(toHex(encodeSvcb(parseSvcbPresentation(rfc9848.https_rdata_example_presentation))), rfc9848.https_rdata_example_wire_hex);
  });
});

describe('wire strictness', () => {
  it('keys out of order, duplicate keys, bad values are refused', () => {
    assert.throws(() => decodeSvcb(fromHex('0001000003000200350001000302683200')), /increasing/);
    assert.throws(() => decodeSvcb(fromHex('00010000030001ff')), /port/);
    assert.throws(() => decodeSvcb(fromHex('000100000000020005')), /mandatory key/);
  });
  it('random bytes never throw anything but EchgateError; no strict prefix of a vector decodes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 120 }), (b) => {
        try {
          decodeSvcb(b);
        } catch (e) {
          assert.ok(e instanceof EchgateError, String(e));
        }
      }),
      { numRuns: 3000 },
    );
    for (const v of vectors.filter((x) => x.wire_hex && x.wire_hex !== 'None')) {
      const w = fromHex(v.wire_hex);
      for (let n = 0; n < w.length; n++) {
        let ok = false;
        try {
          decodeSvcb(w.subarray(0, n));
          ok = true;
        } catch (e) {
          assert.ok(e instanceof EchgateError);
        }
        // A prefix that ends exactly between two SvcParams is itself a valid RDATA; nothing else is.
        if (ok) assert.ok(n >= 3, `prefix ${n} of ${v.name}`);
      }
    }
  });
});

describe('names', () => {
  it('compression pointers, loops and limits', () => {
    // "a.example" at 0, then a pointer to it at 11
    const msg = Uint8Array.from([1, 0x61, 7, ...Buffer.from('example'), 0, 0xc0, 0x00]);
    assert.deepEqual(decodeName(msg, 11), { name: 'a.example', next: 13 });
    assert.throws(() => decodeName(Uint8Array.from([0xc0, 0x00]), 0), /pointer/);
    assert.throws(() => decodeName(Uint8Array.from([0x40]), 0), /label type/);
    assert.throws(() => encodeName(`${'a'.repeat(64)}.example`), /63/);
    assert.deepEqual(encodeName('.'), Uint8Array.of(0));
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 80 }), fc.nat(), (b, o) => {
        try {
          decodeName(b, b.length ? o % b.length : 0);
        } catch (e) {
          assert.ok(e instanceof EchgateError);
        }
      }),
      { numRuns: 2000 },
    );
  });
});
