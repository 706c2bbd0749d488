/**
 * The QuickJS host: one Wasm module instance, one runtime and one context per policy.
 *
 * Contract:
 * - A plugin is an ES module. It gets JSON data (or, through adapters, a Float64Array) in
 *   and returns data out. No host function is exposed to it: no file, network, process,
 *   env, clock (Date is switched off) or module loading; Math.random is seeded by the host.
 * - Every call has a wall-clock deadline (interrupt handler), the runtime has a memory and
 *   a stack limit, inputs and outputs have byte caps, logs a byte cap per call.
 * - A plugin failure never throws: it comes back as `{ ok: false, reason, message }`.
 * - A crash of the Wasm module (a trap or a QuickJS abort) is contained: the instance is
 *   dropped without touching it again, a fresh one is built from the cached compiled
 *   module on the next call, and after `crashes_max` crashes within `crash_window_ms` the
 *   sandbox is quarantined: every later call answers `quarantined` at once.
 */
import {
  DefaultIntrinsics,
  type QuickJSContext,
  type QuickJSHandle,
  type QuickJSRuntime,
  type QuickJSSyncVariant,
  type QuickJSWASMModule,
  newQuickJSWASMModuleFromVariant,
} from "quickjs-emscripten-core";
import { type PolicyFailureReason, PolicyError } from "../errors.ts";
import { CHANNEL_HEADER, CHANNEL_IN_NUMBERS, CHANNEL_OUT_NUMBERS, Channel } from "./channel.ts";
import { ERROR_TEXT_BYTES_MAX, PENDING_JOBS_MAX, type SandboxLimits } from "./limits.ts";
import { ADAPTERS_SEAL, BATCH_TRAILER, PRELUDE_SOURCE } from "./prelude.ts";
import { SOURCE_NESTING_MAX, sourceNesting } from "./source-check.ts";
import { releaseVariant } from "./wasm.ts";

export type CallResult<T> =
  | { ok: true; value: T; logs: string[] }
  | { ok: false; reason: PolicyFailureReason; message: string; logs: string[] };

export interface SandboxOptions {
  /** Name used in errors (the policy's name). */
  name: string;
  /** Plugin ES module source. */
  source: string;
  /** Path shown in the plugin's stack traces and errors. */
  filename: string;
  limits: SandboxLimits;
  /** Seed of the plugin's Math.random (the simulator passes its own, so runs repeat). */
  seed: number;
  /** Trusted guest code registering batch adapters with `__svmrt_adapt(name, fn)`. */
  adapters?: string;
  /**
   * Trusted ES modules whose exports the plugin gets as frozen globals, e.g. the kernel's
   * rules as `kernel` so every migration plugin builds on one implementation of them.
   */
  libraries?: { global: string; source: string; filename: string }[];
  /** Variant to instantiate; default: the release build from the cached compiled module. */
  variant?: QuickJSSyncVariant;
  /**
   * Budget calls in interpreter work instead of wall-clock time, so a run gives the same
   * answers on any machine (the simulator). timeout_ms then converts to interrupt polls.
   */
  deterministic?: boolean;
  /** false: batches take the copying path even when the shared-memory channel opens (tests). */
  channel?: boolean;
  /** Test hook: wrap each new module (e.g. in TestQuickJSWASMModule for leak checks). */
  wrapModule?: (m: QuickJSWASMModule) => QuickJSWASMModule;
}

/** What a plugin module exports: function names and data exports (e.g. `params`). */
export interface PluginExports {
  functions: string[];
  data: Record<string, unknown>;
}

export interface SandboxStats {
  calls: number;
  failures: Partial<Record<PolicyFailureReason, number>>;
  /** Wasm module crashes since load. */
  crashes: number;
  /** Module instances built (1 + rebuilds after crashes and recycles). */
  builds: number;
  /** Instances dropped because their heap outgrew the cap. */
  recycles: number;
  quarantined: boolean;
}

/** Live pieces of one Wasm module instance. */
interface Instance {
  /** The context JSON this instance holds (the guest caches it; "" resends nothing). */
  sentCtxJson?: string;
  /** Adapter names as guest strings, created once. */
  adapterNames?: Map<string, QuickJSHandle>;
  /** Linear memory above which the instance is stopped and recycled, bytes. */
  heapCapBytes: number;
  module: QuickJSWASMModule;
  /** The unwrapped module, whose linear memory the host watches. */
  raw: QuickJSWASMModule;
  runtime: QuickJSRuntime;
  context: QuickJSContext;
  /** __svmrt.call / batch / settled / logs, kept for the instance's life. */
  fnCall: QuickJSHandle;
  fnBatch: QuickJSHandle;
  fnSettled: QuickJSHandle;
  fnLogs: QuickJSHandle;
  host: QuickJSHandle;
  /** The shared-memory batch path (absent: the copying path through public calls). */
  channel?: Channel;
  fnSetCtx?: QuickJSHandle;
  /** __svmrt.takeWire: the wire answer a channel run or tools.stash left behind. */
  fnTakeWire: QuickJSHandle;
}

