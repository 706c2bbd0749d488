/**
 * Constants of the kernel's SVM code (kfd-svm.md, kfd-uapi.md), each with its unit.
 * Addresses and sizes are in 4 KiB pages unless the name says otherwise.
 */

export const PAGE_BYTES = 4096;
/** Default migration granularity, log2 pages (2^9 pages = 2 MiB), kfd-svm.md §1. */
export const GRANULARITY_DEFAULT = 9;
/** Largest granularity an attribute may set, log2 pages; larger values are capped (§5). */
export const GRANULARITY_MAX = 0x3f;
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

/** SET_ATTR / GET_ATTR attribute types (kfd_ioctl.h enum order, §5). */
export const SVM_ATTR = {
  PREFERRED_LOC: 0,
  PREFETCH_LOC: 1,
  ACCESS: 2,
  ACCESS_IN_PLACE: 3,
  NO_ACCESS: 4,
  SET_FLAGS: 5,
  CLR_FLAGS: 6,
  GRANULARITY: 7,
} as const;
export type SvmAttrName = keyof typeof SVM_ATTR;
export const SVM_ATTR_NAMES = Object.keys(SVM_ATTR) as SvmAttrName[];

/** SMI event ids (kfd-uapi.md). */
export const SMI_EVENT = {
  VMFAULT: 1,
  THERMAL_THROTTLE: 2,
  GPU_PRE_RESET: 3,
  GPU_POST_RESET: 4,
  MIGRATE_START: 5,
  MIGRATE_END: 6,
  PAGE_FAULT_START: 7,
  PAGE_FAULT_END: 8,
  QUEUE_EVICTION: 9,
  QUEUE_RESTORE: 10,
  UNMAP_FROM_GPU: 11,
  PROCESS_START: 12,
  PROCESS_END: 13,
} as const;

/** Migrate triggers (kfd-uapi.md). */
export const MIGRATE_TRIGGER = { PREFETCH: 0, PAGEFAULT_GPU: 1, PAGEFAULT_CPU: 2, TTM_EVICTION: 3 } as const;
export const MIGRATE_TRIGGER_NAMES = ["prefetch", "pagefault_gpu", "pagefault_cpu", "ttm_eviction"] as const;
/** Queue eviction triggers. */
export const QUEUE_EVICTION_TRIGGER = { SVM: 0, USERPTR: 1, TTM: 2, SUSPEND: 3, CRIU_CHECKPOINT: 4, CRIU_RESTORE: 5 } as const;
/** Unmap-from-GPU triggers. */
export const UNMAP_TRIGGER = { MMU_NOTIFY: 0, MMU_NOTIFY_MIGRATE: 1, UNMAP_FROM_CPU: 2 } as const;

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
