/**
 * ESNI (draft-ietf-tls-esni-02, experimental; docs/esni.md) in front of the
 * ClientHello classifier: a hello with an encrypted_server_name extension,
 * on an entrypoint whose key folder holds ESNI keys, is decrypted here
 * (ech/esni.ts, every check of §5.2) and routed on the decrypted name by the
 * same rules as ECH's inner SNI — it counts as `ech: accepted` for rules,
 * logs and metrics, so the name gets the `(ech)` privacy treatment.
 *
 * A failed check throws the EchgateError with the draft's alert; the
 * connection gets that alert and nothing else is harmed. Without ESNI keys
 * the extension is ignored (§6.1 "Misconfiguration": a server not prepared
 * for ESNI ignores it) and the hello goes to the next classifier unchanged.
 */
import { nodeProvider } from '../crypto/node.js';
import { decryptEsni, type EsniLookup } from '../ech/esni.js';
import { isEchgateError } from '../errors.js';
import { findExtension } from '../wire/tls/client-hello.js';
import { ExtensionType } from '../wire/tls/constants.js';
import type { Classifier } from './context.js';
import type { Metrics } from './metrics.js';

export function withEsni(keys: EsniLookup, next: Classifier, metrics: Metrics): Classifier {
  return (hello, s, entrypoint) => {
    if (!s.esni) return next(hello, s, entrypoint);
    const ext = findExtension(hello, ExtensionType.encrypted_server_name);
    if (!ext || keys.esniKeys().length === 0) return next(hello, s, entrypoint);
    let r: ReturnType<typeof decryptEsni>;
    try {
      r = decryptEsni(nodeProvider, hello, ext, keys);
    } catch (e) {
      if (isEchgateError(e)) metrics.ech.inc({ entrypoint, result: 'esni_malformed' });
      throw e;
    }
    metrics.ech.inc({ entrypoint, result: 'esni_accepted' });
    // §5.2: "Any actual server_name extension is ignored": the decrypted name is the SNI.
    return { sni: r.hostName, alpn: s.alpn, ech: 'accepted', hello, echOffered: false, esni: { nonce: r.nonce } };
  };
}