/** The running call's deadline, shared with the interrupt handler. */
interface Clock {
  deadlineMs: number;
  /** Deterministic mode: interrupt polls left in this call (see FUEL_POLLS_PER_MS). */
  fuelLeft: number;
  deterministic: boolean;
  interrupted: boolean;
  /** Set when the interrupt fired because the Wasm heap outgrew its cap. */
  heapExceeded: boolean;
}

/**
 * The Wasm linear memory of one instance, bytes. QuickJS's own memory limit does not count
 * every allocation (measured: 10,000 arrays of 1,000 numbers pass a 2 MiB limit and grow
 * the heap by ~500 MB), so the host also watches the heap itself.
 */
function wasmHeapBytes(m: QuickJSWASMModule): number {
  return (m as unknown as { module: { HEAPU8: Uint8Array } }).module.HEAPU8.byteLength;
}

/** Heap growth allowed beyond the QuickJS limit, for allocator slack and fragmentation. */
const WASM_HEAP_SLACK_BYTES = 16 * 1024 * 1024;

/**
 * Heap cap of one instance: its linear memory once its context exists (16 MiB release,
 * 83 MiB debug build, measured) plus twice the QuickJS limit plus slack.
 */
export function wasmHeapCapBytes(baseBytes: number, limits: SandboxLimits): number {
  return baseBytes + limits.memory_bytes * 2 + WASM_HEAP_SLACK_BYTES;
}

/**
 * QuickJS polls the interrupt handler every ~10,000 interpreter ticks: measured here at 0.8
 * (allocation-heavy code) to 4.3 (regex backtracking) polls per ms. Deterministic mode
 * allows timeout_ms x this many polls, so a call gets at least its wall-clock budget.
 */
export const FUEL_POLLS_PER_MS = 4;

/** Start the budget of one call (or of the load). Deterministic mode reads no clock. */
function armClock(clock: Clock, budgetMs: number): void {
  clock.interrupted = false;
  clock.heapExceeded = false;
  if (clock.deterministic) clock.fuelLeft = budgetMs * FUEL_POLLS_PER_MS;
  else clock.deadlineMs = performance.now() + budgetMs;
}

/** Failure reasons the guest prelude and adapters report; quarantine and limits are the host's. */
const GUEST_FAILURE_REASONS: readonly PolicyFailureReason[] = ["oom", "stack", "invalid-output", "output-limit", "exception", "load"];

/** Longest channel answer copied (or NaN-filled) number by number rather than through a native call. */
const ANSWER_COPY_LOOP_MAX = 64;

/** The answer of every successful batch without logs (never mutated: logs is frozen). */
const BATCH_OK: CallResult<null> = Object.freeze({ ok: true, value: null, logs: Object.freeze([]) as unknown as string[] });

/** Promise jobs run between two deadline checks while a hook's promise settles. */
const JOBS_PER_CHECK = 64;

/**
 * True for the host-side exceptions that mean the Wasm instance itself is broken: a trap,
 * an abort (QuickJS assertion), or the host stack exhausted inside Wasm. Any other host
 * exception is an error in reading the answer, not a crash.
 */
