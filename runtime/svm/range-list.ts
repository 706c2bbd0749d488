/**
 * The range list of kfd_svm.c (kfd-svm.md §1, §5, §9): ranges created, split and freed
 * (svm_range_new, svm_range_add, svm_range_split_new, svm_range_split, svm_range_free), the
 * process's CPU mappings they live in (mmap; munmap's svm_range_unmap_from_cpu) and the
 * deferred_list worker that frees unmapped ranges (svm_range_deferred_list_work).
 */
import { KfdError } from "../errors.ts";
import { ERRNO, UNMAP_TRIGGER } from "./constants.ts";
import { rangeUnmapFromGpus } from "./map.ts";
import type { SvmModel } from "./model.ts";
import type { SvmProcess } from "./process.ts";
import { NEVER_NS, SvmRange } from "./range.ts";
import { runsClip, runsTotal } from "./runs.ts";
import type { Vma } from "./types.ts";
import { bufferFree, lruInsertAfter } from "./vram.ts";

/** Default deferred worker delay after munmap, ns (assumption: one scheduler tick); the profile's `deferred_work_ns`. */
export const DEFERRED_DELAY_NS_DEFAULT = 4_000;

/** mmap: add a CPU mapping. */
export function vmaAdd(m: SvmModel, pid: number, start: number, npages: number, kind: Vma["kind"] = "anon", write = true): void {
  const p = m.proc(pid);
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
export function boMappingAdd(m: SvmModel, pid: number, start: number, npages: number): void {
  m.proc(pid).boMappings.push(start, start + npages - 1);
}

/** The first non-SVM buffer mapping [start, start+npages) of `pid` goes (unmapped from every GPU). */
export function boMappingRemove(m: SvmModel, pid: number, start: number, npages: number): void {
  const bo = m.proc(pid).boMappings;
  for (let i = 0; i < bo.length; i += 2) {
    if (bo[i] === start && bo[i + 1] === start + npages - 1) {
      bo.splice(i, 2);
      return;
    }
  }
}

/**
 * munmap: the CPU mapping goes; ranges inside are split at the edges, unmapped from GPUs
 * (UNMAP_FROM_CPU) and queued on the deferred list, which frees them later (faults on them
 * meanwhile are dropped, §2).
 */
export function vmaRemove(m: SvmModel, pid: number, start: number, npages: number, now: number): void {
  const p = m.proc(pid);
  const last = start + npages - 1;
  for (let i = p.vmas.length - 1; i >= 0; i--) {
    const v = p.vmas[i]!;
    if (v.last < start || v.start > last) continue;
    const pieces: Vma[] = [];
    if (v.start < start) pieces.push({ ...v, last: start - 1 });
    if (v.last > last) pieces.push({ ...v, start: last + 1 });
    p.vmas.splice(i, 1, ...pieces);
  }
  for (const r of rangesCovering(m, p, start, last, false)) {
    // svm_range_unmap_from_cpu: pending faults are drained by the deferred worker; until
    // then every fault of the process is dropped (§2).
    p.drainPagefaults = true;
    r.pendingRemove = true;
    // svm_range_unmap_from_gpus over the unmapped part of the notified range, gated by its
    // mapped_to_gpu (each piece of a split carries the unsplit range's flag).
    rangeUnmapFromGpus(m, p, r, r.start, r.last, now, UNMAP_TRIGGER.UNMAP_FROM_CPU);
    for (let g = 0; g < r.mapped.length; g++) r.setMapped(g, null);
    p.deferred.push(r);
  }
  if (p.deferred.length > 0 && !p.deferredScheduled) {
    p.deferredScheduled = true;
    m.work.push({ kind: "deferred", pid, dueNs: now + m.deferredDelayNs });
  }
  m.endOp();
}

/** The deferred_list worker: free ranges whose CPU mapping went away. */
export function deferredWork(m: SvmModel, pid: number, _now: number, inDestroy = false): void {
  // Work scheduled before an exit finds no process: the exit already flushed it (§9).
  const p = m.processes.get(pid);
  if (p === undefined) return;
  m.opCtx = p.ctx;
  // svm_range_drain_retry_fault, then the ranges are freed.
  p.drainPagefaults = false;
  for (const r of p.deferred) if (r.linked) rangeFree(m, p, r);
  p.deferred.length = 0;
  p.deferredScheduled = false;
  if (!inDestroy) m.endOp();
}

/**
 * The ranges exactly covering [start, last]: partly covered ranges are split at the edges;
 * with `fillGaps`, uncovered pages become new default ranges chopped at the largest range
 * size (svm_range_add). Never merges.
 */
export function rangesCovering(m: SvmModel, p: SvmProcess, start: number, last: number, fillGaps: boolean): SvmRange[] {
  const out: SvmRange[] = [];
  let cur = start;
  let r = p.ranges.firstOverlap(start, last);
  while (cur <= last) {
    if (r !== null && r.start <= last) {
      if (fillGaps && r.start > cur) rangeCreateChopped(m, p, cur, r.start - 1, out);
      if (r.start < start) r = rangeSplit(m, p, r, start);
      if (r.last > last) rangeSplit(m, p, r, last + 1);
      out.push(r);
      cur = r.last + 1;
      r = r.next;
    } else {
      if (fillGaps) rangeCreateChopped(m, p, cur, last, out);
      cur = last + 1;
    }
  }
  return out;
}

export function rangeNew(m: SvmModel, p: SvmProcess, start: number, last: number): SvmRange {
  const r = new SvmRange(start, last);
  if (p.xnack) for (const g of m.gpus) if (g.svmSupported) r.accessMask |= 1 << g.index;
  r.ownerPid = p.pid;
  p.ranges.insert(r);
  return r;
}

function rangeCreateChopped(m: SvmModel, p: SvmProcess, s: number, l: number, out: SvmRange[]): void {
  const max = p.largestRangePages;
  for (let cur = s; cur <= l; ) {
    const end = Math.min(l, Math.floor(cur / max) * max + max - 1);
    out.push(rangeNew(m, p, cur, end));
    cur = end + 1;
  }
}

/**
 * svm_range_split: cut `r` before page `at`; `r` keeps [start, at-1], the returned tail
 * [at, last] gets the same attributes and its share of placement and VRAM buffer.
 */
function rangeSplit(m: SvmModel, p: SvmProcess, r: SvmRange, at: number): SvmRange {
  if (!(at > r.start && at <= r.last)) m.fail(`split of [${r.start}, ${r.last}] at ${at}`);
  const tail = new SvmRange(at, r.last);
  tail.copyAttributes(r);
  if (tail.recentMoves !== null) m.thrashQueue.push(tail, r.lastMigrationNs);
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
    const gi = m.gpuById.get(loc)!.index;
    tail.actualLoc = loc;
    lruInsertAfter(m, gi, r, tail);
    if (tail.vramPages === 0) bufferFree(m, tail);
    if (r.vramPages === 0) bufferFree(m, r);
  }
  if (r.pendingRemove) p.deferred.push(tail);
  return tail;
}

/** Unlink a range, unmap it from GPUs and free its VRAM (process exit, deferred work). */
export function rangeFree(m: SvmModel, p: SvmProcess, r: SvmRange): void {
  if (r.actualLoc !== 0) {
    r.vramRuns = null;
    r.vramPages = 0;
    bufferFree(m, r);
  }
  for (let g = 0; g < r.mapped.length; g++) r.setMapped(g, null);
  p.ranges.remove(r);
  for (let i = 0; i < p.cache.length; i++) if (p.cache[i] === r) p.cache[i] = null;
}

export function vmaFind(p: SvmProcess, addr: number): Vma | null {
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

export function vmaCovers(p: SvmProcess, s: number, l: number): boolean {
  let cur = s;
  while (cur <= l) {
    const v = vmaFind(p, cur);
    if (v === null) return false;
    cur = v.last + 1;
  }
  return true;
}
