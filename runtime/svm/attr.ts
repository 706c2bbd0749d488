/**
 * SET_ATTR and GET_ATTR (kfd-svm.md §5; kfd_svm.c svm_range_set_attr, svm_range_check_attr,
 * svm_range_apply_attrs, svm_range_get_attr) and the prefetch they trigger
 * (svm_range_trigger_migration, svm_range_best_prefetch_location).
 */
import { KfdError } from "../errors.ts";
import { LOC_SYSMEM, LOC_UNDEFINED, SVM_FLAG } from "../policy/contracts/migration.ts";
import { ERRNO, GRANULARITY_MAX, MIGRATE_TRIGGER, SVM_ATTR, SVM_GET_ATTR_QUERIES } from "./constants.ts";
import { rangeValidateAndMap } from "./map.ts";
import { migrateToRam, migrateToVram } from "./migrate.ts";
import type { SvmModel } from "./model.ts";
import type { SvmProcess } from "./process.ts";
import { SvmRange } from "./range.ts";
import { rangesCovering, vmaCovers } from "./range-list.ts";
import type { AttrPair } from "./types.ts";

/**
 * SET_ATTR on [start, start+npages): split partly covered ranges at the edges (head and
 * tail keep the old attributes), create ranges in the gaps (chopped at the largest range
 * size), apply the attributes; then per range: PREFETCH_LOC migrates the whole range
 * (every time: the pages not on the target yet); svm_range_validate_and_map maps it when
 * it migrated or a mapping was asked (update_mapping: a flag attribute, or with XNACK off
 * an access attribute), except when the migration evicted the queues of a mapped
 * always-mapped range (the restore worker remaps).
 * @returns completion time, ns.
 * @throws KfdError EINVAL (unknown attribute, bad or non-SVM gpu_id, bad size), EFAULT (not
 * mapped), EADDRINUSE (a non-SVM buffer is mapped there), ENOMEM (a PREFETCH_LOC could not
 * reserve VRAM; the other ranges are still updated, failedOpEndNs says when it ended).
 */
