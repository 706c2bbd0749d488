/**
 * Prometheus counters of KFD SVM activity: typed SMI events (runtime/kfd/smi-events.ts) in,
 * `svm_*` counter families out (reference/kfd-uapi.md "SMI events", exporters.md: no existing
 * exporter publishes these).
 *
 * Every series carries `gpu_id` (the GPU's DME index, from the caller's resolver, or
 * `kfd-<hex>` when it has none) and `kfd_gpu_id` (the KFD gpu_id in lower-case hex). An event
 * is counted on the GPU whose event fd delivered it (`SmiEvent.gpuId`); the kernel delivers
 * each event to the node it concerns (the faulting GPU, the GPU doing the migration).
 *
 * Hot path: `observe` runs on every batch of events (thousands a second). It touches only
 * plain number cells cached per label tuple: no prom-client call, no string or object built
 * per event. The cells are read straight into the exposition when a registry is scraped (the
 * counters' `get`), so a scrape costs O(series) and an event O(1).
 *
 * One prom-client Counter is made per family and per registry. Sharing one Counter between a
 * Prometheus-text and an OpenMetrics registry is broken in prom-client 15: an OpenMetrics
 * scrape renames the shared object (`x_total` -> `x`), and later Prometheus scrapes then print
 * `x` instead of `x_total`.
 *
 * Lost events. START and END records are paired by (gpu, pid, address) in bounded tables
 * (SmiPairTable, SVM_EVENT_PAIRS_PENDING_MAX). svm_events_dropped_total counts: an END whose
 * START never came (PAGE_FAULT_END, MIGRATE_END), a MIGRATE_START followed by another START
 * of the same range or pushed out of the full table before its END, and what the caller
 * reports with `dropped()`. The kernel itself skips MIGRATE_END when migrate_vma_setup fails
 * and PAGE_FAULT_END when a fault's migration fails, so a START without END is a drop only
 * for migrations (where that kernel path is rare); fault STARTs pushed out are counted in
 * svm_event_pairs_evicted_total only. Past the bound, an END arriving after its START was
 * pushed out counts once more: the count is then an upper bound.
 *
 * A MIGRATE_END with from and to both 0 (never printed by the kernel) counts under
 * direction="unknown"; trigger numbers past the known ones under trigger="unknown". Zero
 * series exist for every known label value of every GPU from its first event (or gpuAdd),
 * except in families with a pid label.
 *
 * Counters never decrease and no series is ever removed: a PROCESS_END removes nothing (a
 * later process that reuses the pid continues its series; Prometheus' rate() and increase()
 * need monotonic series, and a removed series would lose its last increments).
 */
import { Counter, type Registry, type RegistryContentType } from "./prom-lib.ts";
import { assert } from "../errors.ts";
import type { SmiEvent } from "../kfd/smi-events.ts";

/** SMI records give addresses and sizes in pages of this size. */
export const SMI_PAGE_bytes = 4096;
/**
 * Distinct `pid` label values per family when per-process labels are on; later pids are
 * counted under pid="other". A pid once admitted keeps its label for the agent's lifetime.
 */
export const SVM_PROCESS_LABELS_MAX = 64;
/**
 * Pending START events (MIGRATE_START, PAGE_FAULT_START) remembered while their END is
 * awaited, per pairing table. When full, the oldest pending START is pushed out and counted.
 */
export const SVM_EVENT_PAIRS_PENDING_MAX = 4096;
/** Distinct KFD gpu_ids one SvmMetrics counts (readers are opened one per GPU). */
export const SVM_METRICS_GPUS_MAX = 128;

