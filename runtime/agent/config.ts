/**
 * The agent's configuration: one YAML file (`svmrt agent --config FILE`), validated like
 * policies, every error at file:line:col naming the field. Every key is optional; the
 * defaults run the agent on the emulated GPUs when no AMD GPU is present.
 *
 * ```yaml
 * kind: AgentConfig
 * listen: 127.0.0.1:9106          # host:port, or unix:/run/svmrt/agent.sock
 * backend: auto                   # auto | amdsmi | rocm-smi | emulated
 * profile: dev-2gpu               # emulated GPUs: a profile name or YAML path
 * amdsmi_lib: /opt/rocm/lib/libamd_smi.so
 * plugin_roots: [/opt/plugins]    # extra folders plugins may live in
 * policies: [policies/]           # folders, hot reloaded (default: the shipped sampling,
 *                                 # session and advisor folders)
 * sampling: { policy: fixed, evaluate_ms: 5000 }
 * session: { policy: persistent, evaluate_ms: 10000 }
 * advisor: { policy: advisor, interval_ms: 5000, pid: 4242 }   # pid: one process's events only
 * svm: { enabled: true, per_process: false }
 * metrics: { prefix: "", fields: [], labels: { cluster: a } }
 * http: { connections_max: 256, request_bytes_max: 65536, token_file: /etc/svmrt/token }
 * workers: 2
 * ```
 */
import { accessSync, constants, statSync } from "node:fs";
import { dirname, isAbsolute, join, resolve } from "node:path";
import type { Node } from "yaml";
import { readConfigFile } from "../config.ts";
import { ConfigError } from "../errors.ts";
import { SMI_BACKEND_CHOICES, type SmiBackendChoice } from "../smi/backend.ts";
import { YamlReader } from "../sim/yaml-read.ts";
import { GPU_FAMILIES, GPU_LABELS } from "./gpu-metrics.ts";
import { SVM_LABEL_NAMES } from "./svm-metrics.ts";

/** Default listen address: loopback only. */
export const AGENT_LISTEN_DEFAULT = "127.0.0.1:9106";
/** Most concurrent HTTP requests served; more get 503. */
export const HTTP_CONNECTIONS_MAX_DEFAULT = 256;
/** Largest request body accepted, bytes (headers are bounded by the server's own limit). */
export const HTTP_REQUEST_BYTES_MAX_DEFAULT = 64 * 1024;
/** Library workers by default. */
export const AGENT_WORKERS_DEFAULT = 2;
export const AGENT_WORKERS_MAX = 16;
export const POLICY_EVALUATE_MS_MIN = 100;
export const POLICY_EVALUATE_MS_MAX = 3_600_000;
/** Most policy folders. */
export const POLICY_FOLDERS_MAX = 16;
/** Most extra labels. */
export const METRIC_LABELS_MAX = 16;

export interface AgentConfig {
  file: string | undefined;
  listen: { hostname: string; port: number } | { unix: string };
  backend: SmiBackendChoice;
  profile: string | undefined;
  amdsmiLib: string | undefined;
  rocmSmiLib: string | undefined;
  policyDirs: string[];
  /** Extra folders plugins may live in (besides plugins/ and each policy file's own folder). */
  pluginRoots: string[];
  sampling: { policy: string | undefined; evaluateMs: number };
  session: { policy: string | undefined; evaluateMs: number };
  /** `pid`: the one process whose events the advisor reads (undefined: every process's). */
  advisor: { policy: string | undefined; intervalMs: number; pid?: number };
  svm: { enabled: boolean; perProcess: boolean };
  metrics: { prefix: string; fields: string[]; labels: Record<string, string> };
  http: { connectionsMax: number; requestBytesMax: number; tokenFile: string | undefined };
  workers: number;
}

/** The shipped policies folder (beside runtime/). */
export const SHIPPED_POLICIES_DIR = join(import.meta.dir, "..", "..", "policies");
/** The shipped folders the agent loads by default (the migration set is the simulator's). */
export const AGENT_POLICY_DIRS_DEFAULT = ["sampling", "session", "advisor"].map((k) => join(SHIPPED_POLICIES_DIR, k));

export function agentConfigDefault(): AgentConfig {
  return {
    file: undefined,
    listen: listenParse(AGENT_LISTEN_DEFAULT)!,
    backend: "auto",
    profile: undefined,
    amdsmiLib: undefined,
    rocmSmiLib: undefined,
    policyDirs: [...AGENT_POLICY_DIRS_DEFAULT],
    pluginRoots: [],
    sampling: { policy: "adaptive", evaluateMs: 5_000 },
    session: { policy: "persistent", evaluateMs: 10_000 },
    advisor: { policy: "advisor", intervalMs: 5_000 },
    svm: { enabled: true, perProcess: false },
    metrics: { prefix: "", fields: [], labels: {} },
    http: { connectionsMax: HTTP_CONNECTIONS_MAX_DEFAULT, requestBytesMax: HTTP_REQUEST_BYTES_MAX_DEFAULT, tokenFile: undefined },
    workers: AGENT_WORKERS_DEFAULT,
  };
}

