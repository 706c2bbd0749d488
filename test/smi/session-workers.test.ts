/**
 * The session manager across real Bun Workers: each Worker has its own amdsmiOpen binding of
 * the C double of libamd_smi (one process, one library state) and its own SmiSessionManager
 * over ONE shared buffer, as the agent's library Workers do. The double counts what really
 * happened (real inits and shutdowns, inits called on an initialised library, calls made while
 * not initialised) and holds its device file open exactly while initialised, so every
 * invariant of DESIGN.md "Session" is checked against the library, not against the manager's
 * own bookkeeping. Overlap is made deterministic with Atomics barriers (session-worker.ts);
 * nothing here asserts a duration.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { AMDSMI_DOUBLE_LAYOUTS, type AmdsmiDoubleCounter } from "../../runtime/ffi/amdsmi-double.ts";
import type { SessionMode } from "../../runtime/policy/contracts/session.ts";
import { amdsmiOpen } from "../../runtime/ffi/amdsmi.ts";
import { SESSION_LINGER_RETRY_ms, SmiSessionManager, sessionClosingSet, sessionModeRequest, sessionSharedCreate, sessionStatsOf } from "../../runtime/smi/session.ts";
import { type AmdsmiDoubleFixture, amdsmiDoubleFixture, DOUBLE_GPUS } from "../ffi/amdsmi-double.ts";
import { deviceFileOpen, type SessionAnswer, type SessionAsk, SYNC, SYNC_bytes } from "./session-worker.ts";

/** Workers per test. */
const WORKERS = 4;
/** Sessions each Worker holds open at once in the busy-period test (4 x 64 = 256, gpu-agent's handler count). */
const SESSIONS_PER_WORKER = 64;
/** Longest the main thread waits for a state it polls for (Workers arrived, a file released), ms. */
const POLL_WAIT_MAX_ms = 30_000;
/** How long the double sleeps in the read that a teardown overtakes, ms (the teardown waits TEARDOWN_SHORT_ms). */
const SLOW_READ_ms = 2_000;
const TEARDOWN_SHORT_ms = 50;
const TEARDOWN_LONG_ms = 10_000;
/** A linger grace no test outlives: the linger timer never fires during the test. */
const GRACE_NEVER_ms = 600_000;
/** Mode-switch cycles (persistent -> lazy -> linger) the main thread asks for under load. */
const MODE_CYCLES = 40;
const MODE_SWITCH_GRACE_ms = 50;
const TEST_TIMEOUT_ms = 60_000;
/** The main thread's manager waits this long for the lock in the linger-timer test, ms. */
const LOCK_WAIT_SHORT_ms = 20;

const UUIDS = DOUBLE_GPUS.map((g) => g.uuid);
const GPU1 = DOUBLE_GPUS[1]!;

interface SessionWorker {
  /** Send `m`; the Worker's answer to it (answers come in order). */
  ask(m: SessionAsk): Promise<SessionAnswer>;
  stop(): void;
}

function workerStart(): SessionWorker {
  const worker = new Worker(new URL("./session-worker.ts", import.meta.url).href);
  const waiting: { resolve(a: SessionAnswer): void; reject(e: Error): void }[] = [];
  worker.onmessage = (ev) => waiting.shift()?.resolve(ev.data);
  worker.onerror = (ev) => {
    for (const w of waiting.splice(0)) w.reject(new Error(`session worker: ${ev.message}`));
  };
  return {
    ask(m) {
      return new Promise((resolve, reject) => {
        waiting.push({ resolve, reject });
        worker.postMessage(m);
      });
    },
    stop: () => worker.terminate(),
  };
}

/** The answer, or an Error carrying the Worker's error (so a test fails with its reason). */
async function ok(p: Promise<SessionAnswer>): Promise<SessionAnswer> {
  const a = await p;
  if (!a.ok) throw new Error(`session worker failed: ${a.error?.name}: ${a.error?.message}`);
  return a;
}

