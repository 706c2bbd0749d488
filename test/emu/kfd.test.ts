/**
 * KfdDevice end to end on the emulated /dev/kfd: the binding's own code over runtime/emu,
 * checked against the machine profile and the SVM model it drives.
 */
import { beforeEach, describe, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { emulatorCreate } from "../../runtime/emu/emulator.ts";
import { EMU_KFD_FD, EmuKfd } from "../../runtime/emu/kfd.ts";
import { EMU_PID_DEFAULT, EmuMachine } from "../../runtime/emu/machine.ts";
import { emuSysfsTemp } from "../../runtime/emu/sysfs.ts";
import { KfdError } from "../../runtime/errors.ts";
import { ERRNO } from "../../runtime/ffi/errno.ts";
import { KfdDevice, KfdPartialMapError } from "../../runtime/kfd/device.ts";
import { SmiEventReader } from "../../runtime/kfd/smi-events.ts";
import { IO_LINK_TYPE, topologyRead } from "../../runtime/kfd/topology.ts";
import {
  ALLOC_MEM_FLAGS,
  IOCTL,
  SVM_ATTR,
  SVM_FLAG_1_11,
  SVM_LOCATION,
  SVM_OP,
  STRUCTS,
  structEncode,
  svmRequest,
} from "../../runtime/kfd/uapi.ts";
import { loadProfile } from "../../runtime/sim/profile.ts";
import type { AttrPair } from "../../runtime/svm/model.ts";

const MIB = 2 ** 20;
const GIB = 2 ** 30;
const PAGE = 4096;
/** A CPU mapping of the emulated process for SVM tests: 64 MiB at 4 GiB. */
const VA = 4 * GIB;
const VA_SIZE = 64 * MIB;
const profile = loadProfile("dev-2gpu");
const [G0, G1] = profile.gpus.map((g) => g.id) as [number, number];

let machine: EmuMachine;
let sys: EmuKfd;
let dev: KfdDevice;

beforeEach(() => {
  machine = new EmuMachine({ profile });
  sys = new EmuKfd(machine);
  dev = KfdDevice.open(sys);
});

function kfdErr(f: () => unknown): KfdError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(KfdError);
    return e as KfdError;
  }
  throw new Error("expected a KfdError");
}

