/**
 * Kernel fidelity: rules where the model once deviated from kfd_svm.c / kfd_migrate.c /
 * kfd_chardev.c (fidelity review). Each block quotes the kernel code it checks.
 */
import { describe, expect, test } from "bun:test";
import { KfdError } from "../../runtime/errors.ts";
import { nativeKernelDefault, SVM_FLAG } from "../../runtime/policy/contracts/migration.ts";
import { SVM_ATTR } from "../../runtime/svm/constants.ts";
import { type SvmCosts, SvmModel } from "../../runtime/svm/model.ts";
import { BASE, errnoOf, FAULT_RESULT, fixture, GIB, GIB_PAGES, gpus, PID } from "./helpers.ts";

// ---- attr-check ----
/**
 * Review: SET_ATTR attribute checks (kfd-svm.md §5; kfd_svm.c svm_range_check_attr):
 *   if (gpuidx < 0) return -EINVAL;
 *   else if (gpuidx < MAX_GPU_INSTANCE && !test_bit(gpuidx, p->svms.bitmap_supported))
 *     { pr_debug("GPU 0x%x not supported\n", val); return -EINVAL; }
 * A gpu_id of a GPU without SVM support is refused for PREFERRED_LOC / PREFETCH_LOC /
 * ACCESS / ACCESS_IN_PLACE / NO_ACCESS. The model accepts it.
 */

const machine = () => {
  const g = gpus(2);
  g[1]!.svmSupported = false;
  return fixture(g);
};

describe("SET_ATTR on a GPU without SVM support", () => {
  for (const [name, type] of [
    ["ACCESS", SVM_ATTR.ACCESS],
    ["ACCESS_IN_PLACE", SVM_ATTR.ACCESS_IN_PLACE],
    ["PREFERRED_LOC", SVM_ATTR.PREFERRED_LOC],
  ] as const) {
    test(`${name} with an unsupported gpu_id: EINVAL`, () => {
      const f = machine();
      const g1 = f.m.gpus[1]!.id;
      expect(() => f.m.setAttr(PID, BASE, 512, [[type, g1]], 0)).toThrow(/EINVAL|not supported|no GPU/);
    });
  }
});

// ---- attr-valid ----
/**
 * Review: svm_range_is_valid (kfd_svm.c) guards both SET_ATTR and GET_ATTR:
 *   vma = vma_lookup(...); if (!vma || (vma->vm_flags & device_vma)) return -EFAULT;
 *   ...
 *   return svm_range_is_vm_bo_mapped(p, start_unchg, (end - 1) >> PAGE_SHIFT);  // -EADDRINUSE
 * svm_range_get_attr:  r = svm_range_is_valid(p, start, size); if (r) return r;
 * The model checks vmas only for SET_ATTR and never checks non-SVM buffer mappings.
 */

describe("svm_range_is_valid", () => {
  test("GET_ATTR on an interval no vma covers fails (EFAULT)", () => {
    const f = fixture(gpus(1)); // vma: [BASE, BASE + 16 GiB)
    const outside = BASE + 16 * GIB_PAGES + 4096;
    expect(() => f.m.getAttr(PID, outside, 512, [[SVM_ATTR.GRANULARITY, 0]])).toThrow();
  });

  test("SET_ATTR over a non-SVM buffer mapping fails (EADDRINUSE)", () => {
    const f = fixture(gpus(1));
    f.m.boMappingAdd(PID, BASE + 1024, 16);
    expect(() => f.m.setAttr(PID, BASE, 2048, [[SVM_ATTR.GRANULARITY, 9]], 0)).toThrow();
  });
});

// ---- get-attr-order ----
/**
 * svm_range_get_attr (kfd_svm.c) checks the interval before the query types, and takes only
 * queries:
 *   r = svm_range_is_valid(p, start, size); ... if (r) return r;
 *   for (i = 0; i < nattr; i++) switch (attrs[i].type) {
 *   case KFD_IOCTL_SVM_ATTR_PREFERRED_LOC: ... case KFD_IOCTL_SVM_ATTR_GRANULARITY: ...
 *   case KFD_IOCTL_SVM_ATTR_ACCESS_IN_PLACE: case KFD_IOCTL_SVM_ATTR_NO_ACCESS: fallthrough;
 *   default: pr_debug("get invalid attr type 0x%x\n", attrs[i].type); return -EINVAL; }
 * and checks an ACCESS query's gpu_id while filling the answers ("invalid gpuid", -EINVAL).
 * The model answered ACCESS_IN_PLACE and NO_ACCESS queries, and never checked non-SVM
 * buffer mappings for GET_ATTR.
 */

