/**
 * I/O errors are user errors (issue 11): one line naming the file and the errno with a
 * documented exit code, never a stack trace; EPIPE stops the work and exits 0; outputs go
 * through a temporary file so a failed run leaves an existing file as it was; compare checks
 * its output before the first cell and a workload path starting with '-' works in its cells.
 */
import { describe, expect, test } from "bun:test";
import { chmodSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { runCli } from "../cli-helpers.ts";
import { policyYaml, tempFolder } from "../policy/helpers.ts";

const ROOT = join(import.meta.dir, "../..");
const CLI = join(ROOT, "runtime/cli.ts");
const KERNEL_DEFAULT = join(ROOT, "policies/migration/kernel-default.yaml");

/** Run a shell pipeline; its stderr and the exit code of the pipeline's first command. */
async function pipeline(cmd: string): Promise<{ code: number; err: string; out: string }> {
  const proc = Bun.spawn(["bash", "-c", `${cmd}; echo "rc=\${PIPESTATUS[0]}" >&2`], { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
  const [out, err] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
  await proc.exited;
  const m = /rc=(\d+)\n$/.exec(err);
  return { code: m === null ? -1 : Number(m[1]), err: err.replace(/rc=\d+\n$/, ""), out };
}

describe("hostile: EPIPE ends quietly with exit 0 and stops the work", () => {
  test("svmrt kfd events --emulated | head -1 (was: ran the whole workload, '245792 events shown')", async () => {
    const r = await pipeline(`"${process.execPath}" "${CLI}" kfd events --emulated | head -1`);
    expect(r.code).toBe(0);
    expect(r.out).toBe("# EMULATED: no GPU hardware; profile dev-2gpu, workload stream, pid 4242\n");
    expect(r.err).toBe("");
  }, 60_000);

  test("svmrt sim --events /dev/stdout | head -1 (was: a stack trace, exit 70)", async () => {
    // 245,794 event lines: the reader is gone long before the run would end.
    const r = await pipeline(`"${process.execPath}" "${CLI}" sim --workload oversub-125 --events /dev/stdout | head -1`);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^[0-9a-f]+ \S.*\n$/);
    expect(r.err).toBe("");
  }, 60_000);
});

describe("hostile: output files", () => {
  test("ENOSPC on --events is one line naming the flag, the file and ENOSPC (exit 74)", async () => {
    const r = await runCli(["sim", "--workload", "stream", "--events", "/dev/full"]);
    expect(r.code).toBe(74);
    expect(r.out).toBe("");
    expect(r.err).toBe("svmrt sim: --events /dev/full: cannot write: ENOSPC (no space left on device)\n");
  });

  test("--events into a folder that does not exist: exit 74 before the run", async () => {
    const dir = tempFolder({});
    const r = await runCli(["sim", "--workload", "stream", "--events", join(dir, "none", "e.txt")]);
    expect(r.code).toBe(74);
    expect(r.err).toStartWith(`svmrt sim: --events ${join(dir, "none", "e.txt")}: cannot write: ENOENT (folder ${join(dir, "none")}: `);
  });

  test("a failed run leaves an existing --events file as it was (was: emptied at start)", async () => {
    const plugin = "export function restoreLocation() { throw new Error('no') }\n";
    const dir = tempFolder({ "p.yaml": policyYaml("  plugin: p.js\n  onFailure: fail-closed\n"), "p.js": plugin, "events.txt": "precious\n" });
    const r = await runCli(["sim", "--workload", "stream", "--policy", join(dir, "p.yaml"), "--events", join(dir, "events.txt")]);
    expect(r.code).toBe(4);
    expect(r.err).toStartWith("svmrt sim: policy t, hook restoreLocation: exception: ");
    expect(readFileSync(join(dir, "events.txt"), "utf8")).toBe("precious\n");
    // No temporary file is left beside it.
    expect(readdirSync(dir).sort()).toEqual(["events.txt", "p.js", "p.yaml"]);
  });

  test("a successful run replaces the file, keeping its mode", async () => {
    const dir = tempFolder({ "events.txt": "old\n" });
    chmodSync(join(dir, "events.txt"), 0o640);
    const r = await runCli(["sim", "--workload", "pingpong", "--events", join(dir, "events.txt")]);
    expect(r.code).toBe(0);
    const text = readFileSync(join(dir, "events.txt"), "utf8");
    expect(text).not.toContain("old");
    expect(r.out).toContain(`  SMI events          ${text.split("\n").length - 1} lines in ${join(dir, "events.txt")}\n`);
    expect(statSync(join(dir, "events.txt")).mode & 0o777).toBe(0o640);
    expect(readdirSync(dir)).toEqual(["events.txt"]);
  });
});

describe("hostile: compare's outputs and cells", () => {
  test("--report to an unwritable place fails before the first cell (was: after every cell, results lost)", async () => {
    // The report's "folder" is a regular file: nothing can create it.
    const dir = tempFolder({ "not-a-folder": "" });
    const report = join(dir, "not-a-folder", "r.html");
    const r = await runCli(["compare", "--workloads", "stream", "--policies", KERNEL_DEFAULT, "--report", report]);
    expect(r.code).toBe(74);
    expect(r.out).toBe("");
    expect(r.err).toBe(`svmrt compare: --report ${report}: cannot write: ENOTDIR (not a directory)\n`);
  });

  test("a workload path starting with '-' works in every cell", async () => {
    const dir = tempFolder({
      "-w.yaml": "kind: Workload\nname: dash\nallocations:\n  - { name: a, size: 2MiB }\nstreams:\n  - agent: gpu0\n    ops:\n      - access: { alloc: a }\n",
    });
    const proc = Bun.spawn([process.execPath, CLI, "compare", "--workloads=-w.yaml", `--policies=${KERNEL_DEFAULT}`, "--json", "--jobs", "1"], {
      cwd: dir,
      stdout: "pipe",
      stderr: "pipe",
    });
    const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
    expect(err).toBe("");
    expect(code).toBe(0);
    const cells = (JSON.parse(out) as { cells: { workload: string; result?: { accesses: number } }[] }).cells;
    expect(cells.map((c) => [c.workload, c.result?.accesses])).toEqual([["-w.yaml", 512]]);
  }, 60_000);
});

describe("hostile: unreadable inputs name the file and EACCES", () => {
  /**
   * Run the CLI as a user who may not read the file: root reads everything, so as root the
   * command runs as nobody (setpriv), otherwise as ourselves with the file made unreadable.
   */
  async function runUnreadable(dir: string, unreadable: string, args: string[]): Promise<{ code: number; out: string; err: string }> {
    chmodSync(dir, 0o755);
    for (const f of readdirSync(dir)) chmodSync(join(dir, f), 0o644);
    chmodSync(join(dir, unreadable), 0o000);
    const asNobody = process.getuid?.() === 0 ? ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] : [];
    const proc = Bun.spawn([...asNobody, process.execPath, CLI, ...args], { cwd: ROOT, stdout: "pipe", stderr: "pipe", env: { ...process.env, HOME: dir } });
    const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
    return { code, out, err };
  }

  test("a workload file", async () => {
    const dir = tempFolder({ "w.yaml": "kind: Workload\n" });
    const r = await runUnreadable(dir, "w.yaml", ["sim", "--workload", join(dir, "w.yaml")]);
    expect(r.code).toBe(3);
    expect(r.err).toBe(`svmrt sim: ${dir}/w.yaml:1:1: a readable workload file (or a built-in: svmrt sim --list-workloads) (EACCES: cannot be read)\n`);
  }, 30_000);

  test("a profile", async () => {
    const dir = tempFolder({ "m.yaml": "kind: MachineProfile\n" });
    const r = await runUnreadable(dir, "m.yaml", ["sim", "--workload", "stream", "--profile", join(dir, "m.yaml")]);
    expect(r.code).toBe(3);
    expect(r.err).toStartWith(`svmrt sim: ${dir}/m.yaml:1:1: a readable machine profile (shipped: `);
    expect(r.err).toEndWith(" (EACCES: cannot be read)\n");
  }, 30_000);

  test("a policy file", async () => {
    const dir = tempFolder({ "p.yaml": policyYaml("  plugin: p.js\n"), "p.js": "export function restoreLocation(f) { return f.gpuId }\n" });
    const r = await runUnreadable(dir, "p.yaml", ["policy", "check", join(dir, "p.yaml")]);
    expect(r.code).toBe(3);
    expect(r.out).toBe(`FAIL ${dir}/p.yaml\n     ${dir}/p.yaml:1:1: an existing file (EACCES: cannot be read)\n0 of 1 policies ok\n`);
  }, 30_000);

  test("a plugin (was: 'contains binary data')", async () => {
    const dir = tempFolder({ "p.yaml": policyYaml("  plugin: p.js\n"), "p.js": "export function restoreLocation(f) { return f.gpuId }\n" });
    const r = await runUnreadable(dir, "p.js", ["policy", "check", join(dir, "p.yaml")]);
    expect(r.code).toBe(3);
    expect(r.out).toBe(`FAIL ${dir}/p.yaml\n     ${dir}/p.yaml:6:11: spec.plugin: a readable plugin file (${dir}/p.js: EACCES: cannot be read)\n0 of 1 policies ok\n`);
  }, 30_000);
});

describe("hostile: a trace that is a folder or unreadable", () => {
  test("--trace a folder: exit 3 naming EISDIR", async () => {
    const dir = tempFolder({});
    const r = await runCli(["sim", "--trace", dir]);
    expect(r.code).toBe(3);
    expect(r.err).toBe(`svmrt sim: ${dir}:1:1: a readable trace file (EISDIR: it is a folder)\n`);
  });

  test("--trace a missing file: exit 3 naming ENOENT", async () => {
    const dir = tempFolder({});
    writeFileSync(join(dir, "x"), "");
    const r = await runCli(["sim", "--trace", join(dir, "missing.smi")]);
    expect(r.code).toBe(3);
    expect(r.err).toBe(`svmrt sim: ${join(dir, "missing.smi")}:1:1: a readable trace file (ENOENT: no such file)\n`);
  });
});
