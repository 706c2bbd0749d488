/**
 * The SVM model: kfd_svm.c and kfd_migrate.c restated (kfd-svm.md), pure and deterministic.
 * No I/O and no clock of its own: every operation takes the simulated time `now` (ns) and
 * returns when it completes; copy and map times come from an injected cost model. Where a
 * decision is the policy's (restore location, window, prefetch, eviction victim) it asks
 * the MigrationDecider, in batches; everything else is the kernel's code path.
 *
 * Invariants (DESIGN.md): ranges never overlap, tree and list agree, VRAM use within
 * [0, capacity], every MIGRATE_START has its END, a process exit leaves nothing behind.
 * Cheap checks run on every operation, the full check every `fullCheckEvery` operations;
 * a violation throws InvariantError naming the seed and the step that reproduce it.
 */
import { InvariantError, KfdError } from "../errors.ts";
import {
  DECISION_STRIDE,
  F,
  FAULT_STRIDE,
  LOC_DENY,
  LOC_SYSMEM,
  LOC_UNDEFINED,
  MIGRATION_BOUNDS,
  type MigrationDecider,
  type ObservedEvent,
  type ObservedKind,
  type ObserveMasks,
  observeWanted,
  type PolicyContext,
  type PolicyGpu,
  SVM_FLAG,
} from "../policy/contracts/migration.ts";
import {
  DUPLICATE_FAULT_WINDOW_NS,
  ERRNO,
  GPUS_PER_PROCESS_MAX,
  GRANULARITY_MAX,
  largestRangePages,
  MIGRATE_TRIGGER,
  PAGE_BYTES,
  QUEUE_EVICTION_TRIGGER,
  RESTORE_DELAY_NS,
  SMI_EVENT,
  SVM_ATTR,
  UNMAP_TRIGGER,
  UNREGISTERED_ALIGN_PAGES,
} from "./constants.ts";
import * as ev from "./events.ts";
import { MOVE_STRIDE, NEVER_NS, SvmRange, SvmRangeList } from "./range.ts";
import { runsAdd, runsClip, runsContains, runsGaps, runsMeet, runsOverlap, runsRemove, runsTotal, runsWellFormed } from "./runs.ts";

/** A GPU of the machine. Every process uses every GPU; `index` is its bit in the masks. */
export interface SvmGpu extends PolicyGpu {
  /** VRAM held by non-SVM allocations, never evictable by SVM, bytes. */
  vramReservedBytes: number;
  /** The device supports SVM (bitmap_supported). */
  svmSupported: boolean;
}

/** Times the model needs; runtime/sim/cost.ts implements it from a machine profile. */
export interface SvmCosts {
  /** ns to copy `pages` contiguous pages between locations on the SDMA engine of GPU `engineGpu` (index). */
  copyNs(fromLoc: number, toLoc: number, pages: number, engineGpu: number): number;
  /** ns to map (or unmap) `pages` on GPU index `gpu`, TLB flush included. */
  mapNs(gpu: number, pages: number): number;
  /** Fault handler time per handled fault, ns (before copies). */
  faultServiceNs: number;
  /** Fault handler time per dropped fault, ns. */
  faultDropNs: number;
  /** Time to evict (quiesce) the queues of a process on one GPU, ns. */
  queueEvictNs: number;
}

/** A CPU mapping (vma). */
export interface Vma {
  start: number;
  last: number;
  kind: "anon" | "heap" | "stack";
  read: boolean;
  write: boolean;
}

/** Work the model asks its driver (the simulator) to run later: restore_work, deferred_list. */
export interface SvmWork {
  kind: "restore" | "deferred";
  pid: number;
  dueNs: number;
}

/** Result codes of one GPU fault. */
export const FAULT_RESULT = {
  DROPPED: 0,
  MIGRATED: 1,
  UPDATED: 2,
  /** Fatal: the GPU gets a VM fault (XNACK off, no access, no range). */
  FATAL: 3,
} as const;

export class SvmProcess {
  readonly ranges = new SvmRangeList();
  /** CPU mappings, ordered by start, never overlapping. */
  readonly vmas: Vma[] = [];
  /** Non-SVM buffer mappings (ALLOC_MEMORY_OF_GPU), [start, last] pairs. */
  readonly boMappings: number[] = [];
  drainPagefaults = false;
  evictedRanges = 0;
  queuesEvicted = false;
  restoreScheduled = false;
  deferredScheduled = false;
  readonly deferred: SvmRange[] = [];
  readonly evictedList: SvmRange[] = [];
  userQueues = 0;
  readonly ctx: PolicyContext;
  /** sysfs counters_<gpuid>: faults, page_in, page_out per GPU index. */
  readonly faults: Float64Array;
  readonly pageIn: Float64Array;
  readonly pageOut: Float64Array;
  /** Range cache of the last lookup per GPU index (hot path). */
  readonly cache: (SvmRange | null)[];
  constructor(
    readonly pid: number,
    readonly name: string,
    public xnack: boolean,
    gpus: PolicyGpu[],
    readonly largestRangePages: number,
  ) {
    this.ctx = { gpus, xnack, nowNs: 0 };
    this.faults = new Float64Array(gpus.length);
    this.pageIn = new Float64Array(gpus.length);
    this.pageOut = new Float64Array(gpus.length);
    this.cache = new Array(gpus.length + 1).fill(null);
  }
}

/** Counts by direction: host-to-device, device-to-host, VRAM-to-VRAM (bounced through RAM). */
export interface DirectionCounts {
  h2d: number;
  d2h: number;
  d2d: number;
}

/** Migration counts by KFD trigger. */
export interface TriggerCounts {
  prefetch: number;
  pagefault_gpu: number;
  pagefault_cpu: number;
  ttm_eviction: number;
}

/** sysfs counters_<gpuid> of one process on one GPU. */
export interface ProcessGpuCounters {
  pid: number;
  gpuId: number;
  faults: number;
  pageIn: number;
  pageOut: number;
}

export interface SvmStats {
  gpuFaults: number;
  gpuFaultsDropped: number;
  gpuFaultsFatal: number;
  cpuFaults: number;
  migrations: DirectionCounts;
  migrationsByTrigger: TriggerCounts;
  bytesMigrated: DirectionCounts;
  evictions: number;
  queueEvictions: number;
  queueRestores: number;
  unmaps: number;
  thrashEvents: number;
  vramFallbacks: number;
}

function newStats(): SvmStats {
  return {
    gpuFaults: 0,
    gpuFaultsDropped: 0,
    gpuFaultsFatal: 0,
    cpuFaults: 0,
    migrations: { h2d: 0, d2h: 0, d2d: 0 },
    migrationsByTrigger: { prefetch: 0, pagefault_gpu: 0, pagefault_cpu: 0, ttm_eviction: 0 },
    bytesMigrated: { h2d: 0, d2h: 0, d2d: 0 },
    evictions: 0,
    queueEvictions: 0,
    queueRestores: 0,
    unmaps: 0,
    thrashEvents: 0,
    vramFallbacks: 0,
  };
}

/**
 * Receives each SMI event line (no newline) and the gpu_id of the device whose event fds
 * get it, as the kernel's `node` argument of kfd_smi_event_*: the faulting GPU, the VRAM
 * side of a migration, the GPU of a queue or unmap event; SMI_ALL_GPUS for process
 * start/end, which go to every GPU of the process.
 */
export type SvmEventSink = (line: string, gpuId: number) => void;
/** The sink's gpuId for an event every GPU of the process reports. */
export const SMI_ALL_GPUS = 0;

export interface SvmModelOptions {
  gpus: SvmGpu[];
  decider: MigrationDecider;
  costs: SvmCosts;
  /** Seed of the run, quoted by every invariant failure. */
  seed: number;
  /** Full invariant check every this many operations; 0 = never (cheap checks still run). */
  fullCheckEvery?: number;
  /** A page migrated away and back within this window counts as thrashing, ns. */
  thrashWindowNs?: number;
  /** Delay of the deferred_list worker after a munmap, ns. */
  deferredDelayNs?: number;
  /** SMI event sink; null = no event text is built (fast path). */
  sink?: SvmEventSink | null;
  /**
   * Asked before the text of a page event (migrate start/end, fault start/end, unmap) is
   * built: false skips it. A consumer that needs few of them (svmrt compare's summaries)
   * saves formatting millions of lines. Absent: every event.
   */
  sinkFilter?: SvmEventFilter | null;
}

/** Event id (SMI_EVENT), time ns, first page, pages: true when the sink wants the event. */
export type SvmEventFilter = (id: number, ns: number, page: number, npages: number) => boolean;

/** Default full-check period, operations. */
export const FULL_CHECK_EVERY_DEFAULT = 4096;
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
/** Default deferred worker delay after munmap, ns (assumption: one scheduler tick); the profile's `deferred_work_ns`. */
export const DEFERRED_DELAY_NS_DEFAULT = 4_000;
/** Most eviction candidates handed to the policy per request (TTM LRU head). */
export const EVICTION_CANDIDATES_MAX = 64;

const NO_WORK: SvmWork[] = [];

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

/** How a fault with a range is handled once its duplicate check passed. */
const FAULT_KIND_HANDLE = 0;
/** The vma went away (stale retry fault): dropped. */
const FAULT_KIND_NO_VMA = 1;
/** No permission for the access: -EPERM, fatal. */
const FAULT_KIND_EPERM = 2;
/** In the duplicate window at batch start: checked, and decided if needed, when handled. */
const FAULT_KIND_LATE = 3;

/** Aggregated GET_ATTR answer for an access query (§5). */
export type AttrPair = [type: number, value: number];

