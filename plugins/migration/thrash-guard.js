// @ts-check
// thrash-guard: NVIDIA UVM's thrashing mitigation (uvm_perf_thrashing.c, kfd-svm.md §10) on
// top of the kernel's own decisions. Per 2 MiB block (512 pages) of the address space:
//
//   detect   a migration that follows the previous one of the block within lapse_us extends
//            a chain; when the chain holds `threshold` such migrations (default: 3, i.e. the
//            4th move in a row, each within 500 µs of the one before) the block thrashes.
//   throttle while it thrashes, a fault that would migrate it again does not: the block is
//            mapped where its data is for nap_us (one throttle period);
//   pin      after pin_threshold throttle periods the block is pinned for pin_ms: every
//            faulting GPU maps it remotely instead of migrating it;
//   reset    a block that has not thrashed for epoch_ms goes back to normal, at most
//            max_resets times (a block that keeps thrashing periodically keeps its state);
//            an expired pin also ends the episode.
//
// "Map remotely" on KFD means: return the data's current location when it is system memory
// or VRAM of a GPU in the faulting GPU's XGMI hive (kfd-svm.md §4: peers read each other's
// VRAM over XGMI); anything else is pulled back to system memory, which every GPU can map.
// Everything else is kernel-default: the kernel's answer (svm_range_best_restore_location)
// comes from the global `kernel`, and the hive test of "map remotely" is kernel.sameHive. The
// window is not exported, so the host applies the kernel's window.
//
// Migrations are seen two ways: this plugin's own restoreLocation decisions (GPU faults)
// and observed events (observeBatch) of kind "migrate" with any other trigger (prefetch,
// CPU fault, TTM eviction). Migrate events with trigger PAGEFAULT_GPU are the moves this
// plugin already counted when it decided them, so they only update the known location (no
// double count).
//
// State: module-level, bounded by blocks_max (least recently touched block evicted). It is
// lost when the host rebuilds the sandbox (after a crash or an OOM recycle): the blocks then
// start over as never-migrated, which only delays detection. Acceptable for a heuristic.
//
// Cost: written for QuickJS, whose interpreter has no inline caches (every property read
// and call counts). The parameters are read into module variables once per ctx.params
// object (paramsRead), the record and event field offsets once per layout object, the
// kernel's functions once at load; the events are read in place (observeBatch, no object
// per event); a block touched again while it is already the most recently touched
// one is not moved in the Map. These change no decision: the rules below are as written.

/** Tunables, uvm_perf_thrashing style: name, default, bounds, meaning. */
export const params = {
  threshold: {
    type: "integer",
    default: 3,
    min: 1,
    max: 7,
    description: "consecutive migrations, each within lapse_us of the previous one, after which a block thrashes (uvm_perf_thrashing_threshold)",
  },
  pin_threshold: {
    type: "integer",
    default: 10,
    min: 1,
    max: 255,
    description: "throttle periods of a thrashing block before it is pinned and mapped remotely (uvm_perf_thrashing_pin_threshold)",
  },
  lapse_us: {
    type: "integer",
    default: 500,
    min: 1,
    max: 1000000,
    description: "two migrations of a block closer than this are thrashing events, µs (uvm_perf_thrashing_lapse_usec)",
  },
  nap_us: {
    type: "integer",
    default: 500,
    min: 1,
    max: 1000000,
    description: "length of one throttle period, µs: faults in it map the block where it is (uvm_perf_thrashing_nap x lapse)",
  },
  pin_ms: {
    type: "integer",
    default: 150,
    min: 1,
    max: 600000,
    description: "how long a pinned block stays mapped remotely before it may migrate again, ms (uvm_perf_thrashing_pin x lapse)",
  },
  epoch_ms: {
    type: "integer",
    default: 1000,
    min: 1,
    max: 600000,
    description: "a thrashing block with no thrashing event for this long is reset to normal, ms (uvm_perf_thrashing_epoch x lapse)",
  },
  max_resets: {
    type: "integer",
    default: 4,
    min: 0,
    max: 255,
    description: "times a block may be reset to normal; after that it keeps its thrashing state (uvm_perf_thrashing_max_resets)",
  },
  blocks_max: {
    type: "integer",
    default: 4096,
    min: 1,
    max: 65536,
    description: "most 2 MiB blocks tracked; the least recently touched one is forgotten beyond this",
  },
};

