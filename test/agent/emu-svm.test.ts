/**
 * The emulated SVM source's workloads (runtime/agent/emu-svm.ts), run on this thread as its
 * child process runs them: paced, each read of an emulated event fd handed over as bytes. It
 * stops when asked, and a failure of its consumer or its readers ends the run as a rejection,
 * never as an uncaught exception. The child process and its frames: emu-svm-source.test.ts.
 */
import { describe, expect, test } from "bun:test";
import { emuSvmRun } from "../../runtime/agent/emu-svm.ts";
import { type SmiEvent, SmiEventParser } from "../../runtime/kfd/smi-events.ts";
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
      const parsers = new Map(PROFILE.gpus.map((g) => [g.id, new SmiEventParser(g.id)]));
      const vram = new Map<number, number>();
      const stop = new AbortController();
      const run = emuSvmRun(
        {
          profile: PROFILE,
          workloads: ["pingpong"],
          pauseMs: 10,
          onBytes: (gpuId, bytes) => {
            const p = parsers.get(gpuId);
            if (p === undefined) throw new Error(`bytes of gpu_id ${gpuId}, not a GPU of the profile`);
            p.push(bytes, events);
          },
          onDropped: () => {},
          onVram: (i, bytes) => vram.set(i, Math.max(vram.get(i) ?? 0, bytes)),
        },
        stop.signal,
      );
      await until(() => events.length > 0 && [...vram.values()].some((b) => b > 0), "the first events and VRAM in use");
      stop.abort();
      await run;
      // Whole records, every one parsed: a torn record is joined by the parser.
      expect([...parsers.values()].map((p) => p.malformedCount)).toEqual(PROFILE.gpus.map(() => 0));
      expect(new Set(events.map((e) => e.kind)).has("MIGRATE_END")).toBe(true);
      // VRAM is given per GPU index of the profile, and none past it.
      expect([...vram.keys()].sort()).toEqual(PROFILE.gpus.map((_, i) => i));
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
          onBytes: () => {
            calls++;
            throw new Error("consumer failed");
          },
          onDropped: () => {},
          onVram: () => {},
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

  test(
    "while paused (its consumer is behind) no fd is read: the emulated kernel's fifos fill and it drops and counts events; the last read drains them",
    async () => {
      let bytes = 0;
      let dropped = 0;
      const stop = new AbortController();
      const run = emuSvmRun(
        {
          profile: PROFILE,
          workloads: ["stream"],
          pauseMs: 10,
          onBytes: (_gpu, b) => {
            bytes += b.length;
          },
          onDropped: (n) => {
            dropped += n;
          },
          onVram: () => {},
          paused: () => true,
        },
        stop.signal,
      );
      await until(() => dropped > 0, "the first dropped events");
      const bytesWhilePaused = bytes;
      stop.abort();
      await run;
      expect(bytesWhilePaused).toBe(0);
      expect(dropped).toBeGreaterThan(0);
      // The run's last read ignores `paused`: what the fifos held is delivered, not lost uncounted.
      expect(bytes).toBeGreaterThan(0);
    },
    TEST_TIMEOUT_ms,
  );

  test("an unknown workload name is a rejection naming it", async () => {
    const run = emuSvmRun({ profile: PROFILE, workloads: ["no-such-workload"], pauseMs: 10, onBytes: () => {}, onDropped: () => {}, onVram: () => {} }, new AbortController().signal);
    await expect(run).rejects.toThrow("unknown built-in workload 'no-such-workload'");
  });
});
