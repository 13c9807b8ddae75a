/**
 * RuleNode → predicate over ConnData. All validation happens here, at load
 * time: bad hostnames, bad regexps and bad CIDRs are RuleErrors that point at
 * the matcher's column, so a broken rule never reaches a connection.
 */
import type { ConnData, RuleNode } from './ast.js';
import { inRange, type IpRange, parseIp, parseRange } from '../bytes/ip.js';
import { parseRule, RuleError } from './parse.js';

export type Predicate = (c: ConnData) => boolean;

// RFC 1123 labels; underscores tolerated as Traefik does for service names.
const HOSTNAME = /^(?=.{1,253}$)([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*$/;

export function normalizeHost(h: string): string {
  const l = h.toLowerCase();
  return l.endsWith('.') ? l.slice(0, -1) : l;
}

export function compileNode(n: RuleNode): Predicate {
  switch (n.kind) {
    case 'not': {
      const p = compileNode(n.expr);
      return (c) => !p(c);
    }
    case 'and': {
      const a = compileNode(n.left);
      const b = compileNode(n.right);
      return (c) => a(c) && b(c);
    }
    case 'or': {
      const a = compileNode(n.left);
      const b = compileNode(n.right);
      return (c) => a(c) || b(c);
    }
    case 'matcher':
      return compileMatcher(n);
  }
}

function compileMatcher(n: Extract<RuleNode, { kind: 'matcher' }>): Predicate {
  const bad = (msg: string): never => {
    throw new RuleError(`${n.name}: ${msg}`, n.pos);
  };
  switch (n.name) {
    case 'HostSNI': {
      if (n.args.includes('*')) {
        if (n.args.length > 1) bad('`*` cannot be combined with other names');
        return () => true;
      }
      const names = new Set<string>();
      for (const a of n.args) {
        const h = normalizeHost(a);
        if (!HOSTNAME.test(h)) bad(`invalid hostname "${a}" (use HostSNIRegexp for patterns)`);
        names.add(h);
      }
      if (names.size === 1) {
        const only = [...names][0]!;
        return (c) => c.sni === only;
      }
      return (c) => names.has(c.sni);
    }
    case 'HostSNIRegexp': {
      const res: RegExp[] = [];
      for (const a of n.args) {
        try {
          // Hostnames are case-insensitive; the SNI is already lower-cased.
          res.push(new RegExp(a, 'i'));
        } catch (e) {
          bad(`invalid regular expression "${a}": ${(e as Error).message}`);
        }
      }
      return (c) => c.sni !== '' && res.some((r) => r.test(c.sni));
    }
    case 'ALPN': {
      for (const a of n.args) {
        if (a.length === 0 || a.length > 255) bad('protocol names are 1..255 bytes');
        // Traefik reserves acme-tls/1 for its own TLS-ALPN-01 challenge handling.
        if (a === 'acme-tls/1') bad('acme-tls/1 cannot be matched');
      }
      const want = new Set(n.args);
      return (c) => c.alpn.some((p) => want.has(p));
    }
    case 'ClientIP': {
      const ranges: IpRange[] = [];
      for (const a of n.args) {
        const r = parseRange(a.trim());
        if (!r) bad(`invalid IP or CIDR "${a}"`);
        ranges.push(r!);
      }
      return (c) => {
        const ip = parseIp(c.clientIp);
        return ip !== undefined && ranges.some((r) => inRange(ip, r));
      };
    }
  }
}

export interface CompiledRule {
  text: string;
  tree: RuleNode;
  match: Predicate;
}

export function compileRule(text: string): CompiledRule {
  const tree = parseRule(text);
  return { text, tree, match: compileNode(tree) };
}

/** Does the rule use ALPN() or an SNI matcher other than HostSNI(`*`)? (needs a ClientHello) */
export function needsClientHello(n: RuleNode): boolean {
  switch (n.kind) {
    case 'not':
      return needsClientHello(n.expr);
    case 'and':
    case 'or':
      return needsClientHello(n.left) || needsClientHello(n.right);
    case 'matcher':
      if (n.name === 'ClientIP') return false;
      if (n.name === 'HostSNI' && n.args.length === 1 && n.args[0] === '*') return false;
      return true;
  }
}
