/**
 * The amdsmi session manager: the only owner of the library's init and shutdown
 * (reference/amdsmi.md, gpu-agent's smi_session, DESIGN.md "Invariants").
 *
 * A session is a counted reference on the initialised library. Modes:
 * - persistent: the manager holds a reference of its own (a "pin") from `start()` on, so
 *   sessions never init; handles stay valid for the whole init cycle;
 * - lazy: no pin; the first session inits (0→1), the last close shuts down (1→0);
 * - linger: lazy, but the last close hands its reference to a linger pin that is released
 *   `graceMs` after the last session closed, unless a new session opened meanwhile.
 *
 * The count, the pin and the lock live in a SharedArrayBuffer, so every Bun Worker of the
 * process that builds a manager over the same buffer (and its own binding of the same
 * library: one process, one library state) shares one exact count. The lock guards only the
 * count's 0↔1 transitions and the init/shutdown calls, as in gpu-agent's final design:
 * opening and closing a session while the count is above one is a compare-and-swap, library
 * reads run unlocked and in parallel, and a nested session on the same thread never waits.
 *
 * Invariants (asserted; a violation is an InvariantError, i.e. a bug):
 * - at every lock boundary, count 0 ⇔ library not initialised;
 * - init only on 0→1, shutdown only on 1→0, one init in flight at most;
 * - a failed init leaves the count at 0; the next open retries;
 * - a library call happens only inside an open session (SmiSession is the only way to
 *   reach the library; `calls outside` is counted for tests);
 * - a handle never outlives its session: a GPU resolved in a closed session is an error.
 */
import { assert, InvariantError, SmiError } from "../errors.ts";
import { SESSION_MODES, type SessionMode } from "../policy/contracts/session.ts";
import type {
  MemoryKind,
  SmiActivity,
  SmiEcc,
  SmiGpuStatic,
  SmiHandle,
  SmiLibrary,
  SmiLink,
  SmiMemory,
  SmiPcie,
  SmiPower,
  SmiXgmi,
  TemperatureSensor,
} from "./library.ts";

/** Longest a thread waits for the transition lock (an init in another thread), ms. */
export const SESSION_LOCK_WAIT_MAX_ms = 120_000;
/** Longest teardown waits for open sessions to close before giving up on the last shutdown, ms. */
export const TEARDOWN_WAIT_MAX_ms = 10_000;
/** A linger check that could not get the lock (a hung init elsewhere) runs again after this, ms. */
export const SESSION_LINGER_RETRY_ms = 1_000;
/** Poll period while teardown waits for sessions, ms. */
const TEARDOWN_POLL_ms = 5;
/** Most GPUs a session enumerates. */
export const SESSION_GPUS_MAX = 256;

/** Slots of the shared Int32Array. */
const S = {
  LOCK: 0,
  /** References on the initialised library: open sessions plus the pin. */
  COUNT: 1,
  INITIALISED: 2,
  /** Init cycle number, bumped on every successful init. */
  GENERATION: 3,
  INITS: 4,
  SHUTDOWNS: 5,
  INIT_FAILURES: 6,
  MODE: 7,
  MODE_REQUESTED: 8,
  GRACE_MS: 9,
  GRACE_MS_REQUESTED: 10,
  /** 0 none, 1 persistent, 2 linger. */
  PIN: 11,
  USERS: 12,
  INIT_IN_FLIGHT: 13,
  CLOSING: 14,
  OPENS: 15,
  CALLS_OUTSIDE: 16,
  INIT_BUSY: 17,
  INIT_ATTEMPTS: 18,
  MODE_SWITCHES: 19,
} as const;
const INT_SLOTS = 24;
/** Float64 slots, after the ints. */
const F = { LINGER_DEADLINE_MS: 0, LAST_CLOSE_MS: 1, INIT_LATENCY_MS: 2, SHUTDOWN_LATENCY_MS: 3 } as const;
const F64_SLOTS = 4;
const PIN_NONE = 0;
const PIN_PERSISTENT = 1;
const PIN_LINGER = 2;
const NO_REQUEST = -1;

export const SESSION_SHARED_bytes = INT_SLOTS * 4 + F64_SLOTS * 8;

