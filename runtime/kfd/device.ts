/**
 * KfdDevice: a typed /dev/kfd, one method per ioctl, over the Syscalls interface (libc, a C
 * test double, or an emulator). Layouts and numbers come from ./uapi.ts only.
 *
 * Contracts:
 * - Every ioctl is gated on the version the driver reported at open (GET_VERSION): an ioctl
 *   newer than the reported minor is refused before the call with a KfdError (ENOTTY, the
 *   driver's own answer for an ioctl it does not know).
 * - Failures are KfdError(ioctl name, errno name, errno, what to do).
 * - MAP_MEMORY_TO_GPU / UNMAP_MEMORY_FROM_GPU follow the n_success protocol
 *   (reference/kfd-uapi.md): after EINTR the call is repeated with the n_success the driver
 *   returned, so a device is never mapped twice, at most MAP_EINTR_RETRIES_MAX times; when it
 *   gives up, KfdPartialMapError lists exactly which devices are mapped and which are not.
 * - Disposal is explicit: `close()` or `using dev = KfdDevice.open(...)`. SMI event fds and
 *   the syscalls library have their own owners (smi-events.ts, the caller).
 *
 * Buffers: argument structs live in per-device scratch buffers allocated over an explicit
 * ArrayBuffer (storage that is never moved), and the gpu id / SVM attribute arrays stay
 * referenced by the device for its whole life, so the addresses written into argument structs
 * are valid during every call (Syscalls.ioctl contract).
 */
import { KfdError, assert } from "../errors.ts";
import { ERRNO, errnoName } from "../ffi/errno.ts";
import { O_CLOEXEC, O_RDWR, type Syscalls } from "../ffi/syscalls.ts";
import {
  IOCTL,
  IOCTL_SPECS,
  type IoctlName,
  KFD_IOCTL_MAJOR_VERSION,
  STRUCTS,
  SVM_OP,
  svmRequest,
} from "./uapi.ts";

export const KFD_DEVICE_PATH = "/dev/kfd";
/** Retries of an interrupted (EINTR) map or unmap before reporting partial success. */
export const MAP_EINTR_RETRIES_MAX = 8;
/** Most gpu ids in one map/unmap call. */
export const MAP_DEVICES_MAX = 64;
/** Most attributes in one SVM call. */
export const SVM_ATTRS_MAX = 64;
/** Most GPUs GET_PROCESS_APERTURES_NEW is asked for. */
export const APERTURES_MAX = 64;
const PAGE_SIZE_bytes = 4096;
/** Number.MAX_SAFE_INTEGER as a module constant the JIT folds. */
const MAX_SAFE_INTEGER = 2 ** 53 - 1;

/** Largest fixed argument struct, rounded up: one scratch buffer serves every fixed ioctl. */
const ARGS_SCRATCH_bytes = 64;

export interface KfdVersion {
  major: number;
  minor: number;
}

export interface ProcessApertures {
  gpuId: number;
  ldsBase: bigint;
  ldsLimit: bigint;
  scratchBase: bigint;
  scratchLimit: bigint;
  gpuvmBase: bigint;
  gpuvmLimit: bigint;
}

/** One SVM attribute: `type` from SVM_ATTR, `value` a gpu_id, flags, location or log2 pages. */
export interface SvmAttribute {
  type: number;
  value: number;
}

export interface AllocRequest {
  /** GPU virtual address, page aligned. */
  vaAddr: bigint | number;
  size_bytes: bigint | number;
  gpuId: number;
  /** ALLOC_MEM_FLAGS bits: exactly one memory type plus attributes. */
  flags: number;
  /** USERPTR only: the CPU address of the user memory. */
  userptr?: bigint | number;
}

export interface Allocation {
  handle: bigint;
  mmapOffset: bigint;
}

