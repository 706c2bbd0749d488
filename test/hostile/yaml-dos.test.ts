/**
 * Hostile YAML against the loader's time. `uniqueKeys: true` in the yaml package checks
 * each new key against every earlier one of its map: O(n^2). A 256 KiB policy file of
 * ~37,000 short keys takes ~35 s of synchronous CPU, and the hot reloader re-parses every
 * file on every 5 s rescan, so one such file pins the event loop for good.
 *
 */
import { describe, expect, test } from "bun:test";
import { ConfigErrors } from "../../runtime/errors.ts";
import { CONFIG_FILE_BYTES_MAX, parseYaml } from "../../runtime/config.ts";

describe("hostile YAML: parse time stays linear in the file size", () => {
  // No clock in the assertion (bench/yaml.ts measures the time): the worst file under the
  // size cap, whose quadratic check took ~35 s, must end well inside the test's timeout.
  test("a 256 KiB file of one flow map of ~22,000 distinct keys parses or is refused at a position, within the test timeout", () => {
    // One line: the line cap (CONFIG_LINES_MAX) does not stop it, only the duplicate check's cost matters.
    const keys: string[] = [];
    for (let i = 0, size = 2; size + 16 < CONFIG_FILE_BYTES_MAX; i++) {
      keys.push(`k${i}: 0`);
      size += keys.at(-1)!.length + 2;
    }
    const text = `{${keys.join(", ")}}`;
    expect(keys.length).toBeGreaterThan(20_000);
    expect(text.length).toBeLessThanOrEqual(CONFIG_FILE_BYTES_MAX);
    let outcome: string;
    try {
      parseYaml("many-keys.yaml", text);
      outcome = "parsed";
    } catch (e) {
      expect(e).toBeInstanceOf(ConfigErrors);
      outcome = (e as ConfigErrors).message;
    }
    expect(outcome).toBe("parsed");
  }, 15_000);
});
