/**
 * librocm_smi64 (ROCm SMI, amdsmi's predecessor, still shipped; Debian's librocm-smi64-1
 * 5.2.3) over bun:ffi, behind the SmiLibrary interface (runtime/smi/library.ts). Signatures,
 * enums and struct layouts are those of rocm_smi/rocm_smi.h 5.2 (reference/amdsmi.md, "ROCm
 * SMI"); layouts are natural x86-64 alignment.
 *
 * Loading: the first of `opts.path`, `$SVMRT_ROCM_SMI_LIB` is the only candidate when given
 * (an explicit choice never silently falls back to another library); otherwise
 * ROCM_SMI_LIB_CANDIDATES in order. A candidate loads when every core entry point resolves;
 * each optional entry point is then probed alone, and one that is absent degrades only its
 * method to SmiError(fn, "NOT_SUPPORTED", 2, "symbol absent ...") and is listed in
 * `info.missingOptional`.
 *
 * Statuses: an own table of rsmi_status_t (RSMI_STATUS, numbered as in the header, which
 * differs from amdsmi's: INIT_ERROR is 8 here, 18 there); an SmiError carries the name without
 * the `RSMI_STATUS_` prefix and the library's `rsmi_status_string` text as detail. On a host
 * without the amdgpu driver / KFD, `rsmi_init` answers INIT_ERROR (8) and prints "Failed to
 * open drm root directory ..." / "Exception caught: rsmi_init." on stderr (the library's own
 * noise, not ours); the CLI maps that SmiError to exit 5 (no device, cli/exit.ts).
 *
 * Handles are device indices (0..rsmi_num_monitor_devices-1) as bigint, valid within one init
 * cycle; callers re-resolve them by UUID in every session. The library itself dereferences
 * internal state unchecked in some calls made before a successful init
 * (rsmi_dev_temp_metric_get segfaults in 5.2.3), so every device call first checks the index
 * against `rsmi_num_monitor_devices` (0 while not initialised) and answers INVALID_ARGS
 * itself, as the library does for an index it does not know. That check and the call are two
 * steps: a shutdown by another thread in between is excluded by the session manager, which
 * never shuts down while a session is open.
 *
 * Identity: rocm-smi 5.2 has no UUID text. `uuid` is built exactly as amdsmi builds its own
 * (amdsmi_uuid_gen with function index 0xff): from the 64-bit unique id
 * (rsmi_dev_unique_id_get, the ASIC serial) and the PCI device id (rsmi_dev_id_get), laid out
 * `SSFFDDDD-0000-1000-80SS-SSSSSSSSSSSS` (see `amdsmiUuidText`), so a GPU keeps one key under
 * both libraries. A GPU without a unique id uses its BDF id as the serial (amdsmi does the
 * same where it has no serial). `kfdGpuId` comes from rsmi_dev_guid_get when the library has
 * it (ROCm 6+; absent from 5.2). `deploymentMode` is always "unknown": rocm-smi runs on bare
 * metal and in VMs alike and cannot tell them apart, so the mode never becomes known from this
 * library; a sampler that re-reads unknown values should re-read this one only rarely.
 *
 * Every call is synchronous and may block the calling thread as long as the library takes
 * (rsmi_event_notification_get up to its timeout): make them in Workers (DESIGN.md).
 */
import { CString, dlopen, FFIType } from "bun:ffi";
import { SmiError } from "../errors.ts";
import { sonameResolve } from "./soname.ts";
import {
  type MemoryKind,
  SMI_EVENTS_PER_READ_MAX,
  SMI_GPU_EVENT,
  type SmiActivity,
  type SmiEcc,
  type SmiGpuEvent,
  type SmiGpuEventName,
  type SmiGpuStatic,
  type SmiHandle,
  type SmiLibrary,
  type SmiLibraryInfo,
  type SmiLink,
  type SmiLinkType,
  type SmiMemory,
  type SmiPcie,
  type SmiPower,
  type SmiXgmi,
  type TemperatureSensor,
} from "../smi/library.ts";

/** Environment variable naming the library to load (like `--rocm-smi-lib PATH`). */
export const ROCM_SMI_LIB_ENV = "SVMRT_ROCM_SMI_LIB";
/** Where to look when no path is given, in order. */
export const ROCM_SMI_LIB_CANDIDATES = ["/opt/rocm/lib/librocm_smi64.so", "librocm_smi64.so.1", "librocm_smi64.so"] as const;
const INSTALL_HINT = `install librocm-smi64-1 or pass --rocm-smi-lib PATH / ${ROCM_SMI_LIB_ENV}`;