/** Label values of the kernel's enums, indexed by the kernel's number (kfd-uapi.md). */
export const SVM_MIGRATE_TRIGGERS = ["prefetch", "pagefault_gpu", "pagefault_cpu", "ttm_eviction"] as const;
export const SVM_QUEUE_EVICTION_TRIGGERS = ["svm", "userptr", "ttm", "suspend", "criu_checkpoint", "criu_restore"] as const;
export const SVM_UNMAP_TRIGGERS = ["mmu_notify", "mmu_notify_migrate", "unmap_from_cpu"] as const;
/** h2d: system memory to a GPU; d2h: GPU to system memory; d2d: GPU to GPU. */
export const SVM_MIGRATION_DIRECTIONS = ["h2d", "d2h", "d2d"] as const;
/** Label value of a trigger (or direction) number the kernel added after this code was written. */
export const SVM_LABEL_UNKNOWN = "unknown";
/** pid label value of processes past SVM_PROCESS_LABELS_MAX. */
export const SVM_PID_OTHER = "other";

/** `event` label values of svm_events_total, one per SmiEvent kind (lower-case kernel names). */
export const SVM_EVENT_LABELS = [
  "vmfault",
  "thermal_throttle",
  "gpu_pre_reset",
  "gpu_post_reset",
  "migrate_start",
  "migrate_end",
  "page_fault_start",
  "page_fault_end",
  "queue_eviction",
  "queue_restore",
  "unmap_from_gpu",
  "process_start",
  "process_end",
] as const;

const EVENT_INDEX: { readonly [K in SmiEvent["kind"]]: number } = {
  VMFAULT: 0,
  THERMAL_THROTTLE: 1,
  GPU_PRE_RESET: 2,
  GPU_POST_RESET: 3,
  MIGRATE_START: 4,
  MIGRATE_END: 5,
  PAGE_FAULT_START: 6,
  PAGE_FAULT_END: 7,
  QUEUE_EVICTION: 8,
  QUEUE_RESTORE: 9,
  UNMAP_FROM_GPU: 10,
  PROCESS_START: 11,
  PROCESS_END: 12,
};

interface Dim {
  name: string;
  values: readonly string[];
  /** Values [0, known) are created at zero when a GPU is added; `unknown` appears on use. */
  known: number;
}

interface FamilySpec {
  name: string;
  help: string;
  dims: readonly Dim[];
  /** Gets a `pid` label when per-process labels are on. */
  perProcess: boolean;
}

const withUnknown = (values: readonly string[]): readonly string[] => [...values, SVM_LABEL_UNKNOWN];
const DIM_DIRECTION: Dim = { name: "direction", values: withUnknown(SVM_MIGRATION_DIRECTIONS), known: 3 };
const DIM_MIGRATE_TRIGGER: Dim = { name: "trigger", values: withUnknown(SVM_MIGRATE_TRIGGERS), known: 4 };
const DIM_QUEUE_TRIGGER: Dim = { name: "trigger", values: withUnknown(SVM_QUEUE_EVICTION_TRIGGERS), known: 6 };
const DIM_UNMAP_TRIGGER: Dim = { name: "trigger", values: withUnknown(SVM_UNMAP_TRIGGERS), known: 3 };

/** Family indexes, in SVM_FAMILIES order. */
const F = {
  faults: 0,
  faultStarts: 1,
  migrations: 2,
  migratedBytes: 3,
  migrationFailures: 4,
  queueEvictions: 5,
  queueRestores: 6,
  unmaps: 7,
  unmappedBytes: 8,
  events: 9,
  dropped: 10,
  malformed: 11,
  pairsEvicted: 12,
  vmFaults: 13,
  thermal: 14,
  resets: 15,
} as const;