const SYSMEM = 0;
const DENY = -1;
/** Location not known yet (never a gpu_id, 0 or -1). */
const LOC_UNKNOWN = -2;
/** 2 MiB in 4 KiB pages: the unit of tracking (a uvm va_block, a KFD granularity-9 window). */
const BLOCK_PAGES = 512;
/** Most blocks one observed event updates (a prefetch of a 1 GiB range spans 512 blocks). */
const EVENT_BLOCKS_MAX = 64;
/** KFD_MIGRATE_TRIGGER_PAGEFAULT_GPU: moves this plugin decided itself. */
const TRIGGER_PAGEFAULT_GPU = 1;

/** The kernel's rules, looked up once (`kernel` exists before this module runs). */
const kernelRestoreLocation = kernel.restoreLocation;
const kernelRestoreLocationBatch = kernel.restoreLocationBatch;
const kernelSameHive = kernel.sameHive;

// The parameters as numbers, read once per ctx.params object (the host's context object
// lives while the GPU list and parameters stay the same). Times in ns.
/** @type {unknown} */
let paramsOf = null;
let threshold = 3;
let pinThreshold = 10;
let lapseNs = 500e3;
let napNs = 500e3;
let pinNs = 150e6;
let epochNs = 1000e6;
let maxResets = 4;
let blocksMax = 4096;

/** @param {import("../types").Params} p */
function paramsRead(p) {
  paramsOf = p;
  threshold = /** @type {number} */ (p.threshold);
  pinThreshold = /** @type {number} */ (p.pin_threshold);
  lapseNs = /** @type {number} */ (p.lapse_us) * 1e3;
  napNs = /** @type {number} */ (p.nap_us) * 1e3;
  pinNs = /** @type {number} */ (p.pin_ms) * 1e6;
  epochNs = /** @type {number} */ (p.epoch_ms) * 1e6;
  maxResets = /** @type {number} */ (p.max_resets);
  blocksMax = /** @type {number} */ (p.blocks_max);
}

// Field offsets of the fault records and events, and the kind codes, read once per layout
// object (the host hands the same frozen F, E and K every call).
/** @type {unknown} */
let faultLayoutOf = null;
let oGpu = 0, oAddr = 0, oActual = 0;
/** @type {unknown} */
let eventLayoutOf = null;
/** @type {unknown} */
let kindCodesOf = null;
let eKind = 0, eNowNs = 0, eStart = 0, ePages = 0, eTo = 0, eTrigger = 0;
let kMigrate = -1, kEvict = -1;

/**
 * @typedef {object} BlockState
 * @property {number} lastTo        where the block was last moved (LOC_UNKNOWN at first)
 * @property {number} lastMigrationNs  time of that move; -1 = none seen
 * @property {number} chain         migrations in a row each within lapse of the previous (saturates at threshold)
 * @property {boolean} thrashing
 * @property {number} lastThrashNs  last thrashing event (detection or throttled fault)
 * @property {number} throttleEndNs end of the current throttle period; 0 = none
 * @property {number} throttles     throttle periods since the block started thrashing
 * @property {number} pinnedUntilNs end of the pin; 0 = not pinned
 * @property {number} resets        times the block went back to normal after epoch_ms
 */

/** @type {Map<number, BlockState>} block number (addr / 512) -> state, in least-recently-touched order */
const blocks = new Map();
/**
 * The most recently touched block (the Map's last key) and its state: touching it again
 * leaves the order as it is, so it is not moved (nor looked up). NO_BLOCK: none.
 */
const NO_BLOCK = -1;
let newestBlock = NO_BLOCK;
/** @type {BlockState | undefined} */
let newestState;

