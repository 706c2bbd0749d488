/**
 * Property tests: random operation sequences (set_attr with random intervals and
 * attributes, GPU fault batches, CPU accesses, munmap, restore and deferred work, XNACK
 * changes) on small machines with VRAM pressure, two processes, every invariant checked
 * after every operation, then process exit checked to leave nothing behind; and random
 * workloads through the engine with the calls of the whole API (free, exit, get_attr,
 * set_xnack, buffers, read-only memory, several vmas).
 */
import { describe, expect, test } from "bun:test";
import { KfdError } from "../../runtime/errors.ts";
import { LOC_UNDEFINED, SVM_FLAG } from "../../runtime/policy/contracts/migration.ts";
import { Prng } from "../../runtime/sim/prng.ts";
import { SVM_ATTR } from "../../runtime/svm/constants.ts";
import { type AttrPair, FAULT_RESULT, SvmModel } from "../../runtime/svm/model.ts";
import { BASE, gpus, TEST_COSTS } from "./helpers.ts";
import { nativeKernelDefault } from "../../runtime/policy/contracts/migration.ts";
import { runSim } from "../../runtime/sim/engine.ts";
import { parseProfile, type MachineProfile } from "../../runtime/sim/profile.ts";
import { AGENT_CPU, type AllocSpec, type OpSpec, type Workload } from "../../runtime/sim/workload.ts";

const SEEDS = 40;
const OPS_PER_SEED = 400;
/** Address space the operations touch, pages (8 MiB ranges land inside). */
const SPAN = 8192;

/** A GPU's retry of a dropped fault after the drop, ns (the engine's fault_retry_ns). */
const RETRY_NS = 40_000;

/**
 * Options of a run. retries: a lone GPU fault is retried like a wave does it (dropped:
 * again RETRY_NS after the drop, until a horizon), each drop through restorePages, or with
 * repeatDrops first as the engine does; the two must be indistinguishable.
 */
interface RunOpts {
  retries?: "restorePages" | "repeatDrops";
  lines?: string[];
}

