/**
 * The shipped policies: every policies/**\/*.yaml loads and passes its inline tests, and
 * scenarios longer than inline cases can express (a thrashing episode to its pin and its
 * expiry, density windows against the rule written plainly and in the simulator, an adaptive
 * schedule over several calls, the batch path).
 */
import { describe, expect, test } from "bun:test";
import { join, relative } from "node:path";
import {
  DECISION_STRIDE,
  FAULT_STRIDE,
  type Fault,
  LOC_UNDEFINED,
  type ObservedEvent,
  type PageWindow,
  type PolicyContext,
  emptyFault,
  kernelRestoreLocation,
  nativeKernelDefault,
  writeFault,
} from "../../runtime/policy/contracts/migration.ts";
import { findPolicyFiles } from "../../runtime/policy/files.ts";
import { KINDS } from "../../runtime/policy/kinds.ts";
import { readPolicySpec } from "../../runtime/policy/loader.ts";
import { Policy } from "../../runtime/policy/policy.ts";
import { runPolicyTests } from "../../runtime/policy/testing.ts";
import { builtinWorkload } from "../../runtime/sim/builtins.ts";
import { runSim } from "../../runtime/sim/engine.ts";
import { resolveMigrationPolicy } from "../../runtime/sim/policy.ts";
import { Prng } from "../../runtime/sim/prng.ts";
import { loadProfile } from "../../runtime/sim/profile.ts";

const ROOT = join(import.meta.dir, "../..");
const POLICIES = join(ROOT, "policies");
/** Fuel-based budgets: no wall-clock timeout on a loaded machine. */
const OPTS = { sandbox: { deterministic: true } } as const;

const policyFile = (kind: string, name: string) => join(POLICIES, kind, `${name}.yaml`);

/** Load a shipped policy, optionally with some params overridden. */
async function loadPolicy(kind: string, name: string, params: Record<string, number> = {}): Promise<Policy> {
  const spec = await readPolicySpec(policyFile(kind, name));
  spec.params = { ...spec.params, ...params };
  return Policy.fromSpec(spec, OPTS);
}

const GPU_A = 0x3fe1; // 16353, index 0, hive 0x5a11
const GPU_B = 0x4a02; // 18946, index 1, hive 0x5a11
const CTX = KINDS.MigrationPolicy.sampleCtx as unknown as PolicyContext;
const at = (nowNs: number): Record<string, unknown> => ({ ...CTX, nowNs });
const MS = 1_000_000;
const US = 1_000;

/** A fault of GPU A on `addr` in range [0, 262143] with ACCESS, data in system memory. */
const faultA = (addr: number, o: Partial<Fault> = {}): Partial<Fault> => ({
  gpuId: GPU_A,
  gpuIndex: 0,
  addr,
  rangeStart: 0,
  rangeLast: 262143,
  accessMask: 1,
  actualLoc: 0,
  ...o,
});

async function decide(p: Policy, f: Partial<Fault>, nowNs: number): Promise<number> {
  const d = await p.invoke<number>("restoreLocation", f, at(nowNs));
  expect(d.failure).toBeUndefined();
  return d.value;
}

function migrateEvent(nowNs: number, start: number, npages: number, from: number, to: number, trigger: number): ObservedEvent {
  return { kind: "migrate", nowNs, gpuId: to || from, start, npages, from, to, trigger };
}

async function observe(p: Policy, events: ObservedEvent[], nowNs: number): Promise<void> {
  const d = await p.invoke("observe", { events }, at(nowNs));
  expect(d.by).toBe("plugin");
}

describe("every shipped policy", () => {
  const files = findPolicyFiles([POLICIES]);
  test("the policies folder holds the expected set", () => {
    const names = files.map((f) => relative(POLICIES, f)).sort();
    for (const want of [
      "migration/access-counter.yaml",
      "migration/density-prefetch.yaml",
      "migration/kernel-default.yaml",
      "migration/thrash-guard.yaml",
      "migration/xgmi-aware.yaml",
      "sampling/adaptive.yaml",
      "sampling/fixed.yaml",
      "session/lazy.yaml",
      "session/linger.yaml",
      "session/persistent.yaml",
    ]) {
      expect(names).toContain(want);
    }
  });
  for (const file of files) {
    test(`${relative(POLICIES, file)} loads and passes its inline tests`, async () => {
      using p = await Policy.load(file, OPTS);
      expect(p.hooks.size).toBeGreaterThan(0);
      const outcomes = await runPolicyTests(p);
      expect(outcomes.length).toBeGreaterThanOrEqual(2);
      expect(outcomes.filter((o) => !o.ok)).toEqual([]);
    });
  }
  test("a wrong expectation fails (the inline tests do check decisions)", async () => {
    const spec = await readPolicySpec(policyFile("migration", "thrash-guard"));
    const tests = structuredClone(spec.tests ?? []);
    const throttled = tests.findIndex((t) => t.name.startsWith("a thrashing block is throttled"));
    expect(throttled).toBeGreaterThan(0);
    tests[throttled]!.expect = GPU_A; // what kernel-default would answer
    spec.tests = tests;
    using p = await Policy.fromSpec(spec, OPTS);
    const outcomes = await runPolicyTests(p);
    expect(outcomes.filter((o) => !o.ok).map((o) => o.name)).toEqual([tests[throttled]!.name]);
  });
});

