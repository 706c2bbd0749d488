/**
 * The XNACK-on mapping rules of kfd_svm.c and the place of a migration's unmaps, with exact
 * counts derived from the kernel source (torvalds/linux drivers/gpu/drm/amd/amdkfd):
 * - svm_range_apply_attrs: `case ACCESS / ACCESS_IN_PLACE / NO_ACCESS: if
 *   (!p->xnack_enabled) *update_mapping = true;` (SET_FLAGS / CLR_FLAGS always set it);
 * - svm_range_set_attr: `if (!migrated && !update_mapping) continue;` skips
 *   svm_range_validate_and_map, so with XNACK on an access attribute alone maps nothing;
 * - svm_range_unmap_from_gpus: `if (!prange->mapped_to_gpu) return 0;`, and only
 *   `if (prange->start == start && prange->last == last) prange->mapped_to_gpu = false;`;
 * - kfd_migrate.c svm_migrate_vma_to_vram / _to_ram: kfd_smi_event_migration_start, then
 *   migrate_vma_setup (its MMU notifier runs svm_range_evict -> svm_range_unmap_from_gpus,
 *   which emits UNMAP_FROM_GPU), then the copy, then kfd_smi_event_migration_end.
 */
import { describe, expect, test } from "bun:test";
import { SVM_FLAG } from "../../runtime/policy/contracts/migration.ts";
import { SVM_ATTR as A } from "../../runtime/svm/constants.ts";
import { BASE, FAULT_RESULT, fixture, gpus, PID } from "./helpers.ts";

const MS = 1_000_000;
/** Event kind letters of the SMI text (kfd-uapi.md): fault start/end, migrate start/end, unmap. */
const kinds = (events: string[]): string[] => events.map((e) => e.split(" ")[0]!);
const unmapLines = (events: string[]): string[] => events.filter((e) => e.startsWith("b "));

describe("svm_range_apply_attrs / svm_range_set_attr: which SET_ATTR maps", () => {
  test("XNACK on: ACCESS and ACCESS_IN_PLACE alone map nothing, so the access-in-place GPU faults first", () => {
    const f = fixture(gpus(2, { hiveId: 7 }));
    const [g0, g1] = [f.m.gpus[0]!.id, f.m.gpus[1]!.id];
    f.events.length = 0;
    const t = f.m.setAttr(PID, BASE, 1024, [[A.ACCESS, g0], [A.ACCESS_IN_PLACE, g1]], 0);
    const p = f.m.proc(PID);
    expect(t).toBe(0); // no mapping, no migration: no time spent
    expect(f.events).toEqual([]);
    expect(f.m.probe(p, 0, BASE)).toBe(-1);
    expect(f.m.probe(p, 1, BASE)).toBe(-1);
    expect(p.ranges.head!.mappedToGpu).toBe(false);
    // The access-in-place GPU's first access is a fault, handled (mapped in place).
    const [res] = f.fault(1, BASE, MS);
    expect(res).toBe(FAULT_RESULT.UPDATED);
    expect(f.m.stats.gpuFaults).toBe(1);
    expect(p.faults[1]).toBe(1);
  });

  test("XNACK off: the same SET_ATTR maps the whole range on the access and access-in-place GPUs", () => {
    const f = fixture(gpus(2, { hiveId: 7 }), { xnack: false });
    const [g0, g1] = [f.m.gpus[0]!.id, f.m.gpus[1]!.id];
    const t = f.m.setAttr(PID, BASE, 1024, [[A.ACCESS, g0], [A.ACCESS_IN_PLACE, g1]], 0);
    const p = f.m.proc(PID);
    // svm_range_validate_and_map: bitmap = access | aip = both GPUs; 100 ns per map (TEST_COSTS).
    expect(t).toBe(200);
    expect(f.m.probe(p, 0, BASE + 1023)).toBe(0);
    expect(f.m.probe(p, 1, BASE)).toBe(0);
    expect(p.ranges.head!.mappedToGpu).toBe(true);
  });

  test("XNACK on: a flag attribute asks for the mapping; the bitmap is the aip GPUs", () => {
    const f = fixture(gpus(2, { hiveId: 7 }));
    const g1 = f.m.gpus[1]!.id;
    const t = f.m.setAttr(PID, BASE, 1024, [[A.ACCESS_IN_PLACE, g1], [A.SET_FLAGS, SVM_FLAG.GPU_EXEC]], 0);
    const p = f.m.proc(PID);
    expect(t).toBe(100); // one GPU mapped
    expect(f.m.probe(p, 1, BASE)).toBe(0);
    expect(f.m.probe(p, 0, BASE)).toBe(-1);
  });
});

