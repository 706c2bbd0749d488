/** Sharded comparisons (runtime/sim/shard.ts): dealing cells, shard files, merging them back. */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { EXIT } from "../../runtime/cli/exit.ts";
import { COMPARE_PROGRESS_LINES, runCli } from "../cli-helpers.ts";
import { ConfigError, UsageError } from "../../runtime/errors.ts";
import type { CompareCell } from "../../runtime/sim/compare.ts";
import { compareFingerprint, SHARDS_MAX, shardCellIndices, shardFileName, shardFilesRead, shardFileText, shardParse, shardsMerge } from "../../runtime/sim/shard.ts";

const dir = mkdtempSync(join(tmpdir(), "svmrt-shard-test-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A failed cell (exit code and stderr): the smallest well-formed one. */
const cell = (i: number): CompareCell => ({ workload: `w${Math.floor(i / 2)}`, policy: `p${i % 2}`, policyFile: `/p/p${i % 2}.yaml`, exitCode: 1, error: `cell ${i} failed` });
/** The shard files of a 5-cell matrix cut in `n`, as {path, text}. */
function shards(n: number, fingerprint = "f1", total = 5) {
  return Array.from({ length: n }, (_, k) => {
    const shard = { index: k + 1, count: n };
    const cells = shardCellIndices(total, shard).map((index) => ({ index, cell: cell(index) }));
    return { path: shardFileName(shard), text: shardFileText({ shard, fingerprint, total, profile: "dev-2gpu", seed: 7, cells }) };
  });
}

describe("shardParse", () => {
  test("K/N within 1..SHARDS_MAX", () => {
    expect(shardParse("1/1")).toEqual({ index: 1, count: 1 });
    expect(shardParse("3/8")).toEqual({ index: 3, count: 8 });
    expect(shardParse(`${SHARDS_MAX}/${SHARDS_MAX}`)).toEqual({ index: SHARDS_MAX, count: SHARDS_MAX });
  });
  test.each(["0/3", "4/3", "1/0", "-1/3", "1/3/4", "a/3", "1.5/3", "", `1/${SHARDS_MAX + 1}`, "1 /3"])("'%s' is refused naming --shard", (v) => {
    expect(() => shardParse(v)).toThrow(UsageError);
    expect(() => shardParse(v)).toThrow(/^--shard: expected K\/N/);
  });
});

describe("dealing cells", () => {
  test("the shards of a matrix hold every cell exactly once, round-robin", () => {
    for (const total of [1, 5, 12, 1024]) {
      for (const n of [1, 2, 3, 7, 13]) {
        const all = Array.from({ length: n }, (_, k) => shardCellIndices(total, { index: k + 1, count: n })).flat();
        expect(all.sort((a, b) => a - b)).toEqual(Array.from({ length: total }, (_, i) => i));
      }
    }
    expect(shardCellIndices(10, { index: 2, count: 3 })).toEqual([1, 4, 7]);
    // More shards than cells: the extra shards are empty.
    expect(shardCellIndices(2, { index: 3, count: 4 })).toEqual([]);
  });
});

describe("compareFingerprint", () => {
  const base = { profile: { name: "dev-2gpu", gpus: [1, 2] }, seed: 1, range: undefined, workloads: [{ arg: "stream", text: "kind: Workload" }], policies: [{ name: "k", revision: "abc" }] };
  test("changes with every input and only with them", () => {
    const f = compareFingerprint(base);
    expect(compareFingerprint({ ...base })).toBe(f);
    expect(compareFingerprint({ ...base, seed: 2 })).not.toBe(f);
    expect(compareFingerprint({ ...base, range: 5 })).not.toBe(f);
    expect(compareFingerprint({ ...base, profile: { name: "dev-2gpu", gpus: [1] } })).not.toBe(f);
    expect(compareFingerprint({ ...base, workloads: [{ arg: "stream", text: "kind: Workload " }] })).not.toBe(f);
    expect(compareFingerprint({ ...base, policies: [{ name: "k", revision: "abd" }] })).not.toBe(f);
    // Argument and text boundaries are not ambiguous.
    expect(compareFingerprint({ ...base, workloads: [{ arg: "a", text: "bc" }] })).not.toBe(compareFingerprint({ ...base, workloads: [{ arg: "ab", text: "c" }] }));
  });
});

describe("shardsMerge", () => {
  test("the shards of a matrix merge back into it, in matrix order, whatever order they come in", () => {
    const files = shards(3).reverse();
    const m = shardsMerge(files);
    expect(m.profile).toBe("dev-2gpu");
    expect(m.seed).toBe(7);
    expect(m.cells).toEqual([0, 1, 2, 3, 4].map(cell));
  });

  test("a missing shard is named with the command that makes it", () => {
    const files = shards(4).filter((_, k) => k !== 1 && k !== 3);
    expect(() => shardsMerge(files)).toThrow("--merge: missing shards 2/4, 4/4 (run svmrt compare ... --shard K/4 --out DIR for each)");
  });

  test("a shard given twice, shards of other inputs or of another count are refused", () => {
    const s = shards(2);
    expect(() => shardsMerge([s[0]!, s[0]!, s[1]!])).toThrow("--merge: shard 1/2 is given twice (shard-1-of-2.json and shard-1-of-2.json)");
    expect(() => shardsMerge([s[0]!, shards(2, "other")[1]!])).toThrow(/are shards of different comparisons/);
    expect(() => shardsMerge([s[0]!, shards(3)[1]!])).toThrow(/is one of 3 shards, shard-1-of-2.json one of 2/);
    expect(() => shardsMerge([])).toThrow("--merge: no shard file given");
  });

  test("damaged or foreign files are refused naming the file", () => {
    const good = shards(2)[0]!;
    const obj = JSON.parse(good.text);
    const bad = (mut: (o: Record<string, unknown>) => void, text?: string) => {
      const o = structuredClone(obj);
      mut(o);
      return { path: "x.json", text: text ?? JSON.stringify(o) };
    };
    expect(() => shardsMerge([{ path: "x.json", text: "{" }])).toThrow(/^x\.json: not a shard file \(unreadable JSON/);
    expect(() => shardsMerge([bad((o) => (o.format = "other/1"))])).toThrow("x.json: not a shard file of this svmrt (expected format 'svmrt-compare-shard/1')");
    expect(() => shardsMerge([bad((o) => (o.total = 0))])).toThrow(/x\.json: damaged shard file: total must be/);
    expect(() => shardsMerge([bad((o) => (o.shard = { index: 3, count: 2 }))])).toThrow(/damaged shard file: shard must be/);
    expect(() => shardsMerge([bad((o) => (o.cells as unknown[]).pop())])).toThrow("x.json: damaged shard file: shard 1/2 of 5 cells must hold cells 0,2,4");
    expect(() => shardsMerge([bad((o) => ((o.cells as { cell: Record<string, unknown> }[])[0]!.cell.workload = 5))])).toThrow(/cell 0 lacks workload/);
    expect(() => shardsMerge([bad((o) => (o.seed = -1))])).toThrow(/damaged shard file: seed/);
    // A key that is not there is named as missing.
    for (const k of ["shard", "fingerprint", "total", "profile", "seed", "cells"]) {
      expect(() => shardsMerge([bad((o) => delete o[k])])).toThrow(`x.json: damaged shard file: ${k} missing`);
    }
    type Cells = { cell: Record<string, unknown> }[];
    // A cell must be a result the table can print or a failure: never "FAILED (exit undefined)" with exit 0.
    expect(() => shardsMerge([bad((o) => ((o.cells as Cells)[0]!.cell.exitCode = undefined))])).toThrow("x.json: damaged shard file: cell 0: neither a result nor a failure (exitCode and error)");
    expect(() => shardsMerge([bad((o) => ((o.cells as Cells)[0]!.cell.result = null))])).toThrow("x.json: damaged shard file: cell 0: result must be an object");
    expect(() => shardsMerge([bad((o) => ((o.cells as Cells)[0]!.cell.result = "x"))])).toThrow("x.json: damaged shard file: cell 0: result must be an object");
    const result = { simTimeNs: 1, gpuFaults: 0, gpuFaultsDropped: 0, evictions: 0, thrashEvents: 0, vramFallbacks: 0, policyFallbacks: 0, bytesMigrated: { h2d: 0, d2h: 0, d2d: 0 } };
    expect(shardsMerge([bad((o) => ((o.cells as Cells)[0]!.cell.result = result)), shards(2)[1]!]).cells[0]!.result).toEqual(result as never);
    expect(() => shardsMerge([bad((o) => ((o.cells as Cells)[0]!.cell.result = { ...result, simTimeNs: "fast" }))])).toThrow("x.json: damaged shard file: cell 0: result.simTimeNs must be a finite number");
    expect(() => shardsMerge([bad((o) => ((o.cells as Cells)[0]!.cell.result = { ...result, bytesMigrated: {} }))])).toThrow("x.json: damaged shard file: cell 0: result.bytesMigrated.h2d must be a finite number");
  });

  test("shards whose headers disagree on the profile or the seed are refused", () => {
    const [a, b] = shards(2);
    const edited = (f: { path: string; text: string }, k: string, v: unknown) => ({ path: f.path, text: JSON.stringify({ ...JSON.parse(f.text), [k]: v }) });
    expect(() => shardsMerge([a!, edited(b!, "seed", 9)])).toThrow("--merge: shard-2-of-2.json says profile dev-2gpu, seed 9; shard-1-of-2.json says profile dev-2gpu, seed 7: a damaged shard file");
    expect(() => shardsMerge([a!, edited(b!, "profile", "mi300x-8")])).toThrow(/says profile mi300x-8, seed 7; .* a damaged shard file/);
  });
});

describe("shardFilesRead", () => {
  test("reads the shard files of a folder in shard order and files named directly; nothing else", () => {
    const d = join(dir, "sweep");
    mkdirSync(d);
    for (const f of shards(11)) writeFileSync(join(d, f.path), f.text);
    writeFileSync(join(d, "report.html"), "<html>");
    const read = shardFilesRead([d]);
    expect(read.map((r) => r.path)).toEqual(Array.from({ length: 11 }, (_, k) => join(d, `shard-${k + 1}-of-11.json`)));
    expect(shardsMerge(read).cells).toHaveLength(5);
    expect(shardFilesRead([join(d, "shard-2-of-11.json")]).map((r) => r.path)).toEqual([join(d, "shard-2-of-11.json")]);
  });
  test("a missing path is an unreadable input naming it and ENOENT; a folder without shards is a usage error", () => {
    expect(() => shardFilesRead([join(dir, "nope")])).toThrow(ConfigError);
    expect(() => shardFilesRead([join(dir, "nope")])).toThrow(`${join(dir, "nope")}:1:1: a readable shard file or folder of shard files (no such file)`);
    const empty = join(dir, "empty");
    mkdirSync(empty);
    expect(() => shardFilesRead([empty])).toThrow(`--merge ${empty}: no shard-K-of-N.json file in it`);
  });
});

/** The CLI in-process; timed progress lines (no terminal) dropped from stderr. */
async function cli(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const r = await runCli(argv);
  return { ...r, err: r.err.replace(COMPARE_PROGRESS_LINES, "") };
}

describe("svmrt compare --shard / --merge", () => {
  /** Small workloads: each cell runs in well under a second. */
  const wl = (name: string, mib: number, agent: string) => {
    const f = join(dir, `${name}.yaml`);
    writeFileSync(f, `kind: Workload\nname: ${name}\nallocations:\n  - { name: a, size: ${mib}MiB }\nstreams:\n  - agent: ${agent}\n    ops:\n      - access: { alloc: a, write: 0.5 }\n`);
    return f;
  };
  const inputs = () => [
    "--workloads",
    [wl("s-a", 8, "gpu0"), wl("s-b", 4, "gpu1"), "pingpong"].join(","),
    "--policies",
    "builtin:policies/migration/kernel-default.yaml,builtin:policies/migration/thrash-guard.yaml",
    "--seed",
    "3",
  ];

  test("three shards merged give the single-machine JSON and report, byte for byte", async () => {
    const sweep = join(dir, "sweep3");
    for (const k of [1, 2, 3]) {
      const r = await cli(["compare", ...inputs(), "--shard", `${k}/3`, "--out", sweep]);
      expect(r.err).toBe("");
      expect(r.out).toBe(`shard ${k}/3: 2 of 6 cells -> ${join(sweep, `shard-${k}-of-3.json`)}\n`);
      expect(r.code).toBe(EXIT.ok);
    }
    expect(readdirSync(sweep).sort()).toEqual(["shard-1-of-3.json", "shard-2-of-3.json", "shard-3-of-3.json"]);
    const single = await cli(["compare", ...inputs(), "--json", "--report", join(dir, "single.html")]);
    expect(single.code).toBe(EXIT.ok);
    const merged = await cli(["compare", "--merge", sweep, "--json", "--report", join(dir, "merged.html")]);
    expect(merged.err).toBe("");
    expect(merged.code).toBe(EXIT.ok);
    expect(merged.out).toBe(single.out);
    expect(JSON.parse(merged.out).cells).toHaveLength(6);
    expect(readFileSync(join(dir, "merged.html"), "utf8")).toBe(readFileSync(join(dir, "single.html"), "utf8"));
    // The table: files named one by one, in any order, give the folder's.
    const table = await cli(["compare", "--merge", join(sweep, "shard-3-of-3.json"), join(sweep, "shard-1-of-3.json"), join(sweep, "shard-2-of-3.json")]);
    expect(table.out).toStartWith("dev-2gpu, seed 3, simulated time (lower is better)\n");
    expect(table.out).toBe((await cli(["compare", "--merge", sweep])).out);
  }, 180_000);

  test("shards of other inputs do not merge", async () => {
    const sweep = join(dir, "sweep-mixed");
    expect((await cli(["compare", ...inputs(), "--shard", "1/2", "--out", sweep])).code).toBe(EXIT.ok);
    const other = inputs();
    other[other.indexOf("--seed") + 1] = "4";
    expect((await cli(["compare", ...other, "--shard", "2/2", "--out", sweep])).code).toBe(EXIT.ok);
    const r = await cli(["compare", "--merge", sweep]);
    expect(r.code).toBe(EXIT.usage);
    expect(r.err).toContain("are shards of different comparisons");
  }, 120_000);

  test("flags that do not go together are usage errors", async () => {
    const cases: [string[], string][] = [
      [["compare", ...inputs(), "--shard", "1/2"], "--shard K/N and --out DIR go together"],
      [["compare", ...inputs(), "--out", dir], "--shard K/N and --out DIR go together"],
      [["compare", ...inputs(), "--shard", "1/2", "--out", dir, "--json"], "--json and --report need every cell"],
      [["compare", ...inputs(), "--shard", "3/2", "--out", dir], "--shard: expected K/N"],
      [["compare", "--merge", dir, "--seed", "1"], "--merge takes the inputs from the shard files: --seed does not go with it"],
    ];
    for (const [argv, msg] of cases) {
      const r = await cli(argv);
      expect(r.code).toBe(EXIT.usage);
      expect(r.err).toContain(msg);
    }
  });
});

describe("hostile: svmrt compare --shard / --merge", () => {
  const KERNEL_DEFAULT = "builtin:policies/migration/kernel-default.yaml";
  const HELP_LINE = "Run 'svmrt compare --help' for usage.\n";

  test("a shard file without its cells is named as damaged, saying cells is missing", async () => {
    const f = join(dir, "no-cells.json");
    const o = JSON.parse(shards(2)[0]!.text);
    delete o.cells;
    writeFileSync(f, JSON.stringify(o));
    const r = await cli(["compare", "--merge", f]);
    expect(r.code).toBe(EXIT.usage);
    expect(r.err).toBe(`svmrt compare: ${f}: damaged shard file: cells missing\n${HELP_LINE}`);
    expect(r.out).toBe("");
  });

  test("--merge of a path that does not exist: exit 3, one line naming the path, as any missing input", async () => {
    const missing = join(dir, "no-such-sweep");
    const r = await cli(["compare", "--merge", missing]);
    expect(r.code).toBe(EXIT.config);
    expect(r.err).toBe(`svmrt compare: ${missing}:1:1: a readable shard file or folder of shard files (no such file)\n`);
    expect(r.out).toBe("");
  });

  test("--out an unwritable folder (/proc): exit 74 before any cell runs, worded as every output's failure", async () => {
    // What the system answers here: root may write in /proc but not create a file there (ENOENT),
    // anyone else may not write in it (EACCES).
    const asRoot = process.getuid?.() === 0;
    const r = await cli(["compare", "--workloads", "stream", "--policies", KERNEL_DEFAULT, "--shard", "1/1", "--out", "/proc"]);
    expect(r.code).toBe(EXIT.io);
    const why = asRoot ? "cannot create: ENOENT \\(temporary file /proc/\\.shard-1-of-1\\.json\\.svmrt-\\d+\\.tmp: no such file or directory\\)" : "cannot write: EACCES \\(folder /proc: permission denied\\)";
    expect(r.err).toMatch(new RegExp(`^svmrt compare: --out /proc/shard-1-of-1\\.json: ${why}\\n$`));
    expect(r.out).toBe("");
  });

  test("a workload file is read once in shard mode: what is checked is what the fingerprint covers", async () => {
    // 2 MB of comments: reading it twice shows in the process's read bytes (Linux /proc/self/io).
    const big = join(dir, "big.yaml");
    const padding = `# ${"x".repeat(98)}\n`.repeat(20_000);
    writeFileSync(big, `${padding}kind: Workload\nname: big\nallocations:\n  - { name: a, size: 4MiB }\nstreams:\n  - agent: gpu0\n    ops:\n      - access: { alloc: a }\n`);
    const size = statSync(big).size;
    const none = join(dir, "no-policies");
    mkdirSync(none);
    const readBytes = (): number => Number(/^rchar: (\d+)$/m.exec(readFileSync("/proc/self/io", "utf8"))![1]);
    const before = readBytes();
    // No policy found: the command stops after reading the workloads, before any cell (child) runs.
    const r = await cli(["compare", "--workloads", big, "--policies", none, "--shard", "1/2", "--out", join(dir, "never")]);
    const read = readBytes() - before;
    expect(r.code).toBe(EXIT.usage);
    expect(r.err).toBe(`svmrt compare: --policies ${none}: no MigrationPolicy file found\n${HELP_LINE}`);
    expect(read).toBeGreaterThanOrEqual(size);
    expect(read).toBeLessThan(1.5 * size);
  });

  test.each(["-1/2", "0/2", "3/2", "1/0", "a/b", "1/2/3", "-1"])("--shard %s: one line naming --shard, K/N and its bound, and the value", async (v) => {
    const r = await cli(["compare", "--workloads", "stream", "--policies", KERNEL_DEFAULT, "--shard", v, "--out", join(dir, "never")]);
    expect(r.code).toBe(EXIT.usage);
    expect(r.err).toBe(`svmrt compare: --shard: expected K/N with 1 <= K <= N <= ${SHARDS_MAX} (SHARDS_MAX), e.g. 2/8, got '${v}'\n${HELP_LINE}`);
  });
});
