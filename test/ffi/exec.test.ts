/**
 * execve over bun:ffi (runtime/ffi/exec.ts): a failure returns the errno and this process
 * goes on; a success runs the program in place of the caller, with the same pid, exactly the
 * arguments and the environment given (strings with spaces, '=', UTF-8, empty ones).
 */
import { describe, expect, test } from "bun:test";
import { ERRNO } from "../../runtime/ffi/errno.ts";
import { execve } from "../../runtime/ffi/exec.ts";

const EXEC_PATH = `${import.meta.dir}/../../runtime/ffi/exec.ts`;
/** Longest the exec'd child may take, ms. */
const CHILD_MAX_ms = 20_000;

describe("execve", () => {
  test("a program that does not exist: ENOENT, and the caller goes on", () => {
    expect(execve("/nonexistent/svmrt-no-such-program", ["x"], { A: "1" })).toBe(ERRNO.ENOENT);
    expect(execve("/", ["x"], {})).toBe(ERRNO.EACCES);
  });

  test(
    "a success keeps the pid and passes argv and env byte for byte",
    async () => {
      // The child prints its pid, then becomes /bin/sh, which prints its pid, its arguments and its variables.
      const args = ["sh", "-c", 'echo "$$"; for a in "$@"; do printf "[%s]\\n" "$a"; done; printf "{%s}{%s}\\n" "$SVMRT_T1" "$SVMRT_T2"; env | grep "^SVMRT_T3"', "sh", "a b", "", "é=ü", "--x=y"];
      const env = { SVMRT_T1: "one two", SVMRT_T2: "k=v=w", SVMRT_T3: "", PATH: "/usr/bin:/bin" };
      const script = `
        const { execve } = await import(${JSON.stringify(EXEC_PATH)});
        console.log(process.pid);
        const errno = execve("/bin/sh", ${JSON.stringify(args)}, ${JSON.stringify(env)});
        console.log("returned", errno);`;
      const child = Bun.spawn([process.execPath, "-e", script], { stdout: "pipe", stderr: "pipe", timeout: CHILD_MAX_ms });
      const [out, err, code] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited]);
      expect({ code, err }).toEqual({ code: 0, err: "" });
      const lines = out.trimEnd().split("\n");
      expect(lines[0]).toBe(String(child.pid));
      expect(lines[1]).toBe(String(child.pid));
      expect(lines.slice(2)).toEqual(["[a b]", "[]", "[é=ü]", "[--x=y]", "{one two}{k=v=w}", "SVMRT_T3="]);
    },
    CHILD_MAX_ms + 5_000,
  );
});
