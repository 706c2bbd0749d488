/**
 * The workload operations for the rest of the KFD SVM API (issue 12 item 2): free (munmap,
 * whole or part), exit, get_attr, set_xnack, non-SVM buffers, read-only memory and
 * allocations made of several vmas, each with exact counts derived from kfd_svm.c, plus
 * their YAML and JSONL errors at file:line:col.
 */
import { describe, expect, test } from "bun:test";
import { ConfigError, KfdError } from "../../runtime/errors.ts";
import { nativeKernelDefault } from "../../runtime/policy/contracts/migration.ts";
import { SMI_EVENT } from "../../runtime/svm/constants.ts";
import { runSim, type SimResult } from "../../runtime/sim/engine.ts";
import { loadProfile } from "../../runtime/sim/profile.ts";
import { parseTrace } from "../../runtime/sim/trace.ts";
import { parseWorkload, type Workload } from "../../runtime/sim/workload.ts";

const DEV = loadProfile("dev-2gpu");
const G0 = 0x3fe1;
const G1 = 0x3fe2;
/** Allocations start at page 0x100000 (engine VA_BASE_PAGES). */
const BASE = 0x100000;

function run(w: Workload): { r: SimResult; events: string[] } {
  const events: string[] = [];
  const r = runSim({ profile: DEV, workload: w, decider: nativeKernelDefault(), seed: 1, fullCheckEvery: 1, sink: (line) => events.push(line) });
  return { r, events };
}
const yaml = (text: string): Workload => parseWorkload("ops.yaml", text, DEV);
/** Events with SMI id `id` (hex prefix of the line). */
const ofId = (events: string[], id: number) => events.filter((l) => l.startsWith(`${id.toString(16)} `));

describe("free: munmap of part of an allocation (svm_range_unmap_from_cpu)", () => {
  const w = () =>
    yaml(`kind: Workload
name: free-part
processes: [ { pid: 4242, xnack: true } ]
allocations: [ { name: a, size: 4MiB } ]
streams:
  - agent: gpu0
    ops:
      - access: { alloc: a }
      - free: { alloc: a, offset: 1MiB, size: 1MiB }
      - get_attr: { alloc: a }
      - get_attr: { alloc: a, size: 1MiB }
      - sleep_ns: 1000000
      - access: { alloc: a, offset: 1MiB, size: 4KiB, count: 1 }
`);
  test("the range is split at the hole, unmapped from every access GPU with UNMAP_FROM_CPU, freed by the deferred worker", () => {
    const { r, events } = run(w());
    // One 1024-page range (registered, XNACK on: bitmap_access = both GPUs); two 512-page
    // windows fault and migrate (svm_range_restore_pages), the second one's migration unmaps
    // its window from both access GPUs (MMU_NOTIFY_MIGRATE, the range being mapped_to_gpu).
    expect(r.gpuFaultsByGpu[0]).toEqual({ gpu: "gpu0", gpuId: G0, handled: 2, migrated: 2, mappedOnly: 0 });
    expect(r.migrations.h2d).toBe(2);
    // svm_range_unmap_from_cpu -> svm_range_unmap_from_gpus(..., UNMAP_FROM_CPU) on the
    // unmapped piece, per access|aip GPU: 2 events with trigger 2, for pages 0x100(100).
    const fromCpu = ofId(events, SMI_EVENT.UNMAP_FROM_GPU).filter((l) => l.endsWith(" 2"));
    expect(fromCpu.map((l) => l.split(" ").slice(3).join(" "))).toEqual([`@${(BASE + 256).toString(16)}(100) ${G0.toString(16)} 2`, `@${(BASE + 256).toString(16)}(100) ${G1.toString(16)} 2`]);
    expect(r.unmaps).toBe(2 + 2);
    expect(r.calls.free).toBe(1);
    // svm_range_is_valid: GET_ATTR over the hole fails with EFAULT; over the head it answers.
    expect(r.ioctlErrors).toEqual({ GET_ATTR: { EFAULT: 1 } });
    expect(r.getAttr.map((a) => a.error ?? "ok")).toEqual(["EFAULT", "ok"]);
    expect(r.getAttr[1]!.values).toEqual({ PREFERRED_LOC: 0xffffffff, PREFETCH_LOC: 0xffffffff, SET_FLAGS: 3, CLR_FLAGS: 0xfffffffc, GRANULARITY: 9 });
    expect(r.getAttr[1]!.access).toEqual({ gpu0: "ACCESS", gpu1: "ACCESS" });
    // After the deferred worker freed the piece, a GPU access in the hole finds no vma:
    // svm_range_restore_pages fails (-EFAULT), a VM fault ends the stream.
    expect(r.gpuFaultsFatal).toBe(1);
    expect(ofId(events, SMI_EVENT.VMFAULT)).toHaveLength(1);
    expect(r.exits).toEqual({ processes: 1, ranges: 0, vramPages: 0, pendingWork: 0 });
  });
});

