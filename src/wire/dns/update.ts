/**
 * DNS UPDATE messages (RFC 2136 §2): a zone section naming the zone, no
 * prerequisites, and an update section that deletes whole RRsets and adds
 * records. Sent to the primary, signed with TSIG (tsig.ts).
 */
import { Writer } from '../../bytes/writer.js';
import { DnsClass, RRType } from './message.js';
import { encodeName } from './name.js';

export interface UpdateRecord {
  name: string;
  type: number;
  ttl: number;
  rdata: Uint8Array;
}

export interface UpdateRequest {
  id: number;
  zone: string;
  /** RRsets to delete first (RFC 2136 §2.5.2: CLASS ANY, TTL 0, no RDATA). */
  deleteRRsets: { name: string; type: number }[];
  /** Records to add (RFC 2136 §2.5.1: CLASS IN). */
  add: UpdateRecord[];
}

/** RFC 2136 §1.3: the UPDATE opcode. */
export const OPCODE_UPDATE = 5;

export function encodeUpdate(u: UpdateRequest): Uint8Array {
  const w = new Writer(512)
    .u16(u.id)
    .u16(OPCODE_UPDATE << 11)
    .u16(1) // ZOCOUNT
    .u16(0) // PRCOUNT
    .u16(u.deleteRRsets.length + u.add.length) // UPCOUNT
    .u16(0); // ADCOUNT (TSIG adds one when signing)
  w.bytes(encodeName(u.zone)).u16(RRType.SOA).u16(DnsClass.IN);
  for (const d of u.deleteRRsets) w.bytes(encodeName(d.name)).u16(d.type).u16(DnsClass.ANY).u32(0).u16(0);
  for (const a of u.add) w.bytes(encodeName(a.name)).u16(a.type).u16(DnsClass.IN).u32(a.ttl).vec16(a.rdata);
  return w.finish();
}
