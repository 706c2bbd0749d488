/**
 * kfd-svm.md, rule by rule, as scenarios with exact expected counts. Every model here runs
 * with the full invariant check after every operation (fullCheckEvery 1).
 */
import { describe, expect, test } from "bun:test";
import { KfdError } from "../../runtime/errors.ts";
import {
  type EvictionRequest,
  LOC_UNDEFINED,
  type MigrationDecider,
  nativeKernelDefault,
  SVM_FLAG,
} from "../../runtime/policy/contracts/migration.ts";
import { largestRangePages, SVM_ATTR } from "../../runtime/svm/constants.ts";
import { type AttrPair, SvmModel, THRASH_MOVES_MAX } from "../../runtime/svm/model.ts";
import { MOVE_STRIDE } from "../../runtime/svm/range.ts";
import { BASE, errnoOf, FAULT_RESULT, fixture, GIB, GIB_PAGES, gpus, MIB2_PAGES, PID, TEST_COSTS } from "./helpers.ts";

const A = SVM_ATTR;
const G0 = 0x3fe1;
const G1 = 0x3fe2;
const MS = 1_000_000;

function rangesOf(m: ReturnType<typeof fixture>["m"]): [number, number][] {
  const out: [number, number][] = [];
  for (let r = m.proc(PID).ranges.head; r !== null; r = r.next) out.push([r.start, r.last]);
  return out;
}

function get(m: ReturnType<typeof fixture>["m"], start: number, n: number, attrs: AttrPair[]): AttrPair[] {
  return m.getAttr(PID, start, n, attrs);
}

describe("§1 data model", () => {
  test("largest range: VRAM >> 17 pages, clamped 2 MiB..1 GiB, power of two", () => {
    expect(largestRangePages(64 * GIB)).toBe(GIB_PAGES);
    expect(largestRangePages(32 * GIB)).toBe(GIB_PAGES);
    expect(largestRangePages(16 * GIB)).toBe(131_072);
    expect(largestRangePages(3 * GIB)).toBe(16_384);
    expect(largestRangePages(32 * 2 ** 20)).toBe(512);
    expect(largestRangePages(48 * GIB)).toBe(GIB_PAGES);
  });

  test("new ranges are chopped at the process minimum over its GPUs, at aligned boundaries", () => {
    const g = gpus(2);
    g[1]!.vramBytes = 16 * GIB;
    const { m } = fixture(g);
    m.setAttr(PID, BASE, 3 * GIB_PAGES, [], 0);
    expect(m.proc(PID).ranges.count).toBe(6);
    const f = fixture(gpus(1));
    f.m.setAttr(PID, BASE + 100, GIB_PAGES, [], 0);
    expect(rangesOf(f.m)).toEqual([
      [BASE + 100, BASE + GIB_PAGES - 1],
      [BASE + GIB_PAGES, BASE + GIB_PAGES + 99],
    ]);
  });

  test("new range defaults (XNACK on: access for every SVM GPU; off: none)", () => {
    for (const xnack of [true, false]) {
      const { m } = fixture(gpus(2), { xnack });
      m.setAttr(PID, BASE, 1024, [], 0);
      const q = get(m, BASE, 1024, [
        [A.PREFERRED_LOC, 0],
        [A.PREFETCH_LOC, 0],
        [A.GRANULARITY, 0],
        [A.SET_FLAGS, 0],
        [A.ACCESS, G0],
        [A.ACCESS, G1],
      ]);
      const acc = xnack ? A.ACCESS : A.NO_ACCESS;
      expect(q).toEqual([
        [A.PREFERRED_LOC, LOC_UNDEFINED],
        [A.PREFETCH_LOC, LOC_UNDEFINED],
        [A.GRANULARITY, 9],
        [A.SET_FLAGS, SVM_FLAG.HOST_ACCESS | SVM_FLAG.COHERENT],
        [acc, G0],
        [acc, G1],
      ]);
    }
  });

  test("VRAM is reserved for the whole range even when one 2 MiB window migrates", () => {
    const f = fixture(gpus(1));
    f.m.setAttr(PID, BASE, GIB_PAGES, [], 0);
    expect(f.fault(0, BASE, 0)[0]).toBe(FAULT_RESULT.MIGRATED);
    expect(f.m.vramUsedPages[0]).toBe(GIB_PAGES);
    expect(f.m.proc(PID).ranges.head!.vramPages).toBe(MIB2_PAGES);
  });
});

