import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { emuSysfsTemp } from "../../runtime/emu/sysfs.ts";
import { ConfigError } from "../../runtime/errors.ts";
import { IO_LINK_TYPE, type IoLink, SYSFS_FILE_MAX_bytes, TOPOLOGY_NODE_ENTRIES_MAX, TOPOLOGY_WARNINGS_MAX, type Topology, gfxTargetName, processCountersRead, propertiesParse, topologyRead } from "../../runtime/kfd/topology.ts";
import { loadProfile, shippedProfiles } from "../../runtime/sim/profile.ts";

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

/**
 * A real KFD sysfs capture (rocprofiler-sdk test data, seven nodes spliced from several hosts),
 * used in place: see its README.md. `kfd/` is the capture as is (no gpu_id files); `derived-gpu-id/`
 * the same tree with made-up gpu_id files (node 0: 0, node N: 1000+N).
 */
const CAPTURE = join(import.meta.dir, "..", "..", "..", "shared", "fixtures", "kfd-topology-rocprofiler");
const CAPTURE_KFD = join(CAPTURE, "kfd");
const CAPTURE_DERIVED = join(CAPTURE, "derived-gpu-id");
const CAPTURE_NODES = join(CAPTURE_KFD, "topology", "nodes");
const DERIVED_NODES = join(CAPTURE_DERIVED, "topology", "nodes");
/** hive_id of node 4 (the MI300X, node 3 of an 8-GPU hive on its own host). */
const MI300X_HIVE = 7773567030725891371n;
const kindsOf = (t: Topology, kind: string) => t.warnings.filter((w) => w.kind === kind);

