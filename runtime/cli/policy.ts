/**
 * `svmrt policy check | eval | test | schema`: the operator's and plugin author's tools.
 */
import { statSync } from "node:fs";
import { ConfigError, ConfigErrors, PolicyError, UsageError } from "../errors.ts";
import { findPolicyFiles } from "../policy/files.ts";
import { KINDS, hookOf } from "../policy/kinds.ts";
import { Policy } from "../policy/policy.ts";
import { policyJsonSchema } from "../policy/schema.ts";
import { runPolicyTests } from "../policy/testing.ts";
import { type CliIO, type Command, flagString, parseFlags } from "./command.ts";
import { EXIT } from "./exit.ts";

/** Largest --input / --ctx document read, bytes. */
const EVAL_INPUT_BYTES_MAX = 4 * 1024 * 1024;

const HOOK_LIST = Object.values(KINDS)
  .map((k) => `  ${k.kind}:\n${Object.entries(k.hooks).map(([h, s]) => `    ${h.padEnd(16)} ${s.summary}`).join("\n")}`)
  .join("\n");

const HELP = `Usage:
  svmrt policy check <file|dir>... [--plugin-root DIR]... [--json]
      Load each policy (YAML, schema, plugin path, params), compile its plugin in the
      sandbox and run its inline tests. Exit 0 when all pass, 1 when a plugin fails to load
      or a test fails, 3 when a file is invalid.
  svmrt policy eval <policy.yaml> --hook NAME [--input FILE|-] [--ctx FILE] [--json]
      Run one hook once. Without --input the hook's documented sample input is used.
      With --json prints {"ok": true, "decision": ..., "by": ...} or
      {"ok": false, "error": {"reason": ..., "message": ...}, "fallback": ...}.
      Exit 0 whenever the hook ran, whatever the plugin did.
  svmrt policy test [dir...] [--plugin-root DIR]... [--json]
      Run the inline test cases of every policy under the folders (default: policies/).
  svmrt policy schema
      Print the JSON Schema of policy files (for editors).

Hooks:
${HOOK_LIST}
`;

interface FileReport {
  file: string;
  ok: boolean;
  name?: string;
  kind?: string;
  revision?: string;
  errors: string[];
  tests: { name: string; ok: boolean; message?: string }[];
}

function pluginRoots(values: Record<string, unknown>): string[] {
  const v = values["plugin-root"];
  return Array.isArray(v) ? (v as string[]) : [];
}

async function checkFile(file: string, roots: string[], runTests: boolean): Promise<{ report: FileReport; config: boolean }> {
  const report: FileReport = { file, ok: false, errors: [], tests: [] };
  let policy: Policy;
  try {
    policy = await Policy.load(file, { pluginRoots: roots });
  } catch (e) {
    if (e instanceof ConfigErrors) {
      report.errors = e.errors.map((x) => x.message);
      return { report, config: true };
    }
    if (e instanceof ConfigError) {
      report.errors = [e.message];
      return { report, config: true };
    }
    if (e instanceof PolicyError) {
      report.errors = [`${file}: plugin failed to load: ${e.message}`];
      return { report, config: false };
    }
    throw e;
  }
  using p = policy;
  report.name = p.name;
  report.kind = p.spec.kind;
  report.revision = p.spec.revision;
  if (runTests) report.tests = await runPolicyTests(p);
  report.ok = report.tests.every((t) => t.ok);
  return { report, config: false };
}

function printReports(io: CliIO, reports: FileReport[], json: boolean): void {
  if (json) {
    io.out(`${JSON.stringify({ ok: reports.every((r) => r.ok), files: reports }, null, 2)}\n`);
    return;
  }
  for (const r of reports) {
    const tests = r.tests.length ? `, ${r.tests.filter((t) => t.ok).length}/${r.tests.length} tests` : "";
    io.out(`${r.ok ? "ok  " : "FAIL"} ${r.file}${r.name ? ` (${r.kind} ${r.name}@${r.revision}${tests})` : ""}\n`);
    for (const e of r.errors) io.out(`     ${e}\n`);
    for (const t of r.tests.filter((x) => !x.ok)) io.out(`     test '${t.name}': ${t.message}\n`);
  }
  const bad = reports.filter((r) => !r.ok).length;
  io.out(`${reports.length - bad} of ${reports.length} policies ok\n`);
}

async function checkOrTest(argv: string[], io: CliIO, mode: "check" | "test"): Promise<number> {
  const p = parseFlags(argv, { "plugin-root": { type: "string", multiple: true }, json: { type: "boolean" } });
  if (p.help) {
    io.out(HELP);
    return EXIT.ok;
  }
  let paths = p.positionals;
  if (paths.length === 0) {
    if (mode === "check") throw new UsageError("policy check needs at least one file or folder");
    paths = ["policies"];
  }
  const files = findPolicyFiles(paths);
  if (files.length === 0) throw new UsageError(`no .yaml policy files under ${paths.join(", ")}`);
  const reports: FileReport[] = [];
  let config = false;
  for (const f of files) {
    const r = await checkFile(f, pluginRoots(p.values), true);
    reports.push(r.report);
    config ||= r.config;
  }
  printReports(io, reports, p.values.json === true);
  if (config) return EXIT.config;
  return reports.every((r) => r.ok) ? EXIT.ok : EXIT.failed;
}

/** Deepest JSON accepted from --input / --ctx (hook inputs nest a few levels). */
const EVAL_INPUT_DEPTH_MAX = 64;

