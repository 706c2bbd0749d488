/**
 * A plugin that throws a Promise at top level. Sandbox.errorText calls context.dump, which
 * (quickjs-emscripten) disposes promise handles itself; the caller then disposes the same
 * handle again and QuickJSUseAfterFree escapes Sandbox.load instead of PolicyError "load",
 * skipping teardown. `svmrt policy check` / `eval` then exit 70 ("a bug in svmrt").
 *
 */
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { PolicyError } from "../../runtime/errors.ts";
import { SANDBOX_DEFAULTS } from "../../runtime/sandbox/limits.ts";
import { Sandbox } from "../../runtime/sandbox/sandbox.ts";
import { runCli } from "../cli-helpers.ts";
import { policyYaml, tempFolder } from "../policy/helpers.ts";

const loadErr = (source: string) =>
  Sandbox.load({ name: "l", source, filename: "l.js", limits: SANDBOX_DEFAULTS, seed: 1 }).then(
    (sb) => {
      sb.dispose();
      return null;
    },
    (e) => e,
  );

describe("hostile: every load failure is PolicyError 'load'", () => {
  for (const [label, src] of [
    ["throw of a fulfilled promise", "throw Promise.resolve(1)"],
    ["throw of a rejected promise", "const p = Promise.reject(2); p.catch(() => {}); throw p"],
    ["top-level await rejecting with a promise", "await Promise.reject(Promise.resolve(3)); export function hook() {}"],
  ] as const) {
    test(label, async () => {
      const err = await loadErr(src);
      expect(err?.constructor?.name).toBe("PolicyError");
      expect(err).toBeInstanceOf(PolicyError);
      expect((err as PolicyError).reason).toBe("load");
    });
  }

  test("svmrt policy eval reports it as a load failure and exits 0, not 70", async () => {
    const dir = tempFolder({ "p.yaml": policyYaml("  plugin: plugin.js\n"), "plugin.js": "throw Promise.resolve(1)\nexport function restoreLocation() { return 0 }" });
    const r = await runCli(["policy", "eval", join(dir, "p.yaml"), "--hook", "restoreLocation", "--json"]);
    expect(r.err).not.toMatch(/internal error/);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.out).error.reason).toBe("load");
  });
});
