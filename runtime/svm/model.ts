/**
 * The SVM model: kfd_svm.c and kfd_migrate.c restated (kfd-svm.md), pure and deterministic.
 * No I/O and no clock of its own: every operation takes the simulated time `now` (ns) and
 * returns when it completes; copy and map times come from an injected cost model. Where a
 * decision is the policy's (restore location, window, prefetch, eviction victim) it asks
 * the MigrationDecider, in batches; everything else is the kernel's code path.
 *
 * This file holds the model's state, its invariants and the entry points; each rule lives
 * in the file named after where the kernel keeps it, as functions taking the model first:
 * - process.ts    process create/destroy (svm_range_list_init/fini), SET_XNACK_MODE
 * - range-list.ts the range list: new, add, split, free; mmap/munmap, the deferred list
 * - attr.ts       SET_ATTR / GET_ATTR, svm_range_trigger_migration
 * - map.ts        svm_range_validate_and_map, svm_range_unmap_from_gpus (mapped_to_gpu)
 * - fault.ts      svm_range_restore_pages, svm_range_create_unregistered_range
 * - migrate.ts    kfd_migrate.c: to VRAM, to RAM, the CPU fault; migration and thrash counts
 * - evict.ts      svm_range_evict (MMU notifier), svm_range_restore_work
 * - vram.ts       VRAM buffers, the TTM LRU and eviction, non-SVM reservations
 * Their functions are internal to runtime/svm: other layers use SvmModel's methods.
 *
 * Invariants (DESIGN.md): ranges never overlap, tree and list agree, VRAM use within
 * [0, capacity], every MIGRATE_START has its END, a process exit leaves nothing behind.
 * Cheap checks run on every operation, the full check every `fullCheckEvery` operations;
 * a violation throws InvariantError naming the seed and the step that reproduce it.
 */
import { InvariantError, KfdError } from "../errors.ts";
import {
  DECISION_STRIDE,
  FAULT_STRIDE,
  LOC_UNDEFINED,
  MIGRATION_BOUNDS,
  type MigrationDecider,
  type ObservedEvent,
  type ObservedKind,
  type ObserveMasks,
  observeWanted,
  type PolicyContext,
  SVM_FLAG,
} from "../policy/contracts/migration.ts";
import { getAttr, setAttr } from "./attr.ts";
import { ERRNO, GPUS_PER_PROCESS_MAX, PAGE_BYTES } from "./constants.ts";
import { restoreWork } from "./evict.ts";
import { repeatDrops, restorePages } from "./fault.ts";
import { cpuAccess, THRASH_WINDOW_NS_DEFAULT } from "./migrate.ts";
import { processCreate, processDestroy, type SvmProcess, setXnack } from "./process.ts";
import type { SvmRange } from "./range.ts";
import { boMappingAdd, boMappingRemove, DEFERRED_DELAY_NS_DEFAULT, deferredWork, vmaAdd, vmaFind, vmaRemove } from "./range-list.ts";
import { runsTotal, runsWellFormed } from "./runs.ts";
import type {
  AttrPair,
  ProcessGpuCounters,
  SvmCosts,
  SvmEventFilter,
  SvmEventSink,
  SvmGpu,
  SvmModelOptions,
  SvmStats,
  SvmWork,
  Vma,
} from "./types.ts";
import { vramAvailableBytes, vramNonSvmRelease, vramNonSvmReserve } from "./vram.ts";

// The public surface of runtime/svm, unchanged by the split into files.
export { THRASH_EXPIRY_WINDOWS, THRASH_MOVES_MAX, THRASH_WINDOW_NS_DEFAULT } from "./migrate.ts";
export { SvmProcess } from "./process.ts";
export { DEFERRED_DELAY_NS_DEFAULT } from "./range-list.ts";
export * from "./types.ts";
export { EVICTION_CANDIDATES_MAX } from "./vram.ts";

/** Default full-check period, operations. */
export const FULL_CHECK_EVERY_DEFAULT = 4096;

const NO_WORK: SvmWork[] = [];

