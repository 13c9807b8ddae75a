/**
 * Tests written against mutants of the ninth session's new code in src/tls13
 * and src/wire/tls that survived its first StrykerJS run (`npm run mutation --
 * ninth-kfirst`, docs/mutation.md, "Ninth session: this session's new code"):
 * the key schedule's paired HMACs (when it pairs, and the limits that keep a
 * pair inside what crypto/sha256.ts can hash), Transcript.addMessage's length
 * limit, and the record AEAD of tls13/record-crypto.ts. Each checks one limit
 * or one computed value against an independent computation, in process.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createRequire, syncBuiltinESMExports } from 'node:module';
import { describe, it } from 'node:test';
import { toHex } from '../src/bytes/util.js';
import { nobleProvider } from '../src/crypto/noble.js';
import { nodeProvider } from '../src/crypto/node.js';
import { JS_HMAC_MAX } from '../src/crypto/sha256.js';
import { isEchgateError } from '../src/errors.js';
import { CIPHER_SUITES, KeySchedule, suiteById, trafficKeys } from '../src/tls13/key-schedule.js';
import { RECORD_OVERHEAD } from '../src/tls13/record-crypto.js';
import { RecordCipher } from '../src/tls13/record-protection.js';
import { Transcript } from '../src/tls13/transcript.js';
import { scanClientHelloMessage } from '../src/wire/tls/client-hello.js';
import { ContentType, HandshakeType, MAX_PLAINTEXT } from '../src/wire/tls/constants.js';
import { encodeHandshake } from '../src/wire/tls/handshake.js';
import { parseHelloRecords } from '../src/wire/tls/record.js';
import { json, vector } from './helpers.js';

/** node:crypto's CommonJS exports (writable; an ESM namespace is not): what syncBuiltinESMExports copies into every ESM import. */
const nodeCrypto = createRequire(import.meta.url)('node:crypto') as typeof import('node:crypto');

const rnd = (n: number) => new Uint8Array(randomBytes(n));

/** Calls of nodeProvider.hmac while `f` runs (the unpaired path makes one per HMAC; a pair makes none). */
function hmacCalls(f: () => void): number {
  const orig = nodeProvider.hmac;
  let n = 0;
  nodeProvider.hmac = (...a) => {
    n++;
    return orig.apply(nodeProvider, a);
  };
  try {
    f();
  } finally {
    nodeProvider.hmac = orig;
  }
  return n;
}

/** "tls13 c hs traffic" as HkdfLabel's prefix (u16 length, vec8 label, u8 context length): 22 bytes; the block counter adds 1. */
const HS_PREFIX = 2 + 1 + 'tls13 c hs traffic'.length + 1;

