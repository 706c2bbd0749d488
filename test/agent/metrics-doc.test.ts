/**
 * docs/metrics.md against what a running agent exports: every family of a scrape has its row
 * (with its type, its labels and, for GPU families, whether it keeps DME's name), and every
 * family the doc lists is still exported.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import type { Agent } from "../../runtime/agent/agent.ts";
import { GPU_FAMILIES, GPU_LABELS } from "../../runtime/agent/gpu-metrics.ts";
import { SVM_METRIC_NAMES } from "../../runtime/agent/svm-metrics.ts";
import { agentStart, scrape, waitFor, waitReady } from "./helpers.ts";

const DOC_FILE = join(import.meta.dir, "..", "..", "docs", "metrics.md");
const METRIC_TYPES = new Set(["gauge", "counter", "histogram", "summary"]);
/** Labels the exposition format adds itself. */
const FORMAT_LABELS = new Set(["le", "quantile"]);
/** Labels of every svm_* series, documented once above the SVM table. */
const SVM_COMMON_LABELS = new Set(["gpu_id", "kfd_gpu_id", "hostname"]);

interface Family {
  type: string;
  help: string;
  labels: Set<string>;
}

/** Families of an exposition: `# HELP`, `# TYPE` and the label names of their samples. */
function familiesOf(text: string): Map<string, Family> {
  const out = new Map<string, Family>();
  const family = (name: string): Family => {
    let f = out.get(name);
    if (f === undefined) {
      f = { type: "", help: "", labels: new Set() };
      out.set(name, f);
    }
    return f;
  };
  for (const line of text.split("\n")) {
    const meta = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$/.exec(line);
    if (meta) {
      if (meta[1] === "TYPE") family(meta[2]!).type = meta[3]!;
      else family(meta[2]!).help = meta[3]!;
      continue;
    }
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)\{(.*)\} /.exec(line);
    if (!sample) continue;
    // A histogram's samples are <family>_bucket, _sum, _count: the longest family that prefixes it.
    const name = [...out.keys()].filter((n) => sample[1]!.startsWith(n)).sort((a, b) => b.length - a.length)[0];
    if (name === undefined) continue;
    for (const m of sample[2]!.matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="(?:[^"\\]|\\.)*"/g)) if (!FORMAT_LABELS.has(m[1]!)) family(name).labels.add(m[1]!);
  }
  return out;
}

/** Table rows of the doc whose first cell is a `family` and second a metric type: name → cells. */
function docFamilyRows(doc: string): Map<string, string[]> {
  const rows = new Map<string, string[]>();
  for (const line of doc.split("\n")) {
    if (!line.startsWith("| `")) continue;
    const cells = line.split("|").slice(1, -1).map((c) => c.trim());
    const name = /^`([a-zA-Z_:][a-zA-Z0-9_:]*)`$/.exec(cells[0]!)?.[1];
    if (name !== undefined && METRIC_TYPES.has(cells[1]!)) rows.set(name, cells);
  }
  return rows;
}

let agent: Agent;
let doc = "";
let rows = new Map<string, string[]>();
let exported = new Map<string, Family>();
let openMetricsTypes: string[] = [];

beforeAll(async () => {
  doc = await Bun.file(DOC_FILE).text();
  rows = docFamilyRows(doc);
  // Per-process labels on, so the pid label shows; wait for SVM events so it has series.
  ({ agent } = await agentStart({ svm: { enabled: true, perProcess: true } }));
  await waitReady(agent);
  const text = await waitFor("svm_* series with a pid label", async () => {
    const t = (await scrape(agent)).text;
    return /^svm_gpu_page_faults_total\{[^}]*pid="/m.test(t) ? t : undefined;
  });
  exported = familiesOf(text);
  const om = await scrape(agent, "application/openmetrics-text; version=1.0.0");
  openMetricsTypes = [...om.text.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]!);
}, 60_000);

afterAll(async () => {
  await agent?.stop();
});

describe("docs/metrics.md", () => {
  test("the scrape holds every family of the code's tables (GPU_FAMILIES, SVM_METRIC_NAMES)", () => {
    const names = [...GPU_FAMILIES.map((f) => f.name), "gpu_nodes_total", "gpu_health", ...SVM_METRIC_NAMES];
    expect(names.filter((n) => !exported.has(n))).toEqual([]);
    expect([...exported.keys()].filter((n) => n.startsWith("svmrt_")).length).toBeGreaterThan(0);
  });

  test("every exported family has a row with its type", () => {
    const missing = [...exported.keys()].filter((n) => !rows.has(n));
    expect(missing).toEqual([]);
    const wrongType = [...exported].filter(([n, f]) => rows.get(n)?.[1] !== f.type).map(([n, f]) => `${n}: exported ${f.type}, documented ${rows.get(n)?.[1]}`);
    expect(wrongType).toEqual([]);
  });

  test("every family the doc lists is exported", () => {
    expect([...rows.keys()].filter((n) => !exported.has(n))).toEqual([]);
  });

  test("every label is documented: GPU labels in their table, svm_* and svmrt_* labels in the family's row", () => {
    expect(GPU_LABELS.filter((l) => !doc.includes(`| \`${l}\` |`))).toEqual([]);
    const undocumented: string[] = [];
    for (const [name, f] of exported) {
      const row = rows.get(name)?.join(" | ") ?? "";
      for (const label of f.labels) {
        const inRow = label === "pid" ? /\bpid\b/.test(row) : row.includes(`\`${label}\``);
        const ok = name.startsWith("svmrt_") || (name.startsWith("svm_") && !SVM_COMMON_LABELS.has(label)) ? inRow : doc.includes(`\`${label}\``);
        if (!ok) undocumented.push(`${name}: ${label}`);
      }
    }
    expect(undocumented).toEqual([]);
    // The scrape really carried labels to check.
    expect(exported.get("svm_gpu_page_faults_total")?.labels.has("pid")).toBe(true);
    expect(exported.get("gpu_gfx_activity")?.labels.size).toBe(GPU_LABELS.length);
  });

  test("GPU families say whether they keep DME's name, as their help does", () => {
    const gpuFamilies = [...exported].filter(([n]) => !n.startsWith("svm"));
    expect(gpuFamilies.length).toBe(GPU_FAMILIES.length + 2);
    const wrong = gpuFamilies
      .filter(([n, f]) => rows.get(n)?.[3] !== (f.help.includes("(DME name") ? "yes" : "no"))
      .map(([n, f]) => `${n}: help "${f.help}", documented DME name "${rows.get(n)?.[3]}"`);
    expect(wrong).toEqual([]);
  });

  test("every OpenMetrics family (counters without _total) is a documented family", () => {
    expect(openMetricsTypes.length).toBe(exported.size);
    expect(openMetricsTypes.filter((n) => !rows.has(n) && !rows.has(`${n}_total`))).toEqual([]);
  });
});
