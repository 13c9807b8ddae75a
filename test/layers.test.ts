/**
 * The layer order of docs/architecture.md ("Folders and who may import whom"),
 * checked on the import graph of src/: every static `import ... from`,
 * `export ... from`, dynamic `import()` and `import('...')` type of every
 * src/**\/*.ts file, parsed with the TypeScript parser (no regex over
 * comments). A file's layer is its top-level folder under src/ (src/errors.ts
 * is the layer `errors`). Each layer declares the lower layers it may import,
 * the node: built-ins it may use, and the npm packages it may use.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { describe, it } from 'node:test';
import ts from 'typescript';
import { ROOT } from './helpers.js';

interface Layer {
  /** Lower layers this one may import (itself is always allowed). */
  imports: string[];
  /** Of those, the ones it may import only with `import type` / `export type` (erased at build time). */
  typeOnly?: string[];
  /** node: built-in modules it may use. */
  node: string[];
  /** npm packages it may use (a package name, or a scope followed by '/'). */
  packages: string[];
}

/** Bottom → top. A layer may import only layers listed before it, and only those in its `imports`. */
export const LAYERS: [string, Layer][] = [
  ['errors', { imports: [], node: [], packages: [] }],
  ['bytes', { imports: ['errors'], node: [], packages: [] }],
  ['wire', { imports: ['bytes', 'errors'], node: [], packages: [] }],
  ['crypto', { imports: ['bytes', 'errors'], node: ['node:crypto'], packages: ['@noble/'] }],
  // certs.ts signs with node:crypto keys and the client verifies X.509; record-crypto.ts seals and opens records with
  // node:crypto ciphers; server.ts publishes handshake events (no I/O).
  ['tls13', { imports: ['wire', 'crypto', 'bytes', 'errors'], node: ['node:crypto', 'node:diagnostics_channel'], packages: [] }],
  ['ech', { imports: ['tls13', 'wire', 'crypto', 'bytes', 'errors'], node: [], packages: [] }],
  // The key folder (RFC 9934 PEM files, the lock) and the keyring, which prepares ech/server.ts keys once per load.
  ['keys', { imports: ['ech', 'wire', 'crypto', 'bytes', 'errors'], node: ['node:crypto', 'node:fs', 'node:path'], packages: [] }],
  ['routing', { imports: ['bytes', 'errors'], node: [], packages: [] }],
  // Validation compiles the rules (routing) and checks curvePreferences against the engine's groups (tls13/groups.ts).
  // node:os: `workers: auto` is the machine's available parallelism (a query, no I/O).
  ['config', { imports: ['routing', 'tls13', 'bytes', 'errors'], node: ['node:os'], packages: ['yaml'] }],
  ['observe', { imports: ['errors'], node: [], packages: ['pino'] }],
  // Dynamic configuration providers: the network access to etcd (etcd3, gRPC) and the TLS/password files
  // providers.etcd names. Sees the configuration only as types; config/kv.ts converts what it reads.
  ['providers', { imports: ['config', 'errors'], typeOnly: ['config'], node: ['node:fs'], packages: ['etcd3'] }],
  // dns/ sees the configuration only as types; TSIG's HMAC comes from crypto/.
  ['dns', { imports: ['observe', 'config', 'keys', 'wire', 'crypto', 'bytes', 'errors'], typeOnly: ['config'], node: ['node:crypto', 'node:dgram', 'node:fs', 'node:http2', 'node:net', 'node:tls'], packages: ['undici', 'pino'] }],
  // The fleet (docs/fleet.md): coordination over etcd (the etcd3 client), keys from keys/, settings from config/ as types only.
  // Above dns/ (it publishes nothing itself: the DNS step is handed in by cli/), below proxy/ and cli/.
  ['fleet', { imports: ['config', 'keys', 'errors'], typeOnly: ['config'], node: ['node:fs'], packages: ['etcd3', 'pino'] }],
  // node:cluster: log lines name their worker; node:perf_hooks: the event-loop delay metric.
  ['proxy', {
    imports: ['dns', 'observe', 'config', 'routing', 'keys', 'ech', 'tls13', 'crypto', 'wire', 'bytes', 'errors'],
    node: ['node:net', 'node:tls', 'node:http', 'node:fs', 'node:diagnostics_channel', 'node:cluster', 'node:perf_hooks'], packages: ['pino'] }],
  ['cli', { imports: ['fleet', 'proxy', 'dns', 'providers', 'observe', 'config', 'routing', 'keys', 'ech', 'tls13', 'crypto', 'wire', 'bytes', 'errors'], node: ['*'], packages: ['*'] }],
];

/**
 * Imports that break the order and are kept on purpose, each with its reason:
 * `${file} → ${specifier}`.
 */
