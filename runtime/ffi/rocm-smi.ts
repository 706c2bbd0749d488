/**
 * librocm_smi64 (ROCm SMI, amdsmi's predecessor, still shipped; Debian's librocm-smi64-1
 * 5.2.3) over bun:ffi, behind the SmiLibrary interface (runtime/smi/library.ts). Signatures and
 * enums are those of rocm_smi/rocm_smi.h 5.2 (reference/amdsmi.md, "ROCm SMI"), which later
 * versions kept; struct layouts differ between versions and come from RSMI_LAYOUTS, by the
 * family the library's own version tells (see "Struct layouts" below).
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
 * Memory: every out-parameter is a fresh `new Uint8Array(new ArrayBuffer(n))`,
 * OUT_STRUCT_SLACK_bytes larger than the largest size any known version gives the struct
 * (never a small fast-mode typed array, whose storage lives in the GC heap and may move; see
 * runtime/ffi/libc.ts), so a library whose struct is larger than we know writes into slack,
 * never past the buffer. The only pointers the library hands back are `const char *` to its
 * own static strings (version build, status text), read at once with CString.
 *
 * Every call is synchronous and may block the calling thread as long as the library takes
 * (rsmi_event_notification_get up to its timeout): make them in Workers (DESIGN.md).
 *
 * Struct layouts (x86-64, natural alignment). Two families; sizes and offsets in RSMI_LAYOUTS:
 * - "5", rocm_smi.h of ROCm 5.x (Debian's librocm-smi-dev 5.2.3, /usr/include/rocm_smi/
 *   rocm_smi.h, measured by test/native/rocm_smi_probe.c): RSMI_MAX_NUM_FREQUENCIES 32;
 *   rsmi_frequencies_t {u32 num_supported; u32 current @4; u64 frequency[32] @8} (264);
 *   rsmi_pcie_bandwidth_t {rsmi_frequencies_t transfer_rate; u32 lanes[32] @264} (392);
 *   MAX_EVENT_NOTIFICATION_MSG_SIZE 64, rsmi_evt_notification_data_t {u32 dv_ind; u32 event
 *   @4; char message[64] @8} (72).
 * - "6", ROCm 6.0 and later ("Added deep sleep frequency readings", ROCm/rocm_smi_lib
 *   CHANGELOG.md, "rocm_smi_lib for ROCm 6.0.0"; ROCm/rocm_smi_lib include/rocm_smi/rocm_smi.h
 *   at fb22d777): RSMI_MAX_NUM_FREQUENCIES 33 ("32 normal + 1 sleep frequency") and a new
 *   first member: rsmi_frequencies_t {bool has_deep_sleep; u32 num_supported @4; u32 current
 *   @8; u64 frequency[33] @16} (280); rsmi_pcie_bandwidth_t lanes[33] @280, 412 bytes padded to
 *   416. The event message grew from 64 to 96 bytes ("matches kfd message max size", record
 *   104) inside this family, at a version not known: a 6.x header that already has
 *   RSMI_EVT_NOTIF_RING_HANG (added in ROCm 6.1.2, CHANGELOG.md) still says 64
 *   (peterjunpark/rocm_smi_lib at 9d3a64fc), the current one 96. So in family 6 the record
 *   size is not told and eventsRead asks for one record per call (see eventsRead).
 * - The same in every header: rsmi_version_t {u32 major, minor, patch; const char *build @16}
 *   (24) and rsmi_error_count_t {u64 correctable_err; u64 uncorrectable_err @8} (16).
 *
 * Which family (rsmiLayoutDecide): rsmi_version_get answers the library's own version, not
 * ROCm's. AMD's ROCm 5.x packages say 5.x (aristocratos/btop#761); ROCm 6.x says 7.x (6.0.x
 * release tarballs 7.0.0, btop#761; "ROCm SMI 7.3.0 for ROCm 6.2.1", CHANGELOG.md), a 6.0
 * development build 6.0.0 (CHANGELOG.md, ROCm 6.0.0's `rocm-smi --version` example). A build
 * without the release tags says 1.0.0, whatever its sources: Debian's 5.2.3 here (measured;
 * its rocm_smi64Config.h says 1.0.0) and Ubuntu's 5.7.0 (btop#1469) in family 5 (btop#1622),
 * ROCm 7.2's library in family 6 (as reported in btop#1622); a git checkout says 2.x
 * (btop#761). Hence: major 5 is "5"; 6 and 7 are "6"; 8 and above, newer than any known, take
 * the newest known family ("6"); 0 to 4 name no release, and the family is "6" when the
 * library exports rsmi_dev_power_get (added in ROCm 6.0 with the deep-sleep layout,
 * CHANGELOG.md; absent from Debian's 5.2.3, measured; btop#1622 tells the two apart the same
 * way, with rsmi_dev_activity_metric_get), else "5". A
 * library whose rsmi_version_get fails has no family: gpuPcie leaves the bandwidth out and
 * eventsStart/eventsRead answer NOT_SUPPORTED, each saying why. Out-structs are sized for the
 * largest family whatever the decision, so a wrong one can misread values, never write past
 * a buffer.
 */
