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
import { isAlias, isMap, isScalar, isSeq, type Node } from "yaml";
import { BUILTIN_PREFIX, builtinPath, shippedDir } from "../assets.ts";
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
/** Longest value of an extra label, characters (it is repeated on every series). */
export const METRIC_LABEL_VALUE_CHARS_MAX = 1024;
/** Longest unix socket path, bytes (sun_path holds 108 with its terminating NUL). */
export const LISTEN_UNIX_PATH_BYTES_MAX = 107;
/** What a listen address looks like, in words. */
export const LISTEN_EXPECTED = "host:port (e.g. 127.0.0.1:9106) or unix:/path";

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

/** The shipped policies folder (runtime/assets.ts: beside runtime/, or embedded). */
export const SHIPPED_POLICIES_DIR = shippedDir("policies");
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

/**
 * `host:port`, `[v6]:port` or `unix:/path` (a path of at most LISTEN_UNIX_PATH_BYTES_MAX
 * bytes); undefined when malformed. An all-digit dotted host must be an IPv4 address.
 */
export function listenParse(s: string): AgentConfig["listen"] | undefined {
  if (s.startsWith("unix:")) return s.length > 5 && unixPathTooLong(s.slice(5)) === undefined ? { unix: s.slice(5) } : undefined;
  const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(s);
  if (!m) return undefined;
  const port = Number(m[2]);
  if (port > 65535) return undefined;
  const host = m[1]!;
  if (/^[\d.]+$/.test(host) && host.split(".").some((octet) => octet === "" || Number(octet) > 255)) return undefined;
  return { hostname: host.replace(/^\[|\]$/g, ""), port };
}

/** Why a listen address is malformed beyond its shape, for the message; undefined when it is not. */
export function listenDetail(s: string): string | undefined {
  return s.startsWith("unix:") ? unixPathTooLong(s.slice(5)) : undefined;
}

