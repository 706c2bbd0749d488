/**
 * KFD topology from sysfs (reference/kfd-uapi.md "Topology in sysfs"):
 * `<kfd>/topology/nodes/N/{gpu_id,name,properties}`, `mem_banks/M/properties`,
 * `io_links/L/properties`, `p2p_links/L/properties`, and the per-process SVM counters
 * `<kfd>/proc/<pid>/counters_<gpuid>/{faults,page_in,page_out}`, where `<kfd>` is
 * /sys/class/kfd/kfd or a fixture tree standing for it (test/fixtures/kfd/).
 *
 * Properties files are `key value` lines with decimal integers; a line that is not is a
 * ConfigError naming the file and line. Values above 2^53 (hive_id, unique_id) stay bigint.
 *
 * Real trees are not always whole (containers, copies, captures spliced from several hosts),
 * so what can be read around is read and said, never trusted nor dropped silently: each
 * problem is a TopologyWarning naming the file and what is wrong.
 * - A node is a GPU when its gpu_id is not 0 or its properties say so (simd_count or
 *   gfx_target_version not 0: the kernel reports both as 0 for CPU nodes). A GPU without a
 *   gpu_id file is kept, known by its node, with gpuId 0 and gpuIdKnown false.
 * - A link belongs to the node whose folder holds it: nodeFrom is that node; a file whose
 *   node_from differs is a warning.
 * - A link whose node_to is no node of the tree, or the node itself, is dangling: a warning,
 *   listed in Topology.danglingLinks, kept out of the nodes' links.
 * - XGMI between two GPUs of different hive_id, and *_count properties that the folders do
 *   not match, are warnings. Hives come from hive_id only, never from links.
 */
