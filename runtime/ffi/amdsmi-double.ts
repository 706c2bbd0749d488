/**
 * bun:ffi binding of the control surface of the amdsmi C TEST DOUBLE
 * (test/native/amdsmi_double.c): configuration, failures, delays, event injection and
 * counters. The double's amdsmi entry points themselves are loaded by amdsmiOpen({ path })
 * exactly like libamd_smi; both dlopens of one path share the double's state. Tests and
 * benchmarks use it; never used on a GPU host.
 *
 * Configuration is a JSON file the double parses itself (a strict subset: integers only,
 * u64 values may be strings such as "0x..."), given by configLoad(path) or, for a child
 * process, by the environment variable AMDSMI_DOUBLE_CONFIG read when the double loads.
 * amdsmiDoubleConfigText writes one from an AmdsmiDoubleConfig.
 */
import { dlopen, FFIType } from "bun:ffi";

/** Environment variable the double reads its configuration path from when it loads. */
export const AMDSMI_DOUBLE_CONFIG_ENV = "AMDSMI_DOUBLE_CONFIG";
/** `times` of a failure that never runs out. */
export const AMDSMI_DOUBLE_FOREVER = 0xffffffff;
/** The layouts the double is built as (-DAMDSMI_DOUBLE_LAYOUT=...). */
export const AMDSMI_DOUBLE_LAYOUTS = [24, 25, 26] as const;
export type AmdsmiDoubleLayout = (typeof AMDSMI_DOUBLE_LAYOUTS)[number];

/** One GPU of the double. Readings left out read as unsupported (see amdsmi_double.c). */
export interface AmdsmiDoubleGpu {
  uuid: string;
  /** "dddd:bb:dd.f". */
  bdf: string;
  model?: string;
  serial?: string;
  market_name?: string;
  /** Board product name; defaults to market_name. */
  product_name?: string;
  compute_partition?: string;
  memory_partition?: string;
  kfd_gpu_id?: number;
  partition_id?: number;
  hive_id?: bigint | number;
  node_id?: bigint | number;
  xgmi_index?: number;
  xgmi_lanes?: number;
  vram_total?: number;
  vram_used?: number;
  vis_vram_total?: number;
  vis_vram_used?: number;
  gtt_total?: number;
  gtt_used?: number;
  /** Integer °C; the double answers millidegrees (24, 25) or degrees (26). */
  temp_edge_c?: number;
  temp_junction_c?: number;
  temp_vram_c?: number;
  power_socket_w?: number;
  power_average_w?: number;
  power_limit_w?: number;
  gfx_activity?: number;
  umc_activity?: number;
  mm_activity?: number;
  pcie_width?: number;
  pcie_speed_mts?: number;
  pcie_bandwidth_mbs?: number;
  pcie_replay_count?: number;
  ecc_correctable?: number;
  ecc_uncorrectable?: number;
  ecc_deferred?: number;
  virtualization_mode?: "unknown" | "baremetal" | "host" | "guest" | "passthrough";
}

/** A scripted failure: amdsmi function `fn` returns `status` for GPU index `gpu` (-1 any), `times` times. */
export interface AmdsmiDoubleFailure {
  fn: string;
  gpu?: number;
  status: number;
  times?: number;
}

/** A scripted delay: `fn` sleeps `ms` for GPU index `gpu` (-1 any). */
export interface AmdsmiDoubleDelay {
  fn: string;
  gpu?: number;
  ms: number;
}

export interface AmdsmiDoubleConfig {
  /** Opened O_RDONLY while the double is initialised (a stand-in for /dev/gim-smi0). */
  device_file?: string;
  gpus: AmdsmiDoubleGpu[];
  failures?: AmdsmiDoubleFailure[];
  delays?: AmdsmiDoubleDelay[];
}

/** The double's configuration file text for `config` (bigints written as decimal strings). */
export function amdsmiDoubleConfigText(config: AmdsmiDoubleConfig): string {
  return JSON.stringify(config, (_k, v) => (typeof v === "bigint" ? v.toString() : v), 2);
}

/** Counters of the double (amdsmi_double_counter). */
export const AMDSMI_DOUBLE_COUNTERS = [
  /** Every call of an amdsmi entry point. */
  "calls",
  /** Device calls (all but init, shut_down, get_lib_version, status_code_to_string) while not initialised. */
  "calls_uninit",
  "init_calls",
  "init_ok",
  "init_failed",
  "shutdown_calls",
  "shutdown_ok",
  /** 0 → initialised transitions. */
  "real_inits",
  /** initialised → 0 transitions (the device file closes). */
  "real_shutdowns",
  "events_delivered",
  "events_filtered",
  "refcount",
  /** 1 while initialised. */
  "initialised",
  /** Init cycles so far (never reset: handles of a former cycle stay stale). */
  "generation",
  "gpus",
  "events_queued",
] as const;
export type AmdsmiDoubleCounter = (typeof AMDSMI_DOUBLE_COUNTERS)[number];

