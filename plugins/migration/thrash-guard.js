// @ts-check
// thrash-guard: NVIDIA UVM's thrashing mitigation (uvm_perf_thrashing.c, kfd-svm.md §10) on
// top of the kernel's own decisions, with the signal KFD has. Per 2 MiB block (512 pages):
//
//   detect   every migration of the block, whatever its trigger, is seen as it ends (observe,
//            kind "migrate": KFD's MIGRATE_END). A return (the block goes back to where it
//            was before its previous move, as the results' thrashEvents count it) within
//            lapse_us of that move extends a chain; a move after more than lapse_us restarts
//            it; the second leg of a VRAM->VRAM bounce (RAM -> the other GPU, right after the
//            whole range went back to RAM) leaves it as it is. `threshold` returns in a row
//            (default 3) make the block thrash;
//   throttle while it thrashes, a fault that would migrate it again does not: the block is
//            mapped in system memory, and throttle periods of nap_us are counted;
//   pin      after pin_threshold throttle periods the block is pinned there for pin_ms;
//   reset    a block that has not thrashed for epoch_ms goes back to normal, at most
//            max_resets times (a block that keeps thrashing periodically keeps its state);
//            an expired pin also ends the episode.
//
// Why system memory and not the data's current location ("map remotely" in UVM): on KFD a
// GPU fault runs the migration branch whenever the range or the answer is in VRAM
// (svm_range_restore_pages: actual_loc != 0 || best_loc != 0). Answering a hive peer's VRAM
// migrates to that peer (nothing to move), and migrate_vma_setup's notifier still unmaps the
// window from every GPU, so the other GPU faults again and the ping-pong of faults goes on.
// Answering system memory for data in system memory is a mapping only: once the block's
// pages are back in RAM, every GPU keeps its mapping and no fault comes again.
//
// Why lapse_us is 200 ms and not UVM's 500 µs: on KFD a range takes at most one GPU fault
// per 2 ms (the duplicate window, kfd-svm.md §2) and a VRAM->VRAM move sends the whole range
// through system memory, so the moves of a block that two GPUs take turns on are tens of
// milliseconds apart (pingpong's 64 MiB: about 70 ms a turn). A block moved once (a stream,
// the first pass of an oversubscribed buffer) never returns, so it never thrashes.
//
// What it cannot see: accesses (KFD has no access counters; a GPU reading a page it has
// mapped raises no event), so a block read by two GPUs without moving never thrashes here.
// Everything else is kernel-default: the kernel's answer (svm_range_best_restore_location)
// comes from the global `kernel`; a fault the kernel denies, or whose data already is where
// the kernel wants it, is the kernel's. The window is not exported, so the host applies the
// kernel's window.
//
// State: module-level, bounded by blocks_max (least recently touched block evicted); one
// event updates at most EVENT_BLOCKS_MAX blocks. It is lost when the host rebuilds the
// sandbox (after a crash or an OOM recycle): the blocks then start over as never-migrated,
// which only delays detection. Acceptable for a heuristic.
//
// Cost: written for QuickJS, whose interpreter has no inline caches (every property read
// and call counts). The parameters are read into module variables once per ctx.params
// object (paramsRead), the record and event field offsets once per layout object, the
// kernel's functions once at load; observe reads the events in place (observeBatch, no
// object per event); a block touched again while it is already the most recently touched
// one is not moved in the Map. These change no decision: the rules below are as written.

