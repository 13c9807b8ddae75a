/**
 * The bench's added-latency and open-file helpers (bench/latency.ts,
 * bench/util.ts): what `npm run bench` reports as "added" must be the
 * difference of quantiles it says it is, the clock must stop at the
 * backend's first byte (not at secureConnect), samples must rotate, and the
 * open-file limit must fall back to the hard limit it has when it cannot be
 * raised.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import type net from 'node:net';
import { tmpdir } from 'node:os';
import tls from 'node:tls';
import { describe, it } from 'node:test';
import { added, firstByteMs, interleavedLatency, pairedMedian } from '../bench/latency.js';
import { nofileLimits, openFileLimit, perfSamples, quantile, selfSigned } from '../bench/util.js';

describe('bench added latency', () => {
  it('is the difference of quantiles, not a quantile of paired differences', () => {
    const direct = [1, 1, 1, 1, 10];
    const through = [10, 2, 2, 2, 2];
    assert.equal(added(through, direct, 0.5), 1);
    // p99: 10 − 10. A quantile of the paired differences (9, 0, 1, 1, −8) would say 9.
    assert.equal(added(through, direct, 0.99), 0);
    assert.equal(
      quantile(
        through.map((x, i) => x - direct[i]!),
        0.99,
      ),
      9,
    );
    assert.equal(pairedMedian(through, direct), 1);
  });

  it('samples every peer once per step, the order rotated each step', async () => {
    const order: string[] = [];
    const peer = (name: string) => ({
      name,
      sample: async () => {
        order.push(name);
        return 1;
      },
    });
    const out = await interleavedLatency([peer('a'), peer('b'), peer('c')], 3, 1);
    assert.deepEqual(order, ['a', 'b', 'c', 'a', 'b', 'c', 'b', 'c', 'a', 'c', 'a', 'b']);
    assert.deepEqual(Object.fromEntries(Object.entries(out).map(([k, v]) => [k, v.length])), { a: 3, b: 3, c: 3 });
  });

  it("stops the clock at the backend's first byte, not at secureConnect", async () => {
    const dir = mkdtempSync(`${tmpdir()}/bench-latency-`);
    const { cert, key } = selfSigned(dir, 'app.example.test');
    // The server answers 150 ms after the client's byte: a clock stopped at secureConnect reads far less.
    const server = tls.createServer({ cert: readFileSync(cert), key: readFileSync(key) }, (s) => {
      s.on('error', () => s.destroy());
      s.once('data', () => setTimeout(() => s.end('y'), 150));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as net.AddressInfo).port;
    try {
      const ms = await firstByteMs(port, 'app.example.test', tls.createSecureContext({}), true);
      assert.ok(ms >= 150, `${ms} ms`);
      // Without the byte this backend never answers: the sample must fail, not hang or pass.
      const quiet = tls.createServer({ cert: readFileSync(cert), key: readFileSync(key) }, (s) => {
        s.on('error', () => s.destroy());
        s.end();
      });
      await new Promise<void>((r) => quiet.listen(0, '127.0.0.1', r));
      await assert.rejects(firstByteMs((quiet.address() as net.AddressInfo).port, 'app.example.test', tls.createSecureContext({}), true), /closed before the backend's byte/);
      quiet.close();
    } finally {
      server.close();
    }
  });
});

describe('bench open-file limit', () => {
  it('falls back to the hard limit it has when the limit cannot be raised', () => {
    // Above fs.nr_open (at most 2^30 on Linux): prlimit fails even with CAP_SYS_RESOURCE.
    const { limit, wrap } = openFileLimit(2 ** 31);
    assert.equal(limit, nofileLimits().hard);
    assert.deepEqual(wrap('node', ['x.js']), ['node', ['x.js']]);
  });

  it('changes nothing when the hard limit is already enough', () => {
    const { limit, wrap } = openFileLimit(64);
    assert.equal(limit, nofileLimits().hard);
    assert.deepEqual(wrap('node', ['x.js']), ['node', ['x.js']]);
  });
});

describe('bench perf script reader', () => {
  it('yields each sample with its frames, leaf first, and its pid', () => {
    const got: [string, string[], string[]][] = [];
    const r = perfSamples((pid, syms, dsos) => got.push([pid, [...syms], [...dsos]]));
    const text = [
      '   123 ',
      '\t    7f00 Builtins_Foo (/usr/bin/node)',
      '\t    7f01 node::Bar() (/usr/bin/node)',
      '',
      '45',
      '\t    ffff __x64_sys_write ([kernel.kallsyms])',
      '67',
      '\t    1 [unknown] ([unknown])',
      '89',
      '',
      '  90',
      '\t    2 foo (bar)',
    ];
    for (const l of text) r.line(l);
    r.end();
    assert.deepEqual(got, [
      ['123', ['Builtins_Foo', 'node::Bar()'], ['/usr/bin/node', '/usr/bin/node']],
      ['45', ['__x64_sys_write'], ['[kernel.kallsyms]']],
      ['67', ['[unknown]'], ['[unknown]']],
      // The last sample, with no blank line after it: only end() yields it.
      ['90', ['foo'], ['bar']],
    ]);
  });
});
