import { beforeEach, describe, expect, test } from "bun:test";
import { KfdError } from "../../runtime/errors.ts";
import { ERRNO } from "../../runtime/ffi/errno.ts";
import { DOUBLE_SCRIPT, DOUBLE_SCRIPT_FOREVER } from "../../runtime/ffi/kfd-double.ts";
import { KfdDevice, KfdPartialMapError, MAP_EINTR_RETRIES_MAX } from "../../runtime/kfd/device.ts";
import { ALLOC_MEM_FLAGS, IOCTL_SPECS, SVM_ATTR, SVM_FLAG_1_11, SVM_LOCATION } from "../../runtime/kfd/uapi.ts";
import { kfdDoubleLoad } from "./double.ts";

const { sys, ctl } = kfdDoubleLoad();
const GPUS = 8;
const MIB = 1 << 20;
const VRAM_BYTES = 64 * 1024 * MIB;
const VRAM_WRITABLE = (ALLOC_MEM_FLAGS.VRAM | ALLOC_MEM_FLAGS.WRITABLE) >>> 0;
const NR_MAP = IOCTL_SPECS.MAP_MEMORY_TO_GPU.nr;
const NR_UNMAP = IOCTL_SPECS.UNMAP_MEMORY_FROM_GPU.nr;

let gpu: number[] = [];
beforeEach(() => {
  ctl.reset(GPUS, 11);
  gpu = Array.from({ length: GPUS }, (_, i) => ctl.gpuId(i));
});

function errorOf(f: () => unknown): KfdError {
  try {
    f();
  } catch (e) {
    if (e instanceof KfdError) return e;
    throw e;
  }
  throw new Error("expected a KfdError");
}

describe("KfdDevice open, version and disposal", () => {
  test("open reads GET_VERSION; close is explicit and idempotent", () => {
    const dev = KfdDevice.open(sys);
    expect(dev.version).toEqual({ major: 1, minor: 11 });
    expect(dev.isOpen).toBe(true);
    dev.close();
    dev.close();
    expect(dev.isOpen).toBe(false);
    const e = errorOf(() => dev.availableMemory(gpu[0]!));
    expect(e.errnoName).toBe("EBADF");
  });

  test("`using` disposes: the double's single KFD context can be opened again", () => {
    {
      using dev = KfdDevice.open(sys);
      expect(dev.isOpen).toBe(true);
      expect(errorOf(() => KfdDevice.open(sys)).errnoName).toBe("EBUSY");
    }
    using again = KfdDevice.open(sys);
    expect(again.isOpen).toBe(true);
  });

  test("open errors carry the errno name and a hint", () => {
    ctl.script(DOUBLE_SCRIPT.OPEN_FAILS, 0, 0, ERRNO.EACCES, 1);
    const e = errorOf(() => KfdDevice.open(sys));
    expect(e.op).toBe("open /dev/kfd");
    expect(e.errnoName).toBe("EACCES");
    expect(e.hint).toContain("render");
    const missing = errorOf(() => KfdDevice.open(sys, "/dev/nokfd"));
    expect(missing.errnoName).toBe("ENOENT");
  });

  test("ioctls newer than the reported minor are refused before the call", () => {
    ctl.reset(GPUS, 4); // KFD 1.4: no SVM (1.5), no AVAILABLE_MEMORY (1.9)
    using dev = KfdDevice.open(sys);
    expect(dev.supports("SVM")).toBe(false);
    expect(dev.supports("SMI_EVENTS")).toBe(true);
    const calls = ctl.ioctlCalls();
    const e = errorOf(() => dev.svmSetAttr(0x10000, 0x1000, []));
    expect(e.op).toBe("SVM");
    expect(e.errnoName).toBe("ENOTTY");
    expect(e.hint).toContain("1.5");
    expect(errorOf(() => dev.availableMemory(gpu[0]!)).hint).toContain("1.9");
    expect(ctl.ioctlCalls()).toBe(calls);
  });
});

