/**
 * Kernel fidelity: rules where the model once deviated from kfd_svm.c / kfd_migrate.c /
 * kfd_chardev.c (fidelity review). Each block quotes the kernel code it checks.
 */
import { describe, expect, test } from "bun:test";
import { KfdError } from "../../runtime/errors.ts";
import { SVM_ATTR } from "../../runtime/svm/constants.ts";
import { BASE, fixture, GIB, GIB_PAGES, gpus, PID } from "./helpers.ts";

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
