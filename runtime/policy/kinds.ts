/**
 * The three policy kinds: for each hook, how its answer is validated, what the fallback
 * decides, and the documented sample input `svmrt policy eval` uses when none is given.
 */
import {
  type AdviceHint,
  type EvictionRequest,
  type Fault,
  LOC_DENY,
  LOC_SYSMEM,
  MIGRATION_BOUNDS,
  type ObservedEvent,
  type PolicyContext,
  type PrefetchRequest,
  checkAdvice,
  checkFaultDecision,
  emptyFault,
  kernelMigrationWindow,
  kernelRestoreLocation,
  lruVictim,
} from "./contracts/migration.ts";
import { SAMPLE_SCHEDULE_INPUT, type ScheduleInput, checkSchedule, fixedSchedule } from "./contracts/sampling.ts";
import { SAMPLE_SESSION_INPUT, SESSION_FALLBACK, checkSessionDecision } from "./contracts/session.ts";
import type { TSchema } from "@sinclair/typebox/type";
import {
  AdviseInput,
  ClockCtx,
  EvictionInput,
  FaultUserInput,
  MigrationCtx,
  ObserveInput,
  PrefetchUserInput,
  ScheduleInputSchema,
  SessionInputSchema,
} from "./inputs.ts";
import type { PolicyKind } from "./schema.ts";

export type Checked = { ok: true; value: unknown } | { ok: false; message: string };

export interface HookSpec {
  /** Validate a plugin answer against its input. */
  check(out: unknown, input: unknown, ctx: Record<string, unknown>): Checked;
  /** The built-in decision, used when the plugin fails or does not export the hook. */
  fallback(input: unknown, ctx: Record<string, unknown>): unknown;
  /** Shape of the (prepared) input; checked for inputs that come from users. */
  inputSchema?: TSchema;
  /** Shape of a user's input before `prepare` fills its defaults (unknown fields, batch size). */
  userInputSchema?: TSchema;
  /** Normalise a user-given input (fill defaults) before the call. */
  prepare?(input: unknown): unknown;
  sampleInput: unknown;
  /**
   * Called through a binary batch adapter rather than as JSON: `faults` for the per-fault
   * hooks (migration.faults), `prefetch` for prefetch (migration.prefetch), `events` for
   * observe (migration.observe). `faults` and `events` hooks may be exported in batch form
   * only (`<hook>Batch`).
   */
  binary?: "faults" | "prefetch" | "events";
  /** One line for docs and `policy eval --help`. */
  summary: string;
}

export interface KindSpec {
  kind: PolicyKind;
  hooks: Record<string, HookSpec>;
  /** A plugin of this kind exports at least one of these. */
  anyOf: string[];
  /** Context a hook gets besides params when none is given. */
  sampleCtx: Record<string, unknown>;
  /** Shape of that context. */
  ctxSchema: TSchema;
}

const isObj = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === "object" && !Array.isArray(v);
const isInt = (v: unknown): v is number => typeof v === "number" && Number.isInteger(v);

export const SAMPLE_MIGRATION_CTX: PolicyContext = {
  gpus: [
    { id: 0x3fe1, index: 0, hiveId: 0x5a11, appApu: false, vramBytes: 192 * 2 ** 30 },
    { id: 0x4a02, index: 1, hiveId: 0x5a11, appApu: false, vramBytes: 192 * 2 ** 30 },
  ],
  xnack: true,
  nowNs: 1_000_000_000,
};

const SAMPLE_FAULT: Fault = {
  ...emptyFault(),
  gpuId: 0x3fe1,
  gpuIndex: 0,
  addr: 0x7f12a3c4,
  write: 1,
  rangeStart: 0x7f12a000,
  rangeLast: 0x7f12a000 + 262143,
  accessMask: 0b11,
  faultNs: 999_000_000,
};

/** Fill a partial fault (from a user's JSON) with defaults; unknown fields are dropped. */
function prepareFault(input: unknown): Fault {
  const f = emptyFault();
  if (isObj(input)) for (const k of Object.keys(f) as (keyof Fault)[]) if (typeof input[k] === "number") f[k] = input[k] as number;
  return f;
}

export interface PrefetchInput {
  faults: Fault[];
  decisions: { loc: number; start: number; last: number }[];
}