/** Tunables, uvm_perf_thrashing style: name, default, bounds, meaning. */
export const params = {
  threshold: {
    type: "integer",
    default: 3,
    min: 1,
    max: 7,
    description: "returns in a row (back to where the block was before its previous move), each within lapse_us of that move, after which a block thrashes (uvm_perf_thrashing_threshold)",
  },
  pin_threshold: {
    type: "integer",
    default: 10,
    min: 1,
    max: 255,
    description: "throttle periods of a thrashing block before it is pinned in system memory (uvm_perf_thrashing_pin_threshold)",
  },
  lapse_us: {
    type: "integer",
    default: 200000,
    min: 1,
    max: 1000000,
    description: "a return of a block closer than this to its previous move is a thrashing event, µs (uvm_perf_thrashing_lapse_usec; KFD's moves are ms apart, see the header)",
  },
  nap_us: {
    type: "integer",
    default: 500,
    min: 1,
    max: 1000000,
    description: "length of one throttle period, µs: pin_threshold of them pin the block (uvm_perf_thrashing_nap x lapse)",
  },
  pin_ms: {
    type: "integer",
    default: 150,
    min: 1,
    max: 600000,
    description: "how long a pinned block stays mapped in system memory before it may migrate again, ms (uvm_perf_thrashing_pin x lapse)",
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
/**
 * Most blocks one observed event updates: 1 GiB. A VRAM->VRAM move first returns the whole
 * range to system memory, so one event can span every block of a large range.
 */
const EVENT_BLOCKS_MAX = 512;

/** The kernel's rules, looked up once (`kernel` exists before this module runs). */
const kernelRestoreLocation = kernel.restoreLocation;
const kernelRestoreLocationBatch = kernel.restoreLocationBatch;

// The parameters as numbers, read once per ctx.params object (the host's context object
// lives while the GPU list and parameters stay the same). Times in ns.
/** @type {unknown} */
let paramsOf = null;
let threshold = 3;
let pinThreshold = 10;
let lapseNs = 200e6;
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
let eKind = 0, eNowNs = 0, eStart = 0, ePages = 0, eFrom = 0, eTo = 0;
let kMigrate = -1;

/**
 * @typedef {object} BlockState
 * @property {number} leftLoc       where the block was before its last move (the move's `from`)
 * @property {number} lastMigrationNs  time of that move; -1 = none seen
 * @property {number} chain         returns in a row, each within lapse of the move before it (saturates at threshold)
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
    leftLoc: LOC_UNKNOWN,
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
 * A migration of (part of) the block from `from` to `to` at `nowNs`: a return (back to where
 * the block was before its previous move) within lapse of that move extends the chain; a
 * move after more than lapse restarts it; another move within lapse (the second leg of a
 * VRAM->VRAM bounce through system memory) leaves it as it is. `threshold` returns in a
 * row make the block thrash.
 * @param {BlockState} st @param {number} nowNs @param {number} from @param {number} to
 */
function blockMigrated(st, nowNs, from, to) {
  const recent = st.lastMigrationNs >= 0 && nowNs - st.lastMigrationNs <= lapseNs;
  if (!recent) st.chain = 0;
  else if (to === st.leftLoc) st.chain = Math.min(st.chain + 1, threshold);
  st.leftLoc = from;
  st.lastMigrationNs = nowNs;
  if (st.chain >= threshold) {
    st.thrashing = true;
    st.lastThrashNs = nowNs;
  }
}

/**
 * One fault: the kernel's answer `best` unless the block thrashes (throttled or pinned: map
 * in system memory). The parameters are paramsRead's (the caller reads ctx.params first).
 * @param {import("../types").MigrationContext} ctx
 * @param {number} _gpuId (unused: every GPU is throttled alike) @param {number} addr @param {number} actualLoc @param {number} best
 */
function thrashRestoreLocation(ctx, _gpuId, addr, actualLoc, best) {
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
  // System memory (header); the move there, if any, is counted when its migrate event arrives.
  return st.pinnedUntilNs > 0 || st.thrashing ? SYSMEM : best;
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

/**
 * The only events observe reads: the host builds and sends no others. A TTM eviction is
 * also a migrate event (trigger TTM_EVICTION), so "evict" would count it twice.
 */
export const observeKinds = ["migrate"];

/**
 * One observed migration of pages [start, start + npages) from `from` to `to` at `nowNs`
 * (its MIGRATE_END), whatever its trigger.
 * @param {number} nowNs @param {number} start @param {number} npages @param {number} from @param {number} to
 */
function eventSeen(nowNs, start, npages, from, to) {
  const first = Math.floor(start / BLOCK_PAGES);
  const last = Math.min(Math.floor((start + npages - 1) / BLOCK_PAGES), first + EVENT_BLOCKS_MAX - 1);
  for (let block = first; block <= last; block++) {
    const st = /** @type {BlockState} */ (blockTouch(block, true));
    blockExpire(st, nowNs);
    blockMigrated(st, nowNs, from, to);
  }
}

/** @type {import("../types").MigrationHooks["observe"]} */
export function observe(input, ctx) {
  if (ctx.params !== paramsOf) paramsRead(ctx.params);
  const events = input.events;
  for (let i = 0; i < events.length; i++) {
    const ev = events[i];
    if (ev.kind !== "migrate" || ev.npages < 1) continue;
    eventSeen(ev.nowNs, ev.start, ev.npages, ev.from, ev.to);
  }
  return null;
}

/**
 * observe on the events in place (no object per event); the host calls it instead of
 * observe whenever it is exported.
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
    eFrom = E.from;
    eTo = E.to;
    kMigrate = K.migrate;
  }
  const events = b.events;
  for (let o = 0, end = b.n * b.stride, stride = b.stride; o < end; o += stride) {
    const kind = events[o + eKind];
    const npages = events[o + ePages];
    if (kind !== kMigrate || npages < 1) continue;
    eventSeen(events[o + eNowNs], events[o + eStart], npages, events[o + eFrom], events[o + eTo]);
  }
}
