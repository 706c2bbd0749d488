/**
 * The advisor of `svmrt agent`: a MigrationPolicy fed the KFD SMI event stream (live, or the
 * emulator's) through its `observe` hook, asked for hints through its `advise` hook, served
 * on /v1/advice and logged, each hint with its evidence and the HIP call that applies it.
 *
 * ```ts
 * using advisor = new Advisor({ policy, gpus, log: console.log });
 * reader.watch((events) => advisor.feed(events), onError);
 * setInterval(() => advisor.tick(Number(process.hrtime.bigint())), 5000);
 * advisor.hints(); // [{ kind: "preferred_location", addr: "0x100000000", apply: "hipMemAdvise(...)", ... }]
 * ```
 *
 * From SMI events to observed events (the simulator's `observe` vocabulary, contracts/migration.ts):
 * - PAGE_FAULT_START and its PAGE_FAULT_END (same pid, GPU and page) make one `fault`, at the
 *   START's time, delivered when the END arrives. Its `from`/`to` follow the simulator (where
 *   the data was, where the GPU maps it from): for 'M' (migrated) the source of the first and
 *   the destination of the last PAGEFAULT_GPU migration covering the page between the two
 *   (LOC_UNDEFINED and the faulting GPU when none was seen); for 'U' (mapping update only)
 *   both LOC_UNDEFINED: nothing moved, so `from === to` exactly when the fault migrated nothing.
 * - MIGRATE_END makes a `migrate` (its fd's GPU, start, size, from, to, trigger), and also an
 *   `evict` when its trigger is TTM_EVICTION, as the simulator reports one. MIGRATE_START
 *   adds nothing; a MIGRATE_END with a non-zero error code moved nothing known and is ignored.
 * - QUEUE_EVICTION, QUEUE_RESTORE (not the rescheduled 'R' ones), UNMAP_FROM_GPU map one to
 *   one (`queue-evict` and `queue-restore` carry no range: start and npages 0).
 * - VMFAULT, THERMAL_THROTTLE, resets and process start/end have no SVM meaning: ignored.
 *
 * Order and time: events of several GPU fds arrive interleaved by read, not by time. A tick
 * sorts what it takes by time (stable) before converting, so the plugin sees each tick's
 * events in kernel order. Times are boot-time ns (bigint, beyond 2^53 after 104 days of
 * uptime): the plugin gets ns relative to the first event fed, as numbers (exact for 104
 * days of agent life, then to 2 ns; negative for an event older than that first one). The
 * plugin's "now" (ctx.nowNs, advise's nowNs) is the latest event time, advanced by the
 * caller's clock (tick's argument, any origin) while no event arrives: the emulator's
 * simulated clock and a live kernel's boot clock both work, and quiet patterns age.
 *
 * The Advisor does not own the policy: a PolicyFolder (hot reload) or the caller does. Give
 * a function to follow reloads: it is asked for the serving policy at each tick.
 */
import { PolicyError, UsageError } from "../errors.ts";
import type { SmiEvent } from "../kfd/smi-events.ts";
import { MIGRATE_TRIGGER } from "../kfd/uapi.ts";
import {
  type AdviceHint,
  LOC_SYSMEM,
  LOC_UNDEFINED,
  MIGRATION_BOUNDS,
  type ObservedEvent,
  type PolicyContext,
  type PolicyGpu,
  observeWanted,
} from "../policy/contracts/migration.ts";
import { MigrationCtx, inputProblem } from "../policy/inputs.ts";
import type { Policy, SandboxMigrationDecider } from "../policy/policy.ts";
import { PAGE_BYTES } from "../svm/constants.ts";
import { yieldToLoop } from "./loop.ts";

/** SMI events held between ticks; beyond this the oldest are dropped and counted. */
export const ADVISOR_PENDING_EVENTS_MAX = 65_536;
/** PAGE_FAULT_STARTs waiting for their END; beyond this the oldest is forgotten and counted. */
export const ADVISOR_OPEN_FAULTS_MAX = 1024;
/**
 * Hints remembered after they were last advised (so one that comes back is not logged as new
 * again); the least recently advised is forgotten beyond this.
 */