const modeCode = (m: SessionMode): number => SESSION_MODES.indexOf(m);

/** Counters and state of the shared session count, for metrics and tests. */
export interface SessionStats {
  mode: SessionMode;
  /** Open user sessions (not the pin). */
  openSessions: number;
  /** References on the library: open sessions plus a pin. */
  count: number;
  initialised: boolean;
  generation: number;
  inits: number;
  shutdowns: number;
  initFailures: number;
  initAttempts: number;
  initBusy: number;
  opens: number;
  modeSwitches: number;
  /** Library calls attempted outside an open session (always 0 unless svmrt has a bug). */
  callsOutside: number;
  pinned: "none" | "persistent" | "linger";
  initLatencyMs: number;
  shutdownLatencyMs: number;
  lastCloseMs: number;
  closing: boolean;
}

export interface SessionManagerOptions {
  library: SmiLibrary;
  /** From `sessionSharedCreate`; every manager of the process uses the same one. */
  shared: SharedArrayBuffer;
  /** Receives one line per mode change, init failure, teardown step. */
  log?: (line: string) => void;
  /** ms clock (Date.now by default); tests pass their own. */
  clock?: () => number;
  /** Longest this manager waits for the transition lock, ms (SESSION_LOCK_WAIT_MAX_ms by default; tests pass a short one). */
  lockWaitMs?: number;
}

/** The shared state for `mode` (linger needs `graceMs`). */
export function sessionSharedCreate(mode: SessionMode, graceMs = 0): SharedArrayBuffer {
  if (mode === "linger") assert(Number.isInteger(graceMs) && graceMs > 0, "linger needs a positive integer grace");
  const sab = new SharedArrayBuffer(SESSION_SHARED_bytes);
  const a = new Int32Array(sab, 0, INT_SLOTS);
  a[S.MODE] = modeCode(mode);
  a[S.MODE_REQUESTED] = NO_REQUEST;
  a[S.GRACE_MS] = graceMs;
  return sab;
}

/** Stats read straight from a shared buffer (the agent's main thread, which holds no library). */
export function sessionStatsOf(shared: SharedArrayBuffer): SessionStats {
  const a = new Int32Array(shared, 0, INT_SLOTS);
  const f = new Float64Array(shared, INT_SLOTS * 4, F64_SLOTS);
  const pin = Atomics.load(a, S.PIN);
  return {
    mode: SESSION_MODES[Atomics.load(a, S.MODE)]!,
    openSessions: Atomics.load(a, S.USERS),
    count: Atomics.load(a, S.COUNT),
    initialised: Atomics.load(a, S.INITIALISED) === 1,
    generation: Atomics.load(a, S.GENERATION),
    inits: Atomics.load(a, S.INITS),
    shutdowns: Atomics.load(a, S.SHUTDOWNS),
    initFailures: Atomics.load(a, S.INIT_FAILURES),
    initAttempts: Atomics.load(a, S.INIT_ATTEMPTS),
    initBusy: Atomics.load(a, S.INIT_BUSY),
    opens: Atomics.load(a, S.OPENS),
    modeSwitches: Atomics.load(a, S.MODE_SWITCHES),
    callsOutside: Atomics.load(a, S.CALLS_OUTSIDE),
    pinned: pin === PIN_PERSISTENT ? "persistent" : pin === PIN_LINGER ? "linger" : "none",
    initLatencyMs: f[F.INIT_LATENCY_MS]!,
    shutdownLatencyMs: f[F.SHUTDOWN_LATENCY_MS]!,
    lastCloseMs: f[F.LAST_CLOSE_MS]!,
    closing: Atomics.load(a, S.CLOSING) === 1,
  };
}

/**
 * Ask for a mode from any thread (the agent's main thread after a SessionPolicy decision).
 * The switch happens at the next quiescent point (no open session), in a thread that holds
 * the library. `graceMs` is for linger only.
 */
export function sessionModeRequest(shared: SharedArrayBuffer, mode: SessionMode, graceMs = 0): void {
  const a = new Int32Array(shared, 0, INT_SLOTS);
  if (mode === "linger") assert(Number.isInteger(graceMs) && graceMs > 0, "linger needs a positive integer grace");
  Atomics.store(a, S.GRACE_MS_REQUESTED, graceMs);
  Atomics.store(a, S.MODE_REQUESTED, modeCode(mode));
}