function runSeed(seed: number, opts: RunOpts = {}): SvmModel {
  const rng = new Prng(seed);
  const hive = rng.nextInt(2) === 1 ? 5 : 0;
  const g = gpus(2 + rng.nextInt(2), { vramBytes: 64 * 2 ** 30, vramReservedBytes: 64 * 2 ** 30 - (4 + rng.nextInt(8)) * 2 ** 20, hiveId: hive });
  // Every MIGRATE_START is followed by its END for the same window; in between only what
  // migrate_vma_setup's MMU notifier emits for that process (svm_range_evict:
  // UNMAP_FROM_GPU of the window, or QUEUE_EVICTION).
  let open: string | null = null;
  const sink = (line: string): void => {
    const f = line.split(" ");
    if (f[0] === "5") {
      expect(open).toBeNull();
      open = `${f[2]} ${f[3]} ${f[4]}`;
    } else if (f[0] === "6") {
      expect(`${f[2]} ${f[3]} ${f[4]}`).toBe(open!);
      open = null;
    } else if (open !== null) {
      expect(f[0] === "b" || f[0] === "9").toBe(true);
      expect(f[2]).toBe(open.split(" ")[0]!);
      if (f[0] === "b") expect(f[3]).toBe(open.split(" ")[1]!);
    }
    opts.lines?.push(line);
  };
  const m = new SvmModel({ gpus: g, decider: nativeKernelDefault(), costs: TEST_COSTS, seed, fullCheckEvery: 1, sink });
  const pids = [100, 200];
  for (const pid of pids) {
    m.processCreate(pid, { xnack: rng.nextInt(3) !== 0 });
    m.vmaAdd(pid, BASE, SPAN, rng.nextInt(4) === 0 ? "heap" : "anon");
  }
  const loc = (): number => {
    const k = rng.nextInt(g.length + 2);
    return k < g.length ? g[k]!.id : k === g.length ? 0 : LOC_UNDEFINED;
  };
  const flags = [SVM_FLAG.GPU_RO, SVM_FLAG.GPU_ALWAYS_MAPPED, SVM_FLAG.GPU_EXEC, SVM_FLAG.COHERENT];
  let t = 0;
  const addrs = new Float64Array(8);
  const writes = new Uint8Array(8);
  const res = new Uint8Array(8);
  const done = new Float64Array(8);
  for (let op = 0; op < OPS_PER_SEED; op++) {
    const pid = pids[rng.nextInt(2)]!;
    if (!m.processes.has(pid)) continue;
    t += rng.nextInt(3_000_000);
    const k = rng.nextInt(10);
    if (k <= 2) {
      const s = BASE + rng.nextInt(SPAN);
      const n = 1 + rng.nextInt(Math.min(2048, BASE + SPAN - s));
      const attrs: AttrPair[] = [];
      for (let a = rng.nextInt(4); a > 0; a--) {
        const type = rng.nextInt(8);
        const gpu = g[rng.nextInt(g.length)]!.id;
        const value =
          type <= 1 ? loc() : type <= 4 ? gpu : type <= 6 ? flags[rng.nextInt(flags.length)]! : rng.nextInt(12);
        attrs.push([type, value]);
      }
      try {
        t = m.setAttr(pid, s, n, attrs, t);
      } catch (e) {
        if (!(e instanceof KfdError)) throw e;
        // A failed prefetch (ENOMEM) did work before it failed.
        if (e.errnoName === "ENOMEM") t = m.failedOpEndNs;
      }
    } else if (k <= 6) {
      const gi = rng.nextInt(g.length);
      const n = 1 + rng.nextInt(8);
      for (let i = 0; i < n; i++) {
        addrs[i] = BASE + rng.nextInt(SPAN);
        writes[i] = rng.nextInt(2);
      }
      if (opts.retries === undefined || n > 1) t = m.restorePages(pid, gi, n, addrs, writes, t, res, done);
      else {
        // The wave's retries until a horizon (the next operation comes after it).
        const until = t + rng.nextInt(6_000_000);
        const end = new Float64Array(1);
        let at = t;
        for (;;) {
          t = m.restorePages(pid, gi, 1, addrs, writes, at, res, done);
          if (res[0] !== FAULT_RESULT.DROPPED) break;
          at = done[0]! + RETRY_NS;
          if (opts.retries === "repeatDrops") {
            const k = m.repeatDrops(pid, gi, addrs[0]!, writes[0] === 1, at, RETRY_NS, until, end);
            if (k > 0) {
              t = end[0]!;
              at = t + RETRY_NS;
            }
          }
          if (at >= until) break;
        }
      }
    } else if (k === 7) {
      t = m.cpuAccess(pid, BASE + rng.nextInt(SPAN), rng.nextInt(2) === 1, t);
    } else if (k === 8) {
      for (const w of m.takeWork()) {
        if (!m.processes.has(w.pid)) continue;
        if (w.kind === "restore") t = Math.max(t, m.restoreWork(w.pid, Math.max(t, w.dueNs)));
        else m.deferredWork(w.pid, Math.max(t, w.dueNs));
      }
    } else {
      const r = rng.nextInt(20);
      if (r === 0) {
        const s = BASE + rng.nextInt(SPAN - 512);
        m.vmaRemove(pid, s, 1 + rng.nextInt(512), t);
      } else if (r === 1) {
        try {
          m.setXnack(pid, rng.nextInt(2));
        } catch (e) {
          if (!(e instanceof KfdError)) throw e;
        }
      } else if (r === 2) {
        m.processDestroy(pid, t);
      } else {
        try {
          m.getAttr(pid, BASE + rng.nextInt(SPAN), 1 + rng.nextInt(1024), [[SVM_ATTR.PREFERRED_LOC, 0], [SVM_ATTR.ACCESS, g[0]!.id]]);
        } catch (e) {
          // EFAULT where munmap left a hole (svm_range_is_valid).
          if (!(e instanceof KfdError)) throw e;
        }
      }
    }
  }
  for (const pid of pids) if (m.processes.has(pid)) m.processDestroy(pid, t);
  return m;
}

