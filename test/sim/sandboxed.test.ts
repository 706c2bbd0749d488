/**
 * The simulator with MigrationPolicy plugins through the sandbox: the sandboxed
 * kernel-default gives exactly the native results on every built-in workload, runs are
 * deterministic, and a policy that crashes its Wasm module mid-run still yields a complete,
 * repeatable run.
 */
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { BUILTINS, builtinWorkload } from "../../runtime/sim/builtins.ts";
import { runSimAsync } from "../../runtime/sim/engine.ts";
import { resolveMigrationPolicy } from "../../runtime/sim/policy.ts";
import { loadProfile } from "../../runtime/sim/profile.ts";
import { policyYaml, tempFolder } from "../policy/helpers.ts";

const KD = "policies/migration/kernel-default.yaml";

async function run(workload: string, policyFile: string | undefined, seed = 1) {
  const profile = loadProfile("dev-2gpu");
  const events: string[] = [];
  using resolved = await resolveMigrationPolicy(policyFile, { seed });
  const r = await runSimAsync({ profile, workload: builtinWorkload(workload, profile)!, decider: resolved.decider, seed, sink: (l) => events.push(l) });
  return { r, events, sandbox: resolved.policy?.sandbox.stats };
}

describe("sandboxed kernel-default = native kernel-default", () => {
  for (const name of Object.keys(BUILTINS)) {
    test(`${name}: identical results and SMI event stream`, async () => {
      const native = await run(name, undefined);
      const boxed = await run(name, KD);
      expect(boxed.r.policyFallbacks).toBe(0);
      expect(boxed.r.policy).toBe("kernel-default");
      expect({ ...boxed.r, policy: "" }).toEqual({ ...native.r, policy: "" });
      expect(boxed.events.length).toBe(native.events.length);
      expect(boxed.events.join("\n") === native.events.join("\n")).toBe(true);
    }, 60_000);
  }
});

describe("sandboxed policies in the simulator", () => {
  test("a policy run is deterministic: same seed, byte-identical JSON", async () => {
    const a = await run("pingpong", "policies/migration/thrash-guard.yaml", 7);
    const b = await run("pingpong", "policies/migration/thrash-guard.yaml", 7);
    expect(JSON.stringify(a.r)).toBe(JSON.stringify(b.r));
  });

  test("a plugin that crashes its Wasm module mid-run: the fallback decides, the sandbox is rebuilt, the run repeats exactly", async () => {
    // Recurses without end on its 3rd batch. With the live instance's stack check switched
    // off (test only), that exhausts the host stack inside Wasm: a real crash of the module.
    // The rebuilt instance has the normal stack check, so its own 3rd batch fails cleanly.
    const dir = tempFolder({
      "p.yaml": policyYaml("  plugin: plugin.js\n"),
      "plugin.js":
        "let calls = 0\nfunction down(n) { return down(n + 1) + 1 }\n" +
        "export function restoreLocationBatch(b, ctx) { if (++calls === 3) down(0); kernel.restoreLocationBatch(b, ctx) }",
    });
    const profile = loadProfile("dev-2gpu");
    const once = async () => {
      using resolved = await resolveMigrationPolicy(join(dir, "p.yaml"), { seed: 1 });
      resolved.policy!.sandbox.live!.runtime.setMaxStackSize(0);
      const r = await runSimAsync({ profile, workload: builtinWorkload("stream", profile)!, decider: resolved.decider, seed: 1 });
      return { r, stats: { ...resolved.policy!.sandbox.stats } };
    };
    const a = await once();
    const b = await once();
    const native = (await run("stream", undefined)).r;
    expect(a.stats.crashes).toBe(1);
    expect(a.stats.builds).toBe(2);
    expect(a.stats.failures).toMatchObject({ stack: 2 });
    expect(a.r.policyFallbacks).toBeGreaterThan(0);
    expect(JSON.stringify(a.r)).toBe(JSON.stringify(b.r));
    // The fallback is the kernel's rule, so the physics match the native run.
    expect(a.r.gpuFaults).toBe(native.gpuFaults);
    expect(a.r.bytesMigrated).toEqual(native.bytesMigrated);
  });
});
