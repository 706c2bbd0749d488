/**
 * EMULATED GPU management library: the GPUs of a machine profile behind the SmiLibrary
 * interface (runtime/smi/library.ts), behaving like amdsmi (its function names and status
 * numbers) so the session manager, the inventory and the sampler run unchanged without a GPU.
 * Everything it returns says it is emulated: `info.emulated`, `info.path` "profile:<name>",
 * model names "emulated-<profile>" / "Emulated GPU (profile <name>)".
 *
 * One library state per process, like one .so: every emuSmiOpen over the same
 * SharedArrayBuffer (one per Bun Worker, say) sees the same state, kept in that buffer with
 * Atomics (emuSmiSharedCreate):
 * - init / shutDown are reference counted: init on 0 → 1 starts a new init cycle (the
 *   generation, bumped on every real init), shutDown on 1 → 0 ends it; count and generation
 *   share one 32-bit word, so each transition is one compare-and-swap;
 * - handles are synthetic bigints tagged with their generation: a handle from an earlier
 *   cycle is SmiError(fn, "INVAL", 1, "stale handle ...") and is never read; any call while
 *   not initialised is SmiError(fn, "NOT_INIT", 32);
 * - counters (inits, shutdowns, real ones, failures, hangs: emuSmiCounters), injected faults
 *   (emuSmiInject, emuSmiInjectInitFailure) and the VRAM the emulated KFD uses
 *   (emuSmiVramPublish) live there too, so they work across Workers.
 *
 * Readings are pure functions of the clock (ms) and the load pattern, so every Worker reading
 * at the same time gets the same value, with no per-object state:
 * - activity (gfx, umc) follows the load at once;
 * - temperatures and power follow it with lag: a first-order response y' = (load - y) / τ
 *   to the load sampled every EMU_LOAD_STEP_ms, computed in closed form piece by piece over
 *   the last EMU_LAG_HORIZON_TAUS time constants (starting from equilibrium there; the error
 *   is e^-12 of a step);
 * - VRAM used = a baseline plus what the emulated KFD published; GTT a function of the load;
 * - links and XGMI from the profile's hives, PCIe from its bandwidth, ECC 0 but for a
 *   correctable error every EMU_ECC_CORRECTABLE_PERIOD_ms on one GPU in four.
 * Events: THERMAL_THROTTLE when the junction temperature rises through
 * EMU_THROTTLE_JUNCTION_C (edge-triggered per reader), nothing else.
 */
import { assert, SmiError, UsageError } from "../errors.ts";
import { loadProfile, type MachineProfile, PROFILE_DEFAULT, type ProfileGpu, VRAM_BYTES_MAX } from "../sim/profile.ts";
import { splitmix32 } from "../sim/prng.ts";
import {
  MEMORY_KINDS,
  type MemoryKind,
  SMI_EVENTS_PER_READ_MAX,
  SMI_GPU_EVENT,
  type SmiActivity,
  type SmiEcc,
  type SmiGpuEvent,
  type SmiGpuStatic,
  type SmiHandle,
  type SmiLibrary,
  type SmiLibraryInfo,
  type SmiLink,
  type SmiMemory,
  type SmiPcie,
  type SmiPower,
  type SmiXgmi,
  TEMPERATURE_SENSORS,
  type TemperatureSensor,
} from "../smi/library.ts";

/** Most GPUs an emulated library holds. */
export const EMU_SMI_GPUS_MAX = 64;
/** Most references on the initialised library (12 bits of the state word); then REFCOUNT_OVERFLOW. */
export const EMU_SMI_REFCOUNT_MAX = 0xfff;
/** Largest generation (20 bits of the state word); it wraps to 1. */
export const EMU_SMI_GENERATION_MAX = 0xfffff;
/** Longest injected hang, ms. */
export const EMU_SMI_HANG_MAX_ms = 600_000;
/** Most injected init failures pending at once. */
export const EMU_SMI_INIT_FAILURES_MAX = 1_000_000;
/** Longest eventsRead wait, ms. */
export const EMU_SMI_EVENTS_WAIT_MAX_ms = 60_000;

