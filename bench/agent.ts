/**
 * bench/agent.ts: the agent as an operator runs it, measured from outside. Prints one JSON
 * object on one line.
 *
 *   bun bench/agent.ts [--duration-s 600] [--scrapers 50] [--profile mi300x-16]
 *
 * Starts `svmrt agent` (emulated GPUs of --profile, the shipped default policies, the
 * emulated SVM workload) as a child process on a free loopback port, then:
 * - /metrics latency under load: --scrapers concurrent scrapers for SCRAPE_PHASE_s, each
 *   scraping every SCRAPE_INTERVAL_ms (a Prometheus scraper's loop, 50 of them at 10 Hz);
 *   p50/p99 of the client-side latency (target p99 <= 5 ms; ROCm's device-metrics-exporter
 *   times out at 15 s on 16-GPU nodes);
 * - the agent's RSS after --duration-s (target <= 100 MB with the default policies), read
 *   from /proc/PID/status, and its peak (VmHWM);
 * - CPU per sample: a second agent with the SVM source off (its emulated workload would
 *   dominate) runs CPU_PHASE_s without scrapes; its user+system CPU time (/proc/PID/stat) over
 *   the group reads it made (svmrt_sample_duration_seconds_count) in that time.
 * Wall time and the agent's CPU time are reported side by side: the machines here are shared.
 */
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";

/** How long the scrapers run, s. */
const SCRAPE_PHASE_s = 20;
/** Each scraper's period, ms. */
const SCRAPE_INTERVAL_ms = 100;
/** How long the CPU-per-sample agent runs, s. */
const CPU_PHASE_s = 20;
/** Longest wait for the agent to serve its first sample, ms. */
const START_WAIT_MAX_ms = 60_000;
const TARGET_P99_ms = 5;
const TARGET_RSS_MB = 100;
/** Kernel clock ticks per second (/proc/PID/stat units). */
const CLK_TCK = 100;

const { values } = parseArgs({
  options: {
    "duration-s": { type: "string", default: "600" },
    scrapers: { type: "string", default: "50" },
    profile: { type: "string", default: "mi300x-16" },
    /** An agent config for the measured agent (default: none, the shipped defaults). */
    config: { type: "string" },
  },
});
const durationS = Number(values["duration-s"]);
const scrapers = Number(values.scrapers);
if (!Number.isInteger(durationS) || durationS < SCRAPE_PHASE_s || !Number.isInteger(scrapers) || scrapers < 1 || scrapers > 1000) {
  console.error(`bench/agent.ts: --duration-s must be an integer >= ${SCRAPE_PHASE_s}, --scrapers 1..1000`);
  process.exit(2);
}

const cli = join(import.meta.dir, "..", "runtime", "cli.ts");

/** Start an agent child on a free port; resolves once /healthz is 200. */
async function agentSpawn(extraArgs: string[]): Promise<{ child: ReturnType<typeof Bun.spawn>; url: string }> {
  const port = 20_000 + Math.floor(Math.random() * 20_000);
  const url = `http://127.0.0.1:${port}`;
  const child = Bun.spawn([process.execPath, cli, "agent", "--profile", values.profile!, "--listen", `127.0.0.1:${port}`, ...extraArgs], { stdout: "ignore", stderr: "ignore" });
  const t0 = performance.now();
  for (;;) {
    try {
      if ((await fetch(`${url}/healthz`)).status === 200) return { child, url };
    } catch {}
    if (performance.now() - t0 > START_WAIT_MAX_ms) {
      child.kill("SIGKILL");
      throw new Error(`agent did not serve within ${START_WAIT_MAX_ms} ms`);
    }
    await Bun.sleep(100);
  }
}

const procStat = (pid: number): { cpuS: number } => {
  const f = readFileSync(`/proc/${pid}/stat`, "utf8");
  const rest = f.slice(f.lastIndexOf(")") + 2).split(" ");
  return { cpuS: (Number(rest[11]) + Number(rest[12])) / CLK_TCK };
};
const sampleReads = (text: string) => [...text.matchAll(/^svmrt_sample_duration_seconds_count\{[^}]*\} (\d+)/gm)].reduce((s, m) => s + Number(m[1]), 0);
const procMem = (pid: number): { rssMB: number; hwmMB: number } => {
  const s = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(s)?.[1] ?? Number.NaN);
  return { rssMB: kb("VmRSS") / 1024, hwmMB: kb("VmHWM") / 1024 };
};
const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
};

