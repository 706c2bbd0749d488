/**
 * The QuickJS stack limit does not bound the host's native stack. QuickJS measures its
 * own C stack (stack_bytes, default 256 KiB), but every guest C frame is also a Wasm frame
 * on Bun's thread stack, and the parser / JSON / toString recursions use more host stack
 * per QuickJS byte than the interpreter: Bun's stack overflows first. Each such call is
 * handled as a Wasm crash (instance dropped, 16 MiB rebuilt, crash counted; the same
 * plugin quarantined after crashes_max), and how deep a plugin may go depends on how deep
 * the host happened to be when it called. JSC's overflow path also runs for ~1.5 s,
 * uninterruptible, far past timeout_ms. Hence: no eval/Function, a JSON.parse depth guard,
 * a nesting check of plugin sources, and a 64 KiB default stack.
 */
import { describe, expect, test } from "bun:test";
import { SANDBOX_DEFAULTS } from "../../runtime/sandbox/limits.ts";
import { Sandbox } from "../../runtime/sandbox/sandbox.ts";

const load = (source: string) =>
  Sandbox.load({ name: "stack", source, filename: "stack.js", limits: { ...SANDBOX_DEFAULTS, load_timeout_ms: 5000 }, seed: 1 });

describe("hostile: deep native recursion with default limits", () => {
  for (const [label, body] of [
    ["eval of 20,000 nested array literals", "return eval('['.repeat(20000) + ']'.repeat(20000)).length"],
    ["JSON.parse of 50,000 nested arrays", "return JSON.parse('['.repeat(50000) + ']'.repeat(50000)).length"],
    ["new Function with 20,000 nested parentheses", "return Function('return ' + '('.repeat(20000) + '1' + ')'.repeat(20000))()"],
  ] as const) {
    test(`${label}: refused inside the sandbox, the Wasm module does not crash`, async () => {
      using sb = await load(`export function hook() { ${body} }`);
      const r = await sb.call("hook", null);
      // eval and the Function constructors are gone; JSON.parse refuses the nesting.
      expect(r).toMatchObject({ ok: false, reason: "exception" });
      expect(sb.stats.crashes).toBe(0);
      expect(sb.stats.builds).toBe(1);
    });
  }

  test("JSON.stringify of a 200,000-deep structure stops within the deadline", async () => {
    using sb = await load("let a = []; for (let i = 0; i < 200000; i++) a = [a];\nexport function hook() { return JSON.stringify(a).length }");
    const r = await sb.call("hook", null);
    // Stopped by the stack limit, not run on until the deadline (no clock in the check).
    expect(r).toMatchObject({ ok: false, reason: "stack" });
  });
});

describe("hostile: deeply nested plugin source", () => {
  test("is refused before QuickJS parses it, naming line and column", async () => {
    const err = await load(`export const x = ${"[".repeat(5000)}${"]".repeat(5000)}\nexport function hook() { return 1 }`).then(
      (sb) => {
        sb.dispose();
        return null;
      },
      (e) => e,
    );
    expect(err).toMatchObject({ reason: "load" });
    expect(String(err?.message)).toMatch(/stack\.js:1:146: nested deeper than 128/);
  });
});
