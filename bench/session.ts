/**
 * bench/session.ts: the three amdsmi session modes (persistent, lazy, linger) side by side, in
 * one run, over the C double of libamd_smi built as layout 26 (test/native/amdsmi_double.c via
 * test/native/compile.ts). Prints ONE JSON object on one line.
 *
 *   bun bench/session.ts
 *
 * Load: BURSTS_PER_RUN bursts of REQUESTS_PER_BURST requests, one after another, IDLE_GAP_ms
 * apart (shorter than the linger grace LINGER_GRACE_ms). A request opens a session, resolves a
 * GPU by UUID, reads its power and closes the session. The modes run in rotation (the order
 * rotates every repetition), BENCH_REPETITIONS times after one untimed warm-up run each; every
 * figure is the median over the repetitions.
 *
 * Per mode:
 * - inits per 1000 requests: the double's real_inits counter (0 -> initialised transitions),
 *   start() included (persistent's one init);
 * - open latency p50/p99 (µs): Bun.nanoseconds() around mgr.open() only;
 * - device release (ms): from the last session's close to the double's device fd closing,
 *   asked of the double (amdsmi_double_device_fd) in a bounded poll that yields to the event
 *   loop between checks (the linger timer runs on this thread); persistent holds the device
 *   until teardown (null). `released_at_close`: the fd was already closed when checked right
 *   after the last close, before any timer could run;
 * - CPU next to wall time over the load (start() to the last close): process.cpuUsage()
 *   deltas, user + system. The bench is single-threaded (no Workers), so this is the JS
 *   thread's time plus whatever Bun's own GC/JIT threads spent meanwhile.
 *
 * Targets (on the medians): linger makes at least TARGET_LINGER_INIT_REDUCTION x fewer inits
 * than lazy on this load; linger releases the device within LINGER_GRACE_ms +
 * TARGET_RELEASE_SLACK_ms of the last close; a session opens in at most
 * TARGET_PERSISTENT_OPEN_P50_us (p50) in persistent mode.
 */
import { amdsmiOpen } from "../runtime/ffi/amdsmi.ts";
import { SESSION_MODES, type SessionMode } from "../runtime/policy/contracts/session.ts";
import { SmiSessionManager, sessionSharedCreate } from "../runtime/smi/session.ts";
import { amdsmiDoubleFixture, DOUBLE_GPUS } from "../test/ffi/amdsmi-double.ts";

const REQUESTS_PER_BURST = 50;
const BURSTS_PER_RUN = 20;
/** Idle time between two bursts; shorter than the linger grace. */
const IDLE_GAP_ms = 20;
const LINGER_GRACE_ms = 100;
const BENCH_REPETITIONS = 7;
/** Longest the bench waits for the device release after the last close, beyond the grace. */
const RELEASE_WAIT_MAX_ms = 5_000;
/** Bound on a teardown at the end of a run (nothing is open by then). */
const TEARDOWN_WAIT_ms = 1_000;
const TARGET_LINGER_INIT_REDUCTION = 10;
const TARGET_RELEASE_SLACK_ms = 50;
const TARGET_PERSISTENT_OPEN_P50_us = 5;

/** GPUs the requests rotate over (both report power). */
const UUIDS = [DOUBLE_GPUS[0]!.uuid, DOUBLE_GPUS[1]!.uuid];

interface Run {
  initsPer1000: number;
  openP50Us: number;
  openP99Us: number;
  /** null: not released before teardown (persistent). */
  releaseMs: number | null;
  releasedAtClose: boolean;
  cpuMs: number;
  wallMs: number;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
};
const percentile = (sorted: number[], p: number): number => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
const round = (v: number, digits: number): number => Math.round(v * 10 ** digits) / 10 ** digits;
const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

