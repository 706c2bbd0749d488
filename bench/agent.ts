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
 * - the client's own floor: the same scrapers, for the same time, against a plain Bun server
 *   answering every request with the agent's own gzip body. The scrapers share the agent's
 *   cores here (real scrapers run elsewhere), so their own cost sits in every latency; the
 *   floor says how much. Each scraper is one keep-alive HTTP/1.1 connection that reads the
 *   gzip body without decompressing it (decompressing is the scraping host's work). Bun's
 *   fetch() was the client before: against the plain server alone it measured p99 7.6 and
 *   16.0 ms in two runs, the raw connection 1.5 and 1.5 ms;
 * - the agent's RSS after --duration-s (target <= 100 MB with the default policies), read
 *   from /proc/PID/status, its peak (VmHWM), and its median over the second half (read at
 *   each 15 s scrape);
 * - the emulated SVM source, a child process of the agent (no such process on a GPU host):
 *   its RSS, peak, and CPU time during the scrapes and in all, reported apart (emu_svm_source);
 * - CPU per sample: a second agent with the SVM source off (its emulated workload would
 *   dominate) runs CPU_PHASE_s without scrapes; its user+system CPU time (/proc/PID/stat) over
 *   the group reads it made (svmrt_sample_duration_seconds_count) in that time.
 * Wall time and the agent's CPU time are reported side by side: the machines here are shared.
 */
import { rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { METRICS_GZIP_LEVEL } from "../runtime/agent/agent.ts";
import { emuSvmChildOf, procCpuS, procMem } from "./proc.ts";

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
/** Longest wait for the agent's emulated SVM child to appear, ms. */
const EMU_CHILD_WAIT_MAX_ms = 5_000;

/** A failure of the bench itself (the agent does not start, a phase fails): one line, exit 1. */
const benchFail = (e: unknown): never => {
  console.error(`bench/agent.ts: ${(e as Error)?.message ?? String(e)}`);
  process.exit(1);
};
process.on("uncaughtException", benchFail);
process.on("unhandledRejection", benchFail);

const USAGE = "usage: bun bench/agent.ts [--duration-s 600] [--scrapers 50] [--profile mi300x-16] [--config FILE]";
let values: { "duration-s": string; scrapers: string; profile: string; config?: string };
try {
  ({ values } = parseArgs({
    options: {
      "duration-s": { type: "string", default: "600" },
      scrapers: { type: "string", default: "50" },
      profile: { type: "string", default: "mi300x-16" },
      /** An agent config for the measured agent (default: none, the shipped defaults). */
      config: { type: "string" },
    },
  }));
} catch (e) {
  // A usage error, like the bad values below: exit 2 (1 is a failure of the bench itself).
  console.error(`bench/agent.ts: ${(e as Error).message}; ${USAGE}`);
  process.exit(2);
}
const durationS = Number(values["duration-s"]);
const scrapers = Number(values.scrapers);
if (!Number.isInteger(durationS) || durationS < SCRAPE_PHASE_s || !Number.isInteger(scrapers) || scrapers < 1 || scrapers > 1000) {
  console.error(`bench/agent.ts: --duration-s must be an integer >= ${SCRAPE_PHASE_s}, --scrapers 1..1000`);
  process.exit(2);
}

const cli = join(import.meta.dir, "..", "runtime", "cli.ts");

/**
 * The first match of `re` in a child's output, read line by line; the rest of the output is
 * drained in the background (a child blocked on a full pipe would stall).
 * @throws Error when the output ends, or START_WAIT_MAX_ms pass, before a line matches
 */
async function lineMatch(stream: ReadableStream<Uint8Array>, re: RegExp, what: string): Promise<RegExpExecArray> {
  const reader = stream.getReader();
  const decoder = new TextDecoder();
  let text = "";
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: nothing within ${START_WAIT_MAX_ms} ms`)), START_WAIT_MAX_ms);
  });
  try {
    for (;;) {
      const { done, value } = await Promise.race([reader.read(), timeout]);
      if (done) throw new Error(`${what} ended before serving: ${text.trim().split("\n").at(-1) ?? "no output"}`);
      text += decoder.decode(value, { stream: true });
      const m = re.exec(text);
      if (m !== null) {
        void (async () => {
          while (!(await reader.read()).done) {}
        })().catch(() => {});
        return m;
      }
    }
  } finally {
    clearTimeout(timer);
  }
}

/** Start an agent child on a port the system picks (its banner names it); resolves once /healthz is 200. */
async function agentSpawn(extraArgs: string[]): Promise<{ child: ReturnType<typeof Bun.spawn>; url: string }> {
  const child = Bun.spawn([process.execPath, cli, "agent", "--profile", values.profile!, "--listen", "127.0.0.1:0", ...extraArgs], { stdout: "ignore", stderr: "pipe" });
  try {
    const url = (await lineMatch(child.stderr, /serving on (http:\/\/127\.0\.0\.1:\d+)/, "svmrt agent"))[1]!;
    // Ready once its first sample is rendered.
    const t0 = performance.now();
    while ((await fetch(`${url}/healthz`)).status !== 200) {
      if (performance.now() - t0 > START_WAIT_MAX_ms) throw new Error(`svmrt agent: /healthz not ready within ${START_WAIT_MAX_ms} ms`);
      await Bun.sleep(100);
    }
    return { child, url };
  } catch (e) {
    child.kill("SIGKILL");
    throw e;
  }
}

const sampleReads = (text: string) => [...text.matchAll(/^svmrt_sample_duration_seconds_count\{[^}]*\} (\d+)/gm)].reduce((s, m) => s + Number(m[1]), 0);
/** The agent's emulated SVM child, waited for (it starts with the agent) at most EMU_CHILD_WAIT_MAX_ms. */
async function emuSvmChildWait(parent: number): Promise<number | undefined> {
  const deadline = performance.now() + EMU_CHILD_WAIT_MAX_ms;
  for (;;) {
    const pid = emuSvmChildOf(parent);
    if (pid !== undefined || performance.now() > deadline) return pid;
    await Bun.sleep(100);
  }
}
/** The request each scraper sends: Prometheus text, gzip, as a Prometheus server asks. */
const SCRAPE_REQUEST = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: svmrt-bench\r\nAccept: text/plain;version=0.0.4\r\nAccept-Encoding: gzip\r\n\r\n";
/** Longest one scrape may take before it counts as failed and its connection is replaced, ms. */
const SCRAPE_TIMEOUT_ms = 15_000;
/** Largest response head a scraper reads, bytes. */
const RESPONSE_HEAD_BYTES_MAX = 16_384;

/** One keep-alive HTTP/1.1 connection: `get()` sends SCRAPE_REQUEST and resolves with the status once the whole body is in. */
async function scraperConnect(port: number): Promise<{ get(): Promise<number>; close(): void }> {
  let buf = Buffer.alloc(0);
  let need = -1;
  let status = 0;
  let waiter: { resolve(code: number): void; reject(e: Error): void } | undefined;
  /** Why the connection ended (a request on it then fails at once, not after SCRAPE_TIMEOUT_ms). */
  let ended: Error | undefined;
  const fail = (e: Error) => {
    waiter?.reject(e);
    waiter = undefined;
  };
  const sock = await Bun.connect({
    hostname: "127.0.0.1",
    port,
    socket: {
      data(_s, chunk) {
        buf = buf.length === 0 ? Buffer.from(chunk) : Buffer.concat([buf, chunk]);
        for (;;) {
          if (need < 0) {
            const end = buf.indexOf("\r\n\r\n");
            if (end < 0) {
              if (buf.length > RESPONSE_HEAD_BYTES_MAX) fail(new Error("response head too large"));
              return;
            }
            const head = buf.subarray(0, end).toString("latin1");
            const len = /\r\ncontent-length: *(\d+)/i.exec(head);
            if (len === null) return fail(new Error(`response without Content-Length: ${head.split("\r\n")[0]}`));
            status = Number(head.slice(9, 12));
            need = end + 4 + Number(len[1]);
          }
          if (buf.length < need) return;
          buf = buf.subarray(need);
          need = -1;
          waiter?.resolve(status);
          waiter = undefined;
        }
      },
      close() {
        ended ??= new Error("connection closed");
        fail(ended);
      },
      error(_s, e) {
        ended ??= e;
        fail(e);
      },
    },
  });
  return {
    get() {
      return new Promise<number>((resolve, reject) => {
        if (ended !== undefined) return reject(ended);
        waiter = { resolve, reject };
        sock.write(SCRAPE_REQUEST);
      });
    },
    close() {
      sock.end();
    },
  };
}

/**
 * The scrapers against a plain Bun server in a child process that answers every request with
 * `text` gzip-compressed at the agent's level (METRICS_GZIP_LEVEL).
 */
async function clientFloor(text: string): Promise<{ latMs: number[]; failures: number }> {
  const bodyFile = join(tmpdir(), `svmrt-bench-floor-${process.pid}.txt`);
  writeFileSync(bodyFile, text);
  const script = `const gz = Bun.gzipSync(await Bun.file(${JSON.stringify(bodyFile)}).bytes(), { level: ${METRICS_GZIP_LEVEL} });
const s = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response(gz, { headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8", "content-encoding": "gzip", vary: "accept-encoding" } }) });
console.log("port " + s.port);`;
  const server = Bun.spawn([process.execPath, "-e", script], { stdout: "pipe", stderr: "inherit" });
  try {
    const port = Number((await lineMatch(server.stdout, /^port (\d+)$/m, "the floor's server"))[1]);
    return await scrapeLoad(`http://127.0.0.1:${port}`);
  } finally {
    server.kill("SIGTERM");
    await server.exited;
    rmSync(bodyFile, { force: true });
  }
}

/** --scrapers scrapers for SCRAPE_PHASE_s against 127.0.0.1:port; latencies of the scrapes, ms. */
async function scrapeLoad(url: string): Promise<{ latMs: number[]; failures: number }> {
  const port = Number(new URL(url).port);
  const latMs: number[] = [];
  let failures = 0;
  const end = performance.now() + SCRAPE_PHASE_s * 1000;
  await Promise.all(
    Array.from({ length: scrapers }, async () => {
      // Scrapers start spread over one interval, then keep their period.
      await Bun.sleep(Math.random() * SCRAPE_INTERVAL_ms);
      let conn = await scraperConnect(port);
      while (performance.now() < end) {
        const a = performance.now();
        let timer: ReturnType<typeof setTimeout> | undefined;
        try {
          const code = await Promise.race([
            conn.get(),
            new Promise<number>((_, reject) => {
              timer = setTimeout(() => reject(new Error("timeout")), SCRAPE_TIMEOUT_ms);
            }),
          ]);
          if (code !== 200) failures++;
        } catch {
          failures++;
          conn.close();
          conn = await scraperConnect(port);
        } finally {
          clearTimeout(timer);
        }
        const took = performance.now() - a;
        latMs.push(took);
        await Bun.sleep(Math.max(0, SCRAPE_INTERVAL_ms - took));
      }
      conn.close();
    }),
  );
  return { latMs, failures };
}

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
};

// CPU per sample read: an agent without the SVM source, not scraped but at both ends.
const cpuAgentConfig = join(tmpdir(), `svmrt-bench-agent-${process.pid}.yaml`);
writeFileSync(cpuAgentConfig, "kind: AgentConfig\nsvm: { enabled: false }\n");
let cpuPerRead: { reads: number; cpuS: number; wallS: number };
try {
  const { child, url } = await agentSpawn(["--config", cpuAgentConfig]);
  try {
    const r0 = sampleReads(await (await fetch(`${url}/metrics`)).text());
    const c0 = procCpuS(child.pid);
    const w0 = performance.now();
    await Bun.sleep(CPU_PHASE_s * 1000);
    // /metrics renders once a second: the count may lag by up to that.
    const r1 = sampleReads(await (await fetch(`${url}/metrics`)).text());
    cpuPerRead = { reads: r1 - r0, cpuS: procCpuS(child.pid) - c0, wallS: (performance.now() - w0) / 1000 };
  } finally {
    child.kill("SIGTERM");
    await child.exited;
  }
} finally {
  rmSync(cpuAgentConfig, { force: true });
}

const { child, url } = await agentSpawn(values.config === undefined ? [] : ["--config", values.config]);
try {
  const started = performance.now();
  const cpu0 = procCpuS(child.pid);
  const emu = await emuSvmChildWait(child.pid);
  const emuCpu0 = emu === undefined ? 0 : procCpuS(emu);

  const load = await scrapeLoad(url);
  const lat = load.latMs;
  const failures = load.failures;
  const cpuScrape = procCpuS(child.pid) - cpu0;
  const emuCpuScrape = emu === undefined ? 0 : procCpuS(emu) - emuCpu0;
  const scrapeWallS = (performance.now() - started) / 1000;

  // Idle phase until --duration-s, scraped every 15 s like Prometheus; RSS read at each.
  const idleRss: number[] = [];
  while (performance.now() - started < durationS * 1000) {
    await Bun.sleep(15_000);
    await (await fetch(`${url}/metrics`)).text();
    if (performance.now() - started >= (durationS * 1000) / 2) idleRss.push(procMem(child.pid).rssMB);
  }
  const text = await (await fetch(`${url}/metrics`)).text();
  const mem = procMem(child.pid);
  const emuMem = emu === undefined ? undefined : procMem(emu);
  const emuCpuTotal = emu === undefined ? 0 : procCpuS(emu);
  const p99 = pct(lat, 99);
  child.kill("SIGTERM");
  await child.exited;
  const floor = await clientFloor(text);
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
      client_floor: { scrapes: floor.latMs.length, failures: floor.failures, latency_ms_p50: Number(pct(floor.latMs, 50).toFixed(3)), latency_ms_p99: Number(pct(floor.latMs, 99).toFixed(3)) },
      metrics_latency_ms_p50: Number(pct(lat, 50).toFixed(3)),
      metrics_latency_ms_p99: Number(p99.toFixed(3)),
      agent_cpu_s_during_scrapes: Number(cpuScrape.toFixed(2)),
      scrape_phase_wall_s: Number(scrapeWallS.toFixed(2)),
      duration_s: durationS,
      rss_mb: Number(mem.rssMB.toFixed(1)),
      rss_peak_mb: Number(mem.hwmMB.toFixed(1)),
      rss_mb_median_second_half: idleRss.length > 0 ? Number(pct(idleRss, 50).toFixed(1)) : null,
      rss_mb_samples_second_half: idleRss.length,
      emu_svm_source:
        emuMem === undefined
          ? null
          : { rss_mb: Number(emuMem.rssMB.toFixed(1)), rss_peak_mb: Number(emuMem.hwmMB.toFixed(1)), cpu_s_during_scrapes: Number(emuCpuScrape.toFixed(2)), cpu_s_total: Number(emuCpuTotal.toFixed(2)) },
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
