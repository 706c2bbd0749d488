/**
 * `svmrt sim`: run a workload (built-in, YAML file or trace) on a machine profile through
 * the SVM model with a migration policy, and print a summary (or one JSON object).
 */
import { closeSync, openSync, readFileSync, writeSync } from "node:fs";
import { ConfigError, UsageError } from "../errors.ts";
import { BUILTINS, builtinWorkload } from "../sim/builtins.ts";
import { EventSummarizer, isPageLine, type RangeOfInterest } from "../sim/compare.ts";
import { COST_PARAMS, type CostParamName } from "../sim/cost.ts";
import { runSimAsync, type SimResult } from "../sim/engine.ts";
import { type DecisionLog, failureText } from "../policy/decision-log.ts";
import { resolveMigrationPolicy } from "../sim/policy.ts";
import { loadProfile, PROFILE_DEFAULT, shippedProfiles } from "../sim/profile.ts";
import { type OnBadLine, parseTrace } from "../sim/trace.ts";
import { loadWorkloadFile } from "../sim/workload.ts";
import { FULL_CHECK_EVERY_DEFAULT } from "../svm/model.ts";
import { type CliIO, type Command, flagInt, flagString, parseFlags } from "./command.ts";
import { EXIT } from "./exit.ts";

/** Default seed. */
export const SEED_DEFAULT = 1;
/** Event lines buffered before a write to the --events file. */
const EVENTS_FLUSH_LINES = 65_536;

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
      const m = /^([a-z0-9_]+)=(.+)$/.exec(kv);
      const spec = m === null ? undefined : COST_PARAMS[m[1] as CostParamName];
      if (m === null || spec === undefined) {
        throw new UsageError(`--cost ${kv}: expected NAME=VALUE with NAME one of ${Object.keys(COST_PARAMS).join(", ")}`);
      }
      const v = Number(m[2]);
      if (!Number.isFinite(v) || v < spec.min || v > spec.max) throw new UsageError(`--cost ${kv}: ${m[1]} must be a number from ${spec.min} to ${spec.max}`);
      profile.cost[m[1] as CostParamName] = v;
    }
    let workload: ReturnType<typeof builtinWorkload>;
    let badLines: number | undefined;
    if (traceArg !== undefined) {
      let text: string;
      try {
        text = readFileSync(traceArg, "utf8");
      } catch (e) {
        throw new ConfigError({ file: traceArg, line: 1, col: 1 }, "", "a readable trace file", (e as Error).message);
      }
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
    let fd = -1;
    let buf: string[] = [];
    let eventLines = 0;
    if (eventsFile !== undefined) {
      try {
        fd = openSync(eventsFile, "w");
      } catch (e) {
        throw new UsageError(`--events ${eventsFile}: cannot write: ${(e as Error).message}`);
      }
    }
    const flush = (): void => {
      if (fd >= 0 && buf.length > 0) writeSync(fd, `${buf.join("\n")}\n`);
      buf = [];
    };
    let wanted = false;
    let result: SimResult;
    try {
      const started = performance.now();
      const onProgress = io.interactive
        ? (simNs: number, faults: number) =>
            io.err(`\r  simulating: ${(simNs / 1e9).toFixed(3)} s simulated, ${faults} GPU faults handled, ${((performance.now() - started) / 1000).toFixed(0)} s elapsed`)
        : undefined;
      result = await runSimAsync({
        onProgress,
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
                return wanted || fd >= 0;
              },
        sink:
          fd < 0 && summarizer === undefined
            ? null
            : (line) => {
                if (summarizer !== undefined) {
                  if (wanted) summarizer.rangeLine(line);
                  else if (!isPageLine(line)) summarizer.line(line);
                  wanted = false;
                }
                if (findRange && summarizer!.range !== undefined) throw FOUND_RANGE;
                if (fd < 0) return;
                eventLines++;
                buf.push(line);
                if (buf.length >= EVENTS_FLUSH_LINES) flush();
              },
      });
    } catch (e) {
      if (e !== FOUND_RANGE) throw e;
      io.out(`${JSON.stringify({ range: summarizer!.range })}\n`);
      return EXIT.ok;
    } finally {
      flush();
      if (fd >= 0) closeSync(fd);
    }
    if (findRange) {
      io.out(`${JSON.stringify({ range: null })}\n`);
      return EXIT.ok;
    }
    if (io.interactive) io.err("\r\x1b[K");
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