/** Mark teardown begun: new sessions are refused in every thread. */
export function sessionClosingSet(shared: SharedArrayBuffer): void {
  Atomics.store(new Int32Array(shared, 0, INT_SLOTS), S.CLOSING, 1);
}

/** The library is being torn down: no new session. */
export class SessionClosedError extends SmiError {
  constructor() {
    super("session open", "SHUTTING_DOWN", -1, "the agent is shutting down; no new amdsmi session");
  }
}

/** A GPU reference used outside the session that resolved it. */
export class SmiStaleHandleError extends SmiError {
  constructor(fn: string, uuid: string) {
    super(fn, "STALE_HANDLE", -1, `GPU ${uuid} was resolved in a session that is closed; resolve it again in the current session`);
  }
}

/** A GPU resolved inside one session. Valid only while that session is open. */
export interface SmiGpu {
  readonly uuid: string;
  readonly handle: SmiHandle;
  readonly session: SmiSession;
}

/**
 * Per-thread handle of the shared session count. Build one per thread over the same shared
 * buffer and a binding of the same library.
 */
export class SmiSessionManager implements Disposable {
  readonly library: SmiLibrary;
  readonly shared: SharedArrayBuffer;
  private readonly a: Int32Array;
  private readonly f: Float64Array;
  private readonly log: (line: string) => void;
  private readonly clock: () => number;
  private readonly lockWaitMs: number;
  private lingerTimer: ReturnType<typeof setTimeout> | undefined;
  /** uuid → handle, valid for `handleGeneration` only. */
  private handles = new Map<string, SmiHandle>();
  private handleGeneration = -1;
  private readonly stoppers = new Set<() => void>();
  /** A switch to persistent waits for its pin's init (logged once per run of failures). */
  private pinWaiting = false;

  constructor(opts: SessionManagerOptions) {
    this.library = opts.library;
    this.shared = opts.shared;
    this.a = new Int32Array(opts.shared, 0, INT_SLOTS);
    this.f = new Float64Array(opts.shared, INT_SLOTS * 4, F64_SLOTS);
    this.log = opts.log ?? (() => {});
    this.clock = opts.clock ?? Date.now;
    this.lockWaitMs = opts.lockWaitMs ?? SESSION_LOCK_WAIT_MAX_ms;
    assert(this.lockWaitMs > 0 && this.lockWaitMs <= SESSION_LOCK_WAIT_MAX_ms, `lockWaitMs must be 1..${SESSION_LOCK_WAIT_MAX_ms}, got ${this.lockWaitMs}`);
  }

  get mode(): SessionMode {
    return SESSION_MODES[Atomics.load(this.a, S.MODE)]!;
  }

  stats(): SessionStats {
    return sessionStatsOf(this.shared);
  }

  /**
   * Apply the configured mode: in persistent mode take the pin (the first init happens
   * here). Logs the mode. Call once per process (any one thread).
   * @throws SmiError when the persistent init fails (the count stays 0).
   */
  start(reason = "configured"): void {
    const m = this.mode;
    this.log(`amdsmi session mode ${m}${m === "linger" ? ` (grace ${Atomics.load(this.a, S.GRACE_MS)} ms)` : ""}: ${reason}`);
    if (m === "persistent") this.locked(() => this.pinTake(PIN_PERSISTENT));
  }

