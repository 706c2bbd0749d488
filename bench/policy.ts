/**
 * Policy benchmark: prints ONE JSON object on one line. Every figure is a median over
 * interleaved rounds (round r visits the configurations in order, round r+1 in reverse), in
 * thread CPU time (bench/cpu-time.ts) next to wall time, ns.
 *
 * Per tree (this one, and with --baseline DIR an older checkout measured in the same run,
 * e.g. a `git worktree` of the last commit with node_modules linked), kernel-default loaded
 * as the simulator loads it (deterministic budgets, only failing batches logged):
 * - batched: ns per decision (restoreLocation + migrationWindow) in batches of --batch faults
 *   through the MigrationDecider the simulator uses;
 * - one_fault_call: ns per decideFaults() call of one fault (the simulator's call when a wave
 *   blocks on its fault), records rotating over 64 different faults;
 * - breakdown of the one-fault call:
 *   boundary: QTS_Call of an empty guest function (+ freeing its answer): the Wasm crossing;
 *   guest_run: the channel's run() of a one-fault input written before (prelude, adapter and
 *     plugin, with the crossing);
 *   plugin_rule: the plugin's own rule in the guest: `kernel.restoreLocationBatch` +
 *     `kernel.migrationWindowBatch` on a one-fault batch (the same module as the plugin),
 *     called in a guest loop, less the same loop without the calls;
 *   prelude_and_adapter = guest_run - boundary - plugin_rule;
 *   host = one_fault_call - guest_run (decider, sandbox and channel code in Bun);
 *   beyond_rule = one_fault_call - plugin_rule: the target is <= 1000 ns of CPU.
 * Natively (Bun, this tree's contracts): the same rules batched and per call, for scale.
 * Also: cold load time of a policy and memory per loaded policy (this tree).
 *
 * Usage: bun bench/policy.ts [--baseline DIR] [--batch N] [--rounds N]
 */
import { spawnSync } from "node:child_process";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { DECISION_STRIDE, FAULT_FIELDS, FAULT_STRIDE, type PolicyContext, emptyFault, nativeKernelDefault, writeFault } from "../runtime/policy/contracts/migration.ts";
import { Samples, THREAD_CPU_SOURCE, interleave, median, timed } from "./cpu-time.ts";

const { values } = parseArgs({ options: { baseline: { type: "string" }, batch: { type: "string" }, rounds: { type: "string" } } });
const BATCH = Number(values.batch ?? 1024);
const ROUNDS = Number(values.rounds ?? 9);
/**
 * Work per round and configuration: about 100 ms each, since the thread CPU clock advances
 * in scheduler ticks (4 ms here): a 100 ms sample is within a few % of the truth.
 */
const BATCHED_DECISIONS_PER_ROUND = 131_072;
const ONE_FAULT_CALLS_PER_ROUND = 32_768;
const GUEST_RUNS_PER_ROUND = 32_768;
const BOUNDARY_CALLS_PER_ROUND = 2_097_152;
const RULE_LOOPS_PER_ROUND = 65_536;
const EMPTY_LOOPS_PER_ROUND = 524_288;
/** The native rules run this many times the sandboxed work per round (they are ~50x faster). */
const NATIVE_REPEAT = 32;
/** Distinct fault records the one-fault calls rotate over. */
const ONE_FAULT_RECORDS = 64;
const POLICIES_LOADED = 10;
const POLICY = "policies/migration/kernel-default.yaml";
const TARGET_BATCHED_NS = 600;
const TARGET_BEYOND_RULE_NS = 1000;

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

const batchFaults = faultsFor(BATCH);
const batchOut = new Float64Array(BATCH * DECISION_STRIDE);
const oneFaults = faultsFor(ONE_FAULT_RECORDS);
const oneViews = Array.from({ length: ONE_FAULT_RECORDS }, (_, j) => oneFaults.subarray(j * FAULT_STRIDE, (j + 1) * FAULT_STRIDE));
const oneOut = new Float64Array(DECISION_STRIDE);

