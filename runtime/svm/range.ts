/**
 * svm_range and svm_range_list (kfd-svm.md §1): one range list per process, shared by its
 * GPUs, holding non-overlapping ranges in an interval tree keyed by start (a treap: ranges
 * never overlap, so the tree orders by start alone) plus an ordered doubly-linked list.
 */
import { LOC_UNDEFINED, SVM_FLAG } from "../policy/contracts/migration.ts";
import { assert } from "../errors.ts";
import { GRANULARITY_DEFAULT } from "./constants.ts";
import type { Runs } from "./runs.ts";

/** The lookup index is rebuilt once lookups since the last change reach count / this. */
export const INDEX_REBUILD_RATIO = 8;

/** A range's flags when created: HOST_ACCESS | COHERENT (§1). */
export const RANGE_FLAGS_DEFAULT = SVM_FLAG.HOST_ACCESS | SVM_FLAG.COHERENT;
/** "Never" for a timestamp, ns: far enough in the past that no window covers it. */
export const NEVER_NS = -1e18;

/**
 * Values per thrash record in SvmRange.recentMoves: the move's end time (ns), from, to, and
 * the pages it moved (runs, shared with the migration, never mutated).
 */
export const MOVE_STRIDE = 4;

/** The shared "nothing mapped anywhere" value; never written (setMapped copies first). */
const NO_MAPPINGS: Runs[] = Object.freeze([]) as unknown as Runs[];

export class SvmRange {
  /** First and last page (inclusive); first in the object, the hottest fields. */
  start = 0;
  last = 0;
  preferredLoc = LOC_UNDEFINED;
  prefetchLoc = LOC_UNDEFINED;
  /** gpu_id holding the range's VRAM pages, 0 when none is in VRAM. */
  actualLoc = 0;
  granularity = GRANULARITY_DEFAULT;
  flags = RANGE_FLAGS_DEFAULT;
  /** Bit i: GPU of index i has ACCESS / ACCESS_IN_PLACE. */
  accessMask = 0;
  aipMask = 0;
  validateTimestampNs = NEVER_NS;
  /** Pages of this range in VRAM of actualLoc (runs), and their count. */
  vramRuns: Runs = null;
  vramPages = 0;
  /**
   * Per GPU index: pages with a valid GPU mapping (runs). Allocated on the first mapping
   * (most ranges of a large process are never mapped); read through mappedOn().
   */
  mapped: Runs[] = NO_MAPPINGS;
  /** pid of the process owning the range. */
  ownerPid = 0;
  /** TTM LRU links of the range's VRAM buffer on GPU actualLoc (model-maintained). */
  lruPrev: SvmRange | null = null;
  lruNext: SvmRange | null = null;
  /**
   * prange->mapped_to_gpu: set by every mapping (svm_range_validate_and_map, whole range or
   * a fault's window), cleared only by an unmap of the whole range
   * (svm_range_unmap_from_gpus); a split copies it (svm_range_split_adjust). It gates the
   * unmaps and queue evictions of the MMU notifier, not the per-page runs in `mapped`.
   */
  mappedToGpu = false;
  /** Deferred work pending (munmap in progress): faults on it are dropped (§2). */
  pendingRemove = false;
  migrations = 0;
  /**
   * The range's recent migrations for thrash detection, MOVE_STRIDE values each (end ns,
   * from, to, runs moved); the model drops the expired ones (null: none).
   */
  recentMoves: (number | number[])[] | null = null;
  lastMigrationNs = -1;
  lastUseNs = 0;
  /** Interval tree (treap) links and priority. */
  left: SvmRange | null = null;
  right: SvmRange | null = null;
  priority = 0;
  /** Ordered list links. */
  prev: SvmRange | null = null;
  next: SvmRange | null = null;
  /** False once unlinked from its list: a stale reference must not be used. */
  linked = false;

  constructor(start: number, last: number) {
    assert(start <= last && start >= 0, `range [${start}, ${last}] is empty or negative`);
    this.start = start;
    this.last = last;
  }

  /** Pages mapped on GPU index g. */
  mappedOn(g: number): Runs {
    // In-bounds reads only: an out-of-bounds or hole read walks the prototype chain.
    const m = this.mapped;
    return g < m.length ? m[g]! : null;
  }

