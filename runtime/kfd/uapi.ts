/**
 * The ABI of `<linux/kfd_ioctl.h>` (KFD ioctl 1.11) that svmrt uses, as one declarative table:
 * ioctl numbers computed from direction, argument size and nr, argument struct layouts
 * (size, field offsets, field types) and the constants. Pure data and pure functions, no I/O.
 *
 * Names are the kernel's without the `AMDKFD_IOC_` / `kfd_ioctl_` prefixes, so the table can be
 * checked field by field against the header: test/kfd/abi.test.ts compiles
 * test/native/kfd_abi_probe.c against the system header and compares every size, offset and
 * ioctl number with this file (`svmrt kfd abi --json` prints the same shape).
 *
 * All structs are little endian (x86_64, aarch64). u64 fields decode to bigint, u32/s32 to number.
 */

/** Newest ioctl minor version whose layouts this file was checked against. */
export const KFD_IOCTL_MAJOR_VERSION = 1;
export const KFD_IOCTL_MINOR_VERSION = 11;

// ---------------------------------------------------------------------------------------------
// ioctl number encoding (asm-generic/ioctl.h)

/** `_IOC_WRITE`: user space writes the argument (to KFD). */
export const IOC_WRITE = 1;
/** `_IOC_READ`: user space reads the argument back (from KFD). */
export const IOC_READ = 2;
export const IOC_NRSHIFT = 0;
export const IOC_TYPESHIFT = 8;
export const IOC_SIZESHIFT = 16;
export const IOC_DIRSHIFT = 30;
/** `_IOC_SIZEBITS`: an argument struct larger than this cannot be encoded. */
export const IOC_SIZE_MAX_bytes = (1 << 14) - 1;
/** `AMDKFD_IOCTL_BASE`. */
export const AMDKFD_IOCTL_BASE = "K".charCodeAt(0);

export type IoctlDirection = "R" | "W" | "WR";

/**
 * `_IOC(dir, 'K', nr, size)`: dir<<30 | size<<16 | 'K'<<8 | nr, as an unsigned 32-bit number.
 * @throws RangeError when nr or size do not fit their bit fields.
 */
export function ioctlEncode(dir: IoctlDirection, nr: number, size_bytes: number): number {
  if (!Number.isInteger(nr) || nr < 0 || nr > 0xff) throw new RangeError(`ioctl nr ${nr} out of 0..255`);
  if (!Number.isInteger(size_bytes) || size_bytes < 0 || size_bytes > IOC_SIZE_MAX_bytes) {
    throw new RangeError(`ioctl argument size ${size_bytes} out of 0..${IOC_SIZE_MAX_bytes}`);
  }
  const bits = dir === "R" ? IOC_READ : dir === "W" ? IOC_WRITE : IOC_READ | IOC_WRITE;
  return (
    ((bits << IOC_DIRSHIFT) |
      (size_bytes << IOC_SIZESHIFT) |
      (AMDKFD_IOCTL_BASE << IOC_TYPESHIFT) |
      (nr << IOC_NRSHIFT)) >>>
    0
  );
}

// ---------------------------------------------------------------------------------------------
// Struct layouts

export type FieldType = "u32" | "s32" | "u64";

export interface FieldLayout {
  readonly offset: number;
  readonly type: FieldType;
}

export interface StructLayout {
  /** sizeof(struct); a flexible array member (svm_args.attrs) is not counted, as in C. */
  readonly size: number;
  readonly fields: Readonly<Record<string, FieldLayout>>;
  /** Element layout of a flexible array member that starts at `fields[name].offset`. */
  readonly flexible?: { readonly field: string; readonly element: string };
}

const u32 = (offset: number) => ({ offset, type: "u32" as const });
const s32 = (offset: number) => ({ offset, type: "s32" as const });
const u64 = (offset: number) => ({ offset, type: "u64" as const });

