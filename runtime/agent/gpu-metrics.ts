/**
 * The GPU families of /metrics, named and labelled as ROCm's device-metrics-exporter (DME)
 * names them, so DME dashboards read svmrt unchanged (reference/exporters.md). Values come
 * from the latest samples; a field missing from the latest reading of a GPU removes that one
 * series (never the family, never the other GPUs). DME's units are kept where DME has the
 * name (VRAM and GTT in MiB, as DME reports them; temperatures °C; power W; activity %);
 * families DME does not have use base units.
 */
import type { Registry } from "./prom-lib.ts";
import { MultiCounter, MultiGauge } from "./prom.ts";
import type { GpuInventoryEntry } from "../smi/inventory.ts";
import type { SmiGroup, Values } from "../smi/readings.ts";

/** DME labels every GPU series carries. */
export const GPU_LABELS = [
  "gpu_id",
  "gpu_uuid",
  "serial_number",
  "card_model",
  "hostname",
  "gpu_partition_id",
  "gpu_compute_partition_type",
  "gpu_memory_partition_type",
  "deployment_mode",
] as const;
export type GpuLabels = Record<(typeof GPU_LABELS)[number], string>;

const MiB = 1024 * 1024;

interface FamilySpec {
  /** Name without the configured prefix. */
  name: string;
  /**
   * counter: a running total the library keeps (ECC errors, PCIe replays): exported as a
   * Prometheus counter, so the `_total` suffix is valid; a total that goes down (a GPU reset)
   * restarts the series.
   */
  type?: "counter";
  help: string;
  group: SmiGroup;
  /** Value from a reading; undefined omits the series. */
  value(v: Values): number | undefined;
}

const field = (name: string, scale = 1) => (v: Values) => (v[name] === undefined ? undefined : v[name]! / scale);

/** Every GPU family: DME's name, its help, the group that feeds it. */
export const GPU_FAMILIES: readonly FamilySpec[] = [
  { name: "gpu_edge_temperature", help: "Edge temperature, degrees Celsius (DME name)", group: "temperature", value: field("edge_c") },
  { name: "gpu_junction_temperature", help: "Junction (hotspot) temperature, degrees Celsius (DME name)", group: "temperature", value: field("junction_c") },
  { name: "gpu_memory_temperature", help: "VRAM temperature, degrees Celsius (DME name)", group: "temperature", value: field("vram_c") },
  { name: "gpu_package_power", help: "Current socket power, watts (DME name)", group: "power", value: field("socket_w") },
  { name: "gpu_average_package_power", help: "Average socket power, watts (DME name)", group: "power", value: field("average_w") },
  { name: "gpu_power_limit_watts", help: "Socket power cap, watts", group: "power", value: field("limit_w") },
  { name: "gpu_gfx_activity", help: "Graphics engine activity, percent (DME name)", group: "activity", value: field("gfx_pct") },
  { name: "gpu_umc_activity", help: "Memory controller activity, percent (DME name)", group: "activity", value: field("umc_pct") },
  { name: "gpu_mm_activity", help: "Multimedia engine activity, percent", group: "activity", value: field("mm_pct") },
  { name: "gpu_total_vram", help: "Total VRAM, MiB (DME name and unit)", group: "memory", value: field("vram_total_bytes", MiB) },
  { name: "gpu_used_vram", help: "Used VRAM, MiB (DME name and unit)", group: "memory", value: field("vram_used_bytes", MiB) },
  {
    name: "gpu_free_vram",
    help: "Free VRAM, MiB (DME name and unit)",
    group: "memory",
    value: (v) => (v.vram_total_bytes === undefined || v.vram_used_bytes === undefined ? undefined : (v.vram_total_bytes - v.vram_used_bytes) / MiB),
  },
  { name: "gpu_total_visible_vram", help: "Total CPU-visible VRAM, MiB", group: "memory", value: field("vis_vram_total_bytes", MiB) },
  { name: "gpu_used_visible_vram", help: "Used CPU-visible VRAM, MiB", group: "memory", value: field("vis_vram_used_bytes", MiB) },
  { name: "gpu_total_gtt", help: "Total GTT, MiB (DME name and unit)", group: "memory", value: field("gtt_total_bytes", MiB) },
  { name: "gpu_used_gtt", help: "Used GTT, MiB (DME name and unit)", group: "memory", value: field("gtt_used_bytes", MiB) },
  { name: "pcie_speed", help: "PCIe transfer rate, MT/s (DME name)", group: "pcie", value: field("pcie_speed_mts") },
  { name: "pcie_bandwidth", help: "PCIe bandwidth, Mb/s (DME name)", group: "pcie", value: field("pcie_bandwidth_mbs") },
  { name: "pcie_lanes", help: "Active PCIe lanes", group: "pcie", value: field("pcie_width") },
  { name: "gpu_pcie_replays_total", help: "PCIe replays since boot", group: "pcie", type: "counter", value: field("pcie_replay_count") },
  { name: "gpu_ecc_correct_total", help: "Correctable ECC errors since boot (DME name)", group: "ecc", type: "counter", value: field("ecc_correctable") },
  { name: "gpu_ecc_uncorrect_total", help: "Uncorrectable ECC errors since boot (DME name)", group: "ecc", type: "counter", value: field("ecc_uncorrectable") },
  { name: "gpu_xgmi_lanes", help: "XGMI lanes", group: "xgmi", value: field("xgmi_lanes") },
];

