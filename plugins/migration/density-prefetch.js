// @ts-check
// density-prefetch: NVIDIA UVM's density prefetcher (uvm_perf_prefetch.c, kfd-svm.md §10) on
// KFD, decided by the migration window.
//
//   restoreLocation       not exported: the host applies the kernel's rule, and the window
//                         below recomputes the same destination (kernel.bestRestoreLocation).
//   migrationWindow       when the destination is a GPU: per 2 MiB block (512 pages) a bitmap
//   migrationWindowBatch  of the pages resident on that GPU, seen as a binary tree (leaves =
//                         64 KiB big pages of 16 pages, root = the block). The faulting big
//                         page counts as populated; walking from it up to the root, the window
//                         is the largest subtree holding the fault whose populated share
//                         exceeds threshold_pct (pages inside the range only, in numerator and
//                         denominator), at least the faulting big page, clipped to the range.
//                         When the destination is system memory (0) or the fault is denied
//                         (-1): the faulting big page, clipped to the range (the kernel's
//                         window at granularity 4 instead of 9).
//
// Why the window and not the `prefetch` hook: on KFD a range accepts one GPU fault per 2 ms
// (the duplicate window, kfd-svm.md §2), and prefetched pages are migrated but not mapped,
// so on a sequential stream every big page still cost a handled fault (32 per block), however
// much had been prefetched. UVM services the prefetch region together with the faulting
// page: uvm_perf_prefetch's hint is added to the same fault's service mask, so those pages
// are migrated and mapped by that one fault. A window does exactly that here: pages of it
// already resident move nothing (the model only maps them), the others are migrated, and all
// are mapped. On a sequential stream over a block the handled faults are those on big pages
// 0, 1, 2, 4, 8 and 16 (each doubles the window: 6 faults per block instead of 32).
//
// Residency comes only from `observeBatch` (events arrive in order, before the next decision):
// migrate events set pages resident on `to` when it is a GPU (a block tracking another GPU
// restarts on the new one) and clear them when `to` is system memory; evict events clear;
// unmap events clear only for trigger UNMAP_FROM_CPU (the CPU freed the memory). Unmaps with
// trigger MMU_NOTIFY_MIGRATE accompany migrations and change nothing. A block tracking
// another GPU than the fault's destination counts as empty. Unlike UVM, thrashing pages are
// not excluded: combine with thrash-guard's logic if that matters.
//
// State: a slab of typed arrays, one slot per tracked block (512 page bytes, a 64-node tree of
// counts, its GPU, LRU links), at most blocks_max slots (the least recently set block is
// forgotten), a Map from block number to slot. A block that becomes empty frees its slot.
// Lost when the host rebuilds the sandbox: the blocks then start empty, which only makes the
// windows smaller until observe fills them again.
//
// Cost: written for QuickJS, whose interpreter has no inline caches: every call, property
// read and loop iteration counts, so the hot paths (a fault on a block wholly inside its
// range, an event within one block) are written out in the batch loops. The decision
// allocates nothing: integer keys and offsets (`| 0` on numbers read from the Float64Array
// records: QuickJS converts a float Map key or index to a string); the field offsets of
// the records and events and the parameters are read once per layout / parameter object
// (the host hands the same frozen objects every call), not per call; the block of the last
// lookup is remembered (a stream faults on one block several times in a row), else one Map
// lookup; the walk of 5 tree levels is unrolled against per-level limits computed with the parameters. Only a block cut by the
// range's edge counts pages of its edge big pages one by one.

/** Tunables, uvm_perf_prefetch style: name, default, bounds, meaning. */
export const params = {
  threshold_pct: {
    type: "integer",
    default: 51,
    min: 1,
    max: 100,
    description: "a subtree joins the window when more than this share of its pages is populated, % (uvm_perf_prefetch_threshold)",
  },
  blocks_max: {
    type: "integer",
    default: 2048,
    min: 1,
    max: 16384,
    description: "most 2 MiB blocks whose residency is kept (about 660 bytes each)",
  },
};

