/**
 * Worker of test/smi/session-workers.test.ts: its own amdsmiOpen of the C double (one process,
 * one library state, as a library Worker of the agent) and its own SmiSessionManager over the
 * test's ONE shared session buffer. It answers each ask with exactly one message, in order.
 *
 * Overlap between threads is made deterministic with a second SharedArrayBuffer of flags
 * (SYNC): a start line (GO), an arrival count (ARRIVED), a release line (RELEASE), a stop flag
 * for loops (STOP), and a hook pair (HOOK_IN / HOOK_GO): when armed, the manager's clock or log
 * callback stops this thread right there until the test lets it go, so another thread can
 * act inside a window of the manager that is otherwise a few instructions wide.
 */
import { readdirSync, readlinkSync } from "node:fs";
import { SmiError } from "../../runtime/errors.ts";
import { amdsmiOpen } from "../../runtime/ffi/amdsmi.ts";
import type { SmiLibrary } from "../../runtime/smi/library.ts";
import { type SmiGpu, type SmiSession, SmiSessionManager } from "../../runtime/smi/session.ts";

declare const self: Worker;

/** Slots of the test's Int32Array of flags. */
export const SYNC = { GO: 0, ARRIVED: 1, RELEASE: 2, STOP: 3, HOOK_IN: 4, HOOK_GO: 5 } as const;
export const SYNC_bytes = 8 * 4;
/** Longest a worker waits at a barrier or in an armed hook before reporting a failure, ms. */
export const BARRIER_WAIT_MAX_ms = 30_000;
/** Most iterations of one `loop` ask (it normally ends on STOP much earlier). */
export const LOOP_ITERATIONS_MAX = 1_000_000;
/** A `loop` yields to its event loop (linger timers, messages) every this many iterations. */
export const LOOP_YIELD_EVERY = 8;

export type SessionRead = "temperature" | "power";

export type SessionAsk =
  /** `deviceFile`: the file the double holds open while initialised. */
  | { op: "setup"; path: string; shared: SharedArrayBuffer; sync: SharedArrayBuffer; deviceFile: string }
  /** mgr.start() (persistent mode takes its pin here). */
  | { op: "start" }
  /**
   * Wait for GO, open `count` sessions (session i resolves uuids[i % n] and reads it), add 1 to
   * ARRIVED, wait for RELEASE, close them all.
   */
  | { op: "busy"; count: number; uuids: string[]; read: SessionRead }
  /** `count` requests one after another: open, resolve, read power, close. */
  | { op: "burst"; count: number; uuid: string }
  /** Open a session, resolve `uuid` (kept), keep the session open. */
  | { op: "open"; uuid: string }
  /** Close every kept session. `hook: "clock"`: stop in the manager's first clock call. */
  | { op: "close"; hook?: "clock" }
  /** Open a session with the log hook armed (it stops in a mode-switch log line). */
  | { op: "openHooked"; uuid: string }
  /** In a new session: read through the GPU kept from an earlier one, then resolve `uuid` again. */
  | { op: "staleRead"; uuid: string }
  /** Open, resolve `uuid`, read its activity (slow when the double delays it), close. */
  | { op: "slowRead"; uuid: string }
  /** Until STOP: open, resolve, read, close, pendingApply; yield every LOOP_YIELD_EVERY. */
  | { op: "loop"; uuids: string[] }
  | { op: "pendingApply" }
  /** `signal`: set HOOK_GO as soon as teardown's synchronous part has run, then await it. */
  | { op: "teardown"; waitMs: number; signal?: boolean }
  /** Dispose the manager and unload the binding. */
  | { op: "unload" };

export interface WireError {
  name: string;
  message: string;
  statusName?: string;
  status?: number;
  fn?: string;
}

