/**
 * What the sampler reads per metric group: each group is a list of probes, one library call
 * each, and a probe yields named numeric values. A probe that answers NOT_SUPPORTED is
 * skipped for that GPU (and re-probed rarely by the caller); any other failure is reported
 * for that probe only: the group's other probes still count.
 */
import { SmiError } from "../errors.ts";
import type { MetricGroup } from "../policy/contracts/sampling.ts";
import type { SmiGpu, SmiSession } from "./session.ts";

/** Numeric values of one reading, by field name (units last in the name). */
export type Values = Record<string, number>;

export interface Probe {
  /** Stable id, e.g. `temperature.edge`, `power`. */
  id: string;
  read(s: SmiSession, g: SmiGpu, into: Values): void;
}

const put = (into: Values, name: string, v: number | undefined): void => {
  if (v !== undefined && Number.isFinite(v)) into[name] = v;
};

const memoryProbe = (kind: "vram" | "vis_vram" | "gtt"): Probe => ({
  id: `memory.${kind}`,
  read(s, g, into) {
    const m = s.memory(g, kind);
    put(into, `${kind}_used_bytes`, m.usedBytes);
    put(into, `${kind}_total_bytes`, m.totalBytes);
  },
});

/** The probes of every SMI group. `svm` comes from KFD events, not from the library. */
export const GROUP_PROBES: Record<Exclude<MetricGroup, "svm">, readonly Probe[]> = {
  temperature: [
    { id: "temperature.edge", read: (s, g, into) => put(into, "edge_c", s.temperature(g, "edge")) },
    { id: "temperature.junction", read: (s, g, into) => put(into, "junction_c", s.temperature(g, "junction")) },
    { id: "temperature.vram", read: (s, g, into) => put(into, "vram_c", s.temperature(g, "vram")) },
  ],
  power: [
    {
      id: "power",
      read(s, g, into) {
        const p = s.power(g);
        put(into, "socket_w", p.socketW);
        put(into, "average_w", p.averageW);
        put(into, "limit_w", p.limitW);
      },
    },
  ],
  activity: [
    {
      id: "activity",
      read(s, g, into) {
        const a = s.activity(g);
        put(into, "gfx_pct", a.gfxPct);
        put(into, "umc_pct", a.umcPct);
        put(into, "mm_pct", a.mmPct);
      },
    },
  ],
  memory: [memoryProbe("vram"), memoryProbe("vis_vram"), memoryProbe("gtt")],
  xgmi: [
    {
      id: "xgmi",
      read(s, g, into) {
        const x = s.xgmi(g);
        // 0 lanes: the library did not tell (rocm-smi never does).
        if (x.lanes > 0) put(into, "xgmi_lanes", x.lanes);
        put(into, "xgmi_index", x.index);
      },
    },
  ],
  pcie: [
    {
      id: "pcie",
      read(s, g, into) {
        const p = s.pcie(g);
        put(into, "pcie_width", p.width);
        put(into, "pcie_speed_mts", p.speedMts);
        put(into, "pcie_bandwidth_mbs", p.bandwidthMbs);
        put(into, "pcie_replay_count", p.replayCount);
      },
    },
  ],
  ecc: [
    {
      id: "ecc",
      read(s, g, into) {
        const e = s.ecc(g);
        put(into, "ecc_correctable", e.correctable);
        put(into, "ecc_uncorrectable", e.uncorrectable);
        put(into, "ecc_deferred", e.deferred);
      },
    },
  ],
};

export type SmiGroup = keyof typeof GROUP_PROBES;
export const SMI_GROUPS = Object.keys(GROUP_PROBES) as SmiGroup[];

export interface GroupReading {
  values: Values;
  /** Probes that answered NOT_SUPPORTED in this read. */
  unsupported: string[];
  /** Other failures, probe id → "STATUS_NAME: message". */
  errors: Record<string, string>;
}

/**
 * Read one group of one GPU inside an open session, skipping `skip` probes.
 * Never throws for a library status; programming errors (stale handles) propagate.
 */
export function groupRead(s: SmiSession, g: SmiGpu, group: SmiGroup, skip: ReadonlySet<string> = new Set()): GroupReading {
  const out: GroupReading = { values: {}, unsupported: [], errors: {} };
  for (const probe of GROUP_PROBES[group]) {
    if (skip.has(probe.id)) continue;
    try {
      probe.read(s, g, out.values);
    } catch (e) {
      if (!(e instanceof SmiError) || e.statusName === "STALE_HANDLE" || e.statusName === "NO_SESSION") throw e;
      if (e.statusName === "NOT_SUPPORTED") out.unsupported.push(probe.id);
      else out.errors[probe.id] = `${e.statusName}: ${e.message}`;
    }
  }
  return out;
}
