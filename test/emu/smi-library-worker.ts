/**
 * Worker of test/emu/smi-library.test.ts: opens the emulated library over the buffer it is
 * sent (its own binding, like a sampler Worker), and runs one step per message.
 */
import { emuSmiOpen } from "../../runtime/emu/smi.ts";
import type { SmiLibrary } from "../../runtime/smi/library.ts";

declare const self: Worker;

let lib: SmiLibrary | undefined;

self.onmessage = (ev: MessageEvent) => {
  const m = ev.data as { op: "open-init" | "read" | "shutdown"; shared?: SharedArrayBuffer; clockMs?: number };
  try {
    if (m.op === "open-init") {
      const clockMs = m.clockMs ?? 0;
      lib = emuSmiOpen({ profile: "dev-2gpu", shared: m.shared!, clock: () => clockMs });
      lib.init();
      self.postMessage({ ok: true, handles: lib.gpuHandles().map(String) });
    } else if (m.op === "read") {
      const h = lib!.gpuHandles()[0]!;
      self.postMessage({ ok: true, junctionC: lib!.gpuTemperature(h, "junction"), uuid: lib!.gpuStatic(h).uuid });
    } else {
      lib!.shutDown();
      self.postMessage({ ok: true });
    }
  } catch (e) {
    self.postMessage({ ok: false, error: e instanceof Error ? `${e.name}: ${e.message}` : String(e) });
  }
};
