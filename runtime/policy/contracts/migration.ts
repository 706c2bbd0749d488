/**
 * MigrationPolicy: the hook contract at the kernel's SVM decision points
 * (../shared/reference/kfd-svm.md §2, §4, §8). Pure data and pure functions: the SVM model
 * (runtime/svm) and the sandbox adaptor (runtime/policy) both build on this file, and it
 * imports nothing.
 *
 * Units: addresses and sizes in 4 KiB pages, times in ns of simulated (or boot) time,
 * locations are gpu_ids, 0 = system memory, LOC_UNDEFINED = no location set.
 *
 * Hot hooks (restoreLocation, migrationWindow) cross the boundary in batches, one
 * Float64Array record per fault (FAULT_FIELDS). Every field is an integer < 2^53, so a
 * float64 holds it exactly.
 */

export const LOC_SYSMEM = 0;
export const LOC_UNDEFINED = 0xffffffff;
/** restoreLocation's answer for "no access": the fault fails with EACCES (kfd-svm.md §4). */
export const LOC_DENY = -1;

/** Range flags (kfd_ioctl.h KFD_IOCTL_SVM_FLAG_*). */
export const SVM_FLAG = {
  HOST_ACCESS: 0x1,
  COHERENT: 0x2,
  HIVE_LOCAL: 0x4,
  GPU_RO: 0x8,
  GPU_EXEC: 0x10,
  GPU_READ_MOSTLY: 0x20,
  GPU_ALWAYS_MAPPED: 0x40,
  EXT_COHERENT: 0x80,
} as const;

/** One GPU of the process, as a policy sees it. Static for the life of a simulation. */
export interface PolicyGpu {
  /** KFD gpu_id (never 0). */
  id: number;
  /** Index of this GPU in the process: bit `index` of accessMask / aipMask. 0..51. */
  index: number;
  /** XGMI hive id; 0 = not in a hive (PCIe only). GPUs with equal non-zero ids share a hive. */
  hiveId: number;
  /** APU in app-APU mode (MI300A): never migrates (kfd-svm.md §4). */
  appApu: boolean;
  vramBytes: number;
}

/** What every hook gets besides its own input. */
export interface PolicyContext {
  gpus: PolicyGpu[];
  /** XNACK (retry faults) on for the process. */
  xnack: boolean;
  /** Time of the call in ns. The only clock a plugin has. */
  nowNs: number;
}

/** Fields of one fault record, in order. FAULT_STRIDE float64 per record. */
export const FAULT_FIELDS = [
  "gpuId", // faulting GPU's gpu_id
  "gpuIndex", // its index in the process
  "addr", // faulting page
  "write", // 1 = write fault, 0 = read
  "rangeStart", // first page of the range holding addr
  "rangeLast", // last page (inclusive)
  "preferredLoc", // gpu_id, 0, or LOC_UNDEFINED
  "prefetchLoc",
  "actualLoc", // where the range's pages are: gpu_id, or 0 when none is in VRAM
  "granularity", // log2 pages of the migration granularity (default 9 = 2 MiB)
  "flags", // SVM_FLAG bits
  "accessMask", // bit i: GPU of index i has ACCESS
  "aipMask", // bit i: GPU of index i has ACCESS_IN_PLACE
  "vramPages", // pages of the range now in VRAM
  "migrations", // migrations of this range so far
  "lastMigrationNs", // time of its last migration; -1 = never
  "faultNs", // time the fault was raised
] as const;
export type FaultField = (typeof FAULT_FIELDS)[number];
export const FAULT_STRIDE = FAULT_FIELDS.length;
/** Index of each field in a record: `rec[base + F.addr]`. */
export const F: { readonly [K in FaultField]: number } = Object.fromEntries(
  FAULT_FIELDS.map((name, i) => [name, i]),
) as { [K in FaultField]: number };

/** One fault as a plugin's restoreLocation / migrationWindow receives it. */
export type Fault = { [K in FaultField]: number };

/** Outputs per fault record: location, then the migration window [start, last]. */
export const DECISION_STRIDE = 3;

