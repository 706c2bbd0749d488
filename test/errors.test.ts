import { describe, expect, test } from "bun:test";
import { EXIT, exitCodeOf } from "../runtime/cli/exit.ts";
import { ConfigError, KfdError, PolicyError, SmiError, UsageError } from "../runtime/errors.ts";

describe("error classes map to documented exit codes", () => {
  test("config error names file:line:col and field", () => {
    const e = new ConfigError({ file: "p.yaml", line: 3, col: 5 }, "spec.plugin", "a path to a .js file");
    expect(e.message).toBe("p.yaml:3:5: spec.plugin: a path to a .js file");
    expect(exitCodeOf(e)).toBe(EXIT.config);
  });
  test("device errors", () => {
    expect(exitCodeOf(new KfdError("open /dev/kfd", "ENOENT", 2, ""))).toBe(EXIT.noDevice);
    expect(exitCodeOf(new KfdError("open /dev/kfd", "EACCES", 13, ""))).toBe(EXIT.permission);
    expect(exitCodeOf(new KfdError("SVM", "EINVAL", 22, ""))).toBe(EXIT.device);
    expect(exitCodeOf(new SmiError("amdsmi_init", "DRIVER_NOT_LOADED", 34))).toBe(EXIT.noDevice);
  });
  test("usage, policy and unknown errors", () => {
    expect(exitCodeOf(new UsageError("x"))).toBe(EXIT.usage);
    expect(exitCodeOf(new PolicyError("p", "h", "timeout", "d"))).toBe(EXIT.policy);
    expect(exitCodeOf(new Error("boom"))).toBe(EXIT.internal);
  });
});
