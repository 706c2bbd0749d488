/**
 * The policy file format (`apiVersion: svmrt/v1`), as a TypeBox schema: one definition gives
 * the TypeScript type, the validator and the published JSON Schema
 * (docs/policy.schema.json, written by `svmrt policy schema`).
 */
import { type Static, Type } from "@sinclair/typebox/type";
import { POLICY_FAILURE_REASONS } from "../errors.ts";
import { LIMIT_NAMES, SANDBOX_MAXIMA, SANDBOX_MINIMA } from "../sandbox/limits.ts";

export const POLICY_KINDS = ["MigrationPolicy", "SamplingPolicy", "SessionPolicy"] as const;
export type PolicyKind = (typeof POLICY_KINDS)[number];

/** Folder name of each kind under plugins/ and policies/. */
export const KIND_FOLDER: Record<PolicyKind, string> = {
  MigrationPolicy: "migration",
  SamplingPolicy: "sampling",
  SessionPolicy: "session",
};

/** Most inline test cases in one policy file. */
export const POLICY_TESTS_MAX = 200;

const literalUnion = <T extends readonly string[]>(values: T, description: string) =>
  Type.Union(
    values.map((v) => Type.Literal(v)),
    { description },
  );

const Limits = Type.Object(
  Object.fromEntries(
    LIMIT_NAMES.map((n) => [
      n,
      Type.Optional(
        Type.Integer({ minimum: SANDBOX_MINIMA[n], maximum: SANDBOX_MAXIMA[n], description: `sandbox limit ${n}` }),
      ),
    ]),
  ),
  { additionalProperties: false, description: "Sandbox limits for this policy, within the host maxima" },
);


export const PolicyTestCase = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 200 }),
    hook: Type.String({ minLength: 1, maxLength: 64, description: "Hook to call" }),
    input: Type.Optional(Type.Unknown({ description: "Hook input; the hook's documented sample when absent" })),
    ctx: Type.Optional(Type.Unknown({ description: "Context fields merged over the sample context" })),
    expect: Type.Optional(Type.Unknown({ description: "The exact decision expected" })),
    expectError: Type.Optional(literalUnion(POLICY_FAILURE_REASONS, "The failure reason expected")),
    expectFallback: Type.Optional(Type.Boolean({ description: "Expect the fallback to decide" })),
  },
  { additionalProperties: false },
);
export type PolicyTestCase = Static<typeof PolicyTestCase>;

export const PolicyDocument = Type.Object(
  {
    apiVersion: Type.Literal("svmrt/v1", { description: "Format version" }),
    kind: literalUnion(POLICY_KINDS, "Policy kind"),
    metadata: Type.Object(
      {
        name: Type.String({ pattern: "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", description: "lower-case letters, digits and dashes, 1-63 characters" }),
        description: Type.Optional(Type.String({ maxLength: 2000 })),
      },
      { additionalProperties: false },
    ),
    spec: Type.Object(
      {
        plugin: Type.String({ pattern: "\\.(m?js)$", minLength: 4, maxLength: 1024, description: "path of the plugin .js file, relative to this file" }),
        params: Type.Optional(Type.Record(Type.String({ pattern: "^[a-z][a-z0-9_]{0,63}$" }), Type.Union([Type.Number(), Type.Boolean(), Type.String({ maxLength: 256 })], { description: "a finite number, true or false, or a string of at most 256 characters" }), { description: "values for the parameters the plugin declares" })),
        limits: Type.Optional(Limits),
        onFailure: Type.Optional(literalUnion(["fallback", "fail-closed"] as const, "what decides when the plugin fails")),
        seed: Type.Optional(Type.Integer({ minimum: 0, maximum: 2 ** 31 - 1, description: "seed of the plugin's Math.random" })),
        tests: Type.Optional(Type.Array(PolicyTestCase, { maxItems: POLICY_TESTS_MAX })),
      },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false, title: "svmrt policy" },
);
export type PolicyDocument = Static<typeof PolicyDocument>;

/** The JSON Schema editors use to validate policy files. */
export function policyJsonSchema(): Record<string, unknown> {
  return { $schema: "http://json-schema.org/draft-07/schema#", ...JSON.parse(JSON.stringify(PolicyDocument)) };
}
