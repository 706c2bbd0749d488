/**
 * The native kernel-default decider's batch loop (the simulator's hot path) agrees with the
 * record-level kernelRestoreLocation and kernelMigrationWindow on random records, and the
 * model delivers observe() batches to a decider that wants them.
 */
import { describe, expect, test } from "bun:test";
import {
  DECISION_STRIDE,
  emptyFault,
  FAULT_STRIDE,
  kernelMigrationWindow,
  kernelRestoreLocation,
  LOC_UNDEFINED,
  type MigrationDecider,
  nativeKernelDefault,
  type ObservedEvent,
  type ObserveMasks,
  type PolicyContext,
  parseObserveKinds,
  writeFault,
} from "../../runtime/policy/contracts/migration.ts";
import { Prng } from "../../runtime/sim/prng.ts";
import { SVM_ATTR } from "../../runtime/svm/constants.ts";
import { BASE, fixture, gpus, PID } from "./helpers.ts";

describe("native kernel-default", () => {
  test("batch decisions equal kernelRestoreLocation and kernelMigrationWindow", () => {
    const rng = new Prng(99);
    const ctx: PolicyContext = {
      gpus: [
        { id: 0x10, index: 0, hiveId: 1, appApu: false, vramBytes: 2 ** 36 },
        { id: 0x11, index: 1, hiveId: 1, appApu: false, vramBytes: 2 ** 36 },
        { id: 0x12, index: 2, hiveId: 0, appApu: false, vramBytes: 2 ** 36 },
        { id: 0x13, index: 3, hiveId: 2, appApu: true, vramBytes: 2 ** 36 },
      ],
      xnack: true,
      nowNs: 0,
    };
    const N = 4096;
    const batch = new Float64Array(N * FAULT_STRIDE);
    const out = new Float64Array(N * DECISION_STRIDE);
    const faults = [];
    const locs = [0, LOC_UNDEFINED, 0x10, 0x11, 0x12, 0x13];
    for (let i = 0; i < N; i++) {
      const f = emptyFault();
      const g = ctx.gpus[rng.nextInt(4)]!;
      f.gpuId = g.id;
      f.gpuIndex = g.index;
      f.rangeStart = rng.nextInt(10_000);
      f.rangeLast = f.rangeStart + rng.nextInt(5000);
      f.addr = f.rangeStart + rng.nextInt(f.rangeLast - f.rangeStart + 1);
      f.preferredLoc = locs[rng.nextInt(locs.length)]!;
      f.actualLoc = [0, 0x10, 0x11, 0x12][rng.nextInt(4)]!;
      f.accessMask = rng.nextInt(16);
      f.aipMask = rng.nextInt(16) & ~f.accessMask;
      f.granularity = rng.nextInt(12);
      writeFault(batch, i, f);
      faults.push(f);
    }
    nativeKernelDefault().decideFaults(batch, N, ctx, out);
    for (let i = 0; i < N; i++) {
      const f = faults[i]!;
      const w = kernelMigrationWindow(f);
      expect([out[i * 3], out[i * 3 + 1], out[i * 3 + 2]]).toEqual([kernelRestoreLocation(f, ctx), w.start, w.last]);
    }
  });

  /**
   * The events a native decider observing with `masks` receives from one run: a prefetch of a
   * range, a CPU fault on it, then a GPU fault after the 2 ms window (the prefetch mapped the
   * range: validate_timestamp). The CPU fault's and the GPU fault's migrations of a mapped
   * range both unmap the window (svm_range_unmap_from_gpus, MMU_NOTIFY_MIGRATE).
   */
  function observedRun(masks?: ObserveMasks): string[] {
    const seen: string[] = [];
    const d: MigrationDecider = {
      ...nativeKernelDefault(),
      name: "observer",
      observes: true,
      observeMasks: masks,
      observe(events: ObservedEvent[]) {
        for (const e of events) seen.push(`${e.kind} ${e.from}->${e.to} ${e.trigger}`);
      },
    };
    const f = fixture(gpus(1), { decider: d });
    f.m.setAttr(PID, BASE, 1024, [[SVM_ATTR.PREFETCH_LOC, 0x3fe1]], 0);
    f.m.cpuAccess(PID, BASE, false, 1e6);
    f.fault(0, BASE, 3e6);
    return seen;
  }

  test("a decider that observes gets the migration and fault events in order", () => {
    // A migration's unmaps come from migrate_vma_setup's notifier, before its copy ends.
    expect(observedRun()).toEqual(["migrate 0->16353 0", "unmap 0->0 1", "migrate 16353->0 2", "fault 16353->16353 1", "unmap 0->0 1", "migrate 0->16353 1"]);
  });

  test("observeMasks: the model builds only the kinds and triggers the decider selected", () => {
    const parsed = parseObserveKinds(["fault", "migrate:pagefault_cpu", "unmap:unmap_from_cpu"]);
    if (!("masks" in parsed)) throw new Error(parsed.error);
    // The prefetch (trigger 0), the GPU fault's migration (1) and the MMU_NOTIFY_MIGRATE
    // unmaps are not built.
    expect(observedRun(parsed.masks)).toEqual(["migrate 16353->0 2", "fault 16353->16353 1"]);
  });
});
