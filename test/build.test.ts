import { describe, expect, test } from "bun:test";
import { cpSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

describe("bun run build: the single executable", () => {
  test("runs policy check and eval with no node_modules beside it, ignoring .env and bunfig.toml", () => {
    const build = Bun.spawnSync([process.execPath, "run", "build"], { stdout: "pipe", stderr: "pipe" });
    expect(build.exitCode, build.stderr.toString()).toBe(0);
    // A release layout: bin/svmrt, plugins/, policies/ — and hostile config files in the cwd.
    const root = mkdtempSync(join(tmpdir(), "svmrt-release-"));
    try {
    cpSync("dist/svmrt", join(root, "bin/svmrt"));
    cpSync("plugins", join(root, "plugins"), { recursive: true });
    cpSync("policies", join(root, "policies"), { recursive: true });
    writeFileSync(join(root, ".env"), "SVMRT_PLUGINS_DIR=/nonexistent\n");
    writeFileSync(join(root, "bunfig.toml"), "preload = ['./nonexistent.ts']\n");
    const check = Bun.spawnSync([join(root, "bin/svmrt"), "policy", "check", "policies/"], { cwd: root, stdout: "pipe", stderr: "pipe", env: { PATH: "/usr/bin:/bin" } });
    expect(check.stderr.toString()).toBe("");
    expect(check.stdout.toString()).toMatch(/policies ok\n$/);
    expect(check.exitCode).toBe(0);
    const ev = Bun.spawnSync([join(root, "bin/svmrt"), "policy", "eval", "policies/migration/kernel-default.yaml", "--hook", "restoreLocation", "--json"], {
      cwd: root,
      stdout: "pipe",
      env: { PATH: "/usr/bin:/bin" },
    });
    expect(JSON.parse(ev.stdout.toString())).toEqual({ ok: true, decision: 0x3fe1, by: "plugin", logs: [] });
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  }, 120_000);
});
