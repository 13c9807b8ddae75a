/**
 * The server handshake as typed states (RFC 8446 §4, Appendix A.2): each
 * state holds what its next step needs, and secrets a later state no longer
 * needs are dropped and zeroed (the handshake traffic secrets once the client
 * Finished verifies, §7.1; an application traffic secret once KeyUpdate
 * replaced it, §7.2; everything on close).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { TlsServer } from '../src/tls13/server.js';
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
