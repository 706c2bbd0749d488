/**
 * Hostile YAML against the loader's time. `uniqueKeys: true` in the yaml package checks
 * each new key against every earlier one of its map: O(n^2). A 256 KiB policy file of
 * ~37,000 short keys takes ~35 s of synchronous CPU, and the hot reloader re-parses every
 * file on every 5 s rescan, so one such file pins the event loop for good.
 *
 */
import { describe, expect, test } from "bun:test";
import { ConfigErrors } from "../../runtime/errors.ts";
import { parseYaml } from "../../runtime/config.ts";

describe("hostile YAML: parse time stays linear in the file size", () => {
  test("a 90 KiB file of 10,000 distinct keys parses (or is refused) in well under a second", () => {
    const text = Array.from({ length: 10_000 }, (_, i) => `k${i}: 0`).join("\n");
    expect(text.length).toBeLessThan(256 * 1024);
    const t0 = performance.now();
    try {
      parseYaml("many-keys.yaml", text);
    } catch (e) {
      expect(e).toBeInstanceOf(ConfigErrors);
      expect((e as ConfigErrors).message).toMatch(/^many-keys\.yaml:\d+:\d+: /);
    }
    // Linear parsing of this file takes ~100 ms; the quadratic duplicate check ~1.3 s.
    expect(performance.now() - t0).toBeLessThan(600);
  });
});