  /** Set the pages mapped on GPU index g. */
  setMapped(g: number, runs: Runs): void {
    let m = this.mapped;
    if (g >= m.length) {
      if (runs === null) return;
      m = m === NO_MAPPINGS ? [] : m;
      while (m.length <= g) m.push(null);
      this.mapped = m;
    }
    m[g] = runs;
  }

  get npages(): number {
    return this.last - this.start + 1;
  }

  /**
   * Copy every attribute (not placement) from `o`: split pieces keep the old attributes.
   * Not validate_timestamp: a piece is a new svm_range (svm_range_new sets it to 0).
   */
  copyAttributes(o: SvmRange): void {
    this.preferredLoc = o.preferredLoc;
    this.prefetchLoc = o.prefetchLoc;
    this.granularity = o.granularity;
    this.flags = o.flags;
    this.accessMask = o.accessMask;
    this.aipMask = o.aipMask;
    this.mappedToGpu = o.mappedToGpu;
    this.migrations = o.migrations;
    // The records are shared (never mutated); the list is the piece's own.
    this.recentMoves = o.recentMoves === null ? null : o.recentMoves.slice();
    this.lastMigrationNs = o.lastMigrationNs;
    this.lastUseNs = o.lastUseNs;
  }
}

function split(t: SvmRange | null, key: number): [SvmRange | null, SvmRange | null] {
  // Left: starts < key; right: starts >= key.
  if (t === null) return [null, null];
  if (t.start < key) {
    const [a, b] = split(t.right, key);
    t.right = a;
    return [t, b];
  }
  const [a, b] = split(t.left, key);
  t.left = b;
  return [a, t];
}

function merge(a: SvmRange | null, b: SvmRange | null): SvmRange | null {
  if (a === null) return b;
  if (b === null) return a;
  if (a.priority > b.priority) {
    a.right = merge(a.right, b);
    return a;
  }
  b.left = merge(a, b.left);
  return b;
}

/** The range list of one process: tree for lookup, list for ordered walks. */
export class SvmRangeList {
  private root: SvmRange | null = null;
  head: SvmRange | null = null;
  tail: SvmRange | null = null;
  count = 0;
  /** Deterministic treap priorities (xorshift32). */
  private prioState = 0x9e3779b9;

  private nextPriority(): number {
    let x = this.prioState;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.prioState = x >>> 0;
    return this.prioState;
  }

  /** Last range a lookup found: sequential access finds its range or the next in O(1). */
  private finger: SvmRange | null = null;

  /** The range holding page `addr`, or null. */
  lookup(addr: number): SvmRange | null {
    const f = this.finger;
    if (f?.linked) {
      if (addr >= f.start && addr <= f.last) return f;
      const n = f.next;
      if (n !== null && addr >= n.start && addr <= n.last) {
        this.finger = n;
        return n;
      }
    }
    const r = this.floorIndexed(addr);
    if (r !== null && r.last >= addr) {
      this.finger = r;
      return r;
    }
    return null;
  }

  /**
   * Lookup index: the starts of all ranges in a flat sorted array, rebuilt lazily. A binary
   * search over contiguous memory beats a pointer walk down a tree of a million ranges; the
   * index is rebuilt only once the lookups since the last insert or remove pay for it
   * (amortised O(INDEX_REBUILD_RATIO) per lookup), else the tree answers.
   */
  private idxStarts = new Float64Array(0);
  private idxRanges: SvmRange[] = [];
  private idxValid = false;
  private lookupsSinceChange = 0;