/** Fill a user's prefetch input: faults get defaults, decisions default to the kernel's. */
function preparePrefetch(input: unknown): PrefetchInput {
  const o = isObj(input) ? input : {};
  const faults = (Array.isArray(o.faults) ? o.faults : []).slice(0, MIGRATION_BOUNDS.fault_batch_max).map(prepareFault);
  const given = Array.isArray(o.decisions) ? o.decisions : [];
  const decisions = faults.map((f, i) => {
    const d = given[i];
    const w = kernelMigrationWindow(f);
    const num = (k: string, dflt: number) => (isObj(d) && typeof d[k] === "number" ? (d[k] as number) : dflt);
    return { loc: num("loc", f.gpuId), start: num("start", w.start), last: num("last", w.last) };
  });
  return { faults, decisions };
}

const migrationCtx = (ctx: Record<string, unknown>) => ctx as unknown as PolicyContext;

function checkPrefetch(out: unknown, ctx: PolicyContext): Checked {
  if (!Array.isArray(out)) return { ok: false, message: "expected an array of { start, npages, loc }" };
  if (out.length > MIGRATION_BOUNDS.prefetch_requests_max) {
    return { ok: false, message: `at most ${MIGRATION_BOUNDS.prefetch_requests_max} prefetch requests, got ${out.length}` };
  }
  const value: PrefetchRequest[] = [];
  for (const [i, r] of out.entries()) {
    if (!isObj(r) || !isInt(r.start) || !isInt(r.npages) || !isInt(r.loc)) {
      return { ok: false, message: `[${i}]: expected { start, npages, loc } integers` };
    }
    if (r.start < 0) return { ok: false, message: `[${i}]: start ${r.start} is negative` };
    if (r.npages < 1 || r.npages > MIGRATION_BOUNDS.prefetch_pages_max) {
      return { ok: false, message: `[${i}]: npages must be 1..${MIGRATION_BOUNDS.prefetch_pages_max}, got ${r.npages}` };
    }
    if (r.loc !== LOC_SYSMEM && !ctx.gpus.some((g) => g.id === r.loc)) {
      return { ok: false, message: `[${i}]: loc ${r.loc} is neither 0 (system memory) nor a GPU of this process` };
    }
    value.push({ start: r.start, npages: r.npages, loc: r.loc });
  }
  return { ok: true, value };
}

const SAMPLE_EVICTION: EvictionRequest = {
  gpuId: 0x3fe1,
  neededPages: 512,
  candidates: [
    { rangeStart: 0x100000, npages: 262144, vramPages: 262144, lastUseNs: 500_000_000, lastMigrationNs: 100_000_000 },
    { rangeStart: 0x200000, npages: 512, vramPages: 512, lastUseNs: 900_000_000, lastMigrationNs: 850_000_000 },
  ],
};

const SAMPLE_EVENTS: ObservedEvent[] = [
  { kind: "fault", nowNs: 999_000_000, gpuId: 0x3fe1, start: 0x7f12a3c4, npages: 1, from: 0, to: 0x3fe1, trigger: 1 },
  { kind: "migrate", nowNs: 999_100_000, gpuId: 0x3fe1, start: 0x7f12a200, npages: 512, from: 0, to: 0x3fe1, trigger: 1 },
];

