/**
 * A loaded policy: its spec, its sandbox, its hook contracts, its decision log.
 *
 * `invoke` never lets a plugin failure escape as an exception unless the policy is
 * fail-closed: every answer is validated against the hook's contract, and when the plugin
 * fails (any reason of PolicyError) the kind's built-in fallback decides and the decision
 * log says why.
 */
import { join } from "node:path";
import { ConfigError, ConfigErrors, type PolicyFailureReason, PolicyError, UsageError } from "../errors.ts";
import { positionOf } from "../config.ts";
import { ERROR_TEXT_BYTES_MAX } from "../sandbox/limits.ts";
import { type CallResult, Sandbox, type SandboxOptions } from "../sandbox/sandbox.ts";
import {
  DECISION_STRIDE,
  F,
  LOC_DENY,
  LOC_SYSMEM,
  type EvictionRequest,
  FAULT_STRIDE,
  MIGRATION_BOUNDS,
  type MigrationDecider,
  type ObservedEvent,
  type ObservedKind,
  type ObserveMasks,
  observeWanted,
  parseObserveKinds,
  OBSERVED_KINDS,
  OBSERVE_STRIDE,
  type PolicyContext,
  type PrefetchRequest,
  checkFaultDecision,
  emptyFault,
  kernelMigrationWindow,
  kernelRestoreLocation,
  lruVictim,
  readFault,
  writeFault,
  type Fault,
} from "./contracts/migration.ts";
import { CHANNEL_HEADER, CHANNEL_IN_NUMBERS } from "../sandbox/channel.ts";
import { DecisionLog, type DecisionRecord, batchDigestOf, digestOf } from "./decision-log.ts";
import { inputProblem } from "./inputs.ts";
import { type HookSpec, KINDS, type KindSpec, type PrefetchInput, hookOf } from "./kinds.ts";
import { type LoadOptions, type PolicySpec, readPolicySpec, shippedPluginsDir } from "./loader.ts";
import {
  FAULT_ANSWER_EXTRA,
  FAULT_TRAILER,
  faultsInput,
  faultsInputLength,
  HOOK_MIGRATION_WINDOW,
  HOOK_RESTORE_LOCATION,
  MIGRATION_ADAPTER_SOURCE,
  MIGRATION_FAULTS_ADAPTER,
  MIGRATION_OBSERVE_ADAPTER,
  MIGRATION_PREFETCH_ADAPTER,
  OBSERVE_TRAILER,
} from "./migration-adapter.ts";
import { type ParamDecl, type ParamValues, parseParamDecls, resolveParams } from "./params.ts";

export interface Decision<T = unknown> {
  hook: string;
  value: T;
  /** plugin: the plugin answered; builtin: it does not export the hook; fallback: it failed. */
  by: "plugin" | "builtin" | "fallback";
  failure?: { reason: PolicyFailureReason; message: string };
  logs: string[];
}

export interface PolicyLoadOptions extends LoadOptions {
  /** Receives every decision record (the agent's JSONL log). */
  logSink?: (r: DecisionRecord) => void;
  /** Clock of the decision log; the simulator passes one that returns 0. */
  logClock?: () => number;
  /**
   * Which hot-path batches (fault batches, observe deliveries) the decision log records:
   * `all` (default), or only `failures` (the simulator: millions of batches, where hashing
   * each input costs a tenth of the run and only the fallbacks are reported). Single calls
   * are always recorded.
   */
  logBatches?: "all" | "failures";
  /** Seed of the plugin's Math.random, over the file's (the simulator passes its run seed). */
  seed?: number;
  /** Sandbox overrides for tests (variant, wrapModule). */
  sandbox?: Partial<Pick<SandboxOptions, "variant" | "wrapModule" | "deterministic">>;
}

/** Contract-check messages quote plugin output (keys, values): clip them like sandbox errors. */
function clipText(text: string): string {
  return text.length > ERROR_TEXT_BYTES_MAX ? `${text.slice(0, ERROR_TEXT_BYTES_MAX)}…` : text;
}