/** rsmi_status_t (rocm_smi.h 5.2). */
export const RSMI_STATUS = {
  SUCCESS: 0,
  INVALID_ARGS: 1,
  NOT_SUPPORTED: 2,
  FILE_ERROR: 3,
  PERMISSION: 4,
  OUT_OF_RESOURCES: 5,
  INTERNAL_EXCEPTION: 6,
  INPUT_OUT_OF_BOUNDS: 7,
  INIT_ERROR: 8,
  NOT_YET_IMPLEMENTED: 9,
  NOT_FOUND: 10,
  INSUFFICIENT_SIZE: 11,
  INTERRUPT: 12,
  UNEXPECTED_SIZE: 13,
  NO_DATA: 14,
  UNEXPECTED_DATA: 15,
  BUSY: 16,
  REFCOUNT_OVERFLOW: 17,
  UNKNOWN_ERROR: 0xffffffff,
} as const;
export type RsmiStatusName = keyof typeof RSMI_STATUS;
const RSMI_STATUS_NAMES = new Map<number, string>(Object.entries(RSMI_STATUS).map(([k, v]) => [v, k]));

/** Name of an rsmi_status_t number, without the RSMI_STATUS_ prefix ("STATUS_<n>" if unknown). */
export function rsmiStatusName(status: number): string {
  return RSMI_STATUS_NAMES.get(status >>> 0) ?? `STATUS_${status >>> 0}`;
}

/** rsmi_temperature_type_t of each sensor the interface names. */
export const RSMI_TEMP_TYPE: Record<TemperatureSensor, number> = { edge: 0, junction: 1, vram: 2 };
/** rsmi_temperature_metric_t RSMI_TEMP_CURRENT. */
export const RSMI_TEMP_CURRENT = 0;
/** rsmi_memory_type_t. */
export const RSMI_MEM_TYPE: Record<MemoryKind, number> = { vram: 0, vis_vram: 1, gtt: 2 };
/** RSMI_IO_LINK_TYPE. */
export const RSMI_IOLINK_TYPE = { UNDEFINED: 0, PCIEXPRESS: 1, XGMI: 2 } as const;
/** rsmi_gpu_block_t: every block with error counters, UMC (bit 0) to FUSE (bit 13). */
export const RSMI_GPU_BLOCKS: readonly bigint[] = Array.from({ length: 14 }, (_, i) => 1n << BigInt(i));
/** rsmi_evt_notification_type_t: VMFAULT 1 .. GPU_POST_RESET 4 (= KFD_SMI_EVENT_*). */
export const RSMI_EVT_NOTIF_LAST = 4;
/** Event mask bits rocm-smi knows (bit i-1 for event i); others are dropped, never passed on. */
export const RSMI_EVENT_MASK_KNOWN = (1n << BigInt(RSMI_EVT_NOTIF_LAST)) - 1n;

/** MAX_EVENT_NOTIFICATION_MSG_SIZE. */
export const RSMI_EVENT_MESSAGE_bytes = 64;
/** rsmi_evt_notification_data_t: {u32 dv_ind; u32 event; char message[64]}. */
export const RSMI_EVENT_DATA_bytes = 72;
/** rsmi_version_t: {u32 major, minor, patch; const char *build @16}. */
export const RSMI_VERSION_bytes = 24;
/** RSMI_MAX_NUM_FREQUENCIES. */
export const RSMI_MAX_NUM_FREQUENCIES = 32;
/** rsmi_pcie_bandwidth_t: {rsmi_frequencies_t transfer_rate (264 bytes); u32 lanes[32] @264}. */
export const RSMI_PCIE_BANDWIDTH_bytes = 392;
const PCIE_LANES_OFFSET_bytes = 264;
/** rsmi_error_count_t: {u64 correctable_err; u64 uncorrectable_err}. */
export const RSMI_ERROR_COUNT_bytes = 16;
/** Caller buffer for names, brands and serials. */
export const ROCM_SMI_STRING_bytes = 256;
/** Most devices enumerated (and searched by UUID). */
export const ROCM_SMI_DEVICES_MAX = 256;
/** Longest eventsRead wait accepted, ms. */
export const ROCM_SMI_EVENTS_WAIT_MAX_ms = 60_000;
/** Function index amdsmi puts in a whole-GPU UUID (amdsmi_uuid_gen's `fcn`). */
export const AMDSMI_UUID_FUNCTION_WHOLE_GPU = 0xff;
/** rsmi_dev_guid_get's "not supported" value. */
const GUID_UNSUPPORTED = 0xffff_ffff_ffff_ffffn;
const U32_MAX = 0xffff_ffff;