/**
 * The block's state, moved to the most recently touched end; created when `create`.
 * @param {number} block @param {boolean} create
 * @returns {BlockState | undefined}
 */
function blockTouch(block, create) {
  if (block === newestBlock) return newestState;
  let st = blocks.get(block);
  if (st !== undefined) {
    blocks.delete(block);
    blocks.set(block, st);
    newestBlock = block;
    newestState = st;
    return st;
  }
  if (!create) return undefined;
  st = {
    lastTo: LOC_UNKNOWN,
    lastMigrationNs: -1,
    chain: 0,
    thrashing: false,
    lastThrashNs: 0,
    throttleEndNs: 0,
    throttles: 0,
    pinnedUntilNs: 0,
    resets: 0,
  };
  blocks.set(block, st);
  newestBlock = block;
  newestState = st;
  // Bounded: forget the least recently touched blocks (Map iterates in insertion order);
  // never the newest, just set (blocks_max >= 1).
  while (blocks.size > blocksMax) {
    const oldest = blocks.keys().next();
    if (oldest.done) break;
    blocks.delete(oldest.value);
  }
  return st;
}

/** @param {BlockState} st */
function blockClearEpisode(st) {
  st.thrashing = false;
  st.chain = 0;
  st.throttles = 0;
  st.throttleEndNs = 0;
  st.pinnedUntilNs = 0;
}

/**
 * Expire a pin whose time is up; reset a block quiet for an epoch (at most max_resets times).
 * @param {BlockState} st @param {number} nowNs
 */
function blockExpire(st, nowNs) {
  if (st.pinnedUntilNs > 0) {
    if (nowNs < st.pinnedUntilNs) return;
    blockClearEpisode(st);
    return;
  }
  if (st.thrashing && nowNs - st.lastThrashNs > epochNs && st.resets < maxResets) {
    blockClearEpisode(st);
    st.resets++;
  }
}

/**
 * A migration of the block to `to` at `nowNs`: extend or restart the chain, detect thrashing.
 * A move to where the block already is was seen before (decision, then its event): ignored.
 * @param {BlockState} st @param {number} nowNs @param {number} to
 */
function blockMigrated(st, nowNs, to) {
  if (to === st.lastTo) return;
  if (st.lastMigrationNs >= 0 && nowNs - st.lastMigrationNs <= lapseNs) st.chain = Math.min(st.chain + 1, threshold);
  else st.chain = 0;
  st.lastTo = to;
  st.lastMigrationNs = nowNs;
  if (st.chain >= threshold) {
    st.thrashing = true;
    st.lastThrashNs = nowNs;
  }
}

/**
 * Where a GPU maps a block without migrating it to itself: the data's current location when
 * the GPU can reach it (system memory, itself, a hive peer), else system memory.
 * @param {import("../types").PolicyGpu[]} gpus @param {number} gpuId @param {number} actualLoc
 */
function remoteLocation(gpus, gpuId, actualLoc) {
  return actualLoc === SYSMEM || kernelSameHive(gpus, gpuId, actualLoc) ? actualLoc : SYSMEM;
}

/**
 * One fault: the kernel's answer `best` unless the block thrashes (throttled or pinned: map
 * remotely). The parameters are paramsRead's (the caller reads ctx.params first).
 * @param {import("../types").MigrationContext} ctx
 * @param {number} gpuId @param {number} addr @param {number} actualLoc @param {number} best
 */
