/**
 * The comparison matrix of `svmrt compare`: every workload × every MigrationPolicy file, each
 * cell one `svmrt sim ... --json --events FILE` child process, at most `jobs` at once. Cells
 * come back in (workload, policy) order whatever order they finish in, and each cell's SMI
 * event stream is reduced to bounded summaries for the report (a binned timeline and the
 * life of one range), so a run's output depends only on its inputs.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { assert } from "../errors.ts";
import { smiEventParseLine } from "../kfd/smi-events.ts";
import type { SimResult } from "./engine.ts";

/** The CLI entry each cell runs (`bun runtime/cli.ts sim ...`). */
export const CLI_PATH = join(import.meta.dir, "..", "cli.ts");
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
  /** Set when the child succeeded. */
  result?: SimResult;
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
  /** Called once per finished cell, in completion order (progress). */
  onCellDone?: (done: number, total: number, cell: CompareCell) => void;
  /** The program each cell runs (tests point it elsewhere). */
  cliPath?: string;
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

interface CellRun {
  cell: CompareCell;
  eventsFile: string;
}

async function runCell(opts: CompareOptions, cell: CompareCell, eventsFile: string, live: Set<Bun.Subprocess>): Promise<void> {
  const argv = [
    process.execPath,
    opts.cliPath ?? CLI_PATH,
    "sim",
    "--profile",
    opts.profile,
    "--workload",
    cell.workload,
    "--policy",
    cell.policyFile,
    "--seed",
    String(opts.seed),
    "--json",
    "--events",
    eventsFile,
  ];
  for (const r of opts.pluginRoots ?? []) argv.push("--plugin-root", r);
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
    const r = JSON.parse(out) as SimResult & { eventLines?: number };
    delete r.eventLines;
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
  const dir = mkdtempSync(join(tmpdir(), "svmrt-compare-"));
  // Interrupted (Ctrl-C, kill): stop the cells and remove their event files before exiting.
  const live = new Set<Bun.Subprocess>();
  const onSignal = (sig: NodeJS.Signals): void => {
    for (const c of live) c.kill();
    rmSync(dir, { recursive: true, force: true });
    process.exit(128 + (sig === "SIGINT" ? 2 : 15));
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  const runs: CellRun[] = [];
  for (const workload of opts.workloads) {
    for (const p of opts.policies) {
      runs.push({ cell: { workload, policy: p.name, policyFile: p.file }, eventsFile: join(dir, `cell-${runs.length}.smi`) });
    }
  }
  try {
    // A bounded pool: `jobs` workers take the next cell index; completion order does not matter.
    let next = 0;
    let done = 0;
    const finished = new Array<boolean>(runs.length).fill(false);
    let parsedUpTo = 0;
    const ranges = new Map<string, RangeOfInterest | null>();
    // Parse finished cells in matrix order: a workload's first cell fixes the default range.
    // A workload's cells are summarized once all of them have finished: they follow one range,
    // the first migration of the first cell that has one. Each cell is binned over its own
    // simulated time (a shared axis flattens fast cells next to a slow one into one bin).
    const perWorkload = opts.policies.length;
    const parseReady = async (): Promise<void> => {
      while (parsedUpTo < runs.length) {
        const first = parsedUpTo - (parsedUpTo % perWorkload);
        const group = runs.slice(first, first + perWorkload);
        if (!finished.slice(first, first + perWorkload).every(Boolean)) return;
        const workload = runs[first]!.cell.workload;
        if (opts.range === undefined && !ranges.has(workload)) {
          // The first migration of the first cell that has one: every cell then follows it,
          // including cells before it that migrated nothing there.
          let range: RangeOfInterest | null = null;
          for (const r of group) if (range === null && r.cell.result !== undefined) range = await firstMigration(r.eventsFile);
          ranges.set(workload, range);
        }
        await summarizeCell(runs[parsedUpTo++]!, opts.range, ranges);
      }
    };
    let parsing: Promise<void> = Promise.resolve();
    const worker = async (): Promise<void> => {
      while (next < runs.length) {
        const i = next++;
        const run = runs[i]!;
        await runCell(opts, run.cell, run.eventsFile, live);
        finished[i] = true;
        done++;
        opts.onCellDone?.(done, total, run.cell);
        parsing = parsing.then(parseReady);
      }
    };
    await Promise.all(Array.from({ length: Math.min(opts.jobs, runs.length) }, worker));
    await parsing;
    assert(parsedUpTo === runs.length, "every cell summarized");
    return runs.map((r) => r.cell);
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    rmSync(dir, { recursive: true, force: true });
  }
}

async function summarizeCell(run: CellRun, rangeAddr: number | undefined, ranges: Map<string, RangeOfInterest | null>): Promise<void> {
  const c = run.cell;
  if (c.result !== undefined) {
    const range = rangeAddr !== undefined ? { startPage: rangeAddr, sizePages: 1 } : (ranges.get(c.workload) ?? null);
    c.events = await summarizeEvents(run.eventsFile, c.result.simTimeNs, range);
  }
  rmSync(run.eventsFile, { force: true });
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

/**
 * Reduce an SMI event file to a timeline and the chosen range's events. `range` undefined:
 * the range is the first MIGRATE_START's window (with the faults just before it); null: none.
 * Streams the file in chunks; memory is bounded by the constants above, not by the file.
 */
export async function summarizeEvents(file: string, spanNs: number, range: RangeOfInterest | null | undefined): Promise<CellEvents> {
  const faults = new Array<number>(TIMELINE_BINS).fill(0);
  const migrations = new Array<number>(TIMELINE_BINS).fill(0);
  const span = Math.max(1, spanNs + 1);
  const out: CellEvents = { lines: 0, spanNs, faultsPerBin: faults, migrationsPerBin: migrations, range: range ?? null, rangeEvents: [], rangeEventsDropped: 0 };
  let chosen: RangeOfInterest | null | undefined = range;
  const lookbehind: string[] = [];
  const binOf = (line: string): number => {
    const sp = line.indexOf(" ", 2);
    const ns = Number(line.slice(2, sp));
    return Math.min(TIMELINE_BINS - 1, Math.max(0, Math.floor((ns * TIMELINE_BINS) / span)));
  };
  const keep = (line: string): void => {
    if (out.rangeEvents.length >= RANGE_EVENTS_MAX) {
      out.rangeEventsDropped++;
      return;
    }
    const ev = rangeEventOf(line);
    if (ev !== undefined) out.rangeEvents.push(ev);
  };
  const onLine = (line: string): void => {
    out.lines++;
    const id = line.charCodeAt(0);
    // Only ids 5..8 and b carry a page; the others (process, queue) are skipped cheaply.
    const isMigrateStart = id === 0x35 && line.charCodeAt(1) === 0x20;
    if (id === 0x37 && line.charCodeAt(1) === 0x20) faults[binOf(line)]!++;
    else if (isMigrateStart) migrations[binOf(line)]!++;
    const relevant = line.charCodeAt(1) === 0x20 && ((id >= 0x35 && id <= 0x38) || id === 0x62);
    if (!relevant || chosen === null) return;
    if (chosen === undefined) {
      if (isMigrateStart) {
        chosen = { startPage: pageOfLine(line), sizePages: sizeOfLine(line) };
        out.range = chosen;
        for (const l of lookbehind) if (overlaps(chosen, pageOfLine(l), sizeOfLine(l))) keep(l);
        lookbehind.length = 0;
        keep(line);
      } else {
        lookbehind.push(line);
        if (lookbehind.length > RANGE_LOOKBEHIND_EVENTS) lookbehind.shift();
      }
      return;
    }
    if (overlaps(chosen, pageOfLine(line), sizeOfLine(line))) keep(line);
  };
  await forEachLine(file, (line) => {
    onLine(line);
    return true;
  });
  if (chosen === undefined) out.range = null;
  return out;
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

/** The window of the first MIGRATE_START in an SMI event file, or null when it has none. */
export async function firstMigration(file: string): Promise<RangeOfInterest | null> {
  let found: RangeOfInterest | null = null;
  await forEachLine(file, (line) => {
    if (line.charCodeAt(0) !== 0x35 || line.charCodeAt(1) !== 0x20) return true;
    found = { startPage: pageOfLine(line), sizePages: sizeOfLine(line) };
    return false;
  });
  return found;
}
