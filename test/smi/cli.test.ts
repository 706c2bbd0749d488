/**
 * `svmrt smi list|metrics` as users run them: a child process `bun runtime/cli.ts smi ...`,
 * stdout, stderr and the exit code. Backends: the emulated default (no /dev/kfd here), the
 * amdsmi C double in each of its layouts (configured through AMDSMI_DOUBLE_CONFIG, read by
 * the double when the child loads it), and Debian's real librocm_smi64, whose rsmi_init fails
 * with INIT_ERROR on a host without the amdgpu driver.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { EXIT } from "../../runtime/cli/exit.ts";
import { AMDSMI_DOUBLE_CONFIG_ENV, AMDSMI_DOUBLE_FOREVER, AMDSMI_DOUBLE_LAYOUTS, type AmdsmiDoubleLayout } from "../../runtime/ffi/amdsmi-double.ts";
import { amdsmiDoubleFixture, DOUBLE_GPUS } from "../ffi/amdsmi-double.ts";

const ROOT = join(import.meta.dir, "..", "..");
/** Longest one `svmrt smi` child may run before the test kills it, ms. */
const CHILD_RUN_MAX_ms = 30_000;
/** Longest a `--watch` child may take to exit after SIGINT, ms. */
const WATCH_EXIT_MAX_ms = 10_000;
/** The real rocm-smi library of Debian's package (librocm-smi64-1). */
const ROCM_SMI_LIB = "/usr/lib/librocm_smi64.so.1";
/** amdsmi_status_t numbers used below (reference/amdsmi.md). */
const STATUS_NOT_SUPPORTED = 2;
const STATUS_DRIVER_NOT_LOADED = 34;

/** The child's environment: this one, without variables that would steer svmrt. */
function childEnv(extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith("SVMRT_") && k !== AMDSMI_DOUBLE_CONFIG_ENV) env[k] = v;
  return { ...env, ...extra };
}

/** Run `svmrt <args>` as a child; kill it (and fail) after CHILD_RUN_MAX_ms. */
async function svmrt(args: string[], env: Record<string, string> = {}): Promise<{ code: number; out: string; err: string }> {
  const proc = Bun.spawn({ cmd: [process.execPath, "runtime/cli.ts", ...args], cwd: ROOT, env: childEnv(env), stdout: "pipe", stderr: "pipe" });
  try {
    const [out, err, code] = await Promise.race([
      Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]),
      Bun.sleep(CHILD_RUN_MAX_ms).then(() => {
        throw new Error(`svmrt ${args.join(" ")} still running after ${CHILD_RUN_MAX_ms} ms`);
      }),
    ]);
    return { code, out, err };
  } finally {
    if (proc.exitCode === null) {
      proc.kill("SIGKILL");
      await proc.exited;
    }
  }
}

/** Lines of a text, without the empty last one. */
const linesOf = (t: string) => t.split("\n").filter((l) => l !== "");
/** A JavaScript stack frame as Bun prints them. */
const STACK_FRAME = /^\s+at /m;

interface ListJson {
  backend: string;
  emulated: boolean;
  library: { backend: string; version?: string; path: string };
  gpus: { index: number; uuid: string; bdf: string; serial?: string; cardModel?: string; marketName?: string; hiveId?: string }[];
}

