import assert from 'node:assert/strict';
import { it } from 'node:test';
import { pino } from 'pino';
import { LogLimiter } from '../src/observe/log-limit.js';

it('per-connection log lines are rate limited and report what they dropped', () => {
  const lines: any[] = [];
  const log = pino({ level: 'info' }, { write: (s: string) => lines.push(JSON.parse(s)) } as unknown as NodeJS.WritableStream);
  let t = 0;
  const lim = new LogLimiter(10, 5, () => t);
  for (let i = 0; i < 50; i++) lim.log(log, 'info', { i }, 'no router for SNI');
  assert.equal(lines.length, 5);
  t = 1000; // one second later: 10 tokens refilled
  lim.log(log, 'info', { i: 99 }, 'no router for SNI');
  assert.equal(lines.length, 6);
  assert.equal(lines[5].suppressed, 45);
  lim.log(log, 'info', {}, 'another kind');
  assert.equal(lines.length, 7);
});

it('fields given as a function are computed only for a line that is written', () => {
  const lines: any[] = [];
  const log = pino({ level: 'warn' }, { write: (s: string) => lines.push(JSON.parse(s)) } as unknown as NodeJS.WritableStream);
  const lim = new LogLimiter(10, 1, () => 0);
  let calls = 0;
  const fields = () => {
    calls++;
    return { client: '192.0.2.1' };
  };
  lim.log(log, 'info', fields, 'no router for SNI'); // level off: never computed (a getpeername per connection otherwise)
  assert.equal(calls, 0);
  lim.log(log, 'warn', fields, 'no router for SNI');
  lim.log(log, 'warn', fields, 'no router for SNI'); // bucket empty: dropped, not computed
  assert.equal(calls, 1);
  assert.equal(lines.length, 1);
  assert.equal(lines[0].client, '192.0.2.1');
});
