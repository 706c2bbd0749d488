/**
 * The agent's sampler: reads each GPU's metric groups on the schedule a SamplingPolicy sets,
 * in the library Workers (runtime/smi/pool.ts), each read inside a session. Runs on the main
 * thread's timers and never waits on a device itself:
 * - at most one read per GPU and group is in flight; a read that does not answer within
 *   SAMPLE_READ_TIMEOUT_ms is reported as TIMEOUT (its worker set aside as hung), and that
 *   GPU gets no further read until the hung one really ends: a hung GPU holds one worker,
 *   never one per tick, while every other GPU goes on;
 * - a probe a GPU answers NOT_SUPPORTED is skipped for that GPU and re-probed every
 *   UNSUPPORTED_REPROBE_ms; it never removes the GPU's other fields;
 * - samples are kept with the time they were read; their age is exported.
 */
import { SmiError } from "../errors.ts";
import { METRIC_GROUPS, type MetricGroup, SAMPLING_DEFAULT_INTERVAL_MS, type SamplingGpu, type Schedule, type ScheduleInput } from "../policy/contracts/sampling.ts";
import type { GpuInventoryEntry } from "../smi/inventory.ts";
import type { SmiPool } from "../smi/pool.ts";
import { type GroupReading, SMI_GROUPS, type SmiGroup, type Values } from "../smi/readings.ts";

/** Timer period of the sampler; the finest interval a policy can ask for is 100 ms. */
export const SAMPLER_TICK_ms = 50;
/** A read that takes longer is reported as hung. */
export const SAMPLE_READ_TIMEOUT_ms = 5_000;
/** How often a NOT_SUPPORTED probe is tried again on that GPU. */
export const UNSUPPORTED_REPROBE_ms = 600_000;

export interface Sample {
  values: Values;
  /** Wall clock of the read's answer, ms. */
  readAtMs: number;
  durationMs: number;
  /** Probes that failed in this read (status text), not counting NOT_SUPPORTED ones. */
  errors: Record<string, string>;
}

export interface SampleEvent {
  gpu: GpuInventoryEntry;
  group: SmiGroup;
  sample: Sample | undefined;
  /** A failure of the whole read (timeout, session or library error). */
  failure?: SmiError | Error;
  durationMs: number;
}

export interface SamplerOptions {
  pool: SmiPool;
  gpus: readonly GpuInventoryEntry[];
  clock?: () => number;
  onSample?: (e: SampleEvent) => void;
  readTimeoutMs?: number;
}

interface Slot {
  intervalMs: number;
  dueMs: number;
  inFlight: boolean;
  latest: Sample | undefined;
  /** Failed reads since the last schedule input was built. */
  errors: number;
}

export class Sampler implements Disposable {
  private gpus: readonly GpuInventoryEntry[];
  private readonly slots = new Map<string, Slot>();
  /** uuid → probe id → time it may be tried again. */
  private readonly unsupported = new Map<string, Map<string, number>>();
  /** GPUs with a read past its timeout that has not ended yet. */
  private readonly hung = new Set<string>();
  private timer: ReturnType<typeof setInterval> | undefined;
  private readonly clock: () => number;
  reads = 0;
  failures = 0;

  constructor(private readonly opts: SamplerOptions) {
    this.gpus = opts.gpus;
    this.clock = opts.clock ?? Date.now;
    this.gpusSet(opts.gpus);
  }

  /** Replace the GPU list (after an inventory re-read); keeps the slots of GPUs that stay. */
  gpusSet(gpus: readonly GpuInventoryEntry[]): void {
    this.gpus = gpus;
    const now = this.clock();
    const keep = new Set<string>();
    for (const g of gpus) {
      for (const group of SMI_GROUPS) {
        const k = `${g.uuid}/${group}`;
        keep.add(k);
        if (!this.slots.has(k)) this.slots.set(k, { intervalMs: SAMPLING_DEFAULT_INTERVAL_MS, dueMs: now, inFlight: false, latest: undefined, errors: 0 });
      }
    }
    for (const k of this.slots.keys()) if (!keep.has(k)) this.slots.delete(k);
    const uuids = new Set(gpus.map((g) => g.uuid));
    for (const u of this.unsupported.keys()) if (!uuids.has(u)) this.unsupported.delete(u);
    for (const u of this.hung) if (!uuids.has(u)) this.hung.delete(u);
  }

  start(): void {
    this.timer ??= setInterval(() => this.tick(), SAMPLER_TICK_ms);
    this.tick();
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }

  [Symbol.dispose](): void {
    this.stop();
  }

  /** Dispatch every due read. */
  tick(): void {
    const now = this.clock();
    for (const g of this.gpus) {
      if (this.hung.has(g.uuid)) continue;
      for (const group of SMI_GROUPS) {
        const slot = this.slots.get(`${g.uuid}/${group}`)!;
        if (slot.inFlight || now < slot.dueMs) continue;
        slot.inFlight = true;
        slot.dueMs = now + slot.intervalMs;
        void this.read(g, group, slot);
      }
    }
  }

  private skipList(uuid: string, now: number): string[] {
    const m = this.unsupported.get(uuid);
    if (m === undefined) return [];
    const out: string[] = [];
    for (const [probe, until] of m) {
      if (now < until) out.push(probe);
      else m.delete(probe);
    }
    return out;
  }