describe("svm_range_unmap_from_gpus and the migration's notifier", () => {
  test("the first migration of a never-mapped range unmaps nothing; the next ones unmap inside START/END", () => {
    const f = fixture(gpus(2, { hiveId: 7 }));
    const [g0, g1] = [f.m.gpus[0]!.id, f.m.gpus[1]!.id];
    f.m.setAttr(PID, BASE, 1024, [[A.ACCESS_IN_PLACE, g1], [A.PREFERRED_LOC, g0]], 0);
    f.events.length = 0;
    // GPU 1 faults window 0: best_restore_location = preferred GPU 0 (same hive): migrate.
    const [r1, t1] = f.fault(1, BASE, MS);
    expect(r1).toBe(FAULT_RESULT.MIGRATED);
    expect(kinds(f.events)).toEqual(["7", "5", "6", "8"]);
    expect(f.m.stats.unmaps).toBe(0);
    // GPU 0 faults window 1: the range is mapped_to_gpu now, so migrate_vma_setup's notifier
    // unmaps window 1 from every access|aip GPU (GPU 0 access, GPU 1 aip), between START and END.
    f.events.length = 0;
    const [r2] = f.fault(0, BASE + 600, t1 + 3 * MS);
    expect(r2).toBe(FAULT_RESULT.MIGRATED);
    expect(kinds(f.events)).toEqual(["7", "5", "b", "b", "6", "8"]);
    const startNs = f.events[1]!.split(" ")[1]!;
    expect(unmapLines(f.events)).toEqual([`b ${startNs} -4242 @100200(200) 3fe1 1`, `b ${startNs} -4242 @100200(200) 3fe2 1`]);
    expect(f.m.stats.unmaps).toBe(2);
    expect(f.m.stats.gpuFaults).toBe(2);
  });

  test("mapped_to_gpu survives partial unmaps and is cleared only by an unmap of the whole range", () => {
    const f = fixture(gpus(2)); // XNACK on: both GPUs have ACCESS, none is access-in-place
    let t = f.m.setAttr(PID, BASE, 1024, [], 0);
    const r = f.m.proc(PID).ranges.head!;
    // 1. GPU 0 faults window 0 in: a never-mapped range, no unmap.
    [, t] = f.fault(0, BASE, t);
    expect(f.m.stats.unmaps).toBe(0);
    // 2. A CPU fault pulls window 0 back: unmap [window 0] from both GPUs (partial: the flag stays).
    t = f.m.cpuAccess(PID, BASE, false, t + MS);
    expect(f.m.stats.unmaps).toBe(2);
    expect(r.mappedToGpu).toBe(true);
    // 3. GPU 0 faults window 1: no page of the range is mapped anywhere, but mapped_to_gpu
    //    is still set, so the migration unmaps window 1 from both GPUs.
    [, t] = f.fault(0, BASE + 600, t + 3 * MS);
    expect(f.m.stats.unmaps).toBe(4);
    // 4. PREFETCH_LOC = system memory moves the whole range: a whole-range unmap clears the
    //    flag; validate_and_map then has an empty bitmap (no aip GPU, actual_loc 0, not
    //    mapped_to_gpu) and maps nothing.
    t = f.m.setAttr(PID, BASE, 1024, [[A.PREFETCH_LOC, 0]], t + 3 * MS);
    expect(f.m.stats.unmaps).toBe(6);
    expect(r.mappedToGpu).toBe(false);
    expect(f.m.probe(f.m.proc(PID), 0, BASE + 600)).toBe(-1);
    // 5. GPU 0 faults window 0 again: a range no longer mapped_to_gpu, no unmap.
    f.fault(0, BASE, t + 3 * MS);
    expect(f.m.stats.unmaps).toBe(6);
    expect(unmapLines(f.events).length).toBe(6);
    expect(f.m.stats.gpuFaults).toBe(3);
  });

  test("XNACK off: the queue eviction of a migration comes at its start, inside START/END", () => {
    const f = fixture(gpus(1), { xnack: false });
    const g0 = f.m.gpus[0]!.id;
    const t = f.m.setAttr(PID, BASE, 512, [[A.ACCESS, g0]], 0); // mapped ahead, in RAM
    f.events.length = 0;
    f.m.takeWork();
    f.m.setAttr(PID, BASE, 512, [[A.PREFETCH_LOC, g0]], t + 1000);
    expect(kinds(f.events)).toEqual(["5", "9", "6"]);
    const startNs = Number(f.events[0]!.split(" ")[1]);
    expect(f.events[1]).toBe(`9 ${startNs} -4242 3fe1 0`);
    // restore_work is due 1 ms after the eviction (plus the queue eviction time, 1 µs).
    expect(f.m.takeWork().map((w) => w.dueNs)).toEqual([startNs + 1_000 + MS]);
  });
});