import { CString, dlopen, FFIType } from "bun:ffi";
import { SmiError } from "../errors.ts";
import { OUT_STRUCT_SLACK_bytes } from "./amdsmi-layouts.ts";
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

/** A layout family of librocm_smi64 (file comment, "Struct layouts"). */
export type RsmiLayoutFamily = "5" | "6";

/** Sizes and member offsets, bytes, of the structs whose layout depends on the family. */
export interface RsmiLayoutTable {
  /** RSMI_MAX_NUM_FREQUENCIES. */
  frequenciesMax: number;
  /** rsmi_frequencies_t; `hasDeepSleep` is undefined where the member does not exist. */
  frequencies: { size_bytes: number; hasDeepSleep: number | undefined; numSupported: number; current: number; frequency: number };
  /** rsmi_pcie_bandwidth_t: transfer_rate (an rsmi_frequencies_t at 0), then u32 lanes[]. */
  pcieBandwidth: { size_bytes: number; numSupported: number; current: number; frequency: number; lanes: number };
  /**
   * rsmi_evt_notification_data_t: every size the family's record may have (one size: the record
   * size is known; more: it is not, see eventsRead), and the members, at the same offsets in all.
   */
  event: { sizes_bytes: readonly number[]; dvInd: number; type: number; message: number; messageMax_bytes: number };
}

export const RSMI_LAYOUTS: Readonly<Record<RsmiLayoutFamily, RsmiLayoutTable>> = {
  "5": {
    frequenciesMax: 32,
    frequencies: { size_bytes: 264, hasDeepSleep: undefined, numSupported: 0, current: 4, frequency: 8 },
    pcieBandwidth: { size_bytes: 392, numSupported: 0, current: 4, frequency: 8, lanes: 264 },
    event: { sizes_bytes: [72], dvInd: 0, type: 4, message: 8, messageMax_bytes: 64 },
  },
  "6": {
    frequenciesMax: 33,
    frequencies: { size_bytes: 280, hasDeepSleep: 0, numSupported: 4, current: 8, frequency: 16 },
    pcieBandwidth: { size_bytes: 416, numSupported: 4, current: 8, frequency: 16, lanes: 280 },
    event: { sizes_bytes: [72, 104], dvInd: 0, type: 4, message: 8, messageMax_bytes: 96 },
  },
};

/** Structs with one layout in every family. */
export const RSMI_STRUCTS = {
  /** rsmi_version_t: {u32 major, minor, patch; const char *build}. */
  version: { size_bytes: 24, major: 0, minor: 4, patch: 8, build: 16 },
  /** rsmi_error_count_t: {u64 correctable_err; u64 uncorrectable_err}. */
  errorCount: { size_bytes: 16, correctable: 0, uncorrectable: 8 },
} as const;

