// @ts-check
// advisor: turns the SVM event stream into hints an application can apply with hipMemAdvise
// and hipMemPrefetchAsync. Run by the agent's advisor (runtime/agent/advisor.ts) on live (or
// emulated) KFD SMI events; the simulator never calls `advise`, and this plugin decides
// nothing for it (no fault hook: the kernel's rules apply).
//
// Per block of `granularity` pages (default 512 = 2 MiB, the kernel's migration window) it
// keeps counters over an episode: the block's events, until it has been quiet for window_ns
// (then the next event starts a new episode). Three patterns, checked in this order:
//
//   ping-pong        the block migrated to a GPU other than the last GPU it migrated to at
//                    least pingpong_min times (A, B, A, B: 3 changes). VRAM to VRAM goes
//                    through system memory (kfd-svm.md §6); moves to system memory are not
//                    counted, so A -> RAM -> B is one change.
//   repeated-faults  one GPU alone faulted on the block at least fault_repeat_min times, and
//                    each fault migrated (the data keeps leaving it: CPU faults, evictions).
//   remote-reads     a GPU's faults were mapped where the data is, not migrated (a fault
//                    ending 'U' while the data was elsewhere) at least remote_read_min times.
//
// The hints, and why (kfd-svm.md §4 best_restore_location; ROCclr maps hipMemAdvise's
// SetPreferredLocation to the PREFERRED_LOC attribute and SetAccessedBy to ACCESS_IN_PLACE):
//
//   ping-pong, all GPUs in one XGMI hive: preferred_location = the GPU that faulted most
//     (ties: most migrations to it, then the GPU list order), accessed_by each other GPU.
//     A fault of a GPU whose hive holds the preferred GPU returns the preferred location: it
//     maps the peer's VRAM over XGMI instead of migrating, so the moves stop; accessed_by
//     (ACCESS_IN_PLACE) keeps the other GPUs mapped to it with XNACK off as well.
//   ping-pong, GPUs without a common hive (PCIe): preferred_location = system memory (0),
//     accessed_by each GPU. A preferred GPU would not stop it here: the other GPU is not in
//     its hive, so its faults fall through to its ACCESS bit and migrate anyway, and with
//     ACCESS_IN_PLACE instead its faults pull the data back to system memory (actual_loc is
//     a non-peer GPU): A <-> RAM ping-pong. Only preferred_loc = SYSMEM makes every GPU map
//     system memory in place; that trades VRAM bandwidth for the migrations.
//   repeated-faults: prefetch to that GPU. hipMemPrefetchAsync before the kernel that reads
//     the range moves it in one go instead of one fault per 2 MiB window.
//   remote-reads: preferred_location = that GPU when it is the only accessor seen (no other
//     GPU faulted on or migrated the block, no CPU fault pulled it back, no CPU-side
//     invalidation unmapped it): its next fault migrates the data into its VRAM and the
//     reads become local. Otherwise accessed_by (ACCESS_IN_PLACE): it keeps reading in
//     place (maps the data where it is) without migrating it away from the others.
//
// A fault that migrated is told from one that only mapped by its `from` and `to`: equal when
// nothing moved (the simulator: actual and best location; the agent: from === to for a
// fault ending 'U'). A mapped-only fault on a block whose data is known to be on the faulting
// GPU is a local remap after an invalidation, not a remote read, and is not counted. The
// data's location is the last migration's destination seen (unknown counts as elsewhere).
//
// Ranges: adjacent blocks with the same hint merge into one; a hint covers whole blocks,
// except that its first and last block are clipped to the pages migrations of them covered
// (the kernel's windows, which stay inside its ranges). A block seen only through faults
// counts whole: clip to the allocation before applying it. At most 64 hints (the host's
// ADVICE_HINTS_MAX): the ones with the most evidence.
//
// Events read: faults, migrations, CPU-side invalidations ("unmap:mmu_notify") and frees
// ("unmap:unmap_from_cpu", which forget the blocks). Times are the events' own (ctx.nowNs
// and input.nowNs in advise); no other clock. State: a Map of at most ranges_max blocks (the
// least recently seen is forgotten), lost when the host rebuilds the sandbox: patterns then
// start over.
//
// Cost (QuickJS): observe about 5-10 us an event; advise looks only at blocks holding a
// pattern (told without allocating), merges them in one pass in address order, and allocates
// per run of blocks, not per block.