export interface GpuMetricsOptions {
  registries: Registry[];
  /** DME's MetricsFieldPrefix, e.g. "amd_" (default none). */
  prefix?: string;
  /** DME's field selection: family names to export; empty or absent = all. */
  fields?: readonly string[];
  hostname: string;
  /** Extra constant labels (DME's `Labels`). */
  labels?: Record<string, string>;
}

/** Labels of one GPU, from its inventory entry. */
export function gpuLabelsOf(g: GpuInventoryEntry, hostname: string): GpuLabels {
  return {
    gpu_id: String(g.index),
    gpu_uuid: g.uuid,
    serial_number: g.serial ?? "",
    card_model: g.cardModel ?? "",
    hostname,
    gpu_partition_id: g.partitionId === undefined ? "NA" : String(g.partitionId),
    gpu_compute_partition_type: g.computePartition ?? "",
    gpu_memory_partition_type: g.memoryPartition ?? "",
    deployment_mode: g.deploymentMode,
  };
}

/** The GPU families on the agent's registries. */
export class GpuMetrics {
  private readonly gauges = new Map<string, { spec: FamilySpec; gauge: MultiGauge | MultiCounter }>();
  /** Last total seen per counter series (family + labels). */
  private readonly totals = new Map<string, number>();
  private readonly nodes: MultiCounter;
  private readonly health: MultiGauge;
  private labels = new Map<number, GpuLabels>();
  /** Per GPU index: whether each group's latest read succeeded. */
  private readonly groupsOk = new Map<number, Map<SmiGroup, boolean>>();
  private readonly extra: Record<string, string>;

  constructor(private readonly opts: GpuMetricsOptions) {
    const prefix = opts.prefix ?? "";
    const selected = new Set(opts.fields ?? []);
    this.extra = opts.labels ?? {};
    const labelNames = [...GPU_LABELS, ...Object.keys(this.extra)];
    for (const spec of GPU_FAMILIES) {
      if (selected.size > 0 && !selected.has(spec.name)) continue;
      const cfg = { name: prefix + spec.name, help: spec.help, labelNames };
      const gauge = spec.type === "counter" ? new MultiCounter(opts.registries, cfg) : new MultiGauge(opts.registries, cfg);
      this.gauges.set(spec.name, { spec, gauge });
    }
    // DME's name; typed counter so its `_total` suffix is valid: GPUs inventoried, never lowered.
    this.nodes = new MultiCounter(opts.registries, { name: `${prefix}gpu_nodes_total`, help: "GPUs on this host (DME name)", labelNames: ["hostname"] });
    this.health = new MultiGauge(opts.registries, { name: `${prefix}gpu_health`, help: "1 while the GPU's latest reads succeed, 0 when every probe of its latest reads failed (DME name)", labelNames });
  }

  /** (Re)label the GPUs after an inventory read. */
  inventorySet(gpus: readonly GpuInventoryEntry[]): void {
    const next = new Map<number, GpuLabels>();
    for (const g of gpus) next.set(g.index, gpuLabelsOf(g, this.opts.hostname));
    for (const [i, old] of this.labels) {
      const now = next.get(i);
      if (now === undefined || JSON.stringify(now) !== JSON.stringify(old)) {
        for (const { spec, gauge } of this.gauges.values()) {
          gauge.remove({ ...old, ...this.extra });
          this.totals.delete(`${spec.name}/${i}`);
        }
        this.health.remove({ ...old, ...this.extra });
        this.groupsOk.delete(i);
      }
    }
    this.labels = next;
    const seen = this.totals.get("gpu_nodes_total") ?? 0;
    if (gpus.length > seen) {
      this.nodes.inc({ hostname: this.opts.hostname }, gpus.length - seen);
      this.totals.set("gpu_nodes_total", gpus.length);
    }
  }

  /**
   * The latest reading of `group` on GPU `index`: set its families, remove absent fields.
   * `healthy`: the read gave values (or failed nowhere).
   */
  readingSet(index: number, group: SmiGroup, values: Values, healthy: boolean): void {
    const l = this.labels.get(index);
    if (l === undefined) return;
    const labels = { ...l, ...this.extra };
    for (const { spec, gauge } of this.gauges.values()) {
      if (spec.group !== group) continue;
      const v = spec.value(values);
      if (gauge instanceof MultiGauge) {
        if (v === undefined || !Number.isFinite(v)) gauge.remove(labels);
        else gauge.set(labels, v);
        continue;
      }
      const key = `${spec.name}/${index}`;
      const last = this.totals.get(key);
      if (v === undefined || !Number.isFinite(v) || v < 0) {
        gauge.remove(labels);
        this.totals.delete(key);
      } else if (last === undefined || v < last) {
        gauge.remove(labels);
        gauge.inc(labels, v);
        this.totals.set(key, v);
      } else if (v > last) {
        gauge.inc(labels, v - last);
        this.totals.set(key, v);
      }
    }
    // Healthy while some group's latest read succeeded: one group that always fails (a
    // field the GPU lacks) does not make the GPU flap.
    let groups = this.groupsOk.get(index);
    if (groups === undefined) {
      groups = new Map();
      this.groupsOk.set(index, groups);
    }
    groups.set(group, healthy);
    this.health.set(labels, [...groups.values()].some((ok) => ok) ? 1 : 0);
  }
}