  /**
   * Open a session: the library is initialised while it is open. Nested sessions on one
   * thread are fine. `using s = smi.open()` (or `await`-ed, it does not matter).
   * @throws SessionClosedError during teardown; SmiError when the init it needed failed.
   */
  open(): SmiSession {
    if (Atomics.load(this.a, S.CLOSING) === 1) throw new SessionClosedError();
    // A pin that failed to init was this session's init too (the count was 0): not tried twice.
    const pinError = this.pendingApplyTry();
    if (pinError !== undefined) throw pinError;
    // Fast path: the library is up (count > 0): take a reference with one CAS.
    for (;;) {
      const c = Atomics.load(this.a, S.COUNT);
      if (c === 0) break;
      if (Atomics.compareExchange(this.a, S.COUNT, c, c + 1) !== c) continue;
      // Teardown may have begun since the check above; it waits for every reference, so give
      // this one back rather than open a session under it.
      if (Atomics.load(this.a, S.CLOSING) === 1) {
        this.referenceDrop();
        throw new SessionClosedError();
      }
      return this.sessionMade();
    }
    this.locked(() => {
      // Checked under the lock, which orders this with teardown's last shutdown: never an init after it.
      if (Atomics.load(this.a, S.CLOSING) === 1) throw new SessionClosedError();
      const c = Atomics.load(this.a, S.COUNT);
      if (c === 0) this.libraryInit(1);
      else Atomics.add(this.a, S.COUNT, 1);
    });
    return this.sessionMade();
  }

  private sessionMade(): SmiSession {
    Atomics.add(this.a, S.USERS, 1);
    Atomics.add(this.a, S.OPENS, 1);
    assert(Atomics.load(this.a, S.INITIALISED) === 1, "a session opened on an uninitialised library");
    const gen = Atomics.load(this.a, S.GENERATION);
    if (gen !== this.handleGeneration) {
      this.handles.clear();
      this.handleGeneration = gen;
    }
    return new SmiSession(this, gen);
  }

  /**
   * @internal SmiSession.close. Never throws but for an InvariantError (a bug): a failure here
   * (the lock held past its wait by a hung init elsewhere) is logged, and the session's
   * reference is dropped all the same.
   */
  sessionClosed(): void {
    const users = Atomics.sub(this.a, S.USERS, 1) - 1;
    assert(users >= 0, "more session closes than opens");
    this.f[F.LAST_CLOSE_MS] = this.clock();
    try {
      if (users === 0 && this.mode === "linger" && Atomics.load(this.a, S.CLOSING) === 0) {
        // The last session out hands its reference to the linger pin (or refreshes it).
        let handedOver = false;
        try {
          handedOver = this.locked(() => {
            if (Atomics.load(this.a, S.USERS) !== 0 || this.mode !== "linger") return false;
            this.f[F.LINGER_DEADLINE_MS] = this.clock() + Atomics.load(this.a, S.GRACE_MS);
            if (Atomics.load(this.a, S.PIN) === PIN_LINGER) return false; // already pinned: drop ours below
            Atomics.store(this.a, S.PIN, PIN_LINGER);
            return true;
          });
          this.lingerArm();
        } finally {
          // Also when the lock could not be had: the session is gone, so is its reference.
          if (!handedOver) this.referenceDrop();
        }
        if (handedOver) return;
      } else {
        this.referenceDrop();
      }
      if (users === 0) this.pendingApply();
    } catch (e) {
      if (e instanceof InvariantError) throw e;
      this.log(`amdsmi session close: ${(e as Error).message}`);
    }
  }

  /** Drop one reference; the 1→0 drop shuts the library down under the lock. */
  private referenceDrop(): void {
    for (;;) {
      const c = Atomics.load(this.a, S.COUNT);
      assert(c > 0, "reference dropped at count 0");
      if (c > 1) {
        if (Atomics.compareExchange(this.a, S.COUNT, c, c - 1) === c) return;
        continue;
      }
      const done = this.locked(() => {
        if (Atomics.compareExchange(this.a, S.COUNT, 1, 0) !== 1) return false;
        this.libraryShutDown();
        return true;
      });
      if (done) return;
    }
  }

  /** Drop one reference holding the lock; the 1→0 drop shuts the library down here. */
  private referenceDropHeld(): void {
    for (;;) {
      const c = Atomics.load(this.a, S.COUNT);
      assert(c > 0, "reference dropped at count 0");
      // Other threads move the count only between values above 0 without the lock.
      if (Atomics.compareExchange(this.a, S.COUNT, c, c - 1) !== c) continue;
      if (c === 1) this.libraryShutDown();
      return;
    }
  }

