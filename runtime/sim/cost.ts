/**
 * The simulator's cost model (reference/cost-model.md). Every parameter is declared once
 * below with its unit, default and source, and a machine profile may override any of them
 * under `cost:`. Link bandwidths are per GPU in the profile.
 */
import { PAGE_BYTES, SDMA_CHUNK_PAGES } from "../svm/constants.ts";
import type { SvmCosts } from "../svm/model.ts";

export interface CostParamSpec {
  /** Default value in the unit the name ends with. */
  value: number;
  min: number;
  max: number;
  source: string;
}

/** Every cost parameter: name (unit last), default, bounds, where the number comes from. */
export const COST_PARAMS = {
  fault_service_ns: {
    value: 45_000,
    min: 0,
    max: 1e9,
    source: "UVMSmart (GPGPU-Sim 3.2, GTX 1080 Ti): far-fault latency 66,645 cycles ≈ 45 µs",
  },
  fault_drop_ns: {
    value: 1_000,
    min: 0,
    max: 1e9,
    source: "assumption: a dropped duplicate costs the fault worker a lookup and a timestamp test",
  },
  fault_retry_ns: {
    value: 100_000,
    min: 1,
    max: 1e9,
    source: "assumption: time until the GPU replays a fault the driver dropped",
  },
  map_base_ns: {
    value: 2_000,
    min: 0,
    max: 1e9,
    source: "assumption: one GPU page-table update submission plus TLB flush",
  },
  map_per_page_ns: {
    value: 0.07,
    min: 0,
    max: 1e6,
    source: "UVMSmart: page-table walk 100 cycles ≈ 70 ns per 2 MiB PDE, taken per 4 KiB here as 0.07 ns amortised",
  },
  queue_evict_ns: {
    value: 50_000,
    min: 0,
    max: 1e9,
    source: "assumption: preempting the queues of a process on one GPU (CWSR) ≈ 50 µs",
  },
  transfer_ref_gbps: {
    value: 16,
    min: 0.001,
    max: 1e5,
    source: "UVMSmart transfer curve, measured on a 16 GB/s link",
  },
  transfer_4k_ns: { value: 1_800, min: 0, max: 1e9, source: "UVMSmart: 4 KiB ≈ 1.8 µs on 16 GB/s" },
  transfer_64k_ns: { value: 5_900, min: 0, max: 1e9, source: "UVMSmart: 64 KiB ≈ 5.9 µs on 16 GB/s" },
  transfer_2m_ns: { value: 327_000, min: 0, max: 1e10, source: "UVMSmart: 2 MiB ≈ 327 µs on 16 GB/s" },
  gpu_access_ns: {
    value: 1,
    min: 0,
    max: 1e9,
    source: "assumption: compute time per page access, besides the memory time",
  },
  cpu_access_ns: {
    value: 50,
    min: 0,
    max: 1e9,
    source: "assumption: CPU time to touch one 4 KiB page (≈ 80 GB/s DRAM)",
  },
  deferred_work_ns: {
    value: 4_000,
    min: 0,
    max: 1e9,
    source: "assumption: the deferred-list worker runs one scheduler tick after munmap queues it",
  },
  thrash_window_ns: {
    value: 10_000_000,
    min: 0,
    max: 1e12,
    source: "assumption: 5x the 2 ms duplicate-fault window; a metric, not a cost: it changes only thrashEvents",
  },
} satisfies Record<string, CostParamSpec>;

export type CostParamName = keyof typeof COST_PARAMS;
export type CostParams = { [K in CostParamName]: number };

export function defaultCostParams(): CostParams {
  return Object.fromEntries(Object.entries(COST_PARAMS).map(([k, v]) => [k, v.value])) as CostParams;
}

/** A decimal number as the command line gives one: digits, an optional fraction and exponent. */
const COST_VALUE_RE = /^-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;
/** Longest NAME=VALUE quoted back in an error, characters. */
const COST_OVERRIDE_QUOTED_MAX = 80;

/** True when `name` is one of COST_PARAMS' own names (never an Object.prototype member). */
export function isCostParamName(name: string): name is CostParamName {
  return Object.hasOwn(COST_PARAMS, name);
}

/**
 * One `NAME=VALUE` override of a cost parameter: NAME one of COST_PARAMS, VALUE a decimal
 * number within the parameter's bounds (no blanks, no hex, no Infinity).
 * @returns the name and value, or the reason it is refused (the caller adds the flag).
 */
export function costOverrideParse(kv: string): { name: CostParamName; value: number } | { error: string } {
  const quoted = kv.length > COST_OVERRIDE_QUOTED_MAX ? `${kv.slice(0, COST_OVERRIDE_QUOTED_MAX)}...` : kv;
  const eq = kv.indexOf("=");
  const name = eq < 0 ? kv : kv.slice(0, eq);
  if (eq < 0 || !isCostParamName(name)) {
    return { error: `'${quoted}': expected NAME=VALUE with NAME one of ${Object.keys(COST_PARAMS).join(", ")}` };
  }
  const raw = kv.slice(eq + 1);
  const spec = COST_PARAMS[name];
  const value = COST_VALUE_RE.test(raw) ? Number(raw) : Number.NaN;
  if (!Number.isFinite(value) || value < spec.min || value > spec.max) {
    return { error: `'${quoted}': ${name} must be a decimal number from ${spec.min} to ${spec.max}, got '${raw}'` };
  }
  return { name, value };
}

