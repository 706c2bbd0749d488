/**
 * `svmrt kfd`: the KFD binding from the command line.
 *   svmrt kfd abi [--json]                                  the ioctl ABI table svmrt uses
 *   svmrt kfd info [--json] [--topology-root DIR]           driver version, GPUs, hives, links, memory
 *   svmrt kfd events [--gpu ID] [--events LIST] [--json] [--max N]   live SMI event stream
 *   svmrt kfd info --emulated [--profile P] [--json]        the same, on emulated GPUs
 *   svmrt kfd events --emulated [--profile P] [--workload W] ...   a built-in workload's events
 * Without /dev/kfd (exit 5) or without permission (exit 6) a one-line message says which and
 * what to do. `--emulated` runs the very same KfdDevice / SMI reader code over runtime/emu
 * (a machine profile behind the SVM model) and says so in every output.
 */
import { KfdError, UsageError } from "../errors.ts";
import { type Emulator, emulatorCreate } from "../emu/emulator.ts";
import { EmuWorkloadAborted } from "../emu/machine.ts";
import { syscallsOpen } from "../ffi/libc.ts";
import type { Syscalls } from "../ffi/syscalls.ts";
import { KFD_DEVICE_PATH, KfdDevice } from "../kfd/device.ts";
import { SMI_EVENTS_ALL, SMI_POLL_INTERVAL_ms, type SmiEvent, SmiEventReader } from "../kfd/smi-events.ts";
import { IO_LINK_TYPE, type IoLink, KFD_SYSFS_ROOT, type Topology, type TopologyGpu, gfxTargetName, topologyRead } from "../kfd/topology.ts";
import { IOCTL, IOCTL_SPECS, type IoctlName, SMI_EVENT, STRUCTS, type SmiEventName, abiDescribe } from "../kfd/uapi.ts";
import { BUILTINS, builtinWorkload } from "../sim/builtins.ts";
import { PROFILE_DEFAULT, shippedProfiles } from "../sim/profile.ts";
import { type CliIO, type Command, type Parsed, flagInt, flagString, parseFlags } from "./command.ts";
import { EXIT } from "./exit.ts";

/** Largest --max: a bound on one run's output. */
export const EVENTS_MAX_LIMIT = 1_000_000_000;
/** Bounds of --poll-ms. */
const POLL_MS_MIN = 1;
const POLL_MS_MAX = 10_000;
/** Default poll period on the emulator, ms: the emulated GPUs wait for their readers. */
export const EMU_POLL_INTERVAL_ms = 1;
/** The built-in workload `kfd events --emulated` runs unless told. */
export const EMU_WORKLOAD_DEFAULT = "stream";

/** What the command runs on; tests pass the C test double and fixture trees. */
export interface KfdCommandDeps {
  /** Syscalls to open /dev/kfd with (default: libc). The command unloads what it opened. */
  syscalls?: () => Syscalls;
  devicePath?: string;
  /** Default for --topology-root. */
  sysfsRoot?: string;
  /** Stops `events` (besides --max and SIGINT). */
  signal?: AbortSignal;
}

const HELP_ABI = `Usage: svmrt kfd abi [--json]

Print the KFD ioctl ABI svmrt was built against (<linux/kfd_ioctl.h> 1.11): ioctl numbers with
direction and argument size, struct sizes and field offsets. --json prints
{"ioctls": {NAME: number}, "structs": {NAME: {"size": n, "fields": {FIELD: offset}}}},
the shape the conformance probe (test/native/kfd_abi_probe.c) prints from the system header.
`;

const HELP_INFO = `Usage: svmrt kfd info [--json] [--topology-root DIR] | --emulated [--profile P] [--json]

Open /dev/kfd and report the driver's KFD ioctl version, XNACK mode, the process's GPUs with
their available VRAM, and the sysfs topology: GPUs by node (gpu_id, name, gfx target and
gfx_target_version, PCI vendor:device, SIMDs, XCCs, render node, VRAM), XGMI hives, io links
and p2p links (type, weight, bandwidth), and links that lead to no node (dangling). What the
tree gets wrong (a GPU without gpu_id, a link file whose node_from is not its folder's node, a
dangling link...) is a warning on stderr naming the file, or "warnings" in --json.

Options:
  --json                 one JSON object
  --topology-root DIR    directory standing for /sys/class/kfd/kfd (or its topology/)
  --emulated             no hardware: emulated GPUs of a machine profile, through the same
                         KfdDevice code; the output says it is emulated
  --profile P            with --emulated: ${shippedProfiles().join(", ")} or a YAML path
                         (default ${PROFILE_DEFAULT})
`;

