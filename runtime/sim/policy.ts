/**
 * The one place the simulator turns `--policy FILE` into a MigrationDecider: without a file,
 * the kernel's behaviour natively; with one, the MigrationPolicy through the sandbox, run in
 * deterministic mode (budgets in interpreter work, Math.random seeded by the run's seed,
 * decision-log time 0) so a run depends only on its inputs. Its decision log keeps the
 * batches that failed, not the millions that did not.
 */
import { positionOf } from "../config.ts";
import { ConfigError } from "../errors.ts";
import { type MigrationDecider, nativeKernelDefault } from "../policy/contracts/migration.ts";
import { Policy } from "../policy/policy.ts";

export interface ResolvedPolicy extends Disposable {
  decider: MigrationDecider;
  /** The loaded policy, when one was given (its decision log, revision, sandbox stats). */
  policy?: Policy;
}

/**
 * The decider for `path` (a MigrationPolicy YAML), or the native kernel default.
 * @throws ConfigErrors / ConfigError for a bad or non-migration policy file; PolicyError
 *   (reason load) when its plugin cannot load.
 */
export async function resolveMigrationPolicy(
  path: string | undefined,
  opts: { seed: number; pluginRoots?: string[] } = { seed: 1 },
): Promise<ResolvedPolicy> {
  if (path === undefined) return { decider: nativeKernelDefault(), [Symbol.dispose]() {} };
  const policy = await Policy.load(path, {
    seed: opts.seed,
    pluginRoots: opts.pluginRoots,
    sandbox: { deterministic: true },
    logClock: () => 0,
    logBatches: "failures",
  });
  if (policy.spec.kind !== "MigrationPolicy") {
    policy.dispose();
    throw new ConfigError(positionOf(policy.spec.yaml, ["kind"]), "kind", "a MigrationPolicy for the simulator", `it is a ${policy.spec.kind}`);
  }
  return { decider: policy.migrationDecider(), policy, [Symbol.dispose]: () => policy.dispose() };
}