/** The binary input of migration.prefetch: [nowNs, n, records..., decisions...]. */
function prefetchInput(nowNs: number, faults: Float64Array, n: number, decisions: Float64Array): Float64Array {
  const input = new Float64Array(2 + n * (FAULT_STRIDE + DECISION_STRIDE));
  input[0] = nowNs;
  input[1] = n;
  input.set(faults.subarray(0, n * FAULT_STRIDE), 2);
  input.set(decisions.subarray(0, n * DECISION_STRIDE), 2 + n * FAULT_STRIDE);
  return input;
}

let kernelLibrarySource: string | undefined;

/**
 * The shipped kernel-default plugin, given to every migration plugin as the frozen global
 * `kernel` (kernel.restoreLocation, kernel.migrationWindow, kernel.bestRestoreLocation...),
 * so plugins that refine the kernel's behaviour call its rules instead of copying them.
 */
async function kernelLibrary() {
  const filename = join(shippedPluginsDir(), "migration", "kernel-default.js");
  kernelLibrarySource ??= await Bun.file(filename).text();
  return { global: "kernel", source: kernelLibrarySource, filename };
}

/** Hooks of a kind a plugin provides, directly or in batch form (`<hook>Batch`). */
function exportedHooks(kind: KindSpec, functions: string[]): Set<string> {
  const names = new Set(functions);
  const batchForm = (h: string) => (kind.hooks[h]!.binary === "faults" || kind.hooks[h]!.binary === "events") && names.has(`${h}Batch`);
  return new Set(Object.keys(kind.hooks).filter((h) => names.has(h) || batchForm(h)));
}

/** The observe adapter's answer: nothing but the batch trailer. */
const NO_ANSWER = new Float64Array(0);

/** Code of each observed kind on the wire (its index in OBSERVED_KINDS). */
const OBSERVED_KIND_CODE = Object.fromEntries(OBSERVED_KINDS.map((k, i) => [k, i])) as Record<ObservedKind, number>;

/** Event i of a binary observe batch (OBSERVE_FIELDS order, the kind as its code). */
function writeObserved(into: Float64Array, i: number, e: ObservedEvent): void {
  const o = i * OBSERVE_STRIDE;
  into[o] = OBSERVED_KIND_CODE[e.kind];
  into[o + 1] = e.nowNs;
  into[o + 2] = e.gpuId;
  into[o + 3] = e.start;
  into[o + 4] = e.npages;
  into[o + 5] = e.from;
  into[o + 6] = e.to;
  into[o + 7] = e.trigger;
}

export class Policy implements Disposable {
  readonly log: DecisionLog;
  /** False: hot-path batches are recorded only when they fail (PolicyLoadOptions.logBatches). */
  readonly logBatchSuccesses: boolean;
  readonly kindSpec: KindSpec;
  /** Hooks the plugin exports. */
  readonly hooks: ReadonlySet<string>;
  /** MigrationPolicy: the events observe wants (the plugin's `observeKinds`); undefined: all. */
  readonly observeMasks: ObserveMasks | undefined;

  private constructor(
    readonly spec: PolicySpec,
    readonly sandbox: Sandbox,
    readonly paramDecls: Record<string, ParamDecl>,
    readonly params: ParamValues,
    opts: PolicyLoadOptions,
    observeMasks: ObserveMasks | undefined,
  ) {
    this.kindSpec = KINDS[spec.kind];
    this.hooks = exportedHooks(this.kindSpec, sandbox.exports.functions);
    this.observeMasks = observeMasks;
    this.log = new DecisionLog(opts.logSink, opts.logClock);
    this.logBatchSuccesses = opts.logBatches !== "failures";
  }

  get name(): string {
    return this.spec.name;
  }

  /**
   * Load a policy file and its plugin.
   * @throws ConfigErrors (file, schema, plugin path, params) or PolicyError reason `load`
   *   (the plugin does not evaluate, exports no hook of its kind, declares bad params).
   */
  static async load(file: string, opts: PolicyLoadOptions = {}): Promise<Policy> {
    const spec = await readPolicySpec(file, opts);
    return Policy.fromSpec(spec, opts);
  }

