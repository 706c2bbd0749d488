/**
 * EMULATED KFD sysfs: the topology of a machine profile written as a tree with the shape of
 * /sys/class/kfd/kfd (reference/kfd-uapi.md "Topology in sysfs"), so the real reader
 * (runtime/kfd/topology.ts) reads it unchanged. Node 0 is the CPU (gpu_id 0), nodes 1..n the
 * profile's GPUs in order; each GPU has one frame-buffer mem_bank of its VRAM, a PCIe link
 * to the CPU, and an XGMI link to every other GPU of its hive. Values the profile does not
 * give (SIMD count, XCCs) are left out, never made up. A file `emulated` at the root names
 * the profile: the tree says what it is.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { IO_LINK_TYPE } from "../kfd/topology.ts";
import type { MachineProfile } from "../sim/profile.ts";

/** CRAT io_link weights the kernel uses: a PCIe hop and an XGMI hop (kfd_crat.c). */
export const IO_LINK_WEIGHT_PCIE = 20;
export const IO_LINK_WEIGHT_XGMI = 15;
/** mem_banks heap_type of public frame buffer (HSA_MEM_HEAP_TYPE_FB_PUBLIC). */
const HEAP_TYPE_FB_PUBLIC = 1;
/** First DRM render minor (renderD128). */
export const DRM_RENDER_MINOR_BASE = 128;
/** GB/s (10^9 bytes) to the MB/s (10^6) of io_links bandwidths. */
const MBPS_PER_GBPS = 1000;

const props = (kv: Record<string, number | bigint>): string =>
  `${Object.entries(kv)
    .map(([k, v]) => `${k} ${v}`)
    .join("\n")}\n`;

/**
 * Write the topology of `profile` under `root` (which then stands for /sys/class/kfd/kfd).
 * @returns root
 */
export function emuSysfsWrite(profile: MachineProfile, root: string): string {
  const nodes = join(root, "topology", "nodes");
  const cpu = join(nodes, "0");
  mkdirSync(cpu, { recursive: true });
  writeFileSync(join(root, "emulated"), `${profile.name}\n`);
  writeFileSync(join(cpu, "gpu_id"), "0\n");
  writeFileSync(join(cpu, "name"), "\n");
  writeFileSync(join(cpu, "properties"), props({ cpu_cores_count: 1, simd_count: 0, mem_banks_count: 0, io_links_count: profile.gpus.length }));
  profile.gpus.forEach((g, i) => {
    const node = i + 1;
    const pcie = Math.round(Math.min(g.pcieH2dGbps, g.pcieD2hGbps) * MBPS_PER_GBPS);
    const pcieMax = Math.round(Math.max(g.pcieH2dGbps, g.pcieD2hGbps) * MBPS_PER_GBPS);
    mkdirSync(join(cpu, "io_links", String(i)), { recursive: true });
    writeFileSync(
      join(cpu, "io_links", String(i), "properties"),
      props({ type: IO_LINK_TYPE.PCIEXPRESS, node_from: 0, node_to: node, weight: IO_LINK_WEIGHT_PCIE, min_bandwidth: pcie, max_bandwidth: pcieMax }),
    );
    const dir = join(nodes, String(node));
    mkdirSync(join(dir, "mem_banks", "0"), { recursive: true });
    writeFileSync(join(dir, "gpu_id"), `${g.id}\n`);
    writeFileSync(join(dir, "name"), `emulated-${profile.name}\n`);
    const peers = g.hiveId === 0 ? [] : profile.gpus.filter((p) => p !== g && p.hiveId === g.hiveId);
    writeFileSync(
      join(dir, "properties"),
      props({
        mem_banks_count: 1,
        io_links_count: 1 + peers.length,
        drm_render_minor: DRM_RENDER_MINOR_BASE + i,
        hive_id: BigInt(g.hiveId),
        local_mem_size: g.vramBytes,
      }),
    );
    writeFileSync(join(dir, "mem_banks", "0", "properties"), props({ heap_type: HEAP_TYPE_FB_PUBLIC, size_in_bytes: g.vramBytes }));
    const links = [
      { type: IO_LINK_TYPE.PCIEXPRESS, node_from: node, node_to: 0, weight: IO_LINK_WEIGHT_PCIE, min_bandwidth: pcie, max_bandwidth: pcieMax },
      ...peers.map((p) => {
        const bw = Math.round(Math.min(g.xgmiGbps, p.xgmiGbps) * MBPS_PER_GBPS);
        return { type: IO_LINK_TYPE.XGMI, node_from: node, node_to: p.index + 1, weight: IO_LINK_WEIGHT_XGMI, min_bandwidth: bw, max_bandwidth: bw };
      }),
    ];
    links.forEach((l, k) => {
      mkdirSync(join(dir, "io_links", String(k)), { recursive: true });
      writeFileSync(join(dir, "io_links", String(k), "properties"), props(l));
    });
  });
  return root;
}

/** The profile's sysfs tree in a new temporary directory; dispose removes it. */
export function emuSysfsTemp(profile: MachineProfile): { root: string } & Disposable {
  const root = mkdtempSync(join(tmpdir(), "svmrt-emu-sysfs-"));
  try {
    emuSysfsWrite(profile, root);
  } catch (e) {
    rmSync(root, { recursive: true, force: true });
    throw e;
  }
  return { root, [Symbol.dispose]: () => rmSync(root, { recursive: true, force: true }) };
}
