/** The simulator end to end: built-in workloads with exact counts, XNACK off, hints, determinism. */
import { describe, expect, test } from "bun:test";
import { nativeKernelDefault } from "../../runtime/policy/contracts/migration.ts";
import { BUILTINS, builtinWorkload } from "../../runtime/sim/builtins.ts";
import { runSim, zipfRank } from "../../runtime/sim/engine.ts";
import { loadProfile, parseProfile, shippedProfiles } from "../../runtime/sim/profile.ts";
import { Prng } from "../../runtime/sim/prng.ts";
import { parseWorkload } from "../../runtime/sim/workload.ts";

const GIB = 2 ** 30;
const MIB = 2 ** 20;
/** Two 1 GiB GPUs on PCIe: largest range 32 MiB, VRAM holds 32 of them. */
const SMALL = parseProfile(
  "small.yaml",
  "kind: MachineProfile\nname: small\ngpus:\n  - { id: 0x100, count: 2, vram: 1GiB, hbm_gbps: 1000, pcie_h2d_gbps: 25 }\n",
);
const sim = (name: string, profile = loadProfile("dev-2gpu"), seed = 1) =>
  runSim({ profile, workload: builtinWorkload(name, profile)!, decider: nativeKernelDefault(), seed, fullCheckEvery: 256 });

describe("built-in workloads, exact counts", () => {
  test("stream: 1 GiB once on gpu0 gives 512 handled faults and 1 GiB host-to-device", () => {
    const r = sim("stream");
    expect(r.gpuFaults).toBe(512);
    expect(r.accesses).toBe(262_144);
    expect(r.migrations).toEqual({ h2d: 512, d2h: 0, d2d: 0, byTrigger: { prefetch: 0, pagefault_gpu: 512, pagefault_cpu: 0, ttm_eviction: 0 } });
    expect(r.bytesMigrated).toEqual({ h2d: GIB, d2h: 0, d2d: 0 });
    // One 1 GiB range: each next window waits out the 2 ms duplicate window. The faults
    // counter counts the dropped duplicates too (svm_range_count_fault): 512 + 10 220.
    expect(r.gpuFaultsDropped).toBe(10_220);
    expect(r.counters[0]).toEqual({ pid: 4242, gpuId: 0x3fe1, faults: 10_732, pageIn: 262_144, pageOut: 0 });
    expect(r.simTimeNs).toBeGreaterThan(511 * 2_000_000);
  });

  test("oversub-125: LRU eviction of whole ranges, cyclic reuse evicts every range in pass 2", () => {
    const r = sim("oversub-125", SMALL);
    expect(r.gpuFaults).toBe(1280);
    expect(r.evictions).toBe(8 + 40);
    expect(r.migrations.byTrigger.ttm_eviction).toBe(48);
    expect(r.bytesMigrated).toEqual({ h2d: 2.5 * GIB, d2h: 48 * 32 * MIB, d2d: 0 });
    expect(r.vramFallbacks).toBe(0);
  });

  test("oversub-150: 16 evictions in pass 1, 48 in pass 2", () => {
    const r = sim("oversub-150", SMALL);
    expect(r.gpuFaults).toBe(1536);
    expect(r.evictions).toBe(64);
    expect(r.bytesMigrated.h2d).toBe(3 * GIB);
  });

  test("pingpong: every hand-over bounces VRAM->VRAM through RAM", () => {
    const r = sim("pingpong");
    expect(r.gpuFaults).toBe(512);
    expect(r.migrations.d2d).toBe(15);
    expect(r.migrations.d2h).toBe(15);
    expect(r.bytesMigrated.d2h).toBe(15 * 64 * MIB);
    expect(r.bytesMigrated.h2d).toBe(16 * 64 * MIB);
  });

  test("producer-consumer: the CPU pulls every window back in rounds 2..4", () => {
    const r = sim("producer-consumer");
    expect(r.gpuFaults).toBe(512);
    expect(r.cpuFaults).toBe(3 * 128);
    expect(r.migrations.byTrigger.pagefault_cpu).toBe(384);
    expect(r.bytesMigrated.d2h).toBe(3 * 256 * MIB);
  });

  test("every built-in runs on every shipped profile and leaves nothing behind", () => {
    for (const p of shippedProfiles()) {
      const prof = loadProfile(p);
      for (const name of ["stream", "stencil", "pingpong", "producer-consumer"]) {
        const r = sim(name, prof);
        expect(r.gpuFaultsFatal).toBe(0);
        if (prof.gpus[0]!.appApu) expect(r.bytesMigrated.h2d).toBe(0);
      }
    }
    expect(Object.keys(BUILTINS).sort()).toEqual(
      ["hotset-remote", "oversub-125", "oversub-150", "pingpong", "producer-consumer", "random", "stencil", "stream", "stream-64k", "strided", "zipf"].sort(),
    );
  });

  test("stencil on the 8-GPU hive: two slabs share each 1 GiB range, so with ACCESS they bounce whole ranges", () => {
    const r = sim("stencil", loadProfile("mi300x-8"));
    expect(r.gpuFaultsFatal).toBe(0);
    expect(r.counters.length).toBe(8);
    // Every handled fault migrates its window to the faulting GPU; every hand-over is a bounce.
    expect(r.migrations.h2d).toBe(r.gpuFaults);
    expect(r.migrations.d2d).toBe(r.migrations.d2h);
    expect(r.migrations.d2d).toBeGreaterThan(1000);
  });
});

