/**
 * The discrete-event engine: agents (one per workload stream, on a GPU or the CPU) walk
 * their operations in simulated time; a GPU access to a page its GPU has not mapped raises
 * a fault that the GPU's fault worker hands to the SVM model in batches; timed work of the
 * model (XNACK-off restore, deferred frees) and the workload's timed hints are events too.
 * Ties break by insertion order, so a run is a pure function of its inputs and seed.
 */
import { BoundError, InvariantError, KfdError } from "../errors.ts";
import { MIGRATION_BOUNDS, type MigrationDecider } from "../policy/contracts/migration.ts";
import { SVM_ATTR } from "../svm/constants.ts";
import {
  type AttrPair,
  type DirectionCounts,
  FAULT_RESULT,
  type ProcessGpuCounters,
  SvmModel,
  type SvmEventFilter, type SvmEventSink,
  type SvmProcess,
  type SvmStats,
  type TriggerCounts,
} from "../svm/model.ts";
import { CostModel } from "./cost.ts";
import type { MachineProfile } from "./profile.ts";
import { Prng } from "./prng.ts";
import { AGENT_CPU, type HintSpec, type OpSpec, type Workload } from "./workload.ts";

/** First page of the first allocation (4 GiB), and the alignment of allocations (1 GiB), pages. */
export const VA_BASE_PAGES = 0x100000;
export const ALLOC_ALIGN_PAGES = 262_144;
/** Most events one simulation may process. */
export const SIM_EVENTS_MAX = 2_000_000_000;
/**
 * Latest simulated time a run may reach, ns after its start: beyond 2^53 ns (104 days) a
 * float64 no longer holds every ns, and results would be rounded.
 */
export const SIM_TIME_MAX_ns = Number.MAX_SAFE_INTEGER;
/**
 * Most GPU fault batches the fault workers may handle while no access completes anywhere: a
 * policy (or workload) that undoes every migration it asks for makes the same faults forever.
 * A healthy run completes an access within a few batches of any fault (256 waves faulting
 * with their duplicate drops take a few thousand).
 */
export const SIM_FAULT_BATCHES_WITHOUT_PROGRESS_MAX = 50_000;
/** Most accesses an agent makes before yielding to the event queue. */
export const AGENT_SLICE_ACCESSES = 65_536;
/** Most GET_ATTR answers a result lists (the first ones, in call order); `calls.getAttr` counts them all. */
export const GET_ATTR_ANSWERS_MAX = 256;

/** Names of the answers of access queries (the type GET_ATTR writes back). */
const ACCESS_NAMES: Record<number, string> = {
  [SVM_ATTR.ACCESS]: "ACCESS",
  [SVM_ATTR.ACCESS_IN_PLACE]: "ACCESS_IN_PLACE",
  [SVM_ATTR.NO_ACCESS]: "NO_ACCESS",
};
const VALUE_NAMES: Record<number, string> = {
  [SVM_ATTR.PREFERRED_LOC]: "PREFERRED_LOC",
  [SVM_ATTR.PREFETCH_LOC]: "PREFETCH_LOC",
  [SVM_ATTR.SET_FLAGS]: "SET_FLAGS",
  [SVM_ATTR.CLR_FLAGS]: "CLR_FLAGS",
  [SVM_ATTR.GRANULARITY]: "GRANULARITY",
};

/** One GET_ATTR call and the kernel's aggregated answer (svm_range_get_attr). */
export interface GetAttrAnswer {
  atNs: number;
  pid: number;
  /** First page and pages asked about. */
  start: number;
  pages: number;
  /** errno name when the call failed (then no values). */
  error?: string;
  /** Values by attribute name (locations are gpu_ids, 0 system memory, 4294967295 undefined). */
  values?: Record<string, number>;
  /** Access answers by GPU index name (gpuN): ACCESS, ACCESS_IN_PLACE or NO_ACCESS. */
  access?: Record<string, string>;
}

/** GPU faults one GPU's fault worker handled, by how they ended (PAGE_FAULT_END M or U). */
export interface GpuFaultCounts {
  gpu: string;
  gpuId: number;
  handled: number;
  migrated: number;
  mappedOnly: number;
}

/** Calls of the KFD API a workload made (failed ones included). */
export interface CallCounts {
  setAttr: number;
  getAttr: number;
  setXnack: number;
  free: number;
  exit: number;
}

/** What the processes' exits left behind (kfd-svm.md §9): all zero, asserted. */
export interface ExitLeftovers {
  processes: number;
  ranges: number;
  vramPages: number;
  pendingWork: number;
}

const EV_AGENT = 0;
const EV_WORKER = 1;
const EV_RESTORE = 2;
const EV_DEFERRED = 3;
const EV_HINT = 4;

const ST_RUN = 0;
const ST_FAULT = 1;
const ST_BARRIER = 2;
const ST_QUEUE = 3;
const ST_DONE = 4;
const ST_DEAD = 5;

/** Binary min-heap of events ordered by (time, insertion sequence). */
class EventQueue {
  private time = new Float64Array(1024);
  private seq = new Float64Array(1024);
  private kind = new Int32Array(1024);
  private arg = new Int32Array(1024);
  size = 0;
  private nextSeq = 0;