describe("§2 GPU fault with XNACK on", () => {
  test("streaming 1 GiB once, granularity 9: 512 handled faults and 1 GiB host-to-device", () => {
    const f = fixture(gpus(1));
    f.m.setAttr(PID, BASE, GIB_PAGES, [], 0);
    let t = 0;
    for (let w = 0; w < 512; w++) {
      const [res, done] = f.fault(0, BASE + w * MIB2_PAGES, t);
      expect(res).toBe(FAULT_RESULT.MIGRATED);
      t = done + 2 * MS;
    }
    const s = f.m.stats;
    expect(s.gpuFaults).toBe(512);
    expect(s.gpuFaultsDropped).toBe(0);
    expect(s.migrations).toEqual({ h2d: 512, d2h: 0, d2d: 0 });
    expect(s.bytesMigrated.h2d).toBe(GIB);
    expect(s.migrationsByTrigger.pagefault_gpu).toBe(512);
    expect(f.m.proc(PID).faults[0]).toBe(512);
    expect(f.m.proc(PID).pageIn[0]).toBe(GIB_PAGES);
  });

  test("the kernel's event text for one migrating fault", () => {
    const f = fixture(gpus(1));
    f.m.setAttr(PID, BASE, MIB2_PAGES, [], 0);
    f.events.length = 0;
    f.fault(0, BASE + 5, 0, true);
    expect(f.events).toEqual([
      "7 10000 -4242 @100005(3fe1) W",
      "5 10000 -4242 @100000(200) 0->3fe1 ffffffff:ffffffff 1",
      "6 10512 -4242 @100000(200) 0->3fe1 1 0",
      "8 10612 -4242 @100005(3fe1) M",
    ]);
  });

  test("duplicate window: 2 ms per whole range, a dropped fault emits nothing", () => {
    const f = fixture(gpus(1));
    f.m.setAttr(PID, BASE, GIB_PAGES, [], 0);
    f.m.setAttr(PID, BASE + GIB_PAGES, MIB2_PAGES, [], 0);
    const [, done] = f.fault(0, BASE, 0);
    const n = f.events.length;
    expect(f.fault(0, BASE + 10 * MIB2_PAGES, done + 1_999_999)[0]).toBe(FAULT_RESULT.DROPPED);
    expect(f.events.length).toBe(n);
    // Another range is not suppressed.
    expect(f.fault(0, BASE + GIB_PAGES, done + 1000)[0]).toBe(FAULT_RESULT.MIGRATED);
    expect(f.fault(0, BASE + 10 * MIB2_PAGES, done + 2 * MS)[0]).toBe(FAULT_RESULT.MIGRATED);
    expect(f.m.stats.gpuFaults).toBe(3);
    expect(f.m.stats.gpuFaultsDropped).toBe(1);
  });

  test("two faults on one range in one batch: the second is a duplicate", () => {
    const f = fixture(gpus(1));
    f.m.setAttr(PID, BASE, GIB_PAGES, [], 0);
    const res = new Uint8Array(2);
    f.m.restorePages(PID, 0, 2, new Float64Array([BASE, BASE + 4096]), new Uint8Array(2), 0, res, new Float64Array(2));
    expect([...res]).toEqual([FAULT_RESULT.MIGRATED, FAULT_RESULT.DROPPED]);
  });

  test("the window is the granularity block clipped to the range", () => {
    const f = fixture(gpus(1));
    f.m.setAttr(PID, BASE + 100, 601, [], 0);
    f.fault(0, BASE + 100, 0);
    expect(f.m.stats.bytesMigrated.h2d).toBe(412 * 4096);
    const g = fixture(gpus(1));
    g.m.setAttr(PID, BASE, 1024, [[A.GRANULARITY, 0]], 0);
    g.fault(0, BASE + 7, 0);
    expect(g.m.stats.bytesMigrated.h2d).toBe(4096);
  });

  test("full VRAM: the fault maps system memory in place, PAGE_FAULT_END still says M", () => {
    const f = fixture(gpus(1, { vramReservedBytes: 64 * GIB - 512 * 2 ** 20 }));
    f.m.setAttr(PID, BASE, GIB_PAGES, [], 0);
    const [res] = f.fault(0, BASE, 0);
    // svm_range_restore_pages sets migration = true before svm_migrate_to_vram fails.
    expect(res).toBe(FAULT_RESULT.MIGRATED);
    expect(f.m.stats.vramFallbacks).toBe(1);
    expect(f.m.stats.migrations).toEqual({ h2d: 0, d2h: 0, d2d: 0 });
    expect(f.m.probe(f.m.proc(PID), 0, BASE)).toBe(0);
    expect(f.events.at(-1)).toBe("8 10100 -4242 @100000(3fe1) M");
  });

  test("GPU without SVM support and XNACK off: faults are fatal (VMFAULT)", () => {
    const f = fixture(gpus(1), { xnack: false });
    f.m.setAttr(PID, BASE, 512, [], 0);
    expect(f.fault(0, BASE, 0)[0]).toBe(FAULT_RESULT.FATAL);
    expect(f.events.at(-1)).toBe("1 1092:test");
    const g = fixture(gpus(1, { svmSupported: false }));
    expect(g.fault(0, BASE, 0)[0]).toBe(FAULT_RESULT.FATAL);
    expect(g.m.stats.gpuFaultsFatal).toBe(1);
  });
});

describe("§3 fault on an unregistered address", () => {
  test("the 512-page block, clipped by neighbours and the vma", () => {
    const f = fixture(gpus(1));
    f.m.setAttr(PID, BASE + 600, 101, [], 0);
    f.fault(0, BASE + 1000, 0);
    f.fault(0, BASE + 520, 0);
    f.fault(0, BASE + 2048 + 3, 0);
    expect(rangesOf(f.m)).toEqual([
      [BASE + 512, BASE + 599],
      [BASE + 600, BASE + 700],
      [BASE + 701, BASE + 1023],
      [BASE + 2048, BASE + 2559],
    ]);
    const g = fixture(gpus(1), { vma: [[BASE + 10, 291, "anon"]] });
    g.fault(0, BASE + 20, 0);
    expect(rangesOf(g.m)).toEqual([[BASE + 10, BASE + 300]]);
  });

  test("heap and stack get preferred SYSMEM: mapped in place, nothing migrates", () => {
    const f = fixture(gpus(1), { vma: [[BASE, 4096, "heap"]] });
    expect(f.fault(0, BASE + 3, 0)[0]).toBe(FAULT_RESULT.UPDATED);
    expect(get(f.m, BASE, 1, [[A.PREFERRED_LOC, 0]])).toEqual([[A.PREFERRED_LOC, 0]]);
    expect(f.m.stats.bytesMigrated.h2d).toBe(0);
  });

  test("a non-SVM buffer nearby gives a single-page range; inside it the fault fails; no vma fails", () => {
    const f = fixture(gpus(1));
    f.m.boMappingAdd(PID, BASE + 100, 10);
    expect(f.fault(0, BASE + 5, 0)[0]).toBe(FAULT_RESULT.MIGRATED);
    expect(rangesOf(f.m)).toEqual([[BASE + 5, BASE + 5]]);
    expect(f.fault(0, BASE + 104, 0)[0]).toBe(FAULT_RESULT.FATAL);
    expect(f.fault(0, BASE - 1, 0)[0]).toBe(FAULT_RESULT.FATAL);
  });
});

