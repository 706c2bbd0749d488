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
import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { ConfigError } from "../errors.ts";
import { LARGEST_RANGE_MAX_PAGES, SMI_EVENT, SVM_ATTR, SVM_GET_ATTR_QUERIES, type SvmAttrName, UNREGISTERED_ALIGN_PAGES } from "../svm/constants.ts";
import type { AttrPair } from "../svm/model.ts";
import type { MachineProfile } from "./profile.ts";
import { AGENT_CPU, type HintSpec, type OpSpec, PID_DEFAULT, PID_MAX, type Workload } from "./workload.ts";

export type OnBadLine = "skip" | "stop";

export interface TraceOptions {
  onBadLine: OnBadLine;
  /** Where skipped lines are reported (one line each, file:line: reason). */
  warn: (text: string) => void;
  /** Bound on accesses and hints (default TRACE_ACCESSES_MAX; tests lower it). */
  accessesMax?: number;
}

export interface TraceWorkload extends Workload {
  badLines: number;
  lines: number;
}

/** Largest trace file read, bytes (read in chunks; a FIFO or /dev/zero stops here too). */
export const TRACE_FILE_MAX_bytes = 256 * 1024 * 1024;
/** Longest line, bytes (SMI records are at most 96 bytes; JSONL records a few hundred). */
export const TRACE_LINE_MAX_bytes = 4096;
/** Most lines of a trace. */
export const TRACE_LINES_MAX = 50_000_000;
/** Most accesses and hints one trace may replay in all (JSONL `pages` expanded). */
export const TRACE_ACCESSES_MAX = 16_777_216;
/**
 * Most pages one event may cover: a JSONL record's `pages`, a MIGRATE_START's size. The
 * kernel migrates within one range, and a range is at most 1 GiB (kfd-svm.md §1).
 */
export const TRACE_EVENT_MAX_pages = LARGEST_RANGE_MAX_PAGES;
/**
 * Pages of the virtual address space a trace may name: the lower half of the GPU's 48-bit
 * virtual address space (128 TiB), where user mappings live.
 */
export const TRACE_ADDRESS_MAX_pages = 2 ** 35;
/** Latest time a trace may give, ns: beyond 2^53 ns a float64 no longer holds every ns. */
export const TRACE_TIME_MAX_ns = Number.MAX_SAFE_INTEGER;
/** Largest gpu_id in a trace (a 32-bit KFD gpu_id). */
export const TRACE_GPU_ID_MAX = 0xffffffff;
/** Bytes read from a trace file per read(2). */
const TRACE_READ_CHUNK_bytes = 1 << 20;

/** Bounds on a trace (the named constants above, as one object). */
export const TRACE_BOUNDS = {
  /** Most lines read. */
  lines_max: TRACE_LINES_MAX,
  /** Most bad lines reported one by one before a summary line. */
  bad_lines_reported_max: 20,
  /** Longest line, characters. */
  line_chars_max: TRACE_LINE_MAX_bytes,
  /** Most pages one JSONL record may cover. */
  record_pages_max: TRACE_EVENT_MAX_pages,
} as const;

/**
 * Read a trace file in chunks, bounded: at most TRACE_FILE_MAX_bytes, and a line longer than
 * TRACE_LINE_MAX_bytes stops the read at once with onBadLine "stop" (so `--trace /dev/zero`
 * ends on its first line); with "skip" such a line is kept cut to one byte past the bound
 * (the parser skips it) so memory stays bounded.
 * @throws ConfigError naming file:line and what was expected, or the errno when it cannot be read.
 */
