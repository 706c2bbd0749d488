import { beforeEach, describe, expect, test } from "bun:test";
import { KfdDevice } from "../../runtime/kfd/device.ts";
import {
  type SmiEvent,
  SmiEventParser,
  SmiEventReader,
  smiEventMask,
  smiEventParseLine,
} from "../../runtime/kfd/smi-events.ts";
import { MIGRATE_TRIGGER, QUEUE_EVICTION_TRIGGER, SVM_UNMAP_TRIGGER } from "../../runtime/kfd/uapi.ts";
import { kfdDoubleLoad } from "./double.ts";

const G = 0x3fe1;
const enc = (s: string): Uint8Array => new TextEncoder().encode(s);

/** The made-up fault of kfd-uapi.md: 2 MiB from RAM to gpu 0x3fe1. */
const FAULT_TRACE = `7 81234567890123 -4242 @7f12a3c4(3fe1) W
5 81234567901234 -4242 @7f12a200(200) 0->3fe1 ffffffff:ffffffff 1
6 81234568001234 -4242 @7f12a200(200) 0->3fe1 1 0
8 81234568011234 -4242 @7f12a3c4(3fe1) M
`;

function parseAll(text: string | Uint8Array, chunk_bytes = Number.MAX_SAFE_INTEGER): { events: SmiEvent[]; parser: SmiEventParser } {
  const bytes = typeof text === "string" ? enc(text) : text;
  const parser = new SmiEventParser(G);
  const events: SmiEvent[] = [];
  for (let at = 0; at < bytes.length; at += chunk_bytes) parser.push(bytes.subarray(at, at + chunk_bytes), events);
  return { events, parser };
}

