/**
 * How the simulator's fault workers hand faults to the policy: every fault pending on a GPU
 * when its worker runs goes in the worker's batch (at most MIGRATION_BOUNDS.fault_batch_max),
 * one decideFaults call per process of the batch; each GPU drains its own faults. The
 * workloads use unregistered memory, so each wave's first fault creates its own 2 MiB range
 * (kfd-svm.md §3) and no fault of a batch is a duplicate of another.
 */
import { describe, expect, test } from "bun:test";
import { F, FAULT_STRIDE, MIGRATION_BOUNDS, type MigrationDecider, nativeKernelDefault, type PolicyContext } from "../../runtime/policy/contracts/migration.ts";
import { runSim, type SimResult } from "../../runtime/sim/engine.ts";
import { loadProfile } from "../../runtime/sim/profile.ts";
import { parseWorkload } from "../../runtime/sim/workload.ts";

/** One decideFaults call as the policy saw it. */
interface DecideCall {
  n: number;
  nowNs: number;
  /** gpu_ids of the call's faults, in record order, without repeats. */
  gpuIds: number[];
  /** faultNs of every record. */
  faultNs: number[];
  ctx: PolicyContext;
}

/** Run `yaml` on dev-2gpu with the native kernel default, recording every decideFaults call. */
function runCounting(yaml: string): { r: SimResult; calls: DecideCall[] } {
  const profile = loadProfile("dev-2gpu");
  const base = nativeKernelDefault();
  const calls: DecideCall[] = [];
  const decider: MigrationDecider = {
    ...base,
    name: "counting",
    decideFaults(faults, n, ctx, out) {
      const gpuIds: number[] = [];
      const faultNs: number[] = [];
      for (let i = 0; i < n; i++) {
        const id = faults[i * FAULT_STRIDE + F.gpuId]!;
        if (!gpuIds.includes(id)) gpuIds.push(id);
        faultNs.push(faults[i * FAULT_STRIDE + F.faultNs]!);
      }
      calls.push({ n, nowNs: ctx.nowNs, gpuIds, faultNs, ctx });
      base.decideFaults(faults, n, ctx, out);
    },
  };
  const r = runSim({ profile, workload: parseWorkload("batch.yaml", yaml, profile), decider, seed: 1, fullCheckEvery: 64 });
  return { r, calls };
}

const sum = (calls: DecideCall[]) => calls.reduce((s, c) => s + c.n, 0);

describe("fault batches reaching the policy", () => {
  test("16 waves of one GPU faulting at time 0 are decided in one call of 16; 512 faults take 35 calls", () => {
    const { r, calls } = runCounting(
      "kind: Workload\nname: w\nallocations:\n  - { name: a, size: 1GiB, register: false }\n" +
        "streams:\n  - { agent: gpu0, waves: 16, ops: [ { access: { alloc: a } } ] }\n",
    );
    expect(r.gpuFaults).toBe(512);
    expect(r.gpuFaultsDropped).toBe(0);
    // Every handled fault was decided once, in batches: the first holds all 16 waves.
    expect(sum(calls)).toBe(512);
    expect(calls.length).toBe(35);
    expect(calls[0]!.n).toBe(16);
    expect(calls[0]!.nowNs).toBe(0);
    expect(calls[0]!.faultNs).toEqual(new Array(16).fill(0));
    expect(calls.every((c) => c.gpuIds.length === 1)).toBe(true);
  });

  test("a batch holding faults of two processes is decided in one call per process, each with its context", () => {
    const { r, calls } = runCounting(
      "kind: Workload\nname: w\nprocesses:\n  - { pid: 1 }\n  - { pid: 2 }\n" +
        "allocations:\n  - { name: a, size: 64MiB, register: false, pid: 1 }\n  - { name: b, size: 64MiB, register: false, pid: 2 }\n" +
        "streams:\n  - { agent: gpu0, pid: 1, waves: 4, ops: [ { access: { alloc: a } } ] }\n" +
        "  - { agent: gpu0, pid: 2, waves: 4, ops: [ { access: { alloc: b } } ] }\n",
    );
    expect(r.gpuFaults).toBe(64);
    expect(sum(calls)).toBe(64);
    // The worker's first batch (8 faults at time 0): pid 1's four, then pid 2's four, decided
    // once pid 1's are handled (the worker handles them in turn).
    const [first, second] = calls;
    expect(first!.n).toBe(4);
    expect(second!.n).toBe(4);
    expect(first!.nowNs).toBe(0);
    expect(second!.nowNs).toBeGreaterThan(0);
    expect(first!.faultNs).toEqual([0, 0, 0, 0]);
    expect(second!.ctx).not.toBe(first!.ctx);
    // Two processes, two contexts over the whole run.
    expect(new Set(calls.map((c) => c.ctx)).size).toBe(2);
  });

  test("each GPU drains its own faults: two GPUs faulting at time 0 are decided in one call each", () => {
    const { r, calls } = runCounting(
      "kind: Workload\nname: w\nallocations:\n  - { name: a, size: 64MiB, register: false }\n  - { name: b, size: 64MiB, register: false }\n" +
        "streams:\n  - { agent: gpu0, waves: 4, ops: [ { access: { alloc: a } } ] }\n" +
        "  - { agent: gpu1, waves: 4, ops: [ { access: { alloc: b } } ] }\n",
    );
    expect(r.gpuFaults).toBe(64);
    expect(sum(calls)).toBe(64);
    expect(calls.length).toBe(22);
    const atZero = calls.filter((c) => c.nowNs === 0);
    expect(atZero.map((c) => c.n)).toEqual([4, 4]);
    expect(atZero.map((c) => c.gpuIds.length)).toEqual([1, 1]);
    expect(atZero[0]!.gpuIds[0]).not.toBe(atZero[1]!.gpuIds[0]);
    expect(calls.every((c) => c.gpuIds.length === 1)).toBe(true);
  });

  test(`512 faults pending at once go to the policy in calls of at most ${MIGRATION_BOUNDS.fault_batch_max}`, () => {
    const { r, calls } = runCounting(
      "kind: Workload\nname: w\nallocations:\n  - { name: a, size: 1GiB, register: false }\n  - { name: b, size: 1GiB, register: false }\n" +
        "streams:\n  - { agent: gpu0, waves: 256, ops: [ { access: { alloc: a, count: 512 } } ] }\n" +
        "  - { agent: gpu0, waves: 256, ops: [ { access: { alloc: b, count: 512 } } ] }\n",
    );
    expect(r.gpuFaults).toBe(512);
    expect(calls.map((c) => c.n)).toEqual([MIGRATION_BOUNDS.fault_batch_max, MIGRATION_BOUNDS.fault_batch_max]);
    // The first batch at time 0; the second when the worker is free again.
    expect(calls[0]!.nowNs).toBe(0);
    expect(calls[1]!.nowNs).toBeGreaterThan(0);
  });
});
