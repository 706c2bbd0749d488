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
      return `interrupted by a signal ${MAP_EINTR_RETRIES_MAX + 1} times; retry later`;
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
  if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`${value} is not a u64 in the safe range`);
  v.setUint32(at, value >>> 0, true);
  v.setUint32(at + 4, Math.floor(value / 0x1_0000_0000), true);
}

/** Page size alignment check for numbers and bigints. */
function pageAligned(value: bigint | number): boolean {
  return typeof value === "bigint" ? value % BigInt(PAGE_SIZE_bytes) === 0n : value % PAGE_SIZE_bytes === 0;
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
const XN = STRUCTS.set_xnack_mode_args.fields;
const AM = STRUCTS.get_available_memory_args.fields;

/** A new zeroed buffer backed by an explicit ArrayBuffer: its storage never moves. */
function scratchAlloc(size_bytes: number): Uint8Array {
  return new Uint8Array(new ArrayBuffer(size_bytes));
}

export class KfdDevice implements Disposable {
  readonly version: KfdVersion;
  private fd: number;
  private readonly args = scratchAlloc(ARGS_SCRATCH_bytes);
  private readonly argsView = new DataView(this.args.buffer);
  private readonly svm = scratchAlloc(STRUCTS.svm_args.size + SVM_ATTRS_MAX * SVA.size);
  private readonly svmView = new DataView(this.svm.buffer);
  private readonly ids = scratchAlloc(4 * MAP_DEVICES_MAX);
  private readonly idsView = new DataView(this.ids.buffer);
  /** Address of `ids`, taken once: `ids` lives as long as the device. */
  private readonly idsAddress: bigint;

  private constructor(
    private readonly sys: Syscalls,
    fd: number,
  ) {
    this.fd = fd;
    this.idsAddress = sys.addressOf(this.ids);
    this.version = { major: 0, minor: 0 };
    this.version = this.getVersion();
  }

  /**
   * Open `path` (default /dev/kfd) through `sys` and read the driver's version.
   * @throws KfdError `open /dev/kfd` with ENOENT/ENODEV (no device) or EACCES/EPERM (no
   *   permission), or GET_VERSION's error; the fd is closed again on failure.
   */
  static open(sys: Syscalls, path: string = KFD_DEVICE_PATH): KfdDevice {
    const fd = sys.open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) throw new KfdError(`open ${path}`, errnoName(-fd), -fd, kfdHint(`open ${path}`, -fd));
    try {
      const dev = new KfdDevice(sys, fd);
      if (dev.version.major !== KFD_IOCTL_MAJOR_VERSION) {
        throw new KfdError(
          "GET_VERSION",
          "EPROTO",
          71,
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
    this.sys.close(fd);
  }

  [Symbol.dispose](): void {
    this.close();
  }

  /** The syscalls this device uses (for SMI event fds of the same process). */
  get syscalls(): Syscalls {
    return this.sys;
  }

  private ioctl(name: IoctlName, arg: Uint8Array): number {
    if (this.fd < 0) throw new KfdError(name, "EBADF", ERRNO.EBADF, "the KFD device was closed");
    const spec = IOCTL_SPECS[name];
    if (name !== "GET_VERSION" && spec.since_minor > this.version.minor) {
      throw new KfdError(
        name,
        "ENOTTY",
        ERRNO.ENOTTY,
        `refused before the call: the driver reports KFD ioctl ${this.version.major}.${this.version.minor}, ${name} needs 1.${spec.since_minor}; update the kernel`,
      );
    }
    return this.sys.ioctl(this.fd, IOCTL[name], arg);
  }

  private fail(name: string, r: number, hint?: string): never {
    const e = -r;
    throw new KfdError(name, errnoName(e), e, hint ?? kfdHint(name, e));
  }

  /** GET_VERSION. */
  getVersion(): KfdVersion {
    const v = this.argsView;
    this.args.fill(0, 0, STRUCTS.get_version_args.size);
    const r = this.ioctl("GET_VERSION", this.args);
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
    let r = this.ioctl("GET_PROCESS_APERTURES_NEW", this.args);
    if (r < 0) this.fail("GET_PROCESS_APERTURES_NEW", r);
    const count = Math.min(v.getUint32(PA.num_of_nodes.offset, true), APERTURES_MAX);
    if (count === 0) return [];
    const entries = scratchAlloc(count * AP.size);
    u64Write(v, PA.kfd_process_device_apertures_ptr.offset, this.sys.addressOf(entries));
    v.setUint32(PA.num_of_nodes.offset, count, true);
    r = this.ioctl("GET_PROCESS_APERTURES_NEW", this.args);
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
    const r = this.ioctl("ACQUIRE_VM", this.args);
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
    const r = this.ioctl("ALLOC_MEMORY_OF_GPU", this.args);
    if (r < 0) this.fail("ALLOC_MEMORY_OF_GPU", r);
    return { handle: v.getBigUint64(AL.handle.offset, true), mmapOffset: v.getBigUint64(AL.mmap_offset.offset, true) };
  }

  /** FREE_MEMORY_OF_GPU. @throws KfdError (EINVAL unknown handle, EBUSY still mapped) */
  freeMemoryOfGpu(handle: bigint): void {
    this.argsView.setBigUint64(FR.handle.offset, handle, true);
    const r = this.ioctl("FREE_MEMORY_OF_GPU", this.args);
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
    const ids = this.idsView;
    for (let i = 0; i < n; i++) {
      const id = gpuIds[i]!;
      for (let j = 0; j < i; j++) {
        if (gpuIds[j] === id) throw new KfdError(op, "EINVAL", ERRNO.EINVAL, `gpu id ${hex(id)} listed twice`);
      }
      ids.setUint32(i * 4, id, true);
    }
    const v = this.argsView;
    const map = op === "MAP_MEMORY_TO_GPU";
    let nSuccess = 0;
    let attempts = 0;
    for (;;) {
      v.setBigUint64(MP.handle.offset, handle, true);
      v.setBigUint64(MP.device_ids_array_ptr.offset, this.idsAddress, true);
      v.setUint32(MP.n_devices.offset, n, true);
      v.setUint32(MP.n_success.offset, nSuccess, true);
      attempts++;
      const r = this.ioctl(op, this.args);
      const returned = v.getUint32(MP.n_success.offset, true);
      if (returned < nSuccess || returned > n) {
        throw new KfdError(op, "EPROTO", 71, `driver returned n_success ${returned} outside [${nSuccess}, ${n}]`);
      }
      nSuccess = returned;
      if (r >= 0) {
        // Return 0 means every device is done (kfd_ioctl.h).
        assert(nSuccess === n || r > 0, `${op} returned 0 with n_success ${nSuccess} of ${n}`);
        return;
      }
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
    const r = this.ioctl("SMI_EVENTS", this.args);
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
    const v = this.svmView;
    u64Write(v, SV.start_addr.offset, start);
    u64Write(v, SV.size.offset, size_bytes);
    v.setUint32(SV.op.offset, op, true);
    v.setUint32(SV.nattr.offset, n, true);
    let at = SV.attrs.offset;
    for (let i = 0; i < n; i++) {
      const a = attrs[i]!;
      v.setUint32(at + SVA.fields.type.offset, a.type, true);
      v.setUint32(at + SVA.fields.value.offset, a.value >>> 0, true);
      at += SVA.size;
    }
    const r = this.ioctl("SVM", this.svm);
    if (r < 0) this.fail("SVM", r);
  }

  /**
   * SVM SET_ATTR on [start, start + size_bytes): page aligned, at most SVM_ATTRS_MAX attributes
   * (kfd-svm.md §5).
   * @throws KfdError EINVAL (misaligned, unknown attribute type or gpu id), ENOMEM, ...
   */
  svmSetAttr(start: bigint | number, size_bytes: bigint | number, attrs: readonly SvmAttribute[]): void {
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
    const r = this.ioctl("SET_XNACK_MODE", this.args);
    if (r < 0) this.fail("SET_XNACK_MODE", r);
    return v.getInt32(XN.xnack_enabled.offset, true) > 0;
  }

  /** AVAILABLE_MEMORY: bytes of VRAM `gpuId` can still give this process. @throws KfdError */
  availableMemory(gpuId: number): number {
    const v = this.argsView;
    this.args.fill(0, 0, STRUCTS.get_available_memory_args.size);
    v.setUint32(AM.gpu_id.offset, gpuId, true);
    const r = this.ioctl("AVAILABLE_MEMORY", this.args);
    if (r < 0) this.fail("AVAILABLE_MEMORY", r);
    const bytes = v.getBigUint64(AM.available.offset, true);
    assert(bytes <= BigInt(Number.MAX_SAFE_INTEGER), `available memory ${bytes} exceeds 2^53`);
    return Number(bytes);
  }
}
