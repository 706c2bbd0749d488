/** Test helpers: policy files written to a fresh temporary folder. */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { tempDirRegister } from "../setup.ts";

export const HEALTHY_MIGRATION_PLUGIN = `
export const params = { bias: { type: "integer", default: 0, min: 0, max: 10, description: "test knob" } };
export function restoreLocation(f, ctx) { return f.gpuId; }
`;

/** A fresh folder with the given files, removed after the run (test/setup.ts); returns its path. */
export function tempFolder(files: Record<string, string | Uint8Array>): string {
  const dir = tempDirRegister(mkdtempSync(join(tmpdir(), "svmrt-test-")));
  for (const [name, body] of Object.entries(files)) writeFileSync(join(dir, name), body);
  return dir;
}

export function policyYaml(spec: string, kind = "MigrationPolicy", name = "t"): string {
  return `apiVersion: svmrt/v1\nkind: ${kind}\nmetadata:\n  name: ${name}\nspec:\n${spec}`;
}