/** What the bench reaches below the public API of a loaded sandbox (quickjs-emscripten-core 0.32 fields). */
interface Internals {
  context: {
    ffi: {
      QTS_Call(ctx: number, fn: number, thisVal: number, argc: number, argv: number): number;
      QTS_FreeValuePointer(ctx: number, value: number): void;
    };
    ctx: { value: number };
    undefined: { value: number };
    evalCode(code: string, file?: string): { value?: { value: number; dispose(): void }; error?: { dispose(): void } };
    newNumber(n: number): { dispose(): void };
    callFunction(fn: unknown, thisVal: unknown, ...args: unknown[]): { value?: { dispose(): void }; error?: { dispose(): void } };
    undefinedHandle?: unknown;
  };
  channel?: { run(): unknown };
}

interface Decider {
  decideFaults(faults: Float64Array, n: number, ctx: PolicyContext, out: Float64Array): void;
  fallbacks: number;
}

interface Tree {
  label: string;
  root: string;
  commit: string;
  decider: Decider;
  dispose(): void;
  internals(): Internals;
  /** Lift the running call's budget: raw guest runs below run outside a host call. */
  unbudget(): void;
  samples: Record<"batched" | "one" | "run" | "boundary" | "rule" | "loop", Samples>;
  loadMs: number[];
}

function commitOf(root: string): string {
  const rev = spawnSync("git", ["-C", root, "rev-parse", "--short", "HEAD"], { encoding: "utf8" }).stdout.trim();
  const dirty = spawnSync("git", ["-C", root, "status", "--porcelain", "--untracked-files=no"], { encoding: "utf8" }).stdout.trim() !== "";
  return `${rev}${dirty ? "+changes" : ""}`;
}

async function openTree(label: string, root: string): Promise<Tree> {
  const { Policy } = (await import(join(root, "runtime/policy/policy.ts"))) as typeof import("../runtime/policy/policy.ts");
  const policy = await Policy.load(join(root, POLICY), { seed: 1, sandbox: { deterministic: true }, logClock: () => 0, logBatches: "failures" });
  const decider = policy.migrationDecider() as unknown as Decider;
  const samples = { batched: new Samples(), one: new Samples(), run: new Samples(), boundary: new Samples(), rule: new Samples(), loop: new Samples() };
  return {
    label,
    root,
    commit: commitOf(root),
    decider,
    dispose: () => policy.dispose(),
    internals: () => policy.sandbox.live as unknown as Internals,
    unbudget: () => {
      const clock = (policy.sandbox as unknown as { clock: { deadlineMs: number; fuelLeft: number; interrupted: boolean } }).clock;
      clock.deadlineMs = Number.POSITIVE_INFINITY;
      clock.fuelLeft = Number.POSITIVE_INFINITY;
    },
    samples,
    loadMs: [],
  };
}

/**
 * Guest code of the plugin-rule measure: `rule(k)` runs the kernel's two batch rules k times
 * on a one-fault batch (records rotating as in the one-fault calls), `loop(k)` the same loop
 * without them.
 */
function ruleSource(): string {
  const F = Object.fromEntries(FAULT_FIELDS.map((k, i) => [k, i]));
  return `(function () {
  "use strict";
  const all = new Float64Array(${JSON.stringify(Array.from(oneFaults))});
  const views = [];
  for (let j = 0; j < ${ONE_FAULT_RECORDS}; j++) views[j] = all.subarray(j * ${FAULT_STRIDE}, (j + 1) * ${FAULT_STRIDE});
  const b = { faults: views[0], n: 1, stride: ${FAULT_STRIDE}, F: Object.freeze(${JSON.stringify(F)}), decisions: new Float64Array(${DECISION_STRIDE + 2}) };
  const ctx = { gpus: ${JSON.stringify(ctx.gpus)}, xnack: true, nowNs: 1e9, params: {} };
  const k = kernel;
  return {
    rule: function (n) { for (let i = 0; i < n; i++) { b.faults = views[i & ${ONE_FAULT_RECORDS - 1}]; k.restoreLocationBatch(b, ctx); k.migrationWindowBatch(b, ctx); } return 0; },
    loop: function (n) { for (let i = 0; i < n; i++) { b.faults = views[i & ${ONE_FAULT_RECORDS - 1}]; } return 0; },
  };
})()`;
}

