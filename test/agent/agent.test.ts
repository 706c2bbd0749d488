/**
 * The agent end to end on the emulated backend, in this process: scrape, promtool, DME
 * names and labels, OpenMetrics, moving svm_* series from the emulated KFD, /v1 endpoints,
 * a field going NOT_SUPPORTED mid-run, a hung read that does not delay /metrics, hot reload
 * of a broken sampling policy, 16 GPUs, the HTTP bounds.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { cpSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { emuSmiCounters, emuSmiInject, emuSmiInjectClear } from "../../runtime/emu/smi.ts";
import { promtoolCheckMetrics } from "../promtool.ts";
import { agentStart, scrape, seriesSum, seriesValue, waitFor, waitReady } from "./helpers.ts";

const tmp = mkdtempSync(join(tmpdir(), "svmrt-agent-test-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe("agent on emulated GPUs", () => {
  test("serves DME families with DME labels, svmrt_* and moving svm_* series; promtool finds no problem", async () => {
    const { agent, lines } = await agentStart();
    try {
      expect(lines.some((l) => l.includes("EMULATED"))).toBe(true);
      await waitReady(agent);
      const first = await scrape(agent);
      expect(first.status).toBe(200);
      expect(first.type).toContain("text/plain; version=0.0.4");
      // Scrapes serve the latest rendering (once a second): wait for both GPUs' activity.
      const text = await waitFor("activity of both GPUs", async () => {
        const t = (await scrape(agent)).text;
        return seriesValue(t, "gpu_gfx_activity", { gpu_id: "0" }) !== undefined && seriesValue(t, "gpu_gfx_activity", { gpu_id: "1" }) !== undefined ? t : undefined;
      });
      expect(seriesValue(text, "gpu_nodes_total")).toBe(2);
      expect(seriesValue(text, "svmrt_info", { emulated: "true", backend: "emulated" })).toBe(1);
      // Every DME label on a GPU series.
      const line = text.split("\n").find((l) => l.startsWith("gpu_gfx_activity{") && l.includes('gpu_id="0"'));
      expect(line).toBeDefined();
      for (const label of ["gpu_id", "gpu_uuid", "serial_number", "card_model", "hostname", "gpu_partition_id", "deployment_mode"]) expect(line).toContain(`${label}=`);
      expect(line).toContain('deployment_mode="baremetal"');
      expect(promtoolCheckMetrics(text)).toEqual({ code: 0, output: "" });

      // SVM series from the emulated KFD workload, moving.
      const faults1 = await waitFor("svm_gpu_page_faults_total", async () => {
        const t = (await scrape(agent)).text;
        const v = seriesSum(t, "svm_gpu_page_faults_total", { outcome: "migrated" });
        return v !== undefined && v > 0 ? v : undefined;
      });
      const later = await waitFor("more page faults", async () => {
        const v = seriesSum((await scrape(agent)).text, "svm_gpu_page_faults_total", { outcome: "migrated" });
        return v !== undefined && v > faults1 ? v : undefined;
      });
      expect(later).toBeGreaterThan(faults1);
      const full = (await scrape(agent)).text;
      expect(seriesSum(full, "svm_migrated_bytes_total", { direction: "h2d" })).toBeGreaterThan(0);
      expect(seriesValue(full, "svmrt_smi_inits_total")).toBe(1);
      expect(seriesValue(full, "svmrt_smi_mode", { mode: "persistent" })).toBe(1);
      expect(promtoolCheckMetrics(full)).toEqual({ code: 0, output: "" });

      // OpenMetrics on request.
      const om = await scrape(agent, "application/openmetrics-text; version=1.0.0");
      expect(om.type).toContain("application/openmetrics-text");
      expect(om.text.trimEnd().endsWith("# EOF")).toBe(true);
      // gzip when asked (Prometheus asks): the same exposition, compressed once per rendering.
      const raw = await fetch(`${agent.url}/metrics`, { headers: { "accept-encoding": "gzip" }, decompress: false } as RequestInit);
      expect(raw.headers.get("content-encoding")).toBe("gzip");
      const unzipped = new TextDecoder().decode(Bun.gunzipSync(new Uint8Array(await raw.arrayBuffer())));
      expect(unzipped).toContain("# TYPE gpu_gfx_activity gauge");
      expect(unzipped.length).toBeGreaterThan(1000);
      const plain = await fetch(`${agent.url}/metrics`, { headers: { "accept-encoding": "identity" } });
      expect(plain.headers.get("content-encoding")).toBeNull();
      // The text registry keeps its names after an OpenMetrics scrape.
      expect((await scrape(agent)).text).toContain("svmrt_http_requests_total{");

      const gpus = (await (await fetch(`${agent.url}/v1/gpus`)).json()) as { emulated: boolean; gpus: { uuid: string; samples: Record<string, unknown> }[] };
      expect(gpus.emulated).toBe(true);
      expect(gpus.gpus).toHaveLength(2);
      const policies = (await (await fetch(`${agent.url}/v1/policies`)).json()) as { name: string; kind: string; revision: string; lastError: unknown; role: string | null }[];
      expect(policies.find((p) => p.role === "sampling")?.name).toBe("adaptive");
      expect(policies.find((p) => p.role === "session")?.name).toBe("persistent");
      const advice = (await (await fetch(`${agent.url}/v1/advice`)).json()) as { emulated: boolean; hints: unknown[] };
      expect(advice.emulated).toBe(true);
      expect(Array.isArray(advice.hints)).toBe(true);
      expect((await fetch(`${agent.url}/nope`)).status).toBe(404);
      // State changes are off without a token.
      expect((await fetch(`${agent.url}/v1/reload`, { method: "POST" })).status).toBe(403);
    } finally {
      await agent.stop();
    }
    expect(lines.at(-1)).toBe("stopped");
  }, 60_000);

  test("a field NOT_SUPPORTED mid-run removes only that series; a hung read does not hold /metrics", async () => {
    const { agent } = await agentStart({ sampling: { policy: "fixed", evaluateMs: 100 } }, { sampleReadTimeoutMs: 300 });
    const shared = (agent.spec as { shared: SharedArrayBuffer }).shared;
    try {
      await waitReady(agent);
      await waitFor("power of both GPUs", async () => {
        const t = (await scrape(agent)).text;
        return seriesValue(t, "gpu_package_power", { gpu_id: "0" }) !== undefined && seriesValue(t, "gpu_package_power", { gpu_id: "1" }) !== undefined ? true : undefined;
      });
      emuSmiInject(shared, { gpuIndex: 1, field: "power", mode: "not_supported" });
      const text = await waitFor("gpu 1 power to vanish", async () => {
        const t = (await scrape(agent)).text;
        return seriesValue(t, "gpu_package_power", { gpu_id: "1" }) === undefined ? t : undefined;
      });
      expect(seriesValue(text, "gpu_package_power", { gpu_id: "0" })).toBeGreaterThan(0);
      expect(seriesValue(text, "gpu_gfx_activity", { gpu_id: "1" })).toBeDefined();
      expect(seriesValue(text, "gpu_junction_temperature", { gpu_id: "1" })).toBeDefined();

      // A read that hangs for 20 s: /metrics answers while it is still hung.
      emuSmiInjectClear(shared);
      emuSmiInject(shared, { gpuIndex: 0, field: "temperature", mode: "hang", hangMs: 20_000 });
      await waitFor("a hung worker", () => (agent.hungWorkers > 0 ? true : undefined));
      const during = await waitFor("the timeout on /metrics", async () => {
        const r = await scrape(agent);
        return seriesValue(r.text, "svmrt_sample_errors_total", { gpu_id: "0", group: "temperature", status: "TIMEOUT" }) !== undefined ? r : undefined;
      });
      expect(during.status).toBe(200);
      // Served while the read is still hung (it hangs 20 s; the wait above is far shorter).
      expect(agent.hungWorkers).toBeGreaterThan(0);
      expect(seriesValue(during.text, "svmrt_sample_errors_total", { gpu_id: "0", group: "temperature", status: "TIMEOUT" })).toBeGreaterThan(0);
      // Other GPUs keep being sampled meanwhile.
      const age1 = seriesValue(during.text, "svmrt_sample_age_seconds", { gpu_id: "1", group: "temperature" });
      expect(age1).toBeDefined();
      expect(age1!).toBeLessThan(10);
      // The hung GPU holds one worker: no new read goes to it while the hung one lasts,
      // however many reads of the other GPU pass meanwhile.
      expect(agent.samplerStats().hungGpus).toHaveLength(1);
      const reads = agent.samplerStats().reads;
      await waitFor("20 more reads of the healthy GPU", () => (agent.samplerStats().reads >= reads + 20 ? true : undefined));
      expect(emuSmiCounters(shared).hangs).toBe(1);
      expect(agent.hungWorkers).toBe(1);
      emuSmiInjectClear(shared);
    } finally {
      await agent.stop();
    }
  }, 60_000);

  test("hot reload of a broken sampling policy keeps the last good revision", async () => {
    const dir = join(tmp, "policies");
    cpSync(join(import.meta.dir, "..", "..", "policies", "sampling"), join(dir, "sampling"), { recursive: true });
    cpSync(join(import.meta.dir, "..", "..", "policies", "session"), join(dir, "session"), { recursive: true });
    // The copies name their plugins relative to the shipped tree: point them back there.
    for (const f of ["sampling/fixed.yaml", "sampling/adaptive.yaml", "session/persistent.yaml", "session/lazy.yaml", "session/linger.yaml"]) {
      const p = join(dir, f);
      const text = (await Bun.file(p).text()).replace(/plugin: \.\.\/\.\.\/plugins/, `plugin: ${join(import.meta.dir, "..", "..", "plugins")}`);
      writeFileSync(p, text);
    }
    const { agent } = await agentStart({ policyDirs: [dir], sampling: { policy: "fixed", evaluateMs: 100 } });
    try {
      type Row = { file: string; name: string; revision: string; lastError: string | null; role: string | null };
      const before = ((await (await fetch(`${agent.url}/v1/policies`)).json()) as Row[]).find((p) => p.role === "sampling")!;
      expect(before.lastError).toBeNull();
      writeFileSync(join(dir, "sampling", "fixed.yaml"), "apiVersion: svmrt/v1\nkind: SamplingPolicy\nmetadata: { name: fixed }\nspec: { plugin: 42 }\n");
      await agent.reloadPolicies();
      const after = ((await (await fetch(`${agent.url}/v1/policies`)).json()) as Row[]).find((p) => p.file === before.file)!;
      expect(after.revision).toBe(before.revision);
      expect(after.name).toBe("fixed");
      expect(after.lastError).toContain("fixed.yaml");
      await waitReady(agent);
    } finally {
      await agent.stop();
    }
  }, 60_000);

  test("16 emulated GPUs", async () => {
    const { agent } = await agentStart({ profile: "mi300x-16", svm: { enabled: false, perProcess: false } });
    try {
      await waitReady(agent);
      const text = await waitFor("every GPU sampled", async () => {
        const t = (await scrape(agent)).text;
        return Array.from({ length: 16 }, (_, i) => seriesValue(t, "gpu_gfx_activity", { gpu_id: String(i) })).every((v) => v !== undefined) ? t : undefined;
      });
      expect(seriesValue(text, "gpu_nodes_total")).toBe(16);
      expect(promtoolCheckMetrics(text)).toEqual({ code: 0, output: "" });
    } finally {
      await agent.stop();
    }
  }, 60_000);
});
