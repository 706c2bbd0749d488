/** Test fixtures for the SVM model: small machines with simple, fixed costs. */
import { KfdError } from "../../runtime/errors.ts";
import { type MigrationDecider, nativeKernelDefault } from "../../runtime/policy/contracts/migration.ts";
import { FAULT_RESULT, type SvmCosts, type SvmGpu, SvmModel } from "../../runtime/svm/model.ts";

export const GIB = 2 ** 30;
/** Pages per GiB / MiB. */
export const GIB_PAGES = 262_144;
export const MIB2_PAGES = 512;
export const PID = 4242;
/** First page of test allocations (aligned to 1 GiB). */
export const BASE = 0x100000;

/** Fixed costs: 10 µs per handled fault, 1 ns per page copied, 100 ns per map. */
export const TEST_COSTS: SvmCosts = {
  copyNs: (_f, _t, pages) => pages,
  mapNs: () => 100,
  faultServiceNs: 10_000,
  faultDropNs: 10,
  queueEvictNs: 1_000,
};

export interface GpuOpt {
  vramBytes?: number;
  vramReservedBytes?: number;
  hiveId?: number;
  appApu?: boolean;
  svmSupported?: boolean;
}

export function gpus(n: number, opt: GpuOpt = {}, base = 0x3fe1): SvmGpu[] {
  return Array.from({ length: n }, (_, i) => ({
    id: base + i,
    index: i,
    hiveId: opt.hiveId ?? 0,
    appApu: opt.appApu ?? false,
    vramBytes: opt.vramBytes ?? 64 * GIB,
    vramReservedBytes: opt.vramReservedBytes ?? 0,
    svmSupported: opt.svmSupported ?? true,
  }));
}

export interface Fixture {
  m: SvmModel;
  events: string[];
  /** One GPU fault of PID on GPU index gi at page addr at time t; returns [result, done]. */
  fault(gi: number, addr: number, t: number, write?: boolean): [number, number];
}

export function fixture(
  g: SvmGpu[],
  opts: { xnack?: boolean; decider?: MigrationDecider; vma?: [number, number, "anon" | "heap" | "stack"][] } = {},
): Fixture {
  const events: string[] = [];
  const m = new SvmModel({ gpus: g, decider: opts.decider ?? nativeKernelDefault(), costs: TEST_COSTS, seed: 7, fullCheckEvery: 1, sink: (l) => events.push(l) });
  m.processCreate(PID, { xnack: opts.xnack ?? true, name: "test" });
  for (const [s, n, k] of opts.vma ?? [[BASE, 16 * GIB_PAGES, "anon"]]) m.vmaAdd(PID, s, n, k);
  const addrs = new Float64Array(1);
  const writes = new Uint8Array(1);
  const results = new Uint8Array(1);
  const done = new Float64Array(1);
  return {
    m,
    events,
    fault(gi, addr, t, write = false) {
      addrs[0] = addr;
      writes[0] = write ? 1 : 0;
      m.restorePages(PID, gi, 1, addrs, writes, t, results, done);
      return [results[0]!, done[0]!];
    },
  };
}

export { FAULT_RESULT };

/** The errno name of the KfdError `fn` throws, or "no error"; any other throw propagates. */
export function errnoOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof KfdError) return e.errnoName;
    throw e;
  }
  return "no error";
}
