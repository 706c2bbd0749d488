/**
 * The agent's advisor: KFD SMI event text, parsed as a reader gets it, fed to the shipped
 * advisor policy (policies/advisor/advisor.yaml) through observe, hints from advise. Synthetic
 * streams for each pattern, noise, the bounds, failing plugins, the HIP calls, and the
 * emulated machine's own `pingpong` workload read through its SMI event fds.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  ADVISOR_PENDING_EVENTS_MAX,
  ADVISOR_TICK_SLICE_EVENTS,
  Advisor,
  type AdvisorHintJson,
  type AdvisorOptions,
  adviceHipCall,
} from "../../runtime/agent/advisor.ts";
import { EmuKfd } from "../../runtime/emu/kfd.ts";
import { EmuMachine } from "../../runtime/emu/machine.ts";
import { UsageError } from "../../runtime/errors.ts";
import { KfdDevice } from "../../runtime/kfd/device.ts";
import { SMI_EVENTS_ALL, type SmiEvent, SmiEventReader, smiEventParseLine } from "../../runtime/kfd/smi-events.ts";
import { ADVICE_HINTS_MAX, LOC_UNDEFINED } from "../../runtime/policy/contracts/migration.ts";
import { readPolicySpec } from "../../runtime/policy/loader.ts";
import { Policy } from "../../runtime/policy/policy.ts";
import { builtinWorkload } from "../../runtime/sim/builtins.ts";
import { loadProfile } from "../../runtime/sim/profile.ts";
import * as fmt from "../../runtime/svm/events.ts";

const ROOT = join(import.meta.dir, "../..");
const ADVISOR_YAML = join(ROOT, "policies/advisor/advisor.yaml");
/** Fuel-based budgets: no wall-clock timeout on a loaded machine. */
const OPTS = { sandbox: { deterministic: true } } as const;

const G0 = 0x3fe1;
const G1 = 0x3fe2;
/** Two PCIe GPUs (no XGMI hive), in HIP device order. */
const GPUS = [{ id: G0 }, { id: G1 }];
const PID = 4242;
const BLOCK = 512;
/** First page of the test buffer: byte address 0x100000000. */
const BASE = 0x100000;
const T0 = 81_234_567_890_123;
const MS = 1_000_000;