const SVM_FAMILIES: readonly FamilySpec[] = [
  {
    name: "svm_gpu_page_faults_total",
    help: "GPU page faults on SVM ranges handled by KFD (PAGE_FAULT_END), by outcome: migrated pages, or mapped (page table update only).",
    dims: [{ name: "outcome", values: ["migrated", "mapped"], known: 2 }],
    perProcess: true,
  },
  {
    name: "svm_gpu_page_fault_starts_total",
    help: "GPU page faults on SVM ranges entering KFD's handler (PAGE_FAULT_START), by access.",
    dims: [{ name: "access", values: ["read", "write"], known: 2 }],
    perProcess: true,
  },
  {
    name: "svm_migrations_total",
    help: "SVM range migrations completed without error (MIGRATE_END), by direction and trigger.",
    dims: [DIM_DIRECTION, DIM_MIGRATE_TRIGGER],
    perProcess: true,
  },
  {
    name: "svm_migrated_bytes_total",
    help: "Bytes of SVM ranges migrated without error (MIGRATE_END size), by direction and trigger.",
    dims: [DIM_DIRECTION, DIM_MIGRATE_TRIGGER],
    perProcess: true,
  },
  {
    name: "svm_migration_failures_total",
    help: "SVM range migrations that ended with a non-zero error code (MIGRATE_END), by direction and trigger.",
    dims: [DIM_DIRECTION, DIM_MIGRATE_TRIGGER],
    perProcess: true,
  },
  {
    name: "svm_queue_evictions_total",
    help: "User queue evictions of KFD processes (QUEUE_EVICTION), by trigger.",
    dims: [DIM_QUEUE_TRIGGER],
    perProcess: false,
  },
  {
    name: "svm_queue_restores_total",
    help: "User queue restores of KFD processes (QUEUE_RESTORE): restored, or rescheduled for later.",
    dims: [{ name: "outcome", values: ["restored", "rescheduled"], known: 2 }],
    perProcess: false,
  },
  {
    name: "svm_unmaps_total",
    help: "SVM ranges unmapped from the GPU (UNMAP_FROM_GPU), by trigger.",
    dims: [DIM_UNMAP_TRIGGER],
    perProcess: false,
  },
  {
    name: "svm_unmapped_bytes_total",
    help: "Bytes of SVM ranges unmapped from the GPU (UNMAP_FROM_GPU size), by trigger.",
    dims: [DIM_UNMAP_TRIGGER],
    perProcess: false,
  },
  {
    name: "svm_events_total",
    help: "KFD SMI events read, by event.",
    dims: [{ name: "event", values: SVM_EVENT_LABELS, known: SVM_EVENT_LABELS.length }],
    perProcess: false,
  },
  {
    name: "svm_events_dropped_total",
    help: "KFD SMI events known to be lost: an END without its START, a MIGRATE_START without its END, or drops reported by the event source.",
    dims: [],
    perProcess: false,
  },
  {
    name: "svm_events_malformed_total",
    help: "KFD SMI event records that did not parse (overlong or unparsable lines).",
    dims: [],
    perProcess: false,
  },
  {
    name: "svm_event_pairs_evicted_total",
    help: "Pending START events pushed out of the bounded pairing table before their END arrived (page-fault STARTs of faults the kernel ends without END are among them).",
    dims: [{ name: "pair", values: ["migration", "page_fault"], known: 2 }],
    perProcess: false,
  },
  {
    name: "svm_gpu_vm_faults_total",
    help: "GPU VM faults reported by KFD (VMFAULT).",
    dims: [],
    perProcess: false,
  },
  {
    name: "svm_gpu_thermal_throttle_events_total",
    help: "GPU thermal throttling events reported by KFD (THERMAL_THROTTLE).",
    dims: [],
    perProcess: false,
  },
  {
    name: "svm_gpu_resets_total",
    help: "GPU resets reported by KFD (GPU_PRE_RESET; each reset attempt emits one).",
    dims: [],
    perProcess: false,
  },
];

/** Every family SvmMetrics registers, in registration order. */
export const SVM_METRIC_NAMES: readonly string[] = SVM_FAMILIES.map((f) => f.name);
/** Every label name of the families (constant labels must avoid these). */
export const SVM_LABEL_NAMES: readonly string[] = [
  ...new Set(["gpu_id", "kfd_gpu_id", "pid", ...SVM_FAMILIES.flatMap((f) => f.dims.map((d) => d.name))]),
];
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** One series: its label set (built once) and its value. */
interface Cell {
  readonly labels: Record<string, string>;
  value: number;
}

