/**
 * The emulated SVM source: built-in workloads run one after another on an emulated machine
 * (runtime/emu/), and their KFD SMI event fds are read through the same path as on hardware
 * (SMI_EVENTS fds, mask, poll/read). It runs in a child process of the agent
 * (emu-svm-source.ts, the CLI's EMU_SVM_CHILD_COMMAND): emuSvmChildMain forwards each read's
 * bytes unparsed as frames on stdout, with the events the emulated kernel dropped and each
 * GPU's VRAM in use (for the agent's emulated amdsmi, so `gpu_used_vram` follows the emulated
 * KFD). Everything it produces is emulated.
 *
 * The workloads compute at most EMU_SVM_DUTY_MAX of wall time, so the demo's CPU use stays
 * small and steady on the host the agent serves from.
 */
import { EmuKfd } from "../emu/kfd.ts";
import { EmuMachine, EmuWorkloadAborted } from "../emu/machine.ts";
import { KfdDevice } from "../kfd/device.ts";
import { SMI_EVENTS_ALL, SmiEventReader } from "../kfd/smi-events.ts";
import { builtinWorkload } from "../sim/builtins.ts";
import { PAGE_BYTES } from "../svm/constants.ts";
import { EMU_SVM_FRAME, type EmuSvmChildConfig, emuSvmFrame, emuSvmVramPayload } from "./emu-svm-source.ts";

/** Poll period of the emulated readers, ms. */
export const EMU_SVM_POLL_ms = 20;
/** Most share of wall time the emulated workloads may compute (EmuMachineOptions.dutyMax). */
export const EMU_SVM_DUTY_MAX = 0.1;
/** Longest quiet time between two workload runs, ms. */
export const EMU_SVM_PAUSE_MAX_ms = 3_600_000;
/** Largest first line of the child's stdin (its EmuSvmChildConfig), bytes. */
export const EMU_SVM_CONFIG_MAX_bytes = 1 << 20;

export interface EmuSvmOptions extends EmuSvmChildConfig {
  /** The bytes of one read of GPU `gpuId`'s event fd (valid only during the call). */
  onBytes(gpuId: number, bytes: Uint8Array): void;
  /** Events the emulated kernel dropped on full fifos since the last call (at least 1). */
  onDropped(count: number): void;
  /** VRAM bytes the emulated KFD uses on the GPU of profile index `gpuIndex` (0 once a run ends). */
  onVram(gpuIndex: number, bytes: number): void;
  /** While this says true, the event fds are not read (the consumer is behind). */
  paused?(): boolean;
}

/**
 * Run the workloads in turn until `signal` aborts; resolves once the running one has stopped
 * and its readers and device are closed (they are closed on every way out).
 * @throws Error for an unknown built-in workload name; what a callback or a reader's poll
 *   threw (the run ends, nothing is left open)
 */