describe("memory ioctls", () => {
  test("apertures of every GPU", () => {
    using dev = KfdDevice.open(sys);
    const ap = dev.getProcessApertures();
    expect(ap.map((a) => a.gpuId)).toEqual(gpu);
    expect(ap[0]).toEqual({
      gpuId: gpu[0]!,
      ldsBase: 0x1000000000000n,
      ldsLimit: 0x1000000000000n + 0xffffffffn,
      scratchBase: 0x2000000000000n,
      scratchLimit: 0x2000000000000n + 0xffffffffn,
      gpuvmBase: 0x1000000n,
      gpuvmLimit: 0x7fffffffffffn,
    });
  });

  test("alloc decodes the handle; available memory follows; free of unknown handle is EINVAL", () => {
    using dev = KfdDevice.open(sys);
    expect(dev.availableMemory(gpu[1]!)).toBe(VRAM_BYTES);
    const a = dev.allocMemoryOfGpu({ vaAddr: 0x7f0000000000n, size_bytes: 2 * MIB, gpuId: gpu[1]!, flags: VRAM_WRITABLE });
    expect(a.handle).toBe((BigInt(gpu[1]!) << 32n) | 1n);
    expect(a.mmapOffset).toBe(0x1000n);
    expect(dev.availableMemory(gpu[1]!)).toBe(VRAM_BYTES - 2 * MIB);
    dev.freeMemoryOfGpu(a.handle);
    expect(dev.availableMemory(gpu[1]!)).toBe(VRAM_BYTES);
    const e = errorOf(() => dev.freeMemoryOfGpu(a.handle));
    expect([e.op, e.errnoName, e.errno]).toEqual(["FREE_MEMORY_OF_GPU", "EINVAL", 22]);
  });

  test("misaligned size, unknown gpu and too much VRAM are refused by the driver", () => {
    using dev = KfdDevice.open(sys);
    expect(errorOf(() => dev.allocMemoryOfGpu({ vaAddr: 0, size_bytes: 100, gpuId: gpu[0]!, flags: VRAM_WRITABLE })).errnoName).toBe("EINVAL");
    expect(errorOf(() => dev.allocMemoryOfGpu({ vaAddr: 0, size_bytes: 4096, gpuId: 7, flags: VRAM_WRITABLE })).errnoName).toBe("EINVAL");
    const big = errorOf(() => dev.allocMemoryOfGpu({ vaAddr: 0, size_bytes: 2 * VRAM_BYTES, gpuId: gpu[0]!, flags: VRAM_WRITABLE }));
    expect(big.errnoName).toBe("ENOMEM");
  });

  test("acquire VM: same fd again is fine, another fd is EBUSY", () => {
    using dev = KfdDevice.open(sys);
    dev.acquireVm(gpu[0]!, 17);
    dev.acquireVm(gpu[0]!, 17);
    expect(errorOf(() => dev.acquireVm(gpu[0]!, 18)).errnoName).toBe("EBUSY");
  });

  test("xnack mode: query, set, query", () => {
    using dev = KfdDevice.open(sys);
    expect(dev.setXnackMode("query")).toBe(false);
    expect(dev.setXnackMode(true)).toBe(true);
    expect(dev.setXnackMode("query")).toBe(true);
  });
});

