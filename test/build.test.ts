/**
 * `bun run build`: the single executable. Built once, into a folder of its own (so a second
 * copy of the suite running at the same time cannot overwrite it mid-run), then run ALONE
 * from an empty folder with a bare PATH: every command must find what it needs inside it.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { cpSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { policyJsonSchema } from "../runtime/policy/schema.ts";

const ROOT = resolve(import.meta.dir, "..");
/** The build compiles ~500 modules and writes ~110 MB: slow on a loaded machine. */
const BUILD_MAX_ms = 180_000;
/** One command of the executable (a sim, a compare of two cells, the agent's life). */
const RUN_MAX_ms = 60_000;
/** How long the agent may take to say where it serves. */
const AGENT_START_MAX_ms = 30_000;
/** A child environment with nothing of this one: no bun on PATH, no SVMRT_* variables. */
const BARE_ENV = { PATH: "/usr/bin:/bin" };

/** The empty folder the executable runs from, holding only `svmrt`. */
let alone = "";
let exe = "";

beforeAll(() => {
  alone = mkdtempSync(join(tmpdir(), "svmrt-exe-"));
  exe = join(alone, "svmrt");
  // package.json "build" as a user runs it; the last --outfile wins over the script's dist/svmrt.
  const build = Bun.spawnSync([process.execPath, "run", "build", "--outfile", exe], { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
  if (build.exitCode !== 0) throw new Error(`bun run build failed (${build.exitCode}):\n${build.stderr.toString()}`);
}, BUILD_MAX_ms);

afterAll(() => {
  if (alone !== "") rmSync(alone, { recursive: true, force: true });
});

/** A progress line of a run that lasted a few seconds (sim, compare: on a loaded machine they do). */
const PROGRESS_LINE = /^svmrt (sim|compare): .* s elapsed\n/gm;

/** Run the executable; `err` is its stderr without progress lines. */
function run(args: string[], cwd = alone): { code: number | null; out: string; err: string } {
  const p = Bun.spawnSync([exe, ...args], { cwd, env: BARE_ENV, stdin: "ignore", stdout: "pipe", stderr: "pipe", timeout: RUN_MAX_ms });
  return { code: p.exitCode, out: p.stdout.toString(), err: p.stderr.toString().replace(PROGRESS_LINE, "") };
}

describe("bun run build: the single executable, alone in an empty folder", () => {
  test("the folder holds nothing but the executable", () => {
    expect(readdirSync(alone)).toEqual(["svmrt"]);
  });

  test("sim runs a built-in workload on a shipped profile, named or as builtin:profiles/...", () => {
    const byName = run(["sim", "--profile", "dev-2gpu", "--workload", "stream", "--json"]);
    expect(byName.err).toBe("");
    expect(byName.code).toBe(0);
    const r = JSON.parse(byName.out) as { profile: string; workload: string; policy: string; accesses: number; migrations: { h2d: number } };
    expect([r.profile, r.workload, r.policy]).toEqual(["dev-2gpu", "stream", "kernel-default (native)"]);
    expect(r.accesses).toBe(262144);
    // 1 GiB read once from system memory by gpu0: every page migrates to its VRAM.
    expect(r.migrations.h2d).toBe(512);

    const byPath = run(["sim", "--profile", "builtin:profiles/mi300a.yaml", "--workload", "stream", "--policy", "builtin:policies/migration/thrash-guard.yaml", "--json"]);
    expect(byPath.err).toBe("");
    expect(byPath.code).toBe(0);
    expect((JSON.parse(byPath.out) as { profile: string; policy: string }).policy).toBe("thrash-guard");
    expect(readdirSync(alone)).toEqual(["svmrt"]);
  }, RUN_MAX_ms);

  test("compare runs each cell as the executable itself: two shipped policies, every cell ok", () => {
    const c = run([
      "compare",
      "--profile",
      "dev-2gpu",
      "--workloads",
      "pingpong",
      "--policies",
      "builtin:policies/migration/kernel-default.yaml,builtin:policies/migration/thrash-guard.yaml",
      "--jobs",
      "2",
      "--json",
    ]);
    expect(c.err).toBe("");
    expect(c.code).toBe(0);
    const out = JSON.parse(c.out) as { profile: string; cells: { workload: string; policy: string; result?: { simTimeNs: number }; exitCode?: number; error?: string }[] };
    expect(out.profile).toBe("dev-2gpu");
    expect(out.cells.map((x) => [x.workload, x.policy, x.exitCode, x.error])).toEqual([
      ["pingpong", "kernel-default", undefined, undefined],
      ["pingpong", "thrash-guard", undefined, undefined],
    ]);
    for (const cell of out.cells) expect(cell.result!.simTimeNs).toBeGreaterThan(0);
  }, RUN_MAX_ms * 2);

  test("policy check builtin:policies/ loads, compiles and tests every shipped policy", () => {
    const shipped = readdirSync(join(ROOT, "policies"), { recursive: true }).filter((f) => String(f).endsWith(".yaml")).length;
    const c = run(["policy", "check", "builtin:policies/"]);
    expect(c.err).toBe("");
    expect(c.out).toEndWith(`${shipped} of ${shipped} policies ok\n`);
    // The embedded copies are reported at their paths inside the executable.
    expect(c.out).toContain("ok   /$bunfs/root/policies/migration/kernel-default.yaml (MigrationPolicy kernel-default@");
    expect(c.code).toBe(0);
  }, RUN_MAX_ms);

  test("policy eval of a shipped policy, and policy schema (the schema of docs/policy.schema.json)", () => {
    const ev = run(["policy", "eval", "builtin:policies/migration/kernel-default.yaml", "--hook", "restoreLocation", "--json"]);
    expect(ev.err).toBe("");
    expect(JSON.parse(ev.out)).toEqual({ ok: true, decision: 0x3fe1, by: "plugin", logs: [] });
    const schema = run(["policy", "schema"]);
    expect(schema.code).toBe(0);
    // The schema docs/policy.schema.json holds (test/policy/cli.test.ts keeps the two equal).
    expect(JSON.parse(schema.out)).toEqual(policyJsonSchema());
  }, RUN_MAX_ms);

  test("a builtin: name outside the shipped folders is a usage error naming them", () => {
    const c = run(["policy", "check", "builtin:runtime/"]);
    expect(c.code).toBe(2);
    expect(c.err).toStartWith("svmrt policy: builtin:runtime/: a shipped file is named builtin:plugins/..., builtin:policies/..., builtin:profiles/...\n");
  }, RUN_MAX_ms);

  test("kfd info --emulated and smi list run on the shipped default profile", () => {
    const kfd = run(["kfd", "info", "--emulated"]);
    expect(kfd.err).toBe("");
    expect(kfd.code).toBe(0);
    expect(kfd.out).toStartWith("EMULATED: no GPU hardware; profile dev-2gpu");
    expect(kfd.out).toContain("gpu 0x3fe1  32.0 GiB available\n  gpu 0x3fe2  32.0 GiB available\n");
    const smi = run(["smi", "list", "--json"]);
    expect(smi.code).toBe(0);
    expect(smi.out).toContain('"emulated": true');
  }, RUN_MAX_ms);

  test("agent serves /metrics with gpu_* and svm_* families from the embedded policies, SIGTERM exits 0", async () => {
    const proc = Bun.spawn([exe, "agent", "--listen", "127.0.0.1:0"], { cwd: alone, env: BARE_ENV, stdin: "ignore", stdout: "ignore", stderr: "pipe" });
    let log = "";
    const drained = (async () => {
      const dec = new TextDecoder();
      for await (const chunk of proc.stderr) log += dec.decode(chunk, { stream: true });
    })();
    try {
      const deadline = Date.now() + AGENT_START_MAX_ms;
      let url: string | undefined;
      while (url === undefined && proc.exitCode === null && Date.now() < deadline) {
        url = /serving on (http:\/\/127\.0\.0\.1:\d+)\n/.exec(log)?.[1];
        if (url === undefined) await Bun.sleep(50);
      }
      if (url === undefined) throw new Error(`the agent did not start (exit ${proc.exitCode}):\n${log}`);
      expect(log).toContain("svmrt agent: policy adaptive loaded from /$bunfs/root/policies/sampling/adaptive.yaml");
      // A GPU family read from the emulated library, and an SVM family fed by the emulated KFD's
      // events. The groups are sampled one after another from start: scrape until both are in.
      const gpuFamily = /^gpu_total_vram\{gpu_id="0",.*\} 32768$/m;
      const svmFamily = /^svm_events_total\{gpu_id="0",kfd_gpu_id="3fe1",event="migrate_start",/m;
      let text = "";
      for (;;) {
        const res = await fetch(`${url}/metrics`);
        expect(res.status).toBe(200);
        text = await res.text();
        if ((gpuFamily.test(text) && svmFamily.test(text)) || Date.now() > deadline) break;
        await Bun.sleep(100);
      }
      expect(text).toMatch(gpuFamily);
      expect(text).toMatch(svmFamily);
      proc.kill("SIGTERM");
      expect(await proc.exited).toBe(0);
      await drained;
      expect(log).toEndWith("svmrt agent: stopped\n");
    } finally {
      if (proc.exitCode === null) proc.kill("SIGKILL");
      await proc.exited;
    }
    expect(readdirSync(alone)).toEqual(["svmrt"]);
  }, RUN_MAX_ms);
});

describe("bun run build: the release layout of earlier versions", () => {
  test("bin/svmrt runs on-disk policies naming ../../plugins, ignoring .env and bunfig.toml in the cwd", () => {
    const root = mkdtempSync(join(tmpdir(), "svmrt-release-"));
    try {
      cpSync(exe, join(root, "bin/svmrt"));
      cpSync(join(ROOT, "plugins"), join(root, "plugins"), { recursive: true });
      cpSync(join(ROOT, "policies"), join(root, "policies"), { recursive: true });
      writeFileSync(join(root, ".env"), "SVMRT_PLUGINS_DIR=/nonexistent\n");
      writeFileSync(join(root, "bunfig.toml"), "preload = ['./nonexistent.ts']\n");
      const check = Bun.spawnSync([join(root, "bin/svmrt"), "policy", "check", "policies/"], { cwd: root, stdout: "pipe", stderr: "pipe", env: BARE_ENV });
      expect(check.stderr.toString()).toBe("");
      expect(check.stdout.toString()).toMatch(/policies ok\n$/);
      expect(check.stdout.toString()).toContain(`ok   policies/migration/kernel-default.yaml`);
      expect(check.exitCode).toBe(0);
      const ev = Bun.spawnSync([join(root, "bin/svmrt"), "policy", "eval", "policies/migration/kernel-default.yaml", "--hook", "restoreLocation", "--json"], {
        cwd: root,
        stdout: "pipe",
        env: BARE_ENV,
      });
      expect(JSON.parse(ev.stdout.toString())).toEqual({ ok: true, decision: 0x3fe1, by: "plugin", logs: [] });
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  }, RUN_MAX_ms);
});
