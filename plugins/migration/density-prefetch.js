// @ts-check
// density-prefetch: NVIDIA UVM's prefetcher (uvm_perf_prefetch.c, kfd-svm.md §10) on KFD.
//
//   migrationWindow  the 64 KiB big page (16 pages) holding the fault, clipped to the range,
//                    instead of the kernel's 2 MiB block: the kernel's window (global
//                    `kernel`) at granularity 4 instead of 9. Move little on a fault ...
//   prefetch         ... and more where the block is already dense: per 2 MiB block (512
//                    pages) a bitmap of pages resident on one destination GPU, seen as a
//                    binary tree (leaves = pages, root = the block). For each faulting block
//                    the largest subtree holding the fault whose populated share (resident +
//                    just-faulted windows) exceeds threshold_pct is moved to the fault's
//                    destination, rounded out to big pages, clipped to the range, as runs of
//                    the big pages not yet fully resident; at most requests_max requests.
//                    A block is evaluated once per batch, at its first fault (its later
//                    faults' windows still count as populated).
//   restoreLocation  not exported: the host applies the kernel's rule.
//
// Residency comes from this batch's decisions (windows migrated to a GPU are resident, to
// system memory are not), from the requests this plugin returns, and from `observe`: migrate
// events set (to a GPU) or clear (away from it) pages; evict events and unmaps by the CPU
// (freed memory) clear them. Unmaps that accompany a migration change nothing: an earlier
// version cleared pages on those and, on a sequential stream, never prefetched at all.
// A block tracks one GPU: a move to another GPU restarts its bitmap. Prefetches go to GPUs
// only (never to system memory). Unlike NVIDIA, thrashing pages are not excluded: combine
// with thrash-guard's logic if that matters.
//
// State: module-level bitmaps (a byte per page plus a count per big page), bounded by
// blocks_max (least recently touched forgotten). Lost when the host rebuilds the sandbox:
// the bitmaps then start empty, which only makes prefetching more conservative until they
// fill again.
//
// Cost: prefetch evaluates at most 64 blocks per batch, reading the batch's raw records
// (FaultBatch). Moving 64 KiB per fault means ~32x the faults of the kernel's 2 MiB window,
// each through the sandbox: the slowest shipped policy to simulate.

/** Tunables, uvm_perf_prefetch style: name, default, bounds, meaning. */
export const params = {
  threshold_pct: {
    type: "integer",
    default: 51,
    min: 1,
    max: 100,
    description: "a subtree is prefetched when more than this share of its pages is populated, % (uvm_perf_prefetch_threshold)",
  },
  requests_max: {
    type: "integer",
    default: 64,
    min: 1,
    max: 64,
    description: "most prefetch requests returned per batch of faults (the host accepts at most 64)",
  },
  blocks_max: {
    type: "integer",
    default: 2048,
    min: 1,
    max: 16384,
    description: "most 2 MiB blocks whose residency bitmap is kept (about 550 bytes each)",
  },
};

const SYSMEM = 0;
/** KFD_SVM_UNMAP_TRIGGER_UNMAP_FROM_CPU: the CPU unmapped (freed) the pages. */
const TRIGGER_UNMAP_FROM_CPU = 2;
/** 2 MiB in 4 KiB pages: the root of a bitmap tree (a uvm va_block). */
const BLOCK_PAGES = 512;
/** 64 KiB in 4 KiB pages: the big page, the unit of windows and prefetches. */
const BIG_PAGE_PAGES = 16;
/** log2 of BIG_PAGE_PAGES: the migration granularity the windows are computed with. */
const BIG_PAGE_GRANULARITY = 4;
/** Most blocks one observed event or window updates (a 1 GiB prefetch spans 512 blocks). */
const SPAN_BLOCKS_MAX = 64;
/**
 * Most faulting blocks evaluated per batch: bounds the call's time (in the QuickJS sandbox a
 * block costs ~0.1 ms; the default hook budget is 50 ms, and the JSON of a large batch's
 * faults already takes a good part of it).
 */
const BATCH_BLOCKS_MAX = 64;
/** Big pages of a block. */
const BLOCK_BIG_PAGES = BLOCK_PAGES / BIG_PAGE_PAGES;
/** Scratch of blockPrefetch, per big page: populated pages inside the range, pages inside the range. */
const bigPopulated = new Uint8Array(BLOCK_BIG_PAGES);
const bigValid = new Uint8Array(BLOCK_BIG_PAGES);

/**
 * @typedef {object} BlockResidency
 * @property {number} gpu           the GPU the bitmap is about (0 = none yet)
 * @property {Uint8Array} resident  one byte per page: 1 = resident on `gpu`
 * @property {Uint8Array} bigCount  per big page: resident pages (the tree's big-page level, kept up to date)
 */
/** @type {Map<number, BlockResidency>} block number (addr / 512) -> pages resident on `gpu` */
const blocks = new Map();

/**
 * @param {number} block @param {number} blocksMax @param {boolean} create
 * @returns {BlockResidency | undefined}
 */