/** Per-GPU link numbers a profile gives, GB/s (1e9 bytes/s). */
export interface GpuLinks {
  hbmGbps: number;
  pcieH2dGbps: number;
  pcieD2hGbps: number;
  xgmiGbps: number;
  hiveId: number;
  id: number;
  appApu: boolean;
}

const KIB4 = 4096;
const KIB64 = 65536;
const MIB2 = 2097152;

/**
 * Time of one SDMA chunk (≤ 2 MiB) on a link, ns: the UVMSmart size curve, piecewise linear
 * between 4 KiB, 64 KiB and 2 MiB, scaled by reference bandwidth / link bandwidth.
 */
export function chunkNs(p: CostParams, bytes: number, linkGbps: number): number {
  let ref: number;
  if (bytes <= KIB4) ref = p.transfer_4k_ns;
  else if (bytes <= KIB64) ref = p.transfer_4k_ns + ((bytes - KIB4) * (p.transfer_64k_ns - p.transfer_4k_ns)) / (KIB64 - KIB4);
  else ref = p.transfer_64k_ns + ((bytes - KIB64) * (p.transfer_2m_ns - p.transfer_64k_ns)) / (MIB2 - KIB64);
  return (ref * p.transfer_ref_gbps) / linkGbps;
}

/** The SvmCosts the model uses, built from parameters and per-GPU links. */
export class CostModel implements SvmCosts {
  readonly faultServiceNs: number;
  readonly faultDropNs: number;
  readonly queueEvictNs: number;
  /** Per GPU index, ns per page access by where the page lives: local, sysmem, XGMI peer, PCIe peer. */
  readonly accessLocalNs: Float64Array;
  readonly accessSysNs: Float64Array;
  readonly accessXgmiNs: Float64Array;
  readonly accessPeerPcieNs: Float64Array;
  private readonly fullChunkH2d: Float64Array;
  private readonly fullChunkD2h: Float64Array;

  constructor(
    readonly params: CostParams,
    readonly links: GpuLinks[],
  ) {
    this.faultServiceNs = params.fault_service_ns;
    this.faultDropNs = params.fault_drop_ns;
    this.queueEvictNs = params.queue_evict_ns;
    const n = links.length;
    this.accessLocalNs = new Float64Array(n);
    this.accessSysNs = new Float64Array(n);
    this.accessXgmiNs = new Float64Array(n);
    this.accessPeerPcieNs = new Float64Array(n);
    this.fullChunkH2d = new Float64Array(n);
    this.fullChunkD2h = new Float64Array(n);
    links.forEach((l, i) => {
      const a = params.gpu_access_ns;
      this.accessLocalNs[i] = a + PAGE_BYTES / l.hbmGbps;
      // An APU's "system memory" is its own HBM.
      this.accessSysNs[i] = a + PAGE_BYTES / (l.appApu ? l.hbmGbps : Math.min(l.pcieH2dGbps, l.pcieD2hGbps));
      this.accessXgmiNs[i] = a + PAGE_BYTES / l.xgmiGbps;
      this.accessPeerPcieNs[i] = a + PAGE_BYTES / Math.min(l.pcieH2dGbps, l.pcieD2hGbps);
      this.fullChunkH2d[i] = chunkNs(params, SDMA_CHUNK_PAGES * PAGE_BYTES, l.pcieH2dGbps);
      this.fullChunkD2h[i] = chunkNs(params, SDMA_CHUNK_PAGES * PAGE_BYTES, l.pcieD2hGbps);
    });
  }

  copyNs(fromLoc: number, _toLoc: number, pages: number, engineGpu: number): number {
    const l = this.links[engineGpu]!;
    const h2d = fromLoc === 0;
    const gbps = h2d ? l.pcieH2dGbps : l.pcieD2hGbps;
    const full = Math.floor(pages / SDMA_CHUNK_PAGES);
    const rest = pages - full * SDMA_CHUNK_PAGES;
    let t = full * (h2d ? this.fullChunkH2d[engineGpu]! : this.fullChunkD2h[engineGpu]!);
    if (rest > 0) t += chunkNs(this.params, rest * PAGE_BYTES, gbps);
    return t;
  }

  mapNs(_gpu: number, pages: number): number {
    return this.params.map_base_ns + pages * this.params.map_per_page_ns;
  }

  /** ns for GPU index `gi` to access one page living at `loc` (gpu_id or 0). */
  accessNs(gi: number, loc: number): number {
    const me = this.links[gi]!;
    if (loc === 0) return this.accessSysNs[gi]!;
    if (loc === me.id) return this.accessLocalNs[gi]!;
    for (const o of this.links) {
      if (o.id === loc) return o.hiveId !== 0 && o.hiveId === me.hiveId ? this.accessXgmiNs[gi]! : this.accessPeerPcieNs[gi]!;
    }
    return this.accessPeerPcieNs[gi]!;
  }
}