const HELP_EVENTS = `Usage: svmrt kfd events [--gpu ID] [--events LIST] [--json] [--max N] [--poll-ms MS]
       svmrt kfd events --emulated [--profile P] [--workload W] [same options]

Stream the KFD SMI events of this process (and device-wide events) as they happen.

Options:
  --gpu ID         one gpu_id (decimal or 0x hex); default: every GPU of the process
  --events LIST    comma-separated names or ids (e.g. MIGRATE_START,MIGRATE_END,7);
                   default: all. ALL_PROCESS adds other processes' events (needs CAP_SYS_ADMIN)
  --json           one JSON object per event per line
  --max N          stop after N events (default: run until interrupted)
  --poll-ms MS     poll period, ${POLL_MS_MIN}..${POLL_MS_MAX} (default ${SMI_POLL_INTERVAL_ms})
  --emulated       no hardware: run a built-in workload on emulated GPUs as this process
                   and stream its events through the same SMI fd, reader and parser;
                   ends when the workload is done and its events are read
  --profile P      with --emulated: machine profile (default ${PROFILE_DEFAULT})
  --workload W     with --emulated: ${Object.keys(BUILTINS).join(", ")} (default ${EMU_WORKLOAD_DEFAULT})
                   (--poll-ms defaults to ${EMU_POLL_INTERVAL_ms} there: the emulated GPUs wait for readers)

Malformed records are counted and reported on stderr at the end, never fatal.
`;

const HELP = `Usage: svmrt kfd <abi|info|events> [options]

The KFD (/dev/kfd) binding: ABI table, driver and topology info, live SMI events.
Run 'svmrt kfd <subcommand> --help' for each.

${HELP_ABI}
${HELP_INFO}
${HELP_EVENTS}`;

/** The emulated GPUs of --profile. @throws ConfigError for a bad profile */
function emuStart(p: Parsed): Emulator {
  return emulatorCreate(flagString(p, "profile") ?? PROFILE_DEFAULT);
}

/** Flags that only make sense with --emulated. @throws UsageError */
function emuFlagsCheck(p: Parsed, names: string[]): void {
  if (p.values.emulated) return;
  for (const n of names) if (p.values[n] !== undefined) throw new UsageError(`--${n} needs --emulated`);
}

/** Hint added to "no /dev/kfd": what to run without a GPU. */
const NO_DEVICE_EMULATED_HINT = "without a GPU, add --emulated to run on emulated GPUs";

/** JSON with bigint as decimal strings. */
function jsonOf(value: unknown): string {
  return JSON.stringify(value, (_k, v) => (typeof v === "bigint" ? v.toString() : v));
}

const hex = (n: number | bigint): string => `0x${n.toString(16)}`;

/** A gpu_id in decimal or 0x hex. @throws UsageError */
function gpuIdParse(raw: string): number {
  const n = /^0x[0-9a-f]+$/i.test(raw) ? Number.parseInt(raw, 16) : /^\d+$/.test(raw) ? Number(raw) : Number.NaN;
  if (!Number.isSafeInteger(n) || n <= 0 || n > 0xffffffff) {
    throw new UsageError(`--gpu: expected a gpu_id (decimal or 0x hex, not 0), got '${raw}'`);
  }
  return n;
}

/** --events LIST into event names/ids. @throws UsageError naming the unknown entry */
function eventsParse(raw: string | undefined): (SmiEventName | number)[] {
  if (raw === undefined) return [...SMI_EVENTS_ALL];
  const out: (SmiEventName | number)[] = [];
  for (const item of raw.split(",").map((s) => s.trim()).filter(Boolean)) {
    const upper = item.toUpperCase() as SmiEventName;
    if (upper in SMI_EVENT) out.push(upper);
    else if (/^\d+$/.test(item) && Number(item) >= 1 && Number(item) <= 64) out.push(Number(item));
    else throw new UsageError(`--events: unknown event '${item}'; known: ${Object.keys(SMI_EVENT).join(", ")}`);
  }
  if (out.length === 0) throw new UsageError("--events: give at least one event");
  return out;
}

