/**
 * Tests written against StrykerJS mutants of the TLS codecs (src/wire/tls,
 * `npm run mutation -- src/wire/tls`, docs/mutation.md): each bound is checked
 * at its exact value from both sides, so moving a `<` to `<=` or dropping a
 * check makes one of the two cases change its answer. Codec-level only (no
 * engine, no sockets): these run in milliseconds for every mutant.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { concat } from '../src/bytes/util.js';
import { EchgateError } from '../src/errors.js';
import { alertBody, alertFor, alertName, describeAlert, encodeAlertRecord, isClosureAlert, trailingAlert } from '../src/wire/tls/alert.js';
import { type ClientHello, decodeClientHello, decodeClientHelloMessage, encodeClientHello, firstDuplicateType, routingView, summarize } from '../src/wire/tls/client-hello.js';
import { AlertDescription, ContentType, ExtensionType, extensionName, isGrease, MAX_PLAINTEXT } from '../src/wire/tls/constants.js';
import {
  decodeAlpn,
  decodeECHClientHello,
  decodeOfferedPsks,
  decodeOuterExtensions,
  decodeServerName,
  decodeSupportedVersions,
  decodeU16List,
  describeExtension,
  encodeOfferedPsks,
} from '../src/wire/tls/extensions.js';
import { checksumInput, decodeClientESNIInner, decodeESNIKeys, decodeServerEncryptedSNI, ESNI_NONCE_LENGTH, encodeClientESNIInner, encodeESNIContents, encodeESNIKeys, encodeServerEncryptedSNI } from '../src/wire/tls/esni.js';
import { ByteQueue } from '../src/wire/tls/byte-queue.js';
import { encodeHandshake } from '../src/wire/tls/handshake.js';
import { certificateVerifyContent, serverHelloExtensions, serverHelloRecord } from '../src/wire/tls/server-messages.js';
import { ClientHelloAssembler, frameHandshake, MAX_CIPHERTEXT, RecordReader, sniffTls } from '../src/wire/tls/record.js';

/** The alert a decode refuses with, or 'accepted'. Anything but an EchgateError fails the test. */
function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof EchgateError, String(e));
    return e.alert ?? e.code;
  }
  return 'accepted';
}

const u16 = (n: number) => Uint8Array.of(n >> 8, n & 0xff);
/** A vector with a 2-byte length. */
const v16 = (...parts: Uint8Array[]) => {
  const b = concat(...parts);
  return concat(u16(b.length), b);
};
const latin1 = (s: string) => Uint8Array.from(Buffer.from(s, 'latin1'));
const sniEntry = (type: number, name: string | Uint8Array) => {
  const n = typeof name === 'string' ? latin1(name) : name;
  return concat(Uint8Array.of(type), u16(n.length), n);
};
const sniList = (...entries: Uint8Array[]) => v16(...entries);

describe('RFC 6066 §3: server_name, each bound at its value', () => {
  it('host_name (type 0) with a name of type 32 beside it, in either order: both read (type 32 is not bit 0)', () => {
    assert.equal(decodeServerName(sniList(sniEntry(0, 'a.test'), sniEntry(32, 'x'))), 'a.test');
    assert.equal(decodeServerName(sniList(sniEntry(32, 'x'), sniEntry(0, 'a.test'))), 'a.test');
    assert.equal(decodeServerName(sniList(sniEntry(31, 'x'), sniEntry(0, 'a.test'))), 'a.test');
  });

  it('printable ASCII is 0x21..0x7e: "!" and "~" are read, 0x20 and 0x7f are illegal_parameter', () => {
    assert.equal(decodeServerName(sniList(sniEntry(0, '!a~'))), '!a~');
    assert.equal(codeOf(() => decodeServerName(sniList(sniEntry(0, 'a\x20')))), 'illegal_parameter');
    assert.equal(codeOf(() => decodeServerName(sniList(sniEntry(0, 'a\x7f')))), 'illegal_parameter');
  });

  it('upper case is A..Z: "A" and "Z" alone are lower-cased, "@" and "[" stay', () => {
    assert.equal(decodeServerName(sniList(sniEntry(0, 'A'))), 'a');
    assert.equal(decodeServerName(sniList(sniEntry(0, 'Z'))), 'z');
    assert.equal(decodeServerName(sniList(sniEntry(0, '@['))), '@[');
  });

  it('an empty list is decode_error; an empty HostName is decode_error; a name without a trailing dot keeps its last byte', () => {
    assert.equal(codeOf(() => decodeServerName(sniList())), 'decode_error');
    assert.equal(codeOf(() => decodeServerName(sniList(sniEntry(0, '')))), 'decode_error');
    assert.equal(decodeServerName(sniList(sniEntry(0, 'ab'))), 'ab');
  });
});

describe('RFC 7301 §3.1: ALPN protocol_name_list holds at least one non-empty name', () => {
  it('a one-byte name (list of 2 bytes) is read; an empty list or a zero-length name is decode_error', () => {
    assert.deepEqual(decodeAlpn(v16(Uint8Array.of(1, 0x68))), ['h']);
    assert.equal(codeOf(() => decodeAlpn(v16())), 'decode_error');
    assert.equal(codeOf(() => decodeAlpn(v16(Uint8Array.of(0)))), 'decode_error');
    assert.equal(codeOf(() => decodeAlpn(concat(v16(Uint8Array.of(1, 0x68)), Uint8Array.of(0)))), 'decode_error');
  });
});

describe('RFC 8446 §4.2.1, §4.2.7; RFC 9849 §5.1: lists of u16 hold at least one value', () => {
  it('one value is read; empty or odd lengths are decode_error, for the 1-byte and 2-byte length forms', () => {
    assert.deepEqual(decodeSupportedVersions(Uint8Array.of(2, 3, 4)), [0x0304]);
    assert.equal(codeOf(() => decodeSupportedVersions(Uint8Array.of(0))), 'decode_error');
    assert.equal(codeOf(() => decodeSupportedVersions(Uint8Array.of(3, 3, 4, 3))), 'decode_error');
    assert.deepEqual(decodeU16List(v16(u16(0x1d)), 'supported_groups'), [0x1d]);
    assert.equal(codeOf(() => decodeU16List(v16(), 'supported_groups')), 'decode_error');
    assert.equal(codeOf(() => decodeU16List(v16(Uint8Array.of(0, 0x1d, 0)), 'supported_groups')), 'decode_error');
    // The 1-byte form must not be read as a 2-byte one: 0x02 0x00 0x1d is one value, not a 512-byte list.
    assert.deepEqual(decodeOuterExtensions(Uint8Array.of(2, 0, 0x0a)), [0x0a]);
    assert.equal(codeOf(() => decodeOuterExtensions(Uint8Array.of(2, 0, 0x0a, 0))), 'decode_error');
  });
});

