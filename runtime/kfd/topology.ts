/**
 * KFD topology from sysfs (reference/kfd-uapi.md "Topology in sysfs"):
 * `<kfd>/topology/nodes/N/{gpu_id,name,properties}`, `mem_banks/M/properties`,
 * `io_links/L/properties`, and the per-process SVM counters
 * `<kfd>/proc/<pid>/counters_<gpuid>/{faults,page_in,page_out}`, where `<kfd>` is
 * /sys/class/kfd/kfd or a fixture tree standing for it (test/fixtures/kfd/).
 *
 * Properties files are `key value` lines with decimal integers; a line that is not is a
 * ConfigError naming the file and line. Values above 2^53 (hive_id, unique_id) stay bigint.
 */
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { ConfigError } from "../errors.ts";

export const KFD_SYSFS_ROOT = "/sys/class/kfd/kfd";
/** Largest sysfs file read, bytes: properties files are a few KiB. */
export const SYSFS_FILE_MAX_bytes = 64 * 1024;
/** Most topology nodes (CPUs + GPUs) read. */
export const TOPOLOGY_NODES_MAX = 256;
/** Most mem_banks / io_links per node read. */
export const TOPOLOGY_NODE_ENTRIES_MAX = 256;

/** io_links `type` (CRAT_IOLINK_TYPE_*). */
export const IO_LINK_TYPE = { PCIEXPRESS: 2, XGMI: 11 } as const;
/** mem_banks `heap_type`: frame buffer (VRAM) public and private. */
const HEAP_TYPE_FB_PUBLIC = 1;
const HEAP_TYPE_FB_PRIVATE = 2;

export type Properties = ReadonlyMap<string, bigint>;

export interface IoLink {
  /** 11 = XGMI, 2 = PCIe, others as the kernel reports. */
  type: number;
  nodeFrom: number;
  nodeTo: number;
  weight: number;
  minBandwidth_mbps: number;
  maxBandwidth_mbps: number;
  properties: Properties;
}

export interface MemBank {
  heapType: number;
  size_bytes: number;
  properties: Properties;
}

export interface TopologyNode {
  /** N of nodes/N. */
  node: number;
  /** 0 for CPU nodes. */
  gpuId: number;
  name: string;
  properties: Properties;
  memBanks: MemBank[];
  ioLinks: IoLink[];
}

export interface TopologyGpu {
  node: number;
  gpuId: number;
  name: string;
  simdCount: number;
  /** XGMI hive id; 0n = not in a hive. */
  hiveId: bigint;
  drmRenderMinor: number;
  /** Absent on kernels that do not report it. */
  numXcc?: number;
  /** Sum of the frame-buffer mem_banks. */
  vram_bytes: number;
  properties: Properties;
  ioLinks: IoLink[];
}

export interface Hive {
  hiveId: bigint;
  gpuIds: number[];
}

export interface Topology {
  /** The directory read (…/topology). */
  dir: string;
  nodes: TopologyNode[];
  gpus: TopologyGpu[];
  hives: Hive[];
}

/** A sysfs text file, bounded. @throws ConfigError when missing or too large. */
function sysfsRead(path: string): string {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    throw new ConfigError({ file: path, line: 1, col: 1 }, "", "a readable sysfs file", (e as Error).message);
  }
  if (text.length > SYSFS_FILE_MAX_bytes) {
    throw new ConfigError({ file: path, line: 1, col: 1 }, "", `at most ${SYSFS_FILE_MAX_bytes} bytes`);
  }
  return text;
}

/**
 * Parse `key value` lines (value a decimal integer). Empty lines are skipped.
 * @throws ConfigError with file:line:col of the first bad line.
 */
export function propertiesParse(text: string, file: string): Map<string, bigint> {
  const out = new Map<string, bigint>();
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (line.trim() === "") continue;
    const m = /^([A-Za-z_][A-Za-z0-9_]*) (\d+)$/.exec(line);
    if (!m) {
      const sp = line.indexOf(" ");
      const field = sp > 0 ? line.slice(0, sp) : "";
      throw new ConfigError(
        { file, line: i + 1, col: sp > 0 ? sp + 2 : 1 },
        field,
        "`key value` with a decimal integer value",
        `got '${line.slice(0, 80)}'`,
      );
    }
    out.set(m[1]!, BigInt(m[2]!));
  }
  return out;
}

/** A single decimal integer file (gpu_id, counters). @throws ConfigError */
function integerFileRead(path: string): number {
  const text = sysfsRead(path).trim();
  if (!/^\d+$/.test(text)) throw new ConfigError({ file: path, line: 1, col: 1 }, "", "one decimal integer", `got '${text.slice(0, 80)}'`);
  const n = Number(text);
  if (!Number.isSafeInteger(n)) throw new ConfigError({ file: path, line: 1, col: 1 }, "", "an integer below 2^53");
  return n;
}

/** A property as a number: absent -> fallback; beyond 2^53 -> ConfigError. */
function propNumber(p: Properties, key: string, file: string, fallback = 0): number {
  const v = p.get(key);
  if (v === undefined) return fallback;
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new ConfigError({ file, line: 1, col: 1 }, key, "a value below 2^53", `got ${v}`);
  }
  return Number(v);
}

