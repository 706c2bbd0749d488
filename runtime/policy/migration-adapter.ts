/**
 * Guest code of the hot migration path. One boundary crossing per batch, not per fault
 * (reference/sandbox.md).
 *
 * `migration.faults`: input [record 0, record 1, ..., nowNs, hookMask, perFault, e,
 *   eventsNowNs, event 0, ... event e-1] (FAULT_STRIDE numbers per fault, FAULT_TRAILER
 *   numbers, OBSERVE_STRIDE per event; the records come first so the plugin's `faults` is
 *   the input array itself, no second view). The e events that ride along go to `observe`
 *   first (one crossing instead of two per simulated fault); a failing observe sets the
 *   answer's extra slot and leaves its text in takeWire(), and the decisions go on. Writes
 *   DECISION_STRIDE numbers per fault: location, window start, window last, then the extra
 *   slot (FAULT_ANSWER_EXTRA). hookMask says which hooks to run
 *   (HOOK_RESTORE_LOCATION | HOOK_MIGRATION_WINDOW), so evaluating one hook never runs the
 *   other. The batch forms `restoreLocationBatch` / `migrationWindowBatch` read the records
 *   straight from the typed array (no object per fault: ~10x cheaper in QuickJS); they are
 *   used unless `perFault` is 1 and the per-fault form exists (single evaluations, tests).
 *   A slot no hook wrote stays NaN: the host then applies the kernel's rule when the plugin
 *   lacks the hook, or rejects the slot when its batch form left it empty.
 *
 * `migration.prefetch`: input [nowNs, n, records (n x FAULT_STRIDE)..., decisions
 *   (n x DECISION_STRIDE)...]. Calls `prefetch(batch, ctx)` with the same FaultBatch shape
 *   (decisions filled) and answers its result as data.
 *
 * `migration.observe`: input [event 0, event 1, ..., nowNs] (OBSERVE_STRIDE numbers per event:
 *   the kind's index in OBSERVED_KINDS, then the other ObservedEvent fields). Calls
 *   `observeBatch({ events, n, stride, E, K }, ctx)` with the numbers in place when the
 *   plugin exports it, else `observe({ events }, ctx)` with one plain object per event (an
 *   object costs about 1 us in QuickJS here, as much as a dozen typed-array reads). The
 *   answer is ignored (the adapter answers an empty Float64Array), but a promise is refused
 *   (nothing would run its continuation before the next decision). Events riding with a
 *   fault batch go the same way.
 */
import { BATCH_TRAILER } from "../sandbox/prelude.ts";
import { DECISION_STRIDE, FAULT_FIELDS, FAULT_STRIDE, OBSERVE_FIELDS, OBSERVE_STRIDE, OBSERVED_KINDS } from "./contracts/migration.ts";

export const MIGRATION_FAULTS_ADAPTER = "migration.faults";
export const MIGRATION_PREFETCH_ADAPTER = "migration.prefetch";
export const MIGRATION_OBSERVE_ADAPTER = "migration.observe";
/** Numbers after the events of a `migration.observe` batch: the delivery time (ctx.nowNs). */
export const OBSERVE_TRAILER = 1;
/**
 * Numbers after the records of a `migration.faults` batch: nowNs, hook mask, per-fault flag,
 * then the observe events riding with the batch: their count and delivery time. The events
 * (OBSERVE_STRIDE numbers each) follow the trailer.
 */
export const FAULT_TRAILER = 5;
/**
 * Numbers of a `migration.faults` answer after the decisions: 1 when observe failed on the
 * events that rode along (the failure's text then waits in the guest's takeWire()).
 */
export const FAULT_ANSWER_EXTRA = 1;
/**
 * Batches of up to this many faults reuse a cached answer array in the guest instead of
 * allocating one per call (small batches are the common case in the simulator, and a
 * QuickJS allocation costs about as much as a decision).
 */
export const CACHED_ANSWER_FAULTS_MAX = 32;

export const HOOK_RESTORE_LOCATION = 1;
export const HOOK_MIGRATION_WINDOW = 2;


/** Numbers of a `migration.faults` input of n faults and e riding events. */
export function faultsInputLength(n: number, e = 0): number {
  return n * FAULT_STRIDE + FAULT_TRAILER + e * OBSERVE_STRIDE;
}