const SYSMEM = 0;
/** KFD_SVM_UNMAP_TRIGGER_UNMAP_FROM_CPU: the CPU unmapped (freed) the pages. */
const TRIGGER_UNMAP_FROM_CPU = 2;
/** 2 MiB in 4 KiB pages: the root of a block's tree (a uvm va_block). */
const BLOCK_PAGES = 512;
/** 64 KiB in 4 KiB pages: the big page, the smallest window. */
const BIG_PAGE_PAGES = 16;
/** log2 of BIG_PAGE_PAGES. */
const BIG_PAGE_SHIFT = 4;
/** Nodes of a block's tree in heap order: 1 = the block, 2n and 2n+1 the halves of n; 0 unused. */
const TREE_NODES = 64;
/** Node of big page 0: nodes LEAF_BASE..TREE_NODES-1 are the block's 32 big pages. */
const LEAF_BASE = 32;
/**
 * Page numbers below this give exact int32 block numbers with `(addr / BLOCK_PAGES) | 0`.
 * GPU virtual addresses have 48 bits (pages < 2^36); a fault above this gets the big page.
 */
const ADDR_PAGES_MAX = 2 ** 40;
/**
 * Most blocks one observed event sets resident: an unaligned 1 GiB range (the largest SVM
 * range) spans 513. Clearing needs no bound: it visits at most the tracked blocks.
 */
const SPAN_BLOCKS_MAX = 513;
/** Slots of the slab after its first growth (it doubles up to blocks_max + 1). */
const SLOTS_FIRST = 64;

/** The kernel's destination rule, looked up once (`kernel` exists before this module runs). */
const bestRestoreLocation = kernel.bestRestoreLocation;

/** A full block's tree: every node holds its page count. */
const TREE_FULL = new Uint16Array(TREE_NODES);
for (let n = 1; n < TREE_NODES; n++) TREE_FULL[n] = BLOCK_PAGES >> (31 - Math.clz32(n));

// The slab. Slot 0 is the empty block (never written: untracked blocks and blocks tracking
// another GPU read it) and the sentinel of the LRU list (lruNext[0] = least recently set).
let slotsCap = 1;
let slotsUsed = 1;
/** slot * BLOCK_PAGES + page offset: 1 = resident on gpuOf[slot]. */
let pages = new Uint8Array(BLOCK_PAGES);
/** slot * TREE_NODES + node: resident pages under the node. */
let tree = new Uint16Array(TREE_NODES);
/** The GPU a slot's bitmap is about. */
let gpuOf = new Uint32Array(1);
/** The block number of a slot. */
let blockOf = new Int32Array(1);
let lruPrev = new Int32Array(1);
let lruNext = new Int32Array(1);
/** Slots of blocks that became empty, ready for reuse. */
let slotsFree = new Int32Array(1);
let slotsFreeCount = 0;
/** @type {Map<number, number>} block number (addr / 512, an int32) -> slot */
const blocks = new Map();

/**
 * The block of the last lookup and its slot (blocks.get skipped when the next fault or event
 * is on the same block). NO_BLOCK: none; slotRelease forgets it with its block.
 */
const NO_BLOCK = -1;
let cachedBlock = NO_BLOCK;
let cachedSlot = 0;

// Field offsets of the fault records and events, and the kind codes, read once per layout
// object (the host hands the same frozen F, E and K every call), not per call.
/** @type {unknown} */
let faultLayoutOf = null;
let oGpu = 0, oIndex = 0, oPref = 0, oActual = 0, oAccess = 0, oAip = 0, oAddr = 0, oStart = 0, oLast = 0;
/** @type {unknown} */
let eventLayoutOf = null;
/** @type {unknown} */
let kindCodesOf = null;
let eKind = 0, eStart = 0, ePages = 0, eTo = 0, eTrigger = 0;
let kMigrate = -1, kEvict = -1, kUnmap = -1;

/** @param {import("../types").FaultBatch["F"]} F */
function faultLayout(F) {
  faultLayoutOf = F;
  oGpu = F.gpuId;
  oIndex = F.gpuIndex;
  oPref = F.preferredLoc;
  oActual = F.actualLoc;
  oAccess = F.accessMask;
  oAip = F.aipMask;
  oAddr = F.addr;
  oStart = F.rangeStart;
  oLast = F.rangeLast;
}

