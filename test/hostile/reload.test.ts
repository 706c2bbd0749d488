/**
 * Hot reload races. reloadOnce checks `closed` only when it starts: a reload already
 * loading a file when close() runs finishes afterwards, assigns the fresh Policy to a slot
 * close() has already dropped, emits "loaded", and nothing ever disposes it (a live Wasm
 * instance leaked per race).
 */
import { describe, expect, test } from "bun:test";
import { symlinkSync } from "node:fs";
import { join } from "node:path";
import { Policy } from "../../runtime/policy/policy.ts";
import { type ReloadEvent, PolicyFolder } from "../../runtime/policy/reload.ts";
import { runCli } from "../cli-helpers.ts";
import { policyYaml, tempFolder } from "../policy/helpers.ts";

describe("hostile: hot reload racing close()", () => {
  test("a reload in flight when the folder closes leaves no live policy and emits nothing after close", async () => {
    const dir = tempFolder({ "p.yaml": policyYaml("  plugin: plugin.js\n", "MigrationPolicy", "hot"), "plugin.js": "export function restoreLocation(f) { return f.gpuId }" });
    const events: ReloadEvent[] = [];
    const folder = new PolicyFolder(dir, { onEvent: (e) => events.push(e) });
    const created: Policy[] = [];
    const fromSpec = Policy.fromSpec;
    let closedAt = -1;
    // Deterministic interleaving: close() arrives while the plugin is being loaded.
    Policy.fromSpec = async (...args: Parameters<typeof Policy.fromSpec>) => {
      folder.close();
      closedAt = events.length;
      const p = await fromSpec.apply(Policy, args);
      created.push(p);
      return p;
    };
    try {
      await folder.start(false);
    } finally {
      Policy.fromSpec = fromSpec;
    }
    expect(closedAt).toBe(0);
    expect(events.slice(closedAt).filter((e) => e.type === "loaded")).toEqual([]);
    expect(folder.get("hot")).toBeUndefined();
    // Every policy built for the folder is disposed once it is closed.
    for (const p of created) expect(await p.sandbox.ready().then(() => "alive", () => "disposed")).toBe("disposed");
  });
});

describe("hostile: what the folder holds", () => {
  // Guards against: findPolicyFiles (files.ts) stats every entry and a dangling symlink throws
  // ENOENT out of the walk; reloadOnce then rejects the whole folder, so no file in it
  // loads or reloads while the link exists (and `svmrt policy check DIR` exits 70).
  test("a dangling symlink named *.yaml does not stop the other policies from loading", async () => {
    const dir = tempFolder({ "p.yaml": policyYaml("  plugin: plugin.js\n", "MigrationPolicy", "hot"), "plugin.js": "export function restoreLocation(f) { return f.gpuId }" });
    symlinkSync(join(dir, "missing", "gone.yaml"), join(dir, "dangling.yaml"));
    using folder = new PolicyFolder(dir);
    await folder.start(false);
    expect(folder.get("hot")).toBeDefined();
  });

  test("svmrt policy check on that folder reports the dangling link as a config error (exit 3)", async () => {
    const dir = tempFolder({ "p.yaml": policyYaml("  plugin: plugin.js\n", "MigrationPolicy", "hot"), "plugin.js": "export function restoreLocation(f) { return f.gpuId }" });
    symlinkSync(join(dir, "missing", "gone.yaml"), join(dir, "dangling.yaml"));
    const r = await runCli(["policy", "check", dir]);
    expect(r.code).toBe(3);
    expect(r.err).toBe("");
    expect(r.out).toContain(`FAIL ${join(dir, "dangling.yaml")}\n     ${join(dir, "dangling.yaml")}:1:1: an existing file (no such file)\n`);
    expect(r.out).toContain("1 of 2 policies ok\n");
  });
});

describe("hostile: transient load failures", () => {
  // Guards against: reloadFile records seenRevision before loading, so a revision whose load failed
  // for a passing reason (an inline test timing out on a busy host, Wasm instantiation
  // failing for memory) is never tried again until someone edits the file.
  test("a revision that failed to load once is retried on the next rescan", async () => {
    const dir = tempFolder({ "p.yaml": policyYaml("  plugin: plugin.js\n", "MigrationPolicy", "hot"), "plugin.js": "export function restoreLocation(f) { return f.gpuId }" });
    using folder = new PolicyFolder(dir);
    const fromSpec = Policy.fromSpec;
    Policy.fromSpec = async () => {
      throw new Error("transient: could not instantiate the Wasm module");
    };
    try {
      await folder.start(false);
    } finally {
      Policy.fromSpec = fromSpec;
    }
    expect(folder.get("hot")).toBeUndefined();
    await folder.reload();
    expect(folder.get("hot")).toBeDefined();
  });
});