export class SvmModel {
  readonly gpus: SvmGpu[];
  readonly decider: MigrationDecider;
  readonly costs: SvmCosts;
  readonly seed: number;
  readonly stats: SvmStats = newStats();
  readonly processes = new Map<number, SvmProcess>();
  /** Per GPU index: pages reserved by SVM buffers, capacity pages (minus non-SVM reservations). */
  readonly vramUsedPages: Float64Array;
  readonly vramCapPages: Float64Array;
  /** Per GPU index: the SDMA ring is busy until this time, ns (copies are serialized). */
  readonly sdmaBusyNs: Float64Array;
  /** Per GPU index: LRU list of ranges holding a VRAM buffer there (head = least recent). */
  private readonly lruHead: (SvmRange | null)[];
  private readonly lruTail: (SvmRange | null)[];
  private readonly work: SvmWork[] = [];
  private readonly sink: SvmEventSink | null;
  private readonly sinkFilter: SvmEventFilter | null;
  private readonly fullCheckEvery: number;
  private readonly thrashWindowNs: number;
  /**
   * Start of the operation in progress (setAttr, restorePages, cpuAccess: the ones that
   * migrate), ns. Its migrations end no earlier, so a recorded move that ended a thrash
   * window before it can never be matched again: thrash records are dropped against this
   * clock, not against a leg's copy end (copy ends are not in order across SDMA rings).
   */
  private opStartNs = 0;
  /** Ranges holding thrash records, in recording order, each with the record's end: [range, ns, ...] (thrashRelease). */
  private readonly thrashQueue: (SvmRange | number)[] = [];
  private thrashHead = 0;
  private readonly deferredDelayNs: number;
  /** sysfs counters of exited processes, per GPU, in exit order. */
  readonly exitCounters: ProcessGpuCounters[] = [];
  /** Operations so far: the step an invariant failure names. */
  step = 0;
  private openMigrations = 0;
  /** Context of the operation in progress: observe() batches go to the policy with it. */
  private opCtx: PolicyContext | null = null;
  private readonly gpuById = new Map<number, SvmGpu>();
  /** Fault batch buffers, reused (no per-fault allocation). */
  private batch = new Float64Array(64 * FAULT_STRIDE);
  private decisions = new Float64Array(64 * DECISION_STRIDE);
  private batchRanges: (SvmRange | null)[] = [];
  private faultKinds = new Uint8Array(64);
  /** A single fault decided at its handling time (FAULT_KIND_LATE). */
  private readonly lateBatch = new Float64Array(FAULT_STRIDE);
  private readonly lateDecision = new Float64Array(DECISION_STRIDE);
  private readonly observed: ObservedEvent[] = [];
  /** The decider wants observe() batches (MigrationDecider.observes !== false). */
  private readonly observing: boolean;
  /** Events the decider wants, by kind and trigger (undefined: all). */
  private readonly observeMasks: ObserveMasks | undefined;
  private observedCount = 0;
  /** Set by probe(): location of the probed page, and last page of the same mapped run. */
  probeLoc = -1;
  probeLast = 0;
  /** Completion time of the last SET_ATTR that threw after doing work (a failed prefetch), ns. */
  failedOpEndNs = 0;
  /** Set by rangeTriggerMigration when it migrated (svm_range_trigger_migration's *migrated). */
  private triggerMigrated = false;

  constructor(opts: SvmModelOptions) {
    if (opts.gpus.length === 0 || opts.gpus.length > GPUS_PER_PROCESS_MAX) {
      throw new InvariantError(`a machine needs 1..${GPUS_PER_PROCESS_MAX} GPUs, got ${opts.gpus.length}`);
    }
    this.gpus = opts.gpus;
    this.decider = opts.decider;
    this.observing = opts.decider.observes !== false;
    this.observeMasks = opts.decider.observeMasks;
    this.costs = opts.costs;
    this.seed = opts.seed;
    this.sink = opts.sink ?? null;
    this.sinkFilter = opts.sinkFilter ?? null;
    this.fullCheckEvery = opts.fullCheckEvery ?? FULL_CHECK_EVERY_DEFAULT;
    this.thrashWindowNs = opts.thrashWindowNs ?? THRASH_WINDOW_NS_DEFAULT;
    this.deferredDelayNs = opts.deferredDelayNs ?? DEFERRED_DELAY_NS_DEFAULT;
    const n = opts.gpus.length;
    this.vramUsedPages = new Float64Array(n);
    this.vramCapPages = new Float64Array(n);
    this.sdmaBusyNs = new Float64Array(n);
    this.lruHead = new Array(n).fill(null);
    this.lruTail = new Array(n).fill(null);
    opts.gpus.forEach((g, i) => {
      if (g.index !== i) throw new InvariantError(`GPU ${g.id} has index ${g.index}, expected ${i}`);
      if (g.id === 0 || g.id === LOC_UNDEFINED) throw new InvariantError(`gpu_id ${g.id} is reserved`);
      this.gpuById.set(g.id, g);
      this.vramCapPages[i] = Math.max(0, Math.floor((g.vramBytes - g.vramReservedBytes) / PAGE_BYTES));
    });
  }

  // ---- invariants ------------------------------------------------------------------

  /** Throw InvariantError naming seed and step. */
  fail(message: string): never {
    throw new InvariantError(`${message} (seed ${this.seed}, step ${this.step}: rerun with --seed ${this.seed})`);
  }

  /** The sink wants this page event (see SvmModelOptions.sinkFilter). */
  private wants(id: number, ns: number, page: number, npages: number): boolean {
    return this.sink !== null && (this.sinkFilter === null || this.sinkFilter(id, ns, page, npages));
  }

  private endOp(): void {
    if (this.openMigrations !== 0) this.fail(`${this.openMigrations} MIGRATE_START without END`);
    this.flushObserved();
    this.step++;
    if (this.fullCheckEvery > 0 && this.step % this.fullCheckEvery === 0) this.checkFull();
  }

  /**
   * Full invariant check, O(ranges): tree and list agree, no overlap, placement runs
   * well formed and inside their range, vramPages equals its runs, actual_loc set iff pages
   * in VRAM, per-GPU VRAM use equals the sum of buffers and lies within [0, capacity].
   */
  checkFull(): void {
    const used = new Float64Array(this.gpus.length);
    for (const p of this.processes.values()) {
      const err = p.ranges.check();
      if (err !== null) this.fail(`pid ${p.pid}: ${err}`);
      for (let r = p.ranges.head; r !== null; r = r.next) {
        const where = `pid ${p.pid} range [${r.start}, ${r.last}]`;
        if (!runsWellFormed(r.vramRuns, r.start, r.last)) this.fail(`${where}: VRAM runs malformed`);
        if (runsTotal(r.vramRuns) !== r.vramPages) this.fail(`${where}: vramPages ${r.vramPages} != runs`);
        if ((r.actualLoc !== 0) !== (r.vramPages > 0)) this.fail(`${where}: actual_loc ${r.actualLoc} with ${r.vramPages} VRAM pages`);
        for (let g = 0; g < this.gpus.length; g++) {
          if (!runsWellFormed(r.mappedOn(g), r.start, r.last)) this.fail(`${where}: mapping runs of GPU ${g} malformed`);
        }
        if (r.actualLoc !== 0) {
          const g = this.gpuById.get(r.actualLoc);
          if (g === undefined) this.fail(`${where}: actual_loc ${r.actualLoc} is no GPU`);
          used[g.index]! += r.npages;
        }
      }
    }
    for (let g = 0; g < this.gpus.length; g++) {
      if (used[g] !== this.vramUsedPages[g]) this.fail(`GPU ${g}: VRAM use ${this.vramUsedPages[g]} pages, buffers sum to ${used[g]}`);
      if (used[g]! < 0 || used[g]! > this.vramCapPages[g]!) this.fail(`GPU ${g}: VRAM use ${used[g]} outside [0, ${this.vramCapPages[g]}]`);
    }
  }

  // ---- processes (§9) ----------------------------------------------------------------

  /** Create a process: svm_range_list_init (empty tree and list, counters 0), then the table. */
  processCreate(pid: number, opts: { xnack: boolean; name?: string }): SvmProcess {
    if (this.processes.has(pid)) throw new KfdError("open /dev/kfd", "EBUSY", ERRNO.EBUSY, `pid ${pid} already has a process`);
    const largest = Math.min(...this.gpus.map((g) => largestRangePages(g.vramBytes)));
    const p = new SvmProcess(pid, opts.name ?? `pid${pid}`, opts.xnack, this.gpus, largest);
    this.processes.set(pid, p);
    if (this.sink !== null) this.sink(ev.fmtProcess(true, pid, p.name), SMI_ALL_GPUS);
    this.endOp();
    return p;
  }

  /**
   * Destroy a process in §9 order: cancel restore_work, flush the deferred worker, set
   * drain_pagefaults, then for each range unlink, unmap, free VRAM. Afterwards the process
   * holds no VRAM, no range and no pending work (asserted).
   */
  processDestroy(pid: number, now: number): number {
    const p = this.proc(pid);
    // Async work first: the restore worker is cancelled, the deferred list flushed.
    p.restoreScheduled = false;
    p.queuesEvicted = false;
    p.evictedList.length = 0;
    p.evictedRanges = 0;
    this.deferredWork(pid, now, true);
    p.drainPagefaults = true;
    // Then the data structures.
    for (let r = p.ranges.head; r !== null; ) {
      const next = r.next;
      this.rangeFree(p, r);
      r = next;
    }
    for (let i = this.work.length - 1; i >= 0; i--) if (this.work[i]!.pid === pid) this.work.splice(i, 1);
    if (p.ranges.count !== 0 || p.ranges.head !== null) this.fail(`pid ${pid} exit left ${p.ranges.count} ranges`);
    if (p.deferred.length !== 0 || p.restoreScheduled) this.fail(`pid ${pid} exit left pending work`);
    for (const g of this.gpus) {
      this.exitCounters.push({ pid, gpuId: g.id, faults: p.faults[g.index]!, pageIn: p.pageIn[g.index]!, pageOut: p.pageOut[g.index]! });
    }
    this.processes.delete(pid);
    if (this.sink !== null) this.sink(ev.fmtProcess(false, pid, p.name), SMI_ALL_GPUS);
    this.endOp();
    this.checkFull();
    return now;
  }