  push(t: number, kind: number, arg: number): void {
    if (this.size === this.time.length) this.grow();
    let i = this.size++;
    const s = this.nextSeq++;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (this.time[p]! < t || (this.time[p] === t && this.seq[p]! < s)) break;
      this.time[i] = this.time[p]!;
      this.seq[i] = this.seq[p]!;
      this.kind[i] = this.kind[p]!;
      this.arg[i] = this.arg[p]!;
      i = p;
    }
    this.time[i] = t;
    this.seq[i] = s;
    this.kind[i] = kind;
    this.arg[i] = arg;
  }

  peekTime(): number {
    return this.size === 0 ? Number.POSITIVE_INFINITY : this.time[0]!;
  }

  /** Pop the first event into popTime/popKind/popArg. */
  popTime = 0;
  popKind = 0;
  popArg = 0;
  pop(): void {
    this.popTime = this.time[0]!;
    this.popKind = this.kind[0]!;
    this.popArg = this.arg[0]!;
    const n = --this.size;
    if (n === 0) return;
    const t = this.time[n]!;
    const s = this.seq[n]!;
    const k = this.kind[n]!;
    const a = this.arg[n]!;
    let i = 0;
    for (;;) {
      let c = 2 * i + 1;
      if (c >= n) break;
      if (c + 1 < n && (this.time[c + 1]! < this.time[c]! || (this.time[c + 1] === this.time[c] && this.seq[c + 1]! < this.seq[c]!))) c++;
      if (t < this.time[c]! || (t === this.time[c] && s < this.seq[c]!)) break;
      this.time[i] = this.time[c]!;
      this.seq[i] = this.seq[c]!;
      this.kind[i] = this.kind[c]!;
      this.arg[i] = this.arg[c]!;
      i = c;
    }
    this.time[i] = t;
    this.seq[i] = s;
    this.kind[i] = k;
    this.arg[i] = a;
  }

  private grow(): void {
    const n = this.time.length * 2;
    const t = new Float64Array(n);
    t.set(this.time);
    this.time = t;
    const s = new Float64Array(n);
    s.set(this.seq);
    this.seq = s;
    const k = new Int32Array(n);
    k.set(this.kind);
    this.kind = k;
    const a = new Int32Array(n);
    a.set(this.arg);
    this.arg = a;
  }
}

interface Agent {
  idx: number;
  gi: number;
  pid: number;
  proc: SvmProcess;
  ops: OpSpec[];
  opIdx: number;
  iter: number;
  t: number;
  state: number;
  rng: Prng;
  /** The access in hand (kept across a fault so a retry replays the same page). */
  addr: number;
  write: boolean;
  have: boolean;
  /** A GPU stream holds a user-mode queue of its process until it ends. */
  queue: boolean;
}

export interface SimOptions {
  profile: MachineProfile;
  workload: Workload;
  decider: MigrationDecider;
  seed: number;
  /** SMI event text sink (`--events`); null = none. */
  sink?: SvmEventSink | null;
  /** Which page events the sink wants, asked before their text is built (SvmModelOptions). */
  sinkFilter?: SvmEventFilter | null;
  fullCheckEvery?: number;
  /**
   * Called about every PROGRESS_INTERVAL_MS of wall time with the simulated time reached and
   * the GPU faults handled so far (the CLI's progress line). Never changes the results.
   */
  onProgress?: (simNs: number, gpuFaults: number, accesses: number) => void;
  /** Bound on fault batches without progress (default SIM_FAULT_BATCHES_WITHOUT_PROGRESS_MAX; tests lower it). */
  faultBatchesWithoutProgressMax?: number;
  /**
   * Run on this model instead of a new one (the emulator's machine): its costs, decider and
   * sink are used, `sink` and `fullCheckEvery` here are ignored. A workload process whose pid
   * the model already has is adopted: it runs there and is not destroyed at the end.
   */
  model?: SvmModel;
  /** Simulated time the run starts at, ns (default 0): the model's clock when it is shared. */
  startNs?: number;
  /**
   * Called before every event (runSimAsync only): a promise stops the loop until it
   * resolves, e.g. the emulator waiting for SMI event readers to catch up. Results do not
   * depend on it.
   */
  pause?: () => Promise<void> | undefined;
}

/** One simulation's results: the model's counters plus the run's identity and time. */
export interface SimResult extends Omit<SvmStats, "migrations" | "migrationsByTrigger"> {
  seed: number;
  profile: string;
  workload: string;
  policy: string;
  simTimeNs: number;
  accesses: number;
  migrations: DirectionCounts & { byTrigger: TriggerCounts };
  policyFallbacks: number;
  /** sysfs counters per process and GPU, at each process's exit. */
  counters: ProcessGpuCounters[];
  /** Handled GPU faults per GPU, by end type. */
  gpuFaultsByGpu: GpuFaultCounts[];
  /** Handled GPU faults by end type: M (the migrate branch ran) or U (mapping update only). */
  gpuFaultsByEnd: { migrated: number; mappedOnly: number };
  /** CPU accesses to memory no CPU mapping covers any more (after a free): SIGSEGV, the stream ends. */
  cpuAccessesFatal: number;
  calls: CallCounts;
  /** Failed calls by ioctl (SET_ATTR, GET_ATTR, SET_XNACK_MODE) and errno name. */
  ioctlErrors: Record<string, Record<string, number>>;
  /** GET_ATTR answers, the first GET_ATTR_ANSWERS_MAX. */
  getAttr: GetAttrAnswer[];
  exits: ExitLeftovers;
}

/**
 * Run a workload on a machine with a policy; a pure function of its options.
 * @throws InvariantError when the decider needs an asynchronous rebuild (a sandboxed policy
 *   after a crash): use runSimAsync for deciders with `prepare`.
 */
export function runSim(opts: SimOptions): SimResult {
  return new Simulation(opts).run();
}

/**
 * runSim for any decider: whenever a sandboxed policy must rebuild its Wasm instance (after a
 * crash), the event loop stops at the next event and resumes once it is ready, so the
 * results depend only on the inputs and the seed, never on timing.
 */
export async function runSimAsync(opts: SimOptions): Promise<SimResult> {
  return new Simulation(opts).runAsync();
}

/** Wall time between two progress callbacks, ms. */
export const PROGRESS_INTERVAL_MS = 500;
/** The clock is read every this many + 1 events (a power of two minus one). */
const PROGRESS_CHECK_EVENTS_MASK = 0xffff;

/** Returned by the event loop when the decider asked to be prepared before the next event. */
const BLOCKED = Symbol("blocked");

