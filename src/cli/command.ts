/** A command: its option spec (src/cli/args.ts) and what it runs with the parsed arguments. */
import type { Args, CommandSpec } from './args.js';

export interface Command {
  spec: CommandSpec;
  run(a: Args, out: (s: string) => void): Promise<number>;
}