const fx = amdsmiDoubleFixture(26);
try {
  fx.configure();
  using lib = amdsmiOpen({ path: fx.path });

  /** One run of the load in `mode`, on a fresh shared count; ends with the library down. */
  const runOnce = async (mode: SessionMode): Promise<Run> => {
    const shared = sessionSharedCreate(mode, mode === "linger" ? LINGER_GRACE_ms : 0);
    using mgr = new SmiSessionManager({ library: lib, shared });
    const inits0 = fx.ctl.counter("real_inits");
    const openNs: number[] = [];
    const cpu0 = process.cpuUsage();
    const wall0 = performance.now();
    mgr.start("bench");
    let lastClose = 0;
    for (let b = 0; b < BURSTS_PER_RUN; b++) {
      for (let r = 0; r < REQUESTS_PER_BURST; r++) {
        const t0 = Bun.nanoseconds();
        const s = mgr.open();
        openNs.push(Bun.nanoseconds() - t0);
        try {
          s.power(s.gpu(UUIDS[r % UUIDS.length]!));
        } finally {
          s.close();
        }
      }
      lastClose = performance.now();
      if (b < BURSTS_PER_RUN - 1) await Bun.sleep(IDLE_GAP_ms);
    }
    const cpu = process.cpuUsage(cpu0);
    const wallMs = performance.now() - wall0;
    const releasedAtClose = fx.ctl.deviceFd() === -1;
    let releaseMs: number | null = null;
    if (mode !== "persistent") {
      const deadline = lastClose + LINGER_GRACE_ms + RELEASE_WAIT_MAX_ms;
      while (fx.ctl.deviceFd() !== -1 && performance.now() < deadline) await tick();
      if (fx.ctl.deviceFd() === -1) releaseMs = performance.now() - lastClose;
    }
    const requests = BURSTS_PER_RUN * REQUESTS_PER_BURST;
    const inits = fx.ctl.counter("real_inits") - inits0;
    const t = await mgr.teardown(TEARDOWN_WAIT_ms);
    if (!t.shutDown || fx.ctl.deviceFd() !== -1 || fx.ctl.counter("initialised") !== 0) throw new Error(`bench: ${mode} run left amdsmi up`);
    if (fx.ctl.counter("calls_uninit") !== 0) throw new Error(`bench: ${mode} run called amdsmi while not initialised`);
    const sorted = openNs.sort((a, b) => a - b);
    return {
      initsPer1000: (inits * 1000) / requests,
      openP50Us: percentile(sorted, 50) / 1000,
      openP99Us: percentile(sorted, 99) / 1000,
      releaseMs,
      releasedAtClose,
      cpuMs: (cpu.user + cpu.system) / 1000,
      wallMs,
    };
  };

  const modes = [...SESSION_MODES];
  for (const m of modes) await runOnce(m); // warm-up: JIT, page cache, the double's first cycle
  const runs = new Map<SessionMode, Run[]>(modes.map((m) => [m, []]));
  for (let rep = 0; rep < BENCH_REPETITIONS; rep++) {
    for (let i = 0; i < modes.length; i++) {
      const m = modes[(rep + i) % modes.length]!;
      runs.get(m)!.push(await runOnce(m));
    }
  }

  const summary = (m: SessionMode) => {
    const rs = runs.get(m)!;
    const releases = rs.map((r) => r.releaseMs).filter((v): v is number => v !== null);
    return {
      inits_per_1000_requests: round(median(rs.map((r) => r.initsPer1000)), 2),
      open_p50_us: round(median(rs.map((r) => r.openP50Us)), 3),
      open_p99_us: round(median(rs.map((r) => r.openP99Us)), 3),
      device_release_after_last_close_ms: releases.length === rs.length ? round(median(releases), 2) : null,
      device_released_at_close: rs.every((r) => r.releasedAtClose),
      cpu_ms: round(median(rs.map((r) => r.cpuMs)), 2),
      wall_ms: round(median(rs.map((r) => r.wallMs)), 2),
    };
  };
  const persistent = summary("persistent");
  const lazy = summary("lazy");
  const linger = summary("linger");
  const reduction = linger.inits_per_1000_requests > 0 ? lazy.inits_per_1000_requests / linger.inits_per_1000_requests : Number.POSITIVE_INFINITY;
  const releaseMax = LINGER_GRACE_ms + TARGET_RELEASE_SLACK_ms;

  const result = {
    bench: "amdsmi-session-modes",
    bun: Bun.version,
    library: `amdsmi C double, layout 26 (${lib.info.version})`,
    load: {
      requests_per_burst: REQUESTS_PER_BURST,
      bursts_per_run: BURSTS_PER_RUN,
      idle_gap_ms: IDLE_GAP_ms,
      linger_grace_ms: LINGER_GRACE_ms,
      request: "open session, resolve GPU by UUID, read power, close",
    },
    repetitions: BENCH_REPETITIONS,
    order: "modes in rotation, order rotated every repetition, one warm-up run each",
    statistic: "median over repetitions",
    cpu: "process.cpuUsage() user+system delta over the load (start() to the last close); single JS thread, no Workers",
    modes: { persistent, lazy, linger },
    targets: {
      linger_fewer_inits_than_lazy: {
        target_min_x: TARGET_LINGER_INIT_REDUCTION,
        value_x: Number.isFinite(reduction) ? round(reduction, 1) : null,
        met: reduction >= TARGET_LINGER_INIT_REDUCTION,
      },
      linger_device_release: {
        target_max_ms: releaseMax,
        value_ms: linger.device_release_after_last_close_ms,
        met: linger.device_release_after_last_close_ms !== null && linger.device_release_after_last_close_ms <= releaseMax,
      },
      lazy_device_released_at_close: { met: lazy.device_released_at_close },
      persistent_open_p50: {
        target_max_us: TARGET_PERSISTENT_OPEN_P50_us,
        value_us: persistent.open_p50_us,
        met: persistent.open_p50_us <= TARGET_PERSISTENT_OPEN_P50_us,
      },
    },
  };
  console.log(JSON.stringify(result));
} finally {
  fx.close();
}
