/**
 * The HTML report of `svmrt compare`: one self-contained file (inline CSS, inline SVG drawn
 * here, no script, no external asset). Per workload: a headline table whose every column
 * header links to its definition (REPORT_COLUMNS, rendered once at the end of the page),
 * simulated time per policy, bytes moved per policy and direction, faults and migrations
 * over simulated time, and the life of one range as a sequence diagram. Every user string
 * (policy names, file paths, workload names) is escaped; every sentence built from a value
 * that may be absent is either complete or left out; the output is a pure function of the
 * cells, so equal inputs give equal bytes.
 */
import { failureText } from "../policy/decision-log.ts";
import { DUPLICATE_FAULT_WINDOW_NS, PAGE_BYTES } from "../svm/constants.ts";
import { type CellEvents, type CompareCell, RANGE_EVENTS_MAX, type RangeEvent, TIMELINE_BINS } from "./compare.ts";
import { COST_PARAMS } from "./cost.ts";
import type { SimResult } from "./engine.ts";

/** Escape text for HTML and SVG content and attribute values. */
export function escapeXml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);
}

const COLORS = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#b07aa1", "#edc948", "#9c755f", "#ff9da7", "#bab0ac"];
const DIR_COLORS = { h2d: "#4e79a7", d2h: "#f28e2b", d2d: "#59a14f" } as const;
const TRIGGERS = ["prefetch", "gpu fault", "cpu fault", "eviction"];
const UNMAP_TRIGGERS = ["mmu notify", "mmu notify migrate", "unmap from cpu"];

const FONT = 12;
const LABEL_W = 190;

/** A number with at most 3 significant decimals, stable across platforms. */
function fmt(v: number): string {
  if (v === 0) return "0";
  const a = Math.abs(v);
  if (a >= 100) return v.toFixed(0);
  if (a >= 10) return v.toFixed(1);
  return v.toFixed(a >= 1 ? 2 : 3);
}

/** Time in the largest unit that keeps the number ≥ 1. */
export function fmtNs(ns: number): string {
  if (ns >= 1e9) return `${fmt(ns / 1e9)} s`;
  if (ns >= 1e6) return `${fmt(ns / 1e6)} ms`;
  if (ns >= 1e3) return `${fmt(ns / 1e3)} µs`;
  return `${fmt(ns)} ns`;
}

export function fmtBytes(b: number): string {
  if (b >= 2 ** 30) return `${fmt(b / 2 ** 30)} GiB`;
  if (b >= 2 ** 20) return `${fmt(b / 2 ** 20)} MiB`;
  if (b >= 2 ** 10) return `${fmt(b / 2 ** 10)} KiB`;
  return `${b} B`;
}

const TIME_UNITS: [number, string][] = [
  [1e9, "s"],
  [1e6, "ms"],
  [1e3, "µs"],
  [1, "ns"],
];
const BYTE_UNITS: [number, string][] = [
  [2 ** 30, "GiB"],
  [2 ** 20, "MiB"],
  [2 ** 10, "KiB"],
  [1, "B"],
];

/** Ticks for an axis from 0 to max, nice in the unit max is best shown in, and their labels. */
function axis(max: number, units: [number, string][], count = 5): { ticks: number[]; label: (v: number) => string } {
  const [unit, name] = units.find(([u]) => max >= u) ?? units.at(-1)!;
  const tk = ticks(max, count, unit);
  return { ticks: tk, label: (v) => (v === 0 ? "0" : `${Number((v / unit).toPrecision(6))} ${name}`) };
}

