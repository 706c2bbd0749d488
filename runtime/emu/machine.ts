/**
 * An EMULATED machine: the GPUs of a machine profile (runtime/sim/profile.ts) behind the
 * simulator's SVM model (runtime/svm/model.ts), with the kernel parts around it that a
 * /dev/kfd user sees: a clock, the SVM workers, the SMI event clients of kfd_smi_events.c,
 * and workloads run as the emulated KFD process. No hardware is touched; everything this
 * produces says it is emulated (`emulated: true` and the profile name).
 *
 * Contracts:
 * - The model is really driven: SET_ATTR/GET_ATTR, faults, migrations and VRAM accounting
 *   are the model's; the emulator adds only bookkeeping the model has no notion of.
 * - Time is the model's simulated time (ns): ioctls run at `nowNs` and move it to their
 *   completion; a workload starts at `nowNs` and moves it to its end. The kernel workers
 *   the model schedules (restore_work, deferred_list) run to completion before the ioctl
 *   that scheduled them returns, the clock moving to their due time.
 * - SMI events go to the clients of the event's device, filtered as kfd_smi_ev_enabled does
 *   (mask bit, own pid or device-wide, ALL_PROCESS only with CAP_SYS_ADMIN), into a bounded
 *   fifo of SMI_FIFO_bytes per client; an event that does not fit is dropped and counted.
 * - While a workload runs, the emulated machine waits for its readers: the lines of one
 *   engine event are staged and enter the fifos in order as readers make room, and the
 *   next event waits until they are all in. A client that has not read for
 *   EMU_READER_WAIT_MAX_ms is stalled: nothing waits for it until it reads again, and its
 *   events are dropped like on the kernel. A reader that keeps up loses nothing.
 */
import { ConfigError, InvariantError, UsageError } from "../errors.ts";
import { type MigrationDecider, nativeKernelDefault } from "../policy/contracts/migration.ts";
import { CostModel } from "../sim/cost.ts";
import { runSimAsync, type SimResult } from "../sim/engine.ts";
import type { MachineProfile } from "../sim/profile.ts";
import type { Workload } from "../sim/workload.ts";
import { SMI_ALL_GPUS, SvmModel } from "../svm/model.ts";

/** The kernel's per-client kfifo size (MAX_KFIFO_SIZE in kfd_smi_events.c), bytes. */
export const SMI_FIFO_bytes = 1024;
/** Most SMI lines staged while a workload runs; beyond, lines go straight to the fifos. */
export const EMU_SMI_STAGED_MAX_lines = 1 << 20;
/** Longest wall-clock wait for a reader per pause, ms; then the workload goes on (and drops). */
export const EMU_READER_WAIT_MAX_ms = 1000;
/** Most SMI clients open at once (fds the emulator hands out). */
export const SMI_CLIENTS_MAX = 64;
/** Pid of the emulated KFD process unless the caller gives one (the workloads' default pid). */
export const EMU_PID_DEFAULT = 4242;
/** Task name of the emulated KFD process (the kernel's comm, at most 15 characters). */
export const EMU_TASK_NAME_DEFAULT = "svmrt";
/** Seed of the model's invariant messages; the native default decider draws no numbers. */
export const EMU_SEED_DEFAULT = 1;
/**
 * Slice of wall time over which a workload's duty cap (EmuMachineOptions.dutyMax) holds, ms:
 * a paced run computes for at most dutyMax of each slice, then sleeps the rest.
 */
export const EMU_DUTY_SLICE_ms = 50;

/** SMI event ids whose payload starts `ns -pid` (kfd-uapi.md). */
const SMI_ID_PROCESS_EVENT_FIRST = 5;
const SMI_ID_PROCESS_EVENT_LAST = 11;
const SMI_ID_VMFAULT = 1;
const SMI_ID_PROCESS_START = 12;
const SMI_ID_PROCESS_END = 13;
/** KFD_SMI_EVENT_ALL_PROCESS as a mask bit. */
const SMI_MASK_ALL_PROCESS = 1n << 63n;

/** A workload run stopped by its AbortSignal. */
export class EmuWorkloadAborted extends Error {
  override name = "EmuWorkloadAborted";
  constructor() {
    super("emulated workload stopped");
  }
}

