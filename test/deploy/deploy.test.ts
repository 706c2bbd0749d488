import { afterAll, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { parse as yamlParse, parseAllDocuments } from "yaml";
import { AGENT_LISTEN_DEFAULT, agentConfigParse } from "../../runtime/agent/config.ts";
import { SVM_METRIC_NAMES } from "../../runtime/agent/svm-metrics.ts";
import { promtoolRun } from "../promtool.ts";

const DEPLOY = join(import.meta.dir, "..", "..", "deploy");
/** The agent's default listen port. */
const AGENT_PORT = Number(AGENT_LISTEN_DEFAULT.split(":").at(-1));

/** The DME-compatible GPU families the agent serves (runtime/agent/gpu-metrics.ts). */
const GPU_METRIC_NAMES = [
  "gpu_edge_temperature",
  "gpu_junction_temperature",
  "gpu_memory_temperature",
  "gpu_package_power",
  "gpu_average_package_power",
  "gpu_power_limit_watts",
  "gpu_gfx_activity",
  "gpu_umc_activity",
  "gpu_mm_activity",
  "gpu_total_vram",
  "gpu_used_vram",
  "gpu_free_vram",
  "gpu_total_gtt",
  "gpu_used_gtt",
  "pcie_speed",
  "pcie_bandwidth",
  "gpu_ecc_correct_total",
  "gpu_ecc_uncorrect_total",
  "gpu_nodes_total",
  "gpu_health",
];
/** The agent's own families (runtime/agent/agent.ts); the histogram's series add _bucket, _sum, _count. */
const AGENT_METRIC_NAMES = [
  "svmrt_info",
  "svmrt_sample_duration_seconds",
  "svmrt_sample_age_seconds",
  "svmrt_sample_errors_total",
  "svmrt_smi_inits_total",
  "svmrt_smi_shutdowns_total",
  "svmrt_smi_open_sessions",
  "svmrt_smi_mode",
  "svmrt_policy_decisions_total",
  "svmrt_policy_fallbacks_total",
  "svmrt_plugin_crashes_total",
  "svmrt_http_requests_total",
];
const HISTOGRAMS = ["svmrt_sample_duration_seconds"];
const SERVED = new Set([...GPU_METRIC_NAMES, ...AGENT_METRIC_NAMES, ...SVM_METRIC_NAMES, ...HISTOGRAMS.flatMap((h) => [`${h}_bucket`, `${h}_sum`, `${h}_count`])]);

/** Grafana's reference to the dashboard's data source variable. */
const DATASOURCE = { type: "prometheus", uid: "$" + "{datasource}" };

const PROMQL_KEYWORDS = new Set(["by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", "and", "or", "unless", "inf", "nan"]);

/**
 * Metric names an expression selects: identifiers that are not functions, keywords, label
 * names (in matchers or by/on lists), strings, durations or Grafana variables.
 */
function promqlMetricNames(expr: string): string[] {
  const e = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{[^}]*\}/g, " ")
    .replace(/\[[^\]]*\]/g, " ")
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, " ")
    .replace(/\$\w+/g, " ");
  const out: string[] = [];
  for (const m of e.matchAll(/(?<![\w:.])[a-zA-Z_:][\w:]*/g)) {
    if (/^\s*\(/.test(e.slice(m.index + m[0].length))) continue; // a function or aggregation
    if (PROMQL_KEYWORDS.has(m[0].toLowerCase())) continue;
    out.push(m[0]);
  }
  return out;
}

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((d) => (d.isDirectory() ? filesUnder(join(dir, d.name)) : [join(dir, d.name)]));
}

// biome-ignore lint/suspicious/noExplicitAny: manifests are free-form data checked field by field
type Doc = any;

function k8sDocs(): Doc[] {
  return parseAllDocuments(readFileSync(join(DEPLOY, "kubernetes", "daemonset.yaml"), "utf8"))
    .map((d) => d.toJS())
    .filter((d) => d !== null);
}

const tmpDirs: string[] = [];
function tmpDir(): string {
  const d = mkdtempSync(join(tmpdir(), "svmrt-deploy-"));
  tmpDirs.push(d);
  return d;
}
afterAll(() => {
  for (const d of tmpDirs) rmSync(d, { recursive: true, force: true });
});

