/**
 * KFD SMI events: the per-GPU event fd (SMI_EVENTS ioctl), its 8-byte enable mask, a
 * non-blocking reader for the event loop, and a streaming parser of the kernel's text records
 * into typed events (reference/kfd-uapi.md "SMI events", kernel kfd_smi_events.c).
 *
 * Record format: `"%x "` event id, then the payload, newline terminated, at most
 * SMI_EVENT_MSG_SIZE_bytes (96) bytes in all. Reads may tear a record across two reads; a line
 * longer than 96 bytes cannot come from the kernel and is counted as malformed and skipped, as
 * is any line that does not parse. Malformed input is counted and sampled, never fatal.
 */
import { KfdError } from "../errors.ts";
import { ERRNO, errnoName } from "../ffi/errno.ts";
import { POLLERR, POLLFD_SIZE_bytes, POLLHUP, POLLIN, POLLNVAL, type Syscalls, pollfdRevents, pollfdSet } from "../ffi/syscalls.ts";
import { type KfdDevice, kfdHint } from "./device.ts";
import { SMI_EVENT, SMI_EVENT_MSG_SIZE_bytes, type SmiEventName, smiEventMaskFromIndex } from "./uapi.ts";

/** Bytes read from an event fd per read(2): a bound on memory, not on events (they wait). */
export const SMI_READ_BUFFER_bytes = 4096;
/** read(2) calls per poll before yielding back to the event loop. */
export const SMI_READS_PER_POLL_MAX = 16;
/** Malformed lines kept as samples for the report (the count is exact). */
export const SMI_MALFORMED_SAMPLES_MAX = 8;
/** Default period of the reader's non-blocking poll timer. */
export const SMI_POLL_INTERVAL_ms = 50;
/** Largest pid a record may carry (the kernel's PID_MAX_LIMIT on 64-bit). */
export const PID_MAX = 4_194_304;

const NEWLINE = 0x0a;

interface SmiEventBase {
  /** The GPU whose event fd delivered it. */
  gpuId: number;
}

/** Events of SVM processes: boot-time ns and pid. Addresses and sizes are in pages. */
interface SmiProcessEvent extends SmiEventBase {
  ns: bigint;
  pid: number;
}

export interface SmiVmFault extends SmiEventBase {
  kind: "VMFAULT";
  pid: number;
  taskName: string;
}
export interface SmiThermalThrottle extends SmiEventBase {
  kind: "THERMAL_THROTTLE";
  bitmask: number;
  counter: bigint;
}
export interface SmiGpuReset extends SmiEventBase {
  kind: "GPU_PRE_RESET" | "GPU_POST_RESET";
  seq: number;
  cause: string;
}
export interface SmiMigrateStart extends SmiProcessEvent {
  kind: "MIGRATE_START";
  startPage: number;
  sizePages: number;
  /** gpu_id, 0 = system memory. */
  from: number;
  to: number;
  prefetchLoc: number;
  preferredLoc: number;
  trigger: number;
}
export interface SmiMigrateEnd extends SmiProcessEvent {
  kind: "MIGRATE_END";
  startPage: number;
  sizePages: number;
  from: number;
  to: number;
  trigger: number;
  /** Absent on kernels that print no error code. */
  errorCode?: number;
}
export interface SmiPageFaultStart extends SmiProcessEvent {
  kind: "PAGE_FAULT_START";
  page: number;
  /** The faulting GPU's gpu_id (the `(node)` field). */
  node: number;
  write: boolean;
}
export interface SmiPageFaultEnd extends SmiProcessEvent {
  kind: "PAGE_FAULT_END";
  page: number;
  node: number;
  /** 'M': pages migrated; 'U': only the mapping was updated. */
  migrated: boolean;
}
export interface SmiQueueEviction extends SmiProcessEvent {
  kind: "QUEUE_EVICTION";
  node: number;
  trigger: number;
}
export interface SmiQueueRestore extends SmiProcessEvent {
  kind: "QUEUE_RESTORE";
  node: number;
  /** 'R': restore rescheduled; '0': restored. */
  rescheduled: boolean;
}
export interface SmiUnmapFromGpu extends SmiProcessEvent {
  kind: "UNMAP_FROM_GPU";
  startPage: number;
  sizePages: number;
  node: number;
  trigger: number;
}
export interface SmiProcessLifecycle extends SmiEventBase {
  kind: "PROCESS_START" | "PROCESS_END";
  pid: number;
  taskName: string;
}

