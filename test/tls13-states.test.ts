/**
 * The server handshake as typed states (RFC 8446 §4, Appendix A.2): each
 * state holds what its next step needs, and secrets a later state no longer
 * needs are dropped and zeroed (the handshake traffic secrets once the client
 * Finished verifies, §7.1; an application traffic secret once KeyUpdate
 * replaced it, §7.2; everything on close).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import ts from 'typescript';
import type { TlsClient } from '../src/tls13/client.js';
import type { TlsServer } from '../src/tls13/server.js';
import { nodeProvider } from '../src/crypto/node.js';
import { CIPHER_SUITES, trafficKeys } from '../src/tls13/key-schedule.js';
import { ROOT } from './helpers.js';
import { keyUpdate, session } from './tls13-craft.js';

type Inner = { state: Record<string, unknown> & { kind: string } };
const stateOf = (s: TlsServer) => (s as unknown as Inner).state;
const zero = (b: unknown) => b instanceof Uint8Array && b.length > 0 && b.every((x) => x === 0);
const secretsIn = (st: Record<string, unknown>) => Object.keys(st).filter((k) => /Secret$/.test(k));

describe('RFC 8446 §4 server states', () => {
  it('after our flight: expect_finished holds the client handshake secret, the transcript and both application secrets', () => {
    const s = session();
    const st = stateOf(s.server);
    assert.equal(st.kind, 'expect_finished');
    assert.deepEqual(secretsIn(st).sort(), ['clientApSecret', 'clientHsSecret', 'serverApSecret']);
    assert.ok(st.transcript && st.ks);
  });

  it('§7.1: once the client Finished verifies, the handshake secrets are gone and zeroed; traffic keeps only the application secrets', () => {
    const s = session();
    const before = stateOf(s.server);
    const hsSecret = before.clientHsSecret as Uint8Array;
    const ks = before.ks as { handshakeSecret?: Uint8Array };
    const handshakeSecret = ks.handshakeSecret;
    assert.ok(!zero(hsSecret) && handshakeSecret && !zero(handshakeSecret));
    s.connected();
    const st = stateOf(s.server);
    assert.equal(st.kind, 'traffic');
    assert.deepEqual(secretsIn(st).sort(), ['clientApSecret', 'serverApSecret']);
    assert.equal(st.transcript, undefined);
    assert.equal(st.ks, undefined);
    assert.ok(zero(hsSecret), 'client_handshake_traffic_secret zeroed');
    assert.ok(zero(handshakeSecret), 'handshake secret zeroed');
    assert.equal(ks.handshakeSecret, undefined);
  });

  it('once established, the server keeps nothing of the ClientHello: not its legacy_session_id (a view of the hello\'s bytes), not the opener of a second ClientHelloOuter', () => {
    const decryptSecond = () => {
      throw new Error('not called');
    };
    const s = session({}, {});
    const inner = s.server as unknown as { sessionId: Uint8Array; ech: Record<string, unknown> };
    // Appendix D.4: the client offered a legacy session id, and ServerHello echoed it.
    assert.equal(inner.sessionId.length, 32);
    inner.ech = { offered: true, accepted: true, decryptSecond };
    s.connected();
    assert.equal(stateOf(s.server).kind, 'traffic');
    assert.equal(inner.sessionId.length, 0);
    assert.deepEqual(inner.ech, { offered: true, accepted: true });
  });

  it('§7.3: each direction\'s write key and IV are one allocation, and what they were expanded into is zeroed', () => {
    const s = session();
    s.connected();
    const st = stateOf(s.server);
    for (const c of [st.read, st.write] as unknown as { keys: { key: Uint8Array; iv: Uint8Array } }[]) {
      assert.equal(c.keys.key.buffer, c.keys.iv.buffer);
      assert.equal(c.keys.key.byteLength + c.keys.iv.byteLength, c.keys.key.buffer.byteLength);
    }
    const outputs: Uint8Array[] = [];
    const spy = { ...nodeProvider, hmac: (...a: Parameters<typeof nodeProvider.hmac>) => outputs[outputs.push(nodeProvider.hmac(...a)) - 1]! };
    const suite = CIPHER_SUITES[0]!;
    const keys = trafficKeys(spy, suite, new Uint8Array(32).fill(7));
    assert.equal(outputs.length, 2);
    assert.ok(!zero(keys.key) && !zero(keys.iv));
    assert.ok(zero(outputs[0]!.subarray(0, suite.keyLen)) && zero(outputs[1]!.subarray(0, 12)), 'the expand outputs are zeroed once copied');
  });

  it('§7.2: KeyUpdate zeroes the secret it replaces, for each direction it moves', () => {
    const s = session();
    const app = s.connected();
    const st = stateOf(s.server);
    const oldClient = st.clientApSecret as Uint8Array;
    const oldServer = st.serverApSecret as Uint8Array;
    const o = s.server.receive(app.handshake(keyUpdate(1)));
    assert.equal(o.error, undefined);
    assert.ok(zero(oldClient) && zero(oldServer));
    assert.ok(!zero(st.clientApSecret) && !zero(st.serverApSecret));
  });

  it('closing (here: our close_notify) zeroes the traffic secrets and leaves a state with none', () => {
    const s = session();
    s.connected();
    const st = stateOf(s.server);
    const secrets = [st.clientApSecret, st.serverApSecret];
    s.server.alert('close_notify');
    assert.ok(secrets.every(zero));
    assert.deepEqual(stateOf(s.server), { kind: 'closed' });
    assert.equal(s.server.established, false);
  });

  it('a failed handshake (bad Finished) zeroes what expect_finished held', () => {
    const s = session();
    const st = stateOf(s.server);
    const secrets = secretsIn(st).map((k) => st[k]);
    const { fin } = s.flight();
    fin[fin.length - 1]! ^= 1;
    const o = s.server.receive(fin);
    assert.equal(o.alert, 'bad_record_mac');
    assert.ok(secrets.every(zero));
    assert.equal(stateOf(s.server).kind, 'closed');
  });
});

type ClientInner = { state: Record<string, unknown> & { kind: string } };
const clientState = (c: TlsClient) => (c as unknown as ClientInner).state;

describe('RFC 8446 Appendix A.1 client states', () => {
  it('each state holds what exists at that point: hellos before ServerHello, handshake secrets until the server Finished, application secrets after', () => {
    const s = session();
    const wait = clientState(s.client);
    assert.equal(wait.kind, 'wait_sh');
    assert.deepEqual(Object.keys(wait).sort(), ['candidates', 'kind', 'retry']);
    const plain = s.first.send.filter((r) => r[0] !== 23);
    assert.equal(s.client.receive(Buffer.concat(plain)).error, undefined);
    const ee = clientState(s.client);
    assert.equal(ee.kind, 'wait_ee');
    assert.deepEqual(Object.keys(ee).sort(), ['hs', 'kind', 'read', 'result', 'sched', 'suite', 'transcript', 'write']);
    const o = s.client.receive(Buffer.concat(s.first.send.filter((r) => r[0] === 23)));
    assert.ok(o.established, String(o.error));
    const conn = clientState(s.client);
    assert.equal(conn.kind, 'connected');
    assert.deepEqual(Object.keys(conn).sort(), ['app', 'kind', 'read', 'sched', 'suite', 'write', 'writeClosed']);
    // The key schedule no longer holds the handshake secret (§7.1: nothing derives from it after the Finished messages).
    assert.equal((conn.sched as { handshakeSecret?: unknown }).handshakeSecret, undefined);
  });

  it('a failure closes: nothing of the handshake is kept', () => {
    const s = session();
    const o = s.client.receive(Uint8Array.of(23, 3, 3, 0, 1, 0));
    assert.equal(o.alert, 'unexpected_message');
    assert.deepEqual(clientState(s.client), { kind: 'closed' });
  });
});

/**
 * The non-null assertions (`x!`) of a file, by the text they assert on. A
 * `this.field!` is a state field read where the type says it may be absent:
 * with typed states there is none. In client.ts only element accesses
 * (`bytes[i]!`, which noUncheckedIndexedAccess types as possibly undefined)
 * are left, and none of those either: a regression shows here.
 */
function nonNullAssertions(file: string, text = readFileSync(join(ROOT, file), 'utf8')): string[] {
  const src = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true);
  const found: string[] = [];
  const visit = (n: ts.Node) => {
    if (ts.isNonNullExpression(n)) found.push(n.expression.getText(src));
    ts.forEachChild(n, visit);
  };
  visit(src);
  return found;
}

describe('typed states leave no non-null assertions on handshake fields', () => {
  for (const file of ['src/tls13/server.ts', 'src/tls13/client.ts']) {
    it(`${file}: no this.x! assertion`, () => {
      assert.deepEqual(
        nonNullAssertions(file).filter((t) => /^this\./.test(t)),
        [],
      );
    });
  }

  it('src/tls13/client.ts: no non-null assertion at all', () => {
    assert.deepEqual(nonNullAssertions('src/tls13/client.ts'), []);
  });

  it('the counter sees assertions (control: it finds them in a file that has some)', () => {
    const sample = 'class A { private x: number | undefined; f(b: number[]) { return this.x! + b[0]! + (this.x as number); } }';
    assert.deepEqual(nonNullAssertions('sample.ts', sample), ['this.x', 'b[0]']);
  });
});