describe("deploy/: every file parses", () => {
  test("every YAML and JSON file parses without error or warning; README names each file", () => {
    const files = filesUnder(DEPLOY);
    const data = files.filter((f) => /\.(ya?ml|json)$/.test(f));
    expect(data.map((f) => relative(DEPLOY, f)).sort()).toEqual([
      "grafana/svmrt-dashboard.json",
      "kubernetes/compare-indexed-job.yaml",
      "kubernetes/daemonset.yaml",
      "prometheus/prometheus.yml",
      "prometheus/svmrt-rules.yml",
    ]);
    const problems: string[] = [];
    for (const f of data) {
      const text = readFileSync(f, "utf8");
      if (f.endsWith(".json")) JSON.parse(text);
      else for (const d of parseAllDocuments(text)) problems.push(...[...d.errors, ...d.warnings].map((e) => `${relative(DEPLOY, f)}: ${e.message}`));
    }
    expect(problems).toEqual([]);
    const readme = readFileSync(join(DEPLOY, "README.md"), "utf8");
    const unnamed = files.map((f) => relative(DEPLOY, f)).filter((f) => f !== "README.md" && !readme.includes(f));
    expect(unnamed).toEqual([]);
  });
});

describe("deploy/kubernetes/daemonset.yaml", () => {
  const docs = k8sDocs();
  const of = (kind: string): Doc => {
    const d = docs.filter((x) => x.kind === kind);
    expect(d).toHaveLength(1);
    return d[0];
  };

  test("namespace, config map, daemonset and service, all in namespace svmrt", () => {
    expect(docs.map((d) => d.kind)).toEqual(["Namespace", "ConfigMap", "DaemonSet", "Service"]);
    expect(of("Namespace").metadata.name).toBe("svmrt");
    for (const d of docs.slice(1)) expect(d.metadata.namespace).toBe("svmrt");
  });

  test("the container: command, probes on /healthz, memory limits, port, devices, no privilege", () => {
    const ds = of("DaemonSet");
    const pod = ds.spec.template.spec;
    expect(ds.spec.selector.matchLabels).toEqual(ds.spec.template.metadata.labels);
    expect(pod.hostPID).toBe(false);
    expect(pod.hostNetwork).toBe(false);
    expect(pod.nodeSelector).toEqual({ "feature.node.kubernetes.io/amd-gpu": "true" });
    expect(pod.tolerations.map((t: Doc) => t.key)).toContain("amd.com/gpu");
    expect(pod.containers).toHaveLength(1);
    const c = pod.containers[0];
    expect(c.image).toMatch(/^[\w./-]+:[\w.-]+$/);
    expect([...c.command, ...c.args]).toEqual(["/usr/local/bin/svmrt", "agent", "--config", "/etc/svmrt/agent.yaml"]);
    expect(c.ports).toEqual([{ name: "metrics", containerPort: AGENT_PORT, protocol: "TCP" }]);
    for (const probe of [c.livenessProbe, c.readinessProbe]) expect(probe.httpGet).toEqual({ path: "/healthz", port: "metrics" });
    expect(c.resources.limits.memory).toBe("256Mi");
    expect(c.resources.requests.memory).toBe("64Mi");
    expect(c.securityContext.privileged).toBe(false);
    expect(c.securityContext.allowPrivilegeEscalation).toBe(false);
    const mounts = Object.fromEntries(c.volumeMounts.map((m: Doc) => [m.mountPath, m]));
    const volumes = Object.fromEntries(pod.volumes.map((v: Doc) => [v.name, v]));
    const hostPathOf = (mountPath: string): string => volumes[mounts[mountPath].name].hostPath.path;
    expect(hostPathOf("/dev/kfd")).toBe("/dev/kfd");
    expect(hostPathOf("/dev/dri")).toBe("/dev/dri");
    expect(hostPathOf("/sys")).toBe("/sys");
    expect(mounts["/sys"].readOnly).toBe(true);
    expect(mounts["/etc/svmrt/agent.yaml"].subPath).toBe("agent.yaml");
    expect(volumes[mounts["/etc/svmrt/agent.yaml"].name].configMap.name).toBe(of("ConfigMap").metadata.name);
    // Prometheus annotations and the Service agree with the container's port.
    const ann = ds.spec.template.metadata.annotations;
    expect(ann["prometheus.io/scrape"]).toBe("true");
    expect(ann["prometheus.io/port"]).toBe(String(AGENT_PORT));
    expect(ann["prometheus.io/path"]).toBe("/metrics");
    const svc = of("Service");
    expect(svc.spec.selector).toEqual(ds.spec.template.metadata.labels);
    expect(svc.spec.ports).toEqual([{ name: "metrics", port: AGENT_PORT, targetPort: "metrics", protocol: "TCP" }]);
  });

  test("the ConfigMap's agent.yaml is a valid agent configuration listening on all pod addresses, the default port", () => {
    expect(AGENT_PORT).toBe(9106);
    const cfg = agentConfigParse("daemonset.yaml#agent.yaml", of("ConfigMap").data["agent.yaml"]);
    expect(cfg.listen).toEqual({ hostname: "0.0.0.0", port: AGENT_PORT });
    expect(cfg.svm.enabled).toBe(true);
  });
});