  private async read(g: GpuInventoryEntry, group: SmiGroup, slot: Slot): Promise<void> {
    const t0 = performance.now();
    const skip = this.skipList(g.uuid, this.clock());
    let hung = false;
    let ended = false;
    // The read's real end, also long after its timeout: the GPU may be read again.
    const settled = (): void => {
      ended = true;
      if (!hung) return;
      slot.inFlight = false;
      this.hung.delete(g.uuid);
    };
    try {
      const r = await this.opts.pool.call<GroupReading & { durationMs: number }>(
        { op: "read", uuid: g.uuid, group, skip },
        this.opts.readTimeoutMs ?? SAMPLE_READ_TIMEOUT_ms,
        settled,
      );
      const now = this.clock();
      if (r.unsupported.length > 0) {
        let m = this.unsupported.get(g.uuid);
        if (m === undefined) {
          m = new Map();
          this.unsupported.set(g.uuid, m);
        }
        for (const p of r.unsupported) m.set(p, now + UNSUPPORTED_REPROBE_ms);
      }
      const errors = Object.keys(r.errors).length;
      if (errors > 0) slot.errors++;
      this.reads++;
      slot.latest = { values: r.values, readAtMs: now, durationMs: r.durationMs, errors: r.errors };
      this.opts.onSample?.({ gpu: g, group, sample: slot.latest, durationMs: performance.now() - t0 });
    } catch (e) {
      this.failures++;
      slot.errors++;
      // A TIMEOUT whose call already ended is the library's own status, not a hung read.
      if (e instanceof SmiError && e.statusName === "TIMEOUT" && !ended) {
        hung = true;
        this.hung.add(g.uuid);
      }
      this.opts.onSample?.({ gpu: g, group, sample: slot.latest, failure: e as Error, durationMs: performance.now() - t0 });
    } finally {
      if (!hung) slot.inFlight = false;
    }
  }

  /** GPUs whose read is hung (past its timeout, not ended). */
  hungGpus(): string[] {
    return [...this.hung];
  }

  /** Probes currently skipped on a GPU as NOT_SUPPORTED. */
  unsupportedOf(uuid: string): string[] {
    return [...(this.unsupported.get(uuid)?.keys() ?? [])];
  }

  latest(uuid: string, group: SmiGroup): Sample | undefined {
    return this.slots.get(`${uuid}/${group}`)?.latest;
  }

  /** True once every GPU has at least one sample of some group. */
  get ready(): boolean {
    return this.gpus.length > 0 && this.gpus.every((g) => SMI_GROUPS.some((group) => this.slots.get(`${g.uuid}/${group}`)?.latest !== undefined));
  }

  /** Current interval per GPU index and group. */
  intervals(): Schedule {
    const out: Schedule = {};
    for (const g of this.gpus) {
      const groups: Partial<Record<MetricGroup, number>> = {};
      for (const group of SMI_GROUPS) groups[group] = this.slots.get(`${g.uuid}/${group}`)!.intervalMs;
      out[String(g.index)] = groups;
    }
    return out;
  }

  /** The SamplingPolicy's input: latest readings, limits, errors since the last call (then reset). */
  scheduleInput(nowMs: number): ScheduleInput {
    const gpus: SamplingGpu[] = this.gpus.map((g) => {
      const v = (group: SmiGroup): Values => this.slots.get(`${g.uuid}/${group}`)?.latest?.values ?? {};
      const t = v("temperature");
      const p = v("power");
      const a = v("activity");
      const m = v("memory");
      const errors: Partial<Record<MetricGroup, number>> = {};
      for (const group of SMI_GROUPS) {
        const slot = this.slots.get(`${g.uuid}/${group}`)!;
        if (slot.errors > 0) errors[group] = slot.errors;
        slot.errors = 0;
      }
      const readings: SamplingGpu["readings"] = {};
      const temp = t.junction_c ?? t.edge_c;
      if (temp !== undefined) readings.temperature_c = temp;
      if (p.socket_w !== undefined) readings.power_w = p.socket_w;
      if (a.gfx_pct !== undefined) readings.gfx_activity_pct = a.gfx_pct;
      if (a.umc_pct !== undefined) readings.umc_activity_pct = a.umc_pct;
      if (m.vram_used_bytes !== undefined) readings.vram_used_bytes = m.vram_used_bytes;
      if (m.vram_total_bytes !== undefined) readings.vram_total_bytes = m.vram_total_bytes;
      return { id: g.index, readings, limits: p.limit_w === undefined ? {} : { power_w_max: p.limit_w }, errors };
    });
    return { nowMs, gpus, intervals: this.intervals() };
  }

  /** Apply a validated schedule (policy answer). The `svm` group is the event reader's, not ours. */
  scheduleApply(s: Schedule): void {
    const now = this.clock();
    for (const g of this.gpus) {
      const groups = s[String(g.index)];
      if (groups === undefined) continue;
      for (const group of METRIC_GROUPS) {
        if (group === "svm") continue;
        const ms = groups[group];
        const slot = this.slots.get(`${g.uuid}/${group}`);
        if (ms === undefined || slot === undefined || slot.intervalMs === ms) continue;
        slot.intervalMs = ms;
        // A shorter interval takes effect now, a longer one from the last read.
        slot.dueMs = Math.min(slot.dueMs, now + ms);
      }
    }
  }
}
