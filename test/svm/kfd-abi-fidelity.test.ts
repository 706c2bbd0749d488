/**
 * SVM argument handling held to the kernel's code (kfd_chardev.c kfd_ioctl, kfd_svm.c
 * svm_ioctl and svm_range_check_attr, libhsakmt svm.c): the request number's size counts
 * attrs[], PREFETCH_LOC cannot be UNDEFINED, an unknown op is -EINVAL, and a failed GET_ATTR
 * still hands back the answers filled before it failed. Each block quotes the lines it checks;
 * each failed on the code before the fix that followed the review of 7834a6b.
 */
import { beforeEach, describe, expect, test } from "bun:test";
import { EMU_KFD_FD, EmuKfd } from "../../runtime/emu/kfd.ts";
import { EmuMachine } from "../../runtime/emu/machine.ts";
import { ERRNO } from "../../runtime/ffi/errno.ts";
import { KfdDevice } from "../../runtime/kfd/device.ts";
import { IOC_SIZESHIFT, IOCTL, STRUCTS, SVM_ATTR, SVM_LOCATION, SVM_OP, structDecode, structEncode, svmRequest } from "../../runtime/kfd/uapi.ts";
import { LOC_UNDEFINED } from "../../runtime/policy/contracts/migration.ts";
import { loadProfile } from "../../runtime/sim/profile.ts";
import { BASE, errnoOf, fixture, gpus, PID } from "./helpers.ts";

const MIB = 2 ** 20;
const GIB = 2 ** 30;
/** A CPU mapping of the emulated process: 64 MiB at 4 GiB. */
const VA = 4 * GIB;
const VA_SIZE = 64 * MIB;
const profile = loadProfile("dev-2gpu");
const [G0] = profile.gpus.map((g) => g.id) as [number, number];
const SVA = STRUCTS.svm_attribute;
const ATTRS_AT = STRUCTS.svm_args.fields.attrs.offset;

/** The emulated KFD, recording every request number the binding issues. */
class RecordingKfd extends EmuKfd {
  readonly requests: number[] = [];
  override ioctl(fd: number, request: number, arg: Uint8Array): number {
    this.requests.push(request >>> 0);
    return super.ioctl(fd, request, arg);
  }
}

/** _IOC_SIZE(cmd): the bytes kfd_ioctl copies in (copy_from_user) and back (copy_to_user). */
const iocSize = (request: number): number => (request >>> IOC_SIZESHIFT) & 0x3fff;
const iocNr = (request: number): number => request & 0xff;

let machine: EmuMachine;
let sys: RecordingKfd;
let dev: KfdDevice;

beforeEach(() => {
  machine = new EmuMachine({ profile });
  sys = new RecordingKfd(machine);
  dev = KfdDevice.open(sys);
  sys.mmap(VA, VA_SIZE);
});

// ---- ioctl-size ----
/**
 * kfd_chardev.c kfd_ioctl takes the copy size from the caller's request number, not from the
 * header's AMDKFD_IOC_SVM:
 *   amdkfd_size = _IOC_SIZE(ioctl->cmd);
 *   usize = asize = _IOC_SIZE(cmd);  if (amdkfd_size > asize) asize = amdkfd_size;
 *   ... copy_from_user(kdata, (void __user *)arg, usize) ...
 *   retcode = func(filep, process, kdata);
 *   if (cmd & IOC_OUT) if (copy_to_user((void __user *)arg, kdata, usize) != 0) ...
 * so attrs[] reach the kernel, and GET_ATTR's answers come back, only when the request's size
 * field counts them. libhsakmt (svm.c) does exactly that:
 *   Driver does one copy_from_user, with extra attrs size
 *   hsakmt_ioctl(fd, AMDKFD_IOC_SVM + (s_attr << _IOC_SIZESHIFT), args);
 * and since 045e0ff208f0 (stable, "validate SVM ioctl nattr against buffer size"):
 *   size_t expected = struct_size(args, attrs, args->nattr);
 *   if (expected == SIZE_MAX || usize < expected) return -EINVAL;
 * KfdDevice used to send 0xc0184b20 (24 bytes) whatever the attribute count: on a GPU host
 * SET_ATTR would have read attrs[] from uninitialised kernel stack (stack_kdata[128]) or
 * failed EINVAL, and GET_ATTR's answers would never have been copied back.
 */
describe("the SVM request number counts attrs[] (kfd_ioctl copies _IOC_SIZE(cmd) bytes)", () => {
  const svmRequests = () => sys.requests.filter((r) => iocNr(r) === iocNr(IOCTL.SVM));

  test("SET_ATTR with 3 attributes: _IOC_SIZE = 24 + 3 * 8", () => {
    dev.svmSetAttr(VA, 2 * MIB, [
      { type: SVM_ATTR.PREFERRED_LOC, value: G0 },
      { type: SVM_ATTR.ACCESS, value: G0 },
      { type: SVM_ATTR.GRANULARITY, value: 9 },
    ]);
    const reqs = svmRequests();
    expect(reqs.length).toBe(1);
    expect(iocSize(reqs[0]!)).toBe(STRUCTS.svm_args.size + 3 * SVA.size);
  });

  test("GET_ATTR with 2 queries: _IOC_SIZE = 24 + 2 * 8, or the answers are not copied back", () => {
    dev.svmGetAttr(VA, 2 * MIB, [
      { type: SVM_ATTR.PREFERRED_LOC, value: 0 },
      { type: SVM_ATTR.GRANULARITY, value: 0 },
    ]);
    const reqs = svmRequests();
    expect(reqs.length).toBe(1);
    expect(iocSize(reqs[0]!)).toBe(STRUCTS.svm_args.size + 2 * SVA.size);
  });
});