interface GpuState {
  readonly kfdGpuId: number;
  readonly gpuIdLabel: string;
  readonly kfdGpuIdLabel: string;
  /** By family index: cells by (pid slot, dim 0, dim 1) index, created on first use. */
  readonly cells: (Cell | undefined)[][];
  /** Last cumulative malformed count given to malformedSync. */
  malformedSeen: number;
}

class Family {
  readonly labelNames: string[];
  /** Cells per pid slot (product of the dimension sizes). */
  readonly combos: number;
  private readonly stride0: number;
  /** Cells of every GPU, in creation order, for the scrape. */
  readonly cells: Cell[] = [];
  private readonly pidSlots = new Map<number, number>();
  private readonly pidLabels: string[] = [];
  readonly counters: Counter[] = [];

  constructor(
    readonly index: number,
    readonly spec: FamilySpec,
    readonly pidLabel: boolean,
    registries: readonly Registry<RegistryContentType>[],
    private readonly constLabels: Readonly<Record<string, string>>,
  ) {
    assert(spec.dims.length <= 2, `family ${spec.name}: at most 2 dimensions besides gpu and pid`);
    this.labelNames = ["gpu_id", "kfd_gpu_id", ...(pidLabel ? ["pid"] : []), ...spec.dims.map((d) => d.name), ...Object.keys(constLabels)];
    this.stride0 = spec.dims[1]?.values.length ?? 1;
    this.combos = (spec.dims[0]?.values.length ?? 1) * this.stride0;
    for (const registry of registries) {
      const counter: Counter = new Counter({ name: spec.name, help: spec.help, labelNames: this.labelNames, registers: [registry] });
      // The scrape reads the cells directly: prom-client's own get() would need every cell
      // copied in with inc(labels, v), which hashes the labels of each series per scrape (the
      // bulk of a 16-GPU scrape's cost). Same shape as Counter.get's answer.
      const values = () => this.cells.map((c) => ({ labels: c.labels, value: c.value }));
      (counter as unknown as { get(): Promise<unknown> }).get = async () => ({ help: spec.help, name: (counter as unknown as { name: string }).name, type: "counter", values: values(), aggregator: "sum" });
      this.counters.push(counter);
    }
  }

  /** Slots per GPU: one per admitted pid plus `other`, or one without pid labels. */
  get slots(): number {
    return this.pidLabel ? SVM_PROCESS_LABELS_MAX + 1 : 1;
  }

  /** The pid's slot: admitted pids in arrival order, SVM_PROCESS_LABELS_MAX for the rest. */
  private pidSlot(pid: number): number {
    const s = this.pidSlots.get(pid);
    if (s !== undefined) return s;
    // Later pids are not remembered, so memory stays bounded however many processes come.
    if (this.pidSlots.size >= SVM_PROCESS_LABELS_MAX) return SVM_PROCESS_LABELS_MAX;
    const slot = this.pidSlots.size;
    this.pidSlots.set(pid, slot);
    this.pidLabels[slot] = String(pid);
    return slot;
  }

  /** Add `amount` to the series of (gpu, pid, i0, i1). */
  add(gpu: GpuState, pid: number, i0: number, i1: number, amount: number): void {
    const slot = this.pidLabel ? this.pidSlot(pid) : 0;
    const at = slot * this.combos + i0 * this.stride0 + i1;
    const cells = gpu.cells[this.index]!;
    const cell = cells[at] ?? this.cellCreate(gpu, slot, i0, i1, at);
    cell.value += amount;
  }

  /** The zero series of every known label value (not `unknown`), unless pid is a label. */
  zeroInit(gpu: GpuState): void {
    if (this.pidLabel) return;
    const [d0, d1] = this.spec.dims;
    for (let i0 = 0; i0 < (d0?.known ?? 1); i0++) {
      for (let i1 = 0; i1 < (d1?.known ?? 1); i1++) {
        const at = i0 * this.stride0 + i1;
        if (!gpu.cells[this.index]![at]) this.cellCreate(gpu, 0, i0, i1, at);
      }
    }
  }

