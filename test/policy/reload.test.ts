import { describe, expect, test } from "bun:test";
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type ReloadEvent, PolicyFolder } from "../../runtime/policy/reload.ts";
import { policyYaml, tempFolder } from "./helpers.ts";

const PLUGIN = (gpu: number) => `export function restoreLocation() { return ${gpu} }`;
const YAML = policyYaml("  plugin: plugin.js\n  tests:\n    - name: answers\n      hook: restoreLocation\n      expect: 0\n", "MigrationPolicy", "hot");

describe("policy folder hot reload", () => {
  test("load, reject a broken update keeping the last good, accept a fix, remove", async () => {
    const dir = tempFolder({ "p.yaml": YAML, "plugin.js": PLUGIN(0) });
    const events: ReloadEvent[] = [];
    using folder = new PolicyFolder(dir, { onEvent: (e) => events.push(e) });
    await folder.start(false);
    const first = folder.get("hot")!;
    expect(first).toBeDefined();
    expect(events.map((e) => e.type)).toEqual(["loaded"]);

    // A syntax error: rejected, the last good revision keeps serving.
    writeFileSync(join(dir, "plugin.js"), "export function restoreLocation( {");
    await folder.reload();
    expect(folder.get("hot")).toBe(first);
    expect(events.at(-1)).toMatchObject({ type: "rejected", serving: first.spec.revision });
    expect(folder.status()[0]!.error).toMatch(/load/);

    // Loads but fails its inline test: rejected too.
    writeFileSync(join(dir, "plugin.js"), PLUGIN(16353));
    await folder.reload();
    expect(folder.get("hot")).toBe(first);
    expect((events.at(-1) as { error: string }).error).toMatch(/inline tests failed: 'answers': expected 0, got 16353/);

    // A broken YAML: rejected once, not again on rescans of the same content.
    writeFileSync(join(dir, "p.yaml"), "apiVersion: [");
    await folder.reload();
    await folder.reload();
    expect(events.filter((e) => e.type === "rejected").length).toBe(3);
    expect(folder.get("hot")).toBe(first);

    // Fixed: swapped in, old revision named.
    writeFileSync(join(dir, "p.yaml"), YAML);
    writeFileSync(join(dir, "plugin.js"), `${PLUGIN(0)}\n// v2`);
    await folder.reload();
    const second = folder.get("hot")!;
    expect(second).not.toBe(first);
    expect(events.at(-1)).toMatchObject({ type: "loaded", replaced: first.spec.revision, revision: second.spec.revision });
    expect(folder.status()[0]!.error).toBeUndefined();

    // Unchanged content: nothing happens.
    const n = events.length;
    await folder.reload();
    expect(events.length).toBe(n);

    rmSync(join(dir, "p.yaml"));
    await folder.reload();
    expect(folder.get("hot")).toBeUndefined();
    expect(events.at(-1)).toMatchObject({ type: "removed", name: "hot" });
  });

  test("file watching picks up a change after the debounce", async () => {
    const dir = tempFolder({ "p.yaml": YAML, "plugin.js": PLUGIN(0) });
    const events: ReloadEvent[] = [];
    using folder = new PolicyFolder(dir, { onEvent: (e) => events.push(e) });
    await folder.start(true);
    writeFileSync(join(dir, "plugin.js"), `${PLUGIN(0)}\n// touched`);
    // Bounded wait: the watch fires within the debounce, the periodic rescan within 5 s.
    for (let i = 0; i < 100 && events.length < 2; i++) await Bun.sleep(100);
    expect(events.map((e) => e.type)).toEqual(["loaded", "loaded"]);
  });
});