export function setAttr(m: SvmModel, pid: number, start: number, npages: number, attrs: readonly AttrPair[], now: number): number {
  const p = m.proc(pid);
  const op = "SVM SET_ATTR";
  m.opStartNs = now;
  if (!Number.isInteger(start) || !Number.isInteger(npages) || start < 0 || npages <= 0) {
    throw new KfdError(op, "EINVAL", ERRNO.EINVAL, `bad interval start ${start} size ${npages} pages`);
  }
  const last = start + npages - 1;
  let prefetch = false;
  for (const [type, value] of attrs) {
    switch (type) {
      case SVM_ATTR.PREFERRED_LOC:
        if (value !== LOC_SYSMEM && value !== LOC_UNDEFINED) checkAttrGpu(m, op, value);
        break;
      case SVM_ATTR.PREFETCH_LOC:
        // svm_range_check_attr: only PREFERRED_LOC may be UNDEFINED; a PREFETCH_LOC names
        // system memory or a GPU ("no GPU 0x%x found", EINVAL).
        if (value !== LOC_SYSMEM) checkAttrGpu(m, op, value);
        prefetch = true;
        break;
      case SVM_ATTR.ACCESS:
      case SVM_ATTR.ACCESS_IN_PLACE:
      case SVM_ATTR.NO_ACCESS:
        checkAttrGpu(m, op, value);
        break;
      case SVM_ATTR.SET_FLAGS:
      case SVM_ATTR.CLR_FLAGS:
      case SVM_ATTR.GRANULARITY:
        break;
      default:
        throw new KfdError(op, "EINVAL", ERRNO.EINVAL, `unknown attribute type ${type}`);
    }
  }
  rangeValidCheck(p, op, start, last);
  const update = rangesCovering(m, p, start, last, true);
  for (const r of update) rangeApplyAttrs(m, r, attrs);
  // svm_range_apply_attrs sets update_mapping for SET_FLAGS and CLR_FLAGS always, and for
  // ACCESS, ACCESS_IN_PLACE and NO_ACCESS only `if (!p->xnack_enabled)`: with XNACK on,
  // access attributes alone map nothing (the GPUs fault the pages in).
  let updateMapping = false;
  for (const [type] of attrs) {
    if (type === SVM_ATTR.SET_FLAGS || type === SVM_ATTR.CLR_FLAGS) updateMapping = true;
    else if (!p.xnack && (type === SVM_ATTR.ACCESS || type === SVM_ATTR.ACCESS_IN_PLACE || type === SVM_ATTR.NO_ACCESS)) updateMapping = true;
  }
  let t = now;
  let failed: KfdError | null = null;
  for (const r of update) {
    let migrated = false;
    if (prefetch) {
      m.triggerMigrated = false;
      const e = rangeTriggerMigration(m, p, r, t);
      if (e < 0) {
        // svm_range_set_attr: r = svm_range_trigger_migration(...); if (r) goto out_unlock_range; ... ret = r.
        t = -1 - e;
        failed = new KfdError(op, "ENOMEM", ERRNO.ENOMEM, `no VRAM for the ${r.npages}-page range at ${r.start} on GPU 0x${r.prefetchLoc.toString(16)}`);
        continue;
      }
      t = e;
      migrated = m.triggerMigrated;
    }
    // svm_range_set_attr: the migration evicted the queues of a mapped always-mapped range:
    // "restore_work will update mappings of GPUs".
    if (migrated && (!p.xnack || (r.flags & SVM_FLAG.GPU_ALWAYS_MAPPED) !== 0) && r.mappedToGpu) continue;
    // Nothing migrated and no mapping asked: svm_range_validate_and_map is skipped.
    if (!migrated && !updateMapping) continue;
    t = rangeValidateAndMap(m, p, r, t);
  }
  p.ctx.nowNs = t;
  m.endOp();
  if (failed !== null) {
    m.failedOpEndNs = t;
    throw failed;
  }
  return t;
}

/**
 * GET_ATTR over [start, start+npages) (§5): no range -> the defaults; else preferred and
 * prefetch UNDEFINED where ranges differ, SET_FLAGS = AND, CLR_FLAGS = NOR, granularity =
 * minimum, access per GPU = intersection over the ranges. Values are written in place;
 * access queries also rewrite the type (ACCESS / ACCESS_IN_PLACE / NO_ACCESS).
 * @throws KfdError in the kernel's order: EFAULT / EADDRINUSE (the interval, as for
 *   SET_ATTR), EINVAL (a type that is no query: ACCESS_IN_PLACE, NO_ACCESS, unknown), EINVAL
 *   (an ACCESS query's gpu_id is no GPU of the process).
 */