  static async fromSpec(spec: PolicySpec, opts: PolicyLoadOptions = {}): Promise<Policy> {
    const kind = KINDS[spec.kind];
    const sandbox = await Sandbox.load({
      name: spec.name,
      source: spec.source,
      filename: spec.pluginPath,
      limits: spec.limits,
      seed: opts.seed ?? spec.seed,
      adapters: spec.kind === "MigrationPolicy" ? MIGRATION_ADAPTER_SOURCE : undefined,
      libraries: spec.kind === "MigrationPolicy" ? [await kernelLibrary()] : [],
      ...opts.sandbox,
    });
    try {
      if (exportedHooks(kind, sandbox.exports.functions).size === 0) {
        throw new PolicyError(spec.name, "load", "load", `${spec.pluginPath} exports none of the ${spec.kind} hooks (${kind.anyOf.join(", ")})`);
      }
      const { decls, errors: declErrors } = parseParamDecls(sandbox.exports.data.params);
      if (declErrors.length) throw new PolicyError(spec.name, "load", "load", `${spec.pluginPath}: ${declErrors.join("; ")}`);
      let observeMasks: ObserveMasks | undefined;
      if (spec.kind === "MigrationPolicy") {
        const ok = parseObserveKinds(sandbox.exports.data.observeKinds);
        if ("error" in ok) throw new PolicyError(spec.name, "load", "load", `${spec.pluginPath}: ${ok.error}`);
        observeMasks = ok.masks;
      }
      const { values, errors } = resolveParams(decls, spec.params);
      if (errors.length) {
        throw new ConfigErrors(
          errors.map((e) => new ConfigError(positionOf(spec.yaml, ["spec", "params", e.name], true), `spec.params.${e.name}`, e.message)),
        );
      }
      return new Policy(spec, sandbox, decls, values, opts, observeMasks);
    } catch (e) {
      sandbox.dispose();
      throw e;
    }
  }

  /** The context a hook receives: the caller's fields plus the resolved params. */
  private contextWith(ctx: Record<string, unknown>): Record<string, unknown> {
    return { ...ctx, params: this.params };
  }

  /**
   * Run one hook. Validates the answer; on any failure the fallback decides (or, for a
   * fail-closed policy, PolicyError is thrown). `input` may be partial for hooks with a
   * `prepare` step (faults).
   * @throws UsageError when the hook does not exist or the input or context is malformed.
   */
  async invoke<T = unknown>(hook: string, input: unknown, ctx: Record<string, unknown>): Promise<Decision<T>> {
    const spec: HookSpec | undefined = hookOf(this.kindSpec, hook);
    if (!spec) {
      throw new UsageError(`${this.spec.kind} has no hook '${hook}' (hooks: ${Object.keys(this.kindSpec.hooks).join(", ")})`);
    }
    const userProblem = spec.userInputSchema && inputProblem(spec.userInputSchema, input, "input");
    if (userProblem) throw new UsageError(`hook ${hook}: ${userProblem}`);
    const prepared = spec.prepare ? spec.prepare(input) : input;
    const problem =
      (spec.inputSchema && inputProblem(spec.inputSchema, prepared, "input")) || inputProblem(this.kindSpec.ctxSchema, ctx, "ctx");
    if (problem) throw new UsageError(`hook ${hook}: ${problem}`);
    const fullCtx = this.contextWith(ctx);
    const digest = digestOf(JSON.stringify(prepared) ?? "");
    if (!this.hooks.has(hook)) {
      const value = spec.fallback(prepared, fullCtx) as T;
      this.log.add({ policy: this.name, revision: this.spec.revision, hook, inputDigest: digest, output: value, count: 1 });
      return { hook, value, by: "builtin", logs: [] };
    }
    let result: CallResult<unknown>;
    if (spec.binary === "faults") result = await this.callFaultHookOnce(hook, prepared as Fault, fullCtx);
    else if (spec.binary === "prefetch") result = await this.callPrefetchOnce(prepared as PrefetchInput, fullCtx);
    else if (spec.binary === "events") result = await this.callObserveOnce((prepared as { events: ObservedEvent[] }).events, fullCtx);
    else result = await this.sandbox.call(hook, prepared, JSON.stringify(fullCtx));
    let failure: { reason: PolicyFailureReason; message: string } | undefined;
    let value: unknown;
    if (result.ok) {
      const checked = spec.check(result.value, prepared, fullCtx);
      if (checked.ok) value = checked.value;
      else failure = { reason: "invalid-output", message: clipText(checked.message) };
    } else failure = { reason: result.reason, message: result.message };
    if (failure) {
      this.log.add({ policy: this.name, revision: this.spec.revision, hook, inputDigest: digest, output: null, fallback: failure, count: 1 });
      if (this.spec.onFailure === "fail-closed") throw new PolicyError(this.name, hook, failure.reason, failure.message);
      const fb = spec.fallback(prepared, fullCtx) as T;
      return { hook, value: fb, by: "fallback", failure, logs: result.logs };
    }
    this.log.add({ policy: this.name, revision: this.spec.revision, hook, inputDigest: digest, output: value, count: 1 });
    return { hook, value: value as T, by: "plugin", logs: result.logs };
  }

