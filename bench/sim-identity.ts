/**
 * Simulator identity digests: runs `svmrt sim --json --events FILE` for every built-in
 * workload x every shipped profile, with the native kernel-default and (with --policies all)
 * every shipped migration policy, and records per cell the SHA-256 of the JSON line and of
 * the SMI event stream, plus the JSON itself. `--check` compares a run with a recorded file
 * and names, per changed cell, the result fields that changed (before -> after): it proves a
 * refactor byte-identical, or lists what a deliberate model change changed.
 *
 * Run:
 *   bun bench/sim-identity.ts --write digests.jsonl [--policies native|all] [--root DIR]
 *   bun bench/sim-identity.ts --check digests.jsonl [--policies native|all] [--root DIR]
 * Options: --root DIR runs the CLI of another checkout (e.g. `git archive HEAD` unpacked),
 * --jobs N runs N cells at once (1..JOBS_MAX), --only SUBSTRING keeps cells whose name
 * (profile/workload/policy) contains it, --skip S1,S2 drops those containing any, --seed N
 * (default 1).
 * --write appends each cell's line as it completes (a stopped run keeps what it did); a
 * --check against a file that lacks some cells reports them as missing.
 * Prints one JSON object last: cells, identical, changed, missing, wall time. Exit 1 when a
 * checked cell differs or is missing, 2 on a failed cell or bad usage.
 */
import { appendFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { BUILTINS } from "../runtime/sim/builtins.ts";
import { shippedProfiles } from "../runtime/sim/profile.ts";

/** Shipped migration policies (policies/migration/<name>.yaml), run sandboxed with --policies all. */
export const SHIPPED_MIGRATION_POLICIES = ["kernel-default", "thrash-guard", "density-prefetch", "xgmi-aware", "access-counter"] as const;
/** The cell name's policy part for the native decider (no --policy). */
export const NATIVE_POLICY = "native";
/** Most cells run at once. */
export const JOBS_MAX = 8;
/** One cell's wall-clock limit, ms: the slowest shipped cell takes ~10 s on a loaded 2-core machine. */
export const CELL_TIMEOUT_ms = 600_000;
/** Most changed fields listed per cell in --check output. */
export const CHANGED_FIELDS_MAX = 40;

/** One recorded cell. */
export interface CellDigest {
  cell: string;
  json_sha256: string;
  events_sha256: string;
  event_lines: number;
  result: Record<string, unknown>;
}

interface Cell {
  name: string;
  profile: string;
  workload: string;
  policy: string;
}

function sha256(data: string | Uint8Array): string {
  return new Bun.CryptoHasher("sha256").update(data).digest("hex");
}

/** SHA-256 of a file read in chunks (event streams reach hundreds of MB), and its line count. */
async function fileDigest(path: string): Promise<{ sha: string; lines: number }> {
  const h = new Bun.CryptoHasher("sha256");
  let lines = 0;
  for await (const chunk of Bun.file(path).stream()) {
    h.update(chunk);
    for (let i = 0; i < chunk.length; i++) if (chunk[i] === 10) lines++;
  }
  return { sha: h.digest("hex"), lines };
}

/**
 * Run one cell through the CLI of `root`; its event file lives in `dir` and is removed.
 * @throws Error naming the cell, its exit code and stderr when the run fails or times out.
 */
async function cellRun(root: string, dir: string, c: Cell, seed: number): Promise<CellDigest> {
  const events = join(dir, `${c.name.replaceAll("/", "_")}.events`);
  const argv = ["bun", join(root, "runtime/cli.ts"), "sim", "--profile", c.profile, "--workload", c.workload, "--seed", String(seed), "--json", "--events", events];
  if (c.policy !== NATIVE_POLICY) argv.push("--policy", join(root, "policies/migration", `${c.policy}.yaml`));
  try {
    const proc = Bun.spawn(argv, { cwd: root, stdout: "pipe", stderr: "pipe", timeout: CELL_TIMEOUT_ms });
    const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
    if (code !== 0) throw new Error(`cell ${c.name}: svmrt sim exited ${code} (${proc.signalCode ?? "no signal"}): ${err.trim().slice(0, 2000)}`);
    const ev = await fileDigest(events);
    return { cell: c.name, json_sha256: sha256(out), events_sha256: ev.sha, event_lines: ev.lines, result: JSON.parse(out) as Record<string, unknown> };
  } finally {
    rmSync(events, { force: true });
  }
}

/** Leaf fields of `a` and `b` that differ, as "path: before -> after" (at most CHANGED_FIELDS_MAX). */
export function fieldsChanged(a: unknown, b: unknown, path = ""): string[] {
  if (a !== null && b !== null && typeof a === "object" && typeof b === "object") {
    const out: string[] = [];
    const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])];
    for (const k of keys) {
      out.push(...fieldsChanged((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], path === "" ? k : `${path}.${k}`));
      if (out.length >= CHANGED_FIELDS_MAX) return out.slice(0, CHANGED_FIELDS_MAX);
    }
    return out;
  }
  return JSON.stringify(a) === JSON.stringify(b) ? [] : [`${path}: ${JSON.stringify(a)} -> ${JSON.stringify(b)}`];
}