describe("exit: the process's teardown (svm_range_list_fini)", () => {
  test("an exit right after a free flushes the deferred work first and leaves nothing behind; the other streams end", () => {
    const { r, events } = run(
      yaml(`kind: Workload
name: exit-early
allocations: [ { name: a, size: 4MiB } ]
streams:
  - { agent: gpu1, ops: [ { sleep_ns: 50000000 }, { access: { alloc: a } } ] }
  - agent: gpu0
    ops:
      - access: { alloc: a, count: 512 }
      - free: { alloc: a, size: 2MiB }
      - exit: true
`),
    );
    // gpu0 faulted once (one window); the free queued the deferred work (4 us later) but the
    // exit came first: §9 flushes it, then frees the rest. gpu1's stream never ran its access.
    expect(r.gpuFaults).toBe(1);
    expect(r.accesses).toBe(512);
    expect(r.calls).toEqual({ setAttr: 1, getAttr: 0, setXnack: 0, free: 1, exit: 1 });
    expect(r.exits).toEqual({ processes: 1, ranges: 0, vramPages: 0, pendingWork: 0 });
    expect(ofId(events, SMI_EVENT.PROCESS_END)).toHaveLength(1);
    // The exit is the last event, at the time of the free (frees take no simulated time here).
    expect(events.at(-1)!.startsWith(`${SMI_EVENT.PROCESS_END.toString(16)} `)).toBe(true);
  });
});

describe("set_xnack: SET_XNACK_MODE refused while the process has queues (kfd_ioctl_set_xnack_mode)", () => {
  test("EBUSY while a GPU stream holds its queue; accepted once every GPU stream ended", () => {
    const { r } = run(
      yaml(`kind: Workload
name: xnack
processes: [ { pid: 4242, xnack: true } ]
allocations: [ { name: a, size: 2MiB } ]
streams:
  - { agent: gpu0, ops: [ { access: { alloc: a } } ] }
  - agent: cpu
    ops:
      - set_xnack: false
      - barrier: true
      - set_xnack: false
      - get_attr: { alloc: a, attrs: [ACCESS] }
`),
    );
    expect(r.calls.setXnack).toBe(2);
    expect(r.ioctlErrors).toEqual({ SET_XNACK_MODE: { EBUSY: 1 } });
    // The range was created with XNACK on (bitmap_access = every GPU) and keeps its bitmap.
    expect(r.getAttr[0]!.access).toEqual({ gpu0: "ACCESS", gpu1: "ACCESS" });
  });
});

