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
