import { describe, expect, test } from "bun:test";
import { symlinkSync } from "node:fs";
import { join } from "node:path";
import { CONFIG_FILE_BYTES_MAX } from "../../runtime/config.ts";
import { ConfigErrors, PolicyError } from "../../runtime/errors.ts";
import { Policy } from "../../runtime/policy/policy.ts";
import { HEALTHY_MIGRATION_PLUGIN, policyYaml, tempFolder } from "./helpers.ts";

/** Load and return the ConfigErrors messages (or throw if it loaded). */
async function configErrors(yaml: string | Uint8Array, extra: Record<string, string> = {}): Promise<string[]> {
  const dir = tempFolder({ "p.yaml": yaml, "plugin.js": HEALTHY_MIGRATION_PLUGIN, ...extra });
  const err = await Policy.load(join(dir, "p.yaml")).then(
    (p) => {
      p.dispose();
      return null;
    },
    (e) => e,
  );
  expect(err).toBeInstanceOf(ConfigErrors);
  return (err as ConfigErrors).errors.map((e) => e.message.replace(dir, "DIR"));
}

describe("policy files: a good one loads", () => {
  test("params resolved, revision stable, hooks seen", async () => {
    const dir = tempFolder({ "p.yaml": policyYaml("  plugin: plugin.js\n  params:\n    bias: 3\n"), "plugin.js": HEALTHY_MIGRATION_PLUGIN });
    using p = await Policy.load(join(dir, "p.yaml"));
    expect(p.params).toEqual({ bias: 3 });
    expect([...p.hooks]).toEqual(["restoreLocation"]);
    expect(p.spec.revision).toMatch(/^[0-9a-f]{12}$/);
    using q = await Policy.load(join(dir, "p.yaml"));
    expect(q.spec.revision).toBe(p.spec.revision);
  });
});

