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

// The data types are the host's own contracts (one definition, documented there):
// runtime/policy/contracts/{migration,sampling,session}.ts.
import type {
  AdviceEvidence,
  AdviceHint,
  EvictionCandidate,
  Fault,
  ObservedEvent,
  PageWindow,
  PolicyGpu,
  PrefetchRequest,
} from "../runtime/policy/contracts/migration.ts";
import type { MetricGroup, ScheduleInput } from "../runtime/policy/contracts/sampling.ts";
import type { SessionInput } from "../runtime/policy/contracts/session.ts";
export type { AdviceEvidence, AdviceHint, EvictionCandidate, Fault, MetricGroup, ObservedEvent, PageWindow, PolicyGpu, PrefetchRequest, ScheduleInput, SessionInput };


// ---------------------------------------------------------------- MigrationPolicy

export interface MigrationContext {
  gpus: PolicyGpu[];
  xnack: boolean;
  nowNs: number;
  params: Params;
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

/**
 * A batch of observed events in place: event i's field k is `events[i * stride + E[k]]`; its
 * kind is a code, `K[kind]` (`events[o + E.kind] === K.migrate`). `events` may be longer than
 * `n * stride`: loop to `n`.
 */
export interface EventBatch {
  events: Float64Array;
  n: number;
  stride: number;
  E: { readonly [K in keyof ObservedEvent]: number };
  K: { readonly [K in ObservedEvent["kind"]]: number };
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
  /**
   * Events in order, delivered in batches before the plugin's next decision; the answer is
   * ignored. Export `observeKinds` (e.g. `["migrate", "evict", "unmap:unmap_from_cpu"]`) to
   * receive only those kinds (and triggers).
   */
  observe(input: { events: ObservedEvent[] }, ctx: MigrationContext): unknown;
  /** Batch form of observe: no object per event; takes precedence when exported. */
  observeBatch(batch: EventBatch, ctx: MigrationContext): void;
  /**
   * The agent's advisor only (the simulator never calls it): hints for the application,
   * from the state observe built, at most 64. `input.nowNs` is in the events' clock.
   */
  advise(input: { nowNs: number }, ctx: MigrationContext): AdviceHint[];
}

// ---------------------------------------------------------------- SamplingPolicy

export interface SamplingHooks {
  /** Per GPU id and group, the next interval in ms (100 .. 3,600,000); omitted ones keep theirs. */
  schedule(input: ScheduleInput, ctx: { nowMs: number; params: Params }): Record<string, Partial<Record<MetricGroup, number>>>;
}

// ---------------------------------------------------------------- SessionPolicy

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
  isAppApu(gpus: PolicyGpu[], id: number): boolean;
  sameHive(gpus: PolicyGpu[], a: number, b: number): boolean;
}

declare global {
  /** The kernel's rules (kernel-default), for migration plugins. */
  const kernel: KernelLibrary;
}
