// @ts-check
// linger: lazy, but the library stays initialised idle_grace_ms after the last session
// closes, so bursts of requests share one init. Two exceptions, checked in this order:
//
//   contention   another user held the device (or init failed as busy) more than
//                contention_max of the time: lazy, to free the device as soon as we are done
//                (sharing first: it outranks our own latency);
//   busy         requestsPerS x initLatencyMs / 1000 > busy_ratio_max, i.e. if every
//                request paid an init, inits would take that share of the time: persistent.
//
// Stateless.

/** Tunables: name, default, bounds, meaning. */
export const params = {
  idle_grace_ms: {
    type: "integer",
    default: 30000,
    min: 1,
    max: 3600000,
    description: "how long the library stays initialised after the last session closes, ms",
  },
  contention_max: {
    type: "number",
    default: 0.2,
    min: 0,
    max: 1,
    description: "share of time (0..1) another user may hold the device before we switch to lazy",
  },
  busy_ratio_max: {
    type: "number",
    default: 0.1,
    min: 0,
    max: 1000,
    description: "requests per second x init seconds above which inits would dominate: switch to persistent",
  },
};

/** @type {import("../types").SessionHooks["mode"]} */
export function mode(input, ctx) {
  const p = ctx.params;
  if (input.contention > /** @type {number} */ (p.contention_max)) return { mode: "lazy" };
  if ((input.requestsPerS * input.initLatencyMs) / 1000 > /** @type {number} */ (p.busy_ratio_max)) return { mode: "persistent" };
  return { mode: "linger", idleGraceMs: /** @type {number} */ (p.idle_grace_ms) };
}
