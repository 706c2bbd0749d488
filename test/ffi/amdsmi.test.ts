import { afterAll, afterEach, beforeEach, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readdirSync, readlinkSync, realpathSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { exitCodeOf } from "../../runtime/cli/exit.ts";
import { SmiError } from "../../runtime/errors.ts";
import {
  AMDSMI_LIB_CANDIDATES,
  AMDSMI_LIB_ENV,
  AMDSMI_OPTIONAL_SYMBOLS,
  amdsmiBdfText,
  amdsmiLibraryPaths,
  amdsmiOpen,
  GPUS_MAX,
} from "../../runtime/ffi/amdsmi.ts";
import { AMDSMI_DOUBLE_LAYOUTS, type AmdsmiDoubleLayout, amdsmiDoubleConfigText } from "../../runtime/ffi/amdsmi-double.ts";
import { AMDSMI_LAYOUTS, amdsmiVersionDecode } from "../../runtime/ffi/amdsmi-layouts.ts";
import { amdsmiStatusName } from "../../runtime/ffi/amdsmi-status.ts";
import { librarySearchDirs, sonameResolve } from "../../runtime/ffi/soname.ts";
import { SMI_EVENTS_PER_READ_MAX, SMI_GPU_EVENT, type SmiLibrary } from "../../runtime/smi/library.ts";
import { amdsmiDoubleFixture, DOUBLE_GPUS, DOUBLE_HIVE_ID } from "./amdsmi-double.ts";

/** The SmiError `f` throws (fails the test when it throws anything else or nothing). */
function smiError(f: () => unknown): SmiError {
  try {
    f();
  } catch (e) {
    if (e instanceof SmiError) return e;
    throw e;
  }
  throw new Error("expected an SmiError, nothing was thrown");
}

/** How many of this process's file descriptors point at `path`. */
function fdsOpenOn(path: string): number {
  const target = realpathSync(path);
  return readdirSync("/proc/self/fd").filter((fd) => {
    try {
      return readlinkSync(`/proc/self/fd/${fd}`) === target;
    } catch {
      return false; // the fd of readdir itself is gone by now
    }
  }).length;
}

/** What each build of the double answers, per the reference (and amdsmi_double.c's table). */
const EXPECTED: Record<
  AmdsmiDoubleLayout,
  { versionBeforeInit: string | undefined; version: string; missing: string[]; messageBytes: number; countsInits: boolean }
> = {
  24: {
    versionBeforeInit: undefined,
    version: "24.6.3",
    missing: ["amdsmi_get_processor_handle_from_uuid", "amdsmi_get_gpu_virtualization_mode"],
    messageBytes: 64,
    countsInits: false,
  },
  25: { versionBeforeInit: undefined, version: "25.2.0", missing: [], messageBytes: 96, countsInits: true },
  26: { versionBeforeInit: "26.5.0", version: "26.5.0", missing: [], messageBytes: 256, countsInits: true },
};

describe.each(AMDSMI_DOUBLE_LAYOUTS.map((l) => [l]))("amdsmi through the C double, layout %p", (layout: AmdsmiDoubleLayout) => {
  const fx = amdsmiDoubleFixture(layout);
  const want = EXPECTED[layout];
  let lib: SmiLibrary;

  beforeEach(() => {
    fx.configure();
    lib = amdsmiOpen({ path: fx.path });
  });
  afterEach(() => {
    lib.unload();
    fx.ctl.reset();
  });
  afterAll(() => fx.close());

  test("built as the layout it claims", () => {
    expect(fx.ctl.layout()).toBe(layout);
  });

  test("version and layout: from the library's answer, before init when it answers, else right after the first init", () => {
    expect(lib.info).toMatchObject({ backend: "amdsmi", emulated: false, path: fx.path });
    expect(lib.info.version).toBe(want.versionBeforeInit);
    expect(lib.info.layout).toBe(want.versionBeforeInit ? "26" : undefined);
    expect([...lib.info.missingOptional]).toEqual(want.missing);
    lib.init();
    expect(lib.info.version).toBe(want.version);
    expect(lib.info.layout).toBe(String(layout) as "24" | "25" | "26");
    lib.shutDown();
    // Known for good, also between sessions.
    expect(lib.info.version).toBe(want.version);
  });

  test("lists the GPUs in order; UUID and BDF text exact; handles are u64 values a number cannot carry", () => {
    lib.init();
    const hs = lib.gpuHandles();
    expect(hs).toHaveLength(DOUBLE_GPUS.length);
    for (const h of hs) expect(h).toBeGreaterThan(BigInt(Number.MAX_SAFE_INTEGER));
    const ids = hs.map((h) => {
      const s = lib.gpuStatic(h);
      return [s.uuid, s.bdf];
    });
    expect(ids).toEqual([
      ["2eff74a1-0000-1000-80fe-9cea14a6b148", "0000:c1:00.0"],
      ["A1B2C3D4-0000-1000-8011-223344556677", "0001:02:1f.3"],
      ["00000000-0000-1000-8000-0000000000aa", "0000:03:00.0"],
    ]);
    lib.shutDown();
  });

  test("handle from UUID: the library's lookup from 25.x, enumeration and comparison in 24.x", () => {
    lib.init();
    const hs = lib.gpuHandles();
    expect(lib.gpuHandleFromUuid("a1b2c3d4-0000-1000-8011-223344556677")).toBe(hs[1]!);
    expect(lib.gpuHandleFromUuid(DOUBLE_GPUS[2]!.uuid)).toBe(hs[2]!);
    expect(fx.ctl.fnCalls("amdsmi_get_processor_handle_from_uuid")).toBe(layout === 24 ? 0 : 2);
    const e = smiError(() => lib.gpuHandleFromUuid("ffffffff-0000-1000-8000-000000000000"));
    expect(e.statusName).toBe("NOT_FOUND");
    expect(e.fn).toBe("amdsmi_get_processor_handle_from_uuid");
    expect(e.message.includes("among 3 enumerated")).toBe(layout === 24);
    lib.shutDown();
  });

  test("static identity: board strings per string length, market name, kfd id, partition, deployment mode", () => {
    lib.init();
    const [h0, h1, h2] = lib.gpuHandles();
    expect(lib.gpuStatic(h0!)).toEqual({
      uuid: "2eff74a1-0000-1000-80fe-9cea14a6b148",
      bdf: "0000:c1:00.0",
      cardModel: "102-G30211-0C",
      serial: "692231000131",
      marketName: "AMD Instinct MI300X",
      kfdGpuId: 45412,
      partitionId: 0,
      computePartition: "SPX",
      memoryPartition: "NPS1",
      // 24.x has no amdsmi_get_gpu_virtualization_mode: unknown, re-read until known.
      deploymentMode: layout === 24 ? "unknown" : "baremetal",
    });
    expect(lib.gpuStatic(h1!)).toMatchObject({ kfdGpuId: 59881, partitionId: 1, deploymentMode: layout === 24 ? "unknown" : "hypervisor" });
    // Left out of the config: no board strings, no kfd id, no partitions.
    expect(lib.gpuStatic(h2!)).toEqual({
      uuid: "00000000-0000-1000-8000-0000000000aa",
      bdf: "0000:03:00.0",
      marketName: "AMD Radeon PRO W7900",
      deploymentMode: "unknown",
    });
    lib.shutDown();
  });

  test("readings equal the configuration, in the interface's units", () => {
    lib.init();
    const [h0, h1, h2] = lib.gpuHandles();
    // 24 and 25 answer millidegrees, 26 degrees: always °C here.
    expect([lib.gpuTemperature(h0!, "edge"), lib.gpuTemperature(h0!, "junction"), lib.gpuTemperature(h0!, "vram")]).toEqual([45, 78, 60]);
    expect(lib.gpuTemperature(h2!, "edge")).toBe(-5);
    expect(smiError(() => lib.gpuTemperature(h1!, "vram"))).toMatchObject({ fn: "amdsmi_get_temp_metric", statusName: "NOT_SUPPORTED", status: 2 });

    expect(lib.gpuActivity(h0!)).toEqual({ gfxPct: 37, umcPct: 12, mmPct: 0 });
    expect(lib.gpuActivity(h1!)).toEqual({ gfxPct: 99, umcPct: 40 }); // mm reads 0xFFFFFFFF
    expect(lib.gpuActivity(h2!)).toEqual({});

    expect(lib.gpuMemory(h0!, "vram")).toEqual({ usedBytes: 297_054_208, totalBytes: 206_141_652_992 });
    expect(lib.gpuMemory(h1!, "vis_vram")).toEqual({ usedBytes: 1_073_741_824, totalBytes: 206_141_652_992 });
    expect(lib.gpuMemory(h0!, "gtt")).toEqual({ usedBytes: 16_621_568, totalBytes: 540_475_817_984 });

    expect(lib.gpuXgmi(h0!)).toEqual({ hiveId: DOUBLE_HIVE_ID, nodeId: 2n, index: 0, lanes: 16 });
    expect(lib.gpuXgmi(h2!)).toEqual({ hiveId: 0n, nodeId: 0n, index: 0, lanes: 0 });
    expect(lib.gpuLink(h0!, h1!)).toEqual({ hops: 1, type: "xgmi" });
    expect(lib.gpuLink(h0!, h2!)).toEqual({ hops: 2, type: "pcie" });

    expect(lib.gpuPcie(h0!)).toEqual({ width: 16, speedMts: 32_000, bandwidthMbs: 18, replayCount: 3 });
    expect(lib.gpuPcie(h2!)).toEqual({}); // 0xFFFF width, UINT32_MAX speed and bandwidth, UINT64_MAX replays

    expect(lib.gpuEcc(h0!)).toEqual({ correctable: 7, uncorrectable: 1, deferred: 2 });
    expect(lib.gpuEcc(h1!)).toEqual({ correctable: 0, uncorrectable: 0 }); // deferred reads UINT64_MAX
    lib.shutDown();
  });

  test(`power info read at the offsets of layout ${layout} (${AMDSMI_LAYOUTS[String(layout) as "24"].power.size_bytes} bytes); unsupported members left out`, () => {
    lib.init();
    const [h0, h1, h2] = lib.gpuHandles();
    expect(lib.gpuPower(h0!)).toEqual({ socketW: 550, averageW: 540, limitW: 750 });
    expect(lib.gpuPower(h1!)).toEqual({ socketW: 612, limitW: 750 });
    // current UINT32_MAX and (25+) socket_power 0xFFFF: no socket power at all.
    expect(lib.gpuPower(h2!)).toEqual({});
    lib.shutDown();
  });

  test("NOT_SUPPORTED on one GPU's field leaves the same field of the other GPU and the GPU's other fields", () => {
    fx.ctl.fail("amdsmi_get_power_info", 1, 2);
    fx.ctl.fail("amdsmi_get_gpu_board_info", 1, 2);
    lib.init();
    const [h0, h1] = lib.gpuHandles();
    expect(smiError(() => lib.gpuPower(h1!))).toMatchObject({ fn: "amdsmi_get_power_info", statusName: "NOT_SUPPORTED", status: 2 });
    expect(lib.gpuPower(h0!)).toEqual({ socketW: 550, averageW: 540, limitW: 750 });
    expect(lib.gpuActivity(h1!)).toEqual({ gfxPct: 99, umcPct: 40 });
    const s1 = lib.gpuStatic(h1!);
    expect(s1.cardModel).toBeUndefined();
    expect(s1.serial).toBeUndefined();
    expect(s1).toMatchObject({ uuid: DOUBLE_GPUS[1]!.uuid, marketName: "AMD Instinct MI300X", kfdGpuId: 59881 });
    expect(lib.gpuStatic(h0!).cardModel).toBe("102-G30211-0C");
    lib.shutDown();
  });

  test("a handle of an earlier init cycle is refused (INVAL), never read; any handle while not initialised is NOT_INIT", () => {
    lib.init();
    const old = lib.gpuHandles();
    expect(lib.gpuTemperature(old[0]!, "edge")).toBe(45);
    lib.shutDown();
    expect(smiError(() => lib.gpuTemperature(old[0]!, "edge"))).toMatchObject({ statusName: "NOT_INIT", status: 32 });
    expect(fx.ctl.counter("calls_uninit")).toBe(1);
    lib.init();
    const fresh = lib.gpuHandles();
    expect(fresh).toHaveLength(old.length);
    for (let i = 0; i < fresh.length; i++) expect(fresh[i]).not.toBe(old[i]!);
    const e = smiError(() => lib.gpuTemperature(old[0]!, "edge"));
    expect(e).toMatchObject({ fn: "amdsmi_get_temp_metric", statusName: "INVAL", status: 1 });
    expect(e.message).toContain("re-resolve by UUID");
    expect(smiError(() => lib.gpuStatic(old[1]!)).statusName).toBe("INVAL");
    // The UUID finds the GPU again in the new cycle.
    expect(lib.gpuHandleFromUuid(DOUBLE_GPUS[0]!.uuid)).toBe(fresh[0]!);
    lib.shutDown();
  });

  test("init failing twice with DRIVER_NOT_LOADED: typed error, library text only when useful, exit 5; the third init works", () => {
    fx.ctl.fail("amdsmi_init", -1, 34, 2);
    for (let i = 0; i < 2; i++) {
      const e = smiError(() => lib.init());
      expect(e).toMatchObject({ fn: "amdsmi_init", statusName: "DRIVER_NOT_LOADED", status: 34 });
      expect(e.message).toContain("modprobe amdgpu");
      // 24.x names 34 "An unknown error occurred": ignored. Later ones name it.
      expect(e.message).not.toContain("unknown error");
      expect(e.message.includes("Processor driver not loaded")).toBe(layout !== 24);
      expect(exitCodeOf(e)).toBe(5);
    }
    expect(lib.info.version).toBe(want.versionBeforeInit);
    expect(fx.ctl.counter("init_failed")).toBe(2);
    expect(fx.ctl.counter("initialised")).toBe(0);
    lib.init();
    expect(lib.info.version).toBe(want.version);
    expect(fx.ctl.counter("real_inits")).toBe(1);
    lib.shutDown();
    expect(fx.ctl.counter("calls_uninit")).toBe(0);
  });

  test("the device file is open only while initialised; inits and shutdowns counted as the family does", () => {
    expect(fdsOpenOn(fx.deviceFile)).toBe(0);
    lib.init();
    expect(fdsOpenOn(fx.deviceFile)).toBe(1);
    lib.init();
    expect(fx.ctl.counter("refcount")).toBe(want.countsInits ? 2 : 1);
    lib.shutDown();
    // 24.x tears down at the first shutdown; later ones count.
    expect(fdsOpenOn(fx.deviceFile)).toBe(want.countsInits ? 1 : 0);
    expect(fx.ctl.counter("initialised")).toBe(want.countsInits ? 1 : 0);
    lib.shutDown(); // 24.x: a shutdown of an uninitialised library is SUCCESS
    expect(fdsOpenOn(fx.deviceFile)).toBe(0);
    expect(fx.ctl.deviceFd()).toBe(-1);
    expect({
      init_calls: fx.ctl.counter("init_calls"),
      init_ok: fx.ctl.counter("init_ok"),
      shutdown_calls: fx.ctl.counter("shutdown_calls"),
      shutdown_ok: fx.ctl.counter("shutdown_ok"),
      real_inits: fx.ctl.counter("real_inits"),
      real_shutdowns: fx.ctl.counter("real_shutdowns"),
      calls_uninit: fx.ctl.counter("calls_uninit"),
    }).toEqual({
      init_calls: 2,
      init_ok: 2,
      shutdown_calls: 2,
      shutdown_ok: want.countsInits ? 2 : 1,
      real_inits: 1,
      real_shutdowns: 1,
      calls_uninit: 0,
    });
  });

  test("events: started with a mask, read back with their handle, type and message (cut to the layout's message length)", () => {
    lib.init();
    const [h0, h1] = lib.gpuHandles();
    const mask = (1n << BigInt(SMI_GPU_EVENT.VMFAULT - 1)) | (1n << BigInt(SMI_GPU_EVENT.RING_HANG - 1));
    lib.eventsStart(h0!, mask);
    expect(lib.eventsRead(0, 8)).toEqual([]); // NO_DATA
    expect(fx.ctl.eventPush(0, SMI_GPU_EVENT.VMFAULT, "pid 4242 fault at 0x7f0000001000")).toBe(true);
    expect(fx.ctl.eventPush(0, SMI_GPU_EVENT.THERMAL_THROTTLE, "masked out")).toBe(false);
    expect(fx.ctl.eventPush(1, SMI_GPU_EVENT.VMFAULT, "not started")).toBe(false);
    const long = "r".repeat(300);
    expect(fx.ctl.eventPush(0, SMI_GPU_EVENT.RING_HANG, long)).toBe(true);
    const events = lib.eventsRead(1000, SMI_EVENTS_PER_READ_MAX);
    expect(events).toEqual([
      { handle: h0!, type: "VMFAULT", typeId: 1, message: "pid 4242 fault at 0x7f0000001000" },
      { handle: h0!, type: "RING_HANG", typeId: 5, message: "r".repeat(want.messageBytes - 1) },
    ]);
    // Bounded by `max`.
    for (let i = 0; i < 3; i++) fx.ctl.eventPush(0, SMI_GPU_EVENT.VMFAULT, `e${i}`);
    expect(lib.eventsRead(0, 2).map((e) => e.message)).toEqual(["e0", "e1"]);
    expect(lib.eventsRead(0, 2).map((e) => e.message)).toEqual(["e2"]);
    lib.eventsStop(h0!);
    expect(fx.ctl.eventPush(0, SMI_GPU_EVENT.VMFAULT, "after stop")).toBe(false);
    fx.ctl.fail("amdsmi_set_gpu_event_notification_mask", 1, 2, 1);
    expect(smiError(() => lib.eventsStart(h1!, mask))).toMatchObject({ fn: "amdsmi_set_gpu_event_notification_mask", statusName: "NOT_SUPPORTED" });
    lib.shutDown();
  });

  test("status names by layout: MORE_DATA is 57 in 25.x, 39 from 26.x, absent in 24.x", () => {
    fx.ctl.fail("amdsmi_get_gpu_activity", 0, 57, 1);
    fx.ctl.fail("amdsmi_get_gpu_activity", 1, 39, 1);
    fx.ctl.fail("amdsmi_get_gpu_activity", 2, 0xffffffff, 1);
    lib.init();
    const [h0, h1, h2] = lib.gpuHandles();
    const e57 = smiError(() => lib.gpuActivity(h0!));
    const e39 = smiError(() => lib.gpuActivity(h1!));
    expect([e57.status, e39.status]).toEqual([57, 39]);
    expect([e57.statusName, e39.statusName]).toEqual(
      layout === 24 ? ["UNKNOWN_STATUS_57", "UNKNOWN_STATUS_39"] : layout === 25 ? ["MORE_DATA", "UNKNOWN_STATUS_39"] : ["UNKNOWN_STATUS_57", "MORE_DATA"],
    );
    expect(smiError(() => lib.gpuActivity(h2!)).statusName).toBe("UNKNOWN_ERROR");
    lib.shutDown();
  });

  test("a delayed call still answers right, and the binding counts no calls outside init", () => {
    fx.ctl.delay("amdsmi_get_gpu_activity", 1, 5);
    lib.init();
    const hs = lib.gpuHandles();
    expect(lib.gpuActivity(hs[1]!)).toEqual({ gfxPct: 99, umcPct: 40 });
    lib.shutDown();
    expect(fx.ctl.fnCalls("amdsmi_get_gpu_activity")).toBe(1);
    expect(fx.ctl.counter("calls_uninit")).toBe(0);
  });

  test("after unload every method throws a typed NOT_INIT naming the unload; unload is idempotent", () => {
    lib.init();
    const h = lib.gpuHandles()[0]!;
    lib.shutDown();
    lib.unload();
    lib.unload();
    for (const f of [() => lib.init(), () => lib.gpuHandles(), () => lib.gpuPower(h), () => lib.gpuStatic(h), () => lib.gpuHandleFromUuid("x"), () => lib.eventsRead(0, 1)]) {
      const e = smiError(f);
      expect(e.statusName).toBe("NOT_INIT");
      expect(e.message).toContain("unloaded");
    }
    expect(lib.info.path).toBe(fx.path);
  });
});

describe("loading", () => {
  const saved = process.env[AMDSMI_LIB_ENV];
  afterEach(() => {
    if (saved === undefined) delete process.env[AMDSMI_LIB_ENV];
    else process.env[AMDSMI_LIB_ENV] = saved;
  });

  test("order: an explicit path, else $SVMRT_AMDSMI_LIB, else /opt/rocm then the loader's names, newest soname first", () => {
    expect(amdsmiLibraryPaths({ path: "/x/lib.so" }, { [AMDSMI_LIB_ENV]: "/env/lib.so" })).toEqual(["/x/lib.so"]);
    expect(amdsmiLibraryPaths({}, { [AMDSMI_LIB_ENV]: "/env/lib.so" })).toEqual(["/env/lib.so"]);
    expect(amdsmiLibraryPaths({}, {})).toEqual([
      "/opt/rocm/lib/libamd_smi.so",
      "libamd_smi.so",
      "libamd_smi.so.27",
      "libamd_smi.so.26",
      "libamd_smi.so.25",
      "libamd_smi.so.24",
    ]);
    expect(amdsmiLibraryPaths({}, {})).toEqual([...AMDSMI_LIB_CANDIDATES]);
  });

  test("$SVMRT_AMDSMI_LIB is loaded when no path is given; a path given beats it", () => {
    const fx = amdsmiDoubleFixture(26);
    try {
      process.env[AMDSMI_LIB_ENV] = fx.path;
      const viaEnv = amdsmiOpen();
      expect(viaEnv.info.path).toBe(fx.path);
      viaEnv.unload();
      process.env[AMDSMI_LIB_ENV] = "/nonexistent/libamd_smi.so";
      const e = smiError(() => amdsmiOpen());
      expect(e.message).toContain("/nonexistent/libamd_smi.so");
      expect(e.message).not.toContain("/opt/rocm"); // an explicit choice never falls back
      const viaPath = amdsmiOpen({ path: fx.path });
      expect(viaPath.info.path).toBe(fx.path);
      viaPath.unload();
    } finally {
      fx.close();
    }
  });

  test("a missing library: FAIL_LOAD_MODULE naming the path and what to do; exit 5", () => {
    const e = smiError(() => amdsmiOpen({ path: "/nonexistent/dir/libamd_smi.so.26" }));
    expect(e).toMatchObject({ fn: "dlopen", statusName: "FAIL_LOAD_MODULE", status: 4 });
    expect(e.message).toContain("/nonexistent/dir/libamd_smi.so.26");
    expect(e.message).toContain("--amdsmi-lib");
    expect(e.message).toContain(AMDSMI_LIB_ENV);
    expect(exitCodeOf(e)).toBe(5);
  });

  test("a soname is searched as the loader does (LD_LIBRARY_PATH, ld.so.conf, system dirs), never in the current directory", () => {
    const dir = mkdtempSync(join(tmpdir(), "svmrt-soname-"));
    const cwd = process.cwd();
    try {
      const conf = join(dir, "ld.so.conf");
      mkdirSync(join(dir, "conf.d"));
      mkdirSync(join(dir, "lib-a"));
      mkdirSync(join(dir, "lib-b"));
      writeFileSync(conf, `# test\ninclude ${dir}/conf.d/*.conf\n`);
      writeFileSync(join(dir, "conf.d", "10-b.conf"), `${dir}/lib-b\n`);
      writeFileSync(join(dir, "conf.d", "ignored.txt"), `${dir}/lib-a\n`);
      writeFileSync(join(dir, "lib-b", "libamd_smi.so.26"), "");
      expect(librarySearchDirs({ LD_LIBRARY_PATH: `${dir}/lib-a::relative` }, conf).slice(0, 2)).toEqual([`${dir}/lib-a`, `${dir}/lib-b`]);
      expect(sonameResolve("libamd_smi.so.26", {}, conf)).toBe(join(dir, "lib-b", "libamd_smi.so.26"));
      writeFileSync(join(dir, "lib-a", "libamd_smi.so.26"), "");
      expect(sonameResolve("libamd_smi.so.26", { LD_LIBRARY_PATH: `${dir}/lib-a` }, conf)).toBe(join(dir, "lib-a", "libamd_smi.so.26"));
      expect(sonameResolve("./x/libamd_smi.so", {}, conf)).toBe("./x/libamd_smi.so");
      // A library of that name in the current directory is not picked up (bun's dlopen would).
      process.chdir(join(dir, "lib-a"));
      expect(sonameResolve("libamd_smi.so.26", {}, conf)).toBe(join(dir, "lib-b", "libamd_smi.so.26"));
      expect(sonameResolve("libamd_smi.so.26", {}, join(dir, "missing.conf"))).not.toBe(join(dir, "lib-a", "libamd_smi.so.26"));
    } finally {
      process.chdir(cwd);
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("a library without the required entry points does not load; one without optional ones does, degraded", () => {
    const e = smiError(() => amdsmiOpen({ path: "libc.so.6" }));
    expect(e.statusName).toBe("FAIL_LOAD_MODULE");
    expect(e.message).toContain("libc.so.6");
    const fx = amdsmiDoubleFixture(24);
    try {
      fx.configure();
      const lib = amdsmiOpen({ path: fx.path });
      expect(AMDSMI_OPTIONAL_SYMBOLS.filter((s) => lib.info.missingOptional.includes(s))).toHaveLength(2);
      lib.init();
      expect(lib.gpuHandleFromUuid(DOUBLE_GPUS[1]!.uuid)).toBe(lib.gpuHandles()[1]!);
      lib.shutDown();
      lib.unload();
    } finally {
      fx.close();
    }
  });
});

describe("the double's configuration is strict", () => {
  test("unknown keys, fractions and missing identity are refused with the byte offset; the old configuration stays", () => {
    const fx = amdsmiDoubleFixture(26);
    try {
      const file = fx.configure();
      const bad = (text: string): string => {
        const p = `${fx.dir}/bad.json`;
        writeFileSync(p, text);
        try {
          fx.ctl.configLoad(p);
        } catch (e) {
          return (e as Error).message;
        }
        return "loaded";
      };
      expect(bad('{"gpus": [{"uuid": "u", "bdf": "0000:01:00.0", "colour": "red"}]}')).toMatch(/^amdsmi double: config byte \d+: unknown GPU key: colour$/);
      expect(bad('{"gpus": [{"uuid": "u", "bdf": "0000:01:00.0", "temp_edge_c": 4.5}]}')).toContain("integers only");
      expect(bad('{"gpus": [{"uuid": "u"}]}')).toContain('needs "uuid" and "bdf"');
      expect(bad('{"gpus": []} x')).toContain("trailing bytes");
      expect(bad(amdsmiDoubleConfigText({ gpus: [{ uuid: "u", bdf: "0000:01:00.0" }], failures: [{ fn: "amdsmi_nope", status: 2 }] }))).toContain(
        "unknown amdsmi function",
      );
      expect(fx.ctl.counter("gpus")).toBe(DOUBLE_GPUS.length);
      fx.ctl.configLoad(file);
      expect(fx.ctl.counter("gpus")).toBe(DOUBLE_GPUS.length);
    } finally {
      fx.close();
    }
  });
});

describe("pure parts", () => {
  test("version words: four-digit year, two-digit year (the real 24.x), and major-first (26.x on)", () => {
    expect(amdsmiVersionDecode([2024, 24, 6, 3], "24.6.3")).toEqual({ text: "24.6.3", layout: "24" });
    expect(amdsmiVersionDecode([24, 6, 1, 0], "24.6.1.0")).toEqual({ text: "24.6.1.0", layout: "24" });
    expect(amdsmiVersionDecode([24, 7, 1, 0], undefined)).toEqual({ text: "24.7.1.0", layout: "24" });
    expect(amdsmiVersionDecode([2025, 25, 2, 0], "")).toEqual({ text: "25.2.0", layout: "25" });
    expect(amdsmiVersionDecode([25, 3, 0, 0], "25.3.0.0")).toEqual({ text: "25.3.0.0", layout: "25" });
    expect(amdsmiVersionDecode([26, 5, 0, 0], "26.5.0")).toEqual({ text: "26.5.0", layout: "26" });
    expect(amdsmiVersionDecode([27, 1, 0, 0xdeadbeef], "27.1.0")).toEqual({ text: "27.1.0", layout: "26" });
    expect(amdsmiVersionDecode([0, 0, 0, 0], undefined)).toBeUndefined();
  });

  test("status names: own table per layout; unknown numbers named by number", () => {
    expect(amdsmiStatusName(34, "24")).toBe("DRIVER_NOT_LOADED");
    expect(amdsmiStatusName(57, "25")).toBe("MORE_DATA");
    expect(amdsmiStatusName(39, "26")).toBe("MORE_DATA");
    expect(amdsmiStatusName(39, "25")).toBe("UNKNOWN_STATUS_39");
    expect(amdsmiStatusName(57, "26")).toBe("UNKNOWN_STATUS_57");
    expect(amdsmiStatusName(56, "24")).toBe("UNKNOWN_STATUS_56");
    expect(amdsmiStatusName(56, "25")).toBe("CORRUPTED_EEPROM");
    expect(amdsmiStatusName(20, "26")).toBe("DIRECTORY_NOT_FOUND");
    expect(amdsmiStatusName(39, undefined)).toBe("MORE_DATA");
    expect(amdsmiStatusName(0xfffffffe, "24")).toBe("MAP_ERROR");
    expect(amdsmiStatusName(99, undefined)).toBe("UNKNOWN_STATUS_99");
  });

  test("BDF union: function bits 0-2, device 3-7, bus 8-15, domain 16-63", () => {
    expect(amdsmiBdfText(0n)).toBe("0000:00:00.0");
    expect(amdsmiBdfText((0x1n << 16n) | (0x02n << 8n) | (0x1fn << 3n) | 3n)).toBe("0001:02:1f.3");
    expect(amdsmiBdfText((0x12345n << 16n) | (0xc1n << 8n))).toBe("12345:c1:00.0");
  });

  test("layout table sizes are the reference's; every layout has a table", () => {
    expect(Object.keys(AMDSMI_LAYOUTS).sort()).toEqual(["24", "25", "26"]);
    expect(["24", "25", "26"].map((l) => AMDSMI_LAYOUTS[l as "24"].power.size_bytes)).toEqual([68, 40, 192]);
    expect(["24", "25", "26"].map((l) => AMDSMI_LAYOUTS[l as "24"].event.size_bytes)).toEqual([80, 112, 272]);
    expect(["24", "25", "26"].map((l) => AMDSMI_LAYOUTS[l as "24"].board.size_bytes)).toEqual([768, 1536, 1792]);
    expect(["24", "25", "26"].map((l) => AMDSMI_LAYOUTS[l as "24"].vramInfo.size_bytes)).toEqual([64, 64, 584]);
    expect(GPUS_MAX).toBe(256);
  });
});
