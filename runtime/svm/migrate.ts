/**
 * Migration (kfd-svm.md §6; kfd_migrate.c): svm_migrate_to_vram, svm_migrate_vram_to_ram,
 * the CPU page fault handler svm_migrate_to_ram, each emitting MIGRATE_START/END around
 * migrate_vma_setup and the SDMA copy; plus the model's counting of migrations and thrash
 * (not a kernel rule: svmrt's result fields) and the policy's prefetch requests.
 */
import { MIGRATE_TRIGGER, PAGE_BYTES, SMI_EVENT } from "./constants.ts";
import { rangeInvalidate } from "./evict.ts";
import * as ev from "./events.ts";
import type { SvmModel } from "./model.ts";
import type { SvmProcess } from "./process.ts";
import { MOVE_STRIDE, type SvmRange } from "./range.ts";
import { runsAdd, runsClip, runsContains, runsGaps, runsMeet, runsOverlap, runsRemove, runsTotal } from "./runs.ts";
import { bufferFree, bufferReserve, lruInsertTail, lruTouch } from "./vram.ts";

/**
 * Default thrash window, ns: 5x the duplicate fault window (an assumption, not a kernel
 * constant). The simulator passes the profile's `thrash_window_ns` (runtime/sim/cost.ts).
 */
export const THRASH_WINDOW_NS_DEFAULT = 10_000_000;
/**
 * Most recent moves a range keeps for thrash detection (the newest; a range migrating more
 * often within one thrash window loses its oldest records, which only hides thrash).
 */
export const THRASH_MOVES_MAX = 64;
/**
 * A thrash record is dropped once it ended this many thrash windows before the operation in
 * progress started: one window decides thrash, the second absorbs operations that start out
 * of order across the GPUs' fault workers (a record they could still match is kept).
 */
export const THRASH_EXPIRY_WINDOWS = 2;
/** Released values at the head of the thrash queue before it is compacted. */
const THRASH_QUEUE_COMPACT_MIN = 8192;

/**
 * Drop, in place, the records of a flat move list (SvmRange.recentMoves) that ended before
 * `expired`, keeping the others in order; returns the values kept.
 */
function movesPrune(list: (number | number[])[], expired: number): number {
  let k = 0;
  for (let i = 0; i < list.length; i += MOVE_STRIDE) {
    if ((list[i] as number) < expired) continue;
    if (k !== i) for (let j = 0; j < MOVE_STRIDE; j++) list[k + j] = list[i + j]!;
    k += MOVE_STRIDE;
  }
  list.length = k;
  return k;
}

/**
 * Count one migration leg of `pages` pages (`runs`) on GPU index `gi` (the VRAM side). A
 * leg that brings some page back to where a migration of the last thrash window took it
 * from (to = that one's from, from = its to) is a thrash event.
 */
function countMigration(m: SvmModel, p: SvmProcess, r: SvmRange, gi: number, from: number, to: number, pages: number, runs: number[], trigger: number, t: number): void {
  const bytes = pages * PAGE_BYTES;
  const s = m.stats;
  if (to === 0) {
    s.migrations.d2h++;
    s.bytesMigrated.d2h += bytes;
    p.pageOut[gi]! += pages;
  } else {
    s.migrations.h2d++;
    s.bytesMigrated.h2d += bytes;
    p.pageIn[gi]! += pages;
  }
  const bt = s.migrationsByTrigger;
  switch (trigger) {
    case MIGRATE_TRIGGER.PREFETCH:
      bt.prefetch++;
      break;
    case MIGRATE_TRIGGER.PAGEFAULT_GPU:
      bt.pagefault_gpu++;
      break;
    case MIGRATE_TRIGGER.PAGEFAULT_CPU:
      bt.pagefault_cpu++;
      break;
    default:
      bt.ttm_eviction++;
  }
  const expired = m.opStartNs - THRASH_EXPIRY_WINDOWS * m.thrashWindowNs;
  thrashRelease(m, expired);
  // Records are flat, MOVE_STRIDE values each: end time, from, to, runs (no object each).
  let list = r.recentMoves;
  let thrash = false;
  if (list === null) list = r.recentMoves = [t, from, to, runs];
  else {
    const k = movesPrune(list, expired);
    for (let i = 0; i < k && !thrash; i += MOVE_STRIDE) {
      const mt = list[i] as number;
      thrash = t - mt <= m.thrashWindowNs && list[i + 1] === to && list[i + 2] === from && runsMeet(list[i + 3] as number[], runs);
    }
    // Bounded: a range moving more often than this within one window keeps the newest.
    const keep = (THRASH_MOVES_MAX - 1) * MOVE_STRIDE;
    if (k > keep) {
      list.copyWithin(0, k - keep, k);
      list.length = keep;
    }
    list.push(t, from, to, runs);
  }
  m.thrashQueue.push(r, t);
  if (thrash) s.thrashEvents++;
  r.migrations++;
  r.lastMigrationNs = t;
}

