import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import {
  DECISION_STRIDE,
  F,
  FAULT_STRIDE,
  OBSERVED_TRIGGER_NAMES,
  type ObservedEvent,
  type PolicyContext,
  emptyFault,
  observeWanted,
  parseObserveKinds,
  writeFault,
} from "../../runtime/policy/contracts/migration.ts";
import { MIGRATE_TRIGGER, QUEUE_EVICTION_TRIGGER, SVM_UNMAP_TRIGGER } from "../../runtime/kfd/uapi.ts";
import { PolicyError } from "../../runtime/errors.ts";
import { DECISION_LOG_ENTRIES_MAX } from "../../runtime/policy/decision-log.ts";
import { Policy } from "../../runtime/policy/policy.ts";
import { policyYaml, tempFolder } from "./helpers.ts";

/**
 * Observe delivery: events are held and reach the plugin, in order and filtered by its
 * observeKinds, before its next decision (riding with the fault batch) or at flush().
 */
const CTX: PolicyContext = { gpus: [{ id: 0x1001, index: 0, hiveId: 0, appApu: false, vramBytes: 2 ** 34 }], xnack: true, nowNs: 1000 };

const ev = (kind: ObservedEvent["kind"], start: number, nowNs = 10): ObservedEvent => ({ kind, nowNs, gpuId: 0x1001, start, npages: 1, from: 0, to: 0x1001, trigger: 1 });

function oneFault(addr: number): Float64Array {
  const f = emptyFault();
  f.gpuId = 0x1001;
  f.addr = addr;
  f.rangeStart = 0;
  f.rangeLast = 1 << 20;
  f.accessMask = 1;
  const b = new Float64Array(FAULT_STRIDE);
  writeFault(b, 0, f);
  return b;
}

async function load(plugin: string, onFailure = "fallback", logBatches: "all" | "failures" = "all"): Promise<Policy> {
  const dir = tempFolder({ "p.js": plugin, "p.yaml": policyYaml(`  plugin: p.js\n  onFailure: ${onFailure}\n`) });
  return Policy.load(join(dir, "p.yaml"), { pluginRoots: [dir], sandbox: { deterministic: true }, logBatches });
}

// restoreLocation answers what observe saw so far: (events seen) * 1000 + last start.
const RECORDER = `
let seen = 0, last = 0;
export const observeKinds = ["migrate", "evict"];
export function observe(input) { for (const e of input.events) { seen++; last = e.start; if (e.kind === "evict" && e.start === 666) throw new Error("evict 666"); } }
export function restoreLocation(f) { return seen * 1000 + last; }
`;

