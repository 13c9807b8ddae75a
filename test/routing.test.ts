/** Rule language and router ordering, table-driven as Traefik's matcher_test.go. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { EchgateError } from '../src/errors.js';
import type { ConnData } from '../src/routing/ast.js';
import { compileRule } from '../src/routing/compile.js';
import { inRange, parseIp, parseRange } from '../src/bytes/ip.js';
import { parseRule, RuleError } from '../src/routing/parse.js';
import { RoutingTable } from '../src/routing/table.js';

const conn = (p: Partial<ConnData>): ConnData => ({ sni: '', alpn: [], clientIp: '192.0.2.1', tls: true, ech: 'none', ...p });

interface Case {
  desc: string;
  rule: string;
  buildErr?: RegExp;
  conn?: Partial<ConnData>;
  match?: boolean;
}

const cases: Case[] = [
  { desc: 'HostSNI exact', rule: 'HostSNI(`a.example`)', conn: { sni: 'a.example' }, match: true },
  { desc: 'HostSNI other', rule: 'HostSNI(`a.example`)', conn: { sni: 'b.example' }, match: false },
  { desc: 'HostSNI several', rule: 'HostSNI(`a.example`, `b.example`)', conn: { sni: 'b.example' }, match: true },
  { desc: 'HostSNI case-insensitive rule', rule: 'HostSNI(`A.Example`)', conn: { sni: 'a.example' }, match: true },
  { desc: 'HostSNI trailing dot in rule', rule: 'HostSNI(`a.example.`)', conn: { sni: 'a.example' }, match: true },
  { desc: 'HostSNI no SNI', rule: 'HostSNI(`a.example`)', conn: { sni: '' }, match: false },
  { desc: 'HostSNI * matches no SNI', rule: 'HostSNI(`*`)', conn: { sni: '' }, match: true },
  { desc: 'HostSNI * matches any', rule: 'HostSNI(`*`)', conn: { sni: 'x.y' }, match: true },
  { desc: 'HostSNI * with others', rule: 'HostSNI(`*`, `a.example`)', buildErr: /cannot be combined/ },
  { desc: 'HostSNI bad host', rule: 'HostSNI(`a b`)', buildErr: /invalid hostname/ },
  { desc: 'HostSNI wildcard refused', rule: 'HostSNI(`*.example`)', buildErr: /HostSNIRegexp/ },
  { desc: 'double quotes', rule: 'HostSNI("a.example")', conn: { sni: 'a.example' }, match: true },
  { desc: 'regexp', rule: 'HostSNIRegexp(`^api-[a-z]+\\.example\\.test$`)', conn: { sni: 'api-eu.example.test' }, match: true },
  { desc: 'regexp no match', rule: 'HostSNIRegexp(`^api-[a-z]+\\.example\\.test$`)', conn: { sni: 'api-1.example.test' }, match: false },
  { desc: 'regexp no SNI', rule: 'HostSNIRegexp(`.*`)', conn: { sni: '' }, match: false },
  { desc: 'regexp invalid', rule: 'HostSNIRegexp(`(`)', buildErr: /invalid regular expression/ },
  { desc: 'ALPN', rule: 'ALPN(`h2`)', conn: { alpn: ['h2', 'http/1.1'] }, match: true },
  { desc: 'ALPN absent', rule: 'ALPN(`h2`)', conn: { alpn: ['http/1.1'] }, match: false },
  { desc: 'ALPN acme refused', rule: 'ALPN(`acme-tls/1`)', buildErr: /acme-tls/ },
  { desc: 'ClientIP v4 CIDR', rule: 'ClientIP(`10.0.0.0/8`)', conn: { clientIp: '10.2.3.4' }, match: true },
  { desc: 'ClientIP v4 miss', rule: 'ClientIP(`10.0.0.0/8`)', conn: { clientIp: '11.2.3.4' }, match: false },
  { desc: 'ClientIP v6', rule: 'ClientIP(`10.0.0.0/8`, `::1`)', conn: { clientIp: '::1' }, match: true },
  { desc: 'ClientIP v6 CIDR', rule: 'ClientIP(`2001:db8::/32`)', conn: { clientIp: '2001:db8:1::5' }, match: true },
  { desc: 'ClientIP mapped v4', rule: 'ClientIP(`127.0.0.1`)', conn: { clientIp: '::ffff:127.0.0.1' }, match: true },
  { desc: 'ClientIP bad', rule: 'ClientIP(`10.0.0.0/33`)', buildErr: /invalid IP/ },
  { desc: 'and', rule: 'HostSNI(`a.example`) && ALPN(`h2`)', conn: { sni: 'a.example', alpn: ['h2'] }, match: true },
  { desc: 'and fails', rule: 'HostSNI(`a.example`) && ALPN(`h2`)', conn: { sni: 'a.example', alpn: [] }, match: false },
  { desc: 'or', rule: 'HostSNI(`a.example`) || HostSNI(`b.example`)', conn: { sni: 'b.example' }, match: true },
  { desc: 'not', rule: '!ClientIP(`10.0.0.0/8`)', conn: { clientIp: '10.0.0.1' }, match: false },
  { desc: 'precedence: && binds tighter', rule: 'HostSNI(`a.x`) || HostSNI(`b.x`) && ALPN(`h2`)', conn: { sni: 'a.x' }, match: true },
  { desc: 'parentheses', rule: '(HostSNI(`a.x`) || HostSNI(`b.x`)) && ALPN(`h2`)', conn: { sni: 'a.x' }, match: false },
  { desc: 'unknown matcher', rule: 'Host(`a.x`)', buildErr: /unknown matcher Host .* at column 1$/ },
  { desc: 'missing paren', rule: 'HostSNI(`a.x`', buildErr: /expected "," or "\)" in HostSNI at column 14/ },
  { desc: 'dangling operator', rule: 'HostSNI(`a.x`) &&', buildErr: /expected a matcher/ },
  { desc: 'garbage after', rule: 'HostSNI(`a.x`) x', buildErr: /unexpected "x" at column 16/ },
  { desc: 'empty', rule: '   ', buildErr: /empty rule/ },
  { desc: 'unterminated string', rule: 'HostSNI(`a.x)', buildErr: /unterminated string at column 9/ },
];

describe('rules (Traefik TCP matchers)', () => {
  for (const c of cases) {
    it(c.desc, () => {
      if (c.buildErr) {
        assert.throws(() => compileRule(c.rule), (e: RuleError) => e instanceof RuleError && c.buildErr!.test(e.message));
        return;
      }
      assert.equal(compileRule(c.rule).match(conn(c.conn ?? {})), c.match);
    });
  }
  it('random text never throws anything but RuleError', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 60 }), (s) => {
        try {
          compileRule(s);
        } catch (e) {
          assert.ok(e instanceof EchgateError && e.code === 'ERR_RULE', String(e));
        }
      }),
      { numRuns: 2000 },
    );
  });
  it('parses once into a tree', () => {
    assert.deepEqual(parseRule('!ALPN(`h2`)'), { kind: 'not', expr: { kind: 'matcher', name: 'ALPN', args: ['h2'], pos: 2 } });
  });
});

describe('router priority (Traefik)', () => {
  const mk = (specs: { name: string; rule: string; priority?: number; tls?: boolean; requireECH?: boolean }[]) =>
    new RoutingTable(specs.map((s) => ({ ...s, tls: s.tls ?? true, target: s.name })));

  it('longer rule wins by default; catch-all last', () => {
    const t = mk([
      { name: 'all', rule: 'HostSNI(`*`)' },
      { name: 'short', rule: 'HostSNIRegexp(`.*`)' },
      { name: 'long', rule: 'HostSNI(`a.example`) || HostSNI(`zz.example`)' },
    ]);
    assert.deepEqual(t.routes.map((r) => r.name), ['long', 'short', 'all']);
    assert.equal(t.match(conn({ sni: 'a.example' }))?.name, 'long');
    assert.equal(t.match(conn({ sni: 'q.example' }))?.name, 'short');
    assert.equal(t.match(conn({ sni: '' }))?.name, 'all');
  });
  it('explicit priority beats length', () => {
    const t = mk([
      { name: 'p', rule: 'HostSNIRegexp(`.*`)', priority: 1000 },
      { name: 'long', rule: 'HostSNI(`a.example`) || HostSNI(`zz.example`)' },
    ]);
    assert.equal(t.match(conn({ sni: 'a.example' }))?.name, 'p');
  });
  it('non-TLS connections only reach routers without tls', () => {
    const t = mk([
      { name: 'tls', rule: 'HostSNI(`*`)', priority: 10 },
      { name: 'plain', rule: 'HostSNI(`*`)', tls: false },
    ]);
    assert.equal(t.match(conn({ tls: false }))?.name, 'plain');
    assert.equal(t.match(conn({ tls: true }))?.name, 'tls');
  });
  it('requireECH only takes ECH-accepted connections', () => {
    const t = mk([{ name: 'hidden', rule: 'HostSNI(`secret.example.test`)', requireECH: true }]);
    assert.equal(t.match(conn({ sni: 'secret.example.test' })), undefined);
    assert.equal(t.match(conn({ sni: 'secret.example.test', ech: 'rejected' })), undefined);
    assert.equal(t.match(conn({ sni: 'secret.example.test', ech: 'accepted' }))?.name, 'hidden');
  });
  it('immediate only when no router needs a ClientHello', () => {
    assert.equal(mk([{ name: 'db', rule: 'HostSNI(`*`)', tls: false }]).immediate, true);
    assert.equal(mk([{ name: 'db', rule: 'HostSNI(`*`) && ClientIP(`127.0.0.1`)', tls: false }]).immediate, true);
    assert.equal(mk([{ name: 'db', rule: 'HostSNI(`*`)', tls: true }]).immediate, false);
  });
  it('a bad rule names the router and the column', () => {
    assert.throws(() => mk([{ name: 'app', rule: 'HostSNI(`a`) && Bogus(`x`)' }]), /router "app": unknown matcher Bogus.* at column 17/);
  });
});

describe('IP ranges', () => {
  it('v4, v6, mapped, prefixes', () => {
    assert.ok(inRange(parseIp('192.168.1.9')!, parseRange('192.168.0.0/16')!));
    assert.ok(!inRange(parseIp('192.169.1.9')!, parseRange('192.168.0.0/16')!));
    assert.ok(inRange(parseIp('::1')!, parseRange('::1')!));
    assert.ok(inRange(parseIp('fe80::1:2')!, parseRange('fe80::/10')!));
    assert.ok(!inRange(parseIp('::1')!, parseRange('127.0.0.1/8')!));
    assert.ok(inRange(parseIp('::ffff:10.1.2.3')!, parseRange('10.0.0.0/8')!));
    assert.equal(parseIp('1.2.3'), undefined);
    assert.equal(parseIp('1:2:3:4:5:6:7:8:9'), undefined);
    assert.ok(inRange(parseIp('0.0.0.1')!, parseRange('0.0.0.0/0')!));
  });
});
