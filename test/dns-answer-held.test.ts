/**
 * DoH answers from the answer cache's own octets (src/dns/answer.ts
 * `QueryOptions.held`, answer-cache.ts `cachedAnswer`): a cached answer whose
 * ID and RD already are the query's (ID 0, as RFC 8484 §4.1 asks DoH clients
 * to use) is returned as the entry itself, with no copy; any other ID gets a
 * copy of its own. The entries DoH holds are never the ones TCP patches in
 * place (ID, RD) for its next query, so an answer DoH still holds (its write
 * not sent yet) never changes.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { answerQuery } from '../src/dns/answer.js';
import { Zone } from '../src/dns/zone.js';
import { decodeMessage, encodeQuery, RRType } from '../src/wire/dns/message.js';

const DOH = { udp: false, held: true };
const TCP = { udp: false, shared: true };

describe('DoH answers held from the answer cache', () => {
  it('ID 0 twice: the second and third answers are the cache entry itself; another ID gets a copy with its ID', () => {
    const zone = new Zone({ ttl: 30, names: { 'app.example.test': { a: ['127.0.0.1'] } } }, () => undefined);
    const q0 = encodeQuery('app.example.test', RRType.A, { id: 0 });
    const first = answerQuery(zone, q0, DOH);
    const second = answerQuery(zone, q0, DOH);
    const third = answerQuery(zone, q0, DOH);
    assert.equal(second.body, third.body, 'a hit that fits as it is: the same octets, not a copy');
    assert.deepEqual(Uint8Array.from(second.body!), Uint8Array.from(first.body!));
    const q7 = encodeQuery('app.example.test', RRType.A, { id: 7 });
    const seven = answerQuery(zone, q7, DOH);
    assert.notEqual(seven.body, second.body);
    assert.equal(decodeMessage(seven.body!).id, 7);
    assert.equal(decodeMessage(second.body!).id, 0, 'the entry itself was not patched for ID 7');
  });

  it('a TCP hit for the same question never patches the octets a DoH answer holds', () => {
    const zone = new Zone({ ttl: 30, names: { 'app.example.test': { a: ['127.0.0.1'] } } }, () => undefined);
    const q0 = encodeQuery('app.example.test', RRType.A, { id: 0 });
    answerQuery(zone, q0, DOH);
    const held = answerQuery(zone, q0, DOH).body!;
    const before = Uint8Array.from(held);
    // TCP fills its own entry, then patches it in place for each hit (ID 0x1234, RD clear).
    const qt = encodeQuery('app.example.test', RRType.A, { id: 0x1234 });
    answerQuery(zone, qt, TCP);
    const tcp = answerQuery(zone, qt, TCP).body!;
    assert.equal(decodeMessage(tcp).id, 0x1234);
    assert.deepEqual(Uint8Array.from(held), before, 'the DoH answer still held changed under a TCP hit');
    assert.equal(decodeMessage(answerQuery(zone, q0, DOH).body!).id, 0);
  });
});