describe('RFC 9849 §5: the encrypted_client_hello extension body', () => {
  const outer = (payload: Uint8Array, enc = new Uint8Array(32)) => concat(Uint8Array.of(0), u16(1), u16(1), Uint8Array.of(7), v16(enc), v16(payload));
  it('the inner form is exactly one byte; a byte after it is decode_error', () => {
    assert.deepEqual(decodeECHClientHello(Uint8Array.of(1)), { type: 'inner' });
    assert.equal(codeOf(() => decodeECHClientHello(Uint8Array.of(1, 0))), 'decode_error');
  });
  it('a type other than 0 or 1: illegal_parameter', () => {
    assert.equal(codeOf(() => decodeECHClientHello(outer(Uint8Array.of(1)).fill(2, 0, 1))), 'illegal_parameter');
  });
  it('a payload of one byte is read with its offset; an empty payload is decode_error; a byte after the payload is decode_error', () => {
    const e = decodeECHClientHello(outer(Uint8Array.of(0xab)));
    assert.equal(e.type, 'outer');
    if (e.type !== 'outer') return;
    assert.deepEqual([e.kdfId, e.aeadId, e.configId, e.enc.length, e.payload.length, e.payloadOffset], [1, 1, 7, 32, 1, 1 + 2 + 2 + 1 + 2 + 32 + 2]);
    assert.equal(codeOf(() => decodeECHClientHello(outer(new Uint8Array(0)))), 'decode_error');
    assert.equal(codeOf(() => decodeECHClientHello(concat(outer(Uint8Array.of(1)), Uint8Array.of(0)))), 'decode_error');
  });
});

describe('RFC 8446 §4.2.11: pre_shared_key must be the last extension', () => {
  const base: ClientHello = {
    legacyVersion: 0x0303,
    random: new Uint8Array(32),
    sessionId: new Uint8Array(0),
    cipherSuites: [0x1301],
    compressionMethods: Uint8Array.of(0),
    extensions: [{ type: ExtensionType.supported_versions, data: Uint8Array.of(2, 3, 4) }],
  };
  const psk = { type: ExtensionType.pre_shared_key, data: encodeOfferedPsks({ identities: [{ identity: new Uint8Array(5), obfuscatedTicketAge: 1 }], binders: [new Uint8Array(32)] }) };
  it('last: read; second to last: illegal_parameter; alone: read', () => {
    assert.equal(codeOf(() => decodeClientHello(encodeClientHello({ ...base, extensions: [...base.extensions, psk] }))), 'accepted');
    assert.equal(codeOf(() => decodeClientHello(encodeClientHello({ ...base, extensions: [psk, ...base.extensions] }))), 'illegal_parameter');
    assert.equal(codeOf(() => decodeClientHello(encodeClientHello({ ...base, extensions: [psk] }))), 'accepted');
  });
  it('a hello that ends after compression_methods has no extensions (RFC 5246 §7.4.1.2); an empty extensions block is read', () => {
    const noExt = encodeClientHello({ ...base, extensions: [] });
    assert.equal(decodeClientHello(noExt.subarray(0, noExt.length - 2)).extensions.length, 0);
    assert.equal(decodeClientHello(noExt).extensions.length, 0);
  });
});

describe('RFC 8446 §5.1, §5.2: record framing bounds', () => {
  const hello = (len: number) => concat(Uint8Array.of(1, 0, len >> 8, len & 0xff), new Uint8Array(len));
  const rec = (type: number, body: Uint8Array, version = 0x0301) => concat(Uint8Array.of(type, version >> 8, version & 0xff), u16(body.length), body);

  it('a handshake record of exactly 2^14 bytes is read; 2^14 + 1: record_overflow', () => {
    const msg = hello(MAX_PLAINTEXT - 4);
    const a = new ClientHelloAssembler(1 << 20).push(rec(ContentType.handshake, msg));
    assert.equal(a?.message.length, MAX_PLAINTEXT);
    const over = rec(ContentType.handshake, concat(hello(MAX_PLAINTEXT - 4), Uint8Array.of(0)));
    assert.equal(codeOf(() => new ClientHelloAssembler(1 << 20).push(over)), 'record_overflow');
  });

  it('the ClientHello cap is inclusive: a message of exactly maxBytes is read, one byte over is record_overflow', () => {
    const msg = hello(96);
    assert.equal(new ClientHelloAssembler(100).push(rec(ContentType.handshake, msg))?.message.length, 100);
    assert.equal(codeOf(() => new ClientHelloAssembler(99).push(rec(ContentType.handshake, msg))), 'record_overflow');
  });

  it('the buffered-bytes cap: a hello in 1-byte records with exactly maxBytes buffered waits, one byte more is record_overflow', () => {
    // The message (100 bytes) fits the cap of 300; its 100 records of 6 bytes do not.
    const bytes = frameHandshake(hello(96), 1);
    const asm = new ClientHelloAssembler(300);
    assert.equal(asm.push(bytes.subarray(0, 300)), undefined);
    assert.equal(codeOf(() => asm.push(bytes.subarray(300, 301))), 'record_overflow');
  });

  it('a record version whose major is not 3 is not TLS; 3.x of any minor is read', () => {
    const msg = hello(10);
    assert.equal(new ClientHelloAssembler(1000).push(rec(ContentType.handshake, msg, 0x0300))?.recordVersion, 0x0300);
    assert.equal(codeOf(() => new ClientHelloAssembler(1000).push(rec(ContentType.handshake, msg, 0x0201))), 'ERR_NOT_TLS');
    assert.equal(codeOf(() => new ClientHelloAssembler(1000).push(rec(ContentType.handshake, msg, 0x0401))), 'ERR_NOT_TLS');
  });

  it('a non-handshake first record is not TLS (no alert); one after the first record is unexpected_message', () => {
    assert.equal(codeOf(() => new ClientHelloAssembler(1000).push(rec(ContentType.alert, Uint8Array.of(2, 40)))), 'ERR_NOT_TLS');
    const msg = hello(10);
    const two = concat(rec(ContentType.handshake, msg.subarray(0, 5)), rec(ContentType.change_cipher_spec, Uint8Array.of(1)));
    assert.equal(codeOf(() => new ClientHelloAssembler(1000).push(two)), 'unexpected_message');
    // A partial header already names its type: refused before the other four bytes come.
    assert.equal(codeOf(() => new ClientHelloAssembler(1000).push(concat(rec(ContentType.handshake, msg.subarray(0, 5)), Uint8Array.of(ContentType.alert)))), 'unexpected_message');
  });

  it('the hello is complete at the end of the record that finishes it, with the records counted and the bytes consumed', () => {
    const msg = hello(10);
    const bytes = concat(rec(ContentType.handshake, msg.subarray(0, 4)), rec(ContentType.handshake, msg.subarray(4)), Uint8Array.of(23, 3, 3));
    const a = new ClientHelloAssembler(1000).push(bytes)!;
    assert.deepEqual([a.records, a.consumed, a.message.length], [2, bytes.length - 3, 14]);
    assert.deepEqual(a.message, msg);
  });

  it('the record count cap is inclusive: a hello in exactly maxRecords records is read, in one more: unexpected_message', () => {
    const msg = hello(10);
    const inRecords = (n: number) => concat(...Array.from({ length: n - 1 }, (_, i) => rec(ContentType.handshake, msg.subarray(i, i + 1))), rec(ContentType.handshake, msg.subarray(n - 1)));
    assert.equal(new ClientHelloAssembler(1000, 3).push(inRecords(3))?.records, 3);
    assert.equal(codeOf(() => new ClientHelloAssembler(1000, 3).push(inRecords(4))), 'unexpected_message');
  });

  it('what the assembler holds: bytes() and buffered are the bytes pushed so far, across pushes', () => {
    const whole = rec(ContentType.handshake, hello(10));
    const asm = new ClientHelloAssembler(1000);
    assert.equal(asm.push(whole.subarray(0, 7)), undefined);
    assert.equal(asm.push(whole.subarray(7, 9)), undefined);
    assert.equal(asm.buffered, 9);
    assert.deepEqual(asm.bytes(), whole.subarray(0, 9));
  });

  it('RFC 8446 §4: a first handshake message that is not a ClientHello: unexpected_message', () => {
    assert.equal(codeOf(() => decodeClientHelloMessage(Uint8Array.of(2, 0, 0, 0))), 'unexpected_message');
  });

  it('RecordReader: a record of exactly 2^14 + 256 bytes is handed out; one byte more is record_overflow from the header alone', () => {
    const r = new RecordReader();
    r.push(concat(Uint8Array.of(23, 3, 3), u16(MAX_CIPHERTEXT), new Uint8Array(MAX_CIPHERTEXT)));
    assert.equal(r.next()?.fragment.length, MAX_CIPHERTEXT);
    assert.equal(r.buffered, 0);
    const o = new RecordReader();
    o.push(concat(Uint8Array.of(23, 3, 3), u16(MAX_CIPHERTEXT + 1)));
    assert.equal(codeOf(() => o.next()), 'record_overflow');
  });

  it('RecordReader: four bytes are not a header, a header alone waits for its body', () => {
    const r = new RecordReader();
    r.push(Uint8Array.of(23, 3, 3, 0));
    assert.equal(r.next(), undefined);
    r.push(Uint8Array.of(2, 0xaa));
    assert.equal(r.next(), undefined);
    r.push(Uint8Array.of(0xbb));
    assert.deepEqual(r.next()?.fragment, Uint8Array.of(0xaa, 0xbb));
  });

  it('sniffTls: handshake is TLS; an SSL 2.0 CLIENT-HELLO header needs 3 bytes; other bytes are not a handshake', () => {
    assert.equal(sniffTls(new Uint8Array(0)), 'need_more');
    assert.equal(sniffTls(Uint8Array.of(22)), 'tls');
    assert.equal(sniffTls(Uint8Array.of(0x80, 0x2e)), 'need_more');
    assert.equal(sniffTls(Uint8Array.of(0x80, 0x2e, 1)), 'sslv2_hello');
    assert.equal(sniffTls(Uint8Array.of(0x80, 0x2e, 2)), 'not_handshake');
    assert.equal(sniffTls(Uint8Array.of(0x47, 0x45, 0x54)), 'not_handshake');
  });

  it('sniffTls: only a first byte with the high bit set can start an SSL 2.0 header; any other non-handshake byte is refused at once', () => {
    // RFC 5246 App. E.2: the 2-byte SSLv2 record header has the high bit set; "G" (0x47) cannot start one.
    assert.equal(sniffTls(Uint8Array.of(0x47)), 'not_handshake');
    assert.equal(sniffTls(Uint8Array.of(0x01, 0x00, 0x01)), 'not_handshake');
  });
});

