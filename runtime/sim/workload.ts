/**
 * Workloads (docs/workloads.md): processes, allocations, per-agent streams of operations
 * (accesses, set_attr hints, barriers, sleeps) and timed hints. YAML files, the built-ins
 * (written in the same YAML, see builtins.ts) and traces (trace.ts) all become a Workload.
 */
import { isScalar, type Node } from "yaml";
import { LOC_SYSMEM, LOC_UNDEFINED, SVM_FLAG } from "../policy/contracts/migration.ts";
import { PAGE_BYTES, SVM_ATTR, SVM_GET_ATTR_QUERIES, type SvmAttrName } from "../svm/constants.ts";
import type { AttrPair } from "../svm/model.ts";
import type { MachineProfile } from "./profile.ts";
import { readConfigFile } from "../config.ts";
import { PID_MAX } from "../kfd/smi-events.ts";
import { YAML_BYTES_MAX, YamlReader, parseSize } from "./yaml-read.ts";

export type Pattern = "seq" | "random" | "zipf" | "strided";
export const PATTERNS: readonly Pattern[] = ["seq", "random", "zipf", "strided"];

export interface AllocSpec {
  name: string;
  pid: number;
  pages: number;
  /** Registered with SET_ATTR (hipMallocManaged) or plain memory (faults create ranges, §3). */
  register: boolean;
  kind: "anon" | "heap" | "stack";
  attrs: AttrPair[];
  /** First page; assigned by the engine unless fixed (traces). */
  start: number;
  /** The CPU mappings may be written (PROT_WRITE); false: read-only, a GPU write fault is EPERM (absent: true). */
  writable?: boolean;
  /** Made of this many CPU mappings (vmas) side by side, never merged (absent: 1). */
  vmas?: number;
  /**
   * A non-SVM buffer (ALLOC_MEMORY_OF_GPU + MAP_MEMORY_TO_GPU on every GPU): its domain, 0
   * for system memory (GTT/userptr) or the gpu_id whose VRAM holds it; absent: SVM memory.
   */
  buffer?: number;
  /** Placed right after the previous allocation (no 1 GiB alignment); absent: false. */
  adjacent?: boolean;
}

export type OpSpec =
  | {
      op: "access";
      alloc: number;
      offset: number;
      pages: number;
      pattern: Pattern;
      count: number;
      write: number;
      stride: number;
      zipfS: number;
    }
  | { op: "set_attr"; alloc: number; offset: number; pages: number; attrs: AttrPair[] }
  | { op: "barrier" }
  | { op: "sleep"; ns: number }
  /** munmap of a part (or all) of an allocation; FREE_MEMORY_OF_GPU for a buffer. */
  | { op: "free"; alloc: number; offset: number; pages: number }
  /** GET_ATTR over a part of an allocation; `attrs` are the queries (values of access queries are gpu_ids). */
  | { op: "get_attr"; alloc: number; offset: number; pages: number; attrs: AttrPair[] }
  /** SET_XNACK_MODE. */
  | { op: "set_xnack"; xnack: boolean }
  /** The stream's process exits (kfd-svm.md §9): every stream of the process ends. */
  | { op: "exit" }
  /** Accesses at absolute times and pages (traces). */
  | { op: "timed"; times: Float64Array; pages: Float64Array; writes: Uint8Array; n: number };

export interface StreamSpec {
  /** GPU index, or AGENT_CPU. */
  agent: number;
  pid: number;
  ops: OpSpec[];
}
export const AGENT_CPU = -1;

export interface HintSpec {
  atNs: number;
  pid: number;
  alloc: number;
  offset: number;
  pages: number;
  attrs: AttrPair[];
  /** The call made at `atNs` (absent: set_attr); traces give every kind (trace.ts). */
  call?: "set_attr" | "free" | "get_attr" | "set_xnack" | "exit";
  /** set_xnack's mode. */
  xnack?: boolean;
}

/** What a failed SET_ATTR, GET_ATTR or SET_XNACK_MODE does to the run (`on_ioctl_error`). */
export type OnIoctlError = "record" | "stop";
export const ON_IOCTL_ERROR: readonly OnIoctlError[] = ["record", "stop"];

export interface ProcessSpec {
  pid: number;
  name: string;
  /** null: the profile's XNACK mode. */
  xnack: boolean | null;
}