/** Poll `cond` every ms until it holds; throws after POLL_WAIT_MAX_ms saying what did not happen. */
async function until(cond: () => boolean, what: string): Promise<void> {
  const deadline = performance.now() + POLL_WAIT_MAX_ms;
  while (!cond()) {
    if (performance.now() > deadline) throw new Error(`${what}: not within ${POLL_WAIT_MAX_ms} ms`);
    await Bun.sleep(1);
  }
}

interface Rig {
  shared: SharedArrayBuffer;
  sync: Int32Array;
  workers: SessionWorker[];
  /** Unload every Worker's binding, then end the Workers. */
  close(): Promise<void>;
}

/** `n` Workers, each with its own binding of the double and a manager over one shared buffer. */
async function rigStart(fx: AmdsmiDoubleFixture, mode: SessionMode, graceMs = 0, n = WORKERS): Promise<Rig> {
  const shared = sessionSharedCreate(mode, graceMs);
  const syncBuffer = new SharedArrayBuffer(SYNC_bytes);
  const workers = Array.from({ length: n }, workerStart);
  const rig: Rig = {
    shared,
    sync: new Int32Array(syncBuffer),
    workers,
    async close() {
      Atomics.store(rig.sync, SYNC.STOP, 1);
      Atomics.store(rig.sync, SYNC.RELEASE, 1);
      Atomics.store(rig.sync, SYNC.HOOK_GO, 1);
      for (const slot of [SYNC.STOP, SYNC.RELEASE, SYNC.HOOK_GO]) Atomics.notify(rig.sync, slot);
      await Promise.allSettled(workers.map((w) => w.ask({ op: "unload" })));
      for (const w of workers) w.stop();
    },
  };
  try {
    await Promise.all(workers.map((w) => ok(w.ask({ op: "setup", path: fx.path, shared, sync: syncBuffer, deviceFile: fx.deviceFile }))));
  } catch (e) {
    for (const w of workers) w.stop();
    throw e;
  }
  return rig;
}

function flag(sync: Int32Array, slot: number, value: number): void {
  Atomics.store(sync, slot, value);
  Atomics.notify(sync, slot);
}

function counters(fx: AmdsmiDoubleFixture, names: AmdsmiDoubleCounter[]): Record<string, number> {
  return Object.fromEntries(names.map((n) => [n, fx.ctl.counter(n)]));
}

describe.each(AMDSMI_DOUBLE_LAYOUTS)("layout %d: a busy period across Workers in lazy mode", (layout) => {
  const fx = amdsmiDoubleFixture(layout);
  afterAll(() => fx.close());

  test(
    "256 sessions held open at once by 4 Workers share ONE real init and ONE real shutdown; a second busy period makes the second",
    async () => {
      fx.configure();
      const rig = await rigStart(fx, "lazy");
      try {
        const expectedTemps = Array.from({ length: SESSIONS_PER_WORKER }, (_, i) => DOUBLE_GPUS[i % DOUBLE_GPUS.length]!.temp_edge_c!);
        for (let period = 1; period <= 2; period++) {
          for (const slot of [SYNC.GO, SYNC.ARRIVED, SYNC.RELEASE]) flag(rig.sync, slot, 0);
          const answers = rig.workers.map((w) => w.ask({ op: "busy", count: SESSIONS_PER_WORKER, uuids: UUIDS, read: "temperature" }));
          flag(rig.sync, SYNC.GO, 1);
          await until(() => Atomics.load(rig.sync, SYNC.ARRIVED) === WORKERS, "every Worker holding its sessions");
          // All 256 are open at this instant: one library, initialised once in this period.
          const held = sessionStatsOf(rig.shared);
          expect({ open: held.openSessions, count: held.count, initialised: held.initialised }).toEqual({
            open: WORKERS * SESSIONS_PER_WORKER,
            count: WORKERS * SESSIONS_PER_WORKER,
            initialised: true,
          });
          expect(counters(fx, ["real_inits", "real_shutdowns", "init_calls"])).toEqual({ real_inits: period, real_shutdowns: period - 1, init_calls: period });
          expect(deviceFileOpen(fx.deviceFile)).toBe(true);
          flag(rig.sync, SYNC.RELEASE, 1);
          const done = await Promise.all(answers);
          expect(done.map((a) => a.error)).toEqual(Array.from({ length: WORKERS }, () => undefined));
          expect(done.map((a) => a.values)).toEqual(Array.from({ length: WORKERS }, () => expectedTemps));
          // Exactly one init (0->1) and one shutdown (1->0) per busy period, nothing called while down.
          expect(counters(fx, ["real_inits", "real_shutdowns", "init_calls", "shutdown_calls", "calls_uninit", "initialised"])).toEqual({
            real_inits: period,
            real_shutdowns: period,
            init_calls: period,
            shutdown_calls: period,
            calls_uninit: 0,
            initialised: 0,
          });
          const st = sessionStatsOf(rig.shared);
          expect({ open: st.openSessions, count: st.count, initialised: st.initialised, inits: st.inits, shutdowns: st.shutdowns }).toEqual({
            open: 0,
            count: 0,
            initialised: false,
            inits: period,
            shutdowns: period,
          });
          expect(deviceFileOpen(fx.deviceFile)).toBe(false);
        }
      } finally {
        await rig.close();
      }
    },
    TEST_TIMEOUT_ms,
  );
});

