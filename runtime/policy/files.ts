/** Finding policy files: a file as given, or every .yaml/.yml below a folder, sorted; `builtin:policies/...` names the shipped ones. */
import { readdirSync, realpathSync, statSync } from "node:fs";
import { join } from "node:path";
import { builtinPath } from "../assets.ts";
import { UsageError } from "../errors.ts";

/** Most policy files one command reads. */
export const POLICY_FILES_MAX = 1000;

/** Deepest folder nesting walked below a folder given. */
export const POLICY_FOLDER_DEPTH_MAX = 8;

/** The real path of `p`, or `p` itself when it cannot be resolved (a dangling link). */
function realOrSelf(p: string): string {
  try {
    return realpathSync(p);
  } catch {
    return p;
  }
}

/**
 * The policy files named by `paths` (files as given, folders walked in name order). A folder
 * or file reached twice (symlinks, a link loop, a folder named twice) is listed once.
 * @throws UsageError for a path that does not exist, a folder that cannot be listed (with its
 *   errno), or more than POLICY_FILES_MAX files.
 */
export function findPolicyFiles(paths: string[]): string[] {
  const out: string[] = [];
  const seenDirs = new Set<string>();
  const seenFiles = new Set<string>();
  const add = (p: string, dir: string) => {
    const real = realOrSelf(p);
    if (seenFiles.has(real)) return;
    seenFiles.add(real);
    out.push(p);
    if (out.length > POLICY_FILES_MAX) throw new UsageError(`more than ${POLICY_FILES_MAX} policy files under ${dir}`);
  };
  const walk = (dir: string, depth: number) => {
    if (depth > POLICY_FOLDER_DEPTH_MAX) return;
    const real = realOrSelf(dir);
    if (seenDirs.has(real)) return;
    seenDirs.add(real);
    let names: string[];
    try {
      names = readdirSync(dir).sort();
    } catch (e) {
      throw new UsageError(`${dir}: cannot list the folder: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    for (const name of names) {
      if (name.startsWith(".") || name === "node_modules") continue;
      const p = join(dir, name);
      let isDir = false;
      try {
        isDir = statSync(p).isDirectory();
      } catch {
        // A dangling link or an entry that vanished: listed if it looks like a policy, so
        // loading it reports the problem for that file alone.
      }
      if (isDir) walk(p, depth + 1);
      else if (/\.ya?ml$/.test(name)) add(p, dir);
    }
  };
  for (const p of paths.map(builtinPath)) {
    let st: ReturnType<typeof statSync>;
    try {
      st = statSync(p);
    } catch {
      throw new UsageError(`${p}: no such file or folder`);
    }
    if (st.isDirectory()) walk(p, 0);
    else add(p, p);
  }
  return out;
}