export function readTraceFile(file: string, onBadLine: OnBadLine): string {
  const at = (line: number) => ({ file, line, col: 1 });
  let fd: number;
  try {
    fd = openSync(file, "r");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? "";
    throw new ConfigError(at(1), "", "a readable trace file", code === "ENOENT" ? "ENOENT: no such file" : `${code}: ${readErrorText(e)}`);
  }
  try {
    if (fstatSync(fd).isDirectory()) throw new ConfigError(at(1), "", "a readable trace file", "EISDIR: it is a folder");
    const kept: Uint8Array[] = [];
    const buf = new Uint8Array(TRACE_READ_CHUNK_bytes);
    let total = 0;
    let line = 1;
    let lineBytes = 0;
    for (;;) {
      let n: number;
      try {
        n = readSync(fd, buf, 0, buf.length, null);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code ?? "";
        throw new ConfigError(at(line), "", "a readable trace file", `${code}: ${readErrorText(e)}`);
      }
      if (n === 0) break;
      total += n;
      if (total > TRACE_FILE_MAX_bytes) {
        throw new ConfigError(at(line), "", `a trace of at most ${TRACE_FILE_MAX_bytes} bytes (TRACE_FILE_MAX_bytes)`, "split it, or keep the events you need");
      }
      // Copy the chunk line by line, cutting overlong lines.
      let from = 0;
      while (from < n) {
        const nl = buf.indexOf(0x0a, from);
        const end = nl < 0 || nl >= n ? n : nl;
        const piece = end - from;
        const room = TRACE_LINE_MAX_bytes + 1 - lineBytes;
        if (lineBytes + piece > TRACE_LINE_MAX_bytes && onBadLine === "stop") {
          throw new ConfigError(at(line), "", `a line of at most ${TRACE_LINE_MAX_bytes} bytes (TRACE_LINE_MAX_bytes)`);
        }
        if (room > 0) kept.push(buf.slice(from, from + Math.min(piece, room)));
        lineBytes += piece;
        if (end < n) {
          kept.push(NEWLINE_BYTES);
          line++;
          lineBytes = 0;
          if (line > TRACE_LINES_MAX + 1) throw new ConfigError(at(line), "", `at most ${TRACE_LINES_MAX} lines (TRACE_LINES_MAX)`);
          from = end + 1;
        } else from = n;
      }
    }
    return new TextDecoder("utf-8", { fatal: false }).decode(Buffer.concat(kept));
  } finally {
    closeSync(fd);
  }
}

const NEWLINE_BYTES = new Uint8Array([0x0a]);

/** The system's words for a read error, without the errno code it starts with. */
function readErrorText(e: unknown): string {
  return ((e as Error).message ?? String(e)).replace(/^[A-Z]+: /, "").replace(/, \w+ '.*'$/, "");
}

/** One (pid, agent) stream's accesses, in columns (a trace may hold millions). */
class AccessColumns {
  t = new Float64Array(64);
  page = new Float64Array(64);
  write = new Uint8Array(64);
  n = 0;
  constructor(
    readonly pid: number,
    readonly agent: number,
  ) {}

  push(t: number, page: number, write: boolean): void {
    if (this.n === this.t.length) {
      const grow = <T extends Float64Array | Uint8Array>(a: T, make: (n: number) => T): T => {
        const b = make(a.length * 2);
        b.set(a);
        return b;
      };
      this.t = grow(this.t, (k) => new Float64Array(k));
      this.page = grow(this.page, (k) => new Float64Array(k));
      this.write = grow(this.write, (k) => new Uint8Array(k));
    }
    this.t[this.n] = t;
    this.page[this.n] = page;
    this.write[this.n] = write ? 1 : 0;
    this.n++;
  }
}

const RE_SMI = /^([0-9a-f]+) (.*)$/;
const RE_FAULT = /^(\d+) -(\d+) @([0-9a-f]+)\(([0-9a-f]+)\) ([RWMU])$/;
const RE_MIG_START = /^(\d+) -(\d+) @([0-9a-f]+)\(([0-9a-f]+)\) ([0-9a-f]+)->([0-9a-f]+) ([0-9a-f]+):([0-9a-f]+) (\d+)$/;
const RE_MIG_END = /^(\d+) -(\d+) @([0-9a-f]+)\(([0-9a-f]+)\) ([0-9a-f]+)->([0-9a-f]+) (\d+)(?: (-?\d+))?$/;
const RE_QUEUE = /^(\d+) -(\d+) ([0-9a-f]+) ([0-9a-fR])$/;
const RE_UNMAP = /^(\d+) -(\d+) @([0-9a-f]+)\(([0-9a-f]+)\) ([0-9a-f]+) (\d+)$/;
const RE_PROC = /^[0-9a-f]+[ :].*$/;

/** Where a trace process that touches no page (it only exits or sets XNACK) has its mapping: 4 GiB. */
export const TRACE_CALLS_ONLY_MAPPING_page = 0x100000;

/** JSONL calls (a record with `op`): munmap, GET_ATTR, SET_XNACK_MODE, process exit. */
export type TraceCall = "free" | "get_attr" | "set_xnack" | "exit";
const TRACE_CALLS: readonly TraceCall[] = ["free", "get_attr", "set_xnack", "exit"];
/** Keys each JSONL call takes besides t_ns, pid and op. */
const TRACE_CALL_KEYS: Record<TraceCall, readonly string[]> = {
  free: ["page", "pages"],
  get_attr: ["page", "pages", "attrs"],
  set_xnack: ["xnack"],
  exit: [],
};