export interface Workload {
  name: string;
  description: string;
  processes: ProcessSpec[];
  allocs: AllocSpec[];
  streams: StreamSpec[];
  hints: HintSpec[];
  /** record (default): a failed ioctl is counted in the results and the program goes on; stop: the run fails. */
  onIoctlError?: OnIoctlError;
}

/**
 * Accesses a workload makes (access counts and timed accesses over all streams): a rough
 * measure of how long it takes to simulate, used to start the largest first.
 */
export function workloadAccesses(w: Workload): number {
  let n = 0;
  for (const s of w.streams) {
    for (const op of s.ops) {
      if (op.op === "access") n += op.count;
      else if (op.op === "timed") n += op.n;
    }
  }
  return n;
}

/** Most operations of a workload after `repeat` and `waves` expansion, over all streams. */
export const WORKLOAD_OPS_MAX = 1_000_000;
/**
 * Most accesses a workload makes in all (access counts after `repeat`, over all streams; waves
 * split counts, they do not add to them). About an hour of simulation for random accesses.
 */
export const WORKLOAD_ACCESSES_MAX = 10_000_000_000;

/** Bounds on a workload file. */
export const WORKLOAD_BOUNDS = {
  /** Most operations after `repeat` and `waves` expansion, over all streams. */
  ops_max: WORKLOAD_OPS_MAX,
  /** Most accesses one access op may make. */
  access_count_max: WORKLOAD_ACCESSES_MAX,
  /** Most accesses in all. */
  accesses_max: WORKLOAD_ACCESSES_MAX,
  /** Largest allocation, bytes (16 TiB). */
  alloc_bytes_max: 2 ** 44,
  streams_max: 1024,
  /** Deepest nesting of `repeat`. */
  repeat_depth_max: 4,
  /** Most concurrent waves one GPU stream may be split into. */
  waves_max: 256,
  /** Most CPU mappings (vmas) one allocation may be made of. */
  vmas_max: 64,
} as const;
export const PID_DEFAULT = 4242;
/** Largest pid (the kernel's PID_MAX_LIMIT on 64-bit), as in SMI event records. */
export { PID_MAX };

const TOP = ["kind", "name", "description", "processes", "allocations", "streams", "hints", "on_ioctl_error"] as const;

/** The keys of a stream operation. */
const OP_KEYS = ["access", "set_attr", "barrier", "sleep_ns", "repeat", "free", "get_attr", "set_xnack", "exit"] as const;

