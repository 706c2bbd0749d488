/**
 * `svmrt compare`: run workloads × MigrationPolicy files through the simulator, one child
 * process per cell on all cores, and print a table (or one JSON object); optionally write a
 * self-contained HTML report.
 */
import { mkdirSync, statSync } from "node:fs";
import { availableParallelism } from "node:os";
import { join } from "node:path";
import { builtinPath } from "../assets.ts";
import { positionOf, readConfigFile } from "../config.ts";
import { ConfigError, IoError, UsageError } from "../errors.ts";
import { failureText } from "../policy/decision-log.ts";
import { findPolicyFiles } from "../policy/files.ts";
import { readPolicySpec } from "../policy/loader.ts";
import { BUILTINS, builtinWorkload } from "../sim/builtins.ts";
import { COMPARE_CELLS_MAX, type CompareCell, runCompareMatrix } from "../sim/compare.ts";
import { loadProfile, PROFILE_DEFAULT, shippedProfiles } from "../sim/profile.ts";
import { fmtBytes, fmtNs, renderReport } from "../sim/report.ts";
import { compareFingerprint, type MergedCompare, shardCellIndices, shardFileName, shardFilesRead, shardFileText, shardParse, shardsMerge } from "../sim/shard.ts";
import { parseWorkload, workloadAccesses } from "../sim/workload.ts";
import { YAML_BYTES_MAX } from "../sim/yaml-read.ts";
import { type CliIO, type Command, flagInt, flagString, parseFlags } from "./command.ts";
import { EXIT } from "./exit.ts";
import { OutputFile, outputCheck, outputWriteAtomic } from "./output.ts";
import { PROGRESS_LINE_INTERVAL_ms, SEED_DEFAULT } from "./sim.ts";

/** Most parallel cells. */
export const COMPARE_JOBS_MAX = 256;
/** Width of the progress bar, characters. */
const PROGRESS_BAR_CHARS = 30;

const HELP = `Usage: svmrt compare --workloads A,B,.. --policies FILE|DIR,.. [options]

Run every workload with every MigrationPolicy in the simulator (one process per cell, in
parallel) and compare: simulated time, faults, bytes moved, evictions, thrashing.

Options:
  --profile P        machine profile: ${shippedProfiles().join(", ")} or a YAML path (default ${PROFILE_DEFAULT})
  --workloads LIST   comma-separated built-in workloads (${Object.keys(BUILTINS).join(", ")}) or workload YAML files
  --policies LIST    comma-separated MigrationPolicy files or folders (every MigrationPolicy .yaml below;
                     other kinds are skipped). The native kernel default is not implied: name
                     policies/migration/kernel-default.yaml to include it.
  --report FILE      also write a self-contained HTML report (charts, timelines, one range's life)
  --json             print one JSON object {profile, seed, cells: [{workload, policy, result}]}
  --seed N           PRNG seed of every cell (default ${SEED_DEFAULT})
  --jobs N           cells run at once (default: the number of cores)
  --range ADDR       the page (hex 0x... or decimal) whose range the report follows
                     (default: the first migration of each workload, in policy order)
  --plugin-root DIR  another folder policy plugins may live in (repeatable)

Sweeps over several machines (a Slurm job array, a Kubernetes Indexed Job: deploy/):
  --shard K/N        run only shard K of N (cells K-1, K-1+N, ... in (workload, policy)
                     order) and write them to --out DIR/shard-K-of-N.json; same inputs on
                     every machine
  --out DIR          the folder the shard file goes to (created if missing)
  --merge DIR|FILE   read the N shard files (of one or more folders; repeatable, more paths
                     may follow) and print the table, --json and --report of the whole
                     matrix: the same bytes as one run on one machine

Examples:
  svmrt compare --workloads stream,pingpong --policies builtin:policies/migration/
  svmrt compare --profile mi300x-8 --workloads oversub-150,pingpong \
      --policies builtin:policies/migration/ --report report.html
  svmrt compare ... --shard 2/8 --out sweep/        # on each of 8 machines, K = 1..8
  svmrt compare --merge sweep/ --json --report report.html

Results are ordered by (workload, policy) and are byte-identical for the same inputs.
A cell that fails is reported with its stderr; the others complete, and the exit code is 1.
`;

