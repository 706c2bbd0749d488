/**
 * The emulated GPU management library (runtime/emu/smi.ts): identity, readings that follow
 * the load (activity at once, temperature and power with lag; fake clock, no wall clock),
 * the library state shared through a SharedArrayBuffer (two bindings, and a real Worker),
 * reference counting, stale handles, fault injection, VRAM publishing, a 16-GPU profile.
 * (test/emu/smi.test.ts is about the emulated KFD's SMI event stream, another thing.)
 */
import { describe, expect, test } from "bun:test";
import { EXIT, exitCodeOf } from "../../runtime/cli/exit.ts";
import { SmiError } from "../../runtime/errors.ts";
import {
  EMU_GTT_TOTAL_bytes,
  EMU_SENSORS,
  EMU_THROTTLE_JUNCTION_C,
  EMU_VRAM_BASELINE_bytes,
  type EmuLoadFn,
  emuLoadBursts,
  emuSmiCounters,
  emuSmiInject,
  emuSmiInjectClear,
  emuSmiInjectInitFailure,
  emuSmiOpen,
  emuSmiSharedCreate,
  emuSmiVramPublish,
} from "../../runtime/emu/smi.ts";
import { loadProfile } from "../../runtime/sim/profile.ts";
import { SMI_GPU_EVENT, type SmiHandle, type SmiLibrary } from "../../runtime/smi/library.ts";

const GIB = 2 ** 30;
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const THROTTLE_MASK = 1n << BigInt(SMI_GPU_EVENT.THERMAL_THROTTLE - 1);

function smiError(fn: () => unknown): SmiError {
  try {
    fn();
  } catch (e) {
    if (e instanceof SmiError) return e;
    throw e;
  }
  throw new Error("no SmiError thrown");
}

/** A fake clock the test moves. */
function fakeClock(startMs = 0): { now: () => number; set: (ms: number) => void } {
  let t = startMs;
  return {
    now: () => t,
    set: (ms) => {
      t = ms;
    },
  };
}

/** Load 0 before `atMs`, 1 from it on, for GPU 0 only. */
const stepAt =
  (atMs: number, untilMs = Number.POSITIVE_INFINITY): EmuLoadFn =>
  (i, t) =>
    i === 0 && t >= atMs && t < untilMs ? 1 : 0;

function opened(opts: Parameters<typeof emuSmiOpen>[0] = {}): { lib: SmiLibrary; h: SmiHandle[] } {
  const lib = emuSmiOpen(opts);
  lib.init();
  return { lib, h: lib.gpuHandles() };
}

describe("emulated SMI: identity", () => {
  test("deterministic, distinct per GPU, and saying it is emulated", () => {
    const a = opened({ profile: "dev-2gpu" });
    const b = opened({ profile: "dev-2gpu" });
    const sa = a.h.map((h) => a.lib.gpuStatic(h));
    const sb = b.h.map((h) => b.lib.gpuStatic(h));
    expect(sa).toEqual(sb);
    const ids = loadProfile("dev-2gpu").gpus.map((g) => g.id);
    expect(sa.map((s) => s.kfdGpuId)).toEqual(ids);
    for (const s of sa) {
      expect(s.uuid).toMatch(UUID_RE);
      expect(s.bdf).toMatch(/^0000:[0-9a-f]{2}:00\.0$/);
      expect(s.cardModel).toBe("emulated-dev-2gpu");
      expect(s.marketName).toContain("Emulated");
      expect(s.serial).toStartWith("EMU");
      expect(s.deploymentMode).toBe("baremetal");
      expect(s.partitionId).toBe(0);
    }
    expect(new Set(sa.map((s) => s.uuid)).size).toBe(2);
    expect(new Set(sa.map((s) => s.bdf)).size).toBe(2);
    expect(a.lib.info).toEqual({ backend: "emulated", emulated: true, path: "profile:dev-2gpu", version: "emulated", missingOptional: [] });
    // Another profile with other gpu ids: other UUIDs.
    const c = opened({ profile: "pcie-4" });
    expect(c.h.map((h) => c.lib.gpuStatic(h).uuid)).not.toContain(sa[0]!.uuid);
    // UUID lookup, case-insensitive; an unknown UUID is NOT_FOUND.
    expect(a.lib.gpuHandleFromUuid(sa[1]!.uuid.toUpperCase())).toBe(a.h[1]!);
    const e = smiError(() => a.lib.gpuHandleFromUuid("00000000-0000-1000-8000-000000000000"));
    expect([e.fn, e.statusName, e.status]).toEqual(["amdsmi_get_processor_handle_from_uuid", "NOT_FOUND", 31]);
  });
});

