import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import {
  DECISION_STRIDE,
  FAULT_STRIDE,
  LOC_SYSMEM,
  LOC_UNDEFINED,
  type PolicyContext,
  emptyFault,
  nativeKernelDefault,
  writeFault,
} from "../../runtime/policy/contracts/migration.ts";
import { PolicyError } from "../../runtime/errors.ts";
import { Policy } from "../../runtime/policy/policy.ts";
import { policyYaml, tempFolder } from "./helpers.ts";

const CTX: PolicyContext = {
  gpus: [
    { id: 0x1001, index: 0, hiveId: 7, appApu: false, vramBytes: 64 * 2 ** 30 },
    { id: 0x1002, index: 1, hiveId: 7, appApu: false, vramBytes: 64 * 2 ** 30 },
    { id: 0x2001, index: 2, hiveId: 0, appApu: false, vramBytes: 64 * 2 ** 30 },
    { id: 0x3001, index: 3, hiveId: 0, appApu: true, vramBytes: 128 * 2 ** 30 },
  ],
  xnack: true,
  nowNs: 5_000_000,
};

/** Deterministic random faults covering every branch of best_restore_location. */
function randomFaults(n: number, seed: number): Float64Array {
  let s = seed >>> 0 || 1;
  const rnd = (k: number) => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) % k;
  };
  const locs = [LOC_SYSMEM, LOC_UNDEFINED, 0x1001, 0x1002, 0x2001, 0x3001];
  const buf = new Float64Array(n * FAULT_STRIDE);
  for (let i = 0; i < n; i++) {
    const g = CTX.gpus[rnd(4)]!;
    const f = emptyFault();
    f.gpuId = g.id;
    f.gpuIndex = g.index;
    f.rangeStart = rnd(1 << 20) * 512;
    f.rangeLast = f.rangeStart + 1 + rnd(1 << 18);
    f.addr = f.rangeStart + rnd(f.rangeLast - f.rangeStart + 1);
    f.granularity = rnd(10);
    f.preferredLoc = locs[rnd(locs.length)]!;
    f.actualLoc = [LOC_SYSMEM, 0x1001, 0x1002, 0x2001][rnd(4)]!;
    f.accessMask = rnd(16);
    f.aipMask = rnd(16) & ~f.accessMask;
    f.write = rnd(2);
    writeFault(buf, i, f);
  }
  return buf;
}

const KD = "policies/migration/kernel-default.yaml";

describe("sandboxed kernel-default agrees with the native kernel rules", () => {
  test("identical decisions on 20,000 random faults, in batches", async () => {
    // Deterministic budgets (as the simulator runs): no wall-clock timeout on a loaded machine.
    using policy = await Policy.load(KD, { sandbox: { deterministic: true } });
    const decider = policy.migrationDecider();
    const native = nativeKernelDefault();
    const n = 20_000;
    const faults = randomFaults(n, 42);
    const a = new Float64Array(n * DECISION_STRIDE);
    const b = new Float64Array(n * DECISION_STRIDE);
    native.decideFaults(faults, n, CTX, a);
    decider.decideFaults(faults, n, CTX, b);
    expect(policy.log.entries().find((e) => e.fallback)?.fallback).toBeUndefined();
    expect(decider.fallbacks).toBe(0);
    expect(Buffer.from(b.buffer).equals(Buffer.from(a.buffer))).toBe(true);
    // Every outcome of §4 occurs in the sample.
    const seen = new Set<number>();
    for (let i = 0; i < n; i++) seen.add(a[i * DECISION_STRIDE]!);
    expect([...seen].sort((x, y) => x - y)).toEqual([-1, 0, 0x1001, 0x1002, 0x2001]);
  });
});

function decisionPolicy(src: string, spec = ""): Promise<Policy> {
  const dir = tempFolder({ "p.yaml": policyYaml(`  plugin: plugin.js\n${spec}`), "plugin.js": src });
  // Deterministic budgets (as the simulator runs): a loaded machine cannot make a call late.
  return Policy.load(join(dir, "p.yaml"), { sandbox: { deterministic: true } });
}