/** A map or unmap that gave up part way: exactly which devices are in which state. */
export class KfdPartialMapError extends KfdError {
  override name = "KfdPartialMapError";
  constructor(
    op: "MAP_MEMORY_TO_GPU" | "UNMAP_MEMORY_FROM_GPU",
    errnoName_: string,
    errno: number,
    hint: string,
    readonly handle: bigint,
    /** gpu_ids on which the memory is mapped after the failure, in request order. */
    readonly mappedGpuIds: readonly number[],
    /** gpu_ids on which it is not mapped. */
    readonly unmappedGpuIds: readonly number[],
    /** Calls made, the first one included. */
    readonly attempts: number,
  ) {
    super(op, errnoName_, errno, hint);
  }
}

const hex = (n: number): string => `0x${n.toString(16)}`;

/** What to do about errno `e` from `op`, in the user's terms. */
export function kfdHint(op: string, e: number): string {
  switch (e) {
    case ERRNO.ENOENT:
    case ERRNO.ENODEV:
      return "no KFD device on this host: /dev/kfd appears when the amdgpu driver is loaded on a machine with an AMD GPU (modprobe amdgpu)";
    case ERRNO.EACCES:
    case ERRNO.EPERM:
      return "permission denied: add this user to the 'render' group (usermod -aG render $USER, then log in again) or run as root";
    case ERRNO.EINVAL:
      return `the driver rejected an argument of ${op}: check gpu ids, handles and page alignment`;
    case ERRNO.ENOMEM:
      return "out of memory: free GPU memory or ask for less";
    case ERRNO.EBUSY:
      return "busy: unmap the memory from every GPU first, or another DRM fd was already acquired";
    case ERRNO.EINTR:
      return "interrupted by a signal; the call can be repeated";
    case ERRNO.ENOTTY:
      return `this driver does not know ${op}: the kernel's KFD is too old`;
    case ERRNO.EIO:
      return "the GPU reported an I/O error: check dmesg for amdgpu messages";
    case ERRNO.EFAULT:
      return "the driver could not read an argument buffer (a bug in svmrt: please report it)";
    default:
      return "";
  }
}

/** Write a u64 given as a number (exact below 2^53) or bigint, without allocating for numbers. */
function u64Write(v: DataView, at: number, value: bigint | number): void {
  if (typeof value === "bigint") {
    v.setBigUint64(at, value, true);
    return;
  }
  const hi = Math.floor(value / 0x1_0000_0000);
  const lo = value - hi * 0x1_0000_0000;
  // lo is an integer in [0, 2^32) exactly when value is a non-negative integer; hi < 2^21 below 2^53.
  if (!(value >= 0 && value <= MAX_SAFE_INTEGER && lo >>> 0 === lo)) {
    throw new RangeError(`${value} is not a u64 in the safe range`);
  }
  v.setUint32(at, lo, true);
  v.setUint32(at + 4, hi, true);
}

/**
 * A u64 into a Uint32Array at 32-bit index `i` (little-endian host), low word first. The value
 * must have passed pageAligned (a u64, an integer below 2^53 when a number).
 */
function u64Store(w: Uint32Array, i: number, value: bigint | number): void {
  if (typeof value === "bigint") {
    w[i] = Number(value & 0xffff_ffffn);
    w[i + 1] = Number(value >> 32n);
    return;
  }
  const hi = Math.floor(value / 0x1_0000_0000);
  w[i] = value - hi * 0x1_0000_0000;
  w[i + 1] = hi;
}

const PAGE_MASK_BIG = BigInt(PAGE_SIZE_bytes - 1);

/**
 * True when `value` is a page multiple that fits a u64 exactly: a non-negative integer below
 * 2^53 for numbers. Float operations only: `%` and `&` on doubles beyond 2^31 take slow paths
 * in the JIT, and this runs on the SVM hot path (bench/kfd.ts).
 */
function pageAligned(value: bigint | number): boolean {
  return typeof value === "number" ? pageAlignedNumber(value) : pageAlignedBigint(value);
}

// Separate functions per type: a function mixing BigInt and double arithmetic compiles worse.
function pageAlignedNumber(value: number): boolean {
  const pages = value / PAGE_SIZE_bytes; // exact: a power of two
  return value >= 0 && value <= MAX_SAFE_INTEGER && Math.floor(pages) === pages;
}

