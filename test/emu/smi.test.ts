/**
 * SMI events of emulated workloads through the real path: SMI_EVENTS ioctl, mask write,
 * poll/read, the streaming parser. Checked against a plain simulation of the same workload.
 */
import { describe, expect, test } from "bun:test";
import { EmuKfd } from "../../runtime/emu/kfd.ts";
import { EMU_PID_DEFAULT, EmuMachine, EmuWorkloadAborted, SMI_FIFO_bytes } from "../../runtime/emu/machine.ts";
import { ERRNO } from "../../runtime/ffi/errno.ts";
import { KfdDevice } from "../../runtime/kfd/device.ts";
import { type SmiEvent, SmiEventReader, smiEventParseLine } from "../../runtime/kfd/smi-events.ts";
import { nativeKernelDefault } from "../../runtime/policy/contracts/migration.ts";
import { builtinWorkload } from "../../runtime/sim/builtins.ts";
import { runSim } from "../../runtime/sim/engine.ts";
import { loadProfile } from "../../runtime/sim/profile.ts";

const profile = loadProfile("dev-2gpu");
const [G0, G1] = profile.gpus.map((g) => g.id) as [number, number];
/** Poll period of the test readers, ms. */
const POLL_ms = 1;

/** Read `readers` on a timer while `run` goes, then drain; the events in read order. */
async function collect(readers: SmiEventReader[], run: Promise<unknown>): Promise<SmiEvent[]> {
  const out: SmiEvent[] = [];
  const timer = setInterval(() => {
    for (const r of readers) out.push(...r.pollOnce());
  }, POLL_ms);
  try {
    await run;
  } finally {
    clearInterval(timer);
  }
  for (const r of readers) for (let b = r.pollOnce(); b.length > 0; b = r.pollOnce()) out.push(...b);
  return out;
}

const countKinds = (evs: SmiEvent[]): Record<string, number> => {
  const c: Record<string, number> = {};
  for (const e of evs) c[e.kind] = (c[e.kind] ?? 0) + 1;
  return c;
};

