/**
 * Machine profiles (profiles/*.yaml): the GPUs of a simulated host, their VRAM, hives and
 * links, the default XNACK mode, and overrides of the cost model's parameters.
 *
 * ```yaml
 * kind: MachineProfile
 * name: dev-2gpu
 * description: two 32 GiB PCIe Gen4 GPUs
 * xnack: true
 * gpus:
 *   - id: 0x3fe1          # KFD gpu_id; with count > 1, ids id, id+1, ...
 *     count: 2
 *     vram: 32GiB
 *     vram_reserved: 0    # non-SVM VRAM, never evictable by SVM
 *     hive: 0             # XGMI hive id, 0 = none
 *     app_apu: false
 *     hbm_gbps: 864
 *     pcie_h2d_gbps: 31.5
 *     pcie_d2h_gbps: 31.5
 *     xgmi_gbps: 0
 * cost: { fault_service_ns: 45000 }
 * ```
 */
import { join } from "node:path";
import { builtinPath, shippedDir } from "../assets.ts";
import { GPUS_PER_PROCESS_MAX } from "../svm/constants.ts";
import type { SvmGpu } from "../svm/model.ts";
import { COST_PARAMS, type CostParamName, type CostParams, defaultCostParams, type GpuLinks } from "./cost.ts";

/**
 * The YAML reading half, loaded on the first profile read: a thread handed a loaded profile
 * (the library Workers, through SmiBackendSpec) never loads the YAML parser, which costs
 * about 6 MB of resident memory per thread.
 */
const yamlSide = () => ({ ...(require("../config.ts") as typeof import("../config.ts")), ...(require("./yaml-read.ts") as typeof import("./yaml-read.ts")) });

export interface ProfileGpu extends SvmGpu, GpuLinks {}

export interface MachineProfile {
  name: string;
  description: string;
  file: string;
  xnack: boolean;
  gpus: ProfileGpu[];
  cost: CostParams;
}

/** Directory of the shipped profiles (runtime/assets.ts: beside runtime/, or embedded). */
export const PROFILES_DIR = shippedDir("profiles");
export const PROFILE_DEFAULT = "dev-2gpu";
/** Largest VRAM per GPU a profile may declare, bytes (1 TiB). */
export const VRAM_BYTES_MAX = 2 ** 40;
const GBPS_MAX = 1e5;

const TOP_KEYS = ["kind", "name", "description", "xnack", "gpus", "cost"] as const;
const GPU_KEYS = [
  "id",
  "count",
  "vram",
  "vram_reserved",
  "hive",
  "app_apu",
  "svm",
  "hbm_gbps",
  "pcie_h2d_gbps",
  "pcie_d2h_gbps",
  "xgmi_gbps",
] as const;

/**
 * Parse a profile. @throws ConfigError (file:line:col, field, what was expected).
 */
