/**
 * The rocm-smi binding reading libraries of every layout family, through the C test double of
 * librocm_smi64 (test/native/rocm_smi_double.c), built per family / version / message size /
 * marker. Each double writes its out-structs whole at its own size (392 or 416 bytes of PCIe
 * bandwidth, 72 or 104 per event), so these tests exercise the buffers the binding allocates
 * (the largest family's size plus slack) and the offsets it reads with.
 */
import { describe, expect, test } from "bun:test";
import { rocmSmiLayoutDecision, rocmSmiOpen } from "../../runtime/ffi/rocm-smi.ts";
import { SmiError } from "../../runtime/errors.ts";
import type { SmiGpuEvent, SmiLibrary } from "../../runtime/smi/library.ts";
import { nativeBuild } from "../native/compile.ts";

interface DoubleBuild {
  abi: 5 | 6;
  message_bytes: 64 | 96;
  /** "major.minor.patch" rsmi_version_get answers, or "fail". */
  version: string;
  /** Export rsmi_dev_power_get (ROCm 6.0 and later). */
  powerGet: boolean;
}

function doubleBuild(b: DoubleBuild): string {
  const [major = "0", minor = "0", patch = "0"] = b.version === "fail" ? [] : b.version.split(".");
  return nativeBuild({
    source: "rocm_smi_double.c",
    shared: true,
    defines: [
      `RSMI_DOUBLE_ABI=${b.abi}`,
      `RSMI_DOUBLE_MESSAGE_SIZE=${b.message_bytes}`,
      `RSMI_DOUBLE_VERSION_MAJOR=${major}`,
      `RSMI_DOUBLE_VERSION_MINOR=${minor}`,
      `RSMI_DOUBLE_VERSION_PATCH=${patch}`,
      `RSMI_DOUBLE_VERSION_FAIL=${b.version === "fail" ? 1 : 0}`,
      `RSMI_DOUBLE_POWER_GET=${b.powerGet ? 1 : 0}`,
    ],
  });
}

/** The double's three events (VMFAULT, THERMAL_THROTTLE, GPU_POST_RESET), in order. */
function doubleEvents(message_bytes: 64 | 96): Omit<SmiGpuEvent, "handle">[] {
  return [
    { type: "VMFAULT", typeId: 1, message: "vmfault pid=4242 addr=0x7f0000001000" },
    {
      type: "THERMAL_THROTTLE",
      typeId: 2,
      message: message_bytes > 64 ? "thermal-throttle bitmask=0x0000000000000004 counter=0000000017 since-boot-ms=00000123456" : "thermal-throttle bitmask=0x4 counter=17",
    },
    { type: "GPU_POST_RESET", typeId: 4, message: "gpu-post-reset reset_seq=3" },
  ];
}
/** VMFAULT | THERMAL_THROTTLE | GPU_POST_RESET (bit i-1 for event i). */
const EVENT_MASK = 0b1011n;

/** Run `f` on an initialised binding of `path`, shut down after. */
function withInit<T>(path: string, f: (lib: SmiLibrary) => T): T {
  using lib = rocmSmiOpen({ path });
  lib.init();
  try {
    return f(lib);
  } finally {
    lib.shutDown();
  }
}

/** Every event of one started GPU, reading until the library has none (at most `reads` reads). */
function eventsDrain(lib: SmiLibrary, reads: number): SmiGpuEvent[][] {
  const batches: SmiGpuEvent[][] = [];
  for (let i = 0; i < reads; i++) {
    const batch = lib.eventsRead(0, 8);
    batches.push(batch);
    if (batch.length === 0) break;
  }
  return batches;
}

function smiError(fn: () => unknown): SmiError {
  try {
    fn();
  } catch (e) {
    if (e instanceof SmiError) return e;
    throw e;
  }
  throw new Error("no SmiError thrown");
}

const PCIE = { speedMts: 16_000, width: 16, replayCount: 7 };

const CASES = [
  { name: "ROCm 5.x (5.7.0)", build: { abi: 5, message_bytes: 64, version: "5.7.0", powerGet: false }, family: "5" },
  { name: "ROCm 6.2.1 (7.3.0)", build: { abi: 6, message_bytes: 64, version: "7.3.0", powerGet: true }, family: "6" },
  { name: "a newer library (9.1.0, 96-byte messages)", build: { abi: 6, message_bytes: 96, version: "9.1.0", powerGet: true }, family: "6" },
  { name: "a tag-less 5.x build (1.0.0, like Debian's)", build: { abi: 5, message_bytes: 64, version: "1.0.0", powerGet: false }, family: "5" },
  { name: "a tag-less 6+ build (1.0.0 with rsmi_dev_power_get)", build: { abi: 6, message_bytes: 96, version: "1.0.0", powerGet: true }, family: "6" },
] as const;

