/** `svmrt compare`: matrix order, determinism of JSON and HTML, failing cells, escaping, exit codes. */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { main } from "../../runtime/cli.ts";
import type { CliIO } from "../../runtime/cli/command.ts";
import { EXIT } from "../../runtime/cli/exit.ts";
import { COMPARE_PROGRESS_LINES } from "../cli-helpers.ts";
import { RANGE_EVENTS_MAX, runCompareMatrix, summarizeEvents, TIMELINE_BINS } from "../../runtime/sim/compare.ts";
import { loadProfile } from "../../runtime/sim/profile.ts";
import { loadWorkloadFile, workloadAccesses } from "../../runtime/sim/workload.ts";
import { escapeXml } from "../../runtime/sim/report.ts";

async function run(argv: string[], interactive = false): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  const io: CliIO = { out: (t) => (out += t), err: (t) => (err += t), interactive };
  const code = await main(argv, io);
  // Without a terminal a long comparison prints a line every few seconds: wall time decides how many.
  return { code, out, err: interactive ? err : err.replace(COMPARE_PROGRESS_LINES, "") };
}

const ROOT = resolve(import.meta.dir, "..", "..");
const PLUGINS = join(ROOT, "plugins", "migration");
const dir = mkdtempSync(join(tmpdir(), "svmrt-compare-test-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A small workload: one GPU stream over `mib` MiB, so each cell runs in well under a second. */
function workload(name: string, mib: number, agent = "gpu0"): string {
  const f = join(dir, `${name}.yaml`);
  writeFileSync(
    f,
    `kind: Workload
name: ${name}
allocations:
  - { name: a, size: ${mib}MiB, register: true }
streams:
  - agent: ${agent}
    ops:
      - access: { alloc: a, offset: 0, size: ${mib}MiB, pattern: seq, write: 0.5 }
`,
  );
  return f;
}

function policy(folder: string, name: string, plugin: string, extra = ""): string {
  mkdirSync(folder, { recursive: true });
  const f = join(folder, `${name}.yaml`);
  writeFileSync(f, `apiVersion: svmrt/v1\nkind: MigrationPolicy\nmetadata:\n  name: ${name}\nspec:\n  plugin: ${plugin}\n${extra}`);
  return f;
}

const wA = workload("tiny-a", 8);
const wB = workload("tiny-b", 4);
// A folder whose name needs escaping in HTML: policy names cannot hold '<', paths can.
const oddDir = join(dir, "a&b<c>'q\"");
const pKernel = policy(oddDir, "k-default", join(PLUGINS, "kernel-default.js"));
const pXgmi = policy(oddDir, "xgmi", join(PLUGINS, "xgmi-aware.js"));
const boomDir = join(dir, "boom");
mkdirSync(boomDir, { recursive: true });
writeFileSync(join(boomDir, "boom.js"), 'export function restoreLocation(f, ctx) { throw new Error("boom"); }\n');
const pBoom = policy(boomDir, "boom", "./boom.js", "  onFailure: fail-closed\n");

describe("svmrt compare", () => {
  test("cells ordered by (workload, policy); JSON and HTML byte-identical across runs", async () => {
    const html1 = join(dir, "r1.html");
    const html2 = join(dir, "r2.html");
    const args = ["compare", "--workloads", `${wA},${wB}`, "--policies", oddDir, "--json", "--jobs", "2"];
    const a = await run([...args, "--report", html1]);
    const b = await run([...args, "--jobs", "1", "--report", html2]);
    expect(a.err).toBe("");
    expect(a.code).toBe(EXIT.ok);
    expect(b.out).toBe(a.out);
    const j = JSON.parse(a.out);
    expect(j.profile).toBe("dev-2gpu");
    expect(j.seed).toBe(1);
    expect(j.cells.map((c: { workload: string; policy: string }) => `${c.workload}/${c.policy}`)).toEqual([
      `${wA}/k-default`,
      `${wA}/xgmi`,
      `${wB}/k-default`,
      `${wB}/xgmi`,
    ]);
    expect(j.cells[0].result.workload).toBe("tiny-a");
    expect(j.cells[0].result.bytesMigrated.h2d).toBe(8 * 2 ** 20);
    expect(readFileSync(html1, "utf8")).toBe(readFileSync(html2, "utf8"));
  });

  test("the report is self-contained, well-formed enough, titled and escaped", async () => {
    const f = join(dir, "r.html");
    const r = await run(["compare", "--workloads", wA, "--policies", `${pKernel},${pXgmi}`, "--report", f]);
    expect(r.code).toBe(EXIT.ok);
    expect(r.out).toContain("k-default");
    const html = readFileSync(f, "utf8");
    expect(html.startsWith("<!DOCTYPE html>")).toBe(true);
    expect(html).not.toMatch(/<script|<link|src=|href="http/i);
    const opens = html.match(/<svg\b/g)?.length ?? 0;
    expect(opens).toBe(html.match(/<\/svg>/g)?.length ?? -1);
    // Per workload: time, bytes, timeline, and one range life per policy.
    expect(opens).toBe(3 + 2);
    for (const svg of html.match(/<svg\b[\s\S]*?<\/svg>/g)!) {
      expect(svg).toMatch(/^<svg[^>]*role="img"[^>]*><title id="[^"]+">[^<]+<\/title><desc/);
      // Every element opened is closed: count tags of the kinds we draw.
      for (const tag of ["g", "text", "title", "desc", "defs", "marker"]) {
        expect(svg.match(new RegExp(`<${tag}\\b`, "g"))?.length ?? 0).toBe(svg.match(new RegExp(`</${tag}>`, "g"))?.length ?? 0);
      }
    }
    expect(html).toContain(escapeXml(oddDir));
    expect(html).not.toContain(oddDir);
    expect(html).toContain("a&amp;b&lt;c&gt;&#39;q&quot;");
    expect(html).toContain("Life of the range");
    expect(html).toMatch(/gpu 0x[0-9a-f]+/);
    expect(html).toContain("sysmem");
  });

  test("a failing cell is reported with its stderr, the others complete, exit 1", async () => {
    const f = join(dir, "fail.html");
    const r = await run(["compare", "--workloads", wB, "--policies", `${pBoom},${pKernel}`, "--json", "--report", f]);
    expect(r.code).toBe(EXIT.failed);
    const j = JSON.parse(r.out);
    expect(j.cells.length).toBe(2);
    expect(j.cells[0].policy).toBe("boom");
    expect(j.cells[0].result).toBeUndefined();
    expect(j.cells[0].exitCode).toBe(EXIT.policy);
    expect(j.cells[0].error).toContain("boom");
    expect(j.cells[1].result.policy).toBe("k-default");
    expect(r.err).toContain("failed (exit 4)");
    const html = readFileSync(f, "utf8");
    expect(html).toContain("failed (exit 4)");
    expect(html.match(/<svg\b/g)?.length).toBe(html.match(/<\/svg>/g)?.length);
  });

  test("a policy that falls back: the table counts it, the text, JSON and report say why", async () => {
    // fallback (not fail-closed): the cell completes, the kernel deciding for the policy.
    const pFlaky = policy(boomDir, "flaky", "./boom.js");
    const f = join(dir, "flaky.html");
    const j = JSON.parse((await run(["compare", "--workloads", wB, "--policies", `${pFlaky},${pKernel}`, "--json", "--report", f])).out);
    expect(j.cells[0].result.policyFallbacks).toBeGreaterThan(0);
    expect(j.cells[0].result.policyFailures).toEqual([{ hook: "restoreLocation", reason: "exception", records: expect.any(Number), example: expect.stringContaining("boom") }]);
    expect(j.cells[1].result.policyFailures).toBeUndefined();
    expect(readFileSync(f, "utf8")).toMatch(/Policy failures[\s\S]*<b>flaky<\/b>: restoreLocation exception \(\d+ calls\), e\.g\. Error: boom/);
    const text = (await run(["compare", "--workloads", wB, "--policies", `${pFlaky},${pKernel}`])).out;
    expect(text).toMatch(/policy fallbacks\n {2}\S*tiny-b.yaml × flaky: restoreLocation exception \(\d+ calls\), e\.g\. Error: boom/);
  });

  test("cells of larger workloads start first; results keep matrix order", async () => {
    const policies = [{ file: pKernel, name: "k-default" }];
    const started: string[] = [];
    const cells = await runCompareMatrix({
      profile: "dev-2gpu",
      workloads: [wB, wA],
      policies,
      seed: 1,
      jobs: 1,
      weights: [1, 2],
      onCellDone: (_d, _t, c) => started.push(c.workload),
    });
    expect(started).toEqual([wA, wB]);
    expect(cells.map((c) => c.workload)).toEqual([wB, wA]);
    expect(workloadAccesses(loadWorkloadFile(wA, loadProfile("dev-2gpu")))).toBe(2 * workloadAccesses(loadWorkloadFile(wB, loadProfile("dev-2gpu"))));
  });

  test("a progress bar on stderr only when interactive", async () => {
    const args = ["compare", "--workloads", wB, "--policies", `${pKernel},${pXgmi}`];
    const tty = await run(args, true);
    expect(tty.err).toContain("] 2/2 cells\n");
    expect((await run(args)).err).toBe("");
    expect(tty.out).toBe((await run(args)).out);
  });

  test("--range chooses the range the report follows", async () => {
    const f = join(dir, "range.html");
    const r = await run(["compare", "--workloads", wA, "--policies", pKernel, "--range", "0x100400", "--report", f]);
    expect(r.code).toBe(EXIT.ok);
    expect(readFileSync(f, "utf8")).toContain("Pages 0x100400..0x100400");
  });

  test("a first policy that migrates nothing still follows the workload's range", async () => {
    const f = join(dir, "first.html");
    // A policy that maps every fault where the data is: it never migrates.
    const inPlaceDir = join(dir, "in-place");
    mkdirSync(inPlaceDir, { recursive: true });
    writeFileSync(join(inPlaceDir, "in-place.js"), "export function restoreLocation(f) { return f.actualLoc }\n");
    const pInPlace = policy(inPlaceDir, "in-place", "./in-place.js");
    const r = await run(["compare", "--profile", "mi300x-8", "--workloads", "pingpong", "--policies", `${pInPlace},${pKernel}`, "--json", "--report", f]);
    expect(r.code).toBe(EXIT.ok);
    expect(JSON.parse(r.out).cells[0].result.migrations.h2d).toBe(0);
    const html = readFileSync(f, "utf8");
    expect(html.match(/<h4>[^<]*<\/h4>/g)).toEqual(["<h4>in-place</h4>", "<h4>k-default</h4>"]);
    const life = html.slice(html.indexOf("<h4>in-place</h4>"), html.indexOf("<h4>k-default</h4>"));
    expect(life).toContain("fault done @0x100000 (mapping only)");
    expect(life).not.toContain("no event of this range");
  });

  test("--help, usage errors (2), config errors (3)", async () => {
    const h = await run(["compare", "--help"]);
    expect(h.code).toBe(EXIT.ok);
    expect(h.out).toContain("--policies");
    expect((await run(["--help"])).out).toContain("compare");
    for (const argv of [
      ["compare", "--policies", pKernel],
      ["compare", "--workloads", wA],
      ["compare", "--workloads", wA, "--policies", pKernel, "--jobs", "0"],
      ["compare", "--workloads", wA, "--policies", pKernel, "--range", "zz"],
      ["compare", "--workloads", "no-such", "--policies", pKernel],
      ["compare", "--workloads", `${wA},`, "--policies", pKernel],
      ["compare", "--workloads", wA, "--policies", join(dir, "missing")],
      ["compare", "--workloads", wA, "--policies", join(ROOT, "policies", "sampling")],
      ["compare", "--workloads", wA, "--policies", pKernel, "--bogus"],
    ]) {
      expect({ argv, code: (await run(argv)).code }).toEqual({ argv, code: EXIT.usage });
    }
    const bad = join(dir, "bad.yaml");
    writeFileSync(bad, "apiVersion: svmrt/v1\nkind: MigrationPolicy\nmetadata: {}\n");
    const badWl = join(dir, "bad-wl.yaml");
    writeFileSync(badWl, "kind: Workload\nname: x\nallocations: 3\n");
    for (const argv of [
      ["compare", "--workloads", wA, "--policies", bad],
      ["compare", "--workloads", badWl, "--policies", pKernel],
      ["compare", "--workloads", wA, "--policies", join(ROOT, "policies", "sampling", "fixed.yaml")],
      ["compare", "--profile", join(dir, "nope.yaml"), "--workloads", wA, "--policies", pKernel],
    ]) {
      expect({ argv, code: (await run(argv)).code }).toEqual({ argv, code: EXIT.config });
    }
  });
});

describe("summarizeEvents", () => {
  test("bins faults and migrations, follows the first migrated range, keeps a bounded number of events", async () => {
    const f = join(dir, "events.smi");
    const lines = ["c 1092 x"];
    for (let i = 0; i < 200; i++) {
      const ns = i * 1000;
      lines.push(`7 ${ns} -4242 @100000(3fe1) W`, `5 ${ns + 1} -4242 @100000(200) 0->3fe1 ffffffff:ffffffff 1`);
      lines.push(`6 ${ns + 2} -4242 @100000(200) 0->3fe1 1 0`, `8 ${ns + 3} -4242 @100000(3fe1) M`);
      lines.push(`7 ${ns + 4} -4242 @200000(3fe1) R`);
    }
    writeFileSync(f, `${lines.join("\n")}\n`);
    const e = await summarizeEvents(f, 200_000, undefined);
    expect(e.lines).toBe(1 + 200 * 5);
    expect(e.faultsPerBin.length).toBe(TIMELINE_BINS);
    expect(e.faultsPerBin.reduce((a, b) => a + b, 0)).toBe(400);
    expect(e.migrationsPerBin.reduce((a, b) => a + b, 0)).toBe(200);
    expect(e.range).toEqual({ startPage: 0x100000, sizePages: 0x200 });
    expect(e.rangeEvents.length).toBe(RANGE_EVENTS_MAX);
    expect(e.rangeEvents[0]).toMatchObject({ kind: "PAGE_FAULT_START", ns: 0, write: true });
    expect(e.rangeEvents[1]).toMatchObject({ kind: "MIGRATE_START", from: 0, to: 0x3fe1, trigger: 1 });
    expect(e.rangeEventsDropped).toBe(800 - RANGE_EVENTS_MAX);
    expect(e.rangeEvents.every((x) => x.page < 0x100200)).toBe(true);
    const none = await summarizeEvents(f, 200_000, null);
    expect(none.rangeEvents.length).toBe(0);
  });
});

describe("svmrt sim --summary / --find-range (what compare's cells run)", () => {
  test("the in-process summary equals the summary of the written event stream", async () => {
    const f = join(dir, "pp.smi");
    const full = await run(["sim", "--workload", "pingpong", "--json", "--events", f, "--summary", "first"]);
    expect(full.code).toBe(EXIT.ok);
    const r = JSON.parse(full.out);
    const fromFile = await summarizeEvents(f, r.simTimeNs, undefined);
    expect(r.events).toEqual(fromFile);
    expect(r.events.lines).toBe(r.eventLines);
    // Without --events the filter skips most text; the summary is the same.
    const lean = JSON.parse((await run(["sim", "--workload", "pingpong", "--json", "--summary", "first"])).out);
    expect(lean.events).toEqual(fromFile);
    // A given range: only its events.
    const given = JSON.parse((await run(["sim", "--workload", "pingpong", "--json", "--summary", "0x100010:1"])).out);
    expect(given.events.range).toEqual({ startPage: 0x100010, sizePages: 1 });
    expect(given.events.rangeEvents.length).toBeGreaterThan(0);
    expect(given.events.rangeEvents.every((e: { page: number; sizePages: number }) => e.page <= 0x100010 && e.page + e.sizePages > 0x100010)).toBe(true);
    // --find-range stops at the first migration and names the same window.
    const found = await run(["sim", "--workload", "pingpong", "--find-range"]);
    expect(JSON.parse(found.out)).toEqual({ range: fromFile.range });
  });

  test("usage errors", async () => {
    for (const argv of [
      ["sim", "--workload", "stream", "--summary", "first"],
      ["sim", "--workload", "stream", "--json", "--summary", "somewhere"],
      ["sim", "--workload", "stream", "--json", "--summary", "0x10:0"],
      ["sim", "--workload", "stream", "--find-range", "--events", join(dir, "x.smi")],
    ]) {
      expect({ argv, code: (await run(argv)).code }).toEqual({ argv, code: EXIT.usage });
    }
  });
});