describe("GET_ATTR: the interval first, then the query types", () => {
  test("an interval no vma covers is EFAULT even with a type that is no query", () => {
    const f = fixture(gpus(1)); // vma: [BASE, BASE + 16 GiB)
    const outside = BASE + 16 * GIB_PAGES + 4096;
    expect(errnoOf(() => f.m.getAttr(PID, outside, 512, [[SVM_ATTR.NO_ACCESS, f.m.gpus[0]!.id]]))).toBe("EFAULT");
  });

  test("over a non-SVM buffer mapping: EADDRINUSE, as for SET_ATTR", () => {
    const f = fixture(gpus(1));
    f.m.boMappingAdd(PID, BASE + 1024, 16);
    expect(errnoOf(() => f.m.getAttr(PID, BASE, 2048, [[SVM_ATTR.GRANULARITY, 0]]))).toBe("EADDRINUSE");
    expect(errnoOf(() => f.m.getAttr(PID, BASE, 1024, [[SVM_ATTR.GRANULARITY, 0]]))).toBe("no error");
  });

  test("ACCESS_IN_PLACE, NO_ACCESS and unknown types are EINVAL as queries; ACCESS answers for one GPU", () => {
    const f = fixture(gpus(2));
    const [g0, g1] = [f.m.gpus[0]!.id, f.m.gpus[1]!.id];
    f.m.setAttr(PID, BASE, 512, [[SVM_ATTR.ACCESS_IN_PLACE, g1]], 0);
    for (const type of [SVM_ATTR.ACCESS_IN_PLACE, SVM_ATTR.NO_ACCESS, 99]) {
      expect(errnoOf(() => f.m.getAttr(PID, BASE, 512, [[type, g1]]))).toBe("EINVAL");
    }
    expect(f.m.getAttr(PID, BASE, 512, [[SVM_ATTR.ACCESS, g1]])).toEqual([[SVM_ATTR.ACCESS_IN_PLACE, g1]]);
    expect(errnoOf(() => f.m.getAttr(PID, BASE, 512, [[SVM_ATTR.ACCESS, 0x1234]]))).toBe("EINVAL");
    // Values of the other queries are outputs: never checked.
    expect(f.m.getAttr(PID, BASE, 512, [[SVM_ATTR.PREFERRED_LOC, 0xdeadbeef], [SVM_ATTR.ACCESS, g0]])[0]).toEqual([SVM_ATTR.PREFERRED_LOC, 0xffffffff]);
  });
});

// ---- prefetch-error ----
/**
 * Review: a PREFETCH_LOC whose VRAM reservation fails. kfd_svm.c svm_range_set_attr:
 *   r = svm_range_trigger_migration(mm, prange, &migrated);
 *   if (r) goto out_unlock_range;      ...  out_unlock_range: ... if (r) ret = r;
 * svm_migrate_ram_to_vram: r = svm_range_vram_node_new(node, prange, true); if (r) return r;
 * so SET_ATTR reports the failure to user space (kfd-svm.md §1: VRAM "is reserved
 * (accounted) for the whole range before a migration to VRAM"). The model swallows it
 * (model.ts rangeTriggerMigration counts a vramFallback and returns success).
 */

test("PREFETCH_LOC to a GPU whose VRAM cannot hold the range: SET_ATTR fails", () => {
  const f = fixture(gpus(1, { vramReservedBytes: 64 * GIB - 2 ** 20 })); // 1 MiB of VRAM left
  const g0 = f.m.gpus[0]!.id;
  expect(() => f.m.setAttr(PID, BASE, 512, [[SVM_ATTR.PREFETCH_LOC, g0]], 0)).toThrow();
});

// ---- xnack-mode ----
/**
 * Review: SET_XNACK_MODE with user queues. kfd_chardev.c kfd_ioctl_set_xnack_mode:
 *   if (args->xnack_enabled >= 0) {
 *       if (!list_empty(&p->pqm.queues)) { pr_debug("Process has user queues running\n");
 *                                          r = -EBUSY; goto out_unlock; }
 *       if (p->xnack_enabled == args->xnack_enabled) goto out_unlock;
 * The queue check comes first: any set (even to the current mode) fails with EBUSY while
 * the process has queues. The model only refuses a change (model.ts setXnack), and
 * test/svm/rules.test.ts "SET_XNACK_MODE" asserts the model's behaviour.
 */

