/**
 * Trace input (docs/workloads.md): recorded KFD SMI event text (as read from the SMI_EVENTS
 * fd, several pids, old and new MIGRATE_END formats) or the JSONL access-trace format,
 * turned into a Workload of timed accesses per (pid, agent).
 *
 * SMI text gives: PAGE_FAULT_START -> a GPU access (R/W) at the faulting page;
 * MIGRATE_START with trigger PAGEFAULT_CPU -> a CPU access at the window start; with trigger
 * PREFETCH -> a PREFETCH_LOC hint over the window. Every other event id is checked for its
 * format and otherwise skipped. GPUs are matched to the profile's in order of first appearance.
 *
 * A malformed line is never skipped silently: with `onBadLine: "stop"` it is a ConfigError
 * at file:line:col; with "skip" it is reported through `warn` and counted.
 */
import { ConfigError } from "../errors.ts";
import { SMI_EVENT, SVM_ATTR, UNREGISTERED_ALIGN_PAGES } from "../svm/constants.ts";
import type { MachineProfile } from "./profile.ts";
import { AGENT_CPU, type HintSpec, type OpSpec, type Workload } from "./workload.ts";

export type OnBadLine = "skip" | "stop";

export interface TraceOptions {
  onBadLine: OnBadLine;
  /** Where skipped lines are reported (one line each, file:line: reason). */
  warn: (text: string) => void;
}

export interface TraceWorkload extends Workload {
  badLines: number;
  lines: number;
}

/** Bounds on a trace. */
export const TRACE_BOUNDS = {
  /** Most lines read, and most accesses kept. */
  lines_max: 50_000_000,
  /** Most bad lines reported one by one before a summary line. */
  bad_lines_reported_max: 20,
  /** Longest line, characters (SMI records are at most 96 bytes). */
  line_chars_max: 4096,
  /** Most pages one JSONL record may cover. */
  record_pages_max: 262_144,
} as const;

interface Acc {
  t: number;
  page: number;
  write: boolean;
}

const RE_SMI = /^([0-9a-f]+) (.*)$/;
const RE_FAULT = /^(\d+) -(\d+) @([0-9a-f]+)\(([0-9a-f]+)\) ([RWMU])$/;
const RE_MIG_START = /^(\d+) -(\d+) @([0-9a-f]+)\(([0-9a-f]+)\) ([0-9a-f]+)->([0-9a-f]+) ([0-9a-f]+):([0-9a-f]+) (\d+)$/;
const RE_MIG_END = /^(\d+) -(\d+) @([0-9a-f]+)\(([0-9a-f]+)\) ([0-9a-f]+)->([0-9a-f]+) (\d+)(?: (-?\d+))?$/;
const RE_QUEUE = /^(\d+) -(\d+) ([0-9a-f]+) ([0-9a-fR])$/;
const RE_UNMAP = /^(\d+) -(\d+) @([0-9a-f]+)\(([0-9a-f]+)\) ([0-9a-f]+) (\d+)$/;
const RE_PROC = /^[0-9a-f]+[ :].*$/;