/** Argument structs, kernel names without `kfd_ioctl_`. Offsets in bytes. */
export const STRUCTS = {
  get_version_args: { size: 8, fields: { major_version: u32(0), minor_version: u32(4) } },
  kfd_process_device_apertures: {
    size: 56,
    fields: {
      lds_base: u64(0),
      lds_limit: u64(8),
      scratch_base: u64(16),
      scratch_limit: u64(24),
      gpuvm_base: u64(32),
      gpuvm_limit: u64(40),
      gpu_id: u32(48),
      pad: u32(52),
    },
  },
  get_process_apertures_new_args: {
    size: 16,
    fields: { kfd_process_device_apertures_ptr: u64(0), num_of_nodes: u32(8), pad: u32(12) },
  },
  acquire_vm_args: { size: 8, fields: { drm_fd: u32(0), gpu_id: u32(4) } },
  alloc_memory_of_gpu_args: {
    size: 40,
    fields: {
      va_addr: u64(0),
      size: u64(8),
      handle: u64(16),
      mmap_offset: u64(24),
      gpu_id: u32(32),
      flags: u32(36),
    },
  },
  free_memory_of_gpu_args: { size: 8, fields: { handle: u64(0) } },
  map_memory_to_gpu_args: {
    size: 24,
    fields: { handle: u64(0), device_ids_array_ptr: u64(8), n_devices: u32(16), n_success: u32(20) },
  },
  unmap_memory_from_gpu_args: {
    size: 24,
    fields: { handle: u64(0), device_ids_array_ptr: u64(8), n_devices: u32(16), n_success: u32(20) },
  },
  smi_events_args: { size: 8, fields: { gpuid: u32(0), anon_fd: u32(4) } },
  svm_attribute: { size: 8, fields: { type: u32(0), value: u32(4) } },
  svm_args: {
    size: 24,
    fields: { start_addr: u64(0), size: u64(8), op: u32(16), nattr: u32(20), attrs: u32(24) },
    flexible: { field: "attrs", element: "svm_attribute" },
  },
  set_xnack_mode_args: { size: 4, fields: { xnack_enabled: s32(0) } },
  get_available_memory_args: { size: 16, fields: { available: u64(0), gpu_id: u32(8), pad: u32(12) } },
} as const satisfies Record<string, StructLayout>;

export type StructName = keyof typeof STRUCTS;

// ---------------------------------------------------------------------------------------------
// ioctls

export interface IoctlSpec {
  readonly nr: number;
  readonly dir: IoctlDirection;
  readonly struct: StructName;
  /** First KFD ioctl minor version (major 1) that has this ioctl; older drivers get ENOTTY. */
  readonly since_minor: number;
}

/**
 * The ioctls svmrt uses, direction as declared in the header (AMDKFD_IOR/IOW/IOWR).
 * since_minor follows the header's change log: 1.3 SMI events, 1.5 SVM API (SVM and
 * SET_XNACK_MODE), 1.9 available memory; the rest predate the versioned change log (1.1).
 */
export const IOCTL_SPECS = {
  GET_VERSION: { nr: 0x01, dir: "R", struct: "get_version_args", since_minor: 0 },
  GET_PROCESS_APERTURES_NEW: { nr: 0x14, dir: "WR", struct: "get_process_apertures_new_args", since_minor: 1 },
  ACQUIRE_VM: { nr: 0x15, dir: "W", struct: "acquire_vm_args", since_minor: 1 },
  ALLOC_MEMORY_OF_GPU: { nr: 0x16, dir: "WR", struct: "alloc_memory_of_gpu_args", since_minor: 1 },
  FREE_MEMORY_OF_GPU: { nr: 0x17, dir: "W", struct: "free_memory_of_gpu_args", since_minor: 1 },
  MAP_MEMORY_TO_GPU: { nr: 0x18, dir: "WR", struct: "map_memory_to_gpu_args", since_minor: 1 },
  UNMAP_MEMORY_FROM_GPU: { nr: 0x19, dir: "WR", struct: "unmap_memory_from_gpu_args", since_minor: 1 },
  SMI_EVENTS: { nr: 0x1f, dir: "WR", struct: "smi_events_args", since_minor: 3 },
  SVM: { nr: 0x20, dir: "WR", struct: "svm_args", since_minor: 5 },
  SET_XNACK_MODE: { nr: 0x21, dir: "WR", struct: "set_xnack_mode_args", since_minor: 5 },
  AVAILABLE_MEMORY: { nr: 0x23, dir: "WR", struct: "get_available_memory_args", since_minor: 9 },
} as const satisfies Record<string, IoctlSpec>;

export type IoctlName = keyof typeof IOCTL_SPECS;

/** Request numbers, computed: `IOCTL.SVM === 0xc0184b20`. */
export const IOCTL: { readonly [K in IoctlName]: number } = Object.fromEntries(
  Object.entries(IOCTL_SPECS).map(([name, s]) => [name, ioctlEncode(s.dir, s.nr, STRUCTS[s.struct].size)]),
) as { [K in IoctlName]: number };

/**
 * AMDKFD_IOC_SVM for a call with `nattr` attributes: the size field counts attrs[] too.
 * kfd_ioctl copies exactly _IOC_SIZE(cmd) bytes in, and back out, and the flexible attrs[] is
 * not in sizeof(struct kfd_ioctl_svm_args): user space adds it (libhsakmt:
 * `AMDKFD_IOC_SVM + (s_attr << _IOC_SIZESHIFT)`). Kernels with the nattr check refuse a size
 * below the attributes with EINVAL; older ones read past the copied bytes.
 * @throws RangeError when the size does not fit the size field.
 */