  /**
   * Arm this thread's linger timer for the shared deadline (or in `waitMs`). The timer never
   * throws: an uncaught throw would end a Worker. A check that fails (the lock held past its
   * wait) is logged and runs again SESSION_LINGER_RETRY_ms later.
   */
  private lingerArm(waitMs = Math.max(0, this.f[F.LINGER_DEADLINE_MS]! - this.clock())): void {
    if (this.lingerTimer !== undefined) clearTimeout(this.lingerTimer);
    this.lingerTimer = setTimeout(() => {
      this.lingerTimer = undefined;
      try {
        this.lingerCheck();
      } catch (e) {
        this.log(`amdsmi linger check failed: ${(e as Error).message}; it runs again in ${SESSION_LINGER_RETRY_ms} ms`);
        if (this.lingerTimer === undefined && Atomics.load(this.a, S.CLOSING) === 0) this.lingerArm(SESSION_LINGER_RETRY_ms);
      }
    }, waitMs);
  }

  /**
   * Release the linger pin if its deadline passed and no session is open; re-arm otherwise.
   * Runs on this thread's timer; tests may call it.
   */
  lingerCheck(): void {
    if (Atomics.load(this.a, S.PIN) !== PIN_LINGER) return;
    const now = this.clock();
    if (now < this.f[F.LINGER_DEADLINE_MS]!) {
      this.lingerArm();
      return;
    }
    this.locked(() => {
      if (Atomics.load(this.a, S.PIN) !== PIN_LINGER || this.clock() < this.f[F.LINGER_DEADLINE_MS]!) return;
      if (Atomics.load(this.a, S.USERS) !== 0) return; // the last of them re-pins on close
      // Pin and reference go together, in one critical section: never a pin gone and its reference left.
      Atomics.store(this.a, S.PIN, PIN_NONE);
      this.referenceDropHeld();
    });
  }

  /**
   * Apply a requested mode if one is pending, no session is open and teardown has not begun.
   * A switch to persistent whose pin cannot be taken (its init failed) is logged and stays
   * pending: the next open or maintenance call tries again; the mode is unchanged meanwhile.
   * @throws SmiError TIMEOUT when the lock stays held past the manager's lock wait.
   */
  pendingApply(): void {
    this.pendingApplyTry();
  }

  /** pendingApply; returns the init error of a persistent pin that could not be taken. */
  private pendingApplyTry(): Error | undefined {
    if (Atomics.load(this.a, S.MODE_REQUESTED) === NO_REQUEST) return undefined;
    if (Atomics.load(this.a, S.USERS) !== 0) return undefined;
    let pinFailure: { from: SessionMode; error: Error } | undefined;
    this.locked(() => {
      const req = Atomics.load(this.a, S.MODE_REQUESTED);
      if (req === NO_REQUEST || Atomics.load(this.a, S.USERS) !== 0) return;
      // During teardown no pin is taken (that would init after the last shutdown) nor moved.
      if (Atomics.load(this.a, S.CLOSING) === 1) return;
      const from = this.mode;
      const to = SESSION_MODES[req]!;
      const grace = Atomics.load(this.a, S.GRACE_MS_REQUESTED);
      const graceOld = Atomics.load(this.a, S.GRACE_MS);
      // A request made meanwhile stays for the next call.
      const consume = (): void => void Atomics.compareExchange(this.a, S.MODE_REQUESTED, req, NO_REQUEST);
      if (from === to && (to !== "linger" || grace === graceOld)) {
        consume();
        return;
      }
      const pin = Atomics.load(this.a, S.PIN);
      if (to === "persistent" && pin === PIN_NONE) {
        // The pin first: when its init fails, nothing is switched and the request stays.
        try {
          this.pinTake(PIN_PERSISTENT);
        } catch (e) {
          if (e instanceof InvariantError) throw e;
          pinFailure = { from, error: e as Error };
          return;
        }
      }
      consume();
      Atomics.store(this.a, S.MODE, req);
      Atomics.store(this.a, S.GRACE_MS, to === "linger" ? grace : 0);
      Atomics.add(this.a, S.MODE_SWITCHES, 1);
      this.log(`amdsmi session mode ${from} -> ${to}${to === "linger" ? ` (grace ${grace} ms)` : ""}`);
      if (to === "persistent") {
        if (pin === PIN_LINGER) Atomics.store(this.a, S.PIN, PIN_PERSISTENT);
      } else if (pin === PIN_PERSISTENT || (pin === PIN_LINGER && to === "lazy")) {
        if (to === "linger") {
          Atomics.store(this.a, S.PIN, PIN_LINGER);
          this.f[F.LINGER_DEADLINE_MS] = this.clock() + grace;
        } else {
          Atomics.store(this.a, S.PIN, PIN_NONE);
          this.referenceDropHeld();
        }
      }
    });
    if (pinFailure !== undefined) {
      // Once per run of failures in this thread; libraryInit logs every failed init.
      if (!this.pinWaiting) this.log(`amdsmi session mode ${pinFailure.from} -> persistent waits: its pin's init failed (${pinFailure.error.message}); retried at the next session or maintenance`);
      this.pinWaiting = true;
      return pinFailure.error;
    }
    this.pinWaiting = false;
    if (Atomics.load(this.a, S.PIN) === PIN_LINGER) this.lingerArm();
    return undefined;
  }