/**
 * A JSONL call record, checked: its time, pid, call and pages (an exit or set_xnack has none:
 * page 0, 1 page), or why it is bad.
 */
function jsonlCall(
  r: Record<string, unknown>,
  profile: MachineProfile,
): string | { t: number; pid: number; start: number; npages: number; call: TraceCall; xnack?: boolean; attrs?: AttrPair[] } {
  const call = r.op as TraceCall;
  if (typeof r.op !== "string" || !TRACE_CALLS.includes(call)) return `op: one of ${TRACE_CALLS.join(", ")}`;
  const unknown = Object.keys(r).find((k) => !["t_ns", "pid", "op", ...TRACE_CALL_KEYS[call]].includes(k));
  if (unknown !== undefined) return `only the keys t_ns, pid, op${TRACE_CALL_KEYS[call].map((k) => `, ${k}`).join("")} for op ${call} (got ${unknown})`;
  const t = r.t_ns;
  const pid = r.pid ?? PID_DEFAULT;
  if (typeof t !== "number" || !Number.isSafeInteger(t) || t < 0) return `t_ns: an integer number of ns from 0 to ${TRACE_TIME_MAX_ns}`;
  if (typeof pid !== "number" || !Number.isSafeInteger(pid)) return `pid: an integer from 1 to ${PID_MAX}`;
  if (call === "exit") return { t, pid, start: 0, npages: 1, call };
  if (call === "set_xnack") {
    if (typeof r.xnack !== "boolean") return "xnack: true or false";
    return { t, pid, start: 0, npages: 1, call, xnack: r.xnack };
  }
  const page = typeof r.page === "string" && /^0x[0-9a-f]{1,13}$/i.test(r.page) ? Number.parseInt(r.page, 16) : r.page;
  const npages = r.pages ?? 1;
  if (typeof page !== "number" || !Number.isSafeInteger(page) || page < 0) return "page: an integer page number or a 0x hex string";
  if (typeof npages !== "number" || !Number.isSafeInteger(npages) || npages < 1 || npages > TRACE_EVENT_MAX_pages) {
    return `pages: an integer from 1 to ${TRACE_EVENT_MAX_pages} (TRACE_EVENT_MAX_pages)`;
  }
  if (call === "free") return { t, pid, start: page, npages, call };
  const attrs: AttrPair[] = [];
  const names = r.attrs ?? SVM_GET_ATTR_QUERIES;
  const queries: readonly string[] = SVM_GET_ATTR_QUERIES;
  if (!Array.isArray(names) || names.some((n) => typeof n !== "string" || !queries.includes(n))) {
    return `attrs: a list of GET_ATTR queries (${SVM_GET_ATTR_QUERIES.join(", ")}; ACCESS answers ACCESS, ACCESS_IN_PLACE or NO_ACCESS per GPU)`;
  }
  for (const n of names as SvmAttrName[]) {
    const type = SVM_ATTR[n];
    if (type === SVM_ATTR.ACCESS) for (const g of profile.gpus) attrs.push([type, g.id]);
    else attrs.push([type, 0]);
  }
  return { t, pid, start: page, npages, call, attrs };
}

/**
 * Parse a trace's text into a workload for `profile`. Every number is checked against its
 * bound (times, pids, pages, sizes, gpu_ids) and a bad one is a bad line at its file:line.
 * @throws ConfigError (stop mode; and in both modes when the trace exceeds TRACE_ACCESSES_MAX
 *   or TRACE_LINES_MAX).
 */