/** Parse a workload YAML against a machine profile. @throws ConfigError. */
export function parseWorkload(file: string, text: string, profile: MachineProfile): Workload {
  const y = new YamlReader(file, text);
  const top = y.map(y.root, "", TOP);
  const kind = y.str(y.need(top, "kind", "kind"), "kind");
  if (kind !== "Workload") throw y.error(y.get(top, "kind"), "kind", "Workload", `got ${kind}`);
  const w: Workload = {
    name: y.str(y.need(top, "name", "name"), "name"),
    description: y.str(y.get(top, "description"), "description", ""),
    processes: [],
    allocs: [],
    streams: [],
    hints: [],
  };
  const onErrNode = y.get(top, "on_ioctl_error");
  if (onErrNode !== undefined) {
    const v = y.str(onErrNode, "on_ioctl_error") as OnIoctlError;
    if (!ON_IOCTL_ERROR.includes(v)) throw y.error(onErrNode, "on_ioctl_error", ON_IOCTL_ERROR.join(" or "), `got ${v}`);
    w.onIoctlError = v;
  }
  const procNode = y.get(top, "processes");
  if (procNode === undefined) w.processes.push({ pid: PID_DEFAULT, name: w.name.slice(0, 15), xnack: null });
  else {
    y.seq(procNode, "processes").items.forEach((n, i) => {
      const f = `processes[${i}]`;
      const m = y.map(n, f, ["pid", "name", "xnack"]);
      const pid = y.num(y.need(m, "pid", `${f}.pid`), `${f}.pid`, 1, PID_MAX, undefined, true);
      if (w.processes.some((p) => p.pid === pid)) throw y.error(n, `${f}.pid`, "a pid not used before");
      const xn = y.get(m, "xnack");
      w.processes.push({ pid, name: y.str(y.get(m, "name"), `${f}.name`, `pid${pid}`), xnack: xn === undefined ? null : y.bool(xn, `${f}.xnack`, true) });
    });
  }
  const pidOf = (node: Node | undefined, f: string): number => {
    if (node === undefined) return w.processes[0]!.pid;
    const pid = y.num(node, f, 1, PID_MAX, undefined, true);
    if (!w.processes.some((p) => p.pid === pid)) throw y.error(node, f, `a pid listed under processes`);
    return pid;
  };
  const vramRef = profile.gpus[0]!.vramBytes - profile.gpus[0]!.vramReservedBytes;
  /** A size in pages; `fallbackBytes` when absent. */
  const sizeOf = (node: Node | undefined, f: string, fallbackBytes?: number): number => {
    if (node === undefined && fallbackBytes !== undefined) return fallbackBytes / PAGE_BYTES;
    const raw = node !== undefined && "value" in node ? (node as { value: unknown }).value : undefined;
    let bytes: number;
    if (typeof raw === "string" && /%vram$/.test(raw)) {
      const pct = Number(raw.slice(0, -5));
      bytes = Math.floor(((Number.isFinite(pct) ? pct : Number.NaN) * vramRef) / 100 / PAGE_BYTES) * PAGE_BYTES;
    } else bytes = typeof raw === "number" ? raw : typeof raw === "string" ? parseSize(raw) : Number.NaN;
    if (!Number.isSafeInteger(bytes) || bytes < 0 || bytes > WORKLOAD_BOUNDS.alloc_bytes_max || bytes % PAGE_BYTES !== 0) {
      throw y.error(node, f, "a size in bytes, a multiple of 4096 (e.g. 2MiB, 1GiB, 125%vram)", `got ${String(raw)}`);
    }
    return bytes / PAGE_BYTES;
  };
  const locOf = (node: Node | undefined, f: string): number => {
    const raw = node !== undefined && "value" in node ? (node as { value: unknown }).value : undefined;
    if (raw === "sysmem") return LOC_SYSMEM;
    if (raw === "undefined") return LOC_UNDEFINED;
    if (typeof raw === "string" && /^gpu\d+$/.test(raw)) {
      const g = profile.gpus[Number(raw.slice(3))];
      if (g !== undefined) return g.id;
    }
    if (raw === LOC_SYSMEM || raw === LOC_UNDEFINED || profile.gpus.some((g) => g.id === raw)) return raw as number;
    throw y.error(node, f, `gpu0..gpu${profile.gpus.length - 1}, sysmem, undefined or a gpu_id of profile ${profile.name}`, `got ${String(raw)}`);
  };
  const attrsOf = (node: Node | undefined, f: string): AttrPair[] => {
    if (node === undefined) return [];
    return y.seq(node, f).items.map((n, i) => {
      const af = `${f}[${i}]`;
      const m = y.map(n, af, ["type", "value"]);
      const tn = y.need(m, "type", `${af}.type`);
      const tname = y.str(tn, `${af}.type`) as SvmAttrName;
      // An unknown type is passed through as -1 would hide it: reject here with a position.
      if (!(tname in SVM_ATTR)) throw y.error(tn, `${af}.type`, `one of ${Object.keys(SVM_ATTR).join(", ")}`, `got ${tname}`);
      const type = SVM_ATTR[tname];
      const vn = y.need(m, "value", `${af}.value`);
      let value: number;
      if (type === SVM_ATTR.SET_FLAGS || type === SVM_ATTR.CLR_FLAGS) {
        const raw = "value" in vn ? (vn as { value: unknown }).value : undefined;
        if (typeof raw === "number") value = y.num(vn, `${af}.value`, 0, 0xffffffff, undefined, true);
        else {
          value = 0;
          for (const [j, fnode] of y.seq(vn, `${af}.value`).items.entries()) {
            const fname = y.str(fnode, `${af}.value[${j}]`);
            const bit = (SVM_FLAG as Record<string, number>)[fname];
            if (bit === undefined) throw y.error(fnode, `${af}.value[${j}]`, `one of ${Object.keys(SVM_FLAG).join(", ")}`, `got ${fname}`);
            value |= bit;
          }
        }
      } else if (type === SVM_ATTR.GRANULARITY) value = y.num(vn, `${af}.value`, 0, 0xffffffff, undefined, true);
      else value = locOf(vn, `${af}.value`);
      return [type, value] as AttrPair;
    });
  };
  const allocNode = y.get(top, "allocations");
  if (allocNode !== undefined) {
    y.seq(allocNode, "allocations").items.forEach((n, i) => {
      const f = `allocations[${i}]`;
      const m = y.map(n, f, ["name", "size", "register", "kind", "pid", "attrs", "writable", "vmas", "buffer", "adjacent"]);
      const name = y.str(y.need(m, "name", `${f}.name`), `${f}.name`);
      if (w.allocs.some((a) => a.name === name)) throw y.error(n, `${f}.name`, "a name not used before");
      const pages = sizeOf(y.need(m, "size", `${f}.size`), `${f}.size`);
      if (pages === 0) throw y.error(y.get(m, "size"), `${f}.size`, "a size above 0");
      const kindNode = y.get(m, "kind");
      const kindV = y.str(kindNode, `${f}.kind`, "anon");
      if (kindV !== "anon" && kindV !== "heap" && kindV !== "stack") throw y.error(kindNode, `${f}.kind`, "anon, heap or stack");
      const spec: AllocSpec = {
        name,
        pid: pidOf(y.get(m, "pid"), `${f}.pid`),
        pages,
        register: y.bool(y.get(m, "register"), `${f}.register`, true),
        kind: kindV,
        attrs: attrsOf(y.get(m, "attrs"), `${f}.attrs`),
        start: -1,
      };
      // The optional keys are set only when given, so existing workloads keep their shape.
      const wn = y.get(m, "writable");
      if (wn !== undefined) spec.writable = y.bool(wn, `${f}.writable`, true);
      const vn = y.get(m, "vmas");
      if (vn !== undefined) {
        spec.vmas = y.num(vn, `${f}.vmas`, 1, WORKLOAD_BOUNDS.vmas_max, 1, true);
        if (spec.vmas > pages) throw y.error(vn, `${f}.vmas`, `at most one vma per page (${pages} pages)`);
      }
      const bn = y.get(m, "buffer");
      if (bn !== undefined) {
        spec.buffer = locOf(bn, `${f}.buffer`);
        if (spec.buffer === LOC_UNDEFINED) throw y.error(bn, `${f}.buffer`, "sysmem or a GPU (the buffer's domain)");
        const rn = y.get(m, "register");
        if (rn !== undefined && spec.register) throw y.error(rn, `${f}.register`, "false for a buffer (SET_ATTR over it fails with EADDRINUSE: use a set_attr op to see it)");
        spec.register = false;
        if (spec.attrs.length > 0) throw y.error(y.get(m, "attrs"), `${f}.attrs`, "no attrs on a buffer (it is no SVM memory)");
        // A buffer is mapped whole to every GPU, writable, as one object: these keys would be ignored.
        for (const k of ["writable", "vmas"] as const) {
          if (y.get(m, k) !== undefined) throw y.error(y.get(m, k), `${f}.${k}`, `no ${k} on a buffer (it is one GPU memory object, mapped whole and writable)`);
        }
        // VRAM buffers are allocated before any SVM memory: together they must fit the GPU's
        // VRAM outside its reserved part (else ALLOC_MEMORY_OF_GPU fails with ENOMEM).
        const gpu = profile.gpus.find((g) => g.id === spec.buffer);
        if (gpu !== undefined) {
          const inUse = w.allocs.filter((a) => a.buffer === gpu.id).reduce((sum, a) => sum + a.pages, 0);
          const freePages = Math.floor((gpu.vramBytes - gpu.vramReservedBytes) / PAGE_BYTES) - inUse;
          if (pages > freePages) throw y.error(y.get(m, "size"), `${f}.size`, `a buffer that fits the VRAM of gpu 0x${gpu.id.toString(16)} (${freePages} pages left after its reserved VRAM and earlier buffers)`, `got ${pages} pages`);
        }
      }
      const adj = y.get(m, "adjacent");
      if (adj !== undefined) {
        spec.adjacent = y.bool(adj, `${f}.adjacent`, false);
        if (spec.adjacent && w.allocs.length === 0) throw y.error(adj, `${f}.adjacent`, "false for the first allocation (it follows the previous one)");
      }
      w.allocs.push(spec);
    });
  }
  const allocOf = (node: Node | undefined, f: string): number => {
    const name = y.str(node, f);
    const i = w.allocs.findIndex((a) => a.name === name);
    if (i < 0) throw y.error(node, f, `an allocation name (${w.allocs.map((a) => a.name).join(", ")})`, `got ${name}`);
    return i;
  };
  let opCount = 0;
  let accessCount = 0;
  const opsBound = `at most ${WORKLOAD_OPS_MAX} operations after repeat and waves (WORKLOAD_OPS_MAX)`;
  const accessesBound = `at most ${WORKLOAD_ACCESSES_MAX} accesses in all, after repeat (WORKLOAD_ACCESSES_MAX)`;
  /**
   * The part of an allocation an op names: offset (default 0) and size (default the rest).
   * An offset at or past the end is refused (the default size would be negative).
   */
  const partOf = (m: ReturnType<YamlReader["map"]>, node: Node, f: string) => {
    const alloc = allocOf(y.need(m, "alloc", `${f}.alloc`), `${f}.alloc`);
    const a = w.allocs[alloc]!;
    const offset = sizeOf(y.get(m, "offset"), `${f}.offset`, 0);
    if (offset >= a.pages) throw y.error(node, f, `a non-empty part of allocation ${a.name} (${a.pages} pages)`, `offset ${offset} pages is past its end`);
    const pages = sizeOf(y.get(m, "size"), `${f}.size`, (a.pages - offset) * PAGE_BYTES);
    if (offset + pages > a.pages || pages === 0) throw y.error(node, f, `a non-empty part of allocation ${a.name} (${a.pages} pages)`);
    return { alloc, offset, pages };
  };
  const setAttrOf = (node: Node, f: string) => {
    const m = y.map(node, f, ["alloc", "offset", "size", "attrs"]);
    return { ...partOf(m, node, f), attrs: attrsOf(y.need(m, "attrs", `${f}.attrs`), `${f}.attrs`) };
  };
  /** GET_ATTR queries: names, or {type, value: gpu} for one GPU's access; a bare access name asks every GPU. */
  const queriesOf = (node: Node | undefined, f: string): AttrPair[] => {
    const out: AttrPair[] = [];
    const queries: readonly string[] = SVM_GET_ATTR_QUERIES;
    const add = (name: string, n: Node | undefined, af: string, gpu?: number): void => {
      if (!queries.includes(name)) {
        throw y.error(n, af, `a GET_ATTR query: one of ${SVM_GET_ATTR_QUERIES.join(", ")} (ACCESS answers ACCESS, ACCESS_IN_PLACE or NO_ACCESS per GPU; the kernel refuses the other types as queries)`, `got ${name}`);
      }
      const type = SVM_ATTR[name as SvmAttrName];
      if (type !== SVM_ATTR.ACCESS) {
        if (gpu !== undefined) throw y.error(n, af, "ACCESS for the {type, value: gpu} form", `got ${name}: name it alone`);
        out.push([type, 0]);
      } else if (gpu !== undefined) out.push([type, gpu]);
      else for (const g of profile.gpus) out.push([type, g.id]);
    };
    if (node === undefined) {
      for (const name of SVM_GET_ATTR_QUERIES) add(name, node, f);
      return out;
    }
    const items = y.seq(node, f).items;
    if (items.length === 0) throw y.error(node, f, "at least one attribute (leave attrs out for the default set)");
    items.forEach((n, i) => {
      const af = `${f}[${i}]`;
      if (isScalar(n)) {
        add(y.str(n, af), n, af);
        return;
      }
      const m = y.map(n, af, ["type", "value"]);
      const tn = y.need(m, "type", `${af}.type`);
      const vn = y.need(m, "value", `${af}.value`);
      const gpu = locOf(vn, `${af}.value`);
      if (!profile.gpus.some((g) => g.id === gpu)) throw y.error(vn, `${af}.value`, "a GPU (an access query names one)");
      add(y.str(tn, `${af}.type`), tn, `${af}.type`, gpu);
    });
    return out;
  };
  const opsOf = (node: Node, f: string, depth: number): OpSpec[] => {
    const out: OpSpec[] = [];
    y.seq(node, f).items.forEach((n, i) => {
      const of = `${f}[${i}]`;
      // The process has ended: nothing after exit in its stream would run.
      if (out.at(-1)?.op === "exit") throw y.error(n, of, "nothing after exit (the stream's process has ended there)");
      const m = y.map(n, of, OP_KEYS);
      if (m.items.length !== 1) throw y.error(n, of, `exactly one of ${OP_KEYS.join(", ")}`);
      const key = String((m.items[0]!.key as { value: unknown }).value);
      const v = m.items[0]!.value as Node;
      if (++opCount > WORKLOAD_OPS_MAX) throw y.error(n, of, opsBound);
      switch (key) {
        case "access": {
          const am = y.map(v, `${of}.access`, ["alloc", "offset", "size", "pattern", "count", "write", "stride", "zipf_s"]);
          const { alloc, offset, pages } = partOf(am, v, `${of}.access`);
          const pn = y.get(am, "pattern");
          const pattern = y.str(pn, `${of}.access.pattern`, "seq") as Pattern;
          if (!PATTERNS.includes(pattern)) throw y.error(pn, `${of}.access.pattern`, PATTERNS.join(", "));
          const count = y.num(y.get(am, "count"), `${of}.access.count`, 1, WORKLOAD_ACCESSES_MAX, pages, true);
          accessCount += count;
          if (accessCount > WORKLOAD_ACCESSES_MAX) throw y.error(y.get(am, "count") ?? v, `${of}.access.count`, accessesBound);
          out.push({
            op: "access",
            alloc,
            offset,
            pages,
            pattern,
            count,
            write: y.num(y.get(am, "write"), `${of}.access.write`, 0, 1, 0),
            stride: y.num(y.get(am, "stride"), `${of}.access.stride`, 1, 2 ** 40, 1, true),
            zipfS: y.num(y.get(am, "zipf_s"), `${of}.access.zipf_s`, 0.01, 10, 1.1),
          });
          break;
        }
        case "set_attr":
          out.push({ op: "set_attr", ...setAttrOf(v, `${of}.set_attr`) });
          break;
        case "barrier":
          // `barrier: false` is no barrier: refused rather than guessed at.
          if (!isScalar(v) || v.value !== true) throw y.error(v, `${of}.barrier`, "true (a barrier takes no other value; remove the line for none)", `got ${isScalar(v) ? String(v.value) : "a collection"}`);
          out.push({ op: "barrier" });
          break;
        case "sleep_ns":
          out.push({ op: "sleep", ns: y.num(v, `${of}.sleep_ns`, 0, 1e15) });
          break;
        case "free": {
          const fm = y.map(v, `${of}.free`, ["alloc", "offset", "size"]);
          const part = partOf(fm, v, `${of}.free`);
          const a = w.allocs[part.alloc]!;
          if (a.buffer !== undefined && (part.offset !== 0 || part.pages !== a.pages)) {
            throw y.error(v, `${of}.free`, `the whole buffer ${a.name} (FREE_MEMORY_OF_GPU frees a buffer whole)`, `got ${part.pages} of its ${a.pages} pages at offset ${part.offset}`);
          }
          out.push({ op: "free", ...part });
          break;
        }
        case "get_attr": {
          const gm = y.map(v, `${of}.get_attr`, ["alloc", "offset", "size", "attrs"]);
          out.push({ op: "get_attr", ...partOf(gm, v, `${of}.get_attr`), attrs: queriesOf(y.get(gm, "attrs"), `${of}.get_attr.attrs`) });
          break;
        }
        case "set_xnack":
          out.push({ op: "set_xnack", xnack: y.bool(v, `${of}.set_xnack`, true) });
          break;
        case "exit":
          if (!isScalar(v) || v.value !== true) throw y.error(v, `${of}.exit`, "true (the stream's process exits here)", `got ${isScalar(v) ? String(v.value) : "a collection"}`);
          if (depth > 0) throw y.error(v, `${of}.exit`, "exit in a stream's own ops, not inside repeat (a process exits once)");
          out.push({ op: "exit" });
          break;
        case "repeat": {
          if (depth >= WORKLOAD_BOUNDS.repeat_depth_max) throw y.error(v, `${of}.repeat`, `at most ${WORKLOAD_BOUNDS.repeat_depth_max} nested repeats`);
          const rm = y.map(v, `${of}.repeat`, ["times", "ops"]);
          const times = y.num(y.need(rm, "times", `${of}.repeat.times`), `${of}.repeat.times`, 1, WORKLOAD_OPS_MAX, undefined, true);
          const accessesBefore = accessCount;
          const body = opsOf(y.need(rm, "ops", `${of}.repeat.ops`), `${of}.repeat.ops`, depth + 1);
          opCount += body.length * (times - 1);
          if (opCount > WORKLOAD_OPS_MAX) throw y.error(v, `${of}.repeat`, opsBound);
          accessCount += (accessCount - accessesBefore) * (times - 1);
          if (accessCount > WORKLOAD_ACCESSES_MAX) throw y.error(v, `${of}.repeat`, accessesBound);
          for (let t = 0; t < times; t++) out.push(...body);
          break;
        }
      }
    });
    return out;
  };
  y.seq(y.need(top, "streams", "streams"), "streams").items.forEach((n, i) => {
    const f = `streams[${i}]`;
    if (i >= WORKLOAD_BOUNDS.streams_max) throw y.error(n, f, `at most ${WORKLOAD_BOUNDS.streams_max} streams`);
    const m = y.map(n, f, ["agent", "pid", "ops", "waves"]);
    const an = y.need(m, "agent", `${f}.agent`);
    const agentName = y.str(an, `${f}.agent`);
    let agent: number;
    if (agentName === "cpu") agent = AGENT_CPU;
    else if (/^gpu\d+$/.test(agentName) && Number(agentName.slice(3)) < profile.gpus.length) agent = Number(agentName.slice(3));
    else throw y.error(an, `${f}.agent`, `cpu or gpu0..gpu${profile.gpus.length - 1} (profile ${profile.name})`, `got ${agentName}`);
    const pid = pidOf(y.get(m, "pid"), `${f}.pid`);
    const ops = opsOf(y.need(m, "ops", `${f}.ops`), `${f}.ops`, 0);
    const wn = y.get(m, "waves");
    const waves = y.num(wn, `${f}.waves`, 1, WORKLOAD_BOUNDS.waves_max, 1, true);
    if (agent === AGENT_CPU && waves > 1) throw y.error(wn, `${f}.waves`, "1 for the CPU agent");
    // Every wave runs its own copy of the stream's operations (barriers and sleeps included).
    opCount += ops.length * (waves - 1);
    if (opCount > WORKLOAD_OPS_MAX) throw y.error(wn, `${f}.waves`, opsBound, `${ops.length} operations x ${waves} waves`);
    if (w.streams.length + waves > WORKLOAD_BOUNDS.streams_max) throw y.error(n, f, `at most ${WORKLOAD_BOUNDS.streams_max} streams, waves included`);
    for (let k = 0; k < waves; k++) w.streams.push({ agent, pid, ops: waves === 1 ? ops : opsOfWave(ops, k, waves) });
  });
  const hintNode = y.get(top, "hints");
  if (hintNode !== undefined) {
    y.seq(hintNode, "hints").items.forEach((n, i) => {
      const f = `hints[${i}]`;
      const m = y.map(n, f, ["at_ns", "pid", "set_attr"]);
      w.hints.push({
        atNs: y.num(y.need(m, "at_ns", `${f}.at_ns`), `${f}.at_ns`, 0, 1e15),
        pid: pidOf(y.get(m, "pid"), `${f}.pid`),
        ...setAttrOf(y.need(m, "set_attr", `${f}.set_attr`), `${f}.set_attr`),
      });
    });
  }
  return w;
}

