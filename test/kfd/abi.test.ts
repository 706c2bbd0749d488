import { describe, expect, test } from "bun:test";
import {
  ALLOC_MEM_FLAGS,
  IOCTL,
  KFD_IOCTL_MAJOR_VERSION,
  KFD_IOCTL_MINOR_VERSION,
  MIGRATE_TRIGGER,
  QUEUE_EVICTION_TRIGGER,
  SMI_EVENT,
  SMI_EVENT_MSG_SIZE_bytes,
  STRUCTS,
  SVM_ATTR,
  SVM_FLAG_1_11,
  SVM_LOCATION,
  SVM_OP,
  SVM_UNMAP_TRIGGER,
  abiDescribe,
  ioctlEncode,
  smiEventMaskFromIndex,
  structDecode,
  structEncode,
} from "../../runtime/kfd/uapi.ts";
import { nativeBuild } from "../native/compile.ts";

function probeRun(...args: string[]): unknown {
  const exe = nativeBuild({ source: "kfd_abi_probe.c", shared: false });
  const r = Bun.spawnSync([exe, ...args], { stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`probe failed: ${r.stderr.toString()}`);
  return JSON.parse(r.stdout.toString());
}

describe("ABI conformance with the system <linux/kfd_ioctl.h>", () => {
  test("every ioctl number, struct size and field offset equals the compiled header's", () => {
    expect(abiDescribe()).toEqual(probeRun() as ReturnType<typeof abiDescribe>);
  });

  test("every constant equals the header's", () => {
    const header = probeRun("constants") as Record<string, number>;
    const ours: Record<string, number> = {
      KFD_IOCTL_MAJOR_VERSION,
      KFD_IOCTL_MINOR_VERSION,
      KFD_SMI_EVENT_MSG_SIZE: SMI_EVENT_MSG_SIZE_bytes,
    };
    for (const [k, v] of Object.entries(ALLOC_MEM_FLAGS)) ours[`KFD_IOC_ALLOC_MEM_FLAGS_${k}`] = v;
    for (const [k, v] of Object.entries(SVM_OP)) ours[`KFD_IOCTL_SVM_OP_${k}`] = v;
    for (const [k, v] of Object.entries(SVM_LOCATION)) ours[`KFD_IOCTL_SVM_LOCATION_${k}`] = v;
    for (const [k, v] of Object.entries(SVM_ATTR)) ours[`KFD_IOCTL_SVM_ATTR_${k}`] = v;
    for (const [k, v] of Object.entries(SVM_FLAG_1_11)) ours[`KFD_IOCTL_SVM_FLAG_${k}`] = v;
    for (const [k, v] of Object.entries(SMI_EVENT)) {
      // PROCESS_START/END are newer than 1.11: not in this header.
      if (k !== "PROCESS_START" && k !== "PROCESS_END") ours[`KFD_SMI_EVENT_${k}`] = v;
    }
    for (const [k, v] of Object.entries(MIGRATE_TRIGGER)) ours[`KFD_MIGRATE_TRIGGER_${k}`] = v;
    for (const [k, v] of Object.entries(QUEUE_EVICTION_TRIGGER)) {
      ours[k.startsWith("CRIU") ? `KFD_QUEUE_EVICTION_${k}` : `KFD_QUEUE_EVICTION_TRIGGER_${k}`] = v;
    }
    for (const [k, v] of Object.entries(SVM_UNMAP_TRIGGER)) ours[`KFD_SVM_UNMAP_TRIGGER_${k}`] = v;
    expect(ours).toEqual(header);
  });
});

describe("ioctl encoding", () => {
  test("SVM is 0xc0184b20, as checked on this machine (kfd-uapi.md)", () => {
    expect(IOCTL.SVM).toBe(0xc0184b20);
    expect(ioctlEncode("WR", 0x20, 24)).toBe(0xc0184b20);
  });
  test("direction comes from the header, not IOWR for all", () => {
    expect(IOCTL.GET_VERSION).toBe(0x80084b01); // IOR
    expect(IOCTL.ACQUIRE_VM).toBe(0x40084b15); // IOW
    expect(IOCTL.FREE_MEMORY_OF_GPU).toBe(0x40084b17); // IOW
    expect(IOCTL.MAP_MEMORY_TO_GPU).toBe(0xc0184b18); // IOWR
  });
  test("out-of-range nr or size is refused", () => {
    expect(() => ioctlEncode("R", 256, 8)).toThrow(RangeError);
    expect(() => ioctlEncode("R", 1, 1 << 14)).toThrow(RangeError);
  });
});

describe("encode / decode over DataView, little endian", () => {
  test("alloc_memory_of_gpu_args round trip, byte exact", () => {
    const buf = new Uint8Array(STRUCTS.alloc_memory_of_gpu_args.size);
    const view = new DataView(buf.buffer);
    structEncode(
      "alloc_memory_of_gpu_args",
      { va_addr: 0x7f00_0000_0000n, size: 0x20_0000n, gpu_id: 0x3fe1, flags: (ALLOC_MEM_FLAGS.VRAM | ALLOC_MEM_FLAGS.WRITABLE) >>> 0 },
      view,
    );
    expect(Array.from(buf.subarray(0, 8))).toEqual([0, 0, 0, 0, 0, 0x7f, 0, 0]);
    expect(Array.from(buf.subarray(32, 40))).toEqual([0xe1, 0x3f, 0, 0, 1, 0, 0, 0x80]);
    expect(structDecode("alloc_memory_of_gpu_args", view)).toEqual({
      va_addr: 0x7f00_0000_0000n,
      size: 0x20_0000n,
      handle: 0n,
      mmap_offset: 0n,
      gpu_id: 0x3fe1,
      flags: 0x80000001,
    });
  });
  test("s32 keeps its sign; out-of-range values are refused", () => {
    const view = new DataView(new ArrayBuffer(4));
    structEncode("set_xnack_mode_args", { xnack_enabled: -1 }, view);
    expect(view.getUint32(0, true)).toBe(0xffffffff);
    expect(structDecode("set_xnack_mode_args", view)).toEqual({ xnack_enabled: -1 });
    expect(() => structEncode("acquire_vm_args", { gpu_id: 2 ** 32 }, view)).toThrow(RangeError);
  });
  test("the flexible attrs[] is not a scalar field", () => {
    const view = new DataView(new ArrayBuffer(32));
    expect(() => structEncode("svm_args", { attrs: 1 } as never, view)).toThrow(RangeError);
    expect(Object.keys(structDecode("svm_args", view))).toEqual(["start_addr", "size", "op", "nattr"]);
  });
  test("SMI event mask: bit i-1 for event i", () => {
    expect(smiEventMaskFromIndex(SMI_EVENT.VMFAULT)).toBe(1n);
    expect(smiEventMaskFromIndex(SMI_EVENT.MIGRATE_START)).toBe(0x10n);
    expect(smiEventMaskFromIndex(SMI_EVENT.ALL_PROCESS)).toBe(0x8000_0000_0000_0000n);
    expect(() => smiEventMaskFromIndex(0)).toThrow(RangeError);
  });
});