describe("migration policies within their budgets (deterministic fuel)", () => {
  for (const name of ["access-counter", "density-prefetch", "thrash-guard", "xgmi-aware"]) {
    test(`${name}: a full batch of 4096 faults and its prefetch without a fallback`, async () => {
      using p = await loadPolicy("migration", name);
      const d = p.migrationDecider();
      await d.prepare();
      const n = 4096;
      const faults = new Float64Array(n * FAULT_STRIDE);
      for (let i = 0; i < n; i++) {
        const f = { ...emptyFault(), ...faultA((i % 500) * 512 + ((i * 37) % 512), { actualLoc: i % 3 === 0 ? GPU_B : 0 }) } as Fault;
        writeFault(faults, i, f);
      }
      const out = new Float64Array(n * DECISION_STRIDE);
      const ctx = { ...CTX, nowNs: 1000 * MS };
      d.decideFaults(faults, n, ctx, out);
      d.prefetch(faults, n, out, ctx);
      expect(p.log.entries().find((e) => e.fallback)?.fallback).toBeUndefined();
      expect(d.fallbacks).toBe(0);
    });
  }
});

describe("thrash-guard", () => {
  /**
   * Block 8 (pages 4096..4607) moves RAM -> A -> RAM -> A -> RAM, each move 100 µs after the
   * previous, as KFD reports them (observed migrations; the plugin's own decisions do not
   * count): moves 2, 3 and 4 each return the block to where it was before its previous move,
   * all within lapse_us (200 ms): 3 returns in a row, the block thrashes.
   */
  async function pingPong(p: Policy, t0: number): Promise<void> {
    const legs: [number, number][] = [
      [0, GPU_A],
      [GPU_A, 0],
      [0, GPU_A],
      [GPU_A, 0],
    ];
    await observe(
      p,
      legs.map(([from, to], i) => migrateEvent(t0 + i * 100 * US, 4096, 512, from, to, 1)),
      t0 + 300 * US,
    );
  }

  test("moves further apart than the lapse never thrash", async () => {
    using p = await loadPolicy("migration", "thrash-guard");
    let t = 1000 * MS;
    for (let i = 0; i < 10; i++) {
      await observe(p, [migrateEvent(t, 4096, 512, i % 2 ? GPU_A : 0, i % 2 ? 0 : GPU_A, 1)], t);
      expect(await decide(p, faultA(4096), t + 1 * MS)).toBe(GPU_A);
      t += 250 * MS;
    }
  });

  test("its own decisions are not moves: faults the kernel would migrate never thrash alone", async () => {
    using p = await loadPolicy("migration", "thrash-guard");
    for (let i = 0; i < 20; i++) expect(await decide(p, faultA(4096), 1000 * MS + i * 100 * US)).toBe(GPU_A);
  });

  test("ping-pong: 10 throttle periods pin the block in system memory, the pin holds 150 ms, then it migrates again", async () => {
    using p = await loadPolicy("migration", "thrash-guard");
    const t0 = 1000 * MS;
    await pingPong(p, t0);
    // Throttle periods 1..9, each 600 µs apart (the nap is 500 µs); a fault inside a period
    // does not start another one. Throttled: mapped in system memory (0).
    let t = t0 + 400 * US;
    for (let i = 1; i <= 9; i++) {
      expect(await decide(p, faultA(4096), t)).toBe(0);
      expect(await decide(p, faultA(4200), t + 100 * US)).toBe(0);
      t += 600 * US;
    }
    // The 10th period pins the block at t: system memory until t + 150 ms.
    const pinnedAt = t;
    expect(await decide(p, faultA(4096), pinnedAt)).toBe(0);
    expect(await decide(p, faultA(4096), pinnedAt + 100 * MS)).toBe(0);
    expect(await decide(p, faultA(4096), pinnedAt + 149 * MS)).toBe(0);
    // The pin expired: the next fault migrates.
    expect(await decide(p, faultA(4096), pinnedAt + 151 * MS)).toBe(GPU_A);
  });

  test("without enough throttle periods nothing is pinned: the block stays throttled past 150 ms", async () => {
    using p = await loadPolicy("migration", "thrash-guard", { pin_threshold: 255 });
    const t0 = 1000 * MS;
    await pingPong(p, t0);
    let t = t0 + 400 * US;
    for (let i = 1; i <= 10; i++, t += 600 * US) expect(await decide(p, faultA(4096), t)).toBe(0);
    // Faults keep coming (each one a thrashing event), so no epoch passes: still throttled.
    expect(await decide(p, faultA(4096), t + 100 * MS)).toBe(0);
    expect(await decide(p, faultA(4096), t + 151 * MS)).toBe(0);
  });

  test("a pinned block is mapped in system memory, also when its data is on a hive peer", async () => {
    using p = await loadPolicy("migration", "thrash-guard", { pin_threshold: 1 });
    const t0 = 1000 * MS;
    // RAM -> B -> RAM -> B -> RAM -> B: the 4th move is the 3rd return in a row.
    const events = [0, 1, 2, 3, 4].map((i) => migrateEvent(t0 + i * 100 * US, 8192, 512, i % 2 ? GPU_B : 0, i % 2 ? 0 : GPU_B, 0));
    await observe(p, events, t0 + 400 * US);
    // Data on GPU B (the last move): GPU A's faults map system memory for the whole pin
    // (answering B's VRAM would run the migration branch and unmap B: the ping-pong goes on).
    expect(await decide(p, faultA(8192, { actualLoc: GPU_B }), t0 + 500 * US)).toBe(0);
    expect(await decide(p, faultA(8192, { actualLoc: GPU_B }), t0 + 100 * MS)).toBe(0);
    expect(await decide(p, faultA(8192, { gpuId: GPU_B, gpuIndex: 1, accessMask: 2, actualLoc: 0 }), t0 + 120 * MS)).toBe(0);
    // The pin expired: the kernel's answer again.
    expect(await decide(p, faultA(8192, { actualLoc: GPU_B }), t0 + 151 * MS)).toBe(GPU_A);
  });

  test("a block resets after 1 s without thrashing, at most 4 times", async () => {
    using p = await loadPolicy("migration", "thrash-guard");
    let t = 1000 * MS;
    await pingPong(p, t);
    expect(await decide(p, faultA(4096), t + 400 * US)).toBe(0); // thrashing: throttled
    for (let reset = 1; reset <= 4; reset++) {
      t += 2000 * MS; // quiet for more than an epoch: reset, the fault migrates again
      await pingPong(p, t);
      expect(await decide(p, faultA(4096), t + 400 * US)).toBe(0);
    }
    // Resets used up: the block keeps its thrashing state after a quiet second.
    expect(await decide(p, faultA(4096), t + 2000 * MS)).toBe(0);
  });

  test("the batch path (SandboxMigrationDecider) sees the same throttle, window from the kernel", async () => {
    using p = await loadPolicy("migration", "thrash-guard");
    const d = p.migrationDecider();
    await d.prepare();
    const t0 = 1000 * MS;
    await pingPong(p, t0);
    const faults = new Float64Array(2 * FAULT_STRIDE);
    const write = (i: number, o: Partial<Fault>) => writeFault(faults, i, { ...emptyFault(), ...faultA(4096), ...o } as Fault);
    write(0, { addr: 4100 }); // thrashing block 8: throttled
    write(1, { addr: 9000 }); // block 17: migrates
    const out = new Float64Array(2 * DECISION_STRIDE);
    d.decideFaults(faults, 2, { ...CTX, nowNs: t0 + 400 * US }, out);
    expect([...out]).toEqual([0, 4096, 4607, GPU_A, 8704, 9215]);
    expect(d.fallbacks).toBe(0);
  });
});