describe("the session manager across Workers (layout 26)", () => {
  const fx = amdsmiDoubleFixture(26);
  afterAll(() => fx.close());

  test(
    "persistent: one init at start, 256 sessions in bursts across 4 Workers cost none, teardown makes the one shutdown and the last call",
    async () => {
      fx.configure();
      const rig = await rigStart(fx, "persistent");
      try {
        const [w0, w1] = rig.workers as [SessionWorker, SessionWorker];
        await ok(w0.ask({ op: "start" }));
        expect(counters(fx, ["real_inits", "init_calls"])).toEqual({ real_inits: 1, init_calls: 1 });
        const BURSTS = 4;
        const perBurst = (WORKERS * SESSIONS_PER_WORKER) / (BURSTS * WORKERS);
        for (let b = 0; b < BURSTS; b++) {
          const answers = await Promise.all(rig.workers.map((w, i) => ok(w.ask({ op: "burst", count: perBurst, uuid: UUIDS[(b + i) % UUIDS.length]! }))));
          expect(answers.map((a) => a.values!.length)).toEqual(Array.from({ length: WORKERS }, () => perBurst));
        }
        expect(counters(fx, ["real_inits", "init_calls", "real_shutdowns", "shutdown_calls", "calls_uninit"])).toEqual({
          real_inits: 1,
          init_calls: 1,
          real_shutdowns: 0,
          shutdown_calls: 0,
          calls_uninit: 0,
        });
        const before = sessionStatsOf(rig.shared);
        expect({ opens: before.opens, inits: before.inits, pinned: before.pinned, count: before.count }).toEqual({
          opens: WORKERS * SESSIONS_PER_WORKER,
          inits: 1,
          pinned: "persistent",
          count: 1,
        });
        const t = await ok(w1.ask({ op: "teardown", waitMs: TEARDOWN_LONG_ms }));
        expect(t.teardown).toEqual({ shutDown: true, openSessions: 0 });
        expect(counters(fx, ["real_shutdowns", "shutdown_calls", "initialised"])).toEqual({ real_shutdowns: 1, shutdown_calls: 1, initialised: 0 });
        // The shutdown was the library's last call: every later request is refused before it.
        const calls = fx.ctl.counter("calls");
        const refused = await Promise.all(rig.workers.map((w) => w.ask({ op: "burst", count: 1, uuid: UUIDS[0]! })));
        expect(refused.map((a) => a.error?.name)).toEqual(Array.from({ length: WORKERS }, () => "SessionClosedError"));
        expect(fx.ctl.counter("calls")).toBe(calls);
        expect(fx.ctl.counter("calls_uninit")).toBe(0);
      } finally {
        await rig.close();
      }
    },
    TEST_TIMEOUT_ms,
  );

  test(
    "injected init failures: the Worker that tried gets DRIVER_NOT_LOADED, the count stays 0, later opens share one real init",
    async () => {
      fx.configure();
      const FAILURES = 3;
      fx.ctl.fail("amdsmi_init", -1, 34, FAILURES);
      const rig = await rigStart(fx, "lazy");
      try {
        for (let i = 0; i < FAILURES; i++) {
          const a = await rig.workers[i % WORKERS]!.ask({ op: "burst", count: 1, uuid: UUIDS[0]! });
          expect(a.error).toMatchObject({ name: "SmiError", fn: "amdsmi_init", statusName: "DRIVER_NOT_LOADED", status: 34 });
          const st = sessionStatsOf(rig.shared);
          expect({ count: st.count, open: st.openSessions, initialised: st.initialised, failures: st.initFailures }).toEqual({
            count: 0,
            open: 0,
            initialised: false,
            failures: i + 1,
          });
          expect(deviceFileOpen(fx.deviceFile)).toBe(false);
        }
        // Now every Worker opens at once: the first init succeeds, the others join it.
        for (const slot of [SYNC.GO, SYNC.ARRIVED, SYNC.RELEASE]) flag(rig.sync, slot, 0);
        const answers = rig.workers.map((w) => w.ask({ op: "busy", count: 1, uuids: [GPU1.uuid], read: "power" }));
        flag(rig.sync, SYNC.GO, 1);
        await until(() => Atomics.load(rig.sync, SYNC.ARRIVED) === WORKERS, "every Worker holding a session");
        expect(sessionStatsOf(rig.shared).openSessions).toBe(WORKERS);
        flag(rig.sync, SYNC.RELEASE, 1);
        const done = await Promise.all(answers);
        expect(done.map((a) => a.error)).toEqual(Array.from({ length: WORKERS }, () => undefined));
        expect(done.map((a) => a.values)).toEqual(Array.from({ length: WORKERS }, () => [GPU1.power_socket_w!]));
        expect(counters(fx, ["init_calls", "init_failed", "real_inits", "real_shutdowns", "calls_uninit"])).toEqual({
          init_calls: FAILURES + 1,
          init_failed: FAILURES,
          real_inits: 1,
          real_shutdowns: 1,
          calls_uninit: 0,
        });
        expect(sessionStatsOf(rig.shared).inits).toBe(1);
      } finally {
        await rig.close();
      }
    },
    TEST_TIMEOUT_ms,
  );

  test(
    "mode switches under load: no call outside a session, no init of an initialised library, no InvariantError in any Worker",
    async () => {
      fx.configure();
      const rig = await rigStart(fx, "persistent");
      try {
        const w0 = rig.workers[0]!;
        await ok(w0.ask({ op: "start" }));
        const loops = rig.workers.map((w) => w.ask({ op: "loop", uuids: UUIDS }));
        for (let c = 0; c < MODE_CYCLES; c++) {
          sessionModeRequest(rig.shared, "lazy");
          await Bun.sleep(1);
          sessionModeRequest(rig.shared, "linger", MODE_SWITCH_GRACE_ms);
          await Bun.sleep(1);
          sessionModeRequest(rig.shared, "persistent");
          await Bun.sleep(1);
        }
        flag(rig.sync, SYNC.STOP, 1);
        const answers = await Promise.all(loops);
        expect(answers.map((a) => a.error)).toEqual(Array.from({ length: WORKERS }, () => undefined));
        expect(answers.map((a) => a.errors)).toEqual(Array.from({ length: WORKERS }, () => []));
        for (const a of answers) expect(a.iterations).toBeGreaterThan(0);
        // The last request (persistent) applies at this quiescent point; from here no linger
        // timer of any Worker can change the state under the checks.
        await ok(w0.ask({ op: "pendingApply" }));
        const st = sessionStatsOf(rig.shared);
        expect(st.mode).toBe("persistent");
        expect(st.modeSwitches).toBeGreaterThan(0);
        expect(st.callsOutside).toBe(0);
        const c = counters(fx, ["real_inits", "real_shutdowns", "init_calls", "init_failed", "calls_uninit", "initialised"]);
        expect(c.calls_uninit).toBe(0);
        // Every init the manager made was a 0->1 of the library (an init on an initialised
        // layout-26 library would count in init_calls but not in real_inits).
        expect(c.init_calls).toBe(c.real_inits!);
        expect(c.init_failed).toBe(0);
        expect(c.real_inits).toBe(st.inits);
        expect(c.real_shutdowns).toBe(st.shutdowns);
        expect([0, 1]).toContain(c.real_inits! - c.real_shutdowns!);
        expect(c.real_inits! - c.real_shutdowns!).toBe(st.initialised ? 1 : 0);
        expect(c.initialised).toBe(st.initialised ? 1 : 0);
        expect({ initialised: st.initialised, pinned: st.pinned, count: st.count }).toEqual({ initialised: true, pinned: "persistent", count: 1 });
        const t = await ok(w0.ask({ op: "teardown", waitMs: TEARDOWN_LONG_ms }));
        expect(t.teardown).toEqual({ shutDown: true, openSessions: 0 });
        expect(fx.ctl.counter("real_shutdowns")).toBe(fx.ctl.counter("real_inits"));
      } finally {
        await rig.close();
      }
    },
    TEST_TIMEOUT_ms,
  );

  test(
    "device file, lazy: absent while no session is open, present while one is (in any Worker)",
    async () => {
      fx.configure();
      const rig = await rigStart(fx, "lazy", 0, 2);
      try {
        const [w0, w1] = rig.workers as [SessionWorker, SessionWorker];
        expect(deviceFileOpen(fx.deviceFile)).toBe(false);
        expect((await ok(w0.ask({ op: "open", uuid: UUIDS[0]! }))).deviceOpen).toBe(true);
        expect(deviceFileOpen(fx.deviceFile)).toBe(true);
        expect((await ok(w1.ask({ op: "open", uuid: UUIDS[1]! }))).deviceOpen).toBe(true);
        expect((await ok(w0.ask({ op: "close" }))).deviceOpen).toBe(true); // w1's session holds it
        expect(deviceFileOpen(fx.deviceFile)).toBe(true);
        expect((await ok(w1.ask({ op: "close" }))).deviceOpen).toBe(false);
        expect(deviceFileOpen(fx.deviceFile)).toBe(false);
        expect(fx.ctl.deviceFd()).toBe(-1);
        expect(counters(fx, ["real_inits", "real_shutdowns"])).toEqual({ real_inits: 1, real_shutdowns: 1 });
      } finally {
        await rig.close();
      }
    },
    TEST_TIMEOUT_ms,
  );

  test(
    "device file, persistent: present while idle after start(), gone after teardown",
    async () => {
      fx.configure();
      const rig = await rigStart(fx, "persistent", 0, 2);
      try {
        const [w0, w1] = rig.workers as [SessionWorker, SessionWorker];
        expect(deviceFileOpen(fx.deviceFile)).toBe(false);
        await ok(w0.ask({ op: "start" }));
        expect(sessionStatsOf(rig.shared).openSessions).toBe(0);
        expect(deviceFileOpen(fx.deviceFile)).toBe(true);
        await ok(w1.ask({ op: "open", uuid: UUIDS[0]! }));
        expect((await ok(w1.ask({ op: "close" }))).deviceOpen).toBe(true);
        expect(deviceFileOpen(fx.deviceFile)).toBe(true);
        const t = await ok(w1.ask({ op: "teardown", waitMs: TEARDOWN_LONG_ms }));
        expect(t.teardown).toEqual({ shutDown: true, openSessions: 0 });
        expect(deviceFileOpen(fx.deviceFile)).toBe(false);
      } finally {
        await rig.close();
      }
    },
    TEST_TIMEOUT_ms,
  );

  test(
    "linger (grace 200 ms, real clock): the device file stays open after the last close, and is released after the grace",
    async () => {
      fx.configure();
      const rig = await rigStart(fx, "linger", 200, 1);
      try {
        const w0 = rig.workers[0]!;
        expect((await ok(w0.ask({ op: "open", uuid: UUIDS[0]! }))).deviceOpen).toBe(true);
        // Checked in the closing Worker synchronously after close(): its linger timer cannot
        // have run yet, whatever the machine's load.
        expect((await ok(w0.ask({ op: "close" }))).deviceOpen).toBe(true);
        expect(sessionStatsOf(rig.shared).pinned).toBe("linger");
        await until(() => !deviceFileOpen(fx.deviceFile), "the device file released after the linger grace");
        const st = sessionStatsOf(rig.shared);
        expect({ initialised: st.initialised, count: st.count, pinned: st.pinned, shutdowns: st.shutdowns }).toEqual({
          initialised: false,
          count: 0,
          pinned: "none",
          shutdowns: 1,
        });
        expect(counters(fx, ["real_inits", "real_shutdowns", "calls_uninit"])).toEqual({ real_inits: 1, real_shutdowns: 1, calls_uninit: 0 });
      } finally {
        await rig.close();
      }
    },
    TEST_TIMEOUT_ms,
  );

  test(
    "handle churn: a Worker's handles differ between init cycles, and a GPU of a closed session is refused as stale",
    async () => {
      fx.configure();
      const rig = await rigStart(fx, "lazy", 0, 1);
      try {
        const w0 = rig.workers[0]!;
        const first = await ok(w0.ask({ op: "open", uuid: GPU1.uuid }));
        await ok(w0.ask({ op: "close" }));
        const second = await ok(w0.ask({ op: "staleRead", uuid: GPU1.uuid }));
        expect(second.staleError).toMatchObject({ name: "SmiStaleHandleError", statusName: "STALE_HANDLE" });
        expect(second.handles![0]).not.toBe(first.handles![0]);
        expect(second.values).toEqual([GPU1.power_socket_w!]);
        expect(counters(fx, ["real_inits", "real_shutdowns", "calls_uninit"])).toEqual({ real_inits: 2, real_shutdowns: 2, calls_uninit: 0 });
      } finally {
        await rig.close();
      }
    },
    TEST_TIMEOUT_ms,
  );

  test(
    "teardown while a read is in flight in another Worker: it gives up without shutting down; after the read, a second teardown shuts down",
    async () => {
      fx.configure({ delays: [{ fn: "amdsmi_get_gpu_activity", gpu: 1, ms: SLOW_READ_ms }] });
      const rig = await rigStart(fx, "persistent", 0, 3);
      try {
        const [w0, w1, w2] = rig.workers as [SessionWorker, SessionWorker, SessionWorker];
        await ok(w0.ask({ op: "start" }));
        const slow = w1.ask({ op: "slowRead", uuid: GPU1.uuid });
        await until(() => fx.ctl.fnCalls("amdsmi_get_gpu_activity") === 1, "the slow read entering the library");
        const t1 = await ok(w2.ask({ op: "teardown", waitMs: TEARDOWN_SHORT_ms }));
        expect(t1.teardown).toEqual({ shutDown: false, openSessions: 1 });
        expect(fx.ctl.counter("real_shutdowns")).toBe(0);
        // The read completes with a value (a shutdown under it would have made it NOT_INIT).
        expect((await ok(slow)).values).toEqual([GPU1.gfx_activity!]);
        expect(fx.ctl.counter("real_shutdowns")).toBe(0);
        const t2 = await ok(w2.ask({ op: "teardown", waitMs: TEARDOWN_LONG_ms }));
        expect(t2.teardown).toEqual({ shutDown: true, openSessions: 0 });
        expect(counters(fx, ["real_inits", "real_shutdowns", "calls_uninit"])).toEqual({ real_inits: 1, real_shutdowns: 1, calls_uninit: 0 });
        expect((await w0.ask({ op: "burst", count: 1, uuid: UUIDS[0]! })).error?.name).toBe("SessionClosedError");
      } finally {
        await rig.close();
      }
    },
    TEST_TIMEOUT_ms,
  );
});