/** @param {import("../types").EventBatch["E"]} E @param {import("../types").EventBatch["K"]} K */
function eventLayout(E, K) {
  eventLayoutOf = E;
  kindCodesOf = K;
  eKind = E.kind;
  eStart = E.start;
  ePages = E.npages;
  eTo = E.to;
  eTrigger = E.trigger;
  kMigrate = K.migrate;
  kEvict = K.evict;
  kUnmap = K.unmap;
}

// The parameters, read once per ctx.params object (the host's context object lives while
// the GPU list and parameters stay the same).
/** @type {unknown} */
let paramsOf = null;
let thresholdPct = 51;
let blocksMax = 2048;
/**
 * A subtree of 32, 64, 128, 256, 512 pages of a block wholly in the range joins the window
 * when its populated pages exceed this: pop * 100 > thresholdPct * size holds for an integer
 * pop exactly when pop > floor(thresholdPct * size / 100).
 */
let over32 = 0, over64 = 0, over128 = 0, over256 = 0, over512 = 0;

/** @param {import("../types").Params} params */
function paramsRead(params) {
  paramsOf = params;
  thresholdPct = /** @type {number} */ (params.threshold_pct);
  blocksMax = /** @type {number} */ (params.blocks_max);
  over32 = Math.floor((thresholdPct * 32) / 100);
  over64 = Math.floor((thresholdPct * 64) / 100);
  over128 = Math.floor((thresholdPct * 128) / 100);
  over256 = Math.floor((thresholdPct * 256) / 100);
  over512 = Math.floor((thresholdPct * 512) / 100);
}

/** @param {number} cap */
function slabGrow(cap) {
  /** @template {Uint8Array | Uint16Array | Uint32Array | Int32Array} T @param {T} old @param {T} next @returns {T} */
  const copy = (old, next) => {
    next.set(old);
    return next;
  };
  pages = copy(pages, new Uint8Array(cap * BLOCK_PAGES));
  tree = copy(tree, new Uint16Array(cap * TREE_NODES));
  gpuOf = copy(gpuOf, new Uint32Array(cap));
  blockOf = copy(blockOf, new Int32Array(cap));
  lruPrev = copy(lruPrev, new Int32Array(cap));
  lruNext = copy(lruNext, new Int32Array(cap));
  slotsFree = copy(slotsFree, new Int32Array(cap));
  slotsCap = cap;
}

/** @param {number} slot */
function lruUnlink(slot) {
  const p = lruPrev[slot];
  const n = lruNext[slot];
  lruNext[p] = n;
  lruPrev[n] = p;
}

/** Make `slot` the most recently set. @param {number} slot */
function lruLinkNewest(slot) {
  const newest = lruPrev[0];
  lruPrev[slot] = newest;
  lruNext[slot] = 0;
  lruNext[newest] = slot;
  lruPrev[0] = slot;
}

/** Forget the block of `slot` and zero its bitmap. @param {number} slot */
function slotRelease(slot) {
  blocks.delete(blockOf[slot]);
  if (blockOf[slot] === cachedBlock) cachedBlock = NO_BLOCK;
  lruUnlink(slot);
  pages.fill(0, slot * BLOCK_PAGES, (slot + 1) * BLOCK_PAGES);
  tree.fill(0, slot * TREE_NODES, (slot + 1) * TREE_NODES);
}

/** A zeroed slot for a new block: a freed one, a fresh one, or the least recently set one's. */
function slotNew() {
  // blocks_max may have shrunk (a reload keeps no state, but be exact anyway).
  while (blocks.size >= blocksMax && lruNext[0] !== 0) {
    const oldest = lruNext[0];
    slotRelease(oldest);
    slotsFree[slotsFreeCount++] = oldest;
  }
  if (slotsFreeCount > 0) return slotsFree[--slotsFreeCount];
  if (slotsUsed === slotsCap) {
    // Every used slot is the empty block, a tracked block or free, and fewer than blocksMax
    // blocks are tracked here: so the slab is below blocksMax + 1 slots and can grow.
    const doubled = slotsCap * 2 > SLOTS_FIRST ? slotsCap * 2 : SLOTS_FIRST;
    const cap = doubled < blocksMax + 1 ? doubled : blocksMax + 1;
    if (cap <= slotsCap) throw new Error(`density-prefetch: slab of ${slotsCap} slots full with ${blocks.size} of ${blocksMax} blocks`);
    slabGrow(cap);
  }
  return slotsUsed++;
}