describe("emulated /dev/kfd through KfdDevice", () => {
  test("version, apertures = the profile's GPUs, the process exists in the model until close", () => {
    expect(dev.version).toEqual({ major: 1, minor: 11 });
    expect(sys.emulated).toBe(true);
    expect(sys.name).toContain("emulated");
    expect(dev.getProcessApertures().map((a) => a.gpuId)).toEqual([G0, G1]);
    expect(machine.model.processes.has(EMU_PID_DEFAULT)).toBe(true);
    // One KFD process per emulator, like the C double.
    expect(sys.open("/dev/kfd", 0)).toBe(-ERRNO.EBUSY);
    expect(sys.open("/dev/nope", 0)).toBe(-ERRNO.ENOENT);
    dev.close();
    expect(machine.model.processes.has(EMU_PID_DEFAULT)).toBe(false);
    dev = KfdDevice.open(sys);
    const big = new EmuKfd(new EmuMachine({ profile: loadProfile("mi300x-8") }));
    using d8 = KfdDevice.open(big);
    expect(d8.getProcessApertures().map((a) => a.gpuId)).toEqual(loadProfile("mi300x-8").gpus.map((g) => g.id));
  });

  test("alloc / map / unmap / free with n_success, VRAM accounting and errno", () => {
    const before = dev.availableMemory(G0);
    expect(before).toBe(32 * GIB);
    const vram = dev.allocMemoryOfGpu({ vaAddr: 0x10_0000_0000, size_bytes: 16 * MIB, gpuId: G0, flags: ALLOC_MEM_FLAGS.VRAM | ALLOC_MEM_FLAGS.WRITABLE });
    expect(vram.handle >> 32n).toBe(BigInt(G0));
    expect(dev.availableMemory(G0)).toBe(before - 16 * MIB);
    expect(dev.availableMemory(G1)).toBe(32 * GIB);
    dev.mapMemoryToGpu(vram.handle, [G0, G1]);
    expect([sys.isMapped(vram.handle, G0), sys.isMapped(vram.handle, G1)]).toEqual([1, 1]);
    expect(machine.model.proc(EMU_PID_DEFAULT).boMappings).toEqual([0x10_0000_0000 / PAGE, 0x10_0000_0000 / PAGE + 16 * MIB / PAGE - 1]);
    expect(kfdErr(() => dev.freeMemoryOfGpu(vram.handle)).errnoName).toBe("EBUSY");
    dev.unmapMemoryFromGpu(vram.handle, [G0, G1]);
    expect(machine.model.proc(EMU_PID_DEFAULT).boMappings).toEqual([]);
    // Unmapping what is not mapped: EINVAL at the first device, n_success 0.
    const e = kfdErr(() => dev.unmapMemoryFromGpu(vram.handle, [G0]));
    expect(e).toBeInstanceOf(KfdPartialMapError);
    expect(e.errnoName).toBe("EINVAL");
    dev.freeMemoryOfGpu(vram.handle);
    expect(dev.availableMemory(G0)).toBe(before);
    expect(kfdErr(() => dev.freeMemoryOfGpu(vram.handle)).errnoName).toBe("EINVAL");

    // A map that fails part way: exactly the devices before the bad id are mapped, and a
    // retry of the good ones maps nothing twice.
    const gtt = dev.allocMemoryOfGpu({ vaAddr: 0x20_0000_0000, size_bytes: 2 * MIB, gpuId: G1, flags: ALLOC_MEM_FLAGS.GTT });
    const partial = kfdErr(() => dev.mapMemoryToGpu(gtt.handle, [G1, 0xdead, G0])) as KfdPartialMapError;
    expect(partial).toBeInstanceOf(KfdPartialMapError);
    expect(partial.errnoName).toBe("EINVAL");
    expect(partial.mappedGpuIds).toEqual([G1]);
    expect(partial.unmappedGpuIds).toEqual([0xdead, G0]);
    expect([sys.isMapped(gtt.handle, G1), sys.isMapped(gtt.handle, G0)]).toEqual([1, 0]);
    expect(sys.mapRequests(gtt.handle, G1)).toBe(1);

    // Argument errors, as the kernel and the C double answer them.
    const bad = (req: Parameters<KfdDevice["allocMemoryOfGpu"]>[0]) => kfdErr(() => dev.allocMemoryOfGpu(req)).errnoName;
    expect(bad({ vaAddr: 0, size_bytes: MIB, gpuId: 0x1234, flags: ALLOC_MEM_FLAGS.VRAM })).toBe("EINVAL");
    expect(bad({ vaAddr: 0, size_bytes: MIB, gpuId: G0, flags: ALLOC_MEM_FLAGS.VRAM | ALLOC_MEM_FLAGS.GTT })).toBe("EINVAL");
    expect(bad({ vaAddr: 100, size_bytes: MIB, gpuId: G0, flags: ALLOC_MEM_FLAGS.GTT })).toBe("EINVAL");
    expect(bad({ vaAddr: 0, size_bytes: 0, gpuId: G0, flags: ALLOC_MEM_FLAGS.GTT })).toBe("EINVAL");
    expect(bad({ vaAddr: 0, size_bytes: 33 * GIB, gpuId: G0, flags: ALLOC_MEM_FLAGS.VRAM })).toBe("ENOMEM");
    expect(kfdErr(() => dev.availableMemory(0x1234)).errnoName).toBe("EINVAL");
    expect(kfdErr(() => dev.smiEventsOpen(0x1234)).errnoName).toBe("EINVAL");
    dev.acquireVm(G0, 7);
    dev.acquireVm(G0, 7);
    expect(kfdErr(() => dev.acquireVm(G0, 8)).errnoName).toBe("EBUSY");
    expect(kfdErr(() => dev.acquireVm(0x1234, 7)).errnoName).toBe("EINVAL");
  });

  test("SVM SET_ATTR / GET_ATTR: splits, aggregation and defaults are the model's", () => {
    // SET_ATTR on memory the emulated CPU has not mapped: EFAULT, as svm_range_is_valid says.
    expect(kfdErr(() => dev.svmSetAttr(VA, VA_SIZE, [{ type: SVM_ATTR.PREFERRED_LOC, value: G0 }])).errnoName).toBe("EFAULT");
    expect(kfdErr(() => dev.svmGetAttr(VA, VA_SIZE, [{ type: SVM_ATTR.GRANULARITY, value: 0 }])).errnoName).toBe("EFAULT");
    sys.mmap(VA, VA_SIZE + 2 * MIB); // the last 2 MiB: mapped, no range
    dev.svmSetAttr(VA, VA_SIZE, [{ type: SVM_ATTR.PREFERRED_LOC, value: G0 }]);
    // The middle 4 MiB: split into head, middle, tail (never merged).
    dev.svmSetAttr(VA + 8 * MIB, 4 * MIB, [
      { type: SVM_ATTR.PREFERRED_LOC, value: G1 },
      { type: SVM_ATTR.ACCESS_IN_PLACE, value: G1 },
      { type: SVM_ATTR.SET_FLAGS, value: SVM_FLAG_1_11.GPU_RO },
      { type: SVM_ATTR.GRANULARITY, value: 4 },
    ]);
    const p = machine.model.proc(EMU_PID_DEFAULT);
    expect(p.ranges.count).toBe(3);
    const query = [
      { type: SVM_ATTR.PREFERRED_LOC, value: 0 },
      { type: SVM_ATTR.PREFETCH_LOC, value: 0 },
      { type: SVM_ATTR.ACCESS, value: G0 },
      { type: SVM_ATTR.ACCESS, value: G1 },
      { type: SVM_ATTR.SET_FLAGS, value: 0 },
      { type: SVM_ATTR.CLR_FLAGS, value: 0 },
      { type: SVM_ATTR.GRANULARITY, value: 0 },
    ];
    const model = (start: number, size: number) =>
      machine.model.getAttr(EMU_PID_DEFAULT, start / PAGE, size / PAGE, query.map((q): AttrPair => [q.type, q.value])).map(([type, value]) => ({ type, value }));
    for (const [start, size] of [
      [VA, VA_SIZE],
      [VA + 8 * MIB, 4 * MIB],
      [VA, 8 * MIB],
      [VA + 10 * MIB, 8 * MIB],
      [VA + VA_SIZE, 2 * MIB], // no range: the defaults
    ] as const) {
      expect(dev.svmGetAttr(start, size, query)).toEqual(model(start, size));
    }
    expect(dev.svmGetAttr(VA + VA_SIZE, 2 * MIB, query)).toEqual([
      { type: SVM_ATTR.PREFERRED_LOC, value: SVM_LOCATION.UNDEFINED },
      { type: SVM_ATTR.PREFETCH_LOC, value: SVM_LOCATION.UNDEFINED },
      { type: SVM_ATTR.ACCESS, value: G0 },
      { type: SVM_ATTR.ACCESS, value: G1 },
      { type: SVM_ATTR.SET_FLAGS, value: SVM_FLAG_1_11.HOST_ACCESS | SVM_FLAG_1_11.COHERENT },
      { type: SVM_ATTR.CLR_FLAGS, value: ~(SVM_FLAG_1_11.HOST_ACCESS | SVM_FLAG_1_11.COHERENT) >>> 0 },
      { type: SVM_ATTR.GRANULARITY, value: 9 },
    ]);
    const all = dev.svmGetAttr(VA, VA_SIZE, query);
    expect(all[0]!.value).toBe(SVM_LOCATION.UNDEFINED); // G0 and G1 differ
    expect(all[2]!.type).toBe(SVM_ATTR.ACCESS); // XNACK on: every range starts with access
    expect(all[3]!.type).toBe(SVM_ATTR.NO_ACCESS); // G1: access here, in place there: intersection empty
    expect(all[6]!.value).toBe(4); // minimum granularity
    const mid = dev.svmGetAttr(VA + 8 * MIB, 4 * MIB, query);
    expect(mid[0]!.value).toBe(G1);
    expect(mid[3]!.type).toBe(SVM_ATTR.ACCESS_IN_PLACE);
    expect(mid[4]!.value & SVM_FLAG_1_11.GPU_RO).toBe(SVM_FLAG_1_11.GPU_RO);
  });

  test("SVM errno: unknown attribute, unknown gpu_id, misaligned, version gate, unknown request", () => {
    sys.mmap(VA, VA_SIZE);
    expect(kfdErr(() => dev.svmSetAttr(VA, VA_SIZE, [{ type: 99, value: 0 }])).errnoName).toBe("EINVAL");
    expect(kfdErr(() => dev.svmSetAttr(VA, VA_SIZE, [{ type: SVM_ATTR.ACCESS, value: 0x1234 }])).errnoName).toBe("EINVAL");
    expect(kfdErr(() => dev.svmGetAttr(VA, VA_SIZE, [{ type: SVM_ATTR.ACCESS, value: 0x1234 }])).errnoName).toBe("EINVAL");
    // GET_ATTR (svm_range_get_attr): query values are outputs, never checked; ACCESS_IN_PLACE
    // and NO_ACCESS are no queries; on memory the CPU has not mapped, EFAULT comes first.
    expect(dev.svmGetAttr(VA, VA_SIZE, [{ type: SVM_ATTR.PREFERRED_LOC, value: 0xdead }])).toEqual([{ type: SVM_ATTR.PREFERRED_LOC, value: SVM_LOCATION.UNDEFINED }]);
    expect(kfdErr(() => dev.svmGetAttr(VA, VA_SIZE, [{ type: SVM_ATTR.NO_ACCESS, value: G0 }])).errnoName).toBe("EINVAL");
    expect(kfdErr(() => dev.svmGetAttr(VA + VA_SIZE, PAGE, [{ type: SVM_ATTR.NO_ACCESS, value: G0 }])).errnoName).toBe("EFAULT");
    expect(machine.model.proc(EMU_PID_DEFAULT).ranges.count).toBe(0); // nothing changed
    // Misaligned: the binding refuses before the call; the emulator itself answers EINVAL too.
    expect(kfdErr(() => dev.svmSetAttr(VA + 1, PAGE, [])).errnoName).toBe("EINVAL");
    const raw = new Uint8Array(new ArrayBuffer(STRUCTS.svm_args.size + 8));
    const v = new DataView(raw.buffer);
    structEncode("svm_args", { start_addr: BigInt(VA + 1), size: BigInt(PAGE), op: SVM_OP.SET_ATTR, nattr: 0 }, v);
    expect(sys.ioctl(EMU_KFD_FD, IOCTL.SVM, raw)).toBe(-ERRNO.EINVAL);
    structEncode("svm_args", { start_addr: BigInt(VA), size: BigInt(PAGE), op: 7, nattr: 0 }, v);
    // Unknown op: svm_ioctl's `default: r = -EINVAL;` (the sign fixed in the 2025 stable kernels).
    expect(sys.ioctl(EMU_KFD_FD, IOCTL.SVM, raw)).toBe(-ERRNO.EINVAL);
    structEncode("svm_args", { start_addr: BigInt(VA), size: BigInt(PAGE), op: SVM_OP.SET_ATTR, nattr: 1 }, v);
    // The size field counts attrs[]: the bare request with an attribute is EINVAL (kfd_ioctl's
    // nattr check), the sized one works, and a size past the buffer faults (copy_from_user).
    expect(sys.ioctl(EMU_KFD_FD, IOCTL.SVM, raw)).toBe(-ERRNO.EINVAL);
    structEncode("svm_attribute", { type: SVM_ATTR.GRANULARITY, value: 9 }, v, STRUCTS.svm_args.size);
    expect(sys.ioctl(EMU_KFD_FD, svmRequest(1), raw)).toBe(0);
    expect(sys.ioctl(EMU_KFD_FD, svmRequest(2), raw)).toBe(-ERRNO.EFAULT);
    expect(sys.ioctl(EMU_KFD_FD, IOCTL.SVM ^ 0x40000000, raw)).toBe(-ERRNO.ENOTTY); // wrong direction
    expect(sys.ioctl(EMU_KFD_FD + 1, IOCTL.SVM, raw)).toBe(-ERRNO.EBADF);

    // Version gating: an emulated 1.4 driver has no SVM; 1.8 no AVAILABLE_MEMORY.
    const old = new EmuKfd(new EmuMachine({ profile }), { versionMinor: 4 });
    using d = KfdDevice.open(old);
    expect(d.version.minor).toBe(4);
    expect(d.supports("SVM")).toBe(false);
    const e = kfdErr(() => d.svmSetAttr(VA, PAGE, []));
    expect(e.errnoName).toBe("ENOTTY");
    expect(e.message).toContain("refused before the call");
    expect(old.ioctl(EMU_KFD_FD, IOCTL.SVM, raw)).toBe(-ERRNO.EINVAL); // the driver's own answer
    expect(kfdErr(() => d.availableMemory(G0)).errnoName).toBe("ENOTTY");
  });

  test("XNACK mode, and AVAILABLE_MEMORY drops after a prefetch to VRAM", () => {
    expect(dev.setXnackMode("query")).toBe(true); // dev-2gpu: xnack true
    expect(dev.setXnackMode(false)).toBe(false);
    expect(machine.model.proc(EMU_PID_DEFAULT).xnack).toBe(false);
    expect(dev.setXnackMode(true)).toBe(true);
    sys.mmap(VA, VA_SIZE);
    const before = dev.availableMemory(G0);
    const t0 = machine.nowNs;
    using r0 = SmiEventReader.open(dev, G0, ["MIGRATE_START", "MIGRATE_END"]);
    using r1 = SmiEventReader.open(dev, G1, ["MIGRATE_START", "MIGRATE_END"]);
    dev.svmSetAttr(VA, VA_SIZE, [{ type: SVM_ATTR.PREFETCH_LOC, value: G0 }]);
    expect(dev.availableMemory(G0)).toBe(before - VA_SIZE); // the range's whole buffer
    expect(dev.availableMemory(G1)).toBe(32 * GIB);
    expect(machine.model.stats.migrationsByTrigger.prefetch).toBe(1); // one range, migrated whole
    const evs = r0.pollOnce();
    expect(evs.map((e) => e.kind)).toEqual(["MIGRATE_START", "MIGRATE_END"]);
    expect(evs[0]).toMatchObject({ pid: EMU_PID_DEFAULT, startPage: VA / PAGE, sizePages: VA_SIZE / PAGE, from: 0, to: G0, prefetchLoc: G0, trigger: 0 });
    expect(r1.pollOnce()).toEqual([]); // the other GPU's fd: not its device
    expect(machine.nowNs).toBeGreaterThan(t0); // the ioctl took simulated time
    dev.svmSetAttr(VA, VA_SIZE, [{ type: SVM_ATTR.PREFETCH_LOC, value: SVM_LOCATION.SYSMEM }]);
    expect(dev.availableMemory(G0)).toBe(before);
    dev.close();
    machine.model.checkFull();
  });
});

