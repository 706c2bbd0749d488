/**
 * Plugin parameter declarations and policy parameter values, hostile on both sides.
 */
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { ConfigErrors, PolicyError } from "../../runtime/errors.ts";
import { Policy } from "../../runtime/policy/policy.ts";
import { policyYaml, tempFolder } from "../policy/helpers.ts";

const load = (plugin: string, spec = "", kind = "SessionPolicy") =>
  Policy.load(join(tempFolder({ "p.yaml": policyYaml(`  plugin: plugin.js\n${spec}`, kind), "plugin.js": plugin }), "p.yaml")).then(
    (p) => {
      p.dispose();
      return null;
    },
    (e) => e,
  );

describe("hostile params", () => {
  // Guards against: params.ts checkValue calls d.values.includes on whatever the plugin declared
  // (a number here) after only recording the error: TypeError, CLI exit 70 "bug in svmrt".
  test("a declaration whose `values` is not a list fails to load with reason load, not a TypeError", async () => {
    const err = await load('export const params = { m: { type: "string", default: "a", values: 5, description: "x" } }\nexport function mode() { return { mode: "lazy" } }');
    expect(err).toBeInstanceOf(PolicyError);
    expect((err as PolicyError).reason).toBe("load");
  });

  // Guards against: resolveParams looks names up on a plain object, so Object.prototype members that
  // are valid parameter names (`constructor`) count as declared and are accepted silently.
  test("spec.params.constructor is an unknown parameter like any other", async () => {
    const err = await load('export function mode() { return { mode: "lazy" } }', "  params:\n    constructor: 5\n");
    expect(err).toBeInstanceOf(ConfigErrors);
    expect((err as ConfigErrors).message).toMatch(/p\.yaml:\d+:\d+: spec\.params\.constructor: unknown parameter/);
  });
});
