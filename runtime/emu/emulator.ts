/**
 * One call to get emulated GPUs: the machine of a profile, its /dev/kfd (Syscalls for
 * KfdDevice) and its sysfs tree (a root for topologyRead), all saying they are emulated.
 *
 * ```ts
 * using emu = emulatorCreate("dev-2gpu");
 * using dev = KfdDevice.open(emu.kfd);
 * const topo = topologyRead(emu.sysfsRoot);
 * ```
 */
import { loadProfile, type MachineProfile } from "../sim/profile.ts";
import { EmuKfd, type EmuKfdOptions } from "./kfd.ts";
import { EmuMachine, type EmuMachineOptions } from "./machine.ts";
import { emuSysfsTemp } from "./sysfs.ts";

export interface Emulator extends Disposable {
  readonly emulated: true;
  /** The profile's name, for every output that says it is emulated. */
  readonly profile: string;
  readonly machine: EmuMachine;
  /** The emulated /dev/kfd of one process. */
  readonly kfd: EmuKfd;
  /** A temporary directory standing for /sys/class/kfd/kfd. */
  readonly sysfsRoot: string;
  /** Close the emulated fds and remove the sysfs tree. Idempotent. */
  dispose(): void;
}

/**
 * Emulated GPUs of `profile` (a MachineProfile, a shipped profile name or a YAML path).
 * @throws ConfigError for a missing or malformed profile file.
 */
export function emulatorCreate(
  profile: MachineProfile | string,
  opts: Omit<EmuMachineOptions, "profile"> & EmuKfdOptions = {},
): Emulator {
  const p = typeof profile === "string" ? loadProfile(profile) : profile;
  const machine = new EmuMachine({ ...opts, profile: p });
  const kfd = new EmuKfd(machine, opts);
  const sysfs = emuSysfsTemp(p);
  let disposed = false;
  const dispose = (): void => {
    if (disposed) return;
    disposed = true;
    kfd.unload();
    sysfs[Symbol.dispose]();
  };
  return { emulated: true, profile: p.name, machine, kfd, sysfsRoot: sysfs.root, dispose, [Symbol.dispose]: dispose };
}