describe("access-counter", () => {
  test("two faults of one GPU on a block in one batch: in place, then migrate", async () => {
    using p = await loadPolicy("migration", "access-counter");
    const d = p.migrationDecider();
    await d.prepare();
    const faults = new Float64Array(3 * FAULT_STRIDE);
    writeFault(faults, 0, { ...emptyFault(), ...faultA(4096) } as Fault);
    writeFault(faults, 1, { ...emptyFault(), ...faultA(4097, { gpuId: GPU_B, gpuIndex: 1, accessMask: 2 }) } as Fault);
    writeFault(faults, 2, { ...emptyFault(), ...faultA(4400) } as Fault);
    const out = new Float64Array(3 * DECISION_STRIDE);
    d.decideFaults(faults, 3, { ...CTX, nowNs: 5000 * MS }, out);
    expect([out[0], out[3], out[6]]).toEqual([0, 0, GPU_A]);
    expect(d.fallbacks).toBe(0);
  });

  test("threshold 3: the third fault within the window migrates", async () => {
    using p = await loadPolicy("migration", "access-counter", { threshold: 3 });
    const got: number[] = [];
    for (let i = 0; i < 4; i++) got.push(await decide(p, faultA(4096 + i), 1000 * MS + i * 100 * MS));
    expect(got).toEqual([0, 0, GPU_A, 0]);
  });

  test("counters stay bounded: a forgotten block starts over", async () => {
    using p = await loadPolicy("migration", "access-counter", { entries_max: 2 });
    expect(await decide(p, faultA(0), 1000 * MS)).toBe(0);
    expect(await decide(p, faultA(512), 1000 * MS)).toBe(0);
    expect(await decide(p, faultA(1024), 1000 * MS)).toBe(0); // block 0 forgotten
    expect(await decide(p, faultA(0), 1001 * MS)).toBe(0);
    expect(await decide(p, faultA(1024), 1002 * MS)).toBe(GPU_A);
  });
});