export function parseTrace(file: string, text: string, profile: MachineProfile, opts: TraceOptions): TraceWorkload {
  const streams = new Map<string, AccessColumns>();
  const hints: { t: number; pid: number; start: number; npages: number; loc: number; call?: TraceCall; xnack?: boolean; attrs?: AttrPair[] }[] = [];
  const gpuOf = new Map<number, number>();
  const span = new Map<number, { lo: number; hi: number }>();
  let bad = 0;
  let t0 = Number.NaN;
  let events = 0;
  const accessesMax = opts.accessesMax ?? TRACE_ACCESSES_MAX;
  const lines = text.split("\n");
  if (lines.length > TRACE_LINES_MAX) {
    throw new ConfigError({ file, line: TRACE_LINES_MAX + 1, col: 1 }, "", `at most ${TRACE_LINES_MAX} lines (TRACE_LINES_MAX)`);
  }
  const badLine = (ln: number, col: number, reason: string): void => {
    if (opts.onBadLine === "stop") throw new ConfigError({ file, line: ln, col }, "", reason);
    bad++;
    if (bad <= TRACE_BOUNDS.bad_lines_reported_max) opts.warn(`${file}:${ln}:${col}: skipped: ${reason}`);
  };
  /** Count `n` more replayed events (accesses or hints). @throws ConfigError past TRACE_ACCESSES_MAX */
  const count = (ln: number, n: number): void => {
    events += n;
    if (events > accessesMax) {
      throw new ConfigError({ file, line: ln, col: 1 }, "", `at most ${accessesMax} accesses and hints in a trace (TRACE_ACCESSES_MAX)`, "JSONL pages expanded");
    }
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
      s = new AccessColumns(pid, agent);
      streams.set(key, s);
    }
    if (!(t >= t0)) t0 = t; // the earliest time (NaN: none yet) is time zero
    s.push(t, page, write);
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
  /** Why a time, pid, page window or gpu_id is out of bounds, or "" when all are fine. */
  const outOfBounds = (t: number, pid: number, page: number, npages: number, node?: number): string => {
    if (!Number.isSafeInteger(t) || t < 0 || t > TRACE_TIME_MAX_ns) return `a time from 0 to ${TRACE_TIME_MAX_ns} ns (TRACE_TIME_MAX_ns)`;
    if (!Number.isSafeInteger(pid) || pid < 1 || pid > PID_MAX) return `a pid from 1 to ${PID_MAX} (PID_MAX)`;
    if (!Number.isSafeInteger(npages) || npages < 1 || npages > TRACE_EVENT_MAX_pages) {
      return `a size from 1 to ${TRACE_EVENT_MAX_pages} pages (TRACE_EVENT_MAX_pages)`;
    }
    if (!Number.isSafeInteger(page) || page < 0 || page + npages > TRACE_ADDRESS_MAX_pages) {
      return `pages below 0x${TRACE_ADDRESS_MAX_pages.toString(16)} (TRACE_ADDRESS_MAX_pages: the 128 TiB of user virtual addresses)`;
    }
    if (node !== undefined && (!Number.isSafeInteger(node) || node > TRACE_GPU_ID_MAX)) return `a gpu_id of at most 0x${TRACE_GPU_ID_MAX.toString(16)}`;
    return "";
  };
  const jsonl = /\.jsonl$/.test(file) || /^\s*\{/.test(lines.find((l) => l.trim() !== "") ?? "");
  for (let i = 0; i < lines.length; i++) {
    const ln = i + 1;
    const line = lines[i]!.replace(/\r$/, "");
    if (line.trim() === "" || line.startsWith("#")) continue;
    if (line.length > TRACE_LINE_MAX_bytes) {
      badLine(ln, 1, `a line of at most ${TRACE_LINE_MAX_bytes} bytes (TRACE_LINE_MAX_bytes)`);
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
      const pid = r.pid ?? PID_DEFAULT;
      const agent = r.agent;
      const page = typeof r.page === "string" && /^0x[0-9a-f]{1,13}$/i.test(r.page) ? Number.parseInt(r.page, 16) : r.page;
      const write = r.write ?? false;
      const npages = r.pages ?? 1;
      let agentIdx = -2;
      if (agent === "cpu") agentIdx = AGENT_CPU;
      else if (typeof agent === "string" && /^gpu\d+$/.test(agent) && Number(agent.slice(3)) < profile.gpus.length) agentIdx = Number(agent.slice(3));
      if (r.op !== undefined) {
        const why = jsonlCall(r, profile);
        if (typeof why === "string") badLine(ln, 1, why);
        else {
          const bounds = outOfBounds(why.t, why.pid, why.start, why.npages);
          if (bounds !== "") badLine(ln, 1, bounds);
          else {
            count(ln, 1);
            if (!(why.t >= t0)) t0 = why.t; // the earliest time (NaN: none yet) is time zero
            hints.push({ ...why, loc: 0 });
            // An exit or set_xnack names no pages: it touches none.
            if (why.call !== "exit" && why.call !== "set_xnack") touch(why.pid, why.start, why.npages);
          }
        }
        continue;
      }
      const unknown = Object.keys(r).find((k) => !["t_ns", "pid", "agent", "page", "write", "pages"].includes(k));
      if (unknown !== undefined) badLine(ln, 1, `only the keys t_ns, pid, agent, page, write, pages, or op (got ${unknown})`);
      else if (typeof tNs !== "number" || !Number.isSafeInteger(tNs) || tNs < 0) badLine(ln, 1, `t_ns: an integer number of ns from 0 to ${TRACE_TIME_MAX_ns}`);
      else if (typeof pid !== "number" || !Number.isSafeInteger(pid) || pid < 1 || pid > PID_MAX) badLine(ln, 1, `pid: an integer from 1 to ${PID_MAX}`);
      else if (agentIdx === -2) badLine(ln, 1, `agent: cpu or gpu0..gpu${profile.gpus.length - 1}`);
      else if (typeof page !== "number" || !Number.isSafeInteger(page) || page < 0) badLine(ln, 1, "page: an integer page number or a 0x hex string");
      else if (typeof write !== "boolean") badLine(ln, 1, "write: true or false");
      else if (typeof npages !== "number" || !Number.isSafeInteger(npages) || npages < 1 || npages > TRACE_EVENT_MAX_pages) {
        badLine(ln, 1, `pages: an integer from 1 to ${TRACE_EVENT_MAX_pages} (TRACE_EVENT_MAX_pages)`);
      } else {
        const why = outOfBounds(tNs, pid, page, npages);
        if (why !== "") badLine(ln, 1, why);
        else {
          count(ln, npages);
          for (let k = 0; k < npages; k++) add(tNs, pid, agentIdx, page + k, write);
        }
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
        const t = Number(f[1]);
        const pid = Number(f[2]);
        const page = Number.parseInt(f[3]!, 16);
        const node = Number.parseInt(f[4]!, 16);
        const why = outOfBounds(t, pid, page, 1, node);
        if (why !== "") {
          badLine(ln, col, why);
          break;
        }
        if (!startKind) break;
        const g = gpuIndex(node);
        if (g < 0) {
          badLine(ln, col, `a GPU of profile ${profile.name}: the trace names more than ${profile.gpus.length} gpu_ids`);
          break;
        }
        count(ln, 1);
        add(t, pid, g, page, f[5] === "W");
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
        const why = outOfBounds(t, pid, start, npages, Number.parseInt(f[6]!, 16));
        if (why !== "") {
          badLine(ln, col, why);
          break;
        }
        if (trig === 2) {
          count(ln, 1);
          add(t, pid, AGENT_CPU, start, false);
        } else if (trig === 0) {
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
          count(ln, 1);
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
  // A process that only makes calls without pages (exit, set_xnack) gets one 2 MiB mapping.
  for (const h of hints) if (!span.has(h.pid)) span.set(h.pid, { lo: TRACE_CALLS_ONLY_MAPPING_page, hi: TRACE_CALLS_ONLY_MAPPING_page });
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
    const n = s.n;
    // Time order; equal times keep the order of the file (the index breaks ties).
    const order = new Uint32Array(n);
    for (let i = 0; i < n; i++) order[i] = i;
    order.sort((a, b) => s.t[a]! - s.t[b]! || a - b);
    const op: OpSpec = { op: "timed", times: new Float64Array(n), pages: new Float64Array(n), writes: new Uint8Array(n), n };
    for (let i = 0; i < n; i++) {
      const j = order[i]!;
      op.times[i] = s.t[j]! - base;
      op.pages[i] = s.page[j]!;
      op.writes[i] = s.write[j]!;
    }
    w.streams.push({ agent: s.agent, pid: s.pid, ops: [op] });
  }
  for (const h of hints) {
    const alloc = w.allocs.findIndex((a) => a.pid === h.pid);
    const a = w.allocs[alloc]!;
    const hint: HintSpec = { atNs: h.t - base, pid: h.pid, alloc, offset: h.start - a.start, pages: h.npages, attrs: [[SVM_ATTR.PREFETCH_LOC, h.loc]] };
    if (h.call !== undefined) {
      hint.call = h.call;
      hint.attrs = h.attrs ?? [];
      if (h.call === "set_xnack") hint.xnack = h.xnack;
      if (h.call === "exit" || h.call === "set_xnack") {
        hint.offset = 0;
        hint.pages = a.pages;
      }
    }
    w.hints.push(hint);
  }
  return w;
}