/**
 * Set pages [a, b] (offsets) of the block in `slot` to `value` (0 or 1) and update its tree.
 * @param {number} slot @param {number} a @param {number} b @param {number} value
 */
function blockFill(slot, a, b, value) {
  const p0 = slot * BLOCK_PAGES;
  const t0 = slot * TREE_NODES;
  if (a === 0 && b === BLOCK_PAGES - 1) {
    pages.fill(value, p0, p0 + BLOCK_PAGES);
    if (value === 0) tree.fill(0, t0, t0 + TREE_NODES);
    else tree.set(TREE_FULL, t0);
    return;
  }
  pages.fill(value, p0 + a, p0 + b + 1);
  let lo = LEAF_BASE + (a >> BIG_PAGE_SHIFT);
  let hi = LEAF_BASE + (b >> BIG_PAGE_SHIFT);
  // Leaves: the big pages wholly inside [a, b] hold value * 16 (one fill, not a loop: a
  // QuickJS loop iteration costs about as much as a fill call); the one or two an edge cuts
  // are counted page by page.
  const wholeLo = (a & (BIG_PAGE_PAGES - 1)) === 0 ? lo : lo + 1;
  const wholeHi = (b & (BIG_PAGE_PAGES - 1)) === BIG_PAGE_PAGES - 1 ? hi : hi - 1;
  if (wholeLo <= wholeHi) tree.fill(value * BIG_PAGE_PAGES, t0 + wholeLo, t0 + wholeHi + 1);
  if (wholeLo > lo) tree[t0 + lo] = leafCount(p0, lo);
  if (wholeHi < hi && (hi !== lo || wholeLo === lo)) tree[t0 + hi] = leafCount(p0, hi);
  // Only the ancestors of the changed leaves change, level by level. The nodes between a
  // level's two edge nodes lie wholly inside [a, b]: value * their size. Once a level has
  // one node, its change is added to each node above it.
  let size = BIG_PAGE_PAGES;
  while (lo > 1) {
    lo >>= 1;
    hi >>= 1;
    size <<= 1;
    if (lo === hi) {
      const d = tree[t0 + 2 * lo] + tree[t0 + 2 * lo + 1] - tree[t0 + lo];
      for (let n = lo; n >= 1; n >>= 1) tree[t0 + n] += d;
      return;
    }
    if (hi - lo > 1) tree.fill(value * size, t0 + lo + 1, t0 + hi);
    tree[t0 + lo] = tree[t0 + 2 * lo] + tree[t0 + 2 * lo + 1];
    tree[t0 + hi] = tree[t0 + 2 * hi] + tree[t0 + 2 * hi + 1];
  }
}

/**
 * Resident pages of leaf node `n` (a big page) of the block whose bitmap starts at p0.
 * @param {number} p0 @param {number} n
 */
function leafCount(p0, n) {
  let c = 0;
  for (let k = p0 + ((n - LEAF_BASE) << BIG_PAGE_SHIFT), end = k + BIG_PAGE_PAGES; k < end; k++) c += pages[k];
  return c;
}

/**
 * Pages [start, last] arrived on GPU `gpu`: resident; a block tracking another GPU restarts
 * on this one. At most SPAN_BLOCKS_MAX blocks (the first ones).
 * @param {number} start @param {number} last @param {number} gpu
 */