  /** SET_XNACK_MODE: negative queries; any set (even to the current mode) needs a process without user queues (§5). */
  setXnack(pid: number, value: number): number {
    const p = this.proc(pid);
    if (value < 0) return p.xnack ? 1 : 0;
    const on = value !== 0;
    // kfd_ioctl_set_xnack_mode checks the queues before comparing: any set fails with queues.
    if (p.userQueues > 0) {
      throw new KfdError("SET_XNACK_MODE", "EBUSY", ERRNO.EBUSY, "the process has user-mode queues");
    }
    p.xnack = on;
    p.ctx.xnack = on;
    return on ? 1 : 0;
  }

  /** mmap: add a CPU mapping. */
  vmaAdd(pid: number, start: number, npages: number, kind: Vma["kind"] = "anon", write = true): void {
    const p = this.proc(pid);
    const last = start + npages - 1;
    if (npages <= 0 || start < 0) throw new KfdError("mmap", "EINVAL", ERRNO.EINVAL, `bad mapping [${start}, +${npages})`);
    let i = 0;
    while (i < p.vmas.length && p.vmas[i]!.start < start) i++;
    const prev = p.vmas[i - 1];
    const next = p.vmas[i];
    if ((prev && prev.last >= start) || (next && next.start <= last)) {
      throw new KfdError("mmap", "EINVAL", ERRNO.EINVAL, `mapping [${start}, ${last}] overlaps another`);
    }
    p.vmas.splice(i, 0, { start, last, kind, read: true, write });
  }

  /** A non-SVM buffer mapped in the GPU VM (ALLOC_MEMORY_OF_GPU + MAP): §3 avoids it. */
  boMappingAdd(pid: number, start: number, npages: number): void {
    this.proc(pid).boMappings.push(start, start + npages - 1);
  }

  /** The first non-SVM buffer mapping [start, start+npages) of `pid` goes (unmapped from every GPU). */
  boMappingRemove(pid: number, start: number, npages: number): void {
    const bo = this.proc(pid).boMappings;
    for (let i = 0; i < bo.length; i += 2) {
      if (bo[i] === start && bo[i + 1] === start + npages - 1) {
        bo.splice(i, 2);
        return;
      }
    }
  }

  /**
   * VRAM of GPU index `gi` an SVM buffer or a non-SVM allocation can still get, bytes:
   * capacity minus SVM buffers (AVAILABLE_MEMORY's answer; the kernel also subtracts its own
   * reservations, which the profile's vram_reserved stands for).
   */
  vramAvailableBytes(gi: number): number {
    return Math.max(0, this.vramCapPages[gi]! - this.vramUsedPages[gi]!) * PAGE_BYTES;
  }

  /**
   * A non-SVM VRAM allocation (ALLOC_MEMORY_OF_GPU with the VRAM flag) of `npages` on GPU
   * index `gi`: SVM capacity shrinks by it until vramNonSvmRelease. Never evicts SVM
   * buffers to make room (amdgpu_amdkfd_reserve_mem_limit fails instead).
   * @throws KfdError ENOMEM when the free VRAM is smaller.
   */
  vramNonSvmReserve(gi: number, npages: number): void {
    if (npages > this.vramCapPages[gi]! - this.vramUsedPages[gi]!) {
      throw new KfdError("ALLOC_MEMORY_OF_GPU", "ENOMEM", ERRNO.ENOMEM, `${npages} pages asked, ${this.vramCapPages[gi]! - this.vramUsedPages[gi]!} free on GPU ${gi}`);
    }
    this.vramCapPages[gi]! -= npages;
  }

  /** Give back what vramNonSvmReserve took. */
  vramNonSvmRelease(gi: number, npages: number): void {
    this.vramCapPages[gi]! += npages;
  }

  /**
   * munmap: the CPU mapping goes; ranges inside are split at the edges, unmapped from GPUs
   * (UNMAP_FROM_CPU) and queued on the deferred list, which frees them later (faults on them
   * meanwhile are dropped, §2).
   */
  vmaRemove(pid: number, start: number, npages: number, now: number): void {
    const p = this.proc(pid);
    const last = start + npages - 1;
    for (let i = p.vmas.length - 1; i >= 0; i--) {
      const v = p.vmas[i]!;
      if (v.last < start || v.start > last) continue;
      const pieces: Vma[] = [];
      if (v.start < start) pieces.push({ ...v, last: start - 1 });
      if (v.last > last) pieces.push({ ...v, start: last + 1 });
      p.vmas.splice(i, 1, ...pieces);
    }
    // svm_range_unmap_from_gpus is gated by the notified (unsplit) range's mapped_to_gpu.
    const mappedRanges: number[] = [];
    for (let r = p.ranges.firstOverlap(start, last); r !== null && r.start <= last; r = r.next) {
      if (this.rangeMapped(r)) mappedRanges.push(r.start, r.last);
    }
    for (const r of this.rangesCovering(p, start, last, false)) {
      // svm_range_unmap_from_cpu: pending faults are drained by the deferred worker; until
      // then every fault of the process is dropped (§2).
      p.drainPagefaults = true;
      r.pendingRemove = true;
      let wasMapped = false;
      for (let i = 0; i < mappedRanges.length; i += 2) if (mappedRanges[i]! <= r.start && r.last <= mappedRanges[i + 1]!) wasMapped = true;
      if (wasMapped) {
        const mask = r.accessMask | r.aipMask;
        for (let g = 0; g < this.gpus.length; g++) {
          if ((mask & (1 << g)) === 0) continue;
          if (this.wants(SMI_EVENT.UNMAP_FROM_GPU, now, r.start, r.npages)) this.sink!(ev.fmtUnmapFromGpu(now, pid, r.start, r.npages, this.gpus[g]!.id, UNMAP_TRIGGER.UNMAP_FROM_CPU), this.gpus[g]!.id);
          this.observe("unmap", now, this.gpus[g]!.id, r.start, r.npages, 0, 0, UNMAP_TRIGGER.UNMAP_FROM_CPU);
          this.stats.unmaps++;
        }
      }
      for (let g = 0; g < r.mapped.length; g++) r.setMapped(g, null);
      p.deferred.push(r);
    }
    if (p.deferred.length > 0 && !p.deferredScheduled) {
      p.deferredScheduled = true;
      this.work.push({ kind: "deferred", pid, dueNs: now + this.deferredDelayNs });
    }
    this.endOp();
  }

  /** The deferred_list worker: free ranges whose CPU mapping went away. */
  deferredWork(pid: number, _now: number, inDestroy = false): void {
    // Work scheduled before an exit finds no process: the exit already flushed it (§9).
    const p = this.processes.get(pid);
    if (p === undefined) return;
    this.opCtx = p.ctx;
    // svm_range_drain_retry_fault, then the ranges are freed.
    p.drainPagefaults = false;
    for (const r of p.deferred) if (r.linked) this.rangeFree(p, r);
    p.deferred.length = 0;
    p.deferredScheduled = false;
    if (!inDestroy) this.endOp();
  }

  /** Work items the model scheduled since the last call (restore_work, deferred_list). */
  takeWork(): SvmWork[] {
    return this.work.length === 0 ? NO_WORK : this.work.splice(0, this.work.length);
  }

  // ---- attributes (§5) ---------------------------------------------------------------

  /**
   * SET_ATTR on [start, start+npages): split partly covered ranges at the edges (head and
   * tail keep the old attributes), create ranges in the gaps (chopped at the largest range
   * size), apply the attributes; then per range: PREFETCH_LOC migrates the whole range
   * (every time: the pages not on the target yet); svm_range_validate_and_map maps it when
   * it migrated or an access or flag attribute was set (update_mapping), except when the
   * migration evicted the queues of a mapped always-mapped range (the restore worker remaps).
   * @returns completion time, ns.
   * @throws KfdError EINVAL (unknown attribute, bad or non-SVM gpu_id, bad size), EFAULT (not
   * mapped), EADDRINUSE (a non-SVM buffer is mapped there), ENOMEM (a PREFETCH_LOC could not
   * reserve VRAM; the other ranges are still updated, failedOpEndNs says when it ended).
   */
  setAttr(pid: number, start: number, npages: number, attrs: readonly AttrPair[], now: number): number {
    const p = this.proc(pid);
    const op = "SVM SET_ATTR";
    this.opStartNs = now;
    if (!Number.isInteger(start) || !Number.isInteger(npages) || start < 0 || npages <= 0) {
      throw new KfdError(op, "EINVAL", ERRNO.EINVAL, `bad interval start ${start} size ${npages} pages`);
    }
    const last = start + npages - 1;
    let prefetch = false;
    for (const [type, value] of attrs) {
      switch (type) {
        case SVM_ATTR.PREFERRED_LOC:
        case SVM_ATTR.PREFETCH_LOC:
          if (value !== LOC_SYSMEM && value !== LOC_UNDEFINED) this.checkAttrGpu(op, value);
          if (type === SVM_ATTR.PREFETCH_LOC) prefetch = true;
          break;
        case SVM_ATTR.ACCESS:
        case SVM_ATTR.ACCESS_IN_PLACE:
        case SVM_ATTR.NO_ACCESS:
          this.checkAttrGpu(op, value);
          break;
        case SVM_ATTR.SET_FLAGS:
        case SVM_ATTR.CLR_FLAGS:
        case SVM_ATTR.GRANULARITY:
          break;
        default:
          throw new KfdError(op, "EINVAL", ERRNO.EINVAL, `unknown attribute type ${type}`);
      }
    }
    if (!this.vmaCovers(p, start, last)) throw new KfdError(op, "EFAULT", ERRNO.EFAULT, `[${start}, ${last}] is not all mapped by the CPU`);
    // svm_range_is_vm_bo_mapped: the interval must not hold a non-SVM buffer mapping.
    const bo = p.boMappings;
    for (let i = 0; i < bo.length; i += 2) {
      if (bo[i]! <= last && bo[i + 1]! >= start) {
        throw new KfdError(op, "EADDRINUSE", ERRNO.EADDRINUSE, `[${bo[i]}, ${bo[i + 1]}] is mapped by a non-SVM buffer`);
      }
    }
    const update = this.rangesCovering(p, start, last, true);
    for (const r of update) this.rangeApplyAttrs(r, attrs);
    // svm_range_apply_attrs sets update_mapping for access and flag attributes.
    let updateMapping = false;
    for (const [type] of attrs) {
      if (type === SVM_ATTR.ACCESS || type === SVM_ATTR.ACCESS_IN_PLACE || type === SVM_ATTR.NO_ACCESS || type === SVM_ATTR.SET_FLAGS || type === SVM_ATTR.CLR_FLAGS) {
        updateMapping = true;
      }
    }
    let t = now;
    let failed: KfdError | null = null;
    for (const r of update) {
      const wasMapped = this.rangeMapped(r);
      let migrated = false;
      if (prefetch) {
        this.triggerMigrated = false;
        const e = this.rangeTriggerMigration(p, r, t);
        if (e < 0) {
          // svm_range_set_attr: r = svm_range_trigger_migration(...); if (r) goto out_unlock_range; ... ret = r.
          t = -1 - e;
          failed = new KfdError(op, "ENOMEM", ERRNO.ENOMEM, `no VRAM for the ${r.npages}-page range at ${r.start} on GPU 0x${r.prefetchLoc.toString(16)}`);
          continue;
        }
        t = e;
        migrated = this.triggerMigrated;
      }
      // The migration evicted the queues of a mapped always-mapped range: "restore_work
      // will update mappings of GPUs".
      if (migrated && (!p.xnack || (r.flags & SVM_FLAG.GPU_ALWAYS_MAPPED) !== 0) && wasMapped) continue;
      if (!migrated && !updateMapping) continue;
      t = this.rangeValidateAndMap(p, r, t);
    }
    p.ctx.nowNs = t;
    this.endOp();
    if (failed !== null) {
      this.failedOpEndNs = t;
      throw failed;
    }
    return t;
  }