describe("policy files: hostile YAML gets file:line:col errors, never a crash", () => {
  test("duplicate keys", async () => {
    const errs = await configErrors(policyYaml("  plugin: plugin.js\n  plugin: other.js\n"));
    expect(errs[0]).toMatch(/^DIR\/p\.yaml:7:3: plugin: valid YAML \(DUPLICATE_KEY/);
  });
  test("alias bomb", async () => {
    const bomb = ["a: &a [x, x, x, x, x, x, x, x, x]"];
    for (let i = 1; i < 10; i++) bomb.push(`${String.fromCharCode(97 + i)}: &${String.fromCharCode(97 + i)} [*${String.fromCharCode(96 + i)}, *${String.fromCharCode(96 + i)}, *${String.fromCharCode(96 + i)}, *${String.fromCharCode(96 + i)}, *${String.fromCharCode(96 + i)}, *${String.fromCharCode(96 + i)}, *${String.fromCharCode(96 + i)}, *${String.fromCharCode(96 + i)}, *${String.fromCharCode(96 + i)}]`);
    const errs = await configErrors(`${bomb.join("\n")}\n`);
    expect(errs[0]).toMatch(/alias/i);
  });
  test("deep nesting", async () => {
    const errs = await configErrors(`${"[".repeat(200)}${"]".repeat(200)}\n`);
    expect(errs.join("\n")).toMatch(/nesting|RESOURCE_EXHAUSTION|valid YAML/);
  });
  test("wrong types name the field and what was expected", async () => {
    const errs = await configErrors(policyYaml("  plugin: plugin.js\n  limits:\n    timeout_ms: fast\n  onFailure: maybe\n"));
    expect(errs).toContain('DIR/p.yaml:8:17: spec.limits.timeout_ms: integer (got "fast")');
    expect(errs).toContain('DIR/p.yaml:9:14: spec.onFailure: one of "fallback", "fail-closed" (got "maybe")');
  });
  test("unknown fields point at the key", async () => {
    const errs = await configErrors(policyYaml("  plugin: plugin.js\n  pluginn: x.js\n"));
    expect(errs).toEqual(["DIR/p.yaml:7:3: spec.pluginn: unknown field"]);
  });
  test("missing fields and wrong kind", async () => {
    const errs = await configErrors("apiVersion: svmrt/v2\nkind: Migration\nmetadata: {}\nspec: {}\n");
    expect(errs.some((e) => e.startsWith("DIR/p.yaml:1:13: apiVersion:"))).toBe(true);
    expect(errs.some((e) => e.startsWith('DIR/p.yaml:2:7: kind: one of "MigrationPolicy"'))).toBe(true);
    expect(errs.some((e) => e.includes("metadata.name") && e.includes("it is missing"))).toBe(true);
    expect(errs.some((e) => e.includes("spec.plugin") && e.includes("it is missing"))).toBe(true);
  });
  test("limits above the host maxima", async () => {
    const errs = await configErrors(policyYaml("  plugin: plugin.js\n  limits:\n    memory_bytes: 99999999999\n"));
    expect(errs[0]).toMatch(/^DIR\/p\.yaml:8:19: spec\.limits\.memory_bytes: integer to be less or equal to 268435456/);
  });
  test("plugin outside the allowed folders", async () => {
    const errs = await configErrors(policyYaml("  plugin: ../../../../etc/passwd.js\n"));
    expect(errs[0]).toMatch(/^DIR\/p\.yaml:6:11: spec\.plugin: an existing plugin file/);
    const outside = tempFolder({ "evil.js": HEALTHY_MIGRATION_PLUGIN });
    const errs2 = await configErrors(policyYaml(`  plugin: ${join(outside, "evil.js")}\n`));
    expect(errs2[0]).toMatch(/spec\.plugin: a plugin inside the allowed folders/);
  });
  test("a symlink out of the allowed folders is followed and refused", async () => {
    const outside = tempFolder({ "evil.js": HEALTHY_MIGRATION_PLUGIN });
    const dir = tempFolder({ "p.yaml": policyYaml("  plugin: link.js\n") });
    symlinkSync(join(outside, "evil.js"), join(dir, "link.js"));
    const err = await Policy.load(join(dir, "p.yaml")).catch((e) => e);
    expect(err).toBeInstanceOf(ConfigErrors);
    expect((err as ConfigErrors).message).toMatch(/outside/);
  });
  test("missing plugin", async () => {
    const errs = await configErrors(policyYaml("  plugin: nope.js\n"));
    expect(errs[0]).toMatch(/spec\.plugin: an existing plugin file \(.*nope\.js does not exist\)/);
  });
  test("binary garbage", async () => {
    const garbage = new Uint8Array(512);
    for (let i = 0; i < garbage.length; i++) garbage[i] = (i * 7919 + 13) % 256;
    const errs = await configErrors(garbage);
    expect(errs[0]).toMatch(/binary data/);
  });
  test("oversized file is refused before parsing", async () => {
    const errs = await configErrors(`# ${"x".repeat(CONFIG_FILE_BYTES_MAX)}\n`);
    expect(errs[0]).toMatch(/a file of at most/);
  });
  test("unknown and out-of-bounds params are placed at their keys", async () => {
    const errs = await configErrors(policyYaml("  plugin: plugin.js\n  params:\n    bias: 99\n    colour: 1\n"));
    expect(errs).toEqual(["DIR/p.yaml:8:5: spec.params.bias: expected at most 10, got 99", "DIR/p.yaml:9:5: spec.params.colour: unknown parameter; the plugin declares bias"]);
  });
});

describe("policy files: plugins that cannot serve fail with reason load", () => {
  const cases: [string, string][] = [
    ["no hook of its kind", "export function schedule() { return {} }"],
    ["bad param declaration", "export const params = { x: { type: 'integer', default: 5 } }\nexport function restoreLocation() { return 0 }"],
    ["syntax error", "export function restoreLocation( {"],
  ];
  for (const [label, src] of cases) {
    test(label, async () => {
      const dir = tempFolder({ "p.yaml": policyYaml("  plugin: plugin.js\n"), "plugin.js": src });
      const err = await Policy.load(join(dir, "p.yaml")).catch((e) => e);
      expect(err).toBeInstanceOf(PolicyError);
      expect((err as PolicyError).reason).toBe("load");
    });
  }
});
