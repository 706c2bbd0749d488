/**
 * bun:ffi binding of the control surface of the KFD C TEST DOUBLE (test/native/kfd_double.c):
 * reset, failure script, SMI event injection, inspection and the C benchmark loop. Tests and
 * bench/kfd.ts use it; the double's libc-compatible entry points themselves are loaded by
 * `syscallsOpen(path, KFD_DOUBLE_SYMBOLS)` exactly like libc. Never used on a GPU host.
 */
import { dlopen, FFIType } from "bun:ffi";
import type { SyscallSymbols } from "./libc.ts";

/** The double's libc-compatible entry points, for syscallsOpen. */
export const KFD_DOUBLE_SYMBOLS: SyscallSymbols = {
  open: "kfd_double_open",
  close: "kfd_double_close",
  ioctl: "kfd_double_ioctl",
  read: "kfd_double_read",
  write: "kfd_double_write",
  poll: "kfd_double_poll",
};

/** Failure script kinds (enum script_kind in kfd_double.c). */
export const DOUBLE_SCRIPT = {
  /** map/unmap (nr) of device array index k fails with err. */
  DEVICE_FAILS: 1,
  /** map/unmap (nr) returns EINTR after k devices of one call. */
  EINTR_AFTER: 2,
  /** ioctl nr fails with err before doing anything. */
  IOCTL_FAILS: 3,
  /** open fails with err (nr 0). */
  OPEN_FAILS: 4,
} as const;
/** `times` value for a script that never runs out. */
export const DOUBLE_SCRIPT_FOREVER = 0xffffffff;

/** Benchmark kinds of kfd_double_bench_loop. */
export const DOUBLE_BENCH = { SVM_SET_ATTR: 1, MAP_UNMAP: 2 } as const;

export interface KfdDoubleControl extends Disposable {
  reset(nGpus: number, versionMinor: number): void;
  gpuId(index: number): number;
  script(kind: number, nr: number, k: number, err: number, times: number): void;
  scriptClear(): void;
  isMapped(handle: bigint, gpuId: number): number;
  mapRequests(handle: bigint, gpuId: number): number;
  rangeCount(): number;
  ioctlCalls(): number;
  /** Deliver bytes to the SMI clients of gpuId; `filter` applies their event masks. */
  smiPush(gpuId: number, bytes: Uint8Array, filter: boolean): number;
  smiReadLimit(max_bytes: number): void;
  smiMask(fd: number): bigint;
  smiDropped(gpuId: number): number;
  /** ns for `iterations` calls made by the C loop, or -errno. */
  benchLoop(kind: number, iterations: number, startOrHandle: bigint | number, size: bigint | number): number;
  unload(): void;
}

/** Load the control surface of the double built at `path`. @throws Error from dlopen. */
export function kfdDoubleControlOpen(path: string): KfdDoubleControl {
  const lib = dlopen(path, {
    kfd_double_reset: { args: [FFIType.u32, FFIType.u32], returns: FFIType.i32 },
    kfd_double_gpu_id: { args: [FFIType.u32], returns: FFIType.u32 },
    kfd_double_script: {
      args: [FFIType.u32, FFIType.u32, FFIType.u32, FFIType.i32, FFIType.u32],
      returns: FFIType.i32,
    },
    kfd_double_script_clear: { args: [], returns: FFIType.void },
    kfd_double_is_mapped: { args: [FFIType.u64, FFIType.u32], returns: FFIType.i32 },
    kfd_double_map_requests: { args: [FFIType.u64, FFIType.u32], returns: FFIType.i32 },
    kfd_double_range_count: { args: [], returns: FFIType.u32 },
    kfd_double_ioctl_calls: { args: [], returns: FFIType.u64_fast },
    kfd_double_smi_push: { args: [FFIType.u32, FFIType.ptr, FFIType.u32, FFIType.i32], returns: FFIType.i32 },
    kfd_double_smi_read_limit: { args: [FFIType.u32], returns: FFIType.void },
    kfd_double_smi_mask: { args: [FFIType.i32], returns: FFIType.u64 },
    kfd_double_smi_dropped: { args: [FFIType.u32], returns: FFIType.u32 },
    kfd_double_bench_loop: { args: [FFIType.u32, FFIType.u32, FFIType.u64, FFIType.u64], returns: FFIType.i64_fast },
  });
  const s = lib.symbols;
  let loaded = true;
  const unload = (): void => {
    if (!loaded) return;
    loaded = false;
    lib.close();
  };
  return {
    reset(nGpus, versionMinor) {
      if (s.kfd_double_reset(nGpus, versionMinor) !== 0) throw new Error(`kfd_double_reset(${nGpus}) failed`);
    },
    gpuId: (i) => s.kfd_double_gpu_id(i),
    script(kind, nr, k, err, times) {
      if (s.kfd_double_script(kind, nr, k, err, times) !== 0) throw new Error("kfd_double_script: no free slot");
    },
    scriptClear: () => s.kfd_double_script_clear(),
    isMapped: (h, g) => s.kfd_double_is_mapped(h, g),
    mapRequests: (h, g) => s.kfd_double_map_requests(h, g),
    rangeCount: () => s.kfd_double_range_count(),
    ioctlCalls: () => Number(s.kfd_double_ioctl_calls()),
    smiPush: (g, bytes, filter) => s.kfd_double_smi_push(g, bytes, bytes.byteLength, filter ? 1 : 0),
    smiReadLimit: (n) => s.kfd_double_smi_read_limit(n),
    smiMask: (fd) => BigInt(s.kfd_double_smi_mask(fd)),
    smiDropped: (g) => s.kfd_double_smi_dropped(g),
    benchLoop: (kind, it, a, b) => Number(s.kfd_double_bench_loop(kind, it, a, b)),
    unload,
    [Symbol.dispose]: unload,
  };
}
