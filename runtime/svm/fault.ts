/**
 * The GPU fault path (kfd-svm.md §2, §3): svm_range_restore_pages for a batch of retry
 * faults of one GPU, with svm_range_create_unregistered_range for an address no range
 * covers; the policy decides where each fault's window goes (svm_range_best_restore_location
 * in kernel-default).
 */
import {
  DECISION_STRIDE,
  F,
  FAULT_STRIDE,
  LOC_DENY,
  LOC_SYSMEM,
  MIGRATION_BOUNDS,
  SVM_FLAG,
} from "../policy/contracts/migration.ts";
import { DUPLICATE_FAULT_WINDOW_NS, MIGRATE_TRIGGER, SMI_EVENT, UNREGISTERED_ALIGN_PAGES } from "./constants.ts";
import * as ev from "./events.ts";
import { migrateToRam, migrateToVram, prefetchApply } from "./migrate.ts";
import type { SvmModel } from "./model.ts";
import type { SvmProcess } from "./process.ts";
import type { SvmRange } from "./range.ts";
import { rangeNew, vmaFind } from "./range-list.ts";
import { runsAdd } from "./runs.ts";
import { FAULT_RESULT } from "./types.ts";
import { lruTouch } from "./vram.ts";

/** How a fault with a range is handled once its duplicate check passed. */
const FAULT_KIND_HANDLE = 0;
/** The vma went away (stale retry fault): dropped. */
const FAULT_KIND_NO_VMA = 1;
/** No permission for the access: -EPERM, fatal. */
const FAULT_KIND_EPERM = 2;
/** In the duplicate window at batch start: checked, and decided if needed, when handled. */
const FAULT_KIND_LATE = 3;

/**
 * A wave retrying one GPU fault that the range's duplicate window keeps dropping: the
 * fault reaches the worker at `t`, is dropped (faultDropNs), the wave retries `retryNs`
 * after that, and so on. Does for each retry exactly what restorePages does for a batch of
 * that one fault (counters, step), without building the batch, while the retry comes
 * before `untilNs` (the caller's next other event: nothing else can change the range in
 * between) and inside the window. Returns the drops; `end[0]` is the last one's end.
 * 0 when the fault at `t` would not be a plain duplicate drop (restorePages decides it).
 */