describe("deploy/prometheus", () => {
  const config = join(DEPLOY, "prometheus", "prometheus.yml");
  const rules = join(DEPLOY, "prometheus", "svmrt-rules.yml");

  test("promtool check config accepts prometheus.yml (and its rule file)", () => {
    const r = promtoolRun(["check", "config", config]);
    expect(r).toMatchObject({ code: 0 });
    expect(r.output).toContain("SUCCESS: 1 rule files found");
    expect(r.output).not.toMatch(/WARNING|FAILED/);
  });

  test("scrape every 15 s; the static target is the agent's default address and the DaemonSet's port", () => {
    const p = yamlParse(readFileSync(config, "utf8"));
    expect(p.global.scrape_interval).toBe("15s");
    const job = p.scrape_configs.find((j: Doc) => j.job_name === "svmrt");
    expect(job.metrics_path).toBe("/metrics");
    expect(job.static_configs[0].targets).toEqual([`127.0.0.1:${AGENT_PORT}`]);
    const ds = k8sDocs().find((d) => d.kind === "DaemonSet");
    expect(ds.spec.template.spec.containers[0].ports[0].containerPort).toBe(Number(job.static_configs[0].targets[0].split(":")[1]));
  });

  test("the commented kubernetes_sd example: pods of namespace svmrt, port `metrics`; its relabelling passes promtool", () => {
    const lines = readFileSync(config, "utf8").split("\n");
    const start = lines.findIndex((l) => l.startsWith("  # - job_name: svmrt-kubernetes"));
    expect(start).toBeGreaterThan(0);
    const block: string[] = [];
    for (let i = start; i < lines.length && lines[i]!.startsWith("  # "); i++) block.push(`  ${lines[i]!.slice(4)}`);
    const job = yamlParse(`scrape_configs:\n${block.join("\n")}\n`).scrape_configs[0];
    expect(job.kubernetes_sd_configs).toEqual([{ role: "pod", namespaces: { names: ["svmrt"] } }]);
    const keeps = Object.fromEntries(job.relabel_configs.filter((c: Doc) => c.action === "keep").map((c: Doc) => [c.source_labels[0], c.regex]));
    expect(keeps).toEqual({ __meta_kubernetes_pod_annotation_prometheus_io_scrape: "true", __meta_kubernetes_pod_container_port_name: "metrics" });
    const ds = k8sDocs().find((d) => d.kind === "DaemonSet");
    expect(ds.spec.template.spec.containers[0].ports[0].name).toBe(keeps.__meta_kubernetes_pod_container_port_name);
    // Debian's promtool is built without Kubernetes discovery ("field kubernetes_sd_configs
    // not found"): check the rest of the job with a static target in its place.
    const { kubernetes_sd_configs: _, ...rest } = job;
    const dir = tmpDir();
    writeFileSync(join(dir, "prometheus.yml"), JSON.stringify({ scrape_configs: [{ ...rest, static_configs: [{ targets: [`127.0.0.1:${AGENT_PORT}`] }] }] }));
    const r = promtoolRun(["check", "config", join(dir, "prometheus.yml")]);
    expect(r).toMatchObject({ code: 0 });
    expect(r.output).not.toMatch(/WARNING|FAILED/);
  });

  test("promtool check rules accepts svmrt-rules.yml; every rule reads served metrics", () => {
    const r = promtoolRun(["check", "rules", rules]);
    expect(r).toMatchObject({ code: 0 });
    expect(r.output).toMatch(/SUCCESS: \d+ rules found/);
    const groups = yamlParse(readFileSync(rules, "utf8")).groups as Doc[];
    const all = groups.flatMap((g) => g.rules);
    const recorded = new Set(all.filter((x: Doc) => x.record).map((x: Doc) => x.record));
    const unknown = all.flatMap((x: Doc) => promqlMetricNames(x.expr)).filter((n: string) => !SERVED.has(n) && !recorded.has(n) && n !== "up");
    expect(unknown).toEqual([]);
    const alerts = all.filter((x: Doc) => x.alert).map((x: Doc) => x.alert);
    expect(alerts).toEqual(expect.arrayContaining(["SvmrtAgentDown", "SvmrtGpuJunctionTemperatureHigh", "SvmrtSampleStale", "SvmrtSvmMigrationFailures"]));
  });
});