  /**
   * restoreLocation / migrationWindow for one fault, through the same adapter as the hot
   * path, running only that hook and preferring its per-fault form.
   */
  private async callFaultHookOnce(hook: string, f: Fault, ctx: Record<string, unknown>): Promise<CallResult<unknown>> {
    const record = new Float64Array(FAULT_STRIDE);
    writeFault(record, 0, f);
    const nowNs = typeof ctx.nowNs === "number" ? ctx.nowNs : 0;
    const mask = hook === "restoreLocation" ? HOOK_RESTORE_LOCATION : HOOK_MIGRATION_WINDOW;
    const input = faultsInput(new Float64Array(faultsInputLength(1)), record, 0, 1, nowNs, mask, true);
    const out = new Float64Array(DECISION_STRIDE + FAULT_ANSWER_EXTRA);
    const { nowNs: _drop, ...stable } = ctx;
    const r = await this.sandbox.batch(MIGRATION_FAULTS_ADAPTER, input, 1, JSON.stringify(stable), out);
    if (!r.ok) return r;
    if (hook === "restoreLocation") return { ok: true, value: Number.isNaN(out[0]!) ? null : out[0], logs: r.logs };
    return { ok: true, value: { start: out[1], last: out[2] }, logs: r.logs };
  }

  /** prefetch for a JSON input (eval, tests), through the binary prefetch adapter. */
  private async callPrefetchOnce(p: PrefetchInput, ctx: Record<string, unknown>): Promise<CallResult<unknown>> {
    const decisions = new Float64Array(p.decisions.length * DECISION_STRIDE);
    for (const [i, d] of p.decisions.entries()) decisions.set([d.loc, d.start, d.last], i * DECISION_STRIDE);
    const faults = new Float64Array(p.faults.length * FAULT_STRIDE);
    for (const [i, f] of p.faults.entries()) writeFault(faults, i, f);
    const { nowNs: _drop, ...stable } = ctx;
    return this.sandbox.batch<unknown>(
      MIGRATION_PREFETCH_ADAPTER,
      prefetchInput(typeof ctx.nowNs === "number" ? ctx.nowNs : 0, faults, p.faults.length, decisions),
      p.faults.length,
      JSON.stringify(stable),
      null,
    );
  }

  /** observe for a JSON input (eval, tests), through the binary observe adapter as in a run. */
  private async callObserveOnce(events: ObservedEvent[], ctx: Record<string, unknown>): Promise<CallResult<unknown>> {
    const input = new Float64Array(events.length * OBSERVE_STRIDE + OBSERVE_TRAILER);
    for (const [i, e] of events.entries()) writeObserved(input, i, e);
    input[events.length * OBSERVE_STRIDE] = typeof ctx.nowNs === "number" ? ctx.nowNs : 0;
    const { nowNs: _drop, ...stable } = ctx;
    return this.sandbox.batch<unknown>(MIGRATION_OBSERVE_ADAPTER, input, events.length, JSON.stringify(stable), NO_ANSWER);
  }