/** The load is sampled on this grid for the lagged readings, ms. */
export const EMU_LOAD_STEP_ms = 200;
/** How many time constants of history a lagged reading integrates. */
export const EMU_LAG_HORIZON_TAUS = 12;
/** Idle and full-load temperatures and time constants of each sensor. */
export const EMU_SENSORS: Readonly<Record<TemperatureSensor, { idleC: number; fullC: number; tau_ms: number }>> = {
  edge: { idleC: 34, fullC: 78, tau_ms: 6_000 },
  junction: { idleC: 38, fullC: 96, tau_ms: 3_000 },
  vram: { idleC: 36, fullC: 86, tau_ms: 10_000 },
};
/** Junction temperature at and above which the GPU throttles (THERMAL_THROTTLE events), °C. */
export const EMU_THROTTLE_JUNCTION_C = 90;
/** Time constants of current socket power and of average power, ms. */
export const EMU_POWER_SOCKET_TAU_ms = 300;
export const EMU_POWER_AVERAGE_TAU_ms = 1_500;
/** Idle power and full-load power as shares of the power limit. */
export const EMU_POWER_IDLE_SHARE = 0.18;
export const EMU_POWER_FULL_SHARE = 0.92;
/** VRAM in use with nothing allocated (driver, firmware), bytes; vram_reserved comes on top. */
export const EMU_VRAM_BASELINE_bytes = 256 * 2 ** 20;
/** GTT size, and GTT used at idle and at full load, bytes. */
export const EMU_GTT_TOTAL_bytes = 64 * 2 ** 30;
export const EMU_GTT_IDLE_bytes = 32 * 2 ** 20;
export const EMU_GTT_FULL_bytes = 1024 * 2 ** 20;
/** Share of the PCIe line rate in use at full load. */
export const EMU_PCIE_BUSY_SHARE = 0.25;
/** Lanes of every emulated PCIe link and XGMI link. */
export const EMU_PCIE_LANES = 16;
export const EMU_XGMI_LANES = 16;
/** One correctable ECC error per period on the GPUs that have them, ms. */
export const EMU_ECC_CORRECTABLE_PERIOD_ms = 3_600_000;
/** Default burst pattern: mean period, ms; seed. */
export const EMU_BURST_PERIOD_ms = 60_000;
export const EMU_LOAD_SEED_DEFAULT = 1;
/** PCI device id in every emulated UUID ("e3e3": not an AMD device id). */
export const EMU_PCI_DEVICE_ID = 0xe3e3;

/** amdsmi_status_t numbers the emulated library answers with (reference/amdsmi.md). */
export const EMU_SMI_STATUS = {
  INVAL: 1,
  NOT_SUPPORTED: 2,
  FAIL_LOAD_MODULE: 4,
  IO: 12,
  INIT_ERROR: 18,
  REFCOUNT_OVERFLOW: 19,
  BUSY: 30,
  NOT_FOUND: 31,
  NOT_INIT: 32,
  DRIVER_NOT_LOADED: 34,
  NO_DATA: 40,
} as const;
export type EmuSmiStatusName = keyof typeof EMU_SMI_STATUS;

/** Readings a fault can be injected into (per GPU). */
export const EMU_SMI_FIELDS = ["static", "temperature", "power", "activity", "memory", "xgmi", "link", "pcie", "ecc", "events"] as const;
export type EmuSmiField = (typeof EMU_SMI_FIELDS)[number];
export const EMU_SMI_FAULT_MODES = ["not_supported", "hang"] as const;
export type EmuSmiFaultMode = (typeof EMU_SMI_FAULT_MODES)[number];

/** Load of GPU `gpuIndex` at time `tMs`, 0..1 (clamped). Must be a pure function of its arguments. */
export type EmuLoadFn = (gpuIndex: number, tMs: number) => number;
export const EMU_LOAD_PATTERNS = ["bursts", "idle", "full"] as const;
export type EmuLoadPatternName = (typeof EMU_LOAD_PATTERNS)[number];
/**
 * A named pattern (serialisable: every Worker builds the same one) or a function (a test's;
 * Workers that must agree need the same function). "bursts" (default): periodic bursts per
 * GPU, period, duty, levels and phase drawn per GPU from the seed, so GPUs do not move in
 * lockstep; "idle": 0; "full": 1.
 */
export type EmuLoadPattern = EmuLoadPatternName | EmuLoadFn;

export interface EmuSmiOptions {
  /** A profile, or a shipped name / YAML path for loadProfile. Default PROFILE_DEFAULT. */
  profile?: MachineProfile | string;
  /** The library state shared across Workers (emuSmiSharedCreate); default a private one. */
  shared?: SharedArrayBuffer;
  /** Time in ms; default performance.timeOrigin + performance.now() (same across Workers). */
  clock?: () => number;
  /** Default "bursts". */
  load?: EmuLoadPattern;
  /** Seed of the "bursts" pattern; default EMU_LOAD_SEED_DEFAULT. */
  loadSeed?: number;
}

export interface EmuSmiFault {
  gpuIndex: number;
  field: EmuSmiField;
  /**
   * not_supported: the reading answers SmiError(fn, "NOT_SUPPORTED", 2) on that GPU.
   * hang: the reading blocks the calling thread for hangMs (Atomics.wait), then answers: a
   * hung library call. Meant for Worker threads, as the agent makes library calls only there;
   * on the main thread it blocks the event loop just the same.
   */
  mode: EmuSmiFaultMode;
  /** For hang: 1..EMU_SMI_HANG_MAX_ms. */
  hangMs?: number;
}

export interface EmuSmiInitFailure {
  /** The next `times` inits fail (0 clears). */
  times: number;
  /** Default DRIVER_NOT_LOADED (what amdsmi says on a host without the driver). */
  status?: EmuSmiStatusName;
}

export interface EmuSmiCounters {
  /** References held now (0: not initialised). */
  count: number;
  /** Current init cycle (0: never initialised). */
  generation: number;
  /** Successful init calls, and those that went 0 → 1. */
  inits: number;
  initsReal: number;
  /** Successful shutDown calls, and those that went 1 → 0. */
  shutdowns: number;
  shutdownsReal: number;
  /** Inits failed by injection. */
  initFailures: number;
  /** Reads that hung by injection. */
  hangs: number;
}

// ---- shared state layout ------------------------------------------------------------------