export const ADVISOR_KNOWN_HINTS_MAX = 1024;
/**
 * Events a tick converts, or hands to observe, before it yields to the event loop, events. A
 * tick of a 16-GPU host holds ~10,000 events (5 s at the emulated demo's rate): done in one
 * go it held the agent's main thread for 25-38 ms, and every scrape arriving meanwhile waited.
 * A slice of this size takes about a millisecond.
 */
export const ADVISOR_TICK_SLICE_EVENTS = 512;

/** Bits of a sort key that hold the event's position (ADVISOR_PENDING_EVENTS_MAX = 2^16). */
const SORT_INDEX_BITS = 16;
/** Widest time span a sort key holds exactly, ns: 2^(53 - SORT_INDEX_BITS), about 137 s. */
const SORT_KEY_SPAN_MAX_ns = 2 ** (53 - SORT_INDEX_BITS);

/**
 * Events sorted by time, stable (ties keep their order). Keys of time and position packed in
 * one Float64Array, sorted natively: ~10x faster than Array sort with a comparator, which
 * held the agent's main thread 4-6 ms per tick. Spans beyond SORT_KEY_SPAN_MAX_ns (ticks far
 * apart) fall back to the comparator.
 */
function sortedByTime<E extends { ns: bigint }>(events: E[]): E[] {
  if (events.length < 2) return events;
  let min = events[0]!.ns;
  let max = min;
  for (const e of events) {
    if (e.ns < min) min = e.ns;
    if (e.ns > max) max = e.ns;
  }
  if (Number(max - min) >= SORT_KEY_SPAN_MAX_ns || events.length > 2 ** SORT_INDEX_BITS) {
    return events.map((e, i) => ({ e, i })).sort((a, b) => (a.e.ns < b.e.ns ? -1 : a.e.ns > b.e.ns ? 1 : a.i - b.i)).map((x) => x.e);
  }
  const keys = new Float64Array(events.length);
  for (let i = 0; i < events.length; i++) keys[i] = Number(events[i]!.ns - min) * 2 ** SORT_INDEX_BITS + i;
  keys.sort();
  return Array.from(keys, (k) => events[k % 2 ** SORT_INDEX_BITS]!);
}


/** A GPU of the process: its KFD gpu_id; the rest defaults (index: list position, no hive). */
export type AdvisorGpu = Pick<PolicyGpu, "id"> & Partial<PolicyGpu>;

export interface AdvisorOptions {
  /** The MigrationPolicy that observes and advises (exporting `advise`), or a function giving the serving one. */
  policy: Policy | (() => Policy | undefined);
  /** The GPUs, in HIP device order (HIP_VISIBLE_DEVICES order): hint device indices follow it. */
  gpus: readonly AdvisorGpu[];
  /** Receives one line per new hint. */
  log: (line: string) => void;
  /** XNACK of the process, for the policy's context (default true). */
  xnack?: boolean;
  /** Only this process's events (default: every pid fed; hints then mix address spaces). */
  pid?: number;
  /** Pending bound, events (1..ADVISOR_PENDING_EVENTS_MAX; default the maximum). */
  pendingMax?: number;
}

/** One hint as /v1/advice serves it. Times are boot-time ns as decimal strings. */
export interface AdvisorHintJson {
  /** Stable: the same kind, range, GPU and pattern always have the same id (16 hex digits). */
  id: string;
  kind: AdviceHint["kind"];
  pattern: string;
  /** First page and pages (4 KiB). */
  start: number;
  npages: number;
  /** First byte address, hex; size in bytes. */
  addr: string;
  sizeBytes: number;
  /** KFD gpu_id; 0 = system memory. */
  gpuId: number;
  /** HIP device index (position in the GPU list), or "cpu" for system memory (hipCpuDeviceId). */
  device: number | "cpu";
  /** The call an application makes to apply it. */
  apply: string;
  evidence: { events: number; firstNs: string; lastNs: string; gpus: number[]; detail: string };
  /** The advisor's clock at the first and the latest tick that advised it. */
  firstSeenNs: string;
  lastSeenNs: string;
}