function unixPathTooLong(path: string): string | undefined {
  const n = Buffer.byteLength(path);
  return n > LISTEN_UNIX_PATH_BYTES_MAX ? `a socket path has at most ${LISTEN_UNIX_PATH_BYTES_MAX} bytes; this one has ${n}` : undefined;
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
  aliasRefuse(y, y.root, "");
  const top = y.map(y.root, "", TOP);
  const base = dirname(resolve(file));
  // A shipped file or folder is named builtin:policies/... (runtime/assets.ts).
  const path = (p: string) => (p.startsWith(BUILTIN_PREFIX) ? builtinPath(p) : isAbsolute(p) ? p : join(base, p));
  // Paths and names: an empty string would name the file's own folder, or nothing at all.
  const nonEmpty = (n: Node | undefined, field: string): string => {
    const v = y.str(n, field);
    if (v === "") throw y.error(n, field, "a non-empty string");
    return v;
  };
  const where: FilePositions = new Map();
  const kind = y.get(top, "kind");
  if (kind !== undefined && y.str(kind, "kind") !== "AgentConfig") throw y.error(kind, "kind", "AgentConfig");
  const listen = y.get(top, "listen");
  if (listen !== undefined) {
    const s = y.str(listen, "listen");
    let l = listenParse(s);
    // A relative socket path is relative to the file, like every path in it.
    if (l !== undefined && "unix" in l && !isAbsolute(l.unix)) l = listenParse(`unix:${path(l.unix)}`);
    if (l === undefined) throw y.error(listen, "listen", LISTEN_EXPECTED, listenDetail(s.startsWith("unix:") ? `unix:${path(s.slice(5))}` : s));
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
    return n === undefined ? undefined : nonEmpty(n, k);
  };
  const profile = opt("profile");
  if (profile !== undefined) c.profile = profile.includes("/") || profile.endsWith(".yaml") ? path(profile) : profile;
  const amd = opt("amdsmi_lib");
  if (amd !== undefined) c.amdsmiLib = path(amd);
  const rocm = opt("rocm_smi_lib");
  if (rocm !== undefined) c.rocmSmiLib = path(rocm);
  const folders = (key: "policies" | "plugin_roots"): string[] | undefined => {
    const n = y.get(top, key);
    if (n === undefined) return undefined;
    const s = y.seq(n, key);
    if (s.items.length > POLICY_FOLDERS_MAX) throw y.error(s, key, `at most ${POLICY_FOLDERS_MAX} folders`);
    return s.items.map((item, i) => {
      const p = path(nonEmpty(item, `${key}[${i}]`));
      where.set(`${key}[${i}]`, { pos: y.pos(item), value: p });
      return p;
    });
  };
  c.policyDirs = folders("policies") ?? c.policyDirs;
  c.pluginRoots = folders("plugin_roots") ?? c.pluginRoots;
  const int = (n: Node | undefined, field: string, min: number, max: number, fallback?: number): number => {
    // y.num would say `got 2` of "2": the quotes are the mistake, say so.
    if (isScalar(n) && typeof n.value === "string" && n.value.trim() !== "" && Number.isFinite(Number(n.value))) throw y.error(n, field, `an integer from ${min} to ${max}`, `got the string ${JSON.stringify(n.value).slice(0, 40)}: write numbers without quotes`);
    return y.num(n, field, min, max, fallback, true);
  };
  const policyBlock = (key: "sampling" | "session", msKey: string) => {
    const n = y.get(top, key);
    if (n === undefined) return;
    const m = y.map(n, key, ["policy", msKey]);
    const p = y.get(m, "policy");
    if (p !== undefined) c[key].policy = nonEmpty(p, `${key}.policy`);
    c[key].evaluateMs = int(y.get(m, msKey), `${key}.${msKey}`, POLICY_EVALUATE_MS_MIN, POLICY_EVALUATE_MS_MAX, c[key].evaluateMs);
  };
  policyBlock("sampling", "evaluate_ms");
  policyBlock("session", "evaluate_ms");
  const adv = y.get(top, "advisor");
  if (adv !== undefined) {
    const m = y.map(adv, "advisor", ["policy", "interval_ms", "enabled", "pid"]);
    const pid = y.get(m, "pid");
    if (pid !== undefined) c.advisor.pid = int(pid, "advisor.pid", 1, 2 ** 22);
    if (!y.bool(y.get(m, "enabled"), "advisor.enabled", true)) c.advisor.policy = undefined;
    else {
      const p = y.get(m, "policy");
      if (p !== undefined) c.advisor.policy = nonEmpty(p, "advisor.policy");
    }
    c.advisor.intervalMs = int(y.get(m, "interval_ms"), "advisor.interval_ms", POLICY_EVALUATE_MS_MIN, POLICY_EVALUATE_MS_MAX, c.advisor.intervalMs);
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
      if (!isMap(labels)) throw y.error(labels, "metrics.labels", "a mapping");
      for (const pair of labels.items) if (!isScalar(pair.key) || pair.key.value === null) throw y.error(pair.key as Node, "metrics.labels", "label names that are plain strings");
      const lm = y.map(labels, "metrics.labels", labelKeys(labels));
      if (lm.items.length > METRIC_LABELS_MAX) throw y.error(labels, "metrics.labels", `at most ${METRIC_LABELS_MAX} labels`);
      for (const pair of lm.items) {
        const k = String((pair.key as { value: unknown }).value);
        if (!LABEL_NAME.test(k) || k.startsWith("__")) throw y.error(pair.key as Node, `metrics.labels.${k}`, "a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*, not starting with __)");
        if (RESERVED_LABELS.has(k)) throw y.error(pair.key as Node, `metrics.labels.${k}`, `a label name the agent does not set itself (not ${[...RESERVED_LABELS].join(", ")})`);
        const v = y.str(pair.value as Node, `metrics.labels.${k}`);
        if (v.length > METRIC_LABEL_VALUE_CHARS_MAX) throw y.error(pair.value as Node, `metrics.labels.${k}`, `a string of at most ${METRIC_LABEL_VALUE_CHARS_MAX} characters`, `got ${v.length}`);
        c.metrics.labels[k] = v;
      }
    }
  }
  const http = y.get(top, "http");
  if (http !== undefined) {
    const m = y.map(http, "http", ["connections_max", "request_bytes_max", "token_file"]);
    c.http.connectionsMax = int(y.get(m, "connections_max"), "http.connections_max", 1, 65_536, c.http.connectionsMax);
    c.http.requestBytesMax = int(y.get(m, "request_bytes_max"), "http.request_bytes_max", 1024, 16 * 1024 * 1024, c.http.requestBytesMax);
    const tf = y.get(m, "token_file");
    if (tf !== undefined) c.http.tokenFile = path(nonEmpty(tf, "http.token_file"));
  }
  c.workers = int(y.get(top, "workers"), "workers", 1, AGENT_WORKERS_MAX, c.workers);
  filePositions.set(c, where);
  return c;
}