export function svmRequest(nattr: number): number {
  const s = IOCTL_SPECS.SVM;
  return ioctlEncode(s.dir, s.nr, STRUCTS.svm_args.size + nattr * STRUCTS.svm_attribute.size);
}

/** The argument size an SVM request declares (any size field), or undefined for any other request. */
export function svmRequestSize(request: number): number | undefined {
  const sizeMask = IOC_SIZE_MAX_bytes << IOC_SIZESHIFT;
  if (((request & ~sizeMask) >>> 0) !== ((IOCTL.SVM & ~sizeMask) >>> 0)) return undefined;
  return (request >>> IOC_SIZESHIFT) & IOC_SIZE_MAX_bytes;
}

// ---------------------------------------------------------------------------------------------
// Constants

/** KFD_IOC_ALLOC_MEM_FLAGS_*: memory type (low bits) and attributes (high bits). */
export const ALLOC_MEM_FLAGS = {
  VRAM: 1 << 0,
  GTT: 1 << 1,
  USERPTR: 1 << 2,
  DOORBELL: 1 << 3,
  MMIO_REMAP: 1 << 4,
  WRITABLE: 2 ** 31,
  EXECUTABLE: 1 << 30,
  PUBLIC: 1 << 29,
  NO_SUBSTITUTE: 1 << 28,
  AQL_QUEUE_MEM: 1 << 27,
  COHERENT: 1 << 26,
  UNCACHED: 1 << 25,
} as const;

/** enum kfd_ioctl_svm_op. */
export const SVM_OP = { SET_ATTR: 0, GET_ATTR: 1 } as const;

/** enum kfd_ioctl_svm_attr_type; anything else is EINVAL. */
export const SVM_ATTR = {
  PREFERRED_LOC: 0,
  PREFETCH_LOC: 1,
  ACCESS: 2,
  ACCESS_IN_PLACE: 3,
  NO_ACCESS: 4,
  SET_FLAGS: 5,
  CLR_FLAGS: 6,
  GRANULARITY: 7,
} as const;
export type SvmAttrName = keyof typeof SVM_ATTR;
export const SVM_ATTR_NAMES: readonly SvmAttrName[] = Object.keys(SVM_ATTR) as SvmAttrName[];

/** enum kfd_ioctl_svm_location. */
export const SVM_LOCATION = { SYSMEM: 0, UNDEFINED: 0xffffffff } as const;

/**
 * KFD_IOCTL_SVM_FLAG_*. EXT_COHERENT (0x80) came after 1.11 and is not in this header;
 * see runtime/policy/contracts/migration.ts SVM_FLAG for the full set the model uses.
 */
export const SVM_FLAG_1_11 = {
  HOST_ACCESS: 0x1,
  COHERENT: 0x2,
  HIVE_LOCAL: 0x4,
  GPU_RO: 0x8,
  GPU_EXEC: 0x10,
  GPU_READ_MOSTLY: 0x20,
  GPU_ALWAYS_MAPPED: 0x40,
} as const;

/** The largest granularity value (log2 pages) the driver keeps; larger values are capped. */
export const SVM_GRANULARITY_MAX_log2_pages = 0x3f;

/**
 * enum kfd_smi_event. PROCESS_START (12) and PROCESS_END (13) were added after 1.11; the
 * conformance probe only checks the ids present in the system header.
 */
export const SMI_EVENT = {
  VMFAULT: 1,
  THERMAL_THROTTLE: 2,
  GPU_PRE_RESET: 3,
  GPU_POST_RESET: 4,
  MIGRATE_START: 5,
  MIGRATE_END: 6,
  PAGE_FAULT_START: 7,
  PAGE_FAULT_END: 8,
  QUEUE_EVICTION: 9,
  QUEUE_RESTORE: 10,
  UNMAP_FROM_GPU: 11,
  PROCESS_START: 12,
  PROCESS_END: 13,
  ALL_PROCESS: 64,
} as const;
export type SmiEventName = keyof typeof SMI_EVENT;

/** KFD_SMI_EVENT_MSG_SIZE: the longest record, newline included. */
export const SMI_EVENT_MSG_SIZE_bytes = 96;

/** KFD_SMI_EVENT_MASK_FROM_INDEX(i) = 1 << (i - 1), as a 64-bit mask. */
export function smiEventMaskFromIndex(id: number): bigint {
  if (!Number.isInteger(id) || id < 1 || id > 64) throw new RangeError(`SMI event id ${id} out of 1..64`);
  return 1n << BigInt(id - 1);
}

