/**
 * Every shipped migration policy earns its place: on its showcase workload (a built-in,
 * docs/policies.md) it beats kernel-default in the figure it exists for. Each policy runs
 * sandboxed through the real simulator, as `svmrt sim --policy` runs it; kernel-default runs
 * natively (test/sim/sandboxed.test.ts proves the sandboxed one identical on every
 * built-in). Assertions are directions with margins, not exact numbers, so a change of the
 * cost model that keeps the finding keeps the test.
 */
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { nativeKernelDefault } from "../../runtime/policy/contracts/migration.ts";
import { builtinWorkload } from "../../runtime/sim/builtins.ts";
import { runSimAsync, type SimResult } from "../../runtime/sim/engine.ts";
import { resolveMigrationPolicy } from "../../runtime/sim/policy.ts";
import { loadProfile } from "../../runtime/sim/profile.ts";

const ROOT = join(import.meta.dir, "../..");
const SEED = 1;
/** A showcase cell runs in about a second or two; a loaded 2-core machine gets room. */
const CELL_TIMEOUT_ms = 60_000;

const policyFile = (name: string): string => join(ROOT, "policies/migration", `${name}.yaml`);

/** `workload` on `profile` with the shipped policy `policy` (sandboxed), or natively when undefined. */
async function cell(profileName: string, workloadName: string, policy: string | undefined): Promise<SimResult> {
  const profile = loadProfile(profileName);
  const workload = builtinWorkload(workloadName, profile);
  if (workload === undefined) throw new Error(`no built-in workload ${workloadName}`);
  if (policy === undefined) return runSimAsync({ profile, workload, decider: nativeKernelDefault(), seed: SEED });
  using resolved = await resolveMigrationPolicy(policyFile(policy), { seed: SEED });
  await resolved.decider.prepare?.();
  const r = await runSimAsync({ profile, workload, decider: resolved.decider, seed: SEED });
  // The plugin decided every fault itself: no figure below is the fallback's.
  expect(r.policyFallbacks).toBe(0);
  expect(r.policy).toBe(policy);
  return r;
}

const bytesMoved = (r: SimResult): number => r.bytesMigrated.h2d + r.bytesMigrated.d2h + r.bytesMigrated.d2d;

describe("thrash-guard on pingpong: fewer thrash events and less simulated time", () => {
  for (const profile of ["dev-2gpu", "mi300x-8"]) {
    test(profile, async () => {
      const kernel = await cell(profile, "pingpong", undefined);
      const guard = await cell(profile, "pingpong", "thrash-guard");
      // The kernel bounces the 64 MiB range between the GPUs every round.
      expect(kernel.thrashEvents).toBeGreaterThanOrEqual(8);
      expect(guard.gpuFaultsFatal).toBe(0);
      expect(guard.accesses).toBe(kernel.accesses);
      // At most half the thrash events, at least 25% less simulated time.
      expect(guard.thrashEvents).toBeLessThanOrEqual(kernel.thrashEvents / 2);
      expect(guard.simTimeNs).toBeLessThanOrEqual(kernel.simTimeNs * 0.75);
    }, CELL_TIMEOUT_ms);
  }

  test("no ping-pong, no change: on stream it decides as the kernel", async () => {
    const kernel = await cell("dev-2gpu", "stream", undefined);
    const guard = await cell("dev-2gpu", "stream", "thrash-guard");
    expect({ ...guard, policy: "" }).toEqual({ ...kernel, policy: "" });
  }, CELL_TIMEOUT_ms);
});

describe("density-prefetch on stream-64k: fewer GPU faults", () => {
  for (const profile of ["dev-2gpu", "mi300x-8"]) {
    test(profile, async () => {
      const kernel = await cell(profile, "stream-64k", undefined);
      const density = await cell(profile, "stream-64k", "density-prefetch");
      // The same bytes arrive (each page once), with at most a third of the handled faults.
      expect(density.bytesMigrated).toEqual(kernel.bytesMigrated);
      expect(density.gpuFaults).toBeLessThanOrEqual(kernel.gpuFaults / 3);
      expect(density.gpuFaultsFatal).toBe(0);
    }, CELL_TIMEOUT_ms);
  }
});

describe("xgmi-aware on stencil, 8-GPU XGMI hive: fewer bytes moved", () => {
  test("mi300x-8", async () => {
    const kernel = await cell("mi300x-8", "stencil", undefined);
    const xgmi = await cell("mi300x-8", "stencil", "xgmi-aware");
    // Halo blocks are read over XGMI instead of bouncing through system memory: at most a
    // quarter of the bytes, no VRAM->VRAM move, and no slower.
    expect(bytesMoved(xgmi)).toBeLessThanOrEqual(bytesMoved(kernel) / 4);
    expect(xgmi.bytesMigrated.d2d).toBe(0);
    expect(xgmi.simTimeNs).toBeLessThanOrEqual(kernel.simTimeNs);
    expect(xgmi.gpuFaultsFatal).toBe(0);
  }, CELL_TIMEOUT_ms);
});

describe("access-counter on hotset-remote: less simulated time", () => {
  for (const profile of ["dev-2gpu", "mi300x-8"]) {
    test(profile, async () => {
      const kernel = await cell(profile, "hotset-remote", undefined);
      const counter = await cell(profile, "hotset-remote", "access-counter");
      // The kernel maps the ACCESS_IN_PLACE hot set in system memory and reads it remotely
      // on every pass; the counter migrates it once it is hot: all 16 MiB, at least 25%
      // less simulated time.
      expect(kernel.bytesMigrated.h2d).toBe(0);
      expect(counter.bytesMigrated.h2d).toBe(16 * 2 ** 20);
      expect(counter.simTimeNs).toBeLessThanOrEqual(kernel.simTimeNs * 0.75);
      expect(counter.gpuFaultsFatal).toBe(0);
    }, CELL_TIMEOUT_ms);
  }

  test("it migrates where the kernel does, after counting (it does not win by never moving)", async () => {
    const kernel = await cell("dev-2gpu", "stream", undefined);
    const counter = await cell("dev-2gpu", "stream", "access-counter");
    expect(counter.bytesMigrated.h2d).toBe(kernel.bytesMigrated.h2d);
    // Counting costs a fault: the range's first fault maps 64 KiB in place, its second
    // migrates the block; once the range lives on gpu0, the kernel's rule moves the rest.
    expect(counter.gpuFaults).toBeGreaterThan(kernel.gpuFaults);
  }, CELL_TIMEOUT_ms);
});
