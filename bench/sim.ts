/**
 * Simulator benchmark: prints ONE JSON object on one line. Every figure is the median over
 * interleaved rounds (round r visits the configurations in order, round r+1 in reverse), as
 * a rate per second of the main thread's CPU time (bench/cpu-time.ts) and per second of wall
 * time (the machine is shared: wall time runs 1-2.5x CPU time under load).
 *
 * - faults: GPU faults handled by the SVM model, batches of FAULT_BATCH, each fault on its own
 *   range (of a million) and migrating its window (lookup, decision, whole-range VRAM
 *   reservation, copy, map; no event text), ranges faulted in address order:
 *   native: the native kernel-default decider; native_random_order: ranges faulted in a
 *   shuffled order (cache-cold ranges, lookups through the index); sandboxed:
 *   policies/migration/kernel-default.yaml in the QuickJS sandbox (deterministic budgets, as
 *   `svmrt sim --policy` runs it; fallbacks must stay 0).
 * - engine: a whole `svmrt sim` run (oversub-150 on dev-2gpu), native and sandboxed: GPU
 *   faults (handled and dropped by the duplicate window: the fault stream the kernel sees;
 *   only handled ones reach the policy) per second.
 * - bytes_per_million_ranges: heap growth for 1,000,000 ranges (native runs).
 * With --baseline DIR (an older checkout, e.g. a `git worktree` of the last commit with
 * node_modules linked), its sandboxed configurations run interleaved with this tree's.
 *
 * Usage: bun bench/sim.ts [--baseline DIR] [--rounds N]
 */
import { heapStats } from "bun:jsc";
import { spawnSync } from "node:child_process";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { Samples, THREAD_CPU_SOURCE, interleave, median, timed } from "./cpu-time.ts";

const { values } = parseArgs({ options: { baseline: { type: "string" }, rounds: { type: "string" } } });
/** Rounds over every configuration (each configuration runs once per round). */
const ROUNDS = Number(values.rounds ?? 3);
/** Ranges created and faulted, pages per range, faults per batch. */
const RANGES = 1_000_000;
const RANGE_PAGES = 4;
const FAULT_BATCH = 256;
const BASE = 0x100000;
/** Targets of the simulator issues on a 2-core machine, handled faults per CPU second (medians). */
const TARGET_NATIVE = 2_000_000;
const TARGET_SANDBOXED = 1_000_000;
const ENGINE_PROFILE = "dev-2gpu";
const ENGINE_WORKLOAD = "oversub-150";
/** Ranges of the untimed warm-up run of each configuration (the JITs compile the hot paths). */
const WARMUP_RANGES = 100_000;

type PolicyContract = typeof import("../runtime/policy/contracts/migration.ts");
type MigrationDecider = import("../runtime/policy/contracts/migration.ts").MigrationDecider;

/** The modules of one checkout the bench runs. */
interface Tree {
  label: string;
  root: string;
  commit: string;
  svm: typeof import("../runtime/svm/model.ts");
  cost: typeof import("../runtime/sim/cost.ts");
  profile: typeof import("../runtime/sim/profile.ts");
  builtins: typeof import("../runtime/sim/builtins.ts");
  engine: typeof import("../runtime/sim/engine.ts");
  simPolicy: typeof import("../runtime/sim/policy.ts");
  contract: PolicyContract;
  prng: typeof import("../runtime/sim/prng.ts");
}

function commitOf(root: string): string {
  const rev = spawnSync("git", ["-C", root, "rev-parse", "--short", "HEAD"], { encoding: "utf8" }).stdout.trim();
  const dirty = spawnSync("git", ["-C", root, "status", "--porcelain", "--untracked-files=no"], { encoding: "utf8" }).stdout.trim() !== "";
  return `${rev}${dirty ? "+changes" : ""}`;
}

async function openTree(label: string, root: string): Promise<Tree> {
  const at = (p: string) => import(join(root, p));
  return {
    label,
    root,
    commit: commitOf(root),
    svm: await at("runtime/svm/model.ts"),
    cost: await at("runtime/sim/cost.ts"),
    profile: await at("runtime/sim/profile.ts"),
    builtins: await at("runtime/sim/builtins.ts"),
    engine: await at("runtime/sim/engine.ts"),
    simPolicy: await at("runtime/sim/policy.ts"),
    contract: await at("runtime/policy/contracts/migration.ts"),
    prng: await at("runtime/sim/prng.ts"),
  };
}

function heapBytes(): number {
  Bun.gc(true);
  return heapStats().heapSize;
}

/** Shuffled range order for the random-order run (Fisher-Yates, seeded). */
function permutation(t: Tree, n: number, seed: number): Uint32Array {
  const p = new Uint32Array(n);
  for (let i = 0; i < n; i++) p[i] = i;
  const rng = new t.prng.Prng(seed);
  for (let i = n - 1; i > 0; i--) {
    const j = rng.nextInt(i + 1);
    const x = p[i]!;
    p[i] = p[j]!;
    p[j] = x;
  }
  return p;
}

