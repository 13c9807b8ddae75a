// Mutation targets: what each mutates and which compiled test files exercise it
// (file names under dist/test/, without .test.js). Keep the test lists to the files
// that import or drive the code, so each mutant runs only a few seconds of tests.
// The small files of src/tls13 (everything but server.ts and client.ts).
const TLS13_REST = [
  'src/tls13/key-schedule.ts',
  'src/tls13/record-protection.ts',
  'src/tls13/ech-confirm.ts',
  'src/tls13/transcript.ts',
  'src/tls13/handshake-buffer.ts',
  'src/tls13/groups.ts',
  'src/tls13/certs.ts',
  'src/tls13/client-hello-builder.ts',
];

export const TARGETS = {
  tls13: {
    mutate: ['src/tls13/server.ts', 'src/tls13/client.ts', 'src/tls13/record-protection.ts', 'src/tls13/key-schedule.ts', 'src/tls13/ech-confirm.ts', 'src/tls13/transcript.ts', 'src/tls13/handshake-buffer.ts', 'src/tls13/client-hello-builder.ts', 'src/tls13/groups.ts', 'src/tls13/certs.ts'],
    tests: ['tls13-forgery', 'tls13-conformance', 'tls13', 'proxy-ech', 'ech-public-name', 'tls13-fuzz', 'mutation-killers-client', 'mutation-killers'],
  },
  // The engine's verification and alert code (RFC 8446 §4.1-§4.6, §5, §6; ECH §7):
  // the unit tests drive it in process, so the integration files are left out.
  'tls13-engine': {
    mutate: ['src/tls13/server.ts:239-310', 'src/tls13/server.ts:383-569', 'src/tls13/client.ts'],
    tests: ['tls13-forgery', 'tls13-conformance', 'tls13', 'proxy-ech', 'tls13-fuzz', 'mutation-killers-client', 'mutation-killers'],
  },
  // The whole client (RFC 8446 §4 from the client's side: ServerHello, HelloRetryRequest,
  // EncryptedExtensions, Certificate, CertificateVerify, Finished, post-handshake) with the
  // in-process engine tests only (no gateway); mutation-killers last, for before/after.
  'tls13-client': {
    mutate: ['src/tls13/client.ts'],
    tests: ['tls13-forgery', 'tls13-rfc8448-server', 'tls13', 'tls13-states', 'tls13-conformance', 'tls13-groups', 'tls13-fuzz', 'mutation-killers-client', 'mutation-killers'],
  },
  // The same without the slow files (tls13-groups, tls13-fuzz), for a loaded machine: a survivor
  // here may still die in those. tls13-conformance and tls13 (real peers) were left out from the
  // fourth to the sixth session: at load 17-20 one case of each failed Stryker's dry run (the
  // openssl KeyUpdate burst; the s_client ALPN case, whose stdin then closed 1 s after start).
  // Both wait for events now; back since 2026-12-03 after three passing dry runs at load 6-15.
  'tls13-client-fast': {
    mutate: ['src/tls13/client.ts'],
    tests: ['tls13-forgery', 'tls13-rfc8448-server', 'tls13-states', 'tls13-conformance', 'tls13', 'mutation-killers-client', 'mutation-killers'],
  },
  // The rest of src/tls13 (key schedule, record protection, groups, transcript, ECH
  // confirmation, certificates, the shared ClientHello builder).
  'tls13-rest': {
    mutate: TLS13_REST,
    tests: ['tls13-rfc8448-server', 'tls13-record-bulk', 'client-hello-builder', 'tls13-forgery', 'tls13', 'tls13-groups', 'tls13-conformance', 'tls13-states', 'mutation-killers', 'mutation-killers-tls13-rest'],
  },
  // The whole server engine (the proxy's data path; RFC 8446 §4-§6 from the server's side,
  // RFC 9849 §7) and the small tls13 files it uses, with the in-process test files that drive
  // TlsServer (tls13-groups and tls13-conformance start openssl s_client for a few cases;
  // tls13.test, whose s_client ALPN case closes its stdin 1 s after start, and the gateway files
  // that mostly reach the server through a child process are left out). The killer files last,
  // for before/after. Split it with MUTATION_PART and --mutate (server.ts, then the rest).
  'tls13-server': {
    mutate: [
      'src/tls13/server.ts',
      'src/tls13/record-protection.ts',
      'src/tls13/key-schedule.ts',
      'src/tls13/ech-confirm.ts',
      'src/tls13/transcript.ts',
      'src/tls13/handshake-buffer.ts',
      'src/tls13/groups.ts',
      'src/tls13/certs.ts',
    ],
    tests: [
      'tls13-forgery',
      'tls13-rfc8448-server',
      'tls13-record-bulk',
      'tls13-states',
      'ech-inner-version',
      'split-mode',
      'tls13-fuzz',
      'tls13-groups',
      'tls13-conformance',
      'ech-public-name',
      'mutation-killers-client',
      'mutation-killers',
      'mutation-killers-server',
      'mutation-killers-tls13-rest',
    ],
  },
  // The same with the killer files first and without ech-public-name (CLI child processes): on a
  // loaded machine most mutants die in the killer files' first second. killedBy then no longer
  // gives the score without the killer files ("before"), only the score with them.
  'tls13-server-fast': {
    mutate: ['src/tls13/server.ts'],
    tests: ['mutation-killers-server', 'mutation-killers', 'mutation-killers-client', 'tls13-server-flight', 'tls13-forgery', 'tls13-states', 'tls13-rfc8448-server', 'tls13-record-bulk', 'tls13-fuzz', 'tls13-conformance', 'tls13-groups'],
  },
  // The same code with test/mutation-killers first: much faster (most mutants die in its
  // first seconds), but killedBy then no longer tells the score without those tests.
  'tls13-engine-fast': {
    mutate: ['src/tls13/server.ts:239-310', 'src/tls13/server.ts:383-569', 'src/tls13/client.ts'],
    tests: ['mutation-killers', 'mutation-killers-client', 'tls13-forgery', 'tls13-conformance', 'tls13', 'proxy-ech', 'tls13-fuzz'],
  },
  ech: {
    // esni.ts (draft-ietf-tls-esni-02 ESNI) is exercised only by the esni test file;
    // esni-serve (21 s a run) drives it through the proxy and adds no check of its own.
    mutate: ['src/ech/server.ts', 'src/ech/client.ts', 'src/ech/esni.ts'],
    tests: ['ech', 'ech-bad-input', 'ech-inner-version', 'split-mode', 'tls13-forgery', 'proxy-ech', 'ech-public-name', 'esni', 'mutation-killers-ech', 'mutation-killers-esni', 'mutation-killers-client', 'mutation-killers'],
  },
  // Narrow runs for a busy machine: the decision code only, and only the in-process unit
  // test files (a surviving mutant runs every covering file, and the gateway-driven files
  // cost several seconds each without adding checks of these lines).
  'ech-checks': {
    mutate: ['src/ech/server.ts:105-220'],
    tests: ['ech', 'ech-bad-input', 'ech-inner-version', 'tls13-forgery', 'mutation-killers-ech', 'mutation-killers'],
  },
  'wire-tls-checks': {
    mutate: ['src/wire/tls/client-hello.ts:66-126', 'src/wire/tls/extensions.ts:27-71', 'src/wire/tls/extensions.ts:85-130', 'src/wire/tls/extensions.ts:205-223', 'src/wire/tls/record.ts:55-356', 'src/wire/tls/server-messages.ts:34-56', 'src/wire/tls/alert.ts:31-52'],
    tests: ['wire-tls', 'wire-tls-record', 'ech-bad-input', 'ech', 'mutation-killers-wire', 'mutation-killers'],
  },
  // Re-checking survivors of a whole run: give their lines with --mutate. They passed every
  // other file of their target in that run, so only the killer files need to run again
  // (valid while the source of those lines has not changed since the run).
  killers: {
    mutate: ['src/wire/tls/*.ts', 'src/ech/*.ts', 'src/tls13/*.ts'],
    tests: ['mutation-killers-wire', 'mutation-killers-ech', 'mutation-killers-esni', 'mutation-killers-client', 'mutation-killers', 'mutation-killers-tls13-rest', 'mutation-killers-ninth'],
  },
  // The decoders and framers of src/wire/tls with the codec tests only (about 15 s a surviving
  // mutant against about 45 s with the engine files on a loaded machine): a first pass that
  // lists the candidates; a survivor here may still die in an engine test (re-check its lines
  // with the wire-tls target).
  'wire-tls-codec': {
    mutate: ['src/wire/tls/client-hello.ts', 'src/wire/tls/esni.ts', 'src/wire/tls/extensions.ts', 'src/wire/tls/record.ts', 'src/wire/tls/server-messages.ts', 'src/wire/tls/alert.ts', 'src/wire/tls/byte-queue.ts'],
    tests: ['wire-tls', 'wire-tls-record', 'client-hello-scan', 'peek-robustness', 'ech-bad-input', 'esni', 'metrics-alerts', 'mutation-killers-wire', 'mutation-killers'],
  },
  hpke: {
    mutate: ['src/crypto/hpke.ts'],
    tests: ['hpke', 'mutation-killers-eighth', 'ech', 'ech-bad-input', 'mutation-killers'],
  },
  'wire-tls': {
    mutate: ['src/wire/tls/*.ts'],
    // Fast codec tests first (most mutants die there), the engine files after; esni for wire/tls/esni.ts.
    tests: ['wire-tls', 'wire-tls-record', 'client-hello-scan', 'peek-robustness', 'ech-bad-input', 'ech', 'tls13', 'tls13-conformance', 'tls13-fuzz', 'esni', 'mutation-killers-wire', 'mutation-killers'],
  },
  // tls13-rest for a loaded machine: the in-process test files only (tls13 and tls13-conformance,
  // whose real-peer cases cost seconds a surviving mutant, are left out; tls13-groups stays, the
  // groups' own tests, with four s_client cases). A survivor here may still die in those two files.
  'tls13-rest-fast': {
    mutate: TLS13_REST,
    tests: ['tls13-rfc8448-server', 'tls13-record-bulk', 'client-hello-builder', 'tls13-forgery', 'tls13-states', 'tls13-groups', 'mutation-killers', 'mutation-killers-tls13-rest'],
  },
  // Killer files first (2026-12-03): the fastest way to get Stryker's own "after" figure
  // (the score with every test file) for lines whose killers are written. Most mutants die in
  // the killer files' first second; a survivor still runs every other file of the list, so the
  // figure is the same as with the killers last. killedBy then no longer gives "before".
  // Same test files as tls13-client-fast, tls13-rest-fast, wire-tls-codec and ech, reordered.
  'tls13-client-kfirst': {
    mutate: ['src/tls13/client.ts'],
    tests: ['mutation-killers-client', 'mutation-killers', 'tls13-forgery', 'tls13-rfc8448-server', 'tls13-states', 'tls13-conformance', 'tls13'],
  },
  'tls13-rest-kfirst': {
    mutate: TLS13_REST,
    tests: ['mutation-killers-tls13-rest', 'mutation-killers', 'tls13-server-flight', 'tls13-rfc8448-server', 'tls13-record-bulk', 'client-hello-builder', 'tls13-forgery', 'tls13-states', 'tls13-groups'],
  },
  // The server flight's encoders and the key schedule's one-call labels (2026-12-03): the files they touch, their tests first.
  'tls13-flight-kfirst': {
    mutate: ['src/tls13/server.ts', 'src/tls13/key-schedule.ts', 'src/tls13/transcript.ts', 'src/tls13/ech-confirm.ts', 'src/wire/tls/server-messages.ts'],
    // mutation-killers-ninth, tls13-key-schedule-pairs and tls13-record-chunk added for the eighth session's
    // cost changes (key schedule pairs, record chunking; docs/mutation.md, mut4 runs m9a/m9b).
    tests: ['tls13-server-flight', 'mutation-killers-eighth', 'mutation-killers-ninth', 'tls13-key-schedule-pairs', 'tls13-record-chunk', 'mutation-killers-server', 'mutation-killers-tls13-rest', 'mutation-killers-wire', 'mutation-killers', 'mutation-killers-client', 'tls13-rfc8448-server', 'tls13-forgery', 'tls13-states', 'tls13-groups', 'tls13-record-bulk', 'tls13', 'esni'],
  },
  // The short HMAC-SHA-256 in JS (src/crypto/sha256.ts) that the HPKE and TLS 1.3 key schedules use.
  'crypto-sha256': {
    mutate: ['src/crypto/sha256.ts'],
    tests: ['crypto-sha256', 'hpke', 'mutation-killers-tls13-rest'],
  },
  'wire-tls-codec-kfirst': {
    mutate: ['src/wire/tls/client-hello.ts', 'src/wire/tls/esni.ts', 'src/wire/tls/extensions.ts', 'src/wire/tls/record.ts', 'src/wire/tls/server-messages.ts', 'src/wire/tls/alert.ts', 'src/wire/tls/byte-queue.ts'],
    tests: ['client-hello-scan', 'mutation-killers-wire', 'mutation-killers', 'wire-tls', 'wire-tls-record', 'peek-robustness', 'ech-bad-input', 'esni', 'metrics-alerts'],
  },
  // The ninth session's new code in src/tls13 and src/wire/tls (2026-12-03: record-crypto.ts, the key
  // schedule's HMAC pair, Transcript.addMessage, certs' signature view, the index-based extension
  // decoders): its new test files first, then tls13-rest-kfirst's and wire-tls-codec-kfirst's lists.
  // Run it over the changed line ranges with --mutate (docs/mutation.md, ninth session).
  'ninth-kfirst': {
    mutate: ['src/tls13/record-crypto.ts', 'src/tls13/record-protection.ts', 'src/tls13/key-schedule.ts', 'src/tls13/transcript.ts', 'src/tls13/certs.ts', 'src/wire/tls/extensions.ts', 'src/wire/tls/client-hello.ts'],
    tests: [
      'tls13-record-chunk',
      'tls13-key-schedule-pairs',
      'extensions-index',
      'mutation-killers-ninth',
      'mutation-killers-tls13-rest',
      'mutation-killers-wire',
      'mutation-killers',
      'client-hello-scan',
      'tls13-server-flight',
      'tls13-rfc8448-server',
      'tls13-record-bulk',
      'client-hello-builder',
      'tls13-forgery',
      'tls13-states',
      'wire-tls',
      'wire-tls-record',
      'peek-robustness',
      'ech-bad-input',
      'esni',
      'metrics-alerts',
      'tls13-groups',
    ],
  },
  // The one relay (src/proxy/relay.ts: backpressure both ways, half-close, the shared listeners, the
  // pooled read buffers; 2026-12-03). relay-killers first (a few seconds: the survivors of the eleventh
  // session, docs/mutation.md "Relay, eleventh session (relaymut)"), then relay-backpressure: each of its
  // cases fails when a pause is lost, in any of the four handlers. proxy.test and proxy-deadlines (12-13 s
  // each at load 13) are left out; a survivor here may still die there.
  relay: {
    mutate: ['src/proxy/relay.ts'],
    tests: ['relay-killers', 'relay-backpressure', 'backend-closed', 'relay-early-eof', 'proxy-relay', 'robust-terminate-eof', 'split-mode', 'proxy-terminate-seal', 'tls12-termination', 'proxy-idle'],
  },
  // The DNS message codec and its limits (2026-12-03, eleventh session): RFC 1035 §4.1 sections and
  // counts, §4.1.4 compression, §2.3.4 the 255-octet name; FORMERR; the answer match (RFC 5452 §9.1);
  // TSIG verification (RFC 8945 §5.3); SVCB wire RDATA (RFC 9460 §2.2). In-process test files only
  // (dns-robustness and doh start child processes and servers: left out; a survivor may die there).
  'wire-dns': {
    mutate: ['src/wire/dns/message.ts', 'src/wire/dns/name.ts', 'src/wire/dns/tsig.ts', 'src/wire/dns/svcb.ts'],
    tests: ['mutation-killers-dns', 'svcb', 'dns-update', 'doh-request', 'dns-answer-cache', 'dns-answer-held', 'dns-udp-shared'],
  },
  // The DoH server's request handling (RFC 8484 §4.1, RFC 9113 §6.5.2): dohRequestStep, the header-list
  // size, the 64 KiB body limit, answers (2026-12-03, eleventh session).
  'doh-server': {
    mutate: ['src/dns/doh-server.ts'],
    tests: ['mutation-killers-dns', 'mutation-killers-doh', 'doh-request', 'doh-server', 'dns-doh-frames', 'doh-deadline', 'doh-idle-clock', 'doh-late-write'],
  },
  // Split mode after the first hello (RFC 9849 §3.1, §7.1.1): the second ClientHello rewritten, the rest as it is.
  split: {
    mutate: ['src/proxy/split.ts'],
    tests: ['mutation-killers-split', 'split-rest', 'split-mode', 'ech-inner-encode', 'wire-tls-record', 'proxy-relay'],
  },
  // PROXY protocol v1/v2 headers (sender side only: echgate parses none).
  'proxy-protocol': {
    mutate: ['src/wire/proxy/proxy-protocol.ts'],
    tests: ['proxy'],
  },
  // ECHConfigList decoding and usability (RFC 9849 §4, §4.2, §6.1.7): the lists a client takes from DNS
  // (remote bytes) and the server's key files. In-process files only (twelfth session, tests).
  'wire-ech': {
    mutate: ['src/wire/ech/config.ts', 'src/wire/ech/usable.ts'],
    tests: ['mutation-killers-wire-ech', 'ech', 'ech-bad-input', 'ech-inner-encode', 'mutation-killers-ech', 'proxy-ech-classifier', 'keys'],
  },
  // The PostgreSQL startup preamble (protocol 3.0 §55.2.10, SSLRequest/GSSENCRequest/CancelRequest):
  // the client's first bytes before TLS, remote input (twelfth session, tests).
  preamble: {
    mutate: ['src/proxy/protocols/postgres.ts', 'src/proxy/preamble.ts'],
    tests: ['mutation-killers-preamble', 'postgres-preamble'],
  },
  // The DNS server's answers to remote queries (RFC 1035 §4.1.1 FORMERR/NOTIMP/REFUSED, RFC 6891 §6.1.1,
  // §6.1.3, §6.2.5 the UDP payload limit, RFC 9619 one question) and its TCP framing (RFC 7766 §6.2.1).
  // In-process files only: dns-robustness (about 20 s, child processes) is left out (twelfth session, tests).
  'dns-answer': {
    mutate: ['src/dns/answer.ts', 'src/dns/dns-server.ts:120-250'],
    tests: ['mutation-killers-dns-answer', 'dns-server', 'dns-answer-cache', 'dns-answer-held', 'dns-udp-shared', 'dns-query-counter'],
  },
  // DNS answers echgate reads (remote bytes): the DoH client's response checks (RFC 8484 §4.2, §5.1
  // Cache-Control, RFC 5452 §9.1 the match) and the resolver's freshness (RFC 8767, RFC 2308 §5).
  // In-process files only: dns-robustness (20 s, child processes) is left out (twelfth session, tests).
  'dns-client': {
    mutate: ['src/dns/doh-client.ts', 'src/dns/resolver.ts'],
    tests: ['resolver', 'doh', 'doh-server', 'mutation-killers-dns-client'],
  },
  'ech-kfirst': {
    mutate: ['src/ech/server.ts', 'src/ech/client.ts', 'src/ech/esni.ts'],
    tests: ['mutation-killers-ech', 'mutation-killers-esni', 'mutation-killers-client', 'mutation-killers', 'ech', 'ech-bad-input', 'ech-inner-version', 'split-mode', 'tls13-forgery', 'proxy-ech', 'ech-public-name', 'esni'],
  },
};

/** Accept a target name or the folder/file it covers (src/tls13, src/crypto/hpke.ts, src/wire/tls). */
export function targetFor(arg) {
  if (TARGETS[arg]) return arg;
  const a = arg.replace(/\/$/, '');
  if (a === 'src/tls13') return 'tls13';
  if (a === 'src/ech' || a === 'src/ech/server.ts') return 'ech';
  if (a === 'src/crypto/hpke.ts') return 'hpke';
  if (a === 'src/proxy/relay.ts') return 'relay';
  if (a === 'src/wire/tls') return 'wire-tls';
  if (a === 'src/tls13/server.ts' || a === 'src/tls13/client.ts') return 'tls13-engine';
  return undefined;
}
