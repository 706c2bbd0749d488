/**
 * EMULATED /dev/kfd: the Syscalls interface (runtime/ffi/syscalls.ts) over an EmuMachine, so
 * KfdDevice, the SMI event reader and everything above them run unchanged without a GPU.
 *
 * What it does, like the kernel (kfd_chardev.c, kfd_svm.c, kfd_smi_events.c) and like the C
 * test double (test/native/kfd_double.c), whose validation it matches errno for errno:
 * - requests are matched exactly against the ioctl numbers of runtime/kfd/uapi.ts (anything
 *   else: ENOTTY) and gated on the emulated version (an ioctl newer than it: EINVAL, as an
 *   older kfd_ioctl table answers); arguments are decoded with the uapi.ts layouts; a buffer
 *   shorter than the struct, or a user pointer that is not one addressOf handed out, EFAULT;
 * - open("/dev/kfd") creates the KFD process in the model (one per emulator; a second open
 *   is EBUSY), close destroys it in kfd-svm.md §9 order;
 * - ALLOC/FREE/MAP/UNMAP keep per-handle, per-GPU state with the n_success protocol; VRAM
 *   allocations are taken from the model's VRAM (AVAILABLE_MEMORY drops, SVM sees less);
 * - SVM SET_ATTR / GET_ATTR go to the model's setAttr / getAttr for this process (splits,
 *   aggregation, prefetch migrations); both are EFAULT on memory the emulated CPU has not
 *   mapped (svm_range_is_valid): map it with `mmap` first, as a real process would have;
 * - SMI_EVENTS hands out an fd whose read/write/poll are the machine's SMI client.
 * Returns -errno on failure (the Syscalls convention), never throws for a bad argument.
 */
import { KfdError } from "../errors.ts";
import { ERRNO } from "../ffi/errno.ts";
import { POLLFD_SIZE_bytes, POLLIN, POLLNVAL, type Syscalls } from "../ffi/syscalls.ts";
import {
  ALLOC_MEM_FLAGS,
  IOCTL,
  IOCTL_SPECS,
  type IoctlName,
  KFD_IOCTL_MAJOR_VERSION,
  KFD_IOCTL_MINOR_VERSION,
  STRUCTS,
  SVM_ATTR,
  SVM_LOCATION,
  SVM_OP,
  structDecode,
  structEncode,
  svmRequestSize,
} from "../kfd/uapi.ts";
import { PAGE_BYTES } from "../svm/constants.ts";
import type { AttrPair } from "../svm/model.ts";
import { EMU_PID_DEFAULT, EMU_TASK_NAME_DEFAULT, type EmuMachine, type EmuSmiClient } from "./machine.ts";

export const EMU_KFD_PATH = "/dev/kfd";
/** fd numbers the emulator hands out: far above what a process uses, distinct from the C double's. */
export const EMU_KFD_FD = 0x4d00;
export const EMU_SMI_FD_BASE = 0x4d10;
/** Most live allocations (handles) of the emulated process. */
export const EMU_ALLOCS_MAX = 4096;
/** Most attributes in one SVM call (the C double's bound). */
export const EMU_SVM_NATTR_MAX = 1024;
/** Most gpu ids in one map/unmap call. */
export const EMU_MAP_DEVICES_MAX = 64;
/** First address handed out by addressOf: a canonical user address, page aligned. */
const EMU_ADDRESS_BASE = 0x7e00_0000_0000n;
/** Gap between two addressOf addresses, bytes (larger than any argument buffer). */
const EMU_ADDRESS_STRIDE_bytes = 0x100_0000n;

/** GFX9 apertures (kfd_flat_memory.c), the same values the C double reports. */
const APERTURE = {
  lds_base: 0x1_0000_0000_0000n,
  lds_limit: 0x1_0000_0000_0000n + 0xffff_ffffn,
  scratch_base: 0x2_0000_0000_0000n,
  scratch_limit: 0x2_0000_0000_0000n + 0xffff_ffffn,
  gpuvm_base: 0x100_0000n,
  gpuvm_limit: 0x7fff_ffff_ffffn,
} as const;

const ALLOC_TYPE_MASK = ALLOC_MEM_FLAGS.VRAM | ALLOC_MEM_FLAGS.GTT | ALLOC_MEM_FLAGS.USERPTR | ALLOC_MEM_FLAGS.DOORBELL | ALLOC_MEM_FLAGS.MMIO_REMAP;

