/**
 * Constants of the kernel's SVM code (kfd-svm.md, kfd-uapi.md), each with its unit.
 * Addresses and sizes are in 4 KiB pages unless the name says otherwise.
 */

export const PAGE_BYTES = 4096;
/** Default migration granularity, log2 pages (2^9 pages = 2 MiB), kfd-svm.md §1. */
export const GRANULARITY_DEFAULT = 9;
/** Alignment of an unregistered range created on a fault, pages (§3). */
export const UNREGISTERED_ALIGN_PAGES = 512;
/** Duplicate fault window per range, ns (AMDGPU_SVM_RANGE_RETRY_FAULT_PENDING, §2). */
export const DUPLICATE_FAULT_WINDOW_NS = 2_000_000;
/** XNACK-off restore worker delay and retry interval, ns (§7). */
export const RESTORE_DELAY_NS = 1_000_000;
/** Largest range bounds, pages: 2 MiB .. 1 GiB (§1). */
export const LARGEST_RANGE_MIN_PAGES = 512;
export const LARGEST_RANGE_MAX_PAGES = 262_144;
/** VRAM bytes >> this = largest range in pages (1/32 of VRAM), §1. */
export const LARGEST_RANGE_VRAM_SHIFT = 17;
/** Pages per SDMA copy chunk through the GART window (§6). */
export const SDMA_CHUNK_PAGES = 512;
/** Tries of a VRAM->RAM move before a VRAM->VRAM copy, and of the eviction worker (§6, §8). */
export const MIGRATE_TRIES_MAX = 3;
/** Most GPUs in one process: access / aip masks are 31-bit integers. */
export const GPUS_PER_PROCESS_MAX = 31;

// The kernel's uapi numbers (attribute types, SMI event ids, triggers) have one home,
// runtime/kfd/uapi.ts, where a test proves them against <linux/kfd_ioctl.h>.
export {
  MIGRATE_TRIGGER,
  QUEUE_EVICTION_TRIGGER,
  SMI_EVENT,
  SVM_ATTR,
  SVM_ATTR_NAMES,
  SVM_GRANULARITY_MAX_log2_pages as GRANULARITY_MAX,
  SVM_UNMAP_TRIGGER as UNMAP_TRIGGER,
} from "../kfd/uapi.ts";
export type { SvmAttrName } from "../kfd/uapi.ts";

/**
 * The attribute types GET_ATTR answers (kfd_svm.c svm_range_get_attr), also the default
 * query of a workload's get_attr. An ACCESS query names one GPU, and its answer's type says
 * ACCESS, ACCESS_IN_PLACE or NO_ACCESS; those two, and unknown types, are EINVAL as queries.
 */
export const SVM_GET_ATTR_QUERIES = ["PREFERRED_LOC", "PREFETCH_LOC", "ACCESS", "SET_FLAGS", "CLR_FLAGS", "GRANULARITY"] as const;
/** Names of MIGRATE_TRIGGER values, in value order (result fields). */
export const MIGRATE_TRIGGER_NAMES = ["prefetch", "pagefault_gpu", "pagefault_cpu", "ttm_eviction"] as const;

/** errno values the model's typed errors carry. */
export const ERRNO = { EPERM: 1, EFAULT: 14, EBUSY: 16, EINVAL: 22, EACCES: 13, ENOMEM: 12, ENOSPC: 28, EADDRINUSE: 98 } as const;
export type ErrnoName = keyof typeof ERRNO;

/**
 * Largest SVM range of a GPU, pages (§1): VRAM_bytes >> 17, clamped to 2 MiB .. 1 GiB,
 * rounded down to a power of two.
 */
export function largestRangePages(vramBytes: number): number {
  let pages = Math.floor(vramBytes / 2 ** LARGEST_RANGE_VRAM_SHIFT);
  pages = Math.min(LARGEST_RANGE_MAX_PAGES, Math.max(LARGEST_RANGE_MIN_PAGES, pages));
  return 2 ** Math.floor(Math.log2(pages));
}