export class Simulation {
  readonly model: SvmModel;
  readonly costs: CostModel;
  private readonly q = new EventQueue();
  private readonly agents: Agent[] = [];
  private readonly pending: number[][];
  private readonly workerScheduled: boolean[];
  private readonly workerBusyNs: Float64Array;
  private readonly addrs = new Float64Array(MIGRATION_BOUNDS.fault_batch_max);
  /** Scratch of workerRun: the agents of the batch taken, and of one process's group. */
  private readonly batchAgents = new Int32Array(MIGRATION_BOUNDS.fault_batch_max);
  private readonly groupAgents = new Int32Array(MIGRATION_BOUNDS.fault_batch_max);
  /** repeatDrops' answer: the end of the last replayed drop. */
  private readonly dropEnd = new Float64Array(1);
  private readonly writes = new Uint8Array(MIGRATION_BOUNDS.fault_batch_max);
  private readonly results = new Uint8Array(MIGRATION_BOUNDS.fault_batch_max);
  private readonly doneNs = new Float64Array(MIGRATION_BOUNDS.fault_batch_max);
  private readonly retryNs: number;
  private readonly cpuAccessNs: number;
  private accesses = 0;
  private endNs = 0;
  private barrierWaiting = 0;
  /** Start of the run, ns. */
  private readonly t0: number;
  /** Workload processes created (not adopted) by this run: destroyed at its end. */
  private readonly created = new Set<number>();
  /** Handled GPU faults per GPU index: all, migrated (M), mapping update only (U). */
  private readonly faultsHandled: Float64Array;
  private readonly faultsMigrated: Float64Array;
  private readonly faultsMapped: Float64Array;
  private readonly calls: CallCounts = { setAttr: 0, getAttr: 0, setXnack: 0, free: 0, exit: 0 };
  private readonly ioctlErrors = new Map<string, Map<string, number>>();
  private readonly getAttrAnswers: GetAttrAnswer[] = [];
  private readonly exits: ExitLeftovers = { processes: 0, ranges: 0, vramPages: 0, pendingWork: 0 };
  private cpuAccessesFatal = 0;
  /** Allocations (non-SVM buffers) freed: accesses to them are fatal. */
  private readonly allocFreed: boolean[];
  /** The workload frees memory: CPU accesses check their mapping. */
  private readonly frees: boolean;
  /** On a shared model: its counters before this run (results count this run only). */
  private readonly statsBefore: SvmStats | null;
  private readonly exitCountersBefore: number;

  constructor(readonly opts: SimOptions) {
    const p = opts.profile;
    this.costs = new CostModel(p.cost, p.gpus);
    this.t0 = opts.startNs ?? 0;
    this.endNs = this.t0;
    this.statsBefore = opts.model === undefined ? null : structuredClone(opts.model.stats);
    this.exitCountersBefore = opts.model?.exitCounters.length ?? 0;
    this.model = opts.model ?? new SvmModel({
      gpus: p.gpus,
      decider: opts.decider,
      costs: this.costs,
      seed: opts.seed,
      fullCheckEvery: opts.fullCheckEvery,
      sink: opts.sink ?? null,
      sinkFilter: opts.sinkFilter ?? null,
      thrashWindowNs: p.cost.thrash_window_ns,
      deferredDelayNs: p.cost.deferred_work_ns,
    });
    this.pending = p.gpus.map(() => []);
    this.workerScheduled = p.gpus.map(() => false);
    this.workerBusyNs = new Float64Array(p.gpus.length);
    this.retryNs = p.cost.fault_retry_ns;
    this.cpuAccessNs = p.cost.cpu_access_ns;
    this.faultsHandled = new Float64Array(p.gpus.length);
    this.faultsMigrated = new Float64Array(p.gpus.length);
    this.faultsMapped = new Float64Array(p.gpus.length);
    const w = opts.workload;
    this.allocFreed = w.allocs.map(() => false);
    this.frees = w.streams.some((s) => s.ops.some((o) => o.op === "free")) || w.hints.some((h) => h.call === "free");
  }

  run(): SimResult {
    this.start();
    const r = this.loop();
    if (r === BLOCKED) throw new InvariantError(`the policy ${this.opts.decider.name} needs preparing between events: use runSimAsync`);
    return r;
  }

  async runAsync(): Promise<SimResult> {
    this.start();
    for (;;) {
      const r = this.loop();
      if (r !== BLOCKED) return r;
      await this.blockedOn;
    }
  }

  private blockedOn: Promise<void> | undefined;
  private lastProgressMs = performance.now();

  private progress(): void {
    const now = performance.now();
    if (now - this.lastProgressMs < PROGRESS_INTERVAL_MS) return;
    this.lastProgressMs = now;
    this.opts.onProgress?.(this.q.popTime - this.t0, this.model.stats.gpuFaults, this.accesses);
  }

  private loopEvents = 0;