describe("KFD topology from a real sysfs capture", () => {
  test("GPUs are told by their properties: 6 GPUs by node without gpu_id files, one warning each", () => {
    const t = topologyRead(CAPTURE_KFD);
    expect(t.nodes.map((n) => n.isGpu)).toEqual([false, true, true, true, true, true, true]);
    expect(t.gpus.map((g) => [g.node, g.gpuId, g.gpuIdKnown])).toEqual([1, 2, 3, 4, 5, 6].map((n) => [n, 0, false]));
    expect(t.gpus.map((g) => g.simdCount)).toEqual([240, 56, 64, 1216, 1024, 128]);
    const missing = kindsOf(t, "gpu-id-missing");
    expect(missing.map((w) => w.file)).toEqual([1, 2, 3, 4, 5, 6].map((n) => join(CAPTURE_NODES, String(n), "gpu_id")));
    expect(missing[3]!.message).toStartWith(`${join(CAPTURE_NODES, "4", "gpu_id")}: `);
    expect(missing[3]!.message).toContain("simd_count 1216");
    // The CPU node has no gpu_id file either: a CPU's gpu_id is 0 by definition, nothing to say.
    expect(t.warnings.some((w) => w.file.startsWith(join(CAPTURE_NODES, "0")) && w.kind === "gpu-id-missing")).toBe(false);
  });

  test("with gpu_id files the GPUs carry them and no gpu_id warning is given", () => {
    const t = topologyRead(CAPTURE_DERIVED);
    expect(t.nodes.map((n) => n.gpuId)).toEqual([0, 1001, 1002, 1003, 1004, 1005, 1006]);
    expect(t.gpus.map((g) => [g.node, g.gpuId, g.gpuIdKnown])).toEqual([1, 2, 3, 4, 5, 6].map((n) => [n, 1000 + n, true]));
    expect(kindsOf(t, "gpu-id-missing")).toEqual([]);
  });

  test("MI300X properties: gfx_target_version, vendor and device ids, XCCs, VRAM, hive", () => {
    const g = topologyRead(CAPTURE_DERIVED).gpus.find((x) => x.node === 4)!;
    expect({ gfx: g.gfxTargetVersion, vendor: g.vendorId, device: g.deviceId, xcc: g.numXcc, simd: g.simdCount, vram: g.vram_bytes, hive: g.hiveId }).toEqual({
      gfx: 90402,
      vendor: 0x1002,
      device: 0x74a1,
      xcc: 8,
      simd: 1216,
      vram: 206141652992,
      hive: MI300X_HIVE,
    });
    expect(topologyRead(CAPTURE_DERIVED).gpus.map((x) => gfxTargetName(x.gfxTargetVersion!))).toEqual(["gfx906", "gfx1102", "gfx1032", "gfx942", "gfx950", "gfx1201"]);
    expect(gfxTargetName(90010)).toBe("gfx90a");
  });

  test("io_links are keyed by the node folder they sit in; a different node_from is a warning naming the file", () => {
    for (const root of [CAPTURE_KFD, CAPTURE_DERIVED]) {
      const t = topologyRead(root);
      const nodesDir = join(t.dir, "nodes");
      expect(t.nodes.filter((n) => n.ioLinks.some((l) => l.nodeFrom !== n.node))).toEqual([]);
      const mi300x = t.nodes[4]!;
      expect(mi300x.ioLinks.map((l) => [l.nodeFrom, l.nodeTo])).toEqual([
        [4, 2],
        [4, 5],
        [4, 6],
      ]);
      expect(mi300x.ioLinks[0]!.properties.get("node_from")).toBe(3n); // the file as read
      const mismatch = kindsOf(t, "link-node-from-mismatch");
      expect(mismatch.map((w) => w.file)).toEqual([1, 2, 3, 4, 5, 6, 7].map((l) => join(nodesDir, "4", "io_links", String(l), "properties")));
      expect(mismatch[0]!.message).toContain("node_from 3");
      expect(mismatch[0]!.message).toContain("node 4");
    }
  });

  test("links to nodes that do not exist are dangling: reported, kept out of the links and the hives", () => {
    const t = topologyRead(CAPTURE_DERIVED);
    expect(t.danglingLinks.map((d) => [d.node, d.kind, d.index, d.reason, d.link.nodeTo, d.file])).toEqual([
      [4, "io_links", 2, "self", 4, join(DERIVED_NODES, "4", "io_links", "2", "properties")],
      [4, "io_links", 5, "no-such-node", 7, join(DERIVED_NODES, "4", "io_links", "5", "properties")],
      [4, "io_links", 6, "no-such-node", 8, join(DERIVED_NODES, "4", "io_links", "6", "properties")],
      [4, "io_links", 7, "no-such-node", 9, join(DERIVED_NODES, "4", "io_links", "7", "properties")],
    ]);
    const dangling = kindsOf(t, "link-dangling");
    expect(dangling.map((w) => w.file)).toEqual([5, 6, 7].map((l) => join(DERIVED_NODES, "4", "io_links", String(l), "properties")));
    expect(dangling[0]!.message).toContain("node_to 7");
    expect(kindsOf(t, "link-to-self").map((w) => w.file)).toEqual([join(DERIVED_NODES, "4", "io_links", "2", "properties")]);
    const linked = new Set(t.nodes.map((n) => n.node));
    const kept = t.nodes.flatMap((n) => [...n.ioLinks, ...n.p2pLinks]);
    expect(kept.length).toBe(6 + 3 + 6); // io_links: 6 of nodes 0..3, 3 of node 4; p2p_links: 6
    expect(kept.filter((l) => !linked.has(l.nodeTo) || l.nodeTo === l.nodeFrom)).toEqual([]);
    // The MI300X's hive is its own hive_id only: its XGMI files do not bring other nodes in.
    expect(t.hives).toEqual([{ hiveId: MI300X_HIVE, gpuIds: [1004] }]);
    // XGMI to existing GPUs of another hive (spliced links): kept, but said.
    expect(kindsOf(t, "link-hive-mismatch").map((w) => w.file)).toEqual([1, 3, 4].map((l) => join(DERIVED_NODES, "4", "io_links", String(l), "properties")));
    // Without gpu_id files the hive is still there, with no gpu_id to list.
    expect(topologyRead(CAPTURE_KFD).hives).toEqual([{ hiveId: MI300X_HIVE, gpuIds: [] }]);
  });

  test("p2p_links are read like io_links (type, weight, bandwidth)", () => {
    const t = topologyRead(CAPTURE_DERIVED);
    const strip = (ls: IoLink[]) => ls.map(({ properties: _, ...l }) => l);
    expect(strip(t.nodes[1]!.p2pLinks)).toEqual([
      { type: IO_LINK_TYPE.PCIEXPRESS, nodeFrom: 1, nodeTo: 2, weight: 40, minBandwidth_mbps: 0, maxBandwidth_mbps: 32000 },
      { type: IO_LINK_TYPE.PCIEXPRESS, nodeFrom: 1, nodeTo: 3, weight: 40, minBandwidth_mbps: 0, maxBandwidth_mbps: 32000 },
    ]);
    expect(t.gpus.map((g) => g.p2pLinks.map((l) => l.nodeTo))).toEqual([[2, 3], [1, 3], [1, 2], [], [], []]);
    expect(t.nodes[0]!.p2pLinks).toEqual([]);
  });

  test("a properties count that the folders do not match is a warning naming the folder", () => {
    const t = topologyRead(CAPTURE_KFD);
    const counts = kindsOf(t, "entries-count-mismatch");
    expect(counts.map((w) => w.file)).toEqual([
      join(CAPTURE_NODES, "4", "io_links"),
      join(CAPTURE_NODES, "4", "p2p_links"),
      join(CAPTURE_NODES, "5", "io_links"),
      join(CAPTURE_NODES, "6", "io_links"),
    ]);
    expect(counts[0]!.message).toContain("io_links_count 8");
    expect(counts[0]!.message).toContain("7");
  });

  test("the project's own fixture and every warning class stay quiet on a consistent tree", () => {
    const t = topologyRead(XGMI);
    expect(t.warnings).toEqual([]);
    expect(t.danglingLinks).toEqual([]);
    expect(t.nodes.map((n) => n.isGpu)).toEqual([false, true, true]);
  });
});

