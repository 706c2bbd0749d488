/**
 * Where the shipped files are: `plugins/`, `policies/` and `profiles/`, and how a command
 * starts another svmrt. The one place that knows whether svmrt runs from a checkout (or an
 * installed package) or as the single executable of `bun run build`.
 *
 * - In a checkout the shipped folders are the real ones beside `runtime/`.
 * - In the executable they are the copies `bun build --compile --asset DIR` embedded under
 *   EMBEDDED_ROOT (`/$bunfs/root/policies/...`). Bun serves them to `statSync`,
 *   `readdirSync`, `readFileSync` and `Bun.file` like files on disk, but they have no real
 *   path (`realpathSync` fails: use `realpathOf`), cannot be opened as a descriptor nor
 *   watched. They hold no symlinks: Bun embeds regular files only.
 *
 * Users name a shipped file or folder the same way in both: `builtin:policies/migration/`,
 * `builtin:profiles/mi300x-8.yaml`, `builtin:plugins/migration/thrash-guard.js`
 * (`builtinPath`). The embedded paths themselves are valid arguments of the same executable.
 */
import { realpathSync, statSync } from "node:fs";
import { dirname, join, normalize, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { UsageError } from "./errors.ts";

/** True inside the single executable of `bun run build`. */
export const EMBEDDED: boolean = Bun.isStandaloneExecutable;
/**
 * Where `bun build --compile --asset` puts the embedded folders (package.json "build" runs
 * from the package root, so `--asset policies` becomes EMBEDDED_ROOT/policies). A fixed
 * path: every thread of the executable (the CLI, each Worker) sees the same one, while
 * import.meta.dir differs per bundled entry point.
 */
export const EMBEDDED_ROOT = "/$bunfs/root";
/** Root of the shipped folders: the package root in a checkout, EMBEDDED_ROOT in the executable. */
export const ASSETS_ROOT: string = EMBEDDED ? EMBEDDED_ROOT : resolve(import.meta.dir, "..");
/** The shipped folders, as embedded by package.json "build" (one `--asset` each). */
export const SHIPPED_FOLDERS = ["plugins", "policies", "profiles"] as const;
export type ShippedFolder = (typeof SHIPPED_FOLDERS)[number];
/** Prefix that names a shipped file or folder: `builtin:policies/migration/`. */
export const BUILTIN_PREFIX = "builtin:";
/** Environment variable that replaces the shipped plugins/ folder (and `builtin:plugins/`). */
export const PLUGINS_DIR_ENV = "SVMRT_PLUGINS_DIR";

/**
 * The shipped folder `name`. plugins/ is replaced by $SVMRT_PLUGINS_DIR when set (read on
 * each call, as the loader always did).
 */
export function shippedDir(name: ShippedFolder): string {
  const env = name === "plugins" ? process.env[PLUGINS_DIR_ENV] : undefined;
  return env ? resolve(env) : join(ASSETS_ROOT, name);
}

/**
 * Folders a policy's plugin may live in because svmrt shipped them: plugins/ (shippedDir),
 * and in the executable without $SVMRT_PLUGINS_DIR also a plugins/ folder beside the
 * executable's own folder (bin/svmrt + plugins/, the release layout of earlier versions,
 * whose on-disk policies name `../../plugins/...`). Folders that do not exist are listed
 * too: callers resolve them with realpathOf and drop the nulls.
 */
export function shippedPluginRoots(): string[] {
  const roots = [shippedDir("plugins")];
  if (EMBEDDED && !process.env[PLUGINS_DIR_ENV]) roots.push(resolve(dirname(process.execPath), "..", "plugins"));
  return roots;
}

/**
 * `path` with a leading `builtin:FOLDER/REST` replaced by the shipped folder's path
 * (shippedDir(FOLDER)/REST); any other path unchanged. REST cannot climb out of FOLDER.
 * @throws UsageError when FOLDER is not one of SHIPPED_FOLDERS.
 */
export function builtinPath(path: string): string {
  if (!path.startsWith(BUILTIN_PREFIX)) return path;
  const rest = path.slice(BUILTIN_PREFIX.length);
  const slash = rest.indexOf("/");
  const folder = slash < 0 ? rest : rest.slice(0, slash);
  if (!(SHIPPED_FOLDERS as readonly string[]).includes(folder)) {
    throw new UsageError(`${path}: a shipped file is named ${SHIPPED_FOLDERS.map((f) => `${BUILTIN_PREFIX}${f}/...`).join(", ")}`);
  }
  // normalize("/" + x) drops any "..": the result stays inside the folder.
  const inside = slash < 0 ? "" : normalize(`/${rest.slice(slash + 1)}`).slice(1).replace(/\/+$/, "");
  const dir = shippedDir(folder as ShippedFolder);
  return inside === "" ? dir : join(dir, inside);
}

/** True for a path inside the executable's embedded files. */
export function isEmbeddedPath(path: string): boolean {
  return EMBEDDED && (path === EMBEDDED_ROOT || path.startsWith(`${EMBEDDED_ROOT}/`));
}

/**
 * The canonical path of an existing file or folder (symlinks resolved), or null when it
 * does not exist. Embedded paths have no symlinks: their canonical form is the normalised
 * absolute path, when Bun serves an entry there.
 */
export function realpathOf(path: string): string | null {
  try {
    if (isEmbeddedPath(resolve(path))) {
      statSync(path);
      return resolve(path);
    }
    return realpathSync(path);
  } catch {
    return null;
  }
}

/**
 * The argv prefix that runs the svmrt CLI in a child process (arguments follow): the
 * executable itself, or Bun with runtime/cli.ts in a checkout.
 */
export function cliArgv(): string[] {
  return EMBEDDED ? [process.execPath] : [process.execPath, join(import.meta.dir, "cli.ts")];
}

/**
 * The URL of a Worker entry point named relative to runtime/ (`smi/worker.ts`): the file in
 * a checkout; in the executable its bundled copy. package.json "build" lists each Worker
 * entry point, and Bun keeps entry points at their paths relative to the entries' common
 * folder (runtime/) under EMBEDDED_ROOT, while import.meta.url of bundled code is the
 * executable's main entry: a `new URL("./worker.ts", import.meta.url)` misses it there.
 */
export function workerUrl(entry: string): string {
  return EMBEDDED ? `file://${EMBEDDED_ROOT}/${entry}` : pathToFileURL(join(import.meta.dir, entry)).href;
}
