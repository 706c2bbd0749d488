/**
 * `svmrt sim`: run a workload (built-in, YAML file or trace) on a machine profile through
 * the SVM model with a migration policy, and print a summary (or one JSON object).
 */
import { UsageError } from "../errors.ts";
import { BUILTINS, builtinWorkload } from "../sim/builtins.ts";
import { EventSummarizer, isPageLine, type RangeOfInterest } from "../sim/compare.ts";
import { costOverrideParse } from "../sim/cost.ts";
import { runSimAsync, type SimResult } from "../sim/engine.ts";
import { type DecisionLog, failureText } from "../policy/decision-log.ts";
import { resolveMigrationPolicy } from "../sim/policy.ts";
import { loadProfile, PROFILE_DEFAULT, shippedProfiles } from "../sim/profile.ts";
import { type OnBadLine, parseTrace, readTraceFile } from "../sim/trace.ts";
import { loadWorkloadFile } from "../sim/workload.ts";
import { FULL_CHECK_EVERY_DEFAULT } from "../svm/model.ts";
import { type CliIO, type Command, flagInt, flagString, parseFlags } from "./command.ts";
import { EXIT } from "./exit.ts";
import { OutputFile } from "./output.ts";

/** Default seed. */
export const SEED_DEFAULT = 1;
/** Event lines buffered before a write to the --events file. */
const EVENTS_FLUSH_LINES = 65_536;
/**
 * Wall time between two progress lines when stderr is not a terminal (logs, CI), ms; the first
 * comes after this long, so short runs print none.
 */
export const PROGRESS_LINE_INTERVAL_ms = 5_000;
/** Wall time between two progress lines with --progress, ms. */
export const PROGRESS_LINE_FORCED_INTERVAL_ms = 1_000;

const HELP = `Usage: svmrt sim [--profile P] (--workload W | --trace FILE) [options]

Simulate the Linux kernel's SVM (kfd_svm.c) on a machine profile.

Options:
  --profile P          machine profile: ${shippedProfiles().join(", ")} or a YAML path (default ${PROFILE_DEFAULT})
  --workload W         a built-in workload (see --list-workloads) or a workload YAML file
  --trace FILE         replay a KFD SMI event text trace or a JSONL access trace instead
  --on-bad-line M      skip | stop: what a malformed trace line does (default stop)
  --policy FILE        a MigrationPolicy YAML (sandboxed, deterministic budgets); default: the native kernel behaviour
  --plugin-root DIR    another folder policy plugins may live in (repeatable)
  --seed N             PRNG seed (default ${SEED_DEFAULT}); same inputs and seed, same bytes out
  --json               print one JSON object instead of the summary
  --events FILE        write the SMI event stream (kernel text format) to FILE
  --summary RANGE      with --json: add "events", the stream reduced to a timeline and one
                       range's life (what svmrt compare draws): RANGE is first (the first
                       migration's window), none, or PAGE:PAGES (hex 0x... or decimal)
  --find-range         only print {"range": ...}: the first migration's window (null when
                       nothing migrates); the run stops there
  --cost NAME=VALUE    override a cost parameter of the profile (repeatable), e.g.
                       --cost fault_service_ns=12000 (names, units, sources: docs/workloads.md)
  --progress           print a progress line on stderr every second (default: a line that
                       rewrites itself on a terminal, else a line every ${PROGRESS_LINE_INTERVAL_ms / 1000} s once a run is long)
  --debug              check every invariant after every operation (slow)
  --list-workloads     list the built-in workloads and exit
`;

/** Thrown by the event sink to stop a --find-range run at the first migration. */
const FOUND_RANGE = Symbol("found range");

/** --summary: first | none | PAGE:PAGES. */
function parseSummaryRange(v: string): RangeOfInterest | null | undefined {
  if (v === "first") return undefined;
  if (v === "none") return null;
  const m = /^(0x[0-9a-fA-F]+|\d+):(0x[0-9a-fA-F]+|\d+)$/.exec(v);
  const start = m === null ? Number.NaN : Number(m[1]);
  const size = m === null ? Number.NaN : Number(m[2]);
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(size) || start < 0 || size < 1) {
    throw new UsageError(`--summary: expected first, none or PAGE:PAGES (hex 0x... or decimal, PAGES >= 1), got '${v}'`);
  }
  return { startPage: start, sizePages: size };
}

/** The summary's lines on why the policy fell back (nothing when it never did). */
function failureLines(f: ReturnType<DecisionLog["failures"]> | undefined): string {
  if (f === undefined || f.groups.length === 0) return "";
  const lines = f.groups.map((g) => `    ${failureText(g)}`);
  if (f.otherRecords > 0) lines.push(`    and ${f.otherRecords} failed ${f.otherRecords === 1 ? "call" : "calls"} of other hooks or reasons`);
  return `${lines.join("\n")}\n`;
}