describe("§4 best restore location", () => {
  test("preferred location SYSMEM migrates nothing: 512 mapping-only faults", () => {
    const f = fixture(gpus(1));
    f.m.setAttr(PID, BASE, GIB_PAGES, [[A.PREFERRED_LOC, 0]], 0);
    let t = 0;
    for (let w = 0; w < 512; w++) {
      const [res, done] = f.fault(0, BASE + w * MIB2_PAGES, t);
      expect(res).toBe(FAULT_RESULT.UPDATED);
      t = done + 2 * MS;
    }
    expect(f.m.stats.gpuFaults).toBe(512);
    expect(f.m.stats.migrations).toEqual({ h2d: 0, d2h: 0, d2d: 0 });
    expect(f.m.vramUsedPages[0]).toBe(0);
  });

  test("preferred GPU in the faulting GPU's hive: migrate there, map remotely", () => {
    const f = fixture(gpus(2, { hiveId: 7 }));
    f.m.setAttr(PID, BASE, 1024, [[A.PREFERRED_LOC, G1]], 0);
    f.fault(0, BASE, 0);
    expect(f.m.proc(PID).ranges.head!.actualLoc).toBe(G1);
    expect(f.m.probe(f.m.proc(PID), 0, BASE)).toBe(G1);
  });

  test("preferred GPU outside the hive: the faulting GPU with ACCESS gets the data", () => {
    const f = fixture(gpus(2));
    f.m.setAttr(PID, BASE, 1024, [[A.PREFERRED_LOC, G1]], 0);
    f.fault(0, BASE, 0);
    expect(f.m.proc(PID).ranges.head!.actualLoc).toBe(G0);
  });

  test("ACCESS_IN_PLACE on a hive peer maps remotely without migrating", () => {
    const f = fixture(gpus(2, { hiveId: 7 }));
    f.m.setAttr(PID, BASE, 1024, [[A.ACCESS_IN_PLACE, G1], [A.PREFETCH_LOC, G0]], 0);
    expect(f.m.stats.migrations.h2d).toBe(1);
    // svm_range_validate_and_map (XNACK on) mapped the aip GPU at SET_ATTR already.
    expect(f.m.probe(f.m.proc(PID), 1, BASE + 600)).toBe(G0);
    // A fault after the duplicate window: the migrate branch runs, nothing moves.
    const [res] = f.fault(1, BASE + 600, 3 * MS);
    expect(res).toBe(FAULT_RESULT.MIGRATED);
    expect(f.m.stats.migrations).toEqual({ h2d: 1, d2h: 0, d2d: 0 });
    expect(f.m.stats.bytesMigrated.h2d).toBe(1024 * 4096);
    expect(f.m.probe(f.m.proc(PID), 1, BASE + 600)).toBe(G0);
  });

  test("ACCESS_IN_PLACE outside the hive pulls the window back to RAM", () => {
    const f = fixture(gpus(2));
    f.m.setAttr(PID, BASE, 1024, [[A.PREFETCH_LOC, G0]], 0);
    f.m.setAttr(PID, BASE, 1024, [[A.ACCESS_IN_PLACE, G1]], 0);
    // SET_ATTR mapped the range (validate_timestamp): fault after the duplicate window.
    f.fault(1, BASE + 600, 3 * MS);
    expect(f.m.stats.migrations).toEqual({ h2d: 1, d2h: 1, d2d: 0 });
    expect(f.m.stats.bytesMigrated.d2h).toBe(512 * 4096);
    expect(f.m.probe(f.m.proc(PID), 1, BASE + 600)).toBe(0);
  });

  test("no access: the fault fails (EACCES)", () => {
    const f = fixture(gpus(2));
    f.m.setAttr(PID, BASE, 1024, [[A.NO_ACCESS, G1]], 0);
    expect(f.fault(1, BASE, 0)[0]).toBe(FAULT_RESULT.FATAL);
  });

  test("an APU in app-APU mode never migrates", () => {
    const f = fixture(gpus(1, { appApu: true }));
    f.m.setAttr(PID, BASE, 1024, [], 0);
    expect(f.fault(0, BASE, 0)[0]).toBe(FAULT_RESULT.UPDATED);
    f.m.setAttr(PID, BASE, 1024, [[A.PREFETCH_LOC, G0]], 0);
    expect(f.m.stats.bytesMigrated.h2d).toBe(0);
  });

  test("a legal but odd decision (a GPU outside the hive) migrates there and maps remotely", () => {
    const base = nativeKernelDefault();
    const odd: MigrationDecider = {
      ...base,
      name: "odd",
      decideFaults(faults, n, ctx, out) {
        base.decideFaults(faults, n, ctx, out);
        for (let i = 0; i < n; i++) out[i * 3] = G1;
      },
    };
    const f = fixture(gpus(2), { decider: odd });
    f.m.setAttr(PID, BASE, 1024, [], 0);
    f.fault(0, BASE, 0);
    expect(f.m.proc(PID).ranges.head!.actualLoc).toBe(G1);
    expect(f.m.probe(f.m.proc(PID), 0, BASE)).toBe(G1);
    f.m.checkFull();
  });
});

