/**
 * Another process measured from outside, through /proc: its CPU time, its memory, and the
 * emulated SVM child an agent starts on a host without GPU (runtime/agent/emu-svm-source.ts).
 */
import { readdirSync, readFileSync } from "node:fs";
import { EMU_SVM_CHILD_COMMAND } from "../runtime/agent/emu-svm-source.ts";

/** Clock ticks per second of /proc/PID/stat's utime and stime (USER_HZ on Linux). */
const CLK_TCK = 100;

/** Fields of /proc/PID/stat after the command name: [0] state, [1] ppid, [11] utime, [12] stime. */
function statFields(pid: number): string[] {
  const f = readFileSync(`/proc/${pid}/stat`, "utf8");
  return f.slice(f.lastIndexOf(")") + 2).split(" ");
}

/** User + system CPU time of `pid` so far, s. */
export function procCpuS(pid: number): number {
  const r = statFields(pid);
  return (Number(r[11]) + Number(r[12])) / CLK_TCK;
}

/** Resident memory of `pid`, MB (MiB): all of it, its anonymous part, and its peak. */
export function procMem(pid: number): { rssMB: number; anonMB: number; hwmMB: number } {
  const s = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(s)?.[1] ?? Number.NaN);
  return { rssMB: kb("VmRSS") / 1024, anonMB: kb("RssAnon") / 1024, hwmMB: kb("VmHWM") / 1024 };
}

/** The pid of `parent`'s child running the emulated SVM source, or undefined (none, or not yet). */
export function emuSvmChildOf(parent: number): number | undefined {
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const r = statFields(Number(name));
      if (Number(r[1]) === parent && r[0] !== "Z" && readFileSync(`/proc/${name}/cmdline`, "utf8").includes(EMU_SVM_CHILD_COMMAND)) return Number(name);
    } catch {
      // Ended while being read.
    }
  }
  return undefined;
}
