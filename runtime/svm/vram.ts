/**
 * VRAM buffers (kfd-svm.md §1, §8): the whole-range reservation of svm_range_vram_node_new,
 * its release, the memory manager's LRU of buffers per GPU and the TTM eviction that makes
 * room (svm_range_evict_svm_bo_worker migrates the victim's ranges back to RAM); and the
 * non-SVM VRAM allocations that shrink what SVM can use.
 */
import { KfdError } from "../errors.ts";
import { ERRNO, MIGRATE_TRIGGER, PAGE_BYTES } from "./constants.ts";
import { migrateToRam } from "./migrate.ts";
import type { SvmModel } from "./model.ts";
import type { SvmRange } from "./range.ts";

/** Most eviction candidates handed to the policy per request (TTM LRU head). */
export const EVICTION_CANDIDATES_MAX = 64;

/**
 * VRAM of GPU index `gi` an SVM buffer or a non-SVM allocation can still get, bytes:
 * capacity minus SVM buffers (AVAILABLE_MEMORY's answer; the kernel also subtracts its own
 * reservations, which the profile's vram_reserved stands for).
 */
export function vramAvailableBytes(m: SvmModel, gi: number): number {
  return Math.max(0, m.vramCapPages[gi]! - m.vramUsedPages[gi]!) * PAGE_BYTES;
}

/**
 * A non-SVM VRAM allocation (ALLOC_MEMORY_OF_GPU with the VRAM flag) of `npages` on GPU
 * index `gi`: SVM capacity shrinks by it until vramNonSvmRelease. Never evicts SVM
 * buffers to make room (amdgpu_amdkfd_reserve_mem_limit fails instead).
 * @throws KfdError ENOMEM when the free VRAM is smaller.
 */
export function vramNonSvmReserve(m: SvmModel, gi: number, npages: number): void {
  if (npages > m.vramCapPages[gi]! - m.vramUsedPages[gi]!) {
    throw new KfdError("ALLOC_MEMORY_OF_GPU", "ENOMEM", ERRNO.ENOMEM, `${npages} pages asked, ${m.vramCapPages[gi]! - m.vramUsedPages[gi]!} free on GPU ${gi}`);
  }
  m.vramCapPages[gi]! -= npages;
}

/** Give back what vramNonSvmReserve took. */
export function vramNonSvmRelease(m: SvmModel, gi: number, npages: number): void {
  m.vramCapPages[gi]! += npages;
}

export function lruInsertTail(m: SvmModel, gi: number, r: SvmRange): void {
  const t = m.lruTail[gi] ?? null;
  r.lruPrev = t;
  r.lruNext = null;
  if (t === null) m.lruHead[gi] = r;
  else t.lruNext = r;
  m.lruTail[gi] = r;
}

export function lruInsertAfter(m: SvmModel, gi: number, a: SvmRange, r: SvmRange): void {
  const n = a.lruNext;
  r.lruPrev = a;
  r.lruNext = n;
  a.lruNext = r;
  if (n === null) m.lruTail[gi] = r;
  else n.lruPrev = r;
}

function lruUnlink(m: SvmModel, gi: number, r: SvmRange): void {
  const pr = r.lruPrev;
  const nx = r.lruNext;
  if (pr === null) m.lruHead[gi] = nx;
  else pr.lruNext = nx;
  if (nx === null) m.lruTail[gi] = pr;
  else nx.lruPrev = pr;
  r.lruPrev = null;
  r.lruNext = null;
}

/** The buffer was used: move it to the LRU tail. */
export function lruTouch(m: SvmModel, r: SvmRange, now: number): void {
  r.lastUseNs = now;
  if (r.actualLoc === 0) return;
  const gi = m.gpuById.get(r.actualLoc)!.index;
  if (m.lruTail[gi] === r) return;
  lruUnlink(m, gi, r);
  lruInsertTail(m, gi, r);
}

/** Free a range's VRAM buffer: its whole-range reservation returns to the GPU. */
export function bufferFree(m: SvmModel, r: SvmRange): void {
  const gi = m.gpuById.get(r.actualLoc)!.index;
  lruUnlink(m, gi, r);
  m.vramUsedPages[gi]! -= r.npages;
  if (m.vramUsedPages[gi]! < 0) m.fail(`GPU ${gi}: VRAM use negative`);
  r.actualLoc = 0;
  r.vramRuns = null;
  r.vramPages = 0;
}

/**
 * Reserve VRAM for the whole range on GPU `gi` (svm_range_vram_node_new). Under pressure
 * the memory manager evicts buffers (the policy's evictionVictim, LRU by default) until
 * the range fits. Returns the time after evictions, or -1 when VRAM stays full.
 */
export function bufferReserve(m: SvmModel, r: SvmRange, gi: number, t: number): number {
  const need = r.npages;
  const cap = m.vramCapPages[gi]!;
  if (need > cap) return -1;
  // Bounded: each round evicts one buffer, and there are finitely many.
  while (m.vramUsedPages[gi]! + need > cap) {
    const cands: SvmRange[] = [];
    for (let c: SvmRange | null = m.lruHead[gi] ?? null; c !== null && cands.length < EVICTION_CANDIDATES_MAX; c = c.lruNext) {
      if (c !== r) cands.push(c);
    }
    if (cands.length === 0) return -1;
    const owner = m.processes.get(r.ownerPid)!;
    owner.ctx.nowNs = t;
    const victim = m.decider.evictionVictim(
      {
        gpuId: m.gpus[gi]!.id,
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
    const vp = m.processes.get(v.ownerPid)!;
    t = migrateToRam(m, vp, v, v.start, v.last, MIGRATE_TRIGGER.TTM_EVICTION, t, true);
    m.stats.evictions++;
    m.observe("evict", t, m.gpus[gi]!.id, v.start, v.npages, m.gpus[gi]!.id, 0, MIGRATE_TRIGGER.TTM_EVICTION);
    if (v.actualLoc !== 0) m.fail(`evicted range [${v.start}, ${v.last}] still holds VRAM`);
  }
  m.vramUsedPages[gi]! += need;
  return t;
}