describe("§5 SET_ATTR and GET_ATTR", () => {
  test("ACCESS, ACCESS_IN_PLACE and NO_ACCESS set and clear the two bits", () => {
    const { m } = fixture(gpus(2), { xnack: false });
    m.setAttr(PID, BASE, 512, [[A.ACCESS, G0], [A.ACCESS_IN_PLACE, G1]], 0);
    expect(get(m, BASE, 512, [[A.ACCESS, G0], [A.ACCESS, G1]])).toEqual([[A.ACCESS, G0], [A.ACCESS_IN_PLACE, G1]]);
    m.setAttr(PID, BASE, 512, [[A.ACCESS_IN_PLACE, G0], [A.ACCESS, G1]], 0);
    expect(get(m, BASE, 512, [[A.ACCESS, G0], [A.ACCESS, G1]])).toEqual([[A.ACCESS_IN_PLACE, G0], [A.ACCESS, G1]]);
    m.setAttr(PID, BASE, 512, [[A.NO_ACCESS, G0]], 0);
    expect(get(m, BASE, 512, [[A.ACCESS, G0]])).toEqual([[A.NO_ACCESS, G0]]);
  });

  test("a partial set splits; head and tail keep the old attributes; never merges", () => {
    const { m } = fixture(gpus(2));
    m.setAttr(PID, BASE, 1024, [[A.PREFERRED_LOC, G0]], 0);
    m.setAttr(PID, BASE + 100, 100, [[A.PREFERRED_LOC, G1]], 0);
    expect(rangesOf(m)).toEqual([
      [BASE, BASE + 99],
      [BASE + 100, BASE + 199],
      [BASE + 200, BASE + 1023],
    ]);
    expect(get(m, BASE, 100, [[A.PREFERRED_LOC, 0]])[0]![1]).toBe(G0);
    expect(get(m, BASE + 100, 100, [[A.PREFERRED_LOC, 0]])[0]![1]).toBe(G1);
    expect(get(m, BASE + 200, 824, [[A.PREFERRED_LOC, 0]])[0]![1]).toBe(G0);
    m.setAttr(PID, BASE + 100, 100, [[A.PREFERRED_LOC, G0]], 0);
    expect(m.proc(PID).ranges.count).toBe(3);
  });

  test("gaps in the interval become new ranges", () => {
    const { m } = fixture(gpus(1));
    m.setAttr(PID, BASE, 100, [], 0);
    m.setAttr(PID, BASE + 200, 100, [], 0);
    m.setAttr(PID, BASE, 400, [[A.GRANULARITY, 3]], 0);
    expect(rangesOf(m)).toEqual([
      [BASE, BASE + 99],
      [BASE + 100, BASE + 199],
      [BASE + 200, BASE + 299],
      [BASE + 300, BASE + 399],
    ]);
    expect(get(m, BASE, 400, [[A.GRANULARITY, 0]])[0]![1]).toBe(3);
  });

  test("a split keeps placement and the whole-range VRAM reservation", () => {
    const { m } = fixture(gpus(1));
    m.setAttr(PID, BASE, 1024, [[A.PREFETCH_LOC, G0]], 0);
    expect(m.vramUsedPages[0]).toBe(1024);
    m.setAttr(PID, BASE + 256, 256, [[A.GRANULARITY, 4]], 0);
    expect(m.proc(PID).ranges.count).toBe(3);
    expect(m.vramUsedPages[0]).toBe(1024);
    for (let r = m.proc(PID).ranges.head; r !== null; r = r.next) expect(r.vramPages).toBe(r.npages);
  });

  test("granularity is capped at 0x3F; flags set and clear", () => {
    const { m } = fixture(gpus(1));
    m.setAttr(PID, BASE, 512, [[A.GRANULARITY, 0x50], [A.SET_FLAGS, SVM_FLAG.GPU_RO | SVM_FLAG.GPU_EXEC], [A.CLR_FLAGS, SVM_FLAG.COHERENT]], 0);
    expect(get(m, BASE, 512, [[A.GRANULARITY, 0], [A.SET_FLAGS, 0]])).toEqual([
      [A.GRANULARITY, 0x3f],
      [A.SET_FLAGS, SVM_FLAG.HOST_ACCESS | SVM_FLAG.GPU_RO | SVM_FLAG.GPU_EXEC],
    ]);
  });

  test("unknown attribute, unknown gpu_id: EINVAL; unmapped interval: EFAULT", () => {
    const { m } = fixture(gpus(1));
    expect(errnoOf(() => m.setAttr(PID, BASE, 512, [[8, 0]], 0))).toBe("EINVAL");
    expect(errnoOf(() => m.setAttr(PID, BASE, 512, [[A.ACCESS, 0x1234]], 0))).toBe("EINVAL");
    expect(errnoOf(() => m.setAttr(PID, BASE, 512, [[A.PREFERRED_LOC, 0x1234]], 0))).toBe("EINVAL");
    expect(errnoOf(() => m.getAttr(PID, BASE, 512, [[9, 0]]))).toBe("EINVAL");
    expect(errnoOf(() => m.setAttr(PID, BASE - 512, 1024, [], 0))).toBe("EFAULT");
    expect(m.proc(PID).ranges.count).toBe(0);
  });

  test("GET_ATTR over several ranges: UNDEFINED where they differ, AND, NOR, min, intersection", () => {
    const { m } = fixture(gpus(2));
    m.setAttr(PID, BASE, 512, [[A.PREFERRED_LOC, G0], [A.GRANULARITY, 5], [A.SET_FLAGS, SVM_FLAG.GPU_RO], [A.PREFETCH_LOC, 0]], 0);
    m.setAttr(PID, BASE + 512, 512, [[A.PREFERRED_LOC, G1], [A.GRANULARITY, 7], [A.ACCESS_IN_PLACE, G1], [A.PREFETCH_LOC, 0]], 0);
    const q = get(m, BASE, 1024, [
      [A.PREFERRED_LOC, 0],
      [A.PREFETCH_LOC, 7],
      [A.SET_FLAGS, 0],
      [A.CLR_FLAGS, 0],
      [A.GRANULARITY, 0],
      [A.ACCESS, G0],
      [A.ACCESS, G1],
    ]);
    expect(q).toEqual([
      [A.PREFERRED_LOC, LOC_UNDEFINED],
      [A.PREFETCH_LOC, 0],
      [A.SET_FLAGS, SVM_FLAG.HOST_ACCESS | SVM_FLAG.COHERENT],
      [A.CLR_FLAGS, ~(SVM_FLAG.HOST_ACCESS | SVM_FLAG.COHERENT | SVM_FLAG.GPU_RO) >>> 0],
      [A.GRANULARITY, 5],
      [A.ACCESS, G0],
      [A.NO_ACCESS, G1],
    ]);
  });

  test("GET_ATTR where no range exists reports the defaults", () => {
    const { m } = fixture(gpus(1));
    expect(get(m, BASE, 10, [[A.PREFERRED_LOC, 5], [A.CLR_FLAGS, 5], [A.GRANULARITY, 5]])).toEqual([
      [A.PREFERRED_LOC, LOC_UNDEFINED],
      [A.CLR_FLAGS, ~(SVM_FLAG.HOST_ACCESS | SVM_FLAG.COHERENT) >>> 0],
      [A.GRANULARITY, 9],
    ]);
  });

  test("PREFETCH_LOC migrates the whole range on every set, even with an unchanged value", () => {
    const f = fixture(gpus(1));
    f.m.setAttr(PID, BASE, 1024, [[A.PREFETCH_LOC, G0]], 0);
    expect(f.m.stats.migrations.h2d).toBe(1);
    expect(f.m.stats.bytesMigrated.h2d).toBe(1024 * 4096);
    expect(f.m.stats.migrationsByTrigger.prefetch).toBe(1);
    // The same value again, every page already in VRAM: the migration runs and collects no
    // page; its MIGRATE_START/END pair still appears (nothing is counted).
    const before = f.events.length;
    f.m.setAttr(PID, BASE, 1024, [[A.PREFETCH_LOC, G0]], 5 * MS);
    const again = f.events.slice(before);
    expect(again.filter((l) => l.startsWith("5 ")).map((l) => l.split(" ").slice(2, 5).join(" "))).toEqual(["-4242 @100000(400) 0->3fe1"]);
    expect(again.filter((l) => l.startsWith("6 "))).toHaveLength(1);
    expect(f.m.stats.bytesMigrated.h2d).toBe(1024 * 4096);
    // The CPU pulls one window back; actual_loc is still GPU 0, and the same value migrates
    // exactly the pages that left.
    f.m.cpuAccess(PID, BASE + 3, false, 10 * MS);
    expect(f.m.stats.bytesMigrated.d2h).toBe(512 * 4096);
    f.m.setAttr(PID, BASE, 1024, [[A.PREFETCH_LOC, G0]], 20 * MS);
    expect(f.m.stats.migrations.h2d).toBe(2);
    expect(f.m.stats.bytesMigrated.h2d).toBe((1024 + 512) * 4096);
    expect(f.m.stats.migrationsByTrigger.prefetch).toBe(2);
    expect(f.m.vramUsedPages[0]).toBe(1024);
    // Prefetch to system memory brings it all back; again with nothing in VRAM does nothing.
    f.m.setAttr(PID, BASE, 1024, [[A.PREFETCH_LOC, 0]], 30 * MS);
    expect(f.m.stats.bytesMigrated.d2h).toBe((512 + 1024) * 4096);
    expect(f.m.vramUsedPages[0]).toBe(0);
    const after = f.events.length;
    f.m.setAttr(PID, BASE, 1024, [[A.PREFETCH_LOC, 0]], 40 * MS);
    expect(f.events.slice(after).filter((l) => l.startsWith("5 ") || l.startsWith("6 "))).toEqual([]);
  });

  test("a prefetch that moves no page still fires the notifier: XNACK off evicts the queues of a mapped range", () => {
    const f = fixture(gpus(1), { xnack: false });
    f.m.setAttr(PID, BASE, 1024, [[A.ACCESS, G0], [A.PREFETCH_LOC, G0]], 0);
    const moved = f.m.stats.bytesMigrated.h2d;
    const evictions = f.m.stats.queueEvictions;
    // Every page is on G0 and mapped: migrate_vma_setup collects nothing, but its MMU
    // notifier evicts the queues and the restore worker remaps (kfd-svm.md §7).
    f.m.setAttr(PID, BASE, 1024, [[A.PREFETCH_LOC, G0]], 5 * MS);
    expect(f.m.stats.bytesMigrated.h2d).toBe(moved);
    expect(f.m.stats.queueEvictions).toBe(evictions + 1);
    expect(f.m.takeWork().map((w) => w.kind)).toContain("restore");
  });

  test("a prefetch to a GPU is redirected to RAM when an access-in-place GPU is outside its hive", () => {
    const f = fixture(gpus(2));
    f.m.setAttr(PID, BASE, 1024, [[A.ACCESS_IN_PLACE, G1], [A.PREFETCH_LOC, G0]], 0);
    expect(f.m.stats.migrations.h2d).toBe(0);
    const h = fixture(gpus(2, { hiveId: 3 }));
    h.m.setAttr(PID, BASE, 1024, [[A.ACCESS_IN_PLACE, G1], [A.PREFETCH_LOC, G0]], 0);
    expect(h.m.stats.migrations.h2d).toBe(1);
    // XNACK off: ACCESS GPUs count too.
    const x = fixture(gpus(2), { xnack: false });
    x.m.setAttr(PID, BASE, 1024, [[A.ACCESS, G0], [A.ACCESS, G1], [A.PREFETCH_LOC, G0]], 0);
    expect(x.m.stats.migrations.h2d).toBe(0);
  });

  test("SET_XNACK_MODE: negative queries; any set (even to the current mode) needs no user queues", () => {
    const { m } = fixture(gpus(1));
    expect(m.setXnack(PID, -1)).toBe(1);
    expect(m.setXnack(PID, 0)).toBe(0);
    m.proc(PID).userQueues = 1;
    expect(() => m.setXnack(PID, 1)).toThrow(KfdError);
    // kfd_ioctl_set_xnack_mode checks the queue list before comparing the mode.
    expect(() => m.setXnack(PID, 0)).toThrow(KfdError);
    expect(m.setXnack(PID, -1)).toBe(0);
  });
});

