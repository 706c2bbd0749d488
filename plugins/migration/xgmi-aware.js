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
//   4. otherwise the kernel's rule (svm_range_best_restore_location).
// The kernel's rules (its answer, hive membership, access bits) come from the global
// `kernel`. The window is not exported: the host applies the kernel's window.
// Stateless.
//
// Cost: written for QuickJS, whose interpreter has no inline caches (every property read
// and call counts): the kernel's functions are looked up once at load, the record field
// offsets once per layout object, and the batch loop skips peerLocation for a fault where
// neither the data nor the preferred location can be a hive peer (the common case: data in
// system memory or on the faulting GPU, no preference), where it answers SYSMEM anyway.

const SYSMEM = 0;
const UNDEFINED = 0xffffffff;

/** The kernel's rules, looked up once (`kernel` exists before this module runs). */
const kernelRestoreLocation = kernel.restoreLocation;
const kernelRestoreLocationBatch = kernel.restoreLocationBatch;
const kernelSameHive = kernel.sameHive;
const kernelIsAppApu = kernel.isAppApu;
const kernelHasBit = kernel.hasBit;

// Field offsets of the fault records, read once per layout object (the host hands the same
// frozen F every call).
/** @type {unknown} */
let layoutOf = null;
let oGpu = 0, oIndex = 0, oPref = 0, oActual = 0, oAccess = 0, oAip = 0;

/**
 * True when `peer` is another GPU of `gpuId`'s XGMI hive.
 * @param {import("../types").PolicyGpu[]} gpus @param {number} gpuId @param {number} peer
 */
function isHivePeer(gpus, gpuId, peer) {
  return peer !== gpuId && peer !== SYSMEM && peer !== UNDEFINED && kernelSameHive(gpus, gpuId, peer);
}

/**
 * Rules 1-3 of the header: the hive peer to map from, or 0 when the kernel's answer stands
 * (rules 1 and 4; a peer is never system memory).
 * @param {import("../types").PolicyGpu[]} gpus
 * @param {number} gpuId @param {number} gpuIndex @param {number} preferredLoc
 * @param {number} actualLoc @param {number} accessMask @param {number} aipMask
 */
function peerLocation(gpus, gpuId, gpuIndex, preferredLoc, actualLoc, accessMask, aipMask) {
  if (preferredLoc === gpuId || preferredLoc === SYSMEM || kernelIsAppApu(gpus, gpuId)) return SYSMEM;
  if (isHivePeer(gpus, gpuId, actualLoc) && (kernelHasBit(accessMask, gpuIndex) || kernelHasBit(aipMask, gpuIndex))) return actualLoc;
  if (isHivePeer(gpus, gpuId, preferredLoc)) return preferredLoc;
  return SYSMEM;
}

/** @type {import("../types").MigrationHooks["restoreLocation"]} */
export function restoreLocation(f, ctx) {
  const peer = peerLocation(ctx.gpus, f.gpuId, f.gpuIndex, f.preferredLoc, f.actualLoc, f.accessMask, f.aipMask);
  return peer !== SYSMEM ? peer : kernelRestoreLocation(f, ctx);
}

/** @type {import("../types").MigrationHooks["restoreLocationBatch"]} */
export function restoreLocationBatch(b, ctx) {
  // The kernel's answers for the whole batch, then the faults rules 2-3 send to a peer.
  kernelRestoreLocationBatch(b, ctx);
  const F = b.F;
  if (F !== layoutOf) {
    layoutOf = F;
    oGpu = F.gpuId;
    oIndex = F.gpuIndex;
    oPref = F.preferredLoc;
    oActual = F.actualLoc;
    oAccess = F.accessMask;
    oAip = F.aipMask;
  }
  const faults = b.faults, decisions = b.decisions, gpus = ctx.gpus;
  for (let o = 0, d = 0, end = b.n * b.stride, stride = b.stride; o < end; o += stride, d += 3) {
    const gpuId = faults[o + oGpu];
    const actualLoc = faults[o + oActual];
    const preferredLoc = faults[o + oPref];
    // isHivePeer is false for both locations without looking at the hive: peerLocation
    // would answer SYSMEM (the kernel's answer stands).
    if (
      (actualLoc === gpuId || actualLoc === SYSMEM || actualLoc === UNDEFINED) &&
      (preferredLoc === gpuId || preferredLoc === SYSMEM || preferredLoc === UNDEFINED)
    ) {
      continue;
    }
    const peer = peerLocation(gpus, gpuId, faults[o + oIndex], preferredLoc, actualLoc, faults[o + oAccess], faults[o + oAip]);
    if (peer !== SYSMEM) decisions[d] = peer;
  }
}