function pagesArrived(start, last, gpu) {
  const first = (start / BLOCK_PAGES) | 0;
  let end = (last / BLOCK_PAGES) | 0;
  if (end - first >= SPAN_BLOCKS_MAX) end = first + SPAN_BLOCKS_MAX - 1;
  for (let block = first; block <= end; block++) {
    const base = block * BLOCK_PAGES;
    let slot = block === cachedBlock ? cachedSlot : blocks.get(block);
    if (slot === undefined) {
      slot = slotNew();
      blocks.set(block, slot);
      blockOf[slot] = block;
      gpuOf[slot] = gpu;
      lruLinkNewest(slot);
    } else {
      if (gpuOf[slot] !== gpu) {
        gpuOf[slot] = gpu;
        blockFill(slot, 0, BLOCK_PAGES - 1, 0);
      }
      // A stream sets the same block again and again: it is the newest already.
      if (lruPrev[0] !== slot) {
        lruUnlink(slot);
        lruLinkNewest(slot);
      }
    }
    // The next fault is most likely on this block.
    cachedBlock = block;
    cachedSlot = slot;
    blockFill(slot, start > base ? (start - base) | 0 : 0, last < base + BLOCK_PAGES - 1 ? (last - base) | 0 : BLOCK_PAGES - 1, 1);
  }
}

/**
 * Clear pages [start, last] of the block in `slot` (number `block`); an emptied block frees
 * its slot.
 * @param {number} block @param {number} slot @param {number} start @param {number} last
 */
function blockClear(block, slot, start, last) {
  const base = block * BLOCK_PAGES;
  blockFill(slot, start > base ? (start - base) | 0 : 0, last < base + BLOCK_PAGES - 1 ? (last - base) | 0 : BLOCK_PAGES - 1, 0);
  if (tree[slot * TREE_NODES + 1] === 0) {
    slotRelease(slot);
    slotsFree[slotsFreeCount++] = slot;
  }
}

/**
 * Pages [start, last] are no longer in VRAM (moved to system memory, evicted, freed). Visits
 * the span's blocks or, when fewer, the tracked ones.
 * @param {number} start @param {number} last
 */
function pagesLeft(start, last) {
  const first = (start / BLOCK_PAGES) | 0;
  const end = (last / BLOCK_PAGES) | 0;
  if (end - first < blocks.size) {
    for (let block = first; block <= end; block++) {
      const slot = block === cachedBlock ? cachedSlot : blocks.get(block);
      if (slot !== undefined) blockClear(block, slot, start, last);
    }
    return;
  }
  // Deleting the entry being visited is allowed during Map.prototype.forEach.
  blocks.forEach((slot, block) => {
    if (block >= first && block <= end) blockClear(block, slot, start, last);
  });
}

/**
 * Resident pages of offsets [x, y] of the block in `slot`: whole big pages from the tree,
 * the others (at most two, at the range's edges) page by page.
 * @param {number} slot @param {number} x @param {number} y
 */
function pagesResident(slot, x, y) {
  const p0 = slot * BLOCK_PAGES;
  const leaves = slot * TREE_NODES + LEAF_BASE;
  let c = 0;
  for (let bp = x >> BIG_PAGE_SHIFT; bp <= y >> BIG_PAGE_SHIFT; bp++) {
    const s = bp << BIG_PAGE_SHIFT;
    const e = s + BIG_PAGE_PAGES - 1;
    if (x <= s && e <= y) c += tree[leaves + bp];
    else for (let k = p0 + (s > x ? s : x), kEnd = p0 + (e < y ? e : y); k <= kEnd; k++) c += pages[k];
  }
  return c;
}

/**
 * Size in pages of the largest subtree of the block in `slot` holding page offset `off`
 * whose populated share, inside the range's offsets [lo, hi], exceeds thresholdPct; at least
 * the big page. The faulting big page counts as populated.
 * @param {number} slot @param {number} off @param {number} lo @param {number} hi
 * @param {number} thresholdPct
 */
