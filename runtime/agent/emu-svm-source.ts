/**
 * The agent's end of the emulated SVM source. Without an AMD GPU, the agent's SVM events come
 * from built-in workloads running on the emulated KFD (runtime/agent/emu-svm.ts) in a child
 * process: the stand-in for the kernel and the GPU application, which on a host with GPUs are
 * not part of the agent either. The child forwards each emulated GPU's SMI event fd bytes
 * unparsed, and here they go through one SmiEventParser per GPU, as /dev/kfd's bytes do.
 *
 * Why a process of its own: the model's code and the garbage its runs leave behind would
 * otherwise stay resident in the agent (about 12 MB measured side by side; a Worker would
 * keep them in the same process), and its computing would share the thread that answers
 * scrapes. The child runs at EMU_SVM_NICE, so on a busy host the scrapes come first. It ends
 * when its stdin ends: on stop(), and when the agent dies in any way.
 *
 * The child's stdout is a stream of frames: a header of three little-endian u32 (kind, key,
 * payload length) and the payload.
 * - EMU_SVM_FRAME.smi: key the KFD gpu_id; payload the bytes of one read(2) of that GPU's
 *   event fd (1 to EMU_SVM_FRAME_PAYLOAD_MAX_bytes; a record may be torn across two frames).
 * - EMU_SVM_FRAME.dropped: key the events the emulated kernel dropped on full fifos since the
 *   last such frame (at least 1); no payload.
 * - EMU_SVM_FRAME.vram: key the GPU's index in the profile; payload the VRAM bytes the
 *   emulated KFD uses there, a little-endian f64 (an integer, 0 to VRAM_BYTES_MAX).
 * Anything else (an unknown kind, a length out of bounds, a gpu_id not in the profile, a
 * stream ending inside a frame) ends the source with one line saying what came.
 *
 * Its stdin: one line of JSON (EmuSvmChildConfig), then nothing until it ends.
 */
import { setPriority } from "node:os";
import { yieldToLoop } from "./loop.ts";
import { cliArgv } from "../assets.ts";
import { SMI_READ_BUFFER_bytes, type SmiEvent, SmiEventParser } from "../kfd/smi-events.ts";
import { type MachineProfile, VRAM_BYTES_MAX } from "../sim/profile.ts";

/** The CLI's internal command that runs the child (not listed in the help). */
export const EMU_SVM_CHILD_COMMAND = "__emu-svm-source";
/** Frame kinds of the child's stdout. */
export const EMU_SVM_FRAME = { smi: 1, dropped: 2, vram: 3 } as const;
/** Bytes of a frame header: kind, key, payload length, each a little-endian u32. */
export const EMU_SVM_FRAME_HEADER_bytes = 12;
/** Largest payload of a frame, bytes: one read of an event fd. */
export const EMU_SVM_FRAME_PAYLOAD_MAX_bytes = SMI_READ_BUFFER_bytes;
/** Bytes of a vram frame's payload (one f64). */
export const EMU_SVM_VRAM_PAYLOAD_bytes = 8;
/** Niceness the child runs at (0 is the agent's; 19 the lowest priority). */
export const EMU_SVM_NICE = 10;
/** Longest the child may take to exit after its stdin ends, ms; then it is killed. */
export const EMU_SVM_STOP_WAIT_ms = 3_000;
/** Tail of the child's stderr kept for the line saying why it ended, characters. */
export const EMU_SVM_STDERR_TAIL_chars = 4096;
/**
 * Bytes of the child's stream handled in one turn of the event loop; then timers and
 * scrapes run before the next. Bun reads a child's pipe as fast as it fills, so the child's
 * own backpressure starts only while this thread is busy: this bound keeps a fast child from
 * holding the agent's thread.
 */
export const EMU_SVM_READ_TURN_MAX_bytes = 64 * 1024;
/**
 * Environment variable the agent sets when it chose its own JavaScriptCore options (see
 * runtime/cli/agent.ts): the child then gets the options the user had, not the agent's.
 */
