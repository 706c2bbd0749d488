/**
 * The comparison matrix of `svmrt compare`: every workload × every MigrationPolicy file, each
 * cell one `svmrt sim ... --json --summary RANGE` child process, at most `jobs` at once.
 * Cells come back in (workload, policy) order whatever order they finish in. Each child
 * reduces its own SMI event stream to bounded summaries for the report (a binned timeline
 * and the life of one range) instead of writing it out (hundreds of MB for an
 * oversubscription run), so a run's output depends only on its inputs.
 */
import type { FailureGroup } from "../policy/decision-log.ts";
import { cliArgv } from "../assets.ts";
import { assert } from "../errors.ts";
import { smiEventParseLine } from "../kfd/smi-events.ts";
import { SMI_EVENT } from "../kfd/uapi.ts";
import type { SimResult } from "./engine.ts";

/** Most cells one comparison runs. */
export const COMPARE_CELLS_MAX = 1024;
/** Bins of the fault/migration timeline over a cell's simulated time. */
export const TIMELINE_BINS = 60;
/** Events of the chosen range kept per cell (the first ones; the rest are counted). */
export const RANGE_EVENTS_MAX = 48;
/** Events remembered before the first migration, to show the faults that led to it. */
const RANGE_LOOKBEHIND_EVENTS = 16;
/** Bytes of a failing cell's stderr kept for the report. */
export const CELL_STDERR_BYTES_MAX = 8192;
/** Bytes of a cell's stdout (one JSON object) accepted. */
const CELL_STDOUT_BYTES_MAX = 4 * 1024 * 1024;
/** Bytes read from the events file per chunk. */
const EVENTS_CHUNK_BYTES = 1 << 20;

/** The interval of pages whose life the report draws. */
export interface RangeOfInterest {
  startPage: number;
  sizePages: number;
}

/** One state change of the chosen range, from the SMI stream. */
export interface RangeEvent {
  ns: number;
  kind: "PAGE_FAULT_START" | "PAGE_FAULT_END" | "MIGRATE_START" | "MIGRATE_END" | "UNMAP_FROM_GPU";
  /** Page (faults) or first page (migrations, unmaps). */
  page: number;
  sizePages: number;
  /** Migrations: source and destination gpu_id (0 = system memory). */
  from?: number;
  to?: number;
  /** Migrations and unmaps: the kernel's trigger number. */
  trigger?: number;
  /** Faults and unmaps: the GPU (gpu_id). */
  node?: number;
  write?: boolean;
  migrated?: boolean;
}

/** A cell's event stream, reduced to what the report draws. Sizes are bounded by the constants above. */
export interface CellEvents {
  lines: number;
  /** Length of the time axis the bins divide (the cell's simulated time), ns. */
  spanNs: number;
  /** PAGE_FAULT_START and MIGRATE_START counts per bin of [0, spanNs]. */
  faultsPerBin: number[];
  migrationsPerBin: number[];
  range: RangeOfInterest | null;
  rangeEvents: RangeEvent[];
  /** Events of the range beyond RANGE_EVENTS_MAX, not kept. */
  rangeEventsDropped: number;
}

export interface CompareCell {
  workload: string;
  /** The policy's metadata.name (as the simulator reports it). */
  policy: string;
  /** The policy file as found on the command line or below a folder. */
  policyFile: string;
  /** Set when the child succeeded; policyFailures(Other) when its policy failed (svmrt sim --json). */
  result?: SimResult & { policyFailures?: FailureGroup[]; policyFailuresOther?: number };
  events?: CellEvents;
  /** Set when the child failed: its exit code and the end of its stderr. */
  exitCode?: number;
  error?: string;
}