const EMU_SMI_MAGIC = 0x45534d49; // "ESMI"
/** Int32 slots of the header. */
const H = {
  MAGIC: 0,
  GPUS: 1,
  /** count (bits 0-11) | generation (bits 12-31). */
  STATE: 2,
  INITS: 3,
  SHUTDOWNS: 4,
  INITS_REAL: 5,
  SHUTDOWNS_REAL: 6,
  INIT_FAILURES: 7,
  HANGS: 8,
  INIT_FAIL_LEFT: 9,
  INIT_FAIL_STATUS: 10,
} as const;
const HEADER_SLOTS = 16;
/** Int32 slots per (GPU, field) fault: mode, hangMs. */
const FAULT_SLOTS = 2;
const FAULT_MODE_CODE: Record<EmuSmiFaultMode, number> = { not_supported: 1, hang: 2 };
/** BigInt64 slots after the Int32 region. */
const B = { EPOCH: 0, VRAM0: 1 } as const;
const EPOCH_UNSET = -1n;

interface SharedViews {
  i32: Int32Array;
  i64: BigInt64Array;
  gpus: number;
}

function int32Slots(gpus: number): number {
  return HEADER_SLOTS + gpus * EMU_SMI_FIELDS.length * FAULT_SLOTS;
}

function bigintOffset_bytes(gpus: number): number {
  return Math.ceil((int32Slots(gpus) * 4) / 8) * 8;
}

/**
 * A new shared library state for `gpuCount` GPUs: pass it to emuSmiOpen in every Worker that
 * should see the same library (and to the emulated KFD's owner for emuSmiVramPublish).
 */
export function emuSmiSharedCreate(gpuCount: number): SharedArrayBuffer {
  assert(Number.isInteger(gpuCount) && gpuCount >= 1 && gpuCount <= EMU_SMI_GPUS_MAX, `emulated GPU count must be 1..${EMU_SMI_GPUS_MAX}, got ${gpuCount}`);
  const sab = new SharedArrayBuffer(bigintOffset_bytes(gpuCount) + (B.VRAM0 + gpuCount) * 8);
  const v = viewsOf(sab, gpuCount);
  v.i32[H.MAGIC] = EMU_SMI_MAGIC;
  v.i32[H.GPUS] = gpuCount;
  v.i64[B.EPOCH] = EPOCH_UNSET;
  return sab;
}

function viewsOf(sab: SharedArrayBuffer, gpus: number): SharedViews {
  return { i32: new Int32Array(sab, 0, int32Slots(gpus)), i64: new BigInt64Array(sab, bigintOffset_bytes(gpus), B.VRAM0 + gpus), gpus };
}

function sharedViews(sab: SharedArrayBuffer): SharedViews {
  assert(sab instanceof SharedArrayBuffer && sab.byteLength >= HEADER_SLOTS * 4, "not an emulated SMI state (make one with emuSmiSharedCreate)");
  const head = new Int32Array(sab, 0, HEADER_SLOTS);
  const gpus = head[H.GPUS]!;
  assert(head[H.MAGIC] === EMU_SMI_MAGIC && gpus >= 1 && gpus <= EMU_SMI_GPUS_MAX, "not an emulated SMI state (make one with emuSmiSharedCreate)");
  return viewsOf(sab, gpus);
}

function statePack(count: number, generation: number): number {
  return ((generation << 12) | count) | 0;
}

function stateUnpack(w: number): { count: number; generation: number } {
  return { count: w & EMU_SMI_REFCOUNT_MAX, generation: (w >>> 12) & EMU_SMI_GENERATION_MAX };
}

function gpuIndexCheck(v: SharedViews, gpuIndex: number): void {
  assert(Number.isInteger(gpuIndex) && gpuIndex >= 0 && gpuIndex < v.gpus, `gpuIndex must be 0..${v.gpus - 1}, got ${gpuIndex}`);
}

function faultSlot(gpuIndex: number, field: number): number {
  return HEADER_SLOTS + (gpuIndex * EMU_SMI_FIELDS.length + field) * FAULT_SLOTS;
}

/** Publish the VRAM bytes the emulated KFD has in use on a GPU (VRAM used = baseline + this). */
export function emuSmiVramPublish(shared: SharedArrayBuffer, gpuIndex: number, bytes: number): void {
  const v = sharedViews(shared);
  gpuIndexCheck(v, gpuIndex);
  assert(Number.isSafeInteger(bytes) && bytes >= 0 && bytes <= VRAM_BYTES_MAX, `VRAM bytes must be 0..${VRAM_BYTES_MAX}, got ${bytes}`);
  Atomics.store(v.i64, B.VRAM0 + gpuIndex, BigInt(bytes));
}

/** Inject a fault into one reading of one GPU, for every thread using this state. */
export function emuSmiInject(shared: SharedArrayBuffer, fault: EmuSmiFault): void {
  const v = sharedViews(shared);
  gpuIndexCheck(v, fault.gpuIndex);
  const field = EMU_SMI_FIELDS.indexOf(fault.field);
  assert(field >= 0, `field must be one of ${EMU_SMI_FIELDS.join(", ")}, got ${fault.field}`);
  const mode = FAULT_MODE_CODE[fault.mode];
  assert(mode !== undefined, `mode must be one of ${EMU_SMI_FAULT_MODES.join(", ")}, got ${fault.mode}`);
  const hangMs = fault.mode === "hang" ? (fault.hangMs ?? 0) : 0;
  if (fault.mode === "hang") {
    assert(Number.isInteger(hangMs) && hangMs >= 1 && hangMs <= EMU_SMI_HANG_MAX_ms, `hangMs must be 1..${EMU_SMI_HANG_MAX_ms}, got ${fault.hangMs}`);
  }
  const at = faultSlot(fault.gpuIndex, field);
  Atomics.store(v.i32, at + 1, hangMs);
  Atomics.store(v.i32, at, mode);
}

