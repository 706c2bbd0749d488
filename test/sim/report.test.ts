/**
 * The HTML report of `svmrt compare` (runtime/sim/report.ts), rendered from cells that real
 * comparisons produce (runCompareMatrix on small workloads: a failing policy, a CPU-only
 * workload without migration, a range without events) and from variants of them (identical
 * cells, a cell without event summary, a cell not run, a zero simulated time): equal
 * timelines stay distinguishable, no sentence misses its number, every header of a
 * headline table links to its definition, the page is self-contained and deterministic.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { type CompareCell, RANGE_EVENTS_MAX, runCompareMatrix, TIMELINE_BINS } from "../../runtime/sim/compare.ts";
import { definitionAnchor, REPORT_COLUMNS, renderReport } from "../../runtime/sim/report.ts";

const ROOT = resolve(import.meta.dir, "..", "..");
const PLUGINS = join(ROOT, "plugins", "migration");
const dir = mkdtempSync(join(tmpdir(), "svmrt-report-test-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Time for the comparisons the cells come from (child processes on a shared machine), ms. */
const MATRIX_TIMEOUT_ms = 120_000;

/** A small workload: one stream on `agent` over `mib` MiB. */
function workload(name: string, mib: number, agent: string): string {
  const f = join(dir, `${name}.yaml`);
  writeFileSync(
    f,
    `kind: Workload\nname: ${name}\nallocations:\n  - { name: a, size: ${mib}MiB, register: true }\nstreams:\n  - agent: ${agent}\n    ops:\n      - access: { alloc: a, offset: 0, size: ${mib}MiB, pattern: seq, write: 0.5 }\n`,
  );
  return f;
}

function policy(name: string, plugin: string, extra = ""): { file: string; name: string } {
  const folder = join(dir, "policies");
  mkdirSync(folder, { recursive: true });
  const file = join(folder, `${name}.yaml`);
  writeFileSync(file, `apiVersion: svmrt/v1\nkind: MigrationPolicy\nmetadata:\n  name: ${name}\nspec:\n  plugin: ${plugin}\n${extra}`);
  return { file, name };
}

const wGpu = workload("tiny-gpu", 8, "gpu0");
// CPU accesses only: no GPU fault, no migration, so no range to follow.
const wCpu = workload("tiny-cpu", 4, "cpu");
mkdirSync(join(dir, "policies"), { recursive: true });
writeFileSync(join(dir, "policies", "boom.js"), 'export function restoreLocation(f, ctx) { throw new Error("boom"); }\n');
const pKernel = policy("k-default", join(PLUGINS, "kernel-default.js"));
const pXgmi = policy("xgmi", join(PLUGINS, "xgmi-aware.js"));
const pBoom = policy("boom", "./boom.js", "  onFailure: fail-closed\n");

// The comparisons run once, in parallel with the module's other set-up; each test awaits them.
const matrix = runCompareMatrix({ profile: "dev-2gpu", workloads: [wGpu, wCpu], policies: [pKernel, pXgmi, pBoom], seed: 1, jobs: 2 });
// A range no access touches: its cells follow it and see no event of it.
const quietRange = runCompareMatrix({ profile: "dev-2gpu", workloads: [wGpu], policies: [pKernel], seed: 1, jobs: 1, range: 0x1 });

function cellOf(cells: CompareCell[], workload: string, name: string): CompareCell {
  const c = cells.find((x) => x.workload === workload && x.policy === name);
  if (c === undefined) throw new Error(`no cell ${workload} × ${name}`);
  return structuredClone(c);
}

/** A copy of `c` under another policy name and file: the same results. */
function twin(c: CompareCell, name: string): CompareCell {
  const t = structuredClone(c);
  t.policy = name;
  t.policyFile = join(dir, "policies", `${name}.yaml`);
  if (t.result) t.result.policy = name;
  return t;
}

/** Every render case, each a set of cells a report may be given. */
async function renderCases(): Promise<{ name: string; cells: CompareCell[] }[]> {
  const cells = await matrix;
  const quiet = await quietRange;
  const k = cellOf(cells, wGpu, "k-default");
  const noEvents = twin(k, "no-summary");
  delete noEvents.events;
  const notRun: CompareCell = { workload: wGpu, policy: "idle", policyFile: join(dir, "policies", "idle.yaml") };
  const silentFail: CompareCell = { workload: wGpu, policy: "mute", policyFile: join(dir, "policies", "mute.yaml"), exitCode: 9 };
  const instant = twin(k, "instant");
  instant.result!.simTimeNs = 0;
  const partial = twin(k, "partial");
  delete (partial.result as Partial<NonNullable<CompareCell["result"]>>).thrashEvents;
  return [
    { name: "the compare matrix (a failed cell, a workload without migration)", cells },
    { name: "a range without events", cells: quiet },
    { name: "all cells identical", cells: [k, twin(k, "twin-1"), twin(k, "twin-2")] },
    { name: "odd cells: no summary, not run, failed without stderr, 0 ns, a missing field", cells: [k, noEvents, notRun, silentFail, instant, partial] },
    { name: "only failed cells", cells: [cellOf(cells, wGpu, "boom"), notRun] },
    { name: "no cell", cells: [] },
  ];
}