/**
 * Before the first cell: the shard file can be written. Its temporary file is created and
 * removed again, as the write at the end will create it (root passes the access check of a
 * folder such as /proc, where only creating a file fails); a FIFO or device is only checked.
 * @throws IoError naming the file, the errno and the system's words, as every output does
 */
function shardOutputCheck(file: string): void {
  outputCheck(file, "--out");
  let regular = true;
  try {
    regular = statSync(file).isFile();
  } catch {
    // Not there yet: it will be a regular file.
  }
  if (regular) OutputFile.open(file, "--out").abort();
}

function splitList(flag: string, v: string | undefined): string[] {
  if (v === undefined) throw new UsageError(`--${flag} is required`);
  const items = v.split(",").map((s) => s.trim());
  if (items.some((s) => s === "")) throw new UsageError(`--${flag}: empty item in '${v}'`);
  return items;
}

function parseRange(v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = /^0x[0-9a-f]+$/i.test(v) ? Number.parseInt(v.slice(2), 16) : /^\d+$/.test(v) ? Number(v) : Number.NaN;
  if (!Number.isSafeInteger(n)) throw new UsageError(`--range: expected a page number in hex (0x...) or decimal, got '${v}'`);
  return n;
}

function table(cells: CompareCell[]): string {
  const head = ["policy", "sim time", "vs fastest", "faults", "dropped", "h2d", "d2h", "d2d", "evictions", "thrash", "fallbacks"];
  const out: string[] = [];
  const workloads = [...new Set(cells.map((c) => c.workload))];
  for (const wl of workloads) {
    const cs = cells.filter((c) => c.workload === wl);
    const fastest = Math.min(...cs.map((c) => c.result?.simTimeNs ?? Number.POSITIVE_INFINITY));
    const rows = cs.map((c) => {
      const r = c.result;
      if (!r) return [c.policy, `FAILED (exit ${c.exitCode})`];
      return [
        c.policy,
        fmtNs(r.simTimeNs),
        fastest > 0 ? `${(r.simTimeNs / fastest).toFixed(2)}x` : "n/a",
        String(r.gpuFaults),
        String(r.gpuFaultsDropped),
        fmtBytes(r.bytesMigrated.h2d),
        fmtBytes(r.bytesMigrated.d2h),
        fmtBytes(r.bytesMigrated.d2d),
        String(r.evictions),
        String(r.thrashEvents),
        String(r.vramFallbacks + r.policyFallbacks),
      ];
    });
    const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r.length === head.length ? (r[i]?.length ?? 0) : 0))));
    const fmtRow = (r: string[]): string =>
      r.length === head.length ? r.map((v, i) => (i === 0 ? v.padEnd(widths[0]!) : v.padStart(widths[i]!))).join("  ") : `${r[0]!.padEnd(widths[0]!)}  ${r[1]}`;
    out.push(`${wl}`, `  ${fmtRow(head)}`, ...rows.map((r) => `  ${fmtRow(r)}`), "");
  }
  return `${out.join("\n")}`;
}

/** Why policies fell back, cell by cell (nothing when none did). */
function failuresText(cells: CompareCell[]): string {
  const lines: string[] = [];
  for (const c of cells) {
    for (const g of c.result?.policyFailures ?? []) lines.push(`  ${c.workload} × ${c.policy}: ${failureText(g)}`);
    const other = c.result?.policyFailuresOther ?? 0;
    if (other > 0) lines.push(`  ${c.workload} × ${c.policy}: and ${other} failed ${other === 1 ? "call" : "calls"} of other hooks or reasons`);
  }
  return lines.length === 0 ? "" : `policy fallbacks\n${lines.join("\n")}\n\n`;
}

