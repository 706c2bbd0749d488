/**
 * The decision log: which policy (name and revision) answered which hook, for which input
 * (a digest), with what output, and why a fallback decided when one did. A bounded ring in
 * memory, plus an optional sink (the agent writes JSONL).
 */
import { createHash } from "node:crypto";
import type { PolicyFailureReason } from "../errors.ts";

/** Entries kept in memory per log. */
export const DECISION_LOG_ENTRIES_MAX = 1000;
/** Characters of an output kept in an entry. */
export const DECISION_LOG_OUTPUT_CHARS_MAX = 512;

export interface DecisionRecord {
  /** Wall-clock ms of the decision (0 in the simulator, where only order matters). */
  atMs: number;
  policy: string;
  revision: string;
  hook: string;
  /** sha256 of the input, first 16 hex digits; `w:` + wyhash for hot-path batches. */
  inputDigest: string;
  /** JSON of the decision, clipped. */
  output: string;
  /** Set when the fallback decided. */
  fallback?: { reason: PolicyFailureReason; message: string };
  /** Decisions this record stands for (a batch of faults is one record). */
  count: number;
}

export function digestOf(data: string | Uint8Array): string {
  return createHash("sha256").update(data).digest("hex").slice(0, 16);
}

/**
 * Digest of a hot-path batch: wyhash (Bun.hash), not sha256, because hashing every fault
 * record with sha256 would cost more than deciding it. Prefixed so the two never mix.
 */
export function batchDigestOf(data: Float64Array): string {
  const h = Bun.hash(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  return `w:${h.toString(16).padStart(16, "0")}`;
}

/** Distinct (hook, reason) failure groups a log keeps; further ones are only counted. */
export const FAILURE_GROUPS_MAX = 5;

/** Failures of one hook for one reason over a log's whole life. */
export interface FailureGroup {
  hook: string;
  reason: PolicyFailureReason;
  /** Records (calls or batches) that failed this way. */
  records: number;
  /** The first of their messages. */
  example: string;
}

export class DecisionLog {
  private readonly ring: DecisionRecord[] = [];
  private next = 0;
  /** Records ever added (the ring keeps the last DECISION_LOG_ENTRIES_MAX). */
  total = 0;
  fallbacks = 0;
  /** Failures by hook and reason since the log began, in order of first appearance. */
  private readonly groups = new Map<string, FailureGroup>();
  /** Failed records of hook/reason pairs beyond the first FAILURE_GROUPS_MAX. */
  private failuresOther = 0;

  constructor(
    private readonly sink?: (r: DecisionRecord) => void,
    private readonly clock: () => number = Date.now,
  ) {}

  add(r: Omit<DecisionRecord, "atMs" | "output"> & { output: unknown }): DecisionRecord {
    let output = JSON.stringify(r.output) ?? "null";
    if (output.length > DECISION_LOG_OUTPUT_CHARS_MAX) output = `${output.slice(0, DECISION_LOG_OUTPUT_CHARS_MAX)}…`;
    // Fallback messages quote plugin output (keys, values): clipped like the output.
    const fallback = r.fallback && {
      reason: r.fallback.reason,
      message: r.fallback.message.length > DECISION_LOG_OUTPUT_CHARS_MAX ? `${r.fallback.message.slice(0, DECISION_LOG_OUTPUT_CHARS_MAX)}…` : r.fallback.message,
    };
    const rec: DecisionRecord = { ...r, fallback, atMs: this.clock(), output };
    if (this.ring.length < DECISION_LOG_ENTRIES_MAX) this.ring.push(rec);
    else this.ring[this.next] = rec;
    this.next = (this.next + 1) % DECISION_LOG_ENTRIES_MAX;
    this.total++;
    if (r.fallback) {
      this.fallbacks += r.count;
      this.countFailure(r.hook, r.fallback.reason, fallback!.message);
    }
    this.sink?.(rec);
    return rec;
  }

  private countFailure(hook: string, reason: PolicyFailureReason, message: string): void {
    const key = `${hook}\u0000${reason}`;
    const g = this.groups.get(key);
    if (g !== undefined) g.records++;
    else if (this.groups.size < FAILURE_GROUPS_MAX) this.groups.set(key, { hook, reason, records: 1, example: message });
    else this.failuresOther++;
  }

  /**
   * Why the policy failed over the log's whole life (not only the records the ring still
   * holds): at most FAILURE_GROUPS_MAX hook/reason groups, and the failed records of any
   * other pair in `otherRecords`.
   */
  failures(): { groups: FailureGroup[]; otherRecords: number } {
    return { groups: [...this.groups.values()].map((g) => ({ ...g })), otherRecords: this.failuresOther };
  }

  /** Entries in the order they were added, oldest first. */
  entries(): DecisionRecord[] {
    if (this.ring.length < DECISION_LOG_ENTRIES_MAX) return [...this.ring];
    return [...this.ring.slice(this.next), ...this.ring.slice(0, this.next)];
  }
}

/** One failure group in words: `hook reason (N calls), e.g. <first line of the first message>`. */
export function failureText(g: FailureGroup): string {
  return `${g.hook} ${g.reason} (${g.records} ${g.records === 1 ? "call" : "calls"}), e.g. ${g.example.split("\n")[0]}`;
}
