/**
 * Making the host misclassify failures. The prelude captures its intrinsics, but the batch
 * path returns `out.buffer` (a getter the plugin can redefine on %TypedArray%.prototype)
 * and passes any string an adapter returns straight through as a wire answer; the host
 * then trusts the reason text after "E" and the JSON after "R". Host-side exceptions
 * (JSON.parse of a forged answer, a double dispose) are then counted as Wasm crashes.
 * Every test here asserts unconditionally (no expect that a branch may skip).
 */
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { POLICY_FAILURE_REASONS } from "../../runtime/errors.ts";
import { SAMPLE_MIGRATION_CTX } from "../../runtime/policy/kinds.ts";
import { Policy } from "../../runtime/policy/policy.ts";
import { SANDBOX_DEFAULTS } from "../../runtime/sandbox/limits.ts";
import { Sandbox } from "../../runtime/sandbox/sandbox.ts";
import { policyYaml, tempFolder } from "../policy/helpers.ts";

const GPU = 0x3fe1;
const FAULT = { gpuId: GPU, gpuIndex: 0, addr: 5, rangeStart: 0, rangeLast: 100, accessMask: 1 };
const forgeBuffer = (wire: string) =>
  `Object.defineProperty(Object.getPrototypeOf(Float64Array.prototype), "buffer", { get() { return ${JSON.stringify(wire)} } });\n` +
  "export function restoreLocation(f) { return f.gpuId }\n";

function migrationPolicy(src: string): Promise<Policy> {
  return Policy.load(join(tempFolder({ "p.yaml": policyYaml("  plugin: plugin.js\n"), "plugin.js": src }), "p.yaml"));
}

const reasonsSeen = (p: Policy) => Object.keys(p.sandbox.stats.failures);

describe("hostile: the batch wire answer cannot be forged", () => {
  test("a forged 'E' answer cannot invent a failure reason", async () => {
    using p = await migrationPolicy(forgeBuffer("Enot-a-reason\nforged"));
    const d = await p.invoke("restoreLocation", FAULT, { ...SAMPLE_MIGRATION_CTX });
    // Every reason the host recorded (the decision's and the sandbox's counts) is a real one;
    // the expects run whether or not the forged answer was taken for a failure.
    const reasons = [...(d.failure ? [d.failure.reason as string] : []), ...reasonsSeen(p)];
    expect(reasons.filter((r) => !(POLICY_FAILURE_REASONS as readonly string[]).includes(r))).toEqual([]);
    expect(reasons).not.toContain("not-a-reason");
    // A decision was made, by the plugin or by the fallback (the kernel's rule: the faulting GPU).
    expect(d.value).toBe(GPU);
  });

  test("a forged 'E' answer cannot claim the policy is quarantined", async () => {
    using p = await migrationPolicy(forgeBuffer("Equarantined\nforged"));
    const d = await p.invoke("restoreLocation", FAULT, { ...SAMPLE_MIGRATION_CTX });
    expect(d.failure?.reason).not.toBe("quarantined");
    expect(p.sandbox.stats.failures.quarantined).toBeUndefined();
  });

  test("a forged 'R' answer does not pass off an unwritten decision as the plugin's", async () => {
    // The plugin answers its GPU; the forged wire makes the host read an untouched buffer (0).
    using p = await migrationPolicy(forgeBuffer("Rnull"));
    const d = await p.invoke("restoreLocation", FAULT, { ...SAMPLE_MIGRATION_CTX });
    // Whoever decided (plugin or fallback), the answer is the plugin's rule, never the 0 of an unwritten buffer.
    expect(d.value).toBe(GPU);
  });

  test("a forged unparseable 'R' answer is not a Wasm crash", async () => {
    using p = await migrationPolicy(forgeBuffer("R{"));
    await p.invoke("restoreLocation", FAULT, { ...SAMPLE_MIGRATION_CTX });
    expect(p.sandbox.stats.crashes).toBe(0);
    expect(p.sandbox.stats.builds).toBe(1);
  });

  test("a buffer getter answering a non-ArrayBuffer object is not a Wasm crash (nor 'oom')", async () => {
    using p = await migrationPolicy(
      'Object.defineProperty(Object.getPrototypeOf(Float64Array.prototype), "buffer", { get() { return {} } });\nexport function restoreLocation(f) { return f.gpuId }\n',
    );
    const d = await p.invoke("restoreLocation", FAULT, { ...SAMPLE_MIGRATION_CTX });
    expect(p.sandbox.stats.crashes).toBe(0);
    expect(d.failure?.reason).not.toBe("oom");
  });
});

const limits = { ...SANDBOX_DEFAULTS, timeout_ms: 500 };
const load = (source: string) => Sandbox.load({ name: "wire", source, filename: "wire.js", limits, seed: 1 });

describe("hostile: host-side exceptions are not Wasm crashes", () => {
  test("Object.prototype.toJSON returning null does not turn a good answer into a crash", async () => {
    using sb = await load("Object.prototype.toJSON = () => null;\nexport function hook() { console.log('hi'); return 1 }");
    const r = await sb.call("hook", null);
    expect(sb.stats.crashes).toBe(0);
    expect(r).toMatchObject({ ok: true, value: 1 });
  });

  test("five such calls do not quarantine a policy whose answers are all valid", async () => {
    using sb = await load("Object.prototype.toJSON = () => undefined;\nexport function hook() { console.log('hi'); return 1 }");
    for (let i = 0; i < 5; i++) await sb.call("hook", null);
    expect(sb.stats.quarantined).toBe(false);
    expect(await sb.call("hook", null)).toMatchObject({ ok: true, value: 1 });
  });

  test("throwing a Proxy whose trap throws a Promise is an exception, not a crash", async () => {
    using sb = await load("export function hook() { throw new Proxy({}, { getOwnPropertyDescriptor() { throw Promise.resolve(1) } }) }");
    const r = await sb.call("hook", null);
    expect(r).toMatchObject({ ok: false, reason: "exception" });
    expect(sb.stats.crashes).toBe(0);
    expect(sb.stats.builds).toBe(1);
  });

  test("a plain object dressed as InternalError does not fake an out-of-memory", async () => {
    using sb = await load("export function hook() { throw { name: 'InternalError', message: 'out of memory' } }");
    expect(await sb.call("hook", null)).toMatchObject({ ok: false, reason: "exception" });
  });
});