  /** Processes, their mappings and allocations, the agents and hints: time zero. */
  private start(): void {
    const { workload: w, profile } = this.opts;
    const rng = new Prng(this.opts.seed);
    // Processes (§9 create), their CPU mappings and registered allocations.
    const adopted: number[] = [];
    for (const ps of w.processes) {
      if (this.model.processes.has(ps.pid)) {
        adopted.push(ps.pid);
        continue;
      }
      const xnack = ps.xnack ?? profile.xnack;
      this.model.processCreate(ps.pid, { xnack, name: ps.name });
      this.created.add(ps.pid);
    }
    // Allocations go from VA_BASE_PAGES up, above every CPU mapping an adopted process has.
    let cursor = VA_BASE_PAGES;
    for (const pid of adopted) {
      for (const v of this.model.proc(pid).vmas) cursor = Math.max(cursor, Math.ceil((v.last + 1) / ALLOC_ALIGN_PAGES) * ALLOC_ALIGN_PAGES);
    }
    interface VmaSeg {
      pid: number;
      start: number;
      pages: number;
      kind: "anon" | "heap" | "stack";
      writable: boolean;
    }
    const vmaSegs: VmaSeg[] = [];
    const registrations: (() => void)[] = [];
    w.allocs.forEach((a, i) => {
      if (a.start < 0) {
        if (a.adjacent === true) {
          // Right after the previous allocation: their mappings (and ranges) touch.
          const prev = w.allocs[i - 1]!;
          a.start = prev.start + prev.pages;
          cursor = Math.max(cursor, Math.ceil((a.start + a.pages + 1) / ALLOC_ALIGN_PAGES) * ALLOC_ALIGN_PAGES);
        } else {
          a.start = cursor;
          cursor = Math.ceil((cursor + a.pages + 1) / ALLOC_ALIGN_PAGES) * ALLOC_ALIGN_PAGES;
        }
      }
      // Its CPU mappings: `vmas` of them side by side (never merged), read-only unless
      // writable. A userptr buffer (system memory) lives in the anonymous memory of the
      // allocation it is adjacent to (or that is adjacent to it): one vma holds both.
      const nv = a.vmas ?? 1;
      for (let k = 0; k < nv; k++) {
        const s = Math.floor((a.pages * k) / nv);
        const seg: VmaSeg = { pid: a.pid, start: a.start + s, pages: Math.floor((a.pages * (k + 1)) / nv) - s, kind: a.kind, writable: a.writable ?? true };
        const prevSeg = vmaSegs.at(-1);
        const prev = w.allocs[i - 1];
        const sharesVma =
          k === 0 && a.adjacent === true && prev !== undefined && (a.buffer === 0 || prev.buffer === 0) && prevSeg !== undefined &&
          prevSeg.pid === seg.pid && prevSeg.kind === seg.kind && prevSeg.writable === seg.writable && prevSeg.start + prevSeg.pages === seg.start;
        if (sharesVma) prevSeg.pages += seg.pages;
        else vmaSegs.push(seg);
      }
      if (a.buffer !== undefined) {
        // ALLOC_MEMORY_OF_GPU (VRAM of a GPU, or system memory) + MAP_MEMORY_TO_GPU on every GPU.
        const g = this.model.gpuOf(a.buffer);
        if (g !== undefined) this.model.vramNonSvmReserve(g.index, a.pages);
        this.model.boMappingAdd(a.pid, a.start, a.pages);
        return;
      }
      if (a.register) registrations.push(() => this.register(a.pid, a.start, a.pages, a.attrs, a.name));
    });
    // The mappings first (mmap), then the registrations (SET_ATTR), in allocation order.
    for (const v of vmaSegs) this.model.vmaAdd(v.pid, v.start, v.pages, v.kind, v.writable);
    for (const reg of registrations) reg();
    this.drainWork();
    w.streams.forEach((s, i) => {
      const proc = this.model.proc(s.pid);
      if (s.agent !== AGENT_CPU) proc.userQueues++;
      this.agents.push({ idx: i, gi: s.agent, pid: s.pid, proc, ops: s.ops, opIdx: 0, iter: 0, t: this.t0, state: ST_RUN, rng: rng.fork(i), addr: 0, write: false, have: false, queue: s.agent !== AGENT_CPU });
      this.q.push(this.t0, EV_AGENT, i);
    });
    for (let i = 0; i < w.hints.length; i++) this.q.push(this.t0 + w.hints[i]!.atNs, EV_HINT, i);
  }

  /** Register an allocation at time zero: SET_ATTR with its attributes (hipMallocManaged + hipMemAdvise). */
  private register(pid: number, start: number, pages: number, given: AttrPair[], name: string): void {
    const { workload: w, profile } = this.opts;
    const proc = this.model.proc(pid);
    let attrs = given;
    const hasAccess = attrs.some(([t]) => t === SVM_ATTR.ACCESS || t === SVM_ATTR.ACCESS_IN_PLACE || t === SVM_ATTR.NO_ACCESS);
    if (!proc.xnack && !hasAccess) {
      // Like ROCr with XNACK off: the GPUs that use the memory get ACCESS, so it is mapped ahead.
      const used = new Set(w.streams.filter((s) => s.pid === pid && s.agent !== AGENT_CPU).map((s) => s.agent));
      attrs = [...attrs, ...[...used].sort((x, y) => x - y).map((g): AttrPair => [SVM_ATTR.ACCESS, profile.gpus[g]!.id])];
    }
    this.setAttr(pid, start, pages, attrs, this.t0, `allocation ${name}`);
  }

  /** The event loop, until the queue is empty (then the result) or the decider blocks. */
  private loop(): SimResult | typeof BLOCKED {
    const w = this.opts.workload;
    const decider = this.opts.decider;
    const prepare = decider.prepare;
    const pause = this.opts.pause;
    while (this.q.size > 0) {
      if (pause !== undefined) {
        const p = pause();
        if (p !== undefined) {
          this.blockedOn = p;
          return BLOCKED;
        }
      }
      if (prepare !== undefined) {
        const p = prepare.call(decider);
        if (p !== undefined) {
          this.blockedOn = p;
          return BLOCKED;
        }
      }
      if (++this.loopEvents > SIM_EVENTS_MAX) {
        throw new BoundError("SIM_EVENTS_MAX", `${this.runName()}: stopped after ${SIM_EVENTS_MAX} events (SIM_EVENTS_MAX): make the workload smaller`);
      }
      if (this.opts.onProgress !== undefined && (this.loopEvents & PROGRESS_CHECK_EVENTS_MASK) === 0) this.progress();
      this.q.pop();
      const t = this.q.popTime;
      if (t - this.t0 > SIM_TIME_MAX_ns) {
        throw new BoundError(
          "SIM_TIME_MAX_ns",
          `${this.runName()}: simulated time passed ${SIM_TIME_MAX_ns} ns (SIM_TIME_MAX_ns, 104 days), where ns stop being exact: shorten the workload's sleeps, hints or trace`,
        );
      }
      const a = this.q.popArg;
      switch (this.q.popKind) {
        case EV_AGENT:
          this.agentRun(this.agents[a]!, t);
          break;
        case EV_WORKER:
          this.workerRun(a, t);
          break;
        case EV_RESTORE: {
          const pid = a;
          const done = this.model.restoreWork(pid, t);
          this.note(done);
          for (let i = 0; i < this.agents.length; i++) {
            const ag = this.agents[i]!;
            if (ag.pid === pid && ag.state === ST_QUEUE) {
              ag.state = ST_RUN;
              this.q.push(Math.max(done, ag.t), EV_AGENT, i);
            }
          }
          break;
        }
        case EV_DEFERRED:
          this.model.deferredWork(a, t);
          break;
        case EV_HINT:
          this.note(this.hintRun(w.hints[a]!, t, `hints[${a}]`));
          break;
      }
      this.drainWork();
    }
    for (const ag of this.agents) {
      if (ag.state !== ST_DONE && ag.state !== ST_DEAD) {
        throw new InvariantError(`agent on ${ag.gi < 0 ? "cpu" : `gpu${ag.gi}`} stuck in state ${ag.state} with no event left (seed ${this.opts.seed})`);
      }
    }
    // The streams' queues went as each ended; then process exit, §9 order (the model asserts
    // nothing is left behind). Adopted processes live on.
    for (const ag of this.agents) this.queueRelease(ag);
    for (const ps of w.processes) if (this.created.has(ps.pid)) this.processExit(ps.pid, this.endNs);
    // Events a decider still holds reach its policy (they can change no decision now, but a
    // policy failing on them is counted like any other).
    this.opts.decider.flush?.();
    return this.result();
  }

