/**
 * Rule parser: text → RuleNode, once, at load time.
 *
 *   expr    := and ('||' and)*
 *   and     := unary ('&&' unary)*
 *   unary   := '!' unary | '(' expr ')' | matcher
 *   matcher := Name '(' string (',' string)* ')'
 *   string  := `...` | "..."
 *
 * Errors carry the 1-based column where parsing stopped.
 */
import { EchgateError } from '../errors.js';
import type { MatcherName, RuleNode } from './ast.js';

const MATCHERS: readonly MatcherName[] = ['HostSNI', 'HostSNIRegexp', 'ALPN', 'ClientIP'];

export class RuleError extends EchgateError {
  readonly column: number;
  constructor(message: string, column: number) {
    super('ERR_RULE', `${message} at column ${column}`);
    this.column = column;
  }
}

export function parseRule(text: string): RuleNode {
  let i = 0;
  const ws = () => {
    while (i < text.length && /\s/.test(text[i]!)) i++;
  };
  const fail = (msg: string, at = i): never => {
    throw new RuleError(msg, at + 1);
  };
  const eat = (tok: string): boolean => {
    ws();
    if (text.startsWith(tok, i)) {
      i += tok.length;
      return true;
    }
    return false;
  };

  const str = (): string => {
    ws();
    const q = text[i];
    if (q !== '`' && q !== '"') return fail('expected a quoted string (`...` or "...")');
    const start = i;
    const end = text.indexOf(q, i + 1);
    if (end < 0) fail('unterminated string', start);
    i = end + 1;
    return text.slice(start + 1, end);
  };

  const matcher = (): RuleNode => {
    ws();
    const pos = i;
    const m = /^[A-Za-z]+/.exec(text.slice(i));
    if (!m) return fail('expected a matcher, "!" or "("');
    const name = m[0];
    if (!(MATCHERS as readonly string[]).includes(name)) {
      return fail(`unknown matcher ${name} (expected one of ${MATCHERS.join(', ')})`, pos);
    }
    i += name.length;
    if (!eat('(')) fail(`expected "(" after ${name}`);
    const args = [str()];
    while (eat(',')) args.push(str());
    if (!eat(')')) fail(`expected "," or ")" in ${name}`);
    return { kind: 'matcher', name: name as MatcherName, args, pos: pos + 1 };
  };

  const unary = (): RuleNode => {
    if (eat('!')) return { kind: 'not', expr: unary() };
    if (eat('(')) {
      const e = or();
      if (!eat(')')) fail('expected ")"');
      return e;
    }
    return matcher();
  };

  const and = (): RuleNode => {
    let left = unary();
    while (eat('&&')) left = { kind: 'and', left, right: unary() };
    return left;
  };

  const or = (): RuleNode => {
    let left = and();
    while (eat('||')) left = { kind: 'or', left, right: and() };
    return left;
  };

  ws();
  if (i >= text.length) fail('empty rule');
  const tree = or();
  ws();
  if (i < text.length) fail(`unexpected "${text[i]}"`);
  return tree;
}
