/**
 * A hostile file dropped into a policy folder with the name of an existing policy. Both
 * load; PolicyFolder.get(name) answers whichever file sorts first, so `aa.yaml` silently
 * replaces the operator's `kernel-default`.
 */
import { describe, expect, test } from "bun:test";
import { type ReloadEvent, PolicyFolder } from "../../runtime/policy/reload.ts";
import { policyYaml, tempFolder } from "../policy/helpers.ts";

describe("hostile: two files, one policy name", () => {
  test("the second file claiming a served name is rejected, the first keeps serving", async () => {
    const dir = tempFolder({
      "zz-real.yaml": policyYaml("  plugin: real.js\n", "MigrationPolicy", "kd"),
      "real.js": "export function restoreLocation(f) { return f.gpuId }",
      "aa-shadow.yaml": policyYaml("  plugin: shadow.js\n", "MigrationPolicy", "kd"),
      "shadow.js": "export function restoreLocation() { return -1 }",
    });
    const events: ReloadEvent[] = [];
    using folder = new PolicyFolder(dir, { onEvent: (e) => events.push(e) });
    await folder.start(false);
    const loaded = events.filter((e) => e.type === "loaded");
    expect(loaded.length).toBe(1);
    expect(events.some((e) => e.type === "rejected" && /kd/.test(e.error))).toBe(true);
  });
});