describe("emulated SMI: readings", () => {
  test("stay within physical ranges on every GPU of a 16-GPU profile, over ten minutes of bursts", () => {
    const clock = fakeClock(1_000_000);
    const { lib, h } = opened({ profile: "mi300x-16", clock: clock.now });
    for (let t = 1_000_000; t < 1_600_000; t += 7_300) {
      clock.set(t);
      for (const g of h) {
        for (const sensor of ["edge", "junction", "vram"] as const) {
          const c = lib.gpuTemperature(g, sensor);
          expect(c).toBeGreaterThanOrEqual(EMU_SENSORS[sensor].idleC - 1);
          expect(c).toBeLessThanOrEqual(EMU_SENSORS[sensor].fullC + 1);
        }
        const p = lib.gpuPower(g);
        expect(p.limitW).toBe(750);
        expect(p.averageW!).toBeGreaterThan(0);
        expect(p.averageW!).toBeLessThanOrEqual(p.limitW!);
        expect(p.socketW!).toBeLessThanOrEqual(p.limitW!);
        const a = lib.gpuActivity(g);
        for (const pct of [a.gfxPct!, a.umcPct!, a.mmPct!]) expect(pct >= 0 && pct <= 100).toBe(true);
        const vram = lib.gpuMemory(g, "vram");
        expect(vram.totalBytes).toBe(192 * GIB);
        expect(vram.usedBytes).toBe(EMU_VRAM_BASELINE_bytes);
        const gtt = lib.gpuMemory(g, "gtt");
        expect(gtt.usedBytes).toBeLessThan(gtt.totalBytes);
        const pcie = lib.gpuPcie(g);
        expect([pcie.width, pcie.speedMts, pcie.replayCount]).toEqual([16, 32_000, 0]);
        expect(pcie.bandwidthMbs!).toBeLessThanOrEqual(63 * 8000);
        expect(lib.gpuEcc(g).uncorrectable).toBe(0);
      }
    }
  });

  test("activity follows a load step at once; temperature and power approach their targets gradually", () => {
    const clock = fakeClock(0);
    const { lib, h } = opened({ profile: "dev-2gpu", clock: clock.now, load: stepAt(10_000) });
    const g = h[0]!;
    clock.set(9_800);
    expect(lib.gpuActivity(g).gfxPct).toBe(0);
    const idleC = lib.gpuTemperature(g, "junction");
    const idlePower = lib.gpuPower(g);
    clock.set(10_000);
    expect(lib.gpuActivity(g)).toEqual({ gfxPct: 100, umcPct: 70, mmPct: 0 });
    expect(lib.gpuActivity(h[1]!).gfxPct).toBe(0);
    expect(lib.gpuTemperature(g, "junction")).toBe(idleC);
    const temps: number[] = [];
    const avgW: number[] = [];
    for (let t = 10_000; t <= 25_000; t += 500) {
      clock.set(t);
      temps.push(lib.gpuTemperature(g, "junction"));
      avgW.push(lib.gpuPower(g).averageW!);
    }
    const fullC = idleC + (EMU_SENSORS.junction.fullC - EMU_SENSORS.junction.idleC);
    for (let k = 1; k < temps.length; k++) {
      expect(temps[k]!).toBeGreaterThan(temps[k - 1]!);
      expect(temps[k]!).toBeLessThan(fullC);
      expect(avgW[k]!).toBeGreaterThanOrEqual(avgW[k - 1]!);
    }
    // One time constant in: 1 - 1/e of the way.
    clock.set(10_000 + EMU_SENSORS.junction.tau_ms);
    expect(lib.gpuTemperature(g, "junction")).toBeCloseTo(idleC + (fullC - idleC) * (1 - Math.exp(-1)), 2);
    // Current socket power reacts faster than the average; both end near full load, under the limit.
    clock.set(10_400);
    const p = lib.gpuPower(g);
    expect(p.socketW!).toBeGreaterThan(p.averageW!);
    expect(p.averageW!).toBeGreaterThan(idlePower.averageW!);
    clock.set(60_000);
    const hot = lib.gpuPower(g);
    expect(hot.averageW!).toBeGreaterThan(0.9 * hot.limitW!);
    expect(hot.averageW!).toBeLessThanOrEqual(hot.limitW!);
    expect(lib.gpuTemperature(g, "junction")).toBeCloseTo(fullC, 1);
    // The edge sensor is slower than the junction.
    clock.set(13_000);
    const edgeRise = (lib.gpuTemperature(g, "edge") - (EMU_SENSORS.edge.idleC + idleC - EMU_SENSORS.junction.idleC)) / (EMU_SENSORS.edge.fullC - EMU_SENSORS.edge.idleC);
    const junctionRise = (lib.gpuTemperature(g, "junction") - idleC) / (fullC - idleC);
    expect(edgeRise).toBeLessThan(junctionRise);
  });

  test("two bindings reading at the same time agree (no per-object state)", () => {
    const shared = emuSmiSharedCreate(2);
    const clock = fakeClock(123_456);
    const a = opened({ profile: "dev-2gpu", shared, clock: clock.now });
    const b = emuSmiOpen({ profile: "dev-2gpu", shared, clock: clock.now });
    // b reads a's history-free state late: same answer at the same time.
    for (const t of [123_456, 150_000, 222_222]) {
      clock.set(t);
      for (const g of a.h) {
        expect(b.gpuTemperature(g, "vram")).toBe(a.lib.gpuTemperature(g, "vram"));
        expect(b.gpuPower(g)).toEqual(a.lib.gpuPower(g));
      }
    }
  });

  test("the default bursts do not move in lockstep, and are seeded", () => {
    const bursts = emuLoadBursts(1);
    const series = (i: number) => Array.from({ length: 60 }, (_, k) => bursts(i, k * 5_000));
    const all = Array.from({ length: 16 }, (_, i) => series(i).join(","));
    expect(new Set(all).size).toBe(16);
    expect(series(3)).toEqual(Array.from({ length: 60 }, (_, k) => emuLoadBursts(1)(3, k * 5_000)));
    const other = emuLoadBursts(2);
    expect(Array.from({ length: 60 }, (_, k) => other(0, k * 5_000))).not.toEqual(series(0));
    const clock = fakeClock(5_000_000);
    const { lib, h } = opened({ profile: "mi300x-16", clock: clock.now });
    expect(new Set(h.map((g) => lib.gpuActivity(g).gfxPct)).size).toBeGreaterThan(1);
  });

  test("VRAM used is a baseline plus what the emulated KFD publishes, capped at the total", () => {
    const shared = emuSmiSharedCreate(2);
    const { lib, h } = opened({ profile: "dev-2gpu", shared });
    emuSmiVramPublish(shared, 1, 8 * GIB);
    expect(lib.gpuMemory(h[1]!, "vram")).toEqual({ usedBytes: EMU_VRAM_BASELINE_bytes + 8 * GIB, totalBytes: 32 * GIB });
    expect(lib.gpuMemory(h[1]!, "vis_vram").usedBytes).toBe(EMU_VRAM_BASELINE_bytes + 8 * GIB);
    expect(lib.gpuMemory(h[0]!, "vram").usedBytes).toBe(EMU_VRAM_BASELINE_bytes);
    emuSmiVramPublish(shared, 1, 40 * GIB);
    expect(lib.gpuMemory(h[1]!, "vram").usedBytes).toBe(32 * GIB);
    emuSmiVramPublish(shared, 1, 0);
    expect(lib.gpuMemory(h[1]!, "vram").usedBytes).toBe(EMU_VRAM_BASELINE_bytes);
    expect(lib.gpuMemory(h[1]!, "gtt").totalBytes).toBe(EMU_GTT_TOTAL_bytes);
    expect(() => emuSmiVramPublish(shared, 2, 1)).toThrow("gpuIndex must be 0..1");
    expect(() => emuSmiVramPublish(shared, 0, -1)).toThrow("VRAM bytes");
  });

  test("a 16-GPU profile: two hives, XGMI inside each, PCIe between them", () => {
    const { lib, h } = opened({ profile: "mi300x-16" });
    expect(h.length).toBe(16);
    const st = h.map((g) => lib.gpuStatic(g));
    expect(new Set(st.map((s) => s.uuid)).size).toBe(16);
    expect(new Set(st.map((s) => s.bdf)).size).toBe(16);
    expect(h.map((g) => lib.gpuXgmi(g).hiveId)).toEqual([...Array(8).fill(0x300n), ...Array(8).fill(0x301n)]);
    expect(h.map((g) => lib.gpuXgmi(g).index)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3, 4, 5, 6, 7]);
    expect(lib.gpuLink(h[0]!, h[7]!)).toEqual({ hops: 1, type: "xgmi" });
    expect(lib.gpuLink(h[8]!, h[15]!)).toEqual({ hops: 1, type: "xgmi" });
    expect(lib.gpuLink(h[7]!, h[8]!)).toEqual({ hops: 2, type: "pcie" });
    expect(lib.gpuLink(h[3]!, h[3]!)).toEqual({ hops: 0, type: "undefined" });
    // Without a hive there is no XGMI to tell about.
    const d = opened({ profile: "dev-2gpu" });
    expect(smiError(() => d.lib.gpuXgmi(d.h[0]!)).statusName).toBe("NOT_SUPPORTED");
    expect(d.lib.gpuLink(d.h[0]!, d.h[1]!)).toEqual({ hops: 2, type: "pcie" });
    expect(d.lib.gpuPcie(d.h[0]!).speedMts).toBe(16_000);
  });
});