describe("SMI record parser", () => {
  test("the reference fault trace, every field", () => {
    const { events, parser } = parseAll(FAULT_TRACE);
    expect(parser.malformedCount).toBe(0);
    expect(events).toEqual([
      { kind: "PAGE_FAULT_START", gpuId: G, ns: 81234567890123n, pid: 4242, page: 0x7f12a3c4, node: 0x3fe1, write: true },
      {
        kind: "MIGRATE_START",
        gpuId: G,
        ns: 81234567901234n,
        pid: 4242,
        startPage: 0x7f12a200,
        sizePages: 0x200,
        from: 0,
        to: 0x3fe1,
        prefetchLoc: 0xffffffff,
        preferredLoc: 0xffffffff,
        trigger: MIGRATE_TRIGGER.PAGEFAULT_GPU,
      },
      {
        kind: "MIGRATE_END",
        gpuId: G,
        ns: 81234568001234n,
        pid: 4242,
        startPage: 0x7f12a200,
        sizePages: 0x200,
        from: 0,
        to: 0x3fe1,
        trigger: 1,
        errorCode: 0,
      },
      { kind: "PAGE_FAULT_END", gpuId: G, ns: 81234568011234n, pid: 4242, page: 0x7f12a3c4, node: 0x3fe1, migrated: true },
    ]);
  });

  test("MIGRATE_END of older kernels has no error code", () => {
    const ev = smiEventParseLine("6 100 -7 @1000(10) 3fe1->0 3", G);
    expect(ev).toEqual({ kind: "MIGRATE_END", gpuId: G, ns: 100n, pid: 7, startPage: 0x1000, sizePages: 0x10, from: 0x3fe1, to: 0, trigger: 3 });
    expect(ev && "errorCode" in ev).toBe(false);
    expect(smiEventParseLine("6 100 -7 @1000(10) 3fe1->0 3 -12", G)).toMatchObject({ errorCode: -12 });
  });

  test("every other event type", () => {
    expect(smiEventParseLine("1 4d2:python3", G)).toEqual({ kind: "VMFAULT", gpuId: G, pid: 0x4d2, taskName: "python3" });
    expect(smiEventParseLine("2 3:ffffffffffffffff", G)).toEqual({ kind: "THERMAL_THROTTLE", gpuId: G, bitmask: 3, counter: 0xffffffffffffffffn });
    expect(smiEventParseLine("3 5 GPU hang", G)).toEqual({ kind: "GPU_PRE_RESET", gpuId: G, seq: 5, cause: "GPU hang" });
    expect(smiEventParseLine("4 5 GPU hang", G)).toMatchObject({ kind: "GPU_POST_RESET", seq: 5 });
    expect(smiEventParseLine("7 1 -2 @10(3fe1) R", G)).toMatchObject({ kind: "PAGE_FAULT_START", write: false });
    expect(smiEventParseLine("8 1 -2 @10(3fe1) U", G)).toMatchObject({ kind: "PAGE_FAULT_END", migrated: false });
    expect(smiEventParseLine("9 10 -2 3fe1 2", G)).toEqual({ kind: "QUEUE_EVICTION", gpuId: G, ns: 10n, pid: 2, node: 0x3fe1, trigger: QUEUE_EVICTION_TRIGGER.TTM });
    expect(smiEventParseLine("a 10 -2 3fe1 R", G)).toEqual({ kind: "QUEUE_RESTORE", gpuId: G, ns: 10n, pid: 2, node: 0x3fe1, rescheduled: true });
    expect(smiEventParseLine("a 10 -2 3fe1 0", G)).toMatchObject({ rescheduled: false });
    expect(smiEventParseLine("b 10 -2 @7f00(200) 3fe1 2", G)).toEqual({
      kind: "UNMAP_FROM_GPU",
      gpuId: G,
      ns: 10n,
      pid: 2,
      startPage: 0x7f00,
      sizePages: 0x200,
      node: 0x3fe1,
      trigger: SVM_UNMAP_TRIGGER.UNMAP_FROM_CPU,
    });
    expect(smiEventParseLine("c 4d2 python3", G)).toEqual({ kind: "PROCESS_START", gpuId: G, pid: 0x4d2, taskName: "python3" });
    expect(smiEventParseLine("d 4d2 python3", G)).toEqual({ kind: "PROCESS_END", gpuId: G, pid: 0x4d2, taskName: "python3" });
  });

  test("unknown ids, bad payloads and numbers past 2^53 are not events", () => {
    for (const bad of ["", "x", "e 1 2", "7 1 -2 @10(3fe1) X", "5 1 -2 @10 0->1", "7 1 -2 @fffffffffffffff(1) R", "41 4d2:x"]) {
      expect(smiEventParseLine(bad, G)).toBeUndefined();
    }
  });

  test("torn lines across reads of any size give the same events", () => {
    const whole = parseAll(FAULT_TRACE).events;
    for (const chunk of [1, 2, 3, 7, 13, 50, 96]) {
      const { events, parser } = parseAll(FAULT_TRACE, chunk);
      expect(events).toEqual(whole);
      expect(parser.malformedCount).toBe(0);
    }
  });

  test("an overlong line (> 96 bytes) is counted and skipped, also when torn; the next line parses", () => {
    const longLine = `7 1 -2 @10(3fe1) W${" ".repeat(100)}\n`;
    const text = `${longLine}8 1 -2 @10(3fe1) M\n${"z".repeat(300)}\n9 10 -2 3fe1 2\nnot an event\n`;
    for (const chunk of [1, 5, 64, 4096]) {
      const { events, parser } = parseAll(text, chunk);
      expect(events.map((e) => e.kind)).toEqual(["PAGE_FAULT_END", "QUEUE_EVICTION"]);
      expect(parser.malformed.overlong).toBe(2);
      expect(parser.malformed.unparsable).toBe(1);
      expect(parser.malformed.samples.at(-1)).toBe("not an event");
      expect(parser.malformed.samples[0]!.length).toBe(96);
    }
  });

  test("a 96-byte record (newline included) is accepted, 97 is not", () => {
    const head = "3 5 ";
    const ok = `${head}${"c".repeat(96 - head.length - 1)}\n`;
    const over = `${head}${"c".repeat(96 - head.length)}\n`;
    expect(ok.length).toBe(96);
    expect(parseAll(ok).events.length).toBe(1);
    const r = parseAll(over);
    expect(r.events.length).toBe(0);
    expect(r.parser.malformed.overlong).toBe(1);
  });

  test("event mask: bit i-1 per event", () => {
    expect(smiEventMask(["VMFAULT", "MIGRATE_START", "MIGRATE_END"])).toBe(0b110001n);
    expect(smiEventMask(["ALL_PROCESS"])).toBe(1n << 63n);
  });
});