export const AGENT_JIT_ENV = "SVMRT_AGENT_JIT";

/** What the child is told on its stdin. */
export interface EmuSvmChildConfig {
  profile: MachineProfile;
  /** Built-in workload names, run in turn. */
  workloads: readonly string[];
  /** Quiet time between two workload runs, ms. */
  pauseMs: number;
}

/** One frame, as the child writes it. */
export function emuSvmFrame(kind: number, key: number, payload?: Uint8Array): Uint8Array {
  const n = payload?.length ?? 0;
  const out = new Uint8Array(EMU_SVM_FRAME_HEADER_bytes + n);
  const v = new DataView(out.buffer);
  v.setUint32(0, kind, true);
  v.setUint32(4, key, true);
  v.setUint32(8, n, true);
  if (payload) out.set(payload, EMU_SVM_FRAME_HEADER_bytes);
  return out;
}

/** The payload of a vram frame. */
export function emuSvmVramPayload(bytes: number): Uint8Array {
  const out = new Uint8Array(EMU_SVM_VRAM_PAYLOAD_bytes);
  new DataView(out.buffer).setFloat64(0, bytes, true);
  return out;
}

/** A stream that is not frames as the child writes them. */
export class EmuSvmStreamError extends Error {}

/**
 * Cuts the child's stdout into frames, whatever the chunking. Memory is bounded by one
 * header and one payload (EMU_SVM_FRAME_PAYLOAD_MAX_bytes) between chunks.
 */
export class EmuSvmFrameDecoder {
  private readonly header = new Uint8Array(EMU_SVM_FRAME_HEADER_bytes);
  private readonly headerView = new DataView(this.header.buffer);
  private headerFill = 0;
  private readonly payload = new Uint8Array(EMU_SVM_FRAME_PAYLOAD_MAX_bytes);
  private payloadFill = 0;
  /** The frame whose payload is being read, or undefined while reading a header. */
  private frame: { kind: number; key: number; length: number } | undefined;
  /** Frames decoded. */
  frames = 0;

  /**
   * Decode `chunk`, calling `onFrame` for each complete frame (the payload is valid only
   * during the call).
   * @throws EmuSvmStreamError for a header no frame has (unknown kind, length out of bounds).
   */
  push(chunk: Uint8Array, onFrame: (kind: number, key: number, payload: Uint8Array) => void): void {
    let at = 0;
    while (at < chunk.length) {
      if (this.frame === undefined) {
        const take = Math.min(EMU_SVM_FRAME_HEADER_bytes - this.headerFill, chunk.length - at);
        this.header.set(chunk.subarray(at, at + take), this.headerFill);
        this.headerFill += take;
        at += take;
        if (this.headerFill < EMU_SVM_FRAME_HEADER_bytes) return;
        this.headerFill = 0;
        const h = this.headerView;
        this.frame = EmuSvmFrameDecoder.checked(h.getUint32(0, true), h.getUint32(4, true), h.getUint32(8, true), this.frames);
        this.payloadFill = 0;
      }
      const f = this.frame;
      if (this.payloadFill === 0 && chunk.length - at >= f.length) {
        // The whole payload is in this chunk: no copy.
        this.frame = undefined;
        this.frames++;
        onFrame(f.kind, f.key, chunk.subarray(at, at + f.length));
        at += f.length;
        continue;
      }
      const take = Math.min(f.length - this.payloadFill, chunk.length - at);
      this.payload.set(chunk.subarray(at, at + take), this.payloadFill);
      this.payloadFill += take;
      at += take;
      if (this.payloadFill === f.length) {
        this.frame = undefined;
        this.frames++;
        onFrame(f.kind, f.key, this.payload.subarray(0, f.length));
      }
    }
  }

  /** True between frames: a stream may end here. */
  get atBoundary(): boolean {
    return this.frame === undefined && this.headerFill === 0;
  }