export interface AdvisorStats {
  /** SMI events given to feed(). */
  fed: number;
  /** Fed events without SVM meaning for the advisor (other pids, other kinds, MIGRATE_START, ...). */
  ignored: number;
  /** Events dropped because ADVISOR_PENDING_EVENTS_MAX (or pendingMax) were held: oldest first. */
  dropped: number;
  /** Events held now. */
  pending: number;
  /** Observed events handed to the plugin's observe. */
  delivered: number;
  /** PAGE_FAULT_STARTs forgotten without their END (ADVISOR_OPEN_FAULTS_MAX, or a repeated START). */
  faultsUnpaired: number;
  /** observe calls that failed (the decision log says why). */
  observeFailures: number;
  /** advise calls that failed: the fallback (no advice) decided. */
  adviseFailures: number;
  /** Ticks done; those without a usable policy. */
  ticks: number;
  ticksWithoutPolicy: number;
  /** Hints advised now. */
  hints: number;
}

/** SMI event kinds the advisor holds (the others are ignored at feed). */
type HeldEvent = Extract<SmiEvent, { kind: "PAGE_FAULT_START" | "PAGE_FAULT_END" | "MIGRATE_END" | "QUEUE_EVICTION" | "QUEUE_RESTORE" | "UNMAP_FROM_GPU" }>;

interface OpenFault {
  nowNs: number;
  pid: number;
  page: number;
  /** A PAGEFAULT_GPU migration covering the page was seen: its first source, last destination. */
  seen: boolean;
  from: number;
  to: number;
}

interface KnownHint {
  firstSeenNs: bigint;
  lastSeenNs: bigint;
}

const hex = (v: number | bigint): string => `0x${v.toString(16)}`;

/** True for the events the advisor holds: SVM events with a time, of `pid` when given. */
function heldEvent(e: SmiEvent, pid: number | undefined): e is HeldEvent {
  switch (e.kind) {
    case "PAGE_FAULT_START":
    case "PAGE_FAULT_END":
    case "QUEUE_EVICTION":
    case "UNMAP_FROM_GPU":
      break;
    case "MIGRATE_END":
      if (e.errorCode !== undefined && e.errorCode !== 0) return false;
      break;
    case "QUEUE_RESTORE":
      if (e.rescheduled) return false;
      break;
    default:
      return false;
  }
  return pid === undefined || e.pid === pid;
}

/** Stable id of a hint: 16 hex digits of a hash of what it says. */
function hintId(h: AdviceHint): string {
  const h64 = BigInt.asUintN(64, BigInt(Bun.hash(`${h.kind}|${h.start}|${h.npages}|${h.gpuId}|${h.pattern}`)));
  return h64.toString(16).padStart(16, "0");
}

/**
 * The HIP call that applies a hint: `device` is a HIP device index or "cpu".
 * hipMemAdviseSetPreferredLocation / SetAccessedBy reach KFD as PREFERRED_LOC and
 * ACCESS_IN_PLACE; hipMemPrefetchAsync as PREFETCH_LOC.
 */
export function adviceHipCall(kind: AdviceHint["kind"], addr: string, sizeBytes: number, device: number | "cpu"): string {
  const dev = device === "cpu" ? "hipCpuDeviceId" : String(device);
  const ptr = `(void*)${addr}`;
  switch (kind) {
    case "preferred_location":
      return `hipMemAdvise(${ptr}, ${sizeBytes}, hipMemAdviseSetPreferredLocation, ${dev})`;
    case "accessed_by":
      return `hipMemAdvise(${ptr}, ${sizeBytes}, hipMemAdviseSetAccessedBy, ${dev})`;
    case "prefetch":
      return `hipMemPrefetchAsync(${ptr}, ${sizeBytes}, ${dev}, stream)`;
  }
}

export class Advisor implements Disposable {
  private readonly policyOf: () => Policy | undefined;
  private readonly gpuList: PolicyGpu[];
  private readonly deviceOf = new Map<number, number>();
  private readonly xnack: boolean;
  private readonly pid: number | undefined;
  private readonly log: (line: string) => void;

  /** Pending events: a ring of pendingMax slots. */
  private readonly ring: (HeldEvent | undefined)[];
  private head = 0;
  private count = 0;
  private readonly open = new Map<string, OpenFault>();