describe('RFC 8446 §6: alert bodies and closure alerts', () => {
  it('close_notify and user_canceled are level 1 (warning), every error alert level 2 (fatal)', () => {
    assert.deepEqual(alertBody('close_notify'), Uint8Array.of(1, 0));
    assert.deepEqual(alertBody('user_canceled'), Uint8Array.of(1, AlertDescription.user_canceled));
    assert.deepEqual(alertBody('decode_error'), Uint8Array.of(2, AlertDescription.decode_error));
  });
  it('§6.1: only close_notify and user_canceled are closure alerts', () => {
    assert.equal(isClosureAlert(AlertDescription.close_notify), true);
    assert.equal(isClosureAlert(AlertDescription.user_canceled), true);
    assert.equal(isClosureAlert(AlertDescription.unexpected_message), false);
    assert.equal(isClosureAlert(255), false);
  });
  it('§6.2: an error names its alert, else its family does, else internal_error', () => {
    assert.equal(alertFor(new EchgateError('ERR_DECODE', 'x', { alert: 'record_overflow' })), 'record_overflow');
    assert.equal(alertFor(new EchgateError('ERR_TRAILING', 'x')), 'decode_error');
    assert.equal(alertFor(new EchgateError('ERR_ESNI', 'x')), 'illegal_parameter');
    assert.equal(alertFor(new EchgateError('ERR_PEEK_TOO_LARGE', 'x')), 'record_overflow');
    assert.equal(alertFor(new EchgateError('ERR_LIMIT', 'x')), 'internal_error');
    assert.equal(alertFor(new Error('x')), 'internal_error');
    // JavaScript can throw anything: a thrown null or string is internal_error too, not a crash.
    assert.equal(alertFor(null), 'internal_error');
    assert.equal(alertFor('x'), 'internal_error');
  });
});

describe('RFC 8446 §6: alert numbers read back (alertName, describeAlert, trailingAlert)', () => {
  it('alertName: the §6 name of a known number, undefined for one no RFC we implement names', () => {
    assert.equal(alertName(0), 'close_notify');
    assert.equal(alertName(112), 'unrecognized_name');
    assert.equal(alertName(AlertDescription.decode_error), 'decode_error');
    assert.equal(alertName(255), undefined);
  });
  it('describeAlert: "112 (unrecognized_name)"; a number without a name, or none, as it is', () => {
    assert.equal(describeAlert(112), '112 (unrecognized_name)');
    assert.equal(describeAlert(0), '0 (close_notify)');
    assert.equal(describeAlert(255), '255');
    assert.equal(describeAlert(undefined), 'undefined');
  });
  it('trailingAlert: exactly one 7-byte plaintext alert record is named; 6 bytes are not a record', () => {
    const rec = encodeAlertRecord('handshake_failure');
    assert.equal(rec.length, 7);
    assert.equal(trailingAlert(rec), 'handshake_failure');
    assert.equal(trailingAlert(rec.subarray(1)), undefined);
    // The name is read from the last byte, not another one.
    assert.equal(trailingAlert(concat(Uint8Array.of(0, 0, 0), encodeAlertRecord('close_notify'))), 'close_notify');
  });
  it('trailingAlert: each header byte is checked (type 21, version major 3, length 0x0002)', () => {
    const good = () => Uint8Array.from(encodeAlertRecord('decode_error'));
    const bad = (at: number, v: number) => {
      const b = good();
      b[at] = v;
      return trailingAlert(b);
    };
    assert.equal(bad(0, 22), undefined); // content type handshake, not alert
    assert.equal(bad(1, 2), undefined); // version major 2
    assert.equal(bad(3, 1), undefined); // length 0x0102
    assert.equal(bad(4, 3), undefined); // length 3
    assert.equal(bad(2, 1), 'decode_error'); // the minor version is not checked (0x0301 records are TLS)
    // Preceded by other records, only the last one counts; the same bytes offset by one are not an alert.
    assert.equal(trailingAlert(concat(good(), Uint8Array.of(0))), undefined);
  });
});