describe("sandboxed deciders: a bad answer never reaches the model", () => {
  test("invalid single decisions fall back one by one and are logged", async () => {
    using p = await decisionPolicy("export function restoreLocation(f) { return f.addr % 2 ? 0xdead : f.gpuId }");
    const d = p.migrationDecider();
    const n = 1000;
    const faults = randomFaults(n, 7);
    const out = new Float64Array(n * DECISION_STRIDE);
    d.decideFaults(faults, n, CTX, out);
    const expected = new Float64Array(n * DECISION_STRIDE);
    nativeKernelDefault().decideFaults(faults, n, CTX, expected);
    let odd = 0;
    for (let i = 0; i < n; i++) {
      const addr = faults[i * FAULT_STRIDE + 2]!;
      if (addr % 2) {
        odd++;
        expect(out[i * DECISION_STRIDE]).toBe(expected[i * DECISION_STRIDE]!);
      } else expect(out[i * DECISION_STRIDE]).toBe(faults[i * FAULT_STRIDE]!);
    }
    expect(d.fallbacks).toBe(odd);
    const last = p.log.entries().at(-1)!;
    expect(last.fallback?.reason).toBe("invalid-output");
    expect(last.fallback?.message).toMatch(/location 57005 is not a GPU of this process/);
  });
  test("a failing batch is decided by the kernel rules; fail-closed throws instead", async () => {
    using p = await decisionPolicy("export function restoreLocation() { throw new Error('no') }");
    const d = p.migrationDecider();
    const faults = randomFaults(10, 3);
    const out = new Float64Array(10 * DECISION_STRIDE);
    d.decideFaults(faults, 10, CTX, out);
    expect(d.fallbacks).toBe(10);
    const expected = new Float64Array(10 * DECISION_STRIDE);
    nativeKernelDefault().decideFaults(faults, 10, CTX, expected);
    expect([...out]).toEqual([...expected]);
    using closed = await decisionPolicy("export function restoreLocation() { throw new Error('no') }", "  onFailure: fail-closed\n");
    expect(() => closed.migrationDecider().decideFaults(faults, 10, CTX, out)).toThrow(PolicyError);
  });
  test("after a crash, prepare() rebuilds the sandbox before the next batch", async () => {
    const src = "let n = 0\nfunction down(k) { return down(k + 1) + 1 }\nexport function restoreLocation(f) { if (++n === 3) down(0); return f.gpuId }";
    using p = await decisionPolicy(src);
    // Test only: switch the live instance's stack check off so the recursion crashes the Wasm module.
    p.sandbox.live!.runtime.setMaxStackSize(0);
    const d = p.migrationDecider();
    const faults = randomFaults(1, 9);
    const out = new Float64Array(DECISION_STRIDE);
    expect(d.prepare()).toBeUndefined();
    d.decideFaults(faults, 1, CTX, out);
    d.decideFaults(faults, 1, CTX, out);
    expect(d.fallbacks).toBe(0);
    d.decideFaults(faults, 1, CTX, out); // crashes: decided by the kernel rules
    expect(d.fallbacks).toBe(1);
    const ready = d.prepare();
    expect(ready).toBeInstanceOf(Promise);
    await ready;
    d.decideFaults(faults, 1, CTX, out);
    expect(out[0]).toBe(faults[0]!);
    expect(d.fallbacks).toBe(1);
  });
});

describe("batch hook forms", () => {
  test("a batch hook that leaves slots unwritten is invalid-output, per fault", async () => {
    using p = await decisionPolicy(
      "export function restoreLocationBatch(b) { for (let i = 0; i < b.n; i += 2) b.decisions[3 * i] = b.faults[i * b.stride + b.F.gpuId] }",
    );
    const d = p.migrationDecider();
    const faults = randomFaults(10, 5);
    const out = new Float64Array(10 * DECISION_STRIDE);
    d.decideFaults(faults, 10, CTX, out);
    expect(d.fallbacks).toBe(5);
    expect(p.log.entries().at(-1)!.fallback?.message).toMatch(/fault 1 .*no location was written/);
    for (let i = 0; i < 10; i += 2) expect(out[i * DECISION_STRIDE]).toBe(faults[i * FAULT_STRIDE]!);
  });
});

describe("the kernel library", () => {
  test("migration plugins call the kernel's rules through the frozen global `kernel`", async () => {
    using p = await decisionPolicy(
      "export function restoreLocation(f, ctx) { return kernel.restoreLocation(f, ctx) }\nexport function migrationWindow(f) { const w = kernel.migrationWindow(f); return { start: f.addr, last: w.last } }",
    );
    const d = p.migrationDecider();
    const n = 2000;
    const faults = randomFaults(n, 11);
    const out = new Float64Array(n * DECISION_STRIDE);
    const ref = new Float64Array(n * DECISION_STRIDE);
    d.decideFaults(faults, n, CTX, out);
    nativeKernelDefault().decideFaults(faults, n, CTX, ref);
    expect(p.log.entries().find((e) => e.fallback)?.fallback).toBeUndefined();
    expect(d.fallbacks).toBe(0);
    for (let i = 0; i < n; i++) {
      expect(out[i * DECISION_STRIDE]).toBe(ref[i * DECISION_STRIDE]!);
      expect(out[i * DECISION_STRIDE + 1]).toBe(faults[i * FAULT_STRIDE + 2]!);
      expect(out[i * DECISION_STRIDE + 2]).toBe(ref[i * DECISION_STRIDE + 2]!);
    }
  });
  test("the library cannot be replaced by the plugin", async () => {
    const src =
      "export function restoreLocation(f, ctx) {\n" +
      "  try { kernel.restoreLocation = () => 0 } catch (e) {}\n" +
      "  try { globalThis.kernel = { restoreLocation: () => 0 } } catch (e) {}\n" +
      "  try { delete globalThis.kernel } catch (e) {}\n" +
      "  return kernel.restoreLocation(f, ctx)\n}";
    using p = await Policy.load(join(tempFolder({ "p.yaml": policyYaml("  plugin: plugin.js\n"), "plugin.js": src }), "p.yaml"));
    const ctx = { gpus: [{ id: 5, index: 0, hiveId: 0, appApu: false, vramBytes: 1 }], xnack: true, nowNs: 0 };
    const d = await p.invoke("restoreLocation", { gpuId: 5, gpuIndex: 0, accessMask: 1, addr: 3, rangeLast: 10 }, ctx);
    expect(d).toMatchObject({ by: "plugin", value: 5 });
  });
});