/** Make the next `times` inits fail with `status` (counted in initFailures; the count stays 0). */
export function emuSmiInjectInitFailure(shared: SharedArrayBuffer, f: EmuSmiInitFailure): void {
  const v = sharedViews(shared);
  const status = f.status ?? "DRIVER_NOT_LOADED";
  assert(status in EMU_SMI_STATUS, `status must be one of ${Object.keys(EMU_SMI_STATUS).join(", ")}, got ${status}`);
  assert(Number.isInteger(f.times) && f.times >= 0 && f.times <= EMU_SMI_INIT_FAILURES_MAX, `times must be 0..${EMU_SMI_INIT_FAILURES_MAX}, got ${f.times}`);
  Atomics.store(v.i32, H.INIT_FAIL_STATUS, EMU_SMI_STATUS[status]);
  Atomics.store(v.i32, H.INIT_FAIL_LEFT, f.times);
}

/** Remove every injected fault and pending init failure. */
export function emuSmiInjectClear(shared: SharedArrayBuffer): void {
  const v = sharedViews(shared);
  Atomics.store(v.i32, H.INIT_FAIL_LEFT, 0);
  for (let g = 0; g < v.gpus; g++) {
    for (let f = 0; f < EMU_SMI_FIELDS.length; f++) Atomics.store(v.i32, faultSlot(g, f), 0);
  }
}

/** The library state's counters, as every thread sees them. */
export function emuSmiCounters(shared: SharedArrayBuffer): EmuSmiCounters {
  const v = sharedViews(shared);
  const { count, generation } = stateUnpack(Atomics.load(v.i32, H.STATE));
  const at = (slot: number): number => Atomics.load(v.i32, slot);
  return {
    count,
    generation,
    inits: at(H.INITS),
    initsReal: at(H.INITS_REAL),
    shutdowns: at(H.SHUTDOWNS),
    shutdownsReal: at(H.SHUTDOWNS_REAL),
    initFailures: at(H.INIT_FAILURES),
    hangs: at(H.HANGS),
  };
}

// ---- load patterns and the lagged response ------------------------------------------------

const U32_RANGE = 2 ** 32;

/** The default pattern: periodic bursts per GPU, drawn from `seed`. */
export function emuLoadBursts(seed: number = EMU_LOAD_SEED_DEFAULT): EmuLoadFn {
  const cache = new Map<number, { period: number; phase: number; duty: number; high: number; low: number }>();
  const shape = (i: number) => {
    let s = cache.get(i);
    if (s === undefined) {
      const r1 = splitmix32((seed | 0) ^ Math.imul(i + 1, 0x9e3779b9));
      const r2 = splitmix32(r1);
      const r3 = splitmix32(r2);
      const r4 = splitmix32(r3);
      const r5 = splitmix32(r4);
      const period = EMU_BURST_PERIOD_ms * (0.75 + (0.5 * r1) / U32_RANGE);
      s = {
        period,
        phase: (period * r2) / U32_RANGE,
        duty: 0.3 + (0.4 * r3) / U32_RANGE,
        high: 0.75 + (0.25 * r4) / U32_RANGE,
        low: 0.02 + (0.06 * r5) / U32_RANGE,
      };
      cache.set(i, s);
    }
    return s;
  };
  return (i, t) => {
    const s = shape(i);
    const x = (((t + s.phase) % s.period) + s.period) % s.period;
    return x < s.duty * s.period ? s.high : s.low;
  };
}

function loadResolve(p: EmuLoadPattern | undefined, seed: number | undefined): EmuLoadFn {
  if (typeof p === "function") return p;
  switch (p ?? "bursts") {
    case "idle":
      return () => 0;
    case "full":
      return () => 1;
    case "bursts":
      return emuLoadBursts(seed);
    default:
      throw new UsageError(`emulated GPU load pattern: expected one of ${EMU_LOAD_PATTERNS.join(", ")} or a function, got '${String(p)}'`);
  }
}

function clamp01(x: number): number {
  return Number.isFinite(x) ? Math.min(1, Math.max(0, x)) : 0;
}

/**
 * The load of GPU i seen through a first-order lag of time constant tau_ms, at time t: the
 * load is held constant over each EMU_LOAD_STEP_ms cell of the grid (its value at the cell's
 * start), and the response is exact per cell. Starts at equilibrium EMU_LAG_HORIZON_TAUS time
 * constants back. A pure function of (load, i, t, tau_ms).
 */
export function emuLoadLagged(load: EmuLoadFn, i: number, t: number, tau_ms: number): number {
  const s = EMU_LOAD_STEP_ms;
  const kEnd = Math.floor(t / s);
  const kStart = kEnd - Math.ceil((EMU_LAG_HORIZON_TAUS * tau_ms) / s);
  const decay = Math.exp(-s / tau_ms);
  let y = clamp01(load(i, kStart * s));
  for (let k = kStart + 1; k < kEnd; k++) {
    const l = clamp01(load(i, k * s));
    y = l + (y - l) * decay;
  }
  const l = clamp01(load(i, kEnd * s));
  return l + (y - l) * Math.exp(-(t - kEnd * s) / tau_ms);
}