describe("random operation sequences keep every invariant", () => {
  test(`${SEEDS} seeds x ${OPS_PER_SEED} operations, full check after each`, () => {
    let faults = 0;
    let evictions = 0;
    let migrations = 0;
    for (let seed = 1; seed <= SEEDS; seed++) {
      const m = runSeed(seed);
      expect(m.processes.size).toBe(0);
      expect([...m.vramUsedPages].every((v) => v === 0)).toBe(true);
      expect(m.takeWork()).toEqual([]);
      faults += m.stats.gpuFaults;
      evictions += m.stats.evictions;
      migrations += m.stats.migrations.h2d + m.stats.migrations.d2h;
    }
    // The sequences really exercise faults, migrations and eviction.
    expect(faults).toBeGreaterThan(1000);
    expect(migrations).toBeGreaterThan(500);
    expect(evictions).toBeGreaterThan(10);
  });

  test("replaying drops (repeatDrops) equals handling each retry (restorePages)", () => {
    let replayed = 0;
    for (let seed = 1; seed <= SEEDS; seed++) {
      const linesA: string[] = [];
      const linesB: string[] = [];
      const a = runSeed(seed, { retries: "restorePages", lines: linesA });
      const b = runSeed(seed, { retries: "repeatDrops", lines: linesB });
      expect(JSON.stringify(b.stats)).toBe(JSON.stringify(a.stats));
      expect(b.exitCounters).toEqual(a.exitCounters);
      expect(linesB).toEqual(linesA);
      expect(b.step).toBe(a.step);
      replayed += a.stats.gpuFaultsDropped;
    }
    // The sequences really retry inside duplicate windows.
    expect(replayed).toBeGreaterThan(1000);
  });

  test("a run is a pure function of its seed", () => {
    const a = runSeed(11).stats;
    const b = runSeed(11).stats;
    expect(JSON.stringify(a)).toBe(JSON.stringify(b));
  });

  test("a broken invariant names the seed and the step", () => {
    const m = runSeed(3);
    m.vramUsedPages[0] = 5;
    expect(() => m.checkFull()).toThrow(/seed 3, step \d+: rerun with --seed 3/);
  });
});

/** Seeds of the workload-level sequences (free, exit, get_attr, set_xnack, buffers, read-only, vmas). */
const WORKLOAD_SEEDS = 1000;

/**
 * A random small workload on a 2-GPU machine with the calls of issue 12: allocations plain or
 * registered, read-only, of several vmas, userptr or VRAM buffers placed next to each other;
 * GPU and CPU streams making accesses, set_attr, get_attr, frees (whole or part), set_xnack
 * and an exit.
 */