function abiRun(p: Parsed, io: CliIO): number {
  if (p.values.json) {
    io.out(`${JSON.stringify(abiDescribe(), null, 2)}\n`);
    return EXIT.ok;
  }
  io.out("ioctl                      nr    dir  size  number      since\n");
  for (const [name, s] of Object.entries(IOCTL_SPECS)) {
    const size = STRUCTS[s.struct].size;
    io.out(
      `${name.padEnd(26)} ${hex(s.nr).padEnd(5)} ${s.dir.padEnd(4)} ${String(size).padEnd(5)} ${hex(IOCTL[name as IoctlName]).padEnd(11)} 1.${s.since_minor}\n`,
    );
  }
  io.out("\nstruct                           size  fields (offset)\n");
  for (const [name, s] of Object.entries(abiDescribe().structs)) {
    const fields = Object.entries(s.fields).map(([f, o]) => `${f}@${o}`);
    io.out(`${name.padEnd(32)} ${String(s.size).padEnd(5)} ${fields.join(" ")}\n`);
  }
  return EXIT.ok;
}

/** Open the device through the deps' syscalls; the caller disposes both. */
function deviceOpen(deps: KfdCommandDeps): { sys: Syscalls; dev: KfdDevice } {
  const sys = (deps.syscalls ?? (() => syscallsOpen()))();
  try {
    return { sys, dev: KfdDevice.open(sys, deps.devicePath ?? KFD_DEVICE_PATH) };
  } catch (e) {
    sys.unload();
    if (e instanceof KfdError && e.op.startsWith("open ") && (e.errnoName === "ENOENT" || e.errnoName === "ENODEV")) {
      throw new KfdError(e.op, e.errnoName, e.errno, `${e.hint}; ${NO_DEVICE_EMULATED_HINT}`);
    }
    throw e;
  }
}

function linkType(t: number): string {
  return t === IO_LINK_TYPE.XGMI ? "XGMI" : t === IO_LINK_TYPE.PCIEXPRESS ? "PCIe" : `type ${t}`;
}

