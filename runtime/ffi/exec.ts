/**
 * execve(2) over bun:ffi: replace this process's program, keeping its pid, its open file
 * descriptors without close-on-exec (stdin, stdout, stderr) and its parent. Bun reads
 * JavaScriptCore's options from the environment only when it starts, so a process that wants
 * other options starts itself again this way (`svmrt agent`, runtime/cli/agent.ts), before it
 * has opened or written anything.
 *
 * The strings and the pointer arrays live in ArrayBuffers allocated for the call (never in
 * JSC's small in-heap typed arrays, which may move; see libc.ts) and stay referenced until
 * execve returns, which it does only on failure.
 */
import { dlopen, FFIType, ptr, read } from "bun:ffi";
import { LIBC_PATH } from "./libc.ts";

/** A NUL-terminated copy of `s` in an ArrayBuffer of its own. */
function cString(s: string): Uint8Array {
  const bytes = new TextEncoder().encode(s);
  const out = new Uint8Array(new ArrayBuffer(bytes.length + 1));
  out.set(bytes);
  return out;
}

/** A NULL-terminated array of pointers to `strings` (kept alive by the caller). */
function pointerArray(strings: readonly Uint8Array[]): BigUint64Array {
  const out = new BigUint64Array(new ArrayBuffer((strings.length + 1) * 8));
  strings.forEach((s, i) => {
    out[i] = BigInt(ptr(s));
  });
  return out;
}

/**
 * Run `path` in place of this process with `argv` (argv[0] included) and `env`.
 * @returns only on failure: the errno (positive), e.g. 2 (ENOENT) for a missing `path`.
 */
export function execve(path: string, argv: readonly string[], env: Readonly<Record<string, string | undefined>>): number {
  const lib = dlopen(LIBC_PATH, {
    execve: { args: [FFIType.ptr, FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
    __errno_location: { args: [], returns: FFIType.ptr },
  });
  try {
    const file = cString(path);
    const args = argv.map(cString);
    const vars = Object.entries(env)
      .filter((kv): kv is [string, string] => kv[1] !== undefined)
      .map(([k, v]) => cString(`${k}=${v}`));
    const argvp = pointerArray(args);
    const envp = pointerArray(vars);
    lib.symbols.execve(file, argvp, envp);
    const errno = read.i32(lib.symbols.__errno_location()!, 0);
    // Referenced until here: the native side read them during the call.
    void [file, args, vars, argvp, envp];
    return errno;
  } finally {
    lib.close();
  }
}