// ---- the emulated GPUs --------------------------------------------------------------------

/** FNV-1a, 64 bits. */
function fnv1a64(text: string): bigint {
  let h = 0xcbf29ce484222325n;
  for (const b of new TextEncoder().encode(text)) h = BigInt.asUintN(64, (h ^ BigInt(b)) * 0x100000001b3n);
  return h;
}

const hex = (v: bigint | number, width: number): string => v.toString(16).padStart(width, "0");

/** The UUID text of an emulated GPU: amdsmi's layout, serial = FNV-1a of "<profile>/<gpu_id>". */
export function emuGpuUuid(profileName: string, gpuId: number): string {
  const s = fnv1a64(`${profileName}/${gpuId}`);
  return (
    `${hex((s >> 56n) & 0xffn, 2)}ff${hex(EMU_PCI_DEVICE_ID, 4)}-0000-1000-` +
    `80${hex((s >> 48n) & 0xffn, 2)}-${hex((s >> 32n) & 0xffffn, 4)}${hex(s & 0xffff_ffffn, 8)}`
  );
}

interface EmuGpu {
  g: ProfileGpu;
  static: SmiGpuStatic;
  limitW: number;
  idleW: number;
  fullW: number;
  offsetC: number;
  /** PCIe transfer rate, MT/s, and line rate, GB/s. */
  pcieMts: number;
  pcieGbps: number;
  eccCorrectable: boolean;
  /** Position within its hive (0 without one). */
  hiveIndex: number;
}

/** Power limit of a profile GPU, W: MI300A 550, MI300X-class HBM 750, MI200-class 300, else 250. */
function powerLimitW(g: ProfileGpu): number {
  if (g.appApu) return 550;
  if (g.hbmGbps >= 4000) return 750;
  if (g.hbmGbps >= 1500) return 300;
  return 250;
}

/** PCIe generation rate from the line rate of a x16 link, MT/s. */
function pcieRateMts(gbps: number): number {
  if (gbps >= 48) return 32_000;
  if (gbps >= 24) return 16_000;
  if (gbps >= 12) return 8_000;
  if (gbps >= 6) return 5_000;
  return 2_500;
}

function emuGpus(p: MachineProfile): EmuGpu[] {
  return p.gpus.map((g, i) => {
    const h = fnv1a64(`${p.name}/${g.id}`);
    const limitW = powerLimitW(g);
    const pcieGbps = Math.max(g.pcieH2dGbps, g.pcieD2hGbps);
    return {
      g,
      static: {
        uuid: emuGpuUuid(p.name, g.id),
        bdf: `0000:${hex(0x0c + i * 7, 2)}:00.0`,
        cardModel: `emulated-${p.name}`,
        marketName: `Emulated GPU (profile ${p.name})`,
        serial: `EMU${hex(h & 0xffff_ffffn, 8).toUpperCase()}${hex(g.id, 4).toUpperCase()}`,
        kfdGpuId: g.id,
        partitionId: 0,
        deploymentMode: "baremetal",
      },
      limitW,
      idleW: limitW * EMU_POWER_IDLE_SHARE,
      fullW: limitW * EMU_POWER_FULL_SHARE,
      offsetC: (Number(h % 5n) - 2) * 0.5,
      pcieMts: pcieRateMts(pcieGbps),
      pcieGbps,
      eccCorrectable: (h >> 8n) % 4n === 0n,
      hiveIndex: g.hiveId === 0 ? 0 : p.gpus.filter((o) => o.hiveId === g.hiveId && o.index < g.index).length,
    };
  });
}

/** Tag in the top byte of every emulated handle. */
const HANDLE_TAG = 0xe5n;

interface EventReader {
  generation: number;
  mask: bigint;
  throttled: boolean;
  /** Throttle episodes this reader saw (the message's counter). */
  episodes: number;
}

/** KFD's throttle bitmask for a thermal throttle (the message's first field). */
const THROTTLE_BITMASK_THERMAL = 1;

/**
 * Open the emulated library over a profile. Does not initialise it (the session manager
 * calls `init`).
 * @throws ConfigError when a profile name or path does not load; UsageError for an unknown
 *   load pattern; InvariantError when `shared` was made for another GPU count.
 */
export function emuSmiOpen(opts: EmuSmiOptions = {}): SmiLibrary {
  const profile = typeof opts.profile === "object" ? opts.profile : loadProfile(opts.profile ?? PROFILE_DEFAULT);
  const shared = opts.shared ?? emuSmiSharedCreate(profile.gpus.length);
  const v = sharedViews(shared);
  assert(v.gpus === profile.gpus.length, `the shared SMI state holds ${v.gpus} GPUs, profile ${profile.name} has ${profile.gpus.length}`);
  const clock = opts.clock ?? (() => performance.timeOrigin + performance.now());
  Atomics.compareExchange(v.i64, B.EPOCH, EPOCH_UNSET, BigInt(Math.floor(clock())));
  return new EmuSmiLibrary(profile, v, clock, loadResolve(opts.load, opts.loadSeed));
}