/** One SMI event fd of the emulated kernel (struct kfd_smi_client). */
export class EmuSmiClient {
  /** Enabled events, bit i-1 for event i (written through the fd). */
  events = 0n;
  readonly fifo = new Uint8Array(SMI_FIFO_bytes);
  length = 0;
  /** Events dropped because the fifo was full. */
  dropped = 0;
  /** Events delivered into the fifo. */
  delivered = 0;
  open = true;
  /** Did not read within the wait bound: workloads no longer pause for it (until it reads). */
  stalled = false;
  constructor(
    readonly gpuId: number,
    /** Pid of the process that opened it. */
    readonly pid: number,
    /** The opener had CAP_SYS_ADMIN (may see every process with ALL_PROCESS). */
    readonly suser: boolean,
  ) {}
}

export interface EmuMachineOptions {
  profile: MachineProfile;
  /** Migration decisions; default: the kernel's behaviour, natively. */
  decider?: MigrationDecider;
  seed?: number;
  /** Longest wait for a full reader, ms (default EMU_READER_WAIT_MAX_ms). */
  readerWaitMax_ms?: number;
  /**
   * Most share of wall time a workload run may compute, in (0, 1] (default 1: as fast as it
   * can): the run sleeps between slices of EMU_DUTY_SLICE_ms so that its CPU use is steady
   * and bounded (the agent's emulated SVM demo must not take the cores it serves from).
   */
  dutyMax?: number;
}

const encoder = new TextEncoder();

/** The pid an SMI line is about (0 = device-wide), as the kernel passes it to kfd_smi_event_add. */
function smiLinePid(id: number, line: string): number {
  const sp = line.indexOf(" ");
  if (id >= SMI_ID_PROCESS_EVENT_FIRST && id <= SMI_ID_PROCESS_EVENT_LAST) {
    const m = / -(\d+)/.exec(line.slice(sp));
    return m === null ? 0 : Number(m[1]);
  }
  if (id === SMI_ID_VMFAULT) return Number.parseInt(line.slice(sp + 1, line.indexOf(":", sp)), 16);
  if (id === SMI_ID_PROCESS_START || id === SMI_ID_PROCESS_END) return Number.parseInt(line.slice(sp + 1), 16);
  return 0;
}

export class EmuMachine {
  readonly emulated = true as const;
  readonly profile: MachineProfile;
  readonly model: SvmModel;
  readonly decider: MigrationDecider;
  readonly seed: number;
  /** Simulated time, ns. */
  nowNs = 0;
  private readonly clients = new Set<EmuSmiClient>();
  /** Workload runs in progress: their SMI lines are staged (smiDeliver). */
  private pacing = 0;
  private readonly staged: { line: string; gpuId: number }[] = [];
  private stagedHead = 0;
  /** The clients that kept the last staged line out. */
  private blockedBy: EmuSmiClient[] = [];
  private waiters: (() => void)[] = [];
  /** SMI lines the model produced, delivered or not. */
  smiLines = 0;
  /** Events dropped on full client fifos, every client counted (closed ones too). */
  smiDropped = 0;
  private readonly readerWaitMax_ms: number;
  private readonly dutyMax: number;
  /** When the current computing slice began (ms, performance.now; reader waits excluded). */
  private dutySliceStart = 0;
  /** Sleeps the duty cap made (every run of this machine). */
  dutySleeps = 0;

  constructor(opts: EmuMachineOptions) {
    const duty = opts.dutyMax ?? 1;
    if (!(duty > 0 && duty <= 1)) throw new UsageError(`dutyMax must be in (0, 1], got ${duty}`);
    this.dutyMax = duty;
    this.profile = opts.profile;
    this.decider = opts.decider ?? nativeKernelDefault();
    this.seed = opts.seed ?? EMU_SEED_DEFAULT;
    this.readerWaitMax_ms = opts.readerWaitMax_ms ?? EMU_READER_WAIT_MAX_ms;
    this.model = new SvmModel({
      gpus: opts.profile.gpus,
      decider: this.decider,
      costs: new CostModel(opts.profile.cost, opts.profile.gpus),
      seed: this.seed,
      sink: (line, gpuId) => this.smiDeliver(line, gpuId),
      thrashWindowNs: opts.profile.cost.thrash_window_ns,
      deferredDelayNs: opts.profile.cost.deferred_work_ns,
    });
  }

  /** Move the clock to `t` when it is later. */
  advance(t: number): void {
    if (t > this.nowNs) this.nowNs = t;
  }

