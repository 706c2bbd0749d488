/**
 * Process create and destroy (kfd-svm.md §9): the SVM side of kfd_process.c, i.e.
 * svm_range_list_init at open(/dev/kfd) and svm_range_list_fini at exit, in the kernel's
 * order (async work first, data structures after), and SET_XNACK_MODE (kfd_chardev.c
 * kfd_ioctl_set_xnack_mode).
 */
import { KfdError } from "../errors.ts";
import type { PolicyContext, PolicyGpu } from "../policy/contracts/migration.ts";
import { ERRNO, largestRangePages } from "./constants.ts";
import * as ev from "./events.ts";
import type { SvmModel } from "./model.ts";
import { type SvmRange, SvmRangeList } from "./range.ts";
import { deferredWork, rangeFree } from "./range-list.ts";
import { SMI_ALL_GPUS, type Vma } from "./types.ts";

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

/** Create a process: svm_range_list_init (empty tree and list, counters 0), then the table. */
export function processCreate(m: SvmModel, pid: number, opts: { xnack: boolean; name?: string }): SvmProcess {
  if (m.processes.has(pid)) throw new KfdError("open /dev/kfd", "EBUSY", ERRNO.EBUSY, `pid ${pid} already has a process`);
  const largest = Math.min(...m.gpus.map((g) => largestRangePages(g.vramBytes)));
  const p = new SvmProcess(pid, opts.name ?? `pid${pid}`, opts.xnack, m.gpus, largest);
  m.processes.set(pid, p);
  if (m.sink !== null) m.sink(ev.fmtProcess(true, pid, p.name), SMI_ALL_GPUS);
  m.endOp();
  return p;
}

/**
 * Destroy a process in §9 order: cancel restore_work, flush the deferred worker, set
 * drain_pagefaults, then for each range unlink, unmap, free VRAM. Afterwards the process
 * holds no VRAM, no range and no pending work (asserted).
 */
export function processDestroy(m: SvmModel, pid: number, now: number): number {
  const p = m.proc(pid);
  // Async work first: the restore worker is cancelled, the deferred list flushed.
  p.restoreScheduled = false;
  p.queuesEvicted = false;
  p.evictedList.length = 0;
  p.evictedRanges = 0;
  deferredWork(m, pid, now, true);
  p.drainPagefaults = true;
  // Then the data structures.
  for (let r = p.ranges.head; r !== null; ) {
    const next = r.next;
    rangeFree(m, p, r);
    r = next;
  }
  for (let i = m.work.length - 1; i >= 0; i--) if (m.work[i]!.pid === pid) m.work.splice(i, 1);
  if (p.ranges.count !== 0 || p.ranges.head !== null) m.fail(`pid ${pid} exit left ${p.ranges.count} ranges`);
  if (p.deferred.length !== 0 || p.restoreScheduled) m.fail(`pid ${pid} exit left pending work`);
  for (const g of m.gpus) {
    m.exitCounters.push({ pid, gpuId: g.id, faults: p.faults[g.index]!, pageIn: p.pageIn[g.index]!, pageOut: p.pageOut[g.index]! });
  }
  m.processes.delete(pid);
  if (m.sink !== null) m.sink(ev.fmtProcess(false, pid, p.name), SMI_ALL_GPUS);
  m.endOp();
  m.checkFull();
  return now;
}

/** SET_XNACK_MODE: negative queries; any set (even to the current mode) needs a process without user queues (§5). */
export function setXnack(m: SvmModel, pid: number, value: number): number {
  const p = m.proc(pid);
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