export async function emuSvmRun(o: EmuSvmOptions, signal: AbortSignal): Promise<void> {
  const { profile } = o;
  for (let round = 0; !signal.aborted; round++) {
    const name = o.workloads[round % o.workloads.length]!;
    const workload = builtinWorkload(name, profile);
    if (workload === undefined) throw new Error(`unknown built-in workload '${name}'`);
    const machine = new EmuMachine({ profile, seed: round + 1, dutyMax: EMU_SVM_DUTY_MAX });
    // Ends this run on stop, or when a poll fails: a throw from the poll timer would be
    // uncaught, so it is kept, the run ended, and the throw made here.
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
      // `final`: the run's last read, whatever `paused` says (the readers close next, and
      // what their fifos hold would be lost uncounted).
      const flush = (final = false): void => {
        for (const r of readers) {
          // Until the fd has nothing more (pollBytes stops after SMI_READS_PER_POLL_MAX reads).
          for (let more = true; more && (final || o.paused?.() !== true); ) {
            more = false;
            r.pollBytes((bytes) => {
              more = true;
              o.onBytes(r.gpuId, bytes);
            });
          }
        }
        const dropped = machine.smiDropped - droppedSeen;
        droppedSeen = machine.smiDropped;
        if (dropped > 0) o.onDropped(dropped);
        for (const [i] of profile.gpus.entries()) o.onVram(i, machine.model.vramUsedPages[i]! * PAGE_BYTES);
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
      flush(true);
      for (const [i] of profile.gpus.entries()) o.onVram(i, 0);
    } finally {
      signal.removeEventListener("abort", onStop);
      for (const r of readers) r.close();
      dev?.close();
      sys.unload();
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

/**
 * The child process (the CLI's EMU_SVM_CHILD_COMMAND): read its EmuSvmChildConfig from the
 * first line of stdin, run the workloads with their frames on stdout until stdin ends, then
 * exit. A bad config or a failing run is one line on stderr and a non-zero exit; a closed
 * stdout (the agent is gone) ends it quietly.
 * @returns the exit code: 0 when stdin ended, 1 when the run failed, 2 for a bad config or
 *   a terminal on stdin.
 */
export async function emuSvmChildMain(err: (line: string) => void): Promise<number> {
  if (process.stdin.isTTY) {
    // Typed at a terminal: it would wait for a config line nobody writes.
    err("the agent's internal command: it reads its config from the agent on stdin; run 'svmrt agent'");
    return 2;
  }
  const stop = new AbortController();
  // The agent ends it by ending its stdin. A signal to the agent's process group (a
  // terminal's hang-up or Ctrl-C, a service manager stopping the whole group) must not end
  // it first: the agent would go on reloading, or stopping in order, with its source dead.
  for (const sig of ["SIGHUP", "SIGINT", "SIGTERM"] as const) process.on(sig, () => {});
  const input = Bun.stdin.stream().getReader();
  const chunks: Uint8Array[] = [];
  let length = 0;
  let newline = -1;
  while (newline < 0) {
    const { done, value } = await input.read();
    if (done) return 0;
    const nl = value.indexOf(0x0a);
    if (nl >= 0) newline = length + nl;
    chunks.push(value);
    length += value.length;
    if ((newline < 0 ? length : newline) > EMU_SVM_CONFIG_MAX_bytes) {
      err(`the config line on stdin is longer than ${EMU_SVM_CONFIG_MAX_bytes} bytes`);
      return 2;
    }
  }
  const config = configParse(new TextDecoder().decode(Buffer.concat(chunks).subarray(0, newline)));
  if (typeof config === "string") {
    err(`the config line on stdin ${config}`);
    return 2;
  }
  // The rest of stdin is nothing until its end: the stop.
  void (async () => {
    while (!(await input.read()).done) {}
    stop.abort();
  })().catch(() => stop.abort());
  const out = process.stdout;
  out.on("error", () => stop.abort());
  // While stdout is above its high-water mark (the agent reads slower than the workloads
  // produce), the event fds are not read: the emulated kernel's fifos fill and it drops and
  // counts events, as the kernel does for a slow reader. The child holds at most one poll of
  // one fd (SMI_READS_PER_POLL_MAX reads of SMI_READ_BUFFER_bytes) beyond the mark.
  let backedUp = false;
  out.on("drain", () => {
    backedUp = false;
  });
  const write = (frame: Uint8Array): void => {
    if (!out.destroyed && !out.write(frame)) backedUp = true;
  };
  // A GPU's VRAM is sent when it changes.
  const vramSent = new Map<number, number>();
  try {
    await emuSvmRun(
      {
        ...config,
        onBytes: (gpuId, bytes) => write(emuSvmFrame(EMU_SVM_FRAME.smi, gpuId, bytes)),
        onDropped: (count) => write(emuSvmFrame(EMU_SVM_FRAME.dropped, count)),
        onVram: (gpuIndex, bytes) => {
          if (vramSent.get(gpuIndex) === bytes) return;
          vramSent.set(gpuIndex, bytes);
          write(emuSvmFrame(EMU_SVM_FRAME.vram, gpuIndex, emuSvmVramPayload(bytes)));
        },
        paused: () => backedUp,
      },
      stop.signal,
    );
  } catch (e) {
    err((e as Error).message);
    return 1;
  }
  return 0;
}

/** The config of the child's first stdin line, or what is wrong with it. */
function configParse(line: string): EmuSvmChildConfig | string {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch (e) {
    return `is not JSON (${(e as Error).message})`;
  }
  const c = v as Partial<EmuSvmChildConfig> | null;
  if (typeof c !== "object" || c === null) return "is not a JSON object";
  if (typeof c.profile !== "object" || c.profile === null || !Array.isArray(c.profile.gpus) || c.profile.gpus.length === 0) {
    return "has no profile with GPUs";
  }
  if (!Array.isArray(c.workloads) || c.workloads.length === 0 || !c.workloads.every((w) => typeof w === "string")) {
    return "has no list of workload names";
  }
  if (typeof c.pauseMs !== "number" || !(c.pauseMs >= 0 && c.pauseMs <= EMU_SVM_PAUSE_MAX_ms)) {
    return `has no pauseMs from 0 to ${EMU_SVM_PAUSE_MAX_ms}`;
  }
  return c as EmuSvmChildConfig;
}