/** Every event the parser yields, discriminated by `kind`. */
export type SmiEvent =
  | SmiVmFault
  | SmiThermalThrottle
  | SmiGpuReset
  | SmiMigrateStart
  | SmiMigrateEnd
  | SmiPageFaultStart
  | SmiPageFaultEnd
  | SmiQueueEviction
  | SmiQueueRestore
  | SmiUnmapFromGpu
  | SmiProcessLifecycle;

const HEX = "([0-9a-fA-F]+)";
const DEC = "(\\d+)";
const SDEC = "(-?\\d+)";
const HEAD = `${DEC} -${DEC}`; // ns -pid
const RE = {
  VMFAULT: new RegExp(`^${HEX}:(.*)$`),
  THERMAL_THROTTLE: new RegExp(`^${HEX}:${HEX}$`),
  GPU_RESET: new RegExp(`^${HEX} (.*)$`),
  MIGRATE_START: new RegExp(`^${HEAD} @${HEX}\\(${HEX}\\) ${HEX}->${HEX} ${HEX}:${HEX} ${DEC}$`),
  MIGRATE_END: new RegExp(`^${HEAD} @${HEX}\\(${HEX}\\) ${HEX}->${HEX} ${DEC}(?: ${SDEC})?$`),
  PAGE_FAULT_START: new RegExp(`^${HEAD} @${HEX}\\(${HEX}\\) ([RW])$`),
  PAGE_FAULT_END: new RegExp(`^${HEAD} @${HEX}\\(${HEX}\\) ([MU])$`),
  QUEUE_EVICTION: new RegExp(`^${HEAD} ${HEX} ${DEC}$`),
  QUEUE_RESTORE: new RegExp(`^${HEAD} ${HEX} ([0R])$`),
  UNMAP_FROM_GPU: new RegExp(`^${HEAD} @${HEX}\\(${HEX}\\) ${HEX} ${DEC}$`),
  PROCESS: new RegExp(`^${HEX} (.*)$`),
} as const;

const NAME_OF_ID = new Map<number, SmiEventName>(
  (Object.entries(SMI_EVENT) as [SmiEventName, number][]).map(([name, id]) => [id, name]),
);

const h = (s: string | undefined): number => Number.parseInt(s!, 16);
const d = (s: string | undefined): number => Number.parseInt(s!, 10);

/**
 * One record without its newline into a typed event, or undefined when it does not parse
 * (unknown id, wrong payload, numbers beyond 2^53).
 */
