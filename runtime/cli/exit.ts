/**
 * Documented exit codes of every svmrt command (also in docs/cli.md and `svmrt --help`).
 */
import { BoundError, BrokenPipeError, ConfigError, ConfigErrors, IoError, KfdError, PolicyError, SmiError, UsageError } from "../errors.ts";

export const EXIT = {
  /** The command did what was asked, or its reader closed the pipe (`| head`): it stopped quietly. */
  ok: 0,
  /** It ran, and what it checked or tested failed (policy check/test, compare with failures). */
  failed: 1,
  /** Bad command line: unknown command or flag, missing or malformed value. */
  usage: 2,
  /**
   * An input is wrong, unreadable or asks too much: policy YAML, plugin, workload, trace,
   * profile (file:line:col and the errno when reading failed), or a run that reached a bound
   * (simulated time, work without progress).
   */
  config: 3,
  /** A policy failed and its onFailure is fail-closed. */
  policy: 4,
  /** No device: /dev/kfd or the amdsmi library is absent. */
  noDevice: 5,
  /** The device exists but this user may not open it. */
  permission: 6,
  /** A device call failed (KFD errno, amdsmi status). */
  device: 7,
  /** A bug in svmrt. */
  internal: 70,
  /** An output file (--events, --report...) could not be written: the file and the errno are named. */
  io: 74,
} as const;

export const EXIT_HELP = `Exit codes:
  0   success (also: the reader of the output went away, e.g. '| head')
  1   checks or tests ran and failed
  2   usage error (unknown command or flag, bad value)
  3   an input is wrong, unreadable or asks too much (policy, plugin, workload, trace or
      profile file: file:line:col; a run past a bound such as simulated time)
  4   a fail-closed policy failed
  5   no device (/dev/kfd or amdsmi absent)
  6   permission denied on the device
  7   device call failed
  70  internal error (a bug: please report it)
  74  an output file could not be written (the file and the errno are named)`;

/** Map an error thrown by a command to its exit code. */
export function exitCodeOf(err: unknown): number {
  if (err instanceof BrokenPipeError) return EXIT.ok;
  if (err instanceof UsageError) return EXIT.usage;
  if (err instanceof ConfigError || err instanceof ConfigErrors || err instanceof BoundError) return EXIT.config;
  if (err instanceof IoError) return EXIT.io;
  if (err instanceof PolicyError) return EXIT.policy;
  if (err instanceof KfdError) {
    if (err.errnoName === "ENOENT" || err.errnoName === "ENODEV") return EXIT.noDevice;
    if (err.errnoName === "EACCES" || err.errnoName === "EPERM") return EXIT.permission;
    return EXIT.device;
  }
  if (err instanceof SmiError) {
    if (err.statusName === "DRIVER_NOT_LOADED" || err.statusName === "FAIL_LOAD_MODULE") return EXIT.noDevice;
    // rocm-smi's answer on a host without the amdgpu driver / KFD.
    if (err.fn === "rsmi_init" && err.statusName === "INIT_ERROR") return EXIT.noDevice;
    if (err.statusName === "NO_PERM") return EXIT.permission;
    return EXIT.device;
  }
  return EXIT.internal;
}
