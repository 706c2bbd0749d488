/**
 * Resolve a shared-object name without a slash (a soname such as "libamd_smi.so.26") to an
 * absolute path, searching as the dynamic loader does: $LD_LIBRARY_PATH, the directories of
 * /etc/ld.so.conf (and the files it includes), then the system directories.
 *
 * Why: bun:ffi's dlopen tries a bare name relative to the current directory before the
 * loader's search, so a libamd_smi.so lying in the working directory would be loaded instead
 * of the installed one (for an agent running as root, a library hijack). Resolving first and
 * passing an absolute path leaves the current directory out, as the loader itself does.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, isAbsolute, join } from "node:path";

export const LD_SO_CONF_PATH = "/etc/ld.so.conf";
/** Searched after $LD_LIBRARY_PATH and ld.so.conf, as the loader's trusted directories. */
export const LIBRARY_DIRS_DEFAULT = [
  "/lib64",
  "/usr/lib64",
  "/lib/x86_64-linux-gnu",
  "/usr/lib/x86_64-linux-gnu",
  "/lib/aarch64-linux-gnu",
  "/usr/lib/aarch64-linux-gnu",
  "/lib",
  "/usr/lib",
] as const;
/** Deepest chain of `include` lines followed in ld.so.conf. */
export const LD_SO_CONF_INCLUDE_DEPTH_MAX = 4;
/** Most configuration files read for one search. */
export const LD_SO_CONF_FILES_MAX = 256;

/** The directories of one ld.so.conf file and of the files it includes, in order. */
function ldSoConfDirs(file: string, depth: number, budget: { files: number }): string[] {
  if (depth > LD_SO_CONF_INCLUDE_DEPTH_MAX || budget.files <= 0) return [];
  budget.files--;
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch {
    return [];
  }
  const dirs: string[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.replace(/#.*/, "").trim();
    if (line === "") continue;
    const include = /^include\s+(.+)$/.exec(line);
    if (include) {
      for (const pattern of include[1]!.trim().split(/\s+/)) {
        const abs = isAbsolute(pattern) ? pattern : join(dirname(file), pattern);
        for (const f of globFiles(abs)) dirs.push(...ldSoConfDirs(f, depth + 1, budget));
      }
    } else if (line.startsWith("/")) {
      dirs.push(line.split("=")[0]!.trim()); // old "dir=type" lines
    }
  }
  return dirs;
}

/** Files matching a pattern whose last component may hold `*` (as `include dir/*.conf`), sorted. */
function globFiles(pattern: string): string[] {
  const dir = dirname(pattern);
  const base = pattern.slice(dir.length + 1);
  if (!base.includes("*")) return [pattern];
  const re = new RegExp(`^${base.replace(/[.+?^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*")}$`);
  try {
    return readdirSync(dir)
      .filter((f) => re.test(f))
      .sort()
      .map((f) => join(dir, f));
  } catch {
    return [];
  }
}

/** The directories a bare soname is searched in, in the loader's order, each once. */
export function librarySearchDirs(env: Record<string, string | undefined> = process.env, ldSoConf: string = LD_SO_CONF_PATH): string[] {
  const fromEnv = (env.LD_LIBRARY_PATH ?? "").split(":").filter((d) => d.startsWith("/"));
  return [...new Set([...fromEnv, ...ldSoConfDirs(ldSoConf, 0, { files: LD_SO_CONF_FILES_MAX }), ...LIBRARY_DIRS_DEFAULT])];
}

/**
 * `name` itself when it holds a slash; otherwise the first `dir/name` that exists in
 * librarySearchDirs, or undefined. Never the current directory.
 */
export function sonameResolve(name: string, env: Record<string, string | undefined> = process.env, ldSoConf: string = LD_SO_CONF_PATH): string | undefined {
  if (name.includes("/")) return name;
  for (const dir of librarySearchDirs(env, ldSoConf)) {
    const p = join(dir, name);
    if (existsSync(p)) return p;
  }
  return undefined;
}
