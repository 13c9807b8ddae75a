/**
 * proxy/open-set.ts: the listener's open connections as an intrusive list
 * (maxConnections, openConnections(), shutdown's cut all read it). Removing
 * from the head, the middle and the tail keeps the others; removing an entry
 * that is not in the set (a second finish, another listener's) changes nothing.
 */
import assert from 'node:assert/strict';
import type net from 'node:net';
import { describe, it } from 'node:test';
import { type OpenEntry, OpenSet } from '../src/proxy/open-set.js';

const entry = (name: string): OpenEntry => ({ socket: { name } as unknown as net.Socket, openPrev: undefined, openNext: undefined, openIn: undefined, openIp: undefined });
const names = (s: OpenSet) => s.sockets().map((x) => (x as unknown as { name: string }).name);

describe('OpenSet', () => {
  it('adds, removes from any position, and counts', () => {
    const s = new OpenSet();
    const [a, b, c, d] = ['a', 'b', 'c', 'd'].map(entry) as [OpenEntry, OpenEntry, OpenEntry, OpenEntry];
    for (const e of [a, b, c, d]) s.add(e);
    assert.equal(s.size, 4);
    assert.deepEqual(names(s).sort(), ['a', 'b', 'c', 'd']);
    s.delete(b);
    assert.deepEqual(names(s).sort(), ['a', 'c', 'd']);
    s.delete(d);
    s.delete(a);
    assert.deepEqual(names(s), ['c']);
    assert.equal(s.size, 1);
    s.delete(c);
    assert.equal(s.size, 0);
    assert.deepEqual([...s], []);
  });

  it('removing twice, or from the wrong set, changes nothing', () => {
    const s = new OpenSet();
    const t = new OpenSet();
    const [a, b] = ['a', 'b'].map(entry) as [OpenEntry, OpenEntry];
    s.add(a);
    s.add(b);
    s.delete(a);
    s.delete(a);
    t.delete(b);
    assert.equal(s.size, 1);
    assert.equal(t.size, 0);
    assert.deepEqual(names(s), ['b']);
    // Iterable like the Set it replaced.
    assert.deepEqual([...s].length, 1);
  });
});