/** A window of pages to migrate around a fault, inclusive bounds. */
export interface PageWindow {
  start: number;
  last: number;
}

/** An extra range to move after a batch of faults. */
export interface PrefetchRequest {
  start: number;
  npages: number;
  /** Destination: gpu_id or 0 (system memory). */
  loc: number;
}

/** A VRAM buffer the memory manager could evict (kfd-svm.md §8). */
export interface EvictionCandidate {
  /** First page of the range owning the buffer. */
  rangeStart: number;
  npages: number;
  vramPages: number;
  /** Last GPU access or migration touching it, ns. */
  lastUseNs: number;
  lastMigrationNs: number;
}

export interface EvictionRequest {
  gpuId: number;
  /** Pages of VRAM the allocation that triggered eviction needs. */
  neededPages: number;
  candidates: EvictionCandidate[];
}

/** Migration event kinds delivered to `observe`; the index is the kind's code on the wire. */
export const OBSERVED_KINDS = ["fault", "migrate", "evict", "unmap", "queue-evict", "queue-restore"] as const;
export type ObservedKind = (typeof OBSERVED_KINDS)[number];
/** Numbers per event in the binary observe batch: kind code, then the ObservedEvent fields. */
export const OBSERVE_FIELDS = ["kind", "nowNs", "gpuId", "start", "npages", "from", "to", "trigger"] as const;
export const OBSERVE_STRIDE = OBSERVE_FIELDS.length;

/**
 * Trigger names of each observed kind, by trigger number (kfd-uapi.md: migrate triggers for
 * fault, migrate and evict; queue eviction triggers; unmap triggers). queue-restore has none.
 * `observeKinds` entries of the form "kind:trigger" use them.
 */
export const OBSERVED_TRIGGER_NAMES: { readonly [K in ObservedKind]: readonly string[] } = {
  fault: ["prefetch", "pagefault_gpu", "pagefault_cpu", "ttm_eviction"],
  migrate: ["prefetch", "pagefault_gpu", "pagefault_cpu", "ttm_eviction"],
  evict: ["prefetch", "pagefault_gpu", "pagefault_cpu", "ttm_eviction"],
  unmap: ["mmu_notify", "mmu_notify_migrate", "unmap_from_cpu"],
  "queue-evict": ["svm", "userptr", "ttm", "suspend", "criu_checkpoint", "criu_restore"],
  "queue-restore": [],
};

/**
 * The events `observe` wants: per kind, a mask of trigger numbers (bit t: trigger t; 0: none
 * of the kind). Built from a plugin's `observeKinds` by parseObserveKinds.
 */
export type ObserveMasks = { readonly [K in ObservedKind]: number };

/** Every trigger of a kind. */
export const OBSERVE_ALL_TRIGGERS = 0xffffffff;

/**
 * True when `masks` selects an event of this kind and trigger (masks undefined: all). A
 * trigger outside 0..31 matches only a whole kind (a shift count would wrap).
 */
export function observeWanted(masks: ObserveMasks | undefined, kind: ObservedKind, trigger: number): boolean {
  if (masks === undefined) return true;
  const m = masks[kind];
  return m === OBSERVE_ALL_TRIGGERS || (trigger >= 0 && trigger < 32 && Number.isInteger(trigger) && ((m >>> trigger) & 1) === 1);
}

/** Characters of a bad observeKinds entry quoted in its error. */
const OBSERVE_ENTRY_QUOTED_MAX = 40;

/** An observeKinds entry as an error quotes it: JSON, clipped. */
function quoteEntry(v: unknown): string {
  const q = JSON.stringify(v) ?? String(v);
  return q.length > OBSERVE_ENTRY_QUOTED_MAX ? `${q.slice(0, OBSERVE_ENTRY_QUOTED_MAX)}…` : q;
}

/**
 * A plugin's `observeKinds` export: kinds ("unmap": every unmap) or kinds with one trigger
 * ("unmap:unmap_from_cpu"), each adding to the selection.
 * @returns the masks (undefined: the export is absent, every event), or an error message.
 */
