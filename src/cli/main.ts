/**
 * echgate command dispatch. One file per command, each with its option spec.
 * Exit codes (docs/cli.md): 0 success, 1 the command ran and failed, 2 a
 * usage error (unknown command or option, missing or malformed value).
 */
import { ConfigError, isEchgateError } from '../errors.js';
import { closest, helpText, parseCommand } from './args.js';
import { check } from './check.js';
import type { Command } from './command.js';
import { connect } from './connect.js';
import { convert } from './convert.js';
import { fleetCommands } from './fleet.js';
import { inspect } from './inspect.js';
import { keysCommands } from './keys.js';
import { publish } from './publish.js';
import { resolve } from './resolve.js';
import { serve } from './serve.js';
import { leaveGroup } from './workers.js';

const COMMANDS: Record<string, Command> = { serve, check, convert, inspect, connect, resolve, publish };

/** Every command as typed ("serve", "keys rotate") with its spec: for --help, tests and docs. */
export function allCommands(): { name: string; spec: Command['spec'] }[] {
  return [...Object.values(COMMANDS), ...Object.values(keysCommands), ...Object.values(fleetCommands)].map((c) => ({ name: c.spec.name, spec: c.spec }));
}

function table(rows: [string, string][]): string {
  const w = Math.max(...rows.map((r) => r[0].length));
  return rows.map(([a, b]) => `  ${a.padEnd(w)}  ${b}`).join('\n');
}

export const USAGE = `usage: echgate <command> [options]

${table([
  ...Object.entries(COMMANDS).map(([n, c]): [string, string] => [n, c.spec.summary]),
  ...Object.entries(keysCommands).map(([n, c]): [string, string] => [`keys ${n}`, c.spec.summary]),
  ...Object.entries(fleetCommands).map(([n, c]): [string, string] => [`fleet ${n}`, c.spec.summary]),
])}

echgate <command> --help lists a command's options.
Exit codes: 0 success, 1 the command failed, 2 usage error.
`;

const KEYS_USAGE = `usage: echgate keys <command> [options]

${table(Object.entries(keysCommands).map(([n, c]): [string, string] => [n, c.spec.summary]))}

echgate keys <command> --help lists its options.
`;

const FLEET_USAGE = `usage: echgate fleet <command> [options]

${table(Object.entries(fleetCommands).map(([n, c]): [string, string] => [n, c.spec.summary]))}

echgate fleet <command> --help lists its options.
`;

/** Commands with subcommands: echgate keys <cmd>, echgate fleet <cmd>. */
const GROUPS: Record<string, { usage: string; commands: Record<string, Command> }> = {
  keys: { usage: KEYS_USAGE, commands: keysCommands },
  fleet: { usage: FLEET_USAGE, commands: fleetCommands },
};

function unknownCommand(what: string, typed: string, names: string[], usage: string): number {
  const near = closest(typed, names);
  process.stderr.write(`echgate: unknown ${what} "${typed}"${near ? ` (did you mean "${near}"?)` : ''}\n\n${usage}`);
  return 2;
}

async function runCommand(c: Command, argv: string[], out: (s: string) => void): Promise<number> {
  const a = parseCommand(c.spec, argv);
  if (a.help) {
    out(helpText(c.spec));
    return 0;
  }
  return c.run(a, out);
}

export async function main(argv: string[]): Promise<number> {
  const out = (s: string) => process.stdout.write(s);
  const [cmd, ...rest] = argv;
  try {
    if (cmd === undefined) {
      process.stderr.write(USAGE);
      return 2;
    }
    if (cmd === 'help' || cmd === '--help' || cmd === '-h') {
      out(USAGE);
      return 0;
    }
    const group = GROUPS[cmd];
    if (group) {
      const [sub, ...subRest] = rest;
      if (sub === undefined) {
        process.stderr.write(group.usage);
        return 2;
      }
      if (sub === 'help' || sub === '--help' || sub === '-h') {
        out(group.usage);
        return 0;
      }
      const k = group.commands[sub];
      if (!k) return unknownCommand(`${cmd} command`, sub, Object.keys(group.commands), group.usage);
      return await runCommand(k, subRest, out);
    }
    const c = COMMANDS[cmd];
    if (!c) return unknownCommand('command', cmd, [...Object.keys(COMMANDS), ...Object.keys(GROUPS)], USAGE);
    // A worker of a process group leaves it once drained, or its IPC channel would keep it alive.
    if (c === serve) return await runCommand(c, rest, out).finally(leaveGroup);
    return await runCommand(c, rest, out);
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