/** One run: build `ranges` ranges (not timed), fault each once in `order` (timed). */
function faultRun(t: Tree, order: Uint32Array | null, decider: MigrationDecider, into: Samples, ranges = RANGES): number {
  const profile = t.profile.loadProfile("mi300x-8");
  const costs = new t.cost.CostModel(profile.cost, profile.gpus);
  const m = new t.svm.SvmModel({ gpus: profile.gpus, decider, costs, seed: 1, fullCheckEvery: 0 });
  m.processCreate(1, { xnack: true, name: "bench" });
  m.vmaAdd(1, BASE, ranges * RANGE_PAGES * 2);
  const before = heapBytes();
  for (let i = 0; i < ranges; i++) m.setAttr(1, BASE + i * RANGE_PAGES * 2, RANGE_PAGES, [], 0);
  const bytesPerMillionRanges = ((heapBytes() - before) * 1e6) / ranges;
  const addrs = new Float64Array(FAULT_BATCH);
  const writes = new Uint8Array(FAULT_BATCH);
  const results = new Uint8Array(FAULT_BATCH);
  const done = new Float64Array(FAULT_BATCH);
  let now = 0;
  into.add(
    timed(() => {
      for (let i = 0; i < ranges; i += FAULT_BATCH) {
        const n = Math.min(FAULT_BATCH, ranges - i);
        for (let k = 0; k < n; k++) addrs[k] = BASE + (order === null ? i + k : order[i + k]!) * RANGE_PAGES * 2 + 1;
        now = m.restorePages(1, i % 8, n, addrs, writes, now, results, done);
      }
    }),
    ranges,
  );
  if (m.stats.gpuFaults !== ranges) throw new Error(`${t.label}: expected ${ranges} handled faults, got ${m.stats.gpuFaults}`);
  m.checkFull();
  return bytesPerMillionRanges;
}

/** One engine run; its fault count (handled and dropped). */
function engineRun(t: Tree, decider: MigrationDecider, into: Samples): number {
  const p = t.profile.loadProfile(ENGINE_PROFILE);
  const w = t.builtins.builtinWorkload(ENGINE_WORKLOAD, p)!;
  let faults = 0;
  const tm = timed(() => {
    const r = t.engine.runSim({ profile: p, workload: w, decider, seed: 1, fullCheckEvery: 0 });
    faults = r.gpuFaults + r.gpuFaultsDropped;
  });
  into.add(tm, faults);
  return faults;
}

/** Per-unit ns samples as rates per CPU second and per wall second (medians). */
function rates(s: Samples): { per_cpu_s: number; per_wall_s: number } {
  return { per_cpu_s: Math.round(1e9 / median(s.cpu)), per_wall_s: Math.round(1e9 / median(s.wall)) };
}

const here = await openTree("after", resolve(import.meta.dir, ".."));
const trees = [here];
if (values.baseline) trees.push(await openTree("before", resolve(values.baseline)));

const nativeSeq = new Samples();
const nativeRandom = new Samples();
const nativeEngine = new Samples();
const bytesPerMillion: number[] = [];
const order = permutation(here, RANGES, 1);
const boxed = new Map<Tree, { native: Samples; faults: Samples; engine: Samples; engineFaults: number }>();
const configs: (() => Promise<void>)[] = [
  async () => {
    faultRun(here, order, here.contract.nativeKernelDefault(), nativeRandom);
  },
  async () => {
    engineRun(here, here.contract.nativeKernelDefault(), nativeEngine);
  },
];
for (const t of trees) {
  // Each tree's native run too: the sandbox's cost is measured against its own model.
  const s = { native: t === here ? nativeSeq : new Samples(), faults: new Samples(), engine: new Samples(), engineFaults: 0 };
  boxed.set(t, s);
  const policyFile = join(t.root, "policies/migration/kernel-default.yaml");
  const sandboxed = async (run: (d: MigrationDecider) => void) => {
    const resolved = await t.simPolicy.resolveMigrationPolicy(policyFile, { seed: 1 });
    try {
      run(resolved.decider);
      if (resolved.decider.fallbacks !== 0) throw new Error(`${t.label}: sandboxed kernel-default fell back ${resolved.decider.fallbacks} times: the bench would time the fallback`);
    } finally {
      resolved[Symbol.dispose]();
    }
  };
  // Untimed warm-up of both fault paths.
  faultRun(t, null, t.contract.nativeKernelDefault(), new Samples(), WARMUP_RANGES);
  await sandboxed((d) => faultRun(t, null, d, new Samples(), WARMUP_RANGES));
  configs.push(
    async () => {
      const bytes = faultRun(t, null, t.contract.nativeKernelDefault(), s.native);
      if (t === here) bytesPerMillion.push(bytes);
    },
    () => sandboxed((d) => faultRun(t, null, d, s.faults)),
    () =>
      sandboxed((d) => {
        s.engineFaults = engineRun(t, d, s.engine);
      }),
  );
}
await interleave(ROUNDS, configs);

const native = rates(nativeSeq);
const out: Record<string, unknown> = {
  bench: "sim",
  cpu_time: THREAD_CPU_SOURCE,
  rounds: ROUNDS,
  ranges: RANGES,
  fault_batch: FAULT_BATCH,
  targets: { native_faults_per_cpu_s: TARGET_NATIVE, sandboxed_faults_per_cpu_s: TARGET_SANDBOXED },
  native: {
    commit: here.commit,
    faults: native,
    faults_random_order: rates(nativeRandom),
    engine: { workload: ENGINE_WORKLOAD, profile: ENGINE_PROFILE, faults: rates(nativeEngine) },
    meets_target: native.per_cpu_s >= TARGET_NATIVE,
    bytes_per_million_ranges: Math.round(median(bytesPerMillion)),
  },
};
for (const t of trees) {
  const s = boxed.get(t)!;
  const faults = rates(s.faults);
  out[`sandboxed_${t.label}`] = {
    root: t.root,
    commit: t.commit,
    faults,
    native_faults: rates(s.native),
    sandbox_cpu_ns_per_fault: +(median(s.faults.cpu) - median(s.native.cpu)).toFixed(1),
    engine: { workload: ENGINE_WORKLOAD, profile: ENGINE_PROFILE, gpu_faults: s.engineFaults, faults: rates(s.engine) },
    meets_target: faults.per_cpu_s >= TARGET_SANDBOXED,
  };
}
console.log(JSON.stringify(out));
