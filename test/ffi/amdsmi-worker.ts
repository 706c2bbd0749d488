/**
 * Worker of test/ffi/amdsmi-workers.test.ts: its own amdsmiOpen of the double (one process,
 * one library state, as a sampler Worker does), reading while other threads read too.
 */
import { SmiError } from "../../runtime/errors.ts";
import { amdsmiOpen } from "../../runtime/ffi/amdsmi.ts";

declare const self: Worker;

export type WorkerAsk = { op: "read"; path: string; rounds: number } | { op: "activity"; path: string; gpu: number };
export interface WorkerAnswer {
  ok: boolean;
  /** op read: one line per GPU per round, "uuid gfx edge". */
  lines?: string[];
  /** op activity: the SmiError's status name, or "ok". */
  status?: string;
  error?: string;
}

self.onmessage = (ev: MessageEvent) => {
  const m = ev.data as WorkerAsk;
  const lib = amdsmiOpen({ path: m.path });
  try {
    if (m.op === "read") {
      const lines: string[] = [];
      for (let r = 0; r < m.rounds; r++) {
        for (const h of lib.gpuHandles()) {
          lines.push(`${lib.gpuStatic(h).uuid} ${lib.gpuActivity(h).gfxPct ?? "-"} ${lib.gpuTemperature(h, "edge")}`);
        }
      }
      self.postMessage({ ok: true, lines } satisfies WorkerAnswer);
    } else {
      const h = lib.gpuHandles()[m.gpu]!;
      self.postMessage({ ok: true, status: "calling" } satisfies WorkerAnswer);
      try {
        lib.gpuActivity(h);
        self.postMessage({ ok: true, status: "ok" } satisfies WorkerAnswer);
      } catch (e) {
        self.postMessage({ ok: true, status: e instanceof SmiError ? e.statusName : String(e) } satisfies WorkerAnswer);
      }
    }
  } catch (e) {
    self.postMessage({ ok: false, error: e instanceof Error ? `${e.name}: ${e.message}` : String(e) } satisfies WorkerAnswer);
  } finally {
    lib.unload();
  }
};