  /**
   * GET_ATTR over [start, start+npages) (§5): no range -> the defaults; else preferred and
   * prefetch UNDEFINED where ranges differ, SET_FLAGS = AND, CLR_FLAGS = NOR, granularity =
   * minimum, access per GPU = intersection over the ranges. Values are written in place;
   * access queries also rewrite the type (ACCESS / ACCESS_IN_PLACE / NO_ACCESS).
   */
  getAttr(pid: number, start: number, npages: number, attrs: AttrPair[]): AttrPair[] {
    const p = this.proc(pid);
    const op = "SVM GET_ATTR";
    if (!Number.isInteger(start) || !Number.isInteger(npages) || start < 0 || npages <= 0) {
      throw new KfdError(op, "EINVAL", ERRNO.EINVAL, `bad interval start ${start} size ${npages} pages`);
    }
    const last = start + npages - 1;
    // svm_range_is_valid guards GET_ATTR too.
    if (!this.vmaCovers(p, start, last)) throw new KfdError(op, "EFAULT", ERRNO.EFAULT, `[${start}, ${last}] is not all mapped by the CPU`);
    const all = 2 ** this.gpus.length - 1;
    let preferred = LOC_UNDEFINED;
    let prefetch = LOC_UNDEFINED;
    let granularity = GRANULARITY_MAX;
    let flagsAnd = 0xffffffff;
    let flagsOr = 0;
    let supported = 0;
    for (const g of this.gpus) if (g.svmSupported) supported |= 1 << g.index;
    let access = p.xnack ? supported : 0;
    let aip = 0;
    let first = true;
    let r = p.ranges.firstOverlap(start, last);
    if (r === null) {
      const d = new SvmRange(0, 0);
      preferred = d.preferredLoc;
      prefetch = d.prefetchLoc;
      granularity = d.granularity;
      flagsAnd = d.flags;
      flagsOr = d.flags;
    } else {
      access = all;
      aip = all;
      for (; r !== null && r.start <= last; r = r.next) {
        if (first) {
          preferred = r.preferredLoc;
          prefetch = r.prefetchLoc;
          first = false;
        } else {
          if (r.preferredLoc !== preferred) preferred = LOC_UNDEFINED;
          if (r.prefetchLoc !== prefetch) prefetch = LOC_UNDEFINED;
        }
        granularity = Math.min(granularity, r.granularity);
        flagsAnd = (flagsAnd & r.flags) >>> 0;
        flagsOr = (flagsOr | r.flags) >>> 0;
        access &= r.accessMask;
        aip &= r.aipMask;
      }
    }
    for (const a of attrs) {
      switch (a[0]) {
        case SVM_ATTR.PREFERRED_LOC:
          a[1] = preferred;
          break;
        case SVM_ATTR.PREFETCH_LOC:
          a[1] = prefetch;
          break;
        case SVM_ATTR.ACCESS:
        case SVM_ATTR.ACCESS_IN_PLACE:
        case SVM_ATTR.NO_ACCESS: {
          const g = this.gpuById.get(a[1]);
          if (g === undefined) throw new KfdError(op, "EINVAL", ERRNO.EINVAL, `gpu_id 0x${a[1].toString(16)} is no GPU of the process`);
          const bit = 1 << g.index;
          a[0] = (access & bit) !== 0 ? SVM_ATTR.ACCESS : (aip & bit) !== 0 ? SVM_ATTR.ACCESS_IN_PLACE : SVM_ATTR.NO_ACCESS;
          break;
        }
        case SVM_ATTR.SET_FLAGS:
          a[1] = flagsAnd;
          break;
        case SVM_ATTR.CLR_FLAGS:
          a[1] = ~flagsOr >>> 0;
          break;
        case SVM_ATTR.GRANULARITY:
          a[1] = granularity;
          break;
        default:
          throw new KfdError(op, "EINVAL", ERRNO.EINVAL, `unknown attribute type ${a[0]}`);
      }
    }
    return attrs;
  }

  /** svm_range_check_attr: a gpu_id must name a GPU of the process that supports SVM. */
  private checkAttrGpu(op: string, value: number): void {
    const g = this.gpuById.get(value);
    if (g === undefined) throw new KfdError(op, "EINVAL", ERRNO.EINVAL, `gpu_id 0x${value.toString(16)} is no GPU of the process`);
    if (!g.svmSupported) throw new KfdError(op, "EINVAL", ERRNO.EINVAL, `GPU 0x${value.toString(16)} not supported (no SVM)`);
  }

  private rangeApplyAttrs(r: SvmRange, attrs: readonly AttrPair[]): void {
    for (const [type, value] of attrs) {
      switch (type) {
        case SVM_ATTR.PREFERRED_LOC:
          r.preferredLoc = value;
          break;
        case SVM_ATTR.PREFETCH_LOC:
          r.prefetchLoc = value;
          break;
        case SVM_ATTR.ACCESS: {
          const bit = 1 << this.gpuById.get(value)!.index;
          r.accessMask |= bit;
          r.aipMask &= ~bit;
          break;
        }
        case SVM_ATTR.ACCESS_IN_PLACE: {
          const bit = 1 << this.gpuById.get(value)!.index;
          r.aipMask |= bit;
          r.accessMask &= ~bit;
          break;
        }
        case SVM_ATTR.NO_ACCESS: {
          const bit = 1 << this.gpuById.get(value)!.index;
          r.accessMask &= ~bit;
          r.aipMask &= ~bit;
          break;
        }
        case SVM_ATTR.SET_FLAGS:
          r.flags = (r.flags | value) >>> 0;
          break;
        case SVM_ATTR.CLR_FLAGS:
          r.flags = (r.flags & ~value) >>> 0;
          break;
        case SVM_ATTR.GRANULARITY:
          r.granularity = Math.min(value, GRANULARITY_MAX);
          break;
      }
    }
  }

  /**
   * The ranges exactly covering [start, last]: partly covered ranges are split at the edges;
   * with `fillGaps`, uncovered pages become new default ranges chopped at the largest range
   * size (svm_range_add). Never merges.
   */
  private rangesCovering(p: SvmProcess, start: number, last: number, fillGaps: boolean): SvmRange[] {
    const out: SvmRange[] = [];
    let cur = start;
    let r = p.ranges.firstOverlap(start, last);
    while (cur <= last) {
      if (r !== null && r.start <= last) {
        if (fillGaps && r.start > cur) this.rangeCreateChopped(p, cur, r.start - 1, out);
        if (r.start < start) r = this.rangeSplit(p, r, start);
        if (r.last > last) this.rangeSplit(p, r, last + 1);
        out.push(r);
        cur = r.last + 1;
        r = r.next;
      } else {
        if (fillGaps) this.rangeCreateChopped(p, cur, last, out);
        cur = last + 1;
      }
    }
    return out;
  }

  private rangeNew(p: SvmProcess, start: number, last: number): SvmRange {
    const r = new SvmRange(start, last);
    if (p.xnack) for (const g of this.gpus) if (g.svmSupported) r.accessMask |= 1 << g.index;
    r.ownerPid = p.pid;
    p.ranges.insert(r);
    return r;
  }

  private rangeCreateChopped(p: SvmProcess, s: number, l: number, out: SvmRange[]): void {
    const max = p.largestRangePages;
    for (let cur = s; cur <= l; ) {
      const end = Math.min(l, Math.floor(cur / max) * max + max - 1);
      out.push(this.rangeNew(p, cur, end));
      cur = end + 1;
    }
  }

