/**
 * Page runs: a set of pages stored as sorted, disjoint, non-adjacent inclusive pairs
 * `[s0, l0, s1, l1, ...]`. The per-range placement (pages in VRAM, pages mapped on a GPU)
 * uses them: windows are granularity-aligned, so a range holds a handful of runs at most,
 * and an empty set costs nothing (null).
 */

export type Runs = number[] | null;

/** Number of pages in the set. */
export function runsTotal(runs: Runs): number {
  if (runs === null) return 0;
  let n = 0;
  for (let i = 0; i < runs.length; i += 2) n += runs[i + 1]! - runs[i]! + 1;
  return n;
}

/** True when page `p` is in the set. */
export function runsContains(runs: Runs, p: number): boolean {
  if (runs === null) return false;
  for (let i = 0; i < runs.length; i += 2) {
    if (p < runs[i]!) return false;
    if (p <= runs[i + 1]!) return true;
  }
  return false;
}

/** Pages of the set inside [s, l]. */
export function runsOverlap(runs: Runs, s: number, l: number): number {
  if (runs === null) return 0;
  let n = 0;
  for (let i = 0; i < runs.length; i += 2) {
    const a = Math.max(s, runs[i]!);
    const b = Math.min(l, runs[i + 1]!);
    if (a <= b) n += b - a + 1;
  }
  return n;
}

/** The set plus [s, l], coalesced. */
export function runsAdd(runs: Runs, s: number, l: number): number[] {
  if (runs === null || runs.length === 0) return [s, l];
  const out: number[] = [];
  let i = 0;
  while (i < runs.length && runs[i + 1]! < s - 1) {
    out.push(runs[i]!, runs[i + 1]!);
    i += 2;
  }
  let ns = s;
  let nl = l;
  while (i < runs.length && runs[i]! <= l + 1) {
    ns = Math.min(ns, runs[i]!);
    nl = Math.max(nl, runs[i + 1]!);
    i += 2;
  }
  out.push(ns, nl);
  while (i < runs.length) {
    out.push(runs[i]!, runs[i + 1]!);
    i += 2;
  }
  return out;
}

/** The set minus [s, l]; null when empty. */
export function runsRemove(runs: Runs, s: number, l: number): Runs {
  if (runs === null) return null;
  const out: number[] = [];
  for (let i = 0; i < runs.length; i += 2) {
    const a = runs[i]!;
    const b = runs[i + 1]!;
    if (b < s || a > l) {
      out.push(a, b);
      continue;
    }
    if (a < s) out.push(a, s - 1);
    if (b > l) out.push(l + 1, b);
  }
  return out.length === 0 ? null : out;
}

/** The pages of [s, l] NOT in the set, as runs (possibly empty). */
export function runsGaps(runs: Runs, s: number, l: number): number[] {
  const out: number[] = [];
  let cur = s;
  if (runs !== null) {
    for (let i = 0; i < runs.length && cur <= l; i += 2) {
      const a = runs[i]!;
      const b = runs[i + 1]!;
      if (b < cur) continue;
      if (a > l) break;
      if (a > cur) out.push(cur, a - 1);
      cur = b + 1;
    }
  }
  if (cur <= l) out.push(cur, l);
  return out;
}

/** True when the two sets share a page. */
export function runsMeet(a: Runs, b: Runs): boolean {
  if (a === null || b === null) return false;
  let i = 0;
  let j = 0;
  while (i < a.length && j < b.length) {
    if (a[i + 1]! < b[j]!) i += 2;
    else if (b[j + 1]! < a[i]!) j += 2;
    else return true;
  }
  return false;
}

/** The part of the set inside [s, l] (pages to keep after a split). */
export function runsClip(runs: Runs, s: number, l: number): Runs {
  if (runs === null) return null;
  const out: number[] = [];
  for (let i = 0; i < runs.length; i += 2) {
    const a = Math.max(s, runs[i]!);
    const b = Math.min(l, runs[i + 1]!);
    if (a <= b) out.push(a, b);
  }
  return out.length === 0 ? null : out;
}

/** Sorted, disjoint, non-adjacent, inside [s, l]: the shape invariant of a run set. */
export function runsWellFormed(runs: Runs, s: number, l: number): boolean {
  if (runs === null) return true;
  if (runs.length === 0 || runs.length % 2 !== 0) return false;
  let prev = s - 2;
  for (let i = 0; i < runs.length; i += 2) {
    const a = runs[i]!;
    const b = runs[i + 1]!;
    if (a > b || a <= prev + 1 || a < s || b > l) return false;
    prev = b;
  }
  return true;
}
