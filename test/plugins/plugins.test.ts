/**
 * The shipped policies: every policies/**\/*.yaml loads and passes its inline tests, and
 * scenarios longer than inline cases can express (a thrashing episode to its pin and its
 * expiry, exact prefetch requests, an adaptive schedule over several calls, the batch path).
 */
import { describe, expect, test } from "bun:test";
import { join, relative } from "node:path";
import {
  DECISION_STRIDE,
  FAULT_STRIDE,
  type Fault,
  type ObservedEvent,
  type PolicyContext,
  emptyFault,
  writeFault,
} from "../../runtime/policy/contracts/migration.ts";
import { findPolicyFiles } from "../../runtime/policy/files.ts";
import { KINDS } from "../../runtime/policy/kinds.ts";
import { readPolicySpec } from "../../runtime/policy/loader.ts";
import { Policy } from "../../runtime/policy/policy.ts";
import { runPolicyTests } from "../../runtime/policy/testing.ts";

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
   * GPU A and the CPU ping-pong block 8 four times, each move 100 µs after the previous:
   * the 4th move completes a chain of 3 within the lapse, so the block thrashes.
   */
  async function pingPong(p: Policy, t0: number): Promise<void> {
    expect(await decide(p, faultA(4096), t0)).toBe(GPU_A);
    await observe(p, [migrateEvent(t0 + 100 * US, 4096, 512, GPU_A, 0, 2)], t0 + 100 * US);
    expect(await decide(p, faultA(4100), t0 + 200 * US)).toBe(GPU_A);
    await observe(p, [migrateEvent(t0 + 300 * US, 4096, 512, GPU_A, 0, 2)], t0 + 300 * US);
  }

  test("moves slower than the lapse never thrash", async () => {
    using p = await loadPolicy("migration", "thrash-guard");
    let t = 1000 * MS;
    for (let i = 0; i < 10; i++) {
      expect(await decide(p, faultA(4096), t)).toBe(GPU_A);
      await observe(p, [migrateEvent(t + 600 * US, 4096, 512, GPU_A, 0, 2)], t + 600 * US);
      t += 1200 * US;
    }
  });

  test("ping-pong: 10 throttle periods pin the block, the pin holds 150 ms, then it migrates again", async () => {
    using p = await loadPolicy("migration", "thrash-guard");
    const t0 = 1000 * MS;
    await pingPong(p, t0);
    // Throttle periods 1..9, each 600 µs apart (the nap is 500 µs); a fault inside a period
    // does not start another one.
    let t = t0 + 400 * US;
    for (let i = 1; i <= 9; i++) {
      expect(await decide(p, faultA(4096), t)).toBe(0);
      expect(await decide(p, faultA(4200), t + 100 * US)).toBe(0);
      t += 600 * US;
    }
    // The 10th period pins the block at t: remote mapping until t + 150 ms.
    const pinnedAt = t;
    expect(await decide(p, faultA(4096), pinnedAt)).toBe(0);
    expect(await decide(p, faultA(4096), pinnedAt + 100 * MS)).toBe(0);
    expect(await decide(p, faultA(4096), pinnedAt + 149 * MS)).toBe(0);
    // The pin expired: the next fault migrates (and starts a new chain).
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

  test("a pinned block on a hive peer is mapped over XGMI, on system memory in place", async () => {
    using p = await loadPolicy("migration", "thrash-guard", { pin_threshold: 1 });
    const t0 = 1000 * MS;
    const events = [0, 1, 2, 3, 4].map((i) => migrateEvent(t0 + i * 100 * US, 8192, 512, i % 2 ? GPU_B : 0, i % 2 ? 0 : GPU_B, 0));
    await observe(p, events, t0 + 400 * US);
    // Data on GPU B (the last move): GPU A maps it remotely for the whole pin.
    expect(await decide(p, faultA(8192, { actualLoc: GPU_B }), t0 + 500 * US)).toBe(GPU_B);
    expect(await decide(p, faultA(8192, { actualLoc: GPU_B }), t0 + 100 * MS)).toBe(GPU_B);
    // GPU B faulting with the data in system memory maps system memory.
    expect(await decide(p, faultA(8192, { gpuId: GPU_B, gpuIndex: 1, accessMask: 2, actualLoc: 0 }), t0 + 120 * MS)).toBe(0);
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
  async function prefetch(p: Policy, fs: Partial<Fault>[], ds: { loc: number; start: number; last: number }[]) {
    const d = await p.invoke("prefetch", { faults: fs, decisions: ds }, at(1000 * MS));
    expect(d.by).toBe("plugin");
    return d.value;
  }

  test("every other big page resident: the subtree is 53% populated, each missing big page is requested", async () => {
    using p = await loadPolicy("migration", "density-prefetch");
    // Even big pages of block 0 (0..15, 32..47, ...) on GPU A: 256 of 512 pages.
    const events = Array.from({ length: 16 }, (_, i) => migrateEvent(1000 * MS, i * 32, 16, 0, GPU_A, 0));
    await observe(p, events, 1000 * MS);
    // A fault on odd big page 1 (pages 16..31) makes 272 of 512 populated.
    const got = await prefetch(p, [faultA(20)], [{ loc: GPU_A, start: 16, last: 31 }]);
    const want = Array.from({ length: 15 }, (_, i) => ({ start: 48 + i * 32, npages: 16, loc: GPU_A }));
    expect(got).toEqual(want);
  });

  test("at most requests_max requests", async () => {
    using p = await loadPolicy("migration", "density-prefetch", { requests_max: 4 });
    const events = Array.from({ length: 16 }, (_, i) => migrateEvent(1000 * MS, i * 32, 16, 0, GPU_A, 0));
    await observe(p, events, 1000 * MS);
    const got = await prefetch(p, [faultA(20)], [{ loc: GPU_A, start: 16, last: 31 }]);
    expect(got).toEqual([48, 80, 112, 144].map((start) => ({ start, npages: 16, loc: GPU_A })));
  });

  test("a dense quarter block: the 128-page subtree is prefetched, not the whole block", async () => {
    using p = await loadPolicy("migration", "density-prefetch");
    // Pages 0..63 resident; a fault at 100 (window 96..111): [0, 128) holds 80 of 128 (62%),
    // [0, 256) 80 of 256 (31%).
    await observe(p, [migrateEvent(1000 * MS, 0, 64, 0, GPU_A, 1)], 1000 * MS);
    const got = await prefetch(p, [faultA(100)], [{ loc: GPU_A, start: 96, last: 111 }]);
    expect(got).toEqual([
      { start: 64, npages: 32, loc: GPU_A },
      { start: 112, npages: 16, loc: GPU_A },
    ]);
  });

  test("a higher threshold prefetches less", async () => {
    using p = await loadPolicy("migration", "density-prefetch", { threshold_pct: 70 });
    await observe(p, [migrateEvent(1000 * MS, 0, 64, 0, GPU_A, 1)], 1000 * MS);
    // 62% of [0, 128) is not over 70%; [64, 128) holds 16 of 64; [96, 128) 16 of 32 = 50%.
    expect(await prefetch(p, [faultA(100)], [{ loc: GPU_A, start: 96, last: 111 }])).toEqual([]);
  });

  test("the decider's batch path: big-page windows, kernel destinations, prefetch from the batch", async () => {
    using p = await loadPolicy("migration", "density-prefetch");
    const d = p.migrationDecider();
    await d.prepare();
    // 17 faults on big pages 0..16 of block 0 (pages 0, 16, ..., 256): 272 of 512 populated.
    const n = 17;
    const faults = new Float64Array(n * FAULT_STRIDE);
    for (let i = 0; i < n; i++) writeFault(faults, i, { ...emptyFault(), ...faultA(i * 16) } as Fault);
    const out = new Float64Array(n * DECISION_STRIDE);
    d.decideFaults(faults, n, { ...CTX, nowNs: 1000 * MS }, out);
    for (let i = 0; i < n; i++) expect([...out.subarray(i * 3, i * 3 + 3)]).toEqual([GPU_A, i * 16, i * 16 + 15]);
    const req = d.prefetch(faults, n, out, { ...CTX, nowNs: 1000 * MS });
    expect(req).toEqual([{ start: 272, npages: 240, loc: GPU_A }]);
    expect(d.fallbacks).toBe(0);
  });
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