/** `host:port`, `[v6]:port` or `unix:/path`; undefined when malformed. */
export function listenParse(s: string): AgentConfig["listen"] | undefined {
  if (s.startsWith("unix:")) return s.length > 5 ? { unix: s.slice(5) } : undefined;
  const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(s);
  if (!m) return undefined;
  const port = Number(m[2]);
  if (port > 65535) return undefined;
  return { hostname: m[1]!.replace(/^\[|\]$/g, ""), port };
}

const TOP = ["kind", "listen", "backend", "profile", "amdsmi_lib", "rocm_smi_lib", "policies", "plugin_roots", "sampling", "session", "advisor", "svm", "metrics", "http", "workers"] as const;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const GPU_FAMILY_NAMES = GPU_FAMILIES.map((f) => f.name);
/** Labels the agent sets on its own series: an extra label may not take one of these names. */
const RESERVED_LABELS = new Set<string>([...GPU_LABELS, ...SVM_LABEL_NAMES, "hostname", "le", "quantile"]);

/**
 * Read and validate a config file; relative paths in it are relative to the file.
 * @throws ConfigError (file:line:col, field, what was expected)
 */
export function agentConfigRead(file: string): AgentConfig {
  const text = readConfigFile(file);
  return agentConfigParse(file, text);
}

