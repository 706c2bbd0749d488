/**
 * Schemas of what hooks receive: the inputs of the JSON hooks and the context of each kind.
 * Inputs from users (`policy eval --input`, inline tests) are checked against them before a
 * plugin or a fallback sees them; the host's own callers build them by construction.
 */
import { type TSchema, Type } from "@sinclair/typebox/type";
import { Errors } from "@sinclair/typebox/errors";
import { FAULT_FIELDS, MIGRATION_BOUNDS } from "./contracts/migration.ts";
import { METRIC_GROUPS } from "./contracts/sampling.ts";
import { SESSION_MODES } from "./contracts/session.ts";

/** Most GPUs in one context (KFD's own limit on a node is lower). */
export const CONTEXT_GPUS_MAX = 64;
/** Most eviction candidates in one request. */
export const EVICTION_CANDIDATES_MAX = 4096;

const Num = Type.Number();
const Int = Type.Integer();

export const MigrationCtx = Type.Object(
  {
    gpus: Type.Array(
      Type.Object(
        {
          id: Type.Integer({ minimum: 1, maximum: 0xffffffff }),
          index: Type.Integer({ minimum: 0, maximum: 51 }),
          hiveId: Type.Integer({ minimum: 0 }),
          appApu: Type.Boolean(),
          vramBytes: Type.Number({ minimum: 0 }),
        },
        { additionalProperties: false },
      ),
      { maxItems: CONTEXT_GPUS_MAX },
    ),
    xnack: Type.Boolean(),
    nowNs: Num,
  },
  { additionalProperties: false },
);

export const ClockCtx = Type.Object({ nowMs: Num }, { additionalProperties: false });

export const EvictionInput = Type.Object(
  {
    gpuId: Int,
    neededPages: Type.Integer({ minimum: 0 }),
    candidates: Type.Array(
      Type.Object({ rangeStart: Int, npages: Int, vramPages: Int, lastUseNs: Num, lastMigrationNs: Num }, { additionalProperties: false }),
      { minItems: 1, maxItems: EVICTION_CANDIDATES_MAX },
    ),
  },
  { additionalProperties: false },
);

export const ObserveInput = Type.Object(
  {
    events: Type.Array(
      Type.Object(
        {
          kind: Type.Union(["fault", "migrate", "evict", "unmap", "queue-evict", "queue-restore"].map((k) => Type.Literal(k))),
          nowNs: Num,
          gpuId: Int,
          start: Int,
          npages: Int,
          from: Int,
          to: Int,
          trigger: Int,
        },
        { additionalProperties: false },
      ),
      { maxItems: MIGRATION_BOUNDS.observe_events_max },
    ),
  },
  { additionalProperties: false },
);

/**
 * A fault as a user writes it (`policy eval --input`, inline tests): any of the record's
 * fields, each a finite number; the rest get defaults. A misspelled field is refused, never
 * replaced by its default.
 */
export const FaultUserInput = Type.Object(Object.fromEntries(FAULT_FIELDS.map((k) => [k, Type.Optional(Num)])), { additionalProperties: false });

/** A prefetch batch as a user writes it: at most one batch of faults, decisions optional. */
export const PrefetchUserInput = Type.Object(
  {
    faults: Type.Array(FaultUserInput, { maxItems: MIGRATION_BOUNDS.fault_batch_max }),
    decisions: Type.Optional(
      Type.Array(Type.Object({ loc: Type.Optional(Num), start: Type.Optional(Num), last: Type.Optional(Num) }, { additionalProperties: false }), {
        maxItems: MIGRATION_BOUNDS.fault_batch_max,
      }),
    ),
  },
  { additionalProperties: false },
);

/** Input of `advise` (the agent's advisor): the time of the call in the events' clock. */
export const AdviseInput = Type.Object({ nowNs: Num }, { additionalProperties: false });

const Readings = Type.Object(
  {
    temperature_c: Type.Optional(Num),
    power_w: Type.Optional(Num),
    gfx_activity_pct: Type.Optional(Num),
    umc_activity_pct: Type.Optional(Num),
    vram_used_bytes: Type.Optional(Num),
    vram_total_bytes: Type.Optional(Num),
  },
  { additionalProperties: false },
);
const Groups = Type.Object(Object.fromEntries(METRIC_GROUPS.map((g) => [g, Type.Optional(Num)])), { additionalProperties: false });

export const ScheduleInputSchema = Type.Object(
  {
    nowMs: Num,
    gpus: Type.Array(
      Type.Object(
        {
          id: Int,
          readings: Readings,
          limits: Type.Object({ temperature_c_max: Type.Optional(Num), power_w_max: Type.Optional(Num) }, { additionalProperties: false }),
          errors: Groups,
        },
        { additionalProperties: false },
      ),
      { maxItems: CONTEXT_GPUS_MAX },
    ),
    intervals: Type.Record(Type.String({ pattern: "^[0-9]+$" }), Groups),
  },
  { additionalProperties: false },
);

export const SessionInputSchema = Type.Object(
  {
    nowMs: Num,
    requestsPerS: Type.Number({ minimum: 0 }),
    initLatencyMs: Type.Number({ minimum: 0 }),
    shutdownLatencyMs: Type.Number({ minimum: 0 }),
    contention: Type.Number({ minimum: 0, maximum: 1 }),
    openSessions: Type.Integer({ minimum: 0 }),
    currentMode: Type.Union(SESSION_MODES.map((m) => Type.Literal(m))),
    idleMs: Type.Number({ minimum: 0 }),
  },
  { additionalProperties: false },
);

/** First mismatch of `value` against `schema`, as "path: expected ...", or null. */
export function inputProblem(schema: TSchema, value: unknown, what: string): string | null {
  const first = Errors(schema, value).First();
  if (!first) return null;
  if (first.message === "Unexpected property") {
    const known = Object.keys((first.schema as { properties?: Record<string, unknown> }).properties ?? {});
    return `${what}${first.path}: unknown field${known.length > 0 ? ` (known: ${known.join(", ")})` : ""}`;
  }
  return `${what}${first.path || ""}: ${first.message.replace(/^Expected /, "expected ")}`;
}