test("SET_XNACK_MODE to the current value with user queues: EBUSY; a query still works", () => {
  const { m } = fixture(gpus(1));
  m.proc(PID).userQueues = 1;
  expect(() => m.setXnack(PID, 1)).toThrow(KfdError);
  expect(m.setXnack(PID, -1)).toBe(1);
});

// ---- drain ----
/**
 * Review: drain_pagefaults during munmap.
 * kfd-svm.md §2: "if svms.drain_pagefaults: drop (unmap in progress)".
 * kfd_svm.c svm_range_unmap_from_cpu: "Make sure pending page faults are drained in the
 * deferred worker before the range is freed ..." -> atomic_inc(&svms->drain_pagefaults);
 * restore_pages drops every fault of the process while it is set; the deferred_list worker
 * drains and clears it. The model sets drainPagefaults only at process destroy, so a fault
 * on another range during an munmap is handled.
 */

test("munmap in progress: a fault on an unrelated range is dropped until the deferred worker ran", () => {
  const f = fixture(gpus(1));
  const [, t] = f.fault(0, BASE, 0);
  f.m.vmaRemove(PID, BASE, 512, t + 1000); // deferred work pending
  const [res] = f.fault(0, BASE + GIB_PAGES, t + 2000); // another range, still mapped
  expect(res).toBe(FAULT_RESULT.DROPPED);
  // After the deferred worker, faults are handled again.
  f.m.deferredWork(PID, t + 10_000);
  const [res2] = f.fault(0, BASE + GIB_PAGES, t + 20_000);
  expect(res2).toBe(FAULT_RESULT.MIGRATED);
});

// ---- duplicate ----
/**
 * Review: the 2 ms duplicate-fault window (kfd-svm.md §2:
 *   "if now < r.validate_timestamp + 2 ms: drop   # duplicate suppression, per whole range").
 */

describe("duplicate window", () => {
  test("'now' is the time the fault is handled, not the start of its batch", () => {
    // kfd_svm.c svm_range_restore_pages: ktime_t timestamp = ktime_get_boottime(); ...
    //   if (ktime_before(timestamp, ktime_add_ns(prange->validate_timestamp, 2 ms))) drop.
    // Faults are handled one after another; a fault queued behind a 3 ms copy is checked
    // when its turn comes. The model pre-checks every fault of a batch at the batch start.
    const costs: SvmCosts = { copyNs: () => 3_000_000, mapNs: () => 100, faultServiceNs: 10_000, faultDropNs: 10, queueEvictNs: 1_000 };
    const m = new SvmModel({ gpus: gpus(1), decider: nativeKernelDefault(), costs, seed: 1, fullCheckEvery: 1 });
    m.processCreate(PID, { xnack: true });
    m.vmaAdd(PID, BASE, 4096);
    const results = new Uint8Array(2);
    const done = new Float64Array(2);
    // Range B = [BASE+512, BASE+1023] validated at tB.
    m.restorePages(PID, 0, 1, Float64Array.of(BASE + 512), Uint8Array.of(0), 0, results, done);
    const tB = done[0]!;
    expect(results[0]).toBe(FAULT_RESULT.MIGRATED);
    // Batch at tB + 1 ms: a fault on a new range A (3 ms copy) then one on B.
    const now = tB + 1_000_000;
    m.restorePages(PID, 0, 2, Float64Array.of(BASE, BASE + 600), Uint8Array.of(0, 0), now, results, done);
    expect(results[0]).toBe(FAULT_RESULT.MIGRATED);
    // B's fault is handled after A's copy, more than 2 ms after tB: not a duplicate.
    expect(done[0]! - tB).toBeGreaterThan(2_000_000);
    expect(results[1]).not.toBe(FAULT_RESULT.DROPPED);
  });

  test("pieces of a split range start with validate_timestamp 0", () => {
    // kfd_svm.c: svm_range_add clones a partly covered range (svm_range_clone ->
    // svm_range_new: prange->validate_timestamp = 0) and svm_range_split makes the other
    // piece with svm_range_new; neither copies validate_timestamp. The model's split keeps
    // it (range.ts copyAttributes), so a fault on a piece within 2 ms is wrongly dropped.
    const f = fixture(gpus(1));
    const [, t] = f.fault(0, BASE, 0);
    const t2 = f.m.setAttr(PID, BASE + 256, 256, [[SVM_ATTR.GRANULARITY, 8]], t + 100_000);
    const [res] = f.fault(0, BASE + 10 + 0, t2 + 100_000);
    expect(t2 + 100_000).toBeLessThan(t + 2_000_000);
    expect(res).not.toBe(FAULT_RESULT.DROPPED);
  });

  test("mapping at SET_ATTR (GPU_ALWAYS_MAPPED) sets validate_timestamp", () => {
    // kfd_svm.c svm_range_validate_and_map ends with
    //   if (!r) prange->validate_timestamp = ktime_get_boottime();
    // so a stale retry fault right after SET_ATTR mapped the range is dropped as a duplicate.
    const f = fixture(gpus(1));
    const t = f.m.setAttr(PID, BASE, 512, [[SVM_ATTR.SET_FLAGS, SVM_FLAG.GPU_ALWAYS_MAPPED]], 0);
    expect(f.m.probe(f.m.proc(PID), 0, BASE)).toBe(0); // mapped ahead
    const [res] = f.fault(0, BASE, t + 500_000);
    expect(res).toBe(FAULT_RESULT.DROPPED);
  });
});