  /** Boot-time ns of the first event held: time zero of the plugin's clock. */
  private baseNs: bigint | undefined;
  /** Latest event time delivered, plugin clock. */
  private latestNs: number | undefined;
  /** The plugin clock at the last tick that had events, and the caller's clock then. */
  private anchor: { eventNs: number; callerNs: number | undefined } | undefined;

  /** The policy's binary observe path, made once per policy object. */
  private observer: { policy: Policy; decider: SandboxMigrationDecider } | undefined;
  private current: AdvisorHintJson[] = [];
  private readonly known = new Map<string, KnownHint>();
  private ticking: Promise<void> = Promise.resolve();
  private closed = false;
  private readonly counts: Omit<AdvisorStats, "pending" | "hints"> = {
    fed: 0,
    ignored: 0,
    dropped: 0,
    delivered: 0,
    faultsUnpaired: 0,
    observeFailures: 0,
    adviseFailures: 0,
    ticks: 0,
    ticksWithoutPolicy: 0,
  };

  /**
   * @throws UsageError when the policy is no MigrationPolicy exporting `advise`, the GPU list
   *   is empty, malformed or repeats a gpu_id, or pendingMax is out of range.
   */
  constructor(opts: AdvisorOptions) {
    const given = opts.policy;
    if (typeof given === "function") this.policyOf = given;
    else {
      const problem = Advisor.policyProblem(given);
      if (problem !== undefined) throw new UsageError(`advisor: ${problem}`);
      this.policyOf = () => given;
    }
    if (opts.gpus.length === 0) throw new UsageError("advisor: the GPU list is empty; give the GPUs of the process (KFD gpu_ids)");
    this.gpuList = opts.gpus.map((g, i) => ({
      id: g.id,
      index: g.index ?? i,
      hiveId: g.hiveId ?? 0,
      appApu: g.appApu ?? false,
      vramBytes: g.vramBytes ?? 0,
    }));
    const bad = inputProblem(MigrationCtx, { gpus: this.gpuList, xnack: true, nowNs: 0 }, "advisor");
    if (bad) throw new UsageError(`${bad} (gpus: KFD gpu_ids 1..0xffffffff, index 0..51)`);
    for (const [i, g] of this.gpuList.entries()) {
      if (this.deviceOf.has(g.id)) throw new UsageError(`advisor: gpu_id ${hex(g.id)} is listed twice; list each GPU once`);
      this.deviceOf.set(g.id, i);
    }
    const max = opts.pendingMax ?? ADVISOR_PENDING_EVENTS_MAX;
    if (!Number.isInteger(max) || max < 1 || max > ADVISOR_PENDING_EVENTS_MAX) {
      throw new UsageError(`advisor: pendingMax must be an integer from 1 to ${ADVISOR_PENDING_EVENTS_MAX}, got ${max}`);
    }
    this.ring = new Array(max).fill(undefined);
    this.xnack = opts.xnack ?? true;
    this.pid = opts.pid;
    this.log = opts.log;
  }

  /** Why `p` cannot advise, or undefined. */
  private static policyProblem(p: Policy): string | undefined {
    if (p.spec.kind !== "MigrationPolicy") return `policy ${p.name} is a ${p.spec.kind}; the advisor needs a MigrationPolicy that exports advise`;
    if (!p.hooks.has("advise")) return `policy ${p.name} exports no advise hook; use an advisor policy (policies/advisor/advisor.yaml)`;
    return undefined;
  }

  /** The GPUs as the policy's context has them. */
  get gpus(): readonly PolicyGpu[] {
    return this.gpuList;
  }

  /**
   * Hold SMI events until the next tick. Events without SVM meaning are counted and dropped
   * here; when the pending bound is reached the oldest events are dropped and counted. After
   * dispose, does nothing.
   */
  feed(events: readonly SmiEvent[]): void {
    if (this.closed) return;
    const cap = this.ring.length;
    for (const e of events) {
      this.counts.fed++;
      if (!heldEvent(e, this.pid)) {
        this.counts.ignored++;
        continue;
      }
      this.baseNs ??= e.ns;
      if (this.count === cap) {
        this.ring[this.head] = undefined;
        this.head = (this.head + 1) % cap;
        this.count--;
        this.counts.dropped++;
      }
      this.ring[(this.head + this.count) % cap] = e;
      this.count++;
    }
  }