  /**
   * Run the work the model scheduled (restore_work, deferred_list) in due order, the clock
   * following; until none is left. While a workload runs its engine runs that work (in
   * simulated time), so this does nothing; ioctls made meanwhile act at the run's start time.
   */
  settle(): void {
    if (this.pacing > 0) return;
    for (let w = this.model.takeWork(); w.length > 0; w = this.model.takeWork()) {
      const work = [...w].sort((a, b) => a.dueNs - b.dueNs);
      for (const k of work) {
        this.advance(k.dueNs);
        if (k.kind === "restore") this.advance(this.model.restoreWork(k.pid, this.nowNs));
        else this.model.deferredWork(k.pid, this.nowNs);
      }
    }
  }

  // ---- SMI clients (kfd_smi_events.c) -----------------------------------------------

  /** A new client of `gpuId` for process `pid`. @returns undefined when SMI_CLIENTS_MAX are open. */
  smiClientOpen(gpuId: number, pid: number, suser: boolean): EmuSmiClient | undefined {
    if (this.clients.size >= SMI_CLIENTS_MAX) return undefined;
    const c = new EmuSmiClient(gpuId, pid, suser);
    this.clients.add(c);
    return c;
  }

  smiClientClose(c: EmuSmiClient): void {
    c.open = false;
    this.clients.delete(c);
    this.wake();
  }

  /** read(2) on a client: at most buf.length bytes from the fifo head. */
  smiClientRead(c: EmuSmiClient, buf: Uint8Array): number {
    const n = Math.min(c.length, buf.length);
    buf.set(c.fifo.subarray(0, n));
    c.fifo.copyWithin(0, n, c.length);
    c.length -= n;
    if (n > 0) {
      c.stalled = false;
      this.wake();
    }
    return n;
  }

  /**
   * kfd_smi_event_add for a line of the model. While a workload runs, lines are staged and
   * enter the fifos between two engine events, in order, as fast as readers make room
   * (backpressure); otherwise, and past EMU_SMI_STAGED_MAX_lines, they go in at once.
   */
  private smiDeliver(line: string, gpuId: number): void {
    this.smiLines++;
    if (this.clients.size === 0) return;
    if (this.pacing > 0 && this.staged.length - this.stagedHead < EMU_SMI_STAGED_MAX_lines) {
      this.staged.push({ line, gpuId });
      return;
    }
    this.smiPut(line, gpuId, false);
  }

  /**
   * One line into the fifo of every client of `gpuId` (SMI_ALL_GPUS: of every GPU) that
   * kfd_smi_ev_enabled lets it through to; a full fifo drops it (kernel: "no space left",
   * silently). With `wait`, delivers nothing and returns false when a client that is not
   * stalled lacks room, remembering it in `blockedBy`.
   */
  private smiPut(line: string, gpuId: number, wait: boolean): boolean {
    const sp = line.indexOf(" ");
    const id = Number.parseInt(line.slice(0, sp), 16);
    if (!(id >= 1 && id <= 64)) throw new InvariantError(`SMI line without an event id: '${line}'`);
    const bit = 1n << BigInt(id - 1);
    const pid = smiLinePid(id, line);
    const targets: EmuSmiClient[] = [];
    for (const c of this.clients) {
      if (gpuId !== SMI_ALL_GPUS && c.gpuId !== gpuId) continue;
      if ((c.events & bit) === 0n) continue;
      if (pid !== 0 && c.pid !== pid && !(c.suser && (c.events & SMI_MASK_ALL_PROCESS) !== 0n)) continue;
      targets.push(c);
    }
    if (targets.length === 0) return true;
    const bytes = encoder.encode(`${line}\n`);
    if (wait) {
      this.blockedBy = targets.filter((c) => !c.stalled && SMI_FIFO_bytes - c.length < bytes.length);
      if (this.blockedBy.length > 0) return false;
    }
    for (const c of targets) {
      if (SMI_FIFO_bytes - c.length < bytes.length) {
        c.dropped++;
        this.smiDropped++;
        continue;
      }
      c.fifo.set(bytes, c.length);
      c.length += bytes.length;
      c.delivered++;
    }
    return true;
  }

