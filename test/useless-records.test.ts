/**
 * Records that carry nothing, and KeyUpdates, on an established connection
 * (the audit's gaps 5 and 7). RFC 8446 allows empty application data (§5.4),
 * user_canceled warning alerts (§6.1) and KeyUpdates (§4.6.3) without a
 * limit; the engine bounds what costs it work for nothing, as Go's crypto/tls
 * (maxUselessRecords 16), OpenSSL and rustls do, and answers past the bound
 * with unexpected_message (§6). The KeyUpdate bound grows back with time, so
 * a client that rekeys on a user's command without sending data is not cut.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { concat } from '../src/bytes/util.js';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { KEY_UPDATE_BURST, KEY_UPDATE_REFILL_MS, MAX_USELESS_RECORDS, recordLimitChannel } from '../src/tls13/server.js';
import { AlertDescription, ContentType } from '../src/wire/tls/constants.js';
import { sleep, startTerminatingGateway } from './helpers.js';
import { refused, session } from './tls13-craft.js';

const EMPTY = new Uint8Array(0);
const userCanceled = Uint8Array.of(1, AlertDescription.user_canceled);

describe('records without data in a row (RFC 8446 §5.4, §6.1): at most MAX_USELESS_RECORDS', () => {
  it(`${MAX_USELESS_RECORDS} empty application data records are read; the next gets unexpected_message, which the peer reads`, () => {
    const s = session();
    const app = s.connected();
    for (let i = 0; i < MAX_USELESS_RECORDS; i++) {
      const o = s.server.receive(app.data(EMPTY));
      assert.equal(o.error, undefined, `empty record ${i + 1}: ${String(o.error)}`);
      assert.equal(o.closed, false);
    }
    const last = s.server.receive(app.data(EMPTY));
    refused(last, 'unexpected_message', s.client);
    // The access line's reason (docs/configuration.md "Why a TLS connection failed").
    assert.equal((last.error as { reason?: string }).reason, 'useless_records_cap');
  });

  it('a flood of 10^5 empty records in one read: refused at the cap, the rest not read', () => {
    const s = session();
    const app = s.connected();
    const flood = concat(...Array.from({ length: 100_000 }, () => app.data(EMPTY)));
    const t0 = process.hrtime.bigint();
    const o = s.server.receive(flood);
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    refused(o, 'unexpected_message', s.client);
    assert.equal(o.send.length, 1, 'only the alert');
    assert.match(String(o.error), new RegExp(`more than ${MAX_USELESS_RECORDS} records in a row without data`));
    // Not a timing assertion (the machine is shared): only that the read stopped early, far below the 380 ms of before.
    assert.ok(ms < 5000, `${ms} ms`);
  });

  it('padding-only records (content empty, zeros after the type) count as empty', () => {
    const s = session();
    const app = s.connected();
    for (let i = 0; i < MAX_USELESS_RECORDS; i++) assert.equal(s.server.receive(app.seal(ContentType.application_data, EMPTY, 100)).error, undefined);
    refused(s.server.receive(app.seal(ContentType.application_data, EMPTY, 100)), 'unexpected_message');
  });

  it(`${MAX_USELESS_RECORDS} user_canceled warning alerts are read; the next gets unexpected_message`, () => {
    const s = session();
    const app = s.connected();
    for (let i = 0; i < MAX_USELESS_RECORDS; i++) {
      const o = s.server.receive(app.seal(ContentType.alert, userCanceled));
      assert.equal(o.error, undefined, `alert ${i + 1}`);
      assert.equal(o.closed, false);
    }
    refused(s.server.receive(app.seal(ContentType.alert, userCanceled)), 'unexpected_message', s.client);
  });

  it('a flood of 10^4 user_canceled alerts in one read: refused at the cap', () => {
    const s = session();
    const app = s.connected();
    const o = s.server.receive(concat(...Array.from({ length: 10_000 }, () => app.seal(ContentType.alert, userCanceled))));
    refused(o, 'unexpected_message');
    assert.equal(o.send.length, 1);
  });

  it('plaintext user_canceled alerts before the client Finished count too', () => {
    const s = session();
    s.flight();
    const plain = Uint8Array.of(ContentType.alert, 3, 3, 0, 2, ...userCanceled);
    for (let i = 0; i < MAX_USELESS_RECORDS; i++) assert.equal(s.server.receive(plain).error, undefined, `alert ${i + 1}`);
    refused(s.server.receive(plain), 'unexpected_message');
  });

  it('empty records and warning alerts share one count', () => {
    const s = session();
    const app = s.connected();
    for (let i = 0; i < MAX_USELESS_RECORDS; i++) {
      const rec = i % 2 ? app.data(EMPTY) : app.seal(ContentType.alert, userCanceled);
      assert.equal(s.server.receive(rec).error, undefined);
    }
    refused(s.server.receive(app.data(EMPTY)), 'unexpected_message');
  });

  it('a record with data starts the count again: 15 empty records and a user_canceled between data records, 50 rounds, all read', () => {
    const s = session();
    const app = s.connected();
    let got = '';
    for (let round = 0; round < 50; round++) {
      const recs = [...Array.from({ length: 15 }, () => app.data(EMPTY)), app.seal(ContentType.alert, userCanceled), app.data(`${round % 10}`)];
      const o = s.server.receive(concat(...recs));
      assert.equal(o.error, undefined, `round ${round}: ${String(o.error)}`);
      got += Buffer.concat(o.data).toString();
    }
    assert.equal(got.length, 50);
  });
});

describe('echgate:tls-record-limit says which bound failed a connection', () => {
  it('useless_records for the empty-record cap, key_updates for the KeyUpdate one; nothing below them', () => {
    const seen: unknown[] = [];
    const on = (m: unknown) => seen.push(m);
    subscribe(recordLimitChannel.name, on);
    try {
      const a = session();
      const app = a.connected();
      for (let i = 0; i < MAX_USELESS_RECORDS; i++) a.server.receive(app.data(EMPTY));
      assert.deepEqual(seen, []);
      a.server.receive(app.data(EMPTY));
      const b = session();
      b.connected();
      for (let i = 0; i <= KEY_UPDATE_BURST; i++) b.server.receive(b.client.keyUpdate(0));
      assert.deepEqual(seen, [{ limit: 'useless_records' }, { limit: 'key_updates' }]);
    } finally {
      unsubscribe(recordLimitChannel.name, on);
    }
  });
});

describe('KeyUpdate (RFC 8446 §4.6.3): a bound a real client never meets', () => {
  /** A connected session whose server reads the clock `t.now`. */
  const clocked = () => {
    const t = { now: 1_000_000 };
    const s = session({}, { now: () => t.now });
    s.connected();
    return { s, t };
  };
  const ku = (s: ReturnType<typeof session>) => s.server.receive(s.client.keyUpdate(0));

  it('10 KeyUpdates 200 ms apart, no data between them (a user pressing "k"): all accepted', () => {
    const { s, t } = clocked();
    for (let i = 0; i < 10; i++) {
      t.now += 200;
      assert.equal(ku(s).error, undefined, `KeyUpdate ${i + 1}`);
    }
    const back = s.server.receive(concat(...s.client.encrypt(new TextEncoder().encode('still here'))));
    assert.equal(Buffer.concat(back.data).toString(), 'still here');
  });

  it(`a tight flood: ${KEY_UPDATE_BURST} at once are accepted, the next gets unexpected_message`, () => {
    const { s } = clocked();
    for (let i = 0; i < KEY_UPDATE_BURST; i++) assert.equal(ku(s).error, undefined, `KeyUpdate ${i + 1}`);
    refused(ku(s), 'unexpected_message');
  });

  it(`time earns them back: one per ${KEY_UPDATE_REFILL_MS} ms, never more than the burst`, () => {
    // Each case on its own connection: a refusal ends the connection.
    const spent = (pause: number) => {
      const c = clocked();
      for (let i = 0; i < KEY_UPDATE_BURST; i++) assert.equal(ku(c.s).error, undefined);
      c.t.now += pause;
      return c.s;
    };
    refused(ku(spent(KEY_UPDATE_REFILL_MS - 1)), 'unexpected_message');
    const one = spent(KEY_UPDATE_REFILL_MS);
    assert.equal(ku(one).error, undefined, 'one earned');
    refused(ku(one), 'unexpected_message');
    const rested = spent(1000 * KEY_UPDATE_REFILL_MS);
    for (let i = 0; i < KEY_UPDATE_BURST; i++) assert.equal(ku(rested).error, undefined, `after a long pause, ${i + 1}`);
    refused(ku(rested), 'unexpected_message');
  });

  it('a client that rekeys every 10 s for an hour, sending no data: never cut', () => {
    const { s, t } = clocked();
    for (let i = 0; i < 360; i++) {
      t.now += 10_000;
      assert.equal(ku(s).error, undefined, `KeyUpdate ${i + 1}`);
    }
  });

  describe('a real peer: openssl s_client, "k" ten times 200 ms apart, through a terminating gateway', () => {
    let backend: net.Server;
    let g: Awaited<ReturnType<typeof startTerminatingGateway>>;
    before(async () => {
      backend = net.createServer((c) => {
        c.on('error', () => {});
        c.on('data', (d) => c.write(d));
      });
      await new Promise<void>((r) => backend.listen(0, '127.0.0.1', () => r()));
      g = await startTerminatingGateway('ku.example.test', (backend.address() as net.AddressInfo).port);
    });
    after(async () => {
      await g?.close();
      backend?.close();
    });
    it('no alert; data still echoes afterwards', async (t) => {
      const p = spawn('openssl', ['s_client', '-connect', `127.0.0.1:${g.port()}`, '-servername', 'ku.example.test', '-tls1_3', '-msg'], { stdio: ['pipe', 'pipe', 'pipe'] });
      let out = '';
      p.stdout.on('data', (d) => {
        out += d;
      });
      p.stderr.on('data', (d) => {
        out += d;
      });
      p.stdin.on('error', () => {});
      const kill = setTimeout(() => p.kill(), 20_000);
      for (let i = 0; i < 200 && !out.includes('Verify return code'); i++) await sleep(25);
      for (let i = 0; i < 10; i++) {
        p.stdin.write('k\n');
        await sleep(200);
      }
      p.stdin.write('after-keyupdates\n');
      for (let i = 0; i < 200 && !out.includes('after-keyupdates\n') && p.exitCode === null; i++) await sleep(25);
      const echoed = (out.match(/after-keyupdates/g) ?? []).length;
      p.stdin.end();
      p.kill();
      clearTimeout(kill);
      if (!/KeyUpdate/.test(out)) return t.skip('this openssl s_client does not send KeyUpdate on "k"');
      assert.ok((out.match(/^>>> TLS 1\.3, Handshake \[length [0-9a-f]+\], KeyUpdate/gm)?.length ?? 0) >= 2, 'KeyUpdates were sent');
      assert.doesNotMatch(out, /unexpected_message|alert unexpected message/i);
      assert.ok(echoed >= 1, 'the data after the KeyUpdates came back');
    });
  });
});