/**
 * Drop the thrash records of ranges that have none left after `expired`, in the order they
 * were recorded (thrashQueue: range, record end): a range that never migrates again does
 * not keep its last moves. Each record is queued once and released once.
 */
function thrashRelease(m: SvmModel, expired: number): void {
  const q = m.thrashQueue;
  let h = m.thrashHead;
  while (h < q.length && (q[h + 1] as number) < expired) {
    const r = q[h] as SvmRange;
    if (r.recentMoves !== null && movesPrune(r.recentMoves, expired) === 0) r.recentMoves = null;
    h += 2;
  }
  if (h > THRASH_QUEUE_COMPACT_MIN && h * 2 > q.length) {
    q.splice(0, h);
    h = 0;
  }
  m.thrashHead = h;
}

/** Copy the runs `gaps` on GPU `gi`'s SDMA ring (serialized, chunked); returns the end time. */
function sdmaCopy(m: SvmModel, gi: number, from: number, to: number, gaps: number[], t: number): number {
  let s = Math.max(t, m.sdmaBusyNs[gi]!);
  for (let i = 0; i < gaps.length; i += 2) s += m.costs.copyNs(from, to, gaps[i + 1]! - gaps[i]! + 1, gi);
  m.sdmaBusyNs[gi] = s;
  return s;
}

/**
 * svm_migrate_to_vram: move window [s, l] of `r` to GPU `best`. From another GPU's VRAM
 * the whole range first goes back to RAM (VRAM->VRAM bounces). Reserves the whole range's
 * buffer first. Returns the end time, or -1 - t when VRAM is full (nothing moved to VRAM).
 */
export function migrateToVram(m: SvmModel, p: SvmProcess, r: SvmRange, best: number, s: number, l: number, trigger: number, t: number): number {
  const gpu = m.gpuById.get(best)!;
  const gi = gpu.index;
  let bounced = false;
  if (r.actualLoc !== 0 && r.actualLoc !== best) {
    t = migrateToRam(m, p, r, r.start, r.last, trigger, t, false);
    bounced = true;
  }
  if (r.actualLoc === 0) {
    const tr = bufferReserve(m, r, gi, t);
    if (tr < 0) return -1 - t;
    t = tr;
    r.actualLoc = best;
    lruInsertTail(m, gi, r);
  }
  const gaps = runsGaps(r.vramRuns, s, l);
  const pages = runsTotal(gaps.length > 0 ? gaps : null);
  const n = l - s + 1;
  if (pages === 0) {
    emptyMigration(m, p, r, s, l, 0, best, trigger, t, false);
    lruTouch(m, r, t);
    return t;
  }
  m.openMigrations++;
  if (m.wants(SMI_EVENT.MIGRATE_START, t, s, n)) m.sink!(ev.fmtMigrateStart(t, p.pid, s, n, 0, best, r.prefetchLoc, r.preferredLoc, trigger), best);
  // svm_migrate_vma_to_vram: kfd_smi_event_migration_start, then migrate_vma_setup, whose
  // MMU notifier invalidates the window (svm_range_evict), then the copy.
  rangeInvalidate(m, p, r, s, l, t, false);
  const end = sdmaCopy(m, gi, 0, best, gaps, t);
  if (m.wants(SMI_EVENT.MIGRATE_END, end, s, n)) m.sink!(ev.fmtMigrateEnd(end, p.pid, s, n, 0, best, trigger, 0), best);
  m.openMigrations--;
  countMigration(m, p, r, gi, 0, best, pages, gaps, trigger, end);
  if (bounced) {
    m.stats.migrations.d2d++;
    m.stats.bytesMigrated.d2d += pages * PAGE_BYTES;
  }
  m.observe("migrate", end, best, s, n, 0, best, trigger);
  r.vramRuns = runsAdd(r.vramRuns, s, l);
  r.vramPages += pages;
  if (r.vramPages !== runsTotal(r.vramRuns)) m.fail(`range [${r.start}, ${r.last}] VRAM pages out of step`);
  lruTouch(m, r, end);
  return end;
}