/** Numbered subdirectories of `dir`, sorted, at most `max`. */
function indexedDirs(dir: string, max: number): number[] {
  if (!existsSync(dir)) return [];
  const out = readdirSync(dir)
    .filter((n) => /^\d+$/.test(n))
    .map(Number)
    .sort((a, b) => a - b);
  if (out.length > max) throw new ConfigError({ file: dir, line: 1, col: 1 }, "", `at most ${max} entries`, `found ${out.length}`);
  return out;
}

/** The topology dir for a root that is either `<kfd>` (holding topology/) or topology/ itself. */
export function topologyDirOf(root: string): string {
  const nested = join(root, "topology");
  return existsSync(join(nested, "nodes")) ? nested : root;
}

/**
 * Read the whole topology under `root` (default /sys/class/kfd/kfd).
 * @throws ConfigError naming the file (and line) that is missing or malformed.
 */
export function topologyRead(root: string = KFD_SYSFS_ROOT): Topology {
  const dir = topologyDirOf(root);
  const nodesDir = join(dir, "nodes");
  if (!existsSync(nodesDir)) {
    throw new ConfigError({ file: nodesDir, line: 1, col: 1 }, "", "a KFD topology directory (no amdgpu KFD driver on this host?)");
  }
  const nodes: TopologyNode[] = [];
  for (const n of indexedDirs(nodesDir, TOPOLOGY_NODES_MAX)) {
    const nd = join(nodesDir, String(n));
    const propsFile = join(nd, "properties");
    const properties = propertiesParse(sysfsRead(propsFile), propsFile);
    const memBanks: MemBank[] = indexedDirs(join(nd, "mem_banks"), TOPOLOGY_NODE_ENTRIES_MAX).map((b) => {
      const f = join(nd, "mem_banks", String(b), "properties");
      const p = propertiesParse(sysfsRead(f), f);
      return { heapType: propNumber(p, "heap_type", f), size_bytes: propNumber(p, "size_in_bytes", f), properties: p };
    });
    const ioLinks: IoLink[] = indexedDirs(join(nd, "io_links"), TOPOLOGY_NODE_ENTRIES_MAX).map((l) => {
      const f = join(nd, "io_links", String(l), "properties");
      const p = propertiesParse(sysfsRead(f), f);
      return {
        type: propNumber(p, "type", f),
        nodeFrom: propNumber(p, "node_from", f),
        nodeTo: propNumber(p, "node_to", f),
        weight: propNumber(p, "weight", f),
        minBandwidth_mbps: propNumber(p, "min_bandwidth", f),
        maxBandwidth_mbps: propNumber(p, "max_bandwidth", f),
        properties: p,
      };
    });
    const gpuIdFile = join(nd, "gpu_id");
    const nameFile = join(nd, "name");
    nodes.push({
      node: n,
      gpuId: existsSync(gpuIdFile) ? integerFileRead(gpuIdFile) : 0,
      name: existsSync(nameFile) ? sysfsRead(nameFile).trim() : "",
      properties,
      memBanks,
      ioLinks,
    });
  }
  const gpus: TopologyGpu[] = nodes
    .filter((n) => n.gpuId !== 0)
    .map((n) => {
      const f = join(nodesDir, String(n.node), "properties");
      const gpu: TopologyGpu = {
        node: n.node,
        gpuId: n.gpuId,
        name: n.name,
        simdCount: propNumber(n.properties, "simd_count", f),
        hiveId: n.properties.get("hive_id") ?? 0n,
        drmRenderMinor: propNumber(n.properties, "drm_render_minor", f),
        vram_bytes: n.memBanks
          .filter((b) => b.heapType === HEAP_TYPE_FB_PUBLIC || b.heapType === HEAP_TYPE_FB_PRIVATE)
          .reduce((s, b) => s + b.size_bytes, 0),
        properties: n.properties,
        ioLinks: n.ioLinks,
      };
      if (n.properties.has("num_xcc")) gpu.numXcc = propNumber(n.properties, "num_xcc", f);
      return gpu;
    });
  const byHive = new Map<bigint, number[]>();
  for (const g of gpus) {
    if (g.hiveId === 0n) continue;
    const list = byHive.get(g.hiveId) ?? [];
    list.push(g.gpuId);
    byHive.set(g.hiveId, list);
  }
  const hives = [...byHive].map(([hiveId, gpuIds]) => ({ hiveId, gpuIds }));
  return { dir, nodes, gpus, hives };
}

export interface ProcessCounters {
  faults: number;
  pageIn: number;
  pageOut: number;
}

/**
 * SVM counters of process `pid` on `gpuId`: `<root>/proc/<pid>/counters_<gpuid>/…`.
 * @throws ConfigError naming the missing or malformed file.
 */
export function processCountersRead(pid: number, gpuId: number, root: string = KFD_SYSFS_ROOT): ProcessCounters {
  const dir = join(root, "proc", String(pid), `counters_${gpuId}`);
  return {
    faults: integerFileRead(join(dir, "faults")),
    pageIn: integerFileRead(join(dir, "page_in")),
    pageOut: integerFileRead(join(dir, "page_out")),
  };
}
