/**
 * `svmrt/sim`: the deterministic simulator of the kernel's SVM code: machine profiles,
 * workloads (built-in, YAML, recorded SMI traces), runs and the compare matrix.
 *
 * ```ts
 * import { runSim, loadProfile, builtinWorkload, nativeKernelDefault } from "svmrt/sim";
 * const profile = loadProfile("mi300x-8");
 * const r = runSim({ profile, workload: builtinWorkload("stencil", profile)!, decider: nativeKernelDefault(), seed: 1 });
 * ```
 */
export { runSim, runSimAsync } from "./engine.ts";
export { loadProfile, parseProfile, shippedProfiles, type MachineProfile, PROFILE_DEFAULT } from "./profile.ts";
export { builtinWorkload, BUILTINS } from "./builtins.ts";
export { parseWorkload, loadWorkloadFile } from "./workload.ts";
export { parseTrace } from "./trace.ts";
export { runCompareMatrix } from "./compare.ts";
export { nativeKernelDefault } from "../policy/contracts/migration.ts";
