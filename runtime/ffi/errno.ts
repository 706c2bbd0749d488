/**
 * Linux errno numbers (asm-generic/errno-base.h and errno.h; the same on x86_64 and aarch64)
 * and their names, for errors that say `EINVAL` rather than `22`. Pure data.
 */

export const ERRNO = {
  EPERM: 1,
  ENOENT: 2,
  ESRCH: 3,
  EINTR: 4,
  EIO: 5,
  ENXIO: 6,
  E2BIG: 7,
  ENOEXEC: 8,
  EBADF: 9,
  ECHILD: 10,
  EAGAIN: 11,
  ENOMEM: 12,
  EACCES: 13,
  EFAULT: 14,
  ENOTBLK: 15,
  EBUSY: 16,
  EEXIST: 17,
  EXDEV: 18,
  ENODEV: 19,
  ENOTDIR: 20,
  EISDIR: 21,
  EINVAL: 22,
  ENFILE: 23,
  EMFILE: 24,
  ENOTTY: 25,
  ETXTBSY: 26,
  EFBIG: 27,
  ENOSPC: 28,
  ESPIPE: 29,
  EROFS: 30,
  EMLINK: 31,
  EPIPE: 32,
  EDOM: 33,
  ERANGE: 34,
  EDEADLK: 35,
  ENAMETOOLONG: 36,
  ENOLCK: 37,
  ENOSYS: 38,
  ENOTEMPTY: 39,
  ELOOP: 40,
  ENODATA: 61,
  ETIME: 62,
  EPROTO: 71,
  EOVERFLOW: 75,
  EOPNOTSUPP: 95,
  ETIMEDOUT: 110,
  ECANCELED: 125,
  /** Kernel-internal; user space sees EINTR, or a restarted call. */
  ERESTARTSYS: 512,
} as const;

export type ErrnoName = keyof typeof ERRNO;

const NAME_OF = new Map<number, string>(Object.entries(ERRNO).map(([name, n]) => [n, name]));

/** `EINVAL` for 22; `errno 200` for a number without a name here. */
export function errnoName(errno: number): string {
  return NAME_OF.get(errno) ?? `errno ${errno}`;
}
