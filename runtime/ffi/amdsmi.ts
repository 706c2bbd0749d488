/**
 * libamd_smi over bun:ffi: the `amdsmi` backend of SmiLibrary (runtime/smi/library.ts). The C
 * test double (test/native/amdsmi_double.c) is loaded through this very code.
 *
 * Loading: `opts.path`, else $SVMRT_AMDSMI_LIB, else AMDSMI_LIB_CANDIDATES in order (an
 * explicit path or variable is the only one tried). A name without a slash is resolved first
 * as the dynamic loader searches (runtime/ffi/soname.ts), never in the current directory, and
 * `info.path` is the absolute path loaded. The required symbols (enough to list GPUs)
 * bind in one dlopen; the optional ones all together in a second, or, when one of them is
 * missing (bun's dlopen refuses a table with any missing symbol), one dlopen per symbol. A
 * missing optional symbol disables only its method, which throws SmiError(fn, "NOT_SUPPORTED",
 * 2, "symbol absent from this library"), and is listed in `info.missingOptional`.
 *
 * Versions: the layout family (runtime/ffi/amdsmi-layouts.ts) comes from the library's answer
 * to amdsmi_get_lib_version, asked at load and, when a 24.x/25.x library refused before init
 * (NOT_INIT), again right after the first successful init(). Until then `info.version` and
 * `info.layout` are undefined: gpuPower and eventsRead throw NOT_SUPPORTED saying so, and
 * gpuStatic leaves out the board and ASIC strings (their layout depends on the family).
 *
 * Units and "unsupported" values (the library marks an unsupported member, never fails the
 * call for it): a u32 member reading UINT32_MAX or 0xFFFF, a u16 reading 0xFFFF and a u64
 * reading UINT64_MAX (or 0xFFFF / UINT32_MAX for socket_power) is left out of the result.
 * Temperatures come as millidegrees from some versions and degrees from others: a reading with
 * |v| >= 1000 is millidegrees (TEMPERATURE_MILLIDEGREES_MIN), below it degrees; the result is
 * always °C. Power is W, memory bytes, activity percent, PCIe speed MT/s and bandwidth Mb/s.
 *
 * Memory: every out-parameter is a fresh `new Uint8Array(new ArrayBuffer(n))` (never a small
 * fast-mode array whose storage may move, see runtime/ffi/libc.ts), OUT_STRUCT_SLACK_bytes
 * larger than the struct. The only pointers the library hands back are `const char *` to its
 * own static strings (version build, status text), read at once with CString.
 *
 * Handles are the library's pointers as bigint, valid for one init cycle; nothing here caches
 * them (the session manager re-resolves by UUID in each session).
 *
 * After unload() every method but `info` throws SmiError(fn, "NOT_INIT", 32, "... unloaded
 * ..."). unload() does not shut the library down: the session manager does that first.
 */