const dir = mkdtempSync(join(tmpdir(), "svmrt-advisor-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A MigrationPolicy in the temp folder with this plugin source. */
function pluginPolicy(name: string, source: string): string {
  writeFileSync(join(dir, `${name}.js`), source);
  const yaml = join(dir, `${name}.yaml`);
  writeFileSync(yaml, `apiVersion: svmrt/v1\nkind: MigrationPolicy\nmetadata:\n  name: ${name}\nspec:\n  plugin: ${name}.js\n`);
  return yaml;
}

/** The shipped advisor, with some params overridden. */
async function advisorPolicy(params: Record<string, number> = {}): Promise<Policy> {
  const spec = await readPolicySpec(ADVISOR_YAML);
  spec.params = { ...spec.params, ...params };
  return Policy.fromSpec(spec, OPTS);
}

function parsed(line: string, fd: number): SmiEvent {
  const e = smiEventParseLine(line, fd);
  if (e === undefined) throw new Error(`test record does not parse: ${line}`);
  return e;
}

/**
 * SMI records as the kernel writes them for one process, each on the fd of the GPU the kernel
 * reports it on, 1 ms apart.
 */
class Trace {
  readonly events: SmiEvent[] = [];
  t = T0;

  private add(line: string, fd: number): void {
    this.events.push(parsed(line, fd));
    this.t += MS;
  }

  /** One migration of `npages` at `start` (START and END on the fd of the GPU involved). */
  migrate(start: number, npages: number, from: number, to: number, trigger: number): this {
    const fd = to !== 0 ? to : from;
    this.add(fmt.fmtMigrateStart(this.t, PID, start, npages, from, to, 0xffffffff, 0xffffffff, trigger), fd);
    this.add(fmt.fmtMigrateEnd(this.t, PID, start, npages, from, to, trigger, 0), fd);
    return this;
  }

  /** A GPU fault on `page` that migrates its block to the GPU (through RAM from another GPU's VRAM). */
  faultMigrated(gpu: number, page: number, from: number): this {
    const block = Math.floor(page / BLOCK) * BLOCK;
    this.add(fmt.fmtPageFaultStart(this.t, PID, page, gpu, true), gpu);
    if (from !== 0) this.migrate(block, BLOCK, from, 0, 1);
    this.migrate(block, BLOCK, 0, gpu, 1);
    this.add(fmt.fmtPageFaultEnd(this.t, PID, page, gpu, true), gpu);
    return this;
  }

  /** A GPU fault on `page` that only maps the data where it is ('U'). */
  faultMapped(gpu: number, page: number): this {
    this.add(fmt.fmtPageFaultStart(this.t, PID, page, gpu, false), gpu);
    this.add(fmt.fmtPageFaultEnd(this.t, PID, page, gpu, false), gpu);
    return this;
  }

  /** A CPU-side invalidation of [start, +npages) on `gpu` (MMU_NOTIFY). */
  cpuInvalidate(gpu: number, start: number, npages: number): this {
    this.add(fmt.fmtUnmapFromGpu(this.t, PID, start, npages, gpu, 0), gpu);
    return this;
  }

  line(line: string, fd: number): this {
    this.add(line, fd);
    return this;
  }
}

function newAdvisor(policy: Policy, o: Partial<AdvisorOptions> = {}): { advisor: Advisor; lines: string[] } {
  const lines: string[] = [];
  const advisor = new Advisor({ policy, gpus: GPUS, log: (l) => lines.push(l), ...o });
  return { advisor, lines };
}

/** What a hint says, without its id and times. */
const gist = (h: AdvisorHintJson) => ({ kind: h.kind, pattern: h.pattern, start: h.start, npages: h.npages, gpuId: h.gpuId, device: h.device });

describe("patterns of a synthetic stream", () => {
  test("ping-pong between two PCIe GPUs: system memory preferred, both GPUs access in place, with the evidence", async () => {
    using p = await advisorPolicy();
    const { advisor, lines } = newAdvisor(p);
    using _ = advisor;
    // Two blocks; each round one GPU faults both in, taking them from the other's VRAM.
    const tr = new Trace();
    let last = 0;
    for (let round = 0; round < 6; round++) {
      const gpu = round % 2 === 0 ? G0 : G1;
      tr.faultMigrated(gpu, BASE + 7, last).faultMigrated(gpu, BASE + BLOCK + 7, last);
      last = gpu;
    }
    advisor.feed(tr.events);
    const hints = await advisor.tick();
    const size = 2 * BLOCK * 4096;
    expect(hints.map(gist)).toEqual([
      { kind: "preferred_location", pattern: "ping-pong", start: BASE, npages: 2 * BLOCK, gpuId: 0, device: "cpu" },
      { kind: "accessed_by", pattern: "ping-pong", start: BASE, npages: 2 * BLOCK, gpuId: G0, device: 0 },
      { kind: "accessed_by", pattern: "ping-pong", start: BASE, npages: 2 * BLOCK, gpuId: G1, device: 1 },
    ]);
    expect(hints.map((h) => h.apply)).toEqual([
      `hipMemAdvise((void*)0x100000000, ${size}, hipMemAdviseSetPreferredLocation, hipCpuDeviceId)`,
      `hipMemAdvise((void*)0x100000000, ${size}, hipMemAdviseSetAccessedBy, 0)`,
      `hipMemAdvise((void*)0x100000000, ${size}, hipMemAdviseSetAccessedBy, 1)`,
    ]);
    const h = hints[0]!;
    expect(h.addr).toBe("0x100000000");
    expect(h.sizeBytes).toBe(size);
    // 6 migrations to a GPU per block, 5 changes each; 3 faults per GPU per block.
    expect(h.evidence.events).toBe(12);
    expect(h.evidence.gpus).toEqual([G0, G1]);
    expect(h.evidence.detail).toBe("12 migrations to GPUs, 10 changes, 2 block(s); faults 0x3fe1:6 0x3fe2:6; no common XGMI hive: keep it in system memory");
    // Evidence times are boot-time ns: the first fault's, and the last migration's end.
    expect(h.evidence.firstNs).toBe(String(T0));
    const lastMigrateEnd = tr.events.findLast((e) => e.kind === "MIGRATE_END") as { ns: bigint };
    expect(h.evidence.lastNs).toBe(String(lastMigrateEnd.ns));
    expect(h.firstSeenNs).toBe(h.lastSeenNs);
    // Each new hint is logged once, on one line.
    expect(lines).toHaveLength(3);
    expect(lines[0]).toBe(
      `new hint ${h.id}: preferred_location [0x100000000, 0x100400000) system memory: ${h.apply}; ping-pong, 12 events from ${h.evidence.firstNs} to ${h.evidence.lastNs} ns, gpus 0x3fe1,0x3fe2: ${h.evidence.detail}`,
    );
    expect(lines[1]).toContain("accessed_by [0x100000000, 0x100400000) gpu 0x3fe1 (device 0)");
    expect(lines.every((l) => !l.includes("\n"))).toBe(true);
    // The next tick advises the same hints (same ids): nothing new is logged.
    const again = await advisor.tick();
    expect(again.map((x) => x.id)).toEqual(hints.map((x) => x.id));
    expect(lines).toHaveLength(3);
    expect(advisor.stats).toMatchObject({ fed: tr.events.length, dropped: 0, observeFailures: 0, adviseFailures: 0, ticks: 2, hints: 3 });
  });

  test("ping-pong within one XGMI hive: the most faulting GPU preferred, the other maps it", async () => {
    using p = await advisorPolicy();
    const { advisor } = newAdvisor(p, { gpus: [{ id: G0, hiveId: 0x5a11 }, { id: G1, hiveId: 0x5a11 }] });
    using _ = advisor;
    const tr = new Trace();
    // G1, G0, G1, G0, G1: G1 faults 3 times, G0 twice; 4 changes.
    for (const [gpu, from] of [[G1, 0], [G0, G1], [G1, G0], [G0, G1], [G1, G0]] as const) tr.faultMigrated(gpu, BASE + 3, from);
    advisor.feed(tr.events);
    const hints = await advisor.tick();
    expect(hints.map(gist)).toEqual([
      { kind: "preferred_location", pattern: "ping-pong", start: BASE, npages: BLOCK, gpuId: G1, device: 1 },
      { kind: "accessed_by", pattern: "ping-pong", start: BASE, npages: BLOCK, gpuId: G0, device: 0 },
    ]);
    expect(hints[0]!.evidence.events).toBe(5);
    expect(hints[0]!.evidence.detail).toContain("faults 0x3fe1:2 0x3fe2:3");
  });

  test("one GPU faulting a block in again and again: prefetch it there", async () => {
    using p = await advisorPolicy();
    const { advisor, lines } = newAdvisor(p);
    using _ = advisor;
    const tr = new Trace();
    const page = BASE + 40 * BLOCK + 100;
    for (let i = 0; i < 5; i++) {
      tr.faultMigrated(G0, page + i, 0);
      tr.migrate(BASE + 40 * BLOCK, BLOCK, G0, 0, 2); // the CPU pulls it back
    }
    advisor.feed(tr.events);
    const hints = await advisor.tick();
    expect(hints.map(gist)).toEqual([{ kind: "prefetch", pattern: "repeated-faults", start: BASE + 40 * BLOCK, npages: BLOCK, gpuId: G0, device: 0 }]);
    expect(hints[0]!.apply).toBe("hipMemPrefetchAsync((void*)0x105000000, 2097152, 0, stream)");
    expect(hints[0]!.evidence).toMatchObject({ events: 5, gpus: [G0] });
    expect(lines).toHaveLength(1);
  });

  test("mapped-only faults of one GPU: remote reads, preferred there when alone, accessed-by when the CPU shares", async () => {
    using p = await advisorPolicy();
    const { advisor } = newAdvisor(p);
    using _ = advisor;
    const tr = new Trace();
    const alone = BASE + 10 * BLOCK;
    const shared = BASE + 20 * BLOCK;
    for (let i = 0; i < 4; i++) {
      tr.faultMapped(G1, alone + i);
      tr.faultMapped(G1, shared + i).cpuInvalidate(G1, shared, BLOCK);
    }
    advisor.feed(tr.events);
    const hints = await advisor.tick();
    expect(hints.map(gist)).toEqual([
      { kind: "preferred_location", pattern: "remote-reads", start: alone, npages: BLOCK, gpuId: G1, device: 1 },
      { kind: "accessed_by", pattern: "remote-reads", start: shared, npages: BLOCK, gpuId: G1, device: 1 },
    ]);
    expect(hints[0]!.apply).toBe("hipMemAdvise((void*)0x101400000, 2097152, hipMemAdviseSetPreferredLocation, 1)");
    expect(hints.map((h) => h.evidence.events)).toEqual([4, 4]);
    expect(hints[1]!.evidence.detail).toContain("shared (CPU or other GPUs)");
  });

  test("noise, other processes and events without SVM meaning advise nothing", async () => {
    using p = await advisorPolicy();
    const { advisor, lines } = newAdvisor(p, { pid: PID });
    using _ = advisor;
    const tr = new Trace();
    // Single faults scattered over 40 blocks by both GPUs, some mapped only, some migrating.
    for (let i = 0; i < 40; i++) {
      const gpu = i % 2 === 0 ? G0 : G1;
      if (i % 3 === 0) tr.faultMapped(gpu, BASE + i * 7 * BLOCK + i);
      else tr.faultMigrated(gpu, BASE + i * 7 * BLOCK + i, 0);
    }
    tr.line(fmt.fmtQueueEviction(tr.t, PID, G0, 0), G0).line(fmt.fmtQueueRestore(tr.t, PID, G0, false), G0);
    tr.line(fmt.fmtQueueRestore(tr.t, PID, G0, true), G0); // rescheduled: ignored
    tr.line(fmt.fmtVmFault(PID, "app"), G0).line(fmt.fmtProcess(true, PID, "app"), G0).line("2 1:2", G0);
    // Another process ping-pongs: ignored, the advisor follows PID only.
    const other = new Trace();
    for (let i = 0; i < 6; i++) other.faultMigrated(i % 2 ? G1 : G0, BASE, i === 0 ? 0 : i % 2 ? G0 : G1);
    const otherEvents = other.events.map((e) => ({ ...e, pid: 7 }) as SmiEvent);
    advisor.feed([...tr.events, ...otherEvents]);
    expect(await advisor.tick()).toEqual([]);
    expect(lines).toEqual([]);
    const s = advisor.stats;
    expect(s.fed).toBe(tr.events.length + otherEvents.length);
    // Ignored: MIGRATE_STARTs, the rescheduled restore, VMFAULT, PROCESS_START, THERMAL, the other pid.
    const starts = tr.events.filter((e) => e.kind === "MIGRATE_START").length;
    expect(s.ignored).toBe(starts + 4 + otherEvents.length);
    expect(s.delivered).toBeGreaterThan(40);
  });
});

describe("the advisor's clock and memory", () => {
  test("a quiet pattern ages with the caller's clock; when it comes back it keeps its id and is not logged again", async () => {
    using p = await advisorPolicy(); // window_ns: 10 s
    const { advisor, lines } = newAdvisor(p);
    using _ = advisor;
    const pingPong = (tr: Trace) => {
      for (let round = 0, last = 0; round < 5; round++) {
        const gpu = round % 2 === 0 ? G0 : G1;
        tr.faultMigrated(gpu, BASE + 1, last);
        last = gpu;
      }
    };
    const tr = new Trace();
    pingPong(tr);
    advisor.feed(tr.events);
    // The caller's clock has its own origin (process.hrtime): only its progress counts.
    const caller = 5_000_000_000_000n;
    const [first, second] = await Promise.all([advisor.tick(caller), advisor.tick(caller + 1n)]); // ticks run one at a time
    expect(first!.map((h) => h.kind)).toEqual(["preferred_location", "accessed_by", "accessed_by"]);
    expect(second!.map((h) => h.id)).toEqual(first!.map((h) => h.id));
    expect(await advisor.tick(caller + 9_000_000_000n)).toHaveLength(3);
    expect(await advisor.tick(caller + 11_000_000_000n)).toEqual([]);
    expect(lines).toHaveLength(3);
    // The same ping-pong 20 s later (event time): the same hints, remembered.
    const again = new Trace();
    again.t = tr.t + 20_000 * MS;
    pingPong(again);
    advisor.feed(again.events);
    const back = await advisor.tick(caller + 30_000_000_000n);
    expect(back.map((h) => h.id)).toEqual(first!.map((h) => h.id));
    expect(back[0]!.firstSeenNs).toBe(first![0]!.firstSeenNs);
    expect(BigInt(back[0]!.lastSeenNs)).toBeGreaterThan(BigInt(first![0]!.lastSeenNs));
    expect(back[0]!.evidence.firstNs).toBe(String((again.events[0] as { ns: bigint }).ns)); // a new episode
    expect(lines).toHaveLength(3);
    expect(advisor.stats.ticks).toBe(5);
  });
});

describe("bounds", () => {
  test("pending events are bounded: the oldest are dropped and counted", async () => {
    using p = await advisorPolicy();
    const { advisor } = newAdvisor(p, { pendingMax: 8 });
    using _ = advisor;
    const tr = new Trace();
    for (let i = 0; i < 10; i++) tr.faultMapped(G0, BASE + i * BLOCK); // 20 records
    advisor.feed(tr.events);
    expect(advisor.stats).toMatchObject({ fed: 20, dropped: 12, pending: 8 });
    await advisor.tick();
    // The 8 newest records (4 faults) reached observe; the pending buffer is empty again.
    expect(advisor.stats).toMatchObject({ pending: 0, delivered: 4, dropped: 12 });
    expect(() => newAdvisor(p, { pendingMax: ADVISOR_PENDING_EVENTS_MAX + 1 })).toThrow(UsageError);
    expect(() => newAdvisor(p, { pendingMax: 0 })).toThrow(UsageError);
  });

  test("ranges_max: the least recently seen blocks are forgotten", async () => {
    using p = await advisorPolicy({ ranges_max: 4 });
    const { advisor } = newAdvisor(p);
    using _ = advisor;
    const tr = new Trace();
    // Every other block (no merging), 10 blocks, each faulted in 4 times by G0 alone.
    for (let b = 0; b < 10; b++) for (let i = 0; i < 4; i++) tr.faultMigrated(G0, BASE + 2 * b * BLOCK + i, 0);
    advisor.feed(tr.events);
    const hints = await advisor.tick();
    expect(hints.map((h) => (h.start - BASE) / (2 * BLOCK))).toEqual([6, 7, 8, 9]);
    expect(hints.every((h) => h.kind === "prefetch")).toBe(true);
  });

  test(`at most ${ADVICE_HINTS_MAX} hints, those with the most evidence`, async () => {
    using p = await advisorPolicy();
    const { advisor, lines } = newAdvisor(p);
    using _ = advisor;
    const tr = new Trace();
    // 100 separate blocks with a prefetch pattern; the last 10 with one fault more.
    for (let b = 0; b < 100; b++) for (let i = 0; i < (b >= 90 ? 5 : 4); i++) tr.faultMigrated(G0, BASE + 2 * b * BLOCK + i, 0);
    advisor.feed(tr.events);
    const hints = await advisor.tick();
    expect(hints).toHaveLength(ADVICE_HINTS_MAX);
    expect(lines).toHaveLength(ADVICE_HINTS_MAX);
    expect(hints.filter((h) => h.evidence.events === 5)).toHaveLength(10);
    // In address order.
    expect(hints.map((h) => h.start)).toEqual([...hints.map((h) => h.start)].sort((a, b) => a - b));
  }, 20_000);
});

describe("a tick shares the thread (the agent serves scrapes from it)", () => {
  /** `faults` mapped-only faults of G0 on distinct pages: 2 records each. */
  function mappedFaults(faults: number): SmiEvent[] {
    const tr = new Trace();
    for (let i = 0; i < faults; i++) tr.faultMapped(G0, BASE + i);
    return tr.events;
  }

  test(`a tick yields to the event loop between slices of ${ADVISOR_TICK_SLICE_EVENTS} events, and delivers every event in order`, async () => {
    using p = await advisorPolicy();
    const { advisor } = newAdvisor(p);
    using _ = advisor;
    const faults = 4 * ADVISOR_TICK_SLICE_EVENTS;
    advisor.feed(mappedFaults(faults));
    // Count the event-loop turns that run while the tick is in progress.
    let turns = 0;
    let ticking = true;
    const spin = (): void => {
      if (!ticking) return;
      turns++;
      setImmediate(spin);
    };
    setImmediate(spin);
    await advisor.tick();
    ticking = false;
    // 8 slices of records to convert, 4 of observed faults to deliver, one before advise.
    expect(turns).toBeGreaterThanOrEqual((2 * faults) / ADVISOR_TICK_SLICE_EVENTS + faults / ADVISOR_TICK_SLICE_EVENTS);
    expect(advisor.stats).toMatchObject({ fed: 2 * faults, pending: 0, delivered: faults, observeFailures: 0, adviseFailures: 0, ticks: 1 });
  });

  test("events fed while a tick yields wait for the next tick; a dispose while it yields ends it with no hints", async () => {
    using p = await advisorPolicy();
    const { advisor } = newAdvisor(p);
    advisor.feed(mappedFaults(2 * ADVISOR_TICK_SLICE_EVENTS));
    setImmediate(() => advisor.feed(mappedFaults(3)));
    await advisor.tick();
    expect(advisor.stats).toMatchObject({ delivered: 2 * ADVISOR_TICK_SLICE_EVENTS, pending: 6 });
    advisor.feed(mappedFaults(2 * ADVISOR_TICK_SLICE_EVENTS));
    const tick = advisor.tick();
    setImmediate(() => advisor[Symbol.dispose]());
    expect(await tick).toEqual([]);
    expect(advisor.stats.ticks).toBe(1);
  });
});

describe("what observe receives", () => {
  /** Records every event it observes; advise reports them back as hints (one per event). */
  const RECORDER = `
const seen = [];
export function observe(input) { for (const e of input.events) if (seen.length < 64) seen.push(e); return null; }
export function advise(input, ctx) {
  return seen.map((e, i) => ({
    kind: "prefetch", start: i, npages: 1, gpuId: ctx.gpus[0].id, pattern: "rec-" + e.kind,
    evidence: { events: e.npages, firstNs: e.nowNs, lastNs: e.nowNs, gpus: [], detail: [e.gpuId, e.start, e.from, e.to, e.trigger].join(",") },
  }));
}`;

  test("faults pair START with END and carry the migration's from/to; fds interleaved by read are put in time order", async () => {
    using p = await Policy.load(pluginPolicy("recorder", RECORDER), OPTS);
    const { advisor } = newAdvisor(p);
    using _ = advisor;
    const tr = new Trace();
    tr.faultMigrated(G0, BASE + 5, 0); // 0 -> G0
    tr.faultMigrated(G1, BASE + 6, G0); // G0 -> 0 -> G1: from G0, to G1
    tr.faultMapped(G1, BASE + 7); // 'U': nothing moved
    tr.cpuInvalidate(G0, BASE, BLOCK);
    tr.migrate(BASE, BLOCK, G1, 0, 3); // TTM eviction: a migrate and an evict
    // Read per fd, as two readers would deliver them: all of G1's records, then G0's.
    const byFd = [...tr.events.filter((e) => e.gpuId === G1), ...tr.events.filter((e) => e.gpuId === G0)];
    advisor.feed(byFd);
    const got = (await advisor.tick()).map((h) => `${h.pattern} ${h.evidence.detail} @${BigInt(h.evidence.firstNs) - BigInt(T0)}`);
    const ms = (n: number) => `@${n * MS}`;
    expect(got).toEqual([
      `rec-migrate ${G0},${BASE},0,${G0},1 ${ms(2)}`,
      `rec-fault ${G0},${BASE + 5},0,${G0},1 ${ms(0)}`,
      `rec-migrate ${G0},${BASE},${G0},0,1 ${ms(6)}`,
      `rec-migrate ${G1},${BASE},0,${G1},1 ${ms(8)}`,
      `rec-fault ${G1},${BASE + 6},${G0},${G1},1 ${ms(4)}`,
      `rec-fault ${G1},${BASE + 7},${LOC_UNDEFINED},${LOC_UNDEFINED},1 ${ms(10)}`,
      `rec-unmap ${G0},${BASE},0,0,0 ${ms(12)}`,
      `rec-migrate ${G1},${BASE},${G1},0,3 ${ms(14)}`,
      `rec-evict ${G1},${BASE},${G1},0,3 ${ms(14)}`,
    ]);
  });

  test("boot-time ns beyond 2^53 become exact relative times", async () => {
    using p = await Policy.load(pluginPolicy("recorder2", RECORDER), OPTS);
    const { advisor } = newAdvisor(p);
    using _ = advisor;
    const big = 2n ** 60n + 1n;
    advisor.feed([parsed(`7 ${big} -4242 @100000(3fe1) R`, G0), parsed(`8 ${big + 3n} -4242 @100000(3fe1) U`, G0), parsed(`b ${big + 5n} -4242 @100000(200) 3fe1 2`, G0)]);
    const hints = await advisor.tick();
    expect(hints.map((h) => h.evidence.firstNs)).toEqual([String(big), String(big + 5n)]);
  });

  test("events are put in time order however far apart they are, and events of one time keep their feed order", async () => {
    /** One CPU unmap of page `start` at T0 + `s` seconds. */
    const unmapAt = (s: number, start: number): SmiEvent[] => {
      const tr = new Trace();
      tr.t = T0 + s * 1e9;
      return tr.cpuInvalidate(G0, start, 1).events;
    };
    // Spans of 2 s and of 300 s (beyond what the packed sort key holds exactly, ~137 s).
    for (const [name, scale] of [["recorder-near", 0.01], ["recorder-far", 1]] as const) {
      using p = await Policy.load(pluginPolicy(name, RECORDER), OPTS);
      const { advisor } = newAdvisor(p);
      using _ = advisor;
      advisor.feed([...unmapAt(300 * scale, 1), ...unmapAt(0, 2), ...unmapAt(200 * scale, 3), ...unmapAt(0, 4), ...unmapAt(200 * scale, 5)]);
      const starts = (await advisor.tick()).map((h) => Number(h.evidence.detail.split(",")[1]));
      expect(starts).toEqual([2, 4, 3, 5, 1]);
    }
  });

  test("a fault whose END never comes is bounded and counted, never delivered", async () => {
    using p = await Policy.load(pluginPolicy("recorder3", RECORDER), OPTS);
    const { advisor } = newAdvisor(p);
    using _ = advisor;
    const tr = new Trace();
    tr.line(fmt.fmtPageFaultStart(tr.t, PID, BASE, G0, true), G0).line(fmt.fmtPageFaultStart(tr.t, PID, BASE, G0, true), G0);
    advisor.feed(tr.events);
    expect(await advisor.tick()).toEqual([]);
    expect(advisor.stats.faultsUnpaired).toBe(1);
  });
});

describe("failing and unsuitable policies", () => {
  test("garbage from advise: no hints, a counted fallback", async () => {
    using p = await Policy.load(pluginPolicy("garbage", `export function advise() { return [{ kind: "teleport", start: -1 }]; }\nexport function observe() { throw new Error("no"); }`), OPTS);
    const { advisor, lines } = newAdvisor(p);
    using _ = advisor;
    advisor.feed(new Trace().faultMapped(G0, BASE).events);
    expect(await advisor.tick()).toEqual([]);
    expect(advisor.hints()).toEqual([]);
    expect(lines).toEqual([]);
    expect(advisor.stats).toMatchObject({ adviseFailures: 1, observeFailures: 1, delivered: 1, ticks: 1 });
    expect(p.log.entries().some((e) => e.hook === "advise" && e.fallback?.reason === "invalid-output")).toBe(true);
  });

  test("a hint for a GPU of another process is refused by the host", async () => {
    using p = await Policy.load(
      pluginPolicy("stranger", `export function advise() { return [{ kind: "prefetch", start: 0, npages: 1, gpuId: 7, pattern: "x", evidence: { events: 1, firstNs: 0, lastNs: 0, gpus: [], detail: "" } }]; }`),
      OPTS,
    );
    const { advisor } = newAdvisor(p);
    using _ = advisor;
    expect(await advisor.tick()).toEqual([]);
    expect(advisor.stats.adviseFailures).toBe(1);
  });

  test("a fail-closed policy that fails: counted, the tick still resolves", async () => {
    const yaml = pluginPolicy("closed", `export function advise() { throw new Error("boom"); }`);
    writeFileSync(yaml, `${await Bun.file(yaml).text()}  onFailure: fail-closed\n`);
    using p = await Policy.load(yaml, OPTS);
    const { advisor } = newAdvisor(p);
    using _ = advisor;
    expect(await advisor.tick()).toEqual([]);
    expect(advisor.stats.adviseFailures).toBe(1);
  });

  test("a policy that cannot advise is refused at construction; a getter's is skipped at each tick", async () => {
    using noAdvise = await Policy.load(join(ROOT, "policies/migration/thrash-guard.yaml"), OPTS);
    using sampling = await Policy.load(join(ROOT, "policies/sampling/fixed.yaml"), OPTS);
    expect(() => newAdvisor(noAdvise)).toThrow(/exports no advise hook/);
    expect(() => newAdvisor(sampling)).toThrow(/is a SamplingPolicy/);
    const lines: string[] = [];
    let serving: Policy | undefined = noAdvise;
    using advisor = new Advisor({ policy: () => serving, gpus: GPUS, log: (l) => lines.push(l) });
    expect(await advisor.tick()).toEqual([]);
    serving = undefined;
    expect(await advisor.tick()).toEqual([]);
    expect(advisor.stats.ticksWithoutPolicy).toBe(2);
  });

  test("bad GPU lists are usage errors", async () => {
    using p = await advisorPolicy();
    expect(() => newAdvisor(p, { gpus: [] })).toThrow(UsageError);
    expect(() => newAdvisor(p, { gpus: [{ id: G0 }, { id: G0 }] })).toThrow(/listed twice/);
    expect(() => newAdvisor(p, { gpus: [{ id: 0 }] })).toThrow(UsageError);
  });

  test("after dispose, feeds are dropped and ticks advise nothing", async () => {
    using p = await advisorPolicy();
    const { advisor } = newAdvisor(p);
    advisor[Symbol.dispose]();
    advisor.feed(new Trace().faultMapped(G0, BASE).events);
    expect(advisor.stats.fed).toBe(0);
    expect(await advisor.tick()).toEqual([]);
  });
});

test("the HIP calls of each kind", () => {
  expect(adviceHipCall("preferred_location", "0x7f0000000000", 4096, 3)).toBe("hipMemAdvise((void*)0x7f0000000000, 4096, hipMemAdviseSetPreferredLocation, 3)");
  expect(adviceHipCall("preferred_location", "0x1000", 8192, "cpu")).toBe("hipMemAdvise((void*)0x1000, 8192, hipMemAdviseSetPreferredLocation, hipCpuDeviceId)");
  expect(adviceHipCall("accessed_by", "0x1000", 4096, 0)).toBe("hipMemAdvise((void*)0x1000, 4096, hipMemAdviseSetAccessedBy, 0)");
  expect(adviceHipCall("prefetch", "0x1000", 2097152, 1)).toBe("hipMemPrefetchAsync((void*)0x1000, 2097152, 1, stream)");
});

describe("the emulated machine", () => {
  test("pingpong on dev-2gpu, read through the SMI event fds: a ping-pong hint over the buffer", async () => {
    const profile = loadProfile("dev-2gpu");
    const gpus = profile.gpus.map((g) => ({ id: g.id, index: g.index, hiveId: g.hiveId, appApu: g.appApu, vramBytes: g.vramBytes }));
    const [E0, E1] = gpus.map((g) => g.id) as [number, number];
    using p = await advisorPolicy();
    const lines: string[] = [];
    using advisor = new Advisor({ policy: p, gpus, log: (l) => lines.push(l) });
    const machine = new EmuMachine({ profile });
    const sys = new EmuKfd(machine);
    using dev = KfdDevice.open(sys);
    using r0 = SmiEventReader.open(dev, E0, SMI_EVENTS_ALL);
    using r1 = SmiEventReader.open(dev, E1, SMI_EVENTS_ALL);
    const timer = setInterval(() => {
      advisor.feed(r0.pollOnce());
      advisor.feed(r1.pollOnce());
    }, 1);
    const result = await machine.workloadRun(builtinWorkload("pingpong", profile)!, sys.pid).finally(() => clearInterval(timer));
    for (const r of [r0, r1]) for (let b = r.pollOnce(); b.length > 0; b = r.pollOnce()) advisor.feed(b);
    expect(machine.smiDropped).toBe(0);
    const hints = await advisor.tick();
    // The 64 MiB buffer (32 blocks) moves to gpu0, then gpu1, 8 rounds each: 16 migrations to
    // a GPU and 15 changes per block. No common hive: system memory preferred, both access it.
    const start = machine.model.proc(sys.pid).vmas[0]!.start;
    const npages = (64 * 2 ** 20) / 4096;
    expect(hints.map(gist)).toEqual([
      { kind: "preferred_location", pattern: "ping-pong", start, npages, gpuId: 0, device: "cpu" },
      { kind: "accessed_by", pattern: "ping-pong", start, npages, gpuId: E0, device: 0 },
      { kind: "accessed_by", pattern: "ping-pong", start, npages, gpuId: E1, device: 1 },
    ]);
    expect(hints[0]!.evidence.events).toBe(32 * 16);
    expect(hints[0]!.evidence.gpus).toEqual([E0, E1]);
    expect(hints[0]!.evidence.detail).toBe(
      `512 migrations to GPUs, 480 changes, 32 block(s); faults 0x${E0.toString(16)}:256 0x${E1.toString(16)}:256; no common XGMI hive: keep it in system memory`,
    );
    expect(result.gpuFaults).toBe(512);
    expect(lines).toHaveLength(3);
    expect(advisor.stats).toMatchObject({ dropped: 0, observeFailures: 0, adviseFailures: 0, faultsUnpaired: 0 });
  }, 30_000);
});