describe("get_attr: svm_range_get_attr aggregates over the ranges", () => {
  test("locations differ -> UNDEFINED; SET_FLAGS is the AND, CLR_FLAGS the NOR; granularity the minimum; access the intersection", () => {
    const { r } = run(
      yaml(`kind: Workload
name: getattr
processes: [ { pid: 4242, xnack: false } ]
allocations:
  - name: a
    size: 4MiB
    attrs: [ { type: ACCESS, value: gpu0 }, { type: ACCESS, value: gpu1 } ]
streams:
  - agent: cpu
    ops:
      - set_attr: { alloc: a, size: 2MiB, attrs: [ { type: PREFERRED_LOC, value: gpu0 }, { type: SET_FLAGS, value: [GPU_RO] }, { type: GRANULARITY, value: 4 }, { type: NO_ACCESS, value: gpu1 } ] }
      - set_attr: { alloc: a, offset: 2MiB, attrs: [ { type: PREFERRED_LOC, value: gpu1 }, { type: CLR_FLAGS, value: [COHERENT] } ] }
      - get_attr: { alloc: a }
      - get_attr: { alloc: a, size: 2MiB }
`),
    );
    // Head: flags HOST_ACCESS|COHERENT|GPU_RO = 0xb, granularity 4, gpu0 only. Tail: flags
    // HOST_ACCESS = 0x1, granularity 9, both GPUs.
    expect(r.getAttr[0]!.values).toEqual({ PREFERRED_LOC: 0xffffffff, PREFETCH_LOC: 0xffffffff, SET_FLAGS: 0x1, CLR_FLAGS: ~0xb >>> 0, GRANULARITY: 4 });
    expect(r.getAttr[0]!.access).toEqual({ gpu0: "ACCESS", gpu1: "NO_ACCESS" });
    expect(r.getAttr[1]!.values).toEqual({ PREFERRED_LOC: G0, PREFETCH_LOC: 0xffffffff, SET_FLAGS: 0xb, CLR_FLAGS: ~0xb >>> 0, GRANULARITY: 4 });
    expect(r.calls).toEqual({ setAttr: 3, getAttr: 2, setXnack: 0, free: 0, exit: 0 });
  });
});

describe("non-SVM buffers, read-only memory, several vmas", () => {
  test("a userptr buffer: no fault on it, EADDRINUSE for SET_ATTR over it, a single-page range next to it (svm_range_create_unregistered_range)", () => {
    const { r, events } = run(
      yaml(`kind: Workload
name: buffer
processes: [ { pid: 4242, xnack: true } ]
allocations:
  - { name: a, size: 4MiB, register: false }
  - { name: buf, size: 1MiB, buffer: sysmem, adjacent: true }
  - { name: c, size: 4MiB, register: false, adjacent: true }
streams:
  - agent: gpu0
    ops:
      - access: { alloc: buf, count: 100 }
      - access: { alloc: c, size: 4KiB, count: 1 }
      - set_attr: { alloc: buf, attrs: [ { type: PREFERRED_LOC, value: gpu0 } ] }
      - set_attr: { alloc: c, size: 4KiB, attrs: [ { type: PREFERRED_LOC, value: gpu0 } ] }
`),
    );
    // buf is a userptr buffer inside the anonymous memory around it (one vma from a to c).
    // c starts at BASE + 0x500: its 512-page block [BASE+0x400, BASE+0x5ff] holds the buffer
    // (svm_range_check_vm_userptr: EADDRINUSE), so the fault creates the single page
    // [BASE+0x500] ("Create one page svm range if 2MB range overlapping") and migrates it.
    expect(r.gpuFaults).toBe(1);
    const mig = ofId(events, SMI_EVENT.MIGRATE_START);
    expect(mig).toHaveLength(1);
    expect(mig[0]!.split(" ")[3]).toBe(`@${(BASE + 0x500).toString(16)}(1)`);
    expect(r.accesses).toBe(101);
    expect(r.ioctlErrors).toEqual({ SET_ATTR: { EADDRINUSE: 1 } });
    expect(r.calls.setAttr).toBe(2);
  });

  test("read-only memory: a GPU read maps it, a GPU write is EPERM, a VM fault (svm_fault_allowed)", () => {
    const { r, events } = run(
      yaml(`kind: Workload
name: ro
processes: [ { pid: 4242, xnack: true } ]
allocations: [ { name: ro, size: 2MiB, register: false, writable: false } ]
streams:
  - { agent: gpu0, ops: [ { access: { alloc: ro, count: 512 } } ] }
  - { agent: gpu1, ops: [ { sleep_ns: 10000000 }, { access: { alloc: ro, count: 1, write: 1 } } ] }
`),
    );
    expect(r.gpuFaultsByGpu.map((g) => g.handled)).toEqual([1, 0]);
    expect(r.gpuFaultsFatal).toBe(1);
    expect(ofId(events, SMI_EVENT.VMFAULT)).toHaveLength(1);
    expect(r.accesses).toBe(512);
  });

  test("several vmas: faults make ranges clipped at each vma; SET_ATTR over all of them is valid (svm_range_is_valid walks the vmas)", () => {
    const plain = run(
      yaml(`kind: Workload
name: vmas
processes: [ { pid: 4242, xnack: true } ]
allocations: [ { name: a, size: 4MiB, register: false, vmas: 4 } ]
streams: [ { agent: gpu0, ops: [ { access: { alloc: a } } ] } ]
`),
    );
    // Four 256-page vmas: each fault's 512-page block is clipped to its vma: 4 ranges, 4 faults.
    expect(plain.r.gpuFaults).toBe(4);
    expect(ofId(plain.events, SMI_EVENT.MIGRATE_START).map((l) => l.split(" ")[3])).toEqual([0, 1, 2, 3].map((k) => `@${(BASE + 256 * k).toString(16)}(100)`));
    const registered = run(
      yaml(`kind: Workload
name: vmas-registered
processes: [ { pid: 4242, xnack: true } ]
allocations: [ { name: a, size: 4MiB, vmas: 4 } ]
streams: [ { agent: gpu0, ops: [ { access: { alloc: a } } ] } ]
`),
    );
    // One registered 1024-page range across the vmas: 2 windows of 512 pages.
    expect(registered.r.ioctlErrors).toEqual({});
    expect(registered.r.gpuFaults).toBe(2);
  });
});