  /** Take a pin reference (under the lock). */
  private pinTake(pin: number): void {
    assert(Atomics.load(this.a, S.PIN) === PIN_NONE, "a second pin");
    if (Atomics.load(this.a, S.COUNT) === 0) this.libraryInit(1);
    else Atomics.add(this.a, S.COUNT, 1);
    Atomics.store(this.a, S.PIN, pin);
  }

  /** init on 0→1 (under the lock). A failure leaves the count at 0. */
  private libraryInit(count: number): void {
    assert(Atomics.load(this.a, S.COUNT) === 0, "init with references held");
    assert(Atomics.load(this.a, S.INITIALISED) === 0, "init of an initialised library");
    assert(Atomics.compareExchange(this.a, S.INIT_IN_FLIGHT, 0, 1) === 0, "two inits in flight");
    Atomics.add(this.a, S.INIT_ATTEMPTS, 1);
    const t0 = performance.now();
    try {
      this.library.init();
    } catch (e) {
      Atomics.add(this.a, S.INIT_FAILURES, 1);
      if (e instanceof SmiError && e.statusName === "BUSY") Atomics.add(this.a, S.INIT_BUSY, 1);
      this.log(`amdsmi init failed: ${(e as Error).message}; the next session retries`);
      throw e;
    } finally {
      Atomics.store(this.a, S.INIT_IN_FLIGHT, 0);
    }
    this.f[F.INIT_LATENCY_MS] = performance.now() - t0;
    Atomics.store(this.a, S.INITIALISED, 1);
    Atomics.add(this.a, S.GENERATION, 1);
    Atomics.add(this.a, S.INITS, 1);
    Atomics.store(this.a, S.COUNT, count);
  }

  /** shutdown on 1→0 (under the lock, count already 0). */
  private libraryShutDown(): void {
    assert(Atomics.load(this.a, S.COUNT) === 0, "shutdown with references held");
    assert(Atomics.load(this.a, S.INITIALISED) === 1, "shutdown of an uninitialised library");
    const t0 = performance.now();
    try {
      this.library.shutDown();
    } catch (e) {
      // The library is gone for us either way; say so and carry on uninitialised.
      this.log(`amdsmi shutdown failed: ${(e as Error).message}`);
    } finally {
      this.f[F.SHUTDOWN_LATENCY_MS] = performance.now() - t0;
      Atomics.store(this.a, S.INITIALISED, 0);
      Atomics.add(this.a, S.SHUTDOWNS, 1);
    }
  }

  /**
   * Run `fn` holding the transition lock, waiting for it until `deadline` (performance.now()
   * ms; the manager's lock wait from now by default).
   * @throws SessionLockTimeoutError when another thread holds it past the deadline.
   */
  private locked<T>(fn: () => T, deadline = performance.now() + this.lockWaitMs): T {
    const t0 = performance.now();
    while (Atomics.compareExchange(this.a, S.LOCK, 0, 1) !== 0) {
      const left = deadline - performance.now();
      if (left <= 0) throw new SessionLockTimeoutError(Math.round(performance.now() - t0));
      Atomics.wait(this.a, S.LOCK, 1, Math.min(left, 100));
    }
    try {
      const c = Atomics.load(this.a, S.COUNT);
      assert((c === 0) === (Atomics.load(this.a, S.INITIALISED) === 0), `count ${c} but library ${c === 0 ? "initialised" : "not initialised"}`);
      return fn();
    } finally {
      Atomics.store(this.a, S.LOCK, 0);
      Atomics.notify(this.a, S.LOCK, 1);
    }
  }