/** Tunables: name, default, bounds, meaning. */
export const params = {
  window_ns: {
    type: "integer",
    default: 10_000_000_000,
    min: 1_000_000,
    max: 3_600_000_000_000,
    description: "pattern memory, ns: a block quiet this long starts over, and is no longer reported",
  },
  pingpong_min: {
    type: "integer",
    default: 4,
    min: 1,
    max: 100000,
    description: "migrations of a block to a GPU other than the last GPU it went to, for a ping-pong",
  },
  fault_repeat_min: {
    type: "integer",
    default: 4,
    min: 2,
    max: 1000000,
    description: "migrating faults of one GPU alone on a block, for a prefetch hint",
  },
  remote_read_min: {
    type: "integer",
    default: 4,
    min: 2,
    max: 1000000,
    description: "faults of a GPU mapped in place (not migrated) with the data elsewhere, for a remote-reads hint",
  },
  ranges_max: {
    type: "integer",
    default: 4096,
    min: 1,
    max: 16384,
    description: "most blocks tracked; the least recently seen one is forgotten beyond this",
  },
  granularity: {
    type: "integer",
    default: 512,
    min: 1,
    max: 262144,
    description: "pages per block: addresses are grouped into blocks of this many pages (512 = 2 MiB)",
  },
};

const SYSMEM = 0;
/** Location not known (LOC_UNDEFINED on the wire; LOC_UNKNOWN in a block). */
const LOC_UNDEFINED = 0xffffffff;
const LOC_UNKNOWN = -1;
/** Most blocks one event updates: a 1 GiB range (the largest) at 2 MiB. */
const EVENT_BLOCKS_MAX = 512;
/** The host's ADVICE_HINTS_MAX and ADVICE_DETAIL_CHARS_MAX. */
const HINTS_MAX = 64;
const DETAIL_CHARS_MAX = 200;
/** Triggers (kfd-uapi.md): migrate PAGEFAULT_CPU; unmap MMU_NOTIFY and UNMAP_FROM_CPU. */
const TRIGGER_PAGEFAULT_CPU = 2;
const UNMAP_MMU_NOTIFY = 0;
const UNMAP_FROM_CPU = 2;
/** Output order of hint kinds within a range. */
const KIND_ORDER = { preferred_location: 0, accessed_by: 1, prefetch: 2 };

/**
 * @typedef {object} Block
 * @property {number} firstNs first counted event of the episode
 * @property {number} lastNs  last counted event of the episode
 * @property {number} counted counted events (faults, migrations to a GPU) in the episode
 * @property {number} loc     the data's last known location: gpu_id, 0, or LOC_UNKNOWN
 * @property {number} lastGpu GPU of the last migration to a GPU in the episode; 0 = none
 * @property {number} changes migrations to a GPU other than lastGpu
 * @property {number} cpu     CPU activity: CPU-fault migrations, CPU-side invalidations
 * @property {number} lo      first page migrations covered in the block; -1 = none
 * @property {number} hi      last page migrations covered in the block
 * @property {number} g       GPUs the counters are laid out for
 * @property {number[]} c     counters per GPU (ctx.gpus order), one array (fewer allocations):
 *                            c[i] migrations to GPU i, c[g + i] its faults that migrated,
 *                            c[2g + i] its faults mapped in place with the data elsewhere
 */

/** Counter rows of Block.c. */
const MOVES = 0;
const MIGRATING = 1;
const REMOTE = 2;
const ROWS = 3;

/** @type {Map<number, Block>} block number -> state, least recently seen first */
const blocks = new Map();

/** @param {number} page @param {number} gran */
function blockOf(page, gran) {
  const n = Math.floor(page / gran);
  // Small integers as int keys: QuickJS hashes a float key through its string form.
  return n < 0x80000000 ? n | 0 : n;
}

/** @param {number} n @returns {number[]} */
function zeros(n) {
  const a = new Array(n);
  for (let i = 0; i < n; i++) a[i] = 0;
  return a;
}

/**
 * Counter `row` of GPU `i` (0 for a GPU the block's counters do not cover).
 * @param {Block} b @param {number} row @param {number} i
 */
