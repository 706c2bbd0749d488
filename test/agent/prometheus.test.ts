/**
 * A real Prometheus server (Debian's `prometheus` package) scraping the agent every second:
 * the target comes up, the svm_* series of the emulated SVM workload move between scrapes,
 * every GPU has its gpu_gfx_activity series. Prometheus 2.x asks for OpenMetrics first in its
 * Accept header, so this also proves the agent's OpenMetrics output parses in Prometheus
 * itself, not only in promtool. A missing prometheus fails the test with the install
 * command; it is never skipped.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { agentStart, waitFor } from "./helpers.ts";

/** Longest Prometheus may take to report the agent's target up, ms. */
const TARGET_UP_MAX_ms = 60_000;
/** Longest the svm_* fault total may take to move between two queries, ms. */
const SERIES_MOVE_MAX_ms = 60_000;
/** Poll period of Prometheus' HTTP API, ms. */
const API_POLL_ms = 500;
/** Longest one API request may take, ms. */
const API_REQUEST_MAX_ms = 5_000;
/** Longest Prometheus may take to exit after SIGTERM before SIGKILL, ms. */
const PROMETHEUS_EXIT_MAX_ms = 10_000;
/** The Accept header Prometheus 2.42 sends on a scrape (scrape/scrape.go, scrapeAcceptHeader). */
const PROMETHEUS_ACCEPT = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

const tmp = mkdtempSync(join(tmpdir(), "svmrt-prometheus-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** A loopback port free right now (bound by the kernel, then released). */
function portFree(): number {
  const s = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = s.port;
  s.stop(true);
  return port;
}

interface Sample {
  metric: Record<string, string>;
  value: [number, string];
}

/** An instant query; undefined while Prometheus does not answer (starting up). */
async function query(base: string, promql: string): Promise<Sample[] | undefined> {
  try {
    const r = await fetch(`${base}/api/v1/query?query=${encodeURIComponent(promql)}`, { signal: AbortSignal.timeout(API_REQUEST_MAX_ms) });
    if (r.status !== 200) return undefined;
    const j = (await r.json()) as { status: string; data: { resultType: string; result: Sample[] } };
    return j.status === "success" ? j.data.result : undefined;
  } catch {
    return undefined;
  }
}

async function waitQuery<T>(what: string, base: string, promql: string, accept: (r: Sample[]) => T | undefined, maxMs: number): Promise<T> {
  return waitFor(
    what,
    async () => {
      const r = await query(base, promql);
      const v = r === undefined ? undefined : accept(r);
      if (v === undefined) await Bun.sleep(API_POLL_ms);
      return v;
    },
    maxMs,
  );
}

describe("a real Prometheus scraping the agent", () => {
  test("target up, svm_* series moving, gpu_gfx_activity for both GPUs", async () => {
    const prometheus = Bun.which("prometheus");
    if (!prometheus) {
      throw new Error("prometheus not found on PATH: this test runs a real Prometheus server; install Debian's `prometheus` package (`apt-get install prometheus`), as CI does");
    }
    const { agent } = await agentStart();
    let proc: ReturnType<typeof Bun.spawn> | undefined;
    let log = "";
    try {
      const target = new URL(agent.url).host;
      // What Prometheus will get: OpenMetrics, ending with # EOF.
      const om = await fetch(`${agent.url}/metrics`, { headers: { accept: PROMETHEUS_ACCEPT } });
      expect(om.headers.get("content-type")).toContain("application/openmetrics-text; version=1.0.0");
      expect((await om.text()).trimEnd().endsWith("# EOF")).toBe(true);

      const config = join(tmp, "prometheus.yml");
      writeFileSync(
        config,
        `global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: svmrt\n    static_configs:\n      - targets: ["${target}"]\n`,
      );
      const web = `127.0.0.1:${portFree()}`;
      const base = `http://${web}`;
      proc = Bun.spawn({
        cmd: [prometheus, `--config.file=${config}`, `--storage.tsdb.path=${join(tmp, "data")}`, `--web.listen-address=${web}`, "--log.level=warn"],
        cwd: tmp,
        stdin: "ignore",
        stdout: "pipe",
        stderr: "pipe",
      });
      const p = proc;
      void (async () => {
        const decoder = new TextDecoder();
        for await (const chunk of p.stderr as ReadableStream<Uint8Array>) log += decoder.decode(chunk, { stream: true });
      })();

      await waitQuery(
        "up == 1 for the agent's job",
        base,
        'up{job="svmrt"}',
        (r) => {
          if (p.exitCode !== null) throw new Error(`prometheus exited (${p.exitCode}):\n${log}`);
          return r.length === 1 && r[0]!.value[1] === "1" ? true : undefined;
        },
        TARGET_UP_MAX_ms,
      );
      // The scrape itself is clean: no error on the target.
      const targets = (await (await fetch(`${base}/api/v1/targets`)).json()) as { data: { activeTargets: { health: string; lastError: string; scrapeUrl: string }[] } };
      expect(targets.data.activeTargets.map((t) => [t.scrapeUrl, t.health, t.lastError])).toEqual([[`http://${target}/metrics`, "up", ""]]);

      const first = await waitQuery("sum(svm_gpu_page_faults_total) > 0", base, "sum(svm_gpu_page_faults_total)", (r) => {
        const v = r.length === 1 ? Number(r[0]!.value[1]) : undefined;
        return v !== undefined && v > 0 ? v : undefined;
      }, SERIES_MOVE_MAX_ms);
      const later = await waitQuery(`sum(svm_gpu_page_faults_total) above ${first}`, base, "sum(svm_gpu_page_faults_total)", (r) => {
        const v = r.length === 1 ? Number(r[0]!.value[1]) : undefined;
        return v !== undefined && v > first ? v : undefined;
      }, SERIES_MOVE_MAX_ms);
      expect(later).toBeGreaterThan(first);

      const gfx = await waitQuery("gpu_gfx_activity of both GPUs", base, "gpu_gfx_activity", (r) => (r.length === 2 ? r : undefined), TARGET_UP_MAX_ms);
      expect(gfx.map((s) => s.metric.gpu_id).sort()).toEqual(["0", "1"]);
      expect(gfx.every((s) => s.metric.job === "svmrt" && s.metric.card_model === "emulated-dev-2gpu")).toBe(true);
      const info = await query(base, 'svmrt_info{emulated="true",backend="emulated"}');
      expect(info?.map((s) => s.value[1])).toEqual(["1"]);
    } finally {
      if (proc) {
        proc.kill("SIGTERM");
        const ended = await Promise.race([proc.exited, Bun.sleep(PROMETHEUS_EXIT_MAX_ms).then(() => "hung" as const)]);
        if (ended === "hung") {
          proc.kill("SIGKILL");
          await proc.exited;
        }
      }
      await agent.stop();
    }
  }, 150_000);
});
