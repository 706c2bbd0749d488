/**
 * The agent's emulated SVM source (runtime/agent/emu-svm.ts), run as the agent runs it: on
 * this thread, paced, its events handed to a callback. It stops when asked, and a failure of
 * its consumer or its readers ends the run as a rejection, never as an uncaught exception on
 * the agent's thread (which would end the agent).
 */
import { describe, expect, test } from "bun:test";
import { emuSvmRun } from "../../runtime/agent/emu-svm.ts";
import type { SmiEvent } from "../../runtime/kfd/smi-events.ts";
import { loadProfile } from "../../runtime/sim/profile.ts";

const PROFILE = loadProfile("dev-2gpu");
/** Longest wait for the source's first events, ms (it computes at 10% duty on a busy host). */
const EVENTS_WAIT_MAX_ms = 20_000;
const TEST_TIMEOUT_ms = 40_000;

/** Poll `cond` every 5 ms until it holds; throws after EVENTS_WAIT_MAX_ms saying what did not happen. */
async function until(cond: () => boolean, what: string): Promise<void> {
  const deadline = performance.now() + EVENTS_WAIT_MAX_ms;
  while (!cond()) {
    if (performance.now() > deadline) throw new Error(`${what}: not within ${EVENTS_WAIT_MAX_ms} ms`);
    await Bun.sleep(5);
  }
}

describe("the emulated SVM source", () => {
  test(
    "delivers KFD SMI events of the profile's GPUs and stops mid-workload when asked",
    async () => {
      const events: SmiEvent[] = [];
      const workloads = new Set<string>();
      const stop = new AbortController();
      const run = emuSvmRun(
        {
          profile: PROFILE,
          workloads: ["pingpong"],
          pauseMs: 10,
          onEvents: (b, _d, w) => {
            events.push(...b);
            workloads.add(w);
          },
        },
        stop.signal,
      );
      await until(() => events.length > 0, "the first events");
      stop.abort();
      await run;
      const gpus = new Set(PROFILE.gpus.map((g) => g.id));
      expect(events.every((e) => !("gpuId" in e) || gpus.has(e.gpuId))).toBe(true);
      expect([...workloads]).toEqual(["pingpong"]);
      // Nothing more arrives once the run has resolved.
      const n = events.length;
      await Bun.sleep(50);
      expect(events.length).toBe(n);
    },
    TEST_TIMEOUT_ms,
  );

  test(
    "a consumer that throws ends the run with its error (a rejection the agent logs), with nothing left running",
    async () => {
      let calls = 0;
      const stop = new AbortController();
      const run = emuSvmRun(
        {
          profile: PROFILE,
          workloads: ["stream"],
          pauseMs: 10,
          onEvents: () => {
            calls++;
            throw new Error("consumer failed");
          },
        },
        stop.signal,
      );
      await expect(run).rejects.toThrow("consumer failed");
      // The poll timer is gone: no call after the rejection.
      const n = calls;
      await Bun.sleep(100);
      expect(calls).toBe(n);
      expect(n).toBe(1);
    },
    TEST_TIMEOUT_ms,
  );

  test("an unknown workload name is a rejection naming it", async () => {
    const run = emuSvmRun({ profile: PROFILE, workloads: ["no-such-workload"], pauseMs: 10, onEvents: () => {} }, new AbortController().signal);
    await expect(run).rejects.toThrow("unknown built-in workload 'no-such-workload'");
  });
});
