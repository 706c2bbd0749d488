import { describe, expect, test } from "bun:test";
import { type OpenMetricsContentType, Registry } from "prom-client";
import {
  SMI_PAGE_bytes,
  SVM_EVENT_LABELS,
  SVM_EVENT_PAIRS_PENDING_MAX,
  SVM_METRIC_NAMES,
  SVM_PROCESS_LABELS_MAX,
  SmiPairTable,
  SvmMetrics,
} from "../../runtime/agent/svm-metrics.ts";
import { InvariantError } from "../../runtime/errors.ts";
import { type SmiEvent, SmiEventParser, smiEventParseLine } from "../../runtime/kfd/smi-events.ts";
import { promtoolCheckMetrics } from "../promtool.ts";

const G0 = 0x3fe1;
const G1 = 0x8a52;
const UNKNOWN_GPU = 0xbeef;
/** The inventory of the tests: two GPUs with DME indexes; 0xbeef is not in it. */
const DME_INDEX = new Map([
  [G0, "0"],
  [G1, "1"],
]);

/** The made-up fault of kfd-uapi.md: 2 MiB migrated from RAM to gpu 0x3fe1. */
const FAULT_TRACE = `7 81234567890123 -4242 @7f12a3c4(3fe1) W
5 81234567901234 -4242 @7f12a200(200) 0->3fe1 ffffffff:ffffffff 1
6 81234568001234 -4242 @7f12a200(200) 0->3fe1 1 0
8 81234568011234 -4242 @7f12a3c4(3fe1) M`;

function parse(text: string, gpuId = G0): SmiEvent[] {
  return text
    .split("\n")
    .filter((l) => l.length > 0)
    .map((line) => {
      const ev = smiEventParseLine(line, gpuId);
      if (!ev) throw new Error(`test record does not parse: ${line}`);
      return ev;
    });
}

interface Setup {
  metrics: SvmMetrics;
  prom: Registry;
  open: Registry<OpenMetricsContentType>;
  resolved: number[];
}

function setup(perProcess = false): Setup {
  const prom = new Registry();
  const open = new Registry<OpenMetricsContentType>();
  open.setContentType(Registry.OPENMETRICS_CONTENT_TYPE);
  const resolved: number[] = [];
  const metrics = new SvmMetrics({
    registries: [prom, open],
    gpuIdOf: (id) => {
      resolved.push(id);
      return DME_INDEX.get(id);
    },
    perProcess,
  });
  return { metrics, prom, open, resolved };
}

