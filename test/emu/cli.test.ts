/** `svmrt kfd info|events --emulated` through the CLI entry: outputs, JSON shapes, exit codes. */
import { describe, expect, test } from "bun:test";
import { EXIT } from "../../runtime/cli/exit.ts";
import { runCli } from "../cli-helpers.ts";

const G0 = 0x3fe1;
const G1 = 0x3fe2;
const GIB = 2 ** 30;

describe("svmrt kfd info --emulated", () => {
  test("--json: emulated, profile, version, process GPUs with available VRAM, topology", async () => {
    const r = await runCli(["kfd", "info", "--emulated", "--json"]);
    expect(r.code).toBe(EXIT.ok);
    const j = JSON.parse(r.out);
    expect(j.emulated).toBe(true);
    expect(j.profile).toBe("dev-2gpu");
    expect(j.version).toEqual({ major: 1, minor: 11 });
    expect(j.xnack).toBe(true);
    expect(j.processGpus.map((g: { gpuId: number; availableBytes: number }) => [g.gpuId, g.availableBytes])).toEqual([
      [G0, 32 * GIB],
      [G1, 32 * GIB],
    ]);
    expect(j.gpus.map((g: { gpuId: number; vramBytes: number; name: string }) => [g.gpuId, g.vramBytes, g.name])).toEqual([
      [G0, 32 * GIB, "emulated-dev-2gpu"],
      [G1, 32 * GIB, "emulated-dev-2gpu"],
    ]);
    expect(j.hives).toEqual([]);
    expect(j.links).toHaveLength(4);
    expect(j.links.every((l: { type: string }) => l.type === "PCIe")).toBe(true);
  });

  test("text says EMULATED; --profile picks the machine (hives and XGMI links)", async () => {
    const r = await runCli(["kfd", "info", "--emulated", "--profile", "mi250x-4"]);
    expect(r.code).toBe(EXIT.ok);
    expect(r.out.split("\n")[0]).toStartWith("EMULATED: no GPU hardware; profile mi250x-4");
    expect(r.out).toContain("KFD ioctl 1.11");
    expect(r.out).toContain("topology (emulated, profile mi250x-4)");
    expect(r.out).toContain("hive 0x250:");
    expect(r.out).toMatch(/link 1 -> 2 XGMI weight 15/);
  });

  test("bad profile: exit 3; --topology-root with --emulated: exit 2", async () => {
    const bad = await runCli(["kfd", "info", "--emulated", "--profile", "no-such-profile"]);
    expect(bad.code).toBe(EXIT.config);
    expect((await runCli(["kfd", "info", "--emulated", "--topology-root", "/tmp"])).code).toBe(EXIT.usage);
  });
});

describe("svmrt kfd events --emulated", () => {
  test("--json --max 8: the first fault of stream, each line marked emulated", async () => {
    const r = await runCli(["kfd", "events", "--emulated", "--json", "--max", "8"]);
    expect(r.code).toBe(EXIT.ok);
    const lines = r.out.trim().split("\n").map((l) => JSON.parse(l));
    expect(lines).toHaveLength(8);
    expect(lines.every((e: { emulated: boolean; gpuId: number; pid: number }) => e.emulated && e.gpuId === G0 && e.pid === 4242)).toBe(true);
    expect(lines.slice(0, 4).map((e: { kind: string }) => e.kind)).toEqual(["PAGE_FAULT_START", "MIGRATE_START", "MIGRATE_END", "PAGE_FAULT_END"]);
    expect(lines[0]).toEqual({ kind: "PAGE_FAULT_START", gpuId: G0, ns: "45000", pid: 4242, page: 0x100000, node: G0, write: false, emulated: true });
    expect(r.err).toContain("emulated (profile dev-2gpu, workload stream): 8 events shown, 0 dropped");
  });

  test("the whole stream: exactly what svmrt sim --workload stream reports", async () => {
    const sim = JSON.parse((await runCli(["sim", "--workload", "stream", "--json"])).out);
    const r = await runCli(["kfd", "events", "--emulated", "--json", "--events", "PAGE_FAULT_START,PAGE_FAULT_END,MIGRATE_START,MIGRATE_END"]);
    expect(r.code).toBe(EXIT.ok);
    const kinds: Record<string, number> = {};
    for (const l of r.out.trim().split("\n")) {
      const k = JSON.parse(l).kind as string;
      kinds[k] = (kinds[k] ?? 0) + 1;
    }
    expect(kinds).toEqual({
      PAGE_FAULT_START: sim.gpuFaults,
      PAGE_FAULT_END: sim.gpuFaults,
      MIGRATE_START: sim.migrations.h2d,
      MIGRATE_END: sim.migrations.h2d,
    });
    expect(sim.gpuFaults).toBe(512);
  });

  test("text lines with an EMULATED header; --gpu and --events filter; --workload picks", async () => {
    const r = await runCli(["kfd", "events", "--emulated", "--workload", "pingpong", "--gpu", "0x3fe2", "--events", "MIGRATE_START", "--max", "3"]);
    expect(r.code).toBe(EXIT.ok);
    const lines = r.out.trim().split("\n");
    expect(lines[0]).toBe("# EMULATED: no GPU hardware; profile dev-2gpu, workload pingpong, pid 4242");
    expect(lines.slice(1)).toHaveLength(3);
    for (const l of lines.slice(1)) expect(l).toStartWith("gpu 0x3fe2 MIGRATE_START ");
  });

  test("usage errors: unknown workload, emulator flags without --emulated", async () => {
    expect((await runCli(["kfd", "events", "--emulated", "--workload", "nope"])).code).toBe(EXIT.usage);
    expect((await runCli(["kfd", "events", "--profile", "dev-2gpu"])).code).toBe(EXIT.usage);
    expect((await runCli(["kfd", "events", "--emulated", "--gpu", "0x1234"])).code).toBe(EXIT.device); // SMI_EVENTS: EINVAL
  });
});
