/**
 * storeRefusal (src/fleet/refusal.ts): etcd refusing an instance (TLS, client
 * certificate, credentials, RBAC) told apart from an outage, on the messages
 * the etcd3 client gives with etcd 3.4 (seen in test-e2e/fleet-secure.test.ts).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { storeRefusal } from '../src/fleet/refusal.js';

const cfg = { prefix: 'echgate/', tls: { ca: '/etc/ca.pem', cert: '/etc/c.pem', key: '/etc/c.key' }, auth: { username: 'echgate' } };

describe('storeRefusal: a refusal names the setting, an outage is not a refusal', () => {
  it('the server certificate does not verify against the configured CA', () => {
    const r = storeRefusal(cfg, new Error('14 UNAVAILABLE: No connection established. Last error: Error: unable to verify the first certificate. Resolution note: '));
    assert.equal(r, "TLS: the etcd server's certificate does not verify against ech.store.etcd.tls.ca (/etc/ca.pem): No connection established. Last error: Error: unable to verify the first certificate.");
  });
  it('etcd sent bad_certificate (RFC 8446 §6.2, alert 42) for the client certificate', () => {
    const r = storeRefusal(cfg, new Error('14 UNAVAILABLE: No connection established. Last error: 80:error:0A000412:SSL routines:ssl3_read_bytes:sslv3 alert bad certificate:rec_layer_s3.c:1601:SSL alert number 42\n (2026-12-02T22:11:50.309Z). Resolution note: '));
    assert.match(r!, /^TLS: etcd refused this instance's client certificate \(ech\.store\.etcd\.tls\.cert \/etc\/c\.pem\): .*alert bad certificate/);
    assert.doesNotMatch(r!, /2026-12-02/);
  });
  it('wrong password, no user, permission denied on the prefix', () => {
    assert.match(storeRefusal(cfg, new Error('3 INVALID_ARGUMENT: etcdserver: authentication failed, invalid user ID or password'))!, /^etcd refused the credentials of user "echgate" \(ech\.store\.etcd\.auth\)/);
    assert.match(storeRefusal({ prefix: 'p/' }, new Error('3 INVALID_ARGUMENT: etcdserver: user name is empty'))!, /requires authentication and refused no user \(ech\.store\.etcd\.auth not set\)/);
    assert.match(storeRefusal(cfg, new Error('7 PERMISSION_DENIED: etcdserver: permission denied'))!, /denied user "echgate" access under the prefix echgate\//);
  });
  it('the configuration provider names its own settings', () => {
    assert.match(storeRefusal({ prefix: 'traefik/', auth: { username: 'u' } }, new Error('authentication failed'), 'providers.etcd')!, /\(providers\.etcd\.username, passwordFile\)/);
  });
  it('an outage is not a refusal', () => {
    assert.equal(storeRefusal(cfg, new Error('14 UNAVAILABLE: No connection established. Last error: connect ECONNREFUSED 127.0.0.1:2379')), undefined);
    assert.equal(storeRefusal(cfg, new Error('4 DEADLINE_EXCEEDED: Deadline exceeded')), undefined);
  });
});
