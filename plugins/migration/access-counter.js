// @ts-check
// access-counter: migrate a 2 MiB block to a GPU only once that GPU has faulted on it
// `threshold` times within window_ms; below the threshold the GPU maps the data where it is
// (system memory, or a hive peer's VRAM). NVIDIA UVM migrates on its access counters
// (kfd-svm.md §10: counters per 2 MiB region, migration once a threshold is hit).
//
// What it can see. KFD has no access counters: once a GPU has a page mapped it reads it
// without any event, so repeated reads of mapped data are invisible, and "hot" cannot mean
// "often read". The signal KFD does have is the fault on a page the GPU has not mapped. So
// a mapping in place (below the threshold) covers only the faulting 64 KiB big page, not
// the kernel's 2 MiB window: the GPU's first touch of another big page of the block faults
// again, and that fault is the next count. "Hot" therefore means "densely touched": a block
// whose big pages the GPU touches `threshold` times within window_ms migrates (with the
// kernel's window); a block it touches once stays where it is. Each count costs a handled
// fault, and a range takes one GPU fault per 2 ms (the duplicate window, kfd-svm.md §2): on
// a block the kernel would migrate at once, counting to 2 costs one fault more.
//
// Where it acts:
//   - the kernel would migrate (a GPU with ACCESS): mapped in place until the threshold;
//   - the kernel would map in place (a GPU with ACCESS_IN_PLACE, no preferred location):
//     migrated to the faulting GPU once the threshold is reached, as NVIDIA's counters
//     migrate data a GPU reads through an accessed-by mapping. A preferred location (the
//     user's hint) is never overridden.
// Only when the faulting GPU can map the data in place: system memory, or VRAM of a GPU in
// its XGMI hive (KFD does not map a non-peer GPU's VRAM: kernel.sameHive). Otherwise, and
// whenever the kernel denies the fault, the data is already on the faulting GPU, or the GPU
// is an app-APU, the kernel's rule decides (kernel.restoreLocation, from the global
// `kernel`) with the kernel's window.
//
// State: module-level counters, bounded by entries_max (the oldest forgotten), and the
// in-place flags of the current batch (bounded by the host's batch size). Counters are lost
// when the host rebuilds the sandbox; counting then restarts, which only delays a migration
// by at most `threshold` faults.
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
const UNDEFINED = 0xffffffff;
/** 2 MiB in 4 KiB pages: the counting granularity (NVIDIA's access counter region). */
const BLOCK_PAGES = 512;
/** 64 KiB in 4 KiB pages: what a mapping in place below the threshold covers (a big page). */
const BIG_PAGE_PAGES = 16;

/** Slots per block in a counter key: gpu indexes are 0..51 (bits of accessMask). */
const GPU_INDEX_SLOTS = 64;

/** The kernel's rules, looked up once (`kernel` exists before this module runs). */
const kernelRestoreLocation = kernel.restoreLocation;
const kernelRestoreLocationBatch = kernel.restoreLocationBatch;
const kernelMigrationWindow = kernel.migrationWindow;
const kernelMigrationWindowBatch = kernel.migrationWindowBatch;
const kernelSameHive = kernel.sameHive;
const kernelIsAppApu = kernel.isAppApu;
const kernelHasBit = kernel.hasBit;

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
let oGpu = 0, oIndex = 0, oAddr = 0, oActual = 0, oPref = 0, oAip = 0, oStart = 0, oLast = 0;

/**
 * Per fault of the current batch: 1 when restoreLocationBatch mapped it in place below the
 * threshold (its window is then the big page). Grown to the largest batch seen, which the
 * host bounds (fault_batch_max).
 */
let inPlace = new Uint8Array(256);
/** Faults of the batch inPlace describes; 0 once migrationWindowBatch has used it. */
let inPlaceN = 0;
/** The last fault restoreLocation (the per-fault form) mapped in place: gpu_id and page; -1 none. */
let inPlaceGpu = -1;
let inPlaceAddr = -1;


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

/** counterRestoreLocation's answer for "map actualLoc in place, the big page only". */
const IN_PLACE = -2;

/**
 * One fault: the kernel's answer `best`, or the data's location `actualLoc` (in place, below
 * the threshold: the caller then maps the big page only; IN_PLACE is returned in the
 * decision's stead to say so), or the faulting GPU (ACCESS_IN_PLACE data that got hot).
 * @param {import("../types").MigrationContext} ctx
 * @param {number} gpuId @param {number} gpuIndex @param {number} addr @param {number} actualLoc
 * @param {number} preferredLoc @param {number} aipMask @param {number} best
 * @returns {number} a location, or IN_PLACE (-2): actualLoc, mapped in place
 */