function usage(msg: string): never {
  process.stderr.write(`sim-identity: ${msg}\nusage: bun bench/sim-identity.ts (--write|--check) FILE [--policies native|all] [--root DIR] [--jobs N] [--only S] [--skip S] [--seed N]\n`);
  process.exit(2);
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    args: Bun.argv.slice(2),
    options: {
      write: { type: "string" },
      check: { type: "string" },
      policies: { type: "string", default: "native" },
      root: { type: "string" },
      jobs: { type: "string", default: "1" },
      only: { type: "string" },
      skip: { type: "string" },
      seed: { type: "string", default: "1" },
    },
    strict: true,
  });
  if ((values.write === undefined) === (values.check === undefined)) usage("give exactly one of --write FILE or --check FILE");
  if (values.policies !== "native" && values.policies !== "all") usage(`--policies: expected native or all, got '${values.policies}'`);
  const jobs = Number(values.jobs);
  if (!Number.isInteger(jobs) || jobs < 1 || jobs > JOBS_MAX) usage(`--jobs: expected 1..${JOBS_MAX}, got '${values.jobs}'`);
  const seed = Number(values.seed);
  if (!Number.isInteger(seed) || seed < 0) usage(`--seed: expected an integer >= 0, got '${values.seed}'`);
  const root = resolve(values.root ?? join(import.meta.dir, ".."));
  const policies = values.policies === "all" ? [NATIVE_POLICY, ...SHIPPED_MIGRATION_POLICIES] : [NATIVE_POLICY];
  let cells: Cell[] = [];
  for (const profile of shippedProfiles()) {
    for (const workload of Object.keys(BUILTINS)) {
      for (const policy of policies) cells.push({ name: `${profile}/${workload}/${policy}`, profile, workload, policy });
    }
  }
  if (values.only !== undefined) cells = cells.filter((c) => c.name.includes(values.only!));
  const skip = values.skip === undefined ? [] : values.skip.split(",");
  cells = cells.filter((c) => !skip.some((k) => c.name.includes(k)));
  if (cells.length === 0) usage(`no cell matches --only ${values.only}`);

  const started = performance.now();
  const dir = mkdtempSync(join(tmpdir(), "svmrt-identity-"));
  const digests: CellDigest[] = new Array(cells.length);
  if (values.write !== undefined) writeFileSync(values.write, "");
  try {
    let next = 0;
    const worker = async (): Promise<void> => {
      // Bounded: each worker takes cells until none is left.
      while (next < cells.length) {
        const i = next++;
        const cellStarted = performance.now();
        const d = await cellRun(root, dir, cells[i]!, seed);
        digests[i] = d;
        if (values.write !== undefined) appendFileSync(values.write, `${JSON.stringify(d)}\n`);
        process.stderr.write(`${d.cell} ${d.json_sha256.slice(0, 12)} ${d.events_sha256.slice(0, 12)} ${Math.round(performance.now() - cellStarted)} ms\n`);
      }
    };
    await Promise.all(Array.from({ length: Math.min(jobs, cells.length) }, worker));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const wall_s = Math.round((performance.now() - started) / 100) / 10;

  if (values.write !== undefined) {
    console.log(JSON.stringify({ mode: "write", file: values.write, root, cells: digests.length, wall_s }));
    return 0;
  }
  const recorded = new Map<string, CellDigest>();
  for (const line of readFileSync(values.check!, "utf8").split("\n")) {
    if (line.trim() === "") continue;
    const d = JSON.parse(line) as CellDigest;
    recorded.set(d.cell, d);
  }
  const changed: { cell: string; json: boolean; events: boolean; event_lines: string; fields: string[] }[] = [];
  const missing: string[] = [];
  let identical = 0;
  for (const d of digests) {
    const r = recorded.get(d.cell);
    if (r === undefined) {
      missing.push(d.cell);
      continue;
    }
    const json = r.json_sha256 !== d.json_sha256;
    const events = r.events_sha256 !== d.events_sha256;
    if (!json && !events) {
      identical++;
      continue;
    }
    changed.push({ cell: d.cell, json, events, event_lines: `${r.event_lines} -> ${d.event_lines}`, fields: fieldsChanged(r.result, d.result) });
  }
  for (const c of changed) {
    process.stderr.write(`CHANGED ${c.cell}: json ${c.json ? "differs" : "same"}, events ${c.events ? "differ" : "same"} (lines ${c.event_lines})\n`);
    for (const f of c.fields) process.stderr.write(`    ${f}\n`);
  }
  console.log(JSON.stringify({ mode: "check", file: values.check, root, cells: digests.length, identical, changed, missing, wall_s }));
  return changed.length > 0 || missing.length > 0 ? 1 : 0;
}

if (import.meta.main) {
  main().then(
    (code) => process.exit(code),
    (e: unknown) => {
      process.stderr.write(`sim-identity: ${(e as Error).message}\n`);
      process.exit(2);
    },
  );
}
