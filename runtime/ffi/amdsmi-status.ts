/**
 * amdsmi_status_t names, own table (reference/amdsmi.md, "Status codes"). The library's
 * `amdsmi_status_code_to_string` has had holes (24.x calls DRIVER_NOT_LOADED "An unknown error
 * occurred"), so names never come from it; its text is at most extra detail.
 *
 * Numbers are stable across versions except MORE_DATA: 57 in 25.x, 39 from 26.x, absent in
 * 24.x. CORRUPTED_EEPROM (56) arrived in 25.x, DIRECTORY_NOT_FOUND (20) and IPC_ERROR (21) in
 * 26.x. A number a family does not define is named `UNKNOWN_STATUS_<n>`. Before the layout is
 * known (a 24.x library before its first successful init) the union of all families is used:
 * 39 and 57 are both MORE_DATA then, which is the only ambiguity and harmless for a name.
 */
import type { AmdsmiLayout } from "../smi/library.ts";

/** Statuses every family defines. */
const STATUS_COMMON: Readonly<Record<number, string>> = {
  0: "SUCCESS",
  1: "INVAL",
  2: "NOT_SUPPORTED",
  3: "NOT_YET_IMPLEMENTED",
  4: "FAIL_LOAD_MODULE",
  5: "FAIL_LOAD_SYMBOL",
  6: "DRM_ERROR",
  7: "API_FAILED",
  8: "TIMEOUT",
  9: "RETRY",
  10: "NO_PERM",
  11: "INTERRUPT",
  12: "IO",
  13: "ADDRESS_FAULT",
  14: "FILE_ERROR",
  15: "OUT_OF_RESOURCES",
  16: "INTERNAL_EXCEPTION",
  17: "INPUT_OUT_OF_BOUNDS",
  18: "INIT_ERROR",
  19: "REFCOUNT_OVERFLOW",
  30: "BUSY",
  31: "NOT_FOUND",
  32: "NOT_INIT",
  33: "NO_SLOT",
  34: "DRIVER_NOT_LOADED",
  40: "NO_DATA",
  41: "INSUFFICIENT_SIZE",
  42: "UNEXPECTED_SIZE",
  43: "UNEXPECTED_DATA",
  44: "NON_AMD_CPU",
  45: "NO_ENERGY_DRV",
  46: "NO_MSR_DRV",
  47: "NO_HSMP_DRV",
  48: "NO_HSMP_SUP",
  49: "NO_HSMP_MSG_SUP",
  50: "HSMP_TIMEOUT",
  51: "NO_DRV",
  52: "FILE_NOT_FOUND",
  53: "ARG_PTR_NULL",
  54: "AMDGPU_RESTART_ERR",
  55: "SETTING_UNAVAILABLE",
  4294967294: "MAP_ERROR", // 0xFFFFFFFE
  4294967295: "UNKNOWN_ERROR", // 0xFFFFFFFF
};

/** What each family adds to the common table. */
const STATUS_BY_LAYOUT: Readonly<Record<AmdsmiLayout, Readonly<Record<number, string>>>> = {
  "24": {},
  "25": { 56: "CORRUPTED_EEPROM", 57: "MORE_DATA" },
  "26": { 20: "DIRECTORY_NOT_FOUND", 21: "IPC_ERROR", 39: "MORE_DATA", 56: "CORRUPTED_EEPROM" },
};

/** The statuses svmrt acts on, by number (stable in every family). */
export const AMDSMI_STATUS = {
  SUCCESS: 0,
  INVAL: 1,
  NOT_SUPPORTED: 2,
  FAIL_LOAD_MODULE: 4,
  NOT_FOUND: 31,
  NOT_INIT: 32,
  DRIVER_NOT_LOADED: 34,
  NO_DATA: 40,
  INSUFFICIENT_SIZE: 41,
} as const;

/** MORE_DATA's number in a family, or undefined where it does not exist (24.x). */
export function amdsmiMoreDataStatus(layout: AmdsmiLayout): number | undefined {
  return layout === "25" ? 57 : layout === "26" ? 39 : undefined;
}

/**
 * The name of amdsmi status `status` as the family `layout` defines it (the union of all
 * families when `layout` is undefined), or `UNKNOWN_STATUS_<n>`.
 */
export function amdsmiStatusName(status: number, layout: AmdsmiLayout | undefined): string {
  const common = STATUS_COMMON[status];
  if (common) return common;
  if (layout) return STATUS_BY_LAYOUT[layout][status] ?? `UNKNOWN_STATUS_${status}`;
  for (const l of ["26", "25", "24"] as const) {
    const name = STATUS_BY_LAYOUT[l][status];
    if (name) return name;
  }
  return `UNKNOWN_STATUS_${status}`;
}

/** What the user can do about a status, in a few words; empty when there is nothing to add. */
export function amdsmiStatusHint(statusName: string): string {
  switch (statusName) {
    case "DRIVER_NOT_LOADED":
      return "the amdgpu driver is not loaded (modprobe amdgpu), or this host has no AMD GPU";
    case "NO_PERM":
      return "permission denied: run as root or add the user to the render and video groups";
    case "NOT_INIT":
      return "amdsmi is not initialised: call inside an open session";
    case "INVAL":
      return "an invalid argument or a stale processor handle (handles last one init cycle: re-resolve by UUID)";
    case "BUSY":
    case "RETRY":
      return "the device is busy: retry later";
    default:
      return "";
  }
}