describe("§6 migration", () => {
  test("VRAM->VRAM bounces the whole range through RAM, then copies the window", () => {
    const f = fixture(gpus(2));
    f.m.setAttr(PID, BASE, 1024, [[A.PREFETCH_LOC, G0]], 0);
    f.events.length = 0;
    // The prefetch mapped the range on GPU 0 (validate_timestamp): fault after the window.
    f.fault(1, BASE + 600, 3 * MS);
    expect(f.m.stats.migrations).toEqual({ h2d: 2, d2h: 1, d2d: 1 });
    expect(f.m.stats.bytesMigrated).toEqual({ h2d: 1536 * 4096, d2h: 1024 * 4096, d2d: 512 * 4096 });
    const migr = f.events.filter((e) => e.startsWith("5 ") || e.startsWith("6 "));
    expect(migr.map((e) => e.split(" ").slice(3, 5).join(" "))).toEqual([
      "@100000(400) 3fe1->0",
      "@100000(400) 3fe1->0",
      "@100200(200) 0->3fe2",
      "@100200(200) 0->3fe2",
    ]);
    expect(f.m.vramUsedPages[0]).toBe(0);
    expect(f.m.vramUsedPages[1]).toBe(1024);
  });

  test("thrash: a migration that brings a page back to where it left within 10 ms", () => {
    // Windows a = BASE.. and b = BASE+512.. of one range (granularity 9).
    const f = fixture(gpus(1));
    f.m.setAttr(PID, BASE, 2048, [[A.ACCESS, G0]], 0);
    const a = BASE;
    const b = BASE + 512;
    f.fault(0, a, 0); // a: RAM -> GPU
    f.fault(0, b, 20 * MS); // b: RAM -> GPU
    // a arrived 25 ms ago: taking it back to RAM is no thrash, though the range's last
    // migration (b, RAM -> GPU) is the reverse of this one.
    f.m.cpuAccess(PID, a + 3, false, 25 * MS);
    expect(f.m.stats.thrashEvents).toBe(0);
    // a returns 3 ms after it left: thrash.
    f.fault(0, a, 28 * MS);
    expect(f.m.stats.thrashEvents).toBe(1);
    // a leaves again 2 ms after it arrived: thrash; b (no recent move of its pages) follows
    // into RAM without one, and a comes back after b's arrival was the range's last move.
    f.m.cpuAccess(PID, a + 5, false, 30 * MS);
    expect(f.m.stats.thrashEvents).toBe(2);
    f.m.cpuAccess(PID, b + 5, false, 31 * MS);
    expect(f.m.stats.thrashEvents).toBe(2);
    f.fault(0, b, 45 * MS); // b back 14 ms after it left: no thrash
    expect(f.m.stats.thrashEvents).toBe(2);
    f.fault(0, a, 48 * MS); // a back 18 ms after it left: no thrash
    expect(f.m.stats.thrashEvents).toBe(2);
    f.m.cpuAccess(PID, b + 1, false, 49 * MS); // b leaves 4 ms after it arrived: thrash
    f.fault(0, b, 52 * MS); // and comes back 3 ms later, after a's move: thrash
    expect(f.m.stats.thrashEvents).toBe(4);
  });

  test("thrash: records expire against the operation clock, not a leg's copy end (SDMA rings run apart)", () => {
    // GPU 1's ring is busy for ~26 ms with a 1 GiB prefetch; range R's legs on it end late.
    const g = gpus(2);
    const m = new SvmModel({ gpus: g, decider: nativeKernelDefault(), costs: { ...TEST_COSTS, copyNs: (_f, _t, n) => n * 100 }, seed: 1, fullCheckEvery: 1 });
    m.processCreate(PID, { xnack: true, name: "t" });
    m.vmaAdd(PID, BASE, 2 * GIB_PAGES, "anon");
    const R = BASE;
    m.setAttr(PID, BASE + GIB_PAGES, GIB_PAGES, [[A.PREFETCH_LOC, G1]], 0);
    m.setAttr(PID, R, 512, [[A.PREFETCH_LOC, G0]], 0); // RAM -> G0
    m.setAttr(PID, R, 512, [[A.PREFETCH_LOC, 0]], 0.1 * MS); // G0 -> RAM: thrash 1
    m.setAttr(PID, R, 512, [[A.PREFETCH_LOC, G1]], 0.2 * MS); // RAM -> G1, ends at ~26 ms
    m.setAttr(PID, R, 512, [[A.PREFETCH_LOC, 0]], 0.3 * MS); // G1 -> RAM: thrash 2
    expect(m.stats.thrashEvents).toBe(2);
    // RAM -> G0 ends at ~0.45 ms, 0.3 ms after R left G0: thrash, though the previous leg
    // ended 26 ms later than this one.
    m.setAttr(PID, R, 512, [[A.PREFETCH_LOC, G0]], 0.4 * MS);
    expect(m.stats.thrashEvents).toBe(3);
  });

  test("thrash: a range keeps at most THRASH_MOVES_MAX moves", () => {
    const f = fixture(gpus(1));
    for (let k = 0; k < 3 * THRASH_MOVES_MAX; k++) f.m.setAttr(PID, BASE, 512, [[A.PREFETCH_LOC, k % 2 === 0 ? G0 : 0]], k * 10_000);
    const r = f.m.proc(PID).ranges.lookup(BASE)!;
    expect(r.recentMoves!.length).toBe(THRASH_MOVES_MAX * MOVE_STRIDE);
    expect(f.m.stats.thrashEvents).toBe(3 * THRASH_MOVES_MAX - 1);
  });

  test("CPU fault on a VRAM page moves its window back; the last page frees the buffer", () => {
    const f = fixture(gpus(1));
    f.m.setAttr(PID, BASE, 1024, [[A.PREFETCH_LOC, G0]], 0);
    f.m.cpuAccess(PID, BASE + 10, true, MS);
    expect(f.m.stats.cpuFaults).toBe(1);
    expect(f.m.stats.migrationsByTrigger.pagefault_cpu).toBe(1);
    expect(f.m.proc(PID).ranges.head!.actualLoc).toBe(G0);
    f.m.cpuAccess(PID, BASE + 1000, true, 2 * MS);
    expect(f.m.proc(PID).ranges.head!.actualLoc).toBe(0);
    expect(f.m.vramUsedPages[0]).toBe(0);
    expect(f.m.proc(PID).pageOut[0]).toBe(1024);
    // A CPU access to a page in RAM is no fault.
    f.m.cpuAccess(PID, BASE + 1000, true, 3 * MS);
    expect(f.m.stats.cpuFaults).toBe(2);
  });
});

