/**
 * Automatic ECH key rotation inside `serve` (ech.rotation; docs/ech.md
 * "Automatic rotation"). The schedule is derived from the key folder's
 * metadata at every wake-up (planRotation), so it survives restarts and
 * follows rotations made by hand with `echgate keys rotate`. A rotation is
 * the same locked read-modify-write and the same publish / read-back / undo
 * steps as `keys rotate --publish` (rotateAndPublish).
 *
 * One process rotates: with several worker processes, the worker in slot 1
 * (serve asks workers.ts runsRotation). The folder lock keeps two
 * rotations from corrupting anything, but two schedulers would both rotate.
 */
import { resolve } from 'node:path';
import type { Logger } from 'pino';
import type { Config, RotationConfig } from '../config/types.js';
import { isEchgateError } from '../errors.js';
import { RETIRED_KEEP_MS, retireKey, sweepKeys } from '../keys/manager.js';
import { planRotation } from '../keys/schedule.js';
import { KeyDir } from '../keys/store.js';
import type { Metrics } from '../proxy/metrics.js';
import { planPublishSettings, rotateAndPublish } from './publish.js';

/** The first retry after a failure waits this long, then twice as long each time... */
export const BACKOFF_BASE_MS = 1000;
/** ...up to this, or `every` when that is shorter. */
export const BACKOFF_MAX_MS = 15 * 60_000;
/** The folder is looked at again at least this often (a rotation by hand moves the schedule). */
export const RECHECK_MS = 60_000;

export interface RotationScheduler {
  stop(): void;
  /** Resolves when the step running now (if any) is done; for tests and shutdown. */
  idle(): Promise<void>;
}

const why = (e: unknown) => (isEchgateError(e) ? `${e.message} [${e.code}]` : e instanceof Error ? e.message : String(e));

/** Start rotating when the configuration asks for it; undefined when it does not. */
export function startRotation(cfg: Config, o: { log: Logger; metrics: Metrics; now?: () => number }): RotationScheduler | undefined {
  const r = cfg.ech?.rotation;
  if (!cfg.ech || !r) return undefined;
  return new Scheduler(resolve(cfg.ech.keysDir), r, o.log, o.metrics, o.now ?? Date.now);
}

class Scheduler implements RotationScheduler {
  private timer?: NodeJS.Timeout;
  private stopped = false;
  private failures = 0;
  private retryAt?: number;
  private running: Promise<void> = Promise.resolve();

