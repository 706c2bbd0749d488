/**
 * docs/agent.md's configuration section against runtime/agent/config.ts: the example file
 * parses, the key table lists exactly the keys the parser accepts, and every integer key's
 * documented default and bounds are the parser's.
 */
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { type AgentConfig, agentConfigDefault, agentConfigParse } from "../../runtime/agent/config.ts";
import { ConfigError } from "../../runtime/errors.ts";
import { SMI_BACKEND_CHOICES } from "../../runtime/smi/backend.ts";
import { shippedProfiles } from "../../runtime/sim/profile.ts";

const DOC = await Bun.file(join(import.meta.dir, "..", "..", "docs", "agent.md")).text();
const CONFIG_SECTION = DOC.slice(DOC.indexOf("\n## Configuration\n"), DOC.indexOf("\n## Backends\n"));

/** Rows of the key table: dotted key → [key, type, default, bounds, meaning]. */
const ROWS = new Map(
  CONFIG_SECTION.split("\n")
    .filter((l) => l.startsWith("| `"))
    .map((l) => l.split("|").slice(1, -1).map((c) => c.trim()))
    .map((cells) => [cells[0]!.replaceAll("`", ""), cells] as const),
);

/** The ConfigError of parsing `yaml`, or undefined when it parses. */
function parseError(yaml: string): ConfigError | undefined {
  try {
    agentConfigParse("doc.yaml", yaml);
    return undefined;
  } catch (e) {
    if (e instanceof ConfigError) return e;
    throw e;
  }
}

/** The keys a map accepts, from the parser's own unknown-key error. */
function keysOf(prefix: string): string[] | undefined {
  const yaml = prefix === "" ? "zz_unknown: 1" : `${prefix}: { zz_unknown: 1 }`;
  const m = /^one of the keys: (.*)$/.exec(parseError(yaml)?.expected ?? "");
  return m === null ? undefined : m[1]!.split(", ");
}

/** YAML setting one dotted key (at most one level of nesting). */
const yamlOf = (key: string, value: string | number): string => {
  const [a, b] = key.split(".");
  return b === undefined ? `${a}: ${value}` : `${a}: { ${b}: ${value} }`;
};

/** Documented number: "3,600,000", "16 MiB". */
const numberOf = (text: string): number => {
  const m = /^([\d,]+)( MiB)?$/.exec(text.trim());
  if (!m) throw new Error(`'${text}' is not a documented number`);
  return Number(m[1]!.replaceAll(",", "")) * (m[2] ? 1024 * 1024 : 1);
};

/** The default config's value of a dotted snake_case key (`http.connections_max` → http.connectionsMax). */
function defaultOf(key: string): unknown {
  const camel = (s: string) => s.replace(/_([a-z])/g, (_m, c: string) => c.toUpperCase());
  let v: unknown = agentConfigDefault();
  for (const part of key.split(".")) v = (v as Record<string, unknown>)[camel(part)];
  return v;
}

describe("docs/agent.md, configuration", () => {
  test("the example file parses, and gives what it says", () => {
    const yaml = /```yaml\n([\s\S]*?)```/.exec(CONFIG_SECTION)?.[1];
    expect(yaml).toBeDefined();
    const c: AgentConfig = agentConfigParse("/etc/svmrt/agent.yaml", yaml!);
    expect(c.listen).toEqual({ hostname: "127.0.0.1", port: 9106 });
    expect(c.metrics.labels).toEqual({ cluster: "edge-a" });
    expect(c.http.tokenFile).toBe("/etc/svmrt/token");
  });

  test("the key table lists exactly the keys the parser accepts", () => {
    const accepted: string[] = [];
    for (const top of keysOf("") ?? []) {
      const nested = keysOf(top);
      if (nested === undefined) accepted.push(top);
      else accepted.push(...nested.map((k) => `${top}.${k}`));
    }
    expect(accepted.length).toBeGreaterThan(14);
    expect([...ROWS.keys()].sort()).toEqual(accepted.sort());
  });

  test("integer keys: documented default, and bounds the parser enforces at both ends", () => {
    const integers = [...ROWS].filter(([, cells]) => cells[1] === "integer");
    expect(integers.length).toBeGreaterThan(5);
    const wrong: string[] = [];
    for (const [key, [, , dflt, bounds]] of integers) {
      // "none (...)": an optional key without a default value.
      const documented = dflt!.startsWith("none") ? undefined : numberOf(dflt!);
      if (documented !== defaultOf(key)) wrong.push(`${key}: default ${dflt}, parser ${String(defaultOf(key))}`);
      const [lo, hi] = bounds!.split("..").map(numberOf) as [number, number];
      for (const v of [lo, hi]) if (parseError(yamlOf(key, v)) !== undefined) wrong.push(`${key}: ${v} refused`);
      for (const v of [lo - 1, hi + 1]) if (parseError(yamlOf(key, v))?.field !== key) wrong.push(`${key}: ${v} accepted`);
    }
    expect(wrong).toEqual([]);
  });

  test("backend choices and shipped profiles are the code's", () => {
    expect(ROWS.get("backend")?.[3]).toBe(SMI_BACKEND_CHOICES.map((b) => `\`${b}\``).join(", "));
    const documented = [...(ROWS.get("profile")?.[3] ?? "").matchAll(/`([a-z0-9-]+)`/g)].map((m) => m[1]!);
    expect(documented.sort()).toEqual(shippedProfiles().sort());
  });
});