  /**
   * svm_range_split: cut `r` before page `at`; `r` keeps [start, at-1], the returned tail
   * [at, last] gets the same attributes and its share of placement and VRAM buffer.
   */
  private rangeSplit(p: SvmProcess, r: SvmRange, at: number): SvmRange {
    if (!(at > r.start && at <= r.last)) this.fail(`split of [${r.start}, ${r.last}] at ${at}`);
    const tail = new SvmRange(at, r.last);
    tail.copyAttributes(r);
    if (tail.recentMoves !== null) this.thrashQueue.push(tail, r.lastMigrationNs);
    tail.pendingRemove = r.pendingRemove;
    // The kernel's pieces are new svm_ranges (svm_range_new): validate_timestamp 0.
    r.validateTimestampNs = NEVER_NS;
    r.last = at - 1;
    tail.vramRuns = runsClip(r.vramRuns, at, tail.last);
    r.vramRuns = runsClip(r.vramRuns, r.start, r.last);
    tail.vramPages = runsTotal(tail.vramRuns);
    r.vramPages -= tail.vramPages;
    for (let g = 0; g < r.mapped.length; g++) {
      tail.setMapped(g, runsClip(r.mappedOn(g), at, tail.last));
      r.setMapped(g, runsClip(r.mappedOn(g), r.start, r.last));
    }
    tail.ownerPid = p.pid;
    p.ranges.insert(tail);
    const loc = r.actualLoc;
    if (loc !== 0) {
      // The buffer is shared by the pieces; each piece holding VRAM pages keeps its share.
      const gi = this.gpuById.get(loc)!.index;
      tail.actualLoc = loc;
      this.lruInsertAfter(gi, r, tail);
      if (tail.vramPages === 0) this.bufferFree(tail);
      if (r.vramPages === 0) this.bufferFree(r);
    }
    if (r.pendingRemove) p.deferred.push(tail);
    return tail;
  }

  /** Unlink a range, unmap it from GPUs and free its VRAM (process exit, deferred work). */
  private rangeFree(p: SvmProcess, r: SvmRange): void {
    if (r.actualLoc !== 0) {
      r.vramRuns = null;
      r.vramPages = 0;
      this.bufferFree(r);
    }
    for (let g = 0; g < r.mapped.length; g++) r.setMapped(g, null);
    p.ranges.remove(r);
    for (let i = 0; i < p.cache.length; i++) if (p.cache[i] === r) p.cache[i] = null;
  }

  // ---- VRAM buffers and the TTM LRU (§1, §8) -----------------------------------------

  private lruInsertTail(gi: number, r: SvmRange): void {
    const t = this.lruTail[gi] ?? null;
    r.lruPrev = t;
    r.lruNext = null;
    if (t === null) this.lruHead[gi] = r;
    else t.lruNext = r;
    this.lruTail[gi] = r;
  }

  private lruInsertAfter(gi: number, a: SvmRange, r: SvmRange): void {
    const n = a.lruNext;
    r.lruPrev = a;
    r.lruNext = n;
    a.lruNext = r;
    if (n === null) this.lruTail[gi] = r;
    else n.lruPrev = r;
  }

  private lruUnlink(gi: number, r: SvmRange): void {
    const pr = r.lruPrev;
    const nx = r.lruNext;
    if (pr === null) this.lruHead[gi] = nx;
    else pr.lruNext = nx;
    if (nx === null) this.lruTail[gi] = pr;
    else nx.lruPrev = pr;
    r.lruPrev = null;
    r.lruNext = null;
  }

  /** The buffer was used: move it to the LRU tail. */
  private lruTouch(r: SvmRange, now: number): void {
    r.lastUseNs = now;
    if (r.actualLoc === 0) return;
    const gi = this.gpuById.get(r.actualLoc)!.index;
    if (this.lruTail[gi] === r) return;
    this.lruUnlink(gi, r);
    this.lruInsertTail(gi, r);
  }

  /** Free a range's VRAM buffer: its whole-range reservation returns to the GPU. */
  private bufferFree(r: SvmRange): void {
    const gi = this.gpuById.get(r.actualLoc)!.index;
    this.lruUnlink(gi, r);
    this.vramUsedPages[gi]! -= r.npages;
    if (this.vramUsedPages[gi]! < 0) this.fail(`GPU ${gi}: VRAM use negative`);
    r.actualLoc = 0;
    r.vramRuns = null;
    r.vramPages = 0;
  }

  /**
   * Reserve VRAM for the whole range on GPU `gi` (svm_range_vram_node_new). Under pressure
   * the memory manager evicts buffers (the policy's evictionVictim, LRU by default) until
   * the range fits. Returns the time after evictions, or -1 when VRAM stays full.
   */
  private bufferReserve(r: SvmRange, gi: number, t: number): number {
    const need = r.npages;
    const cap = this.vramCapPages[gi]!;
    if (need > cap) return -1;
    // Bounded: each round evicts one buffer, and there are finitely many.
    while (this.vramUsedPages[gi]! + need > cap) {
      const cands: SvmRange[] = [];
      for (let c: SvmRange | null = this.lruHead[gi] ?? null; c !== null && cands.length < EVICTION_CANDIDATES_MAX; c = c.lruNext) {
        if (c !== r) cands.push(c);
      }
      if (cands.length === 0) return -1;
      const owner = this.processes.get(r.ownerPid)!;
      owner.ctx.nowNs = t;
      const victim = this.decider.evictionVictim(
        {
          gpuId: this.gpus[gi]!.id,
          neededPages: need,
          candidates: cands.map((c) => ({
            rangeStart: c.start,
            npages: c.npages,
            vramPages: c.vramPages,
            lastUseNs: c.lastUseNs,
            lastMigrationNs: c.lastMigrationNs,
          })),
        },
        owner.ctx,
      );
      // A policy that names no candidate evicts nothing: the allocation fails.
      if (!Number.isInteger(victim) || victim < 0 || victim >= cands.length) return -1;
      const v = cands[victim]!;
      const vp = this.processes.get(v.ownerPid)!;
      t = this.migrateToRam(vp, v, v.start, v.last, MIGRATE_TRIGGER.TTM_EVICTION, t, true);
      this.stats.evictions++;
      this.observe("evict", t, this.gpus[gi]!.id, v.start, v.npages, this.gpus[gi]!.id, 0, MIGRATE_TRIGGER.TTM_EVICTION);
      if (v.actualLoc !== 0) this.fail(`evicted range [${v.start}, ${v.last}] still holds VRAM`);
    }
    this.vramUsedPages[gi]! += need;
    return t;
  }

  // ---- migration (§6) ----------------------------------------------------------------

  /**
   * Count one migration leg of `pages` pages (`runs`) on GPU index `gi` (the VRAM side). A
   * leg that brings some page back to where a migration of the last thrash window took it
   * from (to = that one's from, from = its to) is a thrash event.
   */
  private countMigration(p: SvmProcess, r: SvmRange, gi: number, from: number, to: number, pages: number, runs: number[], trigger: number, t: number): void {
    const bytes = pages * PAGE_BYTES;
    const s = this.stats;
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
    const expired = this.opStartNs - THRASH_EXPIRY_WINDOWS * this.thrashWindowNs;
    this.thrashRelease(expired);
    // Records are flat, MOVE_STRIDE values each: end time, from, to, runs (no object each).
    let list = r.recentMoves;
    let thrash = false;
    if (list === null) list = r.recentMoves = [t, from, to, runs];
    else {
      const k = movesPrune(list, expired);
      for (let i = 0; i < k && !thrash; i += MOVE_STRIDE) {
        const mt = list[i] as number;
        thrash = t - mt <= this.thrashWindowNs && list[i + 1] === to && list[i + 2] === from && runsMeet(list[i + 3] as number[], runs);
      }
      // Bounded: a range moving more often than this within one window keeps the newest.
      const keep = (THRASH_MOVES_MAX - 1) * MOVE_STRIDE;
      if (k > keep) {
        list.copyWithin(0, k - keep, k);
        list.length = keep;
      }
      list.push(t, from, to, runs);
    }
    this.thrashQueue.push(r, t);
    if (thrash) s.thrashEvents++;
    r.migrations++;
    r.lastMigrationNs = t;
  }

  /**
   * Drop the thrash records of ranges that have none left after `expired`, in the order they
   * were recorded (thrashQueue: range, record end): a range that never migrates again does
   * not keep its last moves. Each record is queued once and released once.
   */
  private thrashRelease(expired: number): void {
    const q = this.thrashQueue;
    let h = this.thrashHead;
    while (h < q.length && (q[h + 1] as number) < expired) {
      const r = q[h] as SvmRange;
      if (r.recentMoves !== null && movesPrune(r.recentMoves, expired) === 0) r.recentMoves = null;
      h += 2;
    }
    if (h > THRASH_QUEUE_COMPACT_MIN && h * 2 > q.length) {
      q.splice(0, h);
      h = 0;
    }
    this.thrashHead = h;
  }

  /** Copy the runs `gaps` on GPU `gi`'s SDMA ring (serialized, chunked); returns the end time. */
  private sdmaCopy(gi: number, from: number, to: number, gaps: number[], t: number): number {
    let s = Math.max(t, this.sdmaBusyNs[gi]!);
    for (let i = 0; i < gaps.length; i += 2) s += this.costs.copyNs(from, to, gaps[i + 1]! - gaps[i]! + 1, gi);
    this.sdmaBusyNs[gi] = s;
    return s;
  }

  /**
   * svm_migrate_to_vram: move window [s, l] of `r` to GPU `best`. From another GPU's VRAM
   * the whole range first goes back to RAM (VRAM->VRAM bounces). Reserves the whole range's
   * buffer first. Returns the end time, or -1 - t when VRAM is full (nothing moved to VRAM).
   */
  private migrateToVram(p: SvmProcess, r: SvmRange, best: number, s: number, l: number, trigger: number, t: number): number {
    const gpu = this.gpuById.get(best)!;
    const gi = gpu.index;
    let bounced = false;
    if (r.actualLoc !== 0 && r.actualLoc !== best) {
      t = this.migrateToRam(p, r, r.start, r.last, trigger, t, false);
      bounced = true;
    }
    if (r.actualLoc === 0) {
      const tr = this.bufferReserve(r, gi, t);
      if (tr < 0) return -1 - t;
      t = tr;
      r.actualLoc = best;
      this.lruInsertTail(gi, r);
    }
    const gaps = runsGaps(r.vramRuns, s, l);
    const pages = runsTotal(gaps.length > 0 ? gaps : null);
    const n = l - s + 1;
    if (pages === 0) {
      this.emptyMigration(p, r, s, l, 0, best, trigger, t, false);
      this.lruTouch(r, t);
      return t;
    }
    this.openMigrations++;
    if (this.wants(SMI_EVENT.MIGRATE_START, t, s, n)) this.sink!(ev.fmtMigrateStart(t, p.pid, s, n, 0, best, r.prefetchLoc, r.preferredLoc, trigger), best);
    const end = this.sdmaCopy(gi, 0, best, gaps, t);
    if (this.wants(SMI_EVENT.MIGRATE_END, end, s, n)) this.sink!(ev.fmtMigrateEnd(end, p.pid, s, n, 0, best, trigger, 0), best);
    this.openMigrations--;
    this.countMigration(p, r, gi, 0, best, pages, gaps, trigger, end);
    if (bounced) {
      this.stats.migrations.d2d++;
      this.stats.bytesMigrated.d2d += pages * PAGE_BYTES;
    }
    this.observe("migrate", end, best, s, n, 0, best, trigger);
    r.vramRuns = runsAdd(r.vramRuns, s, l);
    r.vramPages += pages;
    if (r.vramPages !== runsTotal(r.vramRuns)) this.fail(`range [${r.start}, ${r.last}] VRAM pages out of step`);
    this.lruTouch(r, end);
    this.rangeInvalidate(p, r, s, l, end, false);
    return end;
  }

