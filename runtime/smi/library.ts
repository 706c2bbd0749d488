/**
 * The one typed interface to a GPU management library (DESIGN.md, runtime/smi/). Four
 * implementations stand behind it:
 * - `amdsmi`: the real libamd_smi through bun:ffi (runtime/ffi/amdsmi.ts); the C test double
 *   of test/native/ is loaded through the very same code;
 * - `rocm-smi`: the predecessor librocm_smi64 through bun:ffi (runtime/ffi/rocm-smi.ts);
 * - `emulated`: GPUs of a machine profile (runtime/emu/smi.ts), which says it is emulated.
 *
 * Every call is synchronous (bun:ffi is) and may block the calling thread for as long as the
 * library takes; the agent therefore makes them in Workers. Only the session manager
 * (runtime/smi/session.ts) calls `init` and `shutDown`; everything else is called inside an
 * open session, with handles resolved in that session.
 *
 * Every method but `info` throws `SmiError` (function, status name, status number) when the
 * library answers anything but success; `NOT_SUPPORTED` means the field does not exist on
 * that GPU, which the sampler treats as "omit this field", never as a failure of the others.
 */

/** Which library answers. */
export const SMI_BACKENDS = ["amdsmi", "rocm-smi", "emulated"] as const;
export type SmiBackendName = (typeof SMI_BACKENDS)[number];

/** The three struct-layout families of libamd_smi (reference/amdsmi.md). */
export type AmdsmiLayout = "24" | "25" | "26";

export interface SmiLibraryInfo {
  backend: SmiBackendName;
  /** True for the emulated backend: every output built from it must say so. */
  emulated: boolean;
  /** The shared object loaded, or `profile:<name>` for the emulated backend. */
  path: string;
  /**
   * The library's own version text (e.g. "24.6.3", "27.1.0"), once it could tell it
   * (a 24.x amdsmi answers only after a successful init); undefined until then.
   */
  version: string | undefined;
  /** amdsmi only: the layout family in use, once known. */
  layout?: AmdsmiLayout;
  /** Optional entry points the library lacks, each degrading one feature (never the load). */
  missingOptional: readonly string[];
}

/**
 * An opaque processor handle, valid only within the init cycle that produced it. The value is
 * the library's pointer (amdsmi), device index (rocm-smi) or a synthetic number (emulated).
 */
export type SmiHandle = bigint;

export const DEPLOYMENT_MODES = ["baremetal", "hypervisor", "vm_vf", "unknown"] as const;
/** DME's `deployment_mode` label; `unknown` is never cached (re-read until known). */
export type DeploymentMode = (typeof DEPLOYMENT_MODES)[number];

/** What identifies a GPU and rarely changes. Absent fields: the library cannot tell. */
export interface SmiGpuStatic {
  /** amdsmi's UUID text, e.g. "2eff74a1-0000-1000-80fe-9cea14a6b148". */
  uuid: string;
  /** PCI address "dddd:bb:dd.f". */
  bdf: string;
  /** Board model number (DME's `card_model`). */
  cardModel?: string;
  /** Product / market name, e.g. "AMD Instinct MI300X". */
  marketName?: string;
  serial?: string;
  /** KFD gpu_id, to join with /dev/kfd and its SMI events. */
  kfdGpuId?: number;
  /** Current partition id (DME's `gpu_partition_id`). */
  partitionId?: number;
  computePartition?: string;
  memoryPartition?: string;
  deploymentMode: DeploymentMode;
}

export const TEMPERATURE_SENSORS = ["edge", "junction", "vram"] as const;
export type TemperatureSensor = (typeof TEMPERATURE_SENSORS)[number];

export interface SmiPower {
  /** Current socket power, W. */
  socketW?: number;
  /** Average socket power, W. */
  averageW?: number;
  /** Power cap, W. */
  limitW?: number;
}

export interface SmiActivity {
  gfxPct?: number;
  umcPct?: number;
  mmPct?: number;
}

export const MEMORY_KINDS = ["vram", "vis_vram", "gtt"] as const;
export type MemoryKind = (typeof MEMORY_KINDS)[number];

export interface SmiMemory {
  usedBytes: number;
  totalBytes: number;
}

export interface SmiXgmi {
  hiveId: bigint;
  nodeId: bigint;
  index: number;
  lanes: number;
}

export type SmiLinkType = "undefined" | "pcie" | "xgmi";

export interface SmiLink {
  hops: number;
  type: SmiLinkType;
}

export interface SmiPcie {
  /** Current lanes. */
  width?: number;
  /** Current transfer rate, MT/s. */
  speedMts?: number;
  /** Current bandwidth, Mb/s. */
  bandwidthMbs?: number;
  replayCount?: number;
}

export interface SmiEcc {
  correctable: number;
  uncorrectable: number;
  deferred?: number;
}

/** amdsmi event notification types (amdsmi_evt_notification_type_t). */
export const SMI_GPU_EVENT = { VMFAULT: 1, THERMAL_THROTTLE: 2, GPU_PRE_RESET: 3, GPU_POST_RESET: 4, RING_HANG: 5 } as const;
export type SmiGpuEventName = keyof typeof SMI_GPU_EVENT;

export interface SmiGpuEvent {
  handle: SmiHandle;
  type: SmiGpuEventName | "UNKNOWN";
  /** The raw type number. */
  typeId: number;
  message: string;
}

/** Most events one `eventsRead` returns (the caller's buffer). */
export const SMI_EVENTS_PER_READ_MAX = 64;

export interface SmiLibrary extends Disposable {
  readonly info: SmiLibraryInfo;

  /** amdsmi_init(AMD_GPUS) / rsmi_init(0). Only the session manager calls it. */
  init(): void;
  /** amdsmi_shut_down / rsmi_shut_down. Only the session manager calls it. */
  shutDown(): void;

  /** Every GPU processor handle, in the library's order. */
  gpuHandles(): SmiHandle[];
  /** Resolve a UUID in the current init cycle (own fallback when the library lacks a lookup). */
  gpuHandleFromUuid(uuid: string): SmiHandle;
  gpuStatic(h: SmiHandle): SmiGpuStatic;

  /** °C. */
  gpuTemperature(h: SmiHandle, sensor: TemperatureSensor): number;
  gpuPower(h: SmiHandle): SmiPower;
  gpuActivity(h: SmiHandle): SmiActivity;
  gpuMemory(h: SmiHandle, kind: MemoryKind): SmiMemory;
  gpuXgmi(h: SmiHandle): SmiXgmi;
  gpuLink(src: SmiHandle, dst: SmiHandle): SmiLink;
  gpuPcie(h: SmiHandle): SmiPcie;
  gpuEcc(h: SmiHandle): SmiEcc;

  /** Start event notification on a GPU with a mask of SMI_GPU_EVENT bits (bit i-1 for event i). */
  eventsStart(h: SmiHandle, mask: bigint): void;
  /** Wait up to `timeoutMs` for events of every started GPU; at most `max` of them. */
  eventsRead(timeoutMs: number, max: number): SmiGpuEvent[];
  eventsStop(h: SmiHandle): void;

  /** Unload the library (dlclose). After it every call throws. Idempotent. */
  unload(): void;
}