describe("SMI events of an emulated workload", () => {
  test("stream on dev-2gpu: 512 faults and 512 migrations, the simulation's very events", async () => {
    // The reference: the same workload in a plain simulation, its sink's lines parsed.
    const lines: string[] = [];
    const sim = runSim({ profile, workload: builtinWorkload("stream", profile)!, decider: nativeKernelDefault(), seed: 1, sink: (l) => lines.push(l) });
    expect(sim.gpuFaults).toBe(512);
    expect(sim.migrations.h2d).toBe(512);
    // The readers subscribe to faults and migrations; the stream also has UNMAP_FROM_GPU on
    // both GPUs for every window after the first (svm_range_unmap_from_gpus).
    const KINDS = new Set(["PAGE_FAULT_START", "PAGE_FAULT_END", "MIGRATE_START", "MIGRATE_END"]);
    const expected = lines.map((l) => smiEventParseLine(l, G0)!).filter((e) => KINDS.has(e.kind));

    const machine = new EmuMachine({ profile });
    const sys = new EmuKfd(machine);
    using dev = KfdDevice.open(sys);
    using r0 = SmiEventReader.open(dev, G0, ["PAGE_FAULT_START", "PAGE_FAULT_END", "MIGRATE_START", "MIGRATE_END"]);
    using r1 = SmiEventReader.open(dev, G1, ["PAGE_FAULT_START", "PAGE_FAULT_END", "MIGRATE_START", "MIGRATE_END"]);
    let result: Awaited<ReturnType<EmuMachine["workloadRun"]>> | undefined;
    const evs = await collect([r0, r1], machine.workloadRun(builtinWorkload("stream", profile)!, sys.pid).then((r) => (result = r)));
    expect(countKinds(evs)).toEqual({ PAGE_FAULT_START: 512, PAGE_FAULT_END: 512, MIGRATE_START: 512, MIGRATE_END: 512 });
    expect(evs).toEqual(expected);
    expect(evs.every((e) => e.gpuId === G0)).toBe(true); // gpu0's events on gpu0's fd only
    expect(machine.smiDropped).toBe(0);
    expect(r0.parser.malformedCount).toBe(0);
    // The run's results are the simulation's; the process lives on with its memory in VRAM.
    const { counters: _c, exits, ...rest } = result!;
    const { counters: _s, exits: simExits, ...simRest } = sim;
    expect(rest).toEqual(simRest);
    // The plain simulation ends its process (§9 teardown); the emulated KFD process lives on.
    expect(simExits).toEqual({ processes: 1, ranges: 0, vramPages: 0, pendingWork: 0 });
    expect(exits).toEqual({ processes: 0, ranges: 0, vramPages: 0, pendingWork: 0 });
    expect(machine.nowNs).toBeGreaterThanOrEqual(sim.simTimeNs);
    expect(dev.availableMemory(G0)).toBe(31 * 2 ** 30);
    // sysfs faults counts the 10 220 dropped duplicates too (svm_range_count_fault).
    expect(machine.model.proc(EMU_PID_DEFAULT).faults[0]).toBe(512 + 10_220);
  });

  test("producer-consumer: every event, per GPU fd, exactly the simulation's (CPU faults burst within one engine event)", async () => {
    const ALL = ["VMFAULT", "MIGRATE_START", "MIGRATE_END", "PAGE_FAULT_START", "PAGE_FAULT_END", "QUEUE_EVICTION", "QUEUE_RESTORE", "UNMAP_FROM_GPU"] as const;
    const lines: [string, number][] = [];
    runSim({ profile, workload: builtinWorkload("producer-consumer", profile)!, decider: nativeKernelDefault(), seed: 1, sink: (l, g) => lines.push([l, g]) });
    const expectedOn = (gpu: number) =>
      lines
        .filter(([l, g]) => g === gpu && !l.startsWith("c ") && !l.startsWith("d "))
        .map(([l]) => smiEventParseLine(l, gpu)!);
    const machine = new EmuMachine({ profile });
    const sys = new EmuKfd(machine);
    using dev = KfdDevice.open(sys);
    using r0 = SmiEventReader.open(dev, G0, ALL);
    using r1 = SmiEventReader.open(dev, G1, ALL);
    const got: SmiEvent[][] = [[], []];
    const timer = setInterval(() => {
      got[0]!.push(...r0.pollOnce());
      got[1]!.push(...r1.pollOnce());
    }, POLL_ms);
    await machine.workloadRun(builtinWorkload("producer-consumer", profile)!, sys.pid).finally(() => clearInterval(timer));
    for (let b = r0.pollOnce(); b.length > 0; b = r0.pollOnce()) got[0]!.push(...b);
    for (let b = r1.pollOnce(); b.length > 0; b = r1.pollOnce()) got[1]!.push(...b);
    expect(got[0]!.length).toBeGreaterThan(3000);
    expect(got[0]).toEqual(expectedOn(G0));
    expect(got[1]).toEqual(expectedOn(G1));
    expect(machine.smiDropped).toBe(0);
  });

  test("the written mask filters; a second stream starts at the machine's clock", async () => {
    const machine = new EmuMachine({ profile });
    const sys = new EmuKfd(machine);
    using dev = KfdDevice.open(sys);
    using r = SmiEventReader.open(dev, G0, ["MIGRATE_END"]);
    expect(await collect([r], machine.workloadRun(builtinWorkload("stream", profile)!, sys.pid))).toHaveLength(512);
    const t1 = machine.nowNs;
    // A second workload in the same process: its buffer goes above the first, its events
    // come after the first's in time, and a zero mask lets none through.
    r.maskSet(0n);
    const again = await collect([r], machine.workloadRun(builtinWorkload("random", profile)!, sys.pid));
    expect(again).toEqual([]);
    expect(machine.nowNs).toBeGreaterThan(t1);
    expect(machine.model.proc(sys.pid).vmas.map((v) => v.start)).toEqual([0x100000, 0x140000]);
    r.maskSet(1n << 4n); // MIGRATE_START (id 5)
    let res: Awaited<ReturnType<EmuMachine["workloadRun"]>> | undefined;
    const third = await collect([r], machine.workloadRun(builtinWorkload("stream", profile)!, sys.pid).then((x) => (res = x)));
    expect(third).toHaveLength(512);
    expect(res!.gpuFaults).toBe(512); // this run's counts, not the machine's total
    expect(res!.migrations.h2d).toBe(512);
    expect(machine.model.stats.migrations.h2d).toBeGreaterThan(1024);
    expect((third[0] as { ns: bigint }).ns).toBeGreaterThan(BigInt(Math.round(t1)));
    // A mask of the wrong size is EINVAL, like kfd_smi_ev_write.
    expect(sys.write(r.eventFd, new Uint8Array(4))).toBe(-ERRNO.EINVAL);
  });

  test("another process's events need ALL_PROCESS and CAP_SYS_ADMIN", async () => {
    const machine = new EmuMachine({ profile });
    const app = new EmuKfd(machine); // pid 4242 runs the workload
    using appDev = KfdDevice.open(app);
    const user = new EmuKfd(machine, { pid: 1000 });
    const admin = new EmuKfd(machine, { pid: 1001, capSysAdmin: true });
    using userDev = KfdDevice.open(user);
    using adminDev = KfdDevice.open(admin);
    using own = SmiEventReader.open(userDev, G0, ["MIGRATE_START"]);
    using notAdmin = SmiEventReader.open(userDev, G0, ["MIGRATE_START", "ALL_PROCESS"]);
    using all = SmiEventReader.open(adminDev, G0, ["MIGRATE_START", "ALL_PROCESS"]);
    const evs = await collect([own, notAdmin, all], machine.workloadRun(builtinWorkload("stream", profile)!, app.pid));
    expect(evs).toHaveLength(512);
    expect(evs.every((e) => e.kind === "MIGRATE_START" && e.pid === app.pid)).toBe(true);
    expect(appDev.isOpen).toBe(true);
  });

  test("a reader that never reads: the fifo stays bounded and events are dropped, like the kernel", async () => {
    const machine = new EmuMachine({ profile, readerWaitMax_ms: 5 });
    const sys = new EmuKfd(machine);
    using dev = KfdDevice.open(sys);
    using r = SmiEventReader.open(dev, G0, ["PAGE_FAULT_START", "PAGE_FAULT_END", "MIGRATE_START", "MIGRATE_END"]);
    await machine.workloadRun(builtinWorkload("stream", profile)!, sys.pid);
    const c = sys.smiClient(r.eventFd)!;
    expect(c.length).toBeLessThanOrEqual(SMI_FIFO_bytes);
    expect(c.delivered + c.dropped).toBe(2048);
    expect(c.dropped).toBeGreaterThan(0);
    expect(machine.smiDropped).toBe(c.dropped);
    const got: SmiEvent[] = [];
    for (let b = r.pollOnce(); b.length > 0; b = r.pollOnce()) got.push(...b);
    expect(got).toHaveLength(c.delivered);
  });

  test("an aborted run stops between events and leaves the model consistent", async () => {
    const machine = new EmuMachine({ profile });
    const sys = new EmuKfd(machine);
    using dev = KfdDevice.open(sys);
    using r = SmiEventReader.open(dev, G0, ["PAGE_FAULT_END"]);
    const stop = new AbortController();
    let seen = 0;
    const run = machine.workloadRun(builtinWorkload("stream", profile)!, sys.pid, stop.signal);
    const timer = setInterval(() => {
      seen += r.pollOnce().length;
      if (seen >= 8) stop.abort();
    }, POLL_ms);
    const err = await run.then(
      () => undefined,
      (e: unknown) => e,
    );
    clearInterval(timer);
    expect(err).toBeInstanceOf(EmuWorkloadAborted);
    expect(machine.model.stats.gpuFaults).toBeLessThan(512);
    expect(machine.model.proc(sys.pid).userQueues).toBe(0);
    machine.model.checkFull();
    dev.close();
    expect(machine.model.processes.size).toBe(0);
  });
});