function cnt(b, row, i) {
  return i < b.g ? b.c[row * b.g + i] : 0;
}

/** @param {number} gpuCount @returns {Block} */
function blockNew(gpuCount) {
  return {
    firstNs: 0,
    lastNs: 0,
    counted: 0,
    loc: LOC_UNKNOWN,
    lastGpu: 0,
    changes: 0,
    cpu: 0,
    lo: -1,
    hi: -1,
    g: gpuCount,
    c: zeros(ROWS * gpuCount),
  };
}

/**
 * The block's state, made the most recently seen; created when `create` (forgetting the
 * least recently seen beyond ranges_max).
 * @param {number} n @param {boolean} create @param {number} gpuCount @param {number} rangesMax
 * @returns {Block | undefined}
 */
function blockTouch(n, create, gpuCount, rangesMax) {
  let b = blocks.get(n);
  if (b !== undefined) {
    blocks.delete(n);
    blocks.set(n, b);
    // A context with more GPUs than when the block was made (a test's ctx): counters grow.
    if (b.g < gpuCount) {
      const c = zeros(ROWS * gpuCount);
      for (let r = 0; r < ROWS; r++) for (let i = 0; i < b.g; i++) c[r * gpuCount + i] = b.c[r * b.g + i];
      b.g = gpuCount;
      b.c = c;
    }
    return b;
  }
  if (!create) return undefined;
  b = blockNew(gpuCount);
  blocks.set(n, b);
  while (blocks.size > rangesMax) {
    const oldest = blocks.keys().next();
    if (oldest.done) break;
    blocks.delete(oldest.value);
  }
  return b;
}

/**
 * A counted event at `t`: a block quiet for more than windowNs starts a new episode (its
 * location is kept). Events may come slightly out of time order (the agent delivers a fault
 * when it ends): the episode spans the earliest and latest.
 * @param {Block} b @param {number} t @param {number} windowNs
 */
function blockCount(b, t, windowNs) {
  if (b.counted > 0 && t - b.lastNs > windowNs) {
    b.counted = 0;
    b.lastGpu = 0;
    b.changes = 0;
    b.cpu = 0;
    for (let i = 0; i < b.c.length; i++) b.c[i] = 0;
  }
  if (b.counted === 0) {
    b.firstNs = t;
    b.lastNs = t;
  } else {
    if (t < b.firstNs) b.firstNs = t;
    if (t > b.lastNs) b.lastNs = t;
  }
  b.counted++;
}

/**
 * Pages [start, start + npages) of a migration: widen the covered pages of block n.
 * @param {Block} b @param {number} n @param {number} gran @param {number} start @param {number} npages
 */
function blockCover(b, n, gran, start, npages) {
  const lo = Math.max(start, n * gran);
  const hi = Math.min(start + npages - 1, n * gran + gran - 1);
  if (b.lo < 0 || lo < b.lo) b.lo = lo;
  if (hi > b.hi) b.hi = hi;
}