function summary(r: SimResult, badLines: number | undefined, failures: ReturnType<DecisionLog["failures"]> | undefined): string {
  const gib = (b: number): string => `${(b / 2 ** 30).toFixed(3)} GiB`;
  const m = r.migrations;
  return `${r.workload} on ${r.profile} (simulated machine), policy ${r.policy}, seed ${r.seed}
  simulated time      ${(r.simTimeNs / 1e6).toFixed(3)} ms
  accesses            ${r.accesses}
  GPU faults          ${r.gpuFaults} handled, ${r.gpuFaultsDropped} dropped (duplicate window), ${r.gpuFaultsFatal} fatal
  CPU faults          ${r.cpuFaults}
  migrations          ${m.h2d} h2d, ${m.d2h} d2h, ${m.d2d} d2d (prefetch ${m.byTrigger.prefetch}, gpu fault ${m.byTrigger.pagefault_gpu}, cpu fault ${m.byTrigger.pagefault_cpu}, eviction ${m.byTrigger.ttm_eviction})
  bytes migrated      ${gib(r.bytesMigrated.h2d)} h2d, ${gib(r.bytesMigrated.d2h)} d2h, ${gib(r.bytesMigrated.d2d)} d2d
  evictions           ${r.evictions} buffers, ${r.queueEvictions} queue evictions
  thrash events       ${r.thrashEvents}
  VRAM fallbacks      ${r.vramFallbacks}
  policy fallbacks    ${r.policyFallbacks}
${failureLines(failures)}${badLines !== undefined ? `  bad trace lines     ${badLines} skipped\n` : ""}`;
}

/**
 * The progress callback of a run: on a terminal a line that rewrites itself; otherwise (logs,
 * CI) a full line every PROGRESS_LINE_INTERVAL_ms once the run has lasted that long, or every
 * PROGRESS_LINE_FORCED_INTERVAL_ms with --progress. `now` is the wall clock in ms (tests pass theirs).
 */
export function progressReporter(
  io: CliIO,
  forced: boolean,
  now: () => number = () => performance.now(),
): (simNs: number, faults: number, accesses: number) => void {
  const started = now();
  const text = (simNs: number, faults: number, accesses: number): string =>
    `simulating: ${(simNs / 1e9).toFixed(3)} s simulated, ${accesses} accesses, ${faults} GPU faults handled, ${((now() - started) / 1000).toFixed(0)} s elapsed`;
  if (io.interactive && !forced) return (simNs, faults, accesses) => io.err(`\r  ${text(simNs, faults, accesses)}`);
  const interval = forced ? PROGRESS_LINE_FORCED_INTERVAL_ms : PROGRESS_LINE_INTERVAL_ms;
  let last = started;
  return (simNs, faults, accesses) => {
    const t = now();
    if (t - last < interval) return;
    last = t;
    io.err(`svmrt sim: ${text(simNs, faults, accesses)}\n`);
  };
}