export function smiEventParseLine(line: string, gpuId: number): SmiEvent | undefined {
  const sp = line.indexOf(" ");
  if (sp <= 0 || !/^[0-9a-f]+$/.test(line.slice(0, sp))) return undefined;
  const name = NAME_OF_ID.get(Number.parseInt(line.slice(0, sp), 16));
  const p = line.slice(sp + 1);
  let m: RegExpExecArray | null;
  let ev: SmiEvent | undefined;
  switch (name) {
    case "VMFAULT":
      m = RE.VMFAULT.exec(p);
      if (m) ev = { kind: name, gpuId, pid: h(m[1]), taskName: m[2]! };
      break;
    case "THERMAL_THROTTLE":
      m = RE.THERMAL_THROTTLE.exec(p);
      if (m) ev = { kind: name, gpuId, bitmask: h(m[1]), counter: BigInt(`0x${m[2]}`) };
      break;
    case "GPU_PRE_RESET":
    case "GPU_POST_RESET":
      m = RE.GPU_RESET.exec(p);
      if (m) ev = { kind: name, gpuId, seq: h(m[1]), cause: m[2]! };
      break;
    case "MIGRATE_START":
      m = RE.MIGRATE_START.exec(p);
      if (m) {
        ev = {
          kind: name,
          gpuId,
          ns: BigInt(m[1]!),
          pid: d(m[2]),
          startPage: h(m[3]),
          sizePages: h(m[4]),
          from: h(m[5]),
          to: h(m[6]),
          prefetchLoc: h(m[7]),
          preferredLoc: h(m[8]),
          trigger: d(m[9]),
        };
      }
      break;
    case "MIGRATE_END":
      m = RE.MIGRATE_END.exec(p);
      if (m) {
        const end: SmiMigrateEnd = {
          kind: name,
          gpuId,
          ns: BigInt(m[1]!),
          pid: d(m[2]),
          startPage: h(m[3]),
          sizePages: h(m[4]),
          from: h(m[5]),
          to: h(m[6]),
          trigger: d(m[7]),
        };
        if (m[8] !== undefined) end.errorCode = d(m[8]);
        ev = end;
      }
      break;
    case "PAGE_FAULT_START":
      m = RE.PAGE_FAULT_START.exec(p);
      if (m) ev = { kind: name, gpuId, ns: BigInt(m[1]!), pid: d(m[2]), page: h(m[3]), node: h(m[4]), write: m[5] === "W" };
      break;
    case "PAGE_FAULT_END":
      m = RE.PAGE_FAULT_END.exec(p);
      if (m) ev = { kind: name, gpuId, ns: BigInt(m[1]!), pid: d(m[2]), page: h(m[3]), node: h(m[4]), migrated: m[5] === "M" };
      break;
    case "QUEUE_EVICTION":
      m = RE.QUEUE_EVICTION.exec(p);
      if (m) ev = { kind: name, gpuId, ns: BigInt(m[1]!), pid: d(m[2]), node: h(m[3]), trigger: d(m[4]) };
      break;
    case "QUEUE_RESTORE":
      m = RE.QUEUE_RESTORE.exec(p);
      if (m) ev = { kind: name, gpuId, ns: BigInt(m[1]!), pid: d(m[2]), node: h(m[3]), rescheduled: m[4] === "R" };
      break;
    case "UNMAP_FROM_GPU":
      m = RE.UNMAP_FROM_GPU.exec(p);
      if (m) {
        ev = {
          kind: name,
          gpuId,
          ns: BigInt(m[1]!),
          pid: d(m[2]),
          startPage: h(m[3]),
          sizePages: h(m[4]),
          node: h(m[5]),
          trigger: d(m[6]),
        };
      }
      break;
    case "PROCESS_START":
    case "PROCESS_END":
      m = RE.PROCESS.exec(p);
      if (m) ev = { kind: name, gpuId, pid: h(m[1]), taskName: m[2]! };
      break;
    default:
      return undefined;
  }
  if (!ev) return undefined;
  // A number past 2^53 would be silently rounded: refuse it rather than report a wrong value.
  for (const v of Object.values(ev)) if (typeof v === "number" && !Number.isSafeInteger(v)) return undefined;
  // No pid above PID_MAX (nor 0, but for a VMFAULT with no task): it names no process.
  if ("pid" in ev && (ev.pid > PID_MAX || (ev.pid < 1 && ev.kind !== "VMFAULT"))) return undefined;
  return ev;
}

export interface SmiMalformedReport {
  /** Lines longer than SMI_EVENT_MSG_SIZE_bytes, skipped up to their newline. */
  overlong: number;
  /** Lines that do not parse as any event. */
  unparsable: number;
  /** The last few malformed lines (overlong ones cut to 96 bytes), for the report. */
  samples: string[];
}

/**
 * Streaming parser: feed it reads as they come; it keeps at most one partial record
 * (SMI_EVENT_MSG_SIZE_bytes) between reads.
 */
