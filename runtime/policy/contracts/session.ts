/**
 * SessionPolicy: how the agent holds the amdsmi library (reference/amdsmi.md,
 * gpu-agent's smi_session). Hook: `mode(input, ctx) -> { mode, idleGraceMs? }`.
 * - persistent: init once, keep it (the field default);
 * - lazy: a session per request, init on 0->1, shutdown on 1->0;
 * - linger: lazy, but the library stays up `idleGraceMs` after the last session closes.
 */

export const SESSION_MODES = ["persistent", "lazy", "linger"] as const;
export type SessionMode = (typeof SESSION_MODES)[number];

/** Longest linger grace the host accepts. */
export const LINGER_GRACE_MS_MAX = 3_600_000;

export interface SessionInput {
  nowMs: number;
  /** Requests (scrapes, sampler ticks) per second over the last minute. */
  requestsPerS: number;
  /** Median amdsmi_init latency observed, ms (0 when never measured). */
  initLatencyMs: number;
  shutdownLatencyMs: number;
  /** Share of time, 0..1, another user held the device or init failed as busy. */
  contention: number;
  openSessions: number;
  currentMode: SessionMode;
  /** Time since the last session closed, ms. */
  idleMs: number;
}

export interface SessionDecision {
  mode: SessionMode;
  /** Linger only: how long the library stays initialised after the last session. */
  idleGraceMs?: number;
}

export const SESSION_FALLBACK: SessionDecision = { mode: "persistent" };

export function checkSessionDecision(out: unknown): { ok: true; value: SessionDecision } | { ok: false; message: string } {
  if (out === null || typeof out !== "object" || Array.isArray(out)) {
    return { ok: false, message: 'expected { "mode": "persistent" | "lazy" | "linger", "idleGraceMs"?: n }' };
  }
  const o = out as Record<string, unknown>;
  for (const k of Object.keys(o)) {
    if (k !== "mode" && k !== "idleGraceMs") return { ok: false, message: `unknown field '${k}'` };
  }
  if (!(SESSION_MODES as readonly unknown[]).includes(o.mode)) {
    return { ok: false, message: `mode must be one of ${SESSION_MODES.join(", ")}, got ${JSON.stringify(o.mode)}` };
  }
  const mode = o.mode as SessionMode;
  if (mode === "linger") {
    const g = o.idleGraceMs;
    if (typeof g !== "number" || !Number.isInteger(g) || g < 1 || g > LINGER_GRACE_MS_MAX) {
      return { ok: false, message: `linger needs idleGraceMs, an integer from 1 to ${LINGER_GRACE_MS_MAX} ms, got ${JSON.stringify(g)}` };
    }
    return { ok: true, value: { mode, idleGraceMs: g } };
  }
  if (o.idleGraceMs !== undefined) return { ok: false, message: `idleGraceMs applies to linger only, not ${mode}` };
  return { ok: true, value: { mode } };
}

export const SAMPLE_SESSION_INPUT: SessionInput = {
  nowMs: 120_000,
  requestsPerS: 0.2,
  initLatencyMs: 180,
  shutdownLatencyMs: 40,
  contention: 0,
  openSessions: 0,
  currentMode: "persistent",
  idleMs: 4_000,
};