describe("teardown racing a session on another Worker (layout 26)", () => {
  const fx = amdsmiDoubleFixture(26);
  afterAll(() => fx.close());

  test.each(["lazy", "persistent"] as const)(
    "%s: a close caught between 'no session open' and dropping its reference is waited for, never an InvariantError",
    async (mode) => {
      fx.configure();
      const rig = await rigStart(fx, mode, 0, 2);
      try {
        const [w0, w1] = rig.workers as [SessionWorker, SessionWorker];
        if (mode === "persistent") await ok(w0.ask({ op: "start" }));
        await ok(w0.ask({ op: "open", uuid: UUIDS[0]! }));
        // w0 stops inside its close, in the manager's clock call: the session no longer
        // counts as open, but its reference on the library is not dropped yet.
        const closing = w0.ask({ op: "close", hook: "clock" });
        await until(() => Atomics.load(rig.sync, SYNC.HOOK_IN) === 1, "w0 inside its close");
        const inside = sessionStatsOf(rig.shared);
        expect({ open: inside.openSessions, count: inside.count }).toEqual({ open: 0, count: mode === "persistent" ? 2 : 1 });
        // w1 tears down right there, then lets w0 go on.
        const t = await w1.ask({ op: "teardown", waitMs: TEARDOWN_LONG_ms, signal: true });
        expect(t.error).toBeUndefined();
        expect(t.teardown).toEqual({ shutDown: true, openSessions: 0 });
        expect((await closing).error).toBeUndefined();
        expect(counters(fx, ["real_inits", "real_shutdowns", "shutdown_calls", "initialised", "calls_uninit"])).toEqual({
          real_inits: 1,
          real_shutdowns: 1,
          shutdown_calls: 1,
          initialised: 0,
          calls_uninit: 0,
        });
        const st = sessionStatsOf(rig.shared);
        expect({ count: st.count, initialised: st.initialised, pinned: st.pinned }).toEqual({ count: 0, initialised: false, pinned: "none" });
      } finally {
        await rig.close();
      }
    },
    TEST_TIMEOUT_ms,
  );

  test.each(["lazy", "persistent"] as const)(
    "%s: an open already past the closing check when teardown begins is refused, and never inits",
    async (mode) => {
      fx.configure();
      const rig = await rigStart(fx, mode, 0, 2);
      try {
        const [w0, w1] = rig.workers as [SessionWorker, SessionWorker];
        if (mode === "persistent") await ok(w0.ask({ op: "start" }));
        // A pending switch makes w1's open apply it under the lock and log it: w1 stops in that
        // log line, past open()'s closing check, before it takes its reference.
        sessionModeRequest(rig.shared, "linger", GRACE_NEVER_ms);
        const opening = w1.ask({ op: "openHooked", uuid: UUIDS[0]! });
        await until(() => Atomics.load(rig.sync, SYNC.HOOK_IN) === 1, "w1 inside its open");
        sessionClosingSet(rig.shared); // what the agent's main thread does first at shutdown
        flag(rig.sync, SYNC.HOOK_GO, 1);
        const o = await opening;
        expect(o.error?.name).toBe("SessionClosedError");
        expect(sessionStatsOf(rig.shared).openSessions).toBe(0);
        const t = await ok(w0.ask({ op: "teardown", waitMs: TEARDOWN_LONG_ms }));
        expect(t.teardown).toEqual({ shutDown: true, openSessions: 0 });
        const inits = mode === "persistent" ? 1 : 0;
        expect(counters(fx, ["real_inits", "init_calls", "real_shutdowns", "initialised", "calls_uninit"])).toEqual({
          real_inits: inits,
          init_calls: inits,
          real_shutdowns: inits,
          initialised: 0,
          calls_uninit: 0,
        });
      } finally {
        await rig.close();
      }
    },
    TEST_TIMEOUT_ms,
  );

  test(
    "a switch to persistent still pending after teardown is never applied (no pin, no init after the last shutdown)",
    async () => {
      fx.configure();
      const rig = await rigStart(fx, "lazy", 0, 2);
      try {
        const [w0, w1] = rig.workers as [SessionWorker, SessionWorker];
        await ok(w0.ask({ op: "burst", count: 1, uuid: UUIDS[0]! }));
        sessionModeRequest(rig.shared, "persistent");
        const t = await ok(w0.ask({ op: "teardown", waitMs: TEARDOWN_LONG_ms }));
        expect(t.teardown).toEqual({ shutDown: true, openSessions: 0 });
        await ok(w1.ask({ op: "pendingApply" }));
        const st = sessionStatsOf(rig.shared);
        expect({ pinned: st.pinned, count: st.count, initialised: st.initialised }).toEqual({ pinned: "none", count: 0, initialised: false });
        expect(counters(fx, ["real_inits", "real_shutdowns", "initialised"])).toEqual({ real_inits: 1, real_shutdowns: 1, initialised: 0 });
        expect(deviceFileOpen(fx.deviceFile)).toBe(false);
      } finally {
        await rig.close();
      }
    },
    TEST_TIMEOUT_ms,
  );
});

