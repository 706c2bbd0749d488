import { describe, expect, test } from "bun:test";
import DEBUG_SYNC from "@jitl/quickjs-wasmfile-debug-sync";
import { type QuickJSWASMModule, TestQuickJSWASMModule } from "quickjs-emscripten-core";
import { DECISION_STRIDE, F, FAULT_STRIDE } from "../../runtime/policy/contracts/migration.ts";
import { FAULT_ANSWER_EXTRA, FAULT_TRAILER, HOOK_RESTORE_LOCATION, MIGRATION_ADAPTER_SOURCE, MIGRATION_FAULTS_ADAPTER } from "../../runtime/policy/migration-adapter.ts";
import { SANDBOX_DEFAULTS, type SandboxLimits } from "../../runtime/sandbox/limits.ts";
import { Sandbox } from "../../runtime/sandbox/sandbox.ts";

/**
 * A real crash of the Wasm module: with QuickJS's stack check switched off (stack_bytes 0,
 * a test-only setting: policy files cannot go below SANDBOX_MINIMA), deep recursion
 * exhausts the engine's native stack inside Wasm and the instance is left corrupt
 * (disposing it then aborts on a QuickJS assertion).
 */
const CRASHER = `
function down(n) { return down(n + 1) + 1 }
export function hook(x) { if (x === "crash") return down(0); return "alive" }
`;
const crashLimits = (o: Partial<SandboxLimits>): SandboxLimits => ({ ...SANDBOX_DEFAULTS, stack_bytes: 0, timeout_ms: 2000, ...o });

describe("sandbox: crashes of the Wasm module are contained", () => {
  test("a crash is counted, the module rebuilt, and the policy answers again", async () => {
    using sb = await Sandbox.load({ name: "c", source: CRASHER, filename: "c.js", limits: crashLimits({}), seed: 1 });
    const r = await sb.call("hook", "crash");
    expect(r).toMatchObject({ ok: false, reason: "stack" });
    expect(sb.stats.crashes).toBe(1);
    expect(await sb.call("hook", "ok")).toMatchObject({ ok: true, value: "alive" });
    expect(sb.stats.builds).toBe(2);
  });

  test("after crashes_max crashes in the window the policy is quarantined", async () => {
    using sb = await Sandbox.load({ name: "c", source: CRASHER, filename: "c.js", limits: crashLimits({ crashes_max: 3 }), seed: 1 });
    for (let i = 0; i < 3; i++) expect((await sb.call("hook", "crash")).ok).toBe(false);
    expect(sb.stats.quarantined).toBe(true);
    expect(await sb.call("hook", "ok")).toMatchObject({ ok: false, reason: "quarantined" });
    expect(sb.stats.builds).toBe(3);
  });

  test("1000 crashes in a row leave the host alive with bounded memory", async () => {
    using sb = await Sandbox.load({ name: "c", source: CRASHER, filename: "c.js", limits: crashLimits({ crashes_max: 100_000 }), seed: 1 });
    const rssMb = () => {
      Bun.gc(true);
      return process.memoryUsage().rss / 2 ** 20;
    };
    for (let i = 0; i < 50; i++) await sb.call("hook", "crash"); // warm up allocator and JIT
    const before = rssMb();
    for (let i = 0; i < 1000; i++) {
      const r = await sb.call("hook", "crash");
      if (r.ok || r.reason !== "stack") throw new Error(`crash ${i}: ${JSON.stringify(r)}`);
    }
    const after = rssMb();
    expect(sb.stats.crashes).toBe(1050);
    expect(await sb.call("hook", "ok")).toMatchObject({ ok: true, value: "alive" });
    // Each instance holds ~17 MB of linear memory; 1000 leaked instances would be ~17 GB.
    console.log(`1000-crash test: rss ${before.toFixed(0)} MiB -> ${after.toFixed(0)} MiB (+${(after - before).toFixed(0)} MiB)`);
    expect(after - before).toBeLessThan(256);
  }, 120_000);
});

describe("sandbox: every handle is disposed (debug build leak check)", () => {
  test("calls, batches, failures and dispose leave no QuickJS allocation behind", async () => {
    let tracked: TestQuickJSWASMModule | undefined;
    const sb = await Sandbox.load({
      name: "leak",
      source: [
        "export const params = { a: { x: [1, 2] } };",
        "export function hook(x) { return { y: x } }",
        "export function bad() { throw new Error('x') }",
        "export async function later(x) { return [x] }",
        "export function spin() { for (;;) {} }",
        "export function cyclic() { const o = {}; o.o = o; return o }",
        "export function restoreLocation(f) { return f.gpuId }",
      ].join("\n"),
      adapters: MIGRATION_ADAPTER_SOURCE,
      filename: "leak.js",
      limits: { ...SANDBOX_DEFAULTS, timeout_ms: 1500, load_timeout_ms: 10_000 },
      seed: 3,
      variant: DEBUG_SYNC,
      wrapModule: (m) => {
        tracked = new TestQuickJSWASMModule(m);
        return tracked as unknown as QuickJSWASMModule;
      },
    });
    expect(await sb.call("hook", { a: 1 })).toMatchObject({ ok: true, value: { y: { a: 1 } } });
    expect(await sb.call("bad", null)).toMatchObject({ ok: false, reason: "exception" });
    expect(await sb.call("later", 5)).toMatchObject({ ok: true, value: [5] });
    expect(await sb.call("cyclic", null)).toMatchObject({ ok: false, reason: "invalid-output" });
    const faults = new Float64Array(2 * FAULT_STRIDE + FAULT_TRAILER);
    faults[2 * FAULT_STRIDE + 1] = HOOK_RESTORE_LOCATION;
    faults[F.gpuId] = 7;
    faults[FAULT_STRIDE + F.gpuId] = 9;
    const out = new Float64Array(2 * DECISION_STRIDE + FAULT_ANSWER_EXTRA);
    expect(await sb.batch(MIGRATION_FAULTS_ADAPTER, faults, 2, "{}", out)).toMatchObject({ ok: true });
    expect([out[0], out[DECISION_STRIDE]]).toEqual([7, 9]);
    const spin = await sb.call("spin", null);
    expect(spin).toMatchObject({ ok: false, reason: "timeout" });
    sb.dispose();
    expect(tracked).toBeDefined();
    tracked!.disposeAll();
    tracked!.assertNoMemoryAllocated();
  });
});