describe('RFC 8446 §4.2.11: OfferedPsks, each bound at its value', () => {
  const psk = (ids: Uint8Array, binders: Uint8Array) => concat(v16(ids), v16(binders));
  const identity = (n: number) => concat(u16(n), new Uint8Array(n), Uint8Array.of(0, 0, 0, 1));
  const binder = (n: number) => concat(Uint8Array.of(n), new Uint8Array(n));
  it('one identity of one byte (7 bytes) and one 32-byte binder (33 bytes) are read', () => {
    const p = decodeOfferedPsks(psk(identity(1), binder(32)));
    assert.equal(p.identities.length, 1);
    assert.equal(p.identities[0]!.identity.length, 1);
    assert.equal(p.identities[0]!.obfuscatedTicketAge, 1);
    assert.deepEqual(p.binders.map((b) => b.length), [32]);
  });
  it('two identities with two binders are read', () => {
    const p = decodeOfferedPsks(psk(concat(identity(1), identity(3)), concat(binder(32), binder(48))));
    assert.deepEqual([p.identities.length, p.binders.length], [2, 2]);
  });
  it('a binders block of 32 bytes (a 31-byte binder) is decode_error; so is an identity block of 6 bytes', () => {
    assert.equal(codeOf(() => decodeOfferedPsks(psk(identity(1), binder(31)))), 'decode_error');
    assert.equal(codeOf(() => decodeOfferedPsks(psk(identity(0), binder(32)))), 'decode_error');
  });
  it('an empty identities block or an empty binders block is decode_error (not a count mismatch)', () => {
    assert.equal(codeOf(() => decodeOfferedPsks(psk(new Uint8Array(0), binder(32)))), 'decode_error');
    assert.equal(codeOf(() => decodeOfferedPsks(psk(identity(1), new Uint8Array(0)))), 'decode_error');
  });
  it('a binder count other than the identity count is illegal_parameter; a byte after the binders is decode_error', () => {
    assert.equal(codeOf(() => decodeOfferedPsks(psk(concat(identity(1), identity(1)), binder(32)))), 'illegal_parameter');
    assert.equal(codeOf(() => decodeOfferedPsks(psk(identity(1), concat(binder(32), binder(32))))), 'illegal_parameter');
    assert.equal(codeOf(() => decodeOfferedPsks(concat(psk(identity(1), binder(32)), Uint8Array.of(0)))), 'decode_error');
  });
});

describe('draft-ietf-tls-esni-02 §4, §5: ESNIKeys extensions and ServerEncryptedSNI', () => {
  const contents = (extensions: { type: number; data: Uint8Array }[]) => ({
    keys: [{ group: 0x001d, keyExchange: new Uint8Array(32).fill(1) }],
    cipherSuites: [0x1301],
    paddedLength: 260,
    notBefore: 1,
    notAfter: 2,
    extensions,
  });
  it('two extensions of different types are read; the same type twice is illegal_parameter', () => {
    const k = decodeESNIKeys(encodeESNIKeys(contents([{ type: 1, data: Uint8Array.of(9) }, { type: 2, data: new Uint8Array(0) }])));
    assert.deepEqual(k.extensions.map((e) => [e.type, e.data.length]), [[1, 1], [2, 0]]);
    assert.equal(codeOf(() => decodeESNIKeys(encodeESNIKeys(contents([{ type: 1, data: new Uint8Array(0) }, { type: 1, data: new Uint8Array(0) }])))), 'illegal_parameter');
  });
  it('the ServerEncryptedSNI nonce is exactly 16 bytes to encode', () => {
    assert.equal(encodeServerEncryptedSNI(new Uint8Array(ESNI_NONCE_LENGTH).fill(3)).length, 16);
    assert.equal(codeOf(() => encodeServerEncryptedSNI(new Uint8Array(15))), 'ERR_ENCODE');
    assert.equal(codeOf(() => encodeServerEncryptedSNI(new Uint8Array(17))), 'ERR_ENCODE');
  });
});

describe('routing view: a ClientHello with encrypted_server_name is flagged ESNI', () => {
  const base: ClientHello = {
    legacyVersion: 0x0303,
    random: new Uint8Array(32),
    sessionId: new Uint8Array(0),
    cipherSuites: [0x1301],
    compressionMethods: Uint8Array.of(0),
    extensions: [{ type: ExtensionType.supported_versions, data: Uint8Array.of(2, 3, 4) }],
  };
  it('with the extension: esni true; without: false', () => {
    assert.equal(routingView(base).esni, false);
    assert.equal(routingView({ ...base, extensions: [...base.extensions, { type: ExtensionType.encrypted_server_name, data: Uint8Array.of(0) }] }).esni, true);
  });
});

describe('describeExtension (the fuzz targets\' decoder dispatch): each type goes to its own decoder', () => {
  const ech = concat(Uint8Array.of(0), u16(1), u16(1), Uint8Array.of(7), v16(new Uint8Array(32)), v16(Uint8Array.of(1, 2, 3)));
  const psk = concat(v16(concat(u16(1), Uint8Array.of(9), Uint8Array.of(0, 0, 0, 1))), v16(concat(Uint8Array.of(32), new Uint8Array(32))));
  it('every known type decoded, an unknown one by length', () => {
    assert.equal(describeExtension(ExtensionType.server_name, sniList(sniEntry(0, 'a.test'))), 'a.test');
    assert.deepEqual(describeExtension(ExtensionType.application_layer_protocol_negotiation, v16(Uint8Array.of(2, 0x68, 0x32))), ['h2']);
    assert.deepEqual(describeExtension(ExtensionType.supported_versions, Uint8Array.of(2, 3, 4)), [0x0304]);
    assert.deepEqual(describeExtension(ExtensionType.key_share, v16(u16(0x1d), v16(new Uint8Array(32)))), [{ group: 0x1d, length: 32 }]);
    assert.deepEqual(describeExtension(ExtensionType.signature_algorithms, v16(u16(0x0403))), [0x0403]);
    assert.deepEqual(describeExtension(ExtensionType.signature_algorithms_cert, v16(u16(0x0804))), [0x0804]);
    assert.deepEqual(describeExtension(ExtensionType.supported_groups, v16(u16(0x17))), [0x17]);
    assert.deepEqual(describeExtension(ExtensionType.psk_key_exchange_modes, Uint8Array.of(1, 1)), [1]);
    assert.deepEqual(describeExtension(ExtensionType.pre_shared_key, psk), { identities: 1 });
    assert.deepEqual(describeExtension(ExtensionType.encrypted_client_hello, Uint8Array.of(1)), { type: 'inner' });
    assert.deepEqual(describeExtension(ExtensionType.encrypted_client_hello, ech), { type: 'outer', kdfId: 1, aeadId: 1, configId: 7, encLength: 32, payloadLength: 3 });
    assert.deepEqual(describeExtension(ExtensionType.ech_outer_extensions, Uint8Array.of(2, 0, 0x0a)), [0x0a]);
    assert.deepEqual(describeExtension(0x7777, Uint8Array.of(1, 2)), { length: 2 });
  });
  it('a bad body is the decoder\'s typed error, not a value', () => {
    assert.equal(codeOf(() => describeExtension(ExtensionType.server_name, sniList())), 'decode_error');
    assert.equal(codeOf(() => describeExtension(ExtensionType.pre_shared_key, concat(psk, Uint8Array.of(0)))), 'decode_error');
  });
});