describe("deploy/grafana/svmrt-dashboard.json", () => {
  const dash = JSON.parse(readFileSync(join(DEPLOY, "grafana", "svmrt-dashboard.json"), "utf8"));
  const panels = (dash.panels as Doc[]).filter((p) => p.type !== "row");

  test("schema, variables, rows", () => {
    expect(dash.schemaVersion).toBe(39);
    const vars = Object.fromEntries((dash.templating.list as Doc[]).map((v) => [v.name, v]));
    expect(Object.keys(vars)).toEqual(["datasource", "hostname", "gpu_id"]);
    expect(vars.datasource).toMatchObject({ type: "datasource", query: "prometheus" });
    for (const v of [vars.hostname, vars.gpu_id]) expect(v).toMatchObject({ type: "query", datasource: DATASOURCE });
    expect((dash.panels as Doc[]).filter((p) => p.type === "row").map((p) => p.title)).toEqual(["GPU", "SVM (KFD SMI events)", "Agent"]);
    const ids = (dash.panels as Doc[]).map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
  });

  test("every panel reads the $datasource and every expression only metrics the agent serves", () => {
    expect(panels.length).toBeGreaterThan(20);
    const exprs: string[] = [];
    for (const p of panels) {
      expect({ title: p.title, ds: p.datasource }).toEqual({ title: p.title, ds: DATASOURCE });
      for (const t of p.targets) exprs.push(t.expr);
    }
    const queries = (dash.templating.list as Doc[]).filter((v) => v.type === "query").map((v) => v.query.query as string);
    expect(queries).toHaveLength(2);
    for (const q of queries) {
      const m = /^label_values\((.*),\s*(\w+)\)$/.exec(q);
      expect({ q, m: m !== null }).toEqual({ q, m: true });
      exprs.push(m![1]!);
    }
    expect(exprs.length).toBeGreaterThan(30);
    const bad: string[] = [];
    const used = new Set<string>();
    for (const e of exprs) {
      const names = promqlMetricNames(e);
      if (names.length === 0) bad.push(`no metric in: ${e}`);
      for (const n of names) {
        used.add(n);
        if (!SERVED.has(n)) bad.push(`${n} in: ${e}`);
      }
    }
    expect(bad).toEqual([]);
    // Every SVM family is on the dashboard, and every GPU family.
    expect([...SVM_METRIC_NAMES, ...GPU_METRIC_NAMES].filter((n) => !used.has(n))).toEqual([]);
  });

  test("GPU and SVM panels filter by $hostname and $gpu_id", () => {
    const deviceExprs = panels
      .flatMap((p) => p.targets.map((t: Doc) => t.expr as string))
      .filter((e) => promqlMetricNames(e).some((n) => n.startsWith("gpu_") || n.startsWith("svm_") || n.startsWith("pcie_")));
    expect(deviceExprs.length).toBeGreaterThan(25);
    expect(deviceExprs.filter((e) => !e.includes('hostname=~"$hostname"'))).toEqual([]);
    const filtered = panels.flatMap((p) => p.targets).filter((t: Doc) => t.expr.includes('gpu_id=~"$gpu_id"'));
    expect(filtered.length).toBeGreaterThan(25);
  });

  test("panels do not overlap on the grid", () => {
    const cells = new Map<string, string>();
    const clashes: string[] = [];
    for (const p of dash.panels as Doc[]) {
      const { x, y, w, h } = p.gridPos;
      expect(x + w).toBeLessThanOrEqual(24);
      for (let i = x; i < x + w; i++) {
        for (let j = y; j < y + h; j++) {
          const k = `${i},${j}`;
          if (cells.has(k)) clashes.push(`${p.title} over ${cells.get(k)} at ${k}`);
          cells.set(k, p.title);
        }
      }
    }
    expect(clashes).toEqual([]);
  });

  test("the PromQL name extractor skips functions, labels, strings, ranges and variables", () => {
    expect(promqlMetricNames('histogram_quantile(0.99, sum by (le, group) (rate(x_bucket{a=~"$b", c="d e"}[$__rate_interval])))')).toEqual(["x_bucket"]);
    expect(promqlMetricNames("a / on(instance) group_left(hostname) b offset 5m > bool 3 and c")).toEqual(["a", "b", "c"]);
    expect(promqlMetricNames("max by (instance, mode) (svmrt_smi_mode) == 1")).toEqual(["svmrt_smi_mode"]);
  });
});