  /** This policy as the SVM model's MigrationDecider (MigrationPolicy only). */
  migrationDecider(): SandboxMigrationDecider {
    if (this.spec.kind !== "MigrationPolicy") throw new PolicyError(this.name, "load", "load", `${this.spec.kind} is not a MigrationPolicy`);
    return new SandboxMigrationDecider(this);
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  dispose(): void {
    this.sandbox.dispose();
  }
}

/**
 * A MigrationPolicy behind the SVM model's MigrationDecider interface. Faults go to the
 * sandbox in batches of at most MIGRATION_BOUNDS.fault_batch_max; a failed batch is decided
 * by the kernel's rules, an invalid single decision likewise, each counted and logged.
 *
 * The sandbox may need an asynchronous rebuild after a crash: callers `await prepare()`
 * before a batch whenever it returns a promise, which keeps runs deterministic.
 */
export class SandboxMigrationDecider implements MigrationDecider {
  readonly name: string;
  fallbacks = 0;
  private readonly fault = emptyFault();
  private ctxKey: PolicyContext["gpus"] | undefined;
  private ctxXnack = false;
  private ctxJson = "";
  /** Input arrays by batch size (exact length: the sandbox copies the whole buffer). */
  private inputs: Float64Array[] = [];
  /** Answer arrays by batch size (exact length: the sandbox checks it). */
  private outs: Float64Array[] = [];

  private readonly hasRestoreLocation: boolean;
  /** The fault hooks a batch runs, as its decision-log records name them ("restoreLocation+migrationWindow"). */
  private readonly faultHooks: string;
  private readonly hasMigrationWindow: boolean;
  /** The model builds observe() batches only for plugins that export observe. */
  readonly observes: boolean;
  /** The events the plugin selected with `observeKinds` (undefined: all). */
  readonly observeMasks: ObserveMasks | undefined;
  /** Events held for the next delivery (OBSERVE_STRIDE numbers each). */
  private readonly held = new Float64Array(MIGRATION_BOUNDS.observe_events_max * OBSERVE_STRIDE);
  private heldCount = 0;
  /** Input of a batch with events riding along (sized for the largest). */
  private ridingInput: Float64Array | undefined;
  private heldCtx: PolicyContext | undefined;

  constructor(readonly policy: Policy) {
    this.name = policy.name;
    this.observes = policy.hooks.has("observe");
    this.observeMasks = policy.observeMasks;
    this.hasRestoreLocation = policy.hooks.has("restoreLocation");
    this.faultHooks = ["restoreLocation", "migrationWindow"].filter((h) => policy.hooks.has(h)).join("+") || "restoreLocation";
    this.hasMigrationWindow = policy.hooks.has("migrationWindow");
  }

  /** Resolves when the sandbox is ready for a synchronous batch; undefined when it already is. */
  prepare(): Promise<void> | undefined {
    if (this.policy.sandbox.live || this.policy.sandbox.stats.quarantined) return undefined;
    return this.policy.sandbox.ready().then(() => undefined);
  }

  private idsKey: PolicyContext["gpus"] | undefined;
  private ids = new Set<number>();

  /** gpu_ids of the context, as a set rebuilt only when the GPU list changes. */
  private gpuIdSet(ctx: PolicyContext): Set<number> {
    if (ctx.gpus !== this.idsKey) {
      this.idsKey = ctx.gpus;
      this.ids = new Set(ctx.gpus.map((g) => g.id));
    }
    return this.ids;
  }

  private stableCtxJson(ctx: PolicyContext): string {
    if (ctx.gpus !== this.ctxKey || ctx.xnack !== this.ctxXnack) {
      this.ctxKey = ctx.gpus;
      this.ctxXnack = ctx.xnack;
      this.ctxJson = JSON.stringify({ gpus: ctx.gpus, xnack: ctx.xnack, params: this.policy.params });
    }
    return this.ctxJson;
  }

