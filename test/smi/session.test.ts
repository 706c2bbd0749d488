/**
 * The session manager's invariants on one thread, over the FakeSmiLibrary test double:
 * init on 0→1 and shutdown on 1→0 only, a failed init leaves the count at 0, nested
 * sessions, linger, mode switches at quiescent points, stale handles, teardown order.
 */
import { describe, expect, test } from "bun:test";
import { SmiError } from "../../runtime/errors.ts";
import { SmiSessionManager, SmiStaleHandleError, SessionClosedError, sessionModeRequest, sessionSharedCreate, sessionStatsOf } from "../../runtime/smi/session.ts";
import type { SessionMode } from "../../runtime/policy/contracts/session.ts";
import { FakeSmiLibrary, type FakeOptions } from "./fake-library.ts";

function setup(mode: SessionMode, grace = 0, fake: FakeOptions = {}) {
  const lib = new FakeSmiLibrary(fake);
  let now = 1_000;
  const lines: string[] = [];
  const shared = sessionSharedCreate(mode, grace);
  const mgr = new SmiSessionManager({ library: lib, shared, clock: () => now, log: (l) => lines.push(l) });
  return { lib, mgr, shared, lines, advance: (ms: number) => (now += ms) };
}

describe("lazy mode", () => {
  test("init on the first open, shutdown on the last close; nested sessions share one init", () => {
    const { lib, mgr, shared } = setup("lazy");
    mgr.start();
    expect(lib.inits).toBe(0);
    {
      using outer = mgr.open();
      expect(lib.inits).toBe(1);
      {
        using inner = mgr.open();
        expect(inner.power(inner.gpu("fake-gpu-1")).socketW).toBe(101);
        expect(sessionStatsOf(shared).count).toBe(2);
      }
      expect(lib.shutdowns).toBe(0);
      expect(outer.temperature(outer.gpu("fake-gpu-0"), "edge")).toBe(40);
    }
    expect(lib.shutdowns).toBe(1);
    const st = sessionStatsOf(shared);
    expect(st.count).toBe(0);
    expect(st.initialised).toBe(false);
    expect(lib.callsWhileDown).toBe(0);
    // Only init, reads, shutdown: the log starts with init and ends with shutdown.
    expect(lib.log[0]).toBe("init");
    expect(lib.log.at(-1)).toBe("shutdown");
  });

  test("a failed init leaves the count at 0 and the next open retries", () => {
    const { lib, mgr, shared, lines } = setup("lazy", 0, { initFailures: 2 });
    for (let i = 0; i < 2; i++) {
      let err: unknown;
      try {
        mgr.open();
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(SmiError);
      expect((err as SmiError).statusName).toBe("DRIVER_NOT_LOADED");
      expect((err as SmiError).status).toBe(34);
      const st = sessionStatsOf(shared);
      expect(st.count).toBe(0);
      expect(st.initialised).toBe(false);
      expect(st.openSessions).toBe(0);
    }
    expect(lines.filter((l) => l.includes("init failed"))).toHaveLength(2);
    using s = mgr.open();
    expect(lib.inits).toBe(1);
    expect(sessionStatsOf(shared).initFailures).toBe(2);
    expect(s.isOpen).toBe(true);
  });

  test("handles never outlive their session; a re-init re-resolves them", () => {
    const { lib, mgr } = setup("lazy");
    const s1 = mgr.open();
    const g1 = s1.gpu("fake-gpu-1");
    s1.close();
    const s2 = mgr.open();
    expect(() => s2.power(g1)).toThrow(SmiStaleHandleError);
    const g2 = s2.gpu("fake-gpu-1");
    expect(g2.handle).not.toBe(g1.handle);
    expect(s2.power(g2).socketW).toBe(101);
    s2.close();
    expect(lib.inits).toBe(2);
    // A read through a closed session is refused and counted, and the library is never called.
    const calls = lib.calls;
    expect(() => s2.power(g2)).toThrow(/outside an open session/);
    expect(lib.calls).toBe(calls);
    expect(mgr.stats().callsOutside).toBe(1);
  });
});

describe("persistent mode", () => {
  test("one init at start, none per session, one shutdown at teardown", async () => {
    const { lib, mgr, lines } = setup("persistent");
    mgr.start("test");
    expect(lines[0]).toContain("persistent");
    expect(lib.inits).toBe(1);
    for (let i = 0; i < 100; i++) {
      using s = mgr.open();
      s.activity(s.gpu("fake-gpu-0"));
    }
    expect(lib.inits).toBe(1);
    expect(lib.shutdowns).toBe(0);
    // Handles resolved once per init cycle per thread.
    expect(lib.log.filter((x) => x === "gpuHandleFromUuid")).toHaveLength(1);
    const r = await mgr.teardown(100);
    expect(r).toEqual({ shutDown: true, openSessions: 0 });
    expect(lib.shutdowns).toBe(1);
    expect(lib.log.at(-1)).toBe("shutdown");
    expect(() => mgr.open()).toThrow(SessionClosedError);
  });

  test("teardown stops readers first and never shuts down under an open session", async () => {
    const { lib, mgr } = setup("persistent");
    mgr.start();
    const order: string[] = [];
    mgr.onTeardown(() => order.push(`reader stopped (library ${lib.initialised ? "up" : "down"})`));
    const s = mgr.open();
    const r = await mgr.teardown(20);
    expect(order).toEqual(["reader stopped (library up)"]);
    expect(r).toEqual({ shutDown: false, openSessions: 1 });
    expect(lib.shutdowns).toBe(0);
    s.close();
    // The pin still holds it: released by a second teardown once the session is gone.
    const r2 = await mgr.teardown(20);
    expect(r2.shutDown).toBe(true);
    expect(lib.shutdowns).toBe(1);
  });
});

describe("linger mode", () => {
  test("the library stays up for the grace after the last close; a burst shares one init", () => {
    const { lib, mgr, advance } = setup("linger", 500);
    for (let burst = 0; burst < 5; burst++) {
      for (let i = 0; i < 50; i++) {
        using s = mgr.open();
        s.power(s.gpu("fake-gpu-0"));
      }
      advance(400); // gaps shorter than the grace
      mgr.lingerCheck();
    }
    expect(lib.inits).toBe(1);
    expect(lib.shutdowns).toBe(0);
    advance(99);
    mgr.lingerCheck();
    expect(lib.shutdowns).toBe(0);
    advance(1);
    mgr.lingerCheck();
    expect(lib.shutdowns).toBe(1);
    expect(mgr.stats().count).toBe(0);
    mgr[Symbol.dispose]();
  });

  test("a session open at the deadline keeps the library; its close re-arms the grace", () => {
    const { lib, mgr, advance } = setup("linger", 100);
    mgr.open().close();
    const s = mgr.open();
    advance(150);
    mgr.lingerCheck();
    expect(lib.shutdowns).toBe(0);
    s.close();
    advance(99);
    mgr.lingerCheck();
    expect(lib.shutdowns).toBe(0);
    advance(1);
    mgr.lingerCheck();
    expect(lib.shutdowns).toBe(1);
    mgr[Symbol.dispose]();
  });
});

describe("mode switches", () => {
  test("a switch waits for a quiescent point and never tears down under a session", () => {
    const { lib, mgr, shared, lines } = setup("persistent");
    mgr.start();
    const s = mgr.open();
    sessionModeRequest(shared, "lazy");
    mgr.pendingApply();
    expect(mgr.mode).toBe("persistent");
    expect(lib.shutdowns).toBe(0);
    s.close(); // quiescent: the switch applies, the pin goes, the library shuts down
    expect(mgr.mode).toBe("lazy");
    expect(lib.shutdowns).toBe(1);
    expect(lines.some((l) => l.includes("persistent -> lazy"))).toBe(true);
    // lazy -> persistent takes the pin: one init, then sessions cost none.
    sessionModeRequest(shared, "persistent");
    mgr.pendingApply();
    expect(lib.inits).toBe(2);
    for (let i = 0; i < 10; i++) mgr.open().close();
    expect(lib.inits).toBe(2);
    expect(mgr.stats().modeSwitches).toBe(2);
    expect(lib.callsWhileDown).toBe(0);
  });

  test("persistent -> linger keeps the library for the grace, then releases it", () => {
    const { lib, mgr, shared, advance } = setup("persistent");
    mgr.start();
    sessionModeRequest(shared, "linger", 200);
    mgr.pendingApply();
    expect(mgr.stats().pinned).toBe("linger");
    advance(200);
    mgr.lingerCheck();
    expect(lib.shutdowns).toBe(1);
    expect(mgr.stats().initialised).toBe(false);
    mgr[Symbol.dispose]();
  });
});

/** A lock wait short enough for a test, long against the few instructions a free lock needs, ms. */
const LOCK_WAIT_SHORT_ms = 20;

describe("failures inside the manager (review findings)", () => {
  test("a switch to persistent whose pin init fails stays pending and is retried by the next open", () => {
    const { lib, mgr, shared, lines } = setup("lazy");
    mgr.start();
    sessionModeRequest(shared, "persistent");
    lib.initFailuresLeft = 1;
    // Not thrown: the failure is logged and the request kept.
    mgr.pendingApply();
    expect(mgr.mode).toBe("lazy");
    expect(mgr.stats().pinned).toBe("none");
    expect(mgr.stats().count).toBe(0);
    expect(lines.some((l) => l.includes("init failed"))).toBe(true);
    expect(lines.some((l) => l.includes("lazy -> persistent") && l.includes("retried"))).toBe(true);
    // While it keeps failing, an open fails with the init error, one init attempt per open.
    lib.initFailuresLeft = 1;
    expect(() => mgr.open()).toThrow(/DRIVER_NOT_LOADED/);
    expect(mgr.stats()).toMatchObject({ mode: "lazy", initAttempts: 2, initFailures: 2, count: 0, openSessions: 0 });
    expect(lines.filter((l) => l.includes("lazy -> persistent waits"))).toHaveLength(1);
    // The next open retries the pin: one init, the pin held after the session closes.
    mgr.open().close();
    expect(mgr.mode).toBe("persistent");
    expect(mgr.stats().pinned).toBe("persistent");
    expect(mgr.stats().count).toBe(1);
    expect(lib.inits).toBe(1);
    expect(lib.shutdowns).toBe(0);
  });

  test("a pending switch whose pin init fails at the last close never throws from close", () => {
    const { lib, mgr, shared, lines } = setup("lazy");
    const s = mgr.open();
    sessionModeRequest(shared, "persistent");
    lib.initFailuresLeft = 1;
    // The last close shuts down (1 -> 0), then applies the switch: its init fails.
    expect(() => s.close()).not.toThrow();
    expect(lib.shutdowns).toBe(1);
    expect(mgr.mode).toBe("lazy");
    expect(mgr.stats().count).toBe(0);
    expect(lines.some((l) => l.includes("init failed"))).toBe(true);
    mgr.pendingApply();
    expect(mgr.mode).toBe("persistent");
    expect(mgr.stats().pinned).toBe("persistent");
    expect(lib.inits).toBe(2);
  });

  test("a lock timeout at the last close in linger mode still drops the session's reference", () => {
    // Two managers of one library state, as two threads; the second holds the lock while its
    // clock hook closes the first one's session (the first then cannot get the lock).
    const lib = new FakeSmiLibrary();
    const shared = sessionSharedCreate("linger", 600_000);
    let now = 1_000;
    const lines: string[] = [];
    const m1 = new SmiSessionManager({ library: lib, shared, clock: () => now, log: (l) => lines.push(l), lockWaitMs: LOCK_WAIT_SHORT_ms });
    let inLock: (() => void) | undefined;
    let clockCalls = 0;
    const m2 = new SmiSessionManager({
      library: lib,
      shared,
      clock: () => {
        // lingerCheck reads the clock once outside the lock, then once inside it.
        if (++clockCalls === 2) inLock?.();
        return now;
      },
    });
    try {
      m1.open().close(); // the linger pin takes the reference: count 1
      const s = m1.open();
      expect(sessionStatsOf(shared).count).toBe(2);
      now += 600_001;
      let closeError: unknown;
      inLock = () => {
        try {
          s.close();
        } catch (e) {
          closeError = e;
        }
      };
      m2.lingerCheck();
      expect(closeError).toBeUndefined();
      expect(lines.some((l) => l.includes("TIMEOUT"))).toBe(true);
      // The session's reference went; the pin's release made the last shutdown.
      const st = sessionStatsOf(shared);
      expect(st).toMatchObject({ count: 0, openSessions: 0, initialised: false, pinned: "none" });
      expect(lib.shutdowns).toBe(1);
    } finally {
      m1[Symbol.dispose]();
      m2[Symbol.dispose]();
    }
  });

  test("teardown honours its wait when another thread holds the lock in a hung init", async () => {
    const shared = sessionSharedCreate("lazy");
    const lines: string[] = [];
    let teardown: Promise<{ shutDown: boolean; openSessions: number }> | undefined;
    // m1 waits long for the lock by default; its teardown must still give up after waitMs.
    const lib1 = new FakeSmiLibrary();
    const m1 = new SmiSessionManager({ library: lib1, shared, log: (l) => lines.push(l), lockWaitMs: 2_000 });
    const lib2 = new FakeSmiLibrary({
      onInit: () => {
        // Inside m2's init, under the lock: a teardown in "another thread".
        teardown = m1.teardown(30);
      },
    });
    const m2 = new SmiSessionManager({ library: lib2, shared });
    m2.open().close();
    expect(teardown).toBeDefined();
    const r = await teardown!.catch((e: Error) => e);
    expect(r).toEqual({ shutDown: false, openSessions: 0 });
    expect(lines.some((l) => l.includes("lock") && l.includes("30 ms"))).toBe(true);
  });
});
