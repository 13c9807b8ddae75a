/**
 * The soak's view of ECH key rotation (soak/run.ts --rotate): what the
 * embedded DNS publishes over time (the good ECH clients' "cache"), every
 * ECHConfig ever seen (the "ancient" clients' configs, some of whose
 * config_ids now name a different key), and the rest compression that lets
 * config_ids wrap inside a soak.
 *
 * Why the rest is compressed: a retired config_id rests ID_REUSE_MARGIN_MS
 * (1 h, keys/manager.ts) before it is handed out again, and that margin does
 * not scale with ECHGATE_ROTATION_SHORT, so rotating every 2 s uses up the
 * 256 ids in about 9 minutes and then waits an hour. `ageRetired` moves the
 * retirement date of a key retired `restMs` ago back by the margin, under the
 * folder lock, as if the hour had passed: ids come back `restMs` after their
 * retirement and wrap every ~256 rotations. Nothing else in the folder is
 * touched; serve's own code picks the id to reuse (the one retired longest
 * ago) and does everything else.
 */
import dgram from 'node:dgram';
import { ID_REUSE_MARGIN_MS, listKeys } from '../src/keys/manager.js';
import { KeyDir } from '../src/keys/store.js';
import { decodeECHConfigList } from '../src/wire/ech/config.js';
import { decodeMessage, encodeQuery, RRType } from '../src/wire/dns/message.js';
import { decodeSvcb, SvcParamKey } from '../src/wire/dns/svcb.js';

export interface Seen {
  /** performance.now() when DNS answered with this list. */
  t: number;
  list: Uint8Array;
  configId: number;
  /** Hex of the config's public key: tells two keys under one config_id apart. */
  pub: string;
}

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

function describe(list: Uint8Array): { configId: number; pub: string } {
  const c = decodeECHConfigList(list).find((x) => !('unsupported' in x));
  if (!c || 'unsupported' in c) throw new Error('no ECHConfig in the published list');
  return { configId: c.configId, pub: hex(c.publicKey) };
}

/** One HTTPS query over UDP to the embedded DNS; the ech= SvcParam of the first answer. */
export function queryEch(port: number, name: string, timeoutMs = 2000): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const sock = dgram.createSocket('udp4');
    const id = Math.floor(Math.random() * 65536);
    const t = setTimeout(() => {
      sock.close();
      reject(new Error('DNS poll: timeout'));
    }, timeoutMs);
    sock.on('message', (m) => {
      try {
        const msg = decodeMessage(m);
        if (msg.id !== id) return;
        const rr = msg.answers.find((a) => a.type === RRType.HTTPS);
        const ech = rr ? decodeSvcb(rr.rdata).params.get(SvcParamKey.ech) : undefined;
        clearTimeout(t);
        sock.close();
        if (ech) resolve(ech);
        else reject(new Error('DNS poll: no ech= in the answer'));
      } catch (e) {
        clearTimeout(t);
        sock.close();
        reject(e);
      }
    });
    sock.on('error', (e) => {
      clearTimeout(t);
      sock.close();
      reject(e);
    });
    sock.send(encodeQuery(name, RRType.HTTPS, { id }), port, '127.0.0.1');
  });
}

export class EchWatch {
  /** Every answer, oldest first (pruned to the last `keepMs`). */
  readonly history: Seen[] = [];
  /** Every distinct config seen (by public key), first sighting. */
  readonly archive = new Map<string, Seen>();
  /** Distinct lists DNS moved to (each is one rotation seen from outside). */
  changes = 0;
  pollFailures = 0;
  private stopped = false;

  constructor(
    private readonly port: number,
    private readonly name: string,
    private readonly keepMs: number,
  ) {}

  /** The first answer; then polls every `everyMs` until stop(). */
  async start(everyMs: number): Promise<void> {
    await this.poll();
    void (async () => {
      while (!this.stopped) {
        await new Promise((r) => setTimeout(r, everyMs));
        if (!this.stopped) await this.poll().catch(() => {});
      }
    })();
  }

  stop(): void {
    this.stopped = true;
  }

  private async poll(): Promise<void> {
    let list: Uint8Array;
    try {
      list = await queryEch(this.port, this.name);
    } catch (e) {
      this.pollFailures++;
      if (this.history.length === 0) throw e;
      return;
    }
    const d = describe(list);
    const now = performance.now();
    const last = this.history.at(-1);
    if (!last || last.pub !== d.pub) this.changes += last ? 1 : 0;
    const seen: Seen = { t: now, list, ...d };
    this.history.push(seen);
    if (!this.archive.has(d.pub)) this.archive.set(d.pub, seen);
    while (this.history.length > 1 && this.history[0]!.t < now - this.keepMs) this.history.shift();
  }

  /** The newest answer DNS gave at least `ageMs` ago (else the oldest kept): a client's cached config. */
  cached(ageMs: number): Seen {
    const at = performance.now() - ageMs;
    let pick = this.history[0]!;
    for (const s of this.history) {
      if (s.t <= at) pick = s;
      else break;
    }
    return pick;
  }

  get current(): Seen {
    return this.history.at(-1)!;
  }

  /**
   * An archived config whose config_id now names a different key in the folder
   * (a reused id: the hard case), else the oldest archived one not current.
   */
  ancient(dir: string): { seen: Seen; reused: boolean } | undefined {
    const now = new Map<number, string>();
    for (const k of listKeys(dir).keys) if (k.config && k.privateKey) now.set(k.meta.configId, hex(k.config.publicKey));
    const old = [...this.archive.values()].filter((s) => s.pub !== this.current.pub);
    const reused = old.filter((s) => now.has(s.configId) && now.get(s.configId) !== s.pub);
    if (reused.length) return { seen: reused[Math.floor(Math.random() * reused.length)]!, reused: true };
    return old.length ? { seen: old[0]!, reused: false } : undefined;
  }
}

/** The folder's key state in one line, for a failure's log entry. */
export function keyState(dir: string): string {
  const keys = listKeys(dir).keys;
  const ids = (st: string) => keys.filter((k) => k.meta.state === st).map((k) => k.meta.configId);
  return `active=[${ids('active')}] decrypt-only=[${ids('decrypt-only')}] retry=[${ids('retry')}] retired=${ids('retired').length}`;
}

/**
 * Keys retired at least `restMs` ago (and less than the margin ago) get their
 * retirement date moved back by ID_REUSE_MARGIN_MS: their ids are free now
 * instead of an hour from now. Returns how many were moved.
 */
export function ageRetired(dir: string, restMs: number, now = Date.now()): number {
  const kd = new KeyDir(dir);
  return kd.withLock(() => {
    let n = 0;
    for (const k of kd.load().keys) {
      if (k.meta.state !== 'retired' || k.file || k.meta.notAfter === undefined) continue;
      const ago = now - Date.parse(k.meta.notAfter);
      if (!(ago >= restMs && ago < ID_REUSE_MARGIN_MS)) continue;
      kd.writeMeta({ ...k.meta, notAfter: new Date(Date.parse(k.meta.notAfter) - ID_REUSE_MARGIN_MS).toISOString() });
      n++;
    }
    return n;
  });
}