  /**
   * Hand the pending events to the policy's observe (time order, in batches of at most
   * MIGRATION_BOUNDS.observe_events_max), ask advise for hints, keep them, log the new ones.
   * Ticks run one at a time, in call order. A failing plugin never throws here: the failure
   * is counted and the fallback (no advice) decides.
   * @param nowNs the caller's clock, ns, any origin (e.g. process.hrtime.bigint()); only
   *   its progress between ticks counts. Omitted: the plugin's clock is the latest event's time.
   * @returns the current hints, as hints() gives them.
   */
  tick(nowNs?: number | bigint): Promise<AdvisorHintJson[]> {
    const run = this.ticking.then(() => this.tickOnce(nowNs === undefined ? undefined : Number(nowNs)));
    this.ticking = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  private async tickOnce(callerNs: number | undefined): Promise<AdvisorHintJson[]> {
    if (this.closed) return [];
    // Slices of ADVISOR_TICK_SLICE_EVENTS with yields between: events fed meanwhile wait for
    // the next tick, and a dispose meanwhile ends the tick.
    const held = this.takePending();
    const observed: ObservedEvent[] = [];
    for (let i = 0; i < held.length; i += ADVISOR_TICK_SLICE_EVENTS) {
      await yieldToLoop();
      if (this.closed) return [];
      for (const e of this.convert(held, i, Math.min(held.length, i + ADVISOR_TICK_SLICE_EVENTS))) observed.push(e);
    }
    const now = this.clockAt(callerNs, observed.length > 0);
    this.counts.ticks++;
    const policy = this.policyOf();
    if (policy === undefined || Advisor.policyProblem(policy) !== undefined) {
      this.counts.ticksWithoutPolicy++;
      this.current = [];
      return [];
    }
    const ctx: PolicyContext = { gpus: this.gpuList, xnack: this.xnack, nowNs: now };
    if (policy.hooks.has("observe")) {
      const wanted = observed.filter((e) => observeWanted(policy.observeMasks, e.kind, e.trigger));
      // Within observe_events_max (the contract's batch bound) by construction.
      const step = Math.min(ADVISOR_TICK_SLICE_EVENTS, MIGRATION_BOUNDS.observe_events_max);
      for (let i = 0; i < wanted.length; i += step) {
        await yieldToLoop();
        if (this.closed) return [];
        const events = wanted.slice(i, i + step);
        if (!(await this.observeOk(policy, events, ctx))) this.counts.observeFailures++;
        this.counts.delivered += events.length;
      }
    }
    await yieldToLoop();
    if (this.closed) return [];
    let hints: AdviceHint[] = [];
    const d = await this.invokeOk<AdviceHint[]>(policy, "advise", { nowNs: now }, { ...ctx });
    if (d === false) this.counts.adviseFailures++;
    else hints = d.value;
    if (this.closed) return [];
    this.hintsSet(hints, now);
    return this.hints();
  }

  /**
   * Deliver one batch (at most observe_events_max events) to observe through the policy's
   * binary path (SandboxMigrationDecider: one typed-array crossing, no JSON, no per-event
   * schema check; Policy.invoke's JSON path costs ~25x more on the host). That path records a
   * failure in the decision log and counts it in `log.fallbacks`, which is how it is seen
   * here (the delivery is synchronous, so nothing else adds to the count meanwhile).
   * @returns false when the plugin failed (or the policy failed closed, or was disposed).
   */
  private async observeOk(policy: Policy, events: ObservedEvent[], ctx: PolicyContext): Promise<boolean> {
    try {
      if (this.observer?.policy !== policy) this.observer = { policy, decider: policy.migrationDecider() };
      const decider = this.observer.decider;
      await decider.prepare();
      const before = policy.log.fallbacks;
      decider.observe(events, ctx);
      decider.flush();
      return policy.log.fallbacks === before;
    } catch (e) {
      if (e instanceof PolicyError) return false;
      throw e;
    }
  }

  /**
   * One hook call: the decision, or false when the plugin failed (the fallback decided, or a
   * fail-closed policy threw PolicyError, or it was disposed under us).
   */
  private async invokeOk<T>(policy: Policy, hook: string, input: unknown, ctx: Record<string, unknown>): Promise<{ value: T } | false> {
    try {
      const d = await policy.invoke<T>(hook, input, ctx);
      return d.by === "fallback" ? false : { value: d.value };
    } catch (e) {
      if (e instanceof PolicyError) return false;
      throw e;
    }
  }

  /** The pending events, oldest first, sorted by time (stable: ties keep their feed order). */
  private takePending(): HeldEvent[] {
    const cap = this.ring.length;
    const out: HeldEvent[] = new Array(this.count);
    for (let i = 0; i < this.count; i++) {
      const at = (this.head + i) % cap;
      out[i] = this.ring[at]!;
      this.ring[at] = undefined;
    }
    this.head = 0;
    this.count = 0;
    return sortedByTime(out);
  }

  /** Boot-time ns as the plugin's clock. */
  private relNs(ns: bigint): number {
    return Number(ns - (this.baseNs ?? ns));
  }

  /** The plugin's clock as boot-time ns. */
  private absNs(rel: number): bigint {
    return (this.baseNs ?? 0n) + BigInt(Math.round(rel));
  }

  /** The plugin's "now" for this tick (see the file comment). */
  private clockAt(callerNs: number | undefined, hadEvents: boolean): number {
    if (this.anchor === undefined || hadEvents) {
      this.anchor = { eventNs: this.latestNs ?? 0, callerNs };
      return this.anchor.eventNs;
    }
    if (this.anchor.callerNs === undefined || callerNs === undefined) {
      this.anchor.callerNs ??= callerNs;
      return this.anchor.eventNs;
    }
    return this.anchor.eventNs + Math.max(0, callerNs - this.anchor.callerNs);
  }

  /** SMI events [from, to) of `events` (time order) to observed events; pairs fault STARTs with their ENDs. */
  private convert(events: readonly HeldEvent[], from: number, to: number): ObservedEvent[] {
    const out: ObservedEvent[] = [];
    for (let i = from; i < to; i++) {
      const e = events[i]!;
      const t = this.relNs(e.ns);
      if (this.latestNs === undefined || t > this.latestNs) this.latestNs = t;
      switch (e.kind) {
        case "PAGE_FAULT_START": {
          const key = `${e.pid}:${e.node}:${e.page}`;
          if (this.open.delete(key)) this.counts.faultsUnpaired++;
          this.open.set(key, { nowNs: t, pid: e.pid, page: e.page, seen: false, from: LOC_UNDEFINED, to: LOC_UNDEFINED });
          if (this.open.size > ADVISOR_OPEN_FAULTS_MAX) {
            this.open.delete(this.open.keys().next().value!);
            this.counts.faultsUnpaired++;
          }
          break;
        }
        case "PAGE_FAULT_END": {
          const key = `${e.pid}:${e.node}:${e.page}`;
          const f = this.open.get(key);
          this.open.delete(key);
          let from = LOC_UNDEFINED;
          let to = LOC_UNDEFINED;
          if (e.migrated) {
            if (f?.seen) {
              from = f.from;
              to = f.to;
            } else to = e.node;
            // A migrated fault never reads as "nothing moved".
            if (from === to) from = LOC_UNDEFINED;
          }
          out.push({ kind: "fault", nowNs: f?.nowNs ?? t, gpuId: e.node, start: e.page, npages: 1, from, to, trigger: MIGRATE_TRIGGER.PAGEFAULT_GPU });
          break;
        }
        case "MIGRATE_END": {
          if (e.trigger === MIGRATE_TRIGGER.PAGEFAULT_GPU && this.open.size > 0) {
            for (const f of this.open.values()) {
              if (f.pid !== e.pid || f.page < e.startPage || f.page >= e.startPage + e.sizePages) continue;
              if (!f.seen) f.from = e.from;
              f.seen = true;
              f.to = e.to;
            }
          }
          const m: ObservedEvent = { kind: "migrate", nowNs: t, gpuId: e.gpuId, start: e.startPage, npages: e.sizePages, from: e.from, to: e.to, trigger: e.trigger };
          out.push(m);
          if (e.trigger === MIGRATE_TRIGGER.TTM_EVICTION) out.push({ ...m, kind: "evict" });
          break;
        }
        case "QUEUE_EVICTION":
          out.push({ kind: "queue-evict", nowNs: t, gpuId: e.node, start: 0, npages: 0, from: 0, to: 0, trigger: e.trigger });
          break;
        case "QUEUE_RESTORE":
          out.push({ kind: "queue-restore", nowNs: t, gpuId: e.node, start: 0, npages: 0, from: 0, to: 0, trigger: 0 });
          break;
        case "UNMAP_FROM_GPU":
          out.push({ kind: "unmap", nowNs: t, gpuId: e.node, start: e.startPage, npages: e.sizePages, from: 0, to: 0, trigger: e.trigger });
          break;
      }
    }
    return out;
  }

  /** Make `hints` current at plugin time `now`; log the ones never advised before (or forgotten). */
  private hintsSet(hints: readonly AdviceHint[], now: number): void {
    const nowAbs = this.absNs(now);
    const next: AdvisorHintJson[] = [];
    for (const h of hints) {
      const id = hintId(h);
      let k = this.known.get(id);
      const isNew = k === undefined;
      if (k === undefined) k = { firstSeenNs: nowAbs, lastSeenNs: nowAbs };
      else this.known.delete(id); // re-inserted below: most recently advised last
      k.lastSeenNs = nowAbs;
      this.known.set(id, k);
      const json = this.hintJson(id, h, k);
      next.push(json);
      if (isNew) this.log(Advisor.logLine(json));
    }
    while (this.known.size > ADVISOR_KNOWN_HINTS_MAX) this.known.delete(this.known.keys().next().value!);
    this.current = next;
  }

  private hintJson(id: string, h: AdviceHint, k: KnownHint): AdvisorHintJson {
    const device: number | "cpu" = h.gpuId === LOC_SYSMEM ? "cpu" : (this.deviceOf.get(h.gpuId) ?? -1);
    const addr = hex(h.start * PAGE_BYTES);
    const sizeBytes = h.npages * PAGE_BYTES;
    return {
      id,
      kind: h.kind,
      pattern: h.pattern,
      start: h.start,
      npages: h.npages,
      addr,
      sizeBytes,
      gpuId: h.gpuId,
      device,
      apply: adviceHipCall(h.kind, addr, sizeBytes, device),
      evidence: {
        events: h.evidence.events,
        firstNs: this.absNs(h.evidence.firstNs).toString(),
        lastNs: this.absNs(h.evidence.lastNs).toString(),
        gpus: [...h.evidence.gpus],
        detail: h.evidence.detail,
      },
      firstSeenNs: k.firstSeenNs.toString(),
      lastSeenNs: k.lastSeenNs.toString(),
    };
  }

  /** One log line: id, kind, byte range, GPU, the call, pattern and evidence. */
  private static logLine(h: AdvisorHintJson): string {
    const end = hex(BigInt(h.addr) + BigInt(h.sizeBytes));
    const gpu = h.gpuId === LOC_SYSMEM ? "system memory" : `gpu ${hex(h.gpuId)} (device ${h.device})`;
    const e = h.evidence;
    return (
      `new hint ${h.id}: ${h.kind} [${h.addr}, ${end}) ${gpu}: ${h.apply}; ` +
      `${h.pattern}, ${e.events} events from ${e.firstNs} to ${e.lastNs} ns, gpus ${e.gpus.map(hex).join(",") || "none"}: ${e.detail}`
    );
  }

  /** The current hints (fresh copies), as /v1/advice serves them. */
  hints(): AdvisorHintJson[] {
    return structuredClone(this.current);
  }

  get stats(): AdvisorStats {
    return { ...this.counts, pending: this.count, hints: this.current.length };
  }

  /** Drop pending events and hints; later feeds do nothing and ticks give no hints. The policy stays its owner's. */
  [Symbol.dispose](): void {
    this.closed = true;
    this.ring.fill(undefined);
    this.head = 0;
    this.count = 0;
    this.open.clear();
    this.current = [];
    this.known.clear();
  }
}