function pageAlignedBigint(value: bigint): boolean {
  return value >= 0n && value <= 0xffff_ffff_ffff_ffffn && (value & PAGE_MASK_BIG) === 0n;
}

const GV = STRUCTS.get_version_args.fields;
const PA = STRUCTS.get_process_apertures_new_args.fields;
const AP = STRUCTS.kfd_process_device_apertures;
const AV = STRUCTS.acquire_vm_args.fields;
const AL = STRUCTS.alloc_memory_of_gpu_args.fields;
const FR = STRUCTS.free_memory_of_gpu_args.fields;
const MP = STRUCTS.map_memory_to_gpu_args.fields;
const SE = STRUCTS.smi_events_args.fields;
const SV = STRUCTS.svm_args.fields;
const SVA = STRUCTS.svm_attribute;
// 32-bit word indices of the SVM hot path, hoisted: the JIT does not fold property chains
// of the (mutable) layout table, and each costs a load per call.
const SV_START_U32 = SV.start_addr.offset >> 2;
const SV_SIZE_U32 = SV.size.offset >> 2;
const SV_OP_U32 = SV.op.offset >> 2;
const SV_NATTR_U32 = SV.nattr.offset >> 2;
const SV_ATTRS_U32 = SV.attrs.offset >> 2;
const SVA_TYPE_U32 = SVA.fields.type.offset >> 2;
const SVA_VALUE_U32 = SVA.fields.value.offset >> 2;
const SVA_SIZE_U32 = SVA.size >> 2;
const MP_IDS_PTR_U32 = MP.device_ids_array_ptr.offset >> 2;
const MP_N_DEVICES_U32 = MP.n_devices.offset >> 2;
const MP_N_SUCCESS_U32 = MP.n_success.offset >> 2;
const XN = STRUCTS.set_xnack_mode_args.fields;
const AM = STRUCTS.get_available_memory_args.fields;

/** KFD exists on x86_64 and aarch64, both little endian; the hot paths rely on it. */
export const HOST_LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/**
 * kfd_ioctl_svm_args and its attrs[] into `w`, a Uint32Array over the argument buffer
 * (little-endian host, asserted at open): 32-bit stores at word indices fixed by the table,
 * nothing allocated. Hot path of bench/kfd.ts. Inputs already checked by the caller.
 */
function svmArgsEncode(
  w: Uint32Array,
  op: number,
  start: bigint | number,
  size_bytes: bigint | number,
  attrs: readonly SvmAttribute[],
): void {
  u64Store(w, SV_START_U32, start);
  u64Store(w, SV_SIZE_U32, size_bytes);
  svmOpStore(w, op, attrs);
}

/** op, nattr and the attrs[] array of kfd_ioctl_svm_args into `w` (both encoders). */
function svmOpStore(w: Uint32Array, op: number, attrs: readonly SvmAttribute[]): void {
  const n = attrs.length;
  w[SV_OP_U32] = op;
  w[SV_NATTR_U32] = n;
  let at = SV_ATTRS_U32;
  for (let i = 0; i < n; i++) {
    const a = attrs[i]!;
    w[at + SVA_TYPE_U32] = a.type;
    w[at + SVA_VALUE_U32] = a.value;
    at += SVA_SIZE_U32;
  }
}

/** An ioctl as the device issues it: name for errors, request number, version gate. */
interface IoctlCall {
  readonly name: IoctlName;
  readonly request: number;
  readonly since_minor: number;
}

