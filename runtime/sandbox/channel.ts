/**
 * Shared-memory channel of one sandbox instance: the hot batch path without per-call
 * handles.
 *
 * quickjs-emscripten's public calls allocate on every crossing: newArrayBuffer mallocs and
 * copies the input, callFunction builds a pointer array, typeof decodes a C string,
 * getArrayBuffer mallocs and copies the answer. Together ~8 µs per simulated fault batch,
 * more than the kernel's rules cost inside the sandbox. The channel allocates two buffers
 * once, in the instance's linear memory, and hands them to the guest as ArrayBuffers that
 * own those bytes (QTS_NewArrayBuffer adopts the pointer, it does not copy). The host then
 * writes the input and reads the answer in place and calls the guest's `run()` with no
 * argument.
 *
 * This reaches below the library's public API (the Emscripten module, the FFI and the
 * context pointer, all fields of the pinned quickjs-emscripten-core 0.32.0). It proves
 * itself when opened (the guest echoes a pattern the host wrote); when anything is not as
 * expected the sandbox keeps the public, copying path.
 */
import type { QuickJSContext, QuickJSHandle, QuickJSWASMModule } from "quickjs-emscripten-core";

/** Numbers of the input buffer: adapter index, n, then the adapter's input. */
export const CHANNEL_IN_NUMBERS = 40_000;
/** Numbers of the answer buffer. */
export const CHANNEL_OUT_NUMBERS = 4096;
/** Numbers before the adapter's input in the input buffer. */
export const CHANNEL_HEADER = 2;

interface EmscriptenHeap {
  HEAPU8: Uint8Array;
  _malloc(bytes: number): number;
}
interface Ffi {
  QTS_NewArrayBuffer(ctx: number, ptr: number, bytes: number): number;
  QTS_Call(ctx: number, fn: number, thisVal: number, argc: number, argv: number): number;
  QTS_ResolveException(ctx: number, value: number): number;
  QTS_GetFloat64(ctx: number, value: number): number;
  QTS_FreeValuePointer(ctx: number, value: number): void;
}
interface ContextInternals {
  ffi: Ffi;
  ctx: { value: number };
  memory: { heapValueHandle(ptr: number): QuickJSHandle };
}


export class Channel {
  private inView: Float64Array;
  private outView: Float64Array;
  /** The guest error a run() that answered NaN left (see takeError). */
  private escapedError: QuickJSHandle | undefined;

  private constructor(
    private readonly heap: EmscriptenHeap,
    private readonly ffi: Ffi,
    private readonly ctxPtr: number,
    private readonly internals: ContextInternals,
    private readonly fnRun: QuickJSHandle,
    private readonly undef: QuickJSHandle,
    private readonly inPtr: number,
    private readonly outPtr: number,
    /** Adapter name -> index in the guest's list. */
    readonly adapters: ReadonlyMap<string, number>,
  ) {
    this.inView = new Float64Array(heap.HEAPU8.buffer, inPtr, CHANNEL_IN_NUMBERS);
    this.outView = new Float64Array(heap.HEAPU8.buffer, outPtr, CHANNEL_OUT_NUMBERS);
  }