describe("deploy/systemd/svmrt-agent.service", () => {
  const unitPath = join(DEPLOY, "systemd", "svmrt-agent.service");
  const text = readFileSync(unitPath, "utf8");
  /** key -> every value, [Service] section only. */
  const service = new Map<string, string[]>();
  let section = "";
  for (const line of text.split("\n")) {
    const l = line.trim();
    if (l === "" || l.startsWith("#")) continue;
    if (l.startsWith("[")) {
      section = l;
      continue;
    }
    const eq = l.indexOf("=");
    if (section === "[Service]") service.set(l.slice(0, eq), [...(service.get(l.slice(0, eq)) ?? []), l.slice(eq + 1)]);
  }
  const one = (k: string): string | undefined => service.get(k)?.join("|");

  test("command, restart, bounded stop, reload, memory", () => {
    expect(one("ExecStart")).toBe("/usr/local/bin/svmrt agent --config /etc/svmrt/agent.yaml");
    expect(text).toContain("bun /opt/svmrt/runtime/cli.ts agent");
    expect(one("Type")).toBe("simple");
    expect(one("Restart")).toBe("on-failure");
    expect(one("KillSignal")).toBe("SIGTERM");
    expect(one("TimeoutStopSec")).toBe("15s");
    expect(one("ExecReload")).toBe("/bin/kill -HUP $MAINPID");
    expect(one("MemoryHigh")).toBe("100M");
    expect(one("MemoryMax")).toBe("256M");
  });

  test("hardening and devices", () => {
    const expected: Record<string, string> = {
      NoNewPrivileges: "yes",
      ProtectSystem: "strict",
      ProtectHome: "yes",
      PrivateTmp: "yes",
      ProtectKernelTunables: "yes",
      ProtectControlGroups: "yes",
      RestrictAddressFamilies: "AF_UNIX AF_INET AF_INET6",
      SystemCallArchitectures: "native",
      DevicePolicy: "closed",
      DeviceAllow: "/dev/kfd rw|char-drm rw",
      SupplementaryGroups: "render video",
      ReadWritePaths: "/var/lib/svmrt",
    };
    for (const [k, v] of Object.entries(expected)) expect({ k, v: one(k) }).toEqual({ k, v });
    expect(service.has("PrivateDevices")).toBe(false); // it would hide /dev/kfd
    expect(service.has("MemoryDenyWriteExecute")).toBe(false); // the JIT needs it off
  });

  const analyze = Bun.which("systemd-analyze");
  test.skipIf(!analyze)("systemd-analyze verify reports nothing", () => {
    // A root with the unit, stand-ins for the two executables it names and the system's
    // targets and slices, so that verify checks this unit and not the container it runs in.
    const root = tmpDir();
    const units = ["/usr/lib/systemd/system", "/lib/systemd/system"].find((d) => existsSync(d))!;
    for (const d of ["etc/systemd/system", "usr/lib/systemd/system", "usr/local/bin", "bin"]) mkdirSync(join(root, d), { recursive: true });
    for (const f of readdirSync(units)) if (/\.(target|slice)$/.test(f)) copyFileSync(join(units, f), join(root, "usr/lib/systemd/system", f));
    for (const exe of ["usr/local/bin/svmrt", "bin/kill"]) {
      writeFileSync(join(root, exe), "#!/bin/sh\n");
      chmodSync(join(root, exe), 0o755);
    }
    copyFileSync(unitPath, join(root, "etc/systemd/system/svmrt-agent.service"));
    const r = spawnSync(analyze!, ["verify", `--root=${root}`, "svmrt-agent.service"], { encoding: "utf8", timeout: 30_000 });
    expect({ code: r.status, output: `${r.stdout}${r.stderr}`.trim() }).toEqual({ code: 0, output: "" });
  });
});

