/**
 * Run Prometheus' `promtool` (Debian package `prometheus`) from tests: the judge of the
 * exposition format, the scrape configuration and the rule files. A missing promtool fails
 * the test with the command that installs it; it is never skipped.
 */
import { spawnSync } from "node:child_process";

/** How long one promtool run may take, ms. */
export const PROMTOOL_TIMEOUT_ms = 20_000;

export interface PromtoolResult {
  code: number;
  /** stdout and stderr together, trimmed. */
  output: string;
}

/**
 * `promtool <args>` with `stdin` on its standard input.
 * @throws Error naming the package to install when promtool is not on PATH, or when it
 *   cannot be run or times out.
 */
export function promtoolRun(args: readonly string[], stdin = ""): PromtoolResult {
  const path = Bun.which("promtool");
  if (!path) {
    throw new Error(
      "promtool not found on PATH: these tests need it to validate metrics, scrape config and rules; " +
        "install Debian's `prometheus` package (`apt-get install prometheus`), as CI does",
    );
  }
  const r = spawnSync(path, args, { input: stdin, encoding: "utf8", timeout: PROMTOOL_TIMEOUT_ms });
  if (r.error) throw new Error(`promtool ${args.join(" ")} could not run: ${r.error.message}`);
  if (r.status === null) throw new Error(`promtool ${args.join(" ")} was killed by ${r.signal} (timeout ${PROMTOOL_TIMEOUT_ms} ms?)`);
  return { code: r.status, output: `${r.stdout}${r.stderr}`.trim() };
}

/** Lint an exposition text: no problem at all (lint warnings included) is success. */
export function promtoolCheckMetrics(text: string): PromtoolResult {
  return promtoolRun(["check", "metrics"], text);
}
