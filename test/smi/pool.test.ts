/**
 * The library worker pool (runtime/smi/pool.ts) over real Bun Workers: on the emulated
 * backend (hangs and init failures injected through its shared state, a machine profile that
 * disappears to make a worker's start fail) and on the amdsmi C double (a hung amdsmi_init).
 * Checked: a worker that failed to start, crashed or ended is removed and replaced within the
 * bounds; a call's deadline counts its time in the queue; close() is bounded; terminate()
 * settles every call; typed errors survive the trip from a worker; the hung-worker bound.
 * Orders are asserted, never durations.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { emuSmiInject, emuSmiSharedCreate } from "../../runtime/emu/smi.ts";
import { ConfigError, ConfigErrors, InvariantError, KfdError, PolicyError, SmiError, UsageError } from "../../runtime/errors.ts";
import { backendCandidates, type SmiBackendSpec } from "../../runtime/smi/backend.ts";
import { loadProfile } from "../../runtime/sim/profile.ts";
import type { GpuInventoryEntry } from "../../runtime/smi/inventory.ts";
import { errorFromWire, errorToWire, POOL_HUNG_WORKERS_MAX, SmiPool } from "../../runtime/smi/pool.ts";
import { sessionSharedCreate } from "../../runtime/smi/session.ts";
import { amdsmiDoubleFixture } from "../ffi/amdsmi-double.ts";

/** A hang no test outlives: the pool's terminate() ends the Worker blocked in it, ms. */
const HANG_LONG_ms = 20_000;
/** A call timeout that a hung read always exceeds, ms. */
const TIMEOUT_SHORT_ms = 100;
/** A call timeout no answer in these tests needs, ms. */
const TIMEOUT_LONG_ms = 15_000;
/** Longest the test waits for a state it polls for, ms. */
const POLL_WAIT_MAX_ms = 20_000;
const TEST_TIMEOUT_ms = 60_000;
/** How long the double's amdsmi_init sleeps holding its lock (a hung init), ms: far longer than a worker's start. */
const INIT_HANG_ms = 5_000;