  private cellCreate(gpu: GpuState, slot: number, i0: number, i1: number, at: number): Cell {
    const labels: Record<string, string> = { gpu_id: gpu.gpuIdLabel, kfd_gpu_id: gpu.kfdGpuIdLabel };
    if (this.pidLabel) labels["pid"] = slot === SVM_PROCESS_LABELS_MAX ? SVM_PID_OTHER : this.pidLabels[slot]!;
    const [d0, d1] = this.spec.dims;
    if (d0) labels[d0.name] = d0.values[i0]!;
    if (d1) labels[d1.name] = d1.values[i1]!;
    for (const [k, v] of Object.entries(this.constLabels)) labels[k] = v;
    const cell: Cell = { labels, value: 0 };
    gpu.cells[this.index]![at] = cell;
    this.cells.push(cell);
    return cell;
  }

  /** Copy every cell into `counter` (called by prom-client when its registry is scraped). */
}

/** Options of SvmMetrics. */
export interface SvmMetricsOptions {
  /** Every family is registered on each (e.g. a Prometheus-text and an OpenMetrics registry). */
  registries: readonly Registry<RegistryContentType>[];
  /**
   * The DME index ("0".."N-1") of a KFD gpu_id, or undefined when the inventory does not know
   * it (the series then get gpu_id="kfd-<hex>"). Called once per GPU, when it is first seen.
   */
  gpuIdOf: (kfdGpuId: number) => string | undefined;
  /**
   * Add a `pid` label to the page-fault and migration families, at most
   * SVM_PROCESS_LABELS_MAX distinct pids per family, the rest under pid="other". Default false.
   */
  perProcess?: boolean;
  /**
   * Labels added to every series, e.g. `{ hostname }` as the DME families carry it, and the
   * configuration's extra labels. Names must be valid and not in SVM_LABEL_NAMES.
   */
  constLabels?: Readonly<Record<string, string>>;
}

/** Sizes of the two pairing tables, for diagnostics and tests. */
export interface SvmPendingPairs {
  migrations: number;
  pageFaults: number;
}

/**
 * The svm_* counter families, fed with typed SMI events.
 */
export class SvmMetrics {
  private readonly families: Family[];
  private readonly gpus = new Map<number, GpuState>();
  private readonly gpuIdOf: (kfdGpuId: number) => string | undefined;
  /** The last GPU looked up: a batch comes from one reader, so one GPU. */
  private lastGpu: GpuState | undefined;
  private readonly migrationPairs: SmiPairTable;
  private readonly faultPairs: SmiPairTable;

  /**
   * Create and register every family of SVM_METRIC_NAMES on each registry.
   * @throws Error from prom-client when a registry already holds a family of that name
   *   (one SvmMetrics per registry); InvariantError when `registries` is empty or a
   *   constant label name is invalid or taken (callers validate user input first).
   */
  constructor(options: SvmMetricsOptions) {
    assert(options.registries.length > 0, "SvmMetrics needs at least one registry to register its families on");
    const constLabels = { ...options.constLabels };
    for (const k of Object.keys(constLabels)) {
      assert(LABEL_NAME.test(k) && !k.startsWith("__"), `constant label name "${k}" is not a Prometheus label name`);
      assert(!SVM_LABEL_NAMES.includes(k), `constant label "${k}" is a label of the svm_* families (${SVM_LABEL_NAMES.join(", ")})`);
    }
    const perProcess = options.perProcess ?? false;
    this.gpuIdOf = options.gpuIdOf;
    this.families = SVM_FAMILIES.map((spec, i) => new Family(i, spec, perProcess && spec.perProcess, options.registries, constLabels));
    this.migrationPairs = new SmiPairTable(SVM_EVENT_PAIRS_PENDING_MAX, (gpuId) => {
      // A MIGRATE_START whose END never came: the END was lost.
      const gpu = this.gpuState(gpuId);
      this.families[F.pairsEvicted]!.add(gpu, 0, 0, 0, 1);
      this.families[F.dropped]!.add(gpu, 0, 0, 0, 1);
    });
    this.faultPairs = new SmiPairTable(SVM_EVENT_PAIRS_PENDING_MAX, (gpuId) => {
      // Not a drop: the kernel ends a fault without PAGE_FAULT_END when its migration fails.
      this.families[F.pairsEvicted]!.add(this.gpuState(gpuId), 0, 1, 0, 1);
    });
  }