/** @type {import("../types").MigrationHooks["observeBatch"]} */
export function observeBatch(batch, ctx) {
  const { events, n, stride, E, K } = batch;
  const p = ctx.params;
  const gran = /** @type {number} */ (p.granularity);
  const windowNs = /** @type {number} */ (p.window_ns);
  const rangesMax = /** @type {number} */ (p.ranges_max);
  const gpus = ctx.gpus;
  const gpuCount = gpus.length;
  /** @param {number} id */
  const posOf = (id) => {
    for (let i = 0; i < gpuCount; i++) if (gpus[i].id === id) return i;
    return -1;
  };
  for (let i = 0, o = 0; i < n; i++, o += stride) {
    const kind = events[o + E.kind];
    const t = events[o + E.nowNs];
    const start = events[o + E.start];
    const npages = events[o + E.npages];
    if (npages < 1) continue;
    const first = blockOf(start, gran);
    const last = Math.min(blockOf(start + npages - 1, gran), first + EVENT_BLOCKS_MAX - 1);
    if (kind === K.fault) {
      const g = events[o + E.gpuId];
      const pos = posOf(g);
      if (pos < 0) continue;
      const b = /** @type {Block} */ (blockTouch(first, true, gpuCount, rangesMax));
      blockCount(b, t, windowNs);
      const from = events[o + E.from];
      const to = events[o + E.to];
      const known = to !== LOC_UNDEFINED && to >= 0;
      if (from !== to) b.c[MIGRATING * b.g + pos]++;
      else if ((known ? to : b.loc) !== g) b.c[REMOTE * b.g + pos]++;
      if (known) b.loc = to;
    } else if (kind === K.migrate) {
      const to = events[o + E.to];
      const trigger = events[o + E.trigger];
      const pos = to === SYSMEM ? -1 : posOf(to);
      for (let k = first; k <= last; k++) {
        const b = blockTouch(k, to !== SYSMEM, gpuCount, rangesMax);
        if (b === undefined) continue;
        blockCover(b, k, gran, start, npages);
        b.loc = to;
        if (to === SYSMEM) {
          if (trigger === TRIGGER_PAGEFAULT_CPU) b.cpu++;
          continue;
        }
        blockCount(b, t, windowNs);
        if (pos < 0) continue;
        b.c[MOVES * b.g + pos]++;
        if (b.lastGpu !== 0 && b.lastGpu !== to) b.changes++;
        b.lastGpu = to;
      }
    } else if (kind === K.unmap) {
      const trigger = events[o + E.trigger];
      for (let k = first; k <= last; k++) {
        if (trigger === UNMAP_FROM_CPU) blocks.delete(k);
        else if (trigger === UNMAP_MMU_NOTIFY) {
          const b = blocks.get(k);
          if (b !== undefined) b.cpu++;
        }
      }
    }
  }
}

/** Only these events are built and sent. */
export const observeKinds = ["fault", "migrate", "unmap:mmu_notify", "unmap:unmap_from_cpu"];

/** Why a run's hint was given (part of what makes two blocks' hints the same). */
const WHY_HIVE = 0; // ping-pong in one XGMI hive; ref = the preferred GPU
const WHY_PCIE = 1; // ping-pong without a common hive
const WHY_REPEAT = 2; // repeated faults
const WHY_ALONE = 3; // remote reads, the only accessor; ref = the data's location
const WHY_SHARED = 4; // remote reads, shared; ref = the data's location

/**
 * @typedef {object} Run  one hint over a run of adjacent blocks
 * @property {string} key       what the hint says: blocks with equal keys merge
 * @property {"preferred_location" | "accessed_by" | "prefetch"} kind
 * @property {number} gpuId
 * @property {string} pattern
 * @property {number} mask      GPUs involved, bit i = ctx.gpus[i]
 * @property {number} why       WHY_*
 * @property {number} ref       WHY_HIVE: preferred GPU; WHY_ALONE / WHY_SHARED: data location
 * @property {number} last      last block
 * @property {number} lo        first page (clipped to migrations in the first block)
 * @property {number} hi        last page (clipped likewise in the last block)
 * @property {number} events
 * @property {number} firstNs
 * @property {number} lastNs
 * @property {number} changes   ping-pong: GPU changes
 * @property {number[]} faults  per GPU: faults counted
 * @property {number} blocks
 */

const hex = (/** @type {number} */ v) => `0x${v.toString(16)}`;

/**
 * True when the block holds a pattern (most do not: told without allocating).
 * @param {Block} b @param {import("../types").Params} p @param {number} gpuCount
 */
function blockHasPattern(b, p, gpuCount) {
  if (b.changes >= /** @type {number} */ (p.pingpong_min)) return true;
  for (let i = 0; i < gpuCount; i++) {
    if (cnt(b, MIGRATING, i) >= /** @type {number} */ (p.fault_repeat_min) || cnt(b, REMOTE, i) >= /** @type {number} */ (p.remote_read_min)) return true;
  }
  return false;
}

/**
 * The hints of block n, in pattern order (ping-pong, else repeated faults, else remote reads),
 * each handed to `emit(n, b, kind, gpuId, pattern, mask, why, ref, events)`.
 * @param {number} n @param {Block} b @param {import("../types").MigrationContext} ctx
 * @param {(n: number, b: Block, kind: Run["kind"], gpuId: number, pattern: string, mask: number, why: number, ref: number, events: number) => void} emit
 */
