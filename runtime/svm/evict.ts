/**
 * Eviction and restore (kfd-svm.md §7): svm_range_evict, which the MMU notifier calls for
 * every CPU-side invalidation and for the kernel's own migrations (XNACK on: unmap from the
 * GPUs; XNACK off or GPU_ALWAYS_MAPPED: quiesce the process's queues), and
 * svm_range_restore_work, which remaps the evicted ranges and restarts the queues.
 * Eviction of VRAM buffers under memory pressure (TTM, §8) is in vram.ts.
 */
import { SVM_FLAG } from "../policy/contracts/migration.ts";
import { QUEUE_EVICTION_TRIGGER, RESTORE_DELAY_NS, UNMAP_TRIGGER } from "./constants.ts";
import * as ev from "./events.ts";
import { rangeUnmapFromGpus, rangeValidateAndMap } from "./map.ts";
import type { SvmModel } from "./model.ts";
import type { SvmProcess } from "./process.ts";
import type { SvmRange } from "./range.ts";
import { runsRemove } from "./runs.ts";

/**
 * Pages [s, l] of `r` are about to move: svm_range_evict, called by the MMU notifier that
 * migrate_vma_setup fires (for the kernel's own migrations too), so between a migration's
 * MIGRATE_START and its copy. Nothing happens unless the range is mapped_to_gpu.
 * XNACK on (and not GPU_ALWAYS_MAPPED): svm_range_unmap_from_gpus, UNMAP_FROM_GPU
 * (MMU_NOTIFY_MIGRATE) for [s, l] on every access|aip GPU; the next access faults.
 * Otherwise the process's queues are evicted and the restore worker remaps after 1 ms.
 */
export function rangeInvalidate(m: SvmModel, p: SvmProcess, r: SvmRange, s: number, l: number, t: number, _external: boolean): void {
  if (!r.mappedToGpu) return;
  const alwaysMapped = !p.xnack || (r.flags & SVM_FLAG.GPU_ALWAYS_MAPPED) !== 0;
  if (alwaysMapped) {
    for (let g = 0; g < r.mapped.length; g++) r.setMapped(g, runsRemove(r.mappedOn(g), s, l));
    queuesEvict(m, p, r, t, QUEUE_EVICTION_TRIGGER.SVM);
    return;
  }
  rangeUnmapFromGpus(m, p, r, s, l, t, UNMAP_TRIGGER.MMU_NOTIFY_MIGRATE);
}

/** Evict all queues of the process (QUEUE_EVICTION per GPU) and schedule restore_work in 1 ms. */
function queuesEvict(m: SvmModel, p: SvmProcess, r: SvmRange, t: number, trigger: number): void {
  p.evictedRanges++;
  p.evictedList.push(r);
  if (p.queuesEvicted) return;
  p.queuesEvicted = true;
  m.stats.queueEvictions++;
  for (const g of m.gpus) {
    if (m.sink !== null) m.sink(ev.fmtQueueEviction(t, p.pid, g.id, trigger), g.id);
    m.observe("queue-evict", t, g.id, r.start, r.npages, 0, 0, trigger);
  }
  if (!p.restoreScheduled) {
    p.restoreScheduled = true;
    m.work.push({ kind: "restore", pid: p.pid, dueNs: t + m.costs.queueEvictNs + RESTORE_DELAY_NS });
  }
}

/**
 * restore_work (§7): remap every evicted range on its GPUs, then restart the queues
 * (QUEUE_RESTORE per GPU). Returns the time the queues run again.
 */
export function restoreWork(m: SvmModel, pid: number, now: number): number {
  const p = m.processes.get(pid);
  if (p === undefined || !p.restoreScheduled) return now;
  p.restoreScheduled = false;
  let t = now;
  for (const r of p.evictedList) if (r.linked) t = rangeValidateAndMap(m, p, r, t);
  p.evictedList.length = 0;
  p.evictedRanges = 0;
  p.queuesEvicted = false;
  m.stats.queueRestores++;
  for (const g of m.gpus) {
    if (m.sink !== null) m.sink(ev.fmtQueueRestore(t, pid, g.id, false), g.id);
    m.observe("queue-restore", t, g.id, 0, 0, 0, 0, 0);
  }
  m.endOp();
  return t;
}
