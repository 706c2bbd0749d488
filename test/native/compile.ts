/**
 * Compile the C probes and test doubles of test/native/ at test time with the system `cc`,
 * against the system's <linux/kfd_ioctl.h> and a stand-in <drm/drm.h> generated in the build
 * directory. Outputs are cached in test/native/build/ (gitignored) by a hash of the source, the
 * kernel header and the flags, so a second run does not recompile.
 */
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export const NATIVE_DIR = import.meta.dir;
export const BUILD_DIR = join(NATIVE_DIR, "build");
export const KFD_HEADER_PATH = "/usr/include/linux/kfd_ioctl.h";

/** The uapi header includes <drm/drm.h>, which is not installed; this is enough for it. */
const DRM_STANDIN = "/* stand-in for <drm/drm.h>: kfd_ioctl.h needs only these */\n#include <linux/types.h>\n#include <linux/ioctl.h>\n";

/** How long a compilation may take before the test fails, ms. */
const CC_TIMEOUT_ms = 60_000;

export interface NativeBuild {
  /** Source file name in test/native/, e.g. `kfd_double.c`. */
  source: string;
  /** Build a shared library (-shared -fPIC) instead of an executable. */
  shared: boolean;
  /** Preprocessor definitions passed as `-D<define>` (e.g. `AMDSMI_DOUBLE_LAYOUT=24`); part of the cache hash. */
  defines?: readonly string[];
}

/**
 * Path of the built artifact, compiling it first when the cache has no build of this source.
 * @throws Error carrying the compiler's stderr when `cc` fails.
 */
export function nativeBuild({ source, shared, defines = [] }: NativeBuild): string {
  const src_path = join(NATIVE_DIR, source);
  const src = readFileSync(src_path);
  const flags = ["-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", "-D_GNU_SOURCE"];
  if (shared) flags.push("-shared", "-fPIC");
  flags.push(...defines.map((d) => `-D${d}`));
  const hash = createHash("sha256")
    .update(src)
    .update(existsSync(KFD_HEADER_PATH) ? readFileSync(KFD_HEADER_PATH) : "no-header")
    .update(flags.join(" "))
    .update(DRM_STANDIN)
    .digest("hex")
    .slice(0, 16);
  const base = source.replace(/\.c$/, "");
  const out = join(BUILD_DIR, `${base}-${hash}${shared ? ".so" : ""}`);
  if (existsSync(out)) return out;

  const include_dir = join(BUILD_DIR, "include");
  mkdirSync(join(include_dir, "drm"), { recursive: true });
  writeFileSync(join(include_dir, "drm", "drm.h"), DRM_STANDIN);
  // Build under a unique name, then rename: test files running in parallel may race here.
  const tmp = `${out}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`;
  const r = Bun.spawnSync(["cc", ...flags, "-I", include_dir, "-o", tmp, src_path], {
    stdout: "pipe",
    stderr: "pipe",
    timeout: CC_TIMEOUT_ms,
  });
  if (r.exitCode !== 0) {
    throw new Error(`cc ${source} failed (exit ${r.exitCode}):\n${r.stderr.toString()}${r.stdout.toString()}`);
  }
  renameSync(tmp, out);
  return out;
}