  /** @internal the handle of `uuid` in the current init cycle, resolved once per cycle per thread. */
  handleOf(uuid: string, generation: number): SmiHandle {
    assert(generation === this.handleGeneration, "handle cache of another init cycle");
    let h = this.handles.get(uuid);
    if (h === undefined) {
      h = this.library.gpuHandleFromUuid(uuid);
      this.handles.set(uuid, h);
    }
    return h;
  }

  /** @internal count a library call attempted outside a session, then fail it. */
  callOutside(fn: string): never {
    Atomics.add(this.a, S.CALLS_OUTSIDE, 1);
    throw new InvariantOutside(fn);
  }

  /** Register a reader/watcher to stop before the last shutdown. Returns its unregistration. */
  onTeardown(stop: () => void): () => void {
    this.stoppers.add(stop);
    return () => this.stoppers.delete(stop);
  }

  /**
   * Teardown in order: refuse new sessions, stop every registered reader, wait (at most
   * `waitMs`) for open sessions to close, release the pin, which makes the last shutdown.
   * Returns whether the library was shut down; false when sessions stayed open (a hung read)
   * or the lock stayed held by another thread (a hung init) for `waitMs`: the library is then
   * left to the process exit, never shut down under a reader. Takes about `waitMs` at most.
   */
  async teardown(waitMs = TEARDOWN_WAIT_MAX_ms): Promise<{ shutDown: boolean; openSessions: number }> {
    sessionClosingSet(this.shared);
    if (this.lingerTimer !== undefined) clearTimeout(this.lingerTimer);
    this.lingerTimer = undefined;
    for (const stop of this.stoppers) {
      try {
        stop();
      } catch (e) {
        this.log(`teardown: a reader failed to stop: ${(e as Error).message}`);
      }
    }
    this.stoppers.clear();
    const deadline = performance.now() + waitMs;
    for (;;) {
      // Wait on references, not only on open sessions: a session another thread is opening or
      // closing right now holds one while USERS no longer (or not yet) counts it.
      let held: number;
      try {
        held = this.locked(() => {
          const pin = Atomics.load(this.a, S.PIN);
          const others = Atomics.load(this.a, S.COUNT) - (pin === PIN_NONE ? 0 : 1);
          const users = Atomics.load(this.a, S.USERS);
          if (others > 0 || users > 0) return Math.max(others, users);
          // Only the pin is left: release it and make the last shutdown in this critical section.
          // The CAS fails when an open took a reference meanwhile (it then backs out: CLOSING).
          if (pin !== PIN_NONE) {
            if (Atomics.compareExchange(this.a, S.COUNT, 1, 0) !== 1) return 1;
            Atomics.store(this.a, S.PIN, PIN_NONE);
            this.libraryShutDown();
          }
          return 0;
        }, deadline);
      } catch (e) {
        if (!(e instanceof SessionLockTimeoutError)) throw e;
        // Within waitMs, as promised: the lock's holder (an init or shutdown) is hung.
        this.log(`teardown: another thread held the amdsmi init/shutdown lock for the whole ${waitMs} ms (a hung init or shutdown); amdsmi is left to the process exit`);
        return { shutDown: false, openSessions: Atomics.load(this.a, S.USERS) };
      }
      if (held === 0) break;
      if (performance.now() >= deadline) {
        this.log(`teardown: ${held} session(s) still open after ${waitMs} ms; amdsmi is left to the process exit`);
        return { shutDown: false, openSessions: held };
      }
      await Bun.sleep(TEARDOWN_POLL_ms);
    }
    assert(Atomics.load(this.a, S.COUNT) === 0, "references left after teardown");
    this.log("teardown: amdsmi shut down");
    return { shutDown: true, openSessions: 0 };
  }

  [Symbol.dispose](): void {
    if (this.lingerTimer !== undefined) clearTimeout(this.lingerTimer);
    this.lingerTimer = undefined;
  }
}

