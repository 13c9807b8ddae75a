/**
 * The ECH measurement in a process of its own: the load generator's heap
 * (tens of thousands of finished sockets) is not echgate's, and V8 charges
 * incremental-marking work to whoever allocates, so measuring beside it
 * would weigh on the side that allocates more. Prints the result as JSON.
 */
import { echBench } from './ech.js';

process.stdout.write(`${JSON.stringify(echBench(Number(process.argv[2] ?? 20000)))}\n`);