  /**
   * SET_ATTR as a program that records its result: a failed call is counted by errno in
   * `ioctlErrors` and the workload carries on (a PREFETCH_LOC that finds no VRAM fails with
   * ENOMEM after its other ranges were updated: at the time it ended); with
   * `on_ioctl_error: stop` the run fails instead. `where` names the call in messages.
   */
  private setAttr(pid: number, start: number, pages: number, attrs: AttrPair[], t: number, where: string): number {
    this.calls.setAttr++;
    try {
      return this.model.setAttr(pid, start, pages, attrs, t);
    } catch (e) {
      this.ioctlFailed(e, where, t);
      return (e as KfdError).errnoName === "ENOMEM" ? this.model.failedOpEndNs : t;
    }
  }

  /**
   * Count a failed ioctl by name and errno, or, with `on_ioctl_error: stop`, fail the run.
   * @throws KfdError naming the call when the workload says stop; any error that is no KfdError.
   */
  private ioctlFailed(e: unknown, where: string, t: number): void {
    if (!(e instanceof KfdError)) throw e;
    const name = e.op.replace(/^SVM /, "");
    if (this.opts.workload.onIoctlError === "stop") {
      throw new KfdError(
        e.op,
        e.errnoName,
        e.errno,
        `${e.hint} (${where} at ${Math.round(t - this.t0)} ns; ${this.runName()}; on_ioctl_error: record counts it in the results and goes on)`,
      );
    }
    let byErrno = this.ioctlErrors.get(name);
    if (byErrno === undefined) {
      byErrno = new Map();
      this.ioctlErrors.set(name, byErrno);
    }
    byErrno.set(e.errnoName, (byErrno.get(e.errnoName) ?? 0) + 1);
  }

  /** GET_ATTR over [start, start+pages) with `queries`; its answer (or errno) is recorded. */
  private getAttr(pid: number, start: number, pages: number, queries: AttrPair[], t: number, where: string): void {
    this.calls.getAttr++;
    const answer: GetAttrAnswer = { atNs: Math.round(t - this.t0), pid, start, pages };
    try {
      const got = this.model.getAttr(pid, start, pages, queries.map((q): AttrPair => [q[0], q[1]]));
      const values: Record<string, number> = {};
      const access: Record<string, string> = {};
      for (const [type, value] of got) {
        const an = ACCESS_NAMES[type];
        if (an !== undefined) access[`gpu${this.model.gpuOf(value)!.index}`] = an;
        else values[VALUE_NAMES[type]!] = value;
      }
      answer.values = values;
      if (Object.keys(access).length > 0) answer.access = access;
    } catch (e) {
      this.ioctlFailed(e, where, t);
      answer.error = (e as KfdError).errnoName;
    }
    if (this.getAttrAnswers.length < GET_ATTR_ANSWERS_MAX) this.getAttrAnswers.push(answer);
  }

  /** SET_XNACK_MODE; EBUSY while the process has user-mode queues (a GPU stream still runs). */
  private setXnack(pid: number, on: boolean, t: number, where: string): void {
    this.calls.setXnack++;
    try {
      this.model.setXnack(pid, on ? 1 : 0);
    } catch (e) {
      this.ioctlFailed(e, where, t);
    }
  }

  /**
   * munmap of [start, start+pages) (svm_range_unmap_from_cpu: UNMAP_FROM_CPU, the deferred
   * list); for a non-SVM buffer, FREE_MEMORY_OF_GPU: its GPU mapping and VRAM go too.
   */
  private free(pid: number, alloc: number, start: number, pages: number, t: number): void {
    this.calls.free++;
    const al = this.opts.workload.allocs[alloc]!;
    if (al.buffer !== undefined) {
      if (this.allocFreed[alloc]) return;
      this.allocFreed[alloc] = true;
      this.model.boMappingRemove(pid, al.start, al.pages);
      const g = this.model.gpuOf(al.buffer);
      if (g !== undefined) this.model.vramNonSvmRelease(g.index, al.pages);
    }
    this.model.vmaRemove(pid, start, pages, t);
    this.drainWork();
  }

  /** A stream's user-mode queue goes (the stream ended, or its process exits). */
  private queueRelease(a: Agent): void {
    if (!a.queue) return;
    a.queue = false;
    a.proc.userQueues--;
  }

