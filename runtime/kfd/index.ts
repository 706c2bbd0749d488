/**
 * `svmrt/kfd`: the typed KFD binding of /dev/kfd (ioctls byte-exact against
 * <linux/kfd_ioctl.h>), the SMI event stream and its parser, the sysfs topology, and the
 * emulated /dev/kfd of a machine profile.
 *
 * ```ts
 * import { KfdDevice, syscallsOpen, emulatorCreate } from "svmrt/kfd";
 * using dev = KfdDevice.open(syscallsOpen());         // a GPU host
 * using emu = emulatorCreate("dev-2gpu");             // anywhere: emulated, and says so
 * ```
 */
export * from "./device.ts";
export * from "./smi-events.ts";
export * from "./topology.ts";
export * from "./uapi.ts";
export { syscallsOpen } from "../ffi/libc.ts";
export type { Syscalls } from "../ffi/syscalls.ts";
export { emulatorCreate, type Emulator } from "../emu/emulator.ts";