describe("emulated sysfs topology, read by the real reader", () => {
  test("dev-2gpu: two GPUs with their VRAM, PCIe links, no hive", () => {
    using t = emuSysfsTemp(profile);
    const topo = topologyRead(t.root);
    expect(topo.gpus.map((g) => [g.gpuId, g.vram_bytes, g.hiveId, g.drmRenderMinor])).toEqual([
      [G0, 32 * GIB, 0n, 128],
      [G1, 32 * GIB, 0n, 129],
    ]);
    expect(topo.hives).toEqual([]);
    expect(topo.nodes[0]!.gpuId).toBe(0);
    expect(topo.nodes.flatMap((n) => n.ioLinks).every((l) => l.type === IO_LINK_TYPE.PCIEXPRESS)).toBe(true);
    expect(topo.gpus[0]!.name).toBe("emulated-dev-2gpu");
  });

  test("mi250x-4: one hive, XGMI links between every pair", () => {
    const p = loadProfile("mi250x-4");
    using t = emuSysfsTemp(p);
    const topo = topologyRead(t.root);
    expect(topo.hives).toEqual([{ hiveId: 0x250n, gpuIds: p.gpus.map((g) => g.id) }]);
    const xgmi = topo.nodes.flatMap((n) => n.ioLinks).filter((l) => l.type === IO_LINK_TYPE.XGMI);
    expect(xgmi).toHaveLength(4 * 3);
  });
});

describe("emulatorCreate", () => {
  test("machine, /dev/kfd and sysfs of a profile name; dispose closes and removes", () => {
    let root: string;
    {
      using emu = emulatorCreate("mi300a");
      root = emu.sysfsRoot;
      expect(emu.emulated).toBe(true);
      expect(emu.profile).toBe("mi300a");
      using d = KfdDevice.open(emu.kfd);
      expect(d.getProcessApertures().map((a) => a.gpuId)).toEqual(topologyRead(emu.sysfsRoot).gpus.map((g) => g.gpuId));
      expect(readFileSync(join(root, "emulated"), "utf8")).toBe("mi300a\n");
    }
    expect(existsSync(root)).toBe(false);
  });
});