import { CString, dlopen, FFIType, type Library } from "bun:ffi";
import { SmiError } from "../errors.ts";
import {
  type DeploymentMode,
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
import {
  AMDSMI_LAYOUTS,
  AMDSMI_STRUCTS,
  type AmdsmiLayoutTable,
  type AmdsmiVersion,
  amdsmiVersionDecode,
  type CharField,
  OUT_STRUCT_SLACK_bytes,
} from "./amdsmi-layouts.ts";
import { AMDSMI_STATUS, amdsmiStatusHint, amdsmiStatusName } from "./amdsmi-status.ts";
import { LD_SO_CONF_PATH, sonameResolve } from "./soname.ts";

/** Environment variable naming the library to load (same as `--amdsmi-lib PATH`). */
export const AMDSMI_LIB_ENV = "SVMRT_AMDSMI_LIB";

/** Where libamd_smi is looked for when neither a path nor $SVMRT_AMDSMI_LIB is given, in order. */
export const AMDSMI_LIB_CANDIDATES = [
  "/opt/rocm/lib/libamd_smi.so",
  "libamd_smi.so",
  "libamd_smi.so.27",
  "libamd_smi.so.26",
  "libamd_smi.so.25",
  "libamd_smi.so.24",
] as const;

/** amdsmi_init flags: AMDSMI_INIT_AMD_GPUS. */
export const AMDSMI_INIT_AMD_GPUS = 2n;
/** Most processors (and sockets) one enumeration accepts. */
export const GPUS_MAX = 256;
/** UUID buffer; amdsmi needs at least AMDSMI_GPU_UUID_SIZE (38). */
export const UUID_BUFFER_bytes = 64;
/** Buffer for the partition names (e.g. "SPX", "NPS1"). */
export const PARTITION_TEXT_bytes = 256;
/** Longest wait one eventsRead passes to the library. */
export const EVENTS_READ_TIMEOUT_MAX_ms = 60_000;
/** A temperature reading at or above this magnitude is in millidegrees (see the file comment). */
export const TEMPERATURE_MILLIDEGREES_MIN = 1000;

const H = FFIType.u64; // amdsmi_processor_handle / amdsmi_socket_handle, by value
const P = FFIType.ptr;
const U32 = FFIType.u32;
const STATUS = FFIType.u32; // amdsmi_status_t

/** Enough to list GPUs and identify them: a library without one of these does not load. */
const REQUIRED_SYMBOLS = {
  amdsmi_init: { args: [FFIType.u64], returns: STATUS },
  amdsmi_shut_down: { args: [], returns: STATUS },
  amdsmi_get_lib_version: { args: [P], returns: STATUS },
  amdsmi_get_processor_handles: { args: [H, P, P], returns: STATUS },
  amdsmi_get_gpu_device_uuid: { args: [H, P, P], returns: STATUS },
  amdsmi_get_gpu_device_bdf: { args: [H, P], returns: STATUS },
} as const;

/** Each missing one degrades one feature. */
const OPTIONAL_SYMBOLS = {
  amdsmi_status_code_to_string: { args: [U32, P], returns: STATUS },
  amdsmi_get_socket_handles: { args: [P, P], returns: STATUS },
  amdsmi_get_processor_handle_from_uuid: { args: [P, P], returns: STATUS },
  amdsmi_get_gpu_board_info: { args: [H, P], returns: STATUS },
  amdsmi_get_gpu_asic_info: { args: [H, P], returns: STATUS },
  amdsmi_get_gpu_kfd_info: { args: [H, P], returns: STATUS },
  amdsmi_get_gpu_virtualization_mode: { args: [H, P], returns: STATUS },
  amdsmi_get_gpu_compute_partition: { args: [H, P, U32], returns: STATUS },
  amdsmi_get_gpu_memory_partition: { args: [H, P, U32], returns: STATUS },
  amdsmi_get_temp_metric: { args: [H, U32, U32, P], returns: STATUS },
  amdsmi_get_power_info: { args: [H, P], returns: STATUS },
  amdsmi_get_gpu_activity: { args: [H, P], returns: STATUS },
  amdsmi_get_gpu_memory_usage: { args: [H, U32, P], returns: STATUS },
  amdsmi_get_gpu_memory_total: { args: [H, U32, P], returns: STATUS },
  amdsmi_get_xgmi_info: { args: [H, P], returns: STATUS },
  amdsmi_topo_get_link_type: { args: [H, H, P, P], returns: STATUS },
  amdsmi_get_pcie_info: { args: [H, P], returns: STATUS },
  amdsmi_get_gpu_total_ecc_count: { args: [H, P], returns: STATUS },
  amdsmi_init_gpu_event_notification: { args: [H], returns: STATUS },
  amdsmi_set_gpu_event_notification_mask: { args: [H, FFIType.u64], returns: STATUS },
  amdsmi_get_gpu_event_notification: { args: [FFIType.i32, P, P], returns: STATUS },
  amdsmi_stop_gpu_event_notification: { args: [H], returns: STATUS },
} as const;

export type AmdsmiRequiredSymbol = keyof typeof REQUIRED_SYMBOLS;
export type AmdsmiOptionalSymbol = keyof typeof OPTIONAL_SYMBOLS;
export const AMDSMI_REQUIRED_SYMBOLS = Object.keys(REQUIRED_SYMBOLS) as AmdsmiRequiredSymbol[];
export const AMDSMI_OPTIONAL_SYMBOLS = Object.keys(OPTIONAL_SYMBOLS) as AmdsmiOptionalSymbol[];

export interface AmdsmiOpenOptions {
  /** The shared object to load; when given, the only one tried. */
  path?: string;
}

/** The paths amdsmiOpen tries, in order: `opts.path`, else $SVMRT_AMDSMI_LIB, else the candidates. */
export function amdsmiLibraryPaths(opts: AmdsmiOpenOptions = {}, env: Record<string, string | undefined> = process.env): string[] {
  if (opts.path) return [opts.path];
  const fromEnv = env[AMDSMI_LIB_ENV];
  if (fromEnv) return [fromEnv];
  return [...AMDSMI_LIB_CANDIDATES];
}

/**
 * Load libamd_smi (or a library with its entry points) and bind it. Nothing is initialised:
 * the session manager calls init(). Asks the library's version (a 24.x/25.x library answers
 * only after init).
 * @throws SmiError("dlopen", "FAIL_LOAD_MODULE", 4, ...) naming every path tried and why.
 */
export function amdsmiOpen(opts: AmdsmiOpenOptions = {}): SmiLibrary {
  const tried: string[] = [];
  const notFound: string[] = [];
  // A path from the variable is named as such: the operator may have set it long ago.
  const fromEnv = opts.path ? "" : process.env[AMDSMI_LIB_ENV] ? ` (from ${AMDSMI_LIB_ENV})` : "";
  for (const name of amdsmiLibraryPaths(opts)) {
    const path = sonameResolve(name);
    if (!path) {
      notFound.push(`${name}${fromEnv}`);
      continue;
    }
    let lib: Library<typeof REQUIRED_SYMBOLS>;
    try {
      lib = dlopen(path, REQUIRED_SYMBOLS);
    } catch (e) {
      tried.push(`${path}${fromEnv}: ${loadFailure(path, e)}`);
      continue;
    }
    try {
      return amdsmiBind(path, lib);
    } catch (e) {
      lib.close();
      throw e;
    }
  }
  if (notFound.length) tried.push(`${notFound.join(", ")}: not found in the library search path (LD_LIBRARY_PATH, ${LD_SO_CONF_PATH}, system directories)`);
  throw new SmiError(
    "dlopen",
    "FAIL_LOAD_MODULE",
    AMDSMI_STATUS.FAIL_LOAD_MODULE,
    `${tried.join("; ")}; install amdsmi (ROCm) or pass --amdsmi-lib PATH / ${AMDSMI_LIB_ENV}`,
  );
}

/**
 * The loader's reason for `path`, without bun's `Failed to open library "<path>": ` and
 * dlerror's `<path>: `; a library that loads but lacks the entry points is another library.
 */
function loadFailure(path: string, e: unknown): string {
  const text = (e instanceof Error ? e.message : String(e)).split("\n")[0]!;
  const symbol = /^Symbol "([^"]+)" not found in /.exec(text)?.[1];
  if (symbol !== undefined) return `not an amdsmi library (it has no ${symbol})`;
  const reason = text.replace(/^Failed to open library "[^"]*": /, "").trim();
  return reason.startsWith(`${path}: `) ? reason.slice(path.length + 2) : reason;
}

