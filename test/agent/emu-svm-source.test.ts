/**
 * The agent's end of the emulated SVM source (runtime/agent/emu-svm-source.ts): the frames of
 * the child's stdout, decoded whatever the chunking and refused when they are no frames; the
 * real child process (the CLI's internal command) delivering events of the profile's GPUs,
 * stopping when asked and when the agent dies; and every way it can end otherwise, each one
 * line. Children that write bad streams are inline test doubles (`bun -e`).
 */
import { describe, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import {
  AGENT_JIT_ENV,
  EMU_SVM_CHILD_COMMAND,
  EMU_SVM_FRAME,
  EMU_SVM_FRAME_PAYLOAD_MAX_bytes,
  EmuSvmFrameDecoder,
  EmuSvmSource,
  type EmuSvmSourceOptions,
  EmuSvmStreamError,
  emuSvmFrame,
  emuSvmVramPayload,
} from "../../runtime/agent/emu-svm-source.ts";
import type { SmiEvent } from "../../runtime/kfd/smi-events.ts";
import { loadProfile } from "../../runtime/sim/profile.ts";

const PROFILE = loadProfile("dev-2gpu");
/** Longest wait for the child's first events (it starts a CLI, then computes at 10% duty), ms. */
const WAIT_MAX_ms = 30_000;
const TEST_TIMEOUT_ms = 60_000;

async function until(cond: () => boolean, what: string): Promise<void> {
  const deadline = performance.now() + WAIT_MAX_ms;
  while (!cond()) {
    if (performance.now() > deadline) throw new Error(`${what}: not within ${WAIT_MAX_ms} ms`);
    await Bun.sleep(10);
  }
}

/** True once `pid` has exited (gone, or a zombie nobody reaped yet). */
function exited(pid: number): boolean {
  const stat = `/proc/${pid}/stat`;
  if (!existsSync(stat)) return true;
  try {
    return readFileSync(stat, "utf8").split(") ")[1]?.startsWith("Z") ?? true;
  } catch {
    return true;
  }
}

/** A frame stream as bytes. */
function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

type Frame = [kind: number, key: number, payload: number[]];

function decodeAll(chunks: Uint8Array[]): Frame[] {
  const d = new EmuSvmFrameDecoder();
  const out: Frame[] = [];
  for (const c of chunks) d.push(c, (kind, key, payload) => out.push([kind, key, [...payload]]));
  expect(d.atBoundary).toBe(true);
  return out;
}

/** Options that record what arrives. */
function recording(extra: Partial<EmuSvmSourceOptions> = {}) {
  const got = { events: [] as SmiEvent[], gpus: new Set<number>(), malformed: 0, dropped: 0, vram: new Map<number, number>(), calls: 0 };
  const opts: EmuSvmSourceOptions = {
    profile: PROFILE,
    workloads: ["pingpong"],
    pauseMs: 10,
    onEvents: (gpuId, events, malformed) => {
      got.calls++;
      got.gpus.add(gpuId);
      got.events.push(...events);
      got.malformed = Math.max(got.malformed, malformed);
    },
    onDropped: (n) => {
      got.calls++;
      got.dropped += n;
    },
    onVram: (i, bytes) => {
      got.calls++;
      got.vram.set(i, bytes);
    },
    ...extra,
  };
  return { got, opts };
}

/** A child that writes `bytes` on stdout and exits 0. */
function childWriting(bytes: Uint8Array): string[] {
  return [process.execPath, "-e", `process.stdout.write(new Uint8Array(${JSON.stringify([...bytes])}))`];
}

describe("frames of the emulated SVM source", () => {
  const smi = new TextEncoder().encode("5 -1234 @0x100(512) 8a00->0 0\n");
  const stream = concat([
    emuSvmFrame(EMU_SVM_FRAME.smi, 0x8a00, smi),
    emuSvmFrame(EMU_SVM_FRAME.dropped, 3),
    emuSvmFrame(EMU_SVM_FRAME.vram, 1, emuSvmVramPayload(2 ** 33)),
    emuSvmFrame(EMU_SVM_FRAME.smi, 0x8a01, new Uint8Array(EMU_SVM_FRAME_PAYLOAD_MAX_bytes).fill(0x41)),
  ]);
  const expected: Frame[] = [
    [EMU_SVM_FRAME.smi, 0x8a00, [...smi]],
    [EMU_SVM_FRAME.dropped, 3, []],
    [EMU_SVM_FRAME.vram, 1, [...emuSvmVramPayload(2 ** 33)]],
    [EMU_SVM_FRAME.smi, 0x8a01, new Array(EMU_SVM_FRAME_PAYLOAD_MAX_bytes).fill(0x41)],
  ];

  test("decode the same whole, byte by byte, and cut at every offset", () => {
    expect(decodeAll([stream])).toEqual(expected);
    expect(decodeAll([...stream].map((b) => new Uint8Array([b])))).toEqual(expected);
    for (let cut = 1; cut < stream.length; cut += 7) {
      expect(decodeAll([stream.subarray(0, cut), stream.subarray(cut)])).toEqual(expected);
    }
  });

  test.each([
    ["an unknown kind", emuSvmFrame(9, 0), "frame 2 (kind 9, key 0, length 0): no frame has this kind (1 smi, 2 dropped, 3 vram)"],
    ["an empty smi frame", emuSvmFrame(EMU_SVM_FRAME.smi, 0x8a00, new Uint8Array(0)), `an smi frame holds 1 to ${EMU_SVM_FRAME_PAYLOAD_MAX_bytes} bytes`],
    [
      "an smi frame past the bound",
      emuSvmFrame(EMU_SVM_FRAME.smi, 0x8a00, new Uint8Array(EMU_SVM_FRAME_PAYLOAD_MAX_bytes + 1)),
      `length ${EMU_SVM_FRAME_PAYLOAD_MAX_bytes + 1}): an smi frame holds`,
    ],
    ["a dropped frame of 0 events", emuSvmFrame(EMU_SVM_FRAME.dropped, 0), "a dropped frame has no payload and a count of at least 1"],
    ["a dropped frame with a payload", emuSvmFrame(EMU_SVM_FRAME.dropped, 2, new Uint8Array(1)), "a dropped frame has no payload"],
    ["a vram frame of 7 bytes", emuSvmFrame(EMU_SVM_FRAME.vram, 0, new Uint8Array(7)), "a vram frame holds 8 bytes"],
  ])("refuse %s, naming the frame and the rule", (_what, frame, message) => {
    const d = new EmuSvmFrameDecoder();
    const frames: number[] = [];
    const good = emuSvmFrame(EMU_SVM_FRAME.dropped, 1);
    d.push(good, (k) => frames.push(k));
    let error: unknown;
    try {
      d.push(frame, (k) => frames.push(k));
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(EmuSvmStreamError);
    expect((error as Error).message).toContain(message);
    // It is the second frame of the stream, and only the good one was delivered.
    expect((error as Error).message.startsWith("frame 2 ")).toBe(true);
    expect(frames).toEqual([EMU_SVM_FRAME.dropped]);
  });
});

describe("the emulated SVM source's child process", () => {
  test(
    "delivers parsed events of the profile's GPUs and their VRAM, runs niced, and exits when stopped",
    async () => {
      const { got, opts } = recording();
      const src = EmuSvmSource.start(opts);
      await until(() => got.events.length > 0 && [...got.vram.values()].some((b) => b > 0), "the first events and VRAM in use");
      const nice = Number(readFileSync(`/proc/${src.pid}/stat`, "utf8").split(") ")[1]!.split(" ")[16]);
      await src.stop();
      await src.done;
      expect(exited(src.pid)).toBe(true);
      expect(nice).toBe(10);
      const ids = PROFILE.gpus.map((g) => g.id);
      expect([...got.gpus].every((g) => ids.includes(g))).toBe(true);
      expect(got.malformed).toBe(0);
      expect(new Set(got.events.map((e) => e.kind)).has("MIGRATE_END")).toBe(true);
      expect([...got.vram.keys()].every((i) => i >= 0 && i < PROFILE.gpus.length)).toBe(true);
      // Nothing arrives once stop() has resolved.
      const n = got.calls;
      await Bun.sleep(100);
      expect(got.calls).toBe(n);
    },
    TEST_TIMEOUT_ms,
  );

  test(
    "the child runs in a session of its own and outlives SIGHUP, SIGINT and SIGTERM (a service manager signalling every process of the unit); only its stdin ends it",
    async () => {
      const { got, opts } = recording({ workloads: ["stream"] });
      const src = EmuSvmSource.start(opts);
      try {
        await until(() => got.events.length > 0, "the first events");
        const stat = readFileSync(`/proc/${src.pid}/stat`, "utf8").split(") ")[1]!.split(" ");
        // Fields 6 and 5 of stat: session id and process group, both its own pid.
        expect([Number(stat[3]), Number(stat[2])]).toEqual([src.pid, src.pid]);
        for (const sig of ["SIGHUP", "SIGINT", "SIGTERM"] as const) process.kill(src.pid, sig);
        const n = got.events.length;
        await until(() => got.events.length > n, "events after the signals");
        expect(exited(src.pid)).toBe(false);
      } finally {
        await src.stop();
      }
      await src.done;
      expect(exited(src.pid)).toBe(true);
    },
    TEST_TIMEOUT_ms,
  );

  test(
    "a child that fails ends the source with its exit code and the last line it wrote",
    async () => {
      const { opts } = recording({ workloads: ["no-such-workload"] });
      const src = EmuSvmSource.start(opts);
      await expect(src.done).rejects.toThrow("emulated SVM source exited with code 1: svmrt __emu-svm-source: unknown built-in workload 'no-such-workload'");
    },
    TEST_TIMEOUT_ms,
  );

  test.each([
    ["an unknown frame kind", childWriting(emuSvmFrame(7, 0)), "emulated SVM source: malformed stream: frame 1 (kind 7, key 0, length 0): no frame has this kind"],
    ["a stream ending inside a frame", childWriting(emuSvmFrame(EMU_SVM_FRAME.dropped, 1).subarray(0, 5)), "emulated SVM source: malformed stream: the stream ended inside frame 1"],
    [
      "events of a GPU not in the profile",
      childWriting(emuSvmFrame(EMU_SVM_FRAME.smi, 0x1234, new Uint8Array([0x41]))),
      "emulated SVM source: malformed stream: frame 1: gpu_id 0x1234 is not a GPU of profile dev-2gpu",
    ],
    [
      "a VRAM amount that is no byte count",
      childWriting(emuSvmFrame(EMU_SVM_FRAME.vram, 0, emuSvmVramPayload(0.5))),
      "emulated SVM source: malformed stream: frame 1: vram of GPU index 0: 0.5 bytes",
    ],
    ["a child that exits 0 on its own", childWriting(new Uint8Array(0)), "emulated SVM source exited with code 0"],
  ])(
    "%s ends the source with one line",
    async (_what, argv, message) => {
      const { got, opts } = recording({ argv });
      const src = EmuSvmSource.start(opts);
      const error = await src.done.then(
        () => undefined,
        (e: Error) => e,
      );
      expect(error?.message).toStartWith(message);
      expect(error?.message.includes("\n")).toBe(false);
      expect(got.calls).toBe(0);
    },
    TEST_TIMEOUT_ms,
  );

  test(
    "the child drops the agent's JavaScriptCore variables the marker lists, and nothing else it lists",
    async () => {
      const saved = { marker: process.env[AGENT_JIT_ENV], dfg: process.env.BUN_JSC_useDFGJIT };
      process.env[AGENT_JIT_ENV] = "BUN_JSC_useDFGJIT,PATH";
      process.env.BUN_JSC_useDFGJIT = "0";
      const { got, opts } = recording({ workloads: ["stream"] });
      let src: EmuSvmSource | undefined;
      try {
        src = EmuSvmSource.start(opts);
        await until(() => got.events.length > 0, "the first events");
        const env = readFileSync(`/proc/${src.pid}/environ`, "utf8").split("\0");
        expect(env.filter((kv) => kv.startsWith("BUN_JSC_useDFGJIT=") || kv.startsWith(`${AGENT_JIT_ENV}=`))).toEqual([]);
        expect(env).toContain(`PATH=${process.env.PATH}`);
      } finally {
        for (const [k, v] of [[AGENT_JIT_ENV, saved.marker], ["BUN_JSC_useDFGJIT", saved.dfg]] as const) {
          if (v === undefined) delete process.env[k];
          else process.env[k] = v;
        }
        await src?.stop();
      }
    },
    TEST_TIMEOUT_ms,
  );

  test(
    "typed at a terminal, the internal command says what it is and exits 2 instead of waiting on stdin",
    async () => {
      // script(1) gives the command a pseudo-terminal as stdin (bsdutils, installed by .ci/run).
      const cmd = [process.execPath, `${import.meta.dir}/../../runtime/cli.ts`, EMU_SVM_CHILD_COMMAND].map((a) => `'${a}'`).join(" ");
      const p = Bun.spawn(["script", "-qec", cmd, "/dev/null"], { stdin: "ignore", stdout: "pipe", stderr: "pipe", timeout: TEST_TIMEOUT_ms });
      const [out, code] = await Promise.all([new Response(p.stdout).text(), p.exited]);
      expect(code).toBe(2);
      expect(out).toContain("svmrt __emu-svm-source: the agent's internal command: it reads its config from the agent on stdin; run 'svmrt agent'");
    },
    TEST_TIMEOUT_ms,
  );

  test(
    "a callback that throws ends the source with its error; the child is killed and nothing more is called",
    async () => {
      let calls = 0;
      const { opts } = recording({
        onEvents: () => {
          calls++;
          throw new Error("consumer failed");
        },
      });
      const src = EmuSvmSource.start(opts);
      await expect(src.done).rejects.toThrow("consumer failed");
      expect(exited(src.pid)).toBe(true);
      expect(calls).toBe(1);
    },
    TEST_TIMEOUT_ms,
  );

  test(
    "the child exits when the agent's process dies without stopping it (its stdin ends)",
    async () => {
      const script = `
        const { EmuSvmSource } = await import(${JSON.stringify(`${import.meta.dir}/../../runtime/agent/emu-svm-source.ts`)});
        const { loadProfile } = await import(${JSON.stringify(`${import.meta.dir}/../../runtime/sim/profile.ts`)});
        const src = EmuSvmSource.start({ profile: loadProfile("dev-2gpu"), workloads: ["stream"], pauseMs: 10, onEvents: () => {}, onDropped: () => {}, onVram: () => {} });
        console.log(src.pid);
        setInterval(() => {}, 1000);`;
      const parent = Bun.spawn([process.execPath, "-e", script], { stdout: "pipe", stderr: "inherit" });
      let childPid = 0;
      try {
        const reader = parent.stdout.getReader();
        childPid = Number(new TextDecoder().decode((await reader.read()).value).trim());
        expect(Number.isInteger(childPid) && childPid > 0).toBe(true);
        expect(exited(childPid)).toBe(false);
      } finally {
        // Whatever failed above, the parent goes, and with it the child's stdin.
        parent.kill("SIGKILL");
        await parent.exited;
      }
      await until(() => exited(childPid), "the child's exit");
      expect(exited(childPid)).toBe(true);
    },
    TEST_TIMEOUT_ms,
  );
});
