/**
 * Hostile inputs to `svmrt policy eval` and hostile inline tests in policy files. The
 * hooks' check/fallback functions (policy/kinds.ts) assume the documented input shape and
 * invoke() stringifies the input itself, so malformed data escapes as a TypeError or
 * RangeError and the CLI exits 70 ("a bug in svmrt").
 */
import { describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { runCli } from "../cli-helpers.ts";
import { policyYaml, tempFolder } from "../policy/helpers.ts";

function withPlugin(src: string, spec = ""): string {
  return join(tempFolder({ "p.yaml": policyYaml(`  plugin: plugin.js\n${spec}`), "plugin.js": src }), "p.yaml");
}
const EVICT = withPlugin("export function evictionVictim() { return 0 }\nexport function restoreLocation(f) { return f.gpuId }");

function jsonFile(name: string, body: string): string {
  const dir = tempFolder({});
  writeFileSync(join(dir, name), body);
  return join(dir, name);
}

describe("hostile: svmrt policy eval --input / --ctx", () => {
  for (const [label, body, message] of [
    ["an empty object", "{}", "input/gpuId: expected required property"],
    ["null", "null", "input: expected object"],
  ] as const) {
    test(`evictionVictim with ${label} is a usage error (exit 2) naming the field`, async () => {
      const r = await runCli(["policy", "eval", EVICT, "--hook", "evictionVictim", "--input", jsonFile("in.json", body), "--json"]);
      expect(r.code).toBe(2);
      expect(r.out).toBe("");
      expect(r.err).toBe(`svmrt policy: hook evictionVictim: ${message}\nRun 'svmrt policy --help' for usage.\n`);
    });
  }

  test("a --ctx whose gpus is not a list is a usage error (exit 2) naming ctx/gpus", async () => {
    const r = await runCli(["policy", "eval", EVICT, "--hook", "restoreLocation", "--ctx", jsonFile("ctx.json", '{"gpus": 5}'), "--json"]);
    expect(r.code).toBe(2);
    expect(r.err).toBe("svmrt policy: hook restoreLocation: ctx/gpus: expected array\nRun 'svmrt policy --help' for usage.\n");
  });

  test("a deeply nested --input (400 KB, within the 4 MiB cap) is refused cleanly", async () => {
    const depth = 200_000;
    const file = jsonFile("deep.json", "[".repeat(depth) + "]".repeat(depth));
    const r = await runCli(["policy", "eval", EVICT, "--hook", "evictionVictim", "--input", file, "--json"]);
    expect(r.code).toBe(2);
    expect(r.err).toBe(`svmrt policy: --input: ${file} nests deeper than 64 levels\nRun 'svmrt policy --help' for usage.\n`);
  });
});

describe("hostile: inline tests in a policy file", () => {
  test("a test case with a malformed input fails that test (exit 1) instead of crashing policy check", async () => {
    const p = withPlugin("export function evictionVictim() { return 0 }", "  tests:\n    - name: bad input\n      hook: evictionVictim\n      input: {}\n");
    const r = await runCli(["policy", "check", p]);
    expect(r.code).toBe(1);
    expect(r.err).toBe("");
    expect(r.out).toContain("     test 'bad input': hook evictionVictim: input/gpuId: expected required property\n0 of 1 policies ok\n");
  });

  test("a test case with a hostile ctx fails that test instead of crashing policy test", async () => {
    const p = withPlugin("export function restoreLocation(f) { return f.gpuId }", "  tests:\n    - name: bad ctx\n      hook: restoreLocation\n      ctx: { gpus: 5 }\n");
    const r = await runCli(["policy", "test", p]);
    expect(r.code).toBe(1);
    expect(r.err).toBe("");
    expect(r.out).toContain("     test 'bad ctx': hook restoreLocation: ctx/gpus: expected array\n0 of 1 policies ok\n");
  });
});

describe("hostile: --input - (stdin) is capped while reading", () => {
  // An endless stream (`cat /dev/zero | svmrt policy eval ... --input -`) must be cut at
  // EVAL_INPUT_BYTES_MAX while reading. Here: 5 MB and the writer stays open.
  test("more than 4 MiB on stdin is refused without waiting for end of input", async () => {
    const proc = Bun.spawn({
      cmd: [process.execPath, "runtime/cli.ts", "policy", "eval", "policies/session/persistent.yaml", "--hook", "mode", "--input", "-", "--json"],
      cwd: join(import.meta.dir, "../.."),
      stdin: "pipe",
      stdout: "pipe",
      stderr: "pipe",
    });
    const chunk = new Uint8Array(1 << 20).fill(0x20);
    try {
      for (let i = 0; i < 5; i++) proc.stdin.write(chunk);
      await proc.stdin.flush();
    } catch (e) {
      // EPIPE: the command refused the input and closed stdin before we finished writing.
      expect((e as NodeJS.ErrnoException).code).toBe("EPIPE");
    }
    const code = await Promise.race([proc.exited, Bun.sleep(1500).then(() => "still reading")]);
    if (code === "still reading") proc.kill();
    await proc.exited;
    expect(code).toBe(2);
  });
});

describe("hostile: hook names that are Object.prototype members", () => {
  // Guards against: kindSpec.hooks[hook] is a plain-object lookup, so `constructor`, `toString`,
  // `__proto__` count as hooks (policy.ts invoke, testing.ts runPolicyTest, cli/policy.ts
  // evalHook) and invoke then calls spec.fallback, which is undefined: TypeError, exit 70.
  for (const hook of ["constructor", "toString", "__proto__"]) {
    test(`policy eval --hook ${hook} is a usage error (exit 2)`, async () => {
      const r = await runCli(["policy", "eval", "policies/migration/kernel-default.yaml", "--hook", hook, "--json"]);
      expect(r.err).not.toMatch(/internal error/);
      expect(r.code).toBe(2);
    });
  }

  test("an inline test naming hook toString fails that test, not policy check", async () => {
    const p = withPlugin("export function restoreLocation(f) { return f.gpuId }", "  tests:\n    - name: odd hook\n      hook: toString\n");
    const r = await runCli(["policy", "check", p]);
    expect(r.err).not.toMatch(/internal error/);
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/unknown hook 'toString'/);
  });
});