/** The transition lock stayed held by another thread (a hung init or shutdown) past the wait. */
class SessionLockTimeoutError extends SmiError {
  constructor(waitedMs: number) {
    super("session lock", "TIMEOUT", 8, `another thread held the amdsmi init/shutdown lock for ${waitedMs} ms (an init or shutdown hung in the driver?)`);
  }
}

/** A library call attempted outside an open session: a bug in the caller. */
class InvariantOutside extends SmiError {
  constructor(fn: string) {
    super(fn, "NO_SESSION", -1, "amdsmi called outside an open session (a bug in svmrt)");
  }
}

/**
 * One open session: the only way to reach the library. Close it (or `using`) when done;
 * GPUs it resolved are invalid afterwards.
 */
export class SmiSession implements Disposable {
  private open = true;
  /** What `gpus()` read of each GPU: `static()` answers from it within this session. */
  private readonly statics = new Map<SmiHandle, SmiGpuStatic>();

  constructor(
    private readonly manager: SmiSessionManager,
    /** The init cycle this session belongs to. */
    readonly generation: number,
  ) {}

  get isOpen(): boolean {
    return this.open;
  }

  private lib(fn: string): SmiLibrary {
    if (!this.open) return this.manager.callOutside(fn);
    return this.manager.library;
  }

  private handle(fn: string, gpu: SmiGpu): SmiHandle {
    if (!this.open) return this.manager.callOutside(fn);
    if (gpu.session !== this || !gpu.session.open) throw new SmiStaleHandleError(fn, gpu.uuid);
    return gpu.handle;
  }

  /** Every GPU, resolved in this session. */
  gpus(): SmiGpu[] {
    const lib = this.lib("gpus");
    const handles = lib.gpuHandles();
    if (handles.length > SESSION_GPUS_MAX) throw new SmiError("amdsmi_get_processor_handles", "OUT_OF_RESOURCES", 15, `${handles.length} GPUs, more than ${SESSION_GPUS_MAX}`);
    return handles.map((h) => {
      const st = lib.gpuStatic(h);
      this.statics.set(h, st);
      return { uuid: st.uuid, handle: h, session: this };
    });
  }

  /** The GPU of `uuid`, re-resolved in this session's init cycle. @throws SmiError NOT_FOUND */
  gpu(uuid: string): SmiGpu {
    this.lib("gpu");
    return { uuid, handle: this.manager.handleOf(uuid, this.generation), session: this };
  }

  /** The GPU's identity, read once per session (a new session reads it again). */
  static(g: SmiGpu): SmiGpuStatic {
    const h = this.handle("gpuStatic", g);
    const known = this.statics.get(h);
    if (known !== undefined) return { ...known };
    const st = this.manager.library.gpuStatic(h);
    this.statics.set(h, st);
    return { ...st };
  }
  temperature(g: SmiGpu, sensor: TemperatureSensor): number {
    return this.manager.library.gpuTemperature(this.handle("gpuTemperature", g), sensor);
  }
  power(g: SmiGpu): SmiPower {
    return this.manager.library.gpuPower(this.handle("gpuPower", g));
  }
  activity(g: SmiGpu): SmiActivity {
    return this.manager.library.gpuActivity(this.handle("gpuActivity", g));
  }
  memory(g: SmiGpu, kind: MemoryKind): SmiMemory {
    return this.manager.library.gpuMemory(this.handle("gpuMemory", g), kind);
  }
  xgmi(g: SmiGpu): SmiXgmi {
    return this.manager.library.gpuXgmi(this.handle("gpuXgmi", g));
  }
  link(a: SmiGpu, b: SmiGpu): SmiLink {
    return this.manager.library.gpuLink(this.handle("gpuLink", a), this.handle("gpuLink", b));
  }
  pcie(g: SmiGpu): SmiPcie {
    return this.manager.library.gpuPcie(this.handle("gpuPcie", g));
  }
  ecc(g: SmiGpu): SmiEcc {
    return this.manager.library.gpuEcc(this.handle("gpuEcc", g));
  }

  /** Close: the GPUs it resolved become stale. Idempotent. */
  close(): void {
    if (!this.open) return;
    this.open = false;
    this.manager.sessionClosed();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
