/**
 * The package as an appliance gets it: `npm pack`, installed from the tarball into a project
 * of its own, imported as "svmrt" (the exports map, TypeScript source run by Bun), the
 * examples of docs/examples run there with this repository's bun, and type-checked there.
 * npm reaches the registry (its cache first) for the dependencies.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { cpSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";

/** The whole install-and-run test: npm install may download every dependency, ms. */
const INSTALL_TEST_TIMEOUT_ms = 300_000;
/** One spawned command (npm pack, npm install, an example, tsc), ms. */
const COMMAND_TIMEOUT_ms = 240_000;

const ROOT = join(import.meta.dir, "..");
const NPM_QUIET = ["--no-audit", "--no-fund", "--loglevel=error"];

/** npm's own variables of an outer `npm test` would steer the inner npm: drop them. */
function envWithoutNpm(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.toLowerCase().startsWith("npm_")) env[k] = v;
  return env;
}

interface Ran {
  exitCode: number | null;
  stdout: string;
  stderr: string;
}

/** Run a command to its end (asynchronously, so the test's timeout applies). */
async function run(argv: string[], cwd: string): Promise<Ran> {
  const p = Bun.spawn(argv, { cwd, env: envWithoutNpm(), stdout: "pipe", stderr: "pipe", timeout: COMMAND_TIMEOUT_ms, killSignal: "SIGKILL" });
  const [stdout, stderr] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text()]);
  return { exitCode: await p.exited, stdout, stderr };
}

const npm = Bun.which("npm");
const dirs: string[] = [];
let tarball = "";
let packed: string[] = [];

beforeAll(async () => {
  if (npm === null) throw new Error("npm is not on PATH: this test packs and installs the package with npm (install Node.js and npm)");
  const dest = mkdtempSync(join(tmpdir(), "svmrt-pack-"));
  dirs.push(dest);
  const r = await run([npm, "pack", "--pack-destination", dest, "--json", ...NPM_QUIET], ROOT);
  if (r.exitCode !== 0) throw new Error(`npm pack failed (${r.exitCode}): ${r.stderr}`);
  const [info] = JSON.parse(r.stdout) as { filename: string; files: { path: string }[] }[];
  tarball = join(dest, info!.filename);
  packed = info!.files.map((f) => f.path);
});

afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe("npm pack", () => {
  test("ships runtime/, plugins/, policies/, profiles/ and the examples; no test/ nor node_modules", () => {
    for (const folder of ["runtime/", "plugins/", "policies/", "profiles/"]) expect(packed.some((p) => p.startsWith(folder)), folder).toBe(true);
    expect(packed.filter((p) => p.startsWith("test/") || p.split("/").includes("node_modules"))).toEqual([]);
    expect(packed).toContain("docs/examples/embed-agent.ts");
    expect(packed).toContain("runtime/sandbox/wasm-file.d.ts");
  });

  test("every target of the exports map is in the tarball", async () => {
    const pkg = (await Bun.file(join(ROOT, "package.json")).json()) as { exports: Record<string, string> };
    const targets = Object.values(pkg.exports).map((t) => t.replace(/^\.\//, ""));
    expect(targets.length).toBeGreaterThan(5);
    expect(targets.filter((t) => !packed.includes(t))).toEqual([]);
  });
});

describe("installed from the tarball into another project", () => {
  test(
    "resolves through the exports map, runs the embedding examples with exit 0, type-checks",
    async () => {
      const project = mkdtempSync(join(tmpdir(), "svmrt-appliance-"));
      dirs.push(project);
      const manifest = { name: "appliance", version: "1.0.0", private: true, type: "module", dependencies: { svmrt: `file:${tarball}` } };
      writeFileSync(join(project, "package.json"), `${JSON.stringify(manifest, null, 2)}\n`);
      // The examples run with this repository's bun: the `bun` package's binary (an optional
      // dependency, fetched by its postinstall) is not needed there.
      const install = await run([npm!, "install", "--prefer-offline", "--ignore-scripts", "--omit=optional", ...NPM_QUIET], project);
      expect(install.stderr).toBe("");
      expect(install.exitCode).toBe(0);

      const installed = join(project, "node_modules", "svmrt");
      expect(Bun.resolveSync("svmrt", project)).toBe(join(installed, "runtime", "index.ts"));
      expect(Bun.resolveSync("svmrt/smi", project)).toBe(join(installed, "runtime", "smi", "index.ts"));
      // Only the exports map's entry points are importable.
      expect(() => Bun.resolveSync("svmrt/runtime/agent/agent.ts", project)).toThrow();

      for (const example of ["embed-agent.ts", "embed-sim.ts"]) cpSync(join(ROOT, "docs", "examples", example), join(project, example));

      const agent = await run([process.execPath, "embed-agent.ts"], project);
      expect(agent.exitCode, agent.stderr).toBe(0);
      const gpus = /^(\d+) GPU\(s\), backend emulated \(emulated\)$/m.exec(agent.stdout);
      expect(gpus, agent.stdout).not.toBeNull();
      const n = Number(gpus![1]);
      expect(n).toBeGreaterThan(0);
      expect(agent.stdout.match(/^gpu \d+ [0-9a-f-]{36} .*: junction [\d.]+ C, socket [\d.]+ W$/gm)?.length).toBe(n);
      expect(agent.stdout.match(/^session read [0-9a-f-]{36}: \d+ VRAM bytes used$/gm)?.length).toBe(n);
      const series = /^metrics: (\d+) gpu_\* series, (\d+) svm_\* series$/m.exec(agent.stdout);
      expect(series, agent.stdout).not.toBeNull();
      expect(Number(series![1])).toBeGreaterThan(0);
      expect(Number(series![2])).toBeGreaterThan(0);
      // The installed package's own shipped policies, and an orderly stop.
      expect(agent.stderr).toContain(join("node_modules", "svmrt", "policies", "sampling", "adaptive.yaml"));
      expect(agent.stderr).toMatch(/svmrt: stopped\n$/);

      const sim = await run([process.execPath, "embed-sim.ts"], project);
      expect(sim.exitCode, sim.stderr).toBe(0);
      expect(sim.stdout).toMatch(/^kernel-default \(native\): \d+ GPU faults, .*\naccess-counter: \d+ GPU faults, .*\n$/);

      // A consumer's strict type check of the examples and of the svmrt source they import.
      const tsconfig = {
        compilerOptions: {
          lib: ["ESNext"],
          target: "ESNext",
          module: "Preserve",
          moduleResolution: "bundler",
          allowImportingTsExtensions: true,
          verbatimModuleSyntax: true,
          noEmit: true,
          strict: true,
          skipLibCheck: true,
          noUncheckedIndexedAccess: true,
          types: [dirname(Bun.resolveSync("bun-types/package.json", ROOT))],
        },
        include: ["*.ts"],
      };
      writeFileSync(join(project, "tsconfig.json"), `${JSON.stringify(tsconfig, null, 2)}\n`);
      const tsc = join(dirname(Bun.resolveSync("typescript/package.json", ROOT)), "bin", "tsc");
      const check = await run([process.execPath, tsc, "--noEmit", "-p", "."], project);
      expect(check.stdout + check.stderr).toBe("");
      expect(check.exitCode).toBe(0);
    },
    INSTALL_TEST_TIMEOUT_ms,
  );
});