describe("multi-GPU map and unmap (n_success protocol)", () => {
  function allocated(dev: KfdDevice): bigint {
    return dev.allocMemoryOfGpu({ vaAddr: 0x7f0000000000n, size_bytes: 2 * MIB, gpuId: gpu[0]!, flags: VRAM_WRITABLE }).handle;
  }

  test("8-GPU map through the device id array; free while mapped is EBUSY", () => {
    using dev = KfdDevice.open(sys);
    const h = allocated(dev);
    dev.mapMemoryToGpu(h, gpu);
    expect(gpu.map((g) => ctl.isMapped(h, g))).toEqual(Array(GPUS).fill(1));
    expect(errorOf(() => dev.freeMemoryOfGpu(h)).errnoName).toBe("EBUSY");
    dev.unmapMemoryFromGpu(h, gpu);
    expect(gpu.map((g) => ctl.isMapped(h, g))).toEqual(Array(GPUS).fill(0));
    dev.freeMemoryOfGpu(h);
  });

  test("EINTR resumes from n_success: every device mapped exactly once", () => {
    using dev = KfdDevice.open(sys);
    const h = allocated(dev);
    ctl.script(DOUBLE_SCRIPT.EINTR_AFTER, NR_MAP, 3, 0, 2); // 3 devices, EINTR; 3 more, EINTR
    const calls = ctl.ioctlCalls();
    dev.mapMemoryToGpu(h, gpu);
    expect(ctl.ioctlCalls() - calls).toBe(3);
    expect(gpu.map((g) => ctl.mapRequests(h, g))).toEqual(Array(GPUS).fill(1));
    expect(gpu.map((g) => ctl.isMapped(h, g))).toEqual(Array(GPUS).fill(1));
  });

  test("EINTR that never stops: bounded retries, then exactly which devices are mapped", () => {
    using dev = KfdDevice.open(sys);
    const h = allocated(dev);
    ctl.script(DOUBLE_SCRIPT.EINTR_AFTER, NR_MAP, 3, 0, 1); // first call: 3 devices, then EINTR
    ctl.script(DOUBLE_SCRIPT.EINTR_AFTER, NR_MAP, 0, 0, DOUBLE_SCRIPT_FOREVER); // then no progress
    const e = errorOf(() => dev.mapMemoryToGpu(h, gpu));
    expect(e).toBeInstanceOf(KfdPartialMapError);
    const p = e as KfdPartialMapError;
    expect(p.errnoName).toBe("EINTR");
    expect(p.attempts).toBe(MAP_EINTR_RETRIES_MAX + 1);
    expect(p.mappedGpuIds).toEqual(gpu.slice(0, 3));
    expect(p.unmappedGpuIds).toEqual(gpu.slice(3));
    expect(gpu.map((g) => ctl.isMapped(h, g))).toEqual([1, 1, 1, 0, 0, 0, 0, 0]);
    expect(gpu.map((g) => ctl.mapRequests(h, g))).toEqual([1, 1, 1, 0, 0, 0, 0, 0]);
  });

  test("device 5 fails with EIO: devices 0..4 mapped, 5..7 not; a retry maps 5..7 once", () => {
    using dev = KfdDevice.open(sys);
    const h = allocated(dev);
    ctl.script(DOUBLE_SCRIPT.DEVICE_FAILS, NR_MAP, 5, ERRNO.EIO, 1);
    const e = errorOf(() => dev.mapMemoryToGpu(h, gpu)) as KfdPartialMapError;
    expect(e).toBeInstanceOf(KfdPartialMapError);
    expect([e.op, e.errnoName, e.errno, e.attempts]).toEqual(["MAP_MEMORY_TO_GPU", "EIO", 5, 1]);
    expect(e.mappedGpuIds).toEqual(gpu.slice(0, 5));
    expect(e.unmappedGpuIds).toEqual(gpu.slice(5));
    expect(e.message).toContain("mapped on 5 of 8 devices");
    expect(gpu.map((g) => ctl.isMapped(h, g))).toEqual([1, 1, 1, 1, 1, 0, 0, 0]);
    dev.mapMemoryToGpu(h, e.unmappedGpuIds);
    expect(gpu.map((g) => ctl.mapRequests(h, g))).toEqual(Array(GPUS).fill(1));
  });

  test("unmap partial failure reports the devices still mapped", () => {
    using dev = KfdDevice.open(sys);
    const h = allocated(dev);
    dev.mapMemoryToGpu(h, gpu);
    ctl.script(DOUBLE_SCRIPT.DEVICE_FAILS, NR_UNMAP, 2, ERRNO.EIO, 1);
    const e = errorOf(() => dev.unmapMemoryFromGpu(h, gpu)) as KfdPartialMapError;
    expect(e.op).toBe("UNMAP_MEMORY_FROM_GPU");
    expect(e.unmappedGpuIds).toEqual(gpu.slice(0, 2));
    expect(e.mappedGpuIds).toEqual(gpu.slice(2));
    expect(gpu.map((g) => ctl.isMapped(h, g))).toEqual([0, 0, 1, 1, 1, 1, 1, 1]);
  });

  test("unknown handle, duplicate or empty device lists are EINVAL", () => {
    using dev = KfdDevice.open(sys);
    const h = allocated(dev);
    const unknown = errorOf(() => dev.mapMemoryToGpu(h + 1n, gpu)) as KfdPartialMapError;
    expect(unknown.errnoName).toBe("EINVAL");
    expect(unknown.mappedGpuIds).toEqual([]);
    const calls = ctl.ioctlCalls();
    expect(errorOf(() => dev.mapMemoryToGpu(h, [gpu[0]!, gpu[0]!])).hint).toContain("listed twice");
    expect(errorOf(() => dev.mapMemoryToGpu(h, [])).errnoName).toBe("EINVAL");
    expect(ctl.ioctlCalls()).toBe(calls);
  });
});