interface EmuAlloc {
  handle: bigint;
  vaPage: number;
  pages: number;
  gpuId: number;
  flags: number;
  /** Per GPU index: mapped. */
  mapped: boolean[];
  /** Per GPU index: how many map requests named it (a re-map counts too). */
  mapRequests: number[];
}

export interface EmuKfdOptions {
  /** Pid of the emulated KFD process (default EMU_PID_DEFAULT). */
  pid?: number;
  taskName?: string;
  /** KFD ioctl minor version reported (default: the one uapi.ts was checked against). */
  versionMinor?: number;
  /** The process has CAP_SYS_ADMIN (SMI ALL_PROCESS works). Default false. */
  capSysAdmin?: boolean;
}

const errno = (name: keyof typeof ERRNO): number => -ERRNO[name];

const REQUEST_NAME = new Map<number, IoctlName>((Object.keys(IOCTL) as IoctlName[]).map((n) => [IOCTL[n], n]));

/** The emulated syscalls, plus the control surface of the emulated process. */
export class EmuKfd implements Syscalls {
  readonly name: string;
  readonly emulated = true as const;
  readonly pid: number;
  readonly taskName: string;
  readonly versionMinor: number;
  private readonly capSysAdmin: boolean;
  private kfdOpen = false;
  private readonly smi = new Map<number, EmuSmiClient>();
  private readonly allocs = new Map<bigint, EmuAlloc>();
  private nextAllocSlot = 1;
  private readonly drmFds: number[];
  /** addressOf registry: address -> buffer (weakly held), buffer -> address. */
  private readonly byAddress = new Map<bigint, WeakRef<Uint8Array>>();
  private readonly addressOfBuf = new WeakMap<Uint8Array, bigint>();
  private nextAddress = EMU_ADDRESS_BASE;
  /** ioctls issued, for tests. */
  ioctlCalls = 0;

  constructor(
    readonly machine: EmuMachine,
    opts: EmuKfdOptions = {},
  ) {
    this.pid = opts.pid ?? EMU_PID_DEFAULT;
    this.taskName = opts.taskName ?? EMU_TASK_NAME_DEFAULT;
    this.versionMinor = opts.versionMinor ?? KFD_IOCTL_MINOR_VERSION;
    this.capSysAdmin = opts.capSysAdmin ?? false;
    this.name = `emulated KFD (profile ${machine.profile.name})`;
    this.drmFds = machine.profile.gpus.map(() => -1);
  }

  // ---- control surface of the emulated process (what a real process does without KFD) ----

  /**
   * mmap(2) in the emulated process: [addr, addr + size_bytes) becomes CPU-mapped anonymous
   * memory that SVM ranges may cover. Page aligned.
   * @throws KfdError `mmap` EINVAL (misaligned, overlapping), or when /dev/kfd is not open.
   */
  mmap(addr: bigint | number, size_bytes: bigint | number): void {
    if (!this.kfdOpen) throw new KfdError("mmap", "EBADF", ERRNO.EBADF, "open /dev/kfd on the emulator first");
    const a = Number(addr);
    const s = Number(size_bytes);
    if (a % PAGE_BYTES !== 0 || s % PAGE_BYTES !== 0 || s <= 0) throw new KfdError("mmap", "EINVAL", ERRNO.EINVAL, `[${addr}, +${size_bytes}) is not page aligned`);
    this.machine.model.vmaAdd(this.pid, a / PAGE_BYTES, s / PAGE_BYTES);
  }

  /** 1 when `handle` is mapped on gpuId, 0 when not, -1 when either is unknown (like the C double). */
  isMapped(handle: bigint, gpuId: number): number {
    const a = this.allocs.get(handle);
    const g = this.machine.model.gpuOf(gpuId);
    if (a === undefined || g === undefined) return -1;
    return a.mapped[g.index] ? 1 : 0;
  }

  /** How many map requests named `handle` on gpuId. */
  mapRequests(handle: bigint, gpuId: number): number {
    const a = this.allocs.get(handle);
    const g = this.machine.model.gpuOf(gpuId);
    if (a === undefined || g === undefined) return -1;
    return a.mapRequests[g.index]!;
  }

  /** The SMI client behind `fd`, for tests and reports (dropped counts). */
  smiClient(fd: number): EmuSmiClient | undefined {
    return this.smi.get(fd);
  }