const trees: Tree[] = [await openTree("after", resolve(import.meta.dir, ".."))];
if (values.baseline) trees.push(await openTree("before", resolve(values.baseline)));
const native = nativeKernelDefault();
const nativeSamples = { batched: new Samples(), one: new Samples() };

/** Guest functions of the rule measure, per tree (set up once the tree's instance is live). */
const ruleFns = new Map<Tree, { rule: { dispose(): void }; loop: { dispose(): void }; empty: { value: number; dispose(): void } }>();
function ruleFnsOf(t: Tree) {
  let got = ruleFns.get(t);
  if (got) return got;
  const c = t.internals().context;
  const obj = c.evalCode(ruleSource(), "bench:rule");
  if (obj.error || !obj.value) throw new Error(`${t.label}: the rule measure did not evaluate`);
  const empty = c.evalCode("(function () { return 0; })", "bench:empty");
  if (empty.error || !empty.value) throw new Error(`${t.label}: the empty function did not evaluate`);
  const getProp = (c as unknown as { getProp(h: unknown, k: string): { dispose(): void } }).getProp.bind(c);
  got = { rule: getProp(obj.value, "rule"), loop: getProp(obj.value, "loop"), empty: empty.value };
  obj.value.dispose();
  ruleFns.set(t, got);
  return got;
}

function guestLoop(t: Tree, fn: { dispose(): void }, n: number): void {
  const c = t.internals().context;
  const hn = c.newNumber(n);
  t.unbudget();
  const r = c.callFunction(fn, c.undefined, hn);
  hn.dispose();
  if (r.error) throw new Error(`${t.label}: the guest loop failed`);
  r.value!.dispose();
}

// Warm up every path (JITs, caches, the guest's tables).
for (const t of trees) {
  for (let i = 0; i < 20; i++) t.decider.decideFaults(batchFaults, BATCH, ctx, batchOut);
  for (let i = 0; i < 2000; i++) t.decider.decideFaults(oneViews[i % ONE_FAULT_RECORDS]!, 1, ctx, oneOut);
  ruleFnsOf(t);
}

const configs: (() => void)[] = [
  () => nativeSamples.batched.add(timed(() => {
    for (let d = 0; d < BATCHED_DECISIONS_PER_ROUND * NATIVE_REPEAT; d += BATCH) native.decideFaults(batchFaults, BATCH, ctx, batchOut);
  }), BATCHED_DECISIONS_PER_ROUND * NATIVE_REPEAT),
  () => nativeSamples.one.add(timed(() => {
    for (let i = 0; i < ONE_FAULT_CALLS_PER_ROUND * NATIVE_REPEAT; i++) native.decideFaults(oneViews[i & (ONE_FAULT_RECORDS - 1)]!, 1, ctx, oneOut);
  }), ONE_FAULT_CALLS_PER_ROUND * NATIVE_REPEAT),
];
for (const t of trees) {
  configs.push(
    () => t.samples.batched.add(timed(() => {
      for (let d = 0; d < BATCHED_DECISIONS_PER_ROUND; d += BATCH) t.decider.decideFaults(batchFaults, BATCH, ctx, batchOut);
    }), BATCHED_DECISIONS_PER_ROUND),
    () => t.samples.one.add(timed(() => {
      for (let i = 0; i < ONE_FAULT_CALLS_PER_ROUND; i++) t.decider.decideFaults(oneViews[i & (ONE_FAULT_RECORDS - 1)]!, 1, ctx, oneOut);
    }), ONE_FAULT_CALLS_PER_ROUND),
    () => {
      // The channel's input now holds the last one-fault call's input: run it again and again.
      t.decider.decideFaults(oneViews[0]!, 1, ctx, oneOut);
      const ch = t.internals().channel;
      if (!ch) throw new Error(`${t.label}: no shared-memory channel`);
      t.unbudget();
      t.samples.run.add(timed(() => {
        for (let i = 0; i < GUEST_RUNS_PER_ROUND; i++) ch.run();
      }), GUEST_RUNS_PER_ROUND);
    },
    () => {
      const c = t.internals().context;
      const { ffi } = c;
      const ctxPtr = c.ctx.value;
      const fn = ruleFnsOf(t).empty.value;
      const undef = c.undefined.value;
      t.samples.boundary.add(timed(() => {
        for (let i = 0; i < BOUNDARY_CALLS_PER_ROUND; i++) ffi.QTS_FreeValuePointer(ctxPtr, ffi.QTS_Call(ctxPtr, fn, undef, 0, 0));
      }), BOUNDARY_CALLS_PER_ROUND);
    },
    () => t.samples.rule.add(timed(() => guestLoop(t, ruleFnsOf(t).rule, RULE_LOOPS_PER_ROUND)), RULE_LOOPS_PER_ROUND),
    () => t.samples.loop.add(timed(() => guestLoop(t, ruleFnsOf(t).loop, EMPTY_LOOPS_PER_ROUND)), EMPTY_LOOPS_PER_ROUND),
  );
}
await interleave(ROUNDS, configs);
for (const t of trees) {
  if (t.decider.fallbacks !== 0) throw new Error(`${t.label}: the sandboxed policy fell back ${t.decider.fallbacks} times: the benchmark would time the fallback`);
}