describe("SVM attributes through attrs[]", () => {
  const START = 0x7f0000000000;
  const SIZE = 16 * MIB;

  test("set then get: preferred, access, flags, granularity capped at 0x3f", () => {
    using dev = KfdDevice.open(sys);
    dev.svmSetAttr(START, SIZE, [
      { type: SVM_ATTR.PREFERRED_LOC, value: gpu[2]! },
      { type: SVM_ATTR.ACCESS, value: gpu[2]! },
      { type: SVM_ATTR.ACCESS_IN_PLACE, value: gpu[3]! },
      { type: SVM_ATTR.SET_FLAGS, value: SVM_FLAG_1_11.GPU_RO },
      { type: SVM_ATTR.GRANULARITY, value: 0x50 },
    ]);
    const got = dev.svmGetAttr(START, SIZE, [
      { type: SVM_ATTR.PREFERRED_LOC, value: 0 },
      { type: SVM_ATTR.PREFETCH_LOC, value: 0 },
      { type: SVM_ATTR.ACCESS, value: gpu[2]! },
      { type: SVM_ATTR.ACCESS, value: gpu[3]! },
      { type: SVM_ATTR.ACCESS, value: gpu[4]! },
      { type: SVM_ATTR.SET_FLAGS, value: 0 },
      { type: SVM_ATTR.GRANULARITY, value: 0 },
    ]);
    expect(got).toEqual([
      { type: SVM_ATTR.PREFERRED_LOC, value: gpu[2]! },
      { type: SVM_ATTR.PREFETCH_LOC, value: SVM_LOCATION.UNDEFINED },
      { type: SVM_ATTR.ACCESS, value: gpu[2]! },
      { type: SVM_ATTR.ACCESS_IN_PLACE, value: gpu[3]! },
      { type: SVM_ATTR.NO_ACCESS, value: gpu[4]! },
      { type: SVM_ATTR.SET_FLAGS, value: SVM_FLAG_1_11.HOST_ACCESS | SVM_FLAG_1_11.COHERENT | SVM_FLAG_1_11.GPU_RO },
      { type: SVM_ATTR.GRANULARITY, value: 0x3f },
    ]);
  });

  test("a partly overlapping set splits ranges; get over both reports UNDEFINED for differing locations", () => {
    using dev = KfdDevice.open(sys);
    dev.svmSetAttr(START, SIZE, [{ type: SVM_ATTR.PREFERRED_LOC, value: gpu[0]! }]);
    expect(ctl.rangeCount()).toBe(1);
    dev.svmSetAttr(START + SIZE / 2, SIZE, [{ type: SVM_ATTR.PREFERRED_LOC, value: gpu[1]! }]);
    expect(ctl.rangeCount()).toBe(3); // head, overlapped part, new gap range
    const [pref] = dev.svmGetAttr(START, 2 * SIZE, [{ type: SVM_ATTR.PREFERRED_LOC, value: 0 }]);
    expect(pref!.value).toBe(SVM_LOCATION.UNDEFINED);
    const [head] = dev.svmGetAttr(START, SIZE / 2, [{ type: SVM_ATTR.PREFERRED_LOC, value: 0 }]);
    expect(head!.value).toBe(gpu[0]!);
  });

  test("bigint and number addresses encode the same bytes, also above 2^53", () => {
    using dev = KfdDevice.open(sys);
    const attr = [{ type: SVM_ATTR.GRANULARITY, value: 4 }];
    dev.svmSetAttr(BigInt(START), BigInt(SIZE), attr);
    expect(ctl.rangeCount()).toBe(1);
    dev.svmSetAttr(START, SIZE, attr);
    expect(ctl.rangeCount()).toBe(1); // same range: same bytes
    const high = 0x7fff_ffff_f000_0000n; // beyond 2^53: only exact as bigint
    dev.svmSetAttr(high, 0x1000n, attr);
    expect(ctl.rangeCount()).toBe(2);
    expect(dev.svmGetAttr(high, 0x1000n, [{ type: SVM_ATTR.GRANULARITY, value: 0 }])).toEqual([{ type: SVM_ATTR.GRANULARITY, value: 4 }]);
    expect(errorOf(() => dev.svmSetAttr(START + 0.5, SIZE, attr)).hint).toContain("multiples of 4096");
    expect(errorOf(() => dev.svmSetAttr(-4096, SIZE, attr)).errnoName).toBe("EINVAL");
  });

  test("unknown attribute type, unknown gpu and misaligned ranges are EINVAL", () => {
    using dev = KfdDevice.open(sys);
    const e = errorOf(() => dev.svmSetAttr(START, SIZE, [{ type: 8, value: 0 }]));
    expect([e.op, e.errnoName]).toEqual(["SVM", "EINVAL"]);
    expect(errorOf(() => dev.svmSetAttr(START, SIZE, [{ type: SVM_ATTR.ACCESS, value: 0x42 }])).errnoName).toBe("EINVAL");
    const calls = ctl.ioctlCalls();
    expect(errorOf(() => dev.svmSetAttr(START + 1, SIZE, [])).errnoName).toBe("EINVAL");
    expect(ctl.ioctlCalls()).toBe(calls); // refused before the call
    expect(ctl.rangeCount()).toBe(0);
  });

  test("GET_ATTR queries as svm_range_get_attr takes them: values are outputs; ACCESS_IN_PLACE and NO_ACCESS are no queries", () => {
    using dev = KfdDevice.open(sys);
    dev.svmSetAttr(START, SIZE, [{ type: SVM_ATTR.PREFERRED_LOC, value: gpu[1]! }]);
    // A query's value is not checked (it is overwritten), whatever the caller left there.
    expect(dev.svmGetAttr(START, SIZE, [{ type: SVM_ATTR.PREFERRED_LOC, value: 0xdeadbeef }])).toEqual([{ type: SVM_ATTR.PREFERRED_LOC, value: gpu[1]! }]);
    for (const type of [SVM_ATTR.ACCESS_IN_PLACE, SVM_ATTR.NO_ACCESS, 99]) {
      expect(errorOf(() => dev.svmGetAttr(START, SIZE, [{ type, value: gpu[1]! }])).errnoName).toBe("EINVAL");
    }
    // An ACCESS query's gpu_id must be one of the process's GPUs.
    expect(errorOf(() => dev.svmGetAttr(START, SIZE, [{ type: SVM_ATTR.ACCESS, value: 0x42 }])).errnoName).toBe("EINVAL");
  });
});
