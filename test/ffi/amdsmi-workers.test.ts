import { afterAll, describe, expect, test } from "bun:test";
import { amdsmiOpen } from "../../runtime/ffi/amdsmi.ts";
import { amdsmiDoubleFixture, DOUBLE_GPUS } from "./amdsmi-double.ts";
import type { WorkerAnswer, WorkerAsk } from "./amdsmi-worker.ts";

/** A Worker running amdsmi-worker.ts: `send` a message, await its answers one by one with `next`. */
function workerStart(): { send(m: WorkerAsk): void; next(): Promise<WorkerAnswer>; stop(): void } {
  const worker = new Worker(new URL("./amdsmi-worker.ts", import.meta.url).href);
  const queue: WorkerAnswer[] = [];
  const waiting: { resolve(a: WorkerAnswer): void; reject(e: Error): void }[] = [];
  worker.onmessage = (ev) => {
    const w = waiting.shift();
    if (w) w.resolve(ev.data);
    else queue.push(ev.data);
  };
  worker.onerror = (ev) => {
    for (const w of waiting.splice(0)) w.reject(new Error(ev.message));
  };
  return {
    send: (m) => worker.postMessage(m),
    next: () => (queue.length ? Promise.resolve(queue.shift()!) : new Promise((resolve, reject) => waiting.push({ resolve, reject }))),
    stop: () => worker.terminate(),
  };
}

/** Polls of the double's counter while waiting for a Worker to enter a call (1 ms apart). */
const ENTER_POLLS_MAX = 10_000;

describe("the double under Workers: one library state per process, thread-safe", () => {
  const fx = amdsmiDoubleFixture(26);
  afterAll(() => fx.close());

  test(
    "four Workers read all GPUs at once (one GPU's reads delayed) and every answer is right",
    async () => {
      fx.configure({ delays: [{ fn: "amdsmi_get_gpu_activity", gpu: 1, ms: 1 }] });
      const lib = amdsmiOpen({ path: fx.path });
      lib.init();
      const workers = Array.from({ length: 4 }, workerStart);
      const ROUNDS = 25;
      try {
        for (const w of workers) w.send({ op: "read", path: fx.path, rounds: ROUNDS });
        const answers = await Promise.all(workers.map((w) => w.next()));
        const expected = DOUBLE_GPUS.map((g) => `${g.uuid} ${g.gfx_activity ?? "-"} ${g.temp_edge_c}`);
        expect(answers.map((a) => a.error)).toEqual([undefined, undefined, undefined, undefined]);
        expect(answers.map((a) => a.lines)).toEqual(Array.from({ length: 4 }, () => Array.from({ length: ROUNDS }, () => expected).flat()));
        expect(fx.ctl.fnCalls("amdsmi_get_gpu_activity")).toBe(4 * ROUNDS * DOUBLE_GPUS.length);
        expect(fx.ctl.counter("calls_uninit")).toBe(0);
        expect(fx.ctl.counter("real_inits")).toBe(1);
      } finally {
        for (const w of workers) w.stop();
        lib.shutDown();
        lib.unload();
      }
    },
    30_000,
  );

  test(
    "a delayed call that a shutdown overtakes answers NOT_INIT, never a read",
    async () => {
      fx.configure({ delays: [{ fn: "amdsmi_get_gpu_activity", gpu: 0, ms: 60_000 }] });
      const lib = amdsmiOpen({ path: fx.path });
      lib.init();
      const w = workerStart();
      try {
        w.send({ op: "activity", path: fx.path, gpu: 0 });
        expect((await w.next()).status).toBe("calling");
        // Counted on entry: from here the Worker is inside the call, sleeping or about to.
        let polls = 0;
        while (fx.ctl.fnCalls("amdsmi_get_gpu_activity") === 0 && polls++ < ENTER_POLLS_MAX) await Bun.sleep(1);
        expect(fx.ctl.fnCalls("amdsmi_get_gpu_activity")).toBe(1);
        lib.shutDown();
        expect(await w.next()).toEqual({ ok: true, status: "NOT_INIT" });
      } finally {
        w.stop();
        lib.unload();
      }
    },
    30_000,
  );
});