export function repeatDrops(m: SvmModel, pid: number, gi: number, addr: number, write: boolean, t: number, retryNs: number, untilNs: number, end: Float64Array): number {
  const p = m.proc(pid);
  const gpu = m.gpus[gi]!;
  if (!gpu.svmSupported || p.drainPagefaults || !p.xnack) return 0;
  const r = p.ranges.lookup(addr);
  if (r === null || r.pendingRemove || !r.linked) return 0;
  const vma = vmaFind(p, addr);
  if (vma === null || !vma.read || (write && (!vma.write || (r.flags & SVM_FLAG.GPU_RO) !== 0))) return 0;
  const windowEnd = r.validateTimestampNs + DUPLICATE_FAULT_WINDOW_NS;
  let k = 0;
  while (t < untilNs && t < windowEnd) {
    p.faults[gi]!++;
    m.stats.gpuFaultsDropped++;
    t += m.costs.faultDropNs;
    end[0] = t;
    k++;
    m.step++;
    if (m.fullCheckEvery > 0 && m.step % m.fullCheckEvery === 0) m.checkFull();
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
export function restorePages(
  m: SvmModel,
  pid: number,
  gi: number,
  n: number,
  addrs: Float64Array,
  writes: Uint8Array,
  now: number,
  results: Uint8Array,
  doneNs: Float64Array,
): number {
  const p = m.proc(pid);
  const gpu = m.gpus[gi]!;
  m.opStartNs = now;
  if (n > MIGRATION_BOUNDS.fault_batch_max) m.fail(`fault batch of ${n} exceeds ${MIGRATION_BOUNDS.fault_batch_max}`);
  if (m.batch.length < n * FAULT_STRIDE) {
    m.batch = new Float64Array(n * FAULT_STRIDE);
    m.decisions = new Float64Array(n * DECISION_STRIDE);
  }
  if (m.faultKinds.length < n) m.faultKinds = new Uint8Array(n);
  const batch = m.batch;
  const ranges = m.batchRanges;
  const kinds = m.faultKinds;
  let decided = 0;
  // Pre-checks, in the kernel's order, before the policy decides.
  for (let i = 0; i < n; i++) {
    ranges[i] = null;
    const addr = addrs[i]!;
    if (!gpu.svmSupported) {
      results[i] = faultFatal(m, p, gpu.id);
      continue;
    }
    if (p.drainPagefaults) {
      results[i] = FAULT_RESULT.DROPPED;
      continue;
    }
    if (!p.xnack) {
      results[i] = faultFatal(m, p, gpu.id);
      continue;
    }
    let r = p.ranges.lookup(addr);
    if (r === null) {
      r = rangeCreateUnregistered(m, p, addr);
      if (r === null) {
        // -EFAULT via out_unlock_svms: svm_range_count_fault still runs.
        p.faults[gi]!++;
        results[i] = faultFatal(m, p, gpu.id);
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
    const vma = vmaFind(p, addr);
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
    faultRow(batch, decided * FAULT_STRIDE, gpu.id, gi, addr, writes[i]!, r, now);
    decided++;
  }
  p.ctx.nowNs = now;
  if (decided > 0) m.decider.decideFaults(batch, decided, p.ctx, m.decisions);
  // Apply in order; the worker is busy while it copies (restore_pages waits).
  let t = now;
  let k = 0;
  for (let i = 0; i < n; i++) {
    const r = ranges[i];
    if (r === null || r === undefined) {
      t += results[i] === FAULT_RESULT.DROPPED ? m.costs.faultDropNs : 0;
      if (results[i] === FAULT_RESULT.DROPPED) m.stats.gpuFaultsDropped++;
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
      m.stats.gpuFaultsDropped++;
      t += m.costs.faultDropNs;
      doneNs[i] = t;
      continue;
    }
    if (kind === FAULT_KIND_EPERM) {
      p.faults[gi]!++;
      results[i] = faultFatal(m, p, gpu.id);
      doneNs[i] = t;
      continue;
    }
    if (kind === FAULT_KIND_LATE) {
      const one = m.lateBatch;
      const dec = m.lateDecision;
      faultRow(one, 0, gpu.id, gi, addrs[i]!, writes[i]!, r, t);
      p.ctx.nowNs = t;
      m.decider.decideFaults(one, 1, p.ctx, dec);
      t = faultApply(m, p, r, gi, addrs[i]!, writes[i] === 1, dec[0]!, dec[1]!, dec[2]!, t, results, i);
      doneNs[i] = t;
      continue;
    }
    t = faultApply(m, p, r, gi, addrs[i]!, writes[i] === 1, m.decisions[d]!, m.decisions[d + 1]!, m.decisions[d + 2]!, t, results, i);
    doneNs[i] = t;
  }
  if (decided > 0) {
    const reqs = m.decider.prefetch(batch, decided, m.decisions, p.ctx);
    for (const q of reqs) t = prefetchApply(m, p, q.start, q.npages, q.loc, t);
  }
  m.endOp();
  return t;
}

/** Write one fault row of a decideFaults batch at offset `b`. */
function faultRow(batch: Float64Array, b: number, gpuId: number, gi: number, addr: number, write: number, r: SvmRange, now: number): void {
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

function faultFatal(m: SvmModel, p: SvmProcess, gpuId: number): number {
  m.stats.gpuFaultsFatal++;
  if (m.sink !== null) m.sink(ev.fmtVmFault(p.pid, p.name), gpuId);
  return FAULT_RESULT.FATAL;
}

function faultApply(
  m: SvmModel,
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
  const gpu = m.gpus[gi]!;
  if (best === LOC_DENY) {
    // -EACCES: counted like every fault past the range lookup.
    p.faults[gi]!++;
    results[i] = faultFatal(m, p, gpu.id);
    return t;
  }
  // Deciders are validated by their adaptor; a location that is no GPU is a host bug.
  if (best !== LOC_SYSMEM && !m.gpuById.has(best)) m.fail(`policy ${m.decider.name} chose location ${best}, which is no GPU`);
  t += m.costs.faultServiceNs;
  if (m.wants(SMI_EVENT.PAGE_FAULT_START, t, addr, 1)) m.sink!(ev.fmtPageFaultStart(t, p.pid, addr, gpu.id, write), gpu.id);
  m.observe("fault", t, gpu.id, addr, 1, r.actualLoc, best, MIGRATE_TRIGGER.PAGEFAULT_GPU);
  // Never corrupt state on an odd window: keep it inside the range and holding addr.
  const s = Math.max(r.start, Math.min(ws, addr));
  const l = Math.min(r.last, Math.max(wl, addr));
  let migrated = false;
  if (r.actualLoc !== 0 || best !== 0) {
    migrated = true;
    if (best !== 0) {
      const e = migrateToVram(m, p, r, best, s, l, MIGRATE_TRIGGER.PAGEFAULT_GPU, t);
      if (e < 0) {
        t = -1 - e;
        m.stats.vramFallbacks++;
        // PAGE_FAULT_END still says M: `migration = true` was set before the attempt.
        if (r.actualLoc !== 0 && r.actualLoc !== best) t = migrateToRam(m, p, r, s, l, MIGRATE_TRIGGER.PAGEFAULT_GPU, t, false);
      } else t = e;
    } else t = migrateToRam(m, p, r, s, l, MIGRATE_TRIGGER.PAGEFAULT_GPU, t, false);
  }
  // Map the window on the faulting GPU only: svm_range_validate_and_map(mm, start, last,
  // prange, gpuidx, ...), which sets mapped_to_gpu and validate_timestamp.
  t += m.costs.mapNs(gi, l - s + 1);
  r.setMapped(gi, runsAdd(r.mappedOn(gi), s, l));
  r.mappedToGpu = true;
  r.validateTimestampNs = t;
  lruTouch(m, r, t);
  if (m.wants(SMI_EVENT.PAGE_FAULT_END, t, addr, 1)) m.sink!(ev.fmtPageFaultEnd(t, p.pid, addr, gpu.id, migrated), gpu.id);
  p.faults[gi]!++;
  m.stats.gpuFaults++;
  results[i] = migrated ? FAULT_RESULT.MIGRATED : FAULT_RESULT.UPDATED;
  return t;
}

/**
 * svm_range_create_unregistered_range (§3): the 512-page block around addr, inside its
 * vma, clipped against neighbouring ranges; a single page when the block overlaps a
 * non-SVM buffer mapping (none when addr is inside one). Heap and stack get SYSMEM.
 */
function rangeCreateUnregistered(m: SvmModel, p: SvmProcess, addr: number): SvmRange | null {
  const vma = vmaFind(p, addr);
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
  const r = rangeNew(m, p, s, l);
  if (vma.kind === "heap" || vma.kind === "stack") r.preferredLoc = LOC_SYSMEM;
  return r;
}
