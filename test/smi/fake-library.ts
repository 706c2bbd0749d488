/**
 * FakeSmiLibrary: an in-memory TEST DOUBLE of SmiLibrary for single-thread session tests.
 * It counts inits, shutdowns and calls made while not initialised; its handles carry the
 * init cycle, so a handle of an earlier cycle is refused like a dangling library pointer.
 * The cross-thread tests use the C double of libamd_smi instead (test/native/).
 */
import { SmiError } from "../../runtime/errors.ts";
import type { SmiLibrary, SmiLibraryInfo } from "../../runtime/smi/library.ts";

export interface FakeOptions {
  gpus?: number;
  /** Init fails this many times with `initFailStatus`. */
  initFailures?: number;
  initFailStatus?: [string, number];
  /** Runs inside every init call, before it succeeds or fails (a slow or hung init). */
  onInit?: () => void;
}

export class FakeSmiLibrary implements SmiLibrary {
  readonly info: SmiLibraryInfo = { backend: "emulated", emulated: true, path: "fake", version: "fake", missingOptional: [] };
  inits = 0;
  shutdowns = 0;
  initialised = false;
  cycle = 0;
  callsWhileDown = 0;
  calls = 0;
  initFailuresLeft: number;
  /** Every call in order: "init", "shutdown", or the reading's name. */
  readonly log: string[] = [];

  constructor(readonly opts: FakeOptions = {}) {
    this.initFailuresLeft = opts.initFailures ?? 0;
  }

  private use(fn: string): void {
    this.calls++;
    this.log.push(fn);
    if (!this.initialised) {
      this.callsWhileDown++;
      throw new SmiError(fn, "NOT_INIT", 32);
    }
  }
  private check(fn: string, h: bigint): number {
    this.use(fn);
    const cycle = Number(h >> 16n);
    const index = Number(h & 0xffffn);
    if (cycle !== this.cycle || index >= (this.opts.gpus ?? 2)) throw new SmiError(fn, "INVAL", 1, "stale handle");
    return index;
  }
  init(): void {
    this.log.push("init");
    this.opts.onInit?.();
    if (this.initFailuresLeft > 0) {
      this.initFailuresLeft--;
      const [name, n] = this.opts.initFailStatus ?? ["DRIVER_NOT_LOADED", 34];
      throw new SmiError("amdsmi_init", name, n);
    }
    if (this.initialised) throw new Error("FakeSmiLibrary: init while initialised (the manager must never do this)");
    this.inits++;
    this.cycle++;
    this.initialised = true;
  }
  shutDown(): void {
    this.log.push("shutdown");
    if (!this.initialised) throw new Error("FakeSmiLibrary: shutdown while not initialised");
    this.shutdowns++;
    this.initialised = false;
  }
  gpuHandles(): bigint[] {
    this.use("gpuHandles");
    return Array.from({ length: this.opts.gpus ?? 2 }, (_, i) => (BigInt(this.cycle) << 16n) | BigInt(i));
  }
  gpuHandleFromUuid(uuid: string): bigint {
    this.use("gpuHandleFromUuid");
    const i = Number(uuid.split("-").pop());
    if (!Number.isInteger(i) || i >= (this.opts.gpus ?? 2)) throw new SmiError("amdsmi_get_processor_handle_from_uuid", "NOT_FOUND", 31);
    return (BigInt(this.cycle) << 16n) | BigInt(i);
  }
  gpuStatic(h: bigint) {
    const i = this.check("gpuStatic", h);
    return { uuid: `fake-gpu-${i}`, bdf: `0000:0${i}:00.0`, deploymentMode: "baremetal" as const };
  }
  gpuTemperature(h: bigint) {
    return 40 + this.check("gpuTemperature", h);
  }
  gpuPower(h: bigint) {
    return { socketW: 100 + this.check("gpuPower", h) };
  }
  gpuActivity(h: bigint) {
    this.check("gpuActivity", h);
    return { gfxPct: 50 };
  }
  gpuMemory(h: bigint) {
    this.check("gpuMemory", h);
    return { usedBytes: 1, totalBytes: 2 };
  }
  gpuXgmi(h: bigint) {
    this.check("gpuXgmi", h);
    return { hiveId: 0n, nodeId: 0n, index: 0, lanes: 0 };
  }
  gpuLink(a: bigint, b: bigint) {
    this.check("gpuLink", a);
    this.check("gpuLink", b);
    return { hops: 1, type: "pcie" as const };
  }
  gpuPcie(h: bigint) {
    this.check("gpuPcie", h);
    return {};
  }
  gpuEcc(h: bigint) {
    this.check("gpuEcc", h);
    return { correctable: 0, uncorrectable: 0 };
  }
  eventsStart(): void {}
  eventsRead() {
    return [];
  }
  eventsStop(): void {}
  unload(): void {}
  [Symbol.dispose](): void {}
}