// CPU per sample read: an agent without the SVM source, not scraped but at both ends.
const cpuAgentConfig = join(tmpdir(), `svmrt-bench-agent-${process.pid}.yaml`);
writeFileSync(cpuAgentConfig, "kind: AgentConfig\nsvm: { enabled: false }\n");
let cpuPerRead: { reads: number; cpuS: number; wallS: number };
{
  const { child, url } = await agentSpawn(["--config", cpuAgentConfig]);
  try {
    const r0 = sampleReads(await (await fetch(`${url}/metrics`)).text());
    const c0 = procStat(child.pid).cpuS;
    const w0 = performance.now();
    await Bun.sleep(CPU_PHASE_s * 1000);
    // /metrics renders once a second: the count may lag by up to that.
    const r1 = sampleReads(await (await fetch(`${url}/metrics`)).text());
    cpuPerRead = { reads: r1 - r0, cpuS: procStat(child.pid).cpuS - c0, wallS: (performance.now() - w0) / 1000 };
  } finally {
    child.kill("SIGTERM");
    await child.exited;
    rmSync(cpuAgentConfig, { force: true });
  }
}

const { child, url } = await agentSpawn(values.config === undefined ? [] : ["--config", values.config]);
try {
  const started = performance.now();
  const cpu0 = procStat(child.pid).cpuS;

  // Scrape phase.
  const lat: number[] = [];
  let failures = 0;
  const end = performance.now() + SCRAPE_PHASE_s * 1000;
  await Promise.all(
    Array.from({ length: scrapers }, async () => {
      // Scrapers start spread over one interval, then keep their period.
      await Bun.sleep(Math.random() * SCRAPE_INTERVAL_ms);
      while (performance.now() < end) {
        const a = performance.now();
        const r = await fetch(`${url}/metrics`);
        await r.arrayBuffer();
        if (r.status !== 200) failures++;
        const took = performance.now() - a;
        lat.push(took);
        await Bun.sleep(Math.max(0, SCRAPE_INTERVAL_ms - took));
      }
    }),
  );
  const cpuScrape = procStat(child.pid).cpuS - cpu0;
  const scrapeWallS = (performance.now() - started) / 1000;

  // Idle phase until --duration-s, scraped every 15 s like Prometheus.
  while (performance.now() - started < durationS * 1000) {
    await Bun.sleep(15_000);
    await (await fetch(`${url}/metrics`)).text();
  }
  const text = await (await fetch(`${url}/metrics`)).text();
  const mem = procMem(child.pid);
  const p99 = pct(lat, 99);
  console.log(
    JSON.stringify({
      bench: "agent",
      profile: values.profile,
      config: values.config ?? "defaults",
      gpus: Number(/^gpu_nodes_total\{[^}]*\} (\d+)/m.exec(text)?.[1] ?? 0),
      scrapers,
      scrape_interval_ms: SCRAPE_INTERVAL_ms,
      scrape_phase_s: SCRAPE_PHASE_s,
      scrapes: lat.length,
      metrics_bytes: text.length,
      scrape_failures: failures,
      metrics_latency_ms_p50: Number(pct(lat, 50).toFixed(3)),
      metrics_latency_ms_p99: Number(p99.toFixed(3)),
      agent_cpu_s_during_scrapes: Number(cpuScrape.toFixed(2)),
      scrape_phase_wall_s: Number(scrapeWallS.toFixed(2)),
      duration_s: durationS,
      rss_mb: Number(mem.rssMB.toFixed(1)),
      rss_peak_mb: Number(mem.hwmMB.toFixed(1)),
      cpu_phase: { svm_source: false, wall_s: Number(cpuPerRead.wallS.toFixed(2)), cpu_s: Number(cpuPerRead.cpuS.toFixed(2)), sample_reads: cpuPerRead.reads },
      cpu_us_per_sample_read: cpuPerRead.reads > 0 ? Number(((cpuPerRead.cpuS * 1e6) / cpuPerRead.reads).toFixed(1)) : null,
      targets: { metrics_latency_ms_p99: TARGET_P99_ms, rss_mb: TARGET_RSS_MB },
      met: { metrics_latency_ms_p99: p99 <= TARGET_P99_ms, rss_mb: mem.rssMB <= TARGET_RSS_MB },
    }),
  );
} finally {
  child.kill("SIGTERM");
  await child.exited;
}