/** A bound entry point: numbers, bigints, typed arrays and null in, a status out. */
type Fn = (...args: unknown[]) => number;
type SymbolName = AmdsmiRequiredSymbol | AmdsmiOptionalSymbol;

/** A fresh out-parameter: `bytes` to pass, `view` to read (see the file comment). */
interface Out {
  bytes: Uint8Array;
  view: DataView;
}
function out(size_bytes: number): Out {
  const buffer = new ArrayBuffer(size_bytes + OUT_STRUCT_SLACK_bytes);
  return { bytes: new Uint8Array(buffer), view: new DataView(buffer) };
}

const U16_UNSUPPORTED = 0xffff;
const U32_UNSUPPORTED = 0xffffffff;
const U64_UNSUPPORTED = 0xffffffffffffffffn;

/** A u32 member that holds a value (neither UINT32_MAX nor 0xFFFF). */
function u32Known(v: number): number | undefined {
  return v === U32_UNSUPPORTED || v === U16_UNSUPPORTED ? undefined : v;
}
/** A u64 member that holds a value (UINT64_MAX, UINT32_MAX and 0xFFFF mean unsupported). */
function u64Known(v: bigint): number | undefined {
  return v === U64_UNSUPPORTED || v === BigInt(U32_UNSUPPORTED) || v === BigInt(U16_UNSUPPORTED) ? undefined : Number(v);
}

const utf8 = new TextDecoder();
/** A NUL-terminated char array of a struct, trimmed; undefined when empty. */
function charField(bytes: Uint8Array, f: CharField): string | undefined {
  const field = bytes.subarray(f.offset, f.offset + f.bytes);
  const nul = field.indexOf(0);
  const text = utf8.decode(nul < 0 ? field : field.subarray(0, nul)).trim();
  return text === "" ? undefined : text;
}