describe("§7 XNACK off and on", () => {
  test("XNACK off: mapped ahead; a CPU invalidation evicts queues, restore after 1 ms remaps", () => {
    const f = fixture(gpus(2), { xnack: false });
    f.m.setAttr(PID, BASE, 1024, [[A.ACCESS, G0], [A.PREFETCH_LOC, G0]], 0);
    const p = f.m.proc(PID);
    expect(f.m.probe(p, 0, BASE)).toBe(G0);
    expect(f.m.probe(p, 1, BASE)).toBe(-1);
    f.m.cpuAccess(PID, BASE, false, MS);
    expect(p.queuesEvicted).toBe(true);
    expect(f.m.stats.queueEvictions).toBe(1);
    const work = f.m.takeWork();
    expect(work.length).toBe(1);
    expect(work[0]!.kind).toBe("restore");
    // The queues are evicted by the notifier that migrate_vma_setup fires, before the 512-page
    // copy (kfd_migrate.c svm_migrate_vma_to_ram): at MS + 10 µs fault service, not after it.
    expect(work[0]!.dueNs).toBe(MS + 10_000 + 1_000 + MS);
    expect(f.events.filter((e) => e.startsWith("9 "))).toEqual([`9 ${MS + 10_000} -4242 3fe1 0`, `9 ${MS + 10_000} -4242 3fe2 0`]);
    const done = f.m.restoreWork(PID, work[0]!.dueNs);
    expect(p.queuesEvicted).toBe(false);
    expect(f.m.probe(p, 0, BASE)).toBe(0);
    expect(f.m.probe(p, 0, BASE + 600)).toBe(G0);
    expect(f.events.filter((e) => e.startsWith("a "))).toEqual([`a ${done} -4242 3fe1 0`, `a ${done} -4242 3fe2 0`]);
  });

  test("XNACK on: a CPU invalidation unmaps from GPUs, no queue eviction", () => {
    const f = fixture(gpus(1));
    f.m.setAttr(PID, BASE, 1024, [], 0);
    f.fault(0, BASE, 0);
    f.m.cpuAccess(PID, BASE + 1, false, MS);
    expect(f.m.stats.queueEvictions).toBe(0);
    expect(f.m.stats.unmaps).toBe(1);
    // Inside the migration: START, the notifier's UNMAP_FROM_GPU (at the migration's start),
    // then END after the 512-page copy (kfd_migrate.c svm_migrate_vma_to_ram).
    expect(f.events.slice(-3).map((e) => e.split(" ").slice(0, 2).join(" "))).toEqual([`5 ${MS + 10_000}`, `b ${MS + 10_000}`, `6 ${MS + 10_512}`]);
    expect(f.events.at(-2)).toBe(`b ${MS + 10_000} -4242 @100000(200) 3fe1 1`);
    expect(f.m.probe(f.m.proc(PID), 0, BASE)).toBe(-1);
  });

  test("GPU_ALWAYS_MAPPED with XNACK on behaves as XNACK off", () => {
    const f = fixture(gpus(1));
    f.m.setAttr(PID, BASE, 1024, [[A.SET_FLAGS, SVM_FLAG.GPU_ALWAYS_MAPPED], [A.PREFETCH_LOC, G0]], 0);
    expect(f.m.probe(f.m.proc(PID), 0, BASE)).toBe(G0);
    f.m.cpuAccess(PID, BASE, false, MS);
    expect(f.m.stats.queueEvictions).toBe(1);
    expect(f.m.stats.unmaps).toBe(0);
  });
});