export class SmiEventParser {
  private readonly partial = new Uint8Array(SMI_EVENT_MSG_SIZE_bytes);
  private partialLength = 0;
  /** Inside an overlong line: drop bytes until the next newline. */
  private skipping = false;
  private readonly decoder = new TextDecoder("utf-8", { fatal: false });
  readonly malformed: SmiMalformedReport = { overlong: 0, unparsable: 0, samples: [] };

  constructor(readonly gpuId: number) {}

  /** Total malformed lines so far. */
  get malformedCount(): number {
    return this.malformed.overlong + this.malformed.unparsable;
  }

  /** Parse `chunk`, appending complete events to `out`. */
  push(chunk: Uint8Array, out: SmiEvent[]): void {
    let at = 0;
    while (at < chunk.length) {
      const nl = chunk.indexOf(NEWLINE, at);
      const end = nl < 0 ? chunk.length : nl;
      const piece = chunk.subarray(at, end);
      if (this.skipping) {
        if (nl >= 0) this.skipping = false;
      } else if (this.partialLength + piece.length + (nl >= 0 ? 1 : 0) > SMI_EVENT_MSG_SIZE_bytes) {
        // Longer than any record the kernel writes (newline included): count once, skip the rest.
        const room = SMI_EVENT_MSG_SIZE_bytes - this.partialLength;
        this.partial.set(piece.subarray(0, Math.max(0, room)), this.partialLength);
        this.sample(this.decoder.decode(this.partial.subarray(0, SMI_EVENT_MSG_SIZE_bytes)));
        this.malformed.overlong++;
        this.partialLength = 0;
        this.skipping = nl < 0;
      } else if (nl < 0) {
        this.partial.set(piece, this.partialLength);
        this.partialLength += piece.length;
      } else {
        let line: string;
        if (this.partialLength > 0) {
          this.partial.set(piece, this.partialLength);
          line = this.decoder.decode(this.partial.subarray(0, this.partialLength + piece.length));
          this.partialLength = 0;
        } else {
          line = this.decoder.decode(piece);
        }
        const ev = smiEventParseLine(line, this.gpuId);
        if (ev) out.push(ev);
        else {
          this.malformed.unparsable++;
          this.sample(line);
        }
      }
      at = nl < 0 ? chunk.length : nl + 1;
    }
  }

  private sample(line: string): void {
    const s = this.malformed.samples;
    if (s.length >= SMI_MALFORMED_SAMPLES_MAX) s.shift();
    s.push(line);
  }
}

/** The 8-byte enable mask for `events` (names or ids; ALL_PROCESS allowed). */
export function smiEventMask(events: readonly (SmiEventName | number)[]): bigint {
  let mask = 0n;
  for (const e of events) mask |= smiEventMaskFromIndex(typeof e === "number" ? e : SMI_EVENT[e]);
  return mask;
}

/** Every event id svmrt parses (not ALL_PROCESS). */
export const SMI_EVENTS_ALL: readonly SmiEventName[] = (Object.keys(SMI_EVENT) as SmiEventName[]).filter(
  (n) => n !== "ALL_PROCESS",
);

/**
 * One GPU's SMI event fd. Reading never blocks: `pollOnce` polls with a 0 ms timeout and reads
 * at most SMI_READS_PER_POLL_MAX buffers of SMI_READ_BUFFER_bytes; `watch` calls it on a timer.
 */
export class SmiEventReader implements Disposable {
  private fd: number;
  private readonly buf = new Uint8Array(new ArrayBuffer(SMI_READ_BUFFER_bytes));
  private readonly pollfds = new Uint8Array(new ArrayBuffer(POLLFD_SIZE_bytes));
  private timer: ReturnType<typeof setInterval> | undefined;
  readonly parser: SmiEventParser;

  private constructor(
    private readonly sys: Syscalls,
    readonly gpuId: number,
    fd: number,
  ) {
    this.fd = fd;
    this.parser = new SmiEventParser(gpuId);
  }