/** "Nice" axis ticks from 0 to at least max; `unit` > 1 makes them nice in that unit. */
function ticks(max: number, count = 5, unit = 1): number[] {
  if (max <= 0) return [0, unit];
  if (unit > 1) return ticks(max / unit, count).map((t) => t * unit);
  const raw = max / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw)!;
  const out: number[] = [];
  for (let v = 0; v < max + step * 0.999; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

/** A location by gpu_id (0: system memory). */
function location(gpuId: number | undefined): string {
  if (gpuId === undefined) return "a location not reported";
  return gpuId === 0 ? "sysmem" : `gpu 0x${gpuId.toString(16)}`;
}

/** Label of a policy in charts: its name, plus its file when two cells share a name. */
function labelsOf(cells: CompareCell[]): string[] {
  const names = cells.map((c) => c.policy);
  return cells.map((c) => (names.filter((n) => n === c.policy).length > 1 ? `${c.policy} (${c.policyFile})` : c.policy));
}

function svgOpen(w: number, h: number, title: string, desc: string, id: string): string {
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" viewBox="0 0 ${w} ${h}" role="img" aria-labelledby="${id}-t ${id}-d" font-family="sans-serif" font-size="${FONT}"><title id="${id}-t">${escapeXml(title)}</title><desc id="${id}-d">${escapeXml(desc)}</desc>`;
}

function text(x: number, y: number, s: string, attrs = ""): string {
  return `<text x="${fmtC(x)}" y="${fmtC(y)}"${attrs ? ` ${attrs}` : ""}>${escapeXml(s)}</text>`;
}

/** Coordinates with one decimal: compact and byte-stable. */
function fmtC(v: number): string {
  return (Math.round(v * 10) / 10).toString();
}

/** Left-truncate a label to n characters (policy names and paths can be long). */
function clip(s: string, n: number): string {
  return s.length <= n ? s : `…${s.slice(s.length - n + 1)}`;
}

/** Horizontal bars: one per policy, with an x axis in `unit`; `missing[i]` says why value i is null. */
function barChart(
  id: string,
  title: string,
  labels: string[],
  values: (number | null)[],
  missing: string[],
  fmtValue: (v: number) => string,
  units: [number, string][],
  axisTitle: string,
): string {
  const plotW = 560;
  const barH = 20;
  const gap = 8;
  const top = 10;
  const h = top + labels.length * (barH + gap) + 50;
  const w = LABEL_W + plotW + 110;
  const max = Math.max(0, ...values.map((v) => v ?? 0));
  const ax = axis(max, units);
  const tk = ax.ticks;
  const scale = plotW / tk.at(-1)!;
  const desc = labels.map((l, i) => `${l}: ${values[i] === null ? missing[i]! : fmtValue(values[i]!)}`).join("; ");
  let s = svgOpen(w, h, title, desc, id);
  const axisY = top + labels.length * (barH + gap);
  for (const t of tk) {
    const x = LABEL_W + t * scale;
    s += `<line x1="${fmtC(x)}" y1="${top}" x2="${fmtC(x)}" y2="${axisY}" stroke="#ddd"/>`;
    s += text(x, axisY + 15, ax.label(t), 'text-anchor="middle" fill="#444"');
  }
  s += `<line x1="${LABEL_W}" y1="${axisY}" x2="${LABEL_W + plotW}" y2="${axisY}" stroke="#333"/>`;
  s += text(LABEL_W + plotW / 2, axisY + 35, axisTitle, 'text-anchor="middle" font-weight="bold"');
  labels.forEach((l, i) => {
    const y = top + i * (barH + gap);
    s += `<g><title>${escapeXml(`${l}: ${values[i] === null ? missing[i]! : fmtValue(values[i]!)}`)}</title>`;
    s += text(LABEL_W - 6, y + barH / 2 + 4, clip(l, 28), 'text-anchor="end"');
    const v = values[i];
    if (v === null || v === undefined) s += text(LABEL_W + 4, y + barH / 2 + 4, missing[i]!, 'fill="#c00"');
    else {
      const bw = Math.max(1, v * scale);
      s += `<rect x="${LABEL_W}" y="${y}" width="${fmtC(bw)}" height="${barH}" fill="${COLORS[i % COLORS.length]}"/>`;
      s += text(LABEL_W + bw + 4, y + barH / 2 + 4, fmtValue(v), 'fill="#222"');
    }
    s += "</g>";
  });
  return `${s}</svg>`;
}

/** Grouped horizontal bars: per policy, one bar per direction (h2d, d2h, d2d). */
function bytesChart(id: string, title: string, labels: string[], cells: CompareCell[]): string {
  const dirs = ["h2d", "d2h", "d2d"] as const;
  const plotW = 560;
  const barH = 13;
  const groupGap = 12;
  const top = 30;
  const groupH = dirs.length * barH + groupGap;
  const axisY = top + labels.length * groupH;
  const h = axisY + 50;
  const w = LABEL_W + plotW + 110;
  const max = Math.max(0, ...cells.flatMap((c) => dirs.map((d) => c.result?.bytesMigrated?.[d] ?? 0)));
  const ax = axis(max, BYTE_UNITS);
  const tk = ax.ticks;
  const scale = plotW / tk.at(-1)!;
  const desc = cells
    .map((c, i) => `${labels[i]}: ${c.result ? dirs.map((d) => `${d} ${bytesOf(c.result!, d)}`).join(", ") : failedText(c)}`)
    .join("; ");
  let s = svgOpen(w, h, title, desc, id);
  dirs.forEach((d, k) => {
    const x = LABEL_W + k * 90;
    s += `<rect x="${x}" y="6" width="12" height="12" fill="${DIR_COLORS[d]}"/>`;
    s += text(x + 16, 16, d);
  });
  for (const t of tk) {
    const x = LABEL_W + t * scale;
    s += `<line x1="${fmtC(x)}" y1="${top}" x2="${fmtC(x)}" y2="${axisY}" stroke="#ddd"/>`;
    s += text(x, axisY + 15, ax.label(t), 'text-anchor="middle" fill="#444"');
  }
  s += `<line x1="${LABEL_W}" y1="${axisY}" x2="${LABEL_W + plotW}" y2="${axisY}" stroke="#333"/>`;
  s += text(LABEL_W + plotW / 2, axisY + 35, "bytes migrated (binary units)", 'text-anchor="middle" font-weight="bold"');
  cells.forEach((c, i) => {
    const y0 = top + i * groupH;
    s += text(LABEL_W - 6, y0 + (dirs.length * barH) / 2 + 4, clip(labels[i]!, 28), 'text-anchor="end"');
    if (!c.result) {
      s += text(LABEL_W + 4, y0 + 14, failedText(c), 'fill="#c00"');
      return;
    }
    dirs.forEach((d, k) => {
      const v = c.result!.bytesMigrated?.[d] ?? 0;
      const y = y0 + k * barH;
      s += `<g><title>${escapeXml(`${labels[i]} ${d}: ${fmtBytes(v)}`)}</title>`;
      s += `<rect x="${LABEL_W}" y="${y}" width="${fmtC(Math.max(v > 0 ? 1 : 0, v * scale))}" height="${barH - 1}" fill="${DIR_COLORS[d]}"/>`;
      s += text(LABEL_W + v * scale + 4, y + barH - 3, fmtBytes(v), 'font-size="10" fill="#222"');
      s += "</g>";
    });
  });
  return `${s}</svg>`;
}

/**
 * The two series of a timeline panel. Where they coincide (every fault migrating: as many
 * MIGRATE_START as PAGE_FAULT_START in a bin) one line would hide the other, so they differ
 * in every way at once: faults are a wide light solid line with round markers, drawn first;
 * migrations a thin dark dashed line with small square markers, drawn on top, inside it.
 */
const TIMELINE_SERIES = [
  { name: "PAGE_FAULT_START per bin", line: "#f2a3a4", width: 4, dash: "", marker: "f", mark: "#e15759" },
  { name: "MIGRATE_START per bin", line: "#1f4e79", width: 1.5, dash: "5 3", marker: "m", mark: "#1f4e79" },
] as const;

/** Markers of the timeline series: a 7 px disc (faults) and a 3.5 px square inside it (migrations). */
function timelineMarkers(id: string): string {
  const [f, m] = TIMELINE_SERIES;
  return (
    `<defs><marker id="${id}-${f.marker}" viewBox="0 0 8 8" refX="4" refY="4" markerWidth="7" markerHeight="7" markerUnits="userSpaceOnUse"><circle cx="4" cy="4" r="4" fill="${f.mark}"/></marker>` +
    `<marker id="${id}-${m.marker}" viewBox="0 0 8 8" refX="4" refY="4" markerWidth="3.5" markerHeight="3.5" markerUnits="userSpaceOnUse"><rect width="8" height="8" fill="${m.mark}"/></marker></defs>`
  );
}

/** A polyline of one timeline series through `pts` ("x,y x,y ..."), with its markers at every point. */
function seriesLine(id: string, k: 0 | 1, pts: string): string {
  const sr = TIMELINE_SERIES[k];
  const mk = `url(#${id}-${sr.marker})`;
  return `<polyline points="${pts}" fill="none" stroke="${sr.line}" stroke-width="${sr.width}"${sr.dash ? ` stroke-dasharray="${sr.dash}"` : ""} marker-start="${mk}" marker-mid="${mk}" marker-end="${mk}"/>`;
}

/** What makes two timeline panels equal: the same span and the same counts in every bin. */
function timelineKey(e: CellEvents, simTimeNs: number): string {
  return `${e.spanNs}/${simTimeNs}/${e.faultsPerBin.join(",")}/${e.migrationsPerBin.join(",")}`;
}

function sameCounts(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

/**
 * Small multiples: one panel per policy, faults and migrations per time bin as two lines.
 * One panel per policy rather than one chart with a line per policy: each panel spans its
 * own cell's simulated time, so a fast policy next to a slow one keeps its shape, and two
 * policies with the same timeline (a heuristic that never acts) still get a line each,
 * where an overlay would draw one over the other. A panel equal to an earlier one says
 * which ("same timeline as X"), and a panel whose two series are equal says that too.
 */
function timelineChart(id: string, title: string, labels: string[], cells: CompareCell[]): string {
  const ok = cells.map((c, i) => ({ c, label: labels[i]! })).filter((x) => x.c.result && x.c.events && x.c.events.faultsPerBin.length > 0);
  const panelW = 400;
  const panelH = 120;
  const padL = 60;
  const padT = 36;
  const padB = 40;
  const cols = 2;
  const cellW = padL + panelW + 30;
  const cellH = padT + panelH + padB;
  const rows = Math.max(1, Math.ceil(ok.length / cols));
  const w = cols * cellW;
  const h = 30 + rows * cellH;
  const keys = ok.map(({ c }) => timelineKey(c.events!, c.result!.simTimeNs));
  const sameAs = keys.map((k, i) => (keys.indexOf(k) < i ? ok[keys.indexOf(k)]!.label : null));
  const desc = ok
    .map(({ c, label }, i) => {
      const e = c.events!;
      const f = e.faultsPerBin.reduce((a, b) => a + b, 0);
      const m = e.migrationsPerBin.reduce((a, b) => a + b, 0);
      const twin = sameAs[i] ?? null;
      const same = twin === null ? "" : `, the same timeline as ${twin}`;
      return `${label}: ${f} fault starts and ${m} migration starts over ${fmtNs(c.result!.simTimeNs)}${same}`;
    })
    .join("; ");
  let s = svgOpen(w, h, title, desc || "no cell of this workload has an event timeline", id);
  s += timelineMarkers(id);
  const legendX = [10, 230];
  TIMELINE_SERIES.forEach((sr, k) => {
    const x = legendX[k]!;
    s += seriesLine(id, k as 0 | 1, `${x},12 ${x + 12},12 ${x + 24},12`);
    s += text(x + 30, 16, sr.name);
  });
  if (ok.length === 0) s += text(10, 50, "No cell of this workload has an event timeline (see the table above).", 'fill="#666"');
  ok.forEach(({ c, label }, i) => {
    const e = c.events as CellEvents;
    const ox = (i % cols) * cellW + padL;
    const oy = 30 + Math.floor(i / cols) * cellH + padT;
    const bins = e.faultsPerBin.length;
    const max = Math.max(1, ...e.faultsPerBin, ...e.migrationsPerBin);
    const tk = ticks(max, 3);
    const ymax = tk.at(-1)!;
    const spanNs = Math.max(1, e.spanNs);
    const xAxis = axis(spanNs, TIME_UNITS, 4);
    const same = sameAs[i] ?? null;
    s += `<g><title>${escapeXml(`${label}: faults and migrations over simulated time${same === null ? "" : `, the same timeline as ${same}`}`)}</title>`;
    s += text(ox, oy - 22, clip(label, 50), 'font-weight="bold"');
    // The second header line says what a reader could not tell from the lines alone.
    const notes: string[] = [];
    if (same !== null) notes.push(`same timeline as ${clip(same, 40)}`);
    if (sameCounts(e.faultsPerBin, e.migrationsPerBin)) notes.push("migrations = faults in every bin");
    if (notes.length > 0) s += text(ox, oy - 7, notes.join("; "), 'fill="#b03030" font-size="11"');
    for (const t of tk) {
      const y = oy + panelH - (t / ymax) * panelH;
      s += `<line x1="${ox}" y1="${fmtC(y)}" x2="${ox + panelW}" y2="${fmtC(y)}" stroke="#eee"/>`;
      s += text(ox - 4, y + 4, String(t), 'text-anchor="end" fill="#444" font-size="10"');
    }
    for (const t of xAxis.ticks) {
      if (t > spanNs) break;
      const x = ox + (t / spanNs) * panelW;
      s += `<line x1="${fmtC(x)}" y1="${oy + panelH}" x2="${fmtC(x)}" y2="${oy + panelH + 4}" stroke="#333"/>`;
      s += text(x, oy + panelH + 15, xAxis.label(t), 'text-anchor="middle" fill="#444" font-size="10"');
    }
    s += text(ox + panelW, oy - 22, `ends at ${fmtNs(c.result!.simTimeNs)}`, 'text-anchor="end" fill="#666" font-size="10"');
    s += `<rect x="${ox}" y="${oy}" width="${panelW}" height="${panelH}" fill="none" stroke="#333"/>`;
    s += text(ox + panelW / 2, oy + panelH + 30, `simulated time (bin = ${fmtNs(spanNs / bins)})`, 'text-anchor="middle" font-size="10"');
    s += text(ox - 40, oy + panelH / 2, "events", `text-anchor="middle" font-size="10" transform="rotate(-90 ${ox - 40} ${oy + panelH / 2})"`);
    // Bins after the cell's end are empty by construction: stop the lines there.
    const used = Math.max(1, Math.min(bins, Math.ceil(((c.result!.simTimeNs + 1) * bins) / (spanNs + 1))));
    const points = (vals: number[]): string =>
      vals
        .slice(0, used)
        .map((v, k) => `${fmtC(ox + ((k + 0.5) / bins) * panelW)},${fmtC(oy + panelH - (v / ymax) * panelH)}`)
        .join(" ");
    s += seriesLine(id, 0, points(e.faultsPerBin));
    s += seriesLine(id, 1, points(e.migrationsPerBin));
    s += "</g>";
  });
  return `${s}</svg>`;
}

/** A trigger's name from `names`; its number when unnamed. */
function triggerName(names: readonly string[], t: number | undefined): string {
  if (t === undefined) return "trigger not reported";
  return names[t] ?? `trigger ${t}`;
}

function describeEvent(e: RangeEvent): string {
  const at = `@0x${e.page.toString(16)}`;
  switch (e.kind) {
    case "PAGE_FAULT_START":
      return `fault ${e.write ? "W" : "R"} ${at} by ${location(e.node)}`;
    case "PAGE_FAULT_END":
      return `fault done ${at} (${e.migrated ? "migrated" : "mapping only"})`;
    case "MIGRATE_START":
      return `migrate ${location(e.from)}→${location(e.to)} ${e.sizePages} ${e.sizePages === 1 ? "page" : "pages"}, ${triggerName(TRIGGERS, e.trigger)}`;
    case "MIGRATE_END":
      return `migrated ${location(e.from)}→${location(e.to)}, ${triggerName(TRIGGERS, e.trigger)}`;
    case "UNMAP_FROM_GPU":
      return `unmap ${e.sizePages} ${e.sizePages === 1 ? "page" : "pages"} from ${location(e.node)}, ${triggerName(UNMAP_TRIGGERS, e.trigger)}`;
  }
}

/** Width of a range-life chart the lanes aim to stay within, px (the page is 1400 px wide). */
const LIFE_CHART_PX_MAX = 1340;
/** Width of one location's lane in a range-life chart, px: widest, and narrowest still holding its label. */
const LIFE_LANE_PX_MAX = 130;
const LIFE_LANE_PX_MIN = 84;

/** A sequence diagram: lifelines per location, time downwards, one row per event. */
function rangeLifeChart(id: string, label: string, c: CompareCell): string {
  const e = c.events!;
  const evs = e.rangeEvents;
  const locs: number[] = [0];
  for (const ev of evs) {
    for (const g of [ev.from, ev.to, ev.node]) if (g !== undefined && !locs.includes(g)) locs.push(g);
  }
  locs.sort((a, b) => a - b);
  const timeW = 110;
  const descW = 360;
  // Lanes narrow (down to LIFE_LANE_PX_MIN) so that a hive of 8 GPUs fits the page width.
  const laneW = Math.max(LIFE_LANE_PX_MIN, Math.min(LIFE_LANE_PX_MAX, Math.floor((LIFE_CHART_PX_MAX - timeW - descW) / locs.length)));
  const rowH = 20;
  const top = 50;
  const w = timeW + locs.length * laneW + descW;
  const h = top + Math.max(1, evs.length) * rowH + 30;
  const xOf = (g: number): number => timeW + locs.indexOf(g) * laneW + laneW / 2;
  const r = e.range!;
  const desc = `${plural(evs.length, "event", "events")} of pages 0x${r.startPage.toString(16)}..0x${(r.startPage + r.sizePages - 1).toString(16)}${e.rangeEventsDropped ? `, ${plural(e.rangeEventsDropped, "later event", "later events")} not shown` : ""}`;
  let s = svgOpen(w, h, `Life of the range under ${label}`, desc, id);
  s += `<defs><marker id="${id}-arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#333"/></marker></defs>`;
  s += text(timeW - 8, top - 24, "time", 'text-anchor="end" font-weight="bold"');
  s += text(timeW + locs.length * laneW + 8, top - 24, "event", 'font-weight="bold"');
  for (const g of locs) {
    const x = xOf(g);
    s += text(x, top - 24, location(g), 'text-anchor="middle" font-weight="bold"');
    s += `<line x1="${fmtC(x)}" y1="${top - 14}" x2="${fmtC(x)}" y2="${h - 20}" stroke="#999" stroke-dasharray="4 3"/>`;
  }
  evs.forEach((ev, i) => {
    const y = top + i * rowH + rowH / 2;
    const what = describeEvent(ev);
    s += `<g><title>${escapeXml(`${fmtNs(ev.ns)}: ${what}`)}</title>`;
    s += text(timeW - 8, y + 4, fmtNs(ev.ns), 'text-anchor="end" fill="#444"');
    if (ev.kind === "MIGRATE_START" || ev.kind === "MIGRATE_END") {
      const x1 = xOf(ev.from!);
      const x2 = xOf(ev.to!);
      const color = ev.trigger === 3 ? "#e15759" : ev.trigger === 0 ? "#59a14f" : "#4e79a7";
      s += `<line x1="${fmtC(x1)}" y1="${y}" x2="${fmtC(x2)}" y2="${y}" stroke="${color}" stroke-width="${ev.kind === "MIGRATE_START" ? 2 : 1}"${ev.kind === "MIGRATE_END" ? ' stroke-dasharray="4 2"' : ""} marker-end="url(#${id}-arrow)"/>`;
    } else if (ev.kind === "UNMAP_FROM_GPU") {
      const x = xOf(ev.node!);
      s += `<path d="M${fmtC(x - 5)},${y - 5} L${fmtC(x + 5)},${y + 5} M${fmtC(x + 5)},${y - 5} L${fmtC(x - 5)},${y + 5}" stroke="#b07aa1" stroke-width="2"/>`;
    } else {
      const x = xOf(ev.node!);
      const fill = ev.kind === "PAGE_FAULT_START" ? "#f28e2b" : "#fff";
      s += `<circle cx="${fmtC(x)}" cy="${y}" r="5" fill="${fill}" stroke="#f28e2b" stroke-width="2"/>`;
    }
    s += text(timeW + locs.length * laneW + 8, y + 4, what);
    s += "</g>";
  });
  if (evs.length === 0) s += text(timeW, top + 14, "no event of this range in this run");
  if (e.rangeEventsDropped) s += text(timeW, h - 6, `… ${plural(e.rangeEventsDropped, "later event", "later events")} of this range not shown`, 'fill="#666"');
  return `${s}</svg>`;
}

/** A cell's result as `svmrt sim --json` gives it (policy failures only when there were some). */
export type CellResult = NonNullable<CompareCell["result"]>;

/** A field of SimResult, or a direction of its bytesMigrated. */
export type ResultField = keyof SimResult | `bytesMigrated.${keyof SimResult["bytesMigrated"]}`;

/**
 * One column of a workload's headline table: its header links to `#def-<id>`, the row of
 * the definitions section that says exactly what the number counts.
 */
export interface ReportColumn {
  /** Anchor of the definition, `def-<id>`. */
  id: string;
  header: string;
  /** Unit of the number, as the definitions table states it. */
  unit: string;
  /** SimResult fields the column reads (engine.ts), nested ones as `parent.child`. */
  fields: readonly ResultField[];
  /** What is counted: which kernel event or model counter, under which conditions. */
  definition: string;
  /** The cell's text for a successful result; `fastestNs`: the shortest simulated time of the workload. */
  value(r: CellResult, fastestNs: number, label: string): string;
}

const MS_PER_NS = 1e-6;
const FAULT_RETRY_DEFAULT_us = COST_PARAMS.fault_retry_ns.value / 1e3;
const THRASH_WINDOW_DEFAULT_ms = COST_PARAMS.thrash_window_ns.value * MS_PER_NS;
const DUPLICATE_WINDOW_ms = DUPLICATE_FAULT_WINDOW_NS * MS_PER_NS;
const PAGE_KiB = PAGE_BYTES / 1024;

/** A count from a result; "n/a" when the result does not carry it (never "undefined" or "NaN"). */
function count(v: number | undefined): string {
  return typeof v === "number" && Number.isFinite(v) ? String(v) : "n/a";
}

/** Bytes of one direction from a result, in binary units; "n/a" when absent. */
function bytesOf(r: CellResult, d: "h2d" | "d2h" | "d2d"): string {
  const v = r.bytesMigrated?.[d];
  return typeof v === "number" && Number.isFinite(v) ? fmtBytes(v) : "n/a";
}

/**
 * The headline table, column by column, with the definition each header links to. The
 * definitions follow the code that counts: SimResult (runtime/sim/engine.ts), the model's
 * counters (runtime/svm/fault.ts, migrate.ts, vram.ts), docs/workloads.md "Results".
 */
export const REPORT_COLUMNS: readonly ReportColumn[] = [
  {
    id: "policy",
    header: "policy",
    unit: "name",
    fields: ["policy"],
    definition:
      "The MigrationPolicy's metadata.name, as the cell's svmrt sim run reported it, followed by its file when two policies of the comparison share a name. The file of each policy is listed at the top of the page.",
    value: (_r, _f, label) => label,
  },
  {
    id: "sim-time",
    header: "simulated time",
    unit: "ns of simulated time, shown in the largest of s, ms, µs, ns that keeps the number at least 1",
    fields: ["simTimeNs"],
    definition:
      "Simulated time from the run's start to the last moment anything in it completed: a workload stream's last access, a GPU fault worker's last batch, a SET_ATTR of the workload or of a timed hint, or the XNACK-off restore worker. Simulated, not wall-clock time.",
    value: (r) => (typeof r.simTimeNs === "number" && Number.isFinite(r.simTimeNs) ? fmtNs(r.simTimeNs) : "n/a"),
  },
  {
    id: "vs-fastest",
    header: "vs fastest",
    unit: "ratio (×)",
    fields: ["simTimeNs"],
    definition:
      "This cell's simulated time divided by the shortest simulated time among the workload's cells that succeeded: 1.00× is the fastest policy, 2.00× took twice as long. n/a when that shortest time is 0 ns and this one is not.",
    value: (r, fastestNs) => {
      const t = r.simTimeNs;
      if (typeof t !== "number" || !Number.isFinite(t) || !Number.isFinite(fastestNs)) return "n/a";
      if (t === fastestNs) return "1.00×";
      return fastestNs > 0 ? `${(t / fastestNs).toFixed(2)}×` : "n/a";
    },
  },
  {
    id: "faults-handled",
    header: "faults handled",
    unit: "GPU page faults",
    fields: ["gpuFaults"],
    definition:
      "GPU page faults the kernel's fault handler (svm_range_restore_pages) resolved, by migrating the faulting window and mapping it or by mapping it where it is: one per PAGE_FAULT_END SMI event. Dropped and fatal faults are not in it.",
    value: (r) => count(r.gpuFaults),
  },
  {
    id: "faults-dropped",
    header: "faults dropped",
    unit: "GPU page faults",
    fields: ["gpuFaultsDropped"],
    definition:
      `GPU page faults the fault handler returned from without resolving them, each replayed by the GPU fault_retry_ns later (${FAULT_RETRY_DEFAULT_us} µs unless the profile or --cost sets it) and counted again if dropped again: ` +
      `a fault within ${DUPLICATE_WINDOW_ms} ms of the range's last mapping (the kernel's duplicate-fault check), on a range whose removal is pending, on a range whose CPU mapping is gone, or while the process drains its faults after an munmap. No SMI event reports them.`,
    value: (r) => count(r.gpuFaultsDropped),
  },
  {
    id: "h2d",
    header: "h2d",
    unit: "bytes, shown in binary units (1 KiB = 1024 B)",
    fields: ["bytesMigrated.h2d"],
    definition:
      `Bytes copied from system memory to VRAM by migrations (MIGRATE_START/END pairs towards a GPU, triggered by a GPU fault or a prefetch), pages actually copied only (${PAGE_KiB} KiB each): a migration whose pages were already in place moves nothing. Includes the second leg of every move between two GPUs.`,
    value: (r) => bytesOf(r, "h2d"),
  },
  {
    id: "d2h",
    header: "d2h",
    unit: "bytes, shown in binary units (1 KiB = 1024 B)",
    fields: ["bytesMigrated.d2h"],
    definition:
      `Bytes copied from VRAM to system memory by migrations (MIGRATE_START/END pairs towards system memory, triggered by a GPU fault, a CPU fault, a prefetch or a TTM eviction), pages actually copied only (${PAGE_KiB} KiB each). Includes the first leg of every move between two GPUs: the whole range goes back to system memory.`,
    value: (r) => bytesOf(r, "d2h"),
  },
  {
    id: "d2d",
    header: "d2d",
    unit: "bytes, shown in binary units (1 KiB = 1024 B)",
    fields: ["bytesMigrated.d2d"],
    definition:
      "Bytes delivered from one GPU's VRAM to another GPU's. As in the kernel, such a move goes through system memory: the range's pages go back (counted in d2h), then the faulting or prefetched window goes to the new GPU (counted in h2d); d2d counts that window again, so it is part of h2d, not in addition to it.",
    value: (r) => bytesOf(r, "d2d"),
  },
  {
    id: "evictions",
    header: "evictions",
    unit: "ranges",
    fields: ["evictions"],
    definition:
      "VRAM buffers evicted to make room for another range's reservation on a GPU whose VRAM is full: each moves one whole range back to system memory (a MIGRATE_START/END pair with trigger TTM_EVICTION, its bytes counted in d2h). Counts ranges, not pages.",
    value: (r) => count(r.evictions),
  },
  {
    id: "thrash",
    header: "thrash events",
    unit: "migrations",
    fields: ["thrashEvents"],
    definition:
      `Migrations that bring some page back to the location an earlier migration took it from within thrash_window_ns (${THRASH_WINDOW_DEFAULT_ms} ms unless the profile or --cost sets it): it moved A→B, now B→A, judged page by page. Counted once per migration, however many pages come back. The window is the simulator's assumption, not a kernel counter.`,
    value: (r) => count(r.thrashEvents),
  },
  {
    id: "fallbacks",
    header: "fallbacks",
    unit: "GPU faults plus policy decisions",
    fields: ["vramFallbacks", "policyFallbacks"],
    definition:
      "vramFallbacks + policyFallbacks. vramFallbacks: GPU faults whose migration to VRAM found no room even after evictions, so the faulting GPU was mapped to the pages where they were. policyFallbacks: decisions (a fault's location and window, a prefetch or an eviction call) that the kernel's rule made because the policy failed (exception, timeout, invalid output...); the list under the table says which hook failed and why.",
    value: (r) => {
      const v = r.vramFallbacks;
      const p = r.policyFallbacks;
      if (typeof v !== "number" || typeof p !== "number" || !Number.isFinite(v + p)) return "n/a";
      return v > 0 && p > 0 ? `${v + p} (${v} VRAM, ${p} policy)` : String(v + p);
    },
  },
];

/** The anchor of a column's definition. */
export function definitionAnchor(c: ReportColumn): string {
  return `def-${c.id}`;
}

/** The definitions section: one row per column of the headline tables, each row its anchor. */
function definitionsSection(): string {
  const rows = REPORT_COLUMNS.map(
    (c) =>
      `<tr id="${definitionAnchor(c)}"><td>${escapeXml(c.header)}</td><td class="def">${escapeXml(c.definition)}</td><td class="def">${escapeXml(c.unit)}</td><td><code>${c.fields.map((f) => escapeXml(f)).join(", ")}</code></td></tr>`,
  );
  return [
    '<h2 id="definitions">Definitions of the table columns</h2>',
    '<p class="note">What each number of the tables above counts, from the simulator\'s result (the fields of <code>svmrt sim --json</code>, named in the last column). A failed cell has no numbers; n/a stands for a number its result does not carry.</p>',
    "<table><thead><tr><th>column</th><th>what is counted</th><th>unit</th><th>result field</th></tr></thead><tbody>",
    ...rows,
    "</tbody></table>",
  ].join("\n");
}

/** Text of a cell without result: its exit code when it has one. */
function failedText(c: CompareCell): string {
  if (c.exitCode !== undefined) return `failed (exit ${c.exitCode})`;
  return c.error !== undefined ? "failed" : "not run";
}

/** The result with its policy name blanked, to compare two cells' results field by field. */
function resultKey(r: CellResult): string {
  return JSON.stringify({ ...r, policy: "" });
}

/** Per cell, the index of the first earlier cell whose result equals its own (or -1). */
function sameResultAs(cells: CompareCell[]): number[] {
  const keys = cells.map((c) => (c.result ? resultKey(c.result) : null));
  return keys.map((k, i) => (k === null ? -1 : keys.indexOf(k) < i ? keys.indexOf(k) : -1));
}

const CSS = `body{font-family:sans-serif;margin:24px;color:#222;max-width:1400px}
h1{font-size:22px}h2{font-size:18px;margin-top:36px;border-bottom:1px solid #ccc}h3{font-size:15px}
table{border-collapse:collapse;font-size:13px;margin:8px 0}th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}
th:first-child,td:first-child{text-align:left}th{background:#f4f4f4}th a{color:inherit}.fail{color:#c00}
td.def{text-align:left;max-width:760px}tr:target{background:#fff6d5}
pre{background:#f8f8f8;border:1px solid #ddd;padding:8px;white-space:pre-wrap;font-size:12px}
.legend span{display:inline-block;margin-right:16px}.note{color:#555;font-size:13px}svg{display:block;margin:8px 0}`;

export interface ReportInput {
  profile: string;
  seed: number;
  cells: CompareCell[];
}

/** "1 policy", "2 policies". */
function plural(n: number, one: string, many: string): string {
  return `${n} ${n === 1 ? one : many}`;
}

/** A workload's headline table: REPORT_COLUMNS, each header a link to its definition. */
function headlineTable(cells: CompareCell[], labels: string[]): string {
  const fastest = Math.min(...cells.map((c) => (typeof c.result?.simTimeNs === "number" ? c.result.simTimeNs : Number.POSITIVE_INFINITY)));
  const head = REPORT_COLUMNS.map((c) => `<th><a href="#${definitionAnchor(c)}">${escapeXml(c.header)}</a></th>`).join("");
  const rows = cells.map((c, i) => {
    const label = labels[i]!;
    const r = c.result;
    if (!r) return `<tr><td>${escapeXml(label)}</td><td class="fail" colspan="${REPORT_COLUMNS.length - 1}" style="text-align:left">${escapeXml(failedText(c))}</td></tr>`;
    return `<tr>${REPORT_COLUMNS.map((col) => `<td>${escapeXml(col.value(r, fastest, label))}</td>`).join("")}</tr>`;
  });
  return `<table><thead><tr>${head}</tr></thead><tbody>${rows.join("")}</tbody></table>`;
}

/** The whole report as one HTML document. */
export function renderReport(input: ReportInput): string {
  const workloads: string[] = [];
  for (const c of input.cells) if (!workloads.includes(c.workload)) workloads.push(c.workload);
  const files: string[] = [];
  for (const c of input.cells) if (!files.includes(c.policyFile)) files.push(c.policyFile);
  const parts: string[] = [];
  parts.push(
    `<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>${escapeXml(`svmrt compare: ${input.profile}, seed ${input.seed}`)}</title><style>${CSS}</style></head><body>`,
  );
  parts.push(`<h1>svmrt compare: ${escapeXml(input.profile)}, seed ${input.seed}</h1>`);
  parts.push(
    `<p class="note">${plural(workloads.length, "workload", "workloads")} × ${plural(files.length, "policy", "policies")}. Times are simulated, not wall-clock. Every column header of the tables links to <a href="#definitions">its definition</a>.${files.length > 0 ? " Policies:" : ""}</p>`,
  );
  if (files.length > 0) {
    parts.push("<ul>");
    for (const f of files) {
      const c = input.cells.find((x) => x.policyFile === f)!;
      parts.push(`<li><b>${escapeXml(c.policy)}</b>: <code>${escapeXml(f)}</code></li>`);
    }
    parts.push("</ul>");
  }
  workloads.forEach((wl, wi) => {
    const cells = input.cells.filter((c) => c.workload === wl);
    const labels = labelsOf(cells);
    const id = `w${wi}`;
    parts.push(`<h2 id="${id}">Workload ${escapeXml(wl)}</h2>`);
    parts.push(headlineTable(cells, labels));
    // Policies whose results equal an earlier one's in every field: say so, a reader would
    // otherwise take two equal rows (and two equal charts) for a coincidence of one column.
    const same = sameResultAs(cells);
    const twins = cells.flatMap((_, i) => (same[i]! >= 0 ? [`<b>${escapeXml(labels[i]!)}</b> gives the same results as <b>${escapeXml(labels[same[i]!]!)}</b>`] : []));
    if (twins.length > 0) parts.push(`<p class="note">Identical in every field of the result: ${twins.join("; ")}.</p>`);
    for (const c of cells) {
      if (!c.result) {
        const tail = c.error ? ":" : c.exitCode !== undefined ? ", without error output." : ".";
        parts.push(`<p class="fail">${escapeXml(c.policyFile)}: ${escapeXml(failedText(c))}${tail}</p>`);
        if (c.error) parts.push(`<pre>${escapeXml(c.error)}</pre>`);
      }
    }
    const failing = cells.flatMap((c, i) => {
      const lines = (c.result?.policyFailures ?? []).map((g) => failureText(g));
      const other = c.result?.policyFailuresOther ?? 0;
      if (other > 0) lines.push(`and ${other} failed ${other === 1 ? "call" : "calls"} of other hooks or reasons`);
      return lines.map((text) => ({ label: labels[i]!, text }));
    });
    if (failing.length > 0) {
      parts.push('<p class="fail">Policy failures (a failed decision is the kernel\'s rule; a failed observe loses its events):</p><ul>');
      for (const { label, text } of failing) parts.push(`<li><b>${escapeXml(label)}</b>: ${escapeXml(text)}</li>`);
      parts.push("</ul>");
    }
    parts.push(`<h3 id="${id}-time">Simulated time per policy</h3>`);
    parts.push(
      barChart(`${id}-time`, `Simulated time per policy, workload ${wl}`, labels, cells.map((c) => c.result?.simTimeNs ?? null), cells.map(failedText), fmtNs, TIME_UNITS, "simulated time"),
    );
    parts.push(`<h3 id="${id}-bytes">Bytes migrated per policy and direction</h3>`);
    parts.push(bytesChart(`${id}-bytes`, `Bytes migrated per policy (h2d, d2h, d2d), workload ${wl}`, labels, cells));
    parts.push(`<h3 id="${id}-timeline">Faults and migrations over simulated time</h3>`);
    parts.push(
      `<p class="note">PAGE_FAULT_START and MIGRATE_START events per bin, ${TIMELINE_BINS} bins over each cell's own simulated time (the bin length is under each panel): one panel per policy, so that equal timelines stay visible side by side.</p>`,
    );
    const undrawn = cells.flatMap((c, i) => (c.result && (!c.events || c.events.faultsPerBin.length === 0) ? [escapeXml(labels[i]!)] : []));
    if (undrawn.length > 0) parts.push(`<p class="note">Without an event timeline (its cell carries no event summary): ${undrawn.join(", ")}.</p>`);
    parts.push(timelineChart(`${id}-timeline`, `Page faults and migrations over simulated time per policy, workload ${wl}`, labels, cells));
    parts.push(`<h3 id="${id}-life">Life of one range</h3>`);
    const first = cells.find((c) => c.events?.range);
    if (!first) {
      let why = "No cell of this workload succeeded: no range to follow.";
      if (cells.some((c) => c.events)) why = "No migration in this workload: no range to follow.";
      else if (cells.some((c) => c.result)) why = "The cells of this workload carry no event summary: no range to follow.";
      parts.push(`<p class="note">${why}</p>`);
      return;
    }
    const r = first.events!.range!;
    parts.push(
      `<p class="note">Pages 0x${r.startPage.toString(16)}..0x${(r.startPage + r.sizePages - 1).toString(16)} (${plural(r.sizePages, "page", "pages")} of ${PAGE_KiB} KiB), from its first event on (the SMI stream has no range-creation event). Each diagram draws at most the first ${RANGE_EVENTS_MAX} events of its policy and counts the later ones under it. Arrows: migrations from→to (solid: start, dashed: end; blue gpu fault, green prefetch, red eviction); dots: faults (filled: start, hollow: end); crosses: unmaps.</p>`,
    );
    cells.forEach((c, i) => {
      if (!c.events?.range) return;
      parts.push(`<h4>${escapeXml(labels[i]!)}</h4>`);
      parts.push(rangeLifeChart(`${id}-life${i}`, labels[i]!, c));
    });
  });
  parts.push(definitionsSection());
  parts.push("</body></html>\n");
  return parts.join("\n");
}