function blockHints(n, b, ctx, emit) {
  const p = ctx.params;
  const gpus = ctx.gpus;
  const faultsOf = (/** @type {number} */ i) => cnt(b, MIGRATING, i) + cnt(b, REMOTE, i);
  if (b.changes >= /** @type {number} */ (p.pingpong_min)) {
    let mask = 0;
    let moves = 0;
    let hive = -1;
    let oneHive = true;
    let best = -1;
    for (let i = 0; i < gpus.length; i++) {
      const m = cnt(b, MOVES, i);
      if (m === 0) continue;
      mask += 2 ** i;
      moves += m;
      if (hive === -1) hive = gpus[i].hiveId;
      if (hive === 0 || gpus[i].hiveId !== hive) oneHive = false;
      // The most faulting GPU; ties: most migrations to it, then the list order.
      if (best < 0 || faultsOf(i) > faultsOf(best) || (faultsOf(i) === faultsOf(best) && m > cnt(b, MOVES, best))) best = i;
    }
    if (oneHive) {
      const pref = gpus[best].id;
      emit(n, b, "preferred_location", pref, "ping-pong", mask, WHY_HIVE, pref, moves);
      for (let i = 0; i < gpus.length; i++) {
        if (i !== best && cnt(b, MOVES, i) > 0) emit(n, b, "accessed_by", gpus[i].id, "ping-pong", mask, WHY_HIVE, pref, moves);
      }
      return;
    }
    emit(n, b, "preferred_location", SYSMEM, "ping-pong", mask, WHY_PCIE, 0, moves);
    for (let i = 0; i < gpus.length; i++) if (cnt(b, MOVES, i) > 0) emit(n, b, "accessed_by", gpus[i].id, "ping-pong", mask, WHY_PCIE, 0, moves);
    return;
  }
  let faulting = 0;
  let only = -1;
  for (let i = 0; i < gpus.length; i++) {
    if (faultsOf(i) === 0) continue;
    faulting++;
    only = i;
  }
  if (faulting === 1) {
    let othersMoved = 0;
    for (let i = 0; i < gpus.length; i++) if (i !== only) othersMoved += cnt(b, MOVES, i);
    const migrating = cnt(b, MIGRATING, only);
    if (othersMoved === 0 && migrating >= /** @type {number} */ (p.fault_repeat_min)) {
      emit(n, b, "prefetch", gpus[only].id, "repeated-faults", 2 ** only, WHY_REPEAT, 0, migrating);
      return;
    }
  }
  for (let g = 0; g < gpus.length; g++) {
    const remote = cnt(b, REMOTE, g);
    if (remote < /** @type {number} */ (p.remote_read_min)) continue;
    let others = b.cpu;
    for (let i = 0; i < gpus.length; i++) if (i !== g) others += faultsOf(i) + cnt(b, MOVES, i);
    emit(n, b, others === 0 ? "preferred_location" : "accessed_by", gpus[g].id, "remote-reads", 2 ** g, others === 0 ? WHY_ALONE : WHY_SHARED, b.loc, remote);
  }
}

/**
 * The gpu_ids of a run's evidence, ascending: its GPUs, and for remote reads the data's
 * location when known and elsewhere (0 = system memory).
 * @param {Run} r @param {import("../types").PolicyGpu[]} gpus
 */
function runGpus(r, gpus) {
  const ids = [];
  for (let i = 0; i < gpus.length; i++) if (Math.floor(r.mask / 2 ** i) % 2 === 1) ids.push(gpus[i].id);
  if ((r.why === WHY_ALONE || r.why === WHY_SHARED) && r.ref >= 0 && r.ref !== r.gpuId) ids.push(r.ref);
  return ids.sort((x, y) => x - y);
}

/**
 * One line of evidence for people.
 * @param {Run} r @param {import("../types").PolicyGpu[]} gpus
 */