export const MIGRATION_KIND: KindSpec = {
  kind: "MigrationPolicy",
  anyOf: ["restoreLocation", "migrationWindow", "prefetch", "evictionVictim", "observe", "advise"],
  sampleCtx: SAMPLE_MIGRATION_CTX as unknown as Record<string, unknown>,
  ctxSchema: MigrationCtx,
  hooks: {
    restoreLocation: {
      summary: "per GPU fault: where the range should live (gpu_id, 0 = system memory, -1 = deny)",
      binary: "faults",
      prepare: prepareFault,
      userInputSchema: FaultUserInput,
      sampleInput: SAMPLE_FAULT,
      check(out, input, ctx) {
        const f = input as Fault;
        const w = kernelMigrationWindow(f);
        if (typeof out !== "number") return { ok: false, message: `expected a number, got ${JSON.stringify(out)}` };
        const bad = checkFaultDecision(f, out, w.start, w.last, migrationCtx(ctx));
        return bad ? { ok: false, message: bad } : { ok: true, value: out };
      },
      fallback: (input, ctx) => kernelRestoreLocation(input as Fault, migrationCtx(ctx)),
    },
    migrationWindow: {
      summary: "per GPU fault: the pages [start, last] to migrate around the faulting page",
      binary: "faults",
      prepare: prepareFault,
      userInputSchema: FaultUserInput,
      sampleInput: SAMPLE_FAULT,
      check(out, input, ctx) {
        const f = input as Fault;
        if (!isObj(out)) return { ok: false, message: `expected { start, last }, got ${JSON.stringify(out)}` };
        const bad = checkFaultDecision(f, LOC_DENY, out.start as number, out.last as number, migrationCtx(ctx));
        return bad ? { ok: false, message: bad } : { ok: true, value: { start: out.start, last: out.last } };
      },
      fallback: (input) => kernelMigrationWindow(input as Fault),
    },
    prefetch: {
      summary: "after a batch of faults: extra ranges to move [{ start, npages, loc }]",
      binary: "prefetch",
      prepare: preparePrefetch,
      userInputSchema: PrefetchUserInput,
      sampleInput: { faults: [SAMPLE_FAULT], decisions: [{ loc: 0x3fe1, start: 0x7f12a200, last: 0x7f12a3ff }] },
      check: (out, _input, ctx) => checkPrefetch(out, migrationCtx(ctx)),
      fallback: () => [],
    },
    evictionVictim: {
      summary: "under VRAM pressure: index of the candidate buffer to evict",
      inputSchema: EvictionInput,
      sampleInput: SAMPLE_EVICTION,
      check(out, input) {
        const n = (input as EvictionRequest).candidates.length;
        if (!isInt(out) || out < 0 || out >= n) return { ok: false, message: `expected an index from 0 to ${n - 1}, got ${JSON.stringify(out)}` };
        return { ok: true, value: out };
      },
      fallback: (input) => lruVictim(input as EvictionRequest),
    },
    observe: {
      summary: "a batch of events (faults, migrations, evictions) for the plugin's own state; the answer is ignored",
      binary: "events",
      inputSchema: ObserveInput,
      sampleInput: { events: SAMPLE_EVENTS },
      check: () => ({ ok: true, value: null }),
      fallback: () => null,
    },
    advise: {
      summary: "the agent's advisor only (never the simulator): hints from observed events [{ kind, start, npages, gpuId, pattern, evidence }]",
      inputSchema: AdviseInput,
      sampleInput: { nowNs: SAMPLE_MIGRATION_CTX.nowNs },
      check(out, _input, ctx) {
        const r = checkAdvice(out, migrationCtx(ctx).gpus);
        return "error" in r ? { ok: false, message: r.error } : { ok: true, value: r.value satisfies AdviceHint[] };
      },
      fallback: () => [],
    },
  },
};

export const SAMPLING_KIND: KindSpec = {
  kind: "SamplingPolicy",
  anyOf: ["schedule"],
  sampleCtx: { nowMs: SAMPLE_SCHEDULE_INPUT.nowMs },
  ctxSchema: ClockCtx,
  hooks: {
    schedule: {
      summary: 'latest readings, errors, time -> { "<gpu id>": { "<group>": interval_ms } }',
      inputSchema: ScheduleInputSchema,
      sampleInput: SAMPLE_SCHEDULE_INPUT,
      check: (out, input) => checkSchedule(out, input as ScheduleInput),
      fallback: (input) => fixedSchedule(input as ScheduleInput),
    },
  },
};

export const SESSION_KIND: KindSpec = {
  kind: "SessionPolicy",
  anyOf: ["mode"],
  sampleCtx: { nowMs: SAMPLE_SESSION_INPUT.nowMs },
  ctxSchema: ClockCtx,
  hooks: {
    mode: {
      summary: "request rate, init/shutdown latency, contention -> { mode: persistent | lazy | linger, idleGraceMs? }",
      inputSchema: SessionInputSchema,
      sampleInput: SAMPLE_SESSION_INPUT,
      check: (out) => checkSessionDecision(out),
      fallback: () => SESSION_FALLBACK,
    },
  },
};

/** The hook of that name, own properties only (never Object.prototype's members). */
export function hookOf(kind: KindSpec, name: string): HookSpec | undefined {
  return Object.hasOwn(kind.hooks, name) ? kind.hooks[name] : undefined;
}

export const KINDS: Record<PolicyKind, KindSpec> = {
  MigrationPolicy: MIGRATION_KIND,
  SamplingPolicy: SAMPLING_KIND,
  SessionPolicy: SESSION_KIND,
};
