/** echgate command dispatch. One file per command. */
import { ConfigError } from '../config/validate.js';
import { isEchgateError } from '../errors.js';
import { parseArgs } from './args.js';
import { checkCommand } from './check.js';
import { connectCommand } from './connect.js';
import { inspectCommand } from './inspect.js';
import { keysCommand } from './keys.js';
import { publishCommand } from './publish.js';
import { resolveCommand } from './resolve.js';
import { serveCommand } from './serve.js';
import { leaveGroup } from './workers.js';

const USAGE = `usage: echgate <command> [options]

  serve   [--config FILE | --demo]        run the proxy (no --config: the embedded demo)
  check   --config FILE                   validate a configuration
  inspect [--hex] [--keys DIR] FILE|-     decode a captured ClientHello to JSON (with --keys: decrypt ECH)
  keys    generate|list|rotate|retire|export [--dir keys]   manage ECH keys (RFC 9934 PEM files)
  connect HOST:PORT --sni NAME [--ech-config B64 | --keys DIR] [--alpn LIST] [--send TEXT] [--ca FILE] [--retry] [--hello-retry] [--groups LIST]
                                          TLS 1.3 (+ECH) handshake and one request; JSON report
  resolve NAME --doh URL [--type HTTPS] [--post] [--ca FILE]   one DNS-over-HTTPS query; JSON (ech= decoded)
  publish --name HOST --server HOST:PORT --zone ZONE [--tsig-key FILE] [--verify-doh URL]
                                          put the active ECHConfigList in DNS (RFC 2136 + TSIG), read it back over DoH
`;

const BOOLEANS = ['demo', 'hex', 'json', 'help', 'trial-decrypt', 'retry', 'post', 'publish', 'hello-retry'];

export async function main(argv: string[]): Promise<number> {
  const out = (s: string) => process.stdout.write(s);
  const [cmd, ...rest] = argv;
  try {
    const a = parseArgs(rest, BOOLEANS);
    switch (cmd) {
      case 'serve':
        // A worker of a process group leaves it once drained, or its IPC channel would keep it alive.
        return await serveCommand(a, out).finally(leaveGroup);
      case 'check':
        return await checkCommand(a, out);
      case 'inspect':
        return await inspectCommand(a, out);
      case 'keys':
        return await keysCommand(a, out);
      case 'connect':
        return await connectCommand(a, out);
      case 'resolve':
        return await resolveCommand(a, out);
      case 'publish':
        return await publishCommand(a, out);
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        out(USAGE);
        return cmd === undefined ? 2 : 0;
      default:
        process.stderr.write(`echgate: unknown command "${cmd}"\n${USAGE}`);
        return 2;
    }
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`echgate: invalid configuration\n${e.problems.map((p) => `  ${e.file}: ${p.path}: ${p.message}`).join('\n')}\n`);
      return 1;
    }
    if (isEchgateError(e)) {
      process.stderr.write(`echgate: ${e.message} [${e.code}]\n`);
      return e.code === 'ERR_USAGE' ? 2 : 1;
    }
    throw e;
  }
}