describe("observe delivery", () => {
  test("events reach the plugin before its next decision, filtered by observeKinds", async () => {
    using p = await load(RECORDER);
    const d = p.migrationDecider();
    expect(d.observeMasks).toMatchObject({ migrate: 0xffffffff, evict: 0xffffffff, unmap: 0, fault: 0 });
    d.observe([ev("migrate", 5), ev("unmap", 6), ev("fault", 7), ev("evict", 8)], CTX);
    const out = new Float64Array(DECISION_STRIDE);
    // restoreLocation's answer is no GPU: the host rejects it, but it is computed from the
    // plugin's state, which the fallback log message quotes.
    d.decideFaults(oneFault(100), 1, CTX, out);
    const rec = p.log.entries().find((e) => e.hook === "restoreLocation" && e.fallback);
    expect(rec?.fallback?.message).toContain("2008");
    expect(p.log.entries().filter((e) => e.hook === "observe").map((e) => e.count)).toEqual([2]);
  });

  test("a failing observe is recorded (it decides nothing: no fallback) while the batch's decisions still come from the plugin", async () => {
    using p = await load(
      "export function observe() { throw new Error('evict 666'); }\nexport function restoreLocation(f) { return f.gpuId; }\nexport function migrationWindow(f) { return { start: f.addr, last: f.addr }; }",
    );
    const d = p.migrationDecider();
    d.observe([ev("evict", 666)], CTX);
    const out = new Float64Array(DECISION_STRIDE);
    d.decideFaults(oneFault(100), 1, CTX, out);
    const obs = p.log.entries().filter((e) => e.hook === "observe");
    expect(obs).toHaveLength(1);
    expect(obs[0]!.fallback).toMatchObject({ reason: "exception", message: expect.stringContaining("evict 666") });
    expect([out[0], out[1], out[2]]).toEqual([0x1001, 100, 100]);
    expect(d.fallbacks).toBe(0);
    expect(p.log.failures().groups).toEqual([{ hook: "observe", reason: "exception", records: 1, example: expect.stringContaining("evict 666") }]);
  });

  test("a failing fault batch is recorded once, under its hooks, not also as a failed observe", async () => {
    using p = await load("export function observe() {}\nexport function restoreLocation(f) { throw new Error('boom in restoreLocation'); }");
    const d = p.migrationDecider();
    for (let k = 0; k < 3; k++) {
      d.observe([ev("migrate", k)], CTX);
      d.decideFaults(oneFault(100 + k), 1, CTX, new Float64Array(DECISION_STRIDE));
    }
    expect(d.fallbacks).toBe(3);
    expect(p.log.failures()).toEqual({ groups: [{ hook: "restoreLocation", reason: "exception", records: 3, example: expect.stringContaining("boom in restoreLocation") }], otherRecords: 0 });
  });

  test("failure groups cover the whole run, not only the records the log still holds", async () => {
    using p = await load("let k = 0;\nexport function restoreLocation(f) { k++; if (k === 1) throw new Error('first'); return 7; }", "fallback", "failures");
    const d = p.migrationDecider();
    const n = DECISION_LOG_ENTRIES_MAX + 200;
    for (let k = 0; k < n; k++) d.decideFaults(oneFault(100), 1, CTX, new Float64Array(DECISION_STRIDE));
    expect(p.log.entries()).toHaveLength(DECISION_LOG_ENTRIES_MAX);
    expect(p.log.failures().groups).toEqual([
      { hook: "restoreLocation", reason: "exception", records: 1, example: expect.stringContaining("first") },
      { hook: "restoreLocation", reason: "invalid-output", records: n - 1, example: expect.stringContaining("7") },
    ]);
  });

  test("trigger numbers outside 0..31 never match a selected trigger", () => {
    const ok = parseObserveKinds(["unmap:unmap_from_cpu", "migrate"]);
    if (!("masks" in ok)) throw new Error(ok.error);
    for (const t of [34, 66, -30, 2.5, 32, Number.NaN]) expect(observeWanted(ok.masks, "unmap", t)).toBe(false);
    expect(observeWanted(ok.masks, "migrate", 40)).toBe(true);
    const long = parseObserveKinds([`unmap:${"x".repeat(5000)}`]);
    expect("error" in long && long.error.length < 200).toBe(true);
  });

  test("fail-closed: a failing observe stops the run", async () => {
    using p = await load(RECORDER, "fail-closed");
    const d = p.migrationDecider();
    d.observe([ev("evict", 666)], CTX);
    expect(() => d.decideFaults(oneFault(100), 1, CTX, new Float64Array(DECISION_STRIDE))).toThrow(PolicyError);
  });

  test("flush hands over events no decision followed", async () => {
    using p = await load(RECORDER);
    const d = p.migrationDecider();
    d.observe([ev("migrate", 1)], CTX);
    expect(p.log.entries().filter((e) => e.hook === "observe")).toHaveLength(0);
    d.flush?.();
    expect(p.log.entries().filter((e) => e.hook === "observe").map((e) => e.count)).toEqual([1]);
  });

  test("an async observe is refused in the batch path", async () => {
    using p = await load("export async function observe() {}\nexport function restoreLocation(f) { return f.gpuId; }");
    const d = p.migrationDecider();
    d.observe([ev("migrate", 1)], CTX);
    d.flush?.();
    expect(p.log.entries().find((e) => e.hook === "observe")?.fallback).toMatchObject({ reason: "invalid-output", message: expect.stringContaining("promise") });
  });

  test("observeKinds must name event kinds", async () => {
    for (const bad of ['["migrate", "teleport"]', "[]", '"migrate"']) {
      const err = await load(`export const observeKinds = ${bad};\nexport function observe() {}`).catch((e) => e);
      expect(err).toBeInstanceOf(PolicyError);
      expect(String(err.message)).toContain("observeKinds");
    }
  });

  test("observeKinds entries may select one trigger of a kind; entries add up", () => {
    const ok = parseObserveKinds(["migrate:prefetch", "migrate:ttm_eviction", "unmap:unmap_from_cpu", "evict"]);
    if (!("masks" in ok)) throw new Error(ok.error);
    expect(ok.masks).toEqual({ fault: 0, migrate: 0b1001, evict: 0xffffffff, unmap: 0b100, "queue-evict": 0, "queue-restore": 0 });
    expect(observeWanted(ok.masks, "unmap", SVM_UNMAP_TRIGGER.UNMAP_FROM_CPU)).toBe(true);
    expect(observeWanted(ok.masks, "unmap", SVM_UNMAP_TRIGGER.MMU_NOTIFY_MIGRATE)).toBe(false);
    expect(observeWanted(ok.masks, "migrate", MIGRATE_TRIGGER.PAGEFAULT_GPU)).toBe(false);
    expect(observeWanted(undefined, "queue-restore", 0)).toBe(true);
    const errors: [unknown, string][] = [
      [["unmap:freed"], 'observeKinds[0]: "freed" is no unmap trigger (mmu_notify, mmu_notify_migrate, unmap_from_cpu)'],
      [["migrate", "queue-restore:svm"], "observeKinds[1]: queue-restore events have no trigger to select"],
      [["teleport:svm"], 'observeKinds[0]: "teleport" is no event kind'],
      [[3], "observeKinds[0]: 3 is not a string"],
    ];
    for (const [v, message] of errors) {
      const r = parseObserveKinds(v);
      expect("error" in r ? r.error : "").toContain(message);
    }
  });

  test("trigger names follow the kernel's numbers", () => {
    const lower = (o: Record<string, number>) => Object.entries(o).sort((a, b) => a[1] - b[1]).map(([k]) => k.toLowerCase());
    expect(OBSERVED_TRIGGER_NAMES.migrate).toEqual(lower(MIGRATE_TRIGGER));
    expect(OBSERVED_TRIGGER_NAMES.fault).toEqual(lower(MIGRATE_TRIGGER));
    expect(OBSERVED_TRIGGER_NAMES.evict).toEqual(lower(MIGRATE_TRIGGER));
    expect(OBSERVED_TRIGGER_NAMES.unmap).toEqual(lower(SVM_UNMAP_TRIGGER));
    expect(OBSERVED_TRIGGER_NAMES["queue-evict"]).toEqual(lower(QUEUE_EVICTION_TRIGGER));
  });

  test("the decider passes on only the selected triggers", async () => {
    using p = await load(`let seen = [];
export const observeKinds = ["unmap:unmap_from_cpu"];
export function observe(input) { for (const e of input.events) seen.push(e.start); }
export function restoreLocation(f) { return seen.length * 1000 + (seen[0] ?? 0); }`);
    const d = p.migrationDecider();
    const unmap = (start: number, trigger: number): ObservedEvent => ({ ...ev("unmap", start), trigger });
    d.observe([unmap(5, SVM_UNMAP_TRIGGER.MMU_NOTIFY_MIGRATE), unmap(7, SVM_UNMAP_TRIGGER.UNMAP_FROM_CPU), unmap(9, SVM_UNMAP_TRIGGER.MMU_NOTIFY)], CTX);
    d.decideFaults(oneFault(100), 1, CTX, new Float64Array(DECISION_STRIDE));
    expect(p.log.entries().find((e) => e.hook === "restoreLocation" && e.fallback)?.fallback?.message).toContain("1007");
  });

  // observeBatch sees what observe sees, in place: (events seen) * 1000 + last start.
  const BATCH_RECORDER = `
let seen = 0, last = 0, kinds = "";
export function observeBatch(b) {
  for (let i = 0, o = 0; i < b.n; i++, o += b.stride) {
    seen++; last = b.events[o + b.E.start];
    kinds += b.events[o + b.E.kind] === b.K.evict ? "e" : "m";
    if (b.events[o + b.E.trigger] === 99) throw new Error("trigger 99");
  }
}
export function observe() { throw new Error("observe must not run when observeBatch is exported"); }
export function restoreLocation(f) { return seen * 1000 + last; }
export function migrationWindow(f) { return { start: f.addr, last: f.addr }; }
export function evictionVictim() { throw new Error(kinds); }
`;

  test("observeBatch reads riding events in place and takes precedence over observe", async () => {
    using p = await load(BATCH_RECORDER);
    expect(p.hooks.has("observe")).toBe(true);
    const d = p.migrationDecider();
    d.observe([ev("migrate", 5), ev("evict", 8), ev("migrate", 11)], CTX);
    d.decideFaults(oneFault(100), 1, CTX, new Float64Array(DECISION_STRIDE));
    expect(p.log.entries().find((e) => e.hook === "restoreLocation+migrationWindow" && e.fallback)?.fallback?.message).toContain("3011");
    expect(p.log.entries().filter((e) => e.hook === "observe").map((e) => [e.count, e.fallback])).toEqual([[3, undefined]]);
    // The kinds arrive as codes: evictionVictim throws the string it built.
    d.evictionVictim({ gpuId: 0x1001, neededPages: 1, candidates: [{ rangeStart: 0, npages: 1, vramPages: 1, lastUseNs: 0, lastMigrationNs: 0 }] }, CTX);
    expect(p.log.entries().find((e) => e.hook === "evictionVictim")?.fallback?.message).toContain("mem");
  });

  test("observeBatch through the observe adapter (flush) and through invoke (eval, inline tests)", async () => {
    using p = await load(BATCH_RECORDER);
    const d = p.migrationDecider();
    d.observe([ev("migrate", 21)], CTX);
    d.flush?.();
    expect(p.log.entries().filter((e) => e.hook === "observe").map((e) => [e.count, e.fallback])).toEqual([[1, undefined]]);
    const ok = await p.invoke("observe", { events: [ev("evict", 30), ev("migrate", 40)] }, { gpus: CTX.gpus, xnack: true, nowNs: 5 });
    expect([ok.by, ok.value]).toEqual(["plugin", null]);
    const bad = await p.invoke("observe", { events: [{ ...ev("migrate", 50), trigger: 99 }] }, { gpus: CTX.gpus, xnack: true, nowNs: 5 });
    expect(bad.by).toBe("fallback");
    expect(bad.failure).toMatchObject({ reason: "exception", message: expect.stringContaining("trigger 99") });
    const r = await p.invoke<number>("restoreLocation", { gpuId: 0x1001, gpuIndex: 0, addr: 7, rangeStart: 0, rangeLast: 9, accessMask: 1 }, { gpus: CTX.gpus, xnack: true, nowNs: 5 });
    // 1 + 2 + 1 events seen (the failing batch counted its event before throwing), last start 50.
    expect(r.failure?.message).toContain("4050");
  });

  test("logBatches failures: the log keeps the batches that failed, not the others", async () => {
    using p = await load(RECORDER, "fallback", "failures");
    const d = p.migrationDecider();
    d.observe([ev("migrate", 5)], CTX);
    // restoreLocation answers 1005, no GPU: an invalid batch, recorded.
    d.decideFaults(oneFault(100), 1, CTX, new Float64Array(DECISION_STRIDE));
    expect(p.log.entries().map((e) => [e.hook, e.fallback?.reason])).toEqual([["restoreLocation", "invalid-output"]]);
    d.observe([ev("evict", 666)], CTX);
    d.decideFaults(oneFault(100), 1, CTX, new Float64Array(DECISION_STRIDE));
    expect(p.log.entries().map((e) => [e.hook, e.fallback?.reason])).toEqual([
      ["restoreLocation", "invalid-output"],
      ["observe", "exception"],
      ["restoreLocation", "invalid-output"],
    ]);
    using ok = await load("export function observe() {}\nexport function restoreLocation(f) { return f.gpuId; }", "fallback", "failures");
    const d2 = ok.migrationDecider();
    d2.observe([ev("migrate", 5)], CTX);
    d2.decideFaults(oneFault(100), 1, CTX, new Float64Array(DECISION_STRIDE));
    d2.observe([ev("migrate", 6)], CTX);
    d2.flush?.();
    expect(ok.log.entries()).toEqual([]);
    expect(d2.fallbacks).toBe(0);
  });

  test("a plugin that freezes or redefines the batch objects it was handed still gets its batches", async () => {
    // Every batch object is frozen or has its n redefined to -1 by the plugin; the window
    // [addr - events seen, addr + n - 1] is right only when the next batch is whole again.
    using p = await load(`let seen = 0;
export function observeBatch(b) { seen += b.n; Object.freeze(b); }
export function restoreLocationBatch(b) { b.decisions[0] = b.faults[b.F.gpuId]; Object.defineProperty(b, "n", { value: -1, writable: false }); }
export function migrationWindowBatch(b) { b.decisions[1] = b.faults[b.F.addr] - seen; b.decisions[2] = b.faults[b.F.addr] + b.n - 1; Object.freeze(b); }`);
    const d = p.migrationDecider();
    const out = new Float64Array(DECISION_STRIDE);
    for (let k = 1; k <= 3; k++) {
      d.observe([ev("migrate", k), ev("evict", k)], CTX);
      d.decideFaults(oneFault(100 + k), 1, CTX, out);
      expect([out[0], out[1], out[2]]).toEqual([0x1001, 100 + k - 2 * k, 100 + k]);
    }
    expect(d.fallbacks).toBe(0);
  });

  test("the kernel's window is unaffected by riding events (records stay first)", async () => {
    using p = await load(RECORDER);
    const d = p.migrationDecider();
    d.observe([ev("migrate", 3), ev("migrate", 4)], CTX);
    const out = new Float64Array(DECISION_STRIDE);
    const faults = oneFault(1000);
    faults[F.granularity] = 9;
    d.decideFaults(faults, 1, CTX, out);
    expect([out[1], out[2]]).toEqual([512, 1023]);
  });
});
