/** CPU time of a process (all threads) from /proc/PID/stat: utime + stime, in milliseconds. */
import { readFileSync } from 'node:fs';

const TICKS = 100; // sysconf(_SC_CLK_TCK) on Linux x86_64

export function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // fields[11] = utime, fields[12] = stime (after pid and comm were removed)
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / TICKS;
}