  /**
   * svm_migrate_vram_to_ram for window [s, l]: pages of it in VRAM go back to RAM; when the
   * range has no VRAM page left its buffer is freed and actual_loc becomes 0. `external`:
   * the move comes from the CPU or the memory manager (the notifier treats it like the
   * kernel's own migrations).
   */
  private migrateToRam(p: SvmProcess, r: SvmRange, s: number, l: number, trigger: number, t: number, external: boolean): number {
    const from = r.actualLoc;
    if (from === 0) return t;
    const gi = this.gpuById.get(from)!.index;
    const pages = runsOverlap(r.vramRuns, s, l);
    if (pages === 0) {
      this.emptyMigration(p, r, s, l, from, 0, trigger, t, external);
      return t;
    }
    const n = l - s + 1;
    this.openMigrations++;
    if (this.wants(SMI_EVENT.MIGRATE_START, t, s, n)) this.sink!(ev.fmtMigrateStart(t, p.pid, s, n, from, 0, r.prefetchLoc, r.preferredLoc, trigger), from);
    const moved = runsClip(r.vramRuns, s, l)!; // pages > 0: some run overlaps
    const end = this.sdmaCopy(gi, from, 0, moved, t);
    if (this.wants(SMI_EVENT.MIGRATE_END, end, s, n)) this.sink!(ev.fmtMigrateEnd(end, p.pid, s, n, from, 0, trigger, 0), from);
    this.openMigrations--;
    this.countMigration(p, r, gi, from, 0, pages, moved, trigger, end);
    this.observe("migrate", end, from, s, n, from, 0, trigger);
    r.vramRuns = runsRemove(r.vramRuns, s, l);
    r.vramPages -= pages;
    if (r.vramPages === 0) this.bufferFree(r);
    this.rangeInvalidate(p, r, s, l, end, external);
    return end;
  }

  /**
   * A migration whose migrate_vma_setup collects no page: MIGRATE_START is emitted before
   * the collection and MIGRATE_END on the out_free path, so the pair appears anyway; the
   * setup still fired the MMU notifier (the range is invalidated). Nothing is counted.
   */
  private emptyMigration(p: SvmProcess, r: SvmRange, s: number, l: number, from: number, to: number, trigger: number, t: number, external: boolean): void {
    const n = l - s + 1;
    const node = from !== 0 ? from : to;
    if (this.wants(SMI_EVENT.MIGRATE_START, t, s, n)) this.sink!(ev.fmtMigrateStart(t, p.pid, s, n, from, to, r.prefetchLoc, r.preferredLoc, trigger), node);
    if (this.wants(SMI_EVENT.MIGRATE_END, t, s, n)) this.sink!(ev.fmtMigrateEnd(t, p.pid, s, n, from, to, trigger, 0), node);
    this.rangeInvalidate(p, r, s, l, t, external);
  }

  /** prange->mapped_to_gpu: some GPU has a mapping of some page of the range. */
  private rangeMapped(r: SvmRange): boolean {
    for (let g = 0; g < r.mapped.length; g++) {
      const m = r.mappedOn(g);
      if (m !== null && m.length > 0) return true;
    }
    return false;
  }

  /**
   * Pages [s, l] of `r` moved (svm_range_evict from the MMU notifier, which fires for the
   * kernel's own migrations too). Nothing happens unless the range is mapped on some GPU.
   * XNACK on (and not GPU_ALWAYS_MAPPED): svm_range_unmap_from_gpus, UNMAP_FROM_GPU
   * (MMU_NOTIFY_MIGRATE) for [s, l] on every access|aip GPU; the next access faults.
   * Otherwise the process's queues are evicted and the restore worker remaps after 1 ms.
   */
  private rangeInvalidate(p: SvmProcess, r: SvmRange, s: number, l: number, t: number, _external: boolean): void {
    if (!this.rangeMapped(r)) return;
    const alwaysMapped = !p.xnack || (r.flags & SVM_FLAG.GPU_ALWAYS_MAPPED) !== 0;
    if (alwaysMapped) {
      for (let g = 0; g < r.mapped.length; g++) r.setMapped(g, runsRemove(r.mappedOn(g), s, l));
      this.queuesEvict(p, r, t, QUEUE_EVICTION_TRIGGER.SVM);
      return;
    }
    const mask = r.accessMask | r.aipMask;
    for (let g = 0; g < this.gpus.length; g++) {
      if ((mask & (1 << g)) === 0) continue;
      r.setMapped(g, runsRemove(r.mappedOn(g), s, l));
      this.stats.unmaps++;
      if (this.wants(SMI_EVENT.UNMAP_FROM_GPU, t, s, l - s + 1)) this.sink!(ev.fmtUnmapFromGpu(t, p.pid, s, l - s + 1, this.gpus[g]!.id, UNMAP_TRIGGER.MMU_NOTIFY_MIGRATE), this.gpus[g]!.id);
      this.observe("unmap", t, this.gpus[g]!.id, s, l - s + 1, 0, 0, UNMAP_TRIGGER.MMU_NOTIFY_MIGRATE);
    }
  }

  /** Evict all queues of the process (QUEUE_EVICTION per GPU) and schedule restore_work in 1 ms. */
  private queuesEvict(p: SvmProcess, r: SvmRange, t: number, trigger: number): void {
    p.evictedRanges++;
    p.evictedList.push(r);
    if (p.queuesEvicted) return;
    p.queuesEvicted = true;
    this.stats.queueEvictions++;
    for (const g of this.gpus) {
      if (this.sink !== null) this.sink(ev.fmtQueueEviction(t, p.pid, g.id, trigger), g.id);
      this.observe("queue-evict", t, g.id, r.start, r.npages, 0, 0, trigger);
    }
    if (!p.restoreScheduled) {
      p.restoreScheduled = true;
      this.work.push({ kind: "restore", pid: p.pid, dueNs: t + this.costs.queueEvictNs + RESTORE_DELAY_NS });
    }
  }

  /**
   * restore_work (§7): remap every evicted range on its GPUs, then restart the queues
   * (QUEUE_RESTORE per GPU). Returns the time the queues run again.
   */
  restoreWork(pid: number, now: number): number {
    const p = this.processes.get(pid);
    if (p === undefined || !p.restoreScheduled) return now;
    p.restoreScheduled = false;
    let t = now;
    for (const r of p.evictedList) if (r.linked) t = this.rangeValidateAndMap(p, r, t);
    p.evictedList.length = 0;
    p.evictedRanges = 0;
    p.queuesEvicted = false;
    this.stats.queueRestores++;
    for (const g of this.gpus) {
      if (this.sink !== null) this.sink(ev.fmtQueueRestore(t, pid, g.id, false), g.id);
      this.observe("queue-restore", t, g.id, 0, 0, 0, 0, 0);
    }
    this.endOp();
    return t;
  }

  /**
   * svm_range_validate_and_map(..., MAX_GPU_INSTANCE): map the whole range. XNACK off: on
   * every access|aip GPU. XNACK on: on the aip GPUs, on actual_loc's GPU when it has ACCESS,
   * and on every access GPU when the range is mapped already or GPU_ALWAYS_MAPPED. Sets
   * validate_timestamp unless there was nothing to map.
   */
  private rangeValidateAndMap(p: SvmProcess, r: SvmRange, t: number): number {
    let mask = r.accessMask | r.aipMask;
    if (p.xnack) {
      mask = r.aipMask;
      if (r.actualLoc !== 0) {
        const bit = 1 << this.gpuById.get(r.actualLoc)!.index;
        if ((r.accessMask & bit) !== 0) mask |= bit;
      }
      if (this.rangeMapped(r) || (r.flags & SVM_FLAG.GPU_ALWAYS_MAPPED) !== 0) mask |= r.accessMask;
    }
    for (let g = 0; g < this.gpus.length; g++) {
      if ((mask & (1 << g)) === 0) continue;
      const m = r.mappedOn(g);
      if (m !== null && m.length === 2 && m[0] === r.start && m[1] === r.last) continue;
      t += this.costs.mapNs(g, r.npages);
      r.setMapped(g, [r.start, r.last]);
    }
    if (mask !== 0) r.validateTimestampNs = t;
    return t;
  }

  /**
   * svm_range_trigger_migration (§5): migrate the whole range to best_prefetch_location,
   * every time PREFETCH_LOC is set. A GPU target is redirected to system memory when a GPU
   * needing access (XNACK on: aip GPUs; off: access|aip) is outside the target's hive.
   * Returns the end time, or -1 - t when the VRAM reservation failed (SET_ATTR fails).
   */
  private rangeTriggerMigration(p: SvmProcess, r: SvmRange, t: number): number {
    const best = this.bestPrefetchLocation(p, r);
    // svm_range_trigger_migration does nothing only without a target, or when the target is
    // system memory and no page is in VRAM. A GPU target equal to actual_loc still migrates
    // (actual_loc set does not mean every page is in VRAM; the migration collects those that
    // are not, and emits its MIGRATE_START/END pair even when there is none): the whole
    // range, on every set.
    if (best === LOC_UNDEFINED || (best === 0 && r.actualLoc === 0)) return t;
    this.triggerMigrated = true;
    if (best === 0) return this.migrateToRam(p, r, r.start, r.last, MIGRATE_TRIGGER.PREFETCH, t, false);
    const e = this.migrateToVram(p, r, best, r.start, r.last, MIGRATE_TRIGGER.PREFETCH, t);
    if (e < 0) this.triggerMigrated = false;
    return e;
  }