function blockTouch(block, blocksMax, create) {
  let st = blocks.get(block);
  if (st !== undefined) {
    blocks.delete(block);
    blocks.set(block, st);
    return st;
  }
  if (!create) return undefined;
  st = { gpu: SYSMEM, resident: new Uint8Array(BLOCK_PAGES), bigCount: new Uint8Array(BLOCK_BIG_PAGES) };
  blocks.set(block, st);
  while (blocks.size > blocksMax) {
    const oldest = blocks.keys().next();
    if (oldest.done) break;
    blocks.delete(oldest.value);
  }
  return st;
}

/**
 * Set pages [from, to) of a block (offsets) to `value` and update the big-page counts.
 * @param {BlockResidency} st @param {number} from @param {number} to @param {number} value
 */
function blockFill(st, from, to, value) {
  st.resident.fill(value, from, to);
  for (let bp = Math.floor(from / BIG_PAGE_PAGES); bp * BIG_PAGE_PAGES < to; bp++) {
    const s = bp * BIG_PAGE_PAGES;
    if (from <= s && to >= s + BIG_PAGE_PAGES) {
      st.bigCount[bp] = value * BIG_PAGE_PAGES;
      continue;
    }
    let c = 0;
    for (let k = s; k < s + BIG_PAGE_PAGES; k++) c += st.resident[k];
    st.bigCount[bp] = c;
  }
}

/**
 * Pages [start, last] moved to `loc`: resident when it is a GPU (the block switches to that
 * GPU if it tracked another), not resident otherwise (`loc` 0 = system memory).
 * @param {number} start @param {number} last @param {number} loc @param {number} blocksMax
 */
function pagesMoved(start, last, loc, blocksMax) {
  if (last < start) return;
  const first = Math.floor(start / BLOCK_PAGES);
  const end = Math.min(Math.floor(last / BLOCK_PAGES), first + SPAN_BLOCKS_MAX - 1);
  for (let block = first; block <= end; block++) {
    const base = block * BLOCK_PAGES;
    const st = blockTouch(block, blocksMax, loc > 0);
    if (st === undefined) continue;
    if (loc > 0 && st.gpu !== loc) {
      st.gpu = loc;
      st.resident.fill(0);
      st.bigCount.fill(0);
    }
    blockFill(st, Math.max(start, base) - base, Math.min(last, base + BLOCK_PAGES - 1) - base + 1, loc > 0 ? 1 : 0);
  }
}

/**
 * True when more than thresholdPct of the pages of block offsets [s, e] inside the range
 * [lo, hi] are populated; counted page by page (used below the big-page level only).
 * @param {BlockResidency} st @param {number} s @param {number} e @param {number} lo @param {number} hi
 * @param {number} thresholdPct
 * @returns {boolean}
 */
function pagesOverThreshold(st, s, e, lo, hi, thresholdPct) {
  const from = Math.max(s, lo);
  const to = Math.min(e, hi);
  if (to < from) return false;
  let pop = 0;
  for (let k = from; k <= to; k++) pop += st.resident[k];
  return pop * 100 > thresholdPct * (to - from + 1);
}

/**
 * The prefetch requests for one faulting block: see the header.
 * @param {BlockResidency} st @param {number} block @param {number} addr
 * @param {number} rangeStart @param {number} rangeLast @param {number} thresholdPct
 * @param {import("../types").PrefetchRequest[]} out @param {number} requestsMax
 */
function blockPrefetch(st, block, addr, rangeStart, rangeLast, thresholdPct, out, requestsMax) {
  const base = block * BLOCK_PAGES;
  // Pages of the block inside the range: [lo, hi] in block offsets. Pages outside the range
  // count neither as populated nor in the denominator.
  const lo = Math.max(rangeStart, base) - base;
  const hi = Math.min(rangeLast, base + BLOCK_PAGES - 1) - base;
  if (hi < lo) return;
  const off = addr - base;
  // Big-page level of the tree, clipped to the range (only the edge big pages are scanned).
  // A block wholly inside the range (the usual case) copies its counts: in the QuickJS
  // sandbox each interpreted step costs ~0.5 µs, a Math call ~1.5 µs.
  if (lo === 0 && hi === BLOCK_PAGES - 1) {
    bigPopulated.set(st.bigCount);
    bigValid.fill(BIG_PAGE_PAGES);
  } else {
    for (let bp = 0, s = 0; bp < BLOCK_BIG_PAGES; bp++, s += BIG_PAGE_PAGES) {
      const vs = Math.max(s, lo);
      const ve = Math.min(s + BIG_PAGE_PAGES - 1, hi);
      if (ve < vs) {
        bigPopulated[bp] = 0;
        bigValid[bp] = 0;
      } else if (ve - vs + 1 === BIG_PAGE_PAGES) {
        bigPopulated[bp] = st.bigCount[bp];
        bigValid[bp] = BIG_PAGE_PAGES;
      } else {
        let c = 0;
        for (let k = vs; k <= ve; k++) c += st.resident[k];
        bigPopulated[bp] = c;
        bigValid[bp] = ve - vs + 1;
      }
    }
  }
  // Walk the tree from the fault's leaf to the root; keep the largest subtree over threshold.
  let best = 1;
  for (let size = 2; size < BIG_PAGE_PAGES; size *= 2) {
    const s = Math.floor(off / size) * size;
    if (pagesOverThreshold(st, s, s + size - 1, lo, hi, thresholdPct)) best = size;
  }
  for (let size = BIG_PAGE_PAGES; size <= BLOCK_PAGES; size *= 2) {
    const nb = size / BIG_PAGE_PAGES;
    const first = Math.floor(off / size) * nb;
    let pop = 0;
    let valid = 0;
    for (let bp = first; bp < first + nb; bp++) {
      pop += bigPopulated[bp];
      valid += bigValid[bp];
    }
    if (valid > 0 && pop * 100 > thresholdPct * valid) best = size;
  }
  // The subtree rounded out to big pages; runs of big pages not fully populated become
  // requests, clipped to the range.
  const subtreeStart = Math.floor(off / best) * best;
  const bpFirst = Math.floor(subtreeStart / BIG_PAGE_PAGES);
  const bpLast = Math.ceil((subtreeStart + best) / BIG_PAGE_PAGES) - 1;
  let runFirst = -1;
  for (let bp = bpFirst; bp <= bpLast + 1; bp++) {
    const missing = bp <= bpLast && bigPopulated[bp] < bigValid[bp];
    if (missing) {
      if (runFirst < 0) runFirst = bp;
      continue;
    }
    if (runFirst < 0) continue;
    if (out.length >= requestsMax) return;
    const s = Math.max(runFirst * BIG_PAGE_PAGES, lo);
    const e = Math.min(bp * BIG_PAGE_PAGES - 1, hi);
    out.push({ start: base + s, npages: e - s + 1, loc: st.gpu });
    blockFill(st, s, e + 1, 1);
    runFirst = -1;
  }
}