  /** Whether the KFD fd is open (the process exists in the model). */
  get isOpen(): boolean {
    return this.kfdOpen;
  }

  // ---- Syscalls ------------------------------------------------------------------------

  open(path: string, _flags: number): number {
    if (path !== EMU_KFD_PATH) return errno("ENOENT");
    if (this.kfdOpen) return errno("EBUSY");
    try {
      this.machine.model.processCreate(this.pid, { xnack: this.machine.profile.xnack, name: this.taskName });
    } catch (e) {
      return e instanceof KfdError ? -e.errno : errno("ENOMEM");
    }
    this.kfdOpen = true;
    return EMU_KFD_FD;
  }

  close(fd: number): number {
    if (fd === EMU_KFD_FD && this.kfdOpen) {
      this.kfdOpen = false;
      const m = this.machine;
      for (const a of this.allocs.values()) {
        if ((a.flags & ALLOC_MEM_FLAGS.VRAM) !== 0) m.model.vramNonSvmRelease(m.model.gpuOf(a.gpuId)!.index, a.pages);
      }
      this.allocs.clear();
      this.drmFds.fill(-1);
      m.settle();
      m.advance(m.model.processDestroy(this.pid, m.nowNs));
      return 0;
    }
    const c = this.smi.get(fd);
    if (c !== undefined) {
      this.smi.delete(fd);
      this.machine.smiClientClose(c);
      return 0;
    }
    return errno("EBADF");
  }

  read(fd: number, buf: Uint8Array): number {
    const c = this.smi.get(fd);
    if (c === undefined) return errno("EBADF");
    if (c.length === 0) return errno("EAGAIN"); // kfd_smi_ev_read never blocks
    return this.machine.smiClientRead(c, buf);
  }

  write(fd: number, buf: Uint8Array): number {
    const c = this.smi.get(fd);
    if (c === undefined) return errno("EBADF");
    if (buf.byteLength !== 8) return errno("EINVAL"); // kfd_smi_ev_write: exactly the u64 mask
    c.events = new DataView(buf.buffer, buf.byteOffset, 8).getBigUint64(0, true);
    return 8;
  }

  poll(fds: Uint8Array, nfds: number, _timeout_ms: number): number {
    // Never blocks: nothing changes the emulator while its caller waits.
    if (fds.byteLength < nfds * POLLFD_SIZE_bytes) return errno("EFAULT");
    const v = new DataView(fds.buffer, fds.byteOffset, fds.byteLength);
    let ready = 0;
    for (let i = 0; i < nfds; i++) {
      const at = i * POLLFD_SIZE_bytes;
      const fd = v.getInt32(at, true);
      const events = v.getInt16(at + 4, true);
      let revents = 0;
      if (fd >= 0) {
        const c = this.smi.get(fd);
        if (c === undefined) {
          if (!(fd === EMU_KFD_FD && this.kfdOpen)) revents = POLLNVAL;
        } else if (c.length > 0 && (events & POLLIN) !== 0) revents = POLLIN;
      }
      v.setInt16(at + 6, revents, true);
      if (revents !== 0) ready++;
    }
    return ready;
  }

  addressOf(buf: Uint8Array): bigint {
    const known = this.addressOfBuf.get(buf);
    if (known !== undefined) return known;
    const a = this.nextAddress;
    this.nextAddress += EMU_ADDRESS_STRIDE_bytes;
    this.addressOfBuf.set(buf, a);
    this.byAddress.set(a, new WeakRef(buf));
    return a;
  }

  /** copy_from_user's view of a user pointer: the buffer behind it with at least `bytes`, or undefined (EFAULT). */
  private deref(ptr: bigint, bytes: number): Uint8Array | undefined {
    if (ptr === 0n) return undefined;
    const b = this.byAddress.get(ptr)?.deref();
    if (b === undefined || b.byteLength < bytes) return undefined;
    return b;
  }

  unload(): void {
    for (const fd of [...this.smi.keys()]) this.close(fd);
    if (this.kfdOpen) this.close(EMU_KFD_FD);
  }

  [Symbol.dispose](): void {
    this.unload();
  }