export function getAttr(m: SvmModel, pid: number, start: number, npages: number, attrs: AttrPair[]): AttrPair[] {
  const p = m.proc(pid);
  const op = "SVM GET_ATTR";
  if (!Number.isInteger(start) || !Number.isInteger(npages) || start < 0 || npages <= 0) {
    throw new KfdError(op, "EINVAL", ERRNO.EINVAL, `bad interval start ${start} size ${npages} pages`);
  }
  const last = start + npages - 1;
  // svm_range_get_attr checks the interval first (svm_range_is_valid), then the query types:
  // ACCESS asks about one GPU and its answer's type says ACCESS, ACCESS_IN_PLACE or
  // NO_ACCESS, so those two (and unknown types) are EINVAL as queries. Query values are not
  // checked here, but an ACCESS query's gpu_id is, while the answers are filled in.
  rangeValidCheck(p, op, start, last);
  for (const [type] of attrs) {
    if (!GET_ATTR_QUERY_TYPES.has(type)) {
      throw new KfdError(op, "EINVAL", ERRNO.EINVAL, `attribute type ${type} cannot be queried (an ACCESS query answers ACCESS, ACCESS_IN_PLACE or NO_ACCESS)`);
    }
  }
  const all = 2 ** m.gpus.length - 1;
  let preferred = LOC_UNDEFINED;
  let prefetch = LOC_UNDEFINED;
  let granularity = GRANULARITY_MAX;
  let flagsAnd = 0xffffffff;
  let flagsOr = 0;
  let supported = 0;
  for (const g of m.gpus) if (g.svmSupported) supported |= 1 << g.index;
  let access = p.xnack ? supported : 0;
  let aip = 0;
  let first = true;
  let r = p.ranges.firstOverlap(start, last);
  if (r === null) {
    const d = new SvmRange(0, 0);
    preferred = d.preferredLoc;
    prefetch = d.prefetchLoc;
    granularity = d.granularity;
    flagsAnd = d.flags;
    flagsOr = d.flags;
  } else {
    access = all;
    aip = all;
    for (; r !== null && r.start <= last; r = r.next) {
      if (first) {
        preferred = r.preferredLoc;
        prefetch = r.prefetchLoc;
        first = false;
      } else {
        if (r.preferredLoc !== preferred) preferred = LOC_UNDEFINED;
        if (r.prefetchLoc !== prefetch) prefetch = LOC_UNDEFINED;
      }
      granularity = Math.min(granularity, r.granularity);
      flagsAnd = (flagsAnd & r.flags) >>> 0;
      flagsOr = (flagsOr | r.flags) >>> 0;
      access &= r.accessMask;
      aip &= r.aipMask;
    }
  }
  for (const a of attrs) {
    switch (a[0]) {
      case SVM_ATTR.PREFERRED_LOC:
        a[1] = preferred;
        break;
      case SVM_ATTR.PREFETCH_LOC:
        a[1] = prefetch;
        break;
      case SVM_ATTR.ACCESS: {
        const g = m.gpuById.get(a[1]);
        if (g === undefined) throw new KfdError(op, "EINVAL", ERRNO.EINVAL, `gpu_id 0x${a[1].toString(16)} is no GPU of the process`);
        const bit = 1 << g.index;
        a[0] = (access & bit) !== 0 ? SVM_ATTR.ACCESS : (aip & bit) !== 0 ? SVM_ATTR.ACCESS_IN_PLACE : SVM_ATTR.NO_ACCESS;
        break;
      }
      case SVM_ATTR.SET_FLAGS:
        a[1] = flagsAnd;
        break;
      case SVM_ATTR.CLR_FLAGS:
        a[1] = ~flagsOr >>> 0;
        break;
      case SVM_ATTR.GRANULARITY:
        a[1] = granularity;
        break;
    }
  }
  return attrs;
}

const GET_ATTR_QUERY_TYPES: ReadonlySet<number> = new Set(SVM_GET_ATTR_QUERIES.map((n) => SVM_ATTR[n]));

/**
 * svm_range_is_valid, for SET_ATTR and GET_ATTR alike: the CPU maps the whole interval
 * (EFAULT otherwise) and no non-SVM buffer is mapped in it (svm_range_is_vm_bo_mapped,
 * EADDRINUSE).
 */
function rangeValidCheck(p: SvmProcess, op: string, start: number, last: number): void {
  if (!vmaCovers(p, start, last)) throw new KfdError(op, "EFAULT", ERRNO.EFAULT, `[${start}, ${last}] is not all mapped by the CPU`);
  const bo = p.boMappings;
  for (let i = 0; i < bo.length; i += 2) {
    if (bo[i]! <= last && bo[i + 1]! >= start) {
      throw new KfdError(op, "EADDRINUSE", ERRNO.EADDRINUSE, `[${bo[i]}, ${bo[i + 1]}] is mapped by a non-SVM buffer`);
    }
  }
}