  private floorIndexed(addr: number): SvmRange | null {
    if (!this.idxValid) {
      if (++this.lookupsSinceChange * INDEX_REBUILD_RATIO < this.count) return this.floor(addr);
      this.indexRebuild();
    }
    const starts = this.idxStarts;
    let lo = 0;
    let hi = this.count - 1;
    let best = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (starts[mid]! <= addr) {
        best = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    return best < 0 ? null : this.idxRanges[best]!;
  }

  private indexRebuild(): void {
    if (this.idxStarts.length < this.count) this.idxStarts = new Float64Array(Math.max(16, this.count * 2));
    this.idxRanges.length = this.count;
    let i = 0;
    for (let r = this.head; r !== null; r = r.next) {
      this.idxStarts[i] = r.start;
      this.idxRanges[i] = r;
      i++;
    }
    this.idxValid = true;
  }

  private indexInvalidate(): void {
    this.idxValid = false;
    this.lookupsSinceChange = 0;
  }

  /** The range with the largest start <= addr, or null. */
  floor(addr: number): SvmRange | null {
    let t = this.root;
    let best: SvmRange | null = null;
    while (t !== null) {
      if (t.start <= addr) {
        best = t;
        t = t.right;
      } else t = t.left;
    }
    return best;
  }

  /** First range overlapping [s, l], or null (interval_tree_iter_first). */
  firstOverlap(s: number, l: number): SvmRange | null {
    const f = this.floor(s);
    if (f !== null && f.last >= s) return f;
    const n = f === null ? this.head : f.next;
    return n !== null && n.start <= l ? n : null;
  }

  /**
   * Link `r` into tree and list.
   * @throws InvariantError if it would overlap an existing range.
   */
  insert(r: SvmRange): void {
    assert(!r.linked, `range [${r.start}, ${r.last}] inserted twice`);
    const pred = this.floor(r.start);
    const succ = pred === null ? this.head : pred.next;
    assert(pred === null || pred.last < r.start, `range [${r.start}, ${r.last}] overlaps [${pred?.start}, ${pred?.last}]`);
    assert(succ === null || succ.start > r.last, `range [${r.start}, ${r.last}] overlaps [${succ?.start}, ${succ?.last}]`);
    r.priority = this.nextPriority();
    r.left = null;
    r.right = null;
    const [a, b] = split(this.root, r.start);
    this.root = merge(merge(a, r), b);
    r.prev = pred;
    r.next = succ;
    if (pred === null) this.head = r;
    else pred.next = r;
    if (succ === null) this.tail = r;
    else succ.prev = r;
    r.linked = true;
    this.count++;
    this.indexInvalidate();
  }

  /** Unlink `r` from tree and list. */
  remove(r: SvmRange): void {
    assert(r.linked, `range [${r.start}, ${r.last}] removed but not linked`);
    const [a, b] = split(this.root, r.start);
    const [m, c] = split(b, r.start + 1);
    assert(m === r && r.left === null && r.right === null, `tree lost range [${r.start}, ${r.last}]`);
    this.root = merge(a, c);
    if (r.prev === null) this.head = r.next;
    else r.prev.next = r.next;
    if (r.next === null) this.tail = r.prev;
    else r.next.prev = r.prev;
    r.prev = null;
    r.next = null;
    r.linked = false;
    this.count--;
    this.indexInvalidate();
  }

  /**
   * Full check: in-order tree walk equals the list, ranges ordered and never overlapping,
   * counts agree. Returns an error text or null. O(n).
   */
  check(): string | null {
    const inorder: SvmRange[] = [];
    const stack: SvmRange[] = [];
    let t = this.root;
    while (t !== null || stack.length > 0) {
      while (t !== null) {
        stack.push(t);
        t = t.left;
      }
      t = stack.pop()!;
      inorder.push(t);
      t = t.right;
    }
    if (inorder.length !== this.count) return `tree holds ${inorder.length} ranges, count says ${this.count}`;
    let r = this.head;
    let prev: SvmRange | null = null;
    for (let i = 0; i < inorder.length; i++) {
      if (r !== inorder[i]) return `list and tree disagree at position ${i}`;
      if (r.prev !== prev) return `list back link broken at [${r.start}, ${r.last}]`;
      if (prev !== null && prev.last >= r.start) {
        return `ranges overlap: [${prev.start}, ${prev.last}] and [${r.start}, ${r.last}]`;
      }
      prev = r;
      r = r.next;
    }
    if (r !== null) return "list is longer than the tree";
    if (this.tail !== prev) return "list tail is wrong";
    if (this.idxValid) {
      for (let i = 0; i < inorder.length; i++) {
        if (this.idxRanges[i] !== inorder[i] || this.idxStarts[i] !== inorder[i]!.start) return `lookup index disagrees at ${i}`;
      }
    }
    return null;
  }
}