describe('RFC 8446 §5.1: the record byte queue (ByteQueue) under RecordReader and HandshakeBuffer', () => {
  const parts = (q: ByteQueue) => (q as unknown as { parts: Uint8Array[] }).parts;

  it('bytes that lie in one chunk come out as a view of it, also after an offset and when they end the chunk', () => {
    const q = new ByteQueue();
    const c = Uint8Array.of(1, 2, 3, 4, 5);
    q.push(c);
    const a = q.take(2);
    assert.equal(a.buffer, c.buffer);
    const b = q.take(3);
    assert.deepEqual([...b], [3, 4, 5]);
    assert.equal(b.buffer, c.buffer, 'the rest of the chunk, exactly, is still a view');
    assert.equal(q.length, 0);
  });

  it('bytes across chunks after an offset come out in order, with the last chunk holding more than is asked', () => {
    const q = new ByteQueue();
    q.push(Uint8Array.of(1, 2, 3));
    q.push(Uint8Array.of(4));
    q.push(Uint8Array.of(5, 6, 7, 8));
    assert.deepEqual([...q.take(2)], [1, 2]);
    assert.deepEqual([...q.take(4)], [3, 4, 5, 6]);
    assert.equal(q.length, 2);
    assert.deepEqual([q.at(0), q.at(1)], [7, 8]);
    assert.deepEqual([...q.take(2)], [7, 8]);
  });

  it('take(0) and pushes of nothing: an empty queue gives an empty array and stays empty', () => {
    const q = new ByteQueue();
    assert.equal(q.take(0).length, 0);
    q.push(new Uint8Array(0));
    assert.equal(q.length, 0);
    assert.equal(q.take(0).length, 0);
  });

  it('at() or take() past the end is a RangeError, not a wrong byte', () => {
    const q = new ByteQueue();
    q.push(Uint8Array.of(9, 8));
    assert.throws(() => q.at(2), RangeError);
    assert.throws(() => q.take(3), RangeError);
    assert.equal(q.length, 2);
    assert.deepEqual([...q.take(2)], [9, 8]);
  });

  it('a queue that is never empty does not keep every chunk it was given (taken chunks are dropped)', () => {
    const q = new ByteQueue();
    q.push(Uint8Array.of(0, 0));
    for (let i = 1; i <= 1000; i++) {
      q.push(Uint8Array.of(i & 0xff, i >> 8));
      const t = q.take(2);
      assert.equal(((t[0]! | (t[1]! << 8)) + 1) & 0xffff, i);
    }
    assert.equal(q.length, 2);
    assert.ok(parts(q).length <= 130, `${parts(q).length} chunks held for 2 bytes`);
    q.take(2);
    assert.equal(parts(q).length, 0);
  });
});

describe('RFC 8446 §4.1.2: ClientHello encode bounds and round trips', () => {
  const base = (): ClientHello => ({
    legacyVersion: 0x0303,
    random: new Uint8Array(32).fill(7),
    sessionId: new Uint8Array(32),
    cipherSuites: [0x1301],
    compressionMethods: Uint8Array.of(0),
    extensions: [{ type: ExtensionType.server_name, data: sniList(sniEntry(0, 'a.test')) }],
  });

  it('legacy_session_id: 32 bytes encode and decode; 33 are refused both ways (ERR_ENCODE, decode_error)', () => {
    const ok = encodeClientHello(base());
    assert.equal(decodeClientHello(ok).sessionId.length, 32);
    assert.equal(codeOf(() => encodeClientHello({ ...base(), sessionId: new Uint8Array(33) })), 'ERR_ENCODE');
    // The same hello with a 33-byte session id, written by hand: the vector's length byte says 33.
    const long = concat(ok.subarray(0, 34), Uint8Array.of(33), new Uint8Array(33), ok.subarray(67));
    assert.equal(codeOf(() => decodeClientHello(long)), 'decode_error');
  });

  it('compression methods: 255 encode, 256 are ERR_ENCODE; random must be exactly 32 bytes', () => {
    assert.equal(codeOf(() => encodeClientHello({ ...base(), compressionMethods: new Uint8Array(255) })), 'accepted');
    assert.equal(codeOf(() => encodeClientHello({ ...base(), compressionMethods: new Uint8Array(256) })), 'ERR_ENCODE');
    assert.equal(codeOf(() => encodeClientHello({ ...base(), random: new Uint8Array(31) })), 'ERR_ENCODE');
    assert.equal(codeOf(() => encodeClientHello({ ...base(), random: new Uint8Array(33) })), 'ERR_ENCODE');
  });

  it('u16 fields: 0 and 0xffff encode; -1, 0x10000 and 1.5 are ERR_ENCODE', () => {
    assert.deepEqual(decodeClientHello(encodeClientHello({ ...base(), cipherSuites: [0, 0xffff] })).cipherSuites, [0, 0xffff]);
    for (const bad of [-1, 0x10000, 1.5]) assert.equal(codeOf(() => encodeClientHello({ ...base(), cipherSuites: [bad] })), 'ERR_ENCODE', String(bad));
  });

  it('a hello without an extensions block re-encodes without one; with an empty block, with it (byte for byte)', () => {
    const noBlock = encodeClientHello(base()).subarray(0, 2 + 32 + 1 + 32 + 2 + 2 + 1 + 1);
    const a = decodeClientHello(noBlock);
    assert.equal(a.extensions.length, 0);
    assert.deepEqual(encodeClientHello(a), noBlock);
    const empty = concat(noBlock, Uint8Array.of(0, 0));
    assert.deepEqual(encodeClientHello(decodeClientHello(empty)), empty);
    // Built in memory (no raw): an empty block is written.
    assert.deepEqual(encodeClientHello({ ...base(), extensions: [] }), empty);
    // Extensions added to a hello decoded without a block are written (the raw bytes no longer describe it).
    const grown = decodeClientHello(encodeClientHello({ ...a, extensions: base().extensions }));
    assert.deepEqual(routingView(grown).sni, 'a.test');
  });

  it('summarize: versions from supported_versions, else legacy_version; key share groups in order; a bad supported_groups is decode_error', () => {
    const hello = (extensions: ClientHello['extensions']) => ({ ...base(), extensions });
    assert.deepEqual(summarize(hello([])).versions, [0x0303]);
    // No ALPN and no key_share: empty lists, not leftovers.
    assert.deepEqual([summarize(hello([])).alpn, summarize(hello([])).keyShareGroups], [[], []]);
    const s = summarize(
      hello([
        { type: ExtensionType.supported_versions, data: Uint8Array.of(4, 3, 4, 3, 3) },
        { type: ExtensionType.key_share, data: v16(u16(0x1d), v16(Uint8Array.of(1)), u16(0x17), v16(Uint8Array.of(2))) },
        { type: ExtensionType.supported_groups, data: v16(u16(0x1d)) },
      ]),
    );
    assert.deepEqual([s.versions, s.keyShareGroups], [[0x0304, 0x0303], [0x1d, 0x17]]);
    assert.equal(codeOf(() => summarize(hello([{ type: ExtensionType.supported_groups, data: Uint8Array.of(0, 1, 0) }]))), 'decode_error');
  });

  it('§4.2: extension types that share a bit or a word are not duplicates, and the table is clear after a duplicate', () => {
    assert.equal(firstDuplicateType([{ type: 0 }, { type: 32 }, { type: 1 }, { type: 31 }]), -1);
    assert.equal(firstDuplicateType([{ type: 5 }, { type: 5 }, { type: 70 }]), 5);
    assert.equal(firstDuplicateType([{ type: 5 }, { type: 70 }]), -1);
    assert.equal(firstDuplicateType([{ type: 0xffff }, { type: 0xffff }]), 0xffff);
    assert.equal(firstDuplicateType([{ type: 0xffff }]), -1);
  });
});

