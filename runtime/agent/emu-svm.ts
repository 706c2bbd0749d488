/**
 * The emulated SVM source of the agent: built-in workloads run one after another on an
 * emulated machine (runtime/emu/), and their KFD SMI events are read through the same path as
 * on hardware (SMI_EVENTS fds, mask, poll/read, the parser) and handed to the agent. It also
 * publishes each GPU's VRAM in use to the emulated amdsmi, so `gpu_used_vram` follows the
 * emulated KFD. Everything it produces is emulated.
 *
 * It runs on the agent's main thread, paced: at most EMU_SVM_DUTY_MAX of wall time, in bursts
 * of at most EMU_SVM_DUTY_MAX × EMU_SVM_DUTY_SLICE_ms, so a scrape arriving during a burst
 * waits about a millisecond at most. A Worker of its own would cost more than it saves: a
 * second JavaScript heap with its own copy of the model's modules (about 15 MB resident), and
 * every event copied across threads.
 */
import { EmuKfd } from "../emu/kfd.ts";
import { EmuMachine, EmuWorkloadAborted } from "../emu/machine.ts";
import { emuSmiVramPublish } from "../emu/smi.ts";
import { KfdDevice } from "../kfd/device.ts";
import { SMI_EVENTS_ALL, type SmiEvent, SmiEventReader } from "../kfd/smi-events.ts";
import { builtinWorkload } from "../sim/builtins.ts";
import type { MachineProfile } from "../sim/profile.ts";
import { PAGE_BYTES } from "../svm/constants.ts";

/** Poll period of the emulated readers, ms. */
export const EMU_SVM_POLL_ms = 20;
/** Most share of wall time the emulated workloads may compute (EmuMachineOptions.dutyMax). */
export const EMU_SVM_DUTY_MAX = 0.1;
/** Slice the duty cap holds over, ms: bursts of computing last at most 1 ms. */
export const EMU_SVM_DUTY_SLICE_ms = 10;

export interface EmuSvmOptions {
  profile: MachineProfile;
  /** Built-in workload names, run in turn. */
  workloads: readonly string[];
  /** Quiet time between two workload runs, ms. */
  pauseMs: number;
  /** The emulated amdsmi's shared state (VRAM published into it). */
  smiShared?: SharedArrayBuffer;
  /** Events as the readers deliver them (each batch bounded by the reader), and events dropped on full readers. */
  onEvents(events: SmiEvent[], dropped: number, workload: string): void;
}

/**
 * Run the workloads in turn until `signal` aborts; resolves once the running one has stopped
 * and its readers and device are closed (they are closed on every way out).
 * @throws Error for an unknown built-in workload name; what `onEvents` or a reader's poll
 *   threw (the run ends, nothing is left open)
 */
export async function emuSvmRun(o: EmuSvmOptions, signal: AbortSignal): Promise<void> {
  const { profile } = o;
  for (let round = 0; !signal.aborted; round++) {
    const name = o.workloads[round % o.workloads.length]!;
    const workload = builtinWorkload(name, profile);
    if (workload === undefined) throw new Error(`unknown built-in workload '${name}'`);
    const machine = new EmuMachine({ profile, seed: round + 1, dutyMax: EMU_SVM_DUTY_MAX, dutySliceMs: EMU_SVM_DUTY_SLICE_ms });
    // Ends this run on stop, or when a poll fails: a throw from the poll timer would be
    // uncaught on the agent's thread, so it is kept, the run ended, and the throw made here.
    const run = new AbortController();
    const onStop = (): void => run.abort();
    signal.addEventListener("abort", onStop, { once: true });
    let failure: { error: unknown } | undefined;
    const sys = new EmuKfd(machine);
    let dev: KfdDevice | undefined;
    const readers: SmiEventReader[] = [];
    try {
      dev = KfdDevice.open(sys);
      for (const g of profile.gpus) readers.push(SmiEventReader.open(dev, g.id, SMI_EVENTS_ALL));
      let droppedSeen = 0;
      const flush = (): void => {
        for (const r of readers) for (let b = r.pollOnce(); b.length > 0; b = r.pollOnce()) o.onEvents(b, 0, name);
        const dropped = machine.smiDropped - droppedSeen;
        droppedSeen = machine.smiDropped;
        if (dropped > 0) o.onEvents([], dropped, name);
        if (o.smiShared) for (const [i] of profile.gpus.entries()) emuSmiVramPublish(o.smiShared, i, machine.model.vramUsedPages[i]! * PAGE_BYTES);
      };
      const timer = setInterval(() => {
        // After a failure the run is ending: the consumer is not called again.
        if (failure !== undefined) return;
        try {
          flush();
        } catch (e) {
          failure ??= { error: e };
          run.abort();
        }
      }, EMU_SVM_POLL_ms);
      try {
        await machine.workloadRun(workload, sys.pid, run.signal);
      } catch (e) {
        if (!(e instanceof EmuWorkloadAborted)) throw e;
      } finally {
        clearInterval(timer);
      }
      if (failure !== undefined) throw failure.error;
      // The run's last events.
      flush();
    } finally {
      signal.removeEventListener("abort", onStop);
      for (const r of readers) r.close();
      dev?.close();
      sys.unload();
      if (o.smiShared) for (const [i] of profile.gpus.entries()) emuSmiVramPublish(o.smiShared, i, 0);
    }
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
        }, o.pauseMs);
        signal.addEventListener("abort", onAbort, { once: true });
      });
    }
  }
}