  /** Staged lines into the fifos, in order, while they fit (all of them with `force`); true when none is left. */
  private stagedFlush(force: boolean): boolean {
    const st = this.staged;
    while (this.stagedHead < st.length) {
      const s = st[this.stagedHead]!;
      if (!this.smiPut(s.line, s.gpuId, !force)) return false;
      this.stagedHead++;
    }
    st.length = 0;
    this.stagedHead = 0;
    return true;
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /**
   * undefined when every staged line is in the fifos; else a promise that resolves when a
   * client reads or closes, or after readerWaitMax_ms, when the clients still in the way
   * become stalled.
   */
  /**
   * The duty cap: once the current slice has computed for dutyMax × EMU_DUTY_SLICE_ms, a
   * sleep long enough that computing stays at most dutyMax of wall time.
   */
  private dutyPause(): Promise<void> | undefined {
    // One clock read per engine event: an event costs microseconds, the read tens of ns.
    if (this.dutyMax >= 1) return undefined;
    const busy = performance.now() - this.dutySliceStart;
    if (busy < this.dutyMax * EMU_DUTY_SLICE_ms) return undefined;
    const restMs = (busy * (1 - this.dutyMax)) / this.dutyMax;
    this.dutySleeps++;
    return new Promise<void>((resolve) =>
      setTimeout(() => {
        this.dutySliceStart = performance.now();
        resolve();
      }, restMs),
    );
  }

  private backpressure(signal: AbortSignal | undefined): Promise<void> | undefined {
    if (signal?.aborted) {
      this.stagedFlush(true);
      return Promise.reject(new EmuWorkloadAborted());
    }
    if (this.stagedFlush(false)) return undefined;
    const blocked = this.blockedBy;
    // Waiting for readers is not computing: the duty slice does not count it.
    const waitStart = performance.now();
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        for (const c of blocked) c.stalled = true;
        done();
      }, this.readerWaitMax_ms);
      // Called by the timer or by a read (wake), possibly both: counts the wait once.
      let waited = false;
      const done = (): void => {
        if (waited) return;
        waited = true;
        clearTimeout(timer);
        this.dutySliceStart += performance.now() - waitStart;
        resolve();
      };
      this.waiters.push(done);
    });
  }

  // ---- workloads -----------------------------------------------------------------------

  /**
   * Run `workload` on this machine from `nowNs`, its first process being the emulated KFD
   * process `pid` (which must exist: open /dev/kfd first); other processes of the workload
   * are created and destroyed by the run. Moves the clock to the run's end.
   * `signal` stops the run between two events: it rejects with EmuWorkloadAborted, and the
   * workload's other processes exit (the KFD process keeps what the run left in it).
   * @throws ConfigError when another workload process has the pid `pid`.
   */
  async workloadRun(workload: Workload, pid: number, signal?: AbortSignal): Promise<SimResult> {
    const first = workload.processes[0]!.pid;
    if (first !== pid && workload.processes.some((p) => p.pid === pid)) {
      throw new ConfigError({ file: workload.name, line: 1, col: 1 }, "processes", `no process with pid ${pid}: the emulated KFD process runs the first one`);
    }
    const re = (p: number): number => (p === first ? pid : p);
    const w: Workload = {
      ...workload,
      processes: workload.processes.map((p) => ({ ...p, pid: re(p.pid) })),
      allocs: workload.allocs.map((a) => ({ ...a, pid: re(a.pid) })),
      streams: workload.streams.map((s) => ({ ...s, pid: re(s.pid) })),
      hints: workload.hints.map((h) => ({ ...h, pid: re(h.pid) })),
    };
    const startNs = this.nowNs;
    const others = w.processes.map((p) => p.pid).filter((p) => p !== pid);
    const kfdProcess = this.model.proc(pid);
    const queuesBefore = kfdProcess.userQueues;
    let r: SimResult;
    this.pacing++;
    this.dutySliceStart = performance.now();
    try {
      r = await runSimAsync({
        profile: this.profile,
        workload: w,
        decider: this.decider,
        seed: this.seed,
        model: this.model,
        startNs,
        pause: () => this.backpressure(signal) ?? this.dutyPause(),
      });
      // The last event's lines, and the exits of the workload's other processes.
      for (let wait = this.backpressure(signal); wait !== undefined; wait = this.backpressure(signal)) await wait;
    } catch (e) {
      this.stagedFlush(true);
      kfdProcess.userQueues = queuesBefore; // the run's queues are gone with it
      for (const o of others) if (this.model.processes.has(o)) this.advance(this.model.processDestroy(o, this.nowNs));
      throw e;
    } finally {
      this.pacing--;
    }
    this.advance(startNs + r.simTimeNs);
    this.settle();
    return r;
  }
}
