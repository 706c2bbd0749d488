import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import {
  DECISION_STRIDE,
  F,
  FAULT_STRIDE,
  type ObservedEvent,
  type PolicyContext,
  emptyFault,
  writeFault,
} from "../../runtime/policy/contracts/migration.ts";
import { PolicyError } from "../../runtime/errors.ts";
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

async function load(plugin: string, onFailure = "fallback"): Promise<Policy> {
  const dir = tempFolder({ "p.js": plugin, "p.yaml": policyYaml(`  plugin: p.js\n  onFailure: ${onFailure}\n`) });
  return Policy.load(join(dir, "p.yaml"), { pluginRoots: [dir], sandbox: { deterministic: true } });
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
    expect(d.observeKinds).toEqual(new Set(["migrate", "evict"]));
    d.observe([ev("migrate", 5), ev("unmap", 6), ev("fault", 7), ev("evict", 8)], CTX);
    const out = new Float64Array(DECISION_STRIDE);
    // restoreLocation's answer is no GPU: the host rejects it, but it is computed from the
    // plugin's state, which the fallback log message quotes.
    d.decideFaults(oneFault(100), 1, CTX, out);
    const rec = p.log.entries().find((e) => e.hook === "restoreLocation" && e.fallback);
    expect(rec?.fallback?.message).toContain("2008");
    expect(p.log.entries().filter((e) => e.hook === "observe").map((e) => e.count)).toEqual([2]);
  });

  test("a failing observe falls back (counted) while the batch's decisions still come from the plugin", async () => {
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
    expect(d.fallbacks).toBe(1);
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
