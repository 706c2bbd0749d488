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

const SYSMEM = 0;
const UNDEFINED = 0xffffffff;

/**
 * True when `peer` is another GPU of `gpuId`'s XGMI hive.
 * @param {import("../types").PolicyGpu[]} gpus @param {number} gpuId @param {number} peer
 */
function isHivePeer(gpus, gpuId, peer) {
  return peer !== gpuId && peer !== SYSMEM && peer !== UNDEFINED && kernel.sameHive(gpus, gpuId, peer);
}

/**
 * Rules 1-3 of the header: the hive peer to map from, or 0 when the kernel's answer stands
 * (rules 1 and 4; a peer is never system memory).
 * @param {import("../types").PolicyGpu[]} gpus
 * @param {number} gpuId @param {number} gpuIndex @param {number} preferredLoc
 * @param {number} actualLoc @param {number} accessMask @param {number} aipMask
 */
function peerLocation(gpus, gpuId, gpuIndex, preferredLoc, actualLoc, accessMask, aipMask) {
  if (preferredLoc === gpuId || preferredLoc === SYSMEM || kernel.isAppApu(gpus, gpuId)) return SYSMEM;
  if (isHivePeer(gpus, gpuId, actualLoc) && (kernel.hasBit(accessMask, gpuIndex) || kernel.hasBit(aipMask, gpuIndex))) return actualLoc;
  if (isHivePeer(gpus, gpuId, preferredLoc)) return preferredLoc;
  return SYSMEM;
}

/** @type {import("../types").MigrationHooks["restoreLocation"]} */
export function restoreLocation(f, ctx) {
  const peer = peerLocation(ctx.gpus, f.gpuId, f.gpuIndex, f.preferredLoc, f.actualLoc, f.accessMask, f.aipMask);
  return peer !== SYSMEM ? peer : kernel.restoreLocation(f, ctx);
}

/** @type {import("../types").MigrationHooks["restoreLocationBatch"]} */
export function restoreLocationBatch(b, ctx) {
  // The kernel's answers for the whole batch, then the faults rules 2-3 send to a peer.
  kernel.restoreLocationBatch(b, ctx);
  const { faults, n, stride, F, decisions } = b;
  for (let i = 0, o = 0; i < n; i++, o += stride) {
    const peer = peerLocation(
      ctx.gpus,
      faults[o + F.gpuId],
      faults[o + F.gpuIndex],
      faults[o + F.preferredLoc],
      faults[o + F.actualLoc],
      faults[o + F.accessMask],
      faults[o + F.aipMask],
    );
    if (peer !== SYSMEM) decisions[i * 3] = peer;
  }
}
