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
/** Some GPU of the list is an app-APU / in a hive: when not, the rules skip those lookups. */
let anyApu = false;
let anyHive = false;
/**
 * gpu_id and hive by GPU index (dense arrays: QuickJS reads them without the property lookup
 * a gpu_id key needs). A fault record's gpuIndex finds its GPU's hive when the gpu_id there
 * matches; otherwise the id table answers.
 * @type {number[]}
 */
let idByIndex = [];
/** @type {number[]} */
let hiveByIndex = [];
/** Highest GPU index kept in the dense tables (bit positions of an access mask: 0..51). */
const INDEX_MAX = 63;

/** @param {import("../types").PolicyGpu[]} gpus */
function tables(gpus) {
  if (gpus === tablesFor) return;
  tablesFor = gpus;
  hiveById = {};
  apuById = {};
  anyApu = false;
  anyHive = false;
  idByIndex = [];
  hiveByIndex = [];
  for (let k = 0; k <= INDEX_MAX; k++) {
    idByIndex[k] = -1;
    hiveByIndex[k] = 0;
  }
  for (let i = 0; i < gpus.length; i++) {
    const index = gpus[i].index;
    if (Number.isInteger(index) && index >= 0 && index <= INDEX_MAX && idByIndex[index] === -1) {
      idByIndex[index] = gpus[i].id;
      hiveByIndex[index] = gpus[i].hiveId || 0;
    }
    hiveById[gpus[i].id] = gpus[i].hiveId;
    apuById[gpus[i].id] = gpus[i].appApu;
    if (gpus[i].appApu === true) anyApu = true;
    if (gpus[i].hiveId) anyHive = true;
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
 * are looked up inline (no helper call per test) with integer keys (see hiveOf), and only
 * when some GPU is an app-APU or in a hive. restoreLocationBatch has the same rule inline.
 * @param {number} gpuId @param {number} gpuIndex @param {number} preferredLoc
 * @param {number} actualLoc @param {number} accessMask @param {number} aipMask
 */
function restoreRule(gpuId, gpuIndex, preferredLoc, actualLoc, accessMask, aipMask) {
  if (anyApu && apuById[gpuId >>> 0] === true) return SYSMEM;
  if (preferredLoc === gpuId || preferredLoc === SYSMEM) return preferredLoc;
  const hive = anyHive ? hiveById[gpuId >>> 0] || 0 : 0;
  if (hive !== 0 && preferredLoc !== UNDEFINED && hiveById[preferredLoc >>> 0] === hive) return preferredLoc;
  if (gpuIndex < 32 ? ((accessMask >>> gpuIndex) & 1) === 1 : hasBit(accessMask, gpuIndex)) return gpuId;
  if (gpuIndex < 32 ? ((aipMask >>> gpuIndex) & 1) === 1 : hasBit(aipMask, gpuIndex)) {
    if (actualLoc === SYSMEM) return SYSMEM;
    if (actualLoc === gpuId || (hive !== 0 && hiveById[actualLoc >>> 0] === hive)) return actualLoc;
    return SYSMEM;
  }
  return DENY;
}

// Field offsets of the fault records, read from the batch's F once per layout (the host
// hands the same frozen F every call), not on every call: a property read costs about as
// much as a decision's arithmetic.
/** @type {unknown} */
let layoutOf = null;
let oGpu = 0, oIndex = 0, oPref = 0, oActual = 0, oAccess = 0, oAip = 0, oGran = 0, oAddr = 0, oStart = 0, oLast = 0;

/** @param {import("../types").FaultBatch["F"]} F */
function layout(F) {
  layoutOf = F;
  oGpu = F.gpuId;
  oIndex = F.gpuIndex;
  oPref = F.preferredLoc;
  oActual = F.actualLoc;
  oAccess = F.accessMask;
  oAip = F.aipMask;
  oGran = F.granularity;
  oAddr = F.addr;
  oStart = F.rangeStart;
  oLast = F.rangeLast;
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

/**
 * restoreRule inline over the records (a QuickJS call with six arguments costs as much as the
 * rule itself); each field is read only when the rule gets to it.
 * @type {import("../types").MigrationHooks["restoreLocationBatch"]}
 */
export function restoreLocationBatch(b, ctx) {
  const faults = b.faults, n = b.n, stride = b.stride, decisions = b.decisions;
  if (b.F !== layoutOf) layout(b.F);
  if (ctx.gpus !== tablesFor) tables(ctx.gpus);
  for (let o = 0, d = 0, end = n * stride; o < end; o += stride, d += 3) {
    const gpuId = faults[o + oGpu];
    const pref = faults[o + oPref];
    if (anyApu && apuById[gpuId >>> 0] === true) {
      decisions[d] = SYSMEM;
      continue;
    }
    if (pref === gpuId || pref === SYSMEM) {
      decisions[d] = pref;
      continue;
    }
    const index = faults[o + oIndex];
    // The hive is looked up only on the paths that compare it.
    if (pref !== UNDEFINED && anyHive) {
      const hive = hiveOfFault(gpuId, index);
      if (hive !== 0 && hiveById[pref >>> 0] === hive) {
        decisions[d] = pref;
        continue;
      }
    }
    if (index < 32 ? ((faults[o + oAccess] >>> index) & 1) === 1 : hasBit(faults[o + oAccess], index)) decisions[d] = gpuId;
    else if (index < 32 ? ((faults[o + oAip] >>> index) & 1) === 1 : hasBit(faults[o + oAip], index)) {
      const actual = faults[o + oActual];
      if (actual === SYSMEM || actual === gpuId) decisions[d] = actual;
      else {
        const hive = anyHive ? hiveOfFault(gpuId, index) : 0;
        decisions[d] = hive !== 0 && hiveById[actual >>> 0] === hive ? actual : SYSMEM;
      }
    } else decisions[d] = DENY;
  }
}

/**
 * Hive of the faulting GPU of a record: by its index when the gpu_id there matches (a dense
 * array read), else by gpu_id.
 * @param {number} gpuId @param {number} index
 */
function hiveOfFault(gpuId, index) {
  const ix = index & INDEX_MAX;
  return idByIndex[ix] === gpuId && ix === index ? hiveByIndex[ix] : hiveById[gpuId >>> 0] || 0;
}

/** 2 ** k for the granularities a range can have (0..63): a table read, not a power. */
const POW2 = Array.from({ length: 64 }, (_, k) => 2 ** k);

/** @type {import("../types").MigrationHooks["migrationWindowBatch"]} */
export function migrationWindowBatch(b) {
  const faults = b.faults, n = b.n, stride = b.stride, decisions = b.decisions;
  if (b.F !== layoutOf) layout(b.F);
  for (let o = 0, d = 1, end = n * stride; o < end; o += stride, d += 3) {
    // The same block as migrationWindow: addr - addr % g is floor(addr / g) * g for the
    // non-negative integer page numbers of a fault, without two Math calls.
    let g = POW2[faults[o + oGran] | 0];
    if (g === undefined) g = 2 ** faults[o + oGran];
    const addr = faults[o + oAddr];
    const blockStart = addr - (addr % g);
    const blockLast = blockStart + g - 1;
    const rs = faults[o + oStart], rl = faults[o + oLast];
    decisions[d] = blockStart > rs ? blockStart : rs;
    decisions[d + 1] = blockLast < rl ? blockLast : rl;
  }
}