export function parseObserveKinds(v: unknown): { masks: ObserveMasks | undefined } | { error: string } {
  if (v === undefined) return { masks: undefined };
  const known = OBSERVED_KINDS.join(", ");
  if (!Array.isArray(v) || v.length === 0) {
    return { error: `observeKinds must be a non-empty array of event kinds (${known}), each optionally with ":trigger"` };
  }
  const masks = Object.fromEntries(OBSERVED_KINDS.map((k) => [k, 0])) as { [K in ObservedKind]: number };
  for (const [i, entry] of v.entries()) {
    if (typeof entry !== "string") return { error: `observeKinds[${i}]: ${quoteEntry(entry)} is not a string` };
    const colon = entry.indexOf(":");
    const kind = (colon < 0 ? entry : entry.slice(0, colon)) as ObservedKind;
    if (!(OBSERVED_KINDS as readonly string[]).includes(kind)) return { error: `observeKinds[${i}]: ${quoteEntry(kind)} is no event kind (${known})` };
    if (colon < 0) {
      masks[kind] = OBSERVE_ALL_TRIGGERS;
      continue;
    }
    const names = OBSERVED_TRIGGER_NAMES[kind];
    const t = names.indexOf(entry.slice(colon + 1));
    if (t < 0) {
      return {
        error:
          names.length === 0
            ? `observeKinds[${i}]: ${kind} events have no trigger to select`
            : `observeKinds[${i}]: ${quoteEntry(entry.slice(colon + 1))} is no ${kind} trigger (${names.join(", ")})`,
      };
    }
    masks[kind] = (masks[kind] | (1 << t)) >>> 0;
  }
  return { masks };
}

export interface ObservedEvent {
  kind: ObservedKind;
  nowNs: number;
  gpuId: number;
  start: number;
  npages: number;
  /** For migrate/evict: source and destination locations. */
  from: number;
  to: number;
  /** KFD trigger number (kfd-uapi.md): migrate 0..3, queue eviction 0..5, unmap 0..2. */
  trigger: number;
}

/** Bounds the host enforces on migration hook outputs. */
export const MIGRATION_BOUNDS = {
  /** Most prefetch requests one batch may return. */
  prefetch_requests_max: 64,
  /** Largest prefetch request, pages (1 GiB, the largest SVM range). */
  prefetch_pages_max: 262144,
  /** Most events in one observe batch. */
  observe_events_max: 4096,
  /**
   * Most faults in one sandbox call (NVIDIA UVM's fault batch size, kfd-svm.md §10). Keeps a
   * call of per-fault hooks (~15 us a fault in QuickJS here) far inside timeout_ms, while
   * the ~40 us cost of a call spreads over many faults.
   */
  fault_batch_max: 256,
} as const;

// ---------------------------------------------------------------- advise (the agent's advisor)

/**
 * Largest page number + 1 an SVM address may reach: GPUVM's 48-bit address space (amdgpu
 * max_pfn, 2^48 bytes), the bound the kernel checks SVM ranges against.
 */
export const SVM_ADDRESS_PAGES_MAX = 2 ** 36;
/** Most hints one `advise` answer may hold. */
export const ADVICE_HINTS_MAX = 64;
/** Longest `evidence.detail`, characters. */
export const ADVICE_DETAIL_CHARS_MAX = 200;
/** Longest `pattern` id, characters. */
export const ADVICE_PATTERN_CHARS_MAX = 40;
/** Most GPUs an `evidence.gpus` list names (the most GPUs of one context). */
export const ADVICE_EVIDENCE_GPUS_MAX = 64;

/** What a hint asks the application to do (hipMemAdvise / hipMemPrefetchAsync). */
export const ADVICE_KINDS = ["preferred_location", "accessed_by", "prefetch"] as const;
export type AdviceKind = (typeof ADVICE_KINDS)[number];
/** The patterns the shipped advisor names; a plugin may name others (ADVICE_PATTERN_RE). */
export const ADVICE_PATTERNS = ["ping-pong", "repeated-faults", "remote-reads"] as const;
/** A pattern id: lower-case letters, digits and dashes, starting with a letter. */
export const ADVICE_PATTERN_RE = /^[a-z][a-z0-9-]*$/;