function infoRun(p: Parsed, io: CliIO, deps: KfdCommandDeps, emu?: Emulator): number {
  const { sys, dev } = deviceOpen(deps);
  let report: Record<string, unknown> = emu === undefined ? {} : { emulated: true, profile: emu.profile };
  try {
    const apertures = dev.getProcessApertures();
    const xnack = dev.supports("SET_XNACK_MODE") ? dev.setXnackMode("query") : undefined;
    const processGpus = apertures.map((a) => ({
      gpuId: a.gpuId,
      availableBytes: dev.supports("AVAILABLE_MEMORY") ? dev.availableMemory(a.gpuId) : undefined,
      gpuvmBase: hex(a.gpuvmBase),
      gpuvmLimit: hex(a.gpuvmLimit),
    }));
    report = { ...report, version: dev.version, xnack, processGpus };
  } finally {
    dev.close();
    sys.unload();
  }
  const topo: Topology = topologyRead(flagString(p, "topology-root") ?? deps.sysfsRoot ?? KFD_SYSFS_ROOT);
  const nodeGpu = new Map(topo.nodes.map((n) => [n.node, n.gpuId]));
  report.gpus = topo.gpus.map((g) => ({
    gpuId: g.gpuId,
    gpuIdKnown: g.gpuIdKnown,
    node: g.node,
    name: g.name,
    gfxTargetVersion: g.gfxTargetVersion,
    gfxTarget: g.gfxTargetVersion ? gfxTargetName(g.gfxTargetVersion) : undefined,
    vendorId: g.vendorId === undefined ? undefined : hex(g.vendorId),
    deviceId: g.deviceId === undefined ? undefined : hex(g.deviceId),
    simdCount: g.simdCount,
    hiveId: hex(g.hiveId),
    drmRenderMinor: g.drmRenderMinor,
    numXcc: g.numXcc,
    vramBytes: g.vram_bytes,
  }));
  report.hives = topo.hives.map((h) => ({ hiveId: hex(h.hiveId), gpuIds: h.gpuIds }));
  const linkOf = (l: IoLink): LinkReport => ({
    fromNode: l.nodeFrom,
    toNode: l.nodeTo,
    fromGpuId: nodeGpu.get(l.nodeFrom) ?? 0,
    toGpuId: nodeGpu.get(l.nodeTo) ?? 0,
    type: linkType(l.type),
    weight: l.weight,
    minBandwidthMbps: l.minBandwidth_mbps,
    maxBandwidthMbps: l.maxBandwidth_mbps,
  });
  report.links = topo.nodes.flatMap((n) => n.ioLinks.map(linkOf));
  report.p2pLinks = topo.nodes.flatMap((n) => n.p2pLinks.map(linkOf));
  report.danglingLinks = topo.danglingLinks.map((d) => ({
    fromNode: d.node,
    toNode: d.link.nodeTo,
    kind: d.kind,
    reason: d.reason,
    type: linkType(d.link.type),
    file: d.file,
  }));
  report.warnings = topo.warnings;
  if (topo.warningsOmitted > 0) report.warningsOmitted = topo.warningsOmitted;
  const warningCount = topo.warnings.length + topo.warningsOmitted;
  if (p.values.json) {
    io.out(`${jsonOf(report)}\n`);
    if (warningCount > 0) io.err(`svmrt kfd info: ${warningCount} topology warnings (see "warnings" in the JSON)\n`);
    return EXIT.ok;
  }
  const v = report.version as { major: number; minor: number };
  if (emu !== undefined) io.out(`EMULATED: no GPU hardware; profile ${emu.profile} (svmrt's SVM model behind an emulated /dev/kfd)\n`);
  io.out(`KFD ioctl ${v.major}.${v.minor}, XNACK ${report.xnack === undefined ? "unknown" : report.xnack ? "on" : "off"}\n`);
  io.out("process GPUs:\n");
  for (const g of report.processGpus as { gpuId: number; availableBytes?: number }[]) {
    const avail = g.availableBytes === undefined ? "n/a (KFD < 1.9)" : `${(g.availableBytes / 2 ** 30).toFixed(1)} GiB available`;
    io.out(`  gpu ${hex(g.gpuId)}  ${avail}\n`);
  }
  io.out(`topology (${emu === undefined ? topo.dir : `emulated, profile ${emu.profile}`}):\n`);
  for (const g of topo.gpus) io.out(`  ${gpuLine(g)}\n`);
  for (const h of topo.hives) {
    const members = topo.gpus.filter((g) => g.hiveId === h.hiveId).map((g) => (g.gpuIdKnown ? String(g.gpuId) : `node ${g.node} (gpu_id unknown)`));
    io.out(`  hive ${hex(h.hiveId)}: ${members.join(", ")}\n`);
  }
  const linkLine = (l: LinkReport): string => `${l.fromNode} -> ${l.toNode} ${l.type} weight ${l.weight} bandwidth ${l.minBandwidthMbps}..${l.maxBandwidthMbps} MB/s`;
  for (const l of report.links as LinkReport[]) io.out(`  link ${linkLine(l)}\n`);
  for (const l of report.p2pLinks as LinkReport[]) io.out(`  p2p link ${linkLine(l)}\n`);
  for (const d of topo.danglingLinks) {
    const why = d.reason === "self" ? "to itself" : `no node ${d.link.nodeTo}`;
    io.out(`  dangling ${d.kind === "p2p_links" ? "p2p link" : "link"} ${d.node} -> ${d.link.nodeTo} ${linkType(d.link.type)} (${why}): ${d.file}\n`);
  }
  for (const w of topo.warnings) io.err(`svmrt kfd info: warning: ${w.message}\n`);
  if (topo.warningsOmitted > 0) io.err(`svmrt kfd info: ${topo.warningsOmitted} more topology warnings not shown\n`);
  return EXIT.ok;
}

/** One link of `kfd info` (links and p2pLinks of --json). */
interface LinkReport {
  fromNode: number;
  toNode: number;
  fromGpuId: number;
  toGpuId: number;
  type: string;
  weight: number;
  minBandwidthMbps: number;
  maxBandwidthMbps: number;
}