export interface SessionAnswer {
  ok: boolean;
  error?: WireError;
  /** Handles resolved, as decimal text. */
  handles?: string[];
  /** Values read. */
  values?: number[];
  /** Whether this thread saw the double's device file open (/proc/self/fd) right after the ask. */
  deviceOpen?: boolean;
  teardown?: { shutDown: boolean; openSessions: number };
  /** loop: iterations done and every error caught (name: message). */
  iterations?: number;
  errors?: string[];
  /** staleRead: the error the stale read threw. */
  staleError?: WireError;
}

let lib: SmiLibrary | undefined;
let mgr: SmiSessionManager | undefined;
let sync: Int32Array | undefined;
let deviceFile = "";
let hookArmed: "clock" | "log" | undefined;
let hookTimedOut = false;
const held: SmiSession[] = [];
let kept: SmiGpu | undefined;

/** An error as plain data; `name` is its class (SmiStaleHandleError, InvariantError, ...). */
function wireOf(e: unknown): WireError {
  const name = (e as Error)?.constructor?.name ?? "Error";
  if (e instanceof SmiError) return { name, message: e.message, statusName: e.statusName, status: e.status, fn: e.fn };
  return { name, message: (e as Error)?.message ?? String(e) };
}

/** Whether this process holds `deviceFile` open (the double opens it at the real init). */
export function deviceFileOpen(file: string): boolean {
  for (const fd of readdirSync("/proc/self/fd")) {
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`) === file) return true;
    } catch {
      // The fd of the directory listing itself, or one closed meanwhile.
    }
  }
  return false;
}

/** Block this thread until `slot` reads `value`; false after BARRIER_WAIT_MAX_ms. */
function waitFor(slot: number, value: number): boolean {
  const deadline = performance.now() + BARRIER_WAIT_MAX_ms;
  for (;;) {
    const v = Atomics.load(sync!, slot);
    if (v === value) return true;
    const left = deadline - performance.now();
    if (left <= 0) return false;
    Atomics.wait(sync!, slot, v, Math.min(left, 100));
  }
}

/** The armed hook: say so (HOOK_IN) and stop until HOOK_GO. */
function hook(kind: "clock" | "log"): void {
  if (hookArmed !== kind) return;
  hookArmed = undefined;
  Atomics.store(sync!, SYNC.HOOK_IN, 1);
  Atomics.notify(sync!, SYNC.HOOK_IN);
  if (!waitFor(SYNC.HOOK_GO, 1)) hookTimedOut = true;
}

function readOne(s: SmiSession, g: SmiGpu, read: SessionRead): number {
  if (read === "temperature") return s.temperature(g, "edge");
  return s.power(g).socketW ?? -1;
}

async function serve(m: SessionAsk): Promise<SessionAnswer> {
  if (m.op === "setup") {
    lib = amdsmiOpen({ path: m.path });
    deviceFile = m.deviceFile;
    sync = new Int32Array(m.sync);
    mgr = new SmiSessionManager({
      library: lib,
      shared: m.shared,
      clock: () => {
        hook("clock");
        return Date.now();
      },
      log: () => hook("log"),
    });
    return { ok: true };
  }
  const g = mgr;
  if (g === undefined || sync === undefined) throw new Error("session worker used before setup");
  switch (m.op) {
    case "start":
      g.start("test");
      return { ok: true };
    case "busy": {
      if (!waitFor(SYNC.GO, 1)) throw new Error(`no GO within ${BARRIER_WAIT_MAX_ms} ms`);
      const sessions: SmiSession[] = [];
      const values: number[] = [];
      let failure: unknown;
      try {
        for (let i = 0; i < m.count; i++) {
          const s = g.open();
          sessions.push(s);
          values.push(readOne(s, s.gpu(m.uuids[i % m.uuids.length]!), m.read));
        }
      } catch (e) {
        failure = e;
      }
      // Arrive even after a failure, so the test's barrier never waits for this Worker in vain.
      Atomics.add(sync, SYNC.ARRIVED, 1);
      Atomics.notify(sync, SYNC.ARRIVED);
      const released = waitFor(SYNC.RELEASE, 1);
      for (const s of sessions) s.close();
      if (failure !== undefined) throw failure;
      if (!released) throw new Error(`no RELEASE within ${BARRIER_WAIT_MAX_ms} ms`);
      return { ok: true, values };
    }
    case "burst": {
      const values: number[] = [];
      for (let i = 0; i < m.count; i++) {
        using s = g.open();
        values.push(readOne(s, s.gpu(m.uuid), "power"));
      }
      return { ok: true, values };
    }
    case "open": {
      const s = g.open();
      held.push(s);
      kept = s.gpu(m.uuid);
      return { ok: true, handles: [kept.handle.toString()], deviceOpen: deviceFileOpen(deviceFile) };
    }
    case "close": {
      if (m.hook) {
        Atomics.store(sync, SYNC.HOOK_IN, 0);
        hookArmed = m.hook;
      }
      hookTimedOut = false;
      for (const s of held.splice(0)) s.close();
      hookArmed = undefined;
      if (hookTimedOut) throw new Error(`the ${m.hook} hook was not let go within ${BARRIER_WAIT_MAX_ms} ms`);
      // Synchronous after the close: no linger timer of this thread can have run yet.
      return { ok: true, deviceOpen: deviceFileOpen(deviceFile) };
    }
    case "openHooked": {
      Atomics.store(sync, SYNC.HOOK_IN, 0);
      hookArmed = "log";
      hookTimedOut = false;
      try {
        const s = g.open();
        held.push(s);
        kept = s.gpu(m.uuid);
      } finally {
        hookArmed = undefined;
      }
      if (hookTimedOut) throw new Error(`the log hook was not let go within ${BARRIER_WAIT_MAX_ms} ms`);
      return { ok: true };
    }
    case "staleRead": {
      if (kept === undefined) throw new Error("staleRead before open");
      using s = g.open();
      let staleError: WireError | undefined;
      try {
        s.power(kept);
      } catch (e) {
        staleError = wireOf(e);
      }
      const fresh = s.gpu(m.uuid);
      return { ok: true, handles: [fresh.handle.toString()], values: [s.power(fresh).socketW ?? -1], ...(staleError ? { staleError } : {}) };
    }
    case "slowRead": {
      using s = g.open();
      const gpu = s.gpu(m.uuid);
      return { ok: true, values: [s.activity(gpu).gfxPct ?? -1] };
    }
    case "loop": {
      const errors: string[] = [];
      let i = 0;
      for (; i < LOOP_ITERATIONS_MAX && Atomics.load(sync, SYNC.STOP) === 0; i++) {
        try {
          using s = g.open();
          const gpu = s.gpu(m.uuids[i % m.uuids.length]!);
          s.power(gpu);
          s.temperature(gpu, "edge");
        } catch (e) {
          errors.push(`${wireOf(e).name}: ${wireOf(e).message}`);
        }
        try {
          g.pendingApply();
        } catch (e) {
          errors.push(`${wireOf(e).name}: ${wireOf(e).message}`);
        }
        if (i % LOOP_YIELD_EVERY === 0) await Bun.sleep(i % (4 * LOOP_YIELD_EVERY) === 0 ? 1 : 0);
      }
      return { ok: true, iterations: i, errors };
    }
    case "pendingApply":
      g.pendingApply();
      return { ok: true };
    case "teardown": {
      const p = g.teardown(m.waitMs);
      if (m.signal) {
        Atomics.store(sync, SYNC.HOOK_GO, 1);
        Atomics.notify(sync, SYNC.HOOK_GO);
      }
      return { ok: true, teardown: await p };
    }
    case "unload":
      g[Symbol.dispose]();
      lib?.unload();
      mgr = undefined;
      return { ok: true };
  }
}

let chain: Promise<void> = Promise.resolve();
self.onmessage = (ev: MessageEvent) => {
  const m = ev.data as SessionAsk;
  // One ask at a time, answered in order.
  chain = chain.then(async () => {
    let answer: SessionAnswer;
    try {
      answer = await serve(m);
    } catch (e) {
      answer = { ok: false, error: wireOf(e) };
    }
    self.postMessage(answer);
  });
};
