// @ts-check
// adaptive: sample what moves, rest what does not. Per GPU and metric group, each call:
//
//   errors    the group's reads failed since the last call: back off (double, up to max);
//   limits    temperature / power at or above near_limit_pct of temperature_c_max /
//             power_w_max: that group at min_interval_ms (watch a GPU about to throttle);
//   change    a reading of the group moved by more than change_pct since the last call:
//             faster (halve, down to min_interval_ms);
//   idle      nothing moved: slower (double, up to max_interval_ms).
//
// A GPU seen for the first time keeps its intervals (nothing to compare yet). Readings per
// group: temperature_c; power_w; gfx/umc activity; vram_used_bytes. The host reports no
// XGMI, PCIe or SVM readings, so xgmi, pcie and svm follow the activity readings (link and
// fault traffic come with work); ecc has no reading that moves, so it rests at max_interval_ms
// unless its reads fail. A relative change is measured against max(|previous|, 1), so an idle 0 %
// that turns into 5 % counts as a change.
//
// State: the previous readings per GPU, module-level, at most gpus_max GPUs (least recently
// seen forgotten). Lost when the host rebuilds the sandbox: every GPU is then "first seen"
// once and keeps its intervals for one call.

/** Tunables: name, default, bounds, meaning. */
export const params = {
  min_interval_ms: {
    type: "integer",
    default: 250,
    min: 100,
    max: 3600000,
    description: "fastest interval, ms: changing groups halve down to it, groups near a limit jump to it",
  },
  max_interval_ms: {
    type: "integer",
    default: 10000,
    min: 100,
    max: 3600000,
    description: "slowest interval, ms: idle groups and failing groups double up to it",
  },
  initial_interval_ms: {
    type: "integer",
    default: 1000,
    min: 100,
    max: 3600000,
    description: "interval assumed for a group the host reports none for, ms",
  },
  change_pct: {
    type: "number",
    default: 10,
    min: 0,
    max: 1000,
    description: "a reading that moved by more than this share of its previous value since the last call is a change, %",
  },
  near_limit_pct: {
    type: "number",
    default: 90,
    min: 1,
    max: 100,
    description: "temperature or power at or above this share of its limit samples at min_interval_ms, %",
  },
  gpus_max: {
    type: "integer",
    default: 64,
    min: 1,
    max: 4096,
    description: "most GPUs whose previous readings are kept",
  },
};

/** @typedef {import("../types").MetricGroup} MetricGroup */
/** @typedef {import("../types").ScheduleInput["gpus"][number]["readings"]} Readings */
/** @typedef {keyof Readings} ReadingName */

/** Readings that tell whether a group changed. */
/** @type {Record<MetricGroup, readonly ReadingName[]>} */
const GROUP_READINGS = {
  temperature: ["temperature_c"],
  power: ["power_w"],
  activity: ["gfx_activity_pct", "umc_activity_pct"],
  memory: ["vram_used_bytes"],
  xgmi: ["gfx_activity_pct", "umc_activity_pct"],
  pcie: ["gfx_activity_pct", "umc_activity_pct"],
  ecc: [],
  svm: ["gfx_activity_pct", "umc_activity_pct"],
};
/** @type {readonly MetricGroup[]} */
const GROUPS = ["temperature", "power", "activity", "memory", "xgmi", "pcie", "ecc", "svm"];

/** @type {Map<string, Readings>} gpu id -> readings of the previous call, least recently seen first */
const previous = new Map();

/**
 * @param {Readings} prev @param {Readings} now @param {readonly ReadingName[]} names @param {number} changePct
 */
function readingsChanged(prev, now, names, changePct) {
  for (const name of names) {
    const a = prev[name];
    const b = now[name];
    if (typeof a !== "number" || typeof b !== "number") continue;
    if (Math.abs(b - a) * 100 > changePct * Math.max(Math.abs(a), 1)) return true;
  }
  return false;
}

/**
 * @param {MetricGroup} group @param {import("../types").ScheduleInput["gpus"][number]} gpu @param {number} nearPct
 */
function nearLimit(group, gpu, nearPct) {
  const r = gpu.readings;
  const l = gpu.limits;
  if (group === "temperature") {
    return typeof r.temperature_c === "number" && typeof l.temperature_c_max === "number" && r.temperature_c * 100 >= nearPct * l.temperature_c_max;
  }
  if (group === "power") return typeof r.power_w === "number" && typeof l.power_w_max === "number" && r.power_w * 100 >= nearPct * l.power_w_max;
  return false;
}

/** @type {import("../types").SamplingHooks["schedule"]} */
export function schedule(input, ctx) {
  const p = ctx.params;
  const a = /** @type {number} */ (p.min_interval_ms);
  const b = /** @type {number} */ (p.max_interval_ms);
  // A policy file may set min above max: take them as the two ends of the span.
  const lo = Math.min(a, b);
  const hi = Math.max(a, b);
  const changePct = /** @type {number} */ (p.change_pct);
  const nearPct = /** @type {number} */ (p.near_limit_pct);
  const initial = /** @type {number} */ (p.initial_interval_ms);
  /** @type {ReturnType<import("../types").SamplingHooks["schedule"]>} */
  const out = {};
  for (const gpu of input.gpus) {
    const id = String(gpu.id);
    const prev = previous.get(id);
    const current = input.intervals[id] ?? {};
    /** @type {Partial<Record<MetricGroup, number>>} */
    const next = {};
    for (const group of GROUPS) {
      const cur = Math.min(hi, Math.max(lo, Math.round(current[group] ?? initial)));
      const errors = gpu.errors[group] ?? 0;
      if (errors > 0) next[group] = Math.min(hi, cur * 2);
      else if (nearLimit(group, gpu, nearPct)) next[group] = lo;
      else if (prev === undefined) next[group] = cur;
      else if (readingsChanged(prev, gpu.readings, GROUP_READINGS[group], changePct)) next[group] = Math.max(lo, Math.floor(cur / 2));
      else next[group] = Math.min(hi, cur * 2);
    }
    out[id] = next;
    previous.delete(id);
    previous.set(id, { ...gpu.readings });
    while (previous.size > /** @type {number} */ (p.gpus_max)) {
      const oldest = previous.keys().next();
      if (oldest.done) break;
      previous.delete(oldest.value);
    }
  }
  return out;
}