describe("the duty cap of an emulated workload (EmuMachineOptions.dutyMax)", () => {
  /** One stream run on a fresh machine; its events, result and the sleeps the cap made. */
  async function streamRun(dutyMax: number | undefined) {
    const machine = new EmuMachine({ profile, dutyMax });
    const sys = new EmuKfd(machine);
    using dev = KfdDevice.open(sys);
    using r0 = SmiEventReader.open(dev, G0, ["PAGE_FAULT_START", "PAGE_FAULT_END", "MIGRATE_START", "MIGRATE_END"]);
    let result: Awaited<ReturnType<EmuMachine["workloadRun"]>> | undefined;
    const events = await collect([r0], machine.workloadRun(builtinWorkload("stream", profile)!, sys.pid).then((r) => (result = r)));
    return { events, result: result!, sleeps: machine.dutySleeps };
  }

  test("a paced run sleeps between slices and gives the very events and result of an unpaced one", async () => {
    const free = await streamRun(undefined);
    const paced = await streamRun(0.05);
    expect(free.sleeps).toBe(0);
    // The stream computes for well over 2.5 ms (its 2048 engine events, readers' waits not
    // counted): more than one slice's share at duty 0.05 (0.05 x EMU_DUTY_SLICE_ms).
    expect(paced.sleeps).toBeGreaterThan(0);
    expect(paced.result).toEqual(free.result);
    expect(paced.events).toEqual(free.events);
    expect(paced.events).toHaveLength(2048);
  }, 60_000);

  test("a duty outside (0, 1] is refused", () => {
    for (const d of [0, -0.1, 1.5, Number.NaN]) expect(() => new EmuMachine({ profile, dutyMax: d })).toThrow(/dutyMax must be in \(0, 1\]/);
  });
});
