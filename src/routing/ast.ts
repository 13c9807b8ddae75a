/** The rule language's syntax tree (Traefik's TCP rules). */

export type MatcherName = 'HostSNI' | 'HostSNIRegexp' | 'ALPN' | 'ClientIP';

export type RuleNode =
  | { kind: 'matcher'; name: MatcherName; args: string[]; pos: number }
  | { kind: 'not'; expr: RuleNode }
  | { kind: 'and'; left: RuleNode; right: RuleNode }
  | { kind: 'or'; left: RuleNode; right: RuleNode };

/**
 * What a rule can see of a connection. Routing never sees bytes: the proxy
 * fills this in from the ClientHello (outer, or inner after ECH decryption).
 */
export interface ConnData {
  /** Lower-cased SNI without a trailing dot; '' when the client sent none. */
  sni: string;
  alpn: readonly string[];
  /** Client address as text, IPv4-mapped IPv6 already unwrapped. */
  clientIp: string;
  /** Whether the connection opened with a TLS ClientHello. */
  tls: boolean;
  /** 'accepted' when sni/alpn came from a decrypted ClientHelloInner. */
  ech: 'accepted' | 'rejected' | 'none';
}