/**
 * The share of `ops` that wave `k` of `waves` runs: every wave keeps the barriers and
 * sleeps; wave 0 alone makes the calls (set_attr, free, get_attr, set_xnack, exit); seq and strided accesses are split into
 * contiguous chunks of the region, random and zipf accesses split their count. Waves fault
 * independently, so a GPU's fault worker sees batches of up to `waves` faults.
 */
export function opsOfWave(ops: OpSpec[], k: number, waves: number): OpSpec[] {
  const out: OpSpec[] = [];
  for (const op of ops) {
    if (op.op === "set_attr" || op.op === "free" || op.op === "get_attr" || op.op === "set_xnack" || op.op === "exit") {
      if (k === 0) out.push(op);
    } else if (op.op !== "access") out.push(op);
    else if (op.pattern === "seq" || op.pattern === "strided") {
      const chunk = Math.ceil(op.pages / waves);
      const pages = Math.min(chunk, op.pages - k * chunk);
      if (pages <= 0) continue;
      const count = Math.floor((op.count * pages) / op.pages);
      if (count > 0) out.push({ ...op, offset: op.offset + k * chunk, pages, count });
    } else {
      const count = Math.floor(op.count / waves) + (k < op.count % waves ? 1 : 0);
      if (count > 0) out.push({ ...op, count });
    }
  }
  return out;
}

/** Read and parse a workload file. @throws ConfigError. */
export function loadWorkloadFile(file: string, profile: MachineProfile): Workload {
  const text = readConfigFile(file, YAML_BYTES_MAX, "a readable workload file (or a built-in: svmrt sim --list-workloads)");
  return parseWorkload(file, text, profile);
}
