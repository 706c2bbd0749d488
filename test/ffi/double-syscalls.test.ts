import { beforeEach, describe, expect, test } from "bun:test";
import { ERRNO } from "../../runtime/ffi/errno.ts";
import { O_RDWR, POLLIN, POLLNVAL, pollfdRevents, pollfdSet } from "../../runtime/ffi/syscalls.ts";
import { IOCTL, svmRequest } from "../../runtime/kfd/uapi.ts";
import { kfdDoubleLoad } from "../kfd/double.ts";

describe("the C test double through the same bun:ffi path as libc", () => {
  const { sys, ctl, path } = kfdDoubleLoad();
  beforeEach(() => ctl.reset(1, 11));

  test("named as the double; errno set by the double comes back as -errno", () => {
    expect(sys.name).toBe(path);
    expect(path).toContain("kfd_double");
    expect(sys.open("/dev/other", O_RDWR)).toBe(-ERRNO.ENOENT);
    expect(sys.ioctl(12345, IOCTL.GET_VERSION, new Uint8Array(8))).toBe(-ERRNO.EBADF);
    expect(sys.read(12345, new Uint8Array(8))).toBe(-ERRNO.EBADF);
  });

  test("a request number with the wrong direction is ENOTTY, never silently accepted", () => {
    const fd = sys.open("/dev/kfd", O_RDWR);
    const wrongDir = (IOCTL.GET_VERSION & 0x3fffffff) | (3 << 30); // IOWR instead of IOR
    expect(sys.ioctl(fd, wrongDir, new Uint8Array(8))).toBe(-ERRNO.ENOTTY);
    const v = new Uint8Array(8);
    expect(sys.ioctl(fd, IOCTL.GET_VERSION, v)).toBe(0);
    expect(Array.from(v)).toEqual([1, 0, 0, 0, 11, 0, 0, 0]);
    expect(sys.close(fd)).toBe(0);
  });

  test("SVM validated by the double as the kernel does: alignment, zero size, attrs[] after the fixed part", () => {
    const fd = sys.open("/dev/kfd", O_RDWR);
    const buf = new Uint8Array(24 + 3 * 8);
    const v = new DataView(buf.buffer);
    const svm = (start: bigint, size: bigint, types: number[]): number => {
      v.setBigUint64(0, start, true);
      v.setBigUint64(8, size, true);
      v.setUint32(16, 0, true); // SET_ATTR
      v.setUint32(20, types.length, true);
      types.forEach((t, i) => {
        v.setUint32(24 + i * 8, t, true);
        v.setUint32(28 + i * 8, 9, true);
      });
      return sys.ioctl(fd, svmRequest(types.length), buf);
    };
    expect(svm(0x10000n, 0x2000n, [7])).toBe(0); // GRANULARITY
    expect(svm(0x10001n, 0x2000n, [7])).toBe(-ERRNO.EINVAL); // misaligned start
    expect(svm(0x10000n, 0x2001n, [7])).toBe(-ERRNO.EINVAL); // misaligned size
    expect(svm(0x10000n, 0n, [7])).toBe(-ERRNO.EINVAL); // empty
    expect(svm(0x10000n, 0x2000n, [7, 5, 8])).toBe(-ERRNO.EINVAL); // third attribute unknown
    // The size field must count attrs[] (kfd_ioctl copies only _IOC_SIZE bytes): the bare
    // AMDKFD_IOC_SVM with an attribute is EINVAL, as the kernel's nattr check says.
    v.setUint32(20, 1, true);
    expect(sys.ioctl(fd, IOCTL.SVM, buf)).toBe(-ERRNO.EINVAL);
    expect(ctl.rangeCount()).toBe(1);
    sys.close(fd);
  });

  test("SMI fd: the mask must be exactly 8 bytes; empty fifo reads EAGAIN; poll reports POLLIN", () => {
    const fd = sys.open("/dev/kfd", O_RDWR);
    const args = new Uint8Array(8);
    new DataView(args.buffer).setUint32(0, ctl.gpuId(0), true);
    expect(sys.ioctl(fd, IOCTL.SMI_EVENTS, args)).toBe(0);
    const smi = new DataView(args.buffer).getInt32(4, true);
    expect(sys.write(smi, new Uint8Array(4))).toBe(-ERRNO.EINVAL);
    expect(sys.write(smi, new Uint8Array([0xff, 0, 0, 0, 0, 0, 0, 0]))).toBe(8);
    expect(sys.read(smi, new Uint8Array(96))).toBe(-ERRNO.EAGAIN);
    ctl.smiPush(ctl.gpuId(0), new TextEncoder().encode("1 2a:x\n"), true);
    const fds = new Uint8Array(16);
    pollfdSet(fds, 0, smi, POLLIN);
    pollfdSet(fds, 1, 777, POLLIN);
    expect(sys.poll(fds, 2, 0)).toBe(2);
    expect(pollfdRevents(fds, 0)).toBe(POLLIN);
    expect(pollfdRevents(fds, 1)).toBe(POLLNVAL);
    expect(sys.close(smi)).toBe(0);
    expect(sys.close(fd)).toBe(0);
  });

  test("a full SMI fifo drops new events silently, as the kernel does", () => {
    const fd = sys.open("/dev/kfd", O_RDWR);
    const args = new Uint8Array(8);
    new DataView(args.buffer).setUint32(0, ctl.gpuId(0), true);
    sys.ioctl(fd, IOCTL.SMI_EVENTS, args);
    const smi = new DataView(args.buffer).getInt32(4, true);
    sys.write(smi, new Uint8Array([0xff, 0xff, 0, 0, 0, 0, 0, 0]));
    const rec = new TextEncoder().encode(`3 1 ${"x".repeat(91)}\n`); // 96 bytes, the longest record
    for (let i = 0; i < 12; i++) ctl.smiPush(ctl.gpuId(0), rec, true);
    expect(ctl.smiDropped(ctl.gpuId(0))).toBe(2); // 1024-byte fifo holds 10
    const buf = new Uint8Array(4096);
    expect(sys.read(smi, buf)).toBe(960);
    sys.close(smi);
    sys.close(fd);
  });
});