describe('key schedule: when two HMACs are one pair (tls13/key-schedule.ts pairable, deriveSecretPair)', () => {
  const suite = suiteById(0x1301)!;

  it('SHA-256 traffic keys from a secret of 32 or 64 bytes: one pair, no single HMAC', () => {
    // The pair is the change's point (two pad compressions instead of four); the bytes are checked elsewhere.
    for (const len of [32, 64]) {
      const secret = rnd(len);
      let k: ReturnType<typeof trafficKeys> | undefined;
      assert.equal(
        hmacCalls(() => {
          k = trafficKeys(nodeProvider, suite, secret);
        }),
        0,
        `${len}-byte secret`,
      );
      const ref = trafficKeys(nobleProvider, suite, secret);
      assert.equal(toHex(k!.key), toHex(ref.key));
      assert.equal(toHex(k!.iv), toHex(ref.iv));
    }
  });

  it('a secret over 64 bytes (longer than an HMAC block) is not paired: the keys equal the unpaired path', () => {
    // crypto/sha256.ts keyStates refuses a key over the block (it would have to be hashed first, RFC 2104 §2).
    for (const len of [65, 100]) {
      const secret = rnd(len);
      const a = trafficKeys(nodeProvider, suite, secret);
      const b = trafficKeys(nobleProvider, suite, secret);
      assert.equal(toHex(a.key), toHex(b.key), `${len}-byte secret`);
      assert.equal(toHex(a.iv), toHex(b.iv), `${len}-byte secret`);
    }
  });

  it('c/s hs traffic: paired up to a message of exactly JS_HMAC_MAX bytes, unpaired (and equal to the reference) above it', () => {
    const ecdhe = rnd(32);
    const ref = new KeySchedule(nobleProvider, 'sha256');
    // The prefix, the context and the block counter byte make each HMAC's message.
    const atLimit = JS_HMAC_MAX - HS_PREFIX - 1;
    // Paired (tenth session): the extract under the no-PSK constant's cached pad states and the three
    // HMACs under the handshake secret make no p.hmac call; unpaired: the extract and two single HMACs.
    for (const [ctxLen, calls] of [
      [32, 0],
      [atLimit, 0],
      [atLimit + 1, 3],
      [255, 3],
    ] as const) {
      const ctx = rnd(ctxLen);
      const ours = new KeySchedule(nodeProvider, 'sha256');
      let h: { client: Uint8Array; server: Uint8Array } | undefined;
      assert.equal(
        hmacCalls(() => {
          h = ours.handshake(ecdhe, ctx);
        }),
        calls,
        `${ctxLen}-byte context`,
      );
      const r = ref.handshake(ecdhe, ctx);
      assert.equal(toHex(h!.client), toHex(r.client), `${ctxLen}-byte context`);
      assert.equal(toHex(h!.server), toHex(r.server), `${ctxLen}-byte context`);
    }
  });

  it('c/s ap traffic from a context over the limit: equal to the reference', () => {
    const ecdhe = rnd(32);
    const o2 = new KeySchedule(nodeProvider, 'sha256');
    const r2 = new KeySchedule(nobleProvider, 'sha256');
    const chSh = rnd(32);
    o2.handshake(ecdhe, chSh);
    r2.handshake(ecdhe, chSh);
    const fin = rnd(250);
    const a = o2.application(fin);
    const b = r2.application(fin);
    assert.equal(toHex(a.client), toHex(b.client));
    assert.equal(toHex(a.server), toHex(b.server));
  });
});