  private static checked(kind: number, key: number, length: number, index: number): { kind: number; key: number; length: number } {
    const bad = (what: string): never => {
      throw new EmuSvmStreamError(`frame ${index + 1} (kind ${kind}, key ${key}, length ${length}): ${what}`);
    };
    switch (kind) {
      case EMU_SVM_FRAME.smi:
        if (length < 1 || length > EMU_SVM_FRAME_PAYLOAD_MAX_bytes) bad(`an smi frame holds 1 to ${EMU_SVM_FRAME_PAYLOAD_MAX_bytes} bytes`);
        break;
      case EMU_SVM_FRAME.dropped:
        if (length !== 0 || key < 1) bad("a dropped frame has no payload and a count of at least 1");
        break;
      case EMU_SVM_FRAME.vram:
        if (length !== EMU_SVM_VRAM_PAYLOAD_bytes) bad(`a vram frame holds ${EMU_SVM_VRAM_PAYLOAD_bytes} bytes`);
        break;
      default:
        bad(`no frame has this kind (${Object.entries(EMU_SVM_FRAME).map(([k, v]) => `${v} ${k}`).join(", ")})`);
    }
    return { kind, key, length };
  }
}

export interface EmuSvmSourceOptions extends EmuSvmChildConfig {
  /** Events parsed from one frame of GPU `gpuId`, and its parser's cumulative malformed count. */
  onEvents(gpuId: number, events: SmiEvent[], malformedCount: number): void;
  /** Events the emulated kernel dropped on full fifos (the increase). */
  onDropped(count: number): void;
  /** VRAM bytes the emulated KFD uses on the GPU of profile index `gpuIndex`. */
  onVram(gpuIndex: number, bytes: number): void;
  /** The command that runs the child (default: this svmrt's CLI with EMU_SVM_CHILD_COMMAND). */
  argv?: readonly string[];
}

/**
 * A running child of the emulated SVM source. `done` settles when the child has exited:
 * fulfilled after stop(), rejected with one line when it ended any other way (its exit code
 * and the last line of its stderr), when its stream was malformed, or when a callback threw
 * (the child is then killed, and no callback is called again).
 */
export class EmuSvmSource {
  readonly done: Promise<void>;
  private readonly child: ReturnType<typeof spawnChild>;
  private stopping = false;
  private failed = false;
  private stderrTail = "";

  private constructor(private readonly o: EmuSvmSourceOptions) {
    this.child = spawnChild(o.argv ?? [...cliArgv(), EMU_SVM_CHILD_COMMAND]);
    try {
      setPriority(this.child.pid, EMU_SVM_NICE);
    } catch {
      // Not permitted here (a container without CAP_SYS_NICE may refuse): the child keeps the agent's priority.
    }
    const config: EmuSvmChildConfig = { profile: o.profile, workloads: o.workloads, pauseMs: o.pauseMs };
    // A child that is already gone makes these fail: its exit says why (run()).
    void Promise.resolve(this.child.stdin.write(`${JSON.stringify(config)}\n`)).catch(() => undefined);
    void Promise.resolve(this.child.stdin.flush()).catch(() => undefined);
    this.done = this.run();
  }

  /** Start the child. @throws Error when it cannot be spawned (the executable is missing). */
  static start(o: EmuSvmSourceOptions): EmuSvmSource {
    return new EmuSvmSource(o);
  }

  /** The child's pid. */
  get pid(): number {
    return this.child.pid;
  }

  /**
   * End the child's stdin, wait for it to exit (EMU_SVM_STOP_WAIT_ms at most, then kill
   * it); resolves once it has exited. No callback is called after this resolves.
   */
  async stop(): Promise<void> {
    this.stopping = true;
    try {
      void Promise.resolve(this.child.stdin.end()).catch(() => undefined);
    } catch {
      // Already closed: the child has exited or is exiting.
    }
    const timer = setTimeout(() => this.child.kill("SIGKILL"), EMU_SVM_STOP_WAIT_ms);
    try {
      await this.done.catch(() => undefined);
    } finally {
      clearTimeout(timer);
    }
  }

