import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { POLICY_FAILURE_REASONS } from "../../runtime/errors.ts";
import { runCli } from "../cli-helpers.ts";
import { policyYaml, tempFolder } from "./helpers.ts";

const KD = "policies/migration/kernel-default.yaml";

/** A policy folder whose plugin body is `src`. */
function withPlugin(src: string, spec = ""): string {
  const dir = tempFolder({ "p.yaml": policyYaml(`  plugin: plugin.js\n${spec}`), "plugin.js": src });
  return join(dir, "p.yaml");
}

describe("svmrt policy eval --json", () => {
  test("runs a hook on its documented sample input", async () => {
    const r = await runCli(["policy", "eval", KD, "--hook", "restoreLocation", "--json"]);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.out)).toEqual({ ok: true, decision: 0x3fe1, by: "plugin", logs: [] });
  });
  test("reads --input from a file", async () => {
    const dir = tempFolder({ "in.json": JSON.stringify({ gpuId: 0x3fe1, gpuIndex: 0, addr: 5, rangeStart: 0, rangeLast: 100, granularity: 2 }) });
    const r = await runCli(["policy", "eval", KD, "--hook", "migrationWindow", "--input", join(dir, "in.json"), "--json"]);
    expect(JSON.parse(r.out)).toEqual({ ok: true, decision: { start: 4, last: 7 }, by: "plugin", logs: [] });
  });
  const failing: [string, string, string?][] = [
    ["timeout", "export function restoreLocation() { for(;;){} }"],
    ["oom", "export function restoreLocation() { const a = []; for(;;) a.push(new Array(1000).fill(1)) }", "  limits:\n    memory_bytes: 1048576\n    timeout_ms: 5000\n"],
    ["stack", "function f() { return f() + 1 }\nexport function restoreLocation() { return f() }"],
    ["invalid-output", "export function restoreLocation() { return 12345 }"],
    ["output-limit", "export function evictionVictim() { return 'x'.repeat(1e6) }"],
    ["exception", "export function restoreLocation() { throw new RangeError('nope') }"],
    ["load", "export function restoreLocation( {"],
  ];
  for (const [reason, src, spec] of failing) {
    test(`reports reason ${reason} and exits 0`, async () => {
      const hook = src.includes("evictionVictim") ? "evictionVictim" : "restoreLocation";
      const r = await runCli(["policy", "eval", withPlugin(src, spec), "--hook", hook, "--json"]);
      expect(r.code).toBe(0);
      const j = JSON.parse(r.out);
      expect(j.ok).toBe(false);
      expect(j.error.reason).toBe(reason);
      expect(POLICY_FAILURE_REASONS).toContain(j.error.reason);
      expect(typeof j.error.message).toBe("string");
    });
  }
  test("input-limit", async () => {
    const dir = tempFolder({ "in.json": JSON.stringify({ gpuId: 1, neededPages: 1, candidates: new Array(3000).fill({ rangeStart: 0, npages: 1, vramPages: 1, lastUseNs: 0, lastMigrationNs: 0 }) }) });
    const p = withPlugin("export function evictionVictim() { return 0 }", "  limits:\n    input_bytes: 4096\n");
    const r = await runCli(["policy", "eval", p, "--hook", "evictionVictim", "--input", join(dir, "in.json"), "--json"]);
    expect(JSON.parse(r.out).error.reason).toBe("input-limit");
  });
  test("usage and config errors exit non-zero", async () => {
    expect((await runCli(["policy", "eval", KD, "--json"])).code).toBe(2);
    expect((await runCli(["policy", "eval", KD, "--hook", "nope"])).code).toBe(2);
    expect((await runCli(["policy", "eval", KD, "--hook", "restoreLocation", "--bogus"])).code).toBe(2);
    const bad = tempFolder({ "p.yaml": "apiVersion: svmrt/v1\nkind: Nope\n" });
    const r = await runCli(["policy", "eval", join(bad, "p.yaml"), "--hook", "x"]);
    expect(r.code).toBe(3);
    expect(r.err).toMatch(/p\.yaml:2:7: kind/);
  });
});

describe("svmrt policy check / test", () => {
  test("the shipped policies pass", async () => {
    const r = await runCli(["policy", "check", "policies/", "--json"]);
    const j = JSON.parse(r.out);
    expect(j.files.filter((f: { ok: boolean }) => !f.ok)).toEqual([]);
    expect(r.code).toBe(0);
  });
  test("a failing inline test fails the check with exit 1", async () => {
    const p = withPlugin("export function restoreLocation(f) { return 0 }", "  tests:\n    - name: wants the GPU\n      hook: restoreLocation\n      expect: 16353\n");
    const r = await runCli(["policy", "test", p]);
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/test 'wants the GPU': expected 16353, got 0/);
  });
  test("schema is published and current", async () => {
    const r = await runCli(["policy", "schema"]);
    const onDisk = await Bun.file("docs/policy.schema.json").text();
    expect(r.out).toBe(onDisk);
  });
});