// Sixth session (docs/mutation.md): the ClientHelloAssembler walk (record.ts 242-324) and wire/tls/esni.ts under Stryker.

describe('RFC 8446 §5.1: the ClientHelloAssembler walk over records', () => {
  const rec = (body: Uint8Array, version = 0x0301) => concat(Uint8Array.of(ContentType.handshake, version >> 8, version & 0xff), u16(body.length), body);
  const hello = concat(Uint8Array.of(1, 0, 0, 6), Uint8Array.of(3, 3, 9, 8, 7, 6));

  it('recordVersion is the first record\'s, byte for byte (0x0301 then 0x0303: 0x0301)', () => {
    const r = new ClientHelloAssembler(1000).push(concat(rec(hello.subarray(0, 5), 0x0301), rec(hello.subarray(5), 0x0303)));
    assert.equal(r?.recordVersion, 0x0301);
    assert.equal(r?.records, 2);
    assert.equal(new ClientHelloAssembler(1000).push(rec(hello, 0x0302))?.recordVersion, 0x0302);
  });

  it('whole records only: a record holding the hello and 2 bytes more completes when those 2 bytes arrive', () => {
    const all = rec(concat(hello, Uint8Array.of(0x14, 0)));
    const a = new ClientHelloAssembler(1000);
    assert.equal(a.push(all.subarray(0, 5 + hello.length)), undefined);
    const r = a.push(all.subarray(5 + hello.length));
    assert.equal(r?.consumed, all.length);
    assert.deepEqual(r?.message, hello);
  });

  it('a ClientHello of 0 body bytes (01 00 00 00) is framed (its decoding refuses it later)', () => {
    const r = new ClientHelloAssembler(1000).push(rec(Uint8Array.of(1, 0, 0, 0)));
    assert.deepEqual(r?.message, Uint8Array.of(1, 0, 0, 0));
  });

  it('a handshake header split over two records (2 bytes, then the rest, the body and 2 bytes more): the message is the original bytes', () => {
    // The second fragment is as long as the whole message, so only the header split tells that it is not the message.
    const bytes = concat(rec(hello.subarray(0, 2)), rec(concat(hello.subarray(2), Uint8Array.of(0x14, 0))));
    const r = new ClientHelloAssembler(1000).push(bytes);
    assert.deepEqual(r?.message, hello);
    assert.equal(r?.consumed, bytes.length);
  });
});

describe('draft-ietf-tls-esni-02 §4: ESNIKeys bounds, each at its value', () => {
  const key = (group: number) => ({ group, keyExchange: new Uint8Array(32).fill(group & 0xff) });
  const contents = (o: Partial<Parameters<typeof encodeESNIKeys>[0]> = {}) => ({
    keys: [key(0x001d)],
    cipherSuites: [0x1301],
    paddedLength: 260,
    notBefore: 1,
    notAfter: 2,
    extensions: [] as { type: number; data: Uint8Array }[],
    ...o,
  });
  const enc = (o: Partial<Parameters<typeof encodeESNIKeys>[0]> = {}) => encodeESNIKeys(contents(o));
  /** Replace the keys and cipher_suites vectors (their bodies) of an encoded ESNIKeys. */
  const raw = (keysBody: Uint8Array, suitesBody: Uint8Array) => concat(Uint8Array.of(0xff, 0x01, 0, 0, 0, 0), v16(keysBody), v16(suitesBody), u16(260), new Uint8Array(7), Uint8Array.of(1), new Uint8Array(7), Uint8Array.of(2), u16(0));
  const share = concat(u16(0x001d), v16(new Uint8Array(32).fill(1)));

  it('§4 uint64 not_before/not_after: above 2^32 read exactly; high word 0x1fffff read, 0x200000 (past 2^53) illegal_parameter', () => {
    const big = 0x1fffff * 2 ** 32 + 5;
    assert.equal(decodeESNIKeys(enc({ notBefore: 2 ** 32 + 7, notAfter: big })).notBefore, 2 ** 32 + 7);
    assert.equal(decodeESNIKeys(enc({ notAfter: big })).notAfter, big);
    const b = enc();
    const at = b.length - 2 - 8; // not_after's high word
    b.set(Uint8Array.of(0x00, 0x20, 0x00, 0x00), at);
    assert.equal(codeOf(() => decodeESNIKeys(b)), 'illegal_parameter');
  });

  it('uint64 encoding: 0 and 2^53 - 1 encode; -1, 2^53 and 1.5 are ERR_ENCODE', () => {
    assert.equal(decodeESNIKeys(enc({ notBefore: 0, notAfter: Number.MAX_SAFE_INTEGER })).notAfter, Number.MAX_SAFE_INTEGER);
    for (const v of [-1, 2 ** 53, 1.5]) assert.equal(codeOf(() => enc({ notBefore: v })), 'ERR_ENCODE', String(v));
  });

  it('keys<4..2^16-1>: an empty list is decode_error; two keys of different groups are read in order; the same group twice is illegal_parameter', () => {
    assert.equal(codeOf(() => decodeESNIKeys(raw(new Uint8Array(0), u16(0x1301)))), 'decode_error');
    assert.equal(codeOf(() => decodeESNIKeys(raw(Uint8Array.of(0, 0x1d, 0), u16(0x1301)))), 'decode_error');
    const k = decodeESNIKeys(enc({ keys: [key(0x001d), key(0x0017)] }));
    assert.deepEqual(k.keys.map((x) => [x.group, x.keyExchange.length]), [[0x001d, 32], [0x0017, 32]]);
    assert.equal(codeOf(() => decodeESNIKeys(raw(concat(share, share), u16(0x1301)))), 'illegal_parameter');
  });

  it('cipher_suites<2..2^16-2>: empty or 3 bytes is decode_error; two suites are read', () => {
    assert.equal(codeOf(() => decodeESNIKeys(raw(share, new Uint8Array(0)))), 'decode_error');
    assert.equal(codeOf(() => decodeESNIKeys(raw(share, Uint8Array.of(0x13, 0x01, 0x13)))), 'decode_error');
    assert.deepEqual(decodeESNIKeys(raw(share, concat(u16(0x1301), u16(0x1303)))).cipherSuites, [0x1301, 0x1303]);
  });

  it('encoding: a checksum of 3 or 5 bytes, no key, or no suite is ERR_ENCODE', () => {
    assert.equal(codeOf(() => encodeESNIKeys(contents(), new Uint8Array(3))), 'ERR_ENCODE');
    assert.equal(codeOf(() => encodeESNIKeys(contents(), new Uint8Array(5))), 'ERR_ENCODE');
    assert.deepEqual(encodeESNIKeys(contents(), Uint8Array.of(1, 2, 3, 4)).subarray(2, 6), Uint8Array.of(1, 2, 3, 4));
    assert.equal(codeOf(() => enc({ keys: [] })), 'ERR_ENCODE');
    assert.equal(codeOf(() => enc({ cipherSuites: [] })), 'ERR_ENCODE');
  });

  it('§4: the structure must fit 65535 bytes (the RDATA length): exactly 65535 encodes, 65536 is ERR_ENCODE', () => {
    const base = enc().length; // with no extension
    const fit = 0xffff - base - 4; // one extension: type, length, data
    assert.equal(enc({ extensions: [{ type: 7, data: new Uint8Array(fit) }] }).length, 0xffff);
    assert.equal(codeOf(() => enc({ extensions: [{ type: 7, data: new Uint8Array(fit + 1) }] })), 'ERR_ENCODE');
  });

  it('checksumInput: 6 bytes (version and checksum) are enough, 5 are decode_error; the checksum is zeroed in a copy', () => {
    const b = Uint8Array.of(0xff, 0x01, 1, 2, 3, 4);
    assert.deepEqual(checksumInput(b), Uint8Array.of(0xff, 0x01, 0, 0, 0, 0));
    assert.deepEqual(b, Uint8Array.of(0xff, 0x01, 1, 2, 3, 4));
    assert.equal(codeOf(() => checksumInput(b.subarray(0, 5))), 'decode_error');
  });
});