  constructor(
    private readonly dir: string,
    private readonly cfg: RotationConfig,
    private readonly log: Logger,
    private readonly metrics: Metrics,
    private readonly now: () => number,
  ) {
    log.info({ keysDir: dir, every: `${cfg.everyMs / 1000}s`, grace: `${cfg.graceMs / 1000}s`, publish: cfg.publish === 'embedded' ? 'embedded' : cfg.publish.name }, 'ECH key rotation scheduled');
    this.wake(0);
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  idle(): Promise<void> {
    return this.running;
  }

  private wake(inMs: number): void {
    if (this.stopped) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.running = this.step().catch((e) => this.log.error({ keysDir: this.dir, err: why(e) }, 'ECH key rotation step failed'));
    }, Math.max(0, Math.min(inMs, RECHECK_MS)));
    this.timer.unref();
  }

  private async step(): Promise<void> {
    if (this.stopped) return;
    let next: number | undefined;
    try {
      next = await this.once();
    } finally {
      const now = this.now();
      const at = this.retryAt ?? next;
      this.wake(at === undefined ? RECHECK_MS : at - now);
    }
  }

  /** One look at the folder: retire what is due, rotate when due. Returns when to look again. */
  private async once(): Promise<number | undefined> {
    const now = this.now();
    const { keys, problems } = new KeyDir(this.dir).load();
    for (const p of problems) this.log.error({ file: p.file, err: p.message }, 'ECH key file skipped');
    const plan = planRotation(
      keys.map((k) => k.meta),
      now,
      { everyMs: this.cfg.everyMs, publicName: this.cfg.publicName },
    );
    for (const id of plan.retire) {
      try {
        retireKey(this.dir, id, new Date(now));
        this.log.info({ keysDir: this.dir, configId: id }, 'ECH key retired: its grace period ended (private key deleted)');
      } catch (e) {
        this.log.error({ keysDir: this.dir, configId: id, err: why(e) }, 'ECH key could not be retired');
      }
    }
    // Retired metadata older than a day goes, so files do not pile up and the ids are free again
    // (the rotation picks the id retired longest ago; docs/ech.md "config_ids").
    // Only when something is due: the sweep takes the folder lock, and this runs every minute.
    const stale = (iso?: string) => iso !== undefined && now - Date.parse(iso) >= RETIRED_KEEP_MS;
    if (keys.some((k) => k.meta.state === 'retired' && stale(k.meta.notAfter))) {
      try {
        const { forgotten } = sweepKeys(this.dir, new Date(now));
        if (forgotten.length) this.log.info({ keysDir: this.dir, configIds: forgotten, retiredBefore: new Date(now - RETIRED_KEEP_MS).toISOString() }, 'ECH retired key metadata deleted: the config_ids are free again');
      } catch (e) {
        this.log.error({ keysDir: this.dir, err: why(e) }, 'ECH retired key metadata could not be deleted');
      }
    }
    if (plan.rotateAt === undefined) {
      this.metrics.nextKeyRotation.set({}, Number.NaN);
      this.log.warn({ keysDir: this.dir, publicName: plan.publicName ?? null }, 'ECH key rotation: no active key to rotate (keys generate makes one)');
      return plan.nextAt;
    }
    if (plan.rotateAt > now) {
      // Not due (any more): a rotation by hand may have done it while we waited to retry.
      this.retryAt = undefined;
      this.failures = 0;
    }
    const due = this.retryAt ?? plan.rotateAt;
    this.metrics.nextKeyRotation.set({}, Math.round(due / 1000));
    if (due > now) return plan.nextAt;
    await this.rotate(plan.promote);
    // Look again soon: the new key's metadata gives the next date. (undefined meant the 60 s
    // recheck, so with `every` under a minute the next rotation waited for it.) One second, not 0:
    // metadata that somehow still says "due" cannot spin. After a failure, retryAt wins in step().
    return this.now() + BACKOFF_BASE_MS;
  }

  private async rotate(promote: number | undefined): Promise<void> {
    const p = this.cfg.publish;
    const lines: string[] = [];
    try {
      // The settings (TSIG key, CA) are read for every attempt: a fixed file is picked up on the next retry.
      // The rotation uses this scheduler's clock, as the plan did (ids rest and metadata ages by it).
      const plan = p === 'embedded' ? undefined : planPublishSettings(p, this.dir);
      const r = await rotateAndPublish(this.dir, { graceMs: this.cfg.graceMs, publicName: this.cfg.publicName, promote, now: new Date(this.now()) }, plan, (s) => lines.push(s.msg));
      this.failures = 0;
      this.retryAt = undefined;
      this.metrics.keyRotations.inc({ result: 'ok' });
      this.log.info(
        { keysDir: this.dir, configId: r.created.configId, promoted: promote !== undefined, decryptOnly: r.demoted.map((d) => ({ configId: d.configId, notAfter: d.notAfter })), publish: p === 'embedded' ? 'embedded' : p.name, steps: lines },
        'ECH keys rotated',
      );
    } catch (e) {
      this.failures++;
      const wait = Math.min(BACKOFF_BASE_MS * 2 ** Math.min(this.failures - 1, 30), BACKOFF_MAX_MS, Math.max(BACKOFF_BASE_MS, this.cfg.everyMs));
      this.retryAt = this.now() + wait;
      this.metrics.keyRotations.inc({ result: 'failed' });
      this.metrics.nextKeyRotation.set({}, Math.round(this.retryAt / 1000));
      this.log.error({ keysDir: this.dir, err: why(e), attempt: this.failures, retryIn: `${wait / 1000}s`, steps: lines }, 'ECH key rotation failed: the previous key stays active; retrying');
    }
  }
}