describe("emulated SMI: library state", () => {
  test("init and shutdown are reference counted; the generation moves on every real init", () => {
    const shared = emuSmiSharedCreate(2);
    const lib = emuSmiOpen({ profile: "dev-2gpu", shared });
    lib.init();
    lib.init();
    expect(emuSmiCounters(shared)).toMatchObject({ count: 2, generation: 1, inits: 2, initsReal: 1 });
    lib.shutDown();
    expect(lib.gpuHandles().length).toBe(2);
    lib.shutDown();
    expect(emuSmiCounters(shared)).toMatchObject({ count: 0, generation: 1, shutdowns: 2, shutdownsReal: 1 });
    const e = smiError(() => lib.shutDown());
    expect([e.fn, e.statusName, e.status]).toEqual(["amdsmi_shut_down", "NOT_INIT", 32]);
    lib.init();
    expect(emuSmiCounters(shared)).toMatchObject({ count: 1, generation: 2, initsReal: 2 });
    lib.shutDown();
  });

  test("every call outside an init is NOT_INIT (32)", () => {
    const lib = emuSmiOpen({ profile: "dev-2gpu" });
    lib.init();
    const h = lib.gpuHandles();
    lib.shutDown();
    const calls: [string, () => unknown][] = [
      ["amdsmi_get_processor_handles", () => lib.gpuHandles()],
      ["amdsmi_get_processor_handle_from_uuid", () => lib.gpuHandleFromUuid("x")],
      ["amdsmi_get_gpu_device_uuid", () => lib.gpuStatic(h[0]!)],
      ["amdsmi_get_temp_metric", () => lib.gpuTemperature(h[0]!, "edge")],
      ["amdsmi_get_power_info", () => lib.gpuPower(h[0]!)],
      ["amdsmi_get_gpu_activity", () => lib.gpuActivity(h[0]!)],
      ["amdsmi_get_gpu_memory_usage", () => lib.gpuMemory(h[0]!, "vram")],
      ["amdsmi_get_xgmi_info", () => lib.gpuXgmi(h[0]!)],
      ["amdsmi_topo_get_link_type", () => lib.gpuLink(h[0]!, h[1]!)],
      ["amdsmi_get_pcie_info", () => lib.gpuPcie(h[0]!)],
      ["amdsmi_get_gpu_total_ecc_count", () => lib.gpuEcc(h[0]!)],
      ["amdsmi_init_gpu_event_notification", () => lib.eventsStart(h[0]!, THROTTLE_MASK)],
      ["amdsmi_get_gpu_event_notification", () => lib.eventsRead(0, 1)],
      ["amdsmi_stop_gpu_event_notification", () => lib.eventsStop(h[0]!)],
    ];
    expect(calls.map(([, f]) => smiError(f)).map((e) => [e.fn, e.statusName, e.status])).toEqual(calls.map(([fn]) => [fn, "NOT_INIT", 32]));
  });

  test("a handle from an earlier init cycle is a stale-handle INVAL, never a read", () => {
    const lib = emuSmiOpen({ profile: "dev-2gpu" });
    lib.init();
    const old = lib.gpuHandles()[0]!;
    lib.shutDown();
    lib.init();
    const e = smiError(() => lib.gpuTemperature(old, "edge"));
    expect([e.fn, e.statusName, e.status]).toEqual(["amdsmi_get_temp_metric", "INVAL", 1]);
    expect(e.message).toContain("stale handle from init cycle 1 (now 2)");
    const fresh = lib.gpuHandleFromUuid(lib.gpuStatic(lib.gpuHandles()[0]!).uuid);
    expect(fresh).not.toBe(old);
    expect(lib.gpuTemperature(fresh, "edge")).toBeGreaterThan(0);
    expect(smiError(() => lib.gpuPower(12345n)).message).toContain("not a processor handle");
    lib.shutDown();
  });

  test("two bindings over one SharedArrayBuffer see one library", () => {
    const shared = emuSmiSharedCreate(2);
    const a = emuSmiOpen({ profile: "dev-2gpu", shared });
    const b = emuSmiOpen({ profile: "dev-2gpu", shared });
    a.init();
    const hb = b.gpuHandles();
    expect(hb).toEqual(a.gpuHandles());
    expect(b.gpuTemperature(hb[0]!, "junction")).toBeGreaterThan(0);
    b.shutDown();
    expect(smiError(() => a.gpuPower(hb[0]!)).statusName).toBe("NOT_INIT");
    expect(() => emuSmiOpen({ profile: "pcie-4", shared })).toThrow("holds 2 GPUs, profile pcie-4 has 4");
  });

  test(
    "a real Worker's init is this thread's library state; a hang injected here blocks the Worker's read",
    async () => {
      const shared = emuSmiSharedCreate(2);
      const main = emuSmiOpen({ profile: "dev-2gpu", shared, clock: () => 0 });
      const worker = new Worker(new URL("./smi-library-worker.ts", import.meta.url).href);
      const ask = (msg: object): Promise<{ ok: boolean; error?: string; handles?: string[]; junctionC?: number; uuid?: string }> =>
        new Promise((resolve, reject) => {
          worker.onmessage = (ev) => resolve(ev.data);
          worker.onerror = (ev) => reject(new Error(ev.message));
          worker.postMessage(msg);
        });
      try {
        const opened = await ask({ op: "open-init", shared, clockMs: 0 });
        expect(opened.error).toBeUndefined();
        expect(emuSmiCounters(shared)).toMatchObject({ count: 1, initsReal: 1 });
        // This thread never called init, yet the library is initialised for it too.
        const h = main.gpuHandles();
        expect(opened.handles).toEqual(h.map(String));
        emuSmiInject(shared, { gpuIndex: 0, field: "temperature", mode: "hang", hangMs: 20 });
        const read = await ask({ op: "read" });
        expect(read.ok).toBe(true);
        expect(emuSmiCounters(shared).hangs).toBe(1);
        emuSmiInjectClear(shared);
        // Same time, same value, in either thread.
        expect(read.junctionC).toBe(main.gpuTemperature(h[0]!, "junction"));
        expect(read.uuid).toBe(main.gpuStatic(h[0]!).uuid);
        expect(emuSmiCounters(shared).hangs).toBe(1);
        expect((await ask({ op: "shutdown" })).ok).toBe(true);
        expect(emuSmiCounters(shared)).toMatchObject({ count: 0, shutdownsReal: 1 });
        expect(smiError(() => main.gpuHandles()).statusName).toBe("NOT_INIT");
      } finally {
        worker.terminate();
      }
    },
    20_000,
  );
});