describe('draft-ietf-tls-esni-02 §5.1, §5.2: ESNIContents and ClientESNIInner bounds', () => {
  const nonce = new Uint8Array(ESNI_NONCE_LENGTH).fill(7);
  it('ESNIContents: a ClientHello.random of 31 or 33 bytes is ERR_ENCODE', () => {
    const ks = { group: 0x001d, keyExchange: new Uint8Array(32) };
    assert.equal(encodeESNIContents(new Uint8Array(32), ks, new Uint8Array(32)).length, 2 + 32 + 2 + 2 + 32 + 32);
    assert.equal(codeOf(() => encodeESNIContents(new Uint8Array(32), ks, new Uint8Array(31))), 'ERR_ENCODE');
    assert.equal(codeOf(() => encodeESNIContents(new Uint8Array(32), ks, new Uint8Array(33))), 'ERR_ENCODE');
  });

  it('ClientESNIInner: a nonce of 15 bytes is ERR_ENCODE; a ServerNameList of exactly padded_length fits', () => {
    assert.equal(codeOf(() => encodeClientESNIInner(nonce.subarray(1), 'a.example', 260)), 'ERR_ENCODE');
    const exact = 2 + 1 + 2 + 'a.example'.length; // list length, name type, name length, name
    const inner = encodeClientESNIInner(nonce, 'a.example', exact);
    assert.equal(inner.length, 16 + exact);
    assert.equal(decodeClientESNIInner(inner, exact).hostName, 'a.example');
    assert.equal(codeOf(() => encodeClientESNIInner(nonce, 'a.example', exact - 1)), 'ERR_ESNI');
  });

  it('§5: a ServerEncryptedSNI of 15 or 17 bytes is decode_error', () => {
    assert.deepEqual(decodeServerEncryptedSNI(nonce), nonce);
    assert.equal(codeOf(() => decodeServerEncryptedSNI(nonce.subarray(1))), 'decode_error');
    assert.equal(codeOf(() => decodeServerEncryptedSNI(concat(nonce, Uint8Array.of(0)))), 'decode_error');
  });

  it('§5.2: a ClientESNIInner one zero byte longer than 16 + padded_length is illegal_parameter', () => {
    const inner = encodeClientESNIInner(nonce, 'a.example', 40);
    assert.equal(decodeClientESNIInner(inner, 40).hostName, 'a.example');
    assert.equal(codeOf(() => decodeClientESNIInner(concat(inner, Uint8Array.of(0)), 40)), 'illegal_parameter');
  });
});

// Found by the 2026-12-03 Stryker run x8 (wire-tls-codec-kfirst; docs/mutation.md, "Scores per folder").
describe('RFC 6066 §3: no two names of one name_type, also for types 32 and up that are not next to each other', () => {
  it('types 40, 50, 40: illegal_parameter; 40, 50, 60 with a host_name: read', () => {
    assert.equal(codeOf(() => decodeServerName(sniList(sniEntry(40, 'x'), sniEntry(50, 'y'), sniEntry(40, 'z')))), 'illegal_parameter');
    assert.equal(decodeServerName(sniList(sniEntry(40, 'x'), sniEntry(50, 'y'), sniEntry(60, 'z'), sniEntry(0, 'a.test'))), 'a.test');
  });
});

describe('RFC 8701 §2: GREASE code points are 0x?A?A with both bytes equal', () => {
  it('isGrease: the sixteen values, and neighbours that are not', () => {
    for (let i = 0; i < 16; i++) assert.ok(isGrease(((i << 4) | 0x0a) * 0x101), `0x${(((i << 4) | 0x0a) * 0x101).toString(16)}`);
    for (const v of [0x0101, 0x0000, 0x1b1b, 0x0a1a, 0x1a0a, 0x0a0b, 0xfafb]) assert.equal(isGrease(v), false, `0x${v.toString(16)}`);
  });
  it('extensionName: a known type by name, GREASE as grease, any other by number', () => {
    assert.equal(extensionName(ExtensionType.server_name), 'server_name');
    assert.equal(extensionName(0x3a3a), 'grease');
    assert.equal(extensionName(0x0101), 'unknown_257');
    assert.equal(extensionName(0x1234), 'unknown_4660');
  });
});