/** Why a hint is given: the events that make its pattern. */
export interface AdviceEvidence {
  /** Events counted (e.g. migrations of a ping-pong, faults of repeated faults). */
  events: number;
  /** Time of the first and last of them, ns in the events' clock (`nowNs` of observe). */
  firstNs: number;
  lastNs: number;
  /** gpu_ids involved (0 = system memory). */
  gpus: number[];
  /** One line for people, at most ADVICE_DETAIL_CHARS_MAX characters. */
  detail: string;
}

/**
 * One piece of advice for an application: `kind` on pages [start, start + npages) for GPU
 * `gpuId` (a KFD gpu_id; 0 = system memory, for preferred_location only).
 */
export interface AdviceHint {
  kind: AdviceKind;
  start: number;
  npages: number;
  gpuId: number;
  /** "ping-pong", "repeated-faults", "remote-reads", or a plugin's own id. */
  pattern: string;
  evidence: AdviceEvidence;
}

const HINT_KEYS = ["kind", "start", "npages", "gpuId", "pattern", "evidence"];
const EVIDENCE_KEYS = ["events", "firstNs", "lastNs", "gpus", "detail"];

/** The first key of `o` not in `known`, or undefined. */
function unknownKey(o: object, known: readonly string[]): string | undefined {
  return Object.keys(o).find((k) => !known.includes(k));
}

/**
 * Validate an `advise` answer: an array of at most ADVICE_HINTS_MAX hints, each with exactly
 * the AdviceHint fields; known kinds; whole pages inside SVM_ADDRESS_PAGES_MAX; a GPU of
 * `gpus` (or 0 for preferred_location); a pattern id; evidence typed and bounded; no two
 * hints alike.
 * @returns the hints as fresh plain objects, or what is wrong with the first bad one.
 */