/** @type {import("../types").MigrationHooks["migrationWindow"]} */
export function migrationWindow(f, ctx) {
  return kernel.migrationWindow({ ...f, granularity: BIG_PAGE_GRANULARITY }, ctx);
}

/** @type {import("../types").MigrationHooks["migrationWindowBatch"]} */
export function migrationWindowBatch(b, ctx) {
  // The kernel's windows over a copy of the records whose granularity is the big page.
  const faults = b.faults.slice(0, b.n * b.stride);
  for (let i = 0, o = b.F.granularity; i < b.n; i++, o += b.stride) faults[o] = BIG_PAGE_GRANULARITY;
  kernel.migrationWindowBatch({ ...b, faults }, ctx);
}

/** @type {import("../types").MigrationHooks["prefetch"]} */
export function prefetch(input, ctx) {
  const p = ctx.params;
  const blocksMax = /** @type {number} */ (p.blocks_max);
  const requestsMax = /** @type {number} */ (p.requests_max);
  const thresholdPct = /** @type {number} */ (p.threshold_pct);
  // The batch arrives as raw records (FaultBatch): field k of fault i is
  // faults[i * stride + F[k]]; decisions[3i..3i+2] are location, window start, window last.
  const { faults, n, stride, F, decisions } = input;
  // The batch's windows are about to move: they count as populated.
  for (let i = 0; i < n; i++) {
    const loc = decisions[3 * i];
    if (loc >= 0) pagesMoved(decisions[3 * i + 1], decisions[3 * i + 2], loc, blocksMax);
  }
  /** @type {import("../types").PrefetchRequest[]} */
  const out = [];
  /** @type {Set<number>} blocks already handled in this batch */
  const done = new Set();
  for (let i = 0, o = 0; i < n && out.length < requestsMax; i++, o += stride) {
    const loc = decisions[3 * i];
    if (loc <= 0) continue;
    const addr = faults[o + F.addr];
    const block = Math.floor(addr / BLOCK_PAGES);
    if (done.has(block)) continue;
    if (done.size >= BATCH_BLOCKS_MAX) break;
    done.add(block);
    const st = blocks.get(block);
    if (st === undefined || st.gpu !== loc) continue;
    blockPrefetch(st, block, addr, faults[o + F.rangeStart], faults[o + F.rangeLast], thresholdPct, out, requestsMax);
  }
  return out;
}

/** The only events observe reads: the host builds and sends no others. */
export const observeKinds = ["migrate", "evict", "unmap"];

/** @type {import("../types").MigrationHooks["observe"]} */
export function observe(input, ctx) {
  const blocksMax = /** @type {number} */ (ctx.params.blocks_max);
  const events = input.events;
  for (let i = 0; i < events.length; i++) {
    const ev = events[i];
    if (ev.npages < 1) continue;
    const last = ev.start + ev.npages - 1;
    if (ev.kind === "migrate") pagesMoved(ev.start, last, ev.to, blocksMax);
    // An unmap for a migration (MMU_NOTIFY_MIGRATE) or another CPU-side invalidation only
    // drops GPU mappings: the data stays where its migrate event put it. Only memory the CPU
    // unmapped (freed) stops being resident.
    else if (ev.kind === "evict" || (ev.kind === "unmap" && ev.trigger === TRIGGER_UNMAP_FROM_CPU)) pagesMoved(ev.start, last, SYSMEM, blocksMax);
  }
  return null;
}