describe('RFC 8446 §4.2.11: pre_shared_key encodes what it decodes', () => {
  it('two identities and two binders round-trip byte for byte', () => {
    const p = {
      identities: [
        { identity: Uint8Array.of(1, 2, 3), obfuscatedTicketAge: 0x01020304 },
        { identity: Uint8Array.of(9), obfuscatedTicketAge: 7 },
      ],
      binders: [new Uint8Array(32).fill(5), new Uint8Array(48).fill(6)],
    };
    const enc = encodeOfferedPsks(p);
    assert.deepEqual(decodeOfferedPsks(enc), p);
    assert.equal(enc.length, 2 + (2 + 3 + 4) + (2 + 1 + 4) + 2 + (1 + 32) + (1 + 48));
  });
});

describe('RFC 8446 §4: a handshake message body is at most 2^24 - 1 bytes (its uint24 length)', () => {
  it('encodeHandshake: 2^24 - 1 bytes framed with that length; 2^24 bytes refused', () => {
    const m = encodeHandshake(1, new Uint8Array(0xffffff));
    assert.deepEqual(m.subarray(0, 4), Uint8Array.of(1, 0xff, 0xff, 0xff));
    assert.equal(codeOf(() => encodeHandshake(1, new Uint8Array(0x1000000))), 'ERR_ENCODE');
  });
});

describe('RFC 8446 §4.4.3: the content a CertificateVerify signs', () => {
  it('64 spaces, the context string, one zero byte, then the transcript hash, for server and client', () => {
    const hash = Uint8Array.from({ length: 32 }, (_, i) => i + 1);
    for (const [server, ctx] of [
      [true, 'TLS 1.3, server CertificateVerify'],
      [false, 'TLS 1.3, client CertificateVerify'],
    ] as const) {
      const expected = concat(new Uint8Array(64).fill(0x20), latin1(ctx), Uint8Array.of(0), hash);
      assert.deepEqual(certificateVerifyContent(hash, server), expected);
    }
  });
});

describe('RFC 8446 §4.1.3, §4.2.8: ServerHello extensions', () => {
  it('with no key share (none to send): supported_versions only; with a group only (HelloRetryRequest): its 2 bytes', () => {
    assert.deepEqual(serverHelloExtensions(0x0304), [{ type: ExtensionType.supported_versions, data: Uint8Array.of(3, 4) }]);
    assert.deepEqual(serverHelloExtensions(0x0304, { group: 0x11ec }), [
      { type: ExtensionType.key_share, data: Uint8Array.of(0x11, 0xec) },
      { type: ExtensionType.supported_versions, data: Uint8Array.of(3, 4) },
    ]);
  });
});

// Ninth session (docs/mutation.md, w9): the ServerHello encoder's guards and our key share (server-messages.ts),
// and the ClientHelloAssembler's buffering (record.ts `push`/`append`). tls13-server-flight checks the encoder
// too, but it is not in wire-tls-codec-kfirst's list; these run in the codec run.

describe('RFC 8446 §4.1.3, §4.2.8: the ServerHello encoders', () => {
  const random = new Uint8Array(32).fill(7);
  const share = new Uint8Array(32).fill(9);

  it('serverHelloRecord: a random of 31 or 33 bytes and a session id echo of 33 bytes are ERR_ENCODE; 32 and 32 are written', () => {
    for (const r of [new Uint8Array(31), new Uint8Array(33)]) {
      assert.equal(codeOf(() => serverHelloRecord(r, new Uint8Array(0), 0x1301, 0x1d, share, 0x0304)), 'ERR_ENCODE');
    }
    assert.equal(codeOf(() => serverHelloRecord(random, new Uint8Array(33), 0x1301, 0x1d, share, 0x0304)), 'ERR_ENCODE');
    const { message } = serverHelloRecord(random, new Uint8Array(32).fill(5), 0x1301, 0x1d, share, 0x0304);
    // type, length, legacy_version, random, then the echo's length byte and its 32 bytes.
    assert.deepEqual([...message.subarray(38, 40)], [32, 5]);
  });

  it('serverHelloExtensions with our share: key_share is KeyShareEntry (group, then the key as a u16 vector)', () => {
    assert.deepEqual(serverHelloExtensions(0x0304, { group: 0x001d, key: share }), [
      { type: ExtensionType.key_share, data: concat(Uint8Array.of(0, 0x1d, 0, 32), share) },
      { type: ExtensionType.supported_versions, data: Uint8Array.of(3, 4) },
    ]);
  });
});

describe('RFC 8446 §5.1: the ClientHelloAssembler holds what it is given', () => {
  const rec = (type: number, body: Uint8Array) => concat(Uint8Array.of(type, 3, 1), u16(body.length), body);
  const hello = (len: number) => concat(Uint8Array.of(1, 0, len >> 8, len & 0xff), new Uint8Array(len).fill(0x42));

  it('after the hello, further bytes are only buffered (§4.2.10: 0-RTT application_data may follow at once): no error, no second hello', () => {
    const h = rec(ContentType.handshake, hello(10));
    const early = rec(ContentType.application_data, Uint8Array.of(1, 2, 3));
    const asm = new ClientHelloAssembler(1000);
    assert.equal(asm.push(h)?.consumed, h.length);
    assert.equal(asm.push(early), undefined);
    assert.equal(asm.push(new Uint8Array(0)), undefined);
    assert.equal(asm.push(h), undefined);
    assert.equal(asm.buffered, 2 * h.length + early.length);
    assert.deepEqual(asm.bytes(), concat(h, early, h));
  });

  it('the first chunk is held, not copied (bytes() is a view of it), and an empty push copies nothing', () => {
    const part = rec(ContentType.handshake, hello(10)).slice(0, 7);
    const asm = new ClientHelloAssembler(1000);
    assert.equal(asm.push(part), undefined);
    assert.equal(asm.bytes().buffer, part.buffer);
    assert.equal(asm.push(new Uint8Array(0)), undefined);
    assert.equal(asm.bytes().buffer, part.buffer);
    assert.deepEqual(asm.bytes(), part);
  });

  it('a hello of 2100 bytes pushed a byte at a time: one buffer of 1024 filled to its last byte, then 2048, then 4096 (O(n) copying)', () => {
    const whole = rec(ContentType.handshake, hello(2100 - 9));
    const asm = new ClientHelloAssembler(4096);
    const at: ArrayBufferLike[] = [];
    let r: ReturnType<ClientHelloAssembler['push']>;
    for (let i = 0; i < whole.length; i++) {
      r = asm.push(whole.subarray(i, i + 1));
      at[i + 1] = asm.bytes().buffer;
    }
    assert.deepEqual(r!.message, whole.subarray(5));
    assert.deepEqual(asm.bytes(), whole);
    assert.equal(at[1], whole.buffer);
    assert.equal(new Set(at.slice(2)).size, 3);
    assert.deepEqual([at[2]!.byteLength, at[1025]!.byteLength, at[2049]!.byteLength], [1024, 2048, 4096]);
    assert.equal(at[1024], at[2]);
    assert.equal(at[2048], at[1025]);
  });
});