export function checkAdvice(out: unknown, gpus: readonly PolicyGpu[]): { value: AdviceHint[] } | { error: string } {
  if (!Array.isArray(out)) return { error: "expected an array of hints { kind, start, npages, gpuId, pattern, evidence }" };
  if (out.length > ADVICE_HINTS_MAX) return { error: `at most ${ADVICE_HINTS_MAX} hints, got ${out.length}` };
  const isObj = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === "object" && !Array.isArray(v);
  const ids = gpus.map((g) => g.id);
  const seen = new Set<string>();
  const value: AdviceHint[] = [];
  for (const [i, h] of out.entries()) {
    const at = `[${i}]`;
    if (!isObj(h)) return { error: `${at}: expected a hint object` };
    const extra = unknownKey(h, HINT_KEYS);
    if (extra !== undefined) return { error: `${at}: unknown field '${extra}' (fields: ${HINT_KEYS.join(", ")})` };
    const { kind, start, npages, gpuId, pattern, evidence: e } = h;
    if (typeof kind !== "string" || !(ADVICE_KINDS as readonly string[]).includes(kind)) {
      return { error: `${at}.kind: expected one of ${ADVICE_KINDS.join(", ")}, got ${JSON.stringify(kind)}` };
    }
    if (!Number.isSafeInteger(start) || (start as number) < 0) return { error: `${at}.start: expected a page number >= 0, got ${JSON.stringify(start)}` };
    if (!Number.isSafeInteger(npages) || (npages as number) < 1) return { error: `${at}.npages: expected a page count >= 1, got ${JSON.stringify(npages)}` };
    if ((start as number) + (npages as number) > SVM_ADDRESS_PAGES_MAX) {
      return { error: `${at}: pages [${start}, ${(start as number) + (npages as number)}) pass the SVM address bound (${SVM_ADDRESS_PAGES_MAX} pages)` };
    }
    if (!Number.isInteger(gpuId) || !(ids.includes(gpuId as number) || (gpuId === LOC_SYSMEM && kind === "preferred_location"))) {
      return {
        error: `${at}.gpuId: ${JSON.stringify(gpuId)} is not a GPU of this process (gpu_ids: ${ids.join(", ")}; 0 = system memory, for preferred_location only)`,
      };
    }
    if (typeof pattern !== "string" || pattern.length > ADVICE_PATTERN_CHARS_MAX || !ADVICE_PATTERN_RE.test(pattern)) {
      return { error: `${at}.pattern: expected an id of lower-case letters, digits and dashes (at most ${ADVICE_PATTERN_CHARS_MAX}), got ${JSON.stringify(pattern)}` };
    }
    if (!isObj(e)) return { error: `${at}.evidence: expected { ${EVIDENCE_KEYS.join(", ")} }` };
    const extraE = unknownKey(e, EVIDENCE_KEYS);
    if (extraE !== undefined) return { error: `${at}.evidence: unknown field '${extraE}' (fields: ${EVIDENCE_KEYS.join(", ")})` };
    if (!Number.isSafeInteger(e.events) || (e.events as number) < 0) return { error: `${at}.evidence.events: expected a count >= 0, got ${JSON.stringify(e.events)}` };
    if (!Number.isFinite(e.firstNs) || !Number.isFinite(e.lastNs) || (e.firstNs as number) > (e.lastNs as number)) {
      return { error: `${at}.evidence: expected finite firstNs <= lastNs, got ${JSON.stringify(e.firstNs)}, ${JSON.stringify(e.lastNs)}` };
    }
    if (!Array.isArray(e.gpus) || e.gpus.length > ADVICE_EVIDENCE_GPUS_MAX) {
      return { error: `${at}.evidence.gpus: expected an array of at most ${ADVICE_EVIDENCE_GPUS_MAX} gpu_ids` };
    }
    const bad = (e.gpus as unknown[]).find((g) => !Number.isInteger(g) || !(g === LOC_SYSMEM || ids.includes(g as number)));
    if (bad !== undefined) return { error: `${at}.evidence.gpus: ${JSON.stringify(bad)} is neither 0 (system memory) nor a GPU of this process` };
    if (typeof e.detail !== "string" || e.detail.length > ADVICE_DETAIL_CHARS_MAX) {
      return { error: `${at}.evidence.detail: expected a string of at most ${ADVICE_DETAIL_CHARS_MAX} characters` };
    }
    const key = `${kind}:${start}:${npages}:${gpuId}:${pattern}`;
    if (seen.has(key)) return { error: `${at}: repeats an earlier hint (${kind} of pages [${start}, +${npages}) for ${gpuId}, ${pattern})` };
    seen.add(key);
    value.push({
      kind: kind as AdviceKind,
      start: start as number,
      npages: npages as number,
      gpuId: gpuId as number,
      pattern,
      evidence: { events: e.events as number, firstNs: e.firstNs as number, lastNs: e.lastNs as number, gpus: [...(e.gpus as number[])], detail: e.detail },
    });
  }
  return { value };
}

/** True when GPUs a and b are the same GPU or share an XGMI hive. */
export function gpusInSameHive(gpus: readonly PolicyGpu[], a: number, b: number): boolean {
  if (a === b) return true;
  let hiveA = 0;
  let hiveB = 0;
  for (const g of gpus) {
    if (g.id === a) hiveA = g.hiveId;
    if (g.id === b) hiveB = g.hiveId;
  }
  return hiveA !== 0 && hiveA === hiveB;
}

/** XGMI hive id of GPU `id`, 0 when none or unknown. */
function hiveOf(gpus: readonly PolicyGpu[], id: number): number {
  for (let i = 0; i < gpus.length; i++) if (gpus[i]!.id === id) return gpus[i]!.hiveId;
  return 0;
}

/**
 * best_restore_location on scalar fields (kfd-svm.md §4): the one implementation behind
 * kernelRestoreLocation and the native decider's batch loop.
 */