/** Parse a trace's text into a workload for `profile`. @throws ConfigError (stop mode). */
export function parseTrace(file: string, text: string, profile: MachineProfile, opts: TraceOptions): TraceWorkload {
  const streams = new Map<string, { pid: number; agent: number; acc: Acc[] }>();
  const hints: { t: number; pid: number; start: number; npages: number; loc: number }[] = [];
  const gpuOf = new Map<number, number>();
  const span = new Map<number, { lo: number; hi: number }>();
  let bad = 0;
  let t0 = Number.NaN;
  const lines = text.split("\n");
  if (lines.length > TRACE_BOUNDS.lines_max) {
    throw new ConfigError({ file, line: TRACE_BOUNDS.lines_max + 1, col: 1 }, "", `at most ${TRACE_BOUNDS.lines_max} lines`);
  }
  const badLine = (ln: number, col: number, reason: string): void => {
    if (opts.onBadLine === "stop") throw new ConfigError({ file, line: ln, col }, "", reason);
    bad++;
    if (bad <= TRACE_BOUNDS.bad_lines_reported_max) opts.warn(`${file}:${ln}:${col}: skipped: ${reason}`);
  };
  const touch = (pid: number, page: number, npages: number): void => {
    const s = span.get(pid);
    if (s === undefined) span.set(pid, { lo: page, hi: page + npages - 1 });
    else {
      s.lo = Math.min(s.lo, page);
      s.hi = Math.max(s.hi, page + npages - 1);
    }
  };
  const add = (t: number, pid: number, agent: number, page: number, write: boolean): void => {
    const key = `${pid}/${agent}`;
    let s = streams.get(key);
    if (s === undefined) {
      s = { pid, agent, acc: [] };
      streams.set(key, s);
    }
    if (!(t >= t0)) t0 = t; // the earliest time (NaN: none yet) is time zero
    s.acc.push({ t, page, write });
    touch(pid, page, 1);
  };
  /** The profile GPU index for a trace gpu_id, or -1 when the profile has too few. */
  const gpuIndex = (node: number): number => {
    let g = gpuOf.get(node);
    if (g === undefined) {
      if (gpuOf.size >= profile.gpus.length) return -1;
      g = gpuOf.size;
      gpuOf.set(node, g);
    }
    return g;
  };
  const jsonl = /\.jsonl$/.test(file) || /^\s*\{/.test(lines.find((l) => l.trim() !== "") ?? "");
  for (let i = 0; i < lines.length; i++) {
    const ln = i + 1;
    const line = lines[i]!.replace(/\r$/, "");
    if (line.trim() === "" || line.startsWith("#")) continue;
    if (line.length > TRACE_BOUNDS.line_chars_max) {
      badLine(ln, 1, `a line of at most ${TRACE_BOUNDS.line_chars_max} characters`);
      continue;
    }
    if (jsonl) {
      let rec: unknown;
      try {
        rec = JSON.parse(line);
      } catch (e) {
        badLine(ln, 1, `a JSON object (${(e as Error).message})`);
        continue;
      }
      const r = rec as Record<string, unknown>;
      if (typeof rec !== "object" || rec === null || Array.isArray(rec)) {
        badLine(ln, 1, "a JSON object");
        continue;
      }
      const tNs = r.t_ns;
      const pid = r.pid ?? 4242;
      const agent = r.agent;
      const page = typeof r.page === "string" && /^0x[0-9a-f]+$/i.test(r.page) ? Number.parseInt(r.page, 16) : r.page;
      const write = r.write ?? false;
      const npages = r.pages ?? 1;
      let agentIdx = -2;
      if (agent === "cpu") agentIdx = AGENT_CPU;
      else if (typeof agent === "string" && /^gpu\d+$/.test(agent) && Number(agent.slice(3)) < profile.gpus.length) agentIdx = Number(agent.slice(3));
      if (typeof tNs !== "number" || !(tNs >= 0)) badLine(ln, 1, "t_ns: a number of ns >= 0");
      else if (typeof pid !== "number" || !Number.isInteger(pid) || pid <= 0) badLine(ln, 1, "pid: a positive integer");
      else if (agentIdx === -2) badLine(ln, 1, `agent: cpu or gpu0..gpu${profile.gpus.length - 1}`);
      else if (typeof page !== "number" || !Number.isSafeInteger(page) || page < 0) badLine(ln, 1, "page: an integer page number or a 0x hex string");
      else if (typeof write !== "boolean") badLine(ln, 1, "write: true or false");
      else if (typeof npages !== "number" || !Number.isInteger(npages) || npages < 1 || npages > TRACE_BOUNDS.record_pages_max) {
        badLine(ln, 1, `pages: an integer from 1 to ${TRACE_BOUNDS.record_pages_max}`);
      } else {
        const unknown = Object.keys(r).find((k) => !["t_ns", "pid", "agent", "page", "write", "pages"].includes(k));
        if (unknown !== undefined) badLine(ln, 1, `only the keys t_ns, pid, agent, page, write, pages (got ${unknown})`);
        else for (let k = 0; k < npages; k++) add(tNs, pid, agentIdx, page + k, write);
      }
      continue;
    }
    const m = RE_SMI.exec(line);
    if (m === null) {
      badLine(ln, 1, "an SMI event: '<hex id> <payload>'");
      continue;
    }
    const id = Number.parseInt(m[1]!, 16);
    const payload = m[2]!;
    const col = m[1]!.length + 2;
    switch (id) {
      case SMI_EVENT.PAGE_FAULT_START:
      case SMI_EVENT.PAGE_FAULT_END: {
        const f = RE_FAULT.exec(payload);
        const startKind = id === SMI_EVENT.PAGE_FAULT_START;
        if (f === null || (startKind ? !/[RW]/.test(f[5]!) : !/[MU]/.test(f[5]!))) {
          badLine(ln, col, `PAGE_FAULT_${startKind ? "START: 'ns -pid @addr(node) R|W'" : "END: 'ns -pid @addr(node) M|U'"}`);
          break;
        }
        if (!startKind) break;
        const g = gpuIndex(Number.parseInt(f[4]!, 16));
        if (g < 0) {
          badLine(ln, col, `a GPU of profile ${profile.name}: the trace names more than ${profile.gpus.length} gpu_ids`);
          break;
        }
        add(Number(f[1]), Number(f[2]), g, Number.parseInt(f[3]!, 16), f[5] === "W");
        break;
      }
      case SMI_EVENT.MIGRATE_START: {
        const f = RE_MIG_START.exec(payload);
        if (f === null) {
          badLine(ln, col, "MIGRATE_START: 'ns -pid @start(size) from->to prefetch_loc:preferred_loc trigger'");
          break;
        }
        const trig = Number(f[9]);
        const t = Number(f[1]);
        const pid = Number(f[2]);
        const start = Number.parseInt(f[3]!, 16);
        const npages = Number.parseInt(f[4]!, 16);
        if (trig > 3 || npages === 0) {
          badLine(ln, col, "MIGRATE_START trigger 0..3 and a size above 0");
          break;
        }
        if (trig === 2) add(t, pid, AGENT_CPU, start, false);
        else if (trig === 0) {
          const to = Number.parseInt(f[6]!, 16);
          let loc = 0;
          if (to !== 0) {
            const g = gpuIndex(to);
            if (g < 0) {
              badLine(ln, col, `a GPU of profile ${profile.name}: the trace names more than ${profile.gpus.length} gpu_ids`);
              break;
            }
            loc = profile.gpus[g]!.id;
          }
          if (!(t >= t0)) t0 = t; // the earliest time (NaN: none yet) is time zero
          hints.push({ t, pid, start, npages, loc });
          touch(pid, start, npages);
        }
        break;
      }
      case SMI_EVENT.MIGRATE_END:
        if (RE_MIG_END.exec(payload) === null) badLine(ln, col, "MIGRATE_END: 'ns -pid @start(size) from->to trigger [error_code]'");
        break;
      case SMI_EVENT.QUEUE_EVICTION:
      case SMI_EVENT.QUEUE_RESTORE:
        if (RE_QUEUE.exec(payload) === null) badLine(ln, col, "QUEUE_EVICTION/RESTORE: 'ns -pid node trigger'");
        break;
      case SMI_EVENT.UNMAP_FROM_GPU:
        if (RE_UNMAP.exec(payload) === null) badLine(ln, col, "UNMAP_FROM_GPU: 'ns -pid @addr(size) node trigger'");
        break;
      case SMI_EVENT.VMFAULT:
      case SMI_EVENT.THERMAL_THROTTLE:
      case SMI_EVENT.GPU_PRE_RESET:
      case SMI_EVENT.GPU_POST_RESET:
      case SMI_EVENT.PROCESS_START:
      case SMI_EVENT.PROCESS_END:
        if (!RE_PROC.test(payload)) badLine(ln, col, "an event payload");
        break;
      default:
        badLine(ln, 1, `an SMI event id 1..d, got ${m[1]}`);
    }
  }
  const w: TraceWorkload = { name: `trace:${file}`, description: `accesses from ${file}`, processes: [], allocs: [], streams: [], hints: [], badLines: bad, lines: lines.length };
  if (bad > TRACE_BOUNDS.bad_lines_reported_max) opts.warn(`${file}: ${bad - TRACE_BOUNDS.bad_lines_reported_max} more bad lines skipped (${bad} in all)`);
  const base = Number.isNaN(t0) ? 0 : t0;
  const pids = [...span.keys()].sort((a, b) => a - b);
  for (const pid of pids) {
    const s = span.get(pid)!;
    const lo = Math.floor(s.lo / UNREGISTERED_ALIGN_PAGES) * UNREGISTERED_ALIGN_PAGES;
    const hi = Math.ceil((s.hi + 1) / UNREGISTERED_ALIGN_PAGES) * UNREGISTERED_ALIGN_PAGES;
    w.processes.push({ pid, name: `pid${pid}`, xnack: null });
    // One CPU mapping over everything the process touched; faults create ranges in it (§3).
    w.allocs.push({ name: `pid${pid}`, pid, pages: hi - lo, register: false, kind: "anon", attrs: [], start: lo });
  }
  const keys = [...streams.keys()].sort();
  for (const k of keys) {
    const s = streams.get(k)!;
    s.acc.sort((a, b) => a.t - b.t);
    const n = s.acc.length;
    const op: OpSpec = { op: "timed", times: new Float64Array(n), pages: new Float64Array(n), writes: new Uint8Array(n), n };
    s.acc.forEach((a, i) => {
      op.times[i] = a.t - base;
      op.pages[i] = a.page;
      op.writes[i] = a.write ? 1 : 0;
    });
    w.streams.push({ agent: s.agent, pid: s.pid, ops: [op] });
  }
  for (const h of hints) {
    const alloc = w.allocs.findIndex((a) => a.pid === h.pid);
    const a = w.allocs[alloc]!;
    const hint: HintSpec = { atNs: h.t - base, pid: h.pid, alloc, offset: h.start - a.start, pages: h.npages, attrs: [[SVM_ATTR.PREFETCH_LOC, h.loc]] };
    w.hints.push(hint);
  }
  return w;
}