  private failBatch(faults: Float64Array, from: number, n: number, ctx: PolicyContext, out: Float64Array, reason: PolicyFailureReason, message: string): void {
    const p = this.policy;
    p.log.add({
      policy: p.name,
      revision: p.spec.revision,
      hook: this.faultHooks,
      inputDigest: batchDigestOf(faults.subarray(from * FAULT_STRIDE, (from + n) * FAULT_STRIDE)),
      output: null,
      fallback: { reason, message },
      count: n,
    });
    if (p.spec.onFailure === "fail-closed") throw new PolicyError(p.name, this.faultHooks, reason, message);
    for (let i = from; i < from + n; i++) this.kernelDecide(faults, i, ctx, out);
    this.fallbacks += n;
  }

  private kernelDecide(faults: Float64Array, i: number, ctx: PolicyContext, out: Float64Array): void {
    const f = readFault(faults, i, this.fault);
    const w = kernelMigrationWindow(f);
    out[i * DECISION_STRIDE] = kernelRestoreLocation(f, ctx);
    out[i * DECISION_STRIDE + 1] = w.start;
    out[i * DECISION_STRIDE + 2] = w.last;
  }

  decideFaults(faults: Float64Array, n: number, ctx: PolicyContext, out: Float64Array): void {
    const p = this.policy;
    const step = MIGRATION_BOUNDS.fault_batch_max;
    for (let from = 0; from < n; from += step) {
      const m = Math.min(step, n - from);
      const inst = p.sandbox.live;
      if (!inst) {
        this.failBatch(faults, from, m, ctx, out, p.sandbox.stats.quarantined ? "quarantined" : "exception", "sandbox not ready (call prepare() first)");
        continue;
      }
      let got = this.outs[m];
      if (got === undefined) {
        got = new Float64Array(m * DECISION_STRIDE + FAULT_ANSWER_EXTRA);
        this.outs[m] = got;
      }
      // Held events ride with the first batch (one crossing), unless that input would be
      // too large for one call.
      let riding = 0;
      if (from === 0 && this.heldCount > 0) {
        if (faultsInputLength(m, this.heldCount) + CHANNEL_HEADER <= CHANNEL_IN_NUMBERS) {
          riding = this.heldCount;
          this.heldCount = 0;
        } else this.deliver(ctx);
      }
      let into: Float64Array;
      if (riding > 0) {
        this.ridingInput ??= new Float64Array(faultsInputLength(MIGRATION_BOUNDS.fault_batch_max, MIGRATION_BOUNDS.observe_events_max));
        into = this.ridingInput;
      } else {
        let exact = this.inputs[m];
        if (exact === undefined) {
          exact = new Float64Array(faultsInputLength(m));
          this.inputs[m] = exact;
        }
        into = exact;
      }
      const mask = HOOK_RESTORE_LOCATION | HOOK_MIGRATION_WINDOW;
      const input = faultsInput(into, faults, from, m, ctx.nowNs, mask, false, this.held, riding, ctx.nowNs);
      const r = p.sandbox.batchSync(inst, MIGRATION_FAULTS_ADAPTER, input, m, this.stableCtxJson(ctx), got);
      if (riding > 0) {
        // The adapter catches a failing observe and reports it in the answer's extra slot.
        // When the whole batch failed, its own record (under the fault hooks) says why, once.
        const failure = r.ok && got[m * DECISION_STRIDE] === 1 ? p.sandbox.takeStashedFailure(inst) : undefined;
        if (failure !== undefined || p.logBatchSuccesses) this.observed(riding, input.subarray(m * FAULT_STRIDE + FAULT_TRAILER), failure);
      }
      if (!r.ok) {
        this.failBatch(faults, from, m, ctx, out, r.reason, r.message);
        continue;
      }
      let invalid = 0;
      let firstInvalid = "";
      const gpuIds = this.gpuIdSet(ctx);
      for (let j = 0; j < m; j++) {
        const i = from + j;
        const r = i * FAULT_STRIDE;
        const addr = faults[r + F.addr]!;
        let loc = got[j * DECISION_STRIDE]!;
        let ws = got[j * DECISION_STRIDE + 1]!;
        let wl = got[j * DECISION_STRIDE + 2]!;
        // NaN: the plugin does not provide that hook (the kernel's rule decides), or its
        // batch form left the slot unwritten (invalid).
        if (Number.isNaN(loc) || Number.isNaN(ws) || Number.isNaN(wl)) {
          const f = readFault(faults, i, this.fault);
          if (Number.isNaN(loc) && !this.hasRestoreLocation) loc = kernelRestoreLocation(f, ctx);
          if ((Number.isNaN(ws) || Number.isNaN(wl)) && !this.hasMigrationWindow) {
            const w = kernelMigrationWindow(f);
            ws = w.start;
            wl = w.last;
          }
        }
        // Fast check of the common case on raw numbers; the full check names the problem.
        const locOk = loc === LOC_DENY || loc === LOC_SYSMEM || gpuIds.has(loc);
        const winOk =
          Number.isInteger(ws) && Number.isInteger(wl) && ws <= addr && wl >= addr && ws >= faults[r + F.rangeStart]! && wl <= faults[r + F.rangeLast]!;
        if (!locOk || !winOk) {
          const f = readFault(faults, i, this.fault);
          if (!firstInvalid) firstInvalid = clipText(`fault ${j} (page ${addr}): ${checkFaultDecision(f, loc, ws, wl, ctx)}`);
          invalid++;
          if (p.spec.onFailure === "fail-closed") throw new PolicyError(p.name, this.faultHooks, "invalid-output", firstInvalid);
          this.kernelDecide(faults, i, ctx, out);
          continue;
        }
        out[i * DECISION_STRIDE] = loc;
        out[i * DECISION_STRIDE + 1] = ws;
        out[i * DECISION_STRIDE + 2] = wl;
      }
      this.fallbacks += invalid;
      if (invalid === 0 && !p.logBatchSuccesses) continue;
      p.log.add({
        policy: p.name,
        revision: p.spec.revision,
        hook: this.faultHooks,
        inputDigest: batchDigestOf(input),
        output: { faults: m, invalid },
        fallback: invalid ? { reason: "invalid-output", message: firstInvalid } : undefined,
        count: m,
      });
    }
  }

