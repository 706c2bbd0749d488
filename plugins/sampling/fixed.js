// @ts-check
// fixed: every metric group of every GPU at one interval, whatever the readings say. The
// baseline the adaptive schedules are measured against. Stateless.

/** Tunables: name, default, bounds, meaning. */
export const params = {
  interval_ms: {
    type: "integer",
    default: 1000,
    min: 100,
    max: 3600000,
    description: "interval of every group of every GPU, ms (the host accepts 100 .. 3,600,000)",
  },
};

/** @type {readonly import("../types").MetricGroup[]} */
const GROUPS = ["temperature", "power", "activity", "memory", "xgmi", "pcie", "ecc", "svm"];

/** @type {import("../types").SamplingHooks["schedule"]} */
export function schedule(input, ctx) {
  const ms = /** @type {number} */ (ctx.params.interval_ms);
  /** @type {ReturnType<import("../types").SamplingHooks["schedule"]>} */
  const out = {};
  for (const g of input.gpus) {
    /** @type {Partial<Record<import("../types").MetricGroup, number>>} */
    const groups = {};
    for (const group of GROUPS) groups[group] = ms;
    out[String(g.id)] = groups;
  }
  return out;
}
