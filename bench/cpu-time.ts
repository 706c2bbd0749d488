/**
 * Time measures for benchmarks on a shared machine: wall time misleads there (another
 * process takes the core), so every measure reports the calling thread's CPU time too.
 *
 * Thread CPU time is the first field of /proc/thread-self/schedstat (ns the thread ran,
 * exact); where that file is missing, process.cpuUsage() (µs, every thread of the process:
 * JIT and GC threads included, so it reads high).
 */
import { readFileSync } from "node:fs";

const SCHEDSTAT_PATH = "/proc/thread-self/schedstat";

function schedstatNs(): number | undefined {
  try {
    const text = readFileSync(SCHEDSTAT_PATH, "latin1");
    const ns = Number(text.slice(0, text.indexOf(" ")));
    return Number.isFinite(ns) && ns > 0 ? ns : undefined;
  } catch {
    return undefined;
  }
}

const hasSchedstat = schedstatNs() !== undefined;

/** Where threadCpuNs() reads from, for the benchmarks' JSON. */
export const THREAD_CPU_SOURCE = hasSchedstat ? `${SCHEDSTAT_PATH} (this thread, ns)` : "process.cpuUsage() (whole process, µs)";

/** CPU time of the calling thread so far, ns (see THREAD_CPU_SOURCE). */
export function threadCpuNs(): number {
  if (hasSchedstat) return schedstatNs()!;
  const u = process.cpuUsage();
  return (u.user + u.system) * 1000;
}

/** Wall and thread CPU time of one piece of work, ns. */
export interface Timed {
  wallNs: number;
  cpuNs: number;
}

/** Time `work` once: wall clock and thread CPU. */
export function timed(work: () => void): Timed {
  const c0 = threadCpuNs();
  const w0 = Bun.nanoseconds();
  work();
  const wallNs = Bun.nanoseconds() - w0;
  return { wallNs, cpuNs: threadCpuNs() - c0 };
}

/** Async form of timed(): the thread's CPU time includes whatever else ran on it meanwhile. */
export async function timedAsync(work: () => Promise<void>): Promise<Timed> {
  const c0 = threadCpuNs();
  const w0 = Bun.nanoseconds();
  await work();
  const wallNs = Bun.nanoseconds() - w0;
  return { wallNs, cpuNs: threadCpuNs() - c0 };
}

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** Samples of one configuration, per unit of work (a decision, a call, a fault...). */
export class Samples {
  readonly wall: number[] = [];
  readonly cpu: number[] = [];

  add(t: Timed, units: number): void {
    this.wall.push(t.wallNs / units);
    this.cpu.push(t.cpuNs / units);
  }

  /** Medians per unit, ns, rounded to `digits` decimals. */
  summary(digits = 1): { cpu_ns: number; wall_ns: number } {
    const r = (x: number) => +x.toFixed(digits);
    return { cpu_ns: r(median(this.cpu)), wall_ns: r(median(this.wall)) };
  }
}

/**
 * Run `rounds` rounds over `configs`, interleaved: round r visits them in order, round r+1
 * in reverse (ABAB, then BA...), so drift and noise hit every configuration alike.
 */
export async function interleave(rounds: number, configs: readonly (() => void | Promise<void>)[]): Promise<void> {
  for (let r = 0; r < rounds; r++) {
    const order = r % 2 === 0 ? configs : [...configs].reverse();
    for (const c of order) await c();
  }
}