  private bestPrefetchLocation(p: SvmProcess, r: SvmRange): number {
    const loc = r.prefetchLoc;
    if (loc === LOC_UNDEFINED || loc === 0) return loc;
    const target = this.gpuById.get(loc)!;
    if (target.appApu) return 0;
    const need = p.xnack ? r.aipMask : r.accessMask | r.aipMask;
    for (const g of this.gpus) {
      if ((need & (1 << g.index)) === 0) continue;
      if (g.id !== loc && !(g.hiveId !== 0 && g.hiveId === target.hiveId)) return 0;
    }
    return loc;
  }

  // ---- faults (§2, §3) ---------------------------------------------------------------

  /**
   * A wave retrying one GPU fault that the range's duplicate window keeps dropping: the
   * fault reaches the worker at `t`, is dropped (faultDropNs), the wave retries `retryNs`
   * after that, and so on. Does for each retry exactly what restorePages does for a batch of
   * that one fault (counters, step), without building the batch, while the retry comes
   * before `untilNs` (the caller's next other event: nothing else can change the range in
   * between) and inside the window. Returns the drops; `end[0]` is the last one's end.
   * 0 when the fault at `t` would not be a plain duplicate drop (restorePages decides it).
   */
  repeatDrops(pid: number, gi: number, addr: number, write: boolean, t: number, retryNs: number, untilNs: number, end: Float64Array): number {
    const p = this.proc(pid);
    const gpu = this.gpus[gi]!;
    if (!gpu.svmSupported || p.drainPagefaults || !p.xnack) return 0;
    const r = p.ranges.lookup(addr);
    if (r === null || r.pendingRemove || !r.linked) return 0;
    const vma = this.vmaFind(p, addr);
    if (vma === null || !vma.read || (write && (!vma.write || (r.flags & SVM_FLAG.GPU_RO) !== 0))) return 0;
    const windowEnd = r.validateTimestampNs + DUPLICATE_FAULT_WINDOW_NS;
    let k = 0;
    while (t < untilNs && t < windowEnd) {
      p.faults[gi]!++;
      this.stats.gpuFaultsDropped++;
      t += this.costs.faultDropNs;
      end[0] = t;
      k++;
      this.step++;
      if (this.fullCheckEvery > 0 && this.step % this.fullCheckEvery === 0) this.checkFull();
      t += retryNs;
    }
    return k;
  }

  /**
   * svm_range_restore_pages for a batch of `n` GPU faults of process `pid` on GPU index
   * `gi`, handled in order by the GPU's fault worker starting at `now`. Writes per fault a
   * FAULT_RESULT into `results` and its completion time into `doneNs`; returns the time
   * the worker is free again.
   */
  restorePages(
    pid: number,
    gi: number,
    n: number,
    addrs: Float64Array,
    writes: Uint8Array,
    now: number,
    results: Uint8Array,
    doneNs: Float64Array,
  ): number {
    const p = this.proc(pid);
    const gpu = this.gpus[gi]!;
    this.opStartNs = now;
    if (n > MIGRATION_BOUNDS.fault_batch_max) this.fail(`fault batch of ${n} exceeds ${MIGRATION_BOUNDS.fault_batch_max}`);
    if (this.batch.length < n * FAULT_STRIDE) {
      this.batch = new Float64Array(n * FAULT_STRIDE);
      this.decisions = new Float64Array(n * DECISION_STRIDE);
    }
    if (this.faultKinds.length < n) this.faultKinds = new Uint8Array(n);
    const batch = this.batch;
    const ranges = this.batchRanges;
    const kinds = this.faultKinds;
    let m = 0;
    // Pre-checks, in the kernel's order, before the policy decides.
    for (let i = 0; i < n; i++) {
      ranges[i] = null;
      const addr = addrs[i]!;
      if (!gpu.svmSupported) {
        results[i] = this.faultFatal(p, gpu.id);
        continue;
      }
      if (p.drainPagefaults) {
        results[i] = FAULT_RESULT.DROPPED;
        continue;
      }
      if (!p.xnack) {
        results[i] = this.faultFatal(p, gpu.id);
        continue;
      }
      let r = p.ranges.lookup(addr);
      if (r === null) {
        r = this.rangeCreateUnregistered(p, addr);
        if (r === null) {
          // -EFAULT via out_unlock_svms: svm_range_count_fault still runs.
          p.faults[gi]!++;
          results[i] = this.faultFatal(p, gpu.id);
          continue;
        }
      }
      if (r.pendingRemove) {
        // svm_range_skip_recover: dropped, counted.
        p.faults[gi]!++;
        results[i] = FAULT_RESULT.DROPPED;
        continue;
      }
      // The duplicate check (before the vma and permission checks in the kernel) uses the
      // time the fault is handled: it is done in the apply loop below.
      ranges[i] = r;
      const vma = this.vmaFind(p, addr);
      if (vma === null) {
        kinds[i] = FAULT_KIND_NO_VMA;
        continue;
      }
      // A write to a read-only CPU mapping, or to a GPU_RO range (mapped read-only on the
      // GPU), cannot be satisfied by mapping: a protection fault (-EPERM), fatal.
      if (!vma.read || (writes[i] === 1 && (!vma.write || (r.flags & SVM_FLAG.GPU_RO) !== 0))) {
        kinds[i] = FAULT_KIND_EPERM;
        continue;
      }
      // Inside the duplicate window now: most likely a duplicate when handled, so the
      // policy is not asked up front (the kernel decides only after the duplicate check);
      // if the window has passed by its turn, it is decided alone then.
      if (now < r.validateTimestampNs + DUPLICATE_FAULT_WINDOW_NS) {
        kinds[i] = FAULT_KIND_LATE;
        continue;
      }
      kinds[i] = FAULT_KIND_HANDLE;
      this.faultRow(batch, m * FAULT_STRIDE, gpu.id, gi, addr, writes[i]!, r, now);
      m++;
    }
    p.ctx.nowNs = now;
    if (m > 0) this.decider.decideFaults(batch, m, p.ctx, this.decisions);
    // Apply in order; the worker is busy while it copies (restore_pages waits).
    let t = now;
    let k = 0;
    for (let i = 0; i < n; i++) {
      const r = ranges[i];
      if (r === null || r === undefined) {
        t += results[i] === FAULT_RESULT.DROPPED ? this.costs.faultDropNs : 0;
        if (results[i] === FAULT_RESULT.DROPPED) this.stats.gpuFaultsDropped++;
        doneNs[i] = t;
        continue;
      }
      const kind = kinds[i]!;
      const d = k * DECISION_STRIDE;
      if (kind === FAULT_KIND_HANDLE) k++;
      // Duplicate suppression at the time this fault is handled (ktime per fault): a fault
      // earlier in this batch may have validated the range. Dropped faults are counted.
      if (t < r.validateTimestampNs + DUPLICATE_FAULT_WINDOW_NS || !r.linked || kind === FAULT_KIND_NO_VMA) {
        results[i] = FAULT_RESULT.DROPPED;
        p.faults[gi]!++;
        this.stats.gpuFaultsDropped++;
        t += this.costs.faultDropNs;
        doneNs[i] = t;
        continue;
      }
      if (kind === FAULT_KIND_EPERM) {
        p.faults[gi]!++;
        results[i] = this.faultFatal(p, gpu.id);
        doneNs[i] = t;
        continue;
      }
      if (kind === FAULT_KIND_LATE) {
        const one = this.lateBatch;
        const dec = this.lateDecision;
        this.faultRow(one, 0, gpu.id, gi, addrs[i]!, writes[i]!, r, t);
        p.ctx.nowNs = t;
        this.decider.decideFaults(one, 1, p.ctx, dec);
        t = this.faultApply(p, r, gi, addrs[i]!, writes[i] === 1, dec[0]!, dec[1]!, dec[2]!, t, results, i);
        doneNs[i] = t;
        continue;
      }
      t = this.faultApply(p, r, gi, addrs[i]!, writes[i] === 1, this.decisions[d]!, this.decisions[d + 1]!, this.decisions[d + 2]!, t, results, i);
      doneNs[i] = t;
    }
    if (m > 0) {
      const reqs = this.decider.prefetch(batch, m, this.decisions, p.ctx);
      for (const q of reqs) t = this.prefetchApply(p, q.start, q.npages, q.loc, t);
    }
    this.endOp();
    return t;
  }

  /** Write one fault row of a decideFaults batch at offset `b`. */
  private faultRow(batch: Float64Array, b: number, gpuId: number, gi: number, addr: number, write: number, r: SvmRange, now: number): void {
    batch[b + F.gpuId] = gpuId;
    batch[b + F.gpuIndex] = gi;
    batch[b + F.addr] = addr;
    batch[b + F.write] = write;
    batch[b + F.rangeStart] = r.start;
    batch[b + F.rangeLast] = r.last;
    batch[b + F.preferredLoc] = r.preferredLoc;
    batch[b + F.prefetchLoc] = r.prefetchLoc;
    batch[b + F.actualLoc] = r.actualLoc;
    batch[b + F.granularity] = r.granularity;
    batch[b + F.flags] = r.flags;
    batch[b + F.accessMask] = r.accessMask;
    batch[b + F.aipMask] = r.aipMask;
    batch[b + F.vramPages] = r.vramPages;
    batch[b + F.migrations] = r.migrations;
    batch[b + F.lastMigrationNs] = r.lastMigrationNs;
    batch[b + F.faultNs] = now;
  }