const { u32, u64, i32, ptr } = FFIType;

/** Entry points without which the library is not used. Present in every rocm-smi since ROCm 3. */
const CORE_SYMBOLS = {
  rsmi_init: { args: [u64], returns: u32 },
  rsmi_shut_down: { args: [], returns: u32 },
  rsmi_num_monitor_devices: { args: [ptr], returns: u32 },
  rsmi_status_string: { args: [u32, ptr], returns: u32 },
  rsmi_version_get: { args: [ptr], returns: u32 },
  rsmi_dev_id_get: { args: [u32, ptr], returns: u32 },
  rsmi_dev_pci_id_get: { args: [u32, ptr], returns: u32 },
  rsmi_dev_unique_id_get: { args: [u32, ptr], returns: u32 },
  rsmi_dev_name_get: { args: [u32, ptr, u64], returns: u32 },
  rsmi_dev_temp_metric_get: { args: [u32, u32, u32, ptr], returns: u32 },
  rsmi_dev_power_ave_get: { args: [u32, u32, ptr], returns: u32 },
  rsmi_dev_busy_percent_get: { args: [u32, ptr], returns: u32 },
  rsmi_dev_memory_usage_get: { args: [u32, u32, ptr], returns: u32 },
  rsmi_dev_memory_total_get: { args: [u32, u32, ptr], returns: u32 },
} as const;

/** Entry points each probed alone; a missing one degrades one feature. */
const OPTIONAL_SYMBOLS = {
  rsmi_dev_brand_get: { args: [u32, ptr, u32], returns: u32 },
  rsmi_dev_serial_number_get: { args: [u32, ptr, u32], returns: u32 },
  rsmi_dev_guid_get: { args: [u32, ptr], returns: u32 },
  rsmi_dev_power_cap_get: { args: [u32, u32, ptr], returns: u32 },
  rsmi_dev_current_socket_power_get: { args: [u32, ptr], returns: u32 },
  rsmi_dev_memory_busy_percent_get: { args: [u32, ptr], returns: u32 },
  rsmi_dev_xgmi_hive_id_get: { args: [u32, ptr], returns: u32 },
  rsmi_topo_get_link_type: { args: [u32, u32, ptr, ptr], returns: u32 },
  rsmi_dev_pci_bandwidth_get: { args: [u32, ptr], returns: u32 },
  rsmi_dev_pci_replay_counter_get: { args: [u32, ptr], returns: u32 },
  rsmi_dev_ecc_count_get: { args: [u32, u64, ptr], returns: u32 },
  rsmi_event_notification_init: { args: [u32], returns: u32 },
  rsmi_event_notification_mask_set: { args: [u32, u64], returns: u32 },
  rsmi_event_notification_get: { args: [i32, ptr, ptr], returns: u32 },
  rsmi_event_notification_stop: { args: [u32], returns: u32 },
} as const;
export type RocmSmiOptionalSymbol = keyof typeof OPTIONAL_SYMBOLS;
/** Names of the optional entry points, in probe order. */
export const ROCM_SMI_OPTIONAL_SYMBOLS = Object.keys(OPTIONAL_SYMBOLS) as RocmSmiOptionalSymbol[];

type Call = (...args: unknown[]) => number;

export interface RocmSmiOptions {
  /** Library to load; overrides $SVMRT_ROCM_SMI_LIB and the default candidates. */
  path?: string;
}

/**
 * The UUID text amdsmi makes for a GPU (amdsmi_uuid_gen): `serial` is the 64-bit ASIC serial
 * (unique id), `deviceId` the PCI device id, `fcn` the function/partition index (0xff: the
 * whole GPU). Layout: serial byte 7, fcn, device id; "0000"; version 1; variant 2 with serial
 * byte 6; serial bytes 5-4; serial bytes 3-0. E.g. serial 0x2efe9cea14a6b148, device 0x74a1 →
 * "2eff74a1-0000-1000-80fe-9cea14a6b148".
 */
export function amdsmiUuidText(serial: bigint, deviceId: number, fcn: number = AMDSMI_UUID_FUNCTION_WHOLE_GPU): string {
  const hex = (v: bigint | number, width: number): string => v.toString(16).padStart(width, "0");
  const s = BigInt.asUintN(64, serial);
  return (
    `${hex((s >> 56n) & 0xffn, 2)}${hex(fcn & 0xff, 2)}${hex(deviceId & 0xffff, 4)}-0000-1000-` +
    `80${hex((s >> 48n) & 0xffn, 2)}-${hex((s >> 32n) & 0xffffn, 4)}${hex(s & 0xffff_ffffn, 8)}`
  );
}

