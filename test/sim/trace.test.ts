/** Trace readers: KFD SMI event text (several pids, old and new MIGRATE_END) and JSONL. */
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { ConfigError } from "../../runtime/errors.ts";
import { nativeKernelDefault } from "../../runtime/policy/contracts/migration.ts";
import { runSim } from "../../runtime/sim/engine.ts";
import { loadProfile } from "../../runtime/sim/profile.ts";
import { parseTrace } from "../../runtime/sim/trace.ts";
import { SVM_ATTR } from "../../runtime/svm/constants.ts";

const profile = loadProfile("dev-2gpu");
const FIX = join(import.meta.dir, "fixtures", "two-pids.smi");

describe("SMI event text", () => {
  test("faults become GPU accesses, CPU-fault migrations CPU accesses, prefetches hints; two pids", () => {
    const warn: string[] = [];
    const w = parseTrace(FIX, readFileSync(FIX, "utf8"), profile, { onBadLine: "stop", warn: (t) => warn.push(t) });
    expect(w.badLines).toBe(0);
    expect(warn).toEqual([]);
    expect(w.processes.map((p) => p.pid)).toEqual([4242, 5151]);
    const streams = w.streams.map((s) => [s.pid, s.agent, s.ops[0]!.op === "timed" ? s.ops[0]!.n : -1]);
    expect(streams).toEqual([
      [4242, -1, 1],
      [4242, 0, 1],
      [5151, 1, 1],
    ]);
    const gpuOp = w.streams[1]!.ops[0]!;
    if (gpuOp.op !== "timed") throw new Error("timed op expected");
    expect([gpuOp.times[0], gpuOp.pages[0], gpuOp.writes[0]]).toEqual([0, 0x100005, 1]);
    expect(w.hints.length).toBe(1);
    expect(w.hints[0]!.attrs).toEqual([[SVM_ATTR.PREFETCH_LOC, 0x3fe2]]);
    expect(w.hints[0]!.atNs).toBe(8_300_000);
    const r = runSim({ profile, workload: w, decider: nativeKernelDefault(), seed: 1 });
    expect(r.gpuFaults).toBe(2);
    expect(r.cpuFaults).toBe(1);
    expect(r.migrations.byTrigger).toEqual({ prefetch: 1, pagefault_gpu: 2, pagefault_cpu: 1, ttm_eviction: 0 });
    expect(r.bytesMigrated).toEqual({ h2d: (512 + 512 + 1024) * 4096, d2h: 512 * 4096, d2d: 0 });
  });

  test("lines out of time order (several GPUs' fds interleaved): time zero is the earliest event", () => {
    // GPU 0x3fe2's fault was read after GPU 0x3fe1's, though it happened 0.5 ms earlier.
    const text = ["7 2000000 -4242 @100005(3fe1) R", "7 1500000 -4242 @100207(3fe2) W", "7 2600000 -4242 @100009(3fe1) R"].join("\n");
    const w = parseTrace("ooo.smi", text, profile, { onBadLine: "stop", warn: () => {} });
    const times = w.streams.map((s) => (s.ops[0]!.op === "timed" ? [...s.ops[0]!.times] : []));
    expect(times).toEqual([[500_000, 1_100_000], [0]]);
  });

  test("a bad line stops with file:line:col, or is skipped and reported with its line", () => {
    const text = "7 100 -1 @10(3fe1) W\n6 100 -1 @10(200) 0->3fe1\nzz nonsense\n7 200 -1 @20(3fe1) X\n";
    let err: unknown;
    try {
      parseTrace("t.smi", text, profile, { onBadLine: "stop", warn: () => {} });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).message).toStartWith("t.smi:2:3: MIGRATE_END");
    const warn: string[] = [];
    const w = parseTrace("t.smi", text, profile, { onBadLine: "skip", warn: (t) => warn.push(t) });
    expect(w.badLines).toBe(3);
    expect(warn.map((x) => x.split(": ")[0])).toEqual(["t.smi:2:3", "t.smi:3:1", "t.smi:4:3"]);
    expect(w.streams.length).toBe(1);
  });

  test("more gpu_ids than the profile has GPUs is a bad line", () => {
    const text = "7 1 -1 @10(a) R\n7 2 -1 @10(b) R\n7 3 -1 @10(c) R\n";
    const warn: string[] = [];
    const w = parseTrace("t.smi", text, profile, { onBadLine: "skip", warn: (t) => warn.push(t) });
    expect(w.badLines).toBe(1);
    expect(warn[0]).toStartWith("t.smi:3:3: skipped: a GPU of profile dev-2gpu");
  });
});

describe("JSONL access traces", () => {
  test("records with pages expand to accesses; bad records report their line", () => {
    const text = [
      '{"t_ns": 0, "agent": "gpu0", "page": "0x100000", "pages": 3, "write": true}',
      '{"t_ns": 5000000, "pid": 9, "agent": "cpu", "page": 1048576}',
      '{"t_ns": -1, "agent": "gpu0", "page": 1}',
      '{"t_ns": 1, "agent": "gpu7", "page": 1}',
      "not json",
      '{"t_ns": 1, "agent": "gpu0", "page": 1, "colour": "red"}',
    ].join("\n");
    const warn: string[] = [];
    const w = parseTrace("a.jsonl", text, profile, { onBadLine: "skip", warn: (t) => warn.push(t) });
    expect(w.badLines).toBe(4);
    expect(warn.map((x) => x.split(": ")[0])).toEqual(["a.jsonl:3:1", "a.jsonl:4:1", "a.jsonl:5:1", "a.jsonl:6:1"]);
    expect(w.processes.map((p) => p.pid)).toEqual([9, 4242]);
    const r = runSim({ profile, workload: w, decider: nativeKernelDefault(), seed: 1 });
    expect(r.accesses).toBe(4);
    expect(r.gpuFaults).toBe(1);
    expect(r.bytesMigrated.h2d).toBe(2 * 2 ** 20);
  });
});