export const simCommand: Command = {
  name: "sim",
  summary: "simulate KFD SVM migration for a workload or trace on a machine profile",
  help: HELP,
  async run(argv: string[], io: CliIO): Promise<number> {
    const p = parseFlags(argv, {
      profile: { type: "string" },
      workload: { type: "string" },
      trace: { type: "string" },
      "on-bad-line": { type: "string" },
      policy: { type: "string" },
      seed: { type: "string" },
      json: { type: "boolean" },
      events: { type: "string" },
      summary: { type: "string" },
      "find-range": { type: "boolean" },
      debug: { type: "boolean" },
      progress: { type: "boolean" },
      cost: { type: "string", multiple: true },
      "list-workloads": { type: "boolean" },
      "plugin-root": { type: "string", multiple: true },
    });
    if (p.help) {
      io.out(HELP);
      return EXIT.ok;
    }
    if (p.positionals.length > 0) throw new UsageError(`unexpected argument '${p.positionals[0]}'`);
    if (p.values["list-workloads"] === true) {
      const w = Math.max(...Object.keys(BUILTINS).map((k) => k.length));
      io.out(`${Object.entries(BUILTINS).map(([k, b]) => `${k.padEnd(w)}  ${b.summary}`).join("\n")}\n`);
      return EXIT.ok;
    }
    const seed = flagInt(p, "seed", SEED_DEFAULT, 0, 2 ** 32 - 1);
    const workloadArg = flagString(p, "workload");
    const traceArg = flagString(p, "trace");
    if ((workloadArg === undefined) === (traceArg === undefined)) throw new UsageError("give exactly one of --workload W or --trace FILE");
    const onBad = flagString(p, "on-bad-line") ?? "stop";
    if (onBad !== "skip" && onBad !== "stop") throw new UsageError(`--on-bad-line: expected skip or stop, got '${onBad}'`);
    const pluginRoots = (p.values["plugin-root"] as string[] | undefined) ?? [];
    using resolved = await resolveMigrationPolicy(flagString(p, "policy"), { seed, pluginRoots });
    const decider = resolved.decider;
    const profile = loadProfile(flagString(p, "profile") ?? PROFILE_DEFAULT);
    for (const kv of (p.values.cost as string[] | undefined) ?? []) {
      const c = costOverrideParse(kv);
      if ("error" in c) throw new UsageError(`--cost ${c.error}`);
      profile.cost[c.name] = c.value;
    }
    let workload: ReturnType<typeof builtinWorkload>;
    let badLines: number | undefined;
    if (traceArg !== undefined) {
      const text = readTraceFile(traceArg, onBad as OnBadLine);
      const tw = parseTrace(traceArg, text, profile, { onBadLine: onBad as OnBadLine, warn: (t) => io.err(`${t}\n`) });
      badLines = tw.badLines;
      workload = tw;
    } else {
      const name = workloadArg!;
      workload = builtinWorkload(name, profile);
      if (workload === undefined) {
        if (!/[/\\]|\.ya?ml$/.test(name)) throw new UsageError(`--workload ${name}: no such built-in (svmrt sim --list-workloads) and not a .yaml path`);
        workload = loadWorkloadFile(name, profile);
      }
    }
    const eventsFile = flagString(p, "events");
    const summaryArg = flagString(p, "summary");
    if (summaryArg !== undefined && p.values.json !== true) throw new UsageError("--summary needs --json (it adds a field to the JSON result)");
    const findRange = p.values["find-range"] === true;
    if (findRange && (summaryArg !== undefined || eventsFile !== undefined)) throw new UsageError("--find-range goes without --summary and --events");
    const summarizer = findRange ? new EventSummarizer(undefined) : summaryArg === undefined ? undefined : new EventSummarizer(parseSummaryRange(summaryArg));
    // The event file is written beside its target and put in place only when the run succeeds.
    using events = eventsFile === undefined ? undefined : OutputFile.open(eventsFile, "--events");
    let buf: string[] = [];
    let eventLines = 0;
    const flush = (): void => {
      if (events !== undefined && buf.length > 0) events.write(`${buf.join("\n")}\n`);
      buf = [];
    };
    const progressLine = progressReporter(io, p.values.progress === true);
    let wanted = false;
    let result: SimResult;
    try {
      result = await runSimAsync({
        onProgress: progressLine,
        profile,
        workload,
        decider,
        seed,
        fullCheckEvery: p.values.debug === true ? 1 : FULL_CHECK_EVERY_DEFAULT,
        // With a summary, page events pass the summarizer's filter before any text is built;
        // `wanted` says whether the line that follows is one the summarizer asked for.
        sinkFilter:
          summarizer === undefined
            ? null
            : (id, ns, page, npages) => {
                wanted = summarizer.event(id, ns, page, npages);
                return wanted || events !== undefined;
              },
        sink:
          events === undefined && summarizer === undefined
            ? null
            : (line) => {
                if (summarizer !== undefined) {
                  if (wanted) summarizer.rangeLine(line);
                  else if (!isPageLine(line)) summarizer.line(line);
                  wanted = false;
                }
                if (findRange && summarizer!.range !== undefined) throw FOUND_RANGE;
                if (events === undefined) return;
                eventLines++;
                buf.push(line);
                if (buf.length >= EVENTS_FLUSH_LINES) flush();
              },
      });
      flush();
      events?.commit();
    } catch (e) {
      if (io.interactive && p.values.progress !== true) io.err("\r\x1b[K");
      if (e !== FOUND_RANGE) throw e;
      io.out(`${JSON.stringify({ range: summarizer!.range })}\n`);
      return EXIT.ok;
    }
    if (findRange) {
      io.out(`${JSON.stringify({ range: null })}\n`);
      return EXIT.ok;
    }
    if (io.interactive && p.values.progress !== true) io.err("\r\x1b[K");
    // Why the policy fell back: the simulator's decision log keeps only failed batches.
    const failures = resolved.policy?.log.failures();
    if (p.values.json === true) {
      const out: Record<string, unknown> = { ...result };
      if (failures !== undefined && failures.groups.length > 0) out.policyFailures = failures.groups;
      if (failures !== undefined && failures.otherRecords > 0) out.policyFailuresOther = failures.otherRecords;
      if (badLines !== undefined) out.badTraceLines = badLines;
      if (eventsFile !== undefined) out.eventLines = eventLines;
      if (summarizer !== undefined) out.events = summarizer.finish(result.simTimeNs);
      io.out(`${JSON.stringify(out)}\n`);
    } else {
      io.out(summary(result, badLines, failures));
      if (eventsFile !== undefined) io.out(`  SMI events          ${eventLines} lines in ${eventsFile}\n`);
    }
    return EXIT.ok;
  },
};