describe("emulated SMI: fault injection", () => {
  test("a field NOT_SUPPORTED on one GPU, set from another binding at run time", () => {
    const shared = emuSmiSharedCreate(2);
    const { lib, h } = opened({ profile: "dev-2gpu", shared });
    emuSmiInject(shared, { gpuIndex: 1, field: "power", mode: "not_supported" });
    const e = smiError(() => lib.gpuPower(h[1]!));
    expect([e.fn, e.statusName, e.status]).toEqual(["amdsmi_get_power_info", "NOT_SUPPORTED", 2]);
    expect(lib.gpuPower(h[0]!).limitW).toBe(250);
    expect(lib.gpuTemperature(h[1]!, "edge")).toBeGreaterThan(0);
    emuSmiInjectClear(shared);
    expect(lib.gpuPower(h[1]!).limitW).toBe(250);
    expect(() => emuSmiInject(shared, { gpuIndex: 0, field: "power", mode: "hang" })).toThrow("hangMs must be 1..");
  });

  test("a hung read blocks, then answers, and is counted", () => {
    const shared = emuSmiSharedCreate(2);
    const { lib, h } = opened({ profile: "dev-2gpu", shared });
    emuSmiInject(shared, { gpuIndex: 0, field: "ecc", mode: "hang", hangMs: 5 });
    expect(lib.gpuEcc(h[0]!).uncorrectable).toBe(0);
    expect(lib.gpuEcc(h[1]!).uncorrectable).toBe(0);
    expect(emuSmiCounters(shared).hangs).toBe(1);
  });

  test("init fails N times with the injected status, leaving the count at 0", () => {
    const shared = emuSmiSharedCreate(2);
    const lib = emuSmiOpen({ profile: "dev-2gpu", shared });
    emuSmiInjectInitFailure(shared, { times: 2, status: "DRIVER_NOT_LOADED" });
    for (let k = 0; k < 2; k++) {
      const e = smiError(() => lib.init());
      expect([e.fn, e.statusName, e.status]).toEqual(["amdsmi_init", "DRIVER_NOT_LOADED", 34]);
      expect(exitCodeOf(e)).toBe(EXIT.noDevice);
      expect(emuSmiCounters(shared).count).toBe(0);
    }
    lib.init();
    expect(emuSmiCounters(shared)).toMatchObject({ count: 1, initFailures: 2, initsReal: 1, generation: 1 });
    lib.shutDown();
    emuSmiInjectInitFailure(shared, { times: 1, status: "BUSY" });
    expect(smiError(() => lib.init()).status).toBe(30);
  });
});