  /** A cold hook through the sandbox; fallback on failure. Synchronous callers get the fallback while the sandbox rebuilds. */
  private coldSync<T>(hook: string, input: unknown, ctx: PolicyContext, fallback: () => T): T {
    const p = this.policy;
    if (!p.hooks.has(hook)) return fallback();
    const spec = p.kindSpec.hooks[hook]!;
    const fullCtx = { gpus: ctx.gpus, xnack: ctx.xnack, nowNs: ctx.nowNs, params: p.params };
    const inst = p.sandbox.live;
    let failure: { reason: PolicyFailureReason; message: string } | undefined;
    if (!inst) failure = { reason: p.sandbox.stats.quarantined ? "quarantined" : "exception", message: "sandbox not ready" };
    else {
      const r = p.sandbox.callSync<unknown>(inst, hook, input, JSON.stringify(fullCtx));
      if (r.ok) {
        const c = spec.check(r.value, input, fullCtx);
        if (c.ok) return c.value as T;
        failure = { reason: "invalid-output", message: clipText(c.message) };
      } else failure = { reason: r.reason, message: r.message };
    }
    p.log.add({ policy: p.name, revision: p.spec.revision, hook, inputDigest: digestOf(JSON.stringify(input) ?? ""), output: null, fallback: failure, count: 1 });
    if (p.spec.onFailure === "fail-closed") throw new PolicyError(p.name, hook, failure.reason, failure.message);
    this.fallbacks++;
    return fallback();
  }

