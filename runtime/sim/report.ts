/**
 * The HTML report of `svmrt compare`: one self-contained file (inline CSS, inline SVG drawn
 * here, no script, no external asset). Per workload: simulated time per policy, bytes moved
 * per policy and direction, faults and migrations over simulated time, and the life of one
 * range as a sequence diagram. Every user string (policy names, file paths, workload names)
 * is escaped; the output is a pure function of the cells, so equal inputs give equal bytes.
 */
import { failureText } from "../policy/decision-log.ts";
import type { CellEvents, CompareCell, RangeEvent } from "./compare.ts";

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

function location(gpuId: number): string {
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

/** Horizontal bars: one per policy, with an x axis in `unit`. */
function barChart(id: string, title: string, labels: string[], values: (number | null)[], fmtValue: (v: number) => string, units: [number, string][], axisTitle: string): string {
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
  const desc = labels.map((l, i) => `${l}: ${values[i] === null ? "failed" : fmtValue(values[i]!)}`).join("; ");
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
    s += `<g><title>${escapeXml(`${l}: ${values[i] === null ? "failed" : fmtValue(values[i]!)}`)}</title>`;
    s += text(LABEL_W - 6, y + barH / 2 + 4, clip(l, 28), 'text-anchor="end"');
    const v = values[i];
    if (v === null || v === undefined) s += text(LABEL_W + 4, y + barH / 2 + 4, "failed", 'fill="#c00"');
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
  const max = Math.max(0, ...cells.flatMap((c) => dirs.map((d) => c.result?.bytesMigrated[d] ?? 0)));
  const ax = axis(max, BYTE_UNITS);
  const tk = ax.ticks;
  const scale = plotW / tk.at(-1)!;
  const desc = cells
    .map((c, i) => `${labels[i]}: ${c.result ? dirs.map((d) => `${d} ${fmtBytes(c.result!.bytesMigrated[d])}`).join(", ") : "failed"}`)
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
      s += text(LABEL_W + 4, y0 + 14, "failed", 'fill="#c00"');
      return;
    }
    dirs.forEach((d, k) => {
      const v = c.result!.bytesMigrated[d];
      const y = y0 + k * barH;
      s += `<g><title>${escapeXml(`${labels[i]} ${d}: ${fmtBytes(v)}`)}</title>`;
      s += `<rect x="${LABEL_W}" y="${y}" width="${fmtC(Math.max(v > 0 ? 1 : 0, v * scale))}" height="${barH - 1}" fill="${DIR_COLORS[d]}"/>`;
      s += text(LABEL_W + v * scale + 4, y + barH - 3, fmtBytes(v), 'font-size="10" fill="#222"');
      s += "</g>";
    });
  });
  return `${s}</svg>`;
}

/** Small multiples: per policy, faults and migrations per time bin as two lines. */
function timelineChart(id: string, title: string, labels: string[], cells: CompareCell[]): string {
  const ok = cells.map((c, i) => ({ c, label: labels[i]! })).filter((x) => x.c.result && x.c.events);
  const panelW = 400;
  const panelH = 120;
  const padL = 60;
  const padT = 26;
  const padB = 40;
  const cols = 2;
  const cellW = padL + panelW + 30;
  const cellH = padT + panelH + padB;
  const rows = Math.max(1, Math.ceil(ok.length / cols));
  const w = cols * cellW;
  const h = 30 + rows * cellH;
  const desc = ok
    .map(({ c, label }) => {
      const e = c.events!;
      const f = e.faultsPerBin.reduce((a, b) => a + b, 0);
      const m = e.migrationsPerBin.reduce((a, b) => a + b, 0);
      return `${label}: ${f} fault starts and ${m} migration starts over ${fmtNs(c.result!.simTimeNs)}`;
    })
    .join("; ");
  let s = svgOpen(w, h, title, desc || "no successful cell", id);
  s += `<line x1="10" y1="12" x2="30" y2="12" stroke="#e15759" stroke-width="2"/>`;
  s += text(34, 16, "PAGE_FAULT_START per bin");
  s += `<line x1="220" y1="12" x2="240" y2="12" stroke="#4e79a7" stroke-width="2" stroke-dasharray="5 3"/>`;
  s += text(244, 16, "MIGRATE_START per bin");
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
    s += `<g><title>${escapeXml(`${label}: faults and migrations over simulated time`)}</title>`;
    s += text(ox, oy - 8, clip(label, 50), 'font-weight="bold"');
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
    s += text(ox + panelW, oy - 8, `ends at ${fmtNs(c.result!.simTimeNs)}`, 'text-anchor="end" fill="#666" font-size="10"');
    s += `<rect x="${ox}" y="${oy}" width="${panelW}" height="${panelH}" fill="none" stroke="#333"/>`;
    s += text(ox + panelW / 2, oy + panelH + 30, `simulated time (bin = ${fmtNs(spanNs / bins)})`, 'text-anchor="middle" font-size="10"');
    s += text(ox - 40, oy + panelH / 2, "events", `text-anchor="middle" font-size="10" transform="rotate(-90 ${ox - 40} ${oy + panelH / 2})"`);
    const line = (vals: number[], color: string, dash: string): string => {
      // Bins after the cell's end are empty by construction: stop the line there.
      const used = Math.max(1, Math.min(bins, Math.ceil(((c.result!.simTimeNs + 1) * bins) / (spanNs + 1))));
      const pts = vals.slice(0, used).map((v, k) => `${fmtC(ox + ((k + 0.5) / bins) * panelW)},${fmtC(oy + panelH - (v / ymax) * panelH)}`).join(" ");
      return `<polyline points="${pts}" fill="none" stroke="${color}" stroke-width="1.5"${dash ? ` stroke-dasharray="${dash}"` : ""}/>`;
    };
    s += line(e.faultsPerBin, "#e15759", "");
    s += line(e.migrationsPerBin, "#4e79a7", "5 3");
    s += "</g>";
  });
  return `${s}</svg>`;
}

