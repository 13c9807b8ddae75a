/**
 * PROXY protocol headers towards a backend (haproxy.org proxy-protocol.txt,
 * versions 1 and 2). Only the sender side: echgate tells its backends who the
 * client was; it does not accept PROXY headers from clients.
 */
import { parseIp } from '../../bytes/ip.js';

export interface ProxiedAddrs {
  srcIp: string;
  srcPort: number;
  dstIp: string;
  dstPort: number;
}

const V2_SIG = Uint8Array.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);

export function encodeProxyV1(a: ProxiedAddrs | undefined): Uint8Array {
  const src = a && parseIp(a.srcIp);
  const dst = a && parseIp(a.dstIp);
  if (!a || !src || !dst || src.v6 !== dst.v6) return Buffer.from('PROXY UNKNOWN\r\n', 'latin1');
  const fam = src.v6 ? 'TCP6' : 'TCP4';
  const fmt = (ip: { v6: boolean; bytes: Uint8Array }) =>
    ip.v6
      ? Array.from({ length: 8 }, (_, i) => ((ip.bytes[2 * i]! << 8) | ip.bytes[2 * i + 1]!).toString(16)).join(':')
      : Array.from(ip.bytes).join('.');
  return Buffer.from(`PROXY ${fam} ${fmt(src)} ${fmt(dst)} ${a.srcPort} ${a.dstPort}\r\n`, 'latin1');
}

export function encodeProxyV2(a: ProxiedAddrs | undefined): Uint8Array {
  const src = a && parseIp(a.srcIp);
  const dst = a && parseIp(a.dstIp);
  if (!a || !src || !dst || src.v6 !== dst.v6) {
    // LOCAL command, AF_UNSPEC: the receiver uses the real connection endpoints.
    const out = new Uint8Array(16);
    out.set(V2_SIG);
    out[12] = 0x20;
    return out;
  }
  const alen = src.v6 ? 36 : 12;
  const out = new Uint8Array(16 + alen);
  out.set(V2_SIG);
  out[12] = 0x21; // version 2, PROXY command
  out[13] = src.v6 ? 0x21 : 0x11; // AF_INET6/AF_INET, STREAM
  out[14] = 0;
  out[15] = alen;
  const n = src.bytes.length;
  out.set(src.bytes, 16);
  out.set(dst.bytes, 16 + n);
  out[16 + 2 * n] = a.srcPort >> 8;
  out[17 + 2 * n] = a.srcPort & 0xff;
  out[18 + 2 * n] = a.dstPort >> 8;
  out[19 + 2 * n] = a.dstPort & 0xff;
  return out;
}