/** A topology GPU in one line: id (or its absence), name, gfx target, PCI ids, SIMDs, XCCs, VRAM, hive. */
function gpuLine(g: TopologyGpu): string {
  const id = g.gpuIdKnown ? `gpu ${g.gpuId} (${hex(g.gpuId)})` : "gpu_id unknown";
  const gfx = g.gfxTargetVersion ? `${gfxTargetName(g.gfxTargetVersion)} (gfx_target_version ${g.gfxTargetVersion})` : "";
  const pci = g.deviceId === undefined ? "" : `device ${hex(g.vendorId ?? 0)}:${hex(g.deviceId)}`;
  const what = [g.name, gfx, pci].filter((s) => s !== "").join(" ");
  return (
    `node ${g.node} ${id}${what === "" ? "" : ` ${what}`}: ${g.simdCount} SIMDs, ${g.numXcc ?? "?"} XCC, renderD${g.drmRenderMinor}, ` +
    `${(g.vram_bytes / 2 ** 30).toFixed(1)} GiB VRAM, hive ${hex(g.hiveId)}`
  );
}

function eventLine(e: SmiEvent): string {
  const { kind, gpuId, ...rest } = e;
  const fields = Object.entries(rest).map(([k, v]) => {
    if (typeof v === "boolean" || typeof v === "string" || typeof v === "bigint") return `${k}=${v}`;
    return k === "pid" || k === "trigger" || k === "errorCode" || k === "seq" || k === "bitmask" ? `${k}=${v}` : `${k}=${hex(v)}`;
  });
  return `gpu ${hex(gpuId)} ${kind} ${fields.join(" ")}\n`;
}

/** An emulated `events` run: the emulator and the built-in workload it runs as this process. */
interface EmuEvents {
  emu: Emulator;
  workload: NonNullable<ReturnType<typeof builtinWorkload>>;
}

async function eventsRun(p: Parsed, io: CliIO, deps: KfdCommandDeps, emuEvents?: EmuEvents): Promise<number> {
  const events = eventsParse(flagString(p, "events"));
  const gpuRaw = flagString(p, "gpu");
  const gpuOnly = gpuRaw === undefined ? undefined : gpuIdParse(gpuRaw);
  const max = flagInt(p, "max", EVENTS_MAX_LIMIT, 1, EVENTS_MAX_LIMIT);
  const poll_ms = flagInt(p, "poll-ms", emuEvents === undefined ? SMI_POLL_INTERVAL_ms : EMU_POLL_INTERVAL_ms, POLL_MS_MIN, POLL_MS_MAX);
  const json = p.values.json === true;
  const { sys, dev } = deviceOpen(deps);
  const readers: SmiEventReader[] = [];
  let seen = 0;
  // The emulated workload runs as this process until done or stopped (then awaited before close).
  const workloadStop = new AbortController();
  let workloadRun: Promise<unknown> | undefined;
  const emit = (batch: SmiEvent[]): void => {
    for (const e of batch) {
      if (seen >= max) break;
      seen++;
      if (emuEvents === undefined) io.out(json ? `${jsonOf(e)}\n` : eventLine(e));
      else io.out(json ? `${jsonOf({ ...e, emulated: true })}\n` : eventLine(e));
    }
  };
  try {
    const gpus = gpuOnly !== undefined ? [gpuOnly] : dev.getProcessApertures().map((a) => a.gpuId);
    for (const g of gpus) readers.push(SmiEventReader.open(dev, g, events));
    if (emuEvents !== undefined && !json) {
      const { emu, workload } = emuEvents;
      io.out(`# EMULATED: no GPU hardware; profile ${emu.profile}, workload ${workload.name}, pid ${emu.kfd.pid}\n`);
    }
    await new Promise<void>((resolve, reject) => {
      let finished = false;
      const finish = (err?: unknown): void => {
        if (finished) return;
        finished = true;
        process.off("SIGINT", stop);
        deps.signal?.removeEventListener("abort", stop);
        for (const r of readers) r.close();
        workloadStop.abort();
        if (err === undefined) resolve();
        else reject(err);
      };
      const stop = (): void => finish();
      process.on("SIGINT", stop);
      deps.signal?.addEventListener("abort", stop);
      if (deps.signal?.aborted) stop();
      const fail = (e: unknown): void => finish(e);
      for (const r of readers) {
        r.watch(
          (batch) => {
            emit(batch);
            if (seen >= max) stop();
          },
          fail,
          poll_ms,
        );
      }
      if (emuEvents !== undefined && !finished) {
        const { emu, workload } = emuEvents;
        workloadRun = emu.machine.workloadRun(workload, emu.kfd.pid, workloadStop.signal).then(
          () => {
            if (finished) return;
            // Done: what the fifos still hold is the rest of the stream.
            try {
              for (const r of readers) for (let b = r.pollOnce(); b.length > 0 && seen < max; b = r.pollOnce()) emit(b);
              finish();
            } catch (e) {
              finish(e);
            }
          },
          (e: unknown) => finish(e instanceof EmuWorkloadAborted ? undefined : e),
        );
      }
    });
  } finally {
    for (const r of readers) r.close();
    workloadStop.abort();
    await workloadRun;
    dev.close();
    sys.unload();
  }
  const overlong = readers.reduce((s, r) => s + r.parser.malformed.overlong, 0);
  const unparsable = readers.reduce((s, r) => s + r.parser.malformed.unparsable, 0);
  if (overlong + unparsable > 0) {
    io.err(`svmrt kfd events: ${overlong + unparsable} malformed records skipped (${overlong} overlong, ${unparsable} unparsable)\n`);
  }
  if (emuEvents !== undefined) {
    const { emu, workload } = emuEvents;
    io.err(`svmrt kfd events: emulated (profile ${emu.profile}, workload ${workload.name}): ${seen} events shown, ${emu.machine.smiDropped} dropped on full readers\n`);
  }
  return EXIT.ok;
}

