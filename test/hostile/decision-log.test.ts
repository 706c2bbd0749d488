/**
 * Huge plugin-controlled text in the decision log. Sandbox failure messages are clipped to
 * 2 KiB, but contract-check messages (kinds.ts / contracts/*.ts) quote the plugin's keys
 * verbatim and DecisionLog.add clips only `output`: one invalid answer with a 200 KB key
 * puts 200 KB into the record, the sink (JSONL) and the 1000-entry ring (up to 1000 x
 * output_bytes, 4 GiB at the host maximum).
 */
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import type { DecisionRecord } from "../../runtime/policy/decision-log.ts";
import { SAMPLE_SESSION_INPUT } from "../../runtime/policy/contracts/session.ts";
import { Policy } from "../../runtime/policy/policy.ts";
import { policyYaml, tempFolder } from "../policy/helpers.ts";

describe("hostile: decision log records stay small", () => {
  test("an invalid answer with a 200 KB key is logged with a clipped message", async () => {
    const dir = tempFolder({
      "p.yaml": policyYaml("  plugin: plugin.js\n", "SessionPolicy"),
      "plugin.js": "export function mode() { return { ['k'.repeat(200000)]: 1 } }",
    });
    const records: DecisionRecord[] = [];
    using p = await Policy.load(join(dir, "p.yaml"), { logSink: (r) => records.push(r) });
    const d = await p.invoke("mode", SAMPLE_SESSION_INPUT, { nowMs: 0 });
    expect(d.by).toBe("fallback");
    expect(d.failure?.reason).toBe("invalid-output");
    expect(JSON.stringify(records.at(-1)).length).toBeLessThan(8 * 1024);
    expect(d.failure!.message.length).toBeLessThan(8 * 1024);
  });
});
