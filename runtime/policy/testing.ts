/**
 * Policy test cases (`spec.tests` in a policy file), in the manner of `opa test`: each case
 * names a hook, an input (the hook's documented sample when absent), optional context
 * overrides, and the decision or failure reason expected.
 */
import { isDeepStrictEqual } from "node:util";
import { PolicyError } from "../errors.ts";
import { hookOf } from "./kinds.ts";
import type { Policy } from "./policy.ts";
import type { PolicyTestCase } from "./schema.ts";

export interface TestOutcome {
  name: string;
  ok: boolean;
  /** What differed, when not ok. */
  message?: string;
}

export async function runPolicyTest(policy: Policy, t: PolicyTestCase): Promise<TestOutcome> {
  const spec = hookOf(policy.kindSpec, t.hook);
  if (!spec) {
    return { name: t.name, ok: false, message: `unknown hook '${t.hook}' (hooks of ${policy.spec.kind}: ${Object.keys(policy.kindSpec.hooks).join(", ")})` };
  }
  const input = t.input === undefined ? spec.sampleInput : t.input;
  const ctx = { ...policy.kindSpec.sampleCtx, ...((t.ctx as Record<string, unknown> | undefined) ?? {}) };
  let by: string;
  let value: unknown;
  let reason: string | undefined;
  let message = "";
  try {
    const d = await policy.invoke(t.hook, input, ctx);
    by = d.by;
    value = d.value;
    reason = d.failure?.reason;
    message = d.failure?.message ?? "";
  } catch (e) {
    // Whatever goes wrong in one case (a malformed input, a hostile ctx) fails that case.
    if (!(e instanceof PolicyError)) return { name: t.name, ok: false, message: (e as Error)?.message ?? String(e) };
    by = "failed";
    reason = e.reason;
    message = e.message;
  }
  if (t.expectError !== undefined) {
    if (reason === t.expectError) return { name: t.name, ok: true };
    return { name: t.name, ok: false, message: `expected failure '${t.expectError}', got ${reason ? `'${reason}': ${message}` : `a decision ${JSON.stringify(value)}`}` };
  }
  if (reason !== undefined && !t.expectFallback) {
    return { name: t.name, ok: false, message: `the plugin failed (${reason}): ${message}` };
  }
  if (t.expectFallback && by !== "fallback") return { name: t.name, ok: false, message: `expected the fallback to decide, but ${by} did` };
  if (t.expect !== undefined && !isDeepStrictEqual(value, t.expect)) {
    return { name: t.name, ok: false, message: `expected ${JSON.stringify(t.expect)}, got ${JSON.stringify(value)}` };
  }
  return { name: t.name, ok: true };
}

export async function runPolicyTests(policy: Policy): Promise<TestOutcome[]> {
  const out: TestOutcome[] = [];
  for (const t of policy.spec.tests ?? []) out.push(await runPolicyTest(policy, t));
  return out;
}