const FAMILIES = Object.values(RSMI_LAYOUTS);
/** The largest rsmi_pcie_bandwidth_t of any family: what gpuPcie allocates (plus slack). */
export const RSMI_PCIE_BANDWIDTH_MAX_bytes = Math.max(...FAMILIES.map((l) => l.pcieBandwidth.size_bytes));
/** The largest rsmi_evt_notification_data_t of any family: eventsRead allocates this per record (plus slack). */
export const RSMI_EVENT_DATA_MAX_bytes = Math.max(...FAMILIES.flatMap((l) => l.event.sizes_bytes));
/** Entry point of ROCm 6.0 and later whose presence tells the family of a 0.x-4.x version. */
export const RSMI_FAMILY_6_MARKER_SYMBOL = "rsmi_dev_power_get";

/** What rsmi_version_get answered. */
export interface RsmiVersion {
  major: number;
  minor: number;
  patch: number;
}

/** The family a library is read with, and the reason, for messages and tests. */
export interface RsmiLayoutDecision {
  /** Undefined: the layout cannot be told; readings that depend on it answer NOT_SUPPORTED. */
  family: RsmiLayoutFamily | undefined;
  why: string;
}

/** Highest rsmi_version_get major of a known family ("6": ROCm 6.x says 7.x). */
const RSMI_VERSION_MAJOR_KNOWN_MAX = 7;
/** Lowest major that names an AMD ROCm release (5.x); below it: a build without release tags. */
const RSMI_VERSION_MAJOR_RELEASE_MIN = 5;

/**
 * The layout family of a library from its rsmi_version_get answer (`undefined` when the call
 * failed) and whether it exports RSMI_FAMILY_6_MARKER_SYMBOL. The rule and its sources are in
 * the file comment ("Which family").
 */
export function rsmiLayoutDecide(version: RsmiVersion | undefined, hasFamily6Marker: boolean): RsmiLayoutDecision {
  if (version === undefined) {
    return { family: undefined, why: "rsmi_version_get failed, so the struct layout of this librocm_smi64 cannot be told" };
  }
  const text = `${version.major}.${version.minor}.${version.patch}`;
  if (version.major === RSMI_VERSION_MAJOR_RELEASE_MIN) return { family: "5", why: `rsmi_version_get says ${text}: ROCm 5.x` };
  if (version.major > RSMI_VERSION_MAJOR_RELEASE_MIN && version.major <= RSMI_VERSION_MAJOR_KNOWN_MAX) {
    return { family: "6", why: `rsmi_version_get says ${text}: ROCm 6.0 or later` };
  }
  if (version.major > RSMI_VERSION_MAJOR_KNOWN_MAX) {
    return { family: "6", why: `rsmi_version_get says ${text}, newer than any known: read with the newest known layout` };
  }
  const marker = hasFamily6Marker ? `exports ${RSMI_FAMILY_6_MARKER_SYMBOL} (ROCm 6.0 or later)` : `lacks ${RSMI_FAMILY_6_MARKER_SYMBOL} (before ROCm 6.0)`;
  return { family: hasFamily6Marker ? "6" : "5", why: `rsmi_version_get says ${text}, which names no release (a build without release tags); the library ${marker}` };
}

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

/** A fresh out-parameter: `bytes` to pass, `view` to read (file comment, "Memory"). */
interface Out {
  bytes: Uint8Array;
  view: DataView;
}
function out(size_bytes: number): Out {
  const buffer = new ArrayBuffer(size_bytes + OUT_STRUCT_SLACK_bytes);
  return { bytes: new Uint8Array(buffer), view: new DataView(buffer) };
}

interface Loaded {
  path: string;
  core: Record<keyof typeof CORE_SYMBOLS, Call>;
  optional: Partial<Record<RocmSmiOptionalSymbol, Call>>;
  missing: RocmSmiOptionalSymbol[];
  /** Whether RSMI_FAMILY_6_MARKER_SYMBOL resolves (looked up, never called). */
  hasFamily6Marker: boolean;
  close: () => void;
}