describe("density-prefetch", () => {
  const T = 1000 * MS;
  /** Pages [start, start + npages) arrive on GPU `to` (a migration with trigger PAGEFAULT_GPU). */
  const arrive = (start: number, npages: number, to = GPU_A): ObservedEvent => migrateEvent(T, start, npages, 0, to, 1);
  const faultB = (addr: number, o: Partial<Fault> = {}) => faultA(addr, { gpuId: GPU_B, gpuIndex: 1, accessMask: 2, ...o });

  async function windowOf(p: Policy, f: Partial<Fault>): Promise<PageWindow> {
    const d = await p.invoke<PageWindow>("migrationWindow", f, at(T));
    expect(d.failure).toBeUndefined();
    expect(d.by).toBe("plugin");
    return d.value;
  }

  test("no prefetch hook and no requests_max: the window does the prefetching", async () => {
    using p = await loadPolicy("migration", "density-prefetch");
    expect([...p.hooks].sort()).toEqual(["migrationWindow", "observe"]);
    expect([...p.sandbox.exports.functions].sort()).toEqual(["migrationWindow", "migrationWindowBatch", "observeBatch"]);
    expect(p.sandbox.exports.data.observeKinds).toEqual(["migrate", "evict", "unmap:unmap_from_cpu"]);
    expect(Object.keys(p.params).sort()).toEqual(["blocks_max", "threshold_pct"]);
  });

  test("every other big page resident: every level holding the fault is over 51%, the window is the block", async () => {
    using p = await loadPolicy("migration", "density-prefetch");
    // Even big pages of block 0 (0..15, 32..47, ...): 256 of 512. A fault on odd big page 1
    // (pages 16..31): [0, 31] 32/32, [0, 63] 48/64, [0, 127] 80/128, [0, 255] 144/256, the block 272/512.
    await observe(p, Array.from({ length: 16 }, (_, i) => arrive(i * 32, 16)), T);
    expect(await windowOf(p, faultA(20))).toEqual({ start: 0, last: 511 });
  });

  test("a dense quarter block: the 128-page subtree (62%), not the block (31%)", async () => {
    using p = await loadPolicy("migration", "density-prefetch");
    // Pages 0..63 resident; fault at 100 (big page 96..111): [96, 127] 16/32, [64, 127] 16/64,
    // [0, 127] 80/128, [0, 255] 80/256, the block 80/512.
    await observe(p, [arrive(0, 64)], T);
    expect(await windowOf(p, faultA(100))).toEqual({ start: 0, last: 127 });
  });

  test("a higher threshold takes less: 62% is not over 70%", async () => {
    using p = await loadPolicy("migration", "density-prefetch", { threshold_pct: 70 });
    await observe(p, [arrive(0, 64)], T);
    expect(await windowOf(p, faultA(100))).toEqual({ start: 96, last: 111 });
  });

  test("the share must exceed the threshold: the lone faulting big page is 50% of 32 pages", async () => {
    using p50 = await loadPolicy("migration", "density-prefetch", { threshold_pct: 50 });
    expect(await windowOf(p50, faultA(100))).toEqual({ start: 96, last: 111 });
    using p49 = await loadPolicy("migration", "density-prefetch", { threshold_pct: 49 });
    expect(await windowOf(p49, faultA(100))).toEqual({ start: 96, last: 127 });
  });

  test("a block that moves to another GPU restarts there", async () => {
    using p = await loadPolicy("migration", "density-prefetch");
    await observe(p, [arrive(0, 256, GPU_A)], T);
    // Fault at 280 (big page 272..287): for GPU A the block is 272/512 populated.
    expect(await windowOf(p, faultA(280))).toEqual({ start: 0, last: 511 });
    // Big page 256..271 arrives on GPU B: the block now tracks B and holds only those pages.
    await observe(p, [arrive(256, 16, GPU_B)], T);
    expect(await windowOf(p, faultA(280))).toEqual({ start: 272, last: 287 });
    expect(await windowOf(p, faultB(280))).toEqual({ start: 256, last: 287 });
  });

  test("migrations to system memory clear, and the other unmap trigger (0) changes nothing", async () => {
    using p = await loadPolicy("migration", "density-prefetch");
    await observe(p, [arrive(0, 256), { kind: "unmap", nowNs: T, gpuId: GPU_A, start: 0, npages: 512, from: 0, to: 0, trigger: 0 }], T);
    expect(await windowOf(p, faultA(300))).toEqual({ start: 0, last: 511 });
    await observe(p, [migrateEvent(T, 0, 256, GPU_A, 0, 2)], T);
    expect(await windowOf(p, faultA(300))).toEqual({ start: 288, last: 303 });
  });

  test("blocks_max bounds the state: the least recently set block is forgotten", async () => {
    using p = await loadPolicy("migration", "density-prefetch", { blocks_max: 2 });
    const half = (block: number) => arrive(block * 512, 256);
    const whole = (block: number) => ({ start: block * 512, last: block * 512 + 511 });
    const big = (block: number) => ({ start: block * 512 + 288, last: block * 512 + 303 });
    await observe(p, [half(0), half(1), half(2)], T);
    expect(await windowOf(p, faultA(300))).toEqual(big(0));
    expect(await windowOf(p, faultA(512 + 300))).toEqual(whole(1));
    expect(await windowOf(p, faultA(1024 + 300))).toEqual(whole(2));
    // Block 1 is set again (now the most recent), so block 3 replaces block 2.
    await observe(p, [arrive(512, 16), half(3)], T);
    expect(await windowOf(p, faultA(512 + 300))).toEqual(whole(1));
    expect(await windowOf(p, faultA(1024 + 300))).toEqual(big(2));
    expect(await windowOf(p, faultA(1536 + 300))).toEqual(whole(3));
    // An emptied block frees its slot: with block 3 evicted, block 2 comes back beside block 1
    // (were block 3 still held, block 1, the least recently set, would be forgotten).
    await observe(p, [{ kind: "evict", nowNs: T, gpuId: GPU_A, start: 1536, npages: 512, from: GPU_A, to: 0, trigger: 3 }, half(2)], T);
    expect(await windowOf(p, faultA(512 + 300))).toEqual(whole(1));
    expect(await windowOf(p, faultA(1024 + 300))).toEqual(whole(2));
    expect(await windowOf(p, faultA(1536 + 300))).toEqual(big(3));
  });

  test("the decider's batch path: riding events, kernel destinations, windows per destination", async () => {
    using p = await loadPolicy("migration", "density-prefetch");
    const d = p.migrationDecider();
    await d.prepare();
    const ctx = { ...CTX, nowNs: T };
    d.observe([arrive(0, 256)], ctx);
    const cases: [Partial<Fault>, number[]][] = [
      [faultA(300), [GPU_A, 0, 511]], // half-resident block 0
      [faultA(1000), [GPU_A, 992, 1007]], // empty block 1
      [faultA(100, { accessMask: 0, aipMask: 1 }), [0, 96, 111]], // to system memory: the big page
      [faultA(899, { rangeStart: 795, rangeLast: 900 }), [GPU_A, 896, 900]], // clipped to the range
      [faultA(1430, { accessMask: 0 }), [-1, 1424, 1439]], // denied: the big page
      [faultB(20), [GPU_B, 16, 31]], // block 0 tracks GPU A: empty for GPU B
    ];
    const n = cases.length;
    const faults = new Float64Array(n * FAULT_STRIDE);
    for (let i = 0; i < n; i++) writeFault(faults, i, { ...emptyFault(), ...cases[i]![0] } as Fault);
    const out = new Float64Array(n * DECISION_STRIDE);
    d.decideFaults(faults, n, ctx, out);
    expect(cases.map((_, i) => [...out.subarray(i * 3, i * 3 + 3)])).toEqual(cases.map(([, want]) => want));
    expect(d.prefetch(faults, n, out, ctx)).toEqual([]);
    expect(d.fallbacks).toBe(0);
  });

  test("the per-fault and batch forms agree when calls alternate (one window rule, layouts and params cached per object)", async () => {
    using p = await loadPolicy("migration", "density-prefetch");
    const d = p.migrationDecider();
    await d.prepare();
    const ctx = { ...CTX, nowNs: T };
    // Delivered now (the decider would hold events for its next batch, which invoke does not see).
    await observe(p, [arrive(0, 256), arrive(512 + 64, 64), arrive(1024, 16, GPU_B)], T);
    const faults: Partial<Fault>[] = [
      faultA(300), // half-resident block 0: the block
      faultA(512 + 100), // in the resident 64 pages of block 1: they are the window
      faultA(1024 + 20), // block 2 tracks GPU B: the big page
      faultB(1024 + 20), // for GPU B: 32 pages
      faultA(300, { rangeStart: 290, rangeLast: 700 }), // cut by the range
      faultA(100, { accessMask: 0, aipMask: 1 }), // to system memory
    ];
    const record = new Float64Array(FAULT_STRIDE);
    const out = new Float64Array(DECISION_STRIDE);
    for (let round = 0; round < 2; round++) {
      for (const f of faults) {
        const single = await windowOf(p, f);
        writeFault(record, 0, { ...emptyFault(), ...f } as Fault);
        d.decideFaults(record, 1, ctx, out);
        expect({ start: out[1], last: out[2] }).toEqual(single);
      }
    }
    // Pages 576..639 resident: [576, 639] is 64/64, [512, 639] 64/128 (not over 51%).
    expect(await windowOf(p, faultA(512 + 100))).toEqual({ start: 576, last: 639 });
    expect(d.fallbacks).toBe(0);
  });

  /**
   * The rule written plainly, page by page, as an independent check: residency per block on
   * one GPU, a window from the largest over-threshold subtree.
   */
  class ResidencyModel {
    readonly blocks = new Map<number, { gpu: number; pages: Uint8Array }>();
    apply(e: ObservedEvent): void {
      const arrives = e.kind === "migrate" && e.to > 0;
      const leaves = (e.kind === "migrate" && e.to === 0) || e.kind === "evict" || (e.kind === "unmap" && e.trigger === 2);
      for (let page = e.start; page < e.start + e.npages; page++) {
        const block = Math.floor(page / 512);
        let b = this.blocks.get(block);
        if (arrives) {
          // A new block, or one tracking another GPU, starts empty on this one.
          if (b === undefined || b.gpu !== e.to) {
            b = { gpu: e.to, pages: new Uint8Array(512) };
            this.blocks.set(block, b);
          }
          b.pages[page % 512] = 1;
        } else if (leaves && b !== undefined) b.pages[page % 512] = 0;
      }
    }
    window(f: Fault, dest: number, thresholdPct: number): [number, number] {
      let size = 16;
      if (dest > 0) {
        const base = Math.floor(f.addr / 512) * 512;
        const b = this.blocks.get(base / 512);
        const populated = (k: number) => Math.floor(k / 16) === Math.floor(f.addr / 16) || (b !== undefined && b.gpu === dest && b.pages[k - base] === 1);
        for (let s = 32; s <= 512; s *= 2) {
          const from = Math.floor(f.addr / s) * s;
          let pop = 0;
          let valid = 0;
          for (let k = from; k < from + s; k++) {
            if (k < f.rangeStart || k > f.rangeLast) continue;
            valid++;
            if (populated(k)) pop++;
          }
          if (pop * 100 > thresholdPct * valid) size = s;
        }
      }
      const s = Math.floor(f.addr / size) * size;
      return [Math.max(s, f.rangeStart), Math.min(s + size - 1, f.rangeLast)];
    }
  }

  for (const thresholdPct of [51, 25, 80]) {
    test(`threshold ${thresholdPct}%: batch windows match the rule written plainly, over random events and faults`, async () => {
      using p = await loadPolicy("migration", "density-prefetch", { threshold_pct: thresholdPct });
      const d = p.migrationDecider();
      await d.prepare();
      const rng = new Prng(thresholdPct);
      const model = new ResidencyModel();
      const ctx = { ...CTX, nowNs: T };
      const pick = <V>(vs: V[]): V => vs[rng.nextInt(vs.length)]!;
      const PAGES = 8 * 512;
      const n = 64;
      const faults = new Float64Array(n * FAULT_STRIDE);
      const out = new Float64Array(n * DECISION_STRIDE);
      let dense = 0;
      for (let round = 0; round < 60; round++) {
        const events: ObservedEvent[] = [];
        for (let k = 1 + rng.nextInt(6); k > 0; k--) {
          const aligned = rng.nextInt(4) === 0;
          const start = aligned ? rng.nextInt(PAGES / 16) * 16 : rng.nextInt(PAGES);
          const npages = aligned ? 16 << rng.nextInt(6) : 1 + rng.nextInt(600);
          const r = rng.nextInt(20);
          if (r < 9) events.push(migrateEvent(T, start, npages, 0, r < 6 ? GPU_A : GPU_B, 1));
          else if (r < 12) events.push(migrateEvent(T, start, npages, GPU_A, 0, 0));
          else if (r < 14) events.push({ kind: "evict", nowNs: T, gpuId: GPU_A, start, npages, from: GPU_A, to: 0, trigger: 3 });
          else events.push({ kind: "unmap", nowNs: T, gpuId: GPU_A, start, npages, from: 0, to: 0, trigger: r < 17 ? 1 : 2 });
        }
        for (const e of events) model.apply(e);
        d.observe(events, ctx);
        const want: number[][] = [];
        for (let i = 0; i < n; i++) {
          const addr = rng.nextInt(PAGES);
          const whole = rng.nextInt(2) === 0;
          const rangeStart = whole ? 0 : Math.max(0, addr - rng.nextInt(700));
          const rangeLast = whole ? 262143 : addr + rng.nextInt(700);
          const b = rng.nextInt(2) === 1;
          const f: Fault = {
            ...emptyFault(),
            gpuId: b ? GPU_B : GPU_A,
            gpuIndex: b ? 1 : 0,
            addr,
            rangeStart,
            rangeLast,
            accessMask: pick([0, 1, 2, 3, 3, 3]),
            aipMask: pick([0, 0, 1, 2, 3]),
            actualLoc: pick([0, 0, GPU_A, GPU_B]),
            preferredLoc: pick([LOC_UNDEFINED, LOC_UNDEFINED, LOC_UNDEFINED, 0, GPU_A, GPU_B]),
          };
          writeFault(faults, i, f);
          const dest = kernelRestoreLocation(f, CTX);
          const [ws, wl] = model.window(f, dest, thresholdPct);
          if (wl - ws + 1 > 16) dense++;
          want.push([dest, ws, wl]);
        }
        d.decideFaults(faults, n, ctx, out);
        expect(want.map((_, i) => [...out.subarray(i * 3, i * 3 + 3)])).toEqual(want);
      }
      expect(d.fallbacks).toBe(0);
      // The cases reach past the big page often enough to test the walk.
      expect(dense).toBeGreaterThan(100);
    });
  }

  test("the simulator: a 1 GiB sequential stream takes 6 handled faults per 2 MiB block and moves each page once", async () => {
    const profile = loadProfile("dev-2gpu");
    using resolved = await resolveMigrationPolicy(policyFile("migration", "density-prefetch"), { seed: 1 });
    await resolved.decider.prepare?.();
    const r = runSim({ profile, workload: builtinWorkload("stream", profile)!, decider: resolved.decider, seed: 1 });
    expect(r.policyFallbacks).toBe(0);
    // Per block the handled faults hit big pages 0, 1, 2, 4, 8 and 16, with windows of 16, 32,
    // 64, 128, 256 and 512 pages; each migrates its missing half (the first its whole big
    // page): 16 + 16 + 32 + 64 + 128 + 256 = 512 pages, each page once.
    const blocks = 2 ** 30 / (512 * 4096);
    expect(r.gpuFaults).toBe(blocks * 6);
    expect(r.gpuFaultsFatal).toBe(0);
    expect(r.migrations.h2d).toBe(blocks * 6);
    expect(r.migrations.byTrigger).toEqual({ prefetch: 0, pagefault_gpu: blocks * 6, pagefault_cpu: 0, ttm_eviction: 0 });
    expect(r.bytesMigrated).toEqual({ h2d: 2 ** 30, d2h: 0, d2d: 0 });
    // The big-page window alone would take 32 handled faults per block; the kernel's 2 MiB
    // window takes 1 and moves the same bytes.
    const kernel = runSim({ profile, workload: builtinWorkload("stream", profile)!, decider: nativeKernelDefault(), seed: 1 });
    expect(kernel.gpuFaults).toBe(blocks);
    expect(kernel.bytesMigrated).toEqual(r.bytesMigrated);
  }, 60_000);
});