export const compareCommand: Command = {
  name: "compare",
  summary: "run workloads × migration policies in the simulator and compare them (table, JSON, HTML report)",
  help: HELP,
  async run(argv: string[], io: CliIO): Promise<number> {
    const p = parseFlags(argv, {
      profile: { type: "string" },
      workloads: { type: "string" },
      policies: { type: "string" },
      report: { type: "string" },
      json: { type: "boolean" },
      seed: { type: "string" },
      jobs: { type: "string" },
      range: { type: "string" },
      "plugin-root": { type: "string", multiple: true },
      shard: { type: "string" },
      out: { type: "string" },
      merge: { type: "string", multiple: true },
    });
    if (p.help) {
      io.out(HELP);
      return EXIT.ok;
    }
    const merge = p.values.merge as string[] | undefined;
    if (merge !== undefined) return mergeRun(p, [...merge, ...p.positionals], io);
    if (p.positionals.length > 0) throw new UsageError(`unexpected argument '${p.positionals[0]}'`);
    const shardArg = flagString(p, "shard");
    const shard = shardArg === undefined ? undefined : shardParse(shardArg);
    const outDir = flagString(p, "out");
    if ((shard === undefined) !== (outDir === undefined)) throw new UsageError("--shard K/N and --out DIR go together");
    if (shard !== undefined && (p.values.json === true || flagString(p, "report") !== undefined)) {
      throw new UsageError("--json and --report need every cell: give them to svmrt compare --merge DIR once the shards are done");
    }
    const seed = flagInt(p, "seed", SEED_DEFAULT, 0, 2 ** 32 - 1);
    const jobs = flagInt(p, "jobs", Math.min(COMPARE_JOBS_MAX, availableParallelism()), 1, COMPARE_JOBS_MAX);
    const range = parseRange(flagString(p, "range"));
    const workloads = splitList("workloads", flagString(p, "workloads"));
    const policyArgs = splitList("policies", flagString(p, "policies"));
    const pluginRoots = (p.values["plugin-root"] as string[] | undefined) ?? [];
    const profileArg = flagString(p, "profile") ?? PROFILE_DEFAULT;
    // Check every input here, once, so a bad file is a config error (exit 3) and not N failing cells.
    const profile = loadProfile(profileArg);
    const weights: number[] = [];
    /** What the results depend on (a shard's fingerprint): each workload's text. */
    const workloadTexts: { arg: string; text: string }[] = [];
    for (const w of workloads) {
      const builtin = builtinWorkload(w, profile);
      if (builtin !== undefined) {
        weights.push(workloadAccesses(builtin));
        if (shard !== undefined) workloadTexts.push({ arg: w, text: BUILTINS[w]!.yaml(profile) });
        continue;
      }
      if (!/[/\\]|\.ya?ml$/.test(w)) throw new UsageError(`--workloads ${w}: no such built-in (svmrt sim --list-workloads) and not a .yaml path`);
      // Read once, as loadWorkloadFile reads it: the text checked and weighed here is the text the fingerprint covers.
      const text = readConfigFile(w, YAML_BYTES_MAX, "a readable workload file (or a built-in: svmrt sim --list-workloads)");
      weights.push(workloadAccesses(parseWorkload(w, text, profile)));
      if (shard !== undefined) workloadTexts.push({ arg: w, text });
    }
    if (new Set(workloads).size !== workloads.length) throw new UsageError("--workloads: a workload is named twice");
    const explicit = new Set(policyArgs.filter((a) => /\.ya?ml$/.test(a)).map(builtinPath));
    const policies: { file: string; name: string }[] = [];
    const revisions: { name: string; revision: string }[] = [];
    for (const file of findPolicyFiles(policyArgs)) {
      if (policies.some((q) => q.file === file)) continue;
      const spec = await readPolicySpec(file, { pluginRoots });
      if (spec.kind !== "MigrationPolicy") {
        if (explicit.has(file)) throw new ConfigError(positionOf(spec.yaml, ["kind"]), "kind", "a MigrationPolicy for the simulator", `it is a ${spec.kind}`);
        continue;
      }
      policies.push({ file, name: spec.name });
      revisions.push({ name: spec.name, revision: spec.revision });
    }
    if (policies.length === 0) throw new UsageError(`--policies ${policyArgs.join(",")}: no MigrationPolicy file found`);
    if (workloads.length * policies.length > COMPARE_CELLS_MAX) {
      throw new UsageError(`${workloads.length} workloads × ${policies.length} policies: at most ${COMPARE_CELLS_MAX} cells`);
    }
    const reportFile = flagString(p, "report");
    // Before the first cell: a report that cannot be written is known now, not after every cell ran.
    if (reportFile !== undefined) outputCheck(reportFile, "--report");
    const matrixCells = workloads.length * policies.length;
    const only = shard === undefined ? undefined : shardCellIndices(matrixCells, shard);
    if (shard !== undefined) {
      try {
        mkdirSync(outDir!, { recursive: true });
      } catch (e) {
        throw new IoError(outDir!, "create folder", (e as NodeJS.ErrnoException).code ?? "", "--out");
      }
    }
    const shardFile = shard === undefined ? undefined : join(outDir!, shardFileName(shard));
    if (shardFile !== undefined) shardOutputCheck(shardFile);
    const total = only?.length ?? matrixCells;
    const started = performance.now();
    let lastLine = started;
    const progress = (done: number): void => {
      if (!io.interactive) {
        // Logs and CI: a line every few seconds once the comparison is long.
        const now = performance.now();
        if (now - lastLine < PROGRESS_LINE_INTERVAL_ms && done < total) return;
        if (now - started < PROGRESS_LINE_INTERVAL_ms) return;
        lastLine = now;
        io.err(`svmrt compare: ${done}/${total} cells done, ${((now - started) / 1000).toFixed(0)} s elapsed\n`);
        return;
      }
      const filled = Math.round((done / total) * PROGRESS_BAR_CHARS);
      io.err(`\r[${"#".repeat(filled)}${" ".repeat(PROGRESS_BAR_CHARS - filled)}] ${done}/${total} cells${done === total ? "\n" : ""}`);
    };
    if (io.interactive) progress(0);
    const cells = await runCompareMatrix({
      profile: profileArg,
      workloads,
      policies,
      seed,
      jobs,
      range,
      pluginRoots,
      weights,
      only,
      onCellDone: (done) => progress(done),
    });
    if (shard !== undefined) {
      const mine = only!.map((index) => ({ index, cell: cells[index]! }));
      const fingerprint = compareFingerprint({ profile: { ...profile, file: undefined }, seed, range, workloads: workloadTexts, policies: revisions });
      const failed = cellFailuresReport(mine.map((m) => m.cell), io);
      const text = shardFileText({ shard, fingerprint, total: matrixCells, profile: profile.name, seed, cells: mine });
      outputWriteAtomic(shardFile!, "--out", text);
      io.out(`shard ${shard.index}/${shard.count}: ${mine.length} of ${matrixCells} cells -> ${shardFile}\n`);
      return failed > 0 ? EXIT.failed : EXIT.ok;
    }
    return compareOutput(p, { profile: profile.name, seed, cells }, reportFile, io);
  },
};