/** PCI address "dddd:bb:dd.f" of an amdsmi_bdf_t (function 0-2, device 3-7, bus 8-15, domain 16-63). */
export function amdsmiBdfText(bdf: bigint): string {
  const fn = Number(bdf & 0x7n);
  const device = Number((bdf >> 3n) & 0x1fn);
  const bus = Number((bdf >> 8n) & 0xffn);
  const domain = bdf >> 16n;
  const hex = (v: bigint | number, w: number): string => v.toString(16).padStart(w, "0");
  return `${hex(domain, 4)}:${hex(bus, 2)}:${hex(device, 2)}.${fn}`;
}

/** amdsmi_virtualization_mode_t → DME's deployment_mode. */
function deploymentModeOf(mode: number): DeploymentMode {
  switch (mode) {
    case 1: // BAREMETAL
      return "baremetal";
    case 2: // HOST: the hypervisor's view of an SR-IOV GPU
      return "hypervisor";
    case 3: // GUEST: a virtual function in a VM
      return "vm_vf";
    case 4: // PASSTHROUGH: the whole physical function in a VM, driven as on bare metal
      return "baremetal";
    default: // UNKNOWN (0) or a value from a later library: re-read until known
      return "unknown";
  }
}

const TEMPERATURE_SENSOR_ID: Readonly<Record<TemperatureSensor, number>> = { edge: 0, junction: 1, vram: 2 };
const TEMPERATURE_METRIC_CURRENT = 0;
const MEMORY_TYPE_ID: Readonly<Record<MemoryKind, number>> = { vram: 0, vis_vram: 1, gtt: 2 };
/** amdsmi_link_type_t (26.x: INTERNAL 0, PCIE 1, XGMI 2) and AMDSMI_IO_LINK_TYPE (24.x: UNDEFINED 0, PCIEXPRESS 1, XGMI 2). */
function linkTypeOf(type: number): SmiLinkType {
  return type === 1 ? "pcie" : type === 2 ? "xgmi" : "undefined";
}
const GPU_EVENT_NAME: ReadonlyMap<number, SmiGpuEventName> = new Map(
  (Object.entries(SMI_GPU_EVENT) as [SmiGpuEventName, number][]).map(([name, id]) => [id, name]),
);

