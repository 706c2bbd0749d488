/**
 * Sweeps over several machines: `svmrt compare --shard K/N --out DIR` runs every N-th cell of
 * the matrix (cells K-1, K-1+N, ... in (workload, policy) order) and writes them to
 * DIR/shard-K-of-N.json; `svmrt compare --merge DIR...` reads the N files back and gives the
 * table, JSON and report of the whole matrix, the same bytes a single-machine run gives.
 *
 * Every shard file carries a fingerprint of the comparison's inputs (profile, seed, range,
 * workload contents, policy revisions): shards of different inputs never merge. Cells are
 * dealt round-robin, so each shard gets a share of every workload (large and small ones
 * alike) and a shard count above the cell count leaves some shards empty, never wrong.
 */
import { createHash } from "node:crypto";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { pathErrorDetail } from "../config.ts";
import { ConfigError, UsageError } from "../errors.ts";
import { COMPARE_CELLS_MAX, type CompareCell } from "./compare.ts";

/** The format tag of a shard file; a file of another format is refused. */
export const SHARD_FORMAT = "svmrt-compare-shard/1";
/** Most shards of one sweep (one cell each at most). */
export const SHARDS_MAX = COMPARE_CELLS_MAX;
/** Largest shard file read, bytes (a cell's result is at most a few hundred kB). */
export const SHARD_FILE_BYTES_MAX = 256 * 1024 * 1024;
/** Most entries looked at in one --merge folder. */
export const MERGE_DIR_ENTRIES_MAX = 4 * SHARDS_MAX;

/** Shard `index` (1-based) of `count`. */
export interface ShardSpec {
  index: number;
  count: number;
}

/** What a shard file holds. */
export interface ShardFile {
  format: typeof SHARD_FORMAT;
  shard: ShardSpec;
  /** compareFingerprint of the inputs. */
  fingerprint: string;
  /** Cells of the whole matrix. */
  total: number;
  /** The profile's name and the seed, as the merged output prints them. */
  profile: string;
  seed: number;
  /** This shard's cells with their index in the matrix, in index order. */
  cells: { index: number; cell: CompareCell }[];
}

/**
 * `K/N` with 1 <= K <= N <= SHARDS_MAX.
 * @throws UsageError naming --shard and the value
 */
export function shardParse(v: string): ShardSpec {
  const m = /^(\d{1,5})\/(\d{1,5})$/.exec(v);
  const index = m ? Number(m[1]) : Number.NaN;
  const count = m ? Number(m[2]) : Number.NaN;
  if (!(index >= 1 && count >= 1 && index <= count && count <= SHARDS_MAX)) {
    throw new UsageError(`--shard: expected K/N with 1 <= K <= N <= ${SHARDS_MAX} (SHARDS_MAX), e.g. 2/8, got '${v}'`);
  }
  return { index, count };
}

/** The matrix cells shard `s` runs: index-1, index-1+count, ... below `total`. */
export function shardCellIndices(total: number, s: ShardSpec): number[] {
  const out: number[] = [];
  for (let i = s.index - 1; i < total; i += s.count) out.push(i);
  return out;
}

/** The file a shard writes in its --out folder. */
export function shardFileName(s: ShardSpec): string {
  return `shard-${s.index}-of-${s.count}.json`;
}

/** What a comparison's result depends on, each as text the fingerprint hashes. */
export interface CompareInputs {
  /** The profile as parsed (its file path left out: the same profile may live elsewhere). */
  profile: unknown;
  seed: number;
  range: number | undefined;
  /** Per workload: its argument and its YAML text (a built-in's generated text). */
  workloads: { arg: string; text: string }[];
  /** Per policy, in order: its name and revision (hash of its YAML and plugin). */
  policies: { name: string; revision: string }[];
}

/** A hash of everything a comparison's cells depend on (hex). */
export function compareFingerprint(inputs: CompareInputs): string {
  const h = createHash("sha256");
  h.update(SHARD_FORMAT);
  h.update(JSON.stringify([inputs.profile, inputs.seed, inputs.range ?? null, inputs.policies]));
  for (const w of inputs.workloads) h.update("\0").update(w.arg).update("\0").update(w.text);
  return h.digest("hex").slice(0, 32);
}

/** The shard file's text (one JSON object and a newline). */
export function shardFileText(f: Omit<ShardFile, "format">): string {
  return `${JSON.stringify({ format: SHARD_FORMAT, ...f } satisfies ShardFile)}\n`;
}

