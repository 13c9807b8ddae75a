/**
 * `ech.store`: where the ECH keys live (docs/fleet.md). Absent: the key folder
 * (ech.keysDir), as always. `etcd`: a fleet shares its keys through etcd v3;
 * each instance's keysDir becomes its local copy.
 *
 *   ech:
 *     store:
 *       etcd:
 *         endpoints: [http://10.0.0.1:2379, http://10.0.0.2:2379]
 *         prefix: echgate/                 # every key of this fleet is under it
 *         tls: { ca: ca.pem, cert: c.pem, key: c.key }
 *         auth: { username: echgate, passwordFile: /run/secrets/etcd }
 *         kek: { file: /run/secrets/kek }  # or { env: ECHGATE_KEK }
 *         leaseTtl: 10s     ackTimeout: 60s     drain: 15s     forgetAfter: 1h
 */
import { parseDuration } from './duration.js';
import { type Ctx, isObj, type Obj, section } from './fields.js';
import { SHORT_ENV } from './rotation.js';

/** The `ech.store` section (config/sections.ts registers it after `ech`); unknown keys are warned by the walker. */
export const storeSection = section<StoreConfig | undefined>({
  path: 'ech.store',
  keys: {
    etcd: {
      endpoints: 'any', // a list of URLs, or one comma-separated string
      prefix: 'string',
      tls: { ca: 'string', cert: 'string', key: 'string' },
      auth: { username: 'string', password: 'string', passwordFile: 'string' },
      kek: { file: 'string', env: 'string' },
      leaseTtl: 'value',
      ackTimeout: 'value',
      drain: 'value',
      forgetAfter: 'value',
    },
  },
  parse(raw: unknown, ctx: Ctx) {
    return parseStore(raw, ctx.bad, () => {}, ctx.env);
  },
  assign(cfg, v) {
    if (v && cfg.ech) cfg.ech.store = v;
  },
});

export interface EtcdStoreConfig {
  endpoints: string[];
  /** Ends with '/'. */
  prefix: string;
  tls?: { ca?: string; cert?: string; key?: string };
  auth?: { username: string; password?: string; passwordFile?: string };
  /** Where the key-encryption key is read from: a file, or an environment variable. */
  kek: { file: string } | { env: string };
  /** The instance's registration lease, and the leader election's (seconds in etcd: whole seconds). */
  leaseTtlMs: number;
  /** How long the leader waits for every instance to hold a staged key before it reports the missing ones. */
  ackTimeoutMs: number;
  /** How long an instance that reported itself not ready is given to be drained by the load balancer before the leader publishes without it. */
  drainMs: number;
  /** Membership lease: an instance cut off from etcd this long is no longer waited for; it declares itself not ready after half of it. */
  forgetAfterMs: number;
}

export interface StoreConfig {
  etcd: EtcdStoreConfig;
}

export const STORE_DEFAULTS = { leaseTtlMs: 10_000, ackTimeoutMs: 60_000, drainMs: 15_000, forgetAfterMs: 3_600_000 };
const KNOWN = ['endpoints', 'prefix', 'tls', 'auth', 'kek', 'leaseTtl', 'ackTimeout', 'drain', 'forgetAfter'];

/**
 * Parse ech.store; undefined when absent or invalid (problems reported
 * through `bad`). The one-line hook in validate.ts calls it.
 */