  /**
   * Make the GPU's series exist (at zero) before its first event. Idempotent. Events of a GPU
   * not added yet add it.
   * @throws InvariantError past SVM_METRICS_GPUS_MAX distinct GPUs.
   */
  gpuAdd(kfdGpuId: number): void {
    this.gpuState(kfdGpuId);
  }

  private gpuState(kfdGpuId: number): GpuState {
    const known = this.gpus.get(kfdGpuId);
    if (known) return known;
    assert(
      this.gpus.size < SVM_METRICS_GPUS_MAX,
      `SvmMetrics counts at most ${SVM_METRICS_GPUS_MAX} GPUs; gpu_id 0x${kfdGpuId.toString(16)} is one too many`,
    );
    const hex = kfdGpuId.toString(16);
    const gpu: GpuState = {
      kfdGpuId,
      gpuIdLabel: this.gpuIdOf(kfdGpuId) ?? `kfd-${hex}`,
      kfdGpuIdLabel: hex,
      cells: this.families.map((f) => new Array<Cell | undefined>(f.slots * f.combos).fill(undefined)),
      malformedSeen: 0,
    };
    this.gpus.set(kfdGpuId, gpu);
    for (const f of this.families) f.zeroInit(gpu);
    return gpu;
  }

  /**
   * Count a batch of events. Never throws on event content: trigger numbers the kernel added
   * later count as trigger="unknown".
   * @throws InvariantError past SVM_METRICS_GPUS_MAX distinct GPUs.
   */
  observe(events: readonly SmiEvent[]): void {
    const f = this.families;
    for (let i = 0; i < events.length; i++) {
      const ev = events[i]!;
      let gpu = this.lastGpu;
      if (gpu === undefined || gpu.kfdGpuId !== ev.gpuId) {
        gpu = this.gpuState(ev.gpuId);
        this.lastGpu = gpu;
      }
      f[F.events]!.add(gpu, 0, EVENT_INDEX[ev.kind], 0, 1);
      switch (ev.kind) {
        case "VMFAULT":
          f[F.vmFaults]!.add(gpu, 0, 0, 0, 1);
          break;
        case "THERMAL_THROTTLE":
          f[F.thermal]!.add(gpu, 0, 0, 0, 1);
          break;
        case "GPU_PRE_RESET":
          f[F.resets]!.add(gpu, 0, 0, 0, 1);
          break;
        case "MIGRATE_START":
          if (this.migrationPairs.start(ev.gpuId, ev.pid, ev.startPage)) {
            f[F.dropped]!.add(gpu, 0, 0, 0, 1); // the previous START of this range got no END
          }
          break;
        case "MIGRATE_END": {
          if (!this.migrationPairs.end(ev.gpuId, ev.pid, ev.startPage)) f[F.dropped]!.add(gpu, 0, 0, 0, 1);
          const dir = ev.from === 0 ? (ev.to === 0 ? 3 : 0) : ev.to === 0 ? 1 : 2;
          const trig = triggerIndex(ev.trigger, SVM_MIGRATE_TRIGGERS.length);
          if (ev.errorCode !== undefined && ev.errorCode !== 0) {
            f[F.migrationFailures]!.add(gpu, ev.pid, dir, trig, 1);
          } else {
            f[F.migrations]!.add(gpu, ev.pid, dir, trig, 1);
            f[F.migratedBytes]!.add(gpu, ev.pid, dir, trig, ev.sizePages * SMI_PAGE_bytes);
          }
          break;
        }
        case "PAGE_FAULT_START":
          // A START over a pending one is a retried fault, not a loss.
          this.faultPairs.start(ev.gpuId, ev.pid, ev.page);
          f[F.faultStarts]!.add(gpu, ev.pid, ev.write ? 1 : 0, 0, 1);
          break;
        case "PAGE_FAULT_END":
          if (!this.faultPairs.end(ev.gpuId, ev.pid, ev.page)) f[F.dropped]!.add(gpu, 0, 0, 0, 1);
          f[F.faults]!.add(gpu, ev.pid, ev.migrated ? 0 : 1, 0, 1);
          break;
        case "QUEUE_EVICTION":
          f[F.queueEvictions]!.add(gpu, 0, triggerIndex(ev.trigger, SVM_QUEUE_EVICTION_TRIGGERS.length), 0, 1);
          break;
        case "QUEUE_RESTORE":
          f[F.queueRestores]!.add(gpu, 0, ev.rescheduled ? 1 : 0, 0, 1);
          break;
        case "UNMAP_FROM_GPU": {
          const trig = triggerIndex(ev.trigger, SVM_UNMAP_TRIGGERS.length);
          f[F.unmaps]!.add(gpu, 0, trig, 0, 1);
          f[F.unmappedBytes]!.add(gpu, 0, trig, 0, ev.sizePages * SMI_PAGE_bytes);
          break;
        }
        // GPU_POST_RESET, PROCESS_START, PROCESS_END: svm_events_total only.
      }
    }
  }