/** The keys of a shard file besides its format, each required. */
const SHARD_FILE_KEYS = ["shard", "fingerprint", "total", "profile", "seed", "cells"] as const satisfies readonly (keyof ShardFile)[];

const isCount = (v: unknown, min: number, max: number): v is number => typeof v === "number" && Number.isSafeInteger(v) && v >= min && v <= max;

/** A shard file's content, checked for shape. @throws UsageError naming the file */
function shardFileParse(path: string, text: string): ShardFile {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new UsageError(`${path}: not a shard file (unreadable JSON: ${(e as Error).message})`);
  }
  const f = v as Partial<ShardFile>;
  if (typeof v !== "object" || v === null || f.format !== SHARD_FORMAT) throw new UsageError(`${path}: not a shard file of this svmrt (expected format '${SHARD_FORMAT}')`);
  const bad = (what: string): never => {
    throw new UsageError(`${path}: damaged shard file: ${what}`);
  };
  // A key that is not there is named as missing, not as a value of the wrong shape.
  for (const k of SHARD_FILE_KEYS) if (!Object.hasOwn(f, k)) bad(`${k} missing`);
  if (typeof f.fingerprint !== "string" || typeof f.profile !== "string") bad("fingerprint and profile must be strings");
  if (!isCount(f.total, 1, COMPARE_CELLS_MAX)) bad(`total must be 1..${COMPARE_CELLS_MAX}`);
  if (!isCount(f.seed, 0, 2 ** 32 - 1)) bad("seed");
  const s = f.shard;
  if (typeof s !== "object" || s === null || !isCount(s.count, 1, SHARDS_MAX) || !isCount(s.index, 1, s.count)) bad("shard must be {index, count} with 1 <= index <= count");
  if (!Array.isArray(f.cells)) bad("cells must be a list");
  const want = shardCellIndices(f.total!, s!);
  const got = f.cells!.map((c) => (c as { index?: unknown })?.index);
  if (got.length !== want.length || got.some((g, i) => g !== want[i])) bad(`shard ${s!.index}/${s!.count} of ${f.total} cells must hold cells ${want.join(",") || "(none)"}`);
  for (const c of f.cells!) {
    const index = (c as { index: number }).index;
    const cell = (c as { cell?: Partial<CompareCell> }).cell;
    if (typeof cell !== "object" || cell === null || typeof cell.workload !== "string" || typeof cell.policy !== "string" || typeof cell.policyFile !== "string") {
      bad(`cell ${index} lacks workload, policy or policyFile`);
    }
    const problem = cellResultProblem(cell!);
    if (problem !== undefined) bad(`cell ${index}: ${problem}`);
  }
  return f as ShardFile;
}

/** The result fields the table and the report read: each a finite number. */
const RESULT_NUMBERS = ["simTimeNs", "gpuFaults", "gpuFaultsDropped", "evictions", "thrashEvents", "vramFallbacks", "policyFallbacks"] as const;
const BYTES_DIRECTIONS = ["h2d", "d2h", "d2d"] as const;

/** Why a cell is neither a result nor a failure (exitCode and error), or undefined. */
function cellResultProblem(cell: Partial<CompareCell>): string | undefined {
  const r = cell.result as unknown;
  if (r === undefined) {
    return Number.isInteger(cell.exitCode) && typeof cell.error === "string" ? undefined : "neither a result nor a failure (exitCode and error)";
  }
  if (typeof r !== "object" || r === null) return "result must be an object";
  const res = r as Record<string, unknown>;
  for (const k of RESULT_NUMBERS) if (!Number.isFinite(res[k])) return `result.${k} must be a finite number`;
  const bytes = res.bytesMigrated as Record<string, unknown> | undefined;
  for (const d of BYTES_DIRECTIONS) if (!Number.isFinite(bytes?.[d])) return `result.bytesMigrated.${d} must be a finite number`;
  return undefined;
}

/**
 * A --merge path that cannot be read: an input like any other (exit 3), at PATH:1:1 with the
 * errno and the system's words for it.
 */
function mergePathUnreadable(path: string, expected: string, e: unknown): ConfigError {
  return new ConfigError({ file: path, line: 1, col: 1 }, "", expected, pathErrorDetail(e));
}

/**
 * The shard files (`shard-K-of-N.json`) of each folder, or files named directly.
 * @throws ConfigError for a path that cannot be read (missing, EACCES: PATH:1:1 and the
 *   errno); UsageError for an oversized file or a folder without shard files
 */