describe("emulated SMI: events", () => {
  test("THERMAL_THROTTLE once per rise of the junction through the throttle point", () => {
    const clock = fakeClock(0);
    // GPU 0: full load from 10 s to 40 s, again from 100 s.
    const load: EmuLoadFn = (i, t) => (i === 0 && ((t >= 10_000 && t < 40_000) || t >= 100_000) ? 1 : 0);
    const { lib, h } = opened({ profile: "dev-2gpu", clock: clock.now, load });
    expect(smiError(() => lib.eventsRead(0, 4)).message).toContain("call eventsStart first");
    lib.eventsStart(h[0]!, THROTTLE_MASK);
    lib.eventsStart(h[1]!, THROTTLE_MASK);
    const seen: { t: number; message: string; handle: SmiHandle }[] = [];
    for (let t = 0; t <= 140_000; t += 250) {
      clock.set(t);
      for (const ev of lib.eventsRead(0, 64)) {
        expect(ev.type).toBe("THERMAL_THROTTLE");
        expect(ev.typeId).toBe(2);
        seen.push({ t, message: ev.message, handle: ev.handle });
      }
    }
    expect(seen.map((s) => s.message)).toEqual(["1:1", "1:2"]);
    expect(seen.every((s) => s.handle === h[0])).toBe(true);
    expect(seen[0]!.t).toBeGreaterThan(10_000);
    expect(seen[0]!.t).toBeLessThan(40_000);
    expect(seen[1]!.t).toBeGreaterThan(100_000);
    clock.set(seen[0]!.t);
    expect(lib.gpuTemperature(h[0]!, "junction")).toBeGreaterThanOrEqual(EMU_THROTTLE_JUNCTION_C);
    // Bounds and stop.
    expect(smiError(() => lib.eventsRead(0, 65)).statusName).toBe("INVAL");
    lib.eventsStop(h[1]!);
    expect(smiError(() => lib.eventsStop(h[1]!)).statusName).toBe("INVAL");
  });

  test("after unload every call is an SmiError", () => {
    const { lib, h } = opened({ profile: "dev-2gpu" });
    lib.unload();
    lib.unload();
    expect(smiError(() => lib.gpuTemperature(h[0]!, "edge")).statusName).toBe("FAIL_LOAD_MODULE");
    expect(smiError(() => lib.init()).statusName).toBe("FAIL_LOAD_MODULE");
  });
});
