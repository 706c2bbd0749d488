/**
 * Struct layouts of libamd_smi, x86-64, in one table: sizes and member offsets in bytes for
 * each layout family (reference/amdsmi.md, "Versions differ"). The family comes from the
 * library's own answer to `amdsmi_get_lib_version` (amdsmiVersionDecode), never from the file
 * name.
 *
 * Sources: the reference's measured sizes (power info 68/40/192, event data 80/112/272, board
 * info 768/1536/1792, vram info 64/64/584, gpu metrics 424/2368/4544), ROCm/amdsmi's
 * include/amd_smi/amdsmi.h of 24.6.1 and of 26.1 for member order. AMDSMI_MAX_STRING_LENGTH
 * went from 64 (24.x) to 256 (25.x on), which moved every member after a string.
 *
 * Structs that are the same in all three families sit in AMDSMI_STRUCTS. amdsmi_pcie_info_t
 * is one of them: 24.6.1 and 26.1 agree on size (512) and on every member read here
 * (pcie_metric at 96, after a 96-byte pcie_static); 26.x only filled padding and reserved
 * words. 25.x lies between the two and is taken to agree (no 25.x header was at hand).
 *
 * Every out-struct the binding passes is allocated OUT_STRUCT_SLACK_bytes larger than the
 * table says, so a point release that grows a struct cannot write past the buffer.
 */
import type { AmdsmiLayout } from "../smi/library.ts";

/** Extra bytes after every out-struct (see the file comment). */
export const OUT_STRUCT_SLACK_bytes = 1024;

/** A fixed-size char array inside a struct. */
export interface CharField {
  offset: number;
  bytes: number;
}

export interface AmdsmiLayoutTable {
  /** AMDSMI_MAX_STRING_LENGTH. */
  stringMax_bytes: number;
  /** amdsmi_power_info_t: all members u32 but `socketPower` (u64); W. */
  power: {
    size_bytes: number;
    /** u64 socket_power (25.x on); undefined in 24.x. */
    socketPower: number | undefined;
    currentSocketPower: number;
    averageSocketPower: number;
    powerLimit: number;
  };
  /** amdsmi_evt_notification_data_t: {processor_handle; u32 event; char message[]}. */
  event: { size_bytes: number; handle: number; type: number; message: CharField };
  /** amdsmi_board_info_t. */
  board: { size_bytes: number; modelNumber: CharField; productSerial: CharField; productName: CharField };
  /** amdsmi_asic_info_t (market_name only is read). */
  asic: { size_bytes: number; marketName: CharField };
  /** amdsmi_vram_info_t (recorded, not read: memory comes from memory usage/total). */
  vramInfo: { size_bytes: number };
  /** amdsmi_gpu_metrics_t (recorded, not read: 27.1 grew it to 4736). */
  gpuMetrics: { size_bytes: number };
}

export const AMDSMI_LAYOUTS: Readonly<Record<AmdsmiLayout, AmdsmiLayoutTable>> = {
  "24": {
    stringMax_bytes: 64,
    // six u32 {current, average, gfx_v, soc_v, mem_v, power_limit} + u32 reserved[11]
    power: { size_bytes: 68, socketPower: undefined, currentSocketPower: 0, averageSocketPower: 4, powerLimit: 20 },
    event: { size_bytes: 80, handle: 0, type: 8, message: { offset: 12, bytes: 64 } },
    // model_number[256], product_serial[32], fru_id[32], product_name[256], manufacturer_name[64], u32 reserved[32]
    board: {
      size_bytes: 768,
      modelNumber: { offset: 0, bytes: 256 },
      productSerial: { offset: 256, bytes: 32 },
      productName: { offset: 320, bytes: 256 },
    },
    asic: { size_bytes: 448, marketName: { offset: 0, bytes: 256 } },
    vramInfo: { size_bytes: 64 },
    gpuMetrics: { size_bytes: 424 },
  },
  "25": {
    stringMax_bytes: 256,
    // {u64 socket_power; u32 current@8, average@12, gfx_v@16, soc_v@20, mem_v@24, power_limit@28; u32 reserved[2]}
    power: { size_bytes: 40, socketPower: 0, currentSocketPower: 8, averageSocketPower: 12, powerLimit: 28 },
    event: { size_bytes: 112, handle: 0, type: 8, message: { offset: 12, bytes: 96 } },
    // five char[256] + u64 reserved[32]
    board: {
      size_bytes: 1536,
      modelNumber: { offset: 0, bytes: 256 },
      productSerial: { offset: 256, bytes: 256 },
      productName: { offset: 768, bytes: 256 },
    },
    asic: { size_bytes: 896, marketName: { offset: 0, bytes: 256 } },
    vramInfo: { size_bytes: 64 },
    gpuMetrics: { size_bytes: 2368 },
  },
  "26": {
    stringMax_bytes: 256,
    // {u64 socket_power; u32 current@8, average@12; u64 gfx_v@16, soc_v@24, mem_v@32; u32 power_limit@40;
    //  (27.1: u32 ubb_power@44); u64 reserved[18]@48}
    power: { size_bytes: 192, socketPower: 0, currentSocketPower: 8, averageSocketPower: 12, powerLimit: 40 },
    event: { size_bytes: 272, handle: 0, type: 8, message: { offset: 12, bytes: 256 } },
    // five char[256] + u64 reserved[64]
    board: {
      size_bytes: 1792,
      modelNumber: { offset: 0, bytes: 256 },
      productSerial: { offset: 256, bytes: 256 },
      productName: { offset: 768, bytes: 256 },
    },
    asic: { size_bytes: 896, marketName: { offset: 0, bytes: 256 } },
    vramInfo: { size_bytes: 584 },
    gpuMetrics: { size_bytes: 4544 },
  },
};