/** enum KFD_MIGRATE_TRIGGERS. */
export const MIGRATE_TRIGGER = { PREFETCH: 0, PAGEFAULT_GPU: 1, PAGEFAULT_CPU: 2, TTM_EVICTION: 3 } as const;
/** enum KFD_QUEUE_EVICTION_TRIGGERS (kernel names QUEUE_EVICTION_TRIGGER_* and QUEUE_EVICTION_CRIU_*). */
export const QUEUE_EVICTION_TRIGGER = {
  SVM: 0,
  USERPTR: 1,
  TTM: 2,
  SUSPEND: 3,
  CRIU_CHECKPOINT: 4,
  CRIU_RESTORE: 5,
} as const;
/** enum KFD_SVM_UNMAP_TRIGGERS. */
export const SVM_UNMAP_TRIGGER = { MMU_NOTIFY: 0, MMU_NOTIFY_MIGRATE: 1, UNMAP_FROM_CPU: 2 } as const;

// ---------------------------------------------------------------------------------------------
// encode / decode

/** The JS type a field decodes to: bigint for u64, number for u32/s32. */
type FieldValue<F> = F extends { type: "u64" } ? bigint : number;
export type StructValues<S extends StructName> = {
  -readonly [K in keyof (typeof STRUCTS)[S]["fields"]]: FieldValue<(typeof STRUCTS)[S]["fields"][K]>;
};

/**
 * Write the given fields of struct `name` into `view` at `base`; fields not given are left as
 * they are (a fresh buffer is zero). Flexible array members are written by the caller.
 * @throws RangeError when a value does not fit its field type.
 */
export function structEncode<S extends StructName>(
  name: S,
  values: Partial<StructValues<S>>,
  view: DataView,
  base = 0,
): void {
  const layout: StructLayout = STRUCTS[name];
  for (const [field, value] of Object.entries(values) as [string, number | bigint | undefined][]) {
    if (value === undefined) continue;
    const f = layout.fields[field];
    if (!f || field === layout.flexible?.field) throw new RangeError(`${name} has no scalar field ${field}`);
    fieldWrite(view, base + f.offset, f.type, value, `${name}.${field}`);
  }
}

/** Read every scalar field of struct `name` from `view` at `base`. */
export function structDecode<S extends StructName>(name: S, view: DataView, base = 0): StructValues<S> {
  const layout: StructLayout = STRUCTS[name];
  const out: Record<string, number | bigint> = {};
  for (const [field, f] of Object.entries(layout.fields)) {
    if (field === layout.flexible?.field) continue;
    out[field] = fieldRead(view, base + f.offset, f.type);
  }
  return out as StructValues<S>;
}

function fieldWrite(view: DataView, at: number, type: FieldType, value: number | bigint, what: string): void {
  if (type === "u64") {
    const v = BigInt(value);
    if (v < 0n || v > 0xffff_ffff_ffff_ffffn) throw new RangeError(`${what}: ${value} does not fit u64`);
    view.setBigUint64(at, v, true);
    return;
  }
  const n = Number(value);
  if (!Number.isInteger(n)) throw new RangeError(`${what}: ${value} is not an integer`);
  if (type === "u32") {
    if (n < 0 || n > 0xffffffff) throw new RangeError(`${what}: ${value} does not fit u32`);
    view.setUint32(at, n, true);
  } else {
    if (n < -0x80000000 || n > 0x7fffffff) throw new RangeError(`${what}: ${value} does not fit s32`);
    view.setInt32(at, n, true);
  }
}

function fieldRead(view: DataView, at: number, type: FieldType): number | bigint {
  if (type === "u64") return view.getBigUint64(at, true);
  return type === "u32" ? view.getUint32(at, true) : view.getInt32(at, true);
}

/** The ABI description printed by `svmrt kfd abi --json` and by the conformance probe. */
export interface AbiDescription {
  ioctls: Record<string, number>;
  structs: Record<string, { size: number; fields: Record<string, number> }>;
}

/** This table in the probe's JSON shape: ioctl numbers, struct sizes and field offsets. */
export function abiDescribe(): AbiDescription {
  const structs: AbiDescription["structs"] = {};
  for (const [name, s] of Object.entries(STRUCTS) as [string, StructLayout][]) {
    const fields: Record<string, number> = {};
    for (const [field, f] of Object.entries(s.fields)) fields[field] = f.offset;
    structs[name] = { size: s.size, fields };
  }
  return { ioctls: { ...IOCTL }, structs };
}