// ---- fault-counter ----
/**
 * Review: sysfs counters_<gpuid>/faults. kfd_svm.c svm_range_restore_pages ends every path
 * past the range lookup (duplicate dropped, skipped pending range, no vma, EPERM, EACCES,
 * handled) with svm_range_count_fault(node, p, gpuidx), whose comment says: "fault is on
 * different page of same range or fault is skipped to recover later or fault is on invalid
 * virtual address ... WRITE_ONCE(pdd->faults, pdd->faults + 1)". kfd-svm.md §6 names the
 * counter; the model counts only handled faults (model.ts faultApply).
 */

test("a dropped duplicate still increments the faults counter", () => {
  const f = fixture(gpus(1));
  const [, t] = f.fault(0, BASE, 0);
  const [res] = f.fault(0, BASE + 1, t + 1000);
  expect(res).toBe(FAULT_RESULT.DROPPED);
  expect(f.m.proc(PID).faults[0]).toBe(2);
});

// ---- xnack-on-setattr-map ----
/**
 * Review: with XNACK on, SET_ATTR still calls svm_range_validate_and_map(..., MAX_GPU_INSTANCE)
 * for every updated range (kfd_svm.c svm_range_set_attr). With XNACK on its GPU bitmap is
 * bitmap_aip plus, "If prefetch range to GPU, or GPU retry fault migrate range to GPU, which
 * has ACCESS attribute to the range, create mapping on that GPU" (actual_loc's GPU when it is
 * in bitmap_access). kfd-svm.md is silent for XNACK on; the model maps nothing then.
 * But set_attr calls it only when something migrated or update_mapping is set, and
 * svm_range_apply_attrs sets update_mapping for an access attribute only
 * `if (!p->xnack_enabled)` (test/svm/xnack-mapping.test.ts has the exact counts).
 */

describe("XNACK on: SET_ATTR maps like svm_range_validate_and_map", () => {
  test("prefetch to a GPU with ACCESS maps the whole range on that GPU (no faults afterwards)", () => {
    const f = fixture(gpus(1));
    const g0 = f.m.gpus[0]!.id;
    f.m.setAttr(PID, BASE, 512, [[SVM_ATTR.PREFETCH_LOC, g0]], 0);
    const p = f.m.proc(PID);
    // Kernel: bitmap = aip | {actual_loc's GPU if in bitmap_access} -> mapped on GPU 0, in VRAM.
    expect(f.m.probe(p, 0, BASE)).toBe(g0);
    expect(f.m.probe(p, 0, BASE + 511)).toBe(g0);
  });

  test("ACCESS_IN_PLACE alone maps nothing; with a flag attribute the aip GPU is mapped", () => {
    const f = fixture(gpus(2, { hiveId: 7 }));
    const g1 = f.m.gpus[1]!.id;
    f.m.setAttr(PID, BASE, 512, [[SVM_ATTR.ACCESS_IN_PLACE, g1]], 0);
    const p = f.m.proc(PID);
    // Nothing migrated, update_mapping false (XNACK on): validate_and_map is skipped.
    expect(f.m.probe(p, 1, BASE)).toBe(-1);
    // SET_FLAGS sets update_mapping: XNACK on -> bitmap_copy(ctx->bitmap, prange->bitmap_aip).
    f.m.setAttr(PID, BASE, 512, [[SVM_ATTR.SET_FLAGS, SVM_FLAG.GPU_EXEC]], 1000);
    expect(f.m.probe(p, 1, BASE)).toBe(0);
    expect(f.m.probe(p, 0, BASE)).toBe(-1);
  });
});