describe("§8 VRAM pressure", () => {
  const MIB8 = 8 * 2 ** 20;
  const setup = (decider?: MigrationDecider) => {
    const f = fixture(gpus(1, { vramReservedBytes: 64 * GIB - MIB8 }), decider ? { decider } : {});
    for (let i = 0; i < 5; i++) f.m.setAttr(PID, BASE + i * 512, 512, [], 0);
    for (let i = 0; i < 4; i++) f.fault(0, BASE + i * 512, i * MS);
    return f;
  };

  test("the LRU buffer is evicted, whole range, trigger TTM_EVICTION", () => {
    const f = setup();
    expect(f.m.vramUsedPages[0]).toBe(2048);
    f.fault(0, BASE + 4 * 512, 10 * MS);
    expect(f.m.stats.evictions).toBe(1);
    expect(f.m.stats.migrationsByTrigger.ttm_eviction).toBe(1);
    expect(f.m.proc(PID).ranges.head!.actualLoc).toBe(0);
    expect(f.m.vramUsedPages[0]).toBe(2048);
    expect(f.events.some((e) => e.startsWith("5 ") && e.includes("@100000(200) 3fe1->0") && e.endsWith(" 3"))).toBe(true);
    expect(f.events.some((e) => e.startsWith("b ") && e.includes("@100000(200) 3fe1 1"))).toBe(true);
  });

  test("the policy's victim is used; naming none leaves VRAM full and the fault maps RAM", () => {
    const base = nativeKernelDefault();
    const mru: MigrationDecider = { ...base, name: "mru", evictionVictim: (req: EvictionRequest) => req.candidates.length - 1 };
    const f = setup(mru);
    f.fault(0, BASE + 4 * 512, 10 * MS);
    expect(f.m.proc(PID).ranges.head!.actualLoc).toBe(G0);
    expect(f.m.proc(PID).ranges.head!.next!.next!.next!.actualLoc).toBe(0);
    const none: MigrationDecider = { ...base, name: "none", evictionVictim: () => -1 };
    const g = setup(none);
    // The migrate branch ran (and failed): 'M', like svm_range_restore_pages.
    expect(g.fault(0, BASE + 4 * 512, 10 * MS)[0]).toBe(FAULT_RESULT.MIGRATED);
    expect(g.m.stats.evictions).toBe(0);
    expect(g.m.stats.vramFallbacks).toBe(1);
  });
});