function thrashRestoreLocation(ctx, gpuId, addr, actualLoc, best) {
  // Nothing moves: a denied fault, or data already where the kernel wants it.
  if (best === DENY || best === actualLoc) return best;
  const nowNs = ctx.nowNs;
  const st = /** @type {BlockState} */ (blockTouch(Math.floor(addr / BLOCK_PAGES), true));
  blockExpire(st, nowNs);
  if (st.pinnedUntilNs === 0 && st.thrashing) {
    st.lastThrashNs = nowNs;
    if (nowNs >= st.throttleEndNs) {
      // A new throttle period; enough of them pin the block.
      st.throttles++;
      if (st.throttles >= pinThreshold) {
        st.pinnedUntilNs = nowNs + pinNs;
        st.throttles = 0;
        st.throttleEndNs = 0;
      } else {
        st.throttleEndNs = nowNs + napNs;
      }
    }
  }
  if (st.pinnedUntilNs > 0 || st.thrashing) {
    const loc = remoteLocation(ctx.gpus, gpuId, actualLoc);
    // Pulling VRAM of a non-peer GPU back to system memory is a move, not a thrashing event.
    if (loc !== actualLoc) st.lastTo = loc;
    return loc;
  }
  blockMigrated(st, nowNs, best);
  return best;
}

/** @type {import("../types").MigrationHooks["restoreLocation"]} */
export function restoreLocation(f, ctx) {
  if (ctx.params !== paramsOf) paramsRead(ctx.params);
  return thrashRestoreLocation(ctx, f.gpuId, f.addr, f.actualLoc, kernelRestoreLocation(f, ctx));
}

/** @type {import("../types").MigrationHooks["restoreLocationBatch"]} */
export function restoreLocationBatch(b, ctx) {
  // The kernel's answers first (they depend on nothing but the fault), then the thrashing
  // state, fault by fault in order.
  kernelRestoreLocationBatch(b, ctx);
  if (ctx.params !== paramsOf) paramsRead(ctx.params);
  const F = b.F;
  if (F !== faultLayoutOf) {
    faultLayoutOf = F;
    oGpu = F.gpuId;
    oAddr = F.addr;
    oActual = F.actualLoc;
  }
  const faults = b.faults, decisions = b.decisions;
  for (let o = 0, d = 0, end = b.n * b.stride, stride = b.stride; o < end; o += stride, d += 3) {
    decisions[d] = thrashRestoreLocation(ctx, faults[o + oGpu], faults[o + oAddr], faults[o + oActual], decisions[d]);
  }
}

/** The only events observe reads: the host builds and sends no others. */
export const observeKinds = ["migrate", "evict"];

/**
 * One observed migration or eviction of pages [start, start + npages) to `to` at `nowNs`.
 * @param {boolean} counted the move was not decided here (a migration not triggered by a GPU
 *   fault): it extends the chain; the others only tell where the data went
 * @param {number} nowNs @param {number} start @param {number} npages @param {number} to
 */
function eventSeen(counted, nowNs, start, npages, to) {
  const first = Math.floor(start / BLOCK_PAGES);
  const last = Math.min(Math.floor((start + npages - 1) / BLOCK_PAGES), first + EVENT_BLOCKS_MAX - 1);
  for (let block = first; block <= last; block++) {
    const st = blockTouch(block, counted);
    if (st === undefined) continue;
    blockExpire(st, nowNs);
    if (counted) blockMigrated(st, nowNs, to);
    else st.lastTo = to;
  }
}

/**
 * observe, on the events in place (no object per event): the migrations and evictions.
 * @type {import("../types").MigrationHooks["observeBatch"]}
 */
export function observeBatch(b, ctx) {
  if (ctx.params !== paramsOf) paramsRead(ctx.params);
  const E = b.E, K = b.K;
  if (E !== eventLayoutOf || K !== kindCodesOf) {
    eventLayoutOf = E;
    kindCodesOf = K;
    eKind = E.kind;
    eNowNs = E.nowNs;
    eStart = E.start;
    ePages = E.npages;
    eTo = E.to;
    eTrigger = E.trigger;
    kMigrate = K.migrate;
    kEvict = K.evict;
  }
  const events = b.events;
  for (let o = 0, end = b.n * b.stride, stride = b.stride; o < end; o += stride) {
    const kind = events[o + eKind];
    const npages = events[o + ePages];
    if ((kind !== kMigrate && kind !== kEvict) || npages < 1) continue;
    eventSeen(kind === kMigrate && events[o + eTrigger] !== TRIGGER_PAGEFAULT_GPU, events[o + eNowNs], events[o + eStart], npages, events[o + eTo]);
  }
}