const EXCEPTIONS: Record<string, string> = {
  // providers.kubernetesCRDFiles names manifest files and folders and a secrets folder inside the
  // configuration; converting them reads those files. Moving the reads to cli/ (passing the
  // manifests in) is the fix; until then config/ does I/O in this one file.
  'src/config/kubernetes.ts → node:fs': 'reads the manifests and secrets the configuration names',
  'src/config/kubernetes.ts → node:path': 'joins the manifest folder paths',
};

const LAYER = new Map(LAYERS);
const RANK = new Map(LAYERS.map(([n], i) => [n, i]));

/** The layer of a path relative to src/ ('wire/dns/svcb.ts' → 'wire'; 'errors.ts' → 'errors'). */
export function layerOf(rel: string): string | undefined {
  const parts = rel.split('/');
  const name = parts.length === 1 ? parts[0]!.replace(/\.ts$/, '') : parts[0]!;
  return LAYER.has(name) ? name : undefined;
}

interface ImportRef {
  spec: string;
  typeOnly: boolean;
}

/** Every module specifier a file imports: static, re-exports, dynamic import() and import('...') types. */
export function importsOf(fileName: string, text: string): ImportRef[] {
  const sf = ts.createSourceFile(fileName, text, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS);
  const out: ImportRef[] = [];
  const visit = (n: ts.Node): void => {
    if (ts.isImportDeclaration(n) && ts.isStringLiteral(n.moduleSpecifier)) {
      const c = n.importClause;
      // `import type {..}`, or `import { type A, type B }` with no value binding at all.
      const named = c?.namedBindings && ts.isNamedImports(c.namedBindings) ? c.namedBindings.elements : undefined;
      const typeOnly = !!c && (c.isTypeOnly || (!c.name && !!named && named.length > 0 && named.every((e) => e.isTypeOnly)));
      out.push({ spec: n.moduleSpecifier.text, typeOnly });
    } else if (ts.isExportDeclaration(n) && n.moduleSpecifier && ts.isStringLiteral(n.moduleSpecifier)) {
      out.push({ spec: n.moduleSpecifier.text, typeOnly: n.isTypeOnly });
    } else if (ts.isCallExpression(n) && n.expression.kind === ts.SyntaxKind.ImportKeyword) {
      const a = n.arguments[0];
      // A computed import() cannot be checked: report it as such.
      out.push({ spec: a && ts.isStringLiteralLike(a) ? a.text : '<computed import()>', typeOnly: false });
    } else if (ts.isImportTypeNode(n) && ts.isLiteralTypeNode(n.argument) && ts.isStringLiteral(n.argument.literal)) {
      out.push({ spec: n.argument.literal.text, typeOnly: true });
    } else if (ts.isImportEqualsDeclaration(n) && ts.isExternalModuleReference(n.moduleReference) && ts.isStringLiteral(n.moduleReference.expression)) {
      out.push({ spec: n.moduleReference.expression.text, typeOnly: n.isTypeOnly });
    }
    ts.forEachChild(n, visit);
  };
  visit(sf);
  return out;
}

const packageOf = (spec: string) => (spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!);

/**
 * The violations in a set of files (paths relative to src/, '/'-separated),
 * one line each: `src/file → import (layer A may not import layer B)`.
 */
export function violations(files: { rel: string; text: string }[], exceptions: Record<string, string> = EXCEPTIONS): string[] {
  const out: string[] = [];
  for (const { rel, text } of files) {
    const from = layerOf(rel);
    const file = `src/${rel}`;
    if (!from) {
      out.push(`${file} is in no declared layer (add its folder to LAYERS and to docs/architecture.md)`);
      continue;
    }
    const L = LAYER.get(from)!;
    for (const { spec, typeOnly } of importsOf(rel, text)) {
      if (exceptions[`${file} → ${spec}`]) continue;
      let why: string | undefined;
      if (spec.startsWith('.')) {
        const target = join(dirname(rel), spec).split(sep).join('/').replace(/\.js$/, '.ts');
        if (target.startsWith('..')) why = `layer ${from} may not import outside src/`;
        else {
          const to = layerOf(target);
          if (!to) why = `layer ${from} may not import an undeclared layer (${target})`;
          else if (to !== from) {
            if (!L.imports.includes(to)) why = `layer ${from} may not import layer ${to}`;
            else if (L.typeOnly?.includes(to) && !typeOnly) why = `layer ${from} may import layer ${to} only with import type`;
          }
        }
      } else if (spec.startsWith('node:')) {
        if (!L.node.includes('*') && !L.node.includes(spec)) why = `layer ${from} may not import ${spec}`;
      } else if (spec === '<computed import()>') {
        why = `layer ${from} may not import a computed specifier`;
      } else {
        const pkg = packageOf(spec);
        const ok = L.packages.includes('*') || L.packages.some((p) => (p.endsWith('/') ? pkg.startsWith(p) : pkg === p));
        // A bare built-in name ('fs') is still a built-in: the node: prefix is the rule.
        if (!ok) why = `layer ${from} may not import package ${pkg}`;
      }
      if (why) out.push(`${file} → ${spec} (${why})`);
    }
  }
  return out;
}

function srcFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? srcFiles(p) : p.endsWith('.ts') ? [p] : [];
  });
}

describe('layers: the import graph of src/ follows docs/architecture.md', () => {
  it('the declared table is an order: each layer imports only layers below it', () => {
    for (const [name, l] of LAYERS) {
      for (const d of l.imports) assert.ok((RANK.get(d) ?? Infinity) < RANK.get(name)!, `${name} may import ${d}, which is not below it`);
      for (const d of l.typeOnly ?? []) assert.ok(l.imports.includes(d), `${name}: type-only ${d} is not among its imports`);
    }
  });

  it('every src/ file is in a layer and imports only what its layer may', () => {
    const src = join(ROOT, 'src');
    const files = srcFiles(src).map((p) => ({ rel: relative(src, p).split(sep).join('/'), text: readFileSync(p, 'utf8') }));
    assert.ok(files.length > 50, `found only ${files.length} files under ${src}`);
    const bad = violations(files);
    assert.deepEqual(bad, [], `layer violations:\n${bad.join('\n')}`);
  });

  it('no stale exceptions: each allowlisted import still exists', () => {
    const src = join(ROOT, 'src');
    for (const key of Object.keys(EXCEPTIONS)) {
      const [file, spec] = key.split(' → ') as [string, string];
      const text = readFileSync(resolve(src, '..', file), 'utf8');
      assert.ok(importsOf(file, text).some((i) => i.spec === spec), `exception ${key} no longer applies: remove it`);
    }
  });

  it('docs/architecture.md names every layer folder', () => {
    const doc = readFileSync(join(ROOT, 'docs', 'architecture.md'), 'utf8');
    for (const [name] of LAYERS) assert.ok(doc.includes(name === 'errors' ? 'errors.ts' : `${name}/`), `docs/architecture.md does not mention ${name}`);
  });

  // The checker itself must catch each kind of violation (else a green run proves nothing).
  const check = (rel: string, text: string) => violations([{ rel, text }], {});
  it('catches a codec importing upward (wire → routing), static and re-exported', () => {
    assert.deepEqual(check('wire/dns/svcb.ts', "import { parseIp } from '../../routing/ip.js';"), ['src/wire/dns/svcb.ts → ../../routing/ip.js (layer wire may not import layer routing)']);
    assert.deepEqual(check('wire/x.ts', "export { a } from '../routing/ip.js';"), ['src/wire/x.ts → ../routing/ip.js (layer wire may not import layer routing)']);
  });
  it('catches tls13 importing ech, also through a dynamic import() or an import type', () => {
    assert.deepEqual(check('tls13/client.ts', "const m = await import('../ech/client.js');"), ['src/tls13/client.ts → ../ech/client.js (layer tls13 may not import layer ech)']);
    assert.deepEqual(check('tls13/client.ts', "let x: import('../ech/client.js').EchHello;"), ['src/tls13/client.ts → ../ech/client.js (layer tls13 may not import layer ech)']);
  });
  it('catches node: built-ins and packages a layer may not use', () => {
    assert.deepEqual(check('wire/dns/tsig.ts', "import { createHmac } from 'node:crypto';"), ['src/wire/dns/tsig.ts → node:crypto (layer wire may not import node:crypto)']);
    assert.deepEqual(check('config/load.ts', "import { readFileSync } from 'node:fs';"), ['src/config/load.ts → node:fs (layer config may not import node:fs)']);
    assert.deepEqual(check('routing/x.ts', "import { request } from 'undici';"), ['src/routing/x.ts → undici (layer routing may not import package undici)']);
  });
  it('catches a value import where only types are allowed (dns → config)', () => {
    assert.deepEqual(check('dns/service.ts', "import { ConfigError } from '../config/validate.js';"), ['src/dns/service.ts → ../config/validate.js (layer dns may import layer config only with import type)']);
    assert.deepEqual(check('dns/service.ts', "import type { DnsConfig } from '../config/types.js';"), []);
    assert.deepEqual(check('dns/service.ts', "import { type DnsConfig } from '../config/types.js';"), []);
    assert.deepEqual(check('dns/service.ts', "import { LogLimiter } from '../proxy/log-limit.js';"), ['src/dns/service.ts → ../proxy/log-limit.js (layer dns may not import layer proxy)']);
  });
  it('ignores import-like text in comments and strings, and flags files outside any layer', () => {
    assert.deepEqual(check('wire/x.ts', "// import { a } from '../routing/ip.js';\nconst s = \"import('../proxy/x.js')\";"), []);
    assert.deepEqual(check('misc/x.ts', ''), ['src/misc/x.ts is in no declared layer (add its folder to LAYERS and to docs/architecture.md)']);
  });
});
