/**
 * `svmrt/smi`: the GPU management libraries behind one typed interface (amdsmi, rocm-smi,
 * emulated GPUs), the session manager that owns init/shutdown, the inventory and readings.
 *
 * ```ts
 * import { smiLibraryOpen, backendResolve, SmiSessionManager, sessionSharedCreate } from "svmrt/smi";
 * using lib = smiLibraryOpen(backendResolve({ choice: "auto" }));
 * const smi = new SmiSessionManager({ library: lib, shared: sessionSharedCreate("lazy") });
 * using session = smi.open();
 * for (const gpu of session.gpus()) console.log(gpu.uuid, session.power(gpu));
 * ```
 */
export * from "./library.ts";
export * from "./session.ts";
export * from "./backend.ts";
export * from "./inventory.ts";
export * from "./readings.ts";
export { SmiPool, type PoolOptions } from "./pool.ts";
export { amdsmiOpen, AMDSMI_LIB_ENV } from "../ffi/amdsmi.ts";
export { rocmSmiOpen, ROCM_SMI_LIB_ENV } from "../ffi/rocm-smi.ts";
export { emuSmiOpen, emuSmiSharedCreate, type EmuSmiOptions } from "../emu/smi.ts";