import { closeSync, existsSync, openSync, readSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { ConfigError } from "../errors.ts";

export const KFD_SYSFS_ROOT = "/sys/class/kfd/kfd";
/** Largest sysfs file read, bytes: properties files are a few KiB. */
export const SYSFS_FILE_MAX_bytes = 64 * 1024;
/** Most topology nodes (CPUs + GPUs) read. */
export const TOPOLOGY_NODES_MAX = 256;
/** Most mem_banks / io_links / p2p_links per node read. */
export const TOPOLOGY_NODE_ENTRIES_MAX = 256;
/** Most warnings kept in a Topology; the rest are counted in warningsOmitted. */
export const TOPOLOGY_WARNINGS_MAX = 1024;

/** io_links `type` (CRAT_IOLINK_TYPE_*). */
export const IO_LINK_TYPE = { PCIEXPRESS: 2, XGMI: 11 } as const;
/** mem_banks `heap_type`: frame buffer (VRAM) public and private. */
const HEAP_TYPE_FB_PUBLIC = 1;
const HEAP_TYPE_FB_PRIVATE = 2;

export type Properties = ReadonlyMap<string, bigint>;

export interface IoLink {
  /** 11 = XGMI, 2 = PCIe, others as the kernel reports. */
  type: number;
  /** The node whose folder holds the link (the file's own node_from is in `properties`). */
  nodeFrom: number;
  nodeTo: number;
  weight: number;
  minBandwidth_mbps: number;
  maxBandwidth_mbps: number;
  properties: Properties;
}

/** The two link folders of a node: direct links, and peer-to-peer links through other nodes. */
export type LinkKind = "io_links" | "p2p_links";

/** A link that leads nowhere in this tree; not in any node's links. */
export interface DanglingLink {
  /** The node whose folder holds it. */
  node: number;
  kind: LinkKind;
  /** L of `<kind>/L`. */
  index: number;
  /** Its properties file. */
  file: string;
  /** no-such-node: node_to names no node of the tree; self: node_to is the node itself. */
  reason: "no-such-node" | "self";
  link: IoLink;
}

export const TOPOLOGY_WARNING_KINDS = [
  /** A GPU node (by its properties) without a gpu_id file. */
  "gpu-id-missing",
  /** A GPU node (by its properties) whose gpu_id file says 0, the CPU's id. */
  "gpu-id-zero",
  /** A link file whose node_from is not the node whose folder holds it. */
  "link-node-from-mismatch",
  /** A link to a node that does not exist. */
  "link-dangling",
  /** A link from a node to itself. */
  "link-to-self",
  /** An XGMI link between GPUs of different hive_id. */
  "link-hive-mismatch",
  /** mem_banks_count / io_links_count / p2p_links_count not matching the folders. */
  "entries-count-mismatch",
] as const;
export type TopologyWarningKind = (typeof TOPOLOGY_WARNING_KINDS)[number];

/** Something in the tree that is not as the kernel writes it; the reading went on. */
export interface TopologyWarning {
  kind: TopologyWarningKind;
  /** The file or folder concerned. */
  file: string;
  /** `<file>: what is wrong; what the reader did`. */
  message: string;
}

export interface MemBank {
  heapType: number;
  size_bytes: number;
  properties: Properties;
}

export interface TopologyNode {
  /** N of nodes/N. */
  node: number;
  /** 0 for CPU nodes, and for GPU nodes whose gpu_id is unknown (gpuIdKnown false). */
  gpuId: number;
  /** A GPU node: gpu_id not 0, or simd_count / gfx_target_version not 0. */
  isGpu: boolean;
  /** false for a GPU node without a usable gpu_id file; true for CPU nodes (0 by definition). */
  gpuIdKnown: boolean;
  name: string;
  properties: Properties;
  memBanks: MemBank[];
  /** Links to existing other nodes, from io_links/, in folder order. */
  ioLinks: IoLink[];
  /** Links to existing other nodes, from p2p_links/, in folder order. */
  p2pLinks: IoLink[];
}

export interface TopologyGpu {
  node: number;
  /** 0 when gpuIdKnown is false: the GPU is then known by its node only. */
  gpuId: number;
  gpuIdKnown: boolean;
  name: string;
  simdCount: number;
  /** XGMI hive id; 0n = not in a hive. */
  hiveId: bigint;
  drmRenderMinor: number;
  /** Absent on kernels that do not report it. */
  numXcc?: number;
  /** major*10000 + minor*100 + stepping (90402 = gfx942); absent when not reported. */
  gfxTargetVersion?: number;
  /** PCI vendor id (0x1002); absent when not reported. */
  vendorId?: number;
  /** PCI device id; absent when not reported. */
  deviceId?: number;
  /** Sum of the frame-buffer mem_banks. */
  vram_bytes: number;
  properties: Properties;
  ioLinks: IoLink[];
  p2pLinks: IoLink[];
}

export interface Hive {
  hiveId: bigint;
  /** The members whose gpu_id is known; every member, by node, is in `gpus` with this hiveId. */
  gpuIds: number[];
}

export interface Topology {
  /** The directory read (…/topology). */
  dir: string;
  nodes: TopologyNode[];
  gpus: TopologyGpu[];
  hives: Hive[];
  /** Links that lead nowhere in this tree, by node, kind and index. */
  danglingLinks: DanglingLink[];
  /** What is not as the kernel writes it, in reading order, at most TOPOLOGY_WARNINGS_MAX. */
  warnings: TopologyWarning[];
  /** Warnings beyond TOPOLOGY_WARNINGS_MAX, counted only. */
  warningsOmitted: number;
}

/** Read buffer of sysfsRead: one file at a time (reads are synchronous). */
let sysfsBuffer: Buffer | undefined;

/**
 * A sysfs text file, reading at most SYSFS_FILE_MAX_bytes + 1 bytes.
 * @throws ConfigError when missing, unreadable or larger than SYSFS_FILE_MAX_bytes.
 */
function sysfsRead(path: string): string {
  sysfsBuffer ??= Buffer.alloc(SYSFS_FILE_MAX_bytes + 1);
  const buf = sysfsBuffer;
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch (e) {
    throw new ConfigError({ file: path, line: 1, col: 1 }, "", "a readable sysfs file", (e as Error).message);
  }
  let length = 0;
  try {
    // Each read returns at least one byte until end of file: at most buf.length reads.
    while (length < buf.length) {
      const n = readSync(fd, buf, length, buf.length - length, null);
      if (n === 0) break;
      length += n;
    }
  } catch (e) {
    throw new ConfigError({ file: path, line: 1, col: 1 }, "", "a readable sysfs file", (e as Error).message);
  } finally {
    closeSync(fd);
  }
  if (length > SYSFS_FILE_MAX_bytes) {
    throw new ConfigError({ file: path, line: 1, col: 1 }, "", `at most ${SYSFS_FILE_MAX_bytes} bytes`);
  }
  return buf.toString("utf8", 0, length);
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

/** A property as a number when present. @throws ConfigError beyond 2^53 */
function propOptional(p: Properties, key: string, file: string): number | undefined {
  return p.has(key) ? propNumber(p, key, file) : undefined;
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

/** The LLVM target name of a gfx_target_version: 90402 -> gfx942, 90010 -> gfx90a. */
export function gfxTargetName(gfxTargetVersion: number): string {
  const major = Math.floor(gfxTargetVersion / 10000);
  const minor = Math.floor(gfxTargetVersion / 100) % 100;
  const stepping = gfxTargetVersion % 100;
  return `gfx${major}${minor.toString(16)}${stepping.toString(16)}`;
}

/** Warnings of one read, bounded by TOPOLOGY_WARNINGS_MAX. */
class WarningList {
  readonly list: TopologyWarning[] = [];
  omitted = 0;
  add(kind: TopologyWarningKind, file: string, what: string): void {
    if (this.list.length < TOPOLOGY_WARNINGS_MAX) this.list.push({ kind, file, message: `${file}: ${what}` });
    else this.omitted++;
  }
}

/** A link as read from `<kind>/<index>/properties` of node `node`, before it is resolved. */
interface LinkRead {
  kind: LinkKind;
  index: number;
  file: string;
  link: IoLink;
}

/** The links of one folder of node `node`, keyed by that node. @throws ConfigError */
function linksRead(nd: string, node: number, kind: LinkKind, warnings: WarningList): LinkRead[] {
  return indexedDirs(join(nd, kind), TOPOLOGY_NODE_ENTRIES_MAX).map((index) => {
    const file = join(nd, kind, String(index), "properties");
    const p = propertiesParse(sysfsRead(file), file);
    const nodeFromFile = p.get("node_from");
    if (nodeFromFile !== undefined && nodeFromFile !== BigInt(node)) {
      warnings.add(
        "link-node-from-mismatch",
        file,
        `node_from ${nodeFromFile} but the link sits under node ${node}; read as a link of node ${node} (a tree copied or spliced from another host?)`,
      );
    }
    const link: IoLink = {
      type: propNumber(p, "type", file),
      nodeFrom: node,
      nodeTo: propNumber(p, "node_to", file),
      weight: propNumber(p, "weight", file),
      minBandwidth_mbps: propNumber(p, "min_bandwidth", file),
      maxBandwidth_mbps: propNumber(p, "max_bandwidth", file),
      properties: p,
    };
    return { kind, index, file, link };
  });
}

/** Warn when `<count key>` of the node's properties is not the number of folders in `dir`. */
function entriesCountCheck(p: Properties, key: string, dir: string, found: number, propsFile: string, warnings: WarningList): void {
  const said = p.get(key);
  if (said === undefined || said === BigInt(found)) return;
  const here = existsSync(dir) ? `${found} folder(s) here` : "the folder is missing";
  warnings.add("entries-count-mismatch", dir, `${key} ${said} in ${propsFile} but ${here}; read what is there`);
}

/** What is read of one node before its links are resolved against the whole tree. */
interface NodeRead {
  node: TopologyNode;
  links: LinkRead[];
}

/** One node folder. @throws ConfigError naming the missing or malformed file */
function nodeRead(nodesDir: string, n: number, warnings: WarningList): NodeRead {
  const nd = join(nodesDir, String(n));
  const propsFile = join(nd, "properties");
  const properties = propertiesParse(sysfsRead(propsFile), propsFile);
  const bankIndexes = indexedDirs(join(nd, "mem_banks"), TOPOLOGY_NODE_ENTRIES_MAX);
  const memBanks: MemBank[] = bankIndexes.map((b) => {
    const f = join(nd, "mem_banks", String(b), "properties");
    const p = propertiesParse(sysfsRead(f), f);
    return { heapType: propNumber(p, "heap_type", f), size_bytes: propNumber(p, "size_in_bytes", f), properties: p };
  });
  const gpuIdFile = join(nd, "gpu_id");
  const gpuIdFilePresent = existsSync(gpuIdFile);
  const gpuId = gpuIdFilePresent ? integerFileRead(gpuIdFile) : 0;
  const simdCount = propNumber(properties, "simd_count", propsFile);
  const gfxTargetVersion = propNumber(properties, "gfx_target_version", propsFile);
  // The kernel writes simd_count and gfx_target_version as 0 for CPU nodes, gpu_id 0 too.
  const propertiesSayGpu = simdCount > 0 || gfxTargetVersion > 0;
  const isGpu = gpuId !== 0 || propertiesSayGpu;
  const evidence = `simd_count ${simdCount}, gfx_target_version ${gfxTargetVersion}`;
  if (isGpu && !gpuIdFilePresent) {
    warnings.add("gpu-id-missing", gpuIdFile, `missing; node ${n} is a GPU by its properties (${evidence}): reported by node with gpu_id unknown (0), not usable for /dev/kfd calls`);
  } else if (isGpu && gpuId === 0) {
    warnings.add("gpu-id-zero", gpuIdFile, `0, the gpu_id of a CPU, but node ${n} is a GPU by its properties (${evidence}): reported by node with gpu_id unknown`);
  }
  const io = linksRead(nd, n, "io_links", warnings);
  const p2p = linksRead(nd, n, "p2p_links", warnings);
  const nameFile = join(nd, "name");
  entriesCountCheck(properties, "mem_banks_count", join(nd, "mem_banks"), bankIndexes.length, propsFile, warnings);
  entriesCountCheck(properties, "io_links_count", join(nd, "io_links"), io.length, propsFile, warnings);
  entriesCountCheck(properties, "p2p_links_count", join(nd, "p2p_links"), p2p.length, propsFile, warnings);
  return {
    node: {
      node: n,
      gpuId,
      isGpu,
      gpuIdKnown: !isGpu || gpuId !== 0,
      name: existsSync(nameFile) ? sysfsRead(nameFile).trim() : "",
      properties,
      memBanks,
      ioLinks: [],
      p2pLinks: [],
    },
    links: [...io, ...p2p],
  };
}

/**
 * Sort each read link into its node's links or the dangling list, and check XGMI links
 * against hive_id. Pure over what was read.
 */
function linksResolve(read: NodeRead[], warnings: WarningList): DanglingLink[] {
  const byNode = new Map(read.map((r) => [r.node.node, r.node]));
  const numbers = read.map((r) => r.node.node);
  const contiguous = numbers.every((n, i) => n === numbers[0]! + i);
  const nodeList = contiguous && numbers.length > 1 ? `${numbers[0]}..${numbers.at(-1)}` : numbers.join(", ");
  const dangling: DanglingLink[] = [];
  for (const { node, links } of read) {
    for (const { kind, index, file, link } of links) {
      const to = byNode.get(link.nodeTo);
      if (to === undefined || to === node) {
        const reason = to === undefined ? "no-such-node" : "self";
        if (to === undefined) warnings.add("link-dangling", file, `node_to ${link.nodeTo} names no node of this topology (nodes ${nodeList}); link left out`);
        else warnings.add("link-to-self", file, `node_to ${link.nodeTo} is the link's own node; link left out`);
        dangling.push({ node: node.node, kind, index, file, reason, link });
        continue;
      }
      if (link.type === IO_LINK_TYPE.XGMI && node.isGpu && to.isGpu) {
        const hiveFrom = node.properties.get("hive_id") ?? 0n;
        const hiveTo = to.properties.get("hive_id") ?? 0n;
        if (hiveFrom !== hiveTo) {
          warnings.add(
            "link-hive-mismatch",
            file,
            `XGMI link from node ${node.node} (hive_id 0x${hiveFrom.toString(16)}) to node ${to.node} (hive_id 0x${hiveTo.toString(16)}): XGMI joins GPUs of one hive; kept as read`,
          );
        }
      }
      (kind === "io_links" ? node.ioLinks : node.p2pLinks).push(link);
    }
  }
  return dangling;
}

/**
 * Read the whole topology under `root` (default /sys/class/kfd/kfd). What is incomplete or
 * inconsistent but readable is reported in `warnings` (see the file comment).
 * @throws ConfigError naming the file (and line) that is missing or malformed.
 */
export function topologyRead(root: string = KFD_SYSFS_ROOT): Topology {
  const dir = topologyDirOf(root);
  const nodesDir = join(dir, "nodes");
  if (!existsSync(nodesDir)) {
    throw new ConfigError({ file: nodesDir, line: 1, col: 1 }, "", "a KFD topology directory (no amdgpu KFD driver on this host?)");
  }
  const warnings = new WarningList();
  const read = indexedDirs(nodesDir, TOPOLOGY_NODES_MAX).map((n) => nodeRead(nodesDir, n, warnings));
  const danglingLinks = linksResolve(read, warnings);
  const nodes = read.map((r) => r.node);
  const gpus: TopologyGpu[] = nodes
    .filter((n) => n.isGpu)
    .map((n) => {
      const f = join(nodesDir, String(n.node), "properties");
      const gpu: TopologyGpu = {
        node: n.node,
        gpuId: n.gpuId,
        gpuIdKnown: n.gpuIdKnown,
        name: n.name,
        simdCount: propNumber(n.properties, "simd_count", f),
        hiveId: n.properties.get("hive_id") ?? 0n,
        drmRenderMinor: propNumber(n.properties, "drm_render_minor", f),
        vram_bytes: n.memBanks
          .filter((b) => b.heapType === HEAP_TYPE_FB_PUBLIC || b.heapType === HEAP_TYPE_FB_PRIVATE)
          .reduce((s, b) => s + b.size_bytes, 0),
        properties: n.properties,
        ioLinks: n.ioLinks,
        p2pLinks: n.p2pLinks,
      };
      const numXcc = propOptional(n.properties, "num_xcc", f);
      if (numXcc !== undefined) gpu.numXcc = numXcc;
      const gfxTargetVersion = propOptional(n.properties, "gfx_target_version", f);
      if (gfxTargetVersion !== undefined) gpu.gfxTargetVersion = gfxTargetVersion;
      const vendorId = propOptional(n.properties, "vendor_id", f);
      if (vendorId !== undefined) gpu.vendorId = vendorId;
      const deviceId = propOptional(n.properties, "device_id", f);
      if (deviceId !== undefined) gpu.deviceId = deviceId;
      return gpu;
    });
  const byHive = new Map<bigint, number[]>();
  for (const g of gpus) {
    if (g.hiveId === 0n) continue;
    const list = byHive.get(g.hiveId) ?? [];
    if (g.gpuIdKnown) list.push(g.gpuId);
    byHive.set(g.hiveId, list);
  }
  const hives = [...byHive].map(([hiveId, gpuIds]) => ({ hiveId, gpuIds }));
  return { dir, nodes, gpus, hives, danglingLinks, warnings: warnings.list, warningsOmitted: warnings.omitted };
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