const CALL = Object.fromEntries(
  (Object.keys(IOCTL_SPECS) as IoctlName[]).map((name) => [
    name,
    { name, request: IOCTL[name], since_minor: IOCTL_SPECS[name].since_minor },
  ]),
) as { readonly [K in IoctlName]: IoctlCall };
/** The SVM call for each attribute count 0..SVM_ATTRS_MAX (svmRequest: attrs[] counted in the size). */
const SVM_CALLS: readonly IoctlCall[] = Array.from({ length: SVM_ATTRS_MAX + 1 }, (_, n) => ({ ...CALL.SVM, request: svmRequest(n) }));
const SVM_REQUESTS: readonly number[] = SVM_CALLS.map((c) => c.request);
const SVM_OP_SET_ATTR = SVM_OP.SET_ATTR;
/** Largest page count whose byte size is below 2^53. */
const MAX_SAFE_PAGES = Math.floor(MAX_SAFE_INTEGER / PAGE_SIZE_bytes);
/** 2^32 bytes in pages. */
const PAGES_PER_U32 = 0x1_0000_0000 / PAGE_SIZE_bytes;

/** A new zeroed buffer backed by an explicit ArrayBuffer: its storage never moves. */
function scratchAlloc(size_bytes: number): Uint8Array {
  return new Uint8Array(new ArrayBuffer(size_bytes));
}

export class KfdDevice implements Disposable {
  readonly version: KfdVersion;
  /** version.minor, or 0 before GET_VERSION answered: the gate of every ioctl. */
  private minor: number;
  /** Open and the driver has SVM: the one test of svmSetAttr's fast path. */
  private svmReady = false;
  private fd: number;
  private readonly args = scratchAlloc(ARGS_SCRATCH_bytes);
  private readonly argsView = new DataView(this.args.buffer);
  private readonly svm = scratchAlloc(STRUCTS.svm_args.size + SVM_ATTRS_MAX * SVA.size);
  private readonly svmView = new DataView(this.svm.buffer);
  private readonly svm32 = new Uint32Array(this.svm.buffer);
  private readonly args32 = new Uint32Array(this.args.buffer);
  private readonly ids = scratchAlloc(4 * MAP_DEVICES_MAX);
  private readonly ids32 = new Uint32Array(this.ids.buffer);
  /** Address of `ids` in two 32-bit halves, taken once: `ids` lives as long as the device. */
  private readonly idsAddressLo: number;
  private readonly idsAddressHi: number;

  private constructor(
    private readonly sys: Syscalls,
    fd: number,
  ) {
    this.fd = fd;
    const idsAddress = sys.addressOf(this.ids);
    this.idsAddressLo = Number(idsAddress & 0xffff_ffffn);
    this.idsAddressHi = Number(idsAddress >> 32n);
    // GET_VERSION is the one ioctl asked before the version is known (since_minor 0).
    this.minor = 0;
    this.version = { major: 0, minor: 0 };
    this.version = this.getVersion();
    this.minor = this.version.minor;
    this.svmReady = CALL.SVM.since_minor <= this.minor;
  }