/** Where each checked path of a parsed config was written, and the path it gave. */
type FilePositions = Map<string, { pos: { file: string; line: number; col: number }; value: string }>;
const filePositions = new WeakMap<AgentConfig, FilePositions>();

/**
 * Refuse aliases (`*name`) anywhere in the document: the reader checks each value where it is
 * written, and an alias there is not a value.
 * @throws ConfigError at the alias, naming the field it stands for
 */
function aliasRefuse(y: YamlReader, node: unknown, field: string): void {
  if (isAlias(node)) throw y.error(node as unknown as Node, field, `a value written out (the agent configuration does not follow aliases such as *${node.source})`);
  if (isMap(node)) {
    for (const pair of node.items) {
      const k = isScalar(pair.key) ? String(pair.key.value) : "?";
      aliasRefuse(y, pair.key, field);
      aliasRefuse(y, pair.value, field === "" ? k : `${field}.${k}`);
    }
  } else if (isSeq(node)) {
    for (const [i, item] of node.items.entries()) aliasRefuse(y, item, `${field}[${i}]`);
  }
}

/**
 * Check that the files and folders a config names and the agent reads only once started are
 * there, so a missing one stops the agent before it starts anything (agentConfigParse checks
 * text only: it also parses documented examples naming files of another host). A path the
 * file set is reported at its file:line:col; one set otherwise (a flag, the defaults) at the
 * path itself.
 * @throws ConfigError naming the key and the file
 */
export function agentConfigFilesCheck(c: AgentConfig): void {
  const written = filePositions.get(c);
  const at = (key: string, value: string) => {
    const w = written?.get(key);
    return w !== undefined && w.value === value ? w.pos : { file: value, line: 1, col: 1 };
  };
  c.policyDirs.forEach((dir, i) => {
    const why = pathMissing(dir, false);
    if (why !== undefined) throw new ConfigError(at(`policies[${i}]`, dir), `policies[${i}]`, "an existing policy folder or file", `${why}: ${dir}`);
  });
  c.pluginRoots.forEach((dir, i) => {
    const why = pathMissing(dir, true);
    if (why !== undefined) throw new ConfigError(at(`plugin_roots[${i}]`, dir), `plugin_roots[${i}]`, "an existing folder", `${why}: ${dir}`);
  });
  if (c.http.tokenFile === undefined) return;
  const why = fileUnreadable(c.http.tokenFile);
  if (why !== undefined) throw new ConfigError({ file: c.http.tokenFile, line: 1, col: 1 }, "http.token_file", "a readable file holding the bearer token", why);
}

/** Why `p` is not there (or not a folder when `folder`), or undefined when it is. */
function pathMissing(p: string, folder: boolean): string | undefined {
  try {
    const st = statSync(p);
    return folder && !st.isDirectory() ? "not a folder" : undefined;
  } catch (e) {
    return errnoWords(e);
  }
}

/** Why `file` cannot be read as a regular file, or undefined when it can. */
function fileUnreadable(file: string): string | undefined {
  try {
    if (!statSync(file).isFile()) return "not a regular file";
    accessSync(file, constants.R_OK);
    return undefined;
  } catch (e) {
    return errnoWords(e);
  }
}

function errnoWords(e: unknown): string {
  const code = (e as NodeJS.ErrnoException).code;
  return code === "ENOENT" ? "no such file" : code === "EACCES" ? "permission denied" : (code ?? (e as Error).message);
}

/** Every key of a map node (labels are free-form). */
function labelKeys(n: Node): string[] {
  const items = (n as { items?: { key: { value?: unknown } }[] }).items ?? [];
  return items.map((p) => String(p.key?.value));
}
