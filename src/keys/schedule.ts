/**
 * When `serve` rotates and retires keys (docs/ech.md "Automatic rotation"):
 * derived from the key folder's metadata alone, never from a timer started at
 * boot, so the schedule survives restarts. A serve started 23 h after the
 * last rotation with every: 24h rotates 1 h later.
 */
import type { KeyMeta } from './store.js';

export interface RotationPlan {
  /** The public name being rotated (absent: no active key, nothing to rotate from). */
  publicName?: string;
  /** When the current active key became active (its `activated`, else `created`; ms since the epoch): the last rotation. */
  lastRotation?: number;
  /** When the next rotation is due (ms); <= now means now. */
  rotateAt?: number;
  /**
   * A retry key made after the active one (a rotation whose DNS step failed,
   * or a key staged by hand): the next rotation makes it active instead of
   * spending a new config_id.
   */
  promote?: number;
  /** decrypt-only keys whose grace period has ended: retire now. */
  retire: number[];
  /** The earliest future time something is due (a rotation or a retirement), if any. */
  nextAt?: number;
}

const t = (iso: string | undefined): number | undefined => {
  if (iso === undefined) return undefined;
  const v = Date.parse(iso);
  return Number.isFinite(v) ? v : undefined;
};

export function planRotation(keys: readonly KeyMeta[], now: number, o: { everyMs: number; publicName?: string }): RotationPlan {
  const retire: number[] = [];
  let nextAt: number | undefined;
  const later = (at: number | undefined) => {
    if (at !== undefined && at > now && (nextAt === undefined || at < nextAt)) nextAt = at;
  };
  for (const k of keys) {
    if (k.state !== 'decrypt-only') continue;
    const end = t(k.notAfter);
    // A decrypt-only key without a (readable) end date is left alone: someone set it by hand.
    if (end === undefined) continue;
    if (end <= now) retire.push(k.configId);
    else later(end);
  }
  const actives = keys.filter((k) => k.state === 'active');
  const publicName = o.publicName ?? actives[0]?.publicName;
  const since = (k: KeyMeta) => t(k.activated) ?? t(k.created);
  const mine = actives.filter((k) => k.publicName === publicName && since(k) !== undefined);
  if (!publicName || mine.length === 0) return { retire, nextAt, ...(publicName ? { publicName } : {}) };
  // Several active keys (a rotation between its two writes, or set by hand): the newest counts.
  const lastRotation = Math.max(...mine.map((k) => since(k)!));
  const rotateAt = lastRotation + o.everyMs;
  later(rotateAt);
  const staged = keys
    .filter((k) => k.state === 'retry' && k.publicName === publicName && (t(k.created) ?? -Infinity) > lastRotation)
    .sort((a, b) => t(b.created)! - t(a.created)!)[0];
  return { publicName, lastRotation, rotateAt, retire, nextAt, ...(staged ? { promote: staged.configId } : {}) };
}
