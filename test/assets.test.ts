/**
 * runtime/assets.ts in a checkout: the shipped folders are the real ones beside runtime/,
 * `builtin:` names them, and the policy loader keeps its plugin confinement for them. The
 * same code inside the executable is exercised by test/build.test.ts.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import {
  ASSETS_ROOT,
  builtinPath,
  cliArgv,
  EMBEDDED,
  PLUGINS_DIR_ENV,
  realpathOf,
  SHIPPED_FOLDERS,
  shippedDir,
  shippedPluginRoots,
  workerUrl,
} from "../runtime/assets.ts";
import { ConfigErrors, UsageError } from "../runtime/errors.ts";
import { findPolicyFiles } from "../runtime/policy/files.ts";
import { Policy } from "../runtime/policy/policy.ts";
import { loadProfile } from "../runtime/sim/profile.ts";
import { HEALTHY_MIGRATION_PLUGIN, policyYaml, tempFolder } from "./policy/helpers.ts";

const ROOT = resolve(import.meta.dir, "..");

afterEach(() => {
  delete process.env[PLUGINS_DIR_ENV];
});

describe("assets in a checkout", () => {
  test("the shipped folders are the real ones beside runtime/", () => {
    expect(EMBEDDED).toBe(false);
    expect(ASSETS_ROOT).toBe(ROOT);
    for (const f of SHIPPED_FOLDERS) expect(shippedDir(f)).toBe(join(ROOT, f));
    expect(shippedPluginRoots()).toEqual([join(ROOT, "plugins")]);
  });

  test("SVMRT_PLUGINS_DIR replaces plugins/, for builtin:plugins/ too", () => {
    process.env[PLUGINS_DIR_ENV] = "/opt/my-plugins";
    expect(shippedDir("plugins")).toBe("/opt/my-plugins");
    expect(shippedPluginRoots()).toEqual(["/opt/my-plugins"]);
    expect(builtinPath("builtin:plugins/migration/x.js")).toBe("/opt/my-plugins/migration/x.js");
    expect(shippedDir("policies")).toBe(join(ROOT, "policies"));
  });

  test("builtin: names a shipped file or folder and cannot climb out of it; other paths pass unchanged", () => {
    expect(builtinPath("builtin:policies/migration/")).toBe(join(ROOT, "policies", "migration"));
    expect(builtinPath("builtin:profiles")).toBe(join(ROOT, "profiles"));
    expect(builtinPath("builtin:profiles/../../etc/passwd")).toBe(join(ROOT, "profiles", "etc", "passwd"));
    expect(builtinPath("policies/x.yaml")).toBe("policies/x.yaml");
    expect(builtinPath("/abs/builtin:x")).toBe("/abs/builtin:x");
    expect(() => builtinPath("builtin:runtime/cli.ts")).toThrow(UsageError);
    expect(() => builtinPath("builtin:")).toThrow("builtin:: a shipped file is named builtin:plugins/..., builtin:policies/..., builtin:profiles/...");
  });

  test("realpathOf: canonical path of what exists, null otherwise", () => {
    expect(realpathOf(join(ROOT, "policies", "..", "plugins"))).toBe(join(ROOT, "plugins"));
    expect(realpathOf(join(ROOT, "no-such-folder"))).toBeNull();
  });

  test("children run bun runtime/cli.ts; Worker entry points are the files beside it", () => {
    expect(cliArgv()).toEqual([process.execPath, join(ROOT, "runtime", "cli.ts")]);
    for (const entry of ["smi/worker.ts"]) {
      const file = fileURLToPath(workerUrl(entry));
      expect(file).toBe(join(ROOT, "runtime", entry));
      expect(existsSync(file)).toBe(true);
    }
  });
});

describe("builtin: where users name files", () => {
  test("policy folders and files", () => {
    const files = findPolicyFiles(["builtin:policies/migration/"]);
    expect(files.map((f) => f.slice(ROOT.length))).toEqual([
      "/policies/migration/access-counter.yaml",
      "/policies/migration/density-prefetch.yaml",
      "/policies/migration/kernel-default.yaml",
      "/policies/migration/thrash-guard.yaml",
      "/policies/migration/xgmi-aware.yaml",
    ]);
    expect(findPolicyFiles(["builtin:policies/session/lazy.yaml"])).toEqual([join(ROOT, "policies", "session", "lazy.yaml")]);
  });

  test("a profile", () => {
    const p = loadProfile("builtin:profiles/mi300x-8.yaml");
    expect([p.name, p.file, p.gpus.length]).toEqual(["mi300x-8", join(ROOT, "profiles", "mi300x-8.yaml"), 8]);
  });

  test("a policy file given to the loader", async () => {
    using p = await Policy.load("builtin:policies/session/lazy.yaml");
    expect([p.name, p.spec.file, p.spec.pluginPath]).toEqual(["lazy", join(ROOT, "policies", "session", "lazy.yaml"), join(ROOT, "plugins", "session", "lazy.js")]);
  });

  test("a user's policy on disk may use a shipped plugin by its builtin: name", async () => {
    const dir = tempFolder({ "p.yaml": policyYaml("  plugin: builtin:plugins/migration/kernel-default.js\n") });
    using p = await Policy.load(join(dir, "p.yaml"));
    expect(p.spec.pluginPath).toBe(join(ROOT, "plugins", "migration", "kernel-default.js"));
  });

  test("a builtin: plugin outside the shipped folders is a config error at spec.plugin", async () => {
    const dir = tempFolder({ "p.yaml": policyYaml("  plugin: builtin:runtime/plugin.js\n"), "plugin.js": HEALTHY_MIGRATION_PLUGIN });
    const err = await Policy.load(join(dir, "p.yaml")).then(
      (p) => {
        p.dispose();
        return null;
      },
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ConfigErrors);
    expect((err as ConfigErrors).errors.map((e) => e.message.replace(dir, "DIR"))).toEqual([
      "DIR/p.yaml:6:11: spec.plugin: a shipped plugin named builtin:plugins/... (got builtin:runtime/plugin.js)",
    ]);
  });
});