describe("svmrt smi list: emulated", () => {
  test("the default on a host without /dev/kfd: a table on stdout, the EMULATED banner on stderr, exit 0", async () => {
    expect(existsSync("/dev/kfd")).toBe(false);
    const r = await svmrt(["smi", "list"]);
    expect(r.code).toBe(EXIT.ok);
    expect(linesOf(r.err)).toHaveLength(1);
    expect(r.err).toStartWith("EMULATED GPUs (profile dev-2gpu): no AMD GPU driver found");
    const rows = linesOf(r.out);
    expect(rows[0]).toMatch(/^gpu\s+uuid\s+bdf\s+model\s+serial\s+vram\s+hive\s+mode\s+kfd$/);
    expect(rows).toHaveLength(3);
    expect(rows[1]).toMatch(/^0\s+[0-9a-f-]{36}\s+0000:[0-9a-f]{2}:00\.0\s+emulated-dev-2gpu\s+\S+\s+32\.0 GiB\s+-\s+baremetal\s+0x3fe1$/);
    expect(rows[2]).toMatch(/^1\s+[0-9a-f-]{36}\s+.*0x3fe2$/);
  });

  test("--json parses: emulated true, the two GPUs of dev-2gpu; nothing on stderr", async () => {
    const r = await svmrt(["smi", "list", "--json"]);
    expect(r.code).toBe(EXIT.ok);
    expect(r.err).toBe("");
    const j = JSON.parse(r.out) as ListJson;
    expect(j.emulated).toBe(true);
    expect(j.backend).toBe("emulated");
    expect(j.library.path).toBe("profile:dev-2gpu");
    expect(j.gpus.map((g) => g.index)).toEqual([0, 1]);
    expect(j.gpus.map((g) => g.cardModel)).toEqual(["emulated-dev-2gpu", "emulated-dev-2gpu"]);
    expect(new Set(j.gpus.map((g) => g.uuid)).size).toBe(2);
  });

  test("--backend emulated --profile mi300x-8: 8 GPUs, distinct UUIDs, one hive", async () => {
    const r = await svmrt(["smi", "list", "--backend", "emulated", "--profile", "mi300x-8", "--json"]);
    expect(r.code).toBe(EXIT.ok);
    const j = JSON.parse(r.out) as ListJson;
    expect(j.emulated).toBe(true);
    expect(j.gpus).toHaveLength(8);
    expect(new Set(j.gpus.map((g) => g.uuid)).size).toBe(8);
    const hives = new Set(j.gpus.map((g) => g.hiveId));
    expect(hives.size).toBe(1);
    expect([...hives][0]).toMatch(/^[0-9a-f]+$/);
    expect([...hives][0]).not.toBe("0");
  });
});

describe.each(AMDSMI_DOUBLE_LAYOUTS.map((l) => [l]))("svmrt smi on the amdsmi double, layout %p", (layout: AmdsmiDoubleLayout) => {
  const fx = amdsmiDoubleFixture(layout);
  afterAll(() => fx.close());
  const version = { 24: "24.6.3", 25: "25.2.0", 26: "26.5.0" }[layout];
  const amdsmi = ["--backend", "amdsmi", "--amdsmi-lib", fx.path];

  test("list --json: exactly the double's GPUs and the library version; exit 0", async () => {
    const r = await svmrt(["smi", "list", ...amdsmi, "--json"], { [AMDSMI_DOUBLE_CONFIG_ENV]: fx.configure() });
    expect(r.err).toBe("");
    expect(r.code).toBe(EXIT.ok);
    const j = JSON.parse(r.out) as ListJson;
    expect(j.emulated).toBe(false);
    expect(j.backend).toBe("amdsmi");
    expect(j.library.version).toBe(version);
    expect(j.library.path).toBe(fx.path);
    expect(j.gpus.map((g) => ({ index: g.index, uuid: g.uuid, bdf: g.bdf, serial: g.serial, model: g.cardModel, market: g.marketName }))).toEqual(
      DOUBLE_GPUS.map((g, index) => ({ index, uuid: g.uuid, bdf: g.bdf, serial: g.serial, model: g.model, market: g.market_name })),
    );
  });

  test("list: a row per GPU of the double, the banner names amdsmi and its version", async () => {
    const r = await svmrt(["smi", "list", ...amdsmi], { [AMDSMI_DOUBLE_CONFIG_ENV]: fx.configure() });
    expect(r.code).toBe(EXIT.ok);
    expect(linesOf(r.err)).toEqual([`amdsmi ${version} from ${fx.path}`]);
    const rows = linesOf(r.out);
    expect(rows).toHaveLength(1 + DOUBLE_GPUS.length);
    for (const [i, g] of DOUBLE_GPUS.entries()) {
      expect(rows[1 + i]).toStartWith(`${String(i).padEnd(4)} ${g.uuid.padEnd(37)} ${g.bdf.padEnd(13)} `);
      expect(rows[1 + i]).toContain(` ${g.serial ?? "-"} `);
    }
    expect(rows[1]).toContain(" 192.0 GiB ");
  });

  test("init failing DRIVER_NOT_LOADED: exit 5, one line naming it and what to do", async () => {
    const cfg = fx.configure({ failures: [{ fn: "amdsmi_init", gpu: -1, status: STATUS_DRIVER_NOT_LOADED, times: AMDSMI_DOUBLE_FOREVER }] });
    const r = await svmrt(["smi", "list", ...amdsmi], { [AMDSMI_DOUBLE_CONFIG_ENV]: cfg });
    expect(r.code).toBe(EXIT.noDevice);
    expect(r.out).toBe("");
    const lines = linesOf(r.err);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toStartWith("svmrt smi: amdsmi_init returned DRIVER_NOT_LOADED (34)");
    expect(lines[0]).toContain("modprobe amdgpu");
  });

  test("metrics with GPU 0's power NOT_SUPPORTED: the other GPUs' power present, GPU 0's noted", async () => {
    const cfg = fx.configure({ failures: [{ fn: "amdsmi_get_power_info", gpu: 0, status: STATUS_NOT_SUPPORTED, times: AMDSMI_DOUBLE_FOREVER }] });
    const env = { [AMDSMI_DOUBLE_CONFIG_ENV]: cfg };
    const j = await svmrt(["smi", "metrics", ...amdsmi, "--json", "--group", "power"], env);
    expect(j.code).toBe(EXIT.ok);
    type Row = { gpu: number; uuid: string; readings: Record<string, { values: Record<string, number>; unsupported: string[]; errors: Record<string, string> }> };
    const rows = (JSON.parse(j.out) as { emulated: boolean; gpus: Row[] }).gpus;
    expect(rows.map((r) => r.uuid)).toEqual(DOUBLE_GPUS.map((g) => g.uuid));
    expect(rows.map((r) => Object.keys(r.readings))).toEqual([["power"], ["power"], ["power"]]);
    expect(rows[0]!.readings.power).toEqual({ values: {}, unsupported: ["power"], errors: {} });
    expect(rows[1]!.readings.power!.values.socket_w).toBe(612);
    expect(rows[1]!.readings.power!.values.limit_w).toBe(750);
    expect(rows[1]!.readings.power!.unsupported).toEqual([]);

    const t = await svmrt(["smi", "metrics", ...amdsmi, "--group", "power"], env);
    expect(t.code).toBe(EXIT.ok);
    // The banner names the version, also for a 24.x library that tells it only after init.
    expect(t.err).toBe(`amdsmi ${version} from ${fx.path}\n`);
    const out = linesOf(t.out);
    const powerOf = (gpu: number) => out[out.findIndex((l) => l.startsWith(`gpu ${gpu} `)) + 1];
    expect(powerOf(0)).toMatch(/^\s+power\s+-\s+\[power: not supported\]$/);
    expect(powerOf(1)).toMatch(/^\s+power\s+socket_w=612 /);
  });
});

