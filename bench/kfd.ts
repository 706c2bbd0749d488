/**
 * bench/kfd.ts: cost of the KFD binding over bun:ffi, against the same ioctls issued by a C
 * loop inside the C test double (kfd_double_bench_loop), in one run. Prints JSON.
 *
 *   bun bench/kfd.ts
 *
 * Measured: one SVM SET_ATTR (2 attributes) and one 8-GPU MAP + UNMAP pair, each through
 * KfdDevice -> Syscalls -> bun:ffi -> kfd_double_ioctl, and through C -> kfd_double_ioctl.
 * Both paths run the double's full decode/validate/store work; the difference is the
 * binding's overhead (argument encoding, the FFI call, result decoding). Median of
 * BENCH_REPETITIONS runs of BENCH_ITERATIONS calls each. Target: ratio <= 2.
 */
import { DOUBLE_BENCH, KFD_DOUBLE_SYMBOLS, kfdDoubleControlOpen } from "../runtime/ffi/kfd-double.ts";
import { syscallsOpen } from "../runtime/ffi/libc.ts";
import { KfdDevice } from "../runtime/kfd/device.ts";
import { ALLOC_MEM_FLAGS, SVM_ATTR } from "../runtime/kfd/uapi.ts";
import { nativeBuild } from "../test/native/compile.ts";

/** Calls per timed run. */
const BENCH_ITERATIONS = 20_000;
/** Timed runs per measurement; the median is reported. */
const BENCH_REPETITIONS = 9;
/** Untimed calls first, so the JIT has compiled the JS path. */
const BENCH_WARMUP_ITERATIONS = 20_000;
const GPUS = 8;
const TARGET_RATIO = 2;
const SVM_START = 0x7f00_0000_0000;
const SVM_SIZE_bytes = 2 * 1024 * 1024;

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
};

const path = nativeBuild({ source: "kfd_double.c", shared: true });
using sys = syscallsOpen(path, KFD_DOUBLE_SYMBOLS);
using ctl = kfdDoubleControlOpen(path);
ctl.reset(GPUS, 11);
using dev = KfdDevice.open(sys);
const gpus = Array.from({ length: GPUS }, (_, i) => ctl.gpuId(i));

const attrs = [
  { type: SVM_ATTR.PREFERRED_LOC, value: gpus[0]! },
  { type: SVM_ATTR.ACCESS, value: gpus[0]! },
];
const svmJs = (n: number): void => {
  for (let i = 0; i < n; i++) dev.svmSetAttr(SVM_START, SVM_SIZE_bytes, attrs);
};
const { handle } = dev.allocMemoryOfGpu({
  vaAddr: 0x7e00_0000_0000,
  size_bytes: SVM_SIZE_bytes,
  gpuId: gpus[0]!,
  flags: (ALLOC_MEM_FLAGS.VRAM | ALLOC_MEM_FLAGS.WRITABLE) >>> 0,
});
const mapJs = (n: number): void => {
  for (let i = 0; i < n; i++) {
    dev.mapMemoryToGpu(handle, gpus);
    dev.unmapMemoryFromGpu(handle, gpus);
  }
};

interface Measured {
  binding_ns_per_call: number;
  c_loop_ns_per_call: number;
  ratio: number;
  within_target: boolean;
}

function measure(js: (n: number) => void, cKind: number, a: number | bigint, b: number | bigint): Measured {
  js(BENCH_WARMUP_ITERATIONS);
  if (ctl.benchLoop(cKind, BENCH_WARMUP_ITERATIONS, a, b) < 0) throw new Error("C bench loop failed");
  const jsNs: number[] = [];
  const cNs: number[] = [];
  for (let r = 0; r < BENCH_REPETITIONS; r++) {
    const t0 = Bun.nanoseconds();
    js(BENCH_ITERATIONS);
    jsNs.push((Bun.nanoseconds() - t0) / BENCH_ITERATIONS);
    const c = ctl.benchLoop(cKind, BENCH_ITERATIONS, a, b);
    if (c < 0) throw new Error("C bench loop failed");
    cNs.push(c / BENCH_ITERATIONS);
  }
  const binding = median(jsNs);
  const cLoop = median(cNs);
  const ratio = binding / cLoop;
  return {
    binding_ns_per_call: Math.round(binding * 10) / 10,
    c_loop_ns_per_call: Math.round(cLoop * 10) / 10,
    ratio: Math.round(ratio * 100) / 100,
    within_target: ratio <= TARGET_RATIO,
  };
}

const result = {
  bench: "kfd-binding-vs-c",
  bun: Bun.version,
  iterations: BENCH_ITERATIONS,
  repetitions: BENCH_REPETITIONS,
  statistic: "median",
  target_ratio_max: TARGET_RATIO,
  svm_set_attr_2_attrs: measure(svmJs, DOUBLE_BENCH.SVM_SET_ATTR, SVM_START, SVM_SIZE_bytes),
  map_unmap_8_gpus_pair: measure(mapJs, DOUBLE_BENCH.MAP_UNMAP, handle, GPUS),
};
console.log(JSON.stringify(result, null, 2));
