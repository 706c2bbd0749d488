import { describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ERRNO, errnoName } from "../../runtime/ffi/errno.ts";
import { syscallsOpen } from "../../runtime/ffi/libc.ts";
import { O_CLOEXEC, O_RDONLY, O_RDWR, POLLIN, POLLNVAL, pollfdRevents, pollfdSet } from "../../runtime/ffi/syscalls.ts";
import { IOCTL } from "../../runtime/kfd/uapi.ts";

describe("libc syscalls over bun:ffi return -errno", () => {
  const sys = syscallsOpen();

  test("open of a missing path is -ENOENT", () => {
    expect(sys.name).toBe("libc");
    expect(sys.open("/nonexistent/kfd", O_RDWR)).toBe(-ERRNO.ENOENT);
    expect(errnoName(ERRNO.ENOENT)).toBe("ENOENT");
    expect(errnoName(4242)).toBe("errno 4242");
  });

  test("a KFD ioctl on /dev/null is -ENOTTY; close of a closed fd is -EBADF", () => {
    const fd = sys.open("/dev/null", O_RDWR | O_CLOEXEC);
    expect(fd).toBeGreaterThanOrEqual(0);
    expect(sys.ioctl(fd, IOCTL.GET_VERSION, new Uint8Array(8))).toBe(-ERRNO.ENOTTY);
    expect(sys.close(fd)).toBe(0);
    expect(sys.close(fd)).toBe(-ERRNO.EBADF);
  });

  test("read, write and poll on a real file", () => {
    const dir = mkdtempSync(join(tmpdir(), "svmrt-ffi-"));
    const path = join(dir, "f");
    writeFileSync(path, "");
    const fd = sys.open(path, O_RDWR | O_CLOEXEC);
    expect(sys.write(fd, new TextEncoder().encode("hello"))).toBe(5);
    expect(readFileSync(path, "utf8")).toBe("hello");
    sys.close(fd);
    const rfd = sys.open(path, O_RDONLY);
    const fds = new Uint8Array(16);
    pollfdSet(fds, 0, rfd, POLLIN);
    pollfdSet(fds, 1, 1_000_000, POLLIN); // not an open fd
    expect(sys.poll(fds, 2, 0)).toBe(2);
    expect(pollfdRevents(fds, 0) & POLLIN).toBe(POLLIN);
    expect(pollfdRevents(fds, 1)).toBe(POLLNVAL);
    const buf = new Uint8Array(16);
    expect(sys.read(rfd, buf)).toBe(5);
    expect(new TextDecoder().decode(buf.subarray(0, 5))).toBe("hello");
    expect(sys.read(rfd, buf)).toBe(0);
    sys.close(rfd);
    expect(sys.read(rfd, buf)).toBe(-ERRNO.EBADF);
    rmSync(dir, { recursive: true, force: true });
  });

  test("addressOf is stable for small views (no JSC fast-mode relocation)", () => {
    const small = new Uint8Array(8);
    const a = sys.addressOf(small);
    void small.buffer; // would relocate a fast-mode array if addressOf had not materialised it
    expect(sys.addressOf(small)).toBe(a);
  });
});
