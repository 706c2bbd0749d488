/**
 * Every bound of a sandboxed plugin call, named once with its unit. A policy may override a
 * default in its YAML `spec.limits`, but never above the host maximum.
 */

export interface SandboxLimits {
  /** Wall-clock deadline of one hook call, including draining its promise jobs. */
  timeout_ms: number;
  /** Deadline for evaluating the plugin module once at load. */
  load_timeout_ms: number;
  /** QuickJS heap limit of the policy's runtime. */
  memory_bytes: number;
  /**
   * QuickJS stack limit. Guest C frames are also Wasm frames on the host's thread stack, and
   * some recursions (the parser, JSON) use far more host stack per QuickJS byte than the
   * interpreter: at 128 KiB nested `Function` source already overflowed the host first
   * (measured), at 96 KiB and below QuickJS's own check trips. JSON.stringify of a
   * pathologically deep structure takes time in proportion (~180 ms at 64 KiB).
   */
  stack_bytes: number;
  /** Largest encoded input of one call (JSON text or typed-array bytes). */
  input_bytes: number;
  /** Largest encoded output of one call. */
  output_bytes: number;
  /** Log text kept per call; the rest is dropped and counted. */
  log_bytes: number;
  /** Crashes of the Wasm module within crash_window_ms that quarantine the policy. */
  crashes_max: number;
  crash_window_ms: number;
}

/** Defaults: tuned for the hot migration path (a batch of 4096 faults fits with room). */
export const SANDBOX_DEFAULTS: Readonly<SandboxLimits> = Object.freeze({
  timeout_ms: 50,
  load_timeout_ms: 500,
  memory_bytes: 16 * 1024 * 1024,
  stack_bytes: 64 * 1024,
  input_bytes: 1024 * 1024,
  output_bytes: 256 * 1024,
  log_bytes: 4 * 1024,
  crashes_max: 5,
  crash_window_ms: 60_000,
});

/** Host maxima: no policy may ask for more. */
export const SANDBOX_MAXIMA: Readonly<SandboxLimits> = Object.freeze({
  timeout_ms: 10_000,
  load_timeout_ms: 10_000,
  memory_bytes: 256 * 1024 * 1024,
  stack_bytes: 96 * 1024,
  input_bytes: 16 * 1024 * 1024,
  output_bytes: 4 * 1024 * 1024,
  log_bytes: 64 * 1024,
  crashes_max: 1000,
  crash_window_ms: 3_600_000,
});

/** Host minima: below these a healthy plugin cannot even load. */
export const SANDBOX_MINIMA: Readonly<SandboxLimits> = Object.freeze({
  timeout_ms: 1,
  load_timeout_ms: 10,
  memory_bytes: 256 * 1024,
  stack_bytes: 32 * 1024,
  input_bytes: 64,
  output_bytes: 64,
  log_bytes: 0,
  crashes_max: 1,
  crash_window_ms: 1,
});

export const LIMIT_NAMES = Object.keys(SANDBOX_DEFAULTS) as (keyof SandboxLimits)[];

/** Most bytes of an error message kept from a plugin (stack traces can be megabytes). */
export const ERROR_TEXT_BYTES_MAX = 2048;
/** Most promise jobs drained after a hook returns a promise, before it counts as a timeout. */
export const PENDING_JOBS_MAX = 10_000;

/**
 * Merge overrides into the defaults. Returns the limits and, for each override outside
 * [minimum, maximum], a message naming the limit, the value and the range.
 */
export function resolveLimits(overrides: Partial<SandboxLimits>): { limits: SandboxLimits; errors: string[] } {
  const limits = { ...SANDBOX_DEFAULTS };
  const errors: string[] = [];
  for (const name of LIMIT_NAMES) {
    const v = overrides[name];
    if (v === undefined) continue;
    const lo = SANDBOX_MINIMA[name];
    const hi = SANDBOX_MAXIMA[name];
    if (!Number.isInteger(v) || v < lo || v > hi) {
      errors.push(`${name}: expected an integer from ${lo} to ${hi}, got ${v}`);
      continue;
    }
    limits[name] = v;
  }
  return { limits, errors };
}