/** "dddd:bb:dd.f" of rocm-smi's BDF id: domain << 32 | bus << 8 | device << 3 | function. */
export function rsmiBdfText(bdfid: bigint): string {
  const domain = Number((bdfid >> 32n) & 0xffff_ffffn);
  const bus = Number((bdfid >> 8n) & 0xffn);
  const device = Number((bdfid >> 3n) & 0x1fn);
  const fn = Number(bdfid & 0x7n);
  return `${domain.toString(16).padStart(4, "0")}:${bus.toString(16).padStart(2, "0")}:${device.toString(16).padStart(2, "0")}.${fn.toString(16)}`;
}

const EVENT_NAMES = new Map<number, SmiGpuEventName>(
  (Object.entries(SMI_GPU_EVENT) as [SmiGpuEventName, number][]).filter(([, v]) => v <= RSMI_EVT_NOTIF_LAST).map(([k, v]) => [v, k]),
);

function cText(bytes: Uint8Array): string {
  const end = bytes.indexOf(0);
  return new TextDecoder().decode(end < 0 ? bytes : bytes.subarray(0, end));
}

interface Loaded {
  path: string;
  core: Record<keyof typeof CORE_SYMBOLS, Call>;
  optional: Partial<Record<RocmSmiOptionalSymbol, Call>>;
  missing: RocmSmiOptionalSymbol[];
  close: () => void;
}

function loadCandidate(path: string): Loaded {
  const lib = dlopen(path, CORE_SYMBOLS);
  const closers: (() => void)[] = [() => lib.close()];
  const optional: Partial<Record<RocmSmiOptionalSymbol, Call>> = {};
  const missing: RocmSmiOptionalSymbol[] = [];
  for (const name of ROCM_SMI_OPTIONAL_SYMBOLS) {
    try {
      const one = dlopen(path, { [name]: OPTIONAL_SYMBOLS[name] });
      optional[name] = one.symbols[name] as unknown as Call;
      closers.push(() => one.close());
    } catch {
      missing.push(name);
    }
  }
  return {
    path,
    core: lib.symbols as unknown as Loaded["core"],
    optional,
    missing,
    close: () => {
      for (const c of closers.reverse()) c();
    },
  };
}

/**
 * Load librocm_smi64 and bind it as an SmiLibrary. Does not initialise it (the session
 * manager calls `init`).
 * @throws SmiError("dlopen", "FAIL_LOAD_MODULE", 4, ...) naming every path tried and why,
 *   when none loads with all core entry points.
 */
export function rocmSmiOpen(opts: RocmSmiOptions = {}): SmiLibrary {
  const explicit = opts.path ?? (process.env[ROCM_SMI_LIB_ENV] || undefined);
  const candidates = explicit !== undefined ? [explicit] : [...ROCM_SMI_LIB_CANDIDATES];
  const tried: string[] = [];
  let loaded: Loaded | undefined;
  for (const name of candidates) {
    // A bare soname is resolved as the loader would, never against the current directory.
    const path = sonameResolve(name);
    if (path === undefined) {
      tried.push(`${name} (not found in the loader's search path)`);
      continue;
    }
    try {
      loaded = loadCandidate(path);
      break;
    } catch (e) {
      tried.push(`${path} (${e instanceof Error ? e.message : String(e)})`);
    }
  }
  if (loaded === undefined) throw new SmiError("dlopen", "FAIL_LOAD_MODULE", 4, `tried ${tried.join("; ")}; ${INSTALL_HINT}`);
  return new RocmSmiLibrary(loaded);
}

/** Statuses under which an identity field is "not told" rather than a failure. */
const FIELD_ABSENT_STATUSES: ReadonlySet<number> = new Set([RSMI_STATUS.NOT_SUPPORTED, RSMI_STATUS.NOT_YET_IMPLEMENTED, RSMI_STATUS.FILE_ERROR]);
/** A reading is "not told" only when the library says NOT_SUPPORTED (or lacks the symbol). */
const NOT_SUPPORTED_ONLY: ReadonlySet<number> = new Set([RSMI_STATUS.NOT_SUPPORTED]);

class RocmSmiLibrary implements SmiLibrary {
  readonly info: SmiLibraryInfo;
  private lib: Loaded | undefined;
  /** Devices whose event notification this binding started. */
  private readonly eventDevices = new Set<number>();
  private readonly u32Out = new Uint32Array(1);
  private readonly u64Out = new BigUint64Array(1);
  private readonly i64Out = new BigInt64Array(1);

