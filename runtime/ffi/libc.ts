/**
 * Syscalls over bun:ffi (the only place besides other runtime/ffi/ files that imports
 * `bun:ffi`). One implementation, parameterised by library path and symbol names, serves both
 * libc and C test doubles that export libc-compatible entry points (test/native/kfd_double.c):
 * the KFD code cannot tell them apart, and the tests exercise the exact marshaling used on a
 * GPU host.
 *
 * errno: after a call returns -1, `__errno_location()` (from libc, a thread-local address) is
 * called and read immediately, before any other native call can overwrite it, and the call
 * returns -errno instead. A test double sets the same libc errno, so the path is identical.
 *
 * Pointers: an ioctl argument is passed as the Uint8Array itself (bun:ffi reads its data
 * pointer at the moment of the call). Pointer fields inside the argument (gpu id arrays,
 * SVM attributes) hold `addressOf(buf)`, and two hazards apply to that address:
 * - liveness: bun:ffi does not keep `buf` alive for the native side, so the caller keeps a
 *   reference to it across the call (Syscalls.ioctl contract);
 * - movement: JSC stores a small typed array (< 1000 bytes, "fast" mode) inside the GC heap
 *   with no ArrayBuffer; materialising its `.buffer` later copies the bytes elsewhere and the
 *   earlier `ptr()` dangles (oven-sh/bun#32054). `addressOf` therefore materialises
 *   `buf.buffer` first, after which the storage is a malloc'd ArrayBuffer that never moves.
 */
import { dlopen, FFIType, ptr, read } from "bun:ffi";
import type { Syscalls } from "./syscalls.ts";

/** Symbol names of the six entry points and of the errno accessor. */
export interface SyscallSymbols {
  open: string;
  close: string;
  ioctl: string;
  read: string;
  write: string;
  poll: string;
}

export const LIBC_PATH = "libc.so.6";
export const LIBC_SYMBOLS: SyscallSymbols = {
  open: "open",
  close: "close",
  ioctl: "ioctl",
  read: "read",
  write: "write",
  poll: "poll",
};
/** glibc and musl both export it; errno is always libc's, also for test doubles. */
const ERRNO_LOCATION_SYMBOL = "__errno_location";

function syscallLibraryOpen(path: string, s: SyscallSymbols) {
  return dlopen(path, {
    [s.open]: { args: [FFIType.cstring, FFIType.i32], returns: FFIType.i32 },
    [s.close]: { args: [FFIType.i32], returns: FFIType.i32 },
    // int ioctl(int fd, unsigned long request, void *arg): variadic in libc; on the SysV
    // x86_64 and AAPCS64 ABIs a pointer third argument is passed exactly like a fixed one.
    [s.ioctl]: { args: [FFIType.i32, FFIType.u64_fast, FFIType.ptr], returns: FFIType.i32 },
    [s.read]: { args: [FFIType.i32, FFIType.ptr, FFIType.u64_fast], returns: FFIType.i64_fast },
    [s.write]: { args: [FFIType.i32, FFIType.ptr, FFIType.u64_fast], returns: FFIType.i64_fast },
    [s.poll]: { args: [FFIType.ptr, FFIType.u64_fast, FFIType.i32], returns: FFIType.i32 },
  });
}

type Fn = (...args: unknown[]) => number | bigint;
type IoctlFn = (fd: number, request: number, arg: Uint8Array) => number;

/**
 * Load `path` (libc by default) and bind the six calls named by `symbols`.
 * @throws Error from dlopen when the library or a symbol is missing.
 */
export function syscallsOpen(path: string = LIBC_PATH, symbols: SyscallSymbols = LIBC_SYMBOLS): Syscalls {
  const lib = syscallLibraryOpen(path, symbols);
  const errnoLib = dlopen(LIBC_PATH, { [ERRNO_LOCATION_SYMBOL]: { args: [], returns: FFIType.ptr } });
  const errnoLocation = errnoLib.symbols[ERRNO_LOCATION_SYMBOL] as unknown as () => number;
  const f = lib.symbols as unknown as Record<string, Fn>;
  const open = f[symbols.open]!;
  const close = f[symbols.close]!;
  // i32 return: already a number, no conversion on the hot path.
  const ioctl = f[symbols.ioctl] as unknown as IoctlFn;
  const readFn = f[symbols.read]!;
  const writeFn = f[symbols.write]!;
  const poll = f[symbols.poll]!;
  let loaded = true;

  /** -errno for a failed call; read errno before anything else runs. */
  const errnoNegated = (): number => -read.i32(errnoLocation(), 0);

  const unload = (): void => {
    if (!loaded) return;
    loaded = false;
    lib.close();
    errnoLib.close();
  };

  return {
    name: path === LIBC_PATH ? "libc" : path,
    open(p, flags) {
      const fd = Number(open(p, flags));
      return fd < 0 ? errnoNegated() : fd;
    },
    close(fd) {
      const r = Number(close(fd));
      return r < 0 ? errnoNegated() : r;
    },
    ioctl(fd, request, arg) {
      const r = ioctl(fd, request, arg);
      return r < 0 ? errnoNegated() : r;
    },
    read(fd, buf) {
      if (buf.byteLength === 0) return 0;
      const r = Number(readFn(fd, buf, buf.byteLength));
      return r < 0 ? errnoNegated() : r;
    },
    write(fd, buf) {
      if (buf.byteLength === 0) return 0;
      const r = Number(writeFn(fd, buf, buf.byteLength));
      return r < 0 ? errnoNegated() : r;
    },
    poll(fds, nfds, timeout_ms) {
      const r = Number(poll(fds, nfds, timeout_ms));
      return r < 0 ? errnoNegated() : r;
    },
    addressOf(buf) {
      // Force the view out of JSC fast mode before taking the address (see file comment).
      if (buf.buffer.byteLength < buf.byteOffset + buf.byteLength) throw new RangeError("detached buffer");
      return BigInt(ptr(buf));
    },
    unload,
    [Symbol.dispose]: unload,
  };
}