export interface AmdsmiDoubleControl extends Disposable {
  readonly path: string;
  /** The layout the double was built as. */
  layout(): AmdsmiDoubleLayout;
  /** Tear down if initialised, forget configuration, scripts, events and counters. */
  reset(): void;
  /** Replace the configuration. @throws Error with the double's reason (also while initialised). */
  configLoad(path: string): void;
  /** @throws Error for an unknown function name or when the 16 slots are full. */
  fail(fn: string, gpu: number, status: number, times?: number): void;
  /** @throws Error for an unknown function name or when the 16 slots are full. */
  delay(fn: string, gpu: number, ms: number): void;
  scriptsClear(): void;
  /**
   * Raise event `type` with `message` on GPU index `gpu`; true when queued (its notification is
   * started and the mask enables the type), false when filtered.
   * @throws Error when not initialised, the GPU index is out of range or the queue is full.
   */
  eventPush(gpu: number, type: number, message: string): boolean;
  counter(name: AmdsmiDoubleCounter): number;
  /** Calls made to the amdsmi function `fn`. @throws Error for an unknown name. */
  fnCalls(fn: string): number;
  /** The device file descriptor held while initialised, or -1. */
  deviceFd(): number;
  unload(): void;
}

/** Load the control surface of the double built at `path`. @throws Error from dlopen. */
export function amdsmiDoubleControlOpen(path: string): AmdsmiDoubleControl {
  const lib = dlopen(path, {
    amdsmi_double_layout: { args: [], returns: FFIType.i32 },
    amdsmi_double_reset: { args: [], returns: FFIType.void },
    amdsmi_double_config_load: { args: [FFIType.cstring], returns: FFIType.i32 },
    amdsmi_double_last_error: { args: [], returns: FFIType.cstring },
    amdsmi_double_fail: { args: [FFIType.cstring, FFIType.i32, FFIType.u32, FFIType.u32], returns: FFIType.i32 },
    amdsmi_double_delay: { args: [FFIType.cstring, FFIType.i32, FFIType.u32], returns: FFIType.i32 },
    amdsmi_double_scripts_clear: { args: [], returns: FFIType.void },
    amdsmi_double_event_push: { args: [FFIType.u32, FFIType.u32, FFIType.cstring], returns: FFIType.i32 },
    amdsmi_double_counter: { args: [FFIType.cstring], returns: FFIType.u64 },
    amdsmi_double_fn_calls: { args: [FFIType.cstring], returns: FFIType.u64 },
    amdsmi_double_device_fd: { args: [], returns: FFIType.i32 },
  });
  const s = lib.symbols;
  let loaded = true;
  const unload = (): void => {
    if (!loaded) return;
    loaded = false;
    lib.close();
  };
  const u64 = (v: bigint, what: string): number => {
    if (v === 0xffffffffffffffffn) throw new Error(`amdsmi double: unknown ${what}`);
    return Number(v);
  };
  return {
    path,
    layout: () => s.amdsmi_double_layout() as AmdsmiDoubleLayout,
    reset: () => s.amdsmi_double_reset(),
    configLoad(p) {
      if (s.amdsmi_double_config_load(p) !== 0) throw new Error(`amdsmi double: ${s.amdsmi_double_last_error()}`);
    },
    fail(fn, gpu, status, times = AMDSMI_DOUBLE_FOREVER) {
      if (s.amdsmi_double_fail(fn, gpu, status, times) !== 0) throw new Error(`amdsmi double: cannot script ${fn} (unknown function or no free slot)`);
    },
    delay(fn, gpu, ms) {
      if (s.amdsmi_double_delay(fn, gpu, ms) !== 0) throw new Error(`amdsmi double: cannot delay ${fn} (unknown function or no free slot)`);
    },
    scriptsClear: () => s.amdsmi_double_scripts_clear(),
    eventPush(gpu, type, message) {
      const r = s.amdsmi_double_event_push(gpu, type, message);
      if (r < 0) throw new Error(`amdsmi double: cannot raise event ${type} on GPU ${gpu} (not initialised, no such GPU, or queue full)`);
      return r === 1;
    },
    counter: (name) => u64(s.amdsmi_double_counter(name), `counter ${name}`),
    fnCalls: (fn) => u64(s.amdsmi_double_fn_calls(fn), `function ${fn}`),
    deviceFd: () => s.amdsmi_double_device_fd(),
    unload,
    [Symbol.dispose]: unload,
  };
}
