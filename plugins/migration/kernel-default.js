// @ts-check
// kernel-default: the Linux amdkfd driver's own decisions (kfd_svm.c), as a plugin.
// restoreLocation is svm_range_best_restore_location; migrationWindow is the
// granularity-aligned block around the fault, clipped to the range (svm_range_restore_pages).
// The native twin is runtime/policy/contracts/migration.ts; a test keeps them identical.

const SYSMEM = 0;
const UNDEFINED = 0xffffffff;
const DENY = -1;

/** @param {import("../types").PolicyGpu[]} gpus @param {number} a @param {number} b */
function sameHive(gpus, a, b) {
  if (a === b) return true;
  let ha = 0;
  let hb = 0;
  for (const g of gpus) {
    if (g.id === a) ha = g.hiveId;
    if (g.id === b) hb = g.hiveId;
  }
  return ha !== 0 && ha === hb;
}

/** @param {number} mask @param {number} index */
function hasBit(mask, index) {
  return Math.floor(mask / 2 ** index) % 2 === 1;
}

/** @type {import("../types").MigrationHooks["restoreLocation"]} */
export function restoreLocation(f, ctx) {
  for (const g of ctx.gpus) if (g.id === f.gpuId && g.appApu) return SYSMEM;
  if (f.preferredLoc === f.gpuId || f.preferredLoc === SYSMEM) return f.preferredLoc;
  if (f.preferredLoc !== UNDEFINED && sameHive(ctx.gpus, f.preferredLoc, f.gpuId)) return f.preferredLoc;
  if (hasBit(f.accessMask, f.gpuIndex)) return f.gpuId;
  if (hasBit(f.aipMask, f.gpuIndex)) {
    if (f.actualLoc === SYSMEM) return SYSMEM;
    if (sameHive(ctx.gpus, f.actualLoc, f.gpuId)) return f.actualLoc;
    return SYSMEM;
  }
  return DENY;
}

/** @type {import("../types").MigrationHooks["migrationWindow"]} */
export function migrationWindow(f) {
  const g = 2 ** f.granularity;
  const blockStart = Math.floor(f.addr / g) * g;
  return { start: Math.max(blockStart, f.rangeStart), last: Math.min(blockStart + g - 1, f.rangeLast) };
}