/** The `kfd` command over `deps` (default: libc, /dev/kfd, /sys/class/kfd/kfd). */
export function kfdCommandCreate(deps: KfdCommandDeps = {}): Command {
  return {
    name: "kfd",
    summary: "KFD binding: ioctl ABI, driver and topology info, live SMI events",
    help: HELP,
    async run(argv: string[], io: CliIO): Promise<number> {
      const [sub, ...rest] = argv;
      if (sub === undefined || sub === "--help" || sub === "-h") {
        io.out(HELP);
        return sub === undefined ? EXIT.usage : EXIT.ok;
      }
      if (sub === "abi") {
        const p = parseFlags(rest, { json: { type: "boolean" } });
        if (p.help) {
          io.out(HELP_ABI);
          return EXIT.ok;
        }
        if (p.positionals.length) throw new UsageError(`unexpected argument '${p.positionals[0]}'`);
        return abiRun(p, io);
      }
      if (sub === "info") {
        const p = parseFlags(rest, {
          json: { type: "boolean" },
          "topology-root": { type: "string" },
          emulated: { type: "boolean" },
          profile: { type: "string" },
        });
        if (p.help) {
          io.out(HELP_INFO);
          return EXIT.ok;
        }
        if (p.positionals.length) throw new UsageError(`unexpected argument '${p.positionals[0]}'`);
        emuFlagsCheck(p, ["profile"]);
        if (!p.values.emulated) return infoRun(p, io, deps);
        if (p.values["topology-root"] !== undefined) throw new UsageError("--topology-root and --emulated exclude each other: the emulator brings its own topology");
        const emu = emuStart(p);
        try {
          return infoRun(p, io, { ...deps, syscalls: () => emu.kfd, devicePath: KFD_DEVICE_PATH, sysfsRoot: emu.sysfsRoot }, emu);
        } finally {
          emu.dispose();
        }
      }
      if (sub === "events") {
        const p = parseFlags(rest, {
          json: { type: "boolean" },
          gpu: { type: "string" },
          events: { type: "string" },
          max: { type: "string" },
          "poll-ms": { type: "string" },
          emulated: { type: "boolean" },
          profile: { type: "string" },
          workload: { type: "string" },
        });
        if (p.help) {
          io.out(HELP_EVENTS);
          return EXIT.ok;
        }
        if (p.positionals.length) throw new UsageError(`unexpected argument '${p.positionals[0]}'`);
        emuFlagsCheck(p, ["profile", "workload"]);
        if (!p.values.emulated) return eventsRun(p, io, deps);
        const name = flagString(p, "workload") ?? EMU_WORKLOAD_DEFAULT;
        if (!(name in BUILTINS)) throw new UsageError(`--workload ${name}: no such built-in; known: ${Object.keys(BUILTINS).join(", ")}`);
        const emu = emuStart(p);
        try {
          const workload = builtinWorkload(name, emu.machine.profile)!;
          return await eventsRun(p, io, { ...deps, syscalls: () => emu.kfd, devicePath: KFD_DEVICE_PATH }, { emu, workload });
        } finally {
          emu.dispose();
        }
      }
      throw new UsageError(`unknown subcommand '${sub}'; expected abi, info or events`);
    },
  };
}

export const kfdCommand: Command = kfdCommandCreate();