export interface CompareOptions {
  profile: string;
  workloads: string[];
  /** MigrationPolicy files with their metadata.name, in the order to report them. */
  policies: { file: string; name: string }[];
  seed: number;
  jobs: number;
  /** The range to follow; default: the first migration of each workload's first cell. */
  range?: number;
  pluginRoots?: string[];
  /**
   * Per workload, a measure of its size (workloadAccesses): cells of larger workloads start
   * first, so the longest cell does not start last. Results keep (workload, policy) order.
   */
  weights?: number[];
  /** Called once per finished cell, in completion order (progress). */
  onCellDone?: (done: number, total: number, cell: CompareCell) => void;
  /** A script Bun runs in each cell instead of svmrt's own CLI (tests point it elsewhere). */
  cliPath?: string;
  /**
   * Run only these cells (matrix indices, (workload, policy) order), e.g. one shard's; the
   * others come back without result or error. Default: every cell.
   */
  only?: readonly number[];
}

async function readCapped(stream: ReadableStream<Uint8Array>, max: number): Promise<string> {
  const dec = new TextDecoder();
  let out = "";
  let total = 0;
  for await (const chunk of stream) {
    total += chunk.length;
    if (out.length < max) out += dec.decode(chunk.subarray(0, max - out.length), { stream: true });
  }
  if (total > max) out += `\n... ${total - max} more bytes`;
  return out;
}

/** The `svmrt sim` command line of one cell (or range search), then `extra`. */
function simArgv(opts: CompareOptions, workload: string, policyFile: string, ...extra: string[]): string[] {
  // Each cell runs this svmrt: `bun runtime/cli.ts` in a checkout, the executable itself when compiled.
  const argv = [...(opts.cliPath === undefined ? cliArgv() : [process.execPath, opts.cliPath]), "sim", `--profile=${opts.profile}`, `--workload=${workload}`, `--policy=${policyFile}`, `--seed=${opts.seed}`];
  // NAME=VALUE: a path that starts with '-' stays a value, never a flag.
  for (const r of opts.pluginRoots ?? []) argv.push(`--plugin-root=${r}`);
  argv.push(...extra);
  return argv;
}

/** Run task(0..n-1), at most `jobs` at once; the answers in task order. */
async function pool<T>(n: number, jobs: number, task: (i: number) => Promise<T>): Promise<T[]> {
  const out = new Array<T>(n);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < n) {
      const i = next++;
      out[i] = await task(i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(jobs, n) }, worker));
  return out;
}

/**
 * The range a workload's cells follow: the first migration's window of the first policy (in
 * order) that migrates; null when none does or every search failed (the cells then report
 * their failures themselves).
 */
async function seekRange(opts: CompareOptions, workload: string, live: Set<Bun.Subprocess>): Promise<RangeOfInterest | null> {
  for (const p of opts.policies) {
    const argv = simArgv(opts, workload, p.file, "--find-range");
    const child = Bun.spawn(argv, { stdin: "ignore", stdout: "pipe", stderr: "ignore" });
    live.add(child);
    let out: string;
    let code: number;
    try {
      [out, code] = await Promise.all([readCapped(child.stdout, CELL_STDOUT_BYTES_MAX), child.exited]);
    } finally {
      live.delete(child);
    }
    if (code !== 0) continue;
    try {
      const r = (JSON.parse(out) as { range: RangeOfInterest | null }).range;
      if (r !== null && Number.isSafeInteger(r.startPage) && Number.isSafeInteger(r.sizePages)) return r;
    } catch {
      // An unreadable answer: try the next policy.
    }
  }
  return null;
}

/** --summary argument of a cell: follow `range`, or pick the first migration (undefined). */
function summaryArg(range: RangeOfInterest | null | undefined): string {
  if (range === undefined) return "first";
  if (range === null) return "none";
  return `${range.startPage}:${range.sizePages}`;
}