export function kernelRestoreLocationOf(
  gpuId: number,
  gpuIndex: number,
  preferredLoc: number,
  actualLoc: number,
  accessMask: number,
  aipMask: number,
  gpus: readonly PolicyGpu[],
): number {
  let hive = 0;
  for (let i = 0; i < gpus.length; i++) {
    const g = gpus[i]!;
    if (g.id !== gpuId) continue;
    if (g.appApu) return LOC_SYSMEM;
    hive = g.hiveId;
    break;
  }
  if (preferredLoc === gpuId || preferredLoc === LOC_SYSMEM) return preferredLoc;
  if (preferredLoc !== LOC_UNDEFINED && hive !== 0 && hiveOf(gpus, preferredLoc) === hive) return preferredLoc;
  const bit = 2 ** gpuIndex;
  if (Math.floor(accessMask / bit) % 2 === 1) return gpuId;
  if (Math.floor(aipMask / bit) % 2 === 1) {
    if (actualLoc === LOC_SYSMEM) return LOC_SYSMEM;
    if (actualLoc === gpuId || (hive !== 0 && hiveOf(gpus, actualLoc) === hive)) return actualLoc;
    return LOC_SYSMEM;
  }
  return LOC_DENY;
}

/**
 * The kernel's best_restore_location (kfd-svm.md §4) on plain numbers. The sandboxed
 * plugins/migration/kernel-default.js must agree with it on every input (a test).
 */
export function kernelRestoreLocation(f: Fault, ctx: PolicyContext): number {
  return kernelRestoreLocationOf(f.gpuId, f.gpuIndex, f.preferredLoc, f.actualLoc, f.accessMask, f.aipMask, ctx.gpus);
}

/**
 * The kernel's fault window (kfd-svm.md §2): the 2^granularity-aligned block holding the
 * fault, clipped to the range.
 */
export function kernelMigrationWindow(f: Fault): PageWindow {
  const g = 2 ** f.granularity;
  const blockStart = Math.floor(f.addr / g) * g;
  return { start: Math.max(blockStart, f.rangeStart), last: Math.min(blockStart + g - 1, f.rangeLast) };
}

/** Read record `i` of a fault batch into `out` (reused to avoid allocation). */
export function readFault(batch: Float64Array, i: number, out: Fault): Fault {
  const base = i * FAULT_STRIDE;
  for (let k = 0; k < FAULT_STRIDE; k++) (out as Record<string, number>)[FAULT_FIELDS[k]!] = batch[base + k]!;
  return out;
}

/** Write `f` as record `i` of a fault batch. */
export function writeFault(batch: Float64Array, i: number, f: Fault): void {
  const base = i * FAULT_STRIDE;
  for (let k = 0; k < FAULT_STRIDE; k++) batch[base + k] = f[FAULT_FIELDS[k]!];
}

/** A fault record with every field zero and locations undefined. */
export function emptyFault(): Fault {
  const f = Object.fromEntries(FAULT_FIELDS.map((k) => [k, 0])) as Fault;
  f.preferredLoc = LOC_UNDEFINED;
  f.prefetchLoc = LOC_UNDEFINED;
  f.granularity = 9;
  f.lastMigrationNs = -1;
  return f;
}

/**
 * Validate one decision against its fault; returns an error text or null.
 * loc: LOC_DENY, LOC_SYSMEM, or an existing GPU's id. Window: integers, inside the range,
 * holding the faulting page.
 */
export function checkFaultDecision(
  f: Fault,
  loc: number,
  wStart: number,
  wLast: number,
  ctx: PolicyContext,
): string | null {
  if (Number.isNaN(loc)) return "no location was written (restoreLocationBatch left the slot empty)";
  if (!Number.isInteger(loc)) return `location must be an integer gpu_id, 0 or -1, got ${loc}`;
  if (loc !== LOC_DENY && loc !== LOC_SYSMEM && !ctx.gpus.some((g) => g.id === loc)) {
    return `location ${loc} is not a GPU of this process (gpu_ids: ${ctx.gpus.map((g) => g.id).join(", ")})`;
  }
  if (Number.isNaN(wStart) || Number.isNaN(wLast)) return "no window was written (migrationWindowBatch left the slot empty)";
  if (!Number.isInteger(wStart) || !Number.isInteger(wLast)) return `window bounds must be integers, got [${wStart}, ${wLast}]`;
  if (wStart > f.addr || wLast < f.addr) return `window [${wStart}, ${wLast}] does not hold the faulting page ${f.addr}`;
  if (wStart < f.rangeStart || wLast > f.rangeLast) {
    return `window [${wStart}, ${wLast}] leaves the range [${f.rangeStart}, ${f.rangeLast}]`;
  }
  return null;
}

