/**
 * The DoH request head, decided before any body is read (RFC 8484 §4.1):
 * dohRequestStep is the pure part of src/dns/doh-server.ts that the
 * doh-request fuzz target feeds; test/doh-server.test.ts sends the same
 * cases over real HTTP/2 connections.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DEFAULT_DOH_LIMITS, type DohRequestHead, dohAnswer, dohRequestStep } from '../src/dns/doh-server.js';
import { Zone } from '../src/dns/zone.js';
import { decodeMessage, encodeQuery, RRType } from '../src/wire/dns/message.js';

const query = encodeQuery('www.example.test', RRType.A, { id: 0x4242 });
const b64 = Buffer.from(query).toString('base64url');
const head = (h: Partial<DohRequestHead>): DohRequestHead => ({ method: 'GET', url: `/dns-query?dns=${b64}`, contentType: undefined, rawHeaders: [], ...h });
const step = (h: Partial<DohRequestHead>, limit = DEFAULT_DOH_LIMITS.maxHeaderListSize) => dohRequestStep(head(h), '/dns-query', limit);

describe('DoH request head (RFC 8484 §4.1)', () => {
  it('§4.1: GET carries the query in `dns`, base64url without padding', () => {
    const s = step({});
    assert.equal(s.kind, 'query');
    assert.deepEqual(s.kind === 'query' && [...s.query], [...query]);
  });

  it('§6: a padded or non-base64url `dns`, or none, is 400', () => {
    assert.deepEqual(step({ url: `/dns-query?dns=${b64}==` }), { kind: 'refuse', status: 400 });
    assert.deepEqual(step({ url: '/dns-query?dns=a+b/' }), { kind: 'refuse', status: 400 });
    assert.deepEqual(step({ url: '/dns-query' }), { kind: 'refuse', status: 400 });
    assert.deepEqual(step({ url: `/dns-query?dns=${'A'.repeat(87_385)}` }), { kind: 'refuse', status: 400 });
  });

  it('another path is 404, a request target that is no URL is 400', () => {
    assert.deepEqual(step({ url: `/other?dns=${b64}` }), { kind: 'refuse', status: 404 });
    assert.deepEqual(step({ url: '//[' }), { kind: 'refuse', status: 400 });
  });

  it('§4.1: methods other than GET and POST are 405; POST needs application/dns-message (else 415)', () => {
    assert.deepEqual(step({ method: 'PUT' }), { kind: 'refuse', status: 405 });
    assert.deepEqual(step({ method: 'POST', url: '/dns-query', contentType: 'text/plain' }), { kind: 'refuse', status: 415 });
    assert.deepEqual(step({ method: 'POST', url: '/dns-query' }), { kind: 'refuse', status: 415 });
    assert.deepEqual(step({ method: 'POST', url: '/dns-query', contentType: 'application/dns-message' }), { kind: 'read-body' });
  });

  it('RFC 9113 §6.5.2: a header list over the limit (names + values + 32 per field) is 431', () => {
    const rawHeaders = ['x-pad', 'a'.repeat(100)];
    assert.equal(step({ rawHeaders }, 137).kind, 'query');
    assert.deepEqual(step({ rawHeaders }, 136), { kind: 'refuse', status: 431 });
  });

  it('§4.2.1: a query gets 200 and a DNS response; bytes that are a response, not a query, get 400', () => {
    const zone = new Zone({ ttl: 30, zone: 'example.test', names: { 'www.example.test': { a: ['192.0.2.1'] } } }, () => undefined);
    const r = dohAnswer(zone, query);
    assert.equal(r.status, 200);
    const m = decodeMessage(r.body!);
    assert.equal(m.id, 0x4242);
    assert.ok(m.flags & 0x8000);
    const asResponse = new Uint8Array(query);
    asResponse[2]! |= 0x80;
    assert.equal(dohAnswer(zone, asResponse).status, 400);
  });
});
