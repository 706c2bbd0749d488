/**
 * Hostile plugins against the per-call deadline. QuickJS polls the interrupt handler from
 * the interpreter loop and the regex engine only: a single native builtin that loops over a
 * huge `length` without allocating never yields, so the host thread would be held far past
 * timeout_ms (with length 2**53 - 1: for years). The prelude refuses such lengths.
 */
import { describe, expect, test } from "bun:test";
import { SANDBOX_DEFAULTS } from "../../runtime/sandbox/limits.ts";
import { Sandbox } from "../../runtime/sandbox/sandbox.ts";

const load = (source: string) =>
  Sandbox.load({ name: "deadline", source, filename: "deadline.js", limits: { ...SANDBOX_DEFAULTS, timeout_ms: 50 }, seed: 1 });

/** Each hook runs one native loop of ~1-2 s on this machine (25-50 ns per index). */
const NATIVE_LOOPS: [string, string][] = [
  ["Array.prototype.indexOf on a huge array-like", "return Array.prototype.indexOf.call({ length: 4e7 }, 1)"],
  ["join of a sparse array", "const a = []; a.length = 2.5e7; return a.join('').length"],
  ["forEach over holes never calls back into JS", "let n = 0; Array.prototype.forEach.call({ length: 4e7 }, () => n++); return n"],
];

describe("hostile: the deadline holds against native loops", () => {
  for (const [label, body] of NATIVE_LOOPS) {
    test(label, async () => {
      using sb = await load(`export function hook() { ${body} }`);
      const r = await sb.call("hook", null);
      // Unguarded, each loop runs 1-2 s past the 50 ms deadline. The generic Array methods
      // refuse such lengths outright (a RangeError in the plugin), before any iteration.
      expect(r).toMatchObject({ ok: false, reason: "exception" });
      if (!r.ok) expect(r.message).toMatch(/refuses lengths over 16777216/);
    });
  }

  test("the load deadline holds too", async () => {
    const err = await Sandbox.load({
      name: "deadline",
      source: "Array.prototype.lastIndexOf.call({ length: 4e7 }, 1)\nexport function hook() { return 1 }",
      filename: "deadline.js",
      limits: { ...SANDBOX_DEFAULTS, load_timeout_ms: 50 },
      seed: 1,
    }).then(
      (sb) => {
        sb.dispose();
        return null;
      },
      (e) => e,
    );
    // Refused before any iteration (unguarded, the loop runs 1-2 s past load_timeout_ms).
    expect(err).not.toBeNull();
    expect(String((err as Error).message)).toMatch(/refuses lengths over 16777216/);
  });
});
