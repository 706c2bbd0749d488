/** `svmrt sim` through the CLI entry: JSON, events, determinism, exit codes. */
import { describe, expect, test } from "bun:test";
import { readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { main } from "../../runtime/cli.ts";
import type { CliIO } from "../../runtime/cli/command.ts";
import { EXIT } from "../../runtime/cli/exit.ts";
import { policyYaml, tempFolder } from "../policy/helpers.ts";

async function run(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  const io: CliIO = { out: (t) => (out += t), err: (t) => (err += t), interactive: false };
  const code = await main(argv, io);
  return { code, out, err };
}

describe("svmrt sim", () => {
  test("--json has the documented fields; same seed, byte-identical output", async () => {
    const a = await run(["sim", "--workload", "pingpong", "--json", "--seed", "9"]);
    const b = await run(["sim", "--workload", "pingpong", "--json", "--seed", "9"]);
    expect(a.code).toBe(EXIT.ok);
    expect(a.out).toBe(b.out);
    const j = JSON.parse(a.out);
    for (const k of ["simTimeNs", "gpuFaults", "gpuFaultsDropped", "cpuFaults", "migrations", "bytesMigrated", "evictions", "queueEvictions", "thrashEvents", "policyFallbacks", "seed"]) {
      expect(j).toHaveProperty(k);
    }
    expect(j.seed).toBe(9);
    expect(Object.keys(j.migrations.byTrigger)).toEqual(["prefetch", "pagefault_gpu", "pagefault_cpu", "ttm_eviction"]);
  });

  test("--events writes the SMI stream in the kernel's text format", async () => {
    const f = join(tmpdir(), `svmrt-events-${process.pid}.txt`);
    const r = await run(["sim", "--workload", "stream", "--events", f, "--json"]);
    const lines = readFileSync(f, "utf8").trimEnd().split("\n");
    rmSync(f);
    expect(JSON.parse(r.out).eventLines).toBe(lines.length);
    // Per window: fault start/end and the migration pair; from the second window on, the
    // range is mapped, so the migration's notifier unmaps the window from both access GPUs
    // (svm_range_unmap_from_gpus): 2 x 511 UNMAP_FROM_GPU.
    expect(lines.length).toBe(2 + 4 * 512 + 2 * 511);
    expect(lines[0]).toBe("c 1092 stream");
    expect(lines[1]).toMatch(/^7 \d+ -4242 @100000\(3fe1\) R$/);
    expect(lines[2]).toMatch(/^5 \d+ -4242 @100000\(200\) 0->3fe1 ffffffff:ffffffff 1$/);
    expect(lines[3]).toMatch(/^6 \d+ -4242 @100000\(200\) 0->3fe1 1 0$/);
    expect(lines[4]).toMatch(/^8 \d+ -4242 @100000\(3fe1\) M$/);
    expect(lines.at(-1)).toBe("d 1092 stream");
  });

  test("a recorded event stream replays as a trace", async () => {
    const f = join(tmpdir(), `svmrt-replay-${process.pid}.txt`);
    await run(["sim", "--workload", "stream", "--events", f]);
    const r = await run(["sim", "--trace", f, "--json"]);
    rmSync(f);
    const j = JSON.parse(r.out);
    expect(j.gpuFaults).toBe(512);
    expect(j.bytesMigrated.h2d).toBe(2 ** 30);
    expect(j.badTraceLines).toBe(0);
  });

  test("usage errors and config errors", async () => {
    expect((await run(["sim", "--workload", "nope"])).code).toBe(EXIT.usage);
    // Names of the built-ins object's inherited properties are not workloads (they crashed with exit 70).
    for (const name of ["toString", "constructor", "__proto__", "hasOwnProperty"]) {
      const r = await run(["sim", "--workload", name]);
      expect({ code: r.code, err: r.err.split("\n")[0] }).toEqual({ code: EXIT.usage, err: `svmrt sim: --workload ${name}: no such built-in (svmrt sim --list-workloads) and not a .yaml path` });
    }
    expect((await run(["compare", "--workloads", "toString", "--policies", "kernel-default"])).code).toBe(EXIT.usage);
    // A value starting with '-' is the flag's value, checked by the flag (one line), not taken for an option.
    const neg = await run(["sim", "--workload", "stream", "--seed", "-1"]);
    expect({ code: neg.code, err: neg.err.split("\n")[0] }).toEqual({ code: EXIT.usage, err: "svmrt sim: --seed: expected an integer from 0 to 4294967295, got -1" });
    expect((await run(["sim"])).code).toBe(EXIT.usage);
    expect((await run(["sim", "--workload", "stream", "--on-bad-line", "maybe"])).code).toBe(EXIT.usage);
    const p = await run(["sim", "--workload", "stream", "--policy", "p.yaml"]);
    expect(p.code).toBe(EXIT.config);
    expect(p.err).toContain("p.yaml:1:1: an existing file (no such file)");
    const s = await run(["sim", "--workload", "stream", "--policy", "policies/sampling/fixed.yaml"]);
    expect(s.code).toBe(EXIT.config);
    expect(s.err).toContain("a MigrationPolicy for the simulator (it is a SamplingPolicy)");
    expect((await run(["sim", "--workload", "stream", "--profile", "missing.yaml"])).code).toBe(EXIT.config);
    const l = await run(["sim", "--list-workloads"]);
    expect(l.out.split("\n").filter(Boolean).length).toBe(11);
  });
});

describe("svmrt sim --policy", () => {
  test("runs a sandboxed policy and names it in the result", async () => {
    const r = await run(["sim", "--workload", "pingpong", "--policy", "policies/migration/xgmi-aware.yaml", "--json"]);
    expect(r.code).toBe(0);
    const j = JSON.parse(r.out);
    expect(j.policy).toBe("xgmi-aware");
    expect(j.policyFallbacks).toBe(0);
  });
});

describe("svmrt sim --cost", () => {
  test("a cost override changes simulated time, never the counts; bad names are usage errors", async () => {
    const a = JSON.parse((await run(["sim", "--workload", "pingpong", "--json"])).out);
    const b = JSON.parse((await run(["sim", "--workload", "pingpong", "--json", "--cost", "fault_service_ns=1000", "--cost", "fault_retry_ns=50000"])).out);
    expect(b.gpuFaults).toBe(a.gpuFaults);
    expect(b.bytesMigrated).toEqual(a.bytesMigrated);
    expect(b.simTimeNs).not.toBe(a.simTimeNs);
    // The thrash window is a metric's: it changes thrashEvents and nothing else.
    const c = JSON.parse((await run(["sim", "--workload", "pingpong", "--json", "--cost", "thrash_window_ns=0"])).out);
    expect([a.thrashEvents, c.thrashEvents]).toEqual([15, 0]);
    expect({ ...c, thrashEvents: 15 }).toEqual(a);
    expect((await run(["sim", "--workload", "stream", "--cost", "warp_speed=9"])).code).toBe(EXIT.usage);
    expect((await run(["sim", "--workload", "stream", "--cost", "fault_service_ns=-5"])).code).toBe(EXIT.usage);
  });
});

describe("the documented example workload", () => {
  test("docs/examples/prefetch-hints.yaml: split buffer, table in RAM, a timed prefetch", async () => {
    const file = join(import.meta.dir, "..", "..", "docs", "examples", "prefetch-hints.yaml");
    const r = await run(["sim", "--workload", file, "--json"]);
    expect(r.code).toBe(EXIT.ok);
    const j = JSON.parse(r.out);
    // 128 windows per half; the table's 2 x 32 windows map RAM in place. gpu1 had faulted 3
    // windows (2 ms duplicate window each) before the prefetch at 5 ms: its half has
    // actual_loc gpu1 but only 3 windows in VRAM, and the prefetch moves the other 125 in one
    // migration and maps them (gpu1 has ACCESS): gpu1 faults no more.
    expect(j.bytesMigrated).toEqual({ h2d: 512 * 2 ** 20, d2h: 0, d2d: 0 });
    expect(j.migrations.byTrigger.prefetch).toBe(1);
    expect(j.migrations.h2d).toBe(128 + 3 + 1);
    expect(j.gpuFaults).toBe(128 + 3 + 64);
  });
});

describe("svmrt sim: why a policy fell back", () => {
  test("the summary and --json name the failing hook, the reason and an example message", async () => {
    // Every second window is one page too long: invalid for that fault, the kernel decides.
    const dir = tempFolder({
      "p.js": `let k = 0;
export function migrationWindow(f) { k++; return { start: f.addr, last: k % 2 === 0 ? f.rangeLast + 1 : f.addr }; }`,
      "p.yaml": policyYaml("  plugin: p.js\n"),
    });
    const argv = ["sim", "--workload", "stream", "--policy", join(dir, "p.yaml"), "--plugin-root", dir];
    const j = JSON.parse((await run([...argv, "--json"])).out);
    expect(j.policyFallbacks).toBeGreaterThan(0);
    expect(j.policyFailures).toHaveLength(1);
    expect(j.policyFailures[0]).toMatchObject({ hook: "migrationWindow", reason: "invalid-output", example: expect.stringContaining("window") });
    const text = (await run(argv)).out;
    expect(text).toMatch(/policy fallbacks +\d+\n +migrationWindow invalid-output \(\d+ calls\), e\.g\. fault 0 \(page \d+\):/);
    // A policy that never fails reports no failures.
    const ok = JSON.parse((await run(["sim", "--workload", "stream", "--policy", "policies/migration/kernel-default.yaml", "--json"])).out);
    expect(ok.policyFallbacks).toBe(0);
    expect(ok).not.toHaveProperty("policyFailures");
  });
});