class EmuSmiLibrary implements SmiLibrary {
  readonly info: SmiLibraryInfo;
  private loaded = true;
  private readonly gpus: EmuGpu[];
  private readonly readers = new Map<number, EventReader>();
  /** Never notified: Atomics.wait on it is a plain, interruptible-by-nothing block. */
  private readonly sleeper = new Int32Array(new SharedArrayBuffer(4));

  constructor(
    readonly profile: MachineProfile,
    private readonly v: SharedViews,
    private readonly clock: () => number,
    private readonly load: EmuLoadFn,
  ) {
    this.gpus = emuGpus(profile);
    this.info = { backend: "emulated", emulated: true, path: `profile:${profile.name}`, version: "emulated", missingOptional: Object.freeze([]) };
  }

  // -- state checks --------------------------------------------------------------------------

  private live(fn: string): void {
    if (!this.loaded) throw new SmiError(fn, "FAIL_LOAD_MODULE", EMU_SMI_STATUS.FAIL_LOAD_MODULE, "emulated library was unloaded (unload()); open it again with emuSmiOpen");
  }

  /** The current generation; NOT_INIT unless initialised. */
  private initialised(fn: string): number {
    this.live(fn);
    const { count, generation } = stateUnpack(Atomics.load(this.v.i32, H.STATE));
    if (count === 0) throw new SmiError(fn, "NOT_INIT", EMU_SMI_STATUS.NOT_INIT, "the emulated library is not initialised (amdsmi_init)");
    return generation;
  }

  /** The GPU of a handle valid in this init cycle, after any injected fault of `field`. */
  private gpu(fn: string, h: SmiHandle, field: EmuSmiField): { index: number; gpu: EmuGpu } {
    const generation = this.initialised(fn);
    const index = this.handleIndex(fn, h, generation);
    const at = faultSlot(index, EMU_SMI_FIELDS.indexOf(field));
    const mode = Atomics.load(this.v.i32, at);
    if (mode === FAULT_MODE_CODE.not_supported) {
      throw new SmiError(fn, "NOT_SUPPORTED", EMU_SMI_STATUS.NOT_SUPPORTED, `${field} not supported on emulated GPU ${index} (injected)`);
    }
    if (mode === FAULT_MODE_CODE.hang) {
      Atomics.add(this.v.i32, H.HANGS, 1);
      Atomics.wait(this.sleeper, 0, 0, Atomics.load(this.v.i32, at + 1));
    }
    return { index, gpu: this.gpus[index]! };
  }

  private handleIndex(fn: string, h: SmiHandle, generation: number): number {
    if (typeof h !== "bigint" || h >> 56n !== HANDLE_TAG) {
      throw new SmiError(fn, "INVAL", EMU_SMI_STATUS.INVAL, `${String(h)} is not a processor handle of the emulated library`);
    }
    const index = Number(h & 0xffn);
    const born = Number((h >> 8n) & BigInt(EMU_SMI_GENERATION_MAX));
    if (index >= this.gpus.length) throw new SmiError(fn, "INVAL", EMU_SMI_STATUS.INVAL, `handle names GPU ${index}, the profile has ${this.gpus.length}`);
    if (born !== generation) {
      throw new SmiError(fn, "INVAL", EMU_SMI_STATUS.INVAL, `stale handle from init cycle ${born} (now ${generation}): re-resolve GPUs by UUID in this session`);
    }
    return index;
  }

  private handleOf(index: number, generation: number): SmiHandle {
    return (HANDLE_TAG << 56n) | (BigInt(generation) << 8n) | BigInt(index);
  }

  // -- lifecycle -------------------------------------------------------------------------------

  init(): void {
    const fn = "amdsmi_init";
    this.live(fn);
    const i32 = this.v.i32;
    for (;;) {
      const left = Atomics.load(i32, H.INIT_FAIL_LEFT);
      if (left <= 0) break;
      if (Atomics.compareExchange(i32, H.INIT_FAIL_LEFT, left, left - 1) === left) {
        Atomics.add(i32, H.INIT_FAILURES, 1);
        const status = Atomics.load(i32, H.INIT_FAIL_STATUS);
        const name = (Object.keys(EMU_SMI_STATUS) as EmuSmiStatusName[]).find((k) => EMU_SMI_STATUS[k] === status) ?? "INIT_ERROR";
        throw new SmiError(fn, name, status, `injected init failure (${left - 1} more pending)`);
      }
    }
    for (;;) {
      const w = Atomics.load(i32, H.STATE);
      const { count, generation } = stateUnpack(w);
      if (count === EMU_SMI_REFCOUNT_MAX) {
        throw new SmiError(fn, "REFCOUNT_OVERFLOW", EMU_SMI_STATUS.REFCOUNT_OVERFLOW, `${EMU_SMI_REFCOUNT_MAX} inits without shutdown`);
      }
      const next = count === 0 ? statePack(1, generation >= EMU_SMI_GENERATION_MAX ? 1 : generation + 1) : statePack(count + 1, generation);
      if (Atomics.compareExchange(i32, H.STATE, w, next) !== w) continue;
      Atomics.add(i32, H.INITS, 1);
      if (count === 0) Atomics.add(i32, H.INITS_REAL, 1);
      return;
    }
  }