  /**
   * Count `n` events the source itself reports lost (e.g. the emulated KFD's full-fifo drops;
   * pass the increase since the last call).
   * @throws InvariantError when n is not a non-negative safe integer.
   */
  dropped(kfdGpuId: number, n: number): void {
    assert(Number.isSafeInteger(n) && n >= 0, `dropped(0x${kfdGpuId.toString(16)}, ${n}): n must be a non-negative integer`);
    if (n > 0) this.families[F.dropped]!.add(this.gpuState(kfdGpuId), 0, 0, 0, n);
  }

  /**
   * Bring svm_events_malformed_total of the GPU up to the parser's cumulative count
   * (`SmiEventParser.malformedCount`). A count below the last one comes from a new parser
   * (reader reopened) and is added whole: the counter never decreases.
   * @throws InvariantError when count is not a non-negative safe integer.
   */
  malformedSync(kfdGpuId: number, parserMalformedCount: number): void {
    const count = parserMalformedCount;
    assert(
      Number.isSafeInteger(count) && count >= 0,
      `malformedSync(0x${kfdGpuId.toString(16)}, ${count}): the count must be a non-negative integer`,
    );
    const gpu = this.gpuState(kfdGpuId);
    const added = count >= gpu.malformedSeen ? count - gpu.malformedSeen : count;
    gpu.malformedSeen = count;
    if (added > 0) this.families[F.malformed]!.add(gpu, 0, 0, 0, added);
  }

  /** STARTs awaiting their END in each pairing table (each at most SVM_EVENT_PAIRS_PENDING_MAX). */
  pendingPairs(): SvmPendingPairs {
    return { migrations: this.migrationPairs.size, pageFaults: this.faultPairs.size };
  }
}

function triggerIndex(trigger: number, known: number): number {
  return trigger >= 0 && trigger < known ? trigger : known;
}

/**
 * A bounded table of pending START events keyed by (gpu_id, pid, page), oldest first, in
 * typed arrays: nothing is allocated after construction. Buckets chain entries; a doubly
 * linked list keeps insertion order so the oldest entry is pushed out in O(1) when full.
 */
export class SmiPairTable {
  private readonly buckets: Int32Array;
  private readonly gpuOf: Float64Array;
  private readonly pidOf: Float64Array;
  private readonly pageOf: Float64Array;
  /** Next entry in the same bucket, or in the free list. */
  private readonly chain: Int32Array;
  private readonly prev: Int32Array;
  private readonly next: Int32Array;
  private oldest = -1;
  private newest = -1;
  private free = 0;
  private count = 0;

