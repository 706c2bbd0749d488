// @ts-check
// xgmi-aware: prefer access in place across an XGMI hive over migration. A GPU that faults
// on data held in a hive peer's VRAM maps it over XGMI (hundreds of GB/s between MI300X
// peers) instead of pulling it through system memory: a VRAM->VRAM migration on KFD first
// moves the whole range back to RAM, then copies the window over PCIe (kfd-svm.md §6).
//
//   1. app-APU, or an explicit preferred location of the faulting GPU or system memory:
//      the kernel's answer (the user's hint wins);
//   2. data on a hive peer (not the faulting GPU) and the GPU has ACCESS or ACCESS_IN_PLACE:
//      that peer (map remotely, no migration);
//   3. preferred location on a hive peer: that peer;
//   4. otherwise the kernel's rule (svm_range_best_restore_location, copied below: plugins
//      cannot import). The window is not exported: the host applies the kernel's window.
// Stateless.

const SYSMEM = 0;
const UNDEFINED = 0xffffffff;
const DENY = -1;

/** @param {import("../types").PolicyGpu[]} gpus @param {number} id */
function hiveOf(gpus, id) {
  for (let i = 0; i < gpus.length; i++) if (gpus[i].id === id) return gpus[i].hiveId;
  return 0;
}

/** @param {import("../types").PolicyGpu[]} gpus @param {number} id */
function isAppApu(gpus, id) {
  for (let i = 0; i < gpus.length; i++) if (gpus[i].id === id) return gpus[i].appApu;
  return false;
}

/** @param {number} mask @param {number} index */
function hasBit(mask, index) {
  return Math.floor(mask / 2 ** index) % 2 === 1;
}

/**
 * True when `peer` is another GPU of `gpuId`'s XGMI hive.
 * @param {import("../types").PolicyGpu[]} gpus @param {number} gpuId @param {number} peer
 */
function isHivePeer(gpus, gpuId, peer) {
  if (peer === gpuId || peer === SYSMEM || peer === UNDEFINED) return false;
  const hive = hiveOf(gpus, gpuId);
  return hive !== 0 && hiveOf(gpus, peer) === hive;
}

/**
 * svm_range_best_restore_location (kfd-svm §4), as in kernel-default.js.
 * @param {import("../types").PolicyGpu[]} gpus
 * @param {number} gpuId @param {number} gpuIndex @param {number} preferredLoc
 * @param {number} actualLoc @param {number} accessMask @param {number} aipMask
 */
function bestRestoreLocation(gpus, gpuId, gpuIndex, preferredLoc, actualLoc, accessMask, aipMask) {
  if (isAppApu(gpus, gpuId)) return SYSMEM;
  if (preferredLoc === gpuId || preferredLoc === SYSMEM) return preferredLoc;
  const hive = hiveOf(gpus, gpuId);
  if (preferredLoc !== UNDEFINED && hive !== 0 && hiveOf(gpus, preferredLoc) === hive) return preferredLoc;
  if (hasBit(accessMask, gpuIndex)) return gpuId;
  if (hasBit(aipMask, gpuIndex)) {
    if (actualLoc === SYSMEM) return SYSMEM;
    if (actualLoc === gpuId || (hive !== 0 && hiveOf(gpus, actualLoc) === hive)) return actualLoc;
    return SYSMEM;
  }
  return DENY;
}

/**
 * One fault, rules 1-4 of the header.
 * @param {import("../types").PolicyGpu[]} gpus
 * @param {number} gpuId @param {number} gpuIndex @param {number} preferredLoc
 * @param {number} actualLoc @param {number} accessMask @param {number} aipMask
 */
function xgmiRestoreLocation(gpus, gpuId, gpuIndex, preferredLoc, actualLoc, accessMask, aipMask) {
  if (isAppApu(gpus, gpuId) || preferredLoc === gpuId || preferredLoc === SYSMEM) {
    return bestRestoreLocation(gpus, gpuId, gpuIndex, preferredLoc, actualLoc, accessMask, aipMask);
  }
  if (isHivePeer(gpus, gpuId, actualLoc) && (hasBit(accessMask, gpuIndex) || hasBit(aipMask, gpuIndex))) return actualLoc;
  if (isHivePeer(gpus, gpuId, preferredLoc)) return preferredLoc;
  return bestRestoreLocation(gpus, gpuId, gpuIndex, preferredLoc, actualLoc, accessMask, aipMask);
}

/** @type {import("../types").MigrationHooks["restoreLocation"]} */
export function restoreLocation(f, ctx) {
  return xgmiRestoreLocation(ctx.gpus, f.gpuId, f.gpuIndex, f.preferredLoc, f.actualLoc, f.accessMask, f.aipMask);
}

/** @type {import("../types").MigrationHooks["restoreLocationBatch"]} */
export function restoreLocationBatch(b, ctx) {
  const { faults, n, stride, F, decisions } = b;
  for (let i = 0, o = 0; i < n; i++, o += stride) {
    decisions[i * 3] = xgmiRestoreLocation(
      ctx.gpus,
      faults[o + F.gpuId],
      faults[o + F.gpuIndex],
      faults[o + F.preferredLoc],
      faults[o + F.actualLoc],
      faults[o + F.accessMask],
      faults[o + F.aipMask],
    );
  }
}
