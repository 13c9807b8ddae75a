/**
 * The ClientHello classifier with ECH: decrypt with the keyring, then route on
 * the inner hello's SNI/ALPN exactly as on a plaintext hello. A hello that
 * cannot be decrypted (GREASE, a stale or unknown key) routes on the outer
 * hello (RFC 9849 §7.1); a hello whose inner is malformed throws, and the
 * connection gets the alert the error carries.
 */
import { nodeProvider } from '../crypto/node.js';
import { decryptEch, decryptSecondHello, type KeyLookup } from '../ech/server.js';
import { EchgateError, isEchgateError } from '../errors.js';
import { type ClientHello, routingView } from '../wire/tls/client-hello.js';
import type { Classifier } from './context.js';
import type { Metrics } from './metrics.js';

/**
 * What the key store remembers beyond the keys that decrypt (keys/keyring.ts): config_ids of keys retired
 * recently (their metadata is kept RETIRED_KEEP_MS, a day) or past their grace and not yet swept.
 */
export interface RetiredLookup {
  retired(configId: number): boolean;
}

/**
 * `keys` may also say which config_ids were retired recently (RetiredLookup): a hello naming one comes from a
 * client holding an old ECHConfig (a cached DNS answer), counted `stale`; an id no key ever had is GREASE
 * (RFC 9849 §6.2). Both are rejected and answered with retry_configs alike (§7.1); only the count differs.
 */
export function echClassifier(keys: KeyLookup & Partial<RetiredLookup>, metrics: Metrics, opts: { trialDecrypt: boolean }): Classifier {
  return (hello, s, entrypoint) => {
    if (s.ech?.type !== 'outer') return { sni: s.sni ?? '', alpn: s.alpn, ech: 'none', hello, echOffered: false };
    const series = metrics.connectionSeries(entrypoint);
    const sni = s.sni ?? '';
    let r: ReturnType<typeof decryptEch>;
    try {
      // A plain literal, not `{ ...opts, ech }`: an object spread per hello is a CloneObjectIC call and a
      // copy on every ECH (and every GREASE) hello (docs/benchmarks.md, "Route-only cost, sixth pass").
      // Given the scan's extension, a GREASE hello (no key to try) is answered without decoding the
      // outer hello (Chrome sends GREASE ECH on every connection; "Passthrough cost, seventh pass").
      r = decryptEch(nodeProvider, hello, keys, { trialDecrypt: opts.trialDecrypt, ech: s.ech });
    } catch (e) {
      if (isEchgateError(e)) series.ech('malformed').inc();
      throw e;
    }
    if (r.status === 'accepted') {
      series.ech('accepted').inc();
      const inner = routingView(r.inner);
      const first = r;
      return { sni: inner.sni ?? '', alpn: inner.alpn, ech: 'accepted', hello: r.inner, echOffered: true, decryptSecond: (outer) => decryptSecondHello(first, outer) };
    }
    // An unknown config_id is what GREASE looks like, unless a key that had it was retired recently: a
    // stale ECHConfig (audit s12 gap 4: counted as GREASE before, while the access line said rejected).
    // A config_id whose key fails to open the payload is a wrong key (an id reused) or a damaged hello.
    const result = r.status === 'rejected' && r.reason === 'no_config' ? (keys.retired?.(r.configId) ? 'stale' : 'grease') : 'rejected';
    series.ech(result).inc();
    return { sni, alpn: s.alpn, ech: 'rejected', echReason: result === 'rejected' ? 'decrypt_failed' : result, hello, echOffered: true, publicName: isPublicName(keys, sni) };
  };
}

/** Whether `sni` is the public_name of a loaded key (names compare without case, RFC 4343). */
function isPublicName(keys: KeyLookup, sni: string): boolean {
  if (sni === '') return false;
  const name = sni.toLowerCase();
  return keys.all().some((k) => k.config.publicName.toLowerCase() === name);
}

/**
 * An ECH backend server's classifier (RFC 9849 §7.2, split mode): the
 * client-facing server in front has decrypted the hello, so an inner ECH
 * extension means ECH was accepted and a terminating router must confirm it.
 * An outer extension here means a client reached the backend directly with
 * an encrypted hello it cannot open: illegal_parameter (§7).
 */
export function echBackendClassifier(metrics: Metrics): Classifier {
  return (hello, s, entrypoint) => {
    if (s.ech?.type === 'outer') {
      metrics.ech.inc({ entrypoint, result: 'malformed' });
      throw new EchgateError('ERR_ILLEGAL', 'an ECH backend server received an outer ECH extension', { alert: 'illegal_parameter' });
    }
    if (s.ech?.type !== 'inner') return { sni: s.sni ?? '', alpn: s.alpn, ech: 'none', hello, echOffered: false };
    metrics.ech.inc({ entrypoint, result: 'accepted' });
    // After our HelloRetryRequest the client-facing server forwards the second ClientHelloInner: it must say so too.
    const decryptSecond = (second: ClientHello) => {
      const ech = routingView(second).ech;
      if (ech?.type !== 'inner') {
        throw new EchgateError('ERR_ILLEGAL', 'the second ClientHello lacks the inner ECH extension', { alert: ech ? 'illegal_parameter' : 'missing_extension' });
      }
      return second;
    };
    return { sni: s.sni ?? '', alpn: s.alpn, ech: 'accepted', hello, echOffered: true, decryptSecond };
  };
}