describe("deploy/: comparison sweeps", () => {
  test("the Slurm array script runs its shard with svmrt; the shards merge into the single-machine result", () => {
    const script = join(DEPLOY, "slurm", "compare-sweep.sbatch");
    expect(spawnSync("bash", ["-n", script]).status).toBe(0);
    const sweep = join(tmpDir(), "sweep");
    const cli = join(import.meta.dir, "..", "..", "runtime", "cli.ts");
    const inputs = { PROFILE: "dev-2gpu", WORKLOADS: "pingpong", POLICIES: "builtin:policies/migration/kernel-default.yaml,builtin:policies/migration/thrash-guard.yaml", SEED: "5" };
    for (const k of ["1", "2"]) {
      const r = spawnSync("bash", [script], {
        env: { PATH: process.env.PATH, SVMRT: `${process.execPath} ${cli}`, SWEEP_DIR: sweep, SLURM_ARRAY_TASK_ID: k, SLURM_ARRAY_TASK_COUNT: "2", SLURM_CPUS_PER_TASK: "1", ...inputs },
        encoding: "utf8",
      });
      expect(r.stdout).toBe(`shard ${k}/2: 1 of 2 cells -> ${join(sweep, `shard-${k}-of-2.json`)}\n`);
      expect(r.status).toBe(0);
    }
    const merged = spawnSync(process.execPath, [cli, "compare", "--merge", sweep, "--json"], { encoding: "utf8" });
    const single = spawnSync(process.execPath, [cli, "compare", "--profile", "dev-2gpu", "--workloads", "pingpong", "--policies", inputs.POLICIES, "--seed", "5", "--json"], { encoding: "utf8" });
    expect(merged.status).toBe(0);
    expect(merged.stdout).toBe(single.stdout);
    // Outside a job array it says how to run it.
    const bare = spawnSync("bash", [script], { env: { PATH: process.env.PATH }, encoding: "utf8" });
    expect(bare.status).not.toBe(0);
    expect(bare.stderr).toContain("run this script as a job array");
  }, 120_000);

  test("the Indexed Job gives pod i shard i+1 of completions, on a shared volume", () => {
    const docs = parseAllDocuments(readFileSync(join(DEPLOY, "kubernetes", "compare-indexed-job.yaml"), "utf8")).map((d) => d.toJS());
    const job = docs.find((d) => d?.kind === "Job");
    const pvc = docs.find((d) => d?.kind === "PersistentVolumeClaim");
    expect(job.spec.completionMode).toBe("Indexed");
    expect(job.spec.parallelism).toBeLessThanOrEqual(job.spec.completions);
    expect(job.spec.template.spec.restartPolicy).toBe("Never");
    const c = job.spec.template.spec.containers[0];
    expect(c.env).toContainEqual({ name: "SHARDS", value: String(job.spec.completions) });
    const cmd: string = c.args.join(" ");
    expect(cmd).toContain("--shard $((JOB_COMPLETION_INDEX + 1))/$SHARDS --out /sweep");
    // The shell arithmetic gives 1..N for the indices 0..N-1 Kubernetes hands out.
    const shards = [0, job.spec.completions - 1].map((i) => spawnSync("sh", ["-c", "echo $((JOB_COMPLETION_INDEX + 1))/$SHARDS"], { env: { JOB_COMPLETION_INDEX: String(i), SHARDS: String(job.spec.completions) }, encoding: "utf8" }).stdout.trim());
    expect(shards).toEqual([`1/${job.spec.completions}`, `${job.spec.completions}/${job.spec.completions}`]);
    expect(pvc.spec.accessModes).toEqual(["ReadWriteMany"]);
    expect(c.volumeMounts).toContainEqual({ name: "sweep", mountPath: "/sweep" });
    expect(job.spec.template.spec.volumes).toContainEqual({ name: "sweep", persistentVolumeClaim: { claimName: pvc.metadata.name } });
  });
});