function render(cells: CompareCell[]): string {
  return renderReport({ profile: "dev-2gpu", seed: 1, cells });
}

/** The page's text nodes (SVG text too), user strings (paths) replaced by a placeholder. */
function textNodes(html: string, cells: CompareCell[]): string[] {
  let h = html.replace(/<style>[\s\S]*?<\/style>/, "").replace(/<pre>[\s\S]*?<\/pre>/g, "");
  for (const c of cells) h = h.split(c.policyFile).join("FILE").split(c.workload).join("WORKLOAD");
  return h
    .split(/<[^>]*>/)
    .map((t) => t.replace(/&amp;/g, "&").replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&quot;/g, '"').replace(/&#39;/g, "'").trim())
    .filter((t) => t.length > 0);
}

/** Sentences (and labels) with a hole where a value was missing. */
const HOLES: RegExp[] = [
  /\b(undefined|NaN|null|Infinity)\b/,
  /\S {2,}\S/, // an empty value between two words
  /\(\s*\)/, // an empty parenthesis
  / [,.;:)]/, // a value missing before punctuation ("exit )")
  /\b(the first|at most|exit|over|ends at|bin =)\s*$/, // a sentence ending on a missing value
  /\b(first|most) events\b/, // "at most the first events"
];

describe("renderReport", () => {
  test(
    "no sentence misses its number, no undefined/NaN/null, in any render case",
    async () => {
      const cases = await renderCases();
      for (const { name, cells } of cases) {
        const html = render(cells);
        const nodes = textNodes(html, cells);
        const holes = nodes.filter((t) => HOLES.some((re) => re.test(t))).map((t) => `${name}: ${t}`);
        expect(holes).toEqual([]);
        // Every table cell says something: a value, n/a, or why the cell has none.
        expect(html).not.toMatch(/<td[^>]*><\/td>/);
        expect(html).not.toMatch(/\b(undefined|NaN|Infinity)\b/);
      }
    },
    MATRIX_TIMEOUT_ms,
  );

  test(
    "the range note states how many events a diagram keeps; missing values say n/a or why",
    async () => {
      const cells = await matrix;
      const html = render(cells);
      expect(html).toContain(`at most the first ${RANGE_EVENTS_MAX} events of its policy`);
      expect(html).toContain(`${TIMELINE_BINS} bins`);
      // The failing policy: its exit code and stderr; the CPU-only workload: no range to follow.
      expect(html).toMatch(/boom\.yaml: failed \(exit 4\):<\/p>\n<pre>[\s\S]*boom/);
      expect(html).toContain("No migration in this workload: no range to follow.");
      const quiet = render(await quietRange);
      expect(quiet).toContain("1 workload × 1 policy.");
      expect(quiet).toContain("Pages 0x1..0x1 (1 page of 4 KiB)");
      expect(quiet).toContain("no event of this range in this run");
      const odd = (await renderCases()).find((c) => c.name.startsWith("odd"))!;
      const oddHtml = render(odd.cells);
      expect(oddHtml).toContain("<td>instant</td><td>0 ns</td><td>1.00×</td>");
      expect(oddHtml).toMatch(/<td>k-default<\/td><td>[^<]+<\/td><td>n\/a<\/td>/);
      expect(oddHtml).toMatch(/<td>partial<\/td>(<td>[^<]+<\/td>){8}<td>n\/a<\/td>/);
      expect(oddHtml).toContain("idle.yaml: not run.</p>");
      expect(oddHtml).toContain("mute.yaml: failed (exit 9), without error output.</p>");
      expect(oddHtml).toContain("Without an event timeline (its cell carries no event summary): no-summary.");
      expect(render([]).includes("0 workloads × 0 policies.")).toBe(true);
    },
    MATRIX_TIMEOUT_ms,
  );

  test(
    "two cells with identical results: both timelines drawn, distinguishable, and the report says they are equal",
    async () => {
      const k = cellOf(await matrix, wGpu, "k-default");
      // Make the two series of a panel coincide too: every fault migrating.
      k.events!.migrationsPerBin = k.events!.faultsPerBin.slice();
      const html = render([k, twin(k, "twin")]);
      const svg = html.match(/<svg\b[^>]*aria-labelledby="w0-timeline-t[\s\S]*?<\/svg>/)![0];
      const panels = svg.match(/<g><title>[\s\S]*?<\/g>/g)!;
      expect(panels.length).toBe(2);
      const styles = panels.map((p) =>
        [...p.matchAll(/<polyline points="([^"]+)"[^>]*?(?: stroke-dasharray="([^"]+)")? marker-start="url\(#([^)]+)\)"/g)].map((m) => ({ points: m[1]!, dash: m[2] ?? "", marker: m[3]! })),
      );
      for (const lines of styles) {
        expect(lines.length).toBe(2);
        // The faults line and the migrations line: equal points, different dash and marker.
        expect(lines[0]!.points).toBe(lines[1]!.points);
        expect(lines[0]!.dash).not.toBe(lines[1]!.dash);
        expect(lines[0]!.marker).not.toBe(lines[1]!.marker);
        expect(svg).toContain(`<marker id="${lines[0]!.marker}"`);
        expect(svg).toContain(`<marker id="${lines[1]!.marker}"`);
      }
      // Each policy has its own panel: the twin's lines are not drawn over k-default's.
      expect(styles[0]![0]!.points).not.toBe(styles[1]![0]!.points);
      expect(panels[0]).toContain("migrations = faults in every bin");
      expect(panels[0]).not.toContain("same timeline as");
      expect(panels[1]).toContain("same timeline as k-default; migrations = faults in every bin");
      expect(html).toContain("Identical in every field of the result: <b>twin</b> gives the same results as <b>k-default</b>.");
      // The legend draws each series with its dash and marker.
      expect(svg.match(/<polyline /g)!.length).toBe(2 + 2 * 2);
    },
    MATRIX_TIMEOUT_ms,
  );

  test(
    "every header of a headline table links to a definition on the page, each defined once",
    async () => {
      const cells = await matrix;
      const html = render(cells);
      const ids = [...html.matchAll(/\sid="([^"]+)"/g)].map((m) => m[1]!);
      expect(new Set(ids).size).toBe(ids.length);
      const heads = [...html.matchAll(/<table><thead><tr>([\s\S]*?)<\/tr><\/thead>/g)].map((m) => m[1]!);
      // Two workloads' headline tables, then the definitions table.
      expect(heads.length).toBe(3);
      for (const head of heads.slice(0, 2)) {
        const ths = head.match(/<th>[\s\S]*?<\/th>/g)!;
        expect(ths.length).toBe(REPORT_COLUMNS.length);
        ths.forEach((th, i) => {
          const m = /^<th><a href="#([^"]+)">([^<]+)<\/a><\/th>$/.exec(th)!;
          expect(m[1]).toBe(definitionAnchor(REPORT_COLUMNS[i]!));
          expect(ids).toContain(m[1]!);
        });
      }
      // Each definition names real result fields, a unit, and says something.
      const result = cells.find((c) => c.result)!.result!;
      for (const col of REPORT_COLUMNS) {
        // Every field the column reads is a number of a real result.
        for (const f of col.fields) expect(typeof f.split(".").reduce((o: unknown, k) => (o as Record<string, unknown>)[k], result)).toBe(col.id === "policy" ? "string" : "number");
        expect(col.unit.length).toBeGreaterThan(0);
        expect(col.definition.length).toBeGreaterThan(60);
        const row = html.match(new RegExp(`<tr id="${definitionAnchor(col)}">[\\s\\S]*?</tr>`))![0];
        for (const f of col.fields) expect(row).toContain(f);
      }
      expect(new Set(REPORT_COLUMNS.map((c) => c.id)).size).toBe(REPORT_COLUMNS.length);
    },
    MATRIX_TIMEOUT_ms,
  );

  test(
    "self-contained and byte-deterministic in every render case",
    async () => {
      for (const { cells } of await renderCases()) {
        const html = render(cells);
        expect(render(structuredClone(cells))).toBe(html);
        expect(html).not.toMatch(/<script|<link|<img|<iframe|<object|src=|@import/i);
        // Links and references stay inside the page.
        const refs = [...html.matchAll(/href="([^"]*)"|url\(([^)]*)\)/g)].map((m) => m[1] ?? m[2]!);
        expect(refs).toContain("#definitions");
        expect(refs.filter((r) => !r.startsWith("#"))).toEqual([]);
        expect(html.match(/<svg\b/g)?.length ?? 0).toBe(html.match(/<\/svg>/g)?.length ?? 0);
      }
    },
    MATRIX_TIMEOUT_ms,
  );
});