  constructor(lib: Loaded) {
    this.lib = lib;
    this.info = {
      backend: "rocm-smi",
      emulated: false,
      path: lib.path,
      version: this.versionRead(lib),
      missingOptional: Object.freeze([...lib.missing]),
    };
  }

  /**
   * rsmi_version_get answers before init: "major.minor.patch", plus "+build" when the build
   * text says something. Debian's build carries no version: 1.0.0 with build text "0".
   */
  private versionRead(lib: Loaded): string | undefined {
    const v = new Uint8Array(RSMI_VERSION_bytes);
    if (lib.core.rsmi_version_get(v) !== RSMI_STATUS.SUCCESS) return undefined;
    const dv = new DataView(v.buffer);
    const text = `${dv.getUint32(0, true)}.${dv.getUint32(4, true)}.${dv.getUint32(8, true)}`;
    const build = dv.getBigUint64(16, true);
    const buildText = build === 0n ? "" : new CString(Number(build)).toString();
    return buildText && buildText !== "0" ? `${text}+${buildText}` : text;
  }

  private loadedLib(fn: string): Loaded {
    if (this.lib === undefined) throw new SmiError(fn, "FAIL_LOAD_MODULE", 4, "librocm_smi64 was unloaded (unload()); open it again with rocmSmiOpen");
    return this.lib;
  }

  private core(fn: keyof typeof CORE_SYMBOLS): Call {
    return this.loadedLib(fn).core[fn];
  }

  private optional(fn: RocmSmiOptionalSymbol): Call {
    const lib = this.loadedLib(fn);
    const f = lib.optional[fn];
    if (f === undefined) throw new SmiError(fn, "NOT_SUPPORTED", RSMI_STATUS.NOT_SUPPORTED, `symbol absent from ${lib.path}`);
    return f;
  }

  /** The library's text for a status, when it has one. */
  private statusText(status: number): string | undefined {
    const lib = this.lib;
    if (lib === undefined) return undefined;
    const out = new BigUint64Array(1);
    if (lib.core.rsmi_status_string(status, out) !== RSMI_STATUS.SUCCESS || out[0] === 0n) return undefined;
    return new CString(Number(out[0])).toString();
  }

  private error(fn: string, status: number, extra?: string): SmiError {
    const text = this.statusText(status);
    const detail = [text, extra].filter((s) => s).join("; ");
    return new SmiError(fn, rsmiStatusName(status), status >>> 0, detail || undefined);
  }

  /** Throw unless `status` is SUCCESS. */
  private check(fn: string, status: number): void {
    if (status !== RSMI_STATUS.SUCCESS) throw this.error(fn, status);
  }

  private deviceCount(): number {
    const n = this.u32Out;
    this.check("rsmi_num_monitor_devices", this.core("rsmi_num_monitor_devices")(n));
    return Math.min(n[0]!, ROCM_SMI_DEVICES_MAX);
  }

  /** The device index of a handle, checked against the devices the library knows now. */
  private index(fn: string, h: SmiHandle): number {
    this.loadedLib(fn);
    const count = this.deviceCount();
    if (typeof h !== "bigint" || h < 0n || h >= BigInt(count)) {
      const why = count === 0 ? "rocm-smi knows no device: not initialised (rsmi_init) or no GPU" : `rocm-smi knows devices 0..${count - 1}`;
      throw new SmiError(fn, "INVALID_ARGS", RSMI_STATUS.INVALID_ARGS, `device index ${String(h)} is not valid (${why}); resolve handles inside an open session`);
    }
    return Number(h);
  }

  /** A u64 answer of `fn(dv, out)`. */
  private u64Of(fn: string, call: Call, ...args: unknown[]): bigint {
    const out = this.u64Out;
    out[0] = 0n;
    this.check(fn, call(...args, out));
    return out[0]!;
  }

  private u32Of(fn: string, call: Call, ...args: unknown[]): number {
    const out = this.u32Out;
    out[0] = 0;
    this.check(fn, call(...args, out));
    return out[0]!;
  }

  /** `read()`, or undefined when the library does not tell (NOT_SUPPORTED, symbol absent). */
  private told<T>(read: () => T, absent: ReadonlySet<number> = NOT_SUPPORTED_ONLY): T | undefined {
    try {
      return read();
    } catch (e) {
      if (e instanceof SmiError && absent.has(e.status)) return undefined;
      throw e;
    }
  }

  private textOf(fn: string, call: Call, dv: number, lenArg: number | bigint): string {
    const buf = new Uint8Array(ROCM_SMI_STRING_bytes);
    this.check(fn, call(dv, buf, lenArg));
    return cText(buf);
  }