/** All counters at zero. */
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
  // Most fields below are state the files of runtime/svm share (their functions take the
  // model first). Other layers call the methods and read only gpus, stats, processes,
  // vram*, exitCounters, step, probeLoc/probeLast and failedOpEndNs.
  /** Per GPU index: LRU list of ranges holding a VRAM buffer there (head = least recent). */
  readonly lruHead: (SvmRange | null)[];
  readonly lruTail: (SvmRange | null)[];
  readonly work: SvmWork[] = [];
  readonly sink: SvmEventSink | null;
  readonly sinkFilter: SvmEventFilter | null;
  readonly fullCheckEvery: number;
  readonly thrashWindowNs: number;
  /**
   * Start of the operation in progress (setAttr, restorePages, cpuAccess: the ones that
   * migrate), ns. Its migrations end no earlier, so a recorded move that ended a thrash
   * window before it can never be matched again: thrash records are dropped against this
   * clock, not against a leg's copy end (copy ends are not in order across SDMA rings).
   */
  opStartNs = 0;
  /** Ranges holding thrash records, in recording order, each with the record's end: [range, ns, ...] (thrashRelease). */
  readonly thrashQueue: (SvmRange | number)[] = [];
  thrashHead = 0;
  readonly deferredDelayNs: number;
  /** sysfs counters of exited processes, per GPU, in exit order. */
  readonly exitCounters: ProcessGpuCounters[] = [];
  /** Operations so far: the step an invariant failure names. */
  step = 0;
  openMigrations = 0;
  /** Context of the operation in progress: observe() batches go to the policy with it. */
  opCtx: PolicyContext | null = null;
  readonly gpuById = new Map<number, SvmGpu>();
  /** Fault batch buffers, reused (no per-fault allocation). */
  batch = new Float64Array(64 * FAULT_STRIDE);
  decisions = new Float64Array(64 * DECISION_STRIDE);
  batchRanges: (SvmRange | null)[] = [];
  faultKinds = new Uint8Array(64);
  /** A single fault decided at its handling time (FAULT_KIND_LATE). */
  readonly lateBatch = new Float64Array(FAULT_STRIDE);
  readonly lateDecision = new Float64Array(DECISION_STRIDE);
  readonly observed: ObservedEvent[] = [];
  /** The decider wants observe() batches (MigrationDecider.observes !== false). */
  readonly observing: boolean;
  /** Events the decider wants, by kind and trigger (undefined: all). */
  readonly observeMasks: ObserveMasks | undefined;
  observedCount = 0;
  /** Set by probe(): location of the probed page, and last page of the same mapped run. */
  probeLoc = -1;
  probeLast = 0;
  /** Completion time of the last SET_ATTR that threw after doing work (a failed prefetch), ns. */
  failedOpEndNs = 0;
  /** Set by rangeTriggerMigration when it migrated (svm_range_trigger_migration's *migrated). */
  triggerMigrated = false;

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
  wants(id: number, ns: number, page: number, npages: number): boolean {
    return this.sink !== null && (this.sinkFilter === null || this.sinkFilter(id, ns, page, npages));
  }

  endOp(): void {
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

  /** Work items the model scheduled since the last call (restore_work, deferred_list). */
  takeWork(): SvmWork[] {
    return this.work.length === 0 ? NO_WORK : this.work.splice(0, this.work.length);
  }

  // ---- the kernel's entry points, each kept in the file named after its kernel file ----

  /** open(/dev/kfd): svm_range_list_init (process.ts). @throws KfdError EBUSY when `pid` has a process. */
  processCreate(pid: number, opts: { xnack: boolean; name?: string }): SvmProcess {
    return processCreate(this, pid, opts);
  }

  /** Process exit in kfd-svm.md §9 order (process.ts); returns `now`. */
  processDestroy(pid: number, now: number): number {
    return processDestroy(this, pid, now);
  }

  /** SET_XNACK_MODE (process.ts). @throws KfdError EBUSY when the process has user queues. */
  setXnack(pid: number, value: number): number {
    return setXnack(this, pid, value);
  }

  /** mmap: add a CPU mapping (range-list.ts). @throws KfdError EINVAL on a bad or overlapping mapping. */
  vmaAdd(pid: number, start: number, npages: number, kind: Vma["kind"] = "anon", write = true): void {
    vmaAdd(this, pid, start, npages, kind, write);
  }

  /** A non-SVM buffer mapped in the GPU VM (range-list.ts). */
  boMappingAdd(pid: number, start: number, npages: number): void {
    boMappingAdd(this, pid, start, npages);
  }

  /** The non-SVM buffer mapping [start, start+npages) goes (range-list.ts). */
  boMappingRemove(pid: number, start: number, npages: number): void {
    boMappingRemove(this, pid, start, npages);
  }

  /** munmap: svm_range_unmap_from_cpu, then the deferred list (range-list.ts). */
  vmaRemove(pid: number, start: number, npages: number, now: number): void {
    vmaRemove(this, pid, start, npages, now);
  }

  /** The deferred_list worker (range-list.ts). */
  deferredWork(pid: number, now: number, inDestroy = false): void {
    deferredWork(this, pid, now, inDestroy);
  }

  /** Does a CPU mapping of process `p` cover page `addr` (a CPU access there would not SIGSEGV)? */
  cpuMapped(p: SvmProcess, addr: number): boolean {
    return vmaFind(p, addr) !== null;
  }

  /** VRAM of GPU index `gi` SVM or a non-SVM allocation can still get, bytes (vram.ts). */
  vramAvailableBytes(gi: number): number {
    return vramAvailableBytes(this, gi);
  }

  /** A non-SVM VRAM allocation (vram.ts). @throws KfdError ENOMEM when the free VRAM is smaller. */
  vramNonSvmReserve(gi: number, npages: number): void {
    vramNonSvmReserve(this, gi, npages);
  }

  /** Give back what vramNonSvmReserve took (vram.ts). */
  vramNonSvmRelease(gi: number, npages: number): void {
    vramNonSvmRelease(this, gi, npages);
  }

  /**
   * SET_ATTR (attr.ts): returns the completion time, ns.
   * @throws KfdError EINVAL, EFAULT, EADDRINUSE, ENOMEM (then failedOpEndNs says when it ended).
   */
  setAttr(pid: number, start: number, npages: number, attrs: readonly AttrPair[], now: number): number {
    return setAttr(this, pid, start, npages, attrs, now);
  }

  /** GET_ATTR (attr.ts): fills `attrs` in place and returns it. @throws KfdError EINVAL, EFAULT. */
  getAttr(pid: number, start: number, npages: number, attrs: AttrPair[]): AttrPair[] {
    return getAttr(this, pid, start, npages, attrs);
  }

  /** svm_range_restore_work (evict.ts): returns the time the queues run again. */
  restoreWork(pid: number, now: number): number {
    return restoreWork(this, pid, now);
  }

  /** svm_range_restore_pages for a batch of GPU faults (fault.ts): returns when the fault worker is free. */
  restorePages(pid: number, gi: number, n: number, addrs: Float64Array, writes: Uint8Array, now: number, results: Uint8Array, doneNs: Float64Array): number {
    return restorePages(this, pid, gi, n, addrs, writes, now, results, doneNs);
  }

  /** One fault retried while the duplicate window drops it, replayed in one call (fault.ts). */
  repeatDrops(pid: number, gi: number, addr: number, write: boolean, t: number, retryNs: number, untilNs: number, end: Float64Array): number {
    return repeatDrops(this, pid, gi, addr, write, t, retryNs, untilNs, end);
  }

  /** A CPU access; on a VRAM page the CPU fault of svm_migrate_to_ram (migrate.ts). Returns the completion time. */
  cpuAccess(pid: number, addr: number, write: boolean, now: number): number {
    return cpuAccess(this, pid, addr, write, now);
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

  probeMiss(): number {
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

  observe(kind: ObservedKind, nowNs: number, gpuId: number, start: number, npages: number, from: number, to: number, trigger: number): void {
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

  flushObserved(): void {
    if (this.observedCount === 0) return;
    const n = this.observedCount;
    this.observedCount = 0;
    const ctx = this.opCtx;
    if (ctx === null) return;
    this.decider.observe(n === this.observed.length ? this.observed : this.observed.slice(0, n), ctx);
  }
}