describe("SMI event fd through the C test double", () => {
  const { sys, ctl } = kfdDoubleLoad();
  beforeEach(() => ctl.reset(2, 11));

  test("SMI_EVENTS returns an fd; the 8-byte mask is written; the double filters by it", () => {
    using dev = KfdDevice.open(sys);
    const gpu = ctl.gpuId(0);
    using reader = SmiEventReader.open(dev, gpu, ["PAGE_FAULT_START", "PAGE_FAULT_END"]);
    expect(ctl.smiMask(reader.eventFd)).toBe(0b1100_0000n);
    for (const line of FAULT_TRACE.trimEnd().split("\n")) ctl.smiPush(gpu, enc(`${line}\n`), true);
    const events = reader.pollOnce();
    expect(events.map((e) => e.kind)).toEqual(["PAGE_FAULT_START", "PAGE_FAULT_END"]);
    expect(events.every((e) => e.gpuId === gpu)).toBe(true);
    expect(reader.pollOnce()).toEqual([]); // EAGAIN: nothing more, no blocking
  });

  test("reads torn by the double, and overlong lines, end to end", () => {
    using dev = KfdDevice.open(sys);
    const gpu = ctl.gpuId(1);
    using reader = SmiEventReader.open(dev, gpu, ["PAGE_FAULT_START", "MIGRATE_START", "MIGRATE_END", "PAGE_FAULT_END"]);
    ctl.smiReadLimit(7);
    ctl.smiPush(gpu, enc(FAULT_TRACE), false);
    ctl.smiPush(gpu, enc(`5 ${"9".repeat(120)}\n`), false);
    ctl.smiPush(gpu, enc("8 1 -2 @10(3fe1) U\n"), false);
    const events: SmiEvent[] = [];
    for (let i = 0; i < 100 && events.length < 5; i++) events.push(...reader.pollOnce());
    expect(events.map((e) => e.kind)).toEqual(["PAGE_FAULT_START", "MIGRATE_START", "MIGRATE_END", "PAGE_FAULT_END", "PAGE_FAULT_END"]);
    expect(reader.parser.malformed.overlong).toBe(1);
  });

  test("watch polls on a timer and delivers batches; close stops it", async () => {
    using dev = KfdDevice.open(sys);
    const gpu = ctl.gpuId(0);
    const reader = SmiEventReader.open(dev, gpu, ["QUEUE_EVICTION", "QUEUE_RESTORE"]);
    const got: SmiEvent[] = [];
    const done = new Promise<void>((resolve, reject) => {
      reader.watch(
        (evs) => {
          got.push(...evs);
          if (got.length >= 2) resolve();
        },
        reject,
        1,
      );
    });
    ctl.smiPush(gpu, enc("9 10 -2 1000 0\n"), true);
    setTimeout(() => ctl.smiPush(gpu, enc("a 20 -2 1000 0\n"), true), 5);
    await done;
    reader.close();
    expect(got.map((e) => e.kind)).toEqual(["QUEUE_EVICTION", "QUEUE_RESTORE"]);
    expect(reader.eventFd).toBe(-1);
  });

  test("unknown gpu is EINVAL from SMI_EVENTS", () => {
    using dev = KfdDevice.open(sys);
    expect(() => SmiEventReader.open(dev, 0x42, ["VMFAULT"])).toThrow("SMI_EVENTS failed: EINVAL");
  });
});
