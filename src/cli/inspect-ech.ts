/** `echgate inspect --keys DIR`: add the ECH decryption result to the JSON. */
import { nodeProvider } from '../crypto/node.js';
import { decryptEch } from '../ech/server.js';
import { decryptEsni, prepareEsniKey } from '../ech/esni.js';
import { loadEsniKeys } from '../keys/esni-store.js';
import { ExtensionType } from '../wire/tls/constants.js';
import { decodeClientEncryptedSNI } from '../wire/tls/esni.js';
import { toHex } from '../bytes/util.js';
import { isEchgateError } from '../errors.js';
import { Keyring } from '../keys/keyring.js';
import { type ClientHello, decodeClientHelloMessage, findExtension, summarize } from '../wire/tls/client-hello.js';
import { parseHelloRecords } from '../wire/tls/record.js';
import type { InspectResult } from './inspect.js';

export function addDecryption(result: InspectResult, bytes: Uint8Array, dir: string, trialDecrypt: boolean): void {
  const ring = new Keyring(dir);
  const { problems } = ring.reload();
  for (const p of problems) process.stderr.write(`echgate: skipped ${p.file}: ${p.message}\n`);
  const outer = decodeClientHelloMessage(parseHelloRecords(bytes)!.message);
  if (result.esni) addEsniDecryption(result, outer, dir);
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

/**
 * ESNI (draft-ietf-tls-esni-02): decrypt the encrypted_server_name extension
 * with every ESNI key of the folder, whatever its validity today (a capture is
 * older than the clock). Adds `esniDetails` with the decrypted name and nonce,
 * or the error and the alert a server would have sent.
 */
function addEsniDecryption(result: InspectResult, hello: ClientHello, dir: string): void {
  const ext = findExtension(hello, ExtensionType.encrypted_server_name)!;
  const details: Record<string, unknown> = {};
  result.esniDetails = details;
  try {
    const ces = decodeClientEncryptedSNI(ext.data);
    Object.assign(details, { suite: ces.suite, group: ces.keyShare.group, recordDigest: toHex(ces.recordDigest), encryptedLength: ces.encryptedSni.length });
    const loaded = loadEsniKeys(dir);
    for (const p of loaded.problems) process.stderr.write(`echgate: skipped ${p.file}: ${p.message}\n`);
    const keys = loaded.keys.map((k) => prepareEsniKey(nodeProvider, k.raw, nodeProvider.x25519Private(k.privateKey)));
    const r = decryptEsni(nodeProvider, hello, ext, { esniKeys: () => keys });
    Object.assign(details, { decrypted: true, key: r.key.id, nonce: toHex(r.nonce) });
    result.innerSni = r.hostName;
  } catch (e) {
    if (!isEchgateError(e)) throw e;
    Object.assign(details, { decrypted: false, error: `${e.code}: ${e.message}${e.alert ? ` (alert ${e.alert})` : ''}` });
  }
}