function describeEvent(e: RangeEvent): string {
  const at = `@0x${e.page.toString(16)}`;
  switch (e.kind) {
    case "PAGE_FAULT_START":
      return `fault ${e.write ? "W" : "R"} ${at} by ${location(e.node!)}`;
    case "PAGE_FAULT_END":
      return `fault done ${at} (${e.migrated ? "migrated" : "mapping only"})`;
    case "MIGRATE_START":
      return `migrate ${location(e.from!)}→${location(e.to!)} ${e.sizePages} pages, ${TRIGGERS[e.trigger!] ?? `trigger ${e.trigger}`}`;
    case "MIGRATE_END":
      return `migrated ${location(e.from!)}→${location(e.to!)}, ${TRIGGERS[e.trigger!] ?? `trigger ${e.trigger}`}`;
    case "UNMAP_FROM_GPU":
      return `unmap ${e.sizePages} pages from ${location(e.node!)}, ${UNMAP_TRIGGERS[e.trigger!] ?? `trigger ${e.trigger}`}`;
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
  const desc = `${evs.length} events of pages 0x${r.startPage.toString(16)}..0x${(r.startPage + r.sizePages - 1).toString(16)}${e.rangeEventsDropped ? `, ${e.rangeEventsDropped} later events not shown` : ""}`;
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
  if (e.rangeEventsDropped) s += text(timeW, h - 6, `… ${e.rangeEventsDropped} later events of this range not shown`, 'fill="#666"');
  return `${s}</svg>`;
}

const CSS = `body{font-family:sans-serif;margin:24px;color:#222;max-width:1400px}
h1{font-size:22px}h2{font-size:18px;margin-top:36px;border-bottom:1px solid #ccc}h3{font-size:15px}
table{border-collapse:collapse;font-size:13px;margin:8px 0}th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}
th:first-child,td:first-child{text-align:left}th{background:#f4f4f4}.fail{color:#c00}
pre{background:#f8f8f8;border:1px solid #ddd;padding:8px;white-space:pre-wrap;font-size:12px}
.legend span{display:inline-block;margin-right:16px}.note{color:#555;font-size:13px}svg{display:block;margin:8px 0}`;

export interface ReportInput {
  profile: string;
  seed: number;
  cells: CompareCell[];
}

/** The whole report as one HTML document. */
export function renderReport(input: ReportInput): string {
  const workloads: string[] = [];
  for (const c of input.cells) if (!workloads.includes(c.workload)) workloads.push(c.workload);
  const parts: string[] = [];
  parts.push(
    `<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>${escapeXml(`svmrt compare: ${input.profile}, seed ${input.seed}`)}</title><style>${CSS}</style></head><body>`,
  );
  parts.push(`<h1>svmrt compare: ${escapeXml(input.profile)}, seed ${input.seed}</h1>`);
  parts.push(
    `<p class="note">${workloads.length} workloads × ${input.cells.length / Math.max(1, workloads.length)} policies. Times are simulated, not wall-clock. Policies:</p><ul>`,
  );
  const seen = new Set<string>();
  for (const c of input.cells) {
    if (seen.has(c.policyFile)) continue;
    seen.add(c.policyFile);
    parts.push(`<li><b>${escapeXml(c.policy)}</b>: <code>${escapeXml(c.policyFile)}</code></li>`);
  }
  parts.push("</ul>");
  workloads.forEach((wl, wi) => {
    const cells = input.cells.filter((c) => c.workload === wl);
    const labels = labelsOf(cells);
    const fastest = Math.min(...cells.map((c) => c.result?.simTimeNs ?? Number.POSITIVE_INFINITY));
    parts.push(`<h2 id="w${wi}">Workload ${escapeXml(wl)}</h2>`);
    parts.push(
      "<table><thead><tr><th>policy</th><th>simulated time</th><th>vs fastest</th><th>faults handled</th><th>faults dropped</th><th>h2d</th><th>d2h</th><th>d2d</th><th>evictions</th><th>thrash events</th><th>fallbacks</th></tr></thead><tbody>",
    );
    cells.forEach((c, i) => {
      const r = c.result;
      if (!r) {
        parts.push(`<tr><td>${escapeXml(labels[i]!)}</td><td class="fail" colspan="10" style="text-align:left">failed (exit ${c.exitCode})</td></tr>`);
        return;
      }
      parts.push(
        `<tr><td>${escapeXml(labels[i]!)}</td><td>${fmtNs(r.simTimeNs)}</td><td>${(r.simTimeNs / fastest).toFixed(2)}×</td><td>${r.gpuFaults}</td><td>${r.gpuFaultsDropped}</td><td>${fmtBytes(r.bytesMigrated.h2d)}</td><td>${fmtBytes(r.bytesMigrated.d2h)}</td><td>${fmtBytes(r.bytesMigrated.d2d)}</td><td>${r.evictions}</td><td>${r.thrashEvents}</td><td>${r.vramFallbacks + r.policyFallbacks}</td></tr>`,
      );
    });
    parts.push("</tbody></table>");
    for (const c of cells) {
      if (!c.result) parts.push(`<p class="fail">${escapeXml(c.policyFile)} failed (exit ${c.exitCode}):</p><pre>${escapeXml(c.error ?? "")}</pre>`);
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
    const id = `w${wi}`;
    parts.push(`<h3 id="w${wi}-time">Simulated time per policy</h3>`);
    parts.push(barChart(`${id}-time`, `Simulated time per policy, workload ${wl}`, labels, cells.map((c) => c.result?.simTimeNs ?? null), fmtNs, TIME_UNITS, "simulated time"));
    parts.push(`<h3 id="w${wi}-bytes">Bytes migrated per policy and direction</h3>`);
    parts.push(bytesChart(`${id}-bytes`, `Bytes migrated per policy (h2d, d2h, d2d), workload ${wl}`, labels, cells));
    parts.push(`<h3 id="w${wi}-timeline">Faults and migrations over simulated time</h3>`);
    parts.push(timelineChart(`${id}-timeline`, `Page faults and migrations over simulated time per policy, workload ${wl}`, labels, cells));
    const first = cells.find((c) => c.events?.range);
    parts.push(`<h3 id="w${wi}-life">Life of one range</h3>`);
    if (!first) {
      parts.push('<p class="note">No migration in this workload: no range to follow.</p>');
      return;
    }
    const r = first.events!.range!;
    parts.push(
      `<p class="note">Pages 0x${r.startPage.toString(16)}..0x${(r.startPage + r.sizePages - 1).toString(16)} (${r.sizePages} pages of 4 KiB), from its first event to its last kept one (at most the first events per policy; the SMI stream has no range-creation event). Arrows: migrations from→to (solid: start, dashed: end; blue gpu fault, green prefetch, red eviction); dots: faults (filled: start, hollow: end); crosses: unmaps.</p>`,
    );
    cells.forEach((c, i) => {
      if (!c.events?.range) return;
      parts.push(`<h4>${escapeXml(labels[i]!)}</h4>`);
      parts.push(rangeLifeChart(`${id}-life${i}`, labels[i]!, c));
    });
  });
  parts.push("</body></html>\n");
  return parts.join("\n");
}