  /**
   * Process `pid` exits at `t`: its streams end (their queues and pending faults go), then
   * the model's §9 teardown; its buffers are freed. What the exit left behind is added to
   * `exits` and must be nothing.
   * @throws InvariantError when a range, VRAM page or pending work is left.
   */
  private processExit(pid: number, t: number): void {
    const p = this.model.proc(pid);
    for (const ag of this.agents) {
      if (ag.pid !== pid) continue;
      this.queueRelease(ag);
      if (ag.state !== ST_DONE && ag.state !== ST_DEAD) {
        ag.state = ST_DONE;
        ag.t = Math.max(ag.t, t);
      }
    }
    for (const pend of this.pending) {
      for (let i = pend.length - 1; i >= 0; i--) if (this.agents[pend[i]!]!.pid === pid) pend.splice(i, 1);
    }
    this.model.processDestroy(pid, t);
    this.created.delete(pid);
    this.opts.workload.allocs.forEach((al, i) => {
      if (al.pid !== pid || al.buffer === undefined || this.allocFreed[i]) return;
      this.allocFreed[i] = true;
      const g = this.model.gpuOf(al.buffer);
      if (g !== undefined) this.model.vramNonSvmRelease(g.index, al.pages);
    });
    let vramPages = 0;
    for (let r = p.ranges.head; r !== null; r = r.next) vramPages += r.vramPages;
    const pendingWork =
      p.deferred.length + (p.restoreScheduled ? 1 : 0) + (p.deferredScheduled ? 1 : 0) + this.model.work.filter((wk) => wk.pid === pid).length;
    this.exits.processes++;
    this.exits.ranges += p.ranges.count;
    this.exits.vramPages += vramPages;
    this.exits.pendingWork += pendingWork;
    if (p.ranges.count !== 0 || vramPages !== 0 || pendingWork !== 0) {
      throw new InvariantError(`pid ${pid} exit left ${p.ranges.count} ranges, ${vramPages} VRAM pages, ${pendingWork} pending work (seed ${this.opts.seed})`);
    }
    this.barrierCheck();
  }

  /** A timed call of the workload (a hint: SET_ATTR by default; traces give every kind). Returns when it ended. */
  private hintRun(h: HintSpec, t: number, where: string): number {
    // Calls of a process that exited find no process: the program is gone.
    if (!this.model.processes.has(h.pid)) return t;
    const al = this.opts.workload.allocs[h.alloc]!;
    switch (h.call ?? "set_attr") {
      case "set_attr":
        return this.setAttr(h.pid, al.start + h.offset, h.pages, h.attrs.map((x): AttrPair => [x[0], x[1]]), t, where);
      case "get_attr":
        this.getAttr(h.pid, al.start + h.offset, h.pages, h.attrs, t, where);
        return t;
      case "set_xnack":
        this.setXnack(h.pid, h.xnack === true, t, where);
        return t;
      case "free":
        this.free(h.pid, h.alloc, al.start + h.offset, h.pages, t);
        return t;
      case "exit":
        this.calls.exit++;
        this.processExit(h.pid, t);
        return t;
    }
  }

  private note(t: number): void {
    if (t > this.endNs) this.endNs = t;
  }

  private drainWork(): void {
    for (const wk of this.model.takeWork()) this.q.push(wk.dueNs, wk.kind === "restore" ? EV_RESTORE : EV_DEFERRED, wk.pid);
  }

  /** Run agent `a` from time t until it blocks, finishes or passes the next event. */
  private agentRun(a: Agent, t: number): void {
    if (a.state !== ST_RUN) return;
    const model = this.model;
    const costs = this.costs;
    let budget = AGENT_SLICE_ACCESSES;
    const idx = a.idx;
    for (;;) {
      const op = a.ops[a.opIdx];
      if (op === undefined) {
        a.state = ST_DONE;
        a.t = t;
        this.queueRelease(a);
        this.note(t);
        this.barrierCheck();
        return;
      }
      if (!a.have) {
        switch (op.op) {
          case "barrier":
            a.state = ST_BARRIER;
            a.t = t;
            this.barrierWaiting++;
            this.barrierCheck();
            return;
          case "sleep":
            a.opIdx++;
            this.q.push(t + op.ns, EV_AGENT, idx);
            return;
          case "set_attr": {
            const al = this.opts.workload.allocs[op.alloc]!;
            t = this.setAttr(a.pid, al.start + op.offset, op.pages, op.attrs.map((x): AttrPair => [x[0], x[1]]), t, this.opName(a));
            this.drainWork();
            a.opIdx++;
            this.note(t);
            this.q.push(t, EV_AGENT, idx);
            return;
          }
          case "get_attr":
          case "set_xnack":
          case "free":
          case "exit": {
            const where = this.opName(a);
            a.opIdx++;
            this.note(t);
            if (op.op === "exit") {
              this.calls.exit++;
              this.processExit(a.pid, t);
              return;
            }
            if (op.op === "set_xnack") this.setXnack(a.pid, op.xnack, t, where);
            else {
              const al = this.opts.workload.allocs[op.alloc]!;
              if (op.op === "free") this.free(a.pid, op.alloc, al.start + op.offset, op.pages, t);
              else this.getAttr(a.pid, al.start + op.offset, op.pages, op.attrs, t, where);
            }
            this.q.push(t, EV_AGENT, idx);
            return;
          }
          case "timed":
            if (a.iter >= op.n) {
              a.opIdx++;
              a.iter = 0;
              continue;
            }
            if (t < op.times[a.iter]!) {
              this.q.push(op.times[a.iter]!, EV_AGENT, idx);
              return;
            }
            a.addr = op.pages[a.iter]!;
            a.write = op.writes[a.iter] === 1;
            a.have = true;
            break;
          case "access": {
            if (a.iter >= op.count) {
              a.opIdx++;
              a.iter = 0;
              continue;
            }
            const base = this.opts.workload.allocs[op.alloc]!.start + op.offset;
            let off: number;
            switch (op.pattern) {
              case "seq":
                off = a.iter % op.pages;
                break;
              case "strided":
                off = (a.iter * op.stride) % op.pages;
                break;
              case "random":
                off = a.rng.nextInt(op.pages);
                break;
              case "zipf":
                off = zipfRank(a.rng.nextFloat(), op.pages, op.zipfS);
                break;
            }
            a.addr = base + off;
            a.write = op.write >= 1 ? true : op.write <= 0 ? false : a.rng.nextFloat() < op.write;
            a.have = true;
            break;
          }
        }
      }
      // A non-SVM buffer is mapped on every GPU and the CPU: no fault, until it is freed.
      // A freed one has no mapping left: the access takes the paths below (a fatal fault).
      const buffer = op.op === "access" && !this.allocFreed[op.alloc] ? this.opts.workload.allocs[op.alloc]!.buffer : undefined;
      if (buffer !== undefined) {
        t += a.gi === AGENT_CPU ? this.cpuAccessNs : costs.accessNs(a.gi, buffer);
        this.accesses++;
        a.iter++;
        a.have = false;
      } else if (a.gi === AGENT_CPU) {
        if (this.frees && !model.cpuMapped(a.proc, a.addr)) {
          // The page was freed: SIGSEGV ends the stream.
          this.cpuAccessesFatal++;
          this.agentDie(a, t);
          return;
        }
        t = model.cpuAccess(a.pid, a.addr, a.write, t) + this.cpuAccessNs;
        this.drainWork();
        this.accesses++;
        a.iter++;
        a.have = false;
      } else {
        if (a.proc.queuesEvicted) {
          a.state = ST_QUEUE;
          a.t = t;
          return;
        }
        const loc = model.probe(a.proc, a.gi, a.addr, a.write);
        if (loc < 0) {
          a.state = ST_FAULT;
          a.t = t;
          this.faultRaise(a.gi, idx, t);
          return;
        }
        const c = costs.accessNs(a.gi, loc);
        let k = 1;
        if (op.op === "access" && op.pattern === "seq") {
          k = Math.min(op.count - a.iter, model.probeLast - a.addr + 1, op.pages - (a.iter % op.pages));
          const room = Math.floor((this.q.peekTime() - t) / c);
          if (room < k) k = Math.max(1, room);
        }
        t += k * c;
        this.accesses += k;
        a.iter += k;
        a.have = false;
      }
      if (t > this.q.peekTime() || --budget === 0) {
        this.q.push(t, EV_AGENT, idx);
        return;
      }
    }
  }