describe('tls13/record-crypto.ts sealChunk: the caller\'s buffer and the lent type byte', () => {
  const suite = CIPHER_SUITES[0]!;
  const keys = () => ({ key: new Uint8Array(16).fill(7), iv: new Uint8Array(12).fill(9) });

  it('an `into` of exactly the records\' length is used: the result is a view of it, the records seal() gives', () => {
    const content = rnd(2 * MAX_PLAINTEXT + 3);
    const total = content.length + 3 * RECORD_OVERHEAD;
    const want = new RecordCipher(suite, keys()).sealAll(ContentType.application_data, content);
    assert.equal(want.length, total);
    for (const extra of [0, 1]) {
      const into = new Uint8Array(total + extra);
      const got = new RecordCipher(suite, keys()).sealAll(ContentType.application_data, content, into);
      assert.equal(got.buffer, into.buffer, `into ${extra} byte(s) longer than needed`);
      assert.equal(got.byteOffset, 0);
      assert.deepEqual(Buffer.from(got), Buffer.from(want));
    }
  });

  /**
   * Each cipher.update() input's byte after the record's content, as it was during the call. node:crypto's
   * createCipheriv is wrapped through syncBuiltinESMExports, so record-crypto.ts's import sees the wrapper.
   */
  function duringUpdate(content: Uint8Array, f: () => void): number[] {
    const seen: number[] = [];
    const orig = nodeCrypto.createCipheriv;
    (nodeCrypto as { createCipheriv: unknown }).createCipheriv = (...a: Parameters<typeof orig>) => {
      const c = orig(...a);
      const update = c.update.bind(c) as (d: Uint8Array) => Buffer;
      (c as { update: unknown }).update = (d: Uint8Array) => {
        // Where this input ends inside `content` (inputs that are not views of it: the type byte's own buffer).
        if (d.buffer === content.buffer) {
          const end = d.byteOffset - content.byteOffset + d.length;
          seen.push(end <= content.length ? content[end - 1]! : -1);
        } else seen.push(-2);
        return update(d);
      };
      return c;
    };
    syncBuiltinESMExports();
    try {
      f();
    } finally {
      (nodeCrypto as { createCipheriv: unknown }).createCipheriv = orig;
      syncBuiltinESMExports();
    }
    return seen;
  }

  it('an ArrayBuffer chunk lends the byte after each record but the last (one update per record); a SharedArrayBuffer one is never written', () => {
    const type = ContentType.handshake;
    const n = 2 * MAX_PLAINTEXT + 3;
    for (const shared of [false, true]) {
      const content = shared ? new Uint8Array(new SharedArrayBuffer(n)) : new Uint8Array(n);
      // No byte equal to the type, so a lent byte shows.
      content.fill(0xaa);
      const calls = duringUpdate(content, () => new RecordCipher(suite, keys()).sealAll(type, content));
      // Per record: the last byte the cipher read from the chunk (-2: the type from its own one-byte buffer).
      const want = shared ? [0xaa, -2, 0xaa, -2, 0xaa, -2] : [type, type, 0xaa, -2];
      assert.deepEqual(calls, want, shared ? 'SharedArrayBuffer' : 'ArrayBuffer');
      assert.ok(content.every((b) => b === 0xaa), 'the chunk is as it was');
    }
  });
});

describe('tls13/transcript.ts addMessage: the u24 length (RFC 8446 §4)', () => {
  it('a body of 2^24 bytes is refused (ERR_ENCODE); one of 2^24 - 1 is framed as encodeHandshake frames it', () => {
    const t = new Transcript(nodeProvider, 'sha256');
    assert.throws(
      () => t.addMessage(HandshakeType.client_hello, new Uint8Array(0x1000000)),
      (e: unknown) => isEchgateError(e) && e.code === 'ERR_ENCODE',
    );
    assert.equal(t.snapshot().length, 0, 'nothing was added');
    const body = new Uint8Array(0xffffff).fill(0x5a);
    const ref = new Transcript(nodeProvider, 'sha256');
    t.addMessage(HandshakeType.client_hello, body);
    ref.add(encodeHandshake(HandshakeType.client_hello, body));
    assert.equal(toHex(t.hash()), toHex(ref.hash()));
  });
});

describe('wire/tls/client-hello.ts scanClientHelloMessage: a Buffer comes out as plain Uint8Array views', () => {
  it('hello.raw and the ECH payload of a Buffer input are plain Uint8Arrays over the same memory', () => {
    let ech = 0;
    for (const c of json('captures/manifest.json').captures) {
      const m = parseHelloRecords(vector(`captures/${c.file}`))!.message;
      const input = Buffer.concat([Buffer.from([9, 9, 9]), Buffer.from(m)]).subarray(3);
      const { hello, view } = scanClientHelloMessage(input);
      const views: Uint8Array[] = [hello.raw!];
      if (view.ech?.type === 'outer') {
        views.push(view.ech.enc, view.ech.payload);
        ech++;
      }
      for (const v of views) {
        assert.equal(Object.getPrototypeOf(v), Uint8Array.prototype, `${c.file}: a ${v.constructor.name}, not a plain Uint8Array`);
        assert.equal(v.buffer, input.buffer, `${c.file}: a copy`);
      }
    }
    assert.ok(ech > 0, 'no capture with an outer ECH extension');
  });
});

/**
 * Runs `f` with node:crypto's createCipheriv and createDecipheriv wrapped (through syncBuiltinESMExports,
 * which record-crypto.ts's import sees) so that every update() holds its output's last byte back to the
 * next call and final() gives it: a cipher that buffers, as a block mode would. With `drop`, final() loses
 * that byte instead: a cipher that gives fewer bytes than it got.
 */
