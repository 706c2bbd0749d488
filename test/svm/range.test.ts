/** The range list (treap + ordered list + lookup index) and page runs, against reference models. */
import { describe, expect, test } from "bun:test";
import { Prng } from "../../runtime/sim/prng.ts";
import { SvmRange, SvmRangeList } from "../../runtime/svm/range.ts";
import { runsAdd, runsClip, runsGaps, runsOverlap, runsRemove, runsTotal, runsWellFormed, type Runs } from "../../runtime/svm/runs.ts";

describe("SvmRangeList", () => {
  test("random inserts, removes and lookups agree with a reference array; tree, list and index agree", () => {
    const rng = new Prng(5);
    const list = new SvmRangeList();
    const ref: SvmRange[] = [];
    const SPACE = 20_000;
    for (let step = 0; step < 6000; step++) {
      const k = rng.nextInt(10);
      if (k < 4) {
        const s = rng.nextInt(SPACE);
        const l = s + rng.nextInt(20);
        if (ref.some((r) => r.start <= l && r.last >= s)) {
          expect(() => list.insert(new SvmRange(s, l))).toThrow(/overlaps/);
        } else {
          const r = new SvmRange(s, l);
          list.insert(r);
          ref.push(r);
        }
      } else if (k < 6 && ref.length > 0) {
        const r = ref.splice(rng.nextInt(ref.length), 1)[0]!;
        list.remove(r);
      } else {
        const a = rng.nextInt(SPACE + 20);
        const want = ref.find((r) => r.start <= a && r.last >= a) ?? null;
        expect(list.lookup(a)).toBe(want);
        const b = a + rng.nextInt(50);
        const firstWant = ref.filter((r) => r.start <= b && r.last >= a).sort((x, y) => x.start - y.start)[0] ?? null;
        expect(list.firstOverlap(a, b)).toBe(firstWant);
      }
      if (step % 97 === 0) expect(list.check()).toBeNull();
    }
    expect(list.count).toBe(ref.length);
    expect(list.check()).toBeNull();
    // A lookup-only phase: the flat index gets built and must answer like the tree.
    for (let i = 0; i < 4000; i++) {
      const a = rng.nextInt(SPACE + 20);
      expect(list.lookup(a)).toBe(ref.find((r) => r.start <= a && r.last >= a) ?? null);
    }
    expect((list as unknown as { idxValid: boolean }).idxValid).toBe(true);
    expect(list.check()).toBeNull();
  });
});

describe("page runs", () => {
  test("add, remove, clip, gaps and overlap agree with a set of pages", () => {
    const rng = new Prng(8);
    let runs: Runs = null;
    const set = new Set<number>();
    for (let step = 0; step < 3000; step++) {
      const s = rng.nextInt(300);
      const l = s + rng.nextInt(40);
      if (rng.nextInt(2) === 0) {
        runs = runsAdd(runs, s, l);
        for (let p = s; p <= l; p++) set.add(p);
      } else {
        runs = runsRemove(runs, s, l);
        for (let p = s; p <= l; p++) set.delete(p);
      }
      expect(runsWellFormed(runs, 0, 400)).toBe(true);
      expect(runsTotal(runs)).toBe(set.size);
      const a = rng.nextInt(300);
      const b = a + rng.nextInt(60);
      let inside = 0;
      for (let p = a; p <= b; p++) if (set.has(p)) inside++;
      expect(runsOverlap(runs, a, b)).toBe(inside);
      expect(runsTotal(runsClip(runs, a, b))).toBe(inside);
      const gaps = runsGaps(runs, a, b);
      expect(runsTotal(gaps.length > 0 ? gaps : null)).toBe(b - a + 1 - inside);
    }
  });
});