  /**
   * Open the channel of a freshly built instance (`host` is the guest's __svmrt object).
   * Undefined when the internals are not what this code expects or the self-test fails.
   */
  static open(raw: QuickJSWASMModule, context: QuickJSContext, host: QuickJSHandle): Channel | undefined {
    const heap = (raw as unknown as { module?: EmscriptenHeap }).module;
    const internals = context as unknown as Partial<ContextInternals>;
    const ffi = internals.ffi;
    if (
      !heap ||
      typeof heap._malloc !== "function" ||
      !(heap.HEAPU8 instanceof Uint8Array) ||
      !ffi ||
      typeof ffi.QTS_NewArrayBuffer !== "function" ||
      typeof ffi.QTS_Call !== "function" ||
      typeof internals.ctx?.value !== "number" ||
      typeof internals.memory?.heapValueHandle !== "function"
    ) {
      return undefined;
    }
    const ctxPtr = internals.ctx.value;
    const buffer = (numbers: number): { ptr: number; handle: QuickJSHandle } | undefined => {
      const ptr = heap._malloc(numbers * 8);
      if (!ptr || ptr % 8 !== 0) return undefined;
      // The ArrayBuffer adopts the bytes (freed with it, when the context goes).
      return { ptr, handle: internals.memory!.heapValueHandle(ffi.QTS_NewArrayBuffer(ctxPtr, ptr, numbers * 8)) };
    };
    const input = buffer(CHANNEL_IN_NUMBERS);
    const output = input && buffer(CHANNEL_OUT_NUMBERS);
    if (!input || !output) {
      input?.handle.dispose();
      return undefined;
    }
    const fnChannel = context.getProp(host, "channel");
    const opened = context.callFunction(fnChannel, context.undefined, input.handle, output.handle);
    fnChannel.dispose();
    input.handle.dispose();
    output.handle.dispose();
    if (opened.error) {
      opened.error.dispose();
      return undefined;
    }
    const names = context.typeof(opened.value) === "string" ? context.getString(opened.value) : "";
    opened.value.dispose();
    let list: unknown;
    try {
      list = JSON.parse(names);
    } catch {
      return undefined;
    }
    if (!Array.isArray(list)) return undefined;
    const fnRun = context.getProp(host, "run");
    const ch = new Channel(heap, ffi, ctxPtr, internals as ContextInternals, fnRun, context.undefined, input.ptr, output.ptr, new Map(list.map((n, i) => [String(n), i])));
    if (!ch.selfTest(context, host)) {
      fnRun.dispose();
      return undefined;
    }
    return ch;
  }

  /** The guest negates a pattern the host wrote: both sides see the same bytes. */
  private selfTest(context: QuickJSContext, host: QuickJSHandle): boolean {
    const pattern = [1.5, -2, 3e300, 2 ** 53 - 1, 0.1];
    this.input().set(pattern);
    const fnEcho = context.getProp(host, "echo");
    const k = context.newNumber(pattern.length);
    const r = context.callFunction(fnEcho, context.undefined, k);
    fnEcho.dispose();
    k.dispose();
    if (r.error) {
      r.error.dispose();
      return false;
    }
    r.value.dispose();
    const out = this.output();
    return pattern.every((v, i) => out[i] === -v);
  }

  /** The input buffer as the host sees it (views are rebuilt when the linear memory grew). */
  input(): Float64Array {
    if (this.inView.length === 0) this.inView = new Float64Array(this.heap.HEAPU8.buffer, this.inPtr, CHANNEL_IN_NUMBERS);
    return this.inView;
  }

  output(): Float64Array {
    if (this.outView.length === 0) this.outView = new Float64Array(this.heap.HEAPU8.buffer, this.outPtr, CHANNEL_OUT_NUMBERS);
    return this.outView;
  }

  /**
   * Call the guest's run() with no argument; the input must be written first. Answers the
   * guest's status: the answer's length in `output()`, or -1 (a wire answer waits in the
   * guest's takeWire), or NaN when an exception escaped the guest: takeError() has it.
   * No object is allocated on this path.
   */
  run(): number {
    const { ffi, ctxPtr } = this;
    const result = ffi.QTS_Call(ctxPtr, this.fnRun.value as unknown as number, this.undef.value as unknown as number, 0, 0);
    const error = ffi.QTS_ResolveException(ctxPtr, result);
    if (error) {
      ffi.QTS_FreeValuePointer(ctxPtr, result);
      this.escapedError?.dispose();
      this.escapedError = this.internals.memory.heapValueHandle(error);
      return Number.NaN;
    }
    const status = ffi.QTS_GetFloat64(ctxPtr, result);
    ffi.QTS_FreeValuePointer(ctxPtr, result);
    return status;
  }

  /** The error handle of the last run() that answered NaN (the caller disposes it). */
  takeError(): QuickJSHandle | undefined {
    const e = this.escapedError;
    this.escapedError = undefined;
    return e;
  }

  dispose(): void {
    this.escapedError?.dispose();
    this.escapedError = undefined;
    this.fnRun.dispose();
  }
}