describe("a linger timer that cannot get the lock (layout 26)", () => {
  const fx = amdsmiDoubleFixture(26);
  afterAll(() => fx.close());

  test(
    "its check logs the lock TIMEOUT and tries again later instead of throwing in its thread; the switch holding the lock then completes",
    async () => {
      fx.configure();
      const rig = await rigStart(fx, "linger", GRACE_NEVER_ms, 1);
      // This thread's own manager and binding, with a short lock wait and a clock of its own.
      const lib = amdsmiOpen({ path: fx.path });
      const lines: string[] = [];
      let now = 1_000;
      const m = new SmiSessionManager({ library: lib, shared: rig.shared, clock: () => now, log: (l) => lines.push(l), lockWaitMs: LOCK_WAIT_SHORT_ms });
      try {
        const w0 = rig.workers[0]!;
        m.open().close(); // the linger pin holds the library until now + grace
        expect(sessionStatsOf(rig.shared)).toMatchObject({ pinned: "linger", count: 1, initialised: true });
        // w0 applies a pending switch and stops in its log line, holding the lock.
        sessionModeRequest(rig.shared, "lazy");
        const opening = w0.ask({ op: "openHooked", uuid: UUIDS[0]! });
        await until(() => Atomics.load(rig.sync, SYNC.HOOK_IN) === 1, "w0 holding the lock");
        // Arm this thread's linger timer for 1 ms before the deadline, then pass the deadline.
        now += GRACE_NEVER_ms - 1;
        m.lingerCheck();
        now += 2;
        const timeouts = (): number => lines.filter((l) => l.includes("linger") && l.includes("TIMEOUT")).length;
        // The timer fires, cannot get the lock, logs it, and tries again SESSION_LINGER_RETRY_ms later.
        await until(() => timeouts() >= 2, "two linger checks failing on the lock");
        expect(lines.find((l) => l.includes("TIMEOUT"))).toContain(`${SESSION_LINGER_RETRY_ms} ms`);
        expect(sessionStatsOf(rig.shared)).toMatchObject({ pinned: "linger", count: 1, initialised: true });
        flag(rig.sync, SYNC.HOOK_GO, 1);
        expect((await opening).error).toBeUndefined();
        await ok(w0.ask({ op: "close" }));
        const st = sessionStatsOf(rig.shared);
        expect({ mode: st.mode, pinned: st.pinned, count: st.count, initialised: st.initialised }).toEqual({ mode: "lazy", pinned: "none", count: 0, initialised: false });
        expect(counters(fx, ["real_inits", "real_shutdowns", "calls_uninit"])).toEqual({ real_inits: 2, real_shutdowns: 2, calls_uninit: 0 });
      } finally {
        m[Symbol.dispose]();
        lib.unload();
        await rig.close();
      }
    },
    TEST_TIMEOUT_ms,
  );
});