  /**
   * Open `path` (default /dev/kfd) through `sys` and read the driver's version.
   * @throws KfdError `open /dev/kfd` with ENOENT/ENODEV (no device) or EACCES/EPERM (no
   *   permission), or GET_VERSION's error; the fd is closed again on failure.
   */
  static open(sys: Syscalls, path: string = KFD_DEVICE_PATH): KfdDevice {
    assert(HOST_LITTLE_ENDIAN, "the KFD binding needs a little-endian host (KFD exists on x86_64 and aarch64)");
    const fd = sys.open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) throw new KfdError(`open ${path}`, errnoName(-fd), -fd, kfdHint(`open ${path}`, -fd));
    try {
      const dev = new KfdDevice(sys, fd);
      if (dev.version.major !== KFD_IOCTL_MAJOR_VERSION) {
        throw new KfdError(
          "GET_VERSION",
          "EPROTO",
          ERRNO.EPROTO,
          `driver reports KFD ioctl ${dev.version.major}.${dev.version.minor}; svmrt speaks major ${KFD_IOCTL_MAJOR_VERSION}`,
        );
      }
      return dev;
    } catch (e) {
      sys.close(fd);
      throw e;
    }
  }

  /** True until close(). */
  get isOpen(): boolean {
    return this.fd >= 0;
  }

  /** Whether the driver's reported version has `name`. */
  supports(name: IoctlName): boolean {
    return IOCTL_SPECS[name].since_minor <= this.version.minor;
  }

  /** Close the KFD fd. Idempotent. */
  close(): void {
    if (this.fd < 0) return;
    const fd = this.fd;
    this.fd = -1;
    this.svmReady = false;
    this.sys.close(fd);
  }

  [Symbol.dispose](): void {
    this.close();
  }

  /** The syscalls this device uses (for SMI event fds of the same process). */
  get syscalls(): Syscalls {
    return this.sys;
  }

  /**
   * The one place an ioctl is issued: version gate, then the call. Takes a CALL entry, not a
   * name: a keyed lookup by a string variable costs more than the FFI call on the hot path.
   */
  private ioctl(call: IoctlCall, arg: Uint8Array): number {
    if (this.fd < 0) throw new KfdError(call.name, "EBADF", ERRNO.EBADF, "the KFD device was closed");
    if (call.since_minor > this.minor) this.refuse(call);
    return this.sys.ioctl(this.fd, call.request, arg);
  }

  private refuse(call: IoctlCall): never {
    throw new KfdError(
      call.name,
      "ENOTTY",
      ERRNO.ENOTTY,
      `refused before the call: the driver reports KFD ioctl ${this.version.major}.${this.version.minor}, ${call.name} needs 1.${call.since_minor}; update the kernel`,
    );
  }

  private fail(name: string, r: number, hint?: string): never {
    const e = -r;
    throw new KfdError(name, errnoName(e), e, hint ?? kfdHint(name, e));
  }

  /** GET_VERSION. */
  getVersion(): KfdVersion {
    const v = this.argsView;
    this.args.fill(0, 0, STRUCTS.get_version_args.size);
    const r = this.ioctl(CALL.GET_VERSION, this.args);
    if (r < 0) this.fail("GET_VERSION", r);
    return { major: v.getUint32(GV.major_version.offset, true), minor: v.getUint32(GV.minor_version.offset, true) };
  }

  /**
   * GET_PROCESS_APERTURES_NEW: apertures of every GPU of the process (asks for the count, then
   * for the entries, at most APERTURES_MAX).
   * @throws KfdError
   */
  getProcessApertures(): ProcessApertures[] {
    const v = this.argsView;
    this.args.fill(0, 0, STRUCTS.get_process_apertures_new_args.size);
    let r = this.ioctl(CALL.GET_PROCESS_APERTURES_NEW, this.args);
    if (r < 0) this.fail("GET_PROCESS_APERTURES_NEW", r);
    const count = Math.min(v.getUint32(PA.num_of_nodes.offset, true), APERTURES_MAX);
    if (count === 0) return [];
    const entries = scratchAlloc(count * AP.size);
    u64Write(v, PA.kfd_process_device_apertures_ptr.offset, this.sys.addressOf(entries));
    v.setUint32(PA.num_of_nodes.offset, count, true);
    r = this.ioctl(CALL.GET_PROCESS_APERTURES_NEW, this.args);
    if (r < 0) this.fail("GET_PROCESS_APERTURES_NEW", r);
    const filled = Math.min(v.getUint32(PA.num_of_nodes.offset, true), count);
    // `entries` is read here, after the call: it stayed referenced for the whole call.
    const ev = new DataView(entries.buffer);
    const out: ProcessApertures[] = [];
    const f = AP.fields;
    for (let i = 0; i < filled; i++) {
      const b = i * AP.size;
      out.push({
        gpuId: ev.getUint32(b + f.gpu_id.offset, true),
        ldsBase: ev.getBigUint64(b + f.lds_base.offset, true),
        ldsLimit: ev.getBigUint64(b + f.lds_limit.offset, true),
        scratchBase: ev.getBigUint64(b + f.scratch_base.offset, true),
        scratchLimit: ev.getBigUint64(b + f.scratch_limit.offset, true),
        gpuvmBase: ev.getBigUint64(b + f.gpuvm_base.offset, true),
        gpuvmLimit: ev.getBigUint64(b + f.gpuvm_limit.offset, true),
      });
    }
    return out;
  }

  /** ACQUIRE_VM: hand the DRM render node fd `drmFd` to KFD for `gpuId`. @throws KfdError */
  acquireVm(gpuId: number, drmFd: number): void {
    const v = this.argsView;
    v.setUint32(AV.drm_fd.offset, drmFd, true);
    v.setUint32(AV.gpu_id.offset, gpuId, true);
    const r = this.ioctl(CALL.ACQUIRE_VM, this.args);
    if (r < 0) this.fail("ACQUIRE_VM", r);
  }

  /** ALLOC_MEMORY_OF_GPU. @throws KfdError (EINVAL misaligned or unknown gpu, ENOMEM) */
  allocMemoryOfGpu(req: AllocRequest): Allocation {
    const v = this.argsView;
    this.args.fill(0, 0, STRUCTS.alloc_memory_of_gpu_args.size);
    u64Write(v, AL.va_addr.offset, req.vaAddr);
    u64Write(v, AL.size.offset, req.size_bytes);
    u64Write(v, AL.mmap_offset.offset, req.userptr ?? 0);
    v.setUint32(AL.gpu_id.offset, req.gpuId, true);
    v.setUint32(AL.flags.offset, req.flags >>> 0, true);
    const r = this.ioctl(CALL.ALLOC_MEMORY_OF_GPU, this.args);
    if (r < 0) this.fail("ALLOC_MEMORY_OF_GPU", r);
    return { handle: v.getBigUint64(AL.handle.offset, true), mmapOffset: v.getBigUint64(AL.mmap_offset.offset, true) };
  }

  /** FREE_MEMORY_OF_GPU. @throws KfdError (EINVAL unknown handle, EBUSY still mapped) */
  freeMemoryOfGpu(handle: bigint): void {
    this.argsView.setBigUint64(FR.handle.offset, handle, true);
    const r = this.ioctl(CALL.FREE_MEMORY_OF_GPU, this.args);
    if (r < 0) this.fail("FREE_MEMORY_OF_GPU", r);
  }

  /**
   * MAP_MEMORY_TO_GPU of `handle` on every gpu of `gpuIds` (distinct, at most MAP_DEVICES_MAX).
   * @throws KfdPartialMapError when the driver fails or stays interrupted: mappedGpuIds are
   *   exactly the devices on which the memory is mapped.
   * @throws KfdError EINVAL for an empty or duplicated list (before any call).
   */
  mapMemoryToGpu(handle: bigint, gpuIds: readonly number[]): void {
    this.mapUnmap("MAP_MEMORY_TO_GPU", handle, gpuIds);
  }

  /** UNMAP_MEMORY_FROM_GPU; same protocol and errors as mapMemoryToGpu (mapped = still mapped). */
  unmapMemoryFromGpu(handle: bigint, gpuIds: readonly number[]): void {
    this.mapUnmap("UNMAP_MEMORY_FROM_GPU", handle, gpuIds);
  }

  private mapUnmap(op: "MAP_MEMORY_TO_GPU" | "UNMAP_MEMORY_FROM_GPU", handle: bigint, gpuIds: readonly number[]): void {
    const n = gpuIds.length;
    if (n === 0 || n > MAP_DEVICES_MAX) {
      throw new KfdError(op, "EINVAL", ERRNO.EINVAL, `give 1 to ${MAP_DEVICES_MAX} gpu ids, got ${n}`);
    }
    const ids = this.ids32;
    for (let i = 0; i < n; i++) {
      const id = gpuIds[i]!;
      for (let j = 0; j < i; j++) {
        if (gpuIds[j] === id) throw new KfdError(op, "EINVAL", ERRNO.EINVAL, `gpu id ${hex(id)} listed twice`);
      }
      ids[i] = id;
    }
    const v = this.argsView;
    const w = this.args32;
    const map = op === "MAP_MEMORY_TO_GPU";
    const call = map ? CALL.MAP_MEMORY_TO_GPU : CALL.UNMAP_MEMORY_FROM_GPU;
    let nSuccess = 0;
    let attempts = 0;
    for (;;) {
      v.setBigUint64(MP.handle.offset, handle, true);
      w[MP_IDS_PTR_U32] = this.idsAddressLo;
      w[MP_IDS_PTR_U32 + 1] = this.idsAddressHi;
      w[MP_N_DEVICES_U32] = n;
      w[MP_N_SUCCESS_U32] = nSuccess;
      attempts++;
      const r = this.ioctl(call, this.args);
      const returned = w[MP_N_SUCCESS_U32]!;
      if (returned < nSuccess || returned > n || (r >= 0 && returned !== n)) {
        // kfd_ioctl.h: n_success only grows, and success means n_success == n_devices.
        throw new KfdError(op, "EPROTO", ERRNO.EPROTO, `driver returned ${r} with n_success ${returned} (was ${nSuccess}, of ${n})`);
      }
      nSuccess = returned;
      if (r >= 0) return;
      if (r === -ERRNO.EINTR && attempts <= MAP_EINTR_RETRIES_MAX) continue;
      const done = gpuIds.slice(0, nSuccess);
      const rest = gpuIds.slice(nSuccess);
      const e = -r;
      const hint = `${kfdHint(op, e)}${kfdHint(op, e) ? "; " : ""}${map ? "mapped" : "unmapped"} on ${nSuccess} of ${n} devices after ${attempts} calls`;
      throw new KfdPartialMapError(
        op,
        errnoName(e),
        e,
        hint,
        handle,
        map ? done : rest,
        map ? rest : done,
        attempts,
      );
    }
  }

  /** SMI_EVENTS: a new event fd for `gpuId` (owned by the caller: close it). @throws KfdError */
  smiEventsOpen(gpuId: number): number {
    const v = this.argsView;
    v.setUint32(SE.gpuid.offset, gpuId, true);
    v.setUint32(SE.anon_fd.offset, 0, true);
    const r = this.ioctl(CALL.SMI_EVENTS, this.args);
    if (r < 0) this.fail("SMI_EVENTS", r);
    return v.getInt32(SE.anon_fd.offset, true);
  }

  private svmCall(op: number, start: bigint | number, size_bytes: bigint | number, attrs: readonly SvmAttribute[]): void {
    const n = attrs.length;
    if (n > SVM_ATTRS_MAX) {
      throw new KfdError("SVM", "EINVAL", ERRNO.EINVAL, `at most ${SVM_ATTRS_MAX} attributes per call, got ${n}`);
    }
    if (!pageAligned(start) || !pageAligned(size_bytes)) {
      throw new KfdError("SVM", "EINVAL", ERRNO.EINVAL, `start and size must be multiples of ${PAGE_SIZE_bytes} bytes`);
    }
    svmArgsEncode(this.svm32, op, start, size_bytes, attrs);
    const r = this.ioctl(SVM_CALLS[n]!, this.svm);
    if (r < 0) this.fail("SVM", r);
  }

  /**
   * SVM SET_ATTR on [start, start + size_bytes): page aligned, at most SVM_ATTRS_MAX attributes
   * (kfd-svm.md §5).
   * @throws KfdError EINVAL (misaligned, unknown attribute type or gpu id), ENOMEM, ...
   */
  svmSetAttr(start: bigint | number, size_bytes: bigint | number, attrs: readonly SvmAttribute[]): void {
    // Fast path, flattened by hand (bench/kfd.ts): page-aligned numbers below 2^53, a short
    // attribute list, an open device that has SVM; anything else takes svmCall, which checks
    // and explains. Kept small on purpose: past a size the JIT stops inlining it and a call
    // costs ~20 ns more (measured), half the cost of the driver call on the C test double.
    const n = attrs.length;
    // Number() is the identity on numbers and exact on bigints below 2^53; larger bigints
    // fail the bound below and take svmCall's exact bigint path.
    const startN = typeof start === "number" ? start : Number(start);
    const sizeN = typeof size_bytes === "number" ? size_bytes : Number(size_bytes);
    const startPages = startN / PAGE_SIZE_bytes;
    const sizePages = sizeN / PAGE_SIZE_bytes;
    if (
      this.svmReady &&
      n <= SVM_ATTRS_MAX &&
      Math.floor(startPages) === startPages &&
      Math.floor(sizePages) === sizePages &&
      startPages >= 0 &&
      sizePages >= 0 &&
      startPages <= MAX_SAFE_PAGES &&
      sizePages <= MAX_SAFE_PAGES
    ) {
      const w = this.svm32;
      const startHi = Math.floor(startPages / PAGES_PER_U32);
      const sizeHi = Math.floor(sizePages / PAGES_PER_U32);
      w[SV_START_U32] = startN - startHi * 0x1_0000_0000;
      w[SV_START_U32 + 1] = startHi;
      w[SV_SIZE_U32] = sizeN - sizeHi * 0x1_0000_0000;
      w[SV_SIZE_U32 + 1] = sizeHi;
      svmOpStore(w, SVM_OP_SET_ATTR, attrs);
      const r = this.sys.ioctl(this.fd, SVM_REQUESTS[n]!, this.svm);
      if (r < 0) this.fail("SVM", r);
      return;
    }
    this.svmCall(SVM_OP.SET_ATTR, start, size_bytes, attrs);
  }

  /**
   * SVM GET_ATTR: the attributes over [start, start + size_bytes), aggregated by the driver.
   * Access queries pass {type: ACCESS, value: gpuId}; the answer's type tells ACCESS,
   * ACCESS_IN_PLACE or NO_ACCESS.
   * @throws KfdError
   */
  svmGetAttr(start: bigint | number, size_bytes: bigint | number, query: readonly SvmAttribute[]): SvmAttribute[] {
    this.svmCall(SVM_OP.GET_ATTR, start, size_bytes, query);
    const v = this.svmView;
    const out: SvmAttribute[] = [];
    for (let i = 0; i < query.length; i++) {
      const at = SV.attrs.offset + i * SVA.size;
      out.push({ type: v.getUint32(at + SVA.fields.type.offset, true), value: v.getUint32(at + SVA.fields.value.offset, true) });
    }
    return out;
  }

  /**
   * SET_XNACK_MODE: `true`/`false` set the mode (only while the process has no queues),
   * `"query"` reads it. Returns the mode now in force.
   * @throws KfdError (EBUSY with queues, EPERM when a GPU cannot switch)
   */
  setXnackMode(mode: boolean | "query"): boolean {
    const v = this.argsView;
    v.setInt32(XN.xnack_enabled.offset, mode === "query" ? -1 : mode ? 1 : 0, true);
    const r = this.ioctl(CALL.SET_XNACK_MODE, this.args);
    if (r < 0) this.fail("SET_XNACK_MODE", r);
    return v.getInt32(XN.xnack_enabled.offset, true) > 0;
  }

  /** AVAILABLE_MEMORY: bytes of VRAM `gpuId` can still give this process. @throws KfdError */
  availableMemory(gpuId: number): number {
    const v = this.argsView;
    this.args.fill(0, 0, STRUCTS.get_available_memory_args.size);
    v.setUint32(AM.gpu_id.offset, gpuId, true);
    const r = this.ioctl(CALL.AVAILABLE_MEMORY, this.args);
    if (r < 0) this.fail("AVAILABLE_MEMORY", r);
    const bytes = v.getBigUint64(AM.available.offset, true);
    if (bytes > BigInt(MAX_SAFE_INTEGER)) {
      throw new KfdError("AVAILABLE_MEMORY", "EOVERFLOW", ERRNO.EOVERFLOW, `driver reports ${bytes} bytes, beyond 2^53`);
    }
    return Number(bytes);
  }
}
