/**
 * `svmrt smi`: the GPU management library from the command line.
 *   svmrt smi list [--json]                    GPUs: UUID, BDF, model, serial, VRAM, hive, deployment mode
 *   svmrt smi metrics [--json] [--watch MS]    one-shot readings of every group (or every MS ms)
 * Common: --backend auto|amdsmi|rocm-smi|emulated, --profile P, --amdsmi-lib PATH,
 * --rocm-smi-lib PATH. A banner (stderr; `"emulated"` in --json) says which library answers.
 * Each run opens one session per reading round (lazy mode): init on open, shutdown on close.
 */
import { UsageError } from "../errors.ts";
import type { SmiLibrary } from "../smi/library.ts";
import { backendBanner, backendChoiceParse, backendResolve, SMI_BACKEND_CHOICES, smiLibraryOpen } from "../smi/backend.ts";
import { type GpuInventoryEntry, inventoryRead } from "../smi/inventory.ts";
import { groupRead, SMI_GROUPS, type GroupReading, type SmiGroup } from "../smi/readings.ts";
import { SmiSessionManager, sessionSharedCreate } from "../smi/session.ts";
import { PROFILE_DEFAULT, shippedProfiles } from "../sim/profile.ts";
import { type CliIO, type Command, type Parsed, flagInt, flagNonEmpty, flagString, parseFlags } from "./command.ts";
import { EXIT } from "./exit.ts";

/** Bounds of --watch, ms. */
export const WATCH_MS_MIN = 100;
export const WATCH_MS_MAX = 3_600_000;
/** Most rounds of --watch (a bound on one run; Ctrl-C stops sooner). */
export const WATCH_ROUNDS_MAX = 1_000_000;

const COMMON = `Options:
  --backend B          ${SMI_BACKEND_CHOICES.join(" | ")} (default auto: the real library when a
                       KFD is present, else emulated GPUs of --profile)
  --profile P          emulated GPUs: ${shippedProfiles().join(", ")} or a YAML path (default ${PROFILE_DEFAULT})
  --amdsmi-lib PATH    libamd_smi.so to load (also SVMRT_AMDSMI_LIB)
  --rocm-smi-lib PATH  librocm_smi64.so to load (also SVMRT_ROCM_SMI_LIB)
  --json               JSON on stdout
`;

const HELP_LIST = `Usage: svmrt smi list [--json] [--backend B] [--profile P]

List the GPUs the management library sees: index (DME's gpu_id), UUID, PCI address, card
model, serial, VRAM, XGMI hive, deployment mode, KFD gpu_id.

${COMMON}
Examples:
  svmrt smi list                              # emulated GPUs on a host without AMD GPUs
  svmrt smi list --backend amdsmi --json      # the real libamd_smi, or exit 5 without a driver
  svmrt smi list --backend emulated --profile mi300x-8
`;

const HELP_METRICS = `Usage: svmrt smi metrics [--json] [--watch MS] [--group G,...] [--backend B] [--profile P]

Read every metric group of every GPU once (temperature, power, activity, memory, xgmi, pcie,
ecc), or every MS ms with --watch (Ctrl-C stops). Fields a GPU does not support are listed as
such; a failing field never hides the others.

${COMMON}  --watch MS           repeat every MS ms (${WATCH_MS_MIN}..${WATCH_MS_MAX})
  --group LIST         only these groups (comma-separated)

Examples:
  svmrt smi metrics --json
  svmrt smi metrics --watch 1000 --group power,activity
`;

const HELP = `Usage: svmrt smi <list|metrics> [options]

The GPU management library (amdsmi, rocm-smi, or emulated GPUs) from the command line.
  list      GPUs and what identifies them
  metrics   readings of every metric group

Run 'svmrt smi <subcommand> --help' for its options.
`;

const FLAGS = {
  json: { type: "boolean" },
  backend: { type: "string" },
  profile: { type: "string" },
  "amdsmi-lib": { type: "string" },
  "rocm-smi-lib": { type: "string" },
} as const;

function libraryOpen(p: Parsed): SmiLibrary {
  const choice = backendChoiceParse(flagString(p, "backend"));
  const profile = flagNonEmpty(p, "profile", "a profile name or a YAML path");
  if (profile !== undefined && choice !== "auto" && choice !== "emulated") {
    throw new UsageError(`--profile applies to emulated GPUs, not to --backend ${choice}`);
  }
  const spec = backendResolve({ choice, profile, amdsmiLib: flagNonEmpty(p, "amdsmi-lib", "a path"), rocmSmiLib: flagNonEmpty(p, "rocm-smi-lib", "a path") });
  return smiLibraryOpen(spec);
}

/** One lazy-mode manager over the library: every round is one session. */
function managerOf(lib: SmiLibrary): SmiSessionManager {
  return new SmiSessionManager({ library: lib, shared: sessionSharedCreate("lazy") });
}

const gib = (b: number | undefined) => (b === undefined ? "-" : `${(b / 2 ** 30).toFixed(1)} GiB`);