describe("svmrt smi: failures", () => {
  test("--backend rocm-smi on the real Debian library: exit 5, one svmrt line naming INIT_ERROR and what to do", async () => {
    expect(existsSync(ROCM_SMI_LIB)).toBe(true);
    // Found by its soname, as users run it (no --rocm-smi-lib).
    const r = await svmrt(["smi", "list", "--backend", "rocm-smi"]);
    expect(r.code).toBe(EXIT.noDevice);
    expect(r.out).toBe("");
    // The library prints its own noise on stderr ("Failed to open drm root directory",
    // "Exception caught: rsmi_init."); svmrt's own message is one line.
    const own = linesOf(r.err).filter((l) => l.startsWith("svmrt"));
    expect(own).toHaveLength(1);
    expect(own[0]).toStartWith("svmrt smi: rsmi_init returned INIT_ERROR (8)");
    expect(own[0]).toContain("use --backend emulated");
    expect(r.err).not.toMatch(STACK_FRAME);
    expect(r.err).not.toContain("internal error");
  });

  test("--amdsmi-lib /nonexistent.so: exit 5 naming the path", async () => {
    const r = await svmrt(["smi", "list", "--backend", "amdsmi", "--amdsmi-lib", "/nonexistent.so"]);
    expect(r.code).toBe(EXIT.noDevice);
    const lines = linesOf(r.err);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain("/nonexistent.so");
    expect(lines[0]).toContain("--amdsmi-lib");
  });

  test("--backend bogus: exit 2; --profile with --backend amdsmi: exit 2", async () => {
    const bogus = await svmrt(["smi", "list", "--backend", "bogus"]);
    expect(bogus.code).toBe(EXIT.usage);
    expect(bogus.err).toContain("--backend: expected one of auto, amdsmi, rocm-smi, emulated, got 'bogus'");
    const profile = await svmrt(["smi", "list", "--backend", "amdsmi", "--profile", "mi300x-8"]);
    expect(profile.code).toBe(EXIT.usage);
    expect(profile.err).toContain("--profile applies to emulated GPUs");
  });
});

