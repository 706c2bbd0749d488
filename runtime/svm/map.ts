/**
 * GPU page-table mappings of a range (kfd_svm.c): svm_range_validate_and_map, which picks
 * the GPUs a whole-range mapping goes to, and svm_range_unmap_from_gpus; both keep
 * prange->mapped_to_gpu (SvmRange.mappedToGpu).
 */
import { SVM_FLAG } from "../policy/contracts/migration.ts";
import { SMI_EVENT } from "./constants.ts";
import * as ev from "./events.ts";
import type { SvmModel } from "./model.ts";
import type { SvmProcess } from "./process.ts";
import type { SvmRange } from "./range.ts";
import { runsRemove } from "./runs.ts";

/**
 * svm_range_validate_and_map(..., MAX_GPU_INSTANCE): map the whole range. The GPUs (its
 * ctx->bitmap): XNACK off, every access|aip GPU; XNACK on, the aip GPUs plus actual_loc's
 * GPU when it has ACCESS ("If prefetch range to GPU, or GPU retry fault migrate range to
 * GPU, which has ACCESS attribute to the range, create mapping on that GPU"), and only when
 * that is empty, every access GPU if the range is mapped already (mapped_to_gpu) or
 * GPU_ALWAYS_MAPPED. An empty bitmap maps nothing and leaves validate_timestamp alone;
 * otherwise the range is mapped_to_gpu and validate_timestamp is the time it ends.
 */
export function rangeValidateAndMap(m: SvmModel, p: SvmProcess, r: SvmRange, t: number): number {
  let mask = r.accessMask | r.aipMask;
  if (p.xnack) {
    mask = r.aipMask;
    if (r.actualLoc !== 0) {
      const bit = 1 << m.gpuById.get(r.actualLoc)!.index;
      if ((r.accessMask & bit) !== 0) mask |= bit;
    }
    if (mask === 0 && (r.mappedToGpu || (r.flags & SVM_FLAG.GPU_ALWAYS_MAPPED) !== 0)) mask = r.accessMask;
  }
  if (mask === 0) return t;
  for (let g = 0; g < m.gpus.length; g++) {
    if ((mask & (1 << g)) === 0) continue;
    const runs = r.mappedOn(g);
    if (runs !== null && runs.length === 2 && runs[0] === r.start && runs[1] === r.last) continue;
    t += m.costs.mapNs(g, r.npages);
    r.setMapped(g, [r.start, r.last]);
  }
  r.mappedToGpu = true;
  r.validateTimestampNs = t;
  return t;
}

/**
 * svm_range_unmap_from_gpus(prange, s, l, trigger): nothing unless the range is
 * mapped_to_gpu ("not mapped to GPU": return 0); an unmap of the whole range clears
 * mapped_to_gpu; then [s, l] is unmapped from every access|aip GPU, each with its
 * UNMAP_FROM_GPU event, whether that GPU had mapped those pages or not.
 */
export function rangeUnmapFromGpus(m: SvmModel, p: SvmProcess, r: SvmRange, s: number, l: number, t: number, trigger: number): void {
  if (!r.mappedToGpu) return;
  if (s === r.start && l === r.last) r.mappedToGpu = false;
  const mask = r.accessMask | r.aipMask;
  const n = l - s + 1;
  for (let g = 0; g < m.gpus.length; g++) {
    if ((mask & (1 << g)) === 0) continue;
    r.setMapped(g, runsRemove(r.mappedOn(g), s, l));
    m.stats.unmaps++;
    if (m.wants(SMI_EVENT.UNMAP_FROM_GPU, t, s, n)) m.sink!(ev.fmtUnmapFromGpu(t, p.pid, s, n, m.gpus[g]!.id, trigger), m.gpus[g]!.id);
    m.observe("unmap", t, m.gpus[g]!.id, s, n, 0, 0, trigger);
  }
}