/** `--merge`: the shard files of one sweep put back together, printed as one run would. */
function mergeRun(p: ReturnType<typeof parseFlags>, paths: string[], io: CliIO): number {
  for (const f of ["workloads", "policies", "profile", "seed", "jobs", "range", "shard", "out", "plugin-root"]) {
    if (p.values[f] !== undefined) throw new UsageError(`--merge takes the inputs from the shard files: --${f} does not go with it`);
  }
  const reportFile = flagString(p, "report");
  if (reportFile !== undefined) outputCheck(reportFile, "--report");
  return compareOutput(p, shardsMerge(shardFilesRead(paths)), reportFile, io);
}

/** Each failed cell on stderr with its exit code and stderr; how many failed. */
function cellFailuresReport(cells: readonly CompareCell[], io: CliIO): number {
  const failed = cells.filter((c) => c.result === undefined);
  for (const c of failed) io.err(`svmrt compare: ${c.workload} × ${c.policyFile} failed (exit ${c.exitCode}):\n${c.error}\n`);
  return failed.length;
}

/** The table (or JSON) and the report of a whole matrix; the exit code. */
function compareOutput(p: ReturnType<typeof parseFlags>, m: MergedCompare, reportFile: string | undefined, io: CliIO): number {
  const { cells, seed, profile } = m;
  const failed = cellFailuresReport(cells, io);
  // Results first: a report that fails to be written loses none of them.
  if (p.values.json === true) {
    const out = {
      profile,
      seed,
      cells: cells.map((c) =>
        c.result ? { workload: c.workload, policy: c.policy, result: c.result } : { workload: c.workload, policy: c.policy, policyFile: c.policyFile, exitCode: c.exitCode, error: c.error },
      ),
    };
    io.out(`${JSON.stringify(out)}\n`);
  } else {
    io.out(`${profile}, seed ${seed}, simulated time (lower is better)\n\n${table(cells)}${failuresText(cells)}`);
  }
  if (reportFile !== undefined) {
    outputWriteAtomic(reportFile, "--report", renderReport({ profile, seed, cells }));
    if (p.values.json !== true) io.out(`report: ${reportFile}\n`);
  }
  return failed > 0 ? EXIT.failed : EXIT.ok;
}