// ---- xnack-off-own-migration ----
/**
 * Review: XNACK off, a prefetch migration of a range already mapped on a GPU.
 * migrate_vma_setup fires the range's MMU interval notifier (MMU_NOTIFY_MIGRATE) for the
 * kernel's own migrations too; svm_range_cpu_invalidate_pagetables has no owner filter and
 * calls svm_range_evict, which with XNACK off (and the range mapped) quiesces the queues
 * (QUEUE_EVICTION trigger SVM) and schedules restore_work in 1 ms. svm_range_set_attr then
 * says so: `if (migrated && (!p->xnack_enabled || ...ALWAYS_MAPPED) && prange->mapped_to_gpu)
 *   { pr_debug("restore_work will update mappings of GPUs"); continue; }`.
 * kfd-svm.md §7: "A CPU-side invalidation evicts all queues of the process (QUEUE_EVICTION,
 * trigger SVM); a restore worker remaps after 1 ms". The model (docs/workloads.md) instead
 * remaps at once, with no queue eviction — while for XNACK on it does treat the same
 * migration as a notifier invalidation (UNMAP_FROM_GPU, MMU_NOTIFY_MIGRATE).
 */

test("XNACK off: prefetching a mapped range evicts the queues and restore_work remaps", () => {
  const f = fixture(gpus(1), { xnack: false });
  const g0 = f.m.gpus[0]!.id;
  const t = f.m.setAttr(PID, BASE, 512, [[SVM_ATTR.ACCESS, g0]], 0);
  expect(f.m.probe(f.m.proc(PID), 0, BASE)).toBe(0); // mapped ahead, in RAM
  f.events.length = 0;
  f.m.takeWork();
  f.m.setAttr(PID, BASE, 512, [[SVM_ATTR.PREFETCH_LOC, g0]], t + 1000);
  expect(f.events.filter((e) => e.startsWith("9 ")).map((e) => e.split(" ").slice(2).join(" "))).toEqual(["-4242 3fe1 0"]);
  expect(f.m.takeWork().map((w) => w.kind)).toEqual(["restore"]);
});

// ---- invalidation ----
/**
 * Review: CPU-side invalidation details the model gets different from kfd_svm.c.
 */

describe("invalidation", () => {
  test("XNACK off: invalidating a range mapped on no GPU evicts no queues", () => {
    // kfd-svm.md §7: "ranges must be mapped ahead on all access|aip GPUs. A CPU-side
    // invalidation evicts all queues". kfd_svm.c svm_range_evict (XNACK off):
    //   bool mapped = prange->mapped_to_gpu; ... if (!mapped) return r;
    // A range with no access|aip GPU is never mapped, so a CPU fault on its VRAM pages
    // must not stop the process's queues.
    const f = fixture(gpus(1), { xnack: false });
    const g0 = f.m.gpus[0]!.id;
    const t = f.m.setAttr(PID, BASE, 512, [[SVM_ATTR.PREFETCH_LOC, g0]], 0);
    expect(f.m.proc(PID).ranges.head!.vramPages).toBe(512); // prefetched to VRAM, mapped nowhere
    f.events.length = 0;
    f.m.cpuAccess(PID, BASE, false, t + 1000);
    expect(f.events.filter((e) => e.startsWith("9 "))).toEqual([]);
    expect(f.m.stats.queueEvictions).toBe(0);
  });

  test("XNACK on: UNMAP_FROM_GPU goes to every access|aip GPU of a mapped range", () => {
    // kfd_svm.c svm_range_unmap_from_gpus: if (!prange->mapped_to_gpu) return 0;
    //   bitmap_or(bitmap, prange->bitmap_access, prange->bitmap_aip, ...);
    //   for_each_set_bit(gpuidx, bitmap, ...) { kfd_smi_event_unmap_from_gpu(pdd->dev, ...) }
    // XNACK on: both GPUs have ACCESS by default; GPU 0 faulted the window in, GPU 1 never did.
    const f = fixture(gpus(2));
    const [g0, g1] = [f.m.gpus[0]!.id, f.m.gpus[1]!.id];
    const [res, t] = f.fault(0, BASE, 0);
    expect(res).toBe(FAULT_RESULT.MIGRATED);
    f.events.length = 0;
    f.m.cpuAccess(PID, BASE, false, t + 1000);
    const unmaps = f.events.filter((e) => e.startsWith("b "));
    const nodes = unmaps.map((e) => e.split(" ")[4]).sort();
    expect(nodes).toEqual([g0.toString(16), g1.toString(16)].sort());
  });

  test("XNACK on: migrating a window of a mapped range emits UNMAP_FROM_GPU even where nothing was mapped", () => {
    // Same svm_range_unmap_from_gpus: the gate is prange->mapped_to_gpu (whole range), not
    // whether [start, last] is mapped on that GPU. The window-1 migration fires the
    // notifier (MMU_NOTIFY_MIGRATE) on a range already mapped by the window-0 fault.
    const f = fixture(gpus(1));
    let t = f.m.setAttr(PID, BASE, 1024, [], 0);
    [, t] = f.fault(0, BASE, t);
    f.events.length = 0;
    f.fault(0, BASE + 600, t + 3_000_000);
    const unmaps = f.events.filter((e) => e.startsWith("b ")).map((e) => e.split(" ").slice(3).join(" "));
    expect(unmaps).toEqual(["@100200(200) 3fe1 1"]);
  });
});