/** svm_range_check_attr: a gpu_id must name a GPU of the process that supports SVM. */
function checkAttrGpu(m: SvmModel, op: string, value: number): void {
  const g = m.gpuById.get(value);
  if (g === undefined) throw new KfdError(op, "EINVAL", ERRNO.EINVAL, `gpu_id 0x${value.toString(16)} is no GPU of the process`);
  if (!g.svmSupported) throw new KfdError(op, "EINVAL", ERRNO.EINVAL, `GPU 0x${value.toString(16)} not supported (no SVM)`);
}

function rangeApplyAttrs(m: SvmModel, r: SvmRange, attrs: readonly AttrPair[]): void {
  for (const [type, value] of attrs) {
    switch (type) {
      case SVM_ATTR.PREFERRED_LOC:
        r.preferredLoc = value;
        break;
      case SVM_ATTR.PREFETCH_LOC:
        r.prefetchLoc = value;
        break;
      case SVM_ATTR.ACCESS: {
        const bit = 1 << m.gpuById.get(value)!.index;
        r.accessMask |= bit;
        r.aipMask &= ~bit;
        break;
      }
      case SVM_ATTR.ACCESS_IN_PLACE: {
        const bit = 1 << m.gpuById.get(value)!.index;
        r.aipMask |= bit;
        r.accessMask &= ~bit;
        break;
      }
      case SVM_ATTR.NO_ACCESS: {
        const bit = 1 << m.gpuById.get(value)!.index;
        r.accessMask &= ~bit;
        r.aipMask &= ~bit;
        break;
      }
      case SVM_ATTR.SET_FLAGS:
        r.flags = (r.flags | value) >>> 0;
        break;
      case SVM_ATTR.CLR_FLAGS:
        r.flags = (r.flags & ~value) >>> 0;
        break;
      case SVM_ATTR.GRANULARITY:
        r.granularity = Math.min(value, GRANULARITY_MAX);
        break;
    }
  }
}

/**
 * svm_range_trigger_migration (§5): migrate the whole range to best_prefetch_location,
 * every time PREFETCH_LOC is set. A GPU target is redirected to system memory when a GPU
 * needing access (XNACK on: aip GPUs; off: access|aip) is outside the target's hive.
 * Returns the end time, or -1 - t when the VRAM reservation failed (SET_ATTR fails).
 */
function rangeTriggerMigration(m: SvmModel, p: SvmProcess, r: SvmRange, t: number): number {
  const best = bestPrefetchLocation(m, p, r);
  // svm_range_trigger_migration does nothing only without a target, or when the target is
  // system memory and no page is in VRAM. A GPU target equal to actual_loc still migrates
  // (actual_loc set does not mean every page is in VRAM; the migration collects those that
  // are not, and emits its MIGRATE_START/END pair even when there is none): the whole
  // range, on every set.
  if (best === LOC_UNDEFINED || (best === 0 && r.actualLoc === 0)) return t;
  m.triggerMigrated = true;
  if (best === 0) return migrateToRam(m, p, r, r.start, r.last, MIGRATE_TRIGGER.PREFETCH, t, false);
  const e = migrateToVram(m, p, r, best, r.start, r.last, MIGRATE_TRIGGER.PREFETCH, t);
  if (e < 0) m.triggerMigrated = false;
  return e;
}

function bestPrefetchLocation(m: SvmModel, p: SvmProcess, r: SvmRange): number {
  const loc = r.prefetchLoc;
  if (loc === LOC_UNDEFINED || loc === 0) return loc;
  const target = m.gpuById.get(loc)!;
  if (target.appApu) return 0;
  const need = p.xnack ? r.aipMask : r.accessMask | r.aipMask;
  for (const g of m.gpus) {
    if ((need & (1 << g.index)) === 0) continue;
    if (g.id !== loc && !(g.hiveId !== 0 && g.hiveId === target.hiveId)) return 0;
  }
  return loc;
}
