/**
 * Types plugin authors code against. A plugin is an ES module that exports functions named
 * after hooks and, optionally, `params` (its tunables). It receives data and returns data:
 * no host objects, no I/O, no clock but `ctx.nowNs` / `input.nowMs`, Math.random seeded by
 * the host. Use from a .js plugin with JSDoc:
 *
 *   // @ts-check
 *   /** @type {import("../types").MigrationHooks["restoreLocation"]} *\/
 *   export function restoreLocation(fault, ctx) { ... }
 *
 * Units: addresses and sizes in 4 KiB pages; times in ns (migration) or ms (sampling,
 * session); locations are KFD gpu_ids, 0 = system memory, 0xffffffff = undefined.
 * docs/policy-api.md describes every hook in prose.
 */

/** One tunable: declared once with its default, bounds and meaning; the host validates it. */
export type ParamDecl =
  | { type: "integer" | "number"; default: number; min: number; max: number; description: string }
  | { type: "boolean"; default: boolean; description: string }
  | { type: "string"; default: string; values?: string[]; description: string };

export type Params = Record<string, number | boolean | string>;

// ---------------------------------------------------------------- MigrationPolicy

export interface PolicyGpu {
  /** KFD gpu_id. */
  id: number;
  /** Bit of this GPU in accessMask / aipMask. */
  index: number;
  /** XGMI hive id; 0 = none. */
  hiveId: number;
  /** APU in app-APU mode (MI300A): never migrates. */
  appApu: boolean;
  vramBytes: number;
}

export interface MigrationContext {
  gpus: PolicyGpu[];
  xnack: boolean;
  nowNs: number;
  params: Params;
}

/** A GPU fault at the kernel's decision point (kfd-svm §2). */
export interface Fault {
  gpuId: number;
  gpuIndex: number;
  /** Faulting page. */
  addr: number;
  /** 1 = write, 0 = read. */
  write: number;
  rangeStart: number;
  /** Inclusive. */
  rangeLast: number;
  preferredLoc: number;
  prefetchLoc: number;
  /** gpu_id holding the range's VRAM pages, 0 when none. */
  actualLoc: number;
  /** log2 pages of the migration granularity. */
  granularity: number;
  flags: number;
  /** Bit `gpu.index`: that GPU has ACCESS. */
  accessMask: number;
  /** Bit `gpu.index`: that GPU has ACCESS_IN_PLACE. */
  aipMask: number;
  vramPages: number;
  migrations: number;
  /** -1 = never migrated. */
  lastMigrationNs: number;
  faultNs: number;
}

export interface PageWindow {
  start: number;
  last: number;
}

export interface PrefetchRequest {
  start: number;
  npages: number;
  /** gpu_id or 0. */
  loc: number;
}

export interface EvictionCandidate {
  rangeStart: number;
  npages: number;
  vramPages: number;
  lastUseNs: number;
  lastMigrationNs: number;
}

export interface ObservedEvent {
  kind: "fault" | "migrate" | "evict" | "unmap" | "queue-evict" | "queue-restore";
  nowNs: number;
  gpuId: number;
  start: number;
  npages: number;
  from: number;
  to: number;
  trigger: number;
}

/**
 * A batch of faults as the hot path hands them over: record i's field k is
 * `faults[i * stride + F[k]]`. Write `decisions[3 * i]` (location) or
 * `decisions[3 * i + 1]`, `decisions[3 * i + 2]` (window start, last).
 */
export interface FaultBatch {
  faults: Float64Array;
  n: number;
  stride: number;
  F: { readonly [K in keyof Fault]: number };
  decisions: Float64Array;
}

export interface MigrationHooks {
  /** Batch form of restoreLocation: no object per fault; takes precedence when exported. */
  restoreLocationBatch(batch: FaultBatch, ctx: MigrationContext): void;
  /** Batch form of migrationWindow. */
  migrationWindowBatch(batch: FaultBatch, ctx: MigrationContext): void;
  /** gpu_id to migrate to / map from, 0 = system memory, -1 = deny (EACCES). */
  restoreLocation(fault: Fault, ctx: MigrationContext): number;
  /** Pages to migrate; must hold the faulting page and stay inside the range. */
  migrationWindow(fault: Fault, ctx: MigrationContext): PageWindow;
  /**
   * Extra ranges to move after a batch of faults (at most 64). The batch arrives as raw
   * records with its decisions filled in (location, window start, window last).
   */
  prefetch(batch: FaultBatch, ctx: MigrationContext): PrefetchRequest[];
  /** Index of the buffer to evict. */
  evictionVictim(input: { gpuId: number; neededPages: number; candidates: EvictionCandidate[] }, ctx: MigrationContext): number;
  /** Events since the last call, in order; the answer is ignored (return nothing). */
  observe(input: { events: ObservedEvent[] }, ctx: MigrationContext): unknown;
}

// ---------------------------------------------------------------- SamplingPolicy

export type MetricGroup = "temperature" | "power" | "activity" | "memory" | "xgmi" | "svm";

export interface ScheduleInput {
  nowMs: number;
  gpus: {
    id: number;
    readings: {
      temperature_c?: number;
      power_w?: number;
      gfx_activity_pct?: number;
      umc_activity_pct?: number;
      vram_used_bytes?: number;
      vram_total_bytes?: number;
    };
    limits: { temperature_c_max?: number; power_w_max?: number };
    errors: Partial<Record<MetricGroup, number>>;
  }[];
  intervals: Record<string, Partial<Record<MetricGroup, number>>>;
}

export interface SamplingHooks {
  /** Per GPU id and group, the next interval in ms (100 .. 3,600,000); omitted ones keep theirs. */
  schedule(input: ScheduleInput, ctx: { nowMs: number; params: Params }): Record<string, Partial<Record<MetricGroup, number>>>;
}

// ---------------------------------------------------------------- SessionPolicy

export interface SessionInput {
  nowMs: number;
  requestsPerS: number;
  initLatencyMs: number;
  shutdownLatencyMs: number;
  contention: number;
  openSessions: number;
  currentMode: "persistent" | "lazy" | "linger";
  idleMs: number;
}

export interface SessionHooks {
  mode(
    input: SessionInput,
    ctx: { nowMs: number; params: Params },
  ): { mode: "persistent" | "lazy" } | { mode: "linger"; idleGraceMs: number };
}

/**
 * The kernel's rules, available to every migration plugin as the frozen global `kernel`
 * (the exports of plugins/migration/kernel-default.js).
 */
export interface KernelLibrary extends Pick<MigrationHooks, "restoreLocation" | "migrationWindow" | "restoreLocationBatch" | "migrationWindowBatch"> {
  bestRestoreLocation(
    gpus: PolicyGpu[],
    gpuId: number,
    gpuIndex: number,
    preferredLoc: number,
    actualLoc: number,
    accessMask: number,
    aipMask: number,
  ): number;
  hasBit(mask: number, index: number): boolean;
  sameHive(gpus: PolicyGpu[], a: number, b: number): boolean;
}

declare global {
  /** The kernel's rules (kernel-default), for migration plugins. */
  const kernel: KernelLibrary;
}