function isWasmCrash(e: unknown): boolean {
  if (e instanceof WebAssembly.RuntimeError || e instanceof RangeError) return true;
  return /Aborted\(|unreachable|call stack|out of bounds/i.test(String((e as Error)?.message ?? e));
}

/** Share of the memory limit in use at which a timed-out call counts as out of memory. */
const OOM_NEAR_LIMIT_RATIO = 0.9;

function clip(text: string): string {
  return text.length > ERROR_TEXT_BYTES_MAX ? `${text.slice(0, ERROR_TEXT_BYTES_MAX)}…` : text;
}

/** Reason for a crash of the Wasm module, from the host-side exception. */
function crashReason(e: unknown): PolicyFailureReason {
  const text = String((e as Error)?.message ?? e);
  if (e instanceof RangeError || /call stack|stack overflow/i.test(text)) return "stack";
  if (/memory|alloc|oom/i.test(text)) return "oom";
  return "exception";
}

export class Sandbox implements Disposable {
  readonly name: string;
  readonly exports: PluginExports;
  readonly stats: SandboxStats = { calls: 0, failures: {}, crashes: 0, builds: 0, recycles: 0, quarantined: false };
  private readonly opts: SandboxOptions;
  private readonly variant: QuickJSSyncVariant;
  private inst: Instance | undefined;
  /** Deadline of the running call, read by the interrupt handler of every instance. */
  private readonly clock: Clock;
  private crashTimesMs: number[] = [];
  private disposed = false;

  private constructor(opts: SandboxOptions, variant: QuickJSSyncVariant, clock: Clock, inst: Instance, exports: PluginExports) {
    this.opts = opts;
    this.clock = clock;
    this.name = opts.name;
    this.variant = variant;
    this.inst = inst;
    this.exports = exports;
  }

  /**
   * Build the sandbox and evaluate the plugin once.
   * @throws PolicyError with reason `load` (syntax error, import, top-level throw or
   *   timeout, non-data exports) — the plugin cannot be used at all.
   */
  static async load(opts: SandboxOptions): Promise<Sandbox> {
    const nesting = sourceNesting(opts.source);
    if (nesting.line !== undefined) {
      throw new PolicyError(
        opts.name,
        "load",
        "load",
        `${opts.filename}:${nesting.line}:${nesting.col}: nested deeper than ${SOURCE_NESTING_MAX} brackets, braces and parentheses`,
      );
    }
    const variant = opts.variant ?? (await releaseVariant());
    const clock: Clock = { deadlineMs: 0, fuelLeft: 0, deterministic: opts.deterministic === true, interrupted: false, heapExceeded: false };
    let built: Awaited<ReturnType<typeof Sandbox.build>>;
    try {
      built = await Sandbox.build(opts, variant, clock);
    } catch (e) {
      if (e instanceof PolicyError) throw e;
      // A trap or abort while evaluating the module: the plugin cannot load.
      throw new PolicyError(opts.name, "load", "load", clip(`${opts.filename}: the sandbox failed while loading it: ${String((e as Error)?.message ?? e)}`));
    }
    const sb = new Sandbox(opts, variant, clock, built.inst, built.exports);
    sb.stats.builds = 1;
    return sb;
  }

  private static async build(
    opts: SandboxOptions,
    variant: QuickJSSyncVariant,
    clock: Clock,
  ): Promise<{ inst: Instance; exports: PluginExports }> {
    const raw = await newQuickJSWASMModuleFromVariant(variant);
    const module = opts.wrapModule ? opts.wrapModule(raw) : raw;
    const runtime = module.newRuntime();
    const { limits } = opts;
    runtime.setMemoryLimit(limits.memory_bytes);
    runtime.setMaxStackSize(limits.stack_bytes);
    let heapCap = Number.POSITIVE_INFINITY; // set once the context exists
    runtime.setInterruptHandler(() => {
      if (wasmHeapBytes(raw) > heapCap) {
        clock.interrupted = true;
        clock.heapExceeded = true;
        return true;
      }
      const late = clock.deterministic ? --clock.fuelLeft < 0 : performance.now() > clock.deadlineMs;
      if (late) clock.interrupted = true;
      return late;
    });
    // No module loader: `import` of anything fails to load.
    const context = runtime.newContext({ intrinsics: { ...DefaultIntrinsics, Date: false } });
    heapCap = wasmHeapCapBytes(wasmHeapBytes(raw), limits);
    const fail = (msg: string): never => {
      Sandbox.teardown({ module, runtime, context });
      throw new PolicyError(opts.name, "load", "load", clip(msg));
    };
    const evalTrusted = (code: string, file: string) => {
      armClock(clock, opts.limits.load_timeout_ms);
      const r = context.evalCode(code, file, { type: "global", strict: true });
      if (r.error) {
        const d = JSON.stringify(context.dump(r.error));
        r.error.dispose();
        fail(`svmrt internal guest code ${file} failed: ${d}`);
      } else r.value.dispose();
    };
    evalTrusted(PRELUDE_SOURCE, "svmrt:prelude");
    if (opts.adapters) evalTrusted(opts.adapters, "svmrt:adapters");
    for (const lib of opts.libraries ?? []) {
      armClock(clock, opts.limits.load_timeout_ms);
      const r = context.evalCode(lib.source, lib.filename, { type: "module", strict: true });
      if (r.error) {
        const why = Sandbox.errorText(context, r.error);
        r.error.dispose();
        fail(`library ${lib.filename} failed to load: ${why}`);
      }
      const ns = (r as { value: QuickJSHandle }).value;
      const install = context.getProp(context.global, "__svmrt_lib");
      const name = context.newString(lib.global);
      const done = context.callFunction(install, context.undefined, name, ns);
      for (const h of [install, name, ns]) h.dispose();
      if (done.error) {
        done.error.dispose();
        fail(`library ${lib.filename} could not be installed as ${lib.global}`);
      } else done.value.dispose();
    }
    evalTrusted(ADAPTERS_SEAL, "svmrt:seal");

    armClock(clock, opts.limits.load_timeout_ms);
    const evaluated = context.evalCode(opts.source, opts.filename, { type: "module", strict: true });
    if (evaluated.error) {
      const why = clock.interrupted ? `timed out after ${opts.limits.load_timeout_ms} ms` : Sandbox.errorText(context, evaluated.error);
      evaluated.error.dispose();
      fail(`${opts.filename}: ${why}`);
    }
    let ns = (evaluated as { value: QuickJSHandle }).value;
    // A module with top-level await evaluates to a promise of its namespace.
    if (context.typeof(ns) === "object" && context.getPromiseState(ns).type !== "fulfilled" && Sandbox.isPromise(context, ns)) {
      const jobs = runtime.executePendingJobs(PENDING_JOBS_MAX);
      if (jobs.error) {
        jobs.error.dispose();
      }
      const state = context.getPromiseState(ns);
      ns.dispose();
      if (state.type === "fulfilled") ns = state.value;
      else if (state.type === "rejected") {
        const why = Sandbox.errorText(context, state.error);
        state.error.dispose();
        fail(`${opts.filename}: top-level await rejected: ${why}`);
      } else fail(`${opts.filename}: top-level await never settled`);
    } else if (Sandbox.isPromise(context, ns)) {
      const state = context.getPromiseState(ns);
      ns.dispose();
      if (state.type !== "fulfilled") fail(`${opts.filename}: module evaluation did not complete`);
      ns = (state as { value: QuickJSHandle }).value;
    }

    const host = context.getProp(context.global, "__svmrt");
    const fnInstall = context.getProp(host, "install");
    const settings = context.newString(
      JSON.stringify({ output_bytes: limits.output_bytes, log_bytes: limits.log_bytes, seed: opts.seed }),
    );
    armClock(clock, opts.limits.load_timeout_ms);
    const installed = context.callFunction(fnInstall, context.undefined, ns, settings);
    settings.dispose();
    fnInstall.dispose();
    ns.dispose();
    const inst: Instance = {
      heapCapBytes: heapCap,
      module,
      raw,
      runtime,
      context,
      host,
      fnCall: context.getProp(host, "call"),
      fnBatch: context.getProp(host, "batch"),
      fnSettled: context.getProp(host, "settled"),
      fnLogs: context.getProp(host, "logs"),
      fnTakeWire: context.getProp(host, "takeWire"),
    };
    if (installed.error) {
      const why = Sandbox.errorText(context, installed.error);
      installed.error.dispose();
      Sandbox.teardown(inst);
      throw new PolicyError(opts.name, "load", "load", clip(`${opts.filename}: ${why}`));
    }
    const wire = context.getString(installed.value);
    installed.value.dispose();
    if (wire[0] !== "R") {
      Sandbox.teardown(inst);
      throw new PolicyError(opts.name, "load", "load", clip(`${opts.filename}: exports are not plain data: ${wire.slice(1)}`));
    }
    if (opts.adapters && opts.channel !== false) {
      armClock(clock, opts.limits.load_timeout_ms);
      inst.channel = Channel.open(raw, context, host);
      if (inst.channel) {
        inst.fnSetCtx = context.getProp(host, "setCtx");
      }
    }
    return { inst, exports: JSON.parse(wire.slice(1)) as PluginExports };
  }

  private static isPromise(context: QuickJSContext, h: QuickJSHandle): boolean {
    try {
      const state = context.getPromiseState(h);
      // getPromiseState answers "fulfilled" with the value itself for non-promises.
      if (state.type === "fulfilled" && state.notAPromise) return false;
      if (state.type === "fulfilled") state.value.dispose();
      if (state.type === "rejected") state.error.dispose();
      return true;
    } catch {
      return false;
    }
  }

  /** Readable text of a guest error handle, without letting it run long. */
  private static errorText(context: QuickJSContext, err: QuickJSHandle): string {
    // Not context.dump: it runs the value's getters and consumes promise handles. Read the
    // name and message as strings only; anything else is named by its type.
    try {
      const t = context.typeof(err);
      if (t === "string") return clip(`threw a string: ${context.getString(err)}`);
      if (t !== "object") return `threw a ${t}`;
      const prop = (k: string): string | undefined => {
        const h = context.getProp(err, k);
        try {
          return context.typeof(h) === "string" ? context.getString(h) : undefined;
        } finally {
          h.dispose();
        }
      };
      const message = prop("message");
      if (message === undefined) return "threw a non-Error object";
      return clip(`${prop("name") ?? "Error"}: ${message}`);
    } catch {
      return "threw a value that could not be read";
    }
  }

  /** The guest string of an adapter's name, kept for the instance's life. */
  private adapterHandle(inst: Instance, adapter: string): QuickJSHandle {
    inst.adapterNames ??= new Map();
    let h = inst.adapterNames.get(adapter);
    if (h === undefined) {
      h = inst.context.newString(adapter);
      inst.adapterNames.set(adapter, h);
    }
    return h;
  }

  /** Dispose every handle of an instance; an abort here is swallowed (the instance is gone). */
  private static teardown(inst: Partial<Instance>): void {
    try {
      for (const h of inst.adapterNames?.values() ?? []) h.dispose();
      inst.channel?.dispose();
      for (const h of [inst.fnCall, inst.fnBatch, inst.fnSettled, inst.fnLogs, inst.fnSetCtx, inst.fnTakeWire, inst.host]) h?.dispose();
      inst.context?.dispose();
      inst.runtime?.dispose();
    } catch {
      // A QuickJS assertion during teardown: the module is dropped anyway.
    }
  }

  /** The live instance, rebuilding after a crash. Throws PolicyError when quarantined. */
  private async ensureInstance(): Promise<Instance | CallResult<never>> {
    if (this.disposed) throw new PolicyError(this.name, "call", "load", "sandbox used after dispose");
    if (this.stats.quarantined) return this.failure("quarantined", this.quarantineText());
    if (this.inst) return this.inst;
    try {
      const built = await Sandbox.build(this.opts, this.variant, this.clock);
      this.stats.builds++;
      this.inst = built.inst;
      return built.inst;
    } catch (e) {
      this.stats.quarantined = true;
      return this.failure("quarantined", `rebuild after a crash failed: ${(e as Error).message}`);
    }
  }

  private quarantineText(): string {
    return `quarantined after ${this.opts.limits.crashes_max} crashes within ${this.opts.limits.crash_window_ms} ms`;
  }

  private failure(reason: PolicyFailureReason, message: string, logs: string[] = []): CallResult<never> {
    this.stats.failures[reason] = (this.stats.failures[reason] ?? 0) + 1;
    return { ok: false, reason, message: clip(message), logs };
  }

  /** Record a crash: drop the instance untouched, maybe quarantine. */
  private crashed(e: unknown): CallResult<never> {
    this.inst = undefined; // never call into a crashed module again, not even to dispose it
    this.stats.crashes++;
    const now = performance.now();
    const windowStart = now - this.opts.limits.crash_window_ms;
    this.crashTimesMs = this.crashTimesMs.filter((t) => t >= windowStart);
    this.crashTimesMs.push(now);
    const reason = crashReason(e);
    let msg = `the Wasm module crashed (${String((e as Error)?.message ?? e).slice(0, 300)}); it will be rebuilt`;
    if (this.crashTimesMs.length >= this.opts.limits.crashes_max) {
      this.stats.quarantined = true;
      msg = `the Wasm module crashed; ${this.quarantineText()}`;
    }
    return this.failure(reason, msg);
  }

  /** Read and clear the guest's log lines of the last call. */
  private takeLogs(inst: Instance): string[] {
    const r = inst.context.callFunction(inst.fnLogs, inst.context.undefined);
    if (r.error) {
      r.error.dispose();
      return [];
    }
    const text = inst.context.getString(r.value);
    r.value.dispose();
    if (!text) return [];
    if (text.length > this.opts.limits.log_bytes * 2 + 1024) return ["[logs over the cap: dropped]"];
    // "<dropped>\n<json string>\n<json string>..." (see the prelude's logs()).
    const [droppedText, ...rest] = text.split("\n");
    const lines: string[] = [];
    for (const l of rest) {
      try {
        const v = JSON.parse(l) as unknown;
        if (typeof v === "string") lines.push(v);
      } catch {
        // A line the plugin forged: not a log line.
      }
    }
    const dropped = Number(droppedText);
    if (Number.isInteger(dropped) && dropped > 0) lines.push(`[${dropped} log lines dropped: over ${this.opts.limits.log_bytes} bytes]`);
    return lines;
  }

  /** Turn a wire string into a result. */
  private decodeWire<T>(wire: string, logs: string[]): CallResult<T> {
    if (wire.length > this.opts.limits.output_bytes + 1) {
      return this.failure("output-limit", `output of ${wire.length} bytes exceeds ${this.opts.limits.output_bytes}`, logs);
    }
    if (wire[0] === "R") {
      try {
        return { ok: true, value: JSON.parse(wire.slice(1)) as T, logs };
      } catch {
        return this.failure("invalid-output", "the plugin's answer is not JSON (the serializer was tampered with)", logs);
      }
    }
    if (wire[0] === "E") {
      const nl = wire.indexOf("\n");
      const reason = wire.slice(1, nl);
      // Only reasons the guest may report: never a forged "quarantined" or an unknown word.
      const allowed: readonly string[] = GUEST_FAILURE_REASONS;
      if (nl < 0 || !allowed.includes(reason)) return this.failure("invalid-output", "the plugin forged a failure answer", logs);
      return this.failure(reason as PolicyFailureReason, wire.slice(nl + 1), logs);
    }
    return this.failure("invalid-output", "the plugin returned an unreadable answer", logs);
  }

  /** The call was interrupted: by the heap cap (oom) or by its deadline (timeout). */
  private escapedTimeout(what: string): CallResult<never> {
    if (this.clock.heapExceeded) {
      return this.failure("oom", `${what} grew the sandbox heap past ${this.inst?.heapCapBytes ?? 0} bytes`);
    }
    // Near the memory limit QuickJS collects garbage on every allocation, so a memory bomb
    // often runs into the deadline before an allocation fails: call that what it is.
    const used = this.memoryUsedBytes();
    if (used >= this.opts.limits.memory_bytes * OOM_NEAR_LIMIT_RATIO) {
      return this.failure("oom", `${what} exhausted its memory (${used} of ${this.opts.limits.memory_bytes} bytes) and ran out of time`);
    }
    const budget = this.clock.deterministic
      ? `its budget of ${this.opts.limits.timeout_ms * FUEL_POLLS_PER_MS} interpreter polls (deterministic ${this.opts.limits.timeout_ms} ms)`
      : `its deadline of ${this.opts.limits.timeout_ms} ms`;
    return this.failure("timeout", `${what} exceeded ${budget}`);
  }

  /** A guest error handle that escaped the prelude's own catch (interrupts, OOM while failing). */
  private escaped(inst: Instance, err: QuickJSHandle, what: string): CallResult<never> {
    if (this.clock.interrupted) {
      err.dispose();
      return this.escapedTimeout(what);
    }
    armClock(this.clock, this.opts.limits.timeout_ms);
    const text = Sandbox.errorText(inst.context, err);
    err.dispose();
    if (/out of memory/.test(text)) return this.failure("oom", `${what}: ${text}`);
    if (/stack overflow/.test(text)) return this.failure("stack", `${what}: ${text}`);
    return this.failure("exception", `${what}: ${text}`);
  }

  /** The running call used up its budget (interrupted, deadline passed, or fuel spent). */
  private pastDeadline(): boolean {
    const c = this.clock;
    return c.interrupted || (c.deterministic ? c.fuelLeft < 0 : performance.now() > c.deadlineMs);
  }

  /** Drain promise jobs until the call's answer settles or the deadline passes. */
  private drainPending(inst: Instance, hook: string): string | CallResult<never> {
    for (let ran = 0; ran < PENDING_JOBS_MAX; ran += JOBS_PER_CHECK) {
      // The deadline is final: a plugin that catches the interrupt inside an async function
      // (it becomes an ordinary rejection there) gets no more time.
      if (this.pastDeadline()) return this.failure("timeout", `hook ${hook} exceeded its deadline of ${this.opts.limits.timeout_ms} ms`);
      const jobs = inst.runtime.executePendingJobs(JOBS_PER_CHECK);
      if (jobs.error) return this.escaped(inst, jobs.error, `hook ${hook}`);
      const r = inst.context.callFunction(inst.fnSettled, inst.context.undefined);
      if (r.error) return this.escaped(inst, r.error, `hook ${hook}`);
      const wire = inst.context.getString(r.value);
      r.value.dispose();
      if (wire !== "P") return wire;
      if (!inst.runtime.hasPendingJob()) break;
    }
    return this.failure("timeout", `hook ${hook} returned a promise that never settled (plugins have no I/O to wait for)`);
  }

  /**
   * Call an exported hook with JSON data. Never throws for plugin failures.
   * `ctx` is passed as the hook's second argument and cached guest-side while unchanged.
   */
  async call<T = unknown>(hook: string, input: unknown, ctxJson = "{}"): Promise<CallResult<T>> {
    const got = await this.ensureInstance();
    if ("ok" in got) return got;
    return this.callSync<T>(got, hook, input, ctxJson);
  }

  /** Synchronous call on a live instance (used by hot paths that already hold one). */
  callSync<T>(inst: Instance | undefined, hook: string, input: unknown, ctxJson: string): CallResult<T> {
    if (!inst) return this.failure("quarantined", this.quarantineText());
    const r = this.callInner<T>(inst, hook, input, ctxJson);
    // A call that timed out and left promise jobs queued would hand them to the next call's
    // drain (a loop that catches every interrupt): drop the instance instead.
    if (!r.ok && r.reason === "timeout" && this.inst?.runtime.hasPendingJob()) this.recycle();
    this.recycleIfBloated();
    return r;
  }

  /**
   * Wasm memory never shrinks: an instance whose heap outgrew its cap is dropped and
   * rebuilt on the next call, which gives the memory back.
   */
  private recycleIfBloated(): void {
    const inst = this.inst;
    if (inst && wasmHeapBytes(inst.raw) > inst.heapCapBytes) this.recycle();
  }

  /** Drop the live instance; the next call builds a fresh one from the cached module. */
  private recycle(): void {
    if (this.inst) Sandbox.teardown(this.inst);
    this.inst = undefined;
    this.stats.recycles++;
  }

  private callInner<T>(inst: Instance, hook: string, input: unknown, ctxJson: string): CallResult<T> {
    this.stats.calls++;
    const inputJson = JSON.stringify(input) ?? "null";
    if (inputJson.length + ctxJson.length > this.opts.limits.input_bytes) {
      return this.failure("input-limit", `input of ${inputJson.length + ctxJson.length} bytes exceeds ${this.opts.limits.input_bytes}`);
    }
    const { context } = inst;
    try {
      armClock(this.clock, this.opts.limits.timeout_ms);
      const hArgs = [context.newString(hook), context.newString(inputJson), context.newString(ctxJson)];
      const r = context.callFunction(inst.fnCall, context.undefined, ...hArgs);
      for (const h of hArgs) h.dispose();
      inst.sentCtxJson = ctxJson; // the guest's cached context is this one now
      if (r.error) return this.escaped(inst, r.error, `hook ${hook}`);
      let wire = context.getString(r.value);
      r.value.dispose();
      if (this.clock.interrupted) return this.escapedTimeout(`hook ${hook}`);
      if (wire === "P") {
        const drained = this.drainPending(inst, hook);
        if (typeof drained !== "string") return { ...drained, logs: this.takeLogs(inst) };
        if (this.clock.interrupted) return this.escapedTimeout(`hook ${hook}`);
        wire = drained;
      }
      const logs = this.takeLogs(inst);
      return this.decodeWire<T>(wire, logs);
    } catch (e) {
      if (e instanceof PolicyError) throw e;
      if (isWasmCrash(e)) return this.crashed(e);
      return this.failure("invalid-output", `the answer could not be read: ${String((e as Error)?.message ?? e).slice(0, 300)}`);
    }
  }

  /**
   * Hot path: hand `n` records of `input` to the registered guest adapter. An adapter
   * answers either a Float64Array, copied into `out` (exactly `out.length` values
   * expected), or data through the strict serializer, returned as the result's value.
   */
  async batch<T = null>(adapter: string, input: Float64Array, n: number, ctxJson: string, out: Float64Array | null): Promise<CallResult<T | null>> {
    const got = await this.ensureInstance();
    if ("ok" in got) return got;
    return this.batchSync<T>(got, adapter, input, n, ctxJson, out);
  }

  /** Build the instance if a crash or recycle dropped it; false when quarantined. */
  async ready(): Promise<boolean> {
    const got = await this.ensureInstance();
    return !("ok" in got);
  }

  /** The live instance, or undefined when it must be rebuilt first (see batch / call). */
  get live(): Instance | undefined {
    return this.stats.quarantined ? undefined : this.inst;
  }

  batchSync<T = null>(inst: Instance, adapter: string, input: Float64Array, n: number, ctxJson: string, out: Float64Array | null): CallResult<T | null> {
    const r = this.batchInner<T>(inst, adapter, input, n, ctxJson, out);
    this.recycleIfBloated();
    return r;
  }

  private batchInner<T>(inst: Instance, adapter: string, input: Float64Array, n: number, ctxJson: string, out: Float64Array | null): CallResult<T | null> {
    this.stats.calls++;
    const bytes = input.byteLength + ctxJson.length;
    if (bytes > this.opts.limits.input_bytes) {
      return this.failure("input-limit", `batch input of ${bytes} bytes exceeds ${this.opts.limits.input_bytes}`);
    }
    const { context } = inst;
    const ch = inst.channel;
    const adapterIndex = ch?.adapters.get(adapter);
    if (ch && adapterIndex !== undefined && input.length + CHANNEL_HEADER <= CHANNEL_IN_NUMBERS && (out === null || out.length + BATCH_TRAILER <= CHANNEL_OUT_NUMBERS)) {
      return this.batchChannel<T>(inst, ch, adapterIndex, adapter, input, n, ctxJson, out);
    }
    try {
      armClock(this.clock, this.opts.limits.timeout_ms);
      // A whole buffer crosses as is; a view is copied once (newArrayBuffer copies into Wasm).
      const bytes =
        input.byteOffset === 0 && input.byteLength === input.buffer.byteLength
          ? (input.buffer as ArrayBuffer)
          : new Uint8Array(input.buffer, input.byteOffset, input.byteLength).slice().buffer;
      const hBuf = context.newArrayBuffer(bytes);
      const hN = context.newNumber(n);
      // The context crosses only when it changed since this instance last saw it.
      const hCtx = ctxJson === inst.sentCtxJson ? undefined : context.newString(ctxJson);
      const r = context.callFunction(inst.fnBatch, context.undefined, this.adapterHandle(inst, adapter), hBuf, hN, hCtx ?? context.undefined);
      hBuf.dispose();
      hN.dispose();
      hCtx?.dispose();
      inst.sentCtxJson = ctxJson;
      if (r.error) return this.escaped(inst, r.error, `adapter ${adapter}`);
      if (context.typeof(r.value) === "string") {
        const wire = context.getString(r.value);
        r.value.dispose();
        return this.decodeWire<T>(wire, this.takeLogs(inst));
      }
      if (out === null || context.typeof(r.value) !== "object") {
        r.value.dispose();
        return this.failure("invalid-output", `adapter ${adapter} returned no data`);
      }
      const lifetime = context.getArrayBuffer(r.value);
      r.value.dispose();
      const got = lifetime.value;
      const expected = out.byteLength + BATCH_TRAILER * 8;
      if (got.byteLength !== expected) {
        lifetime.dispose();
        return this.failure("invalid-output", `adapter ${adapter} returned ${got.byteLength} bytes, expected ${expected}`);
      }
      new Uint8Array(out.buffer, out.byteOffset, out.byteLength).set(got.subarray(0, out.byteLength));
      const pendingLogs = new DataView(got.buffer, got.byteOffset + out.byteLength, 8).getFloat64(0, true);
      lifetime.dispose();
      return { ok: true, value: null, logs: pendingLogs > 0 ? this.takeLogs(inst) : [] };
    } catch (e) {
      if (e instanceof PolicyError) throw e;
      if (isWasmCrash(e)) return this.crashed(e);
      return this.failure("invalid-output", `the answer could not be read: ${String((e as Error)?.message ?? e).slice(0, 300)}`);
    }
  }

  /** batchInner through the shared-memory channel: same answers, no per-call handle. */
  private batchChannel<T>(inst: Instance, ch: Channel, adapterIndex: number, adapter: string, input: Float64Array, n: number, ctxJson: string, out: Float64Array | null): CallResult<T | null> {
    const { context } = inst;
    try {
      armClock(this.clock, this.opts.limits.timeout_ms);
      if (ctxJson !== inst.sentCtxJson) {
        const h = context.newString(ctxJson);
        const r = context.callFunction(inst.fnSetCtx!, context.undefined, h);
        h.dispose();
        if (r.error) return this.escaped(inst, r.error, "the policy context");
        r.value.dispose();
        inst.sentCtxJson = ctxJson;
      }
      const view = ch.input();
      view[0] = adapterIndex;
      view[1] = n;
      const len = input.length;
      if (len <= ANSWER_COPY_LOOP_MAX) for (let i = 0; i < len; i++) view[CHANNEL_HEADER + i] = input[i]!;
      else view.set(input, CHANNEL_HEADER);
      // A slot the adapter does not write reads NaN (the channel form's contract, prelude).
      const blank = ch.output();
      const fill = out === null ? BATCH_TRAILER : out.length + BATCH_TRAILER;
      if (fill <= ANSWER_COPY_LOOP_MAX) for (let i = 0; i < fill; i++) blank[i] = Number.NaN;
      else blank.fill(Number.NaN, 0, fill);
      const status = ch.run();
      if (Number.isNaN(status)) {
        const err = ch.takeError();
        if (err !== undefined) return this.escaped(inst, err, `adapter ${adapter}`);
        return this.failure("invalid-output", `adapter ${adapter} answered no length`);
      }
      if (status === -1) {
        const w = context.callFunction(inst.fnTakeWire, context.undefined);
        if (w.error) return this.escaped(inst, w.error, `adapter ${adapter}`);
        const wire = context.getString(w.value);
        w.value.dispose();
        return this.decodeWire<T>(wire, this.takeLogs(inst));
      }
      if (out === null) return this.failure("invalid-output", `adapter ${adapter} returned no data`);
      const expected = out.length + BATCH_TRAILER;
      if (status !== expected) return this.failure("invalid-output", `adapter ${adapter} returned ${status * 8} bytes, expected ${expected * 8}`);
      // The view again: the run may have grown the linear memory (a new buffer). Answers are
      // mostly a few numbers: a loop costs less than a view to copy from.
      const answer = ch.output();
      const k = out.length;
      if (k <= ANSWER_COPY_LOOP_MAX) for (let i = 0; i < k; i++) out[i] = answer[i]!;
      else out.set(answer.subarray(0, k));
      return answer[k]! > 0 ? { ok: true, value: null, logs: this.takeLogs(inst) } : (BATCH_OK as CallResult<T | null>);
    } catch (e) {
      if (e instanceof PolicyError) throw e;
      if (isWasmCrash(e)) return this.crashed(e);
      return this.failure("invalid-output", `the answer could not be read: ${String((e as Error)?.message ?? e).slice(0, 300)}`);
    }
  }

  /**
   * The failure an adapter left with tools.stash() while its call went on (observe events
   * riding with a fault batch).
   */
  takeStashedFailure(inst: Instance): { reason: PolicyFailureReason; message: string } {
    const { context } = inst;
    try {
      armClock(this.clock, this.opts.limits.timeout_ms);
      const w = context.callFunction(inst.fnTakeWire, context.undefined);
      if (w.error) {
        const r = this.escaped(inst, w.error, "the stashed failure");
        return r.ok ? { reason: "exception", message: "unreadable" } : { reason: r.reason, message: r.message };
      }
      const wire = context.typeof(w.value) === "string" ? context.getString(w.value) : "";
      w.value.dispose();
      const r = this.decodeWire<unknown>(wire, []);
      return r.ok ? { reason: "invalid-output", message: "the adapter reported a failure it did not describe" } : { reason: r.reason, message: r.message };
    } catch (e) {
      if (e instanceof PolicyError) throw e;
      if (isWasmCrash(e)) {
        const r = this.crashed(e);
        return r.ok ? { reason: "exception", message: "crashed" } : { reason: r.reason, message: r.message };
      }
      return { reason: "exception", message: String((e as Error)?.message ?? e).slice(0, 300) };
    }
  }

  /** Memory the QuickJS runtime reports in use, bytes (for benchmarks and tests). */
  memoryUsedBytes(): number {
    const inst = this.inst;
    if (!inst) return 0;
    try {
      const h = inst.runtime.computeMemoryUsage();
      const usage = inst.context.dump(h) as { memory_used_size?: number };
      h.dispose();
      return usage.memory_used_size ?? 0;
    } catch {
      return 0;
    }
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    if (this.inst) Sandbox.teardown(this.inst);
    this.inst = undefined;
  }
}
