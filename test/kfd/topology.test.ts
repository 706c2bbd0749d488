import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { ConfigError } from "../../runtime/errors.ts";
import { IO_LINK_TYPE, processCountersRead, propertiesParse, topologyRead } from "../../runtime/kfd/topology.ts";

const FIXTURES = join(import.meta.dir, "..", "fixtures", "kfd");
const XGMI = join(FIXTURES, "xgmi-2gpu");
const BAD = join(FIXTURES, "bad-properties");
const HIVE = 10823521457932525632n;

function configErrorOf(f: () => unknown): ConfigError {
  try {
    f();
  } catch (e) {
    if (e instanceof ConfigError) return e;
    throw e;
  }
  throw new Error("expected a ConfigError");
}

describe("KFD topology from a sysfs tree", () => {
  test("GPUs, properties, VRAM, one hive", () => {
    const t = topologyRead(XGMI);
    expect(t.dir).toBe(join(XGMI, "topology"));
    expect(t.nodes.map((n) => n.gpuId)).toEqual([0, 16353, 35410]);
    expect(t.gpus.map((g) => ({ node: g.node, gpuId: g.gpuId, name: g.name, simd: g.simdCount, minor: g.drmRenderMinor, xcc: g.numXcc, vram: g.vram_bytes }))).toEqual([
      { node: 1, gpuId: 16353, name: "ip discovery", simd: 1216, minor: 128, xcc: 8, vram: 206141652992 },
      { node: 2, gpuId: 35410, name: "ip discovery", simd: 1216, minor: 136, xcc: 8, vram: 206141652992 },
    ]);
    expect(t.gpus[0]!.hiveId).toBe(HIVE); // above 2^63: kept exact as bigint
    expect(t.gpus[0]!.properties.get("unique_id")).toBe(2451367891823731332n);
    expect(t.hives).toEqual([{ hiveId: HIVE, gpuIds: [16353, 35410] }]);
  });

  test("io links: XGMI between the GPUs, PCIe to the CPU, weights and bandwidths", () => {
    const t = topologyRead(join(XGMI, "topology")); // the topology dir itself is accepted too
    const g1 = t.gpus[0]!;
    expect(g1.ioLinks.map(({ properties: _, ...l }) => l)).toEqual([
      { type: IO_LINK_TYPE.PCIEXPRESS, nodeFrom: 1, nodeTo: 0, weight: 20, minBandwidth_mbps: 312, maxBandwidth_mbps: 64000 },
      { type: IO_LINK_TYPE.XGMI, nodeFrom: 1, nodeTo: 2, weight: 15, minBandwidth_mbps: 50000, maxBandwidth_mbps: 64000 },
    ]);
    expect(t.nodes[0]!.ioLinks.map((l) => l.nodeTo)).toEqual([1, 2]);
  });

  test("per-process counters", () => {
    expect(processCountersRead(4242, 16353, XGMI)).toEqual({ faults: 12, pageIn: 4096, pageOut: 512 });
  });

  test("a bad properties line is a ConfigError naming file, line and key", () => {
    const e = configErrorOf(() => topologyRead(BAD));
    expect(e.file).toBe(join(BAD, "topology", "nodes", "0", "properties"));
    expect(e.line).toBe(3);
    expect(e.field).toBe("drm_render_minor");
    expect(e.message).toContain("properties:3:18: drm_render_minor");
  });

  test("a bad counter file and a missing tree are ConfigErrors naming the file", () => {
    const e = configErrorOf(() => processCountersRead(1, 4660, BAD));
    expect(e.file).toBe(join(BAD, "proc", "1", "counters_4660", "page_in"));
    const missing = configErrorOf(() => topologyRead(join(FIXTURES, "nope")));
    expect(missing.file).toBe(join(FIXTURES, "nope", "nodes"));
  });

  test("properties parser: empty lines skipped, values bigint", () => {
    expect(propertiesParse("a 1\n\nb 18446744073709551615\n", "f")).toEqual(new Map([["a", 1n], ["b", 18446744073709551615n]]));
    expect(configErrorOf(() => propertiesParse("novalue\n", "f")).line).toBe(1);
  });
});