function subtreeDensest(slot, off, lo, hi, thresholdPct) {
  const t0 = slot * TREE_NODES;
  if (lo === 0 && hi === BLOCK_PAGES - 1) {
    // The whole block is in the range (the common case): every sibling counts in full, and a
    // subtree of 2 * half pages holds the faulting big page (16 populated) and its sibling.
    let node = LEAF_BASE + (off >> BIG_PAGE_SHIFT);
    let pop = BIG_PAGE_PAGES;
    let best = BIG_PAGE_PAGES;
    for (let size = 2 * BIG_PAGE_PAGES; size <= BLOCK_PAGES; size <<= 1) {
      pop += tree[t0 + (node ^ 1)];
      node >>= 1;
      if (pop * 100 > thresholdPct * size) best = size;
    }
    return best;
  }
  const bs = off & -BIG_PAGE_PAGES;
  const be = bs + BIG_PAGE_PAGES - 1;
  let pop = (be < hi ? be : hi) - (bs > lo ? bs : lo) + 1;
  let valid = pop;
  let best = BIG_PAGE_PAGES;
  let node = LEAF_BASE + (off >> BIG_PAGE_SHIFT);
  // Each level adds the sibling of the subtree holding the fault.
  for (let half = BIG_PAGE_PAGES; half < BLOCK_PAGES; half <<= 1) {
    const ss = (off & -half) ^ half;
    const se = ss + half - 1;
    if (ss >= lo && se <= hi) {
      pop += tree[t0 + (node ^ 1)];
      valid += half;
    } else if (se >= lo && ss <= hi) {
      const x = ss > lo ? ss : lo;
      const y = se < hi ? se : hi;
      pop += pagesResident(slot, x, y);
      valid += y - x + 1;
    }
    node >>= 1;
    if (pop * 100 > thresholdPct * valid) best = half << 1;
  }
  return best;
}

/**
 * The destination and window of faults 0..n-1 of `faults` (fields at F, `stride` apart) into
 * decisions[3i + 1], decisions[3i + 2]: see the header. The one implementation of the window,
 * for the batch form and (through a one-record batch) the per-fault form. The destination
 * is the kernel's rule (the host applies the same rule to the location).
 * @param {Float64Array} faults @param {number} n @param {number} stride
 * @param {import("../types").FaultBatch["F"]} F @param {Float64Array} decisions
 * @param {import("../types").MigrationContext} ctx
 */
function windowsDecide(faults, n, stride, F, decisions, ctx) {
  if (F !== faultLayoutOf) faultLayout(F);
  if (ctx.params !== paramsOf) paramsRead(ctx.params);
  for (let o = 0, d = 0, end = n * stride; o < end; o += stride, d += 3) {
    const addr = faults[o + oAddr];
    const rangeStart = faults[o + oStart];
    const rangeLast = faults[o + oLast];
    const dest = bestRestoreLocation(ctx.gpus, faults[o + oGpu], faults[o + oIndex], faults[o + oPref], faults[o + oActual], faults[o + oAccess], faults[o + oAip]);
    let s = addr - (addr % BIG_PAGE_PAGES);
    let size = BIG_PAGE_PAGES;
    if (dest > SYSMEM && addr < ADDR_PAGES_MAX) {
      const block = (addr / BLOCK_PAGES) | 0;
      const base = block * BLOCK_PAGES;
      const off = (addr - base) | 0;
      // The tracked slot (the cached one, else the Map's); a block tracking another GPU
      // counts as empty (slot 0, whose gpuOf is 0, never a destination here).
      let slot = 0;
      if (block === cachedBlock) slot = cachedSlot;
      else {
        const tracked = blocks.get(block);
        if (tracked !== undefined) {
          cachedBlock = block;
          cachedSlot = tracked;
          slot = tracked;
        }
      }
      if (gpuOf[slot] !== dest) slot = 0;
      if (rangeStart <= base && rangeLast >= base + BLOCK_PAGES - 1) {
        // The whole block is in the range (the common case): subtreeDensest's first branch
        // with its 5 levels unrolled. Each level adds the sibling of the subtree holding the
        // fault (the faulting big page counts 16 populated pages).
        const t0 = slot * TREE_NODES;
        let node = LEAF_BASE + (off >> BIG_PAGE_SHIFT);
        let pop = BIG_PAGE_PAGES + tree[t0 + (node ^ 1)];
        if (pop > over32) size = 32;
        node >>= 1;
        pop += tree[t0 + (node ^ 1)];
        if (pop > over64) size = 64;
        node >>= 1;
        pop += tree[t0 + (node ^ 1)];
        if (pop > over128) size = 128;
        node >>= 1;
        pop += tree[t0 + (node ^ 1)];
        if (pop > over256) size = 256;
        node >>= 1;
        pop += tree[t0 + (node ^ 1)];
        if (pop > over512) size = 512;
      } else {
        const lo = rangeStart > base ? (rangeStart - base) | 0 : 0;
        const hi = rangeLast < base + BLOCK_PAGES - 1 ? (rangeLast - base) | 0 : BLOCK_PAGES - 1;
        size = subtreeDensest(slot, off, lo, hi, thresholdPct);
      }
      s = base + (off & -size);
    }
    const l = s + size - 1;
    decisions[d + 1] = s > rangeStart ? s : rangeStart;
    decisions[d + 2] = l < rangeLast ? l : rangeLast;
  }
}

