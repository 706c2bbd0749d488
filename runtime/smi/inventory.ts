/**
 * The GPU inventory, keyed by UUID: what identifies each GPU (DME's labels) and how the GPUs
 * link. Read inside a session; fields a library could not tell yet (deployment mode
 * `unknown`, a missing serial) are re-read later, never cached as known (gpu-agent's
 * deployment_mode race, reference/amdsmi.md).
 */
import { SmiError } from "../errors.ts";
import type { SmiGpuStatic, SmiLinkType } from "./library.ts";
import type { SmiSession } from "./session.ts";

export interface GpuInventoryEntry extends SmiGpuStatic {
  /** Position in the library's order: DME's `gpu_id` label. */
  index: number;
  /** XGMI hive id as hex text; absent for a GPU in no hive or when the library cannot tell. */
  hiveId?: string;
  /** Link type to every other GPU by index (absent when the library cannot tell). */
  links?: SmiLinkType[];
  /** Fields still unknown: re-read later. */
  unknown: string[];
}

/** Most GPUs whose link matrix is read (n² calls). */
export const INVENTORY_LINK_MATRIX_GPUS_MAX = 64;

/** Every GPU with its static fields; link types when the GPU count is within the bound. */
export function inventoryRead(s: SmiSession): GpuInventoryEntry[] {
  const gpus = s.gpus();
  const out: GpuInventoryEntry[] = gpus.map((g, index) => {
    const st = s.static(g);
    const e: GpuInventoryEntry = { ...st, index, unknown: [] };
    try {
      const hive = s.xgmi(g).hiveId;
      if (hive !== 0n) e.hiveId = hive.toString(16);
    } catch (err) {
      if (!(err instanceof SmiError)) throw err;
    }
    if (e.deploymentMode === "unknown") e.unknown.push("deploymentMode");
    if (e.serial === undefined || e.serial === "") e.unknown.push("serial");
    if (e.cardModel === undefined || e.cardModel === "") e.unknown.push("cardModel");
    return e;
  });
  if (gpus.length <= INVENTORY_LINK_MATRIX_GPUS_MAX) {
    for (const [i, a] of gpus.entries()) {
      const links: SmiLinkType[] = [];
      try {
        for (const [j, b] of gpus.entries()) links.push(i === j ? "undefined" : s.link(a, b).type);
        out[i]!.links = links;
      } catch (err) {
        if (!(err instanceof SmiError)) throw err;
      }
    }
  }
  return out;
}