  shutDown(): void {
    const fn = "amdsmi_shut_down";
    this.live(fn);
    const i32 = this.v.i32;
    for (;;) {
      const w = Atomics.load(i32, H.STATE);
      const { count, generation } = stateUnpack(w);
      if (count === 0) throw new SmiError(fn, "NOT_INIT", EMU_SMI_STATUS.NOT_INIT, "shutdown of an emulated library that is not initialised");
      if (Atomics.compareExchange(i32, H.STATE, w, statePack(count - 1, generation)) !== w) continue;
      Atomics.add(i32, H.SHUTDOWNS, 1);
      if (count === 1) Atomics.add(i32, H.SHUTDOWNS_REAL, 1);
      return;
    }
  }

  // -- discovery and identity ------------------------------------------------------------------

  gpuHandles(): SmiHandle[] {
    const generation = this.initialised("amdsmi_get_processor_handles");
    return this.gpus.map((_, i) => this.handleOf(i, generation));
  }

  gpuHandleFromUuid(uuid: string): SmiHandle {
    const fn = "amdsmi_get_processor_handle_from_uuid";
    const generation = this.initialised(fn);
    const want = uuid.toLowerCase();
    const i = this.gpus.findIndex((g) => g.static.uuid === want);
    if (i < 0) throw new SmiError(fn, "NOT_FOUND", EMU_SMI_STATUS.NOT_FOUND, `no emulated GPU with UUID ${uuid} in profile ${this.profile.name}`);
    return this.handleOf(i, generation);
  }

  gpuStatic(h: SmiHandle): SmiGpuStatic {
    return { ...this.gpu("amdsmi_get_gpu_device_uuid", h, "static").gpu.static };
  }

  // -- readings --------------------------------------------------------------------------------

  gpuTemperature(h: SmiHandle, sensor: TemperatureSensor): number {
    const fn = "amdsmi_get_temp_metric";
    const { index, gpu } = this.gpu(fn, h, "temperature");
    if (!TEMPERATURE_SENSORS.includes(sensor)) throw new SmiError(fn, "INVAL", EMU_SMI_STATUS.INVAL, `unknown sensor ${String(sensor)}`);
    return this.temperatureC(index, gpu, sensor, this.clock());
  }

  private temperatureC(index: number, gpu: EmuGpu, sensor: TemperatureSensor, t: number): number {
    const m = EMU_SENSORS[sensor];
    const y = emuLoadLagged(this.load, index, t, m.tau_ms);
    return Math.round((m.idleC + gpu.offsetC + (m.fullC - m.idleC) * y) * 1000) / 1000;
  }

  gpuPower(h: SmiHandle): SmiPower {
    const { index, gpu } = this.gpu("amdsmi_get_power_info", h, "power");
    const t = this.clock();
    const watts = (tau: number): number => Math.round(gpu.idleW + (gpu.fullW - gpu.idleW) * emuLoadLagged(this.load, index, t, tau));
    return { socketW: watts(EMU_POWER_SOCKET_TAU_ms), averageW: watts(EMU_POWER_AVERAGE_TAU_ms), limitW: gpu.limitW };
  }

  private loadNow(index: number, t: number): number {
    return clamp01(this.load(index, t));
  }

  gpuActivity(h: SmiHandle): SmiActivity {
    const { index } = this.gpu("amdsmi_get_gpu_activity", h, "activity");
    const l = this.loadNow(index, this.clock());
    return { gfxPct: Math.round(100 * l), umcPct: Math.round(70 * l), mmPct: 0 };
  }

  gpuMemory(h: SmiHandle, kind: MemoryKind): SmiMemory {
    const fn = "amdsmi_get_gpu_memory_usage";
    const { index, gpu } = this.gpu(fn, h, "memory");
    if (!MEMORY_KINDS.includes(kind)) throw new SmiError(fn, "INVAL", EMU_SMI_STATUS.INVAL, `unknown memory kind ${String(kind)}`);
    if (kind === "gtt") {
      const l = this.loadNow(index, this.clock());
      return { usedBytes: Math.round(EMU_GTT_IDLE_bytes + (EMU_GTT_FULL_bytes - EMU_GTT_IDLE_bytes) * l), totalBytes: EMU_GTT_TOTAL_bytes };
    }
    const total = gpu.g.vramBytes;
    const published = Number(Atomics.load(this.v.i64, B.VRAM0 + index));
    return { usedBytes: Math.min(total, EMU_VRAM_BASELINE_bytes + gpu.g.vramReservedBytes + published), totalBytes: total };
  }

  gpuXgmi(h: SmiHandle): SmiXgmi {
    const fn = "amdsmi_get_xgmi_info";
    const { gpu } = this.gpu(fn, h, "xgmi");
    if (gpu.g.hiveId === 0) throw new SmiError(fn, "NOT_SUPPORTED", EMU_SMI_STATUS.NOT_SUPPORTED, "the emulated GPU is in no XGMI hive");
    return { hiveId: BigInt(gpu.g.hiveId), nodeId: BigInt(gpu.g.id), index: gpu.hiveIndex, lanes: EMU_XGMI_LANES };
  }

