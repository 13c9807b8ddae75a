// @ts-check
// The echgate dashboard page: polls the JSON API of the same origin and fills
// the tables. Every value goes in through textContent (never as HTML): names
// in the configuration are data, not markup. No dependencies, no build.
'use strict';

/** @param {string} path */
async function get(path) {
  const r = await fetch(path, { cache: 'no-store', credentials: 'same-origin' });
  if (!r.ok) throw new Error(`${path}: HTTP ${r.status}`);
  return r.json();
}

/** @param {string} tag @param {string | number | Node | null | undefined} [content] @param {string} [cls] */
function el(tag, content, cls) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (content instanceof Node) e.append(content);
  else if (content !== undefined && content !== null) e.textContent = String(content);
  return e;
}

/** @param {string} text @param {string} [cls] */
const badge = (text, cls) => el('span', text, `badge ${cls ?? ''}`);

/** A table body's rows: each row a list of cells (a cell: text, a node, or [content, class]). */
function fill(/** @type {string} */ id, /** @type {any[][]} */ rows, /** @type {string} */ empty = 'none') {
  const table = /** @type {HTMLTableElement | null} */ (document.getElementById(id));
  if (!table) return;
  const body = table.tBodies[0] ?? table.createTBody();
  const cols = table.tHead?.rows[0]?.cells.length ?? 1;
  const fresh = document.createElement('tbody');
  if (rows.length === 0) {
    const td = el('td', empty, 'empty');
    td.setAttribute('colspan', String(cols));
    fresh.append(el('tr', td));
  }
  for (const r of rows) {
    const tr = document.createElement('tr');
    for (const c of r) {
      if (Array.isArray(c)) tr.append(el('td', c[0], c[1]));
      else tr.append(el('td', c));
    }
    fresh.append(tr);
  }
  body.replaceWith(fresh);
}

/** @param {string} id @param {string | number} v */
function set(id, v) {
  const e = document.getElementById(id);
  if (e) e.textContent = String(v);
}

/** @param {number | null} s */
function age(s) {
  if (s === null || s === undefined) return '–';
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  if (s < 172800) return `${Math.round(s / 3600)} h`;
  return `${Math.round(s / 86400)} d`;
}

/** @param {string | null | undefined} iso */
const when = (iso) => (iso ? new Date(iso).toLocaleString() : '–');

/** A name as the API gives it; "(ech)" is a hidden ECH route, shown as such. */
const shown = (/** @type {string} */ n) => (n === '(ech)' ? el('span', n, 'hidden-name') : el('code', n));

function frag(/** @type {Node[]} */ nodes) {
  const f = document.createDocumentFragment();
  f.append(...nodes);
  return f;
}

async function counters() {
  const c = await get('/api/counters');
  set('c-total', c.connections.total);
  set('c-rate', `${c.connections.perSecond} /s`);
  set('c-open', c.open);
  set('c-window', c.windowS ? `rates over ${c.windowS} s` : '');
  set('e-accepted', c.ech.accepted);
  set('e-other', `rejected ${c.ech.rejected} · GREASE ${c.ech.grease} · malformed ${c.ech.malformed}`);
  set('d-total', c.dnsQueries.total);
  set('d-rate', `${c.dnsQueries.perSecond} /s`);
  fill(
    'outcomes',
    Object.keys(c.connections.byOutcome)
      .sort()
      .map((o) => [el('code', o), [c.connections.byOutcome[o], 'n'], [c.connections.perSecondByOutcome[o] ?? 0, 'n']]),
    'no connections yet',
  );
  fill(
    'failures',
    Object.keys(c.handshakeFailures)
      .sort()
      .map((r) => [el('code', r), [c.handshakeFailures[r], 'n']]),
  );
  fill(
    'alerts',
    Object.keys(c.handshakeFailuresByAlert)
      .sort()
      .map((a) => [el('code', a), [c.handshakeFailuresByAlert[a], 'n'], [c.handshakeFailuresByAlertPerSecond[a] ?? 0, 'n']]),
    'no alerts sent',
  );
  set('workers', c.workers ? `process group: ${c.workers.answered} of ${c.workers.running} workers answered` : '');
  // A process group (workers: 2+): each worker on its own, beside the group's sums above.
  const each = c.workers?.each;
  const section = document.getElementById('per-worker-section');
  if (section) section.hidden = !each;
  if (each) {
    fill(
      'per-worker',
      each.map((/** @type {any} */ w) => [
        [w.answered ? String(w.worker) : `${w.worker} (no answer)`, 'n'],
        [w.connections, 'n'],
        [w.connectionsPerSecond, 'n'],
        [w.open, 'n'],
        [w.relayed, 'n'],
        [w.handshakeFailures, 'n'],
        Object.keys(w.alerts).length
          ? Object.keys(w.alerts)
              .sort()
              .map((a) => `${a} ${w.alerts[a]}`)
              .join(', ')
          : '–',
        [w.errorsDropped ? `${w.errors} (+${w.errorsDropped} dropped)` : w.errors, 'n'],
      ]),
      'no worker answered',
    );
  }
}