  private faultFatal(p: SvmProcess, gpuId: number): number {
    this.stats.gpuFaultsFatal++;
    if (this.sink !== null) this.sink(ev.fmtVmFault(p.pid, p.name), gpuId);
    return FAULT_RESULT.FATAL;
  }

  private faultApply(
    p: SvmProcess,
    r: SvmRange,
    gi: number,
    addr: number,
    write: boolean,
    best: number,
    ws: number,
    wl: number,
    t: number,
    results: Uint8Array,
    i: number,
  ): number {
    const gpu = this.gpus[gi]!;
    if (best === LOC_DENY) {
      // -EACCES: counted like every fault past the range lookup.
      p.faults[gi]!++;
      results[i] = this.faultFatal(p, gpu.id);
      return t;
    }
    // Deciders are validated by their adaptor; a location that is no GPU is a host bug.
    if (best !== LOC_SYSMEM && !this.gpuById.has(best)) this.fail(`policy ${this.decider.name} chose location ${best}, which is no GPU`);
    t += this.costs.faultServiceNs;
    if (this.wants(SMI_EVENT.PAGE_FAULT_START, t, addr, 1)) this.sink!(ev.fmtPageFaultStart(t, p.pid, addr, gpu.id, write), gpu.id);
    this.observe("fault", t, gpu.id, addr, 1, r.actualLoc, best, MIGRATE_TRIGGER.PAGEFAULT_GPU);
    // Never corrupt state on an odd window: keep it inside the range and holding addr.
    const s = Math.max(r.start, Math.min(ws, addr));
    const l = Math.min(r.last, Math.max(wl, addr));
    let migrated = false;
    if (r.actualLoc !== 0 || best !== 0) {
      migrated = true;
      if (best !== 0) {
        const e = this.migrateToVram(p, r, best, s, l, MIGRATE_TRIGGER.PAGEFAULT_GPU, t);
        if (e < 0) {
          t = -1 - e;
          this.stats.vramFallbacks++;
          // PAGE_FAULT_END still says M: `migration = true` was set before the attempt.
          if (r.actualLoc !== 0 && r.actualLoc !== best) t = this.migrateToRam(p, r, s, l, MIGRATE_TRIGGER.PAGEFAULT_GPU, t, false);
        } else t = e;
      } else t = this.migrateToRam(p, r, s, l, MIGRATE_TRIGGER.PAGEFAULT_GPU, t, false);
    }
    // Map the window on the faulting GPU only.
    t += this.costs.mapNs(gi, l - s + 1);
    r.setMapped(gi, runsAdd(r.mappedOn(gi), s, l));
    r.validateTimestampNs = t;
    this.lruTouch(r, t);
    if (this.wants(SMI_EVENT.PAGE_FAULT_END, t, addr, 1)) this.sink!(ev.fmtPageFaultEnd(t, p.pid, addr, gpu.id, migrated), gpu.id);
    p.faults[gi]!++;
    this.stats.gpuFaults++;
    results[i] = migrated ? FAULT_RESULT.MIGRATED : FAULT_RESULT.UPDATED;
    return t;
  }

  /** A prefetch request from the policy: move [start, start+npages) to `loc`. */
  private prefetchApply(p: SvmProcess, start: number, npages: number, loc: number, t: number): number {
    const last = start + npages - 1;
    for (let r = p.ranges.firstOverlap(start, last); r !== null && r.start <= last; r = r.next) {
      const s = Math.max(start, r.start);
      const l = Math.min(last, r.last);
      if (loc === 0) t = this.migrateToRam(p, r, s, l, MIGRATE_TRIGGER.PREFETCH, t, false);
      else if (this.gpuById.has(loc)) {
        const e = this.migrateToVram(p, r, loc, s, l, MIGRATE_TRIGGER.PREFETCH, t);
        t = e < 0 ? -1 - e : e;
      }
    }
    return t;
  }

  /**
   * svm_range_create_unregistered_range (§3): the 512-page block around addr, inside its
   * vma, clipped against neighbouring ranges; a single page when the block overlaps a
   * non-SVM buffer mapping (none when addr is inside one). Heap and stack get SYSMEM.
   */
  private rangeCreateUnregistered(p: SvmProcess, addr: number): SvmRange | null {
    const vma = this.vmaFind(p, addr);
    if (vma === null) return null;
    let s = Math.max(vma.start, Math.floor(addr / UNREGISTERED_ALIGN_PAGES) * UNREGISTERED_ALIGN_PAGES);
    let l = Math.min(vma.last, Math.floor(addr / UNREGISTERED_ALIGN_PAGES) * UNREGISTERED_ALIGN_PAGES + UNREGISTERED_ALIGN_PAGES - 1);
    const prev = p.ranges.floor(addr);
    if (prev !== null && prev.last >= s) s = prev.last + 1;
    const next = prev === null ? p.ranges.head : prev.next;
    if (next !== null && next.start <= l) l = next.start - 1;
    const bo = p.boMappings;
    for (let i = 0; i < bo.length; i += 2) {
      if (bo[i]! <= l && bo[i + 1]! >= s) {
        if (addr >= bo[i]! && addr <= bo[i + 1]!) return null;
        s = addr;
        l = addr;
        break;
      }
    }
    const r = this.rangeNew(p, s, l);
    if (vma.kind === "heap" || vma.kind === "stack") r.preferredLoc = LOC_SYSMEM;
    return r;
  }

  /**
   * A CPU access: on a VRAM page it is a CPU fault, migrating the granularity window
   * holding it back to RAM (PAGEFAULT_CPU); reads and writes fault alike. Returns the
   * completion time.
   */
  cpuAccess(pid: number, addr: number, _write: boolean, now: number): number {
    const p = this.proc(pid);
    this.opStartNs = now;
    const r = p.ranges.lookup(addr);
    if (r === null || r.actualLoc === 0 || !runsContains(r.vramRuns, addr)) return now;
    const g = 2 ** r.granularity;
    const block = Math.floor(addr / g) * g;
    const s = Math.max(block, r.start);
    const l = Math.min(block + g - 1, r.last);
    this.stats.cpuFaults++;
    const t = this.migrateToRam(p, r, s, l, MIGRATE_TRIGGER.PAGEFAULT_CPU, now + this.costs.faultServiceNs, true);
    this.endOp();
    return t;
  }

  /**
   * Hot path for the simulator: is `addr` mapped on GPU `gi` (for a write, when `write`)? Sets probeLoc (-1 unmapped,
   * else where the page lives: gpu_id or 0) and probeLast (last page of the same mapped run
   * at the same location). Allocates nothing.
   */
  probe(p: SvmProcess, gi: number, addr: number, write = false): number {
    let r: SvmRange | null = p.cache[gi] ?? null;
    if (r === null || !r.linked || addr < r.start || addr > r.last) {
      r = p.ranges.lookup(addr);
      p.cache[gi] = r;
      if (r === null) return this.probeMiss();
    }
    // GPU_RO ranges are mapped read-only: a write faults.
    if (write && (r.flags & SVM_FLAG.GPU_RO) !== 0) return this.probeMiss();
    const m = r.mappedOn(gi);
    if (m === null) return this.probeMiss();
    let ml = -1;
    for (let i = 0; i < m.length; i += 2) {
      if (addr < m[i]!) break;
      if (addr <= m[i + 1]!) {
        ml = m[i + 1]!;
        break;
      }
    }
    if (ml < 0) return this.probeMiss();
    const v = r.vramRuns;
    let loc = 0;
    let last = ml;
    if (v !== null) {
      for (let i = 0; i < v.length; i += 2) {
        if (addr < v[i]!) {
          last = Math.min(last, v[i]! - 1);
          break;
        }
        if (addr <= v[i + 1]!) {
          loc = r.actualLoc;
          last = Math.min(last, v[i + 1]!);
          break;
        }
      }
    }
    this.probeLast = last;
    this.probeLoc = loc;
    return loc;
  }

  private probeMiss(): number {
    this.probeLoc = -1;
    return -1;
  }

  // ---- helpers -----------------------------------------------------------------------

  /** The process `pid`. @throws KfdError ESRCH-like EINVAL when unknown. */
  proc(pid: number): SvmProcess {
    const p = this.processes.get(pid);
    if (p === undefined) throw new KfdError("SVM", "EINVAL", ERRNO.EINVAL, `no process ${pid}`);
    this.opCtx = p.ctx;
    return p;
  }

  gpuOf(id: number): SvmGpu | undefined {
    return this.gpuById.get(id);
  }

  private vmaFind(p: SvmProcess, addr: number): Vma | null {
    const v = p.vmas;
    let lo = 0;
    let hi = v.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const x = v[mid]!;
      if (addr < x.start) hi = mid - 1;
      else if (addr > x.last) lo = mid + 1;
      else return x;
    }
    return null;
  }

  private vmaCovers(p: SvmProcess, s: number, l: number): boolean {
    let cur = s;
    while (cur <= l) {
      const v = this.vmaFind(p, cur);
      if (v === null) return false;
      cur = v.last + 1;
    }
    return true;
  }

  private observe(kind: ObservedKind, nowNs: number, gpuId: number, start: number, npages: number, from: number, to: number, trigger: number): void {
    if (!this.observing || !observeWanted(this.observeMasks, kind, trigger)) return;
    let e = this.observed[this.observedCount];
    if (e === undefined) {
      e = { kind, nowNs, gpuId, start, npages, from, to, trigger };
      this.observed.push(e);
    } else {
      e.kind = kind;
      e.nowNs = nowNs;
      e.gpuId = gpuId;
      e.start = start;
      e.npages = npages;
      e.from = from;
      e.to = to;
      e.trigger = trigger;
    }
    this.observedCount++;
    if (this.observedCount >= MIGRATION_BOUNDS.observe_events_max) this.flushObserved();
  }

  private flushObserved(): void {
    if (this.observedCount === 0) return;
    const n = this.observedCount;
    this.observedCount = 0;
    const ctx = this.opCtx;
    if (ctx === null) return;
    this.decider.observe(n === this.observed.length ? this.observed : this.observed.slice(0, n), ctx);
  }
}
