/**
 * etcd refusing this instance (TLS verification, client certificate,
 * credentials, RBAC) told apart from etcd being unreachable. No etcd3
 * import here: `fleet status`, `fleet import` and the etcd configuration
 * provider's log (cli/) word their errors with it without loading gRPC.
 */
import type { EtcdStoreConfig } from '../config/store.js';

/**
 * A failure that is etcd (or its TLS layer) refusing this instance, as one
 * clear sentence naming the setting to fix; undefined for an outage (no
 * answer, timeouts: those are retried and reported as the store down).
 * A refusal is never worked around: no retry without TLS, without the client
 * certificate or without credentials (the client has no such fallback, and
 * this code adds none); the instance stays not ready and says why.
 *
 * gRPC reports a TLS failure as UNAVAILABLE with OpenSSL's reason inside the
 * message; etcd's own refusals have their codes (INVALID_ARGUMENT
 * "authentication failed", PERMISSION_DENIED). After a failure the client's
 * circuit breaker answers "circuit breaker is open" for a while: the caller
 * keeps the last real cause (see lastCause in agent.ts).
 */
export function storeRefusal(c: { tls?: EtcdStoreConfig['tls']; auth?: { username: string }; prefix: string }, err: unknown, base = 'ech.store.etcd'): string | undefined {
  const authSetting = base === 'providers.etcd' ? `${base}.username, passwordFile` : `${base}.auth`;
  const m = err instanceof Error ? err.message : String(err);
  const detail = m
    .replace(/\s*Resolution note:[\s\S]*$/, '')
    .replace(/^\d+ [A-Z_]+: /, '')
    .replace(/\s*\(\d{4}-\d\d-\d\dT[^)]*\)\.?\s*$/, '')
    .replace(/\s+/g, ' ')
    .trim();
  const ca = c.tls?.ca ? `${base}.tls.ca (${c.tls.ca})` : `the system CA store (no ${base}.tls.ca)`;
  // OpenSSL's verification errors on the client side: the server's chain does not lead to the configured CA.
  if (/unable to verify the first certificate|self[- ]signed certificate|unable to get (local )?issuer certificate|certificate verify failed|certificate has expired|Hostname\/IP does not match|ERR_TLS_CERT_ALTNAME_INVALID/i.test(m)) {
    return `TLS: the etcd server's certificate does not verify against ${ca}: ${detail}`;
  }
  // The server's alerts (RFC 8446 §6.2 / RFC 5246 §7.2.2): bad_certificate (42), unknown_ca (48), certificate_required (116).
  if (/alert (bad certificate|unknown ca|certificate required)|alert number (42|48|116)\b/i.test(m)) {
    const cert = c.tls?.cert ? `this instance's client certificate (${base}.tls.cert ${c.tls.cert})` : `a client certificate (none configured: ${base}.tls.cert, key)`;
    return `TLS: etcd refused ${cert}: ${detail}`;
  }
  if (/wrong version number|packet length too long|http\/1\.x|unexpected eof while reading/i.test(m)) return `TLS: the endpoint does not speak TLS as configured (https:// to a plain-text etcd, or the reverse): ${detail}`;
  const user = c.auth ? `user ${JSON.stringify(c.auth.username)}` : `no user (${authSetting} not set)`;
  if (/authentication failed|invalid user ID or password/i.test(m)) return `etcd refused the credentials of ${user} (${authSetting}): ${detail}`;
  if (/user name is empty|invalid auth token|user name not found/i.test(m)) return `etcd requires authentication and refused ${user} (${authSetting}): ${detail}`;
  if (/permission denied/i.test(m)) return `etcd denied ${user} access under the prefix ${c.prefix} (its role needs readwrite on the prefix: etcdctl role grant-permission ROLE readwrite --prefix ${c.prefix}): ${detail}`;
  return undefined;
}
