/** Finding policy files: a file as given, or every .yaml/.yml below a folder, sorted. */
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { UsageError } from "../errors.ts";

/** Most policy files one command reads. */
export const POLICY_FILES_MAX = 1000;

export function findPolicyFiles(paths: string[]): string[] {
  const out: string[] = [];
  const walk = (dir: string, depth: number) => {
    if (depth > 8) return;
    for (const name of readdirSync(dir).sort()) {
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
      else if (/\.ya?ml$/.test(name)) out.push(p);
      if (out.length > POLICY_FILES_MAX) throw new UsageError(`more than ${POLICY_FILES_MAX} policy files under ${dir}`);
    }
  };
  for (const p of paths) {
    let st: ReturnType<typeof statSync>;
    try {
      st = statSync(p);
    } catch {
      throw new UsageError(`${p}: no such file or folder`);
    }
    if (st.isDirectory()) walk(p, 0);
    else out.push(p);
  }
  return out;
}