  /**
   * @param capacity most pending entries.
   * @param onEvict called with the gpu_id of each pending entry pushed out by a newer one.
   */
  constructor(
    readonly capacity: number,
    private readonly onEvict: (gpuId: number) => void,
  ) {
    assert(Number.isSafeInteger(capacity) && capacity > 0, `pair table capacity ${capacity} must be a positive integer`);
    let nb = 1;
    while (nb < capacity * 2) nb *= 2;
    this.buckets = new Int32Array(nb).fill(-1);
    this.gpuOf = new Float64Array(capacity);
    this.pidOf = new Float64Array(capacity);
    this.pageOf = new Float64Array(capacity);
    this.chain = new Int32Array(capacity);
    this.prev = new Int32Array(capacity);
    this.next = new Int32Array(capacity);
    for (let i = 0; i < capacity; i++) this.chain[i] = i + 1 < capacity ? i + 1 : -1;
  }

  /** Pending entries. */
  get size(): number {
    return this.count;
  }

  private bucketOf(gpu: number, pid: number, page: number): number {
    // Exact keys are compared below; the hash only spreads them (page may exceed 32 bits).
    let h = Math.imul(gpu | 0, 0x9e3779b1) ^ Math.imul(pid | 0, 0x85ebca77);
    h ^= Math.imul(page | 0, 0xc2b2ae3d) ^ Math.imul((page / 0x1_0000_0000) | 0, 0x27d4eb2f);
    h ^= h >>> 15;
    h = Math.imul(h, 0x2c1b3c6d);
    h ^= h >>> 13;
    return h & (this.buckets.length - 1);
  }

  private find(b: number, gpu: number, pid: number, page: number): number {
    for (let e = this.buckets[b]!; e >= 0; e = this.chain[e]!) {
      if (this.pageOf[e] === page && this.pidOf[e] === pid && this.gpuOf[e] === gpu) return e;
    }
    return -1;
  }

  /**
   * Record a START. Returns true when a START with the same key was already pending (it is
   * replaced). When the table is full the oldest entry is pushed out and onEvict called.
   */
  start(gpu: number, pid: number, page: number): boolean {
    const b = this.bucketOf(gpu, pid, page);
    const old = this.find(b, gpu, pid, page);
    if (old >= 0) this.remove(old, b);
    else if (this.count === this.capacity) {
      const e = this.oldest;
      const evictedGpu = this.gpuOf[e]!;
      this.remove(e, this.bucketOf(evictedGpu, this.pidOf[e]!, this.pageOf[e]!));
      this.onEvict(evictedGpu);
    }
    const e = this.free;
    this.free = this.chain[e]!;
    this.gpuOf[e] = gpu;
    this.pidOf[e] = pid;
    this.pageOf[e] = page;
    this.chain[e] = this.buckets[b]!;
    this.buckets[b] = e;
    this.prev[e] = this.newest;
    this.next[e] = -1;
    if (this.newest >= 0) this.next[this.newest] = e;
    else this.oldest = e;
    this.newest = e;
    this.count++;
    return old >= 0;
  }

  /** Match an END: true (and the START forgotten) when its START was pending. */
  end(gpu: number, pid: number, page: number): boolean {
    const b = this.bucketOf(gpu, pid, page);
    const e = this.find(b, gpu, pid, page);
    if (e < 0) return false;
    this.remove(e, b);
    return true;
  }

  private remove(e: number, b: number): void {
    if (this.buckets[b] === e) this.buckets[b] = this.chain[e]!;
    else {
      let p = this.buckets[b]!;
      while (this.chain[p] !== e) p = this.chain[p]!;
      this.chain[p] = this.chain[e]!;
    }
    const p = this.prev[e]!;
    const n = this.next[e]!;
    if (p >= 0) this.next[p] = n;
    else this.oldest = n;
    if (n >= 0) this.prev[n] = p;
    else this.newest = p;
    this.chain[e] = this.free;
    this.free = e;
    this.count--;
  }
}