describe("hints and XNACK off", () => {
  const yaml = (xnack: boolean) => `kind: Workload
name: hinted
processes: [ { pid: 7, xnack: ${xnack} } ]
allocations:
  - name: a
    size: 64MiB
streams:
  - agent: gpu0
    ops:
      - sleep_ns: 1000000
      - access: { alloc: a }
hints:
  - at_ns: 0
    set_attr: { alloc: a, attrs: [ { type: PREFETCH_LOC, value: gpu0 } ] }
`;
  test("a prefetch hint moves the whole buffer once; with XNACK on it is mapped on the GPU, no fault", () => {
    const p = loadProfile("dev-2gpu");
    const r = runSim({ profile: p, workload: parseWorkload("h.yaml", yaml(true), p), decider: nativeKernelDefault(), seed: 1 });
    expect(r.migrations.byTrigger.prefetch).toBe(1);
    expect(r.bytesMigrated.h2d).toBe(64 * MIB);
    // svm_range_validate_and_map (XNACK on) maps actual_loc's GPU, which has ACCESS.
    expect(r.gpuFaults).toBe(0);
    expect(r.migrations.h2d).toBe(1);
  });

  test("XNACK off: mapped ahead, no GPU fault at all", () => {
    const p = loadProfile("dev-2gpu");
    const r = runSim({ profile: p, workload: parseWorkload("h.yaml", yaml(false), p), decider: nativeKernelDefault(), seed: 1 });
    expect(r.gpuFaults).toBe(0);
    expect(r.gpuFaultsFatal).toBe(0);
    expect(r.bytesMigrated.h2d).toBe(64 * MIB);
    expect(r.accesses).toBe(16_384);
  });

  test("XNACK off, CPU touches VRAM: queue eviction and restore", () => {
    const p = loadProfile("dev-2gpu");
    const w = `kind: Workload
name: q
processes: [ { pid: 7, xnack: false } ]
allocations:
  - { name: a, size: 4MiB, attrs: [ { type: PREFETCH_LOC, value: gpu0 }, { type: ACCESS, value: gpu0 } ] }
streams:
  - agent: cpu
    ops: [ { access: { alloc: a, size: 4KiB } } ]
  - agent: gpu0
    ops: [ { sleep_ns: 10 }, { access: { alloc: a } } ]
`;
    const r = runSim({ profile: p, workload: parseWorkload("q.yaml", w, p), decider: nativeKernelDefault(), seed: 1 });
    expect(r.cpuFaults).toBe(1);
    expect(r.queueEvictions).toBe(1);
    expect(r.queueRestores).toBe(1);
    expect(r.gpuFaults).toBe(0);
    expect(r.accesses).toBe(1 + 1024);
    expect(r.simTimeNs).toBeGreaterThan(1_000_000);
  });
});

describe("determinism and the PRNG", () => {
  test("same seed, byte-identical JSON; another seed may differ", () => {
    const a = JSON.stringify(sim("random", SMALL, 5));
    const b = JSON.stringify(sim("random", SMALL, 5));
    expect(a).toBe(b);
  });

  test("xoshiro128** streams are reproducible and uniform enough", () => {
    const x = new Prng(42);
    const y = new Prng(42);
    const counts = new Array(10).fill(0);
    for (let i = 0; i < 100_000; i++) {
      const v = x.nextInt(10);
      expect(v).toBe(y.nextInt(10));
      counts[v]++;
    }
    for (const c of counts) expect(Math.abs(c - 10_000)).toBeLessThan(500);
    expect(new Prng(1).nextU32()).not.toBe(new Prng(2).nextU32());
  });

  test("zipf ranks favour the head and stay in range", () => {
    const rng = new Prng(3);
    let head = 0;
    for (let i = 0; i < 10_000; i++) {
      const r = zipfRank(rng.nextFloat(), 1_000_000, 1.1);
      expect(r).toBeGreaterThanOrEqual(0);
      expect(r).toBeLessThan(1_000_000);
      if (r < 1000) head++;
    }
    expect(head).toBeGreaterThan(5000);
  });
});

describe("waves", () => {
  test("a stream split into 16 waves makes the same accesses and hands the policy batches", () => {
    const p = loadProfile("dev-2gpu");
    const yaml = (waves: number) =>
      `kind: Workload\nname: w\nallocations:\n  - { name: a, size: 1GiB, register: false }\nstreams:\n  - agent: gpu0\n    waves: ${waves}\n    ops:\n      - access: { alloc: a }\n`;
    let maxBatch = 0;
    const base = nativeKernelDefault();
    const counting = {
      ...base,
      name: "counting",
      decideFaults(f: Float64Array, n: number, ctx: Parameters<typeof base.decideFaults>[2], out: Float64Array) {
        maxBatch = Math.max(maxBatch, n);
        base.decideFaults(f, n, ctx, out);
      },
    };
    const w16 = parseWorkload("w.yaml", yaml(16), p);
    expect(w16.streams.length).toBe(16);
    const r = runSim({ profile: p, workload: w16, decider: counting, seed: 1 });
    expect(r.accesses).toBe(262_144);
    expect(r.gpuFaults).toBe(512);
    expect(r.bytesMigrated.h2d).toBe(GIB);
    expect(maxBatch).toBe(16);
    maxBatch = 0;
    runSim({ profile: p, workload: parseWorkload("w.yaml", yaml(1), p), decider: counting, seed: 1 });
    expect(maxBatch).toBe(1);
  });
});