/** Read at most EVAL_INPUT_BYTES_MAX bytes of stdin; refuse more without waiting for its end. */
async function readStdinCapped(): Promise<string> {
  const chunks: Uint8Array[] = [];
  let total = 0;
  for await (const chunk of Bun.stdin.stream()) {
    total += chunk.byteLength;
    if (total > EVAL_INPUT_BYTES_MAX) throw new UsageError(`--input -: stdin is larger than ${EVAL_INPUT_BYTES_MAX} bytes`);
    chunks.push(chunk);
  }
  return new TextDecoder().decode(Buffer.concat(chunks));
}

/** Nesting depth of JSON text, counted outside strings. */
function jsonDepth(text: string): number {
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 92) i++;
      else if (c === 34) inString = false;
    } else if (c === 34) inString = true;
    else if (c === 91 || c === 123) max = Math.max(max, ++depth);
    else if (c === 93 || c === 125) depth--;
  }
  return max;
}

async function readJsonArg(path: string, what: string): Promise<unknown> {
  let text: string;
  if (path === "-") text = await readStdinCapped();
  else {
    let st: ReturnType<typeof statSync>;
    try {
      st = statSync(path);
    } catch {
      throw new UsageError(`--${what}: ${path}: no such file`);
    }
    if (!st.isFile()) throw new UsageError(`--${what}: ${path} is not a regular file`);
    if (st.size > EVAL_INPUT_BYTES_MAX) throw new UsageError(`--${what}: ${path} is larger than ${EVAL_INPUT_BYTES_MAX} bytes`);
    text = await Bun.file(path).text();
  }
  if (text.length > EVAL_INPUT_BYTES_MAX) throw new UsageError(`--${what}: input larger than ${EVAL_INPUT_BYTES_MAX} bytes`);
  const source = path === "-" ? "stdin" : path;
  if (jsonDepth(text) > EVAL_INPUT_DEPTH_MAX) throw new UsageError(`--${what}: ${source} nests deeper than ${EVAL_INPUT_DEPTH_MAX} levels`);
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new UsageError(`--${what}: ${source} is not JSON: ${(e as Error).message}`);
  }
}

async function evalHook(argv: string[], io: CliIO): Promise<number> {
  const p = parseFlags(argv, {
    hook: { type: "string" },
    input: { type: "string" },
    ctx: { type: "string" },
    json: { type: "boolean" },
    "plugin-root": { type: "string", multiple: true },
  });
  if (p.help) {
    io.out(HELP);
    return EXIT.ok;
  }
  const [file, ...extra] = p.positionals;
  if (!file) throw new UsageError("policy eval needs a policy file");
  if (extra.length) throw new UsageError(`unexpected argument '${extra[0]}'`);
  const hook = flagString(p, "hook");
  if (!hook) throw new UsageError("--hook is required");
  const json = p.values.json === true;
  let loaded: Policy;
  try {
    loaded = await Policy.load(file, { pluginRoots: pluginRoots(p.values) });
  } catch (e) {
    // A plugin that does not load is an answer of eval (reason "load"), not a usage error.
    if (!(e instanceof PolicyError)) throw e;
    if (json) io.out(`${JSON.stringify({ ok: false, error: { reason: e.reason, message: e.message } })}\n`);
    else io.out(`failed (${e.reason}): ${e.message}\n`);
    return EXIT.ok;
  }
  using policy = loaded;
  const spec = hookOf(policy.kindSpec, hook);
  if (!spec) throw new UsageError(`${policy.spec.kind} has no hook '${hook}'; its hooks: ${Object.keys(policy.kindSpec.hooks).join(", ")}`);
  const input = p.values.input !== undefined ? await readJsonArg(flagString(p, "input")!, "input") : spec.sampleInput;
  const ctxOverride = p.values.ctx !== undefined ? await readJsonArg(flagString(p, "ctx")!, "ctx") : {};
  if (ctxOverride === null || typeof ctxOverride !== "object" || Array.isArray(ctxOverride)) throw new UsageError("--ctx must be a JSON object");
  const ctx = { ...policy.kindSpec.sampleCtx, ...(ctxOverride as Record<string, unknown>) };
  let out: Record<string, unknown>;
  try {
    const d = await policy.invoke(hook, input, ctx);
    out = d.failure
      ? { ok: false, error: d.failure, fallback: d.value, logs: d.logs }
      : { ok: true, decision: d.value, by: d.by, logs: d.logs };
  } catch (e) {
    if (!(e instanceof PolicyError)) throw e;
    out = { ok: false, error: { reason: e.reason, message: e.message } };
  }
  if (json) io.out(`${JSON.stringify(out)}\n`);
  else if (out.ok) io.out(`decision (${out.by}): ${JSON.stringify(out.decision)}\n${(out.logs as string[]).map((l) => `  log: ${l}\n`).join("")}`);
  else {
    const err = out.error as { reason: string; message: string };
    io.out(`failed (${err.reason}): ${err.message}\n${"fallback" in out ? `fallback decision: ${JSON.stringify(out.fallback)}\n` : ""}`);
  }
  return EXIT.ok;
}

export const policyCommand: Command = {
  name: "policy",
  summary: "check, evaluate and test policy files and their plugins",
  help: HELP,
  async run(argv, io) {
    const [sub, ...rest] = argv;
    switch (sub) {
      case "check":
        return checkOrTest(rest, io, "check");
      case "test":
        return checkOrTest(rest, io, "test");
      case "eval":
        return evalHook(rest, io);
      case "schema":
        io.out(`${JSON.stringify(policyJsonSchema(), null, 2)}\n`);
        return EXIT.ok;
      case undefined:
      case "--help":
      case "-h":
        io.out(HELP);
        return sub === undefined ? EXIT.usage : EXIT.ok;
      default:
        throw new UsageError(`unknown subcommand '${sub}' (check, eval, test, schema)`);
    }
  },
};
