/**
 * A library Worker: holds its own binding of the management library (one process, one
 * library state) and a session manager over the process-wide shared count, and serves the
 * pool's calls (runtime/smi/pool.ts). Every library call of the agent runs in one of these,
 * never on the main thread: bun:ffi is synchronous and a read can take a second.
 */
import { InvariantError } from "../errors.ts";
import { type SmiBackendSpec, smiLibraryOpen } from "./backend.ts";
import type { SmiLibrary } from "./library.ts";
import { groupRead, type SmiGroup } from "./readings.ts";
import { SmiSessionManager } from "./session.ts";
import { inventoryRead } from "./inventory.ts";
import { errorToWire, type PoolReply, type PoolRequest, type WorkerInit } from "./pool.ts";

declare const self: Worker;

let lib: SmiLibrary | undefined;
let mgr: SmiSessionManager | undefined;

function reply(m: PoolReply): void {
  self.postMessage(m);
}

async function serve(req: PoolRequest): Promise<unknown> {
  if (mgr === undefined) throw new InvariantError("library worker used before its init answered (a bug in the pool)");
  switch (req.op) {
    case "start":
      mgr.start(req.reason);
      return null;
    case "inventory": {
      using s = mgr.open();
      return inventoryRead(s);
    }
    case "read": {
      const t0 = performance.now();
      using s = mgr.open();
      const g = s.gpu(req.uuid);
      const r = groupRead(s, g, req.group as SmiGroup, new Set(req.skip));
      return { ...r, durationMs: performance.now() - t0 };
    }
    case "info":
      return lib!.info;
    case "maintain":
      mgr.pendingApply();
      mgr.lingerCheck();
      return null;
    case "teardown":
      return await mgr.teardown(req.waitMs);
  }
}

self.onmessage = async (ev: MessageEvent<WorkerInit | PoolRequest>) => {
  const m = ev.data;
  if (m.op === "init") {
    try {
      lib = smiLibraryOpen(m.spec as SmiBackendSpec);
      mgr = new SmiSessionManager({ library: lib, shared: m.sessionShared, log: (line) => reply({ id: -1, ok: true, log: line }) });
      reply({ id: m.id, ok: true, value: lib.info });
    } catch (e) {
      reply({ id: m.id, ok: false, error: errorToWire(e) });
    }
    return;
  }
  try {
    reply({ id: m.id, ok: true, value: await serve(m) });
  } catch (e) {
    reply({ id: m.id, ok: false, error: errorToWire(e) });
  }
};