// ---- migrate-events ----
/**
 * Review: MIGRATE_START/END when migrate_vma_setup collects no page.
 * kfd_migrate.c svm_migrate_vma_to_vram / svm_migrate_vma_to_ram:
 *   kfd_smi_event_migration_start(node, pid, start >> PAGE_SHIFT, end >> PAGE_SHIFT, ...);
 *   r = migrate_vma_setup(&migrate); ...
 *   cpages = migrate.cpages;
 *   if (!cpages) { pr_debug("failed collect migrate sys pages ..."); goto out_free; }
 *   ...
 * out_free:
 *   kfd_smi_event_migration_end(node, pid, start >> PAGE_SHIFT, end >> PAGE_SHIFT, ..., trigger, r);
 * START is emitted before the collection, END on the out_free path: an empty migration still
 * produces the pair. svm_migrate_vram_to_ram only returns early when actual_loc == 0.
 * The model (and docs/workloads.md "emits no MIGRATE event") drops both lines.
 */

test("window with no VRAM page, range still on a GPU: the fault's VRAM->RAM migration still emits START/END", () => {
  const f = fixture(gpus(1));
  let t = f.m.setAttr(PID, BASE, 1024, [], 0);
  [, t] = f.fault(0, BASE, t); // window 0 to VRAM; actual_loc = gpu
  t = f.m.setAttr(PID, BASE, 1024, [[SVM_ATTR.PREFERRED_LOC, 0]], t + 3_000_000);
  f.events.length = 0;
  const [res] = f.fault(0, BASE + 600, t + 3_000_000); // window 1 is in RAM; best = SYSMEM
  expect(res).toBe(FAULT_RESULT.MIGRATED); // the migrate branch ran (actual_loc != 0)
  const migr = f.events.filter((e) => e.startsWith("5 ") || e.startsWith("6 ")).map((e) => e.split(" ").slice(3).join(" "));
  expect(migr).toEqual(["@100200(200) 3fe1->0 ffffffff:0 1", "@100200(200) 3fe1->0 1 0"]);
});

// ---- fault-end-flag ----
/**
 * Review: PAGE_FAULT_END flag when migrate_to_vram fails and the fault maps RAM in place.
 * kfd_svm.c svm_range_restore_pages:
 *   if (prange->actual_loc != 0 || best_loc != 0) {
 *       migration = true;
 *       if (best_loc) { r = svm_migrate_to_vram(...); if (r) { ... else r = 0; } } ...
 *   ...
 *   kfd_smi_event_page_fault_end(node, p->lead_thread, addr, migration);   // 'M'
 * kfd-svm.md §2 sets the flag by the branch ("if r.actual_loc != 0 or best != 0: ...
 * emit PAGE_FAULT_END with 'M' (migrated) or 'U'"), and docs/workloads.md says
 * "PAGE_FAULT_END still says `M` when the migrate branch of §2 ran". The model prints 'U'
 * on the VRAM-full fallback (model.ts faultApply: `else migrated = false`).
 */

test("VRAM full, fallback to RAM in place: PAGE_FAULT_END still says M", () => {
  const f = fixture(gpus(1, { vramReservedBytes: 64 * GIB })); // no VRAM for SVM at all
  f.fault(0, BASE, 0);
  const end = f.events.filter((e) => e.startsWith("8 "));
  expect(end.length).toBe(1);
  expect(end[0]!.endsWith(" M")).toBe(true);
  expect(f.events.some((e) => e.startsWith("5 "))).toBe(false); // nothing actually moved
});