  init(): void {
    const status = this.core("rsmi_init")(0n);
    if (status === RSMI_STATUS.SUCCESS) return;
    const hint =
      status === RSMI_STATUS.INIT_ERROR
        ? "no amdgpu driver / KFD on this host? (rocm-smi reads /sys/class/kfd and /sys/class/drm); load amdgpu, or use --backend emulated"
        : undefined;
    throw this.error("rsmi_init", status, hint);
  }

  shutDown(): void {
    this.check("rsmi_shut_down", this.core("rsmi_shut_down")());
  }

  gpuHandles(): SmiHandle[] {
    this.loadedLib("rsmi_num_monitor_devices");
    return Array.from({ length: this.deviceCount() }, (_, i) => BigInt(i));
  }

  gpuHandleFromUuid(uuid: string): SmiHandle {
    const want = uuid.toLowerCase();
    const handles = this.gpuHandles();
    for (const h of handles) if (this.uuidOf(Number(h)) === want) return h;
    throw new SmiError("rsmi_dev_unique_id_get", "NOT_FOUND", RSMI_STATUS.NOT_FOUND, `no GPU with UUID ${uuid} among the ${handles.length} rocm-smi knows`);
  }

  private uuidOf(dv: number): string {
    const bdfid = this.u64Of("rsmi_dev_pci_id_get", this.core("rsmi_dev_pci_id_get"), dv);
    const unique = this.told(() => this.u64Of("rsmi_dev_unique_id_get", this.core("rsmi_dev_unique_id_get"), dv), FIELD_ABSENT_STATUSES);
    const out = new Uint16Array(1);
    this.check("rsmi_dev_id_get", this.core("rsmi_dev_id_get")(dv, out));
    return amdsmiUuidText(unique || bdfid, out[0]!);
  }

  gpuStatic(h: SmiHandle): SmiGpuStatic {
    const dv = this.index("rsmi_dev_pci_id_get", h);
    const bdf = rsmiBdfText(this.u64Of("rsmi_dev_pci_id_get", this.core("rsmi_dev_pci_id_get"), dv));
    const s: SmiGpuStatic = { uuid: this.uuidOf(dv), bdf, deploymentMode: "unknown" };
    const absent = FIELD_ABSENT_STATUSES;
    const marketName = this.told(() => this.textOf("rsmi_dev_name_get", this.core("rsmi_dev_name_get"), dv, BigInt(ROCM_SMI_STRING_bytes)), absent);
    const cardModel = this.told(() => this.textOf("rsmi_dev_brand_get", this.optional("rsmi_dev_brand_get"), dv, ROCM_SMI_STRING_bytes), absent);
    const serial = this.told(() => this.textOf("rsmi_dev_serial_number_get", this.optional("rsmi_dev_serial_number_get"), dv, ROCM_SMI_STRING_bytes), absent);
    const guid = this.told(() => this.u64Of("rsmi_dev_guid_get", this.optional("rsmi_dev_guid_get"), dv), absent);
    if (marketName) s.marketName = marketName;
    if (cardModel) s.cardModel = cardModel;
    if (serial) s.serial = serial;
    if (guid !== undefined && guid !== GUID_UNSUPPORTED && guid <= BigInt(U32_MAX)) s.kfdGpuId = Number(guid);
    return s;
  }

  gpuTemperature(h: SmiHandle, sensor: TemperatureSensor): number {
    const fn = "rsmi_dev_temp_metric_get";
    const dv = this.index(fn, h);
    const type = RSMI_TEMP_TYPE[sensor];
    if (type === undefined) throw new SmiError(fn, "INVALID_ARGS", RSMI_STATUS.INVALID_ARGS, `unknown sensor ${String(sensor)}`);
    const out = this.i64Out;
    this.check(fn, this.core(fn)(dv, type, RSMI_TEMP_CURRENT, out));
    return Number(out[0]!) / 1000;
  }

  gpuPower(h: SmiHandle): SmiPower {
    const dv = this.index("rsmi_dev_power_ave_get", h);
    const microW = 1e-6;
    const average = this.told(() => this.u64Of("rsmi_dev_power_ave_get", this.core("rsmi_dev_power_ave_get"), dv, 0));
    const socket = this.told(() => this.u64Of("rsmi_dev_current_socket_power_get", this.optional("rsmi_dev_current_socket_power_get"), dv));
    const cap = this.told(() => this.u64Of("rsmi_dev_power_cap_get", this.optional("rsmi_dev_power_cap_get"), dv, 0));
    const p: SmiPower = {};
    if (average !== undefined) p.averageW = Number(average) * microW;
    if (socket !== undefined) p.socketW = Number(socket) * microW;
    if (cap !== undefined) p.limitW = Number(cap) * microW;
    if (Object.keys(p).length === 0) throw new SmiError("rsmi_dev_power_ave_get", "NOT_SUPPORTED", RSMI_STATUS.NOT_SUPPORTED, "no power reading on this GPU");
    return p;
  }

