/**
 * The typed errors of svmrt. Each says what failed in the user's terms (DESIGN.md,
 * "Contracts"); the CLI maps each class to one documented exit code (cli/exit.ts).
 */

/** Where in a text file a problem sits: 1-based line and column. */
export interface SourcePosition {
  file: string;
  line: number;
  col: number;
}

/** A configuration, policy, workload or trace file is wrong. Names file:line:col and the field. */
export class ConfigError extends Error {
  override name = "ConfigError";
  readonly file: string;
  readonly line: number;
  readonly col: number;
  /** Dotted path of the offending field, e.g. `spec.params.window_pages`; empty for the whole file. */
  readonly field: string;
  /** What was expected there, in words. */
  readonly expected: string;

  constructor(pos: SourcePosition, field: string, expected: string, detail?: string) {
    const where = `${pos.file}:${pos.line}:${pos.col}`;
    const what = field ? `${field}: ` : "";
    super(`${where}: ${what}${expected}${detail ? ` (${detail})` : ""}`);
    this.file = pos.file;
    this.line = pos.line;
    this.col = pos.col;
    this.field = field;
    this.expected = expected;
  }
}

/** Several configuration errors found in one pass, so the user can fix them all at once. */
export class ConfigErrors extends Error {
  override name = "ConfigErrors";
  constructor(readonly errors: readonly ConfigError[]) {
    super(errors.map((e) => e.message).join("\n"));
  }
}

/** Why a policy plugin did not produce a usable decision. */
export const POLICY_FAILURE_REASONS = [
  "timeout",
  "oom",
  "stack",
  "invalid-output",
  "output-limit",
  "input-limit",
  "exception",
  "load",
  "quarantined",
] as const;
export type PolicyFailureReason = (typeof POLICY_FAILURE_REASONS)[number];

/** A policy plugin failed; the policy's fallback decides instead (or the call fails closed). */
export class PolicyError extends Error {
  override name = "PolicyError";
  constructor(
    readonly policy: string,
    readonly hook: string,
    readonly reason: PolicyFailureReason,
    detail: string,
  ) {
    super(`policy ${policy}, hook ${hook}: ${reason}: ${detail}`);
  }
}

/** Invalid command-line use: unknown flag, missing argument, bad value. */
export class UsageError extends Error {
  override name = "UsageError";
}

/** A KFD ioctl or device operation failed. */
export class KfdError extends Error {
  override name = "KfdError";
  constructor(
    /** Kernel name of the ioctl or operation, e.g. `MAP_MEMORY_TO_GPU`, `open /dev/kfd`. */
    readonly op: string,
    /** errno name, e.g. `EINVAL`. */
    readonly errnoName: string,
    readonly errno: number,
    /** What the user can do about it. */
    readonly hint: string,
  ) {
    super(`${op} failed: ${errnoName} (${errno})${hint ? `: ${hint}` : ""}`);
  }
}

/** An amdsmi call returned a status other than SUCCESS. */
export class SmiError extends Error {
  override name = "SmiError";
  constructor(
    readonly fn: string,
    readonly statusName: string,
    readonly status: number,
    detail?: string,
  ) {
    super(`${fn} returned ${statusName} (${status})${detail ? `: ${detail}` : ""}`);
  }
}

/**
 * Writing an output file failed (disk full, permission, I/O error, a folder that does not
 * exist). Names the file, the flag that gave it when there is one, and the errno.
 */
export class IoError extends Error {
  override name = "IoError";
  constructor(
    /** The file as the user gave it. */
    readonly file: string,
    /** What was being done, e.g. `write`, `create`, `rename`. */
    readonly op: string,
    /** errno name, e.g. `ENOSPC`; empty when the system gave none. */
    readonly errnoName: string,
    /** The flag that named the file (`--events`), or empty. */
    readonly flag = "",
    detail = "",
  ) {
    super(`${flag ? `${flag} ` : ""}${file}: cannot ${op}${errnoName ? `: ${errnoName}` : ""}${detail ? ` (${detail})` : ""}`);
  }
}

/**
 * The reader of an output went away (EPIPE: `svmrt ... | head -1`). Not a failure: the
 * command stops its work and exits 0 without a word.
 */
export class BrokenPipeError extends Error {
  override name = "BrokenPipeError";
  constructor(readonly file: string) {
    super(`${file}: the reader closed the pipe`);
  }
}

/**
 * A run reached one of its declared bounds (simulated time, work without progress, events):
 * its inputs (workload, trace, policy) ask for more than svmrt will do. Says which bound,
 * its value and what to change.
 */
export class BoundError extends Error {
  override name = "BoundError";
  constructor(
    /** The bound's constant, e.g. `SIM_TIME_MAX_ns`. */
    readonly bound: string,
    message: string,
  ) {
    super(message);
  }
}

/** A broken internal invariant: a bug in svmrt, never the user's input. */
export class InvariantError extends Error {
  override name = "InvariantError";
}

/** Assert an invariant; throws InvariantError with the message when it does not hold. */
export function assert(cond: unknown, message: string): asserts cond {
  if (!cond) throw new InvariantError(message);
}