/** Structs with one layout in every family. */
export const AMDSMI_STRUCTS = {
  /** amdsmi_version_t: four u32 (see amdsmiVersionDecode), const char *build at 16. */
  version: { size_bytes: 24, words: 0, build: 16 },
  /** amdsmi_bdf_t, an 8-byte union passed by pointer here. */
  bdf: { size_bytes: 8 },
  /** amdsmi_kfd_info_t: {u64 kfd_id; u32 node_id; u32 current_partition_id; u32 reserved[12]}. */
  kfdInfo: { size_bytes: 64, kfdId: 0, nodeId: 8, currentPartitionId: 12 },
  /** amdsmi_xgmi_info_t: {u8 lanes; u64 hive_id@8; u64 node_id@16; u32 index@24; u32 reserved[9]}. */
  xgmiInfo: { size_bytes: 64, lanes: 0, hiveId: 8, nodeId: 16, index: 24 },
  /** amdsmi_engine_usage_t: {u32 gfx, umc, mm; u32 reserved[13]}, percent. */
  engineUsage: { size_bytes: 64, gfx: 0, umc: 4, mm: 8 },
  /** amdsmi_error_count_t: {u64 correctable, uncorrectable, deferred; u64 reserved[5]}. */
  errorCount: { size_bytes: 64, correctable: 0, uncorrectable: 8, deferred: 16 },
  /** amdsmi_pcie_info_t: pcie_static (96) then pcie_metric {u16 width; u32 speed MT/s; u32 bandwidth Mb/s; u64 replay}. */
  pcieInfo: { size_bytes: 512, width: 96, speed: 100, bandwidth: 104, replayCount: 112 },
} as const;

/** What a library said about its version. */
export interface AmdsmiVersion {
  /** The library's own text (its `build` string when it gave one), e.g. "24.6.3", "26.5.0". */
  text: string;
  layout: AmdsmiLayout;
}

/** First word at or above this is a four-digit year: {year, major, minor, release} (e.g. 2024). */
const VERSION_FULL_YEAR_MIN = 2000;
/** Last two-digit year of the {year, major, minor, release} encoding (real 24.x says {24, 6, 1, 0}). */
const VERSION_SHORT_YEAR_MAX = 25;

/**
 * Decode the four u32 words of amdsmi_version_t and its build string. The rule, on the first
 * word `w0`:
 * - `w0 >= 2000`: {year, major, minor, release} with a four-digit year; family = year - 2000,
 *   25 at most (a later year-encoded library would still be 25-shaped);
 * - `w0 <= 25`: {year, major, minor, release} with a two-digit year (24.x writes {24, 6, 1, 0});
 *   family 24 for 24 and earlier, 25 for 25;
 * - otherwise (26..1999): {major, minor, release, pad}, family 26 (26.x and 27.x share it).
 * `w0 == 0` is no answer: undefined. The text is the build string when it has one, else the
 * numbers joined by dots.
 */
export function amdsmiVersionDecode(words: readonly [number, number, number, number], build: string | undefined): AmdsmiVersion | undefined {
  const [w0, w1, w2, w3] = words;
  if (w0 === 0) return undefined;
  const text = (composed: string): string => (build && /^[\x20-\x7e]{1,64}$/.test(build) ? build.trim() : composed);
  if (w0 >= VERSION_FULL_YEAR_MIN) {
    const year = w0 - VERSION_FULL_YEAR_MIN;
    return { text: text(`${w1}.${w2}.${w3}`), layout: year <= 24 ? "24" : "25" };
  }
  if (w0 <= VERSION_SHORT_YEAR_MAX) {
    return { text: text(`${w0}.${w1}.${w2}.${w3}`), layout: w0 <= 24 ? "24" : "25" };
  }
  // VERSION_SHORT_YEAR_MAX < w0 < VERSION_FULL_YEAR_MIN: the major of 26.x and later.
  return { text: text(`${w0}.${w1}.${w2}`), layout: "26" };
}