const tmp = mkdtempSync(join(tmpdir(), "svmrt-pool-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** Poll `cond` every ms until it holds; throws after POLL_WAIT_MAX_ms saying what did not happen. */
async function until(cond: () => boolean, what: string): Promise<void> {
  const deadline = performance.now() + POLL_WAIT_MAX_ms;
  while (!cond()) {
    if (performance.now() > deadline) throw new Error(`${what}: not within ${POLL_WAIT_MAX_ms} ms`);
    await Bun.sleep(1);
  }
}

/** The rejection of `p` (an Error saying so when it resolved instead). */
async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (e) {
    return e as Error;
  }
  return new Error("resolved, expected a rejection");
}

interface Rig {
  pool: SmiPool;
  /** The emulated library state (emulated rigs only). */
  emu: SharedArrayBuffer;
  lines: string[];
  gpus: GpuInventoryEntry[];
}

/** A pool of `size` workers over the emulated dev-2gpu machine (or `profile`) in lazy mode. */
async function emulatedPool(size: number, profile = "dev-2gpu"): Promise<Rig> {
  const emu = emuSmiSharedCreate(2);
  const lines: string[] = [];
  const pool = await SmiPool.start({ spec: { backend: "emulated", profile: loadProfile(profile), shared: emu }, sessionShared: sessionSharedCreate("lazy"), size, log: (l) => lines.push(l) });
  const gpus = await pool.call<GpuInventoryEntry[]>({ op: "inventory" }, TIMEOUT_LONG_ms);
  return { pool, emu, lines, gpus };
}

/** Make every temperature read of GPU 0 hang for HANG_LONG_ms. */
function temperatureHang(emu: SharedArrayBuffer): void {
  emuSmiInject(emu, { gpuIndex: 0, field: "temperature", mode: "hang", hangMs: HANG_LONG_ms });
}

function temperatureRead(r: Rig, timeoutMs: number, onSettled?: () => void): Promise<unknown> {
  return r.pool.call({ op: "read", uuid: r.gpus[0]!.uuid, group: "temperature", skip: [] }, timeoutMs, onSettled);
}

/** The pool's own Workers (to crash or end one from outside, as a bug or the system would). */
function poolWorkers(pool: SmiPool): Worker[] {
  return (pool as unknown as { workers: { worker: Worker }[] }).workers.map((w) => w.worker);
}

function statusOf(e: Error): string | undefined {
  return e instanceof SmiError ? e.statusName : `${e.name}: ${e.message}`;
}

describe("broken workers leave the rotation (finding 5)", () => {
  test(
    "a worker killed by an uncaught error fails its call (onSettled runs), leaves the pool and is replaced",
    async () => {
      const r = await emulatedPool(1);
      try {
        const [w] = poolWorkers(r.pool);
        // A message the worker's handler cannot read throws outside every try: an uncaught error.
        w!.postMessage(null);
        let settled = 0;
        const e = await rejection(r.pool.call({ op: "info" }, TIMEOUT_LONG_ms, () => settled++));
        expect(e).toBeInstanceOf(SmiError);
        expect((e as SmiError).statusName).toBe("WORKER_FAILED");
        expect(settled).toBe(1);
        await until(() => r.pool.workersStarted === 2 && r.pool.workersIdle === 1, "a replacement started");
        expect(r.pool.workersAlive).toBe(1);
        expect(r.pool.hungWorkers).toBe(0);
        expect(await r.pool.call({ op: "info" }, TIMEOUT_LONG_ms)).toMatchObject({ backend: "emulated" });
        expect(r.lines.some((l) => l.includes("library worker failed"))).toBe(true);
      } finally {
        r.pool.terminate();
      }
    },
    TEST_TIMEOUT_ms,
  );

  test(
    "a worker that ends without an error (its close event) is replaced",
    async () => {
      const r = await emulatedPool(2);
      try {
        poolWorkers(r.pool)[0]!.terminate();
        await until(() => r.pool.workersStarted === 3 && r.pool.workersIdle === 2, "a replacement started");
        expect(r.pool.workersAlive).toBe(2);
        const answers = await Promise.all([r.pool.call({ op: "info" }, TIMEOUT_LONG_ms), r.pool.call({ op: "info" }, TIMEOUT_LONG_ms)]);
        expect(answers).toHaveLength(2);
        expect(r.lines.some((l) => l.includes("library worker ended"))).toBe(true);
      } finally {
        r.pool.terminate();
      }
    },
    TEST_TIMEOUT_ms,
  );
});

describe("deadlines (finding 6)", () => {
  test(
    "a call queued behind a busy worker times out at its own deadline, leaves the queue, and its onSettled runs",
    async () => {
      const r = await emulatedPool(1);
      try {
        temperatureHang(r.emu);
        const order: string[] = [];
        const read = temperatureRead(r, TIMEOUT_LONG_ms).then(
          () => order.push("read answered"),
          (e: Error) => order.push(`read ${statusOf(e)}`),
        );
        await until(() => r.pool.workersIdle === 0, "the read in its worker");
        let settled = 0;
        const queued = await rejection(r.pool.call({ op: "info" }, TIMEOUT_SHORT_ms, () => settled++));
        order.push(`queued ${statusOf(queued)}`);
        // The read ahead of it is still hung: the queued call did not wait for it.
        expect(order).toEqual(["queued TIMEOUT"]);
        expect(queued.message).toContain("waited");
        expect(settled).toBe(1);
        expect(r.pool.queued).toBe(0);
        expect(r.pool.hungWorkers).toBe(0);
        r.pool.terminate();
        await read;
        expect(order).toEqual(["queued TIMEOUT", "read SHUTTING_DOWN"]);
      } finally {
        r.pool.terminate();
      }
    },
    TEST_TIMEOUT_ms,
  );

  test(
    "close() is bounded by its wait even when its teardown waits behind a hung read; the read is refused SHUTTING_DOWN",
    async () => {
      const r = await emulatedPool(1);
      try {
        temperatureHang(r.emu);
        let settled = 0;
        const read = rejection(temperatureRead(r, TIMEOUT_LONG_ms, () => settled++));
        await until(() => r.pool.workersIdle === 0, "the read in its worker");
        const closed = await r.pool.close(50);
        // The teardown never got an answer: the read still blocked its worker.
        expect(closed).toBeUndefined();
        expect(r.lines.some((l) => l.startsWith("teardown:") && l.includes("TIMEOUT"))).toBe(true);
        expect(statusOf(await read)).toBe("SHUTTING_DOWN");
        expect(settled).toBe(1);
        expect(r.pool.workersAlive).toBe(0);
        expect(r.pool.workersStarted).toBe(1);
        expect(statusOf(await rejection(r.pool.call({ op: "info" })))).toBe("SHUTTING_DOWN");
      } finally {
        r.pool.terminate();
      }
    },
    TEST_TIMEOUT_ms,
  );

  test(
    "terminate() refuses every call in a worker or in the queue with SHUTTING_DOWN and runs their onSettled",
    async () => {
      const r = await emulatedPool(1);
      try {
        temperatureHang(r.emu);
        const settled: string[] = [];
        const read = rejection(temperatureRead(r, TIMEOUT_LONG_ms, () => settled.push("read")));
        await until(() => r.pool.workersIdle === 0, "the read in its worker");
        const queued = rejection(r.pool.call({ op: "info" }, TIMEOUT_LONG_ms, () => settled.push("queued")));
        expect(r.pool.queued).toBe(1);
        r.pool.terminate();
        expect([statusOf(await read), statusOf(await queued)]).toEqual(["SHUTTING_DOWN", "SHUTTING_DOWN"]);
        expect(settled.sort()).toEqual(["queued", "read"]);
        expect(r.pool.queued).toBe(0);
      } finally {
        r.pool.terminate();
      }
    },
    TEST_TIMEOUT_ms,
  );
});

describe("typed errors across the wire (finding 16)", () => {
  test("each typed error class comes back as itself, with its fields", () => {
    const trip = <T extends Error>(e: T): T => errorFromWire(structuredClone(errorToWire(e))) as T;
    const config = trip(new ConfigError({ file: "/etc/svmrt/agent.yaml", line: 3, col: 7 }, "http.port", "a port 1..65535", "got 0"));
    expect(config).toBeInstanceOf(ConfigError);
    expect({ file: config.file, line: config.line, col: config.col, field: config.field, expected: config.expected, message: config.message }).toEqual({
      file: "/etc/svmrt/agent.yaml",
      line: 3,
      col: 7,
      field: "http.port",
      expected: "a port 1..65535",
      message: "/etc/svmrt/agent.yaml:3:7: http.port: a port 1..65535 (got 0)",
    });
    const many = trip(new ConfigErrors([new ConfigError({ file: "a.yaml", line: 1, col: 1 }, "kind", "MachineProfile"), new ConfigError({ file: "a.yaml", line: 2, col: 1 }, "name", "a name")]));
    expect(many).toBeInstanceOf(ConfigErrors);
    expect(many.errors.map((x) => [x instanceof ConfigError, x.line, x.field])).toEqual([
      [true, 1, "kind"],
      [true, 2, "name"],
    ]);
    const usage = trip(new UsageError("--backend: expected one of auto, amdsmi"));
    expect(usage).toBeInstanceOf(UsageError);
    expect(usage.message).toBe("--backend: expected one of auto, amdsmi");
    const kfd = trip(new KfdError("open /dev/kfd", "EACCES", 13, "add the user to the render group"));
    expect(kfd).toBeInstanceOf(KfdError);
    expect({ op: kfd.op, errnoName: kfd.errnoName, errno: kfd.errno, hint: kfd.hint, message: kfd.message }).toEqual({
      op: "open /dev/kfd",
      errnoName: "EACCES",
      errno: 13,
      hint: "add the user to the render group",
      message: "open /dev/kfd failed: EACCES (13): add the user to the render group",
    });
    const policy = trip(new PolicyError("adaptive", "schedule", "timeout", "ran 50 ms"));
    expect(policy).toBeInstanceOf(PolicyError);
    expect({ policy: policy.policy, hook: policy.hook, reason: policy.reason, message: policy.message }).toEqual({
      policy: "adaptive",
      hook: "schedule",
      reason: "timeout",
      message: "policy adaptive, hook schedule: timeout: ran 50 ms",
    });
    const smi = trip(new SmiError("amdsmi_init", "DRIVER_NOT_LOADED", 34, "no amdgpu"));
    expect(smi).toBeInstanceOf(SmiError);
    expect({ fn: smi.fn, statusName: smi.statusName, status: smi.status, message: smi.message }).toEqual({
      fn: "amdsmi_init",
      statusName: "DRIVER_NOT_LOADED",
      status: 34,
      message: "amdsmi_init returned DRIVER_NOT_LOADED (34): no amdgpu",
    });
    expect(trip(new InvariantError("count 1 but library not initialised"))).toBeInstanceOf(InvariantError);
    const plain = trip(new TypeError("x is not a function"));
    expect({ name: plain.name, message: plain.message }).toEqual({ name: "TypeError", message: "x is not a function" });
  });

  test("an emulated spec holds its profile read where the spec is made: one that does not load is a ConfigError naming the file, before any Worker", () => {
    const missing = join(tmp, "no-such-profile.yaml");
    let e: unknown;
    try {
      backendCandidates({ choice: "emulated", profile: missing });
    } catch (x) {
      e = x;
    }
    expect(e).toBeInstanceOf(ConfigError);
    expect((e as ConfigError).file).toBe(missing);
    const [spec] = backendCandidates({ choice: "emulated", profile: "pcie-4" });
    expect(spec).toMatchObject({ backend: "emulated", profile: { name: "pcie-4", gpus: { length: 4 } } });
  });
});

describe("bounds at close and on hung workers (finding 17)", () => {
  test(
    `at most POOL_HUNG_WORKERS_MAX (${POOL_HUNG_WORKERS_MAX}) workers are set aside as hung; then calls queue`,
    async () => {
      const r = await emulatedPool(1);
      try {
        temperatureHang(r.emu);
        for (let hung = 1; hung <= POOL_HUNG_WORKERS_MAX; hung++) {
          await until(() => r.pool.workersIdle === 1, `worker ${hung} started`);
          expect(statusOf(await rejection(temperatureRead(r, TIMEOUT_SHORT_ms)))).toBe("TIMEOUT");
          expect(r.pool.hungWorkers).toBe(hung);
        }
        // The bound is reached: no worker is added for the last hung one.
        expect(r.pool.workersAlive).toBe(POOL_HUNG_WORKERS_MAX);
        expect(r.pool.workersStarted).toBe(POOL_HUNG_WORKERS_MAX);
        expect(statusOf(await rejection(r.pool.call({ op: "info" }, TIMEOUT_SHORT_ms)))).toBe("TIMEOUT");
        expect(r.pool.workersAlive).toBe(POOL_HUNG_WORKERS_MAX);
        expect(r.pool.timeouts).toBe(POOL_HUNG_WORKERS_MAX);
      } finally {
        r.pool.terminate();
      }
    },
    TEST_TIMEOUT_ms,
  );

  describe("on the amdsmi double", () => {
    const fx = amdsmiDoubleFixture(26);
    afterAll(() => fx.close());

    test(
      "a teardown that cannot get the session lock (an init hung in another worker) returns within its wait and starts no worker",
      async () => {
        // amdsmi_init sleeps holding its lock, as a hung init in the driver would.
        fx.configure({ delays: [{ fn: "amdsmi_init", gpu: -1, ms: INIT_HANG_ms }] });
        const lines: string[] = [];
        const pool = await SmiPool.start({ spec: { backend: "amdsmi", path: fx.path }, sessionShared: sessionSharedCreate("lazy"), size: 2, log: (l) => lines.push(l) });
        try {
          // The first session's init hangs in one worker, which is set aside as hung.
          const first = rejection(pool.call({ op: "inventory" }, TIMEOUT_SHORT_ms));
          expect(statusOf(await first)).toBe("TIMEOUT");
          await until(() => fx.ctl.fnCalls("amdsmi_init") === 1, "the init entering the library");
          await until(() => pool.workersIdle === 2, "the hung worker's replacement started");
          const started = pool.workersStarted;
          const closed = await pool.close(50);
          // No worker started for the teardown's worker (busy on the lock), and the teardown kept its bound.
          expect(pool.workersStarted).toBe(started);
          expect(closed).toEqual({ shutDown: false, openSessions: 0 });
          expect(pool.workersAlive).toBe(0);
          expect(lines.some((l) => l.includes("could not start"))).toBe(false);
        } finally {
          pool.terminate();
          // The ended worker's init goes on in the double until its sleep ends: let it end here,
          // not in the fixture's close (which waits for the double's lock).
          const inits = (): number[] => [fx.ctl.counter("init_calls"), fx.ctl.counter("init_ok") + fx.ctl.counter("init_failed")];
          await until(() => inits()[0] === inits()[1], "the hung init returning");
        }
      },
      TEST_TIMEOUT_ms,
    );

    test(
      "a replacement whose start fails (its library file gone) is ended and removed, never handed a call; it is retried with a back-off and then serves",
      async () => {
        // Temperature reads of GPU 0 hang until the init cycle ends (the double's reset below).
        fx.configure({ delays: [{ fn: "amdsmi_get_temp_metric", gpu: 0, ms: HANG_LONG_ms }] });
        // The pool reads its spec at each worker start. Pointing it at a missing file makes the
        // next start fail as a library removed by an upgrade would (removing the loaded file
        // itself would not: dlopen finds a library already loaded under its name).
        const spec: SmiBackendSpec = { backend: "amdsmi", path: fx.path };
        const gone = join(tmp, "libamdsmi-gone.so");
        const lines: string[] = [];
        const pool = await SmiPool.start({ spec, sessionShared: sessionSharedCreate("lazy"), size: 1, log: (l) => lines.push(l) });
        try {
          const gpus = await pool.call<GpuInventoryEntry[]>({ op: "inventory" }, TIMEOUT_LONG_ms);
          spec.path = gone;
          const read = pool.call({ op: "read", uuid: gpus[0]!.uuid, group: "temperature", skip: [] }, TIMEOUT_SHORT_ms);
          expect(statusOf(await rejection(read))).toBe("TIMEOUT");
          await until(() => lines.some((l) => l.includes("could not start")), "the replacement's start failing");
          // Only the hung worker is left: the failed one is gone, and no call goes to it.
          expect(statusOf(await rejection(pool.call({ op: "info" }, TIMEOUT_SHORT_ms)))).toBe("TIMEOUT");
          expect(pool.workersAlive).toBe(1);
          expect(pool.hungWorkers).toBe(1);
          expect(pool.workersIdle).toBe(0);
          const failed = lines.find((l) => l.includes("could not start"))!;
          expect(failed).toContain(gone);
          expect(failed).toMatch(/next start in \d+ ms/);
          // The library is back: the next start (after its back-off) succeeds and serves.
          spec.path = fx.path;
          await until(() => pool.workersIdle === 1, "a replacement started");
          expect(await pool.call({ op: "info" }, TIMEOUT_LONG_ms)).toMatchObject({ backend: "amdsmi" });
          expect(pool.workersAlive).toBe(2);
          expect(lines.some((l) => l.includes("used before init"))).toBe(false);
        } finally {
          pool.terminate();
          // End the hung read in the double (its init cycle ends), so its thread ends too.
          fx.configure();
        }
      },
      TEST_TIMEOUT_ms,
    );
  });
});
