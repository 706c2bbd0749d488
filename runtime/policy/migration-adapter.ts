/**
 * Guest code of the hot migration path. One boundary crossing per batch, not per fault
 * (reference/sandbox.md).
 *
 * `migration.faults`: input [nowNs, hookMask, perFault, record 0, record 1, ...]
 *   (FAULT_HEADER numbers, then FAULT_STRIDE per fault). Writes DECISION_STRIDE numbers per
 *   fault: location, window start, window last. hookMask says which hooks to run
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
 */
import { BATCH_TRAILER } from "../sandbox/prelude.ts";
import { DECISION_STRIDE, FAULT_FIELDS, FAULT_STRIDE } from "./contracts/migration.ts";

export const MIGRATION_FAULTS_ADAPTER = "migration.faults";
export const MIGRATION_PREFETCH_ADAPTER = "migration.prefetch";
/** Numbers before the records of a `migration.faults` batch. */
export const FAULT_HEADER = 3;
export const HOOK_RESTORE_LOCATION = 1;
export const HOOK_MIGRATION_WINDOW = 2;

const objectLiteral = FAULT_FIELDS.map((k, i) => `${k}: b[o + ${i}]`).join(", ");

export const MIGRATION_ADAPTER_SOURCE = `
(function () {
  "use strict";
  const getDesc = Object.getOwnPropertyDescriptor, F64 = Float64Array;
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

  // The plugin's hooks, looked up once per exports namespace (it never changes).
  let hooksOf = null, hRl = null, hMw = null, hRlb = null, hMwb = null;
  globalThis.__svmrt_adapt(${JSON.stringify(MIGRATION_FAULTS_ADAPTER)}, function (ns, input, n, ctx) {
    if (hooksOf !== ns) {
      hooksOf = ns;
      hRl = fn(ns, "restoreLocation"); hMw = fn(ns, "migrationWindow");
      hRlb = fn(ns, "restoreLocationBatch"); hMwb = fn(ns, "migrationWindowBatch");
    }
    ctx.nowNs = input[0];
    const mask = input[1], perFault = input[2] === 1;
    let rl = mask & ${HOOK_RESTORE_LOCATION} ? hRl : null;
    let mw = mask & ${HOOK_MIGRATION_WINDOW} ? hMw : null;
    const rlb = mask & ${HOOK_RESTORE_LOCATION} && !(perFault && rl !== null) ? hRlb : null;
    const mwb = mask & ${HOOK_MIGRATION_WINDOW} && !(perFault && mw !== null) ? hMwb : null;
    const b = input.subarray(${FAULT_HEADER});
    const out = new F64(n * ${DECISION_STRIDE} + ${BATCH_TRAILER}).fill(NaN);
    if (rlb !== null || mwb !== null) {
      const batch = { faults: b, n: n, stride: ${FAULT_STRIDE}, F: FIELDS, decisions: out };
      if (rlb !== null) { rlb(batch, ctx); rl = null; }
      if (mwb !== null) { mwb(batch, ctx); mw = null; }
      if (rl === null && mw === null) return out;
    }
    for (let i = 0; i < n; i++) {
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
    return out;
  });

  globalThis.__svmrt_adapt(${JSON.stringify(MIGRATION_PREFETCH_ADAPTER)}, function (ns, input, n, ctx, tools) {
    ctx.nowNs = input[0];
    const p = fn(ns, "prefetch");
    if (p === null) return "Rnull";
    const faults = input.subarray(2, 2 + n * ${FAULT_STRIDE});
    const decisions = input.subarray(2 + n * ${FAULT_STRIDE}, 2 + n * ${FAULT_STRIDE + DECISION_STRIDE});
    return tools.serialize(p({ faults: faults, n: n, stride: ${FAULT_STRIDE}, F: FIELDS, decisions: decisions }, ctx));
  });
})();
`;
