import { beforeEach, describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { join } from "node:path";
import type { CliIO } from "../../runtime/cli/command.ts";
import { EXIT } from "../../runtime/cli/exit.ts";
import { kfdCommandCreate } from "../../runtime/cli/kfd.ts";
import { main } from "../../runtime/cli.ts";
import { ERRNO } from "../../runtime/ffi/errno.ts";
import { DOUBLE_SCRIPT } from "../../runtime/ffi/kfd-double.ts";
import type { Syscalls } from "../../runtime/ffi/syscalls.ts";
import { abiDescribe } from "../../runtime/kfd/uapi.ts";
import { kfdDoubleLoad } from "./double.ts";

const XGMI = join(import.meta.dir, "..", "fixtures", "kfd", "xgmi-2gpu");
const { sys, ctl } = kfdDoubleLoad();
/** The shared double, with unload() disarmed: the command unloads what it is given. */
const shared = (): Syscalls => ({ ...sys, unload() {} });

function capture(): CliIO & { stdout: string; stderr: string } {
  const io = {
    stdout: "",
    stderr: "",
    interactive: false,
    out(t: string) {
      io.stdout += t;
    },
    err(t: string) {
      io.stderr += t;
    },
  };
  return io;
}

async function run(argv: string[], deps = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  const io = capture();
  const cmd = kfdCommandCreate({ syscalls: shared, sysfsRoot: XGMI, ...deps });
  let code: number;
  try {
    code = await cmd.run(argv, io);
  } catch (e) {
    // What runtime/cli.ts does with a thrown error.
    const { exitCodeOf } = await import("../../runtime/cli/exit.ts");
    code = exitCodeOf(e);
    io.err(`${(e as Error).message}\n`);
  }
  return { code, stdout: io.stdout, stderr: io.stderr };
}

beforeEach(() => ctl.reset(2, 11));

describe("svmrt kfd", () => {
  test("abi --json is the uapi table in the probe's shape", async () => {
    const r = await run(["abi", "--json"]);
    expect(r.code).toBe(EXIT.ok);
    expect(JSON.parse(r.stdout)).toEqual(abiDescribe());
    expect(JSON.parse(r.stdout).ioctls.SVM).toBe(0xc0184b20);
  });

  test("--help on every subcommand", async () => {
    for (const sub of ["abi", "info", "events"]) {
      const r = await run([sub, "--help"]);
      expect(r.code).toBe(EXIT.ok);
      expect(r.stdout).toStartWith(`Usage: svmrt kfd ${sub}`);
    }
    expect((await run(["--help"])).stdout).toContain("svmrt kfd <abi|info|events>");
    expect((await run(["bogus"])).code).toBe(EXIT.usage);
  });

  test("info --json: driver version, process GPUs with available memory, fixture topology", async () => {
    const r = await run(["info", "--json"]);
    expect(r.code).toBe(EXIT.ok);
    const j = JSON.parse(r.stdout);
    expect(j.version).toEqual({ major: 1, minor: 11 });
    expect(j.xnack).toBe(false);
    expect(j.processGpus.map((g: { gpuId: number; availableBytes: number }) => [g.gpuId, g.availableBytes])).toEqual([
      [ctl.gpuId(0), 64 * 2 ** 30],
      [ctl.gpuId(1), 64 * 2 ** 30],
    ]);
    expect(j.gpus.map((g: { gpuId: number }) => g.gpuId)).toEqual([16353, 35410]);
    expect(j.hives).toEqual([{ hiveId: "0x9634df6ba6e2e040", gpuIds: [16353, 35410] }]);
    expect(j.links.filter((l: { type: string }) => l.type === "XGMI").map((l: { fromGpuId: number; toGpuId: number }) => [l.fromGpuId, l.toGpuId])).toEqual([
      [16353, 35410],
      [35410, 16353],
    ]);
  });

  test("info text names the topology root given", async () => {
    const r = await run(["info", "--topology-root", join(XGMI, "topology")]);
    expect(r.code).toBe(EXIT.ok);
    expect(r.stdout).toContain("KFD ioctl 1.11, XNACK off");
    expect(r.stdout).toContain("link 1 -> 2 XGMI weight 15 bandwidth 50000..64000 MB/s");
  });

  test("no device: exit 5; no permission: exit 6; one line saying what to do", async () => {
    ctl.script(DOUBLE_SCRIPT.OPEN_FAILS, 0, 0, ERRNO.ENOENT, 1);
    const none = await run(["info"]);
    expect(none.code).toBe(EXIT.noDevice);
    expect(none.stderr.trim().split("\n").length).toBe(1);
    expect(none.stderr).toContain("ENOENT");
    ctl.script(DOUBLE_SCRIPT.OPEN_FAILS, 0, 0, ERRNO.EACCES, 1);
    const denied = await run(["events"]);
    expect(denied.code).toBe(EXIT.permission);
    expect(denied.stderr).toContain("render");
  });

  test.skipIf(existsSync("/dev/kfd"))("without /dev/kfd, svmrt kfd info exits 5 through the CLI entry (libc path)", async () => {
    const io = capture();
    const code = await main(["kfd", "info"], io);
    expect(code).toBe(EXIT.noDevice);
    expect(io.stderr).toStartWith("svmrt kfd: open /dev/kfd failed: ENOENT");
  });

  test("emulator flags need --emulated; the no-device line points at --emulated", async () => {
    const r = await run(["events", "--workload", "stream"]);
    expect(r.code).toBe(EXIT.usage);
    expect(r.stderr).toContain("--workload needs --emulated");
    expect((await run(["info", "--profile", "dev-2gpu"])).code).toBe(EXIT.usage);
    ctl.script(DOUBLE_SCRIPT.OPEN_FAILS, 0, 0, ERRNO.ENOENT, 1);
    const none = await run(["info"]);
    expect(none.code).toBe(EXIT.noDevice);
    expect(none.stderr.trim().split("\n")).toHaveLength(1);
    expect(none.stderr).toContain("add --emulated");
  });

  test("events --gpu --events --json --max: a live stream from the double's event fd", async () => {
    const gpu = ctl.gpuId(1);
    const enc = (s: string) => new TextEncoder().encode(s);
    setTimeout(() => {
      ctl.smiPush(gpu, enc("7 100 -42 @7f00(1111) W\n"), true);
      ctl.smiPush(gpu, enc("9 150 -42 1111 0\n"), true); // not enabled: filtered by the mask
      ctl.smiPush(gpu, enc(`5 ${"1".repeat(120)}\n`), false); // overlong: counted
      ctl.smiPush(gpu, enc("8 200 -42 @7f00(1111) M\n"), true);
      ctl.smiPush(gpu, enc("8 300 -42 @7f01(1111) U\n"), true);
    }, 5);
    const r = await run(["events", "--gpu", `0x${gpu.toString(16)}`, "--events", "page_fault_start,8", "--json", "--max", "2", "--poll-ms", "1"]);
    expect(r.code).toBe(EXIT.ok);
    const lines = r.stdout.trim().split("\n").map((l) => JSON.parse(l));
    expect(lines).toEqual([
      { kind: "PAGE_FAULT_START", gpuId: gpu, ns: "100", pid: 42, page: 0x7f00, node: 0x1111, write: true },
      { kind: "PAGE_FAULT_END", gpuId: gpu, ns: "200", pid: 42, page: 0x7f00, node: 0x1111, migrated: true },
    ]);
    expect(r.stderr).toContain("1 malformed records skipped (1 overlong, 0 unparsable)");
  });

  test("events: every GPU of the process by default, text lines, stopped by a signal", async () => {
    const ac = new AbortController();
    setTimeout(() => {
      ctl.smiPush(ctl.gpuId(0), new TextEncoder().encode("a 5 -1 1000 R\n"), true);
      ctl.smiPush(ctl.gpuId(1), new TextEncoder().encode("1 2a:app\n"), true);
    }, 5);
    setTimeout(() => ac.abort(), 60);
    const r = await run(["events", "--poll-ms", "1"], { signal: ac.signal });
    expect(r.code).toBe(EXIT.ok);
    expect(r.stdout).toBe("gpu 0x1000 QUEUE_RESTORE ns=5 pid=1 node=0x1000 rescheduled=true\ngpu 0x1111 VMFAULT pid=42 taskName=app\n");
  });

  test("bad flag values are usage errors", async () => {
    expect((await run(["events", "--gpu", "zero"])).code).toBe(EXIT.usage);
    expect((await run(["events", "--events", "NOPE"])).code).toBe(EXIT.usage);
    expect((await run(["events", "--max", "0"])).code).toBe(EXIT.usage);
  });
});

/** The real sysfs capture (see ../shared/fixtures/kfd-topology-rocprofiler/README.md), used in place. */
const CAPTURE = join(import.meta.dir, "..", "..", "..", "shared", "fixtures", "kfd-topology-rocprofiler");

describe("svmrt kfd info on a real sysfs capture", () => {
  test("--json: GPUs by node with gfx_target_version, device_id, vendor_id, num_xcc, SIMDs; warnings; p2p and dangling links", async () => {
    const r = await run(["info", "--json", "--topology-root", join(CAPTURE, "kfd")]);
    expect(r.code).toBe(EXIT.ok);
    const j = JSON.parse(r.stdout);
    expect(j.gpus).toHaveLength(6);
    expect(j.gpus.find((g: { node: number }) => g.node === 4)).toMatchObject({
      node: 4,
      gpuId: 0,
      gpuIdKnown: false,
      gfxTargetVersion: 90402,
      gfxTarget: "gfx942",
      vendorId: "0x1002",
      deviceId: "0x74a1",
      numXcc: 8,
      simdCount: 1216,
      vramBytes: 206141652992,
      hiveId: "0x6be14207401ad52b",
    });
    const nodes = join(CAPTURE, "kfd", "topology", "nodes");
    const kinds = (k: string) => j.warnings.filter((w: { kind: string }) => w.kind === k).map((w: { file: string }) => w.file);
    expect(kinds("gpu-id-missing")).toEqual([1, 2, 3, 4, 5, 6].map((n) => join(nodes, String(n), "gpu_id")));
    expect(kinds("link-dangling")).toEqual([5, 6, 7].map((l) => join(nodes, "4", "io_links", String(l), "properties")));
    expect(j.warnings.every((w: { message: string; file: string }) => w.message.startsWith(`${w.file}: `))).toBe(true);
    expect(j.danglingLinks.map((d: { fromNode: number; toNode: number; reason: string }) => [d.fromNode, d.toNode, d.reason])).toEqual([
      [4, 4, "self"],
      [4, 7, "no-such-node"],
      [4, 8, "no-such-node"],
      [4, 9, "no-such-node"],
    ]);
    expect(j.links.filter((l: { fromNode: number }) => l.fromNode === 4).map((l: { toNode: number; type: string; weight: number; maxBandwidthMbps: number }) => [l.toNode, l.type, l.weight, l.maxBandwidthMbps])).toEqual([
      [2, "XGMI", 15, 64000],
      [5, "XGMI", 15, 64000],
      [6, "XGMI", 15, 64000],
    ]);
    expect(j.p2pLinks.map((l: { fromNode: number; toNode: number; type: string; weight: number }) => [l.fromNode, l.toNode, l.type, l.weight])).toEqual([
      [1, 2, "PCIe", 40],
      [1, 3, "PCIe", 40],
      [2, 1, "PCIe", 40],
      [2, 3, "PCIe", 40],
      [3, 1, "PCIe", 40],
      [3, 2, "PCIe", 40],
    ]);
    expect(r.stderr).toContain(`${j.warnings.length} topology warnings`);
  });

  test("text: each GPU line shows gfx target, device, XCCs and SIMDs; warnings go to stderr naming the file", async () => {
    const r = await run(["info", "--topology-root", join(CAPTURE, "derived-gpu-id")]);
    expect(r.code).toBe(EXIT.ok);
    const nodes = join(CAPTURE, "derived-gpu-id", "topology", "nodes");
    expect(r.stdout).toContain("node 4 gpu 1004 (0x3ec) gfx942 (gfx_target_version 90402) device 0x1002:0x74a1: 1216 SIMDs, 8 XCC,");
    expect(r.stdout).toContain("node 1 gpu 1001 (0x3e9) vega20 gfx906 (gfx_target_version 90006) device 0x1002:0x66af: 240 SIMDs, 1 XCC,");
    expect(r.stdout).toContain("p2p link 1 -> 2 PCIe weight 40 bandwidth 0..32000 MB/s");
    expect(r.stdout).toContain("link 4 -> 2 XGMI weight 15 bandwidth 64000..64000 MB/s");
    expect(r.stdout).not.toMatch(/link 3 -> \d+ XGMI/); // the files' node_from 3 is not trusted
    expect(r.stdout).toContain(`dangling link 4 -> 9 XGMI (no node 9): ${join(nodes, "4", "io_links", "7", "properties")}`);
    expect(r.stderr).toContain(`warning: ${join(nodes, "4", "io_links", "1", "properties")}: node_from 3`);
    expect(r.stderr).not.toContain("gpu_id");
    const bare = await run(["info", "--topology-root", join(CAPTURE, "kfd")]);
    expect(bare.stdout).toContain("node 4 gpu_id unknown gfx942 (gfx_target_version 90402)");
    expect(bare.stderr).toContain(`warning: ${join(CAPTURE, "kfd", "topology", "nodes", "4", "gpu_id")}: missing`);
  });
});

describe("svmrt kfd events on a failing event fd", () => {
  test("a read error ends the stream with the device exit code", async () => {
    const { ctl } = kfdDoubleLoad();
    ctl.reset(1, 11);
    const io = capture();
    const cmd = kfdCommandCreate({ syscalls: () => ({ ...kfdDoubleLoad().sys, unload() {}, read: () => -ERRNO.EIO }), sysfsRoot: XGMI });
    setTimeout(() => ctl.smiPush(ctl.gpuId(0), new TextEncoder().encode("1 2a:x\n"), true), 5);
    const err = await cmd.run(["events", "--poll-ms", "1"], io).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toBe("read SMI events failed: EIO (5): the GPU reported an I/O error: check dmesg for amdgpu messages");
    const { exitCodeOf } = await import("../../runtime/cli/exit.ts");
    expect(exitCodeOf(err)).toBe(EXIT.device);
  });
});