describe("§9 process lifecycle", () => {
  test("exit leaves no VRAM, no range, no pending work, even with a restore pending", () => {
    const f = fixture(gpus(2), { xnack: false });
    f.m.setAttr(PID, BASE, 4096, [[A.ACCESS, G0], [A.PREFETCH_LOC, G0]], 0);
    f.m.cpuAccess(PID, BASE, false, MS);
    expect(f.m.proc(PID).restoreScheduled).toBe(true);
    f.m.processDestroy(PID, 2 * MS);
    expect(f.m.processes.size).toBe(0);
    expect([...f.m.vramUsedPages]).toEqual([0, 0]);
    expect(f.m.takeWork()).toEqual([]);
    expect(f.events.at(-1)).toBe("d 1092 test");
  });

  test("munmap: faults on the range drop until the deferred worker frees it", () => {
    const f = fixture(gpus(1));
    f.m.setAttr(PID, BASE, 1024, [[A.PREFETCH_LOC, G0]], 0);
    f.m.vmaRemove(PID, BASE + 512, 512, MS);
    expect(f.fault(0, BASE + 600, 10 * MS)[0]).toBe(FAULT_RESULT.DROPPED);
    const w = f.m.takeWork();
    expect(w.map((x) => x.kind)).toEqual(["deferred"]);
    f.m.deferredWork(PID, w[0]!.dueNs);
    expect(rangesOf(f.m)).toEqual([[BASE, BASE + 511]]);
    expect(f.m.vramUsedPages[0]).toBe(512);
    expect(f.fault(0, BASE + 600, 20 * MS)[0]).toBe(FAULT_RESULT.FATAL);
  });
});

describe("flags that change driver behaviour", () => {
  test("GPU_RO: reads map, a GPU write is a fatal protection fault", () => {
    const f = fixture(gpus(1));
    f.m.setAttr(PID, BASE, 1024, [[A.SET_FLAGS, SVM_FLAG.GPU_RO]], 0);
    expect(f.fault(0, BASE, 0)[0]).toBe(FAULT_RESULT.MIGRATED);
    const p = f.m.proc(PID);
    expect(f.m.probe(p, 0, BASE, false)).toBe(G0);
    expect(f.m.probe(p, 0, BASE, true)).toBe(-1);
    expect(f.fault(0, BASE, 5 * MS, true)[0]).toBe(FAULT_RESULT.FATAL);
    expect(f.events.at(-1)).toBe("1 1092:test");
  });
});