async function structure() {
  const [eps, routers, services, keys, dns, errors] = await Promise.all(['/api/entrypoints', '/api/routers', '/api/services', '/api/keys', '/api/dns', '/api/errors'].map(get));
  fill('entrypoints', eps.map((/** @type {any} */ e) => [shown(e.name), el('code', e.address), [e.open, 'n'], [e.maxConnections, 'n'], e.echBackend ? 'yes' : '']));
  fill(
    'routers',
    routers.map((/** @type {any} */ r) => [shown(r.name), r.rule === '(ech)' ? shown(r.rule) : el('code', r.rule), shown(r.service), badge(r.tls), r.requireECH ? badge('requireECH', 'ok') : '', r.entryPoints.join(', '), [r.priority ?? 'auto', 'n']]),
  );
  fill(
    'services',
    services.map((/** @type {any} */ s) => [
      shown(s.name),
      s.kind === 'weighted' ? 'weighted' : s.healthCheck ? `loadBalancer (${s.up}/${s.servers.length} up)` : 'loadBalancer',
      s.kind === 'weighted'
        ? frag(s.services.map((/** @type {any} */ c) => badge(`${c.name} ×${c.weight}`)))
        : frag(s.servers.map((/** @type {any} */ v) => badge(`${v.address} ${v.health}`, v.health))),
    ]),
  );
  const rot = keys.rotation ? `rotation every ${age(keys.rotation.everyS)}, grace ${age(keys.rotation.graceS)}, published via ${keys.rotation.publish}; next: ${when(keys.nextRotation)}` : 'no automatic rotation (ech.rotation)';
  set('keys-info', keys.keysDir ? `${keys.keysDir} · ${rot}${keys.error ? ` · ${keys.error}` : ''}` : 'no ech section: ECH is off');
  fill(
    'keys',
    keys.keys.map((/** @type {any} */ k) => [
      [k.configId, 'n'],
      el('code', k.publicName),
      badge(k.state, k.state),
      k.suite ? `${k.suite.kem}; ${k.suite.symmetric.join(', ')}` : '–',
      age(k.ageS),
      when(k.notAfter),
    ]),
    'no keys',
  );
  /** @type {[string, string][]} */
  const kv = [['mode', dns.mode]];
  if (dns.embedded) kv.push(['embedded DNS', `port ${dns.embedded.port ?? '–'}${dns.embedded.doh ? `, DoH ${dns.embedded.doh}` : ''}, TTL ${dns.embedded.ttl} s, ${dns.embedded.names.length} names (ech= read from the key folder at query time)`]);
  if (dns.target) kv.push(['RFC 2136 target', `${dns.target.name} at ${dns.target.server}${dns.target.verifyDoh ? `, read back over ${dns.target.verifyDoh}` : ''}`]);
  const lp = dns.lastPublish;
  kv.push(['last publish', lp ? `${when(lp.at)}: ${lp.ok ? 'ok' : 'failed'} (${lp.name} → ${lp.server}, config_id ${lp.configIds.join(', ')}, TTL ${lp.ttl})${lp.error ? `: ${lp.error}` : ''}` : 'none by this process']);
  const rb = dns.lastReadBack;
  kv.push(['last read-back', rb ? `${when(rb.at)}: ${rb.ok ? `ech= matches (${rb.attempts} attempts)` : 'failed'} over ${rb.doh}${rb.error ? `: ${rb.error}` : ''}` : 'none by this process']);
  fill('dns', kv.map(([k, v]) => [[k, 'th'], v]));
  set('errors-info', errors.dropped ? `${errors.dropped} more not kept (rate limit)` : '');
  fill(
    'errors',
    errors.errors.map((/** @type {any} */ e) => [when(e.time), badge(e.level, e.level), e.msg, el('code', Object.entries(e.fields).map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`).join(' '))]),
    'no warnings or errors',
  );
}

/** Poll: counters every second, the rest every five. */
let ticks = 0;
async function tick() {
  try {
    await counters();
    if (ticks++ % 5 === 0) await structure();
    set('status', `updated ${new Date().toLocaleTimeString()}`);
  } catch (e) {
    set('status', `not updated: ${e instanceof Error ? e.message : e}`);
  }
  setTimeout(tick, 1000);
}
document.addEventListener('DOMContentLoaded', tick);
