/**
 * The simulator inside a Bun program: one built-in workload on an emulated machine, decided
 * by the kernel's own rules and by the shipped access-counter MigrationPolicy (sandboxed),
 * same seed.
 *
 *   bun embed-sim.ts      # prints one line per policy; same output on every run
 */
import { dirname, join } from "node:path";
import { Policy } from "svmrt/policy";
import { builtinWorkload, loadProfile, nativeKernelDefault, runSim, runSimAsync } from "svmrt/sim";

const profile = loadProfile("dev-2gpu");
const workload = builtinWorkload("pingpong", profile);
if (workload === undefined) throw new Error("built-in workload 'pingpong' is missing: see `svmrt sim --list-workloads`");

// The shipped policies sit beside the package's runtime/ folder.
const shipped = join(dirname(Bun.resolveSync("svmrt/package.json", import.meta.dir)), "policies", "migration", "access-counter.yaml");
using policy = await Policy.load(shipped);

const results = [
  runSim({ profile, workload, decider: nativeKernelDefault(), seed: 1 }),
  // A sandboxed decider may rebuild its Wasm instance after a crash: the async run waits for it.
  await runSimAsync({ profile, workload, decider: policy.migrationDecider(), seed: 1 }),
];
for (const r of results) {
  const m = r.migrations;
  console.log(`${r.policy}: ${r.gpuFaults} GPU faults, migrations h2d ${m.h2d} d2h ${m.d2h} d2d ${m.d2d}, ${r.thrashEvents} thrash events`);
}