function randomWorkload(seed: number, profile: MachineProfile): Workload {
  const rng = new Prng(seed);
  const allocs: AllocSpec[] = [];
  const nAlloc = 1 + rng.nextInt(4);
  for (let i = 0; i < nAlloc; i++) {
    const pages = 64 * (1 + rng.nextInt(24));
    const a: AllocSpec = { name: `a${i}`, pid: 4242, pages, register: rng.nextInt(2) === 0, kind: "anon", attrs: [], start: -1 };
    const kind = rng.nextInt(6);
    if (kind === 0) a.writable = false;
    else if (kind === 1) a.vmas = 1 + rng.nextInt(4);
    else if (kind === 2) {
      a.buffer = rng.nextInt(2) === 0 ? 0 : profile.gpus[0]!.id;
      a.register = false;
    }
    if (i > 0 && rng.nextInt(2) === 0) a.adjacent = true;
    allocs.push(a);
  }
  const part = (): { alloc: number; offset: number; pages: number } => {
    const alloc = rng.nextInt(nAlloc);
    const offset = rng.nextInt(allocs[alloc]!.pages);
    return { alloc, offset, pages: 1 + rng.nextInt(allocs[alloc]!.pages - offset) };
  };
  const streams = [0, 1, AGENT_CPU].map((agent) => {
    const ops: OpSpec[] = [];
    for (let k = 3 + rng.nextInt(6); k > 0; k--) {
      const c = rng.nextInt(12);
      const p = part();
      if (c <= 5) ops.push({ op: "access", ...p, pattern: rng.nextInt(2) === 0 ? "seq" : "random", count: 1 + rng.nextInt(256), write: rng.nextInt(3) / 2, stride: 1, zipfS: 1.1 });
      else if (c === 6) ops.push({ op: "set_attr", ...p, attrs: [[rng.nextInt(2) === 0 ? SVM_ATTR.PREFETCH_LOC : SVM_ATTR.PREFERRED_LOC, profile.gpus[rng.nextInt(2)]!.id]] });
      else if (c === 7) ops.push({ op: "get_attr", ...p, attrs: [[SVM_ATTR.PREFERRED_LOC, 0], [SVM_ATTR.SET_FLAGS, 0], [SVM_ATTR.ACCESS, profile.gpus[0]!.id]] });
      else if (c === 8 && !(allocs[p.alloc]!.buffer !== undefined && (p.offset !== 0 || p.pages !== allocs[p.alloc]!.pages))) ops.push({ op: "free", ...p });
      else if (c === 9) ops.push({ op: "set_xnack", xnack: rng.nextInt(2) === 0 });
      else if (c === 10) ops.push({ op: "sleep", ns: rng.nextInt(3_000_000) });
      else if (c === 11 && rng.nextInt(4) === 0) ops.push({ op: "exit" });
    }
    return { agent, pid: 4242, ops };
  });
  return { name: `random-${seed}`, description: "", processes: [{ pid: 4242, name: "rnd", xnack: rng.nextInt(3) !== 0 }], allocs, streams, hints: [] };
}

describe("random workloads with the calls of the whole API keep every invariant", () => {
  test(
    `${WORKLOAD_SEEDS} seeds: no leftover after exit, faults per GPU add up, deterministic`,
    () => {
      const profile = parseProfile("two.yaml", "kind: MachineProfile\nname: two\ngpus:\n  - { id: 0x100, count: 2, vram: 1GiB, hbm_gbps: 1000, pcie_h2d_gbps: 25 }\n");
      const seen = { free: 0, exit: 0, getAttr: 0, setXnack: 0, errors: 0, fatal: 0 };
      for (let seed = 1; seed <= WORKLOAD_SEEDS; seed++) {
        const r = runSim({ profile, workload: randomWorkload(seed, profile), decider: nativeKernelDefault(), seed, fullCheckEvery: 16 });
        expect(r.exits).toEqual({ processes: 1, ranges: 0, vramPages: 0, pendingWork: 0 });
        expect(r.gpuFaultsByGpu.reduce((n, g) => n + g.handled, 0)).toBe(r.gpuFaults);
        expect(r.gpuFaultsByEnd.migrated + r.gpuFaultsByEnd.mappedOnly).toBe(r.gpuFaults);
        seen.free += r.calls.free;
        seen.exit += r.calls.exit;
        seen.getAttr += r.calls.getAttr;
        seen.setXnack += r.calls.setXnack;
        seen.errors += Object.values(r.ioctlErrors).reduce((n, e) => n + Object.values(e).reduce((a, b) => a + b, 0), 0);
        seen.fatal += r.gpuFaultsFatal + r.cpuAccessesFatal;
        if (seed % 100 === 0) {
          const again = runSim({ profile, workload: randomWorkload(seed, profile), decider: nativeKernelDefault(), seed, fullCheckEvery: 16 });
          expect(JSON.stringify(again)).toBe(JSON.stringify(r));
        }
      }
      // The sequences really make every call, fail some and fault fatally on freed or read-only memory.
      expect(Math.min(seen.free, seen.exit, seen.getAttr, seen.setXnack, seen.errors, seen.fatal)).toBeGreaterThan(50);
    },
    120_000,
  );
});
