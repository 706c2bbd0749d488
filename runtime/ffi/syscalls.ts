/**
 * The small syscalls interface the KFD code talks to (DESIGN.md, layer `kfd -> ffi/syscalls`).
 * The same KFD code runs on libc (runtime/ffi/libc.ts), on a C test double loaded through the
 * very same bun:ffi path, or on a pure-JS emulator implementing this interface.
 *
 * Convention: every call returns a non-negative result, or `-errno` on failure (never -1 plus a
 * global errno): the implementation reads errno right after the call that failed.
 */

/** open(2) flags (x86_64 / aarch64 generic values). */
export const O_RDONLY = 0;
export const O_WRONLY = 1;
export const O_RDWR = 2;
export const O_NONBLOCK = 0o4000;
export const O_CLOEXEC = 0o2000000;

/** poll(2) event bits. */
export const POLLIN = 0x1;
export const POLLERR = 0x8;
export const POLLHUP = 0x10;
export const POLLNVAL = 0x20;

/** sizeof(struct pollfd): int fd; short events; short revents. */
export const POLLFD_SIZE_bytes = 8;

export interface Syscalls extends Disposable {
  /** What this is, for messages: `libc` or the path of a test double. */
  readonly name: string;
  /** open(2). Returns the fd or -errno. */
  open(path: string, flags: number): number;
  /** close(2). Returns 0 or -errno. */
  close(fd: number): number;
  /**
   * ioctl(2) with a pointer argument: `arg` is the argument struct, read and written in place.
   * Returns the ioctl's result (>= 0) or -errno.
   *
   * Memory that the struct points to (a gpu id array, SVM attributes) must stay referenced by
   * the caller, and so alive and unmoved, until this returns: take its address with
   * `addressOf` and keep the buffer in a variable used after the call.
   */
  ioctl(fd: number, request: number, arg: Uint8Array): number;
  /** read(2) into `buf` (up to its length). Returns bytes read (0 = end) or -errno. */
  read(fd: number, buf: Uint8Array): number;
  /** write(2) of all of `buf`. Returns bytes written or -errno. */
  write(fd: number, buf: Uint8Array): number;
  /**
   * poll(2) over `nfds` packed `struct pollfd` in `fds` (POLLFD_SIZE_bytes each, revents
   * written back). Returns the number of ready fds or -errno. Pass 0 to never block.
   */
  poll(fds: Uint8Array, nfds: number, timeout_ms: number): number;
  /**
   * The address to store in a pointer field of an ioctl argument so that the callee reads
   * `buf`. Valid only while `buf` is referenced and not detached; see `ioctl`.
   */
  addressOf(buf: Uint8Array): bigint;
  /** Unload the library. Further calls are a bug. */
  unload(): void;
}

/** Encode one `struct pollfd` at index `i` of `fds`. */
export function pollfdSet(fds: Uint8Array, i: number, fd: number, events: number): void {
  const v = new DataView(fds.buffer, fds.byteOffset, fds.byteLength);
  v.setInt32(i * POLLFD_SIZE_bytes, fd, true);
  v.setInt16(i * POLLFD_SIZE_bytes + 4, events, true);
  v.setInt16(i * POLLFD_SIZE_bytes + 6, 0, true);
}

/** The revents of `struct pollfd` at index `i`. */
export function pollfdRevents(fds: Uint8Array, i: number): number {
  const v = new DataView(fds.buffer, fds.byteOffset, fds.byteLength);
  return v.getInt16(i * POLLFD_SIZE_bytes + 6, true) & 0xffff;
}