export function parseStore(v: unknown, bad: (path: string, message: string) => void, warnUnknown: (o: Obj, path: string, known: string[]) => void, env: NodeJS.ProcessEnv = process.env): StoreConfig | undefined {
  if (v === undefined) return undefined;
  const P = 'ech.store';
  if (!isObj(v)) {
    bad(P, 'expected a mapping { etcd: { endpoints, prefix, kek, ... } }');
    return undefined;
  }
  warnUnknown(v, P, ['etcd']);
  const e = v.etcd;
  if (!isObj(e)) {
    bad(`${P}.etcd`, 'expected a mapping { endpoints, prefix, kek, tls, auth }');
    return undefined;
  }
  const E = `${P}.etcd`;
  warnUnknown(e, E, KNOWN);
  let ok = true;
  const fail = (path: string, message: string) => {
    ok = false;
    bad(path, message);
  };
  const endpoints: string[] = [];
  const eps = typeof e.endpoints === 'string' ? e.endpoints.split(',') : e.endpoints;
  if (!Array.isArray(eps) || eps.length === 0) fail(`${E}.endpoints`, 'expected a list of URLs such as http://127.0.0.1:2379');
  else {
    for (const [i, x] of eps.entries()) {
      let u: URL | undefined;
      try {
        u = typeof x === 'string' ? new URL(x.trim()) : undefined;
      } catch {}
      if (!u || (u.protocol !== 'http:' && u.protocol !== 'https:') || !u.port || u.pathname !== '/') fail(`${E}.endpoints[${i}]`, `expected http(s)://host:port, not ${JSON.stringify(x)}`);
      else endpoints.push(`${u.protocol}//${u.host}`);
    }
  }
  let prefix = 'echgate/';
  if (e.prefix !== undefined) {
    if (typeof e.prefix !== 'string' || e.prefix === '' || e.prefix === '/' || /[\s\0]/.test(e.prefix)) fail(`${E}.prefix`, 'expected a non-empty key prefix such as echgate/');
    else prefix = e.prefix.endsWith('/') ? e.prefix : `${e.prefix}/`;
  }
  const str = (o: Obj, k: string, path: string): string | undefined => {
    if (o[k] === undefined) return undefined;
    if (typeof o[k] !== 'string' || o[k] === '') {
      fail(`${path}.${k}`, 'expected a string');
      return undefined;
    }
    return o[k] as string;
  };
  let tls: EtcdStoreConfig['tls'];
  if (e.tls !== undefined) {
    if (!isObj(e.tls)) fail(`${E}.tls`, 'expected { ca, cert, key } (files)');
    else {
      warnUnknown(e.tls, `${E}.tls`, ['ca', 'cert', 'key']);
      tls = { ca: str(e.tls, 'ca', `${E}.tls`), cert: str(e.tls, 'cert', `${E}.tls`), key: str(e.tls, 'key', `${E}.tls`) };
      if (Boolean(tls.cert) !== Boolean(tls.key)) fail(`${E}.tls`, 'cert and key go together (a client certificate)');
      if (!endpoints.every((x) => x.startsWith('https:'))) fail(`${E}.tls`, 'tls needs https:// endpoints');
    }
  }
  let auth: EtcdStoreConfig['auth'];
  if (e.auth !== undefined) {
    if (!isObj(e.auth)) fail(`${E}.auth`, 'expected { username, password | passwordFile }');
    else {
      warnUnknown(e.auth, `${E}.auth`, ['username', 'password', 'passwordFile']);
      const username = str(e.auth, 'username', `${E}.auth`);
      const password = str(e.auth, 'password', `${E}.auth`);
      const passwordFile = str(e.auth, 'passwordFile', `${E}.auth`);
      if (!username) fail(`${E}.auth.username`, 'required');
      if (Boolean(password) === Boolean(passwordFile)) fail(`${E}.auth`, 'give one of password or passwordFile');
      if (username) auth = { username, ...(password ? { password } : {}), ...(passwordFile ? { passwordFile } : {}) };
    }
  }
  let kek: EtcdStoreConfig['kek'] | undefined;
  if (!isObj(e.kek)) fail(`${E}.kek`, 'required: { file: PATH } or { env: VARIABLE } holding the key-encryption key (32 bytes, hex or base64)');
  else {
    warnUnknown(e.kek, `${E}.kek`, ['file', 'env']);
    const file = str(e.kek, 'file', `${E}.kek`);
    const envName = str(e.kek, 'env', `${E}.kek`);
    if (Boolean(file) === Boolean(envName)) fail(`${E}.kek`, 'give one of file or env');
    else kek = file ? { file } : { env: envName! };
  }
  const short = env[SHORT_ENV] === '1';
  const dur = (k: string, dflt: number, min: number, testMin: number): number => {
    if (e[k] === undefined) return dflt;
    const ms = parseDuration(e[k]);
    const floor = short ? testMin : min;
    if (ms === undefined) fail(`${E}.${k}`, `invalid duration ${JSON.stringify(e[k])}`);
    else if (ms < floor) fail(`${E}.${k}`, `${e[k]} is below the shortest allowed, ${floor / 1000}s${short ? '' : ` (${SHORT_ENV}=1 lowers it, for tests)`}`);
    else return ms;
    return dflt;
  };
  // etcd counts lease TTLs in whole seconds, and refuses very short ones.
  const leaseTtlMs = Math.ceil(dur('leaseTtl', STORE_DEFAULTS.leaseTtlMs, 5_000, 2_000) / 1000) * 1000;
  const ackTimeoutMs = dur('ackTimeout', STORE_DEFAULTS.ackTimeoutMs, 5_000, 500);
  const drainMs = dur('drain', STORE_DEFAULTS.drainMs, 0, 0);
  const forgetAfterMs = dur('forgetAfter', STORE_DEFAULTS.forgetAfterMs, 60_000, 4_000);
  if (forgetAfterMs < 4 * leaseTtlMs) fail(`${E}.forgetAfter`, `must be at least 4 x leaseTtl (${(4 * leaseTtlMs) / 1000}s)`);
  if (!ok || !kek) return undefined;
  return { etcd: { endpoints, prefix, ...(tls ? { tls } : {}), ...(auth ? { auth } : {}), kek, leaseTtlMs, ackTimeoutMs, drainMs, forgetAfterMs } };
}