describe("errors: results, or the run stops (on_ioctl_error)", () => {
  const text = (mode: string) => `kind: Workload
name: err
on_ioctl_error: ${mode}
allocations: [ { name: a, size: 2MiB }, { name: b, size: 2MiB } ]
streams:
  - agent: cpu
    ops:
      - free: { alloc: b }
      - set_attr: { alloc: b, attrs: [ { type: PREFERRED_LOC, value: gpu0 } ] }
      - get_attr: { alloc: b }
`;
  test("record counts each failed call by ioctl and errno", () => {
    const { r } = run(yaml(text("record")));
    expect(r.ioctlErrors).toEqual({ GET_ATTR: { EFAULT: 1 }, SET_ATTR: { EFAULT: 1 } });
    expect(r.getAttr).toEqual([{ atNs: 0, pid: 4242, start: BASE + 262_144, pages: 512, error: "EFAULT" }]);
  });
  test("stop fails the run with a KfdError naming the call", () => {
    expect(() => run(yaml(text("stop")))).toThrow(KfdError);
    expect(() => run(yaml(text("stop")))).toThrow(/stream 0 \(cpu, pid 4242\) op 1 \(set_attr\)/);
  });
  test("bad operations are ConfigErrors at file:line:col", () => {
    const bad = (ops: string, re: RegExp) => {
      const t = `kind: Workload\nname: bad\nallocations: [ { name: a, size: 2MiB }, { name: buf, size: 1MiB, buffer: gpu0 } ]\nstreams:\n  - agent: cpu\n    ops:\n${ops}`;
      expect(() => yaml(t)).toThrow(ConfigError);
      expect(() => yaml(t)).toThrow(re);
    };
    bad("      - free: { alloc: a, offset: 2MiB }\n", /ops\.yaml:7:\d+/);
    // Past the end: the default size (the rest) would be negative.
    bad("      - free: { alloc: a, offset: 8MiB }\n", /ops\.yaml:7:\d+: .*free: a non-empty part of allocation a \(512 pages\) \(offset 2048 pages is past its end\)/);
    bad("      - access: { alloc: a, offset: 4MiB }\n", /ops\.yaml:7:\d+: .*access: a non-empty part of allocation a .*past its end/);
    bad("      - set_attr: { alloc: a, offset: 4MiB, attrs: [ { type: PREFERRED_LOC, value: gpu0 } ] }\n", /ops\.yaml:7:\d+: .*set_attr: a non-empty part of allocation a .*past its end/);
    bad("      - exit: false\n", /ops\.yaml:7:\d+.*exit/);
    // Nothing runs after exit: ops after it, a second exit, an exit inside repeat are refused.
    bad("      - exit: true\n      - access: { alloc: a }\n", /ops\.yaml:8:\d+: .*ops\[1\]: nothing after exit/);
    bad("      - exit: true\n      - exit: true\n", /ops\.yaml:8:\d+: .*ops\[1\]: nothing after exit/);
    bad("      - repeat: { times: 2, ops: [ { exit: true } ] }\n", /ops\.yaml:7:\d+: .*repeat\.ops\[0\]\.exit: exit in a stream's own ops, not inside repeat/);
    // A buffer is freed whole.
    bad("      - free: { alloc: buf, offset: 4KiB, size: 4KiB }\n", /ops\.yaml:7:\d+: .*free: the whole buffer buf \(FREE_MEMORY_OF_GPU frees a buffer whole\) \(got 1 of its 256 pages at offset 1\)/);
    // get_attr: {type, value} only for access attributes; an empty list asks nothing.
    bad("      - get_attr: { alloc: a, attrs: [ { type: PREFERRED_LOC, value: gpu0 } ] }\n", /ops\.yaml:7:\d+: .*get_attr\.attrs\[0\]\.type: ACCESS for the \{type, value: gpu\} form \(got PREFERRED_LOC: name it alone\)/);
    bad("      - get_attr: { alloc: a, attrs: [] }\n", /ops\.yaml:7:\d+: .*get_attr\.attrs: at least one attribute/);
    // The kernel takes ACCESS as the access query (its answer's type says which access); the
    // other two types are EINVAL as queries (svm_range_get_attr).
    bad("      - get_attr: { alloc: a, attrs: [ACCESS_IN_PLACE] }\n", /ops\.yaml:7:\d+: .*get_attr\.attrs\[0\]: a GET_ATTR query: one of PREFERRED_LOC, PREFETCH_LOC, ACCESS, SET_FLAGS, CLR_FLAGS, GRANULARITY .*\(got ACCESS_IN_PLACE\)/);
    bad("      - get_attr: { alloc: a, attrs: [ { type: NO_ACCESS, value: gpu0 } ] }\n", /get_attr\.attrs\[0\]\.type: a GET_ATTR query: .*\(got NO_ACCESS\)/);
    bad("      - get_attr: { alloc: a, attrs: [BOGUS] }\n", /ops\.yaml:7:\d+.*get_attr\.attrs\[0\]/);
    bad("      - set_xnack: maybe\n", /ops\.yaml:7:\d+.*set_xnack/);
    expect(() => yaml("kind: Workload\nname: x\non_ioctl_error: ignore\nstreams: []\n")).toThrow(/ops\.yaml:3:\d+.*record or stop/);
    expect(() => yaml("kind: Workload\nname: x\nallocations: [ { name: b, size: 1MiB, buffer: gpu0, register: true } ]\nstreams: []\n")).toThrow(/register/);
    // VRAM buffers must fit the GPU (ALLOC_MEMORY_OF_GPU would fail with ENOMEM, a device error without position).
    expect(() => yaml("kind: Workload\nname: x\nallocations: [ { name: b, size: 16TiB, buffer: gpu0 } ]\nstreams: []\n")).toThrow(
      /ops\.yaml:3:\d+: allocations\[0\]\.size: a buffer that fits the VRAM of gpu 0x[0-9a-f]+ \(\d+ pages left after its reserved VRAM and earlier buffers\) \(got 4294967296 pages\)/,
    );
    const vramPages = DEV.gpus[0]!.vramBytes / 4096;
    expect(() => yaml(`kind: Workload\nname: x\nallocations:\n  - { name: b, size: ${(vramPages / 2) * 4096}, buffer: gpu0 }\n  - { name: c, size: ${(vramPages / 2 + 1) * 4096}, buffer: gpu0 }\nstreams: []\n`)).toThrow(/ops\.yaml:5:\d+: allocations\[1\]\.size: a buffer that fits/);
    // A buffer is one GPU memory object: writable and vmas would be ignored, so they are refused.
    for (const k of ["writable: false", "vmas: 4"]) {
      expect(() => yaml(`kind: Workload\nname: x\nallocations: [ { name: b, size: 1MiB, buffer: sysmem, ${k} } ]\nstreams: []\n`)).toThrow(/ops\.yaml:3:\d+: .*no (writable|vmas) on a buffer/);
    }
  });
});

describe("JSONL traces carry the calls", () => {
  const trace = (text: string, onBadLine: "stop" | "skip" = "stop") => parseTrace("t.jsonl", text, DEV, { onBadLine, warn: () => {} });
  test("free, get_attr, set_xnack and exit replay at their times", () => {
    const w = trace(
      [
        '{"t_ns": 0, "agent": "gpu0", "page": "0x100000", "pages": 4}',
        '{"t_ns": 5000000, "op": "get_attr", "page": "0x100000", "pages": 512, "attrs": ["GRANULARITY", "ACCESS"]}',
        '{"t_ns": 6000000, "op": "free", "page": "0x100000", "pages": 256}',
        '{"t_ns": 6000001, "op": "set_xnack", "xnack": true}',
        '{"t_ns": 7000000, "op": "exit"}',
        '{"t_ns": 8000000, "pid": 77, "op": "exit"}',
      ].join("\n"),
    );
    const { r } = run(w);
    expect(r.calls).toEqual({ setAttr: 0, getAttr: 1, setXnack: 1, free: 1, exit: 2 });
    expect(r.getAttr[0]!.values).toEqual({ GRANULARITY: 9 });
    expect(r.getAttr[0]!.access).toEqual({ gpu0: "ACCESS", gpu1: "ACCESS" });
    expect(r.ioctlErrors).toEqual({});
    expect(r.exits).toEqual({ processes: 2, ranges: 0, vramPages: 0, pendingWork: 0 });
    // The 512-page range was mapped on gpu0 by its fault: the munmap unmaps it from both GPUs.
    expect(r.unmaps).toBe(2);
  });
  test("a bad call is a bad line at file:line", () => {
    expect(() => trace('{"t_ns": 0, "op": "munmap", "page": 1}')).toThrow(/t\.jsonl:1:1.*op: one of free, get_attr, set_xnack, exit/);
    expect(() => trace('{"t_ns": 0, "agent": "gpu0", "page": 1}\n{"t_ns": 0, "op": "exit", "page": 3}')).toThrow(/t\.jsonl:2:1.*only the keys t_ns, pid, op for op exit/);
    expect(() => trace('{"t_ns": 0, "op": "set_xnack"}')).toThrow(/xnack: true or false/);
    expect(trace('{"t_ns": 0, "op": "get_attr", "page": 1, "attrs": ["NOPE"]}', "skip").badLines).toBe(1);
    expect(() => trace('{"t_ns": 0, "op": "get_attr", "page": 1, "pages": 1, "attrs": ["NO_ACCESS"]}')).toThrow(/attrs: a list of GET_ATTR queries \(PREFERRED_LOC, PREFETCH_LOC, ACCESS, SET_FLAGS, CLR_FLAGS, GRANULARITY;/);
  });
});

describe("two GPUs sharing one unregistered buffer at random (the SIM_EVENTS_MAX report)", () => {
  test("ping-pong, but every access completes: the 2 ms duplicate window lets each faulting wave through", () => {
    const w = yaml(`kind: Workload
name: shared-random
processes: [ { pid: 4242, xnack: true } ]
allocations: [ { name: buf, size: 64MiB, register: false } ]
streams:
  - { agent: gpu0, waves: 16, ops: [ { access: { alloc: buf, pattern: random, count: 4000 } } ] }
  - { agent: gpu1, waves: 16, ops: [ { access: { alloc: buf, pattern: random, count: 4000 } } ] }
`);
    const r = runSim({ profile: DEV, workload: w, decider: nativeKernelDefault(), seed: 1 });
    expect(r.accesses).toBe(8000);
    // Nearly every access faults and moves its range between the GPUs (d2d), a bounded number of times.
    expect(r.migrations.d2d).toBeGreaterThan(1000);
    expect(r.gpuFaults).toBeLessThan(4 * r.accesses);
    expect(r.gpuFaultsByGpu[0]!.handled + r.gpuFaultsByGpu[1]!.handled).toBe(r.gpuFaults);
  });
});
