/**
 * The one place the simulator turns `--policy FILE` into a MigrationDecider. Without a
 * file: the kernel's behaviour, natively. With a file: the sandboxed MigrationPolicy loader
 * (runtime/policy/loader.ts, built separately) must export
 * `loadMigrationPolicy(path: string): Promise<MigrationDecider>`; until it exists the flag
 * fails with a UsageError that says so.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { UsageError } from "../errors.ts";
import { type MigrationDecider, nativeKernelDefault } from "../policy/contracts/migration.ts";

/** Where the sandboxed policy loader is expected. */
export const POLICY_LOADER_PATH = join(import.meta.dir, "..", "policy", "loader.ts");

/**
 * The decider for `path` (a MigrationPolicy YAML), or the native kernel default.
 * @throws UsageError when a policy file is given but the loader is not part of this build.
 */
export async function resolveMigrationPolicy(path: string | undefined): Promise<MigrationDecider> {
  if (path === undefined) return nativeKernelDefault();
  if (!existsSync(POLICY_LOADER_PATH)) {
    throw new UsageError(
      `--policy ${path}: this build has no MigrationPolicy loader (${POLICY_LOADER_PATH} is missing); run without --policy to use the native kernel-default`,
    );
  }
  const loader: string = POLICY_LOADER_PATH;
  const mod = (await import(loader)) as { loadMigrationPolicy?: (p: string) => Promise<MigrationDecider> };
  if (typeof mod.loadMigrationPolicy !== "function") {
    throw new UsageError(`--policy ${path}: ${POLICY_LOADER_PATH} does not export loadMigrationPolicy(path)`);
  }
  return mod.loadMigrationPolicy(path);
}
