// @ts-check
// kernel-default: the Linux amdkfd driver's own decisions (kfd_svm.c), as a plugin.
// restoreLocation is svm_range_best_restore_location; migrationWindow is the
// granularity-aligned block around the fault, clipped to the range (svm_range_restore_pages).
// The native twin is runtime/policy/contracts/migration.ts; a test keeps them identical.
// Each hook has a per-fault form (readable; used by `policy eval` and tests) and a batch
// form over the raw records (the hot path); both call the same `bestRestoreLocation`.
// Every migration plugin also gets this module's exports as the frozen global `kernel`
// (e.g. `kernel.restoreLocation(f, ctx)`, `kernel.sameHive(ctx.gpus, a, b)`), so plugins
// that refine the kernel's behaviour call these rules instead of copying them.

const SYSMEM = 0;
const UNDEFINED = 0xffffffff;
const DENY = -1;

// Lookup tables by gpu_id, rebuilt only when the host hands over a new GPU list (the
// context object is reused between calls while it does not change).
/** @type {import("../types").PolicyGpu[] | null} */
let tablesFor = null;
/** @type {Record<number, number>} */
let hiveById = {};
/** @type {Record<number, boolean>} */
let apuById = {};

/** @param {import("../types").PolicyGpu[]} gpus */
function tables(gpus) {
  if (gpus === tablesFor) return;
  tablesFor = gpus;
  hiveById = {};
  apuById = {};
  for (let i = 0; i < gpus.length; i++) {
    hiveById[gpus[i].id] = gpus[i].hiveId;
    apuById[gpus[i].id] = gpus[i].appApu;
  }
}

/**
 * Hive of a gpu_id. `>>> 0`: numbers read from the fault records are doubles, and QuickJS
 * turns a double property key into a string before looking it up (several times slower).
 * @param {number} id
 */
function hiveOf(id) {
  return hiveById[id >>> 0] || 0;
}

/**
 * GPU `id` is an APU in app-APU mode (MI300A): it never migrates.
 * @param {import("../types").PolicyGpu[]} gpus @param {number} id
 */
export function isAppApu(gpus, id) {
  tables(gpus);
  return apuById[id >>> 0] === true;
}

/**
 * Same GPU, or two GPUs of one XGMI hive.
 * @param {import("../types").PolicyGpu[]} gpus @param {number} a @param {number} b
 */
export function sameHive(gpus, a, b) {
  tables(gpus);
  return a === b || (hiveOf(a) !== 0 && hiveOf(a) === hiveOf(b));
}

/**
 * Bit `index` of an access mask. `>>>` reduces the mask modulo 2^32 exactly, so it is right
 * for the first 32 GPUs whatever the mask; beyond that, divide.
 * @param {number} mask @param {number} index
 */
export function hasBit(mask, index) {
  return index < 32 ? ((mask >>> index) & 1) === 1 : Math.floor(mask / 2 ** index) % 2 === 1;
}

/**
 * svm_range_best_restore_location (kfd-svm §4).
 * @param {import("../types").PolicyGpu[]} gpus
 * @param {number} gpuId @param {number} gpuIndex @param {number} preferredLoc
 * @param {number} actualLoc @param {number} accessMask @param {number} aipMask
 */
export function bestRestoreLocation(gpus, gpuId, gpuIndex, preferredLoc, actualLoc, accessMask, aipMask) {
  tables(gpus);
  return restoreRule(gpuId, gpuIndex, preferredLoc, actualLoc, accessMask, aipMask);
}

/**
 * bestRestoreLocation once the tables are the context's. Written for QuickJS: the tables
 * are looked up inline (no helper call per test) with integer keys (see hiveOf).
 * @param {number} gpuId @param {number} gpuIndex @param {number} preferredLoc
 * @param {number} actualLoc @param {number} accessMask @param {number} aipMask
 */
function restoreRule(gpuId, gpuIndex, preferredLoc, actualLoc, accessMask, aipMask) {
  const id = gpuId >>> 0;
  if (apuById[id] === true) return SYSMEM;
  if (preferredLoc === gpuId || preferredLoc === SYSMEM) return preferredLoc;
  const hive = hiveById[id] || 0;
  if (preferredLoc !== UNDEFINED && hive !== 0 && hiveOf(preferredLoc) === hive) return preferredLoc;
  if (gpuIndex < 32 ? ((accessMask >>> gpuIndex) & 1) === 1 : hasBit(accessMask, gpuIndex)) return gpuId;
  if (gpuIndex < 32 ? ((aipMask >>> gpuIndex) & 1) === 1 : hasBit(aipMask, gpuIndex)) {
    if (actualLoc === SYSMEM) return SYSMEM;
    if (actualLoc === gpuId || (hive !== 0 && hiveOf(actualLoc) === hive)) return actualLoc;
    return SYSMEM;
  }
  return DENY;
}

/** @type {import("../types").MigrationHooks["restoreLocation"]} */
export function restoreLocation(f, ctx) {
  return bestRestoreLocation(ctx.gpus, f.gpuId, f.gpuIndex, f.preferredLoc, f.actualLoc, f.accessMask, f.aipMask);
}

/** @type {import("../types").MigrationHooks["migrationWindow"]} */
export function migrationWindow(f) {
  const g = 2 ** f.granularity;
  const blockStart = Math.floor(f.addr / g) * g;
  return { start: Math.max(blockStart, f.rangeStart), last: Math.min(blockStart + g - 1, f.rangeLast) };
}

/** @type {import("../types").MigrationHooks["restoreLocationBatch"]} */
export function restoreLocationBatch(b, ctx) {
  const { faults, n, stride, F, decisions } = b;
  const fGpu = F.gpuId, fIndex = F.gpuIndex, fPref = F.preferredLoc, fActual = F.actualLoc;
  const fAccess = F.accessMask, fAip = F.aipMask;
  tables(ctx.gpus);
  for (let i = 0, o = 0; i < n; i++, o += stride) {
    decisions[i * 3] = restoreRule(
      faults[o + fGpu],
      faults[o + fIndex],
      faults[o + fPref],
      faults[o + fActual],
      faults[o + fAccess],
      faults[o + fAip],
    );
  }
}

/** 2 ** k for the granularities a range can have (0..63): a table read, not a power. */
const POW2 = Array.from({ length: 64 }, (_, k) => 2 ** k);

/** @type {import("../types").MigrationHooks["migrationWindowBatch"]} */
export function migrationWindowBatch(b) {
  const { faults, n, stride, F, decisions } = b;
  const fGran = F.granularity, fAddr = F.addr, fStart = F.rangeStart, fLast = F.rangeLast;
  for (let i = 0, o = 0; i < n; i++, o += stride) {
    // The same block as migrationWindow: addr - addr % g is floor(addr / g) * g for the
    // non-negative integer page numbers of a fault, without two Math calls.
    const gran = faults[o + fGran] | 0;
    const g = gran >= 0 && gran < 64 ? POW2[gran] : 2 ** faults[o + fGran];
    const addr = faults[o + fAddr];
    const blockStart = addr - (addr % g);
    const blockLast = blockStart + g - 1;
    const rs = faults[o + fStart], rl = faults[o + fLast];
    decisions[i * 3 + 1] = blockStart > rs ? blockStart : rs;
    decisions[i * 3 + 2] = blockLast < rl ? blockLast : rl;
  }
}
