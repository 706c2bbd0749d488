/**
 * Policy benchmark (prints one JSON object):
 * - ns per restoreLocation + window decision of kernel-default, sandboxed and batched
 *   (through the same MigrationDecider the simulator uses) vs the same rules native in Bun,
 *   measured side by side in one run, median of REPS repetitions;
 * - cold load time of a policy (YAML, schema, new Wasm instance, plugin evaluation);
 * - memory per loaded policy (process RSS growth over POLICIES_LOADED policies, and the
 *   Wasm linear memory of one instance).
 *
 * Usage: bun bench/policy.ts [--batch N] [--reps N]
 */
import { parseArgs } from "node:util";
import { DECISION_STRIDE, FAULT_STRIDE, type PolicyContext, emptyFault, nativeKernelDefault, writeFault } from "../runtime/policy/contracts/migration.ts";
import { Policy } from "../runtime/policy/policy.ts";

const { values } = parseArgs({ options: { batch: { type: "string" }, reps: { type: "string" } } });
const BATCH = Number(values.batch ?? 1024);
const REPS = Number(values.reps ?? 15);
const DECISIONS_PER_REP = 65_536;
const POLICIES_LOADED = 20;
const POLICY = "policies/migration/kernel-default.yaml";

const ctx: PolicyContext = {
  gpus: Array.from({ length: 8 }, (_, i) => ({ id: 0x1000 + i, index: i, hiveId: 0x77, appApu: false, vramBytes: 192 * 2 ** 30 })),
  xnack: true,
  nowNs: 1e9,
};

function faultsFor(n: number): Float64Array {
  const buf = new Float64Array(n * FAULT_STRIDE);
  for (let i = 0; i < n; i++) {
    const f = emptyFault();
    const g = i % 8;
    f.gpuId = 0x1000 + g;
    f.gpuIndex = g;
    f.rangeStart = i * 512;
    f.rangeLast = f.rangeStart + 262143;
    f.addr = f.rangeStart + (i % 512);
    f.accessMask = i % 3 === 0 ? 0xff : 0;
    f.aipMask = i % 3 === 1 ? 0xff : 0;
    f.actualLoc = i % 5 === 0 ? 0x1001 : 0;
    f.preferredLoc = i % 7 === 0 ? 0x1002 : 0xffffffff;
    writeFault(buf, i, f);
  }
  return buf;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
};

function nsPerDecision(decide: (f: Float64Array, n: number, out: Float64Array) => void): number[] {
  const faults = faultsFor(BATCH);
  const out = new Float64Array(BATCH * DECISION_STRIDE);
  for (let i = 0; i < 20; i++) decide(faults, BATCH, out); // warm up the JITs
  const samples: number[] = [];
  for (let r = 0; r < REPS; r++) {
    const t0 = Bun.nanoseconds();
    for (let done = 0; done < DECISIONS_PER_REP; done += BATCH) decide(faults, BATCH, out);
    samples.push((Bun.nanoseconds() - t0) / DECISIONS_PER_REP);
  }
  return samples;
}

// Side by side, interleaved per repetition so machine noise hits both alike.
const native = nativeKernelDefault();
const policy = await Policy.load(POLICY, { sandbox: { deterministic: true } });
const sandboxed = policy.migrationDecider();
const nativeNs: number[] = [];
const sandboxNs: number[] = [];
for (let r = 0; r < 3; r++) {
  nativeNs.push(...nsPerDecision((f, n, o) => native.decideFaults(f, n, ctx, o)));
  sandboxNs.push(...nsPerDecision((f, n, o) => sandboxed.decideFaults(f, n, ctx, o)));
}
if (sandboxed.fallbacks !== 0) throw new Error(`the sandboxed policy fell back ${sandboxed.fallbacks} times: the benchmark would measure the fallback`);

// Cold load and memory per policy.
Bun.gc(true);
const rss0 = process.memoryUsage().rss;
const loadMs: number[] = [];
const loaded: Policy[] = [];
for (let i = 0; i < POLICIES_LOADED; i++) {
  const t0 = performance.now();
  loaded.push(await Policy.load(POLICY));
  loadMs.push(performance.now() - t0);
}
Bun.gc(true);
const rssPerPolicy = (process.memoryUsage().rss - rss0) / POLICIES_LOADED;
const inst = loaded[0]!.sandbox.live as unknown as { raw: { module: { HEAPU8: Uint8Array } } };
const wasmBytes = inst.raw.module.HEAPU8.byteLength;
const quickjsBytes = loaded[0]!.sandbox.memoryUsedBytes();
for (const p of loaded) p.dispose();
policy.dispose();

const nNative = median(nativeNs);
const nSandbox = median(sandboxNs);
console.log(
  JSON.stringify(
    {
      bench: "policy",
      policy: "kernel-default",
      hook: "restoreLocation+migrationWindow",
      batch: BATCH,
      repetitions: nativeNs.length,
      native: { ns_per_decision_median: +nNative.toFixed(1), decisions_per_s: Math.round(1e9 / nNative) },
      sandboxed_batched: { ns_per_decision_median: +nSandbox.toFixed(1), decisions_per_s: Math.round(1e9 / nSandbox) },
      sandboxed_over_native: +(nSandbox / nNative).toFixed(1),
      target_ns_per_decision: 600,
      meets_target: nSandbox <= 600,
      cold_load_ms_median: +median(loadMs).toFixed(2),
      memory_per_policy: { rss_bytes: Math.round(rssPerPolicy), wasm_linear_bytes: wasmBytes, quickjs_heap_bytes: quickjsBytes },
    },
    null,
    2,
  ),
);