  /**
   * Open the event fd of `gpuId` and enable `events` (bit i-1 for event i).
   * @throws KfdError from SMI_EVENTS, or `write SMI mask` when the mask is refused.
   */
  static open(dev: KfdDevice, gpuId: number, events: readonly (SmiEventName | number)[]): SmiEventReader {
    const fd = dev.smiEventsOpen(gpuId);
    const reader = new SmiEventReader(dev.syscalls, gpuId, fd);
    try {
      reader.maskSet(smiEventMask(events));
    } catch (e) {
      reader.close();
      throw e;
    }
    return reader;
  }

  /** Write the 8-byte little-endian mask. @throws KfdError */
  maskSet(mask: bigint): void {
    const b = new Uint8Array(new ArrayBuffer(8));
    new DataView(b.buffer).setBigUint64(0, mask, true);
    const r = this.sys.write(this.fd, b);
    if (r !== 8) {
      const e = r < 0 ? -r : ERRNO.EIO;
      throw new KfdError("write SMI event mask", errnoName(e), e, kfdHint("SMI_EVENTS", e));
    }
  }

  /**
   * Read what is ready now, without blocking, and parse it.
   * @throws KfdError when poll or read fail with anything but EAGAIN/EINTR, or the fd hangs up.
   */
  pollOnce(): SmiEvent[] {
    const out: SmiEvent[] = [];
    this.pollBytes((bytes) => this.parser.push(bytes, out));
    return out;
  }

  /**
   * Read what is ready now, without blocking, and hand each read's bytes to `onBytes`
   * unparsed (a record may be torn across two reads): for a process that forwards the
   * stream to another's parser. The bytes are valid only during the call.
   * @throws KfdError when poll or read fail with anything but EAGAIN/EINTR, or the fd hangs up.
   */
  pollBytes(onBytes: (bytes: Uint8Array) => void): void {
    if (this.fd < 0) return;
    for (let i = 0; i < SMI_READS_PER_POLL_MAX; i++) {
      pollfdSet(this.pollfds, 0, this.fd, POLLIN);
      const ready = this.sys.poll(this.pollfds, 1, 0);
      if (ready === -ERRNO.EINTR) break;
      if (ready < 0) throw new KfdError("poll SMI events", errnoName(-ready), -ready, kfdHint("poll SMI events", -ready));
      if (ready === 0) break;
      const rev = pollfdRevents(this.pollfds, 0);
      if (rev & (POLLERR | POLLHUP | POLLNVAL) && !(rev & POLLIN)) {
        throw new KfdError("poll SMI events", "EPIPE", ERRNO.EPIPE, `event fd of gpu 0x${this.gpuId.toString(16)} closed`);
      }
      const n = this.sys.read(this.fd, this.buf);
      if (n === -ERRNO.EAGAIN || n === -ERRNO.EINTR || n === 0) break;
      if (n < 0) throw new KfdError("read SMI events", errnoName(-n), -n, kfdHint("read SMI events", -n));
      onBytes(this.buf.subarray(0, n));
      if (n < this.buf.length) break;
    }
  }

  /**
   * Call `onEvents` with each non-empty batch, polling every `interval_ms` on a timer (the
   * event loop never blocks). Returns a function that stops the timer. `onError` gets a read
   * failure, after which the timer is stopped.
   */
  watch(onEvents: (events: SmiEvent[]) => void, onError: (e: unknown) => void, interval_ms = SMI_POLL_INTERVAL_ms): () => void {
    this.unwatch();
    this.timer = setInterval(() => {
      try {
        const evs = this.pollOnce();
        if (evs.length) onEvents(evs);
      } catch (e) {
        this.unwatch();
        onError(e);
      }
    }, interval_ms);
    return () => this.unwatch();
  }

  private unwatch(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Stop watching and close the fd. Idempotent. */
  close(): void {
    this.unwatch();
    if (this.fd < 0) return;
    const fd = this.fd;
    this.fd = -1;
    this.sys.close(fd);
  }

  [Symbol.dispose](): void {
    this.close();
  }

  /** The fd, for tests and diagnostics; -1 once closed. */
  get eventFd(): number {
    return this.fd;
  }
}
