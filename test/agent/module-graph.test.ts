/**
 * What each of the agent's threads loads. Every module a Bun thread loads stays resident
 * (bytecode, structures): the YAML parser costs about 6 MB per thread, prom-client's index
 * 10 MB more than its four metric modules, TypeBox's index 8 MB more than its type and error
 * modules. These tests pin that the agent loads only the parts it uses, so a new import that
 * brings one back fails here (the resident size itself is measured by bench/agent.ts).
 * Each graph is loaded in a fresh process and read from its module cache.
 */
import { describe, expect, test } from "bun:test";
import { join } from "node:path";

const ROOT = join(import.meta.dir, "..", "..");
/** Longest a child process loading a module graph may take, ms. */
const LOAD_TIMEOUT_ms = 30_000;

/** The node_modules files (package-relative) a fresh process has loaded after importing `entry`. */
async function packagesLoaded(entry: string): Promise<string[]> {
  const script = `await import(${JSON.stringify(join(ROOT, entry))}); console.log(JSON.stringify(Object.keys(require.cache))); process.exit(0);`;
  const child = Bun.spawn([process.execPath, "-e", script], { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited]);
  expect({ code, err: code === 0 ? "" : err }).toEqual({ code: 0, err: "" });
  return (JSON.parse(out) as string[]).filter((k) => k.includes("/node_modules/")).map((k) => k.slice(k.lastIndexOf("/node_modules/") + 14));
}

describe("module graphs", () => {
  test(
    "a library Worker loads no YAML parser, TypeBox or prom-client: its emulated profile comes loaded in the spec",
    async () => {
      const loaded = await packagesLoaded("runtime/smi/worker.ts");
      expect(loaded.filter((k) => /^(yaml|@sinclair\/typebox|prom-client)\//.test(k))).toEqual([]);
    },
    LOAD_TIMEOUT_ms,
  );

  test(
    "the agent loads prom-client's metric modules but not its index (Pushgateway, cluster, OpenTelemetry), and TypeBox's type and error modules but not its index",
    async () => {
      const loaded = await packagesLoaded("runtime/agent/agent.ts");
      // The agent does use both packages: the test would pass vacuously if it loaded neither.
      expect(loaded).toContain("prom-client/lib/registry.js");
      expect(loaded.some((k) => k.startsWith("@sinclair/typebox/build/esm/errors/"))).toBe(true);
      const unwanted = loaded.filter(
        (k) =>
          k === "prom-client/index.js" ||
          /^prom-client\/lib\/(pushgateway|cluster|defaultMetrics)/.test(k) ||
          k.startsWith("@opentelemetry/") ||
          k === "@sinclair/typebox/build/esm/index.mjs" ||
          k.startsWith("@sinclair/typebox/build/esm/value/value/") ||
          k.startsWith("@sinclair/typebox/build/esm/syntax/"),
      );
      expect(unwanted).toEqual([]);
    },
    LOAD_TIMEOUT_ms,
  );

  test("prom-lib's classes are prom-client's own (a package update that moves its modules fails here)", async () => {
    const index = await import("prom-client");
    const lib = await import("../../runtime/agent/prom-lib.ts");
    expect(lib.Registry).toBe(index.Registry);
    expect(lib.Counter).toBe(index.Counter);
    expect(lib.Gauge).toBe(index.Gauge);
    expect(lib.Histogram).toBe(index.Histogram);
    expect(lib.openMetricsContentType).toBe(index.openMetricsContentType);
  });
});