  ioctl(fd: number, request: number, arg: Uint8Array): number {
    this.ioctlCalls++;
    if (fd !== EMU_KFD_FD || !this.kfdOpen) return errno("EBADF");
    // An SVM request's size field counts its attributes (svmRequest): any size names SVM.
    const svmSize = svmRequestSize(request >>> 0);
    const name = svmSize === undefined ? REQUEST_NAME.get(request >>> 0) : "SVM";
    if (name === undefined) return errno("ENOTTY");
    const spec = IOCTL_SPECS[name];
    if (spec.since_minor > this.versionMinor) return errno("EINVAL"); // an older kfd_ioctl: nr beyond its table
    // kfd_ioctl copies _IOC_SIZE(cmd) bytes (usize) from the caller: a shorter buffer faults.
    const usize = svmSize ?? STRUCTS[spec.struct].size;
    if (arg.byteLength < Math.max(STRUCTS[spec.struct].size, usize)) return errno("EFAULT");
    const v = new DataView(arg.buffer, arg.byteOffset, arg.byteLength);
    try {
      const r = this.dispatch(name, v, usize);
      this.machine.settle();
      return r;
    } catch (e) {
      // The model's own validation (KfdError with the kernel's errno) becomes -errno.
      if (e instanceof KfdError) return -e.errno;
      throw e;
    }
  }

  /** One ioctl; `usize` is the argument size the request declared (_IOC_SIZE). */
  private dispatch(name: IoctlName, v: DataView, usize: number): number {
    switch (name) {
      case "GET_VERSION":
        structEncode("get_version_args", { major_version: KFD_IOCTL_MAJOR_VERSION, minor_version: this.versionMinor }, v);
        return 0;
      case "GET_PROCESS_APERTURES_NEW":
        return this.apertures(v);
      case "ACQUIRE_VM":
        return this.acquireVm(v);
      case "ALLOC_MEMORY_OF_GPU":
        return this.alloc(v);
      case "FREE_MEMORY_OF_GPU":
        return this.free(v);
      case "MAP_MEMORY_TO_GPU":
        return this.mapUnmap(v, true);
      case "UNMAP_MEMORY_FROM_GPU":
        return this.mapUnmap(v, false);
      case "SMI_EVENTS":
        return this.smiEvents(v);
      case "SVM":
        return this.svm(v, usize);
      case "SET_XNACK_MODE": {
        const { xnack_enabled } = structDecode("set_xnack_mode_args", v);
        structEncode("set_xnack_mode_args", { xnack_enabled: this.machine.model.setXnack(this.pid, xnack_enabled) }, v);
        return 0;
      }
      case "AVAILABLE_MEMORY": {
        const { gpu_id } = structDecode("get_available_memory_args", v);
        const g = this.machine.model.gpuOf(gpu_id);
        if (g === undefined) return errno("EINVAL");
        structEncode("get_available_memory_args", { available: BigInt(this.machine.model.vramAvailableBytes(g.index)) }, v);
        return 0;
      }
    }
  }

  private apertures(v: DataView): number {
    const a = structDecode("get_process_apertures_new_args", v);
    const gpus = this.machine.profile.gpus;
    if (a.num_of_nodes === 0) {
      structEncode("get_process_apertures_new_args", { num_of_nodes: gpus.length }, v); // a query of the count
      return 0;
    }
    const n = Math.min(a.num_of_nodes, gpus.length);
    const AP = STRUCTS.kfd_process_device_apertures;
    const out = this.deref(a.kfd_process_device_apertures_ptr, n * AP.size);
    if (out === undefined) return errno("EFAULT");
    const ov = new DataView(out.buffer, out.byteOffset, out.byteLength);
    for (let i = 0; i < n; i++) {
      out.fill(0, i * AP.size, (i + 1) * AP.size);
      structEncode("kfd_process_device_apertures", { ...APERTURE, gpu_id: gpus[i]!.id }, ov, i * AP.size);
    }
    structEncode("get_process_apertures_new_args", { num_of_nodes: n }, v);
    return 0;
  }

  private acquireVm(v: DataView): number {
    const { drm_fd, gpu_id } = structDecode("acquire_vm_args", v);
    const g = this.machine.model.gpuOf(gpu_id);
    if (g === undefined) return errno("EINVAL");
    const fd = drm_fd | 0;
    if (fd < 0) return errno("EINVAL"); // kernel: fget fails
    const held = this.drmFds[g.index]!;
    if (held >= 0) return held === fd ? 0 : errno("EBUSY");
    this.drmFds[g.index] = fd;
    return 0;
  }