/**
 * Lay out a `migration.faults` input: n records (from record `first` of `records`), the
 * trailer, then e riding events (delivered at eventsNowNs). Copies element by element: the
 * common input is one record and one event, where a typed-array view per copy would cost more.
 */
export function faultsInput(
  into: Float64Array,
  records: Float64Array,
  first: number,
  n: number,
  nowNs: number,
  hookMask: number,
  perFault: boolean,
  events?: Float64Array,
  e = 0,
  eventsNowNs = 0,
): Float64Array {
  const len = faultsInputLength(n, e);
  const input = into.length === len ? into : into.subarray(0, len);
  const t = n * FAULT_STRIDE;
  for (let k = 0, from = first * FAULT_STRIDE; k < t; k++) input[k] = records[from + k]!;
  input[t] = nowNs;
  input[t + 1] = hookMask;
  input[t + 2] = perFault ? 1 : 0;
  input[t + 3] = e;
  input[t + 4] = eventsNowNs;
  if (events !== undefined) for (let k = 0, to = t + FAULT_TRAILER; k < e * OBSERVE_STRIDE; k++) input[to + k] = events[k]!;
  return input;
}

const objectLiteral = FAULT_FIELDS.map((k, i) => `${k}: b[o + ${i}]`).join(", ");

export const MIGRATION_ADAPTER_SOURCE = `
(function () {
  "use strict";
  const getDesc = Object.getOwnPropertyDescriptor, F64 = Float64Array, apply = Reflect.apply;
  // Taken before any plugin code runs: a plugin that replaces them changes nothing here.
  const f64Fill = F64.prototype.fill, f64Sub = F64.prototype.subarray;
  const FILL_ARGS = [NaN], SUB_ARGS = [0, 0];
  const fn = function (ns, name) {
    const d = getDesc(ns, name);
    return d !== undefined && typeof d.value === "function" ? d.value : null;
  };
  const kind = function (v) { return v === null ? "null" : Array.isArray(v) ? "an array" : typeof v; };
  const num = function (o, k) {
    const d = getDesc(o, k);
    return d !== undefined && "value" in d && typeof d.value === "number" ? d.value : undefined;
  };
  const FIELDS = Object.freeze(${JSON.stringify(Object.fromEntries(FAULT_FIELDS.map((k, i) => [k, i])))});

  const KINDS = Object.freeze(${JSON.stringify(OBSERVED_KINDS)}), RealPromise = Promise;
  const E = Object.freeze(${JSON.stringify(Object.fromEntries(OBSERVE_FIELDS.map((k, i) => [k, i])))});
  const K = Object.freeze(${JSON.stringify(Object.fromEntries(OBSERVED_KINDS.map((k, i) => [k, i])))});
  // The plugin's observeBatch and observe, looked up once per exports namespace.
  let observeOf = null, hObb = null, hOb = null;
  const observeHooks = function (ns) {
    if (observeOf !== ns) { observeOf = ns; hObb = fn(ns, "observeBatch"); hOb = fn(ns, "observe"); }
    return hObb !== null || hOb !== null;
  };
  // The event batch handed to observeBatch: one object, every field rewritten per call (a
  // QuickJS allocation costs several field writes). Valid during the call only, like the
  // arrays in it (the channel's bytes, rewritten by the next call).
  // A plugin that froze it or made a field read-only gets a fresh object from then on (the
  // write throws); one that made a field an accessor keeps it, and misleads only itself.
  let eventBatch = {};
  const eventBatchOf = function (events, n) {
    try {
      eventBatch.events = events; eventBatch.n = n; eventBatch.stride = ${OBSERVE_STRIDE}; eventBatch.E = E; eventBatch.K = K;
    } catch (e) { eventBatch = { events: events, n: n, stride: ${OBSERVE_STRIDE}, E: E, K: K }; }
    return eventBatch;
  };
  // observeBatch() or observe() on e events at input[at...]; an error wire string, or null.
  const observeEvents = function (input, at, e, ctx) {
    let r;
    if (hObb !== null) {
      let events = input;
      if (at !== 0) { SUB_ARGS[0] = at; SUB_ARGS[1] = at + e * ${OBSERVE_STRIDE}; events = apply(f64Sub, input, SUB_ARGS); }
      r = hObb(eventBatchOf(events, e), ctx);
    } else {
      const events = [];
      for (let i = 0, b = at; i < e; i++, b += ${OBSERVE_STRIDE}) {
        events[i] = { kind: KINDS[input[b] | 0], ${OBSERVE_FIELDS.slice(1)
          .map((k, i) => `${k}: input[b + ${i + 1}]`)
          .join(", ")} };
      }
      r = hOb({ events: events }, ctx);
    }
    if (r !== null && typeof r === "object" && r instanceof RealPromise) {
      return "Einvalid-output\\nobserve returned a promise: in the simulator it must finish synchronously";
    }
    return null;
  };

  // The plugin's hooks, looked up once per exports namespace (it never changes). both: the
  // plugin has both batch forms, so the hot call (both hooks, batch forms) takes the short
  // path in decide().
  let hooksOf = null, hRl = null, hMw = null, hRlb = null, hMwb = null, observes = false, both = false;
  const hooksResolve = function (ns) {
    hooksOf = ns;
    hRl = fn(ns, "restoreLocation"); hMw = fn(ns, "migrationWindow");
    hRlb = fn(ns, "restoreLocationBatch"); hMwb = fn(ns, "migrationWindowBatch");
    observes = observeHooks(ns);
    both = hRlb !== null && hMwb !== null;
  };
  // The fault batch handed to the batch forms: one object, n and the arrays rewritten per
  // call (a QuickJS allocation costs several field writes). A plugin that froze it or made a
  // field read-only gets a fresh one from then on (the write throws); one that changed
  // stride or F misleads only itself (the host validates every decision).
  let faultBatch = { faults: null, n: 0, stride: ${FAULT_STRIDE}, F: FIELDS, decisions: null };
  const faultBatchOf = function (faults, n, decisions) {
    try { faultBatch.faults = faults; faultBatch.n = n; faultBatch.decisions = decisions; }
    catch (e) { faultBatch = { faults: faults, n: n, stride: ${FAULT_STRIDE}, F: FIELDS, decisions: decisions }; }
    return faultBatch;
  };
  // One migration.faults batch: n records in input, decisions written into out, whose
  // decision slots are NaN on entry (a slot no hook writes stays NaN). Answers the answer's
  // length (decisions, the extra slot, the trailer) or a wire string.
  const decide = function (ns, input, n, ctx, tools, out) {
    if (hooksOf !== ns) hooksResolve(ns);
    const t = n * ${FAULT_STRIDE};
    // Events first: the plugin sees them before deciding. A failing observe is reported in
    // the answer's extra slot; the decisions go on.
    let observeFailed = 0;
    if (input[t + 3] > 0 && observes) {
      ctx.nowNs = input[t + 4];
      let wire;
      try { wire = observeEvents(input, t + ${FAULT_TRAILER}, input[t + 3] | 0, ctx); } catch (err) { wire = tools.thrown(err); }
      if (wire !== null) { tools.stash(wire); observeFailed = 1; }
    }
    ctx.nowNs = input[t];
    const mask = input[t + 1];
    if (both && mask === ${HOOK_RESTORE_LOCATION | HOOK_MIGRATION_WINDOW} && input[t + 2] === 0) {
      // The hot call: both hooks, batch forms (each handed the batch afresh: the first may
      // have changed it).
      hRlb(faultBatchOf(input, n, out), ctx);
      hMwb(faultBatchOf(input, n, out), ctx);
      out[n * ${DECISION_STRIDE}] = observeFailed;
      return n * ${DECISION_STRIDE} + ${FAULT_ANSWER_EXTRA + BATCH_TRAILER};
    }
    const perFault = input[t + 2] === 1;
    let rl = mask & ${HOOK_RESTORE_LOCATION} ? hRl : null;
    let mw = mask & ${HOOK_MIGRATION_WINDOW} ? hMw : null;
    const rlb = mask & ${HOOK_RESTORE_LOCATION} && !(perFault && rl !== null) ? hRlb : null;
    const mwb = mask & ${HOOK_MIGRATION_WINDOW} && !(perFault && mw !== null) ? hMwb : null;
    const b = input;
    if (rlb !== null) { rlb(faultBatchOf(b, n, out), ctx); rl = null; }
    if (mwb !== null) { mwb(faultBatchOf(b, n, out), ctx); mw = null; }
    for (let i = 0; (rl !== null || mw !== null) && i < n; i++) {
      const o = i * ${FAULT_STRIDE};
      const base = i * ${DECISION_STRIDE};
      if (rl !== null) {
        const v = rl({ ${objectLiteral} }, ctx);
        if (typeof v !== "number" || v !== v) {
          return "Einvalid-output\\nfault " + i + ": restoreLocation returned " + (typeof v === "number" ? "NaN" : kind(v)) + ", expected a gpu_id, 0 or -1";
        }
        out[base] = v;
      }
      if (mw !== null) {
        const w = mw({ ${objectLiteral} }, ctx);
        if (w === null || typeof w !== "object") return "Einvalid-output\\nfault " + i + ": migrationWindow returned " + kind(w) + ", expected { start, last }";
        const s = num(w, "start"), l = num(w, "last");
        if (s === undefined || l === undefined || s !== s || l !== l) return "Einvalid-output\\nfault " + i + ": migrationWindow must return numbers { start, last }";
        out[base + 1] = s; out[base + 2] = l;
      }
    }
    out[n * ${DECISION_STRIDE}] = observeFailed;
    return n * ${DECISION_STRIDE} + ${FAULT_ANSWER_EXTRA + BATCH_TRAILER};
  };
  // Answer arrays by batch size, reused: the host copies the answer out before the next call.
  const answers = [];
  const faultsCopying = function (ns, input, n, ctx, tools) {
    let out;
    if (n <= ${CACHED_ANSWER_FAULTS_MAX}) {
      out = answers[n];
      if (out === undefined) { out = new F64(n * ${DECISION_STRIDE} + ${FAULT_ANSWER_EXTRA + BATCH_TRAILER}); answers[n] = out; }
      for (let k = 0; k < n * ${DECISION_STRIDE}; k++) out[k] = NaN;
    } else { out = new F64(n * ${DECISION_STRIDE} + ${FAULT_ANSWER_EXTRA + BATCH_TRAILER}); apply(f64Fill, out, FILL_ARGS); }
    const k = decide(ns, input, n, ctx, tools, out);
    return typeof k === "number" ? out : k;
  };
  // The channel form: decisions go straight into the channel's answer view (NaN-filled by
  // the host), through a view of the answer's exact length (cached by batch size).
  const faultsChannel = function (payload, outAll) {
    const views = [];
    return function (ns, n, ctx, tools) {
      let out = views[n];
      if (out === undefined) {
        SUB_ARGS[0] = 0; SUB_ARGS[1] = n * ${DECISION_STRIDE} + ${FAULT_ANSWER_EXTRA + BATCH_TRAILER};
        out = apply(f64Sub, outAll, SUB_ARGS);
        if (n <= ${CACHED_ANSWER_FAULTS_MAX}) views[n] = out;
      }
      return decide(ns, payload, n, ctx, tools, out);
    };
  };
  globalThis.__svmrt_adapt(${JSON.stringify(MIGRATION_FAULTS_ADAPTER)}, faultsCopying, faultsChannel);

  globalThis.__svmrt_adapt(${JSON.stringify(MIGRATION_OBSERVE_ADAPTER)}, function (ns, input, n, ctx) {
    if (!observeHooks(ns)) return new F64(${BATCH_TRAILER});
    ctx.nowNs = input[n * ${OBSERVE_STRIDE}];
    const wire = observeEvents(input, 0, n, ctx);
    return wire === null ? new F64(${BATCH_TRAILER}) : wire;
  });

  globalThis.__svmrt_adapt(${JSON.stringify(MIGRATION_PREFETCH_ADAPTER)}, function (ns, input, n, ctx, tools) {
    ctx.nowNs = input[0];
    const p = fn(ns, "prefetch");
    if (p === null) return "Rnull";
    const faults = apply(f64Sub, input, [2, 2 + n * ${FAULT_STRIDE}]);
    const decisions = apply(f64Sub, input, [2 + n * ${FAULT_STRIDE}, 2 + n * ${FAULT_STRIDE + DECISION_STRIDE}]);
    return tools.serialize(p({ faults: faults, n: n, stride: ${FAULT_STRIDE}, F: FIELDS, decisions: decisions }, ctx));
  });
})();
`;