// ---- prefetch-undefined ----
/**
 * kfd_svm.c svm_range_check_attr treats the two locations differently:
 *   case KFD_IOCTL_SVM_ATTR_PREFERRED_LOC:
 *     if (val != KFD_IOCTL_SVM_LOCATION_SYSMEM && val != KFD_IOCTL_SVM_LOCATION_UNDEFINED)
 *       gpuidx = kfd_process_gpuidx_from_gpuid(p, val);
 *   case KFD_IOCTL_SVM_ATTR_PREFETCH_LOC:
 *     if (val != KFD_IOCTL_SVM_LOCATION_SYSMEM)
 *       gpuidx = kfd_process_gpuidx_from_gpuid(p, val);
 *   ...  if (gpuidx < 0) { pr_debug("no GPU 0x%x found\n", val); return -EINVAL; }
 * (kfd_criu_resume_svm rewrites an UNDEFINED PREFETCH_LOC before SET_ATTR for this reason:
 * "otherwise the gpuidx value will be invalid and set_attr would eventually fail").
 * The model, the emulated KFD and the C double used to accept PREFETCH_LOC = UNDEFINED.
 */
describe("SET_ATTR PREFETCH_LOC = UNDEFINED is EINVAL (svm_range_check_attr)", () => {
  test("the model refuses it and changes nothing", () => {
    const f = fixture(gpus(1));
    expect(errnoOf(() => f.m.setAttr(PID, BASE, 512, [[SVM_ATTR.PREFETCH_LOC, LOC_UNDEFINED]], 0))).toBe("EINVAL");
    expect(f.m.proc(PID).ranges.count).toBe(0);
    // PREFERRED_LOC = UNDEFINED stays valid.
    expect(errnoOf(() => f.m.setAttr(PID, BASE, 512, [[SVM_ATTR.PREFERRED_LOC, LOC_UNDEFINED]], 0))).toBe("no error");
  });

  test("the emulated KFD refuses it", () => {
    expect(errnoOf(() => dev.svmSetAttr(VA, 2 * MIB, [{ type: SVM_ATTR.PREFETCH_LOC, value: SVM_LOCATION.UNDEFINED }]))).toBe("EINVAL");
  });
});

// ---- unknown-op ----
/**
 * An older kernel copy has `default: r = EINVAL;` in svm_ioctl, but cbda64f3f580
 * ("drm/amdkfd: Fix error code sign for EINVAL in svm_ioctl()") made it
 *   default: r = -EINVAL;
 * and went to every stable series with SVM (5.15, 6.1, 6.6, 6.12, 6.17; October 2025): an
 * unknown op is ioctl() == -1 with errno EINVAL on current kernels, not a return of 22.
 */
describe("an unknown SVM op", () => {
  test("is -EINVAL, as svm_ioctl answers since cbda64f3f580", () => {
    const raw = new Uint8Array(new ArrayBuffer(STRUCTS.svm_args.size));
    structEncode("svm_args", { start_addr: BigInt(VA), size: BigInt(2 * MIB), op: 7, nattr: 0 }, new DataView(raw.buffer));
    expect(sys.ioctl(EMU_KFD_FD, IOCTL.SVM, raw)).toBe(-ERRNO.EINVAL);
  });
});

// ---- failed-get-copy-back ----
/**
 * kfd_ioctl copies kdata back for an IOWR request whatever func returned (retcode is not
 * tested before copy_to_user; a patch to skip it on failure was refused upstream as a user
 * mode ABI change). svm_range_get_attr fills attrs[] in order and returns -EINVAL at the
 * first ACCESS query whose gpu_id is no GPU of the process ("invalid gpuid %x"): the answers
 * before it are in the caller's buffer after the failed call. The emulated KFD writes
 * the same (KfdDevice throws and never reads them; a raw caller can).
 */
describe("a failed GET_ATTR still returns the answers filled before the failing query", () => {
  test("PREFERRED_LOC answered, then ACCESS with an unknown gpu_id: -EINVAL, attrs[0] filled", () => {
    const n = 2;
    const raw = new Uint8Array(new ArrayBuffer(STRUCTS.svm_args.size + n * SVA.size));
    const v = new DataView(raw.buffer);
    structEncode("svm_args", { start_addr: BigInt(VA), size: BigInt(2 * MIB), op: SVM_OP.GET_ATTR, nattr: n }, v);
    structEncode("svm_attribute", { type: SVM_ATTR.PREFERRED_LOC, value: 0xdead }, v, ATTRS_AT);
    structEncode("svm_attribute", { type: SVM_ATTR.ACCESS, value: 0x1234 }, v, ATTRS_AT + SVA.size);
    expect(sys.ioctl(EMU_KFD_FD, svmRequest(n), raw)).toBe(-ERRNO.EINVAL);
    // No range there: the default location, UNDEFINED, overwrote the query's value.
    expect(structDecode("svm_attribute", v, ATTRS_AT)).toEqual({ type: SVM_ATTR.PREFERRED_LOC, value: SVM_LOCATION.UNDEFINED });
    expect(structDecode("svm_attribute", v, ATTRS_AT + SVA.size)).toEqual({ type: SVM_ATTR.ACCESS, value: 0x1234 });
  });
});