export function shardFilesRead(paths: string[]): { path: string; text: string }[] {
  const files: string[] = [];
  for (const p of paths) {
    let st: ReturnType<typeof statSync>;
    try {
      st = statSync(p);
    } catch (e) {
      throw mergePathUnreadable(p, "a readable shard file or folder of shard files", e);
    }
    if (!st.isDirectory()) {
      files.push(p);
      continue;
    }
    let names: string[];
    try {
      names = readdirSync(p);
    } catch (e) {
      throw mergePathUnreadable(p, "a readable folder of shard files", e);
    }
    if (names.length > MERGE_DIR_ENTRIES_MAX) throw new UsageError(`--merge ${p}: more than ${MERGE_DIR_ENTRIES_MAX} entries (MERGE_DIR_ENTRIES_MAX)`);
    const shards = names.filter((n) => /^shard-\d+-of-\d+\.json$/.test(n)).sort((a, b) => a.localeCompare(b, "en", { numeric: true }));
    if (shards.length === 0) throw new UsageError(`--merge ${p}: no shard-K-of-N.json file in it (write them with svmrt compare --shard K/N --out ${p})`);
    for (const n of shards) files.push(join(p, n));
  }
  return files.map((path) => {
    let size: number;
    let text: string;
    try {
      size = statSync(path).size;
      if (size > SHARD_FILE_BYTES_MAX) throw new UsageError(`--merge ${path}: ${size} bytes, more than SHARD_FILE_BYTES_MAX (${SHARD_FILE_BYTES_MAX})`);
      text = readFileSync(path, "utf8");
    } catch (e) {
      if (e instanceof UsageError) throw e;
      throw mergePathUnreadable(path, "a readable shard file", e);
    }
    return { path, text };
  });
}

/** The merged matrix: the profile's name, the seed and every cell in matrix order. */
export interface MergedCompare {
  profile: string;
  seed: number;
  cells: CompareCell[];
}

/**
 * Put the shards of one sweep back together.
 * @throws UsageError when the files are not shards, come from different inputs or shard
 *   counts, repeat a shard or lack one (each named, with the command that makes it)
 */
export function shardsMerge(files: { path: string; text: string }[]): MergedCompare {
  if (files.length === 0) throw new UsageError("--merge: no shard file given");
  const parsed = files.map((f) => ({ path: f.path, f: shardFileParse(f.path, f.text) }));
  const first = parsed[0]!;
  for (const p of parsed) {
    if (p.f.fingerprint !== first.f.fingerprint || p.f.total !== first.f.total) {
      throw new UsageError(`--merge: ${p.path} and ${first.path} are shards of different comparisons (other inputs: profile, seed, range, workloads or policies)`);
    }
    if (p.f.shard.count !== first.f.shard.count) throw new UsageError(`--merge: ${p.path} is one of ${p.f.shard.count} shards, ${first.path} one of ${first.f.shard.count}`);
    // The fingerprint covers the inputs; the names printed from the header must agree too.
    if (p.f.seed !== first.f.seed || p.f.profile !== first.f.profile) {
      throw new UsageError(`--merge: ${p.path} says profile ${p.f.profile}, seed ${p.f.seed}; ${first.path} says profile ${first.f.profile}, seed ${first.f.seed}: a damaged shard file`);
    }
  }
  const count = first.f.shard.count;
  const byIndex = new Map<number, string>();
  for (const p of parsed) {
    const other = byIndex.get(p.f.shard.index);
    if (other !== undefined) throw new UsageError(`--merge: shard ${p.f.shard.index}/${count} is given twice (${other} and ${p.path})`);
    byIndex.set(p.f.shard.index, p.path);
  }
  const missing: number[] = [];
  for (let k = 1; k <= count; k++) if (!byIndex.has(k)) missing.push(k);
  if (missing.length > 0) {
    const shown = missing.slice(0, 8).map((k) => `${k}/${count}`);
    throw new UsageError(`--merge: missing shard${missing.length > 1 ? "s" : ""} ${shown.join(", ")}${missing.length > 8 ? ` and ${missing.length - 8} more` : ""} (run svmrt compare ... --shard K/${count} --out DIR for each)`);
  }
  const cells = new Array<CompareCell>(first.f.total);
  for (const p of parsed) for (const c of p.f.cells) cells[c.index] = c.cell;
  return { profile: first.f.profile, seed: first.f.seed, cells };
}
