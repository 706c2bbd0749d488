/**
 * Preloaded by `bun test` (bunfig.toml): temporary folders that test helpers register here are
 * removed once every test file has run (bun's test process gives no exit event to hook).
 */
import { afterAll } from "bun:test";
import { rmSync } from "node:fs";

const KEY = Symbol.for("svmrt.test.tempDirs");
type Registry = { dirs: string[] };
const registry: Registry = ((globalThis as Record<symbol, unknown>)[KEY] as Registry | undefined) ?? { dirs: [] };
(globalThis as Record<symbol, unknown>)[KEY] = registry;

/** Remove `dir` after the whole run. */
export function tempDirRegister(dir: string): string {
  registry.dirs.push(dir);
  return dir;
}

afterAll(() => {
  for (const d of registry.dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
