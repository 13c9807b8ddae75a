/** `echgate inspect --keys DIR`: add the ECH decryption result to the JSON. */
import { nodeProvider } from '../crypto/node.js';
import { decryptEch } from '../ech/server.js';
import { isEchgateError } from '../errors.js';
import { Keyring } from '../keys/keyring.js';
import { decodeClientHelloMessage, summarize } from '../wire/tls/client-hello.js';
import { parseHelloRecords } from '../wire/tls/record.js';
import type { InspectResult } from './inspect.js';

export function addDecryption(result: InspectResult, bytes: Uint8Array, dir: string, trialDecrypt: boolean): void {
  const ring = new Keyring(dir);
  const { problems } = ring.reload();
  for (const p of problems) process.stderr.write(`echgate: skipped ${p.file}: ${p.message}\n`);
  const outer = decodeClientHelloMessage(parseHelloRecords(bytes)!.message);
  const ech = result.ech as Record<string, unknown>;
  try {
    const r = decryptEch(nodeProvider, outer, ring, { trialDecrypt });
    ech.decrypted = r.status === 'accepted';
    if (r.status === 'accepted') {
      const s = summarize(r.inner);
      result.innerSni = s.sni ?? null;
      result.innerAlpn = s.alpn;
      result.innerVersions = s.versions;
      result.innerExtensions = r.inner.extensions.map((e) => e.type);
    } else if (r.status === 'rejected') {
      ech.error = r.reason === 'no_config' ? `no key with config_id ${r.configId} (GREASE or an unknown key)` : `config_id ${r.configId} matched but decryption failed (stale or wrong key)`;
    }
  } catch (e) {
    if (!isEchgateError(e)) throw e;
    ech.decrypted = false;
    ech.error = `${e.code}: ${e.message}${e.alert ? ` (alert ${e.alert})` : ''}`;
  }
}