/**
 * svm_migrate_vram_to_ram for window [s, l]: pages of it in VRAM go back to RAM; when the
 * range has no VRAM page left its buffer is freed and actual_loc becomes 0. `external`:
 * the move comes from the CPU or the memory manager (the notifier treats it like the
 * kernel's own migrations).
 */
export function migrateToRam(m: SvmModel, p: SvmProcess, r: SvmRange, s: number, l: number, trigger: number, t: number, external: boolean): number {
  const from = r.actualLoc;
  if (from === 0) return t;
  const gi = m.gpuById.get(from)!.index;
  const pages = runsOverlap(r.vramRuns, s, l);
  if (pages === 0) {
    emptyMigration(m, p, r, s, l, from, 0, trigger, t, external);
    return t;
  }
  const n = l - s + 1;
  m.openMigrations++;
  if (m.wants(SMI_EVENT.MIGRATE_START, t, s, n)) m.sink!(ev.fmtMigrateStart(t, p.pid, s, n, from, 0, r.prefetchLoc, r.preferredLoc, trigger), from);
  // svm_migrate_vma_to_ram: the START event, then migrate_vma_setup (the notifier), then the copy.
  rangeInvalidate(m, p, r, s, l, t, external);
  const moved = runsClip(r.vramRuns, s, l)!; // pages > 0: some run overlaps
  const end = sdmaCopy(m, gi, from, 0, moved, t);
  if (m.wants(SMI_EVENT.MIGRATE_END, end, s, n)) m.sink!(ev.fmtMigrateEnd(end, p.pid, s, n, from, 0, trigger, 0), from);
  m.openMigrations--;
  countMigration(m, p, r, gi, from, 0, pages, moved, trigger, end);
  m.observe("migrate", end, from, s, n, from, 0, trigger);
  r.vramRuns = runsRemove(r.vramRuns, s, l);
  r.vramPages -= pages;
  if (r.vramPages === 0) bufferFree(m, r);
  return end;
}

/**
 * A migration whose migrate_vma_setup collects no page: MIGRATE_START is emitted before
 * the collection and MIGRATE_END on the out_free path, so the pair appears anyway; the
 * setup still fired the MMU notifier in between (the range is invalidated). Nothing is
 * counted.
 */
function emptyMigration(m: SvmModel, p: SvmProcess, r: SvmRange, s: number, l: number, from: number, to: number, trigger: number, t: number, external: boolean): void {
  const n = l - s + 1;
  const node = from !== 0 ? from : to;
  if (m.wants(SMI_EVENT.MIGRATE_START, t, s, n)) m.sink!(ev.fmtMigrateStart(t, p.pid, s, n, from, to, r.prefetchLoc, r.preferredLoc, trigger), node);
  rangeInvalidate(m, p, r, s, l, t, external);
  if (m.wants(SMI_EVENT.MIGRATE_END, t, s, n)) m.sink!(ev.fmtMigrateEnd(t, p.pid, s, n, from, to, trigger, 0), node);
}

/** A prefetch request from the policy: move [start, start+npages) to `loc`. */
export function prefetchApply(m: SvmModel, p: SvmProcess, start: number, npages: number, loc: number, t: number): number {
  const last = start + npages - 1;
  for (let r = p.ranges.firstOverlap(start, last); r !== null && r.start <= last; r = r.next) {
    const s = Math.max(start, r.start);
    const l = Math.min(last, r.last);
    if (loc === 0) t = migrateToRam(m, p, r, s, l, MIGRATE_TRIGGER.PREFETCH, t, false);
    else if (m.gpuById.has(loc)) {
      const e = migrateToVram(m, p, r, loc, s, l, MIGRATE_TRIGGER.PREFETCH, t);
      t = e < 0 ? -1 - e : e;
    }
  }
  return t;
}

/**
 * A CPU access: on a VRAM page it is a CPU fault, migrating the granularity window
 * holding it back to RAM (PAGEFAULT_CPU); reads and writes fault alike. Returns the
 * completion time.
 */
export function cpuAccess(m: SvmModel, pid: number, addr: number, _write: boolean, now: number): number {
  const p = m.proc(pid);
  m.opStartNs = now;
  const r = p.ranges.lookup(addr);
  if (r === null || r.actualLoc === 0 || !runsContains(r.vramRuns, addr)) return now;
  const g = 2 ** r.granularity;
  const block = Math.floor(addr / g) * g;
  const s = Math.max(block, r.start);
  const l = Math.min(block + g - 1, r.last);
  m.stats.cpuFaults++;
  const t = migrateToRam(m, p, r, s, l, MIGRATE_TRIGGER.PAGEFAULT_CPU, now + m.costs.faultServiceNs, true);
  m.endOp();
  return t;
}
