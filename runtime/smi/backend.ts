/**
 * Which management library to use, as a plain serialisable spec (a Worker builds its own
 * binding from it: one process, one library state), and the `auto` rule:
 * - a real GPU stack is present when the KFD exists (`/dev/kfd` or `/sys/class/kfd`): then
 *   amdsmi when it loads, else rocm-smi when it loads;
 * - otherwise the emulated GPUs of a machine profile, and every output says so.
 * An explicit `--backend amdsmi|rocm-smi` never falls back: a host without the driver gets
 * the library's own status (DRIVER_NOT_LOADED, INIT_ERROR) and exit 5.
 */
import { existsSync } from "node:fs";
import { InvariantError, UsageError } from "../errors.ts";
import { amdsmiOpen } from "../ffi/amdsmi.ts";
import { rocmSmiOpen } from "../ffi/rocm-smi.ts";
import { emuSmiOpen, emuSmiSharedCreate } from "../emu/smi.ts";
import { loadProfile, type MachineProfile, PROFILE_DEFAULT } from "../sim/profile.ts";
import { SMI_BACKENDS, type SmiBackendName, type SmiLibrary, type SmiLibraryInfo } from "./library.ts";

export type SmiBackendChoice = SmiBackendName | "auto";
export const SMI_BACKEND_CHOICES: readonly SmiBackendChoice[] = ["auto", ...SMI_BACKENDS];

export type SmiBackendSpec =
  | { backend: "amdsmi"; path?: string }
  | { backend: "rocm-smi"; path?: string }
  /** The profile is read once, where the spec is made: a Worker opening it parses no file. */
  | { backend: "emulated"; profile: MachineProfile; shared: SharedArrayBuffer };

/** Paths whose presence means a KFD (and so possibly a GPU) on this host. */
export const KFD_PRESENCE_PATHS = ["/dev/kfd", "/sys/class/kfd"] as const;

export interface BackendResolveOptions {
  choice: SmiBackendChoice;
  /** Profile of the emulated backend (name or YAML path). */
  profile?: string;
  amdsmiLib?: string;
  rocmSmiLib?: string;
  /** Tests: pretend the KFD is (not) present. */
  kfdPresent?: boolean;
}

/** Parse a `--backend` value. @throws UsageError */
export function backendChoiceParse(v: string | undefined): SmiBackendChoice {
  if (v === undefined) return "auto";
  if (!(SMI_BACKEND_CHOICES as readonly string[]).includes(v)) {
    throw new UsageError(`--backend: expected one of ${SMI_BACKEND_CHOICES.join(", ")}, got '${v}'`);
  }
  return v as SmiBackendChoice;
}

/**
 * Decide the backend on this thread (the CLI): the first of `backendCandidates` that loads;
 * a library that loads is unloaded again here, the spec is what each thread opens for itself.
 * @throws SmiError when an explicitly chosen library does not load; ConfigError for a bad profile.
 */
export function backendResolve(o: BackendResolveOptions): SmiBackendSpec {
  const candidates = backendCandidates(o);
  for (const [i, spec] of candidates.entries()) {
    if (spec.backend === "emulated") return spec;
    try {
      smiLibraryOpen(spec).unload();
      return spec;
    } catch (e) {
      if (i === candidates.length - 1) throw e;
    }
  }
  throw new InvariantError("no backend candidate");
}

/**
 * The backends to try, in order, without loading any library on this thread (the agent's
 * main thread never calls a device library: its pool tries each in a Worker and keeps the
 * first that loads). `auto` with a KFD present: amdsmi, rocm-smi, then the emulated GPUs;
 * without one, the emulated GPUs; an explicit choice: only that one.
 * @throws ConfigError for a bad profile (read on this thread: it is a file, not a library).
 */
export function backendCandidates(o: BackendResolveOptions): SmiBackendSpec[] {
  const emulated = (): SmiBackendSpec => {
    const profile = loadProfile(o.profile ?? PROFILE_DEFAULT);
    return { backend: "emulated", profile, shared: emuSmiSharedCreate(profile.gpus.length) };
  };
  switch (o.choice) {
    case "emulated":
      return [emulated()];
    case "amdsmi":
      return [{ backend: "amdsmi", path: o.amdsmiLib }];
    case "rocm-smi":
      return [{ backend: "rocm-smi", path: o.rocmSmiLib }];
    case "auto": {
      const kfd = o.kfdPresent ?? KFD_PRESENCE_PATHS.some((p) => existsSync(p));
      if (!kfd) return [emulated()];
      return [{ backend: "amdsmi", path: o.amdsmiLib }, { backend: "rocm-smi", path: o.rocmSmiLib }, emulated()];
    }
  }
}

/** Open this thread's binding of the library a spec names. @throws SmiError, ConfigError */
export function smiLibraryOpen(spec: SmiBackendSpec): SmiLibrary {
  switch (spec.backend) {
    case "amdsmi":
      return amdsmiOpen({ path: spec.path });
    case "rocm-smi":
      return rocmSmiOpen({ path: spec.path });
    case "emulated":
      return emuSmiOpen({ profile: spec.profile, shared: spec.shared });
  }
}

/** One line for banners: which library, and whether it is emulated. */
export function backendBanner(i: SmiLibraryInfo): string {
  if (i.emulated) return `EMULATED GPUs (${i.path.replace(/^profile:/, "profile ")}): no AMD GPU driver found; readings are modelled, not measured`;
  return `${i.backend} ${i.version ?? "(version known after init)"} from ${i.path}`;
}