/** The host-side interface the SVM model calls; native and sandboxed policies implement it. */
export interface MigrationDecider {
  /** Policy name for logs and results. */
  readonly name: string;
  /**
   * Decide a batch of `n` faults (records in `faults`), writing DECISION_STRIDE values per
   * fault into `out`: location, window start, window last. Never throws: a failing policy
   * falls back per the policy's onFailure and counts it.
   */
  decideFaults(faults: Float64Array, n: number, ctx: PolicyContext, out: Float64Array): void;
  /** Extra ranges to move after a batch (already validated). */
  prefetch(faults: Float64Array, n: number, decisions: Float64Array, ctx: PolicyContext): PrefetchRequest[];
  /**
   * Index into req.candidates of the buffer to evict. The SVM model treats any other value
   * (e.g. -1) as "evict nothing": the allocation fails and the fault maps system memory.
   */
  evictionVictim(req: EvictionRequest, ctx: PolicyContext): number;
  /**
   * Events since the last call, in order. A decider may hold them and hand them to its
   * policy later, in order, before the policy's next decision (see flush).
   */
  observe(events: ObservedEvent[], ctx: PolicyContext): void;
  /** Hand over events still held by observe (the end of a run), with their context. */
  flush?(): void;
  /** Number of decisions made by the fallback because the policy failed. */
  readonly fallbacks: number;
  /**
   * Called before every simulation event by deciders that may need asynchronous work (a
   * sandboxed policy rebuilding its Wasm instance after a crash): a promise means "wait for
   * it before the next decision"; undefined means ready.
   */
  prepare?(): Promise<void> | undefined;
  /**
   * False when `observe` ignores its events: the host may then skip building them (the
   * native default's hot path). Absent or true: every event is delivered.
   */
  readonly observes?: boolean;
  /**
   * The events `observe` wants, by kind and trigger (a plugin's `observeKinds` export);
   * absent: all. The host builds no other event.
   */
  readonly observeMasks?: ObserveMasks;
}

/** Least recently used candidate: the memory manager's default victim (kfd-svm.md §8). */
export function lruVictim(req: EvictionRequest): number {
  let best = 0;
  for (let i = 1; i < req.candidates.length; i++) {
    if (req.candidates[i]!.lastUseNs < req.candidates[best]!.lastUseNs) best = i;
  }
  return best;
}

/**
 * The kernel's behaviour, natively: the fallback of every MigrationPolicy. Its batch loop
 * reads the records in place and allocates nothing (the simulator's hot path); it computes
 * exactly kernelRestoreLocation and kernelMigrationWindow.
 */
export function nativeKernelDefault(): MigrationDecider {
  return {
    name: "kernel-default (native)",
    fallbacks: 0,
    observes: false,
    decideFaults(faults, n, ctx, out) {
      const gpus = ctx.gpus;
      for (let i = 0; i < n; i++) {
        const b = i * FAULT_STRIDE;
        const o = i * DECISION_STRIDE;
        out[o] = kernelRestoreLocationOf(
          faults[b + F.gpuId]!,
          faults[b + F.gpuIndex]!,
          faults[b + F.preferredLoc]!,
          faults[b + F.actualLoc]!,
          faults[b + F.accessMask]!,
          faults[b + F.aipMask]!,
          gpus,
        );
        const gran = faults[b + F.granularity]!;
        const g = gran < 31 ? 1 << gran : 2 ** gran;
        const blockStart = Math.floor(faults[b + F.addr]! / g) * g;
        out[o + 1] = Math.max(blockStart, faults[b + F.rangeStart]!);
        out[o + 2] = Math.min(blockStart + g - 1, faults[b + F.rangeLast]!);
      }
    },
    prefetch: () => [],
    evictionVictim: (req) => lruVictim(req),
    observe: () => {},
  };
}
