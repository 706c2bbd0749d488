/**
 * Flagship-compare benchmark: prints ONE JSON object on one line. Times each cell of
 * `svmrt compare --profile mi300x-8 --workloads oversub-150,pingpong --policies
 * policies/migration/` the way the comparison runs it: one `svmrt sim ... --json --summary
 * first` child process per (workload, policy), here one at a time so cells do not compete
 * for the two cores. Per cell: the child's CPU time (user + system of the whole process,
 * from its resource usage: the main thread and Bun's GC and JIT threads) and wall time.
 *
 * With --baseline DIR (an older checkout, e.g. a `git worktree` of the last commit with
 * node_modules linked) each cell also runs from that tree, the two interleaved (cell i:
 * this tree then the baseline, cell i+1 the other way round). With --rounds N each cell
 * runs N times per tree and the medians are reported.
 *
 * Per tree and workload: the slowest cell against the kernel-default cell, in CPU time
 * (target: at most 2.5x).
 *
 * The full matrix takes minutes per tree: --workloads and --policies pick a subset
 * (policies as file names without .yaml, or paths; default: every .yaml of
 * policies/migration/).
 *
 * Usage: bun bench/compare.ts [--baseline DIR] [--workloads A,B] [--policies P,Q]
 *   [--profile NAME] [--rounds N]
 */
import { spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { basename, join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { median } from "./cpu-time.ts";

const { values } = parseArgs({
  options: {
    baseline: { type: "string" },
    workloads: { type: "string" },
    policies: { type: "string" },
    profile: { type: "string" },
    rounds: { type: "string" },
  },
});
const PROFILE = values.profile ?? "mi300x-8";
const WORKLOADS = (values.workloads ?? "oversub-150,pingpong").split(",").filter(Boolean);
const ROUNDS = Number(values.rounds ?? 1);
const SEED = 1;
/** Slowest cell over the kernel-default cell of its workload, CPU time (the target). */
const TARGET_SLOWEST_OVER_DEFAULT = 2.5;
const POLICIES_DIR = "policies/migration";
/** Bytes of a failing cell's stderr quoted. */
const STDERR_QUOTED_BYTES = 2000;

/** Policy names (file names without .yaml) of the matrix, in the comparison's order. */
function policyNames(root: string): string[] {
  if (values.policies) return values.policies.split(",").filter(Boolean).map((p) => basename(p, ".yaml"));
  return readdirSync(join(root, POLICIES_DIR))
    .filter((f) => f.endsWith(".yaml"))
    .map((f) => basename(f, ".yaml"))
    .sort();
}

interface Tree {
  label: string;
  root: string;
  commit: string;
}

function commitOf(root: string): string {
  const rev = spawnSync("git", ["-C", root, "rev-parse", "--short", "HEAD"], { encoding: "utf8" }).stdout.trim();
  const dirty = spawnSync("git", ["-C", root, "status", "--porcelain", "--untracked-files=no"], { encoding: "utf8" }).stdout.trim() !== "";
  return `${rev}${dirty ? "+changes" : ""}`;
}

interface CellTime {
  cpu_s: number[];
  wall_s: number[];
  gpu_faults?: number;
}

/** One cell from one tree: the child's CPU and wall time, s. */
async function runCell(t: Tree, workload: string, policy: string, into: CellTime): Promise<void> {
  const argv = [
    process.execPath,
    join(t.root, "runtime/cli.ts"),
    "sim",
    "--profile",
    PROFILE,
    "--workload",
    workload,
    "--policy",
    join(t.root, POLICIES_DIR, `${policy}.yaml`),
    "--seed",
    String(SEED),
    "--json",
    "--summary",
    "first",
  ];
  const t0 = performance.now();
  const child = Bun.spawn(argv, { cwd: t.root, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited]);
  const wallS = (performance.now() - t0) / 1000;
  if (code !== 0) throw new Error(`${t.label}: ${workload} x ${policy} exited with ${code}: ${err.slice(-STDERR_QUOTED_BYTES)}`);
  const usage = child.resourceUsage();
  if (!usage) throw new Error(`${t.label}: ${workload} x ${policy}: no resource usage for the child`);
  into.cpu_s.push(Number(usage.cpuTime.user + usage.cpuTime.system) / 1e6);
  into.wall_s.push(wallS);
  const r = JSON.parse(out) as { gpuFaults?: number };
  into.gpu_faults = r.gpuFaults;
}

const trees: Tree[] = [{ label: "after", root: resolve(import.meta.dir, ".."), commit: "" }];
if (values.baseline) trees.push({ label: "before", root: resolve(values.baseline), commit: "" });
for (const t of trees) t.commit = commitOf(t.root);
const policies = policyNames(trees[0]!.root);

const cells: { workload: string; policy: string; times: Map<Tree, CellTime> }[] = [];
for (const workload of WORKLOADS) for (const policy of policies) cells.push({ workload, policy, times: new Map(trees.map((t) => [t, { cpu_s: [], wall_s: [] }])) });
let flip = false;
for (let r = 0; r < ROUNDS; r++) {
  for (const c of cells) {
    const order = flip ? [...trees].reverse() : trees;
    flip = !flip;
    for (const t of order) await runCell(t, c.workload, c.policy, c.times.get(t)!);
  }
}

const r2 = (x: number) => +x.toFixed(2);
const out: Record<string, unknown> = {
  bench: "compare",
  profile: PROFILE,
  workloads: WORKLOADS,
  policies,
  rounds: ROUNDS,
  cpu_time: "child process user + system (all its threads), s",
  target_slowest_over_kernel_default_cpu: TARGET_SLOWEST_OVER_DEFAULT,
  cells: cells.map((c) => {
    const row: Record<string, unknown> = { workload: c.workload, policy: c.policy };
    for (const t of trees) {
      const x = c.times.get(t)!;
      row[t.label] = { cpu_s: r2(median(x.cpu_s)), wall_s: r2(median(x.wall_s)), gpu_faults: x.gpu_faults };
    }
    return row;
  }),
};
for (const t of trees) {
  const perWorkload: Record<string, unknown> = {};
  for (const w of WORKLOADS) {
    const row = cells.filter((c) => c.workload === w).map((c) => ({ policy: c.policy, cpu: median(c.times.get(t)!.cpu_s) }));
    const slowest = row.reduce((a, b) => (b.cpu > a.cpu ? b : a));
    const def = row.find((x) => x.policy === "kernel-default");
    perWorkload[w] = {
      total_cpu_s: r2(row.reduce((s, x) => s + x.cpu, 0)),
      slowest: slowest.policy,
      slowest_cpu_s: r2(slowest.cpu),
      kernel_default_cpu_s: def ? r2(def.cpu) : null,
      slowest_over_kernel_default: def ? r2(slowest.cpu / def.cpu) : null,
      meets_target: def ? slowest.cpu / def.cpu <= TARGET_SLOWEST_OVER_DEFAULT : null,
    };
  }
  out[t.label] = { root: t.root, commit: t.commit, workloads: perWorkload };
}
console.log(JSON.stringify(out));