describe("xgmi-aware", () => {
  test("a whole hive reads one GPU's copy in place; a PCIe-only GPU migrates", async () => {
    using p = await loadPolicy("migration", "xgmi-aware");
    const gpus = [...CTX.gpus, { id: 0x5003, index: 2, hiveId: 0, appApu: false, vramBytes: 64 * 2 ** 30 }];
    const ctx = { ...CTX, gpus, nowNs: 1000 * MS };
    const d = p.migrationDecider();
    await d.prepare();
    const faults = new Float64Array(3 * FAULT_STRIDE);
    const base = { ...emptyFault(), rangeStart: 0, rangeLast: 262143, addr: 4096, actualLoc: GPU_A, accessMask: 0b111 };
    writeFault(faults, 0, { ...base, gpuId: GPU_A, gpuIndex: 0 });
    writeFault(faults, 1, { ...base, gpuId: GPU_B, gpuIndex: 1 });
    writeFault(faults, 2, { ...base, gpuId: 0x5003, gpuIndex: 2 });
    const out = new Float64Array(3 * DECISION_STRIDE);
    d.decideFaults(faults, 3, ctx, out);
    expect([out[0], out[3], out[6]]).toEqual([GPU_A, GPU_A, 0x5003]);
  });
});

describe("adaptive sampling", () => {
  const input = (temperature_c: number, intervalMs: number) => ({
    nowMs: 60_000,
    gpus: [{ id: 3, readings: { temperature_c, power_w: 300 }, limits: { temperature_c_max: 100, power_w_max: 750 }, errors: {} }],
    intervals: { "3": { temperature: intervalMs } },
  });
  const next = async (p: Policy, temperature_c: number, intervalMs: number): Promise<number> => {
    const d = await p.invoke<Record<string, Record<string, number>>>("schedule", input(temperature_c, intervalMs), { nowMs: 60_000 });
    expect(d.by).toBe("plugin");
    return d.value["3"]!.temperature!;
  };

  test("the interval halves while the temperature climbs, then doubles once it settles", async () => {
    using p = await loadPolicy("sampling", "adaptive");
    const temps = [40, 50, 60, 70, 71, 71, 71, 71, 71, 71];
    const got: number[] = [];
    let ms = 4000;
    for (const t of temps) {
      ms = await next(p, t, ms);
      got.push(ms);
    }
    expect(got).toEqual([4000, 2000, 1000, 500, 1000, 2000, 4000, 8000, 10000, 10000]);
  });

  test("state is bounded: a forgotten GPU is first-seen again", async () => {
    const one = (id: number) => ({ nowMs: 1, gpus: [{ id, readings: { temperature_c: 50 }, limits: {}, errors: {} }], intervals: {} });
    const third = async (gpusMax: number): Promise<number> => {
      using p = await loadPolicy("sampling", "adaptive", { gpus_max: gpusMax });
      await p.invoke("schedule", one(3), { nowMs: 1 });
      await p.invoke("schedule", one(4), { nowMs: 2 });
      const d = await p.invoke<Record<string, Record<string, number>>>("schedule", one(3), { nowMs: 3 });
      return d.value["3"]!.temperature!;
    };
    // Remembered: unchanged since the last call, so it slows down.
    expect(await third(2)).toBe(2000);
    // Forgotten when GPU 4 came: first seen again, its interval kept.
    expect(await third(1)).toBe(1000);
  });
});

describe("linger session", () => {
  test("params move the thresholds", async () => {
    using p = await loadPolicy("session", "linger", { idle_grace_ms: 5000, busy_ratio_max: 1 });
    const base = { nowMs: 1, requestsPerS: 2, initLatencyMs: 180, shutdownLatencyMs: 40, contention: 0, openSessions: 0, currentMode: "linger", idleMs: 0 };
    expect((await p.invoke("mode", base, { nowMs: 1 })).value).toEqual({ mode: "linger", idleGraceMs: 5000 });
    expect((await p.invoke("mode", { ...base, requestsPerS: 6 }, { nowMs: 1 })).value).toEqual({ mode: "persistent" });
  });
});