describe("KFD topology: classes the capture lacks, and the bounds", () => {
  const tmp = mkdtempSync(join(tmpdir(), "svmrt-topology-"));
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));
  /** A tree of `props` per node under a fresh root; gpu_id written when given. */
  const tree = (name: string, nodes: { props: string; gpuId?: string }[]): string => {
    const root = join(tmp, name);
    nodes.forEach((n, i) => {
      const nd = join(root, "topology", "nodes", String(i));
      mkdirSync(nd, { recursive: true });
      writeFileSync(join(nd, "properties"), n.props);
      if (n.gpuId !== undefined) writeFileSync(join(nd, "gpu_id"), n.gpuId);
    });
    return root;
  };
  const link = (root: string, node: number, index: number, to: number): void => {
    const d = join(root, "topology", "nodes", String(node), "io_links", String(index));
    mkdirSync(d, { recursive: true });
    writeFileSync(join(d, "properties"), `type 2\nnode_from ${node}\nnode_to ${to}\nweight 20\n`);
  };

  test("a GPU whose gpu_id file says 0 is a GPU by node with a warning; a CPU's 0 is not", () => {
    const root = tree("gpu-id-zero", [
      { props: "simd_count 0\ngfx_target_version 0\n", gpuId: "0\n" },
      { props: "simd_count 0\ngfx_target_version 90402\n", gpuId: "0\n" },
    ]);
    const t = topologyRead(root);
    expect(t.gpus.map((g) => [g.node, g.gpuId, g.gpuIdKnown, g.gfxTargetVersion])).toEqual([[1, 0, false, 90402]]);
    expect(t.warnings.map((w) => [w.kind, w.file])).toEqual([["gpu-id-zero", join(root, "topology", "nodes", "1", "gpu_id")]]);
    expect(t.warnings[0]!.message).toContain("gfx_target_version 90402");
  });

  test(`warnings stop at TOPOLOGY_WARNINGS_MAX (${TOPOLOGY_WARNINGS_MAX}); the rest are counted`, () => {
    const nodes = Math.ceil((TOPOLOGY_WARNINGS_MAX + 1) / TOPOLOGY_NODE_ENTRIES_MAX);
    const root = tree("many-warnings", Array.from({ length: nodes }, () => ({ props: "simd_count 0\n", gpuId: "0\n" })));
    for (let n = 0; n < nodes; n++) for (let l = 0; l < TOPOLOGY_NODE_ENTRIES_MAX; l++) link(root, n, l, 1000 + l);
    const t = topologyRead(root);
    expect(t.danglingLinks).toHaveLength(nodes * TOPOLOGY_NODE_ENTRIES_MAX);
    expect(t.warnings).toHaveLength(TOPOLOGY_WARNINGS_MAX);
    expect(t.warningsOmitted).toBe(nodes * TOPOLOGY_NODE_ENTRIES_MAX - TOPOLOGY_WARNINGS_MAX);
  });

  test("a properties file over SYSFS_FILE_MAX_bytes is a ConfigError naming it", () => {
    const root = tree("big-file", [{ props: `simd_count 0\n${"x 1\n".repeat(SYSFS_FILE_MAX_bytes / 4)}` }]);
    const e = configErrorOf(() => topologyRead(root));
    expect(e.file).toBe(join(root, "topology", "nodes", "0", "properties"));
    expect(e.message).toContain(`at most ${SYSFS_FILE_MAX_bytes} bytes`);
  });
});

describe("KFD topology of the emulator's sysfs trees", () => {
  test("every shipped profile reads with gpu_ids known, no warning, no dangling link", () => {
    const seen = shippedProfiles().map((name) => {
      using t = emuSysfsTemp(loadProfile(name));
      const topo = topologyRead(t.root);
      return { name, gpus: topo.gpus.length > 0, known: topo.gpus.every((g) => g.gpuIdKnown), warnings: topo.warnings, dangling: topo.danglingLinks };
    });
    expect(seen).toEqual(shippedProfiles().map((name) => ({ name, gpus: true, known: true, warnings: [], dangling: [] })));
  });
});
