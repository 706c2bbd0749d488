// @ts-check
// access-counter: migrate a 2 MiB block to a GPU only after that GPU touched it `threshold`
// times within window_ms; below the threshold access it in place (NVIDIA UVM's access
// counters, kfd-svm.md §10: counters at 2 MiB granularity, migration once a threshold is hit).
//
// KFD has no access counters: a GPU faults only on pages it has not mapped, so what this
// plugin counts are faults, per (GPU, block). They stand in for accesses: a block mapped in
// place keeps being accessed without faults, and the next fault from the same GPU (another
// window of the block, or after an invalidation unmapped it) is the next "access". With the
// kernel's 2 MiB window that makes threshold 2 "migrate on the second fault within 1 s".
//
// Access in place means returning the data's current location (actualLoc, 0 when no page is
// in VRAM). It is only valid when the faulting GPU can map it: system memory, or VRAM of a
// GPU in its XGMI hive (KFD does not map a non-peer GPU's VRAM: kernel.sameHive); otherwise,
// and whenever the kernel would deny the fault or not move anything, the kernel's rule
// decides (kernel.restoreLocation, from the global `kernel`). The window is not exported:
// the host applies the kernel's window.
//
// State: module-level counters, bounded by entries_max (the oldest forgotten).
// It is lost when the host rebuilds the sandbox; counting then restarts, which only delays
// a migration by at most `threshold` faults.
//
// Cost: written for QuickJS, whose interpreter has no inline caches (every property read
// and call counts): the parameters are read into module variables once per ctx.params
// object (paramsRead), the record field offsets once per layout object, the kernel's
// functions once at load. These change no decision: the rules below are as written.

/** Tunables: name, default, bounds, meaning. */
export const params = {
  threshold: {
    type: "integer",
    default: 2,
    min: 1,
    max: 256,
    description: "faults of one GPU on one 2 MiB block within window_ms after which the block migrates (1 = the kernel's behaviour)",
  },
  window_ms: {
    type: "integer",
    default: 1000,
    min: 1,
    max: 600000,
    description: "faults older than this no longer count, ms (the counter restarts)",
  },
  entries_max: {
    type: "integer",
    default: 8192,
    min: 1,
    max: 65536,
    description: "most (GPU, block) counters kept; the oldest is forgotten beyond this",
  },
};

const SYSMEM = 0;
const DENY = -1;
/** 2 MiB in 4 KiB pages: the counting granularity (NVIDIA's access counter region). */
const BLOCK_PAGES = 512;

/** Slots per block in a counter key: gpu indexes are 0..51 (bits of accessMask). */
const GPU_INDEX_SLOTS = 64;

/** The kernel's rules, looked up once (`kernel` exists before this module runs). */
const kernelRestoreLocation = kernel.restoreLocation;
const kernelRestoreLocationBatch = kernel.restoreLocationBatch;
const kernelSameHive = kernel.sameHive;

// The parameters as numbers, read once per ctx.params object (the host's context object
// lives while the GPU list and parameters stay the same).
/** @type {unknown} */
let paramsOf = null;
let threshold = 2;
let windowNs = 1000e6;
let entriesMax = 8192;

/** @param {import("../types").Params} p */
function paramsRead(p) {
  paramsOf = p;
  threshold = /** @type {number} */ (p.threshold);
  windowNs = /** @type {number} */ (p.window_ms) * 1e6;
  entriesMax = /** @type {number} */ (p.entries_max);
}

// Field offsets of the fault records, read once per layout object (the host hands the same
// frozen F every call).
/** @type {unknown} */
let layoutOf = null;
let oGpu = 0, oIndex = 0, oAddr = 0, oActual = 0;

/** @typedef {{ count: number, firstNs: number }} Counter */
/**
 * block * 64 + gpuIndex -> faults since firstNs, oldest created first. A numeric key and no
 * reordering on update: in the QuickJS sandbox every Map operation costs microseconds, and
 * counters live one window, so evicting the oldest created is as good as least recently used.
 * @type {Map<number, Counter>}
 */
const counters = new Map();

/**
 * True when GPU `gpuId` can map data at `loc` without moving it.
 * @param {import("../types").PolicyGpu[]} gpus @param {number} gpuId @param {number} loc
 */
function canMapInPlace(gpus, gpuId, loc) {
  return loc === SYSMEM || kernelSameHive(gpus, gpuId, loc);
}

/**
 * Count one fault of GPU `gpuIndex` on the block of `addr`; true when it reaches the
 * threshold (the counter is then dropped, as NVIDIA clears a serviced access counter).
 * The parameters are paramsRead's.
 * @param {number} gpuIndex @param {number} addr @param {number} nowNs
 */
function counterHit(gpuIndex, addr, nowNs) {
  const key = Math.floor(addr / BLOCK_PAGES) * GPU_INDEX_SLOTS + gpuIndex;
  const c = counters.get(key);
  if (c === undefined) {
    if (threshold <= 1) return true;
    counters.set(key, { count: 1, firstNs: nowNs });
    while (counters.size > entriesMax) {
      const oldest = counters.keys().next();
      if (oldest.done) break;
      counters.delete(oldest.value);
    }
    return false;
  }
  if (nowNs - c.firstNs > windowNs) {
    // The window passed: this fault is the first of a new one.
    c.count = 1;
    c.firstNs = nowNs;
    return threshold <= 1;
  }
  c.count++;
  if (c.count < threshold) return false;
  counters.delete(key);
  return true;
}

/**
 * One fault: migrate as the kernel would (its answer is `best`) once the block is hot for
 * this GPU, else in place.
 * @param {import("../types").MigrationContext} ctx
 * @param {number} gpuId @param {number} gpuIndex @param {number} addr @param {number} actualLoc
 * @param {number} best
 */
function counterRestoreLocation(ctx, gpuId, gpuIndex, addr, actualLoc, best) {
  if (best === DENY || best === actualLoc) return best;
  // Counted only where the choice exists: the data could stay where it is.
  if (!canMapInPlace(ctx.gpus, gpuId, actualLoc)) return best;
  if (counterHit(gpuIndex, addr, ctx.nowNs)) return best;
  return actualLoc;
}

/** @type {import("../types").MigrationHooks["restoreLocation"]} */
export function restoreLocation(f, ctx) {
  if (ctx.params !== paramsOf) paramsRead(ctx.params);
  return counterRestoreLocation(ctx, f.gpuId, f.gpuIndex, f.addr, f.actualLoc, kernelRestoreLocation(f, ctx));
}

/** @type {import("../types").MigrationHooks["restoreLocationBatch"]} */
export function restoreLocationBatch(b, ctx) {
  // The kernel's answers first (they depend on nothing but the fault), then the counters,
  // fault by fault in order.
  kernelRestoreLocationBatch(b, ctx);
  if (ctx.params !== paramsOf) paramsRead(ctx.params);
  const F = b.F;
  if (F !== layoutOf) {
    layoutOf = F;
    oGpu = F.gpuId;
    oIndex = F.gpuIndex;
    oAddr = F.addr;
    oActual = F.actualLoc;
  }
  const faults = b.faults, decisions = b.decisions;
  for (let o = 0, d = 0, end = b.n * b.stride, stride = b.stride; o < end; o += stride, d += 3) {
    decisions[d] = counterRestoreLocation(ctx, faults[o + oGpu], faults[o + oIndex], faults[o + oAddr], faults[o + oActual], decisions[d]);
  }
}