function amdsmiBind(path: string, required: Library<typeof REQUIRED_SYMBOLS>): SmiLibrary {
  const libs: { close(): void }[] = [required];
  const fns: Partial<Record<SymbolName, Fn>> = { ...(required.symbols as unknown as Record<AmdsmiRequiredSymbol, Fn>) };
  const missing: AmdsmiOptionalSymbol[] = [];
  try {
    const all = dlopen(path, OPTIONAL_SYMBOLS);
    libs.push(all);
    Object.assign(fns, all.symbols as unknown as Record<AmdsmiOptionalSymbol, Fn>);
  } catch {
    for (const name of AMDSMI_OPTIONAL_SYMBOLS) {
      try {
        const one = dlopen(path, { [name]: OPTIONAL_SYMBOLS[name] });
        libs.push(one);
        fns[name] = one.symbols[name] as unknown as Fn;
      } catch {
        missing.push(name);
      }
    }
  }

  let loaded = true;
  let version: AmdsmiVersion | undefined;
  const info: SmiLibraryInfo = { backend: "amdsmi", emulated: false, path, version: undefined, missingOptional: Object.freeze([...missing]) };

  /** Throws when unload() has run. */
  const alive = (name: string): void => {
    if (!loaded) throw new SmiError(name, "NOT_INIT", AMDSMI_STATUS.NOT_INIT, `the amdsmi binding of ${path} was unloaded; open the library again`);
  };

  /** The entry point `name`, or the error saying why it cannot be called. */
  const fn = (name: SymbolName): Fn => {
    alive(name);
    const f = fns[name];
    if (!f) throw new SmiError(name, "NOT_SUPPORTED", AMDSMI_STATUS.NOT_SUPPORTED, `symbol absent from this library (${path}); a newer amdsmi has it`);
    return f;
  };

  /** The library's own text for a status, when it has a useful one. */
  const libraryText = (status: number): string | undefined => {
    const f = fns.amdsmi_status_code_to_string;
    if (!f) return undefined;
    const o = out(8);
    if (f(status, o.bytes) !== AMDSMI_STATUS.SUCCESS) return undefined;
    const p = o.view.getBigUint64(0, true);
    if (p === 0n) return undefined;
    const text = new CString(Number(p)).trim();
    return text === "" || /unknown error/i.test(text) ? undefined : text;
  };

  const statusError = (name: string, status: number): SmiError => {
    const statusName = amdsmiStatusName(status, version?.layout);
    const detail = [libraryText(status), amdsmiStatusHint(statusName)].filter((s) => s).join("; ");
    return new SmiError(name, statusName, status, detail || undefined);
  };

  /** Call `name` with `args`; throws SmiError on any status but SUCCESS. */
  const call = (name: SymbolName, ...args: unknown[]): void => {
    const status = fn(name)(...args);
    if (status !== AMDSMI_STATUS.SUCCESS) throw statusError(name, status);
  };

  /**
   * An identity field (board strings, partitions, virtualization mode): a GPU whose library
   * cannot tell one of them (FILE_ERROR, NO_DATA, ... on some boards and VMs) still lists;
   * the field stays unknown and is read again later. Only a dead handle or an uninitialised
   * library (INVAL, NOT_INIT) is an error.
   */
  const identityOptional = (name: AmdsmiOptionalSymbol, ...args: unknown[]): boolean => {
    alive(name);
    if (!fns[name]) return false;
    const status = fn(name)(...args);
    if (status === AMDSMI_STATUS.SUCCESS) return true;
    if (status === AMDSMI_STATUS.INVAL || status === AMDSMI_STATUS.NOT_INIT) throw statusError(name, status);
    return false;
  };

  const layoutOf = (name: string): AmdsmiLayoutTable => {
    // Another thread's binding may have made the init this one never saw: ask again.
    if (!version) versionProbe();
    if (!version) {
      throw new SmiError(
        name,
        "NOT_SUPPORTED",
        AMDSMI_STATUS.NOT_SUPPORTED,
        "the library has not told its version yet (24.x and 25.x tell it only after a successful amdsmi_init), so its struct layout is unknown",
      );
    }
    return AMDSMI_LAYOUTS[version.layout];
  };

  /** Ask amdsmi_get_lib_version; on an answer, fix the layout for good. */
  const versionProbe = (): void => {
    const o = out(AMDSMI_STRUCTS.version.size_bytes);
    if (fn("amdsmi_get_lib_version")(o.bytes) !== AMDSMI_STATUS.SUCCESS) return;
    const w = (i: number): number => o.view.getUint32(AMDSMI_STRUCTS.version.words + 4 * i, true);
    const buildPtr = o.view.getBigUint64(AMDSMI_STRUCTS.version.build, true);
    const build = buildPtr === 0n ? undefined : new CString(Number(buildPtr));
    version = amdsmiVersionDecode([w(0), w(1), w(2), w(3)], build);
    if (version) {
      info.version = version.text;
      info.layout = version.layout;
    }
  };

  const uuidRead = (h: SmiHandle): string => {
    const len = out(4);
    len.view.setUint32(0, UUID_BUFFER_bytes, true);
    const text = out(UUID_BUFFER_bytes);
    call("amdsmi_get_gpu_device_uuid", h, len.bytes, text.bytes);
    return charField(text.bytes, { offset: 0, bytes: UUID_BUFFER_bytes }) ?? "";
  };

  const bdfRead = (h: SmiHandle): string => {
    const o = out(AMDSMI_STRUCTS.bdf.size_bytes);
    call("amdsmi_get_gpu_device_bdf", h, o.bytes);
    return amdsmiBdfText(o.view.getBigUint64(0, true));
  };

  /** Fill up to `n` handles of `socket` (0n: every processor). */
  const handlesFill = (socket: bigint, n: number): bigint[] => {
    const name = "amdsmi_get_processor_handles";
    if (n === 0) return [];
    if (n > GPUS_MAX) {
      throw new SmiError(name, "INSUFFICIENT_SIZE", AMDSMI_STATUS.INSUFFICIENT_SIZE, `the library reports ${n} processors, more than GPUS_MAX (${GPUS_MAX})`);
    }
    const count = out(4);
    count.view.setUint32(0, n, true);
    const handles = out(8 * n);
    call(name, socket, count.bytes, handles.bytes);
    const k = Math.min(count.view.getUint32(0, true), n);
    return Array.from({ length: k }, (_, i) => handles.view.getBigUint64(8 * i, true));
  };

  /** Older libraries refuse a NULL socket: walk the sockets. */
  const handlesBySocket = (): bigint[] => {
    const name = "amdsmi_get_socket_handles";
    const count = out(4);
    call(name, count.bytes, null);
    const n = count.view.getUint32(0, true);
    if (n > GPUS_MAX) throw new SmiError(name, "INSUFFICIENT_SIZE", AMDSMI_STATUS.INSUFFICIENT_SIZE, `the library reports ${n} sockets, more than GPUS_MAX (${GPUS_MAX})`);
    if (n === 0) return [];
    const sockets = out(8 * n);
    count.view.setUint32(0, n, true);
    call(name, count.bytes, sockets.bytes);
    const k = Math.min(count.view.getUint32(0, true), n);
    const all: bigint[] = [];
    for (let i = 0; i < k; i++) {
      const socket = sockets.view.getBigUint64(8 * i, true);
      const c = out(4);
      call("amdsmi_get_processor_handles", socket, c.bytes, null);
      all.push(...handlesFill(socket, Math.min(c.view.getUint32(0, true), GPUS_MAX + 1 - all.length)));
      if (all.length > GPUS_MAX) break;
    }
    return all.slice(0, GPUS_MAX);
  };

  const gpuHandles = (): SmiHandle[] => {
    const name = "amdsmi_get_processor_handles";
    const count = out(4);
    const status = fn(name)(0n, count.bytes, null);
    if (status === AMDSMI_STATUS.INVAL && fns.amdsmi_get_socket_handles) return handlesBySocket();
    if (status !== AMDSMI_STATUS.SUCCESS) throw statusError(name, status);
    return handlesFill(0n, count.view.getUint32(0, true));
  };

  const gpuHandleFromUuid = (uuid: string): SmiHandle => {
    const name = "amdsmi_get_processor_handle_from_uuid";
    if (fns[name]) {
      const text = new TextEncoder().encode(`${uuid}\0`);
      const arg = new Uint8Array(new ArrayBuffer(text.byteLength));
      arg.set(text);
      const o = out(8);
      call(name, arg, o.bytes);
      return o.view.getBigUint64(0, true);
    }
    alive(name);
    // 24.x lacks the lookup: enumerate and compare.
    const wanted = uuid.toLowerCase();
    const handles = gpuHandles();
    const unreadable: string[] = [];
    for (const h of handles) {
      try {
        if (uuidRead(h).toLowerCase() === wanted) return h;
      } catch (e) {
        if (!(e instanceof SmiError)) throw e;
        unreadable.push(e.statusName);
      }
    }
    const skipped = unreadable.length ? `, ${unreadable.length} of them unreadable (${unreadable.join(", ")})` : "";
    throw new SmiError(
      name,
      "NOT_FOUND",
      AMDSMI_STATUS.NOT_FOUND,
      `no GPU has UUID ${uuid} among ${handles.length} enumerated${skipped} (this library lacks the lookup: svmrt compared UUIDs)`,
    );
  };

  const gpuStatic = (h: SmiHandle): SmiGpuStatic => {
    const s: SmiGpuStatic = { uuid: uuidRead(h), bdf: bdfRead(h), deploymentMode: "unknown" };
    if (!version) versionProbe();
    if (version) {
      const layout = AMDSMI_LAYOUTS[version.layout];
      const board = out(layout.board.size_bytes);
      if (identityOptional("amdsmi_get_gpu_board_info", h, board.bytes)) {
        const model = charField(board.bytes, layout.board.modelNumber);
        const serial = charField(board.bytes, layout.board.productSerial);
        const product = charField(board.bytes, layout.board.productName);
        if (model) s.cardModel = model;
        if (serial) s.serial = serial;
        if (product) s.marketName = product;
      }
      const asic = out(layout.asic.size_bytes);
      if (identityOptional("amdsmi_get_gpu_asic_info", h, asic.bytes)) {
        const market = charField(asic.bytes, layout.asic.marketName);
        if (market) s.marketName = market;
      }
    }
    const kfd = out(AMDSMI_STRUCTS.kfdInfo.size_bytes);
    if (identityOptional("amdsmi_get_gpu_kfd_info", h, kfd.bytes)) {
      const id = u64Known(kfd.view.getBigUint64(AMDSMI_STRUCTS.kfdInfo.kfdId, true));
      const partition = kfd.view.getUint32(AMDSMI_STRUCTS.kfdInfo.currentPartitionId, true);
      if (id !== undefined) s.kfdGpuId = id;
      if (partition !== U32_UNSUPPORTED) s.partitionId = partition;
    }
    const compute = out(PARTITION_TEXT_bytes);
    if (identityOptional("amdsmi_get_gpu_compute_partition", h, compute.bytes, PARTITION_TEXT_bytes)) {
      const text = charField(compute.bytes, { offset: 0, bytes: PARTITION_TEXT_bytes });
      if (text) s.computePartition = text;
    }
    const memory = out(PARTITION_TEXT_bytes);
    if (identityOptional("amdsmi_get_gpu_memory_partition", h, memory.bytes, PARTITION_TEXT_bytes)) {
      const text = charField(memory.bytes, { offset: 0, bytes: PARTITION_TEXT_bytes });
      if (text) s.memoryPartition = text;
    }
    const mode = out(4);
    if (identityOptional("amdsmi_get_gpu_virtualization_mode", h, mode.bytes)) s.deploymentMode = deploymentModeOf(mode.view.getUint32(0, true));
    return s;
  };

  const gpuTemperature = (h: SmiHandle, sensor: TemperatureSensor): number => {
    const o = out(8);
    call("amdsmi_get_temp_metric", h, TEMPERATURE_SENSOR_ID[sensor], TEMPERATURE_METRIC_CURRENT, o.bytes);
    const v = Number(o.view.getBigInt64(0, true));
    return Math.abs(v) >= TEMPERATURE_MILLIDEGREES_MIN ? v / 1000 : v;
  };

  const gpuPower = (h: SmiHandle): SmiPower => {
    const name = "amdsmi_get_power_info";
    fn(name); // unloaded or absent before "layout unknown"
    const p = layoutOf(name).power;
    const o = out(p.size_bytes);
    call(name, h, o.bytes);
    const current = u32Known(o.view.getUint32(p.currentSocketPower, true));
    const socket = p.socketPower === undefined ? undefined : u64Known(o.view.getBigUint64(p.socketPower, true));
    const average = u32Known(o.view.getUint32(p.averageSocketPower, true));
    const limit = u32Known(o.view.getUint32(p.powerLimit, true));
    const r: SmiPower = {};
    const socketW = current ?? socket;
    if (socketW !== undefined) r.socketW = socketW;
    if (average !== undefined) r.averageW = average;
    if (limit !== undefined) r.limitW = limit;
    return r;
  };

  const gpuActivity = (h: SmiHandle): SmiActivity => {
    const e = AMDSMI_STRUCTS.engineUsage;
    const o = out(e.size_bytes);
    call("amdsmi_get_gpu_activity", h, o.bytes);
    const r: SmiActivity = {};
    const gfx = u32Known(o.view.getUint32(e.gfx, true));
    const umc = u32Known(o.view.getUint32(e.umc, true));
    const mm = u32Known(o.view.getUint32(e.mm, true));
    if (gfx !== undefined) r.gfxPct = gfx;
    if (umc !== undefined) r.umcPct = umc;
    if (mm !== undefined) r.mmPct = mm;
    return r;
  };

  const gpuMemory = (h: SmiHandle, kind: MemoryKind): SmiMemory => {
    const used = out(8);
    const total = out(8);
    call("amdsmi_get_gpu_memory_usage", h, MEMORY_TYPE_ID[kind], used.bytes);
    call("amdsmi_get_gpu_memory_total", h, MEMORY_TYPE_ID[kind], total.bytes);
    return { usedBytes: Number(used.view.getBigUint64(0, true)), totalBytes: Number(total.view.getBigUint64(0, true)) };
  };

  const gpuXgmi = (h: SmiHandle): SmiXgmi => {
    const x = AMDSMI_STRUCTS.xgmiInfo;
    const o = out(x.size_bytes);
    call("amdsmi_get_xgmi_info", h, o.bytes);
    return {
      hiveId: o.view.getBigUint64(x.hiveId, true),
      nodeId: o.view.getBigUint64(x.nodeId, true),
      index: o.view.getUint32(x.index, true),
      lanes: o.view.getUint8(x.lanes),
    };
  };

  const gpuLink = (src: SmiHandle, dst: SmiHandle): SmiLink => {
    const hops = out(8);
    const type = out(4);
    call("amdsmi_topo_get_link_type", src, dst, hops.bytes, type.bytes);
    return { hops: Number(hops.view.getBigUint64(0, true)), type: linkTypeOf(type.view.getUint32(0, true)) };
  };

  const gpuPcie = (h: SmiHandle): SmiPcie => {
    const p = AMDSMI_STRUCTS.pcieInfo;
    const o = out(p.size_bytes);
    call("amdsmi_get_pcie_info", h, o.bytes);
    const r: SmiPcie = {};
    const width = o.view.getUint16(p.width, true);
    const speed = u32Known(o.view.getUint32(p.speed, true));
    const bandwidth = u32Known(o.view.getUint32(p.bandwidth, true));
    const replay = o.view.getBigUint64(p.replayCount, true);
    if (width !== U16_UNSUPPORTED) r.width = width;
    if (speed !== undefined) r.speedMts = speed;
    if (bandwidth !== undefined) r.bandwidthMbs = bandwidth;
    if (replay !== U64_UNSUPPORTED) r.replayCount = Number(replay);
    return r;
  };

  const gpuEcc = (h: SmiHandle): SmiEcc => {
    const e = AMDSMI_STRUCTS.errorCount;
    const o = out(e.size_bytes);
    call("amdsmi_get_gpu_total_ecc_count", h, o.bytes);
    const r: SmiEcc = {
      correctable: Number(o.view.getBigUint64(e.correctable, true)),
      uncorrectable: Number(o.view.getBigUint64(e.uncorrectable, true)),
    };
    const deferred = o.view.getBigUint64(e.deferred, true);
    if (deferred !== U64_UNSUPPORTED) r.deferred = Number(deferred);
    return r;
  };

  const eventsStart = (h: SmiHandle, mask: bigint): void => {
    call("amdsmi_init_gpu_event_notification", h);
    call("amdsmi_set_gpu_event_notification_mask", h, mask);
  };

  const eventsRead = (timeoutMs: number, max: number): SmiGpuEvent[] => {
    const name = "amdsmi_get_gpu_event_notification";
    fn(name);
    const ev = layoutOf(name).event;
    const n = Math.min(Math.floor(max), SMI_EVENTS_PER_READ_MAX);
    if (!(n >= 1)) return [];
    const timeout = Math.min(Math.max(0, Math.floor(timeoutMs) || 0), EVENTS_READ_TIMEOUT_MAX_ms);
    const count = out(4);
    count.view.setUint32(0, n, true);
    const data = out(ev.size_bytes * n);
    const status = fn(name)(timeout, count.bytes, data.bytes);
    if (status === AMDSMI_STATUS.NO_DATA) return [];
    if (status !== AMDSMI_STATUS.SUCCESS) throw statusError(name, status);
    const k = Math.min(count.view.getUint32(0, true), n);
    const events: SmiGpuEvent[] = [];
    for (let i = 0; i < k; i++) {
      const base = i * ev.size_bytes;
      const typeId = data.view.getUint32(base + ev.type, true);
      events.push({
        handle: data.view.getBigUint64(base + ev.handle, true),
        type: GPU_EVENT_NAME.get(typeId) ?? "UNKNOWN",
        typeId,
        message: charField(data.bytes, { offset: base + ev.message.offset, bytes: ev.message.bytes }) ?? "",
      });
    }
    return events;
  };

  const unload = (): void => {
    if (!loaded) return;
    loaded = false;
    for (const lib of libs) lib.close();
  };

  versionProbe();

  return {
    get info() {
      return info;
    },
    init() {
      call("amdsmi_init", AMDSMI_INIT_AMD_GPUS);
      if (!version) versionProbe();
    },
    shutDown() {
      call("amdsmi_shut_down");
    },
    gpuHandles,
    gpuHandleFromUuid,
    gpuStatic,
    gpuTemperature,
    gpuPower,
    gpuActivity,
    gpuMemory,
    gpuXgmi,
    gpuLink,
    gpuPcie,
    gpuEcc,
    eventsStart,
    eventsRead,
    eventsStop(h) {
      call("amdsmi_stop_gpu_event_notification", h);
    },
    unload,
    [Symbol.dispose]: unload,
  };
}
