/**
 * SamplingPolicy: which GPU metric groups the agent's sampler reads, and how often.
 * Hook: `schedule(input, ctx) -> { "<gpu id>": { "<group>": interval_ms } }`. Groups a
 * plugin leaves out keep their current interval.
 */

export const METRIC_GROUPS = ["temperature", "power", "activity", "memory", "xgmi", "pcie", "ecc", "svm"] as const;
export type MetricGroup = (typeof METRIC_GROUPS)[number];

/** Fastest sampling the host allows: amdsmi reads take ~ms; faster is noise. */
export const SAMPLING_INTERVAL_MS_MIN = 100;
/** Slowest: once an hour. */
export const SAMPLING_INTERVAL_MS_MAX = 3_600_000;
/** The built-in fixed schedule, the fallback of every SamplingPolicy. */
export const SAMPLING_DEFAULT_INTERVAL_MS = 1000;

/** Latest readings of one GPU; absent fields were unsupported or failed. */
export interface GpuReadings {
  temperature_c?: number;
  power_w?: number;
  gfx_activity_pct?: number;
  umc_activity_pct?: number;
  vram_used_bytes?: number;
  vram_total_bytes?: number;
}

export interface SamplingGpu {
  id: number;
  readings: GpuReadings;
  /** Limits the readings are compared against (thermal, power cap). */
  limits: { temperature_c_max?: number; power_w_max?: number };
  /** Failed reads per group since the last schedule call. */
  errors: Partial<Record<MetricGroup, number>>;
}

export interface ScheduleInput {
  nowMs: number;
  gpus: SamplingGpu[];
  /** Current interval per GPU id and group. */
  intervals: Record<string, Partial<Record<MetricGroup, number>>>;
}

export type Schedule = Record<string, Partial<Record<MetricGroup, number>>>;

/** The fixed schedule: every group of every GPU at SAMPLING_DEFAULT_INTERVAL_MS. */
export function fixedSchedule(input: ScheduleInput, intervalMs = SAMPLING_DEFAULT_INTERVAL_MS): Schedule {
  const out: Schedule = {};
  for (const g of input.gpus) out[String(g.id)] = Object.fromEntries(METRIC_GROUPS.map((m) => [m, intervalMs]));
  return out;
}

/** Validate a schedule answer; intervals the plugin omitted are filled from the input. */
export function checkSchedule(out: unknown, input: ScheduleInput): { ok: true; value: Schedule } | { ok: false; message: string } {
  if (out === null || typeof out !== "object" || Array.isArray(out)) {
    return { ok: false, message: 'expected an object { "<gpu id>": { "<group>": interval_ms } }' };
  }
  const ids = new Set(input.gpus.map((g) => String(g.id)));
  const value: Schedule = {};
  for (const g of input.gpus) value[String(g.id)] = { ...(input.intervals[String(g.id)] ?? {}) };
  for (const [gpu, groups] of Object.entries(out as Record<string, unknown>)) {
    if (!ids.has(gpu)) return { ok: false, message: `gpu ${gpu} does not exist (gpus: ${[...ids].join(", ")})` };
    if (groups === null || typeof groups !== "object" || Array.isArray(groups)) {
      return { ok: false, message: `gpu ${gpu}: expected an object of group -> interval_ms` };
    }
    for (const [group, ms] of Object.entries(groups as Record<string, unknown>)) {
      if (!(METRIC_GROUPS as readonly string[]).includes(group)) {
        return { ok: false, message: `gpu ${gpu}: unknown metric group '${group}' (groups: ${METRIC_GROUPS.join(", ")})` };
      }
      if (typeof ms !== "number" || !Number.isInteger(ms) || ms < SAMPLING_INTERVAL_MS_MIN || ms > SAMPLING_INTERVAL_MS_MAX) {
        return {
          ok: false,
          message: `gpu ${gpu}, group ${group}: interval must be an integer from ${SAMPLING_INTERVAL_MS_MIN} to ${SAMPLING_INTERVAL_MS_MAX} ms, got ${JSON.stringify(ms)}`,
        };
      }
      value[gpu]![group as MetricGroup] = ms;
    }
  }
  return { ok: true, value };
}

export const SAMPLE_SCHEDULE_INPUT: ScheduleInput = {
  nowMs: 60_000,
  gpus: [
    {
      id: 1,
      readings: { temperature_c: 61, power_w: 402, gfx_activity_pct: 87, umc_activity_pct: 40, vram_used_bytes: 150e9, vram_total_bytes: 192e9 },
      limits: { temperature_c_max: 100, power_w_max: 750 },
      errors: {},
    },
    { id: 2, readings: { temperature_c: 38, power_w: 140, gfx_activity_pct: 0, umc_activity_pct: 0 }, limits: { temperature_c_max: 100, power_w_max: 750 }, errors: { xgmi: 1 } },
  ],
  intervals: { "1": { temperature: 1000, power: 1000 }, "2": { temperature: 1000, power: 1000 } },
};