export function agentConfigParse(file: string, text: string): AgentConfig {
  const c = agentConfigDefault();
  c.file = file;
  const y = new YamlReader(file, text);
  if (y.root === null) return c;
  const top = y.map(y.root, "", TOP);
  const base = dirname(resolve(file));
  const path = (p: string) => (isAbsolute(p) ? p : join(base, p));
  const kind = y.get(top, "kind");
  if (kind !== undefined && y.str(kind, "kind") !== "AgentConfig") throw y.error(kind, "kind", "AgentConfig");
  const listen = y.get(top, "listen");
  if (listen !== undefined) {
    const l = listenParse(y.str(listen, "listen"));
    if (l === undefined) throw y.error(listen, "listen", "host:port (e.g. 127.0.0.1:9106) or unix:/path");
    c.listen = l;
  }
  const backend = y.get(top, "backend");
  if (backend !== undefined) {
    const b = y.str(backend, "backend");
    if (!(SMI_BACKEND_CHOICES as readonly string[]).includes(b)) throw y.error(backend, "backend", `one of ${SMI_BACKEND_CHOICES.join(", ")}`, `got ${b}`);
    c.backend = b as SmiBackendChoice;
  }
  const opt = (k: string) => {
    const n = y.get(top, k);
    return n === undefined ? undefined : y.str(n, k);
  };
  const profile = opt("profile");
  if (profile !== undefined) c.profile = profile.includes("/") || profile.endsWith(".yaml") ? path(profile) : profile;
  const amd = opt("amdsmi_lib");
  if (amd !== undefined) c.amdsmiLib = path(amd);
  const rocm = opt("rocm_smi_lib");
  if (rocm !== undefined) c.rocmSmiLib = path(rocm);
  const pol = y.get(top, "policies");
  if (pol !== undefined) {
    const s = y.seq(pol, "policies");
    if (s.items.length > POLICY_FOLDERS_MAX) throw y.error(s, "policies", `at most ${POLICY_FOLDERS_MAX} folders`);
    c.policyDirs = s.items.map((n, i) => path(y.str(n, `policies[${i}]`)));
  }
  const roots = y.get(top, "plugin_roots");
  if (roots !== undefined) {
    const s = y.seq(roots, "plugin_roots");
    if (s.items.length > POLICY_FOLDERS_MAX) throw y.error(s, "plugin_roots", `at most ${POLICY_FOLDERS_MAX} folders`);
    c.pluginRoots = s.items.map((n, i) => path(y.str(n, `plugin_roots[${i}]`)));
  }
  const policyBlock = (key: "sampling" | "session", msKey: string) => {
    const n = y.get(top, key);
    if (n === undefined) return;
    const m = y.map(n, key, ["policy", msKey]);
    const p = y.get(m, "policy");
    if (p !== undefined) c[key].policy = y.str(p, `${key}.policy`);
    c[key].evaluateMs = y.num(y.get(m, msKey), `${key}.${msKey}`, POLICY_EVALUATE_MS_MIN, POLICY_EVALUATE_MS_MAX, c[key].evaluateMs, true);
  };
  policyBlock("sampling", "evaluate_ms");
  policyBlock("session", "evaluate_ms");
  const adv = y.get(top, "advisor");
  if (adv !== undefined) {
    const m = y.map(adv, "advisor", ["policy", "interval_ms", "enabled", "pid"]);
    const pid = y.get(m, "pid");
    if (pid !== undefined) c.advisor.pid = y.num(pid, "advisor.pid", 1, 2 ** 22, undefined, true);
    if (!y.bool(y.get(m, "enabled"), "advisor.enabled", true)) c.advisor.policy = undefined;
    else {
      const p = y.get(m, "policy");
      if (p !== undefined) c.advisor.policy = y.str(p, "advisor.policy");
    }
    c.advisor.intervalMs = y.num(y.get(m, "interval_ms"), "advisor.interval_ms", POLICY_EVALUATE_MS_MIN, POLICY_EVALUATE_MS_MAX, c.advisor.intervalMs, true);
  }
  const svm = y.get(top, "svm");
  if (svm !== undefined) {
    const m = y.map(svm, "svm", ["enabled", "per_process"]);
    c.svm.enabled = y.bool(y.get(m, "enabled"), "svm.enabled", true);
    c.svm.perProcess = y.bool(y.get(m, "per_process"), "svm.per_process", false);
  }
  const met = y.get(top, "metrics");
  if (met !== undefined) {
    const m = y.map(met, "metrics", ["prefix", "fields", "labels"]);
    const prefix = y.get(m, "prefix");
    if (prefix !== undefined) {
      c.metrics.prefix = y.str(prefix, "metrics.prefix");
      if (c.metrics.prefix !== "" && !LABEL_NAME.test(c.metrics.prefix)) throw y.error(prefix, "metrics.prefix", "a metric name prefix ([a-zA-Z_][a-zA-Z0-9_]*)");
    }
    const fields = y.get(m, "fields");
    if (fields !== undefined) {
      c.metrics.fields = y.seq(fields, "metrics.fields").items.map((n, i) => {
        const f = y.str(n as Node, `metrics.fields[${i}]`);
        if (!GPU_FAMILY_NAMES.includes(f)) throw y.error(n as Node, `metrics.fields[${i}]`, `a GPU metric family (${GPU_FAMILY_NAMES.join(", ")})`, `got ${f}`);
        return f;
      });
    }
    const labels = y.get(m, "labels");
    if (labels !== undefined) {
      const lm = y.map(labels, "metrics.labels", labelKeys(labels));
      if (lm.items.length > METRIC_LABELS_MAX) throw y.error(labels, "metrics.labels", `at most ${METRIC_LABELS_MAX} labels`);
      for (const pair of lm.items) {
        const k = String((pair.key as { value: unknown }).value);
        if (!LABEL_NAME.test(k) || k.startsWith("__")) throw y.error(pair.key as Node, `metrics.labels.${k}`, "a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*, not starting with __)");
        if (RESERVED_LABELS.has(k)) throw y.error(pair.key as Node, `metrics.labels.${k}`, `a label name the agent does not set itself (not ${[...RESERVED_LABELS].join(", ")})`);
        c.metrics.labels[k] = y.str(pair.value as Node, `metrics.labels.${k}`);
      }
    }
  }
  const http = y.get(top, "http");
  if (http !== undefined) {
    const m = y.map(http, "http", ["connections_max", "request_bytes_max", "token_file"]);
    c.http.connectionsMax = y.num(y.get(m, "connections_max"), "http.connections_max", 1, 65_536, c.http.connectionsMax, true);
    c.http.requestBytesMax = y.num(y.get(m, "request_bytes_max"), "http.request_bytes_max", 1024, 16 * 1024 * 1024, c.http.requestBytesMax, true);
    const tf = y.get(m, "token_file");
    if (tf !== undefined) c.http.tokenFile = path(y.str(tf, "http.token_file"));
  }
  c.workers = y.num(y.get(top, "workers"), "workers", 1, AGENT_WORKERS_MAX, c.workers, true);
  return c;
}

/**
 * Check that the files a config names and the agent reads only once started can be read,
 * so a missing one stops the agent before it starts anything (agentConfigParse checks
 * text only: it also parses documented examples naming files of another host).
 * @throws ConfigError naming the key and the file
 */
export function agentConfigFilesCheck(c: AgentConfig): void {
  if (c.http.tokenFile === undefined) return;
  const why = fileUnreadable(c.http.tokenFile);
  if (why !== undefined) throw new ConfigError({ file: c.http.tokenFile, line: 1, col: 1 }, "http.token_file", "a readable file holding the bearer token", why);
}

/** Why `file` cannot be read as a regular file, or undefined when it can. */
function fileUnreadable(file: string): string | undefined {
  try {
    if (!statSync(file).isFile()) return "not a regular file";
    accessSync(file, constants.R_OK);
    return undefined;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return code === "ENOENT" ? "no such file" : code === "EACCES" ? "permission denied" : (code ?? (e as Error).message);
  }
}

/** Every key of a map node (labels are free-form). */
function labelKeys(n: Node): string[] {
  const items = (n as { items?: { key: { value?: unknown } }[] }).items ?? [];
  return items.map((p) => String(p.key?.value));
}