  prefetch(faults: Float64Array, n: number, decisions: Float64Array, ctx: PolicyContext): PrefetchRequest[] {
    if (this.heldCount > 0) this.deliver(ctx);
    const p = this.policy;
    if (!p.hooks.has("prefetch") || n === 0) return [];
    const spec = p.kindSpec.hooks.prefetch!;
    const m = Math.min(n, MIGRATION_BOUNDS.fault_batch_max);
    const input = prefetchInput(ctx.nowNs, faults, m, decisions);
    const inst = p.sandbox.live;
    let failure: { reason: PolicyFailureReason; message: string };
    if (!inst) failure = { reason: p.sandbox.stats.quarantined ? "quarantined" : "exception", message: "sandbox not ready" };
    else {
      const r = p.sandbox.batchSync<unknown>(inst, MIGRATION_PREFETCH_ADAPTER, input, m, this.stableCtxJson(ctx), null);
      if (r.ok) {
        const c = spec.check(r.value, null, { gpus: ctx.gpus });
        if (c.ok) return c.value as PrefetchRequest[];
        failure = { reason: "invalid-output", message: clipText(c.message) };
      } else failure = { reason: r.reason, message: r.message };
    }
    p.log.add({ policy: p.name, revision: p.spec.revision, hook: "prefetch", inputDigest: batchDigestOf(input), output: null, fallback: failure, count: 1 });
    if (p.spec.onFailure === "fail-closed") throw new PolicyError(p.name, "prefetch", failure.reason, failure.message);
    this.fallbacks++;
    return [];
  }

  evictionVictim(req: EvictionRequest, ctx: PolicyContext): number {
    if (this.heldCount > 0) this.deliver(ctx);
    return this.coldSync<number>("evictionVictim", req, ctx, () => lruVictim(req));
  }

  /**
   * Events are held (binary, in order) and handed to the plugin in one call before its next
   * decision of any kind, or when observe_events_max are held, or at flush(): the plugin sees
   * every event before any decision that follows it, as if delivered at once, at a fraction
   * of the boundary crossings (a simulated fault otherwise costs one observe call too).
   */
  observe(events: ObservedEvent[], ctx: PolicyContext): void {
    if (!this.observes) return;
    const masks = this.observeMasks;
    for (const e of events) {
      if (!observeWanted(masks, e.kind, e.trigger)) continue;
      if (this.heldCount === MIGRATION_BOUNDS.observe_events_max) this.deliver(ctx);
      writeObserved(this.held, this.heldCount++, e);
    }
    this.heldCtx = ctx;
  }

  flush(): void {
    if (this.heldCount > 0 && this.heldCtx !== undefined) this.deliver(this.heldCtx);
  }

  /** Hand the held events to the plugin's observe (one `migration.observe` batch). */
  private deliver(ctx: PolicyContext): void {
    const n = this.heldCount;
    if (n === 0) return;
    this.heldCount = 0;
    const p = this.policy;
    const input = new Float64Array(n * OBSERVE_STRIDE + OBSERVE_TRAILER);
    input.set(this.held.subarray(0, n * OBSERVE_STRIDE));
    input[n * OBSERVE_STRIDE] = ctx.nowNs;
    const inst = p.sandbox.live;
    let failure: { reason: PolicyFailureReason; message: string } | undefined;
    if (!inst) failure = { reason: p.sandbox.stats.quarantined ? "quarantined" : "exception", message: "sandbox not ready" };
    else {
      const r = p.sandbox.batchSync<unknown>(inst, MIGRATION_OBSERVE_ADAPTER, input, n, this.stableCtxJson(ctx), NO_ANSWER);
      if (!r.ok) failure = { reason: r.reason, message: r.message };
    }
    this.observed(n, input, failure);
  }

  /**
   * Log one delivery of n events; a failure is recorded (it decides nothing, so it is no
   * fallback) or fails closed.
   */
  private observed(n: number, input: Float64Array, failure: { reason: PolicyFailureReason; message: string } | undefined): void {
    const p = this.policy;
    if (failure === undefined && !p.logBatchSuccesses) return;
    p.log.add({ policy: p.name, revision: p.spec.revision, hook: "observe", inputDigest: batchDigestOf(input), output: null, fallback: failure, count: n });
    if (failure === undefined) return;
    if (p.spec.onFailure === "fail-closed") throw new PolicyError(p.name, "observe", failure.reason, failure.message);
  }
}