async function listRun(p: Parsed, io: CliIO): Promise<number> {
  using lib = libraryOpen(p);
  const mgr = managerOf(lib);
  let gpus: (GpuInventoryEntry & { vramTotalBytes?: number })[];
  {
    using s = mgr.open();
    gpus = inventoryRead(s).map((g) => {
      try {
        return { ...g, vramTotalBytes: s.memory(s.gpu(g.uuid), "vram").totalBytes };
      } catch {
        return g;
      }
    });
  }
  if (p.values.json) {
    io.out(`${JSON.stringify({ backend: lib.info.backend, emulated: lib.info.emulated, library: lib.info, gpus }, null, 2)}\n`);
    return EXIT.ok;
  }
  io.err(`${backendBanner(lib.info)}\n`);
  io.out("gpu  uuid                                  bdf           model                     serial            vram        hive    mode        kfd\n");
  for (const g of gpus) {
    io.out(
      `${String(g.index).padEnd(4)} ${g.uuid.padEnd(37)} ${g.bdf.padEnd(13)} ${(g.cardModel ?? g.marketName ?? "-").slice(0, 25).padEnd(25)} ${(g.serial ?? "-").slice(0, 17).padEnd(17)} ${gib(g.vramTotalBytes).padEnd(11)} ${(g.hiveId ?? "-").padEnd(7)} ${g.deploymentMode.padEnd(11)} ${g.kfdGpuId === undefined ? "-" : `0x${g.kfdGpuId.toString(16)}`}\n`,
    );
  }
  if (gpus.length === 0) io.out("(no GPUs)\n");
  return EXIT.ok;
}

function groupsOf(p: Parsed): SmiGroup[] {
  const g = flagString(p, "group");
  if (g === undefined) return SMI_GROUPS;
  const out = g.split(",").map((x) => x.trim());
  for (const x of out) if (!(SMI_GROUPS as string[]).includes(x)) throw new UsageError(`--group: unknown group '${x}' (groups: ${SMI_GROUPS.join(", ")})`);
  return out as SmiGroup[];
}

async function metricsRun(p: Parsed, io: CliIO): Promise<number> {
  const groups = groupsOf(p);
  const watch = p.values.watch === undefined ? undefined : flagInt(p, "watch", 1000, WATCH_MS_MIN, WATCH_MS_MAX);
  using lib = libraryOpen(p);
  const mgr = managerOf(lib);
  const json = p.values.json === true;
  let stopped = false;
  // Ctrl-C ends the pause between rounds at once: a long --watch must not hold it for MS ms.
  let wake = () => {};
  const onInt = () => {
    stopped = true;
    wake();
  };
  const pause = (ms: number) =>
    new Promise<void>((resolve) => {
      const t = setTimeout(resolve, ms);
      wake = () => {
        clearTimeout(t);
        resolve();
      };
    });
  process.once("SIGINT", onInt);
  try {
    for (let round = 0; round < (watch === undefined ? 1 : WATCH_ROUNDS_MAX) && !stopped; round++) {
      if (round > 0) await pause(watch!);
      if (stopped) break;
      const at = new Date().toISOString();
      const rows: { gpu: number; uuid: string; readings: Record<string, GroupReading> }[] = [];
      {
        using s = mgr.open();
        for (const [index, g] of s.gpus().entries()) {
          const readings: Record<string, GroupReading> = {};
          for (const group of groups) readings[group] = groupRead(s, g, group);
          rows.push({ gpu: index, uuid: g.uuid, readings });
        }
      }
      // After the first session: a 24.x amdsmi tells its version only once initialised.
      if (!json && round === 0) io.err(`${backendBanner(lib.info)}\n`);
      if (json) {
        io.out(`${JSON.stringify({ at, backend: lib.info.backend, emulated: lib.info.emulated, gpus: rows })}\n`);
        continue;
      }
      io.out(`# ${at}${lib.info.emulated ? " (EMULATED)" : ""}\n`);
      for (const r of rows) {
        io.out(`gpu ${r.gpu} ${r.uuid}\n`);
        for (const [group, rd] of Object.entries(r.readings)) {
          const vals = Object.entries(rd.values).map(([k, v]) => `${k}=${Number.isInteger(v) ? v : v.toFixed(2)}`);
          const notes = [...rd.unsupported.map((u) => `${u}: not supported`), ...Object.entries(rd.errors).map(([k, e]) => `${k}: ${e}`)];
          io.out(`  ${group.padEnd(12)} ${vals.join(" ") || "-"}${notes.length ? `  [${notes.join("; ")}]` : ""}\n`);
        }
      }
    }
  } finally {
    process.off("SIGINT", onInt);
  }
  return EXIT.ok;
}

export const smiCommand: Command = {
  name: "smi",
  summary: "GPU management library: list GPUs, read metrics (amdsmi, rocm-smi or emulated)",
  help: HELP,
  async run(argv: string[], io: CliIO): Promise<number> {
    const [sub, ...rest] = argv;
    if (sub === undefined || sub === "--help" || sub === "-h") {
      io.out(HELP);
      return sub === undefined ? EXIT.usage : EXIT.ok;
    }
    if (sub === "list") {
      const p = parseFlags(rest, FLAGS);
      if (p.help) {
        io.out(HELP_LIST);
        return EXIT.ok;
      }
      if (p.positionals.length) throw new UsageError(`unexpected argument '${p.positionals[0]}'`);
      return listRun(p, io);
    }
    if (sub === "metrics") {
      const p = parseFlags(rest, { ...FLAGS, watch: { type: "string" }, group: { type: "string" } });
      if (p.help) {
        io.out(HELP_METRICS);
        return EXIT.ok;
      }
      if (p.positionals.length) throw new UsageError(`unexpected argument '${p.positionals[0]}'`);
      return metricsRun(p, io);
    }
    throw new UsageError(`unknown subcommand '${sub}'; expected list or metrics`);
  },
};
