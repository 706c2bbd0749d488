/**
 * SMI event text, in the kernel's exact formats (kfd-uapi.md "SMI events"): `"%x "` event id,
 * then the payload. ns = time in ns, pid printed as `-<decimal>`, addresses and sizes in
 * pages in hex, locations gpu_ids in hex (0 = system memory). Lines carry no newline.
 */
import { SMI_EVENT } from "./constants.ts";

const hex = (n: number): string => n.toString(16);
/** Event time as the kernel prints it: integer ns. */
const ns_ = (ns: number): number => Math.round(ns);

export function fmtPageFaultStart(ns: number, pid: number, addr: number, gpuId: number, write: boolean): string {
  return `${hex(SMI_EVENT.PAGE_FAULT_START)} ${ns_(ns)} -${pid} @${hex(addr)}(${hex(gpuId)}) ${write ? "W" : "R"}`;
}

export function fmtPageFaultEnd(ns: number, pid: number, addr: number, gpuId: number, migrated: boolean): string {
  return `${hex(SMI_EVENT.PAGE_FAULT_END)} ${ns_(ns)} -${pid} @${hex(addr)}(${hex(gpuId)}) ${migrated ? "M" : "U"}`;
}

export function fmtMigrateStart(
  ns: number,
  pid: number,
  start: number,
  npages: number,
  from: number,
  to: number,
  prefetchLoc: number,
  preferredLoc: number,
  trigger: number,
): string {
  return `${hex(SMI_EVENT.MIGRATE_START)} ${ns_(ns)} -${pid} @${hex(start)}(${hex(npages)}) ${hex(from)}->${hex(to)} ${hex(prefetchLoc)}:${hex(preferredLoc)} ${trigger}`;
}

/** MIGRATE_END in the current format, with the error code (older kernels omit it). */
export function fmtMigrateEnd(
  ns: number,
  pid: number,
  start: number,
  npages: number,
  from: number,
  to: number,
  trigger: number,
  errorCode: number,
): string {
  return `${hex(SMI_EVENT.MIGRATE_END)} ${ns_(ns)} -${pid} @${hex(start)}(${hex(npages)}) ${hex(from)}->${hex(to)} ${trigger} ${errorCode}`;
}

export function fmtQueueEviction(ns: number, pid: number, gpuId: number, trigger: number): string {
  return `${hex(SMI_EVENT.QUEUE_EVICTION)} ${ns_(ns)} -${pid} ${hex(gpuId)} ${trigger}`;
}

/** QUEUE_RESTORE; `rescheduled` prints R (restore failed, retried later), else 0. */
export function fmtQueueRestore(ns: number, pid: number, gpuId: number, rescheduled: boolean): string {
  return `${hex(SMI_EVENT.QUEUE_RESTORE)} ${ns_(ns)} -${pid} ${hex(gpuId)} ${rescheduled ? "R" : "0"}`;
}

export function fmtUnmapFromGpu(ns: number, pid: number, addr: number, npages: number, gpuId: number, trigger: number): string {
  return `${hex(SMI_EVENT.UNMAP_FROM_GPU)} ${ns_(ns)} -${pid} @${hex(addr)}(${hex(npages)}) ${hex(gpuId)} ${trigger}`;
}

export function fmtVmFault(pid: number, taskName: string): string {
  return `${hex(SMI_EVENT.VMFAULT)} ${hex(pid)}:${taskName}`;
}

export function fmtProcess(start: boolean, pid: number, taskName: string): string {
  return `${hex(start ? SMI_EVENT.PROCESS_START : SMI_EVENT.PROCESS_END)} ${hex(pid)} ${taskName}`;
}