describe("svmrt smi metrics: emulated", () => {
  type Reading = { values: Record<string, number>; unsupported: string[]; errors: Record<string, string> };
  type Round = { at: string; emulated: boolean; gpus: { gpu: number; uuid: string; readings: Record<string, Reading> }[] };

  test("--json: every group present for each GPU, with values or marked unsupported", async () => {
    const r = await svmrt(["smi", "metrics", "--json"]);
    expect(r.code).toBe(EXIT.ok);
    const lines = linesOf(r.out);
    expect(lines).toHaveLength(1);
    const j = JSON.parse(lines[0]!) as Round;
    expect(j.emulated).toBe(true);
    expect(j.gpus.map((g) => g.gpu)).toEqual([0, 1]);
    for (const g of j.gpus) {
      expect(Object.keys(g.readings)).toEqual(["temperature", "power", "activity", "memory", "xgmi", "pcie", "ecc"]);
      expect(g.readings.power!.values.socket_w).toBeGreaterThan(0);
      expect(g.readings.memory!.values.vram_total_bytes).toBe(32 * 2 ** 30);
      expect(g.readings.temperature!.values.junction_c).toBeGreaterThan(0);
      // dev-2gpu has no XGMI: the group is there and says so.
      expect(g.readings.xgmi).toEqual({ values: {}, unsupported: ["xgmi"], errors: {} });
    }
  });

  test("--group power,activity: only those groups", async () => {
    const r = await svmrt(["smi", "metrics", "--json", "--group", "power,activity"]);
    expect(r.code).toBe(EXIT.ok);
    const j = JSON.parse(r.out) as Round;
    expect(j.gpus.map((g) => Object.keys(g.readings))).toEqual([
      ["power", "activity"],
      ["power", "activity"],
    ]);
  });

  test("bad --watch 5: exit 2; unknown group: exit 2", async () => {
    const w = await svmrt(["smi", "metrics", "--watch", "5"]);
    expect(w.code).toBe(EXIT.usage);
    expect(w.err).toContain("--watch: expected an integer from 100 to 3600000, got 5");
    const g = await svmrt(["smi", "metrics", "--group", "power,nope"]);
    expect(g.code).toBe(EXIT.usage);
    expect(g.err).toContain("--group: unknown group 'nope'");
  });

  /** Spawn `smi metrics --json --watch MS`, wait for `rounds` lines, SIGINT, bounded wait for the exit. */
  async function watchInterrupted(watchMs: number, rounds: number): Promise<{ code: number | "still running"; lines: string[] }> {
    const proc = Bun.spawn({ cmd: [process.execPath, "runtime/cli.ts", "smi", "metrics", "--json", "--watch", String(watchMs)], cwd: ROOT, env: childEnv(), stdout: "pipe", stderr: "pipe" });
    try {
      let text = "";
      const reader = proc.stdout.getReader();
      const decoder = new TextDecoder();
      const deadline = performance.now() + CHILD_RUN_MAX_ms;
      while (linesOf(text).length < rounds) {
        if (performance.now() > deadline) throw new Error(`no ${rounds} rounds within ${CHILD_RUN_MAX_ms} ms: ${text}`);
        const { value, done } = await reader.read();
        if (done) throw new Error(`the watch ended by itself: ${text}`);
        text += decoder.decode(value, { stream: true });
      }
      proc.kill("SIGINT");
      const code = await Promise.race([proc.exited, Bun.sleep(WATCH_EXIT_MAX_ms).then(() => "still running" as const)]);
      if (code === "still running") {
        proc.kill("SIGKILL");
        await proc.exited;
      }
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        text += decoder.decode(value, { stream: true });
      }
      return { code, lines: linesOf(text) };
    } finally {
      if (proc.exitCode === null) {
        proc.kill("SIGKILL");
        await proc.exited;
      }
    }
  }

  test("--watch 100 stops on SIGINT with exit 0 after its rounds", async () => {
    const r = await watchInterrupted(100, 2);
    expect(r.code).toBe(EXIT.ok);
    expect(r.lines.length).toBeGreaterThanOrEqual(2);
    const ats = r.lines.map((l) => (JSON.parse(l) as Round).at);
    expect(new Set(ats).size).toBe(ats.length);
  }, 40_000);

  test("SIGINT during a long --watch pause stops at once, not after the pause", async () => {
    // A pause of an hour: the child must not wait it out.
    const r = await watchInterrupted(3_600_000, 1);
    expect(r.code).toBe(EXIT.ok);
    expect(r.lines).toHaveLength(1);
  }, 40_000);
});
