/** Profiles and workload files: every error names file:line:col and the field. */
import { describe, expect, test } from "bun:test";
import { ConfigError } from "../../runtime/errors.ts";
import { COST_PARAMS } from "../../runtime/sim/cost.ts";
import { loadProfile, parseProfile, shippedProfiles } from "../../runtime/sim/profile.ts";
import { parseWorkload } from "../../runtime/sim/workload.ts";

function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (e) {
    if (e instanceof ConfigError) return e;
    throw e;
  }
  throw new Error("no ConfigError");
}

const GOOD = "kind: MachineProfile\nname: x\ngpus:\n  - id: 1\n    vram: 8GiB\n    hbm_gbps: 100\n    pcie_h2d_gbps: 16\n";

describe("machine profiles", () => {
  test("the shipped profiles load with their shapes", () => {
    const shape = shippedProfiles().map((n) => {
      const p = loadProfile(n);
      return [n, p.gpus.length, p.gpus[0]!.vramBytes / 2 ** 30, p.gpus[0]!.hiveId !== 0, p.gpus[0]!.appApu];
    });
    expect(shape).toEqual([
      ["dev-2gpu", 2, 32, false, false],
      ["mi250x-4", 4, 64, true, false],
      ["mi300x-8", 8, 192, true, false],
      ["mi300x-16", 16, 192, true, false],
      ["mi300a", 4, 128, true, true],
      ["pcie-4", 4, 64, false, false],
    ]);
  });

  test("cost parameters default to their documented values and can be overridden", () => {
    const p = parseProfile("p.yaml", `${GOOD}cost:\n  fault_service_ns: 12000\n`);
    expect(p.cost.fault_service_ns).toBe(12_000);
    expect(p.cost.fault_retry_ns).toBe(COST_PARAMS.fault_retry_ns.value);
    for (const spec of Object.values(COST_PARAMS)) expect(spec.source.length).toBeGreaterThan(10);
  });

  test("errors carry file:line:col and the field", () => {
    expect(configError(() => parseProfile("p.yaml", GOOD.replace("vram: 8GiB", "vram: lots"))).message).toBe(
      "p.yaml:5:11: gpus[0].vram: a size from 0 to 1099511627776 bytes (an integer or e.g. 2MiB, 32GiB) (got lots)",
    );
    expect(configError(() => parseProfile("p.yaml", `${GOOD}cost:\n  fault_ns: 1\n`)).message).toStartWith("p.yaml:9:3: cost.fault_ns: one of the keys");
    expect(configError(() => parseProfile("p.yaml", GOOD.replace("name: x", "name: x\nname: y"))).message).toStartWith("p.yaml:3:1: name: valid YAML");
    expect(configError(() => parseProfile("p.yaml", GOOD.replace("hbm_gbps: 100", "hbm_gbps: -1"))).field).toBe("gpus[0].hbm_gbps");
    expect(configError(() => parseProfile("p.yaml", GOOD.replace("MachineProfile", "Workload"))).message).toBe("p.yaml:1:7: kind: MachineProfile (got Workload)");
    expect(configError(() => loadProfile("nope")).message).toContain("a readable machine profile");
  });
});

describe("workload files", () => {
  const prof = parseProfile("p.yaml", GOOD);
  const W = "kind: Workload\nname: w\nallocations:\n  - { name: a, size: 4MiB }\nstreams:\n  - agent: gpu0\n    ops:\n      - access: { alloc: a }\n";

  test("sizes, defaults and repeats", () => {
    const w = parseWorkload("w.yaml", W.replace("- access: { alloc: a }", "- repeat: { times: 3, ops: [ { access: { alloc: a, offset: 2MiB } }, { barrier: true } ] }"), prof);
    expect(w.streams[0]!.ops.length).toBe(6);
    const op = w.streams[0]!.ops[0]!;
    expect(op.op === "access" && [op.offset, op.pages, op.count, op.pattern]).toEqual([512, 512, 512, "seq"]);
    const pct = parseWorkload("w.yaml", W.replace("size: 4MiB", "size: 50%vram"), prof);
    expect(pct.allocs[0]!.pages).toBe(1_048_576);
  });

  test("errors carry file:line:col and the field", () => {
    expect(configError(() => parseWorkload("w.yaml", W.replace("agent: gpu0", "agent: gpu3"), prof)).message).toBe(
      "w.yaml:6:12: streams[0].agent: cpu or gpu0..gpu0 (profile x) (got gpu3)",
    );
    expect(configError(() => parseWorkload("w.yaml", W.replace("alloc: a }", "alloc: b }"), prof)).field).toBe("streams[0].ops[0].access.alloc");
    expect(configError(() => parseWorkload("w.yaml", W.replace("size: 4MiB", "size: 4097"), prof)).message).toContain("a multiple of 4096");
    expect(
      configError(() => parseWorkload("w.yaml", W.replace("{ name: a, size: 4MiB }", "{ name: a, size: 4MiB, attrs: [ { type: BOGUS, value: 1 } ] }"), prof))
        .message,
    ).toStartWith("w.yaml:4:45: allocations[0].attrs[0].type: one of PREFERRED_LOC");
  });
});