async function runCell(opts: CompareOptions, cell: CompareCell, summary: string, live: Set<Bun.Subprocess>): Promise<void> {
  const argv = simArgv(opts, cell.workload, cell.policyFile, "--json", "--summary", summary);
  const child = Bun.spawn(argv, { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  live.add(child);
  let out: string;
  let err: string;
  let code: number;
  try {
    [out, err, code] = await Promise.all([readCapped(child.stdout, CELL_STDOUT_BYTES_MAX), readCapped(child.stderr, CELL_STDERR_BYTES_MAX), child.exited]);
  } finally {
    live.delete(child);
  }
  if (code !== 0) {
    cell.exitCode = code;
    cell.error = err.trimEnd() || `exited with code ${code}`;
    return;
  }
  try {
    const r = JSON.parse(out) as SimResult & { events?: CellEvents };
    cell.events = r.events;
    delete r.events;
    cell.result = r;
    cell.policy = r.policy;
  } catch (e) {
    cell.exitCode = code;
    cell.error = `unreadable result: ${(e as Error).message}`;
  }
}

/**
 * Run the matrix. Never throws for a failing cell: the cell carries its exit code and stderr.
 * Results are ordered by (workload, policy) as given.
 */
export async function runCompareMatrix(opts: CompareOptions): Promise<CompareCell[]> {
  const total = opts.workloads.length * opts.policies.length;
  assert(total > 0 && total <= COMPARE_CELLS_MAX, `1 to ${COMPARE_CELLS_MAX} cells, got ${total}`);
  assert(opts.jobs >= 1, "at least one job");
  // Interrupted (Ctrl-C, kill): stop the cells before exiting.
  const live = new Set<Bun.Subprocess>();
  const onSignal = (sig: NodeJS.Signals): void => {
    for (const c of live) c.kill();
    process.exit(128 + (sig === "SIGINT" ? 2 : 15));
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  const cells: CompareCell[] = [];
  for (const workload of opts.workloads) for (const p of opts.policies) cells.push({ workload, policy: p.name, policyFile: p.file });
  try {
    // Each cell reduces its own event stream (svmrt sim --summary): no event file crosses.
    // A workload's cells follow one range: the first migration of the first policy that
    // migrates at all, found first by cheap runs that stop there (svmrt sim --find-range),
    // workloads in parallel; then every cell runs with it.
    const perWorkload = opts.policies.length;
    const run = opts.only === undefined ? cells.map((_, i) => i) : [...new Set(opts.only)].sort((a, b) => a - b);
    assert(run.every((i) => Number.isInteger(i) && i >= 0 && i < total), "cells to run lie in the matrix");
    // Ranges of the workloads that have a cell to run (a shard seeks only its own).
    const needed = new Set(run.map((i) => Math.floor(i / perWorkload)));
    const ranges: (RangeOfInterest | null | undefined)[] =
      opts.range === undefined
        ? await pool(opts.workloads.length, opts.jobs, (w) => (needed.has(w) ? seekRange(opts, opts.workloads[w]!, live) : Promise.resolve(undefined)))
        : opts.workloads.map(() => ({ startPage: opts.range!, sizePages: 1 }));
    let done = 0;
    // Start order: larger workloads first (stable); the results stay in matrix order.
    const start = run;
    const weights = opts.weights;
    if (weights !== undefined) start.sort((a, b) => (weights[Math.floor(b / perWorkload)] ?? 0) - (weights[Math.floor(a / perWorkload)] ?? 0) || a - b);
    await pool(start.length, opts.jobs, async (k) => {
      const i = start[k]!;
      const cell = cells[i]!;
      await runCell(opts, cell, summaryArg(ranges[Math.floor(i / perWorkload)]!), live);
      done++;
      opts.onCellDone?.(done, start.length, cell);
    });
    return cells;
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}

function overlaps(r: RangeOfInterest, page: number, size: number): boolean {
  return page < r.startPage + r.sizePages && r.startPage < page + size;
}

/** A parsed event as a RangeEvent, when it is one of the kinds the range life shows. */
function rangeEventOf(line: string): RangeEvent | undefined {
  const ev = smiEventParseLine(line, 0);
  if (ev === undefined) return undefined;
  switch (ev.kind) {
    case "PAGE_FAULT_START":
      return { ns: Number(ev.ns), kind: ev.kind, page: ev.page, sizePages: 1, node: ev.node, write: ev.write };
    case "PAGE_FAULT_END":
      return { ns: Number(ev.ns), kind: ev.kind, page: ev.page, sizePages: 1, node: ev.node, migrated: ev.migrated };
    case "MIGRATE_START":
    case "MIGRATE_END":
      return { ns: Number(ev.ns), kind: ev.kind, page: ev.startPage, sizePages: ev.sizePages, from: ev.from, to: ev.to, trigger: ev.trigger };
    case "UNMAP_FROM_GPU":
      return { ns: Number(ev.ns), kind: ev.kind, page: ev.startPage, sizePages: ev.sizePages, node: ev.node, trigger: ev.trigger };
    default:
      return undefined;
  }
}

/** The page field (`@hex(`) of a line, without a full parse; -1 when there is none. */
function pageOfLine(line: string): number {
  const at = line.indexOf("@");
  if (at < 0) return -1;
  const paren = line.indexOf("(", at);
  return paren < 0 ? -1 : Number.parseInt(line.slice(at + 1, paren), 16);
}

/** Pages a line covers: the `(hex)` size of a migrate or unmap line, 1 for a fault (its `(node)`). */
function sizeOfLine(line: string): number {
  const id = line.charCodeAt(0);
  if (id === 0x37 || id === 0x38) return 1;
  const open = line.indexOf("(");
  const close = line.indexOf(")", open);
  return Number.parseInt(line.slice(open + 1, close), 16);
}

const SMI_MIGRATE_START = SMI_EVENT.MIGRATE_START;
const SMI_PAGE_FAULT_START = SMI_EVENT.PAGE_FAULT_START;
const SMI_PAGE_FAULT_END = SMI_EVENT.PAGE_FAULT_END;
const SMI_UNMAP_FROM_GPU = SMI_EVENT.UNMAP_FROM_GPU;
/** Events whose line carries a page: migrate start/end, fault start/end, unmap. */
function isPageEvent(id: number): boolean {
  return (id >= SMI_MIGRATE_START && id <= SMI_PAGE_FAULT_END) || id === SMI_UNMAP_FROM_GPU;
}

/** The line is a page event's (passed through the summarizer's filter when there is one). */
export function isPageLine(line: string): boolean {
  return line.charCodeAt(1) === 0x20 ? isPageEvent(Number.parseInt(line[0]!, 16)) : false;
}

/** Fault and migration start times a summary records, each (the timeline's bound). */
export const TIMELINE_TIMES_MAX = 1 << 25;

/**
 * Streaming reduction of an SMI event stream to a timeline and the chosen range's events,
 * fed line by line (a `svmrt sim --summary` child, or a file). `range` undefined: the range
 * is the first MIGRATE_START's window (with the faults just before it); null: none. The
 * timeline bins need the simulated time, known only at the end: the fault and migration
 * start times are kept (at most TIMELINE_TIMES_MAX of each; later ones are counted in
 * `timesDropped`) and binned by finish().
 */
export class EventSummarizer {
  private readonly out: CellEvents;
  private chosen: RangeOfInterest | null | undefined;
  private readonly lookbehind: string[] = [];
  private faultNs = new Float64Array(1024);
  private faultCount = 0;
  private migrateNs = new Float64Array(1024);
  private migrateCount = 0;
  timesDropped = 0;

  constructor(range: RangeOfInterest | null | undefined) {
    this.chosen = range;
    this.out = { lines: 0, spanNs: 0, faultsPerBin: [], migrationsPerBin: [], range: range ?? null, rangeEvents: [], rangeEventsDropped: 0 };
  }

  /** The range the summary follows so far (undefined: not chosen yet). */
  get range(): RangeOfInterest | null | undefined {
    return this.chosen;
  }

  private static timeOf(line: string): number {
    const sp = line.indexOf(" ", 2);
    return Number(line.slice(2, sp));
  }

  private record(kind: "fault" | "migrate", ns: number): void {
    const count = kind === "fault" ? this.faultCount : this.migrateCount;
    if (count >= TIMELINE_TIMES_MAX) {
      this.timesDropped++;
      return;
    }
    let a = kind === "fault" ? this.faultNs : this.migrateNs;
    if (count === a.length) {
      const b = new Float64Array(Math.min(TIMELINE_TIMES_MAX, a.length * 2));
      b.set(a);
      a = b;
      if (kind === "fault") this.faultNs = a;
      else this.migrateNs = a;
    }
    a[count] = ns;
    if (kind === "fault") this.faultCount++;
    else this.migrateCount++;
  }

  private keep(line: string): void {
    if (this.out.rangeEvents.length >= RANGE_EVENTS_MAX) {
      this.out.rangeEventsDropped++;
      return;
    }
    const ev = rangeEventOf(line);
    if (ev !== undefined) this.out.rangeEvents.push(ev);
  }

  /**
   * One event, before its text exists (SvmModelOptions.sinkFilter): counts it, records the
   * timeline's times, and answers whether its line matters for the range's life (then pass
   * that line to rangeLine).
   */
  event(id: number, ns: number, page: number, npages: number): boolean {
    this.out.lines++;
    if (id === SMI_PAGE_FAULT_START) this.record("fault", ns);
    else if (id === SMI_MIGRATE_START) this.record("migrate", ns);
    const chosen = this.chosen;
    if (chosen === null || !isPageEvent(id)) return false;
    // Before the range is chosen, every page event may be in the lookbehind.
    return chosen === undefined || overlaps(chosen, page, npages);
  }

  /** The text of an event event() wanted. */
  rangeLine(line: string): void {
    const chosen = this.chosen;
    if (chosen === null) return;
    if (chosen === undefined) {
      if (line.charCodeAt(0) === 0x35) {
        const r = { startPage: pageOfLine(line), sizePages: sizeOfLine(line) };
        this.chosen = r;
        this.out.range = r;
        for (const l of this.lookbehind) if (overlaps(r, pageOfLine(l), sizeOfLine(l))) this.keep(l);
        this.lookbehind.length = 0;
        this.keep(line);
      } else {
        this.lookbehind.push(line);
        if (this.lookbehind.length > RANGE_LOOKBEHIND_EVENTS) this.lookbehind.shift();
      }
      return;
    }
    this.keep(line);
  }

  /** One line of event text (a file, or a sink without a filter). */
  line(line: string): void {
    const id = Number.parseInt(line.slice(0, line.indexOf(" ")), 16);
    const wanted = isPageEvent(id)
      ? this.event(id, EventSummarizer.timeOf(line), pageOfLine(line), sizeOfLine(line))
      : this.event(id, 0, -1, 0);
    if (wanted) this.rangeLine(line);
  }

  /** The summary over a simulated time of spanNs. */
  finish(spanNs: number): CellEvents {
    const span = Math.max(1, spanNs + 1);
    const bins = (times: Float64Array, n: number): number[] => {
      const b = new Array<number>(TIMELINE_BINS).fill(0);
      for (let i = 0; i < n; i++) b[Math.min(TIMELINE_BINS - 1, Math.max(0, Math.floor((times[i]! * TIMELINE_BINS) / span)))]!++;
      return b;
    };
    const out = this.out;
    out.spanNs = spanNs;
    out.faultsPerBin = bins(this.faultNs, this.faultCount);
    out.migrationsPerBin = bins(this.migrateNs, this.migrateCount);
    if (this.chosen === undefined) out.range = null;
    return out;
  }
}

/** An SMI event file reduced by EventSummarizer (streamed in chunks). */
export async function summarizeEvents(file: string, spanNs: number, range: RangeOfInterest | null | undefined): Promise<CellEvents> {
  const s = new EventSummarizer(range);
  await forEachLine(file, (line) => {
    s.line(line);
    return true;
  });
  return s.finish(spanNs);
}

/** Call onLine for every non-empty line of a file, read in chunks, until it returns false. */
async function forEachLine(file: string, onLine: (line: string) => boolean): Promise<void> {
  let rest = "";
  const dec = new TextDecoder();
  const f = Bun.file(file);
  const n = f.size;
  for (let off = 0; off < n; off += EVENTS_CHUNK_BYTES) {
    const text = rest + dec.decode(await f.slice(off, Math.min(n, off + EVENTS_CHUNK_BYTES)).arrayBuffer(), { stream: true });
    let start = 0;
    for (;;) {
      const nl = text.indexOf("\n", start);
      if (nl < 0) break;
      if (nl > start && !onLine(text.slice(start, nl))) return;
      start = nl + 1;
    }
    rest = text.slice(start);
  }
  if (rest.length > 0) onLine(rest);
}