// Cold load, interleaved between the trees.
await interleave(POLICIES_LOADED, trees.map((t) => async () => {
  const { Policy } = (await import(join(t.root, "runtime/policy/policy.ts"))) as typeof import("../runtime/policy/policy.ts");
  const t0 = performance.now();
  const p = await Policy.load(join(t.root, POLICY));
  t.loadMs.push(performance.now() - t0);
  p.dispose();
}));

// Memory per loaded policy (this tree).
const { Policy } = await import("../runtime/policy/policy.ts");
Bun.gc(true);
const rss0 = process.memoryUsage().rss;
const loaded = [];
for (let i = 0; i < POLICIES_LOADED; i++) loaded.push(await Policy.load(POLICY));
Bun.gc(true);
const rssPerPolicy = (process.memoryUsage().rss - rss0) / POLICIES_LOADED;
const wasmBytes = (loaded[0]!.sandbox.live as unknown as { raw: { module: { HEAPU8: Uint8Array } } }).raw.module.HEAPU8.byteLength;
const quickjsBytes = loaded[0]!.sandbox.memoryUsedBytes();
for (const p of loaded) p.dispose();

const r1 = (x: number) => +x.toFixed(1);
const nativeBatched = nativeSamples.batched.summary(2);
const out: Record<string, unknown> = {
  bench: "policy",
  policy: "kernel-default",
  hook: "restoreLocation+migrationWindow",
  cpu_time: THREAD_CPU_SOURCE,
  batch: BATCH,
  rounds: ROUNDS,
  native: { batched: nativeBatched, one_fault_call: nativeSamples.one.summary() },
  targets: { batched_cpu_ns_per_decision: TARGET_BATCHED_NS, one_fault_beyond_rule_cpu_ns: TARGET_BEYOND_RULE_NS },
};
for (const t of trees) {
  const s = t.samples;
  const cpu = (x: Samples) => median(x.cpu);
  const rule = cpu(s.rule) - cpu(s.loop);
  const run = cpu(s.run);
  const one = cpu(s.one);
  const batched = s.batched.summary();
  out[t.label] = {
    root: t.root,
    commit: t.commit,
    batched,
    one_fault_call: s.one.summary(),
    breakdown_cpu_ns: {
      boundary: r1(cpu(s.boundary)),
      guest_run: r1(run),
      prelude_and_adapter: r1(run - cpu(s.boundary) - rule),
      plugin_rule: r1(rule),
      host: r1(one - run),
    },
    one_fault_beyond_rule_cpu_ns: r1(one - rule),
    sandboxed_over_native_batched: +(batched.cpu_ns / nativeBatched.cpu_ns).toFixed(1),
    meets_batched_target: batched.cpu_ns <= TARGET_BATCHED_NS,
    meets_one_fault_target: one - rule <= TARGET_BEYOND_RULE_NS,
    cold_load_ms_median: +median(t.loadMs).toFixed(2),
  };
}
out.memory_per_policy = { rss_bytes: Math.round(rssPerPolicy), wasm_linear_bytes: wasmBytes, quickjs_heap_bytes: quickjsBytes };
for (const t of trees) {
  const fns = ruleFns.get(t);
  for (const h of fns ? [fns.rule, fns.loop, fns.empty] : []) h.dispose();
  t.dispose();
}
console.log(JSON.stringify(out));
