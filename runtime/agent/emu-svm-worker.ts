/**
 * The emulated SVM source of the agent (a Worker): built-in workloads run one after another
 * on an emulated machine (runtime/emu/), and their KFD SMI events are read through the same
 * path as on hardware (SMI_EVENTS fds, mask, poll/read, the parser), then posted to the main
 * thread in batches. It also publishes each GPU's VRAM in use to the emulated amdsmi, so
 * `gpu_used_vram` follows the emulated KFD. Everything it produces is emulated.
 */
import { EmuKfd } from "../emu/kfd.ts";
import { EmuMachine, EmuWorkloadAborted } from "../emu/machine.ts";
import { emuSmiVramPublish } from "../emu/smi.ts";
import { KfdDevice } from "../kfd/device.ts";
import { SMI_EVENTS_ALL, type SmiEvent, SmiEventReader } from "../kfd/smi-events.ts";
import { builtinWorkload } from "../sim/builtins.ts";
import type { MachineProfile } from "../sim/profile.ts";
import { PAGE_BYTES } from "../svm/constants.ts";

declare const self: Worker;

export interface EmuSvmStart {
  type: "start";
  profile: MachineProfile;
  workloads: string[];
  /** Quiet time between two workload runs, ms. */
  pauseMs: number;
  /** The emulated amdsmi's shared state (VRAM published into it). */
  smiShared?: SharedArrayBuffer;
}
export type EmuSvmMessage = { type: "events"; events: SmiEvent[]; dropped: number; workload: string } | { type: "error"; message: string } | { type: "stopped" };

/** Poll period of the emulated readers, ms. */
const EMU_POLL_ms = 20;
/**
 * Most share of wall time the emulated workloads may compute, held over every slice of
 * EMU_DUTY_SLICE_ms (runtime/emu/machine.ts): the demo must not take the cores the agent
 * serves from, nor take one in bursts (a workload computes for about a second).
 */
export const EMU_SVM_DUTY_MAX = 0.1;
/** Most events one message carries. */
export const EMU_EVENTS_PER_MESSAGE_MAX = 4096;

let stop: AbortController | undefined;

async function run(m: EmuSvmStart): Promise<void> {
  const profile = m.profile;
  stop = new AbortController();
  const signal = stop.signal;
  for (let round = 0; !signal.aborted; round++) {
    const name = m.workloads[round % m.workloads.length]!;
    const workload = builtinWorkload(name, profile);
    if (workload === undefined) throw new Error(`unknown built-in workload '${name}'`);
    const machine = new EmuMachine({ profile, seed: round + 1, dutyMax: EMU_SVM_DUTY_MAX });
    const sys = new EmuKfd(machine);
    const dev = KfdDevice.open(sys);
    const readers = profile.gpus.map((g) => SmiEventReader.open(dev, g.id, SMI_EVENTS_ALL));
    let droppedSeen = 0;
    const flush = (): void => {
      let batch: SmiEvent[] = [];
      for (const r of readers) {
        for (let b = r.pollOnce(); b.length > 0; b = r.pollOnce()) {
          for (const e of b) {
            batch.push(e);
            if (batch.length >= EMU_EVENTS_PER_MESSAGE_MAX) {
              self.postMessage({ type: "events", events: batch, dropped: 0, workload: name } satisfies EmuSvmMessage);
              batch = [];
            }
          }
        }
      }
      const dropped = machine.smiDropped - droppedSeen;
      droppedSeen = machine.smiDropped;
      if (batch.length > 0 || dropped > 0) self.postMessage({ type: "events", events: batch, dropped, workload: name } satisfies EmuSvmMessage);
      if (m.smiShared) for (const [i] of profile.gpus.entries()) emuSmiVramPublish(m.smiShared, i, machine.model.vramUsedPages[i]! * PAGE_BYTES);
    };
    const timer = setInterval(flush, EMU_POLL_ms);
    try {
      await machine.workloadRun(workload, sys.pid, signal);
    } catch (e) {
      if (!(e instanceof EmuWorkloadAborted)) throw e;
    } finally {
      clearInterval(timer);
      flush();
      for (const r of readers) r.close();
      dev.close();
      sys.unload();
      if (m.smiShared) for (const [i] of profile.gpus.entries()) emuSmiVramPublish(m.smiShared, i, 0);
    }
    // The round's machine and events are garbage now: give the memory back before the next.
    Bun.gc(true);
    if (!signal.aborted) {
      // One listener per pause, removed when the pause ends either way (no growth per round).
      await new Promise<void>((resolve) => {
        const onAbort = (): void => {
          clearTimeout(t);
          resolve();
        };
        const t = setTimeout(() => {
          signal.removeEventListener("abort", onAbort);
          resolve();
        }, m.pauseMs);
        signal.addEventListener("abort", onAbort, { once: true });
      });
    }
  }
}

self.onmessage = (ev: MessageEvent<EmuSvmStart | { type: "stop" }>) => {
  const m = ev.data;
  if (m.type === "stop") {
    stop?.abort();
    return;
  }
  run(m).then(
    () => self.postMessage({ type: "stopped" } satisfies EmuSvmMessage),
    (e) => self.postMessage({ type: "error", message: (e as Error).message } satisfies EmuSvmMessage),
  );
};