  private alloc(v: DataView): number {
    const a = structDecode("alloc_memory_of_gpu_args", v);
    const g = this.machine.model.gpuOf(a.gpu_id);
    if (g === undefined) return errno("EINVAL");
    const type = a.flags & ALLOC_TYPE_MASK;
    if (type === 0 || (type & (type - 1)) !== 0) return errno("EINVAL"); // exactly one memory type
    const page = BigInt(PAGE_BYTES);
    if (a.size === 0n || a.size % page !== 0n || a.va_addr % page !== 0n) return errno("EINVAL");
    if (this.allocs.size >= EMU_ALLOCS_MAX) return errno("ENOMEM");
    const pages = Number(a.size / page);
    if (type === ALLOC_MEM_FLAGS.VRAM) this.machine.model.vramNonSvmReserve(g.index, pages); // ENOMEM
    const slot = this.nextAllocSlot++;
    // kernel: MAKE_HANDLE(gpu_id, idr_handle)
    const handle = (BigInt(a.gpu_id) << 32n) | BigInt(slot);
    const n = this.machine.profile.gpus.length;
    this.allocs.set(handle, {
      handle,
      vaPage: Number(a.va_addr / page),
      pages,
      gpuId: a.gpu_id,
      flags: a.flags,
      mapped: new Array(n).fill(false),
      mapRequests: new Array(n).fill(0),
    });
    structEncode("alloc_memory_of_gpu_args", { handle, mmap_offset: type === ALLOC_MEM_FLAGS.USERPTR ? a.mmap_offset : BigInt(slot) * page }, v);
    return 0;
  }

  private free(v: DataView): number {
    const { handle } = structDecode("free_memory_of_gpu_args", v);
    const m = this.allocs.get(handle);
    if (m === undefined) return errno("EINVAL");
    if (m.mapped.some(Boolean)) return errno("EBUSY"); // amdgpu_amdkfd_gpuvm_free_memory_of_gpu
    if ((m.flags & ALLOC_MEM_FLAGS.VRAM) !== 0) this.machine.model.vramNonSvmRelease(this.machine.model.gpuOf(m.gpuId)!.index, m.pages);
    this.allocs.delete(handle);
    return 0;
  }

  /** MAP (map) and UNMAP share the n_success protocol of kfd_chardev.c. */
  private mapUnmap(v: DataView, map: boolean): number {
    const a = structDecode("map_memory_to_gpu_args", v);
    if (a.n_devices === 0 || a.n_success > a.n_devices || a.n_devices > EMU_MAP_DEVICES_MAX) return errno("EINVAL");
    const idsBuf = this.deref(a.device_ids_array_ptr, 4 * a.n_devices); // copy_from_user
    if (idsBuf === undefined) return errno("EFAULT");
    const ids = new DataView(idsBuf.buffer, idsBuf.byteOffset, idsBuf.byteLength);
    const m = this.allocs.get(a.handle);
    if (m === undefined) return errno("EINVAL");
    const model = this.machine.model;
    const wasMapped = m.mapped.some(Boolean);
    let r = 0;
    for (let i = a.n_success; i < a.n_devices; i++) {
      const g = model.gpuOf(ids.getUint32(4 * i, true));
      if (g === undefined) {
        r = errno("EINVAL");
        break;
      }
      if (map) {
        m.mapRequests[g.index]!++;
        m.mapped[g.index] = true; // already mapped: skipped, as the kernel does
      } else {
        if (!m.mapped[g.index]) {
          r = errno("EINVAL"); // kernel: not mapped on this VM
          break;
        }
        m.mapped[g.index] = false;
      }
      structEncode("map_memory_to_gpu_args", { n_success: i + 1 }, v);
    }
    // The GPU VM holds a non-SVM mapping while some GPU maps it: faults avoid it (§3).
    const isMapped = m.mapped.some(Boolean);
    if (!wasMapped && isMapped) model.boMappingAdd(this.pid, m.vaPage, m.pages);
    if (wasMapped && !isMapped) model.boMappingRemove(this.pid, m.vaPage, m.pages);
    return r;
  }

  /** Pages [s, l] are all inside CPU mappings (vmas) of the emulated process. */
  private cpuMapped(s: number, l: number): boolean {
    let cur = s;
    for (const v of this.machine.model.proc(this.pid).vmas) {
      if (v.last < cur) continue;
      if (v.start > cur) return false;
      cur = v.last + 1;
      if (cur > l) return true;
    }
    return false;
  }