  gpuActivity(h: SmiHandle): SmiActivity {
    const dv = this.index("rsmi_dev_busy_percent_get", h);
    const gfx = this.told(() => this.u32Of("rsmi_dev_busy_percent_get", this.core("rsmi_dev_busy_percent_get"), dv));
    const umc = this.told(() => this.u32Of("rsmi_dev_memory_busy_percent_get", this.optional("rsmi_dev_memory_busy_percent_get"), dv));
    if (gfx === undefined && umc === undefined) {
      throw new SmiError("rsmi_dev_busy_percent_get", "NOT_SUPPORTED", RSMI_STATUS.NOT_SUPPORTED, "no activity reading on this GPU");
    }
    const a: SmiActivity = {};
    if (gfx !== undefined) a.gfxPct = gfx;
    if (umc !== undefined) a.umcPct = umc;
    return a;
  }

  gpuMemory(h: SmiHandle, kind: MemoryKind): SmiMemory {
    const dv = this.index("rsmi_dev_memory_usage_get", h);
    const type = RSMI_MEM_TYPE[kind];
    if (type === undefined) throw new SmiError("rsmi_dev_memory_usage_get", "INVALID_ARGS", RSMI_STATUS.INVALID_ARGS, `unknown memory kind ${String(kind)}`);
    const used = this.u64Of("rsmi_dev_memory_usage_get", this.core("rsmi_dev_memory_usage_get"), dv, type);
    const total = this.u64Of("rsmi_dev_memory_total_get", this.core("rsmi_dev_memory_total_get"), dv, type);
    return { usedBytes: Number(used), totalBytes: Number(total) };
  }

  /** rocm-smi tells only the hive: nodeId 0n and lanes 0 mean "not told", index is the device index. */
  gpuXgmi(h: SmiHandle): SmiXgmi {
    const fn = "rsmi_dev_xgmi_hive_id_get";
    const dv = this.index(fn, h);
    return { hiveId: this.u64Of(fn, this.optional(fn), dv), nodeId: 0n, index: dv, lanes: 0 };
  }

  gpuLink(src: SmiHandle, dst: SmiHandle): SmiLink {
    const fn = "rsmi_topo_get_link_type";
    const a = this.index(fn, src);
    const b = this.index(fn, dst);
    const call = this.optional(fn);
    const hops = new BigUint64Array(1);
    const type = new Uint32Array(1);
    this.check(fn, call(a, b, hops, type));
    const t: SmiLinkType = type[0] === RSMI_IOLINK_TYPE.XGMI ? "xgmi" : type[0] === RSMI_IOLINK_TYPE.PCIEXPRESS ? "pcie" : "undefined";
    return { hops: Number(hops[0]!), type: t };
  }

  /**
   * Width and rate of the current PCIe level (rsmi_dev_pci_bandwidth_get), replay count.
   * bandwidthMbs is not told: rsmi_dev_pci_throughput_get samples for a whole second in the
   * driver, too slow for a sampler tick.
   */
  gpuPcie(h: SmiHandle): SmiPcie {
    const dv = this.index("rsmi_dev_pci_bandwidth_get", h);
    const p: SmiPcie = {};
    const bw = this.told(() => {
      const buf = new Uint8Array(RSMI_PCIE_BANDWIDTH_bytes);
      this.check("rsmi_dev_pci_bandwidth_get", this.optional("rsmi_dev_pci_bandwidth_get")(dv, buf));
      return new DataView(buf.buffer);
    });
    if (bw !== undefined) {
      const supported = Math.min(bw.getUint32(0, true), RSMI_MAX_NUM_FREQUENCIES);
      const current = bw.getUint32(4, true);
      if (current < supported) {
        p.speedMts = Number(bw.getBigUint64(8 + 8 * current, true)) / 1e6;
        p.width = bw.getUint32(PCIE_LANES_OFFSET_bytes + 4 * current, true);
      }
    }
    const replay = this.told(() => this.u64Of("rsmi_dev_pci_replay_counter_get", this.optional("rsmi_dev_pci_replay_counter_get"), dv));
    if (replay !== undefined) p.replayCount = Number(replay);
    if (Object.keys(p).length === 0) throw new SmiError("rsmi_dev_pci_bandwidth_get", "NOT_SUPPORTED", RSMI_STATUS.NOT_SUPPORTED, "no PCIe reading on this GPU");
    return p;
  }