  /** A stream that ends on a fatal fault (GPU VM fault, CPU SIGSEGV). */
  private agentDie(a: Agent, t: number): void {
    a.state = ST_DEAD;
    a.t = t;
    this.queueRelease(a);
    this.note(t);
    this.barrierCheck();
  }

  /** The operation agent `a` is at, as messages name it. */
  private opName(a: Agent): string {
    return `stream ${a.idx} (${a.gi === AGENT_CPU ? "cpu" : `gpu${a.gi}`}, pid ${a.pid}) op ${a.opIdx} (${a.ops[a.opIdx]?.op ?? "end"})`;
  }

  /** The run as messages name it: workload, policy, seed. */
  private runName(): string {
    return `workload ${this.opts.workload.name}, policy ${this.opts.decider.name}, seed ${this.opts.seed}`;
  }

  /** Accesses when the fault workers last saw progress, and batches handled since. */
  private progressAccesses = -1;
  private batchesWithoutProgress = 0;

  /** Called per fault batch. @throws BoundError when no access completed for too many batches. */
  private progressCheck(t: number): void {
    if (this.accesses !== this.progressAccesses) {
      this.progressAccesses = this.accesses;
      this.batchesWithoutProgress = 0;
      return;
    }
    const max = this.opts.faultBatchesWithoutProgressMax ?? SIM_FAULT_BATCHES_WITHOUT_PROGRESS_MAX;
    if (++this.batchesWithoutProgress <= max) return;
    throw new BoundError(
      "SIM_FAULT_BATCHES_WITHOUT_PROGRESS_MAX",
      `${this.runName()}: no progress: ${max} GPU fault batches handled and no access completed ` +
        `(SIM_FAULT_BATCHES_WITHOUT_PROGRESS_MAX; simulated time ${((t - this.t0) / 1e6).toFixed(3)} ms, ${this.accesses} accesses made): ` +
        "the policy undoes what it migrates (e.g. a prefetch that moves the faulting range away again); check it with svmrt policy eval",
    );
  }

  private faultRaise(gi: number, agent: number, t: number): void {
    this.pending[gi]!.push(agent);
    if (!this.workerScheduled[gi]) {
      this.workerScheduled[gi] = true;
      this.q.push(Math.max(t, this.workerBusyNs[gi]!), EV_WORKER, gi);
    }
  }