  private smiEvents(v: DataView): number {
    const { gpuid } = structDecode("smi_events_args", v);
    if (this.machine.model.gpuOf(gpuid) === undefined) return errno("EINVAL");
    const c = this.machine.smiClientOpen(gpuid, this.pid, this.capSysAdmin);
    if (c === undefined) return errno("EMFILE");
    let fd = EMU_SMI_FD_BASE;
    while (this.smi.has(fd)) fd++;
    this.smi.set(fd, c);
    structEncode("smi_events_args", { anon_fd: fd }, v);
    return 0;
  }

  /** SVM with the argument size the request declared (`usize`, attrs[] included). */
  private svm(v: DataView, usize: number): number {
    const a = structDecode("svm_args", v);
    const page = BigInt(PAGE_BYTES);
    if (a.start_addr % page !== 0n || a.size % page !== 0n) return errno("EINVAL");
    if (a.start_addr === 0n || a.size === 0n) return errno("EINVAL");
    if (a.nattr > EMU_SVM_NATTR_MAX) return errno("EINVAL");
    const startPage = a.start_addr / page;
    const npages = a.size / page;
    if (startPage + npages > BigInt(Number.MAX_SAFE_INTEGER)) return errno("EINVAL");
    const SVA = STRUCTS.svm_attribute;
    const base = STRUCTS.svm_args.fields.attrs.offset;
    // kfd_ioctl's nattr check (stable kernels since 2026): the declared size must hold
    // attrs[]; `if (expected == SIZE_MAX || usize < expected) return -EINVAL;`.
    if (usize < base + a.nattr * SVA.size) return errno("EINVAL");
    const attrs: AttrPair[] = [];
    for (let i = 0; i < a.nattr; i++) {
      const at = structDecode("svm_attribute", v, base + i * SVA.size);
      attrs.push([at.type, at.value]);
    }
    const s = Number(startPage);
    const n = Number(npages);
    const model = this.machine.model;
    if (a.op === SVM_OP.GET_ATTR) {
      // svm_range_get_attr checks the interval (the model's svm_range_is_valid, and the
      // emulated CPU's mappings), then the query types; query values are outputs.
      if (!this.cpuMapped(s, s + n - 1)) return errno("EFAULT");
      try {
        model.getAttr(this.pid, s, n, attrs);
      } finally {
        // kfd_ioctl copies the buffer back whatever the call returned: answers filled in
        // before a failing ACCESS query reach the caller too.
        for (let i = 0; i < attrs.length; i++) {
          structEncode("svm_attribute", { type: attrs[i]![0], value: attrs[i]![1] >>> 0 }, v, base + i * SVA.size);
        }
      }
      return 0;
    }
    // svm_ioctl: `default: r = -EINVAL;` (positive EINVAL in kernels before the sign fix
    // backported to the stable series in 2025); nothing is checked further.
    if (a.op !== SVM_OP.SET_ATTR) return errno("EINVAL");
    // svm_range_check_attr: every attribute is checked before anything changes.
    for (const [type, value] of attrs) {
      switch (type) {
        case SVM_ATTR.PREFERRED_LOC:
          if (value !== SVM_LOCATION.SYSMEM && value !== SVM_LOCATION.UNDEFINED && model.gpuOf(value) === undefined) return errno("EINVAL");
          break;
        case SVM_ATTR.PREFETCH_LOC:
          // Only PREFERRED_LOC may be UNDEFINED: a prefetch goes somewhere.
          if (value !== SVM_LOCATION.SYSMEM && model.gpuOf(value) === undefined) return errno("EINVAL");
          break;
        case SVM_ATTR.ACCESS:
        case SVM_ATTR.ACCESS_IN_PLACE:
        case SVM_ATTR.NO_ACCESS:
          if (model.gpuOf(value) === undefined) return errno("EINVAL");
          break;
        case SVM_ATTR.SET_FLAGS:
        case SVM_ATTR.CLR_FLAGS:
        case SVM_ATTR.GRANULARITY:
          break;
        default:
          return errno("EINVAL"); // unknown attribute type
      }
    }
    this.machine.advance(model.setAttr(this.pid, s, n, attrs, this.machine.nowNs));
    return 0;
  }
}