  /** Error counts summed over every block that counts (RSMI_GPU_BLOCKS); NOT_SUPPORTED if none does. */
  gpuEcc(h: SmiHandle): SmiEcc {
    const fn = "rsmi_dev_ecc_count_get";
    const dv = this.index(fn, h);
    const call = this.optional(fn);
    const ec = new BigUint64Array(RSMI_ERROR_COUNT_bytes / 8);
    let correctable = 0n;
    let uncorrectable = 0n;
    let counted = 0;
    for (const block of RSMI_GPU_BLOCKS) {
      const status = call(dv, block, ec);
      if (FIELD_ABSENT_STATUSES.has(status)) continue;
      this.check(fn, status);
      correctable += ec[0]!;
      uncorrectable += ec[1]!;
      counted++;
    }
    if (counted === 0) throw new SmiError(fn, "NOT_SUPPORTED", RSMI_STATUS.NOT_SUPPORTED, "no GPU block counts ECC errors");
    return { correctable: Number(correctable), uncorrectable: Number(uncorrectable) };
  }

  /** Start notification on a GPU; mask bits rocm-smi does not know (above GPU_POST_RESET) are dropped. */
  eventsStart(h: SmiHandle, mask: bigint): void {
    const dv = this.index("rsmi_event_notification_init", h);
    const init = this.optional("rsmi_event_notification_init");
    const maskSet = this.optional("rsmi_event_notification_mask_set");
    this.optional("rsmi_event_notification_stop");
    this.check("rsmi_event_notification_init", init(dv));
    const status = maskSet(dv, mask & RSMI_EVENT_MASK_KNOWN);
    if (status !== RSMI_STATUS.SUCCESS) {
      this.optional("rsmi_event_notification_stop")(dv);
      throw this.error("rsmi_event_notification_mask_set", status);
    }
    this.eventDevices.add(dv);
  }

  eventsRead(timeoutMs: number, max: number): SmiGpuEvent[] {
    const fn = "rsmi_event_notification_get";
    const get = this.optional(fn);
    if (!Number.isInteger(max) || max < 1 || max > SMI_EVENTS_PER_READ_MAX) {
      throw new SmiError(fn, "INVALID_ARGS", RSMI_STATUS.INVALID_ARGS, `max must be 1..${SMI_EVENTS_PER_READ_MAX}, got ${max}`);
    }
    if (!Number.isFinite(timeoutMs) || timeoutMs < 0 || timeoutMs > ROCM_SMI_EVENTS_WAIT_MAX_ms) {
      throw new SmiError(fn, "INVALID_ARGS", RSMI_STATUS.INVALID_ARGS, `timeoutMs must be 0..${ROCM_SMI_EVENTS_WAIT_MAX_ms}, got ${timeoutMs}`);
    }
    if (this.eventDevices.size === 0) throw new SmiError(fn, "INIT_ERROR", RSMI_STATUS.INIT_ERROR, "no GPU started: call eventsStart first");
    const data = new Uint8Array(max * RSMI_EVENT_DATA_bytes);
    const n = new Uint32Array([max]);
    const status = get(Math.trunc(timeoutMs), n, data);
    if (status === RSMI_STATUS.NO_DATA) return [];
    this.check(fn, status);
    const dv = new DataView(data.buffer);
    const events: SmiGpuEvent[] = [];
    for (let i = 0; i < Math.min(n[0]!, max); i++) {
      const at = i * RSMI_EVENT_DATA_bytes;
      const typeId = dv.getUint32(at + 4, true);
      events.push({
        handle: BigInt(dv.getUint32(at, true)),
        type: EVENT_NAMES.get(typeId) ?? "UNKNOWN",
        typeId,
        message: cText(data.subarray(at + 8, at + 8 + RSMI_EVENT_MESSAGE_bytes)).trimEnd(),
      });
    }
    return events;
  }

  eventsStop(h: SmiHandle): void {
    const fn = "rsmi_event_notification_stop";
    const dv = this.index(fn, h);
    this.check(fn, this.optional(fn)(dv));
    this.eventDevices.delete(dv);
  }

  unload(): void {
    const lib = this.lib;
    if (lib === undefined) return;
    this.lib = undefined;
    this.eventDevices.clear();
    lib.close();
  }

  [Symbol.dispose](): void {
    this.unload();
  }
}
