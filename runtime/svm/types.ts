/**
 * The shapes the SVM model's files share: the machine it runs on (GPUs, costs), a process's
 * CPU mappings, the work it hands its driver, its counters and options. No logic.
 */
import type { MigrationDecider, PolicyGpu } from "../policy/contracts/migration.ts";

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

/** Aggregated GET_ATTR answer for an access query (§5). */
export type AttrPair = [type: number, value: number];
