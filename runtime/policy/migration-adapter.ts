/**
 * Guest code of the hot migration path: the `migration.faults` batch adapter decodes a
 * Float64Array of fault records (contracts/migration.ts) into objects, calls the plugin's
 * restoreLocation and migrationWindow on each, and writes DECISION_STRIDE numbers per
 * fault. One boundary crossing per batch, not per fault (reference/sandbox.md).
 *
 * Input layout: [nowNs, record 0, record 1, ...]. A hook the plugin does not export
 * leaves NaN in its slots; the host fills those with the kernel's rule. A hook that
 * returns a non-number (or NaN) fails the batch as invalid-output.
 *
 * A plugin may also export the batch forms `restoreLocationBatch(batch, ctx)` and
 * `migrationWindowBatch(batch, ctx)`, which read the records straight from the typed array
 * and write `batch.decisions` (no object per fault: measured ~10x cheaper in QuickJS).
 * They take precedence over the per-fault forms; a slot they leave unwritten stays NaN,
 * which the host reports as invalid-output (it knows which hooks the plugin exports).
 */
import { DECISION_STRIDE, FAULT_FIELDS, FAULT_STRIDE } from "./contracts/migration.ts";

export const MIGRATION_FAULTS_ADAPTER = "migration.faults";

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
  globalThis.__svmrt_adapt(${JSON.stringify(MIGRATION_FAULTS_ADAPTER)}, function (ns, b, n, ctx) {
    let rl = fn(ns, "restoreLocation"), mw = fn(ns, "migrationWindow");
    const rlb = fn(ns, "restoreLocationBatch"), mwb = fn(ns, "migrationWindowBatch");
    ctx.nowNs = b[0];
    const out = new F64(n * ${DECISION_STRIDE}).fill(NaN);
    if (rlb !== null || mwb !== null) {
      const batch = { faults: b.subarray(1), n: n, stride: ${FAULT_STRIDE}, F: FIELDS, decisions: out };
      if (rlb !== null) {
        rlb(batch, ctx);
        rl = null;
      }
      if (mwb !== null) {
        mwb(batch, ctx);
        mw = null;
      }
      if (rl === null && mw === null) return out;
    }
    for (let i = 0; i < n; i++) {
      const o = 1 + i * ${FAULT_STRIDE};
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
})();
`;