  /** The GPU's fault worker: one batch per process, in order of arrival. */
  private workerRun(gi: number, t: number): void {
    this.workerScheduled[gi] = false;
    this.progressCheck(t);
    const pend = this.pending[gi]!;
    // The batch: the first fault_batch_max pending faults, taken out of the queue. Batches
    // are mostly one fault (a wave waits on its fault), so no array is allocated here.
    const take = Math.min(pend.length, MIGRATION_BOUNDS.fault_batch_max);
    const batch = this.batchAgents;
    for (let i = 0; i < take; i++) batch[i] = pend[i]!;
    if (take === pend.length) pend.length = 0;
    else pend.splice(0, take);
    let left = take;
    while (left > 0) {
      // One batch per process, in order of first arrival; the others keep their order.
      const pid = this.agents[batch[0]!]!.pid;
      const group = this.groupAgents;
      let n = 0;
      let rest = 0;
      for (let i = 0; i < left; i++) {
        const ai = batch[i]!;
        if (this.agents[ai]!.pid === pid) group[n++] = ai;
        else batch[rest++] = ai;
      }
      left = rest;
      for (let i = 0; i < n; i++) {
        const ag = this.agents[group[i]!]!;
        this.addrs[i] = ag.addr;
        this.writes[i] = ag.write ? 1 : 0;
      }
      t = this.model.restorePages(pid, gi, n, this.addrs, this.writes, t, this.results, this.doneNs);
      for (let i = 0; i < n; i++) {
        const ai = group[i]!;
        const ag = this.agents[ai]!;
        const r = this.results[i]!;
        if (r === FAULT_RESULT.FATAL) {
          this.agentDie(ag, this.doneNs[i]!);
          continue;
        }
        if (r !== FAULT_RESULT.DROPPED) {
          this.faultsHandled[gi]!++;
          if (r === FAULT_RESULT.MIGRATED) this.faultsMigrated[gi]!++;
          else this.faultsMapped[gi]!++;
        }
        ag.state = ST_RUN;
        if (r !== FAULT_RESULT.DROPPED) {
          this.q.push(this.doneNs[i]!, EV_AGENT, ai);
          continue;
        }
        let retry = this.doneNs[i]! + this.retryNs;
        // A lone fault whose retries come before any other event: the wave would fault on
        // the same page (nothing changed) and the worker drop it again while the range's
        // duplicate window lasts. The model replays those drops in one call.
        if (n === 1 && left === 0 && pend.length === 0 && !ag.proc.queuesEvicted) {
          const k = this.model.repeatDrops(pid, gi, ag.addr, ag.write, retry, this.retryNs, this.q.peekTime(), this.dropEnd);
          if (k > 0) {
            t = this.dropEnd[0]!;
            retry = t + this.retryNs;
          }
        }
        this.q.push(retry, EV_AGENT, ai);
      }
    }
    this.workerBusyNs[gi] = t;
    this.note(t);
    if (pend.length > 0) {
      this.workerScheduled[gi] = true;
      this.q.push(t, EV_WORKER, gi);
    }
  }

  /** Release a barrier once every live agent waits at it. */
  private barrierCheck(): void {
    if (this.barrierWaiting === 0) return;
    let live = 0;
    let tMax = 0;
    for (const a of this.agents) {
      if (a.state === ST_DONE || a.state === ST_DEAD) continue;
      if (a.state !== ST_BARRIER) return;
      live++;
      tMax = Math.max(tMax, a.t);
    }
    if (live === 0) return;
    this.barrierWaiting = 0;
    this.agents.forEach((a, i) => {
      if (a.state !== ST_BARRIER) return;
      a.state = ST_RUN;
      a.opIdx++;
      this.q.push(tMax, EV_AGENT, i);
    });
  }

  private result(): SimResult {
    const s = this.statsBefore === null ? this.model.stats : statsSince(this.model.stats, this.statsBefore);
    if (sum(this.faultsHandled) !== s.gpuFaults || sum(this.faultsMigrated) + sum(this.faultsMapped) !== s.gpuFaults) {
      throw new InvariantError(`${this.runName()}: ${sum(this.faultsHandled)} faults handled per GPU, the model counted ${s.gpuFaults}`);
    }
    return {
      seed: this.opts.seed,
      profile: this.opts.profile.name,
      workload: this.opts.workload.name,
      policy: this.opts.decider.name,
      simTimeNs: Math.round(this.endNs - this.t0),
      accesses: this.accesses,
      gpuFaults: s.gpuFaults,
      gpuFaultsDropped: s.gpuFaultsDropped,
      gpuFaultsFatal: s.gpuFaultsFatal,
      cpuFaults: s.cpuFaults,
      migrations: { h2d: s.migrations.h2d, d2h: s.migrations.d2h, d2d: s.migrations.d2d, byTrigger: { ...s.migrationsByTrigger } },
      bytesMigrated: { ...s.bytesMigrated },
      evictions: s.evictions,
      queueEvictions: s.queueEvictions,
      queueRestores: s.queueRestores,
      unmaps: s.unmaps,
      thrashEvents: s.thrashEvents,
      vramFallbacks: s.vramFallbacks,
      policyFallbacks: this.opts.decider.fallbacks,
      counters: this.model.exitCounters.slice(this.exitCountersBefore),
      gpuFaultsByGpu: this.opts.profile.gpus.map((g, i) => ({
        gpu: `gpu${i}`,
        gpuId: g.id,
        handled: this.faultsHandled[i]!,
        migrated: this.faultsMigrated[i]!,
        mappedOnly: this.faultsMapped[i]!,
      })),
      gpuFaultsByEnd: { migrated: sum(this.faultsMigrated), mappedOnly: sum(this.faultsMapped) },
      cpuAccessesFatal: this.cpuAccessesFatal,
      calls: { ...this.calls },
      ioctlErrors: Object.fromEntries([...this.ioctlErrors].sort(([a], [b]) => (a < b ? -1 : 1)).map(([k, v]) => [k, Object.fromEntries([...v].sort(([a], [b]) => (a < b ? -1 : 1)))])),
      getAttr: this.getAttrAnswers,
      exits: { ...this.exits },
    };
  }
}

function sum(a: Float64Array): number {
  let n = 0;
  for (const x of a) n += x;
  return n;
}

/** Counters of `now` minus those of `before`, field by field (nested counts too). */
function statsSince(now: SvmStats, before: SvmStats): SvmStats {
  const diff = (a: Record<string, unknown>, b: Record<string, unknown>): Record<string, unknown> =>
    Object.fromEntries(
      Object.entries(a).map(([k, v]) => [k, typeof v === "number" ? v - (b[k] as number) : diff(v as Record<string, unknown>, b[k] as Record<string, unknown>)]),
    );
  return diff(now as unknown as Record<string, unknown>, before as unknown as Record<string, unknown>) as unknown as SvmStats;
}

/**
 * Zipf(s) rank in [0, n) from a uniform u, by inverting the continuous power law
 * (an approximation of the discrete distribution, O(1) and table-free).
 */
export function zipfRank(u: number, n: number, s: number): number {
  let x: number;
  if (Math.abs(s - 1) < 1e-9) x = n ** u;
  else {
    const e = 1 - s;
    x = ((n ** e - 1) * u + 1) ** (1 / e);
  }
  const r = Math.floor(x) - 1;
  return r < 0 ? 0 : r >= n ? n - 1 : r;
}