function laggingCiphers(drop: boolean, f: () => void): void {
  const enc = nodeCrypto.createCipheriv;
  const dec = nodeCrypto.createDecipheriv;
  const lag = <C extends { update(d: Uint8Array): Buffer; final(): Buffer }>(c: C): C => {
    const update = c.update.bind(c);
    const final = c.final.bind(c);
    let held = Buffer.alloc(0);
    (c as { update: unknown }).update = (d: Uint8Array) => {
      const all = Buffer.concat([held, update(d)]);
      held = all.subarray(all.length - Math.min(1, all.length));
      return all.subarray(0, all.length - held.length);
    };
    (c as { final: unknown }).final = () => {
      const rest = final();
      return drop ? rest : Buffer.concat([held, rest]);
    };
    return c;
  };
  const n = nodeCrypto as { createCipheriv: unknown; createDecipheriv: unknown };
  n.createCipheriv = (...a: Parameters<typeof enc>) => lag(enc(...a));
  n.createDecipheriv = (...a: Parameters<typeof dec>) => lag(dec(...a));
  syncBuiltinESMExports();
  try {
    f();
  } finally {
    n.createCipheriv = enc;
    n.createDecipheriv = dec;
    syncBuiltinESMExports();
  }
}

describe('tls13/record-crypto.ts: a cipher whose output does not come all from update()', () => {
  // AES-GCM and ChaCha20-Poly1305 give every byte from update(); the code takes final()'s bytes too and
  // checks the count, since the record buffer is not zeroed (an unwritten byte would be old memory on the wire).
  for (const suite of CIPHER_SUITES) {
    const keys = () => ({ key: new Uint8Array(suite.keyLen).fill(3), iv: new Uint8Array(12).fill(4) });
    const content = new Uint8Array(2 * MAX_PLAINTEXT + 7).map((_, i) => i * 7);

    it(`${suite.aead}: bytes held back to final() land where update() would have put them (seal, sealAll, open)`, () => {
      const one = new RecordCipher(suite, keys()).seal(ContentType.handshake, content.subarray(0, 100));
      const all = new RecordCipher(suite, keys()).sealAll(ContentType.application_data, content);
      let one2: Uint8Array | undefined;
      let all2: Uint8Array | undefined;
      let opened: { type: number; content: Uint8Array } | undefined;
      laggingCiphers(false, () => {
        one2 = new RecordCipher(suite, keys()).seal(ContentType.handshake, content.subarray(0, 100));
        all2 = new RecordCipher(suite, keys()).sealAll(ContentType.application_data, content);
        opened = new RecordCipher(suite, keys()).open(one.subarray(0, 5), one.subarray(5));
      });
      assert.deepEqual(Buffer.from(one2!), Buffer.from(one));
      assert.deepEqual(Buffer.from(all2!), Buffer.from(all));
      assert.equal(opened!.type, ContentType.handshake);
      assert.deepEqual(Buffer.from(opened!.content), Buffer.from(content.subarray(0, 100)));
    });

    it(`${suite.aead}: a cipher that gives a byte fewer than it got: ERR_ENCODE, no record (seal, sealAll)`, () => {
      const encodeErr = (e: unknown) => isEchgateError(e) && e.code === 'ERR_ENCODE';
      laggingCiphers(true, () => {
        assert.throws(() => new RecordCipher(suite, keys()).seal(ContentType.handshake, content.subarray(0, 100)), encodeErr);
        assert.throws(() => new RecordCipher(suite, keys()).sealAll(ContentType.application_data, content), encodeErr);
        assert.throws(() => new RecordCipher(suite, keys()).sealAll(ContentType.application_data, content.subarray(0, 10)), encodeErr);
      });
    });
  }
});