  /**
   * XGMI, 1 hop, between two GPUs of one hive; otherwise PCIe, 2 hops (GPU → root complex →
   * GPU, as the emulated KFD topology links every GPU to the CPU node only); the same GPU: 0
   * hops, undefined.
   */
  gpuLink(src: SmiHandle, dst: SmiHandle): SmiLink {
    const fn = "amdsmi_topo_get_link_type";
    const a = this.gpu(fn, src, "link");
    const b = this.gpu(fn, dst, "link");
    if (a.index === b.index) return { hops: 0, type: "undefined" };
    if (a.gpu.g.hiveId !== 0 && a.gpu.g.hiveId === b.gpu.g.hiveId) return { hops: 1, type: "xgmi" };
    return { hops: 2, type: "pcie" };
  }

  gpuPcie(h: SmiHandle): SmiPcie {
    const { index, gpu } = this.gpu("amdsmi_get_pcie_info", h, "pcie");
    const l = this.loadNow(index, this.clock());
    const lineMbs = gpu.pcieGbps * 8 * 1000;
    return { width: EMU_PCIE_LANES, speedMts: gpu.pcieMts, bandwidthMbs: Math.round(lineMbs * EMU_PCIE_BUSY_SHARE * l), replayCount: 0 };
  }

  gpuEcc(h: SmiHandle): SmiEcc {
    const { gpu } = this.gpu("amdsmi_get_gpu_total_ecc_count", h, "ecc");
    const epoch = Atomics.load(this.v.i64, B.EPOCH);
    const since = epoch === EPOCH_UNSET ? 0 : Math.max(0, this.clock() - Number(epoch));
    const correctable = gpu.eccCorrectable ? Math.floor(since / EMU_ECC_CORRECTABLE_PERIOD_ms) : 0;
    return { correctable, uncorrectable: 0, deferred: 0 };
  }

  // -- events ----------------------------------------------------------------------------------

  private throttledNow(index: number, t: number): boolean {
    return this.temperatureC(index, this.gpus[index]!, "junction", t) >= EMU_THROTTLE_JUNCTION_C;
  }

  eventsStart(h: SmiHandle, mask: bigint): void {
    const fn = "amdsmi_init_gpu_event_notification";
    const generation = this.initialised(fn);
    const { index } = this.gpu(fn, h, "events");
    if (typeof mask !== "bigint" || mask < 0n) throw new SmiError("amdsmi_set_gpu_event_notification_mask", "INVAL", EMU_SMI_STATUS.INVAL, `bad mask ${String(mask)}`);
    this.readers.set(index, { generation, mask, throttled: this.throttledNow(index, this.clock()), episodes: 0 });
  }

  eventsRead(timeoutMs: number, max: number): SmiGpuEvent[] {
    const fn = "amdsmi_get_gpu_event_notification";
    const generation = this.initialised(fn);
    if (!Number.isInteger(max) || max < 1 || max > SMI_EVENTS_PER_READ_MAX) {
      throw new SmiError(fn, "INVAL", EMU_SMI_STATUS.INVAL, `max must be 1..${SMI_EVENTS_PER_READ_MAX}, got ${max}`);
    }
    if (!Number.isFinite(timeoutMs) || timeoutMs < 0 || timeoutMs > EMU_SMI_EVENTS_WAIT_MAX_ms) {
      throw new SmiError(fn, "INVAL", EMU_SMI_STATUS.INVAL, `timeoutMs must be 0..${EMU_SMI_EVENTS_WAIT_MAX_ms}, got ${timeoutMs}`);
    }
    for (const [i, r] of this.readers) if (r.generation !== generation) this.readers.delete(i);
    if (this.readers.size === 0) throw new SmiError(fn, "INVAL", EMU_SMI_STATUS.INVAL, "no GPU started in this init cycle: call eventsStart first");
    let events = this.eventsCollect(generation, max);
    if (events.length === 0 && timeoutMs > 0) {
      Atomics.wait(this.sleeper, 0, 0, timeoutMs);
      events = this.eventsCollect(this.initialised(fn), max);
    }
    return events;
  }

  /** Rising edges of the junction temperature through the throttle point, at most `max`. */
  private eventsCollect(generation: number, max: number): SmiGpuEvent[] {
    const t = this.clock();
    const out: SmiGpuEvent[] = [];
    const bit = 1n << BigInt(SMI_GPU_EVENT.THERMAL_THROTTLE - 1);
    for (const index of [...this.readers.keys()].sort((a, b) => a - b)) {
      const r = this.readers.get(index)!;
      if ((r.mask & bit) === 0n) continue;
      const hot = this.throttledNow(index, t);
      if (!hot) r.throttled = false;
      else if (!r.throttled && out.length < max) {
        r.throttled = true;
        r.episodes++;
        out.push({
          handle: this.handleOf(index, generation),
          type: "THERMAL_THROTTLE",
          typeId: SMI_GPU_EVENT.THERMAL_THROTTLE,
          message: `${THROTTLE_BITMASK_THERMAL.toString(16)}:${r.episodes.toString(16)}`,
        });
      }
    }
    return out;
  }

  eventsStop(h: SmiHandle): void {
    const fn = "amdsmi_stop_gpu_event_notification";
    const generation = this.initialised(fn);
    const index = this.handleIndex(fn, h, generation);
    if (!this.readers.delete(index)) throw new SmiError(fn, "INVAL", EMU_SMI_STATUS.INVAL, `event notification was not started on emulated GPU ${index}`);
  }

  unload(): void {
    this.loaded = false;
    this.readers.clear();
  }

  [Symbol.dispose](): void {
    this.unload();
  }
}