function counterRestoreLocation(ctx, gpuId, gpuIndex, addr, actualLoc, preferredLoc, aipMask, best) {
  if (best === DENY || actualLoc === gpuId) return best;
  // The kernel migrates (best elsewhere), or maps ACCESS_IN_PLACE data in place with no
  // preferred location: the only two cases where the counter decides.
  const migrates = best !== actualLoc;
  if (!migrates && (preferredLoc !== UNDEFINED || !kernelHasBit(aipMask, gpuIndex))) return best;
  // Counted only where the choice exists: the GPU can map the data where it is.
  if (!canMapInPlace(ctx.gpus, gpuId, actualLoc) || kernelIsAppApu(ctx.gpus, gpuId)) return best;
  if (counterHit(gpuIndex, addr, ctx.nowNs)) return migrates ? best : gpuId;
  return IN_PLACE;
}

/**
 * The big page around `addr`, clipped to the range.
 * @param {number} addr @param {number} rangeStart @param {number} rangeLast
 * @returns {import("../types").PageWindow}
 */
function bigPageWindow(addr, rangeStart, rangeLast) {
  const s = addr - (addr % BIG_PAGE_PAGES);
  return { start: s > rangeStart ? s : rangeStart, last: s + BIG_PAGE_PAGES - 1 < rangeLast ? s + BIG_PAGE_PAGES - 1 : rangeLast };
}

/** @type {import("../types").MigrationHooks["restoreLocation"]} */
export function restoreLocation(f, ctx) {
  if (ctx.params !== paramsOf) paramsRead(ctx.params);
  const loc = counterRestoreLocation(ctx, f.gpuId, f.gpuIndex, f.addr, f.actualLoc, f.preferredLoc, f.aipMask, kernelRestoreLocation(f, ctx));
  if (loc !== IN_PLACE) {
    inPlaceGpu = -1;
    return loc;
  }
  inPlaceGpu = f.gpuId;
  inPlaceAddr = f.addr;
  return f.actualLoc;
}

/**
 * The big page when restoreLocation just mapped this fault in place, else the kernel's window.
 * @type {import("../types").MigrationHooks["migrationWindow"]}
 */
export function migrationWindow(f, ctx) {
  if (f.gpuId === inPlaceGpu && f.addr === inPlaceAddr) return bigPageWindow(f.addr, f.rangeStart, f.rangeLast);
  return kernelMigrationWindow(f, ctx);
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
    oPref = F.preferredLoc;
    oAip = F.aipMask;
    oStart = F.rangeStart;
    oLast = F.rangeLast;
  }
  const faults = b.faults, decisions = b.decisions, n = b.n;
  if (inPlace.length < n) inPlace = new Uint8Array(n);
  inPlaceN = n;
  for (let i = 0, o = 0, d = 0, stride = b.stride; i < n; i++, o += stride, d += 3) {
    const actualLoc = faults[o + oActual];
    const loc = counterRestoreLocation(ctx, faults[o + oGpu], faults[o + oIndex], faults[o + oAddr], actualLoc, faults[o + oPref], faults[o + oAip], decisions[d]);
    inPlace[i] = loc === IN_PLACE ? 1 : 0;
    decisions[d] = loc === IN_PLACE ? actualLoc : loc;
  }
}

/**
 * The kernel's windows, then the big page for the faults restoreLocationBatch mapped in
 * place (the host calls it right after restoreLocationBatch, on the same batch).
 * @type {import("../types").MigrationHooks["migrationWindowBatch"]}
 */
export function migrationWindowBatch(b, ctx) {
  kernelMigrationWindowBatch(b, ctx);
  // Without the restoreLocationBatch of this batch just before (a window asked alone), the
  // flags say nothing about it: the kernel's windows stand.
  const n = inPlaceN === b.n ? b.n : 0;
  inPlaceN = 0;
  const faults = b.faults, decisions = b.decisions;
  for (let i = 0, o = 0, d = 0, stride = b.stride; i < n; i++, o += stride, d += 3) {
    if (inPlace[i] !== 1) continue;
    const addr = faults[o + oAddr], rangeStart = faults[o + oStart], rangeLast = faults[o + oLast];
    const s = addr - (addr % BIG_PAGE_PAGES);
    decisions[d + 1] = s > rangeStart ? s : rangeStart;
    decisions[d + 2] = s + BIG_PAGE_PAGES - 1 < rangeLast ? s + BIG_PAGE_PAGES - 1 : rangeLast;
  }
}
