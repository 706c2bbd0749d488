/**
 * Test helper: build the amdsmi C test double (test/native/amdsmi_double.c) in one of its
 * three layouts (cached by compile.ts on source + flags), and a temp directory holding its
 * configuration and the device file it holds open while initialised. The binding under test
 * loads the same .so with amdsmiOpen({ path }); the control surface shares its state.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  type AmdsmiDoubleConfig,
  type AmdsmiDoubleControl,
  amdsmiDoubleConfigText,
  amdsmiDoubleControlOpen,
  type AmdsmiDoubleGpu,
  type AmdsmiDoubleLayout,
} from "../../runtime/ffi/amdsmi-double.ts";
import { nativeBuild } from "../native/compile.ts";

/** Path of the double built as `layout` (compiled on first use, then cached). */
export function amdsmiDoubleBuild(layout: AmdsmiDoubleLayout): string {
  return nativeBuild({ source: "amdsmi_double.c", shared: true, defines: [`AMDSMI_DOUBLE_LAYOUT=${layout}`] });
}

/** A hive id above 2^53: only a bigint carries it exactly. */
export const DOUBLE_HIVE_ID = 0x9a3b_c0de_0000_7f11n;

/** Three GPUs: two in one XGMI hive, one alone on PCIe with fewer readings. */
export const DOUBLE_GPUS: readonly AmdsmiDoubleGpu[] = [
  {
    uuid: "2eff74a1-0000-1000-80fe-9cea14a6b148",
    bdf: "0000:c1:00.0",
    model: "102-G30211-0C",
    serial: "692231000131",
    market_name: "AMD Instinct MI300X",
    compute_partition: "SPX",
    memory_partition: "NPS1",
    kfd_gpu_id: 45412,
    partition_id: 0,
    hive_id: DOUBLE_HIVE_ID,
    node_id: 2,
    xgmi_index: 0,
    xgmi_lanes: 16,
    vram_total: 206_141_652_992,
    vram_used: 297_054_208,
    vis_vram_total: 206_141_652_992,
    vis_vram_used: 297_054_208,
    gtt_total: 540_475_817_984,
    gtt_used: 16_621_568,
    temp_edge_c: 45,
    temp_junction_c: 78,
    temp_vram_c: 60,
    power_socket_w: 550,
    power_average_w: 540,
    power_limit_w: 750,
    gfx_activity: 37,
    umc_activity: 12,
    mm_activity: 0,
    pcie_width: 16,
    pcie_speed_mts: 32_000,
    pcie_bandwidth_mbs: 18,
    pcie_replay_count: 3,
    ecc_correctable: 7,
    ecc_uncorrectable: 1,
    ecc_deferred: 2,
    virtualization_mode: "baremetal",
  },
  {
    uuid: "A1B2C3D4-0000-1000-8011-223344556677",
    bdf: "0001:02:1f.3",
    model: "102-G30211-0C",
    serial: "692231000222",
    market_name: "AMD Instinct MI300X",
    kfd_gpu_id: 59881,
    partition_id: 1,
    hive_id: DOUBLE_HIVE_ID,
    node_id: 3,
    xgmi_index: 1,
    xgmi_lanes: 16,
    vram_total: 206_141_652_992,
    vram_used: 1_073_741_824,
    vis_vram_total: 206_141_652_992,
    vis_vram_used: 1_073_741_824,
    gtt_total: 540_475_817_984,
    gtt_used: 0,
    temp_edge_c: 51,
    temp_junction_c: 83,
    power_socket_w: 612,
    power_limit_w: 750,
    gfx_activity: 99,
    umc_activity: 40,
    pcie_width: 16,
    pcie_speed_mts: 32_000,
    pcie_bandwidth_mbs: 20,
    pcie_replay_count: 0,
    ecc_correctable: 0,
    ecc_uncorrectable: 0,
    virtualization_mode: "host",
  },
  {
    uuid: "00000000-0000-1000-8000-0000000000aa",
    bdf: "0000:03:00.0",
    market_name: "AMD Radeon PRO W7900",
    vram_total: 48_301_604_864,
    vram_used: 0,
    vis_vram_total: 268_435_456,
    vis_vram_used: 0,
    gtt_total: 0,
    gtt_used: 0,
    temp_edge_c: -5,
    virtualization_mode: "unknown",
  },
];

export interface AmdsmiDoubleFixture {
  layout: AmdsmiDoubleLayout;
  path: string;
  ctl: AmdsmiDoubleControl;
  dir: string;
  /** The file the double holds open while initialised. */
  deviceFile: string;
  /** Write `config` (device_file filled in) and load it into the double. */
  configure(config?: Partial<AmdsmiDoubleConfig>): string;
  /** Reset the double, unload its control and remove the temp directory. */
  close(): void;
}

/** Build and open the double as `layout`, configured with DOUBLE_GPUS. */
export function amdsmiDoubleFixture(layout: AmdsmiDoubleLayout): AmdsmiDoubleFixture {
  const path = amdsmiDoubleBuild(layout);
  const ctl = amdsmiDoubleControlOpen(path);
  const dir = mkdtempSync(join(tmpdir(), "svmrt-amdsmi-"));
  const deviceFile = join(dir, "gim-smi0");
  writeFileSync(deviceFile, "");
  let n = 0;
  const configure = (config: Partial<AmdsmiDoubleConfig> = {}): string => {
    const file = join(dir, `config-${n++}.json`);
    writeFileSync(file, amdsmiDoubleConfigText({ device_file: deviceFile, gpus: [...DOUBLE_GPUS], ...config }));
    ctl.reset();
    ctl.configLoad(file);
    return file;
  };
  return {
    layout,
    path,
    ctl,
    dir,
    deviceFile,
    configure,
    close() {
      ctl.reset();
      ctl.unload();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