/** Whether `symbol` resolves in `path` (dlopen of that one symbol, closed at once). */
function symbolPresent(path: string, symbol: string): boolean {
  try {
    dlopen(path, { [symbol]: { args: [], returns: FFIType.void } }).close();
    return true;
  } catch {
    return false;
  }
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
    hasFamily6Marker: symbolPresent(path, RSMI_FAMILY_6_MARKER_SYMBOL),
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
  // A path from the variable is named as such: the operator may have set it long ago.
  const fromEnv = opts.path === undefined && explicit !== undefined ? ` from ${ROCM_SMI_LIB_ENV}` : "";
  const tried: string[] = [];
  let loaded: Loaded | undefined;
  for (const name of candidates) {
    // A bare soname is resolved as the loader would, never against the current directory.
    const path = sonameResolve(name);
    if (path === undefined) {
      tried.push(`${name}${fromEnv} (not found in the loader's search path)`);
      continue;
    }
    try {
      loaded = loadCandidate(path);
      break;
    } catch (e) {
      const text = e instanceof Error ? e.message : String(e);
      // A library that loads but lacks the entry points is another library.
      const symbol = /^Symbol "([^"]+)" not found in /.exec(text)?.[1];
      tried.push(`${path}${fromEnv} (${symbol === undefined ? text : `not a rocm-smi library: it has no ${symbol}`})`);
    }
  }
  if (loaded === undefined) throw new SmiError("dlopen", "FAIL_LOAD_MODULE", 4, `tried ${tried.join("; ")}; ${INSTALL_HINT}`);
  return new RocmSmiLibrary(loaded);
}

/** Statuses under which an identity field is "not told" rather than a failure. */
const FIELD_ABSENT_STATUSES: ReadonlySet<number> = new Set([RSMI_STATUS.NOT_SUPPORTED, RSMI_STATUS.NOT_YET_IMPLEMENTED, RSMI_STATUS.FILE_ERROR]);
/** A reading is "not told" only when the library says NOT_SUPPORTED (or lacks the symbol). */
const NOT_SUPPORTED_ONLY: ReadonlySet<number> = new Set([RSMI_STATUS.NOT_SUPPORTED]);

/**
 * The layout decision of a library opened by rocmSmiOpen (undefined for any other SmiLibrary):
 * which family its structs are read with, and why.
 */
export function rocmSmiLayoutDecision(lib: SmiLibrary): RsmiLayoutDecision | undefined {
  return lib instanceof RocmSmiLibrary ? lib.layoutDecision : undefined;
}

class RocmSmiLibrary implements SmiLibrary {
  readonly info: SmiLibraryInfo;
  readonly layoutDecision: RsmiLayoutDecision;
  /** RSMI_LAYOUTS[family]; undefined when the family cannot be told. */
  private readonly layout: RsmiLayoutTable | undefined;
  private lib: Loaded | undefined;
  /** Devices whose event notification this binding started. */
  private readonly eventDevices = new Set<number>();

  constructor(lib: Loaded) {
    this.lib = lib;
    const version = this.versionRead(lib);
    this.layoutDecision = rsmiLayoutDecide(version?.numbers, lib.hasFamily6Marker);
    this.layout = this.layoutDecision.family === undefined ? undefined : RSMI_LAYOUTS[this.layoutDecision.family];
    this.info = {
      backend: "rocm-smi",
      emulated: false,
      path: lib.path,
      version: version?.text,
      missingOptional: Object.freeze([...lib.missing]),
    };
  }

  /**
   * rsmi_version_get answers before init. The text is "major.minor.patch", plus "+build" when
   * the build text says something (Debian's build carries no version: 1.0.0, build text "0").
   */
  private versionRead(lib: Loaded): { numbers: RsmiVersion; text: string } | undefined {
    const v = out(RSMI_STRUCTS.version.size_bytes);
    if (lib.core.rsmi_version_get(v.bytes) !== RSMI_STATUS.SUCCESS) return undefined;
    const f = RSMI_STRUCTS.version;
    const numbers = { major: v.view.getUint32(f.major, true), minor: v.view.getUint32(f.minor, true), patch: v.view.getUint32(f.patch, true) };
    const text = `${numbers.major}.${numbers.minor}.${numbers.patch}`;
    const build = v.view.getBigUint64(f.build, true);
    const buildText = build === 0n ? "" : new CString(Number(build)).toString();
    return { numbers, text: buildText && buildText !== "0" ? `${text}+${buildText}` : text };
  }

