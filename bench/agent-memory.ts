/**
 * bench/agent-memory.ts: the agent's resident memory and CPU in several configurations, run
 * side by side in one run (the machines here are shared: one configuration after another
 * would compare different moments). Prints one JSON object on one line.
 *
 *   bun bench/agent-memory.ts [--seconds 150] [--profile mi300x-16]
 *
 * Each configuration is `svmrt agent` on emulated GPUs of --profile, on a loopback port the
 * system picks, not scraped. Its RSS (VmRSS, and the anonymous part RssAnon) is read every
 * SAMPLE_EVERY_ms over the second half of --seconds, and the median, min and max reported,
 * with its peak (VmHWM) and its user+system CPU time at the end. The emulated SVM source's
 * child process is reported apart: it stands in for the kernel and the GPU application and
 * does not exist on a GPU host.
 * - `default`: as shipped (the agent restarts itself once without the DFG JIT tier);
 * - `dfg`: BUN_JSC_useDFGJIT=1 (Bun's default JIT tiers, so no restart);
 * - `svm_off`: `svm: { enabled: false }` (no SVM source, no child): the floor.
 */
import { rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { emuSvmChildOf, procCpuS, procMem } from "./proc.ts";

/** Period of the RSS readings, ms. */
const SAMPLE_EVERY_ms = 5_000;
const SECONDS_DEFAULT = 150;
/** Shortest run: the second half must hold a few readings, s. */
const SECONDS_MIN = 30;
const SECONDS_MAX = 3_600;
/** Longest an agent may take to log "serving on", ms. */
const START_WAIT_MAX_ms = 60_000;
const CLI = join(import.meta.dir, "..", "runtime", "cli.ts");

const fail = (line: string, code = 2): never => {
  process.stderr.write(`bench/agent-memory.ts: ${line}\n`);
  process.exit(code);
};

let values: { seconds?: string; profile?: string };
try {
  ({ values } = parseArgs({ options: { seconds: { type: "string" }, profile: { type: "string" } }, strict: true }));
} catch (e) {
  fail(`${(e as Error).message}; usage: bun bench/agent-memory.ts [--seconds ${SECONDS_DEFAULT}] [--profile mi300x-16]`);
}
const seconds = Number(values!.seconds ?? SECONDS_DEFAULT);
if (!Number.isInteger(seconds) || seconds < SECONDS_MIN || seconds > SECONDS_MAX) fail(`--seconds: an integer from ${SECONDS_MIN} to ${SECONDS_MAX}, got '${values!.seconds}'`);
const profile = values!.profile ?? "mi300x-16";

const CONFIGS: Record<string, { env: Record<string, string>; yaml: string }> = {
  default: { env: {}, yaml: "" },
  dfg: { env: { BUN_JSC_useDFGJIT: "1" }, yaml: "" },
  svm_off: { env: {}, yaml: "svm: { enabled: false }\n" },
};

const summary = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const r = (v: number) => Number(v.toFixed(1));
  return { median: r(s[Math.floor(s.length / 2)]!), min: r(s[0]!), max: r(s[s.length - 1]!) };
};

/** A failure while agents run: they are stopped before the line is written. */
class BenchFailure extends Error {}

const env: Record<string, string> = {};
for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith("SVMRT_") && !k.startsWith("BUN_JSC_")) env[k] = v;

const agents = Object.entries(CONFIGS).map(([name, c]) => {
  const file = join(tmpdir(), `svmrt-bench-memory-${process.pid}-${name}.yaml`);
  writeFileSync(file, `kind: AgentConfig\n${c.yaml}`);
  const proc = Bun.spawn([process.execPath, CLI, "agent", "--profile", profile, "--listen", "127.0.0.1:0", "--config", file], {
    env: { ...env, ...c.env },
    stdin: "ignore",
    stdout: "ignore",
    stderr: "pipe",
  });
  let log = "";
  void (async () => {
    const d = new TextDecoder();
    for await (const chunk of proc.stderr) log += d.decode(chunk, { stream: true });
  })();
  return { name, file, proc, log: () => log, rss: [] as number[], anon: [] as number[], emuRss: [] as number[] };
});

let failure: string | undefined;
try {
  const deadline = performance.now() + START_WAIT_MAX_ms;
  for (const a of agents) {
    while (!a.log().includes("serving on ")) {
      if (a.proc.exitCode !== null) throw new BenchFailure(`the ${a.name} agent exited (${a.proc.exitCode}) before serving: ${a.log().trim().split("\n").pop()}`);
      if (performance.now() > deadline) throw new BenchFailure(`the ${a.name} agent did not serve within ${START_WAIT_MAX_ms} ms`);
      await Bun.sleep(100);
    }
  }
  const t0 = performance.now();
  while (performance.now() - t0 < seconds * 1000) {
    await Bun.sleep(SAMPLE_EVERY_ms);
    if (performance.now() - t0 < (seconds * 1000) / 2) continue;
    for (const a of agents) {
      if (a.proc.exitCode !== null) throw new BenchFailure(`the ${a.name} agent exited (${a.proc.exitCode}): ${a.log().trim().split("\n").pop()}`);
      const mem = procMem(a.proc.pid);
      a.rss.push(mem.rssMB);
      a.anon.push(mem.anonMB);
      const emu = emuSvmChildOf(a.proc.pid);
      if (emu !== undefined) a.emuRss.push(procMem(emu).rssMB);
    }
  }
  const out: Record<string, unknown> = {};
  for (const a of agents) {
    out[a.name] = {
      rss_mb: summary(a.rss),
      rss_anon_mb: summary(a.anon),
      rss_peak_mb: Number(procMem(a.proc.pid).hwmMB.toFixed(1)),
      cpu_s: procCpuS(a.proc.pid),
      emu_svm_source_rss_mb: a.emuRss.length > 0 ? summary(a.emuRss) : null,
    };
  }
  console.log(JSON.stringify({ bench: "agent-memory", profile, seconds, samples: agents[0]!.rss.length, sample_every_ms: SAMPLE_EVERY_ms, configs: out }));
} catch (e) {
  if (!(e instanceof BenchFailure)) throw e;
  failure = e.message;
} finally {
  for (const a of agents) {
    if (a.proc.exitCode === null) a.proc.kill("SIGTERM");
    await a.proc.exited;
    rmSync(a.file, { force: true });
  }
}
if (failure !== undefined) fail(failure, 1);