// The per-fault form's one-record batch: its own layout, fields in the order listed.
const ONE_F = Object.freeze({ gpuId: 0, gpuIndex: 1, preferredLoc: 2, actualLoc: 3, accessMask: 4, aipMask: 5, addr: 6, rangeStart: 7, rangeLast: 8 });
const ONE_STRIDE = 9;
const oneRecord = new Float64Array(ONE_STRIDE);
const oneDecision = new Float64Array(3);

/** @type {import("../types").MigrationHooks["migrationWindow"]} */
export function migrationWindow(f, ctx) {
  oneRecord[0] = f.gpuId;
  oneRecord[1] = f.gpuIndex;
  oneRecord[2] = f.preferredLoc;
  oneRecord[3] = f.actualLoc;
  oneRecord[4] = f.accessMask;
  oneRecord[5] = f.aipMask;
  oneRecord[6] = f.addr;
  oneRecord[7] = f.rangeStart;
  oneRecord[8] = f.rangeLast;
  windowsDecide(oneRecord, 1, ONE_STRIDE, /** @type {import("../types").FaultBatch["F"]} */ (/** @type {unknown} */ (ONE_F)), oneDecision, ctx);
  return { start: oneDecision[1], last: oneDecision[2] };
}

/** @type {import("../types").MigrationHooks["migrationWindowBatch"]} */
export function migrationWindowBatch(b, ctx) {
  windowsDecide(b.faults, b.n, b.stride, b.F, b.decisions, ctx);
}

/**
 * The only events observe reads: the host builds and sends no others. Unmaps only when the
 * CPU freed the memory: on a hive every migration unmaps the range from each GPU
 * (MMU_NOTIFY_MIGRATE), eight events of nine on mi300x-8, all of which would change nothing.
 */
export const observeKinds = ["migrate", "evict", "unmap:unmap_from_cpu"];

/**
 * Residency from the events, read in place (no object per event). Checks kind and trigger
 * itself too: `policy eval` may hand it any event.
 * @type {import("../types").MigrationHooks["observeBatch"]}
 */
export function observeBatch(b, ctx) {
  const events = b.events;
  if (b.E !== eventLayoutOf || b.K !== kindCodesOf) eventLayout(b.E, b.K);
  if (ctx.params !== paramsOf) paramsRead(ctx.params);
  for (let o = 0, end = b.n * b.stride, stride = b.stride; o < end; o += stride) {
    const kind = events[o + eKind];
    const start = events[o + eStart];
    const last = start + events[o + ePages] - 1;
    if (!(start >= 0 && last >= start && last < ADDR_PAGES_MAX)) continue;
    if (kind === kMigrate) {
      const to = events[o + eTo];
      if (to > SYSMEM) pagesArrived(start, last, to);
      else pagesLeft(start, last);
    }
    // An unmap for a migration (MMU_NOTIFY_MIGRATE) or another CPU-side invalidation only
    // drops GPU mappings: the data stays where its migrate event put it. Only memory the CPU
    // unmapped (freed) stops being resident.
    else if (kind === kEvict || (kind === kUnmap && events[o + eTrigger] === TRIGGER_UNMAP_FROM_CPU)) pagesLeft(start, last);
  }
}