describe.each(CASES)("$name", ({ build, family }) => {
  const path = doubleBuild(build);

  test(`is read as family ${family}, with the version it says`, () => {
    using lib = rocmSmiOpen({ path });
    expect(rocmSmiLayoutDecision(lib)?.family).toBe(family);
    expect(lib.info.version).toBe(`${build.version}+double`);
  });

  test("PCIe: the current level's rate and width, and the replay count", () => {
    expect(withInit(path, (lib) => lib.gpuPcie(lib.gpuHandles()[0]!))).toEqual(PCIE);
  });

  test("scalar and string readings come through their out-buffers", () => {
    withInit(path, (lib) => {
      const h = lib.gpuHandles()[0]!;
      expect(lib.gpuStatic(h)).toEqual({
        uuid: "2eff74a1-0000-1000-80fe-9cea14a6b148",
        bdf: "0000:c1:00.0",
        deploymentMode: "unknown",
        marketName: "AMD Instinct MI300X (rocm-smi double)",
      });
      expect(lib.gpuTemperature(h, "junction")).toBe(46);
      expect(lib.gpuPower(h)).toEqual({ averageW: 540 });
      expect(lib.gpuActivity(h)).toEqual({ gfxPct: 37 });
      expect(lib.gpuMemory(h, "vram")).toEqual({ usedBytes: 297_054_208, totalBytes: 206_141_652_992 });
      expect(lib.gpuEcc(h)).toEqual({ correctable: 3, uncorrectable: 1 });
    });
  });

  test(`events: ${family === "5" ? "all three in one read (72-byte records)" : "one per read (the record size is not told), none lost"}`, () => {
    const batches = withInit(path, (lib) => {
      const h = lib.gpuHandles()[0]!;
      lib.eventsStart(h, EVENT_MASK);
      try {
        return eventsDrain(lib, 5);
      } finally {
        lib.eventsStop(h);
      }
    });
    const want = doubleEvents(build.message_bytes).map((e) => ({ handle: 0n, ...e }));
    expect(batches).toEqual(family === "5" ? [want, []] : [[want[0]!], [want[1]!], [want[2]!], []]);
  });
});

describe("a library larger than the family it is read as", () => {
  // Says 5.7.0 but writes the 416-byte layout and 104-byte events: the buffers hold it all.
  const path = doubleBuild({ abi: 6, message_bytes: 96, version: "5.7.0", powerGet: false });

  test("writes into slack, never past the buffer: the misread level is left out, the rest reads", () => {
    withInit(path, (lib) => {
      expect(rocmSmiLayoutDecision(lib)?.family).toBe("5");
      const h = lib.gpuHandles()[0]!;
      // has_deep_sleep (1) read as num_supported, num_supported (3) as current: no valid level.
      const reads = Array.from({ length: 100 }, () => lib.gpuPcie(h));
      expect(reads).toEqual(Array.from({ length: 100 }, () => ({ replayCount: 7 })));
      Bun.gc(true);
      expect(lib.gpuMemory(h, "vram").totalBytes).toBe(206_141_652_992);
    });
  });
});

describe("a library whose rsmi_version_get fails", () => {
  const path = doubleBuild({ abi: 6, message_bytes: 96, version: "fail", powerGet: true });

  test("has no family: the bandwidth is left out, events answer NOT_SUPPORTED saying why", () => {
    withInit(path, (lib) => {
      expect(lib.info.version).toBeUndefined();
      expect(rocmSmiLayoutDecision(lib)).toEqual({ family: undefined, why: "rsmi_version_get failed, so the struct layout of this librocm_smi64 cannot be told" });
      const h = lib.gpuHandles()[0]!;
      expect(lib.gpuPcie(h)).toEqual({ replayCount: 7 });
      const e = smiError(() => lib.eventsStart(h, EVENT_MASK));
      expect([e.fn, e.statusName, e.status]).toEqual(["rsmi_event_notification_init", "NOT_SUPPORTED", 2]);
      expect(e.message).toContain("not read: rsmi_version_get failed, so the struct layout of this librocm_smi64 cannot be told");
      expect(e.message).toContain("--backend amdsmi");
    });
  });
});