function detailOf(r, gpus) {
  let text;
  if (r.pattern === "ping-pong") {
    const f = [];
    for (let i = 0; i < gpus.length; i++) if (r.faults[i] > 0) f.push(`${hex(gpus[i].id)}:${r.faults[i]}`);
    const why =
      r.why === WHY_PCIE
        ? r.kind === "preferred_location"
          ? "no common XGMI hive: keep it in system memory"
          : "maps system memory in place"
        : r.kind === "preferred_location"
          ? `one XGMI hive: prefer the most faulting GPU ${hex(r.ref)}`
          : `maps ${hex(r.ref)} over XGMI`;
    text = `${r.events} migrations to GPUs, ${r.changes} changes, ${r.blocks} block(s); faults ${f.join(" ") || "none"}; ${why}`;
  } else if (r.pattern === "repeated-faults") {
    text = `${r.events} migrating faults of ${hex(r.gpuId)} alone, ${r.blocks} block(s); prefetch to ${hex(r.gpuId)} before use`;
  } else {
    const where = r.ref === LOC_UNKNOWN ? "unknown" : r.ref === SYSMEM ? "system memory" : hex(r.ref);
    const who = r.why === WHY_ALONE ? "only accessor" : "shared (CPU or other GPUs)";
    text = `${r.events} faults of ${hex(r.gpuId)} mapped in place, ${r.blocks} block(s); ${who}; data on ${where}`;
  }
  return text.length > DETAIL_CHARS_MAX ? text.slice(0, DETAIL_CHARS_MAX) : text;
}

/** @type {import("../types").MigrationHooks["advise"]} */
export function advise(input, ctx) {
  const p = ctx.params;
  const windowNs = /** @type {number} */ (p.window_ns);
  const gran = /** @type {number} */ (p.granularity);
  const gpus = ctx.gpus;
  const nowNs = input.nowNs;
  // The blocks holding a pattern now, in address order.
  /** @type {number[]} */
  const live = [];
  blocks.forEach((b, n) => {
    if (b.counted > 0 && nowNs - b.lastNs <= windowNs && blockHasPattern(b, p, gpus.length)) live.push(n);
  });
  live.sort((x, y) => x - y);
  // One pass: a block's hint extends the run of the same hint ending at the block before.
  /** @type {Map<string, Run>} */
  const open = new Map();
  /** @type {Run[]} */
  const runs = [];
  /** @type {Parameters<typeof blockHints>[3]} */
  const emit = (n, b, kind, gpuId, pattern, mask, why, ref, events) => {
    const key = `${pattern}|${kind}|${gpuId}|${mask}|${why}|${ref}`;
    const lo = b.lo >= 0 ? b.lo : n * gran;
    const hi = b.lo >= 0 ? b.hi : n * gran + gran - 1;
    let r = open.get(key);
    if (r !== undefined && r.last + 1 === n) {
      r.last = n;
      r.hi = hi;
      r.events += events;
      r.changes += b.changes;
      r.blocks++;
      if (b.firstNs < r.firstNs) r.firstNs = b.firstNs;
      if (b.lastNs > r.lastNs) r.lastNs = b.lastNs;
    } else {
      r = { key, kind, gpuId, pattern, mask, why, ref, last: n, lo, hi, events, firstNs: b.firstNs, lastNs: b.lastNs, changes: b.changes, faults: zeros(gpus.length), blocks: 1 };
      open.set(key, r);
      runs.push(r);
    }
    if (pattern === "ping-pong") for (let i = 0; i < gpus.length; i++) r.faults[i] += cnt(b, MIGRATING, i) + cnt(b, REMOTE, i);
  };
  for (const n of live) blockHints(n, /** @type {Block} */ (blocks.get(n)), ctx, emit);
  // The most evidence first, then address: at most HINTS_MAX, returned in address order.
  /** @param {Run} x @param {Run} y */
  const byAddress = (x, y) => x.lo - y.lo || KIND_ORDER[x.kind] - KIND_ORDER[y.kind] || x.gpuId - y.gpuId || (x.key < y.key ? -1 : x.key > y.key ? 1 : 0);
  runs.sort((x, y) => y.events - x.events || byAddress(x, y));
  const kept = runs.slice(0, HINTS_MAX);
  kept.sort(byAddress);
  return kept.map((r) => ({
    kind: r.kind,
    start: r.lo,
    npages: r.hi - r.lo + 1,
    gpuId: r.gpuId,
    pattern: r.pattern,
    evidence: { events: r.events, firstNs: r.firstNs, lastNs: r.lastNs, gpus: runGpus(r, gpus), detail: detailOf(r, gpus) },
  }));
}