  /**
   * The layout table, for a reading `fn` whose structs depend on it.
   * @throws SmiError(fn, "NOT_SUPPORTED", 2, why) when the family cannot be told.
   */
  private layoutFor(fn: string): RsmiLayoutTable {
    if (this.layout === undefined) {
      throw new SmiError(fn, "NOT_SUPPORTED", RSMI_STATUS.NOT_SUPPORTED, `not read: ${this.layoutDecision.why}; use amdsmi (--backend amdsmi) for this reading`);
    }
    return this.layout;
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
    const text = out(8);
    if (lib.core.rsmi_status_string(status, text.bytes) !== RSMI_STATUS.SUCCESS) return undefined;
    const at = text.view.getBigUint64(0, true);
    return at === 0n ? undefined : new CString(Number(at)).toString();
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
    const n = out(4);
    this.check("rsmi_num_monitor_devices", this.core("rsmi_num_monitor_devices")(n.bytes));
    return Math.min(n.view.getUint32(0, true), ROCM_SMI_DEVICES_MAX);
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
    const v = out(8);
    this.check(fn, call(...args, v.bytes));
    return v.view.getBigUint64(0, true);
  }

  private u32Of(fn: string, call: Call, ...args: unknown[]): number {
    const v = out(4);
    this.check(fn, call(...args, v.bytes));
    return v.view.getUint32(0, true);
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

  /** A string the library copies into a caller buffer of ROCM_SMI_STRING_bytes (`lenArg`). */
  private textOf(fn: string, call: Call, dv: number, lenArg: number | bigint): string {
    const buf = out(ROCM_SMI_STRING_bytes);
    this.check(fn, call(dv, buf.bytes, lenArg));
    return cText(buf.bytes.subarray(0, ROCM_SMI_STRING_bytes));
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
    const id = out(2);
    this.check("rsmi_dev_id_get", this.core("rsmi_dev_id_get")(dv, id.bytes));
    return amdsmiUuidText(unique || bdfid, id.view.getUint16(0, true));
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
    const t = out(8);
    this.check(fn, this.core(fn)(dv, type, RSMI_TEMP_CURRENT, t.bytes));
    return Number(t.view.getBigInt64(0, true)) / 1000;
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
    const hops = out(8);
    const type = out(4);
    this.check(fn, call(a, b, hops.bytes, type.bytes));
    const typeId = type.view.getUint32(0, true);
    const t: SmiLinkType = typeId === RSMI_IOLINK_TYPE.XGMI ? "xgmi" : typeId === RSMI_IOLINK_TYPE.PCIEXPRESS ? "pcie" : "undefined";
    return { hops: Number(hops.view.getBigUint64(0, true)), type: t };
  }

  /**
   * Width and rate of the current PCIe level (rsmi_dev_pci_bandwidth_get, read with the
   * family's layout; left out when the family cannot be told), replay count. bandwidthMbs is
   * not told: rsmi_dev_pci_throughput_get samples for a whole second in the driver, too slow
   * for a sampler tick.
   * @throws SmiError NOT_SUPPORTED when neither is told, saying why.
   */
  gpuPcie(h: SmiHandle): SmiPcie {
    const fn = "rsmi_dev_pci_bandwidth_get";
    const dv = this.index(fn, h);
    const p: SmiPcie = {};
    const bw = this.told(() => {
      const t = this.layoutFor(fn);
      const buf = out(RSMI_PCIE_BANDWIDTH_MAX_bytes);
      this.check(fn, this.optional(fn)(dv, buf.bytes));
      return { t, view: buf.view };
    });
    if (bw !== undefined) {
      const { t, view } = bw;
      const l = t.pcieBandwidth;
      const supported = Math.min(view.getUint32(l.numSupported, true), t.frequenciesMax);
      const current = view.getUint32(l.current, true);
      if (current < supported) {
        p.speedMts = Number(view.getBigUint64(l.frequency + 8 * current, true)) / 1e6;
        p.width = view.getUint32(l.lanes + 4 * current, true);
      }
    }
    const replay = this.told(() => this.u64Of("rsmi_dev_pci_replay_counter_get", this.optional("rsmi_dev_pci_replay_counter_get"), dv));
    if (replay !== undefined) p.replayCount = Number(replay);
    if (Object.keys(p).length === 0) {
      const why = this.layout === undefined ? `bandwidth not read: ${this.layoutDecision.why}` : "no PCIe reading on this GPU";
      throw new SmiError(fn, "NOT_SUPPORTED", RSMI_STATUS.NOT_SUPPORTED, why);
    }
    return p;
  }

  /** Error counts summed over every block that counts (RSMI_GPU_BLOCKS); NOT_SUPPORTED if none does. */
  gpuEcc(h: SmiHandle): SmiEcc {
    const fn = "rsmi_dev_ecc_count_get";
    const dv = this.index(fn, h);
    const call = this.optional(fn);
    const f = RSMI_STRUCTS.errorCount;
    let correctable = 0n;
    let uncorrectable = 0n;
    let counted = 0;
    for (const block of RSMI_GPU_BLOCKS) {
      const ec = out(f.size_bytes);
      const status = call(dv, block, ec.bytes);
      if (FIELD_ABSENT_STATUSES.has(status)) continue;
      this.check(fn, status);
      correctable += ec.view.getBigUint64(f.correctable, true);
      uncorrectable += ec.view.getBigUint64(f.uncorrectable, true);
      counted++;
    }
    if (counted === 0) throw new SmiError(fn, "NOT_SUPPORTED", RSMI_STATUS.NOT_SUPPORTED, "no GPU block counts ECC errors");
    return { correctable: Number(correctable), uncorrectable: Number(uncorrectable) };
  }

  /**
   * Start notification on a GPU; mask bits rocm-smi does not know (above GPU_POST_RESET) are dropped.
   * @throws SmiError NOT_SUPPORTED when the layout family cannot be told (nothing could be read).
   */
  eventsStart(h: SmiHandle, mask: bigint): void {
    const dv = this.index("rsmi_event_notification_init", h);
    this.layoutFor("rsmi_event_notification_init");
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

  /**
   * Up to `max` events. When the family's record size is known (family 5: 72 bytes) one call
   * asks for `max` records; when it is not (family 6: 72 or 104 bytes), for one record, whose
   * members sit at the same offsets in every layout, so eventsRead returns at most one event
   * per call. The library keeps the rest: rsmi_event_notification_get first hands out what an
   * earlier call left over (ROCm/rocm_smi_lib src/rocm_smi.cc, "Collect any left-over events").
   * Every record gets RSMI_EVENT_DATA_MAX_bytes of a zeroed buffer, so a message is read up to
   * its NUL or its family's largest size, whichever comes first, inside the buffer.
   * @throws SmiError NOT_SUPPORTED when the layout family cannot be told.
   */
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
    const l = this.layoutFor(fn).event;
    const stride = l.sizes_bytes.length === 1 ? l.sizes_bytes[0]! : undefined;
    const asked = stride === undefined ? 1 : max;
    const data = out(asked * RSMI_EVENT_DATA_MAX_bytes);
    const n = out(4);
    n.view.setUint32(0, asked, true);
    const status = get(Math.trunc(timeoutMs), n.bytes, data.bytes);
    if (status === RSMI_STATUS.NO_DATA) return [];
    this.check(fn, status);
    const events: SmiGpuEvent[] = [];
    for (let i = 0; i < Math.min(n.view.getUint32(0, true), asked); i++) {
      const at = i * (stride ?? 0);
      const typeId = data.view.getUint32(at + l.type, true);
      const message = at + l.message;
      events.push({
        handle: BigInt(data.view.getUint32(at + l.dvInd, true)),
        type: EVENT_NAMES.get(typeId) ?? "UNKNOWN",
        typeId,
        message: cText(data.bytes.subarray(message, message + l.messageMax_bytes)).trimEnd(),
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