  private async run(): Promise<void> {
    const tail = this.stderrCollect();
    let failure: Error | undefined;
    try {
      await this.read();
    } catch (e) {
      failure = e instanceof EmuSvmStreamError ? new Error(`emulated SVM source: malformed stream: ${e.message}`) : (e as Error);
      this.failed = true;
      this.child.kill("SIGKILL");
    }
    const code = await this.child.exited;
    await tail;
    if (failure !== undefined) throw failure;
    if (this.stopping) return;
    const last = this.stderrTail.trim().split("\n").pop()?.trim();
    throw new Error(`emulated SVM source exited with ${this.child.signalCode ?? `code ${code}`}${last ? `: ${last}` : ""}`);
  }

  private async read(): Promise<void> {
    const parsers = new Map(this.o.profile.gpus.map((g) => [g.id, new SmiEventParser(g.id)]));
    const decoder = new EmuSvmFrameDecoder();
    const onFrame = (kind: number, key: number, payload: Uint8Array): void => {
      if (this.failed) return;
      switch (kind) {
        case EMU_SVM_FRAME.smi: {
          const parser = parsers.get(key);
          if (parser === undefined) throw new EmuSvmStreamError(`frame ${decoder.frames}: gpu_id 0x${key.toString(16)} is not a GPU of profile ${this.o.profile.name}`);
          const events: SmiEvent[] = [];
          parser.push(payload, events);
          this.o.onEvents(key, events, parser.malformedCount);
          break;
        }
        case EMU_SVM_FRAME.dropped:
          this.o.onDropped(key);
          break;
        case EMU_SVM_FRAME.vram: {
          const bytes = new DataView(payload.buffer, payload.byteOffset, payload.length).getFloat64(0, true);
          if (key >= this.o.profile.gpus.length || !Number.isSafeInteger(bytes) || bytes < 0 || bytes > VRAM_BYTES_MAX) {
            throw new EmuSvmStreamError(`frame ${decoder.frames}: vram of GPU index ${key}: ${bytes} bytes (expected an index below ${this.o.profile.gpus.length} and 0 to ${VRAM_BYTES_MAX} bytes)`);
          }
          this.o.onVram(key, bytes);
          break;
        }
      }
    };
    let turn = 0;
    for await (const chunk of this.child.stdout) {
      decoder.push(chunk, onFrame);
      turn += chunk.length;
      if (turn >= EMU_SVM_READ_TURN_MAX_bytes) {
        turn = 0;
        await yieldToLoop();
      }
    }
    if (!decoder.atBoundary) throw new EmuSvmStreamError(`the stream ended inside frame ${decoder.frames + 1}`);
  }

  /** Keep the last EMU_SVM_STDERR_TAIL_chars of the child's stderr. */
  private async stderrCollect(): Promise<void> {
    const text = new TextDecoder();
    for await (const chunk of this.child.stderr) {
      this.stderrTail = (this.stderrTail + text.decode(chunk, { stream: true })).slice(-EMU_SVM_STDERR_TAIL_chars);
    }
  }
}

function spawnChild(argv: readonly string[]) {
  const env = { ...process.env };
  // The agent's own JavaScriptCore options are for the agent: the model's hot loops want the
  // optimizing tiers. JIT options the user set stay. Only JavaScriptCore variables are
  // dropped, whatever the marker lists (a stray marker cannot take PATH away).
  if (env[AGENT_JIT_ENV] !== undefined) {
    for (const k of (env[AGENT_JIT_ENV] ?? "").split(",")) if (k.startsWith("BUN_JSC_")) delete env[k];
    delete env[AGENT_JIT_ENV];
  }
  // A session of its own: a signal to the agent's process group (a terminal's hang-up or
  // Ctrl-C) does not reach it. A service manager that signals every process of the agent's
  // cgroup does; the child ignores those signals once it runs (emuSvmChildMain), and the
  // agent does not report a child that dies while it stops.
  return Bun.spawn([...argv], { stdin: "pipe", stdout: "pipe", stderr: "pipe", env, detached: true });
}