/** Samples of an exposition text, keyed `name{k="v",...}` with labels sorted by name. */
function samples(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`not a sample line: ${line}`);
    const labels = m[2] ? [...m[2].matchAll(/([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"/g)].map((x) => [x[1]!, x[2]!] as const) : [];
    const key = seriesKey(m[1]!, Object.fromEntries(labels));
    if (out.has(key)) throw new Error(`duplicate series ${key}`);
    out.set(key, Number(m[3]));
  }
  return out;
}

function seriesKey(name: string, labels: Record<string, string>): string {
  const parts = Object.keys(labels)
    .sort()
    .map((k) => `${k}="${labels[k]}"`);
  return `${name}{${parts.join(",")}}`;
}

/** The series of one family: label key (without the name) to value. */
function family(s: Map<string, number>, name: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of s) if (k.startsWith(`${name}{`)) out[k.slice(name.length)] = v;
  return out;
}

const g0 = { gpu_id: "0", kfd_gpu_id: "3fe1" };
const g1 = { gpu_id: "1", kfd_gpu_id: "8a52" };
const L = (labels: Record<string, string>): string => seriesKey("", labels);

async function scrape(r: Registry): Promise<Map<string, number>> {
  return samples(await r.metrics());
}

describe("svm_* counters from SMI events", () => {
  test("the reference fault trace of kfd-uapi.md, every family of the GPU exactly", async () => {
    const { metrics, prom } = setup();
    metrics.observe(parse(FAULT_TRACE));
    const s = await scrape(prom);
    expect(family(s, "svm_gpu_page_faults_total")).toEqual({
      [L({ ...g0, outcome: "migrated" })]: 1,
      [L({ ...g0, outcome: "mapped" })]: 0,
    });
    expect(family(s, "svm_gpu_page_fault_starts_total")).toEqual({
      [L({ ...g0, access: "read" })]: 0,
      [L({ ...g0, access: "write" })]: 1,
    });
    // 12 zero series (3 directions x 4 triggers), one counted.
    const migrations = family(s, "svm_migrations_total");
    expect(Object.keys(migrations)).toHaveLength(12);
    expect(Object.values(migrations).reduce((a, b) => a + b, 0)).toBe(1);
    expect(migrations[L({ ...g0, direction: "h2d", trigger: "pagefault_gpu" })]).toBe(1);
    expect(family(s, "svm_migrated_bytes_total")[L({ ...g0, direction: "h2d", trigger: "pagefault_gpu" })]).toBe(2 * 1024 * 1024);
    expect(Object.values(family(s, "svm_migrated_bytes_total")).reduce((a, b) => a + b, 0)).toBe(2 * 1024 * 1024);
    expect(Object.values(family(s, "svm_migration_failures_total")).every((v) => v === 0)).toBe(true);
    const events = family(s, "svm_events_total");
    expect(Object.keys(events)).toHaveLength(SVM_EVENT_LABELS.length);
    expect(events[L({ ...g0, event: "page_fault_start" })]).toBe(1);
    expect(events[L({ ...g0, event: "migrate_start" })]).toBe(1);
    expect(events[L({ ...g0, event: "migrate_end" })]).toBe(1);
    expect(events[L({ ...g0, event: "page_fault_end" })]).toBe(1);
    expect(Object.values(events).reduce((a, b) => a + b, 0)).toBe(4);
    expect(family(s, "svm_events_dropped_total")).toEqual({ [L(g0)]: 0 });
    expect(family(s, "svm_event_pairs_evicted_total")).toEqual({
      [L({ ...g0, pair: "migration" })]: 0,
      [L({ ...g0, pair: "page_fault" })]: 0,
    });
    expect(metrics.pendingPairs()).toEqual({ migrations: 0, pageFaults: 0 });
    // Every family exists, and nothing else is registered.
    const names = new Set([...s.keys()].map((k) => k.slice(0, k.indexOf("{"))));
    expect([...names].sort()).toEqual([...SVM_METRIC_NAMES].sort());
  });

  test("every other event kind, directions, failures, unknown triggers", async () => {
    const { metrics, prom } = setup();
    metrics.observe(
      parse(`6 100 -7 @1000(10) 3fe1->0 3
6 101 -7 @2000(1) 3fe1->8a52 0 0
6 102 -7 @3000(4) 0->3fe1 2 -12
6 103 -7 @4000(2) 0->3fe1 9 0
6 104 -7 @5000(3) 0->0 0 0
9 110 -7 3fe1 0
9 111 -7 3fe1 2
9 112 -7 3fe1 5
9 113 -7 3fe1 17
a 120 -7 3fe1 0
a 121 -7 3fe1 R
a 122 -7 3fe1 R
b 130 -7 @6000(8) 3fe1 0
b 131 -7 @7000(2) 3fe1 2
b 132 -7 @8000(1) 3fe1 9
1 4d2:python3
2 3:1f
3 5 GPU hang
4 5 GPU hang
c 4d2 python3
d 4d2 python3
8 140 -7 @9000(3fe1) U`),
    );
    const s = await scrape(prom);
    const mig = family(s, "svm_migrations_total");
    const bytes = family(s, "svm_migrated_bytes_total");
    // Older kernels print no error code: a success.
    expect(mig[L({ ...g0, direction: "d2h", trigger: "ttm_eviction" })]).toBe(1);
    expect(bytes[L({ ...g0, direction: "d2h", trigger: "ttm_eviction" })]).toBe(0x10 * SMI_PAGE_bytes);
    expect(mig[L({ ...g0, direction: "d2d", trigger: "prefetch" })]).toBe(1);
    expect(bytes[L({ ...g0, direction: "d2d", trigger: "prefetch" })]).toBe(SMI_PAGE_bytes);
    expect(mig[L({ ...g0, direction: "h2d", trigger: "unknown" })]).toBe(1);
    expect(bytes[L({ ...g0, direction: "h2d", trigger: "unknown" })]).toBe(2 * SMI_PAGE_bytes);
    expect(mig[L({ ...g0, direction: "unknown", trigger: "prefetch" })]).toBe(1);
    // The failure is counted as a failure only: no bytes, no migration.
    expect(family(s, "svm_migration_failures_total")[L({ ...g0, direction: "h2d", trigger: "pagefault_cpu" })]).toBe(1);
    expect(Object.values(family(s, "svm_migration_failures_total")).reduce((a, b) => a + b, 0)).toBe(1);
    expect(mig[L({ ...g0, direction: "h2d", trigger: "pagefault_cpu" })]).toBe(0);
    expect(Object.values(mig).reduce((a, b) => a + b, 0)).toBe(4);
    expect(Object.values(bytes).reduce((a, b) => a + b, 0)).toBe((0x10 + 1 + 2 + 3) * SMI_PAGE_bytes);
    expect(family(s, "svm_queue_evictions_total")).toEqual({
      [L({ ...g0, trigger: "svm" })]: 1,
      [L({ ...g0, trigger: "userptr" })]: 0,
      [L({ ...g0, trigger: "ttm" })]: 1,
      [L({ ...g0, trigger: "suspend" })]: 0,
      [L({ ...g0, trigger: "criu_checkpoint" })]: 0,
      [L({ ...g0, trigger: "criu_restore" })]: 1,
      [L({ ...g0, trigger: "unknown" })]: 1,
    });
    expect(family(s, "svm_queue_restores_total")).toEqual({
      [L({ ...g0, outcome: "restored" })]: 1,
      [L({ ...g0, outcome: "rescheduled" })]: 2,
    });
    expect(family(s, "svm_unmaps_total")).toEqual({
      [L({ ...g0, trigger: "mmu_notify" })]: 1,
      [L({ ...g0, trigger: "mmu_notify_migrate" })]: 0,
      [L({ ...g0, trigger: "unmap_from_cpu" })]: 1,
      [L({ ...g0, trigger: "unknown" })]: 1,
    });
    expect(family(s, "svm_unmapped_bytes_total")).toEqual({
      [L({ ...g0, trigger: "mmu_notify" })]: 8 * SMI_PAGE_bytes,
      [L({ ...g0, trigger: "mmu_notify_migrate" })]: 0,
      [L({ ...g0, trigger: "unmap_from_cpu" })]: 2 * SMI_PAGE_bytes,
      [L({ ...g0, trigger: "unknown" })]: SMI_PAGE_bytes,
    });
    expect(family(s, "svm_gpu_vm_faults_total")).toEqual({ [L(g0)]: 1 });
    expect(family(s, "svm_gpu_thermal_throttle_events_total")).toEqual({ [L(g0)]: 1 });
    expect(family(s, "svm_gpu_resets_total")).toEqual({ [L(g0)]: 1 }); // PRE counts, POST does not
    const events = family(s, "svm_events_total");
    expect(events[L({ ...g0, event: "gpu_post_reset" })]).toBe(1);
    expect(events[L({ ...g0, event: "process_start" })]).toBe(1);
    expect(events[L({ ...g0, event: "process_end" })]).toBe(1);
    expect(events[L({ ...g0, event: "migrate_end" })]).toBe(5);
    expect(Object.values(events).reduce((a, b) => a + b, 0)).toBe(22);
    // Five MIGRATE_ENDs and one PAGE_FAULT_END without their START.
    expect(family(s, "svm_events_dropped_total")).toEqual({ [L(g0)]: 6 });
    expect(family(s, "svm_gpu_page_faults_total")[L({ ...g0, outcome: "mapped" })]).toBe(1);
  });

  test("gpu_id is the DME index; unknown GPUs get kfd-<hex>; the resolver runs once per GPU", async () => {
    const { metrics, prom, resolved } = setup();
    metrics.gpuAdd(G1);
    metrics.gpuAdd(G1);
    metrics.observe([...parse("1 10:a", G0), ...parse("1 11:b", UNKNOWN_GPU), ...parse("1 12:c", G0), ...parse("1 13:d", UNKNOWN_GPU)]);
    const s = await scrape(prom);
    expect(family(s, "svm_gpu_vm_faults_total")).toEqual({
      [L(g1)]: 0, // added before any event: its series exist at zero
      [L(g0)]: 2,
      [L({ gpu_id: "kfd-beef", kfd_gpu_id: "beef" })]: 2,
    });
    expect(resolved).toEqual([G1, G0, UNKNOWN_GPU]);
  });

  test("source-reported drops and the parser's malformed count", async () => {
    const { metrics, prom } = setup();
    metrics.dropped(G0, 3);
    metrics.dropped(G0, 0);
    metrics.dropped(G1, 2);
    const parser = new SmiEventParser(G0);
    const out: SmiEvent[] = [];
    parser.push(new TextEncoder().encode(`garbage\n${FAULT_TRACE}\n7 nope\n`), out);
    metrics.observe(out);
    metrics.malformedSync(G0, parser.malformedCount);
    metrics.malformedSync(G0, parser.malformedCount); // same count again: nothing added
    let s = await scrape(prom);
    expect(parser.malformedCount).toBe(2);
    expect(family(s, "svm_events_malformed_total")).toEqual({ [L(g0)]: 2, [L(g1)]: 0 });
    expect(family(s, "svm_events_dropped_total")).toEqual({ [L(g0)]: 3, [L(g1)]: 2 });
    // A reopened reader's parser starts again at 0: its count is added, never subtracted.
    metrics.malformedSync(G0, 1);
    s = await scrape(prom);
    expect(family(s, "svm_events_malformed_total")[L(g0)]).toBe(3);
    expect(() => metrics.dropped(G0, -1)).toThrow(InvariantError);
    expect(() => metrics.dropped(G0, 1.5)).toThrow(InvariantError);
    expect(() => metrics.malformedSync(G0, Number.NaN)).toThrow(InvariantError);
  });

  test("counters only grow, across scrapes of both registries", async () => {
    const { metrics, prom, open } = setup();
    metrics.observe(parse(FAULT_TRACE));
    const first = await scrape(prom);
    await open.metrics();
    metrics.observe(parse(FAULT_TRACE.replaceAll("-4242", "-4243")));
    await open.metrics();
    const second = await scrape(prom);
    expect([...first.keys()].sort()).toEqual([...second.keys()].sort());
    let grew = 0;
    for (const [k, v] of first) {
      expect(second.get(k)!).toBeGreaterThanOrEqual(v);
      if (second.get(k)! > v) grew++;
    }
    expect(grew).toBe(8); // faults, fault starts, migrations, bytes and 4 event kinds; nothing else
    expect(second.get(seriesKey("svm_migrated_bytes_total", { ...g0, direction: "h2d", trigger: "pagefault_gpu" }))).toBe(4 * 1024 * 1024);
  });

  test("both registries carry every family; an OpenMetrics scrape does not rename the Prometheus one", async () => {
    const { metrics, prom, open } = setup();
    metrics.observe(parse(FAULT_TRACE));
    const om = await open.metrics();
    expect(om.endsWith("# EOF\n")).toBe(true);
    for (const name of SVM_METRIC_NAMES) {
      expect(om).toContain(`# TYPE ${name.replace(/_total$/, "")} counter\n`);
      expect(om).toContain(`\n${name}{`);
    }
    const text = await prom.metrics();
    for (const name of SVM_METRIC_NAMES) expect(text).toContain(`# TYPE ${name} counter\n`);
    expect(text).toContain(`svm_migrated_bytes_total{gpu_id="0",kfd_gpu_id="3fe1",direction="h2d",trigger="pagefault_gpu"} 2097152\n`);
    // One SvmMetrics per registry: a second one is refused by prom-client.
    expect(() => new SvmMetrics({ registries: [prom], gpuIdOf: () => undefined })).toThrow(/already been registered/);
    expect(() => new SvmMetrics({ registries: [], gpuIdOf: () => undefined })).toThrow(InvariantError);
  });
});

describe("constant labels", () => {
  test("every series carries them (hostname, extra labels); bad or taken names are refused", async () => {
    const prom = new Registry();
    const metrics = new SvmMetrics({ registries: [prom], gpuIdOf: (id) => DME_INDEX.get(id), perProcess: true, constLabels: { hostname: "h1", cluster: "a" } });
    metrics.observe(parse(FAULT_TRACE));
    const s = await scrape(prom);
    expect(s.size).toBeGreaterThan(30);
    const keys = [...s.keys()];
    expect(keys.filter((k) => !(k.includes('cluster="a"') && k.includes('hostname="h1"') && k.includes('gpu_id="0"')))).toEqual([]);
    expect(s.get(seriesKey("svm_gpu_page_faults_total", { ...g0, pid: "4242", outcome: "migrated", hostname: "h1", cluster: "a" }))).toBe(1);
    for (const bad of ["gpu_id", "pid", "trigger", "__x", "9a", "a-b"]) {
      expect(() => new SvmMetrics({ registries: [new Registry()], gpuIdOf: () => undefined, constLabels: { [bad]: "v" } })).toThrow(InvariantError);
    }
  });
});

describe("per-process labels", () => {
  test("off by default: no pid label anywhere", async () => {
    const { metrics, prom } = setup();
    metrics.observe(parse(FAULT_TRACE));
    expect(await prom.metrics()).not.toContain("pid=");
  });

  test("fault and migration families get pid, bounded per family, the rest under pid=other", async () => {
    const { metrics, prom } = setup(true);
    const extra = 6;
    const lines: string[] = [];
    for (let pid = 1000; pid < 1000 + SVM_PROCESS_LABELS_MAX + extra; pid++) {
      lines.push(`7 1 -${pid} @10(3fe1) R`, `8 2 -${pid} @10(3fe1) U`, `6 3 -${pid} @20(2) 0->3fe1 0 0`);
    }
    // Migration family only: pids past the fault family's admissions still get their own label here.
    lines.push("6 4 -1 @30(1) 3fe1->0 3 0", "d 1 process_end_does_not_matter");
    metrics.observe(parse(lines.join("\n")));
    metrics.observe(parse("c 3e8 x\nd 3e8 x")); // PROCESS_START/END of pid 1000: nothing removed
    const s = await scrape(prom);
    const faults = family(s, "svm_gpu_page_faults_total");
    const pids = new Set(Object.keys(faults).map((k) => /pid="([^"]+)"/.exec(k)![1]));
    expect(pids.size).toBe(SVM_PROCESS_LABELS_MAX + 1);
    expect(pids.has("other")).toBe(true);
    expect(pids.has("1000")).toBe(true);
    expect(pids.has(String(1000 + SVM_PROCESS_LABELS_MAX))).toBe(false);
    expect(faults[L({ ...g0, pid: "1000", outcome: "mapped" })]).toBe(1);
    expect(faults[L({ ...g0, pid: "other", outcome: "mapped" })]).toBe(extra);
    expect(Object.values(faults).reduce((a, b) => a + b, 0)).toBe(SVM_PROCESS_LABELS_MAX + extra);
    expect(family(s, "svm_gpu_page_fault_starts_total")[L({ ...g0, pid: "other", access: "read" })]).toBe(extra);
    // No zero series for pid-labelled families: only what happened.
    expect(Object.keys(faults)).toHaveLength(SVM_PROCESS_LABELS_MAX + 1);
    const mig = family(s, "svm_migrations_total");
    // 64 admitted pids and `other`, which also has pid 1's d2h migration.
    expect(Object.keys(mig)).toHaveLength(SVM_PROCESS_LABELS_MAX + 2);
    expect(mig[L({ ...g0, pid: "other", direction: "h2d", trigger: "prefetch" })]).toBe(extra);
    // pid 1 came after the bound: it is `other` in the migration family too.
    expect(mig[L({ ...g0, pid: "other", direction: "d2h", trigger: "ttm_eviction" })]).toBe(1);
    expect(family(s, "svm_migrated_bytes_total")[L({ ...g0, pid: "1000", direction: "h2d", trigger: "prefetch" })]).toBe(2 * SMI_PAGE_bytes);
    // Families without pid are unchanged, and still zero-initialised.
    expect(family(s, "svm_queue_evictions_total")[L({ ...g0, trigger: "svm" })]).toBe(0);
    expect(await prom.metrics()).not.toMatch(/svm_queue_evictions_total\{[^}]*pid=/);
  });

  test("the bound is per family: a pid that missed one family can be admitted to another", async () => {
    const { metrics, prom } = setup(true);
    const lines: string[] = [];
    for (let pid = 1; pid <= SVM_PROCESS_LABELS_MAX; pid++) lines.push(`8 1 -${pid} @10(3fe1) M`);
    lines.push("8 1 -99999 @10(3fe1) M", "6 2 -99999 @20(1) 0->3fe1 1 0");
    metrics.observe(parse(lines.join("\n")));
    const s = await scrape(prom);
    expect(family(s, "svm_gpu_page_faults_total")[L({ ...g0, pid: "other", outcome: "migrated" })]).toBe(1);
    expect(family(s, "svm_migrations_total")).toEqual({ [L({ ...g0, pid: "99999", direction: "h2d", trigger: "pagefault_gpu" })]: 1 });
  });
});

describe("pairing of START and END events", () => {
  test("an END without START and a repeated MIGRATE_START are drops; a repeated fault START is not", async () => {
    const { metrics, prom } = setup();
    metrics.observe(
      parse(`8 1 -5 @10(3fe1) M
6 2 -5 @20(1) 0->3fe1 1 0
5 3 -5 @30(1) 0->3fe1 ffffffff:ffffffff 1
5 4 -5 @30(1) 0->3fe1 ffffffff:ffffffff 1
6 5 -5 @30(1) 0->3fe1 1 0
7 6 -5 @40(3fe1) W
7 7 -5 @40(3fe1) W
8 8 -5 @40(3fe1) M
5 9 -5 @50(1) 0->3fe1 ffffffff:ffffffff 1`),
    );
    // Same pid and address on another GPU is another pair.
    metrics.observe(parse("6 10 -5 @50(1) 0->8a52 1 0", G1));
    const s = await scrape(prom);
    expect(family(s, "svm_events_dropped_total")).toEqual({ [L(g0)]: 3, [L(g1)]: 1 });
    expect(metrics.pendingPairs()).toEqual({ migrations: 1, pageFaults: 0 });
  });

  test("the pending table is bounded: the oldest START is pushed out and counted", async () => {
    const { metrics, prom } = setup();
    const over = 5;
    const n = SVM_EVENT_PAIRS_PENDING_MAX + over;
    const starts: string[] = [];
    const faults: string[] = [];
    for (let i = 0; i < n; i++) {
      starts.push(`5 1 -9 @${(0x1000 + i).toString(16)}(1) 0->3fe1 ffffffff:ffffffff 0`);
      faults.push(`7 1 -9 @${(0x1000 + i).toString(16)}(3fe1) R`);
    }
    metrics.observe(parse(starts.join("\n")));
    metrics.observe(parse(faults.join("\n")));
    expect(metrics.pendingPairs()).toEqual({ migrations: SVM_EVENT_PAIRS_PENDING_MAX, pageFaults: SVM_EVENT_PAIRS_PENDING_MAX });
    let s = await scrape(prom);
    expect(family(s, "svm_event_pairs_evicted_total")).toEqual({
      [L({ ...g0, pair: "migration" })]: over,
      [L({ ...g0, pair: "page_fault" })]: over,
    });
    // Migration STARTs pushed out count as drops (their END was not seen); fault STARTs do not.
    expect(family(s, "svm_events_dropped_total")).toEqual({ [L(g0)]: over });
    // The ENDs of the newest STARTs all match: no new drop.
    const ends: string[] = [];
    for (let i = over; i < n; i++) ends.push(`6 2 -9 @${(0x1000 + i).toString(16)}(1) 0->3fe1 0 0`);
    metrics.observe(parse(ends.join("\n")));
    s = await scrape(prom);
    expect(family(s, "svm_events_dropped_total")).toEqual({ [L(g0)]: over });
    expect(metrics.pendingPairs().migrations).toBe(0);
  });

  test("SmiPairTable agrees with an insertion-ordered Map under random use (collisions, wraparound)", () => {
    const cap = 8;
    const evicted: number[] = [];
    const t = new SmiPairTable(cap, (gpu) => evicted.push(gpu));
    const model = new Map<string, number>();
    let modelEvicted: number[] = [];
    let seed = 12345;
    const rnd = (n: number): number => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed % n;
    };
    for (let step = 0; step < 20_000; step++) {
      // Small key space so that replacement, END hits and misses all happen; pages past 2^32.
      const gpu = [0x3fe1, 0xffffffff][rnd(2)]!;
      const pid = rnd(3) + 1;
      const page = rnd(2) === 0 ? rnd(6) : 2 ** 40 + rnd(6);
      const key = `${gpu}/${pid}/${page}`;
      if (rnd(2) === 0) {
        const had = model.delete(key);
        if (!had && model.size === cap) {
          const oldest = model.keys().next().value!;
          model.delete(oldest);
          modelEvicted.push(Number(oldest.split("/")[0]));
        }
        model.set(key, gpu);
        expect(t.start(gpu, pid, page)).toBe(had);
      } else {
        expect(t.end(gpu, pid, page)).toBe(model.delete(key));
      }
      expect(t.size).toBe(model.size);
      expect(evicted).toEqual(modelEvicted);
      evicted.length = 0;
      modelEvicted = [];
    }
  });
});

describe("promtool check metrics", () => {
  test("the exposition of several GPUs, with and without pid labels, has no problem", async () => {
    for (const perProcess of [false, true]) {
      const { metrics, prom } = setup(perProcess);
      metrics.gpuAdd(G1);
      metrics.observe(parse(FAULT_TRACE));
      metrics.observe(parse("9 1 -3 8a52 2\nb 1 -3 @10(4) 8a52 0\n6 1 -3 @10(4) 8a52->0 3 -5", G1));
      metrics.observe(parse("1 1:x\n6 1 -3 @10(4) 0->beef 77 0", UNKNOWN_GPU));
      metrics.dropped(UNKNOWN_GPU, 4);
      const text = await prom.metrics();
      const r = promtoolCheckMetrics(text);
      expect({ perProcess, code: r.code, output: r.output }).toEqual({ perProcess, code: 0, output: "" });
    }
  });
});
