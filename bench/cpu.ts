/** CPU time of a process (all threads) from /proc/PID/stat: utime + stime, in milliseconds. */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

const TICKS = 100; // sysconf(_SC_CLK_TCK) on Linux x86_64

export function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // fields[11] = utime, fields[12] = stime (after pid and comm were removed)
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / TICKS;
}

/**
 * CPU time of a process in nanoseconds: the sum of every thread's
 * sum_exec_runtime (/proc/PID/task/TID/schedstat, first field). cpuMs counts
 * 10 ms ticks, too coarse for the difference of two short slices (the
 * route-only ECH row; docs/benchmarks.md, "Relaying cost, third pass").
 */
export function cpuNs(pid: number): number {
  let ns = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
    } catch {
      // The thread ended between the listing and the read.
    }
  }
  return ns;
}

/** Pin every thread of `pid` to the CPU list `cpus` (taskset); false when taskset is missing or refuses. */
export function pin(pid: number, cpus: string): boolean {
  try {
    execFileSync('taskset', ['-a', '-cp', cpus, String(pid)], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