export function parseProfile(file: string, text: string): MachineProfile {
  const y = new (yamlSide().YamlReader)(file, text);
  const top = y.map(y.root, "", TOP_KEYS);
  const kind = y.str(y.need(top, "kind", "kind"), "kind");
  if (kind !== "MachineProfile") throw y.error(y.get(top, "kind"), "kind", "MachineProfile", `got ${kind}`);
  const name = y.str(y.need(top, "name", "name"), "name");
  const description = y.str(y.get(top, "description"), "description", "");
  const xnack = y.bool(y.get(top, "xnack"), "xnack", true);
  const gpus: ProfileGpu[] = [];
  const list = y.seq(y.need(top, "gpus", "gpus"), "gpus");
  list.items.forEach((node, i) => {
    const f = `gpus[${i}]`;
    const m = y.map(node, f, GPU_KEYS);
    const id = y.num(y.need(m, "id", `${f}.id`), `${f}.id`, 1, 0xfffffffe, undefined, true);
    const count = y.num(y.get(m, "count"), `${f}.count`, 1, GPUS_PER_PROCESS_MAX, 1, true);
    const vramBytes = y.bytes(y.need(m, "vram", `${f}.vram`), `${f}.vram`, 0, VRAM_BYTES_MAX);
    const vramReservedBytes = y.bytes(y.get(m, "vram_reserved"), `${f}.vram_reserved`, 0, vramBytes, 0);
    const hiveId = y.num(y.get(m, "hive"), `${f}.hive`, 0, 2 ** 48, 0, true);
    const appApu = y.bool(y.get(m, "app_apu"), `${f}.app_apu`, false);
    const svmSupported = y.bool(y.get(m, "svm"), `${f}.svm`, true);
    const hbmGbps = y.num(y.need(m, "hbm_gbps", `${f}.hbm_gbps`), `${f}.hbm_gbps`, 0.001, GBPS_MAX);
    const pcieH2dGbps = y.num(y.need(m, "pcie_h2d_gbps", `${f}.pcie_h2d_gbps`), `${f}.pcie_h2d_gbps`, 0.001, GBPS_MAX);
    const pcieD2hGbps = y.num(y.get(m, "pcie_d2h_gbps"), `${f}.pcie_d2h_gbps`, 0.001, GBPS_MAX, pcieH2dGbps);
    const xgmiNode = y.get(m, "xgmi_gbps");
    const xgmiGbps = y.num(xgmiNode, `${f}.xgmi_gbps`, 0.001, GBPS_MAX, pcieH2dGbps);
    if (hiveId !== 0 && xgmiNode === undefined) throw y.error(m, `${f}.xgmi_gbps`, "a link bandwidth for a GPU in a hive");
    for (let k = 0; k < count; k++) {
      const gid = id + k;
      if (gpus.some((g) => g.id === gid)) throw y.error(node, `${f}.id`, "gpu_ids unique across the profile", `0x${gid.toString(16)} repeats`);
      gpus.push({
        id: gid,
        index: gpus.length,
        hiveId,
        appApu,
        vramBytes,
        vramReservedBytes,
        svmSupported,
        hbmGbps,
        pcieH2dGbps,
        pcieD2hGbps,
        xgmiGbps,
      });
    }
  });
  if (gpus.length === 0 || gpus.length > GPUS_PER_PROCESS_MAX) {
    throw y.error(list, "gpus", `1 to ${GPUS_PER_PROCESS_MAX} GPUs`, `got ${gpus.length}`);
  }
  const cost = defaultCostParams();
  const costNode = y.get(top, "cost");
  if (costNode !== undefined) {
    const names = Object.keys(COST_PARAMS) as CostParamName[];
    const cm = y.map(costNode, "cost", names);
    for (const k of names) {
      const spec = COST_PARAMS[k];
      cost[k] = y.num(y.get(cm, k), `cost.${k}`, spec.min, spec.max, spec.value);
    }
  }
  return { name, description, file, xnack, gpus, cost };
}

/**
 * A profile by shipped name (`dev-2gpu`) or by path (`./my.yaml`, `builtin:profiles/dev-2gpu.yaml`).
 * @throws ConfigError when the file is missing or wrong; UsageError for a `builtin:` name
 *   outside the shipped folders.
 */
export function loadProfile(nameOrPath: string): MachineProfile {
  const file = /[/\\]|\.ya?ml$/.test(nameOrPath) ? builtinPath(nameOrPath) : join(PROFILES_DIR, `${nameOrPath}.yaml`);
  const { readConfigFile, YAML_BYTES_MAX } = yamlSide();
  const text = readConfigFile(file, YAML_BYTES_MAX, `a readable machine profile (shipped: ${shippedProfiles().join(", ")})`);
  return parseProfile(file, text);
}

/** Names of the profiles in profiles/. */
export function shippedProfiles(): string[] {
  return ["dev-2gpu", "mi250x-4", "mi300x-8", "mi300x-16", "mi300a", "pcie-4"];
}
