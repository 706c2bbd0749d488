/**
 * `svmrt agent` as a shell job or a service: in a process group with its emulated SVM child.
 * - A signal to the whole group (a terminal's hang-up or Ctrl-C; systemd's default
 *   KillMode=control-group stop) reaches the child too: the child outlives it, the agent
 *   reloads or stops in order, and the child ends when the agent ends its stdin.
 * - The agent's restart with its JavaScriptCore options keeps Bun's own flags (`bun --smol`).
 * Every agent runs in a process group of its own, is killed with its group, and its stderr
 * is drained; nothing is written to disk.
 */
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import { emuSvmChildOf, waitFor } from "./helpers.ts";

const ROOT = join(import.meta.dir, "..", "..");
/** Longest the agent may take to log "serving on", ms. */
const SERVING_MAX_ms = 40_000;
/** Longest the agent may take to exit after a group SIGTERM (its drain bound and slack), ms. */
const EXIT_MAX_ms = 20_000;
const TEST_TIMEOUT_ms = 90_000;

interface GroupAgent {
  pid: number;
  stderr(): string;
  exited: Promise<number>;
  /** SIGKILL to the whole group, wait for the exit and the end of stderr. */
  kill(): Promise<void>;
}

/** `svmrt agent --backend emulated` in a process group of its own (pgid = its pid), as a shell's job is. */
function agentInGroup(bunFlags: string[] = []): GroupAgent {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith("SVMRT_") && !k.startsWith("BUN_JSC_")) env[k] = v;
  const proc = Bun.spawn([process.execPath, ...bunFlags, "runtime/cli.ts", "agent", "--backend", "emulated", "--listen", "127.0.0.1:0"], {
    cwd: ROOT,
    env,
    stdin: "ignore",
    stdout: "ignore",
    stderr: "pipe",
    detached: true,
  });
  let text = "";
  const drained = (async () => {
    const d = new TextDecoder();
    for await (const c of proc.stderr) text += d.decode(c, { stream: true });
  })();
  return {
    pid: proc.pid,
    stderr: () => text,
    exited: proc.exited,
    async kill() {
      if (proc.exitCode === null && proc.signalCode === null) {
        try {
          process.kill(-proc.pid, "SIGKILL");
        } catch {
          // The group is gone already.
        }
      }
      await proc.exited;
      await drained;
    },
  };
}

async function servingPort(a: GroupAgent): Promise<number> {
  const m = await waitFor("the agent's 'serving on' line", () => /serving on http:\/\/127\.0\.0\.1:(\d+)\n/.exec(a.stderr()) ?? undefined, SERVING_MAX_ms);
  return Number(m[1]);
}

describe("svmrt agent: signals to its process group", () => {
  test(
    "a SIGHUP to the group (a terminal hang-up) reloads the agent and leaves its emulated SVM source running",
    async () => {
      const a = agentInGroup();
      try {
        await servingPort(a);
        const before = await waitFor("the emulated SVM child", () => emuSvmChildOf(a.pid));
        // The group's signal reaches both at once: the child, had it died of it, is gone once
        // the agent has logged its reload.
        process.kill(-a.pid, "SIGHUP");
        await waitFor("the agent's reload line", () => (a.stderr().includes("SIGHUP: reloading policies") ? true : undefined), SERVING_MAX_ms);
        expect(a.stderr()).not.toContain("emulated SVM source exited");
        expect(emuSvmChildOf(a.pid)).toBe(before);
      } finally {
        await a.kill();
      }
    },
    TEST_TIMEOUT_ms,
  );

  test(
    "a SIGTERM to the group (systemd's default stop) with a request in flight stops in order, without a failure line for the SVM source",
    async () => {
      const a = agentInGroup();
      try {
        const port = await servingPort(a);
        await waitFor("the emulated SVM child", () => emuSvmChildOf(a.pid));
        // A client that sent half a request: the HTTP drain waits for it.
        const socket = connect(port, "127.0.0.1");
        await new Promise<void>((resolve, reject) => socket.once("connect", resolve).once("error", reject));
        socket.write("GET /metrics HTTP/1.1\r\nHost: x\r\n");
        await Bun.sleep(200);
        process.kill(-a.pid, "SIGTERM");
        const code = await Promise.race([a.exited, Bun.sleep(EXIT_MAX_ms).then(() => "hung" as const)]);
        socket.destroy();
        expect(code).toBe(0);
        expect(a.stderr()).toContain("SIGTERM: stopping");
        expect(a.stderr()).not.toContain("emulated SVM source exited");
        expect(a.stderr().trimEnd().endsWith("svmrt agent: stopped")).toBe(true);
        // The child went with the agent's stop, not with the signal, and is gone.
        expect(emuSvmChildOf(a.pid)).toBeUndefined();
      } finally {
        await a.kill();
      }
    },
    TEST_TIMEOUT_ms,
  );
});

describe("svmrt agent: its restart with its JavaScriptCore options", () => {
  test(
    "Bun's own flags survive it (bun --smol runtime/cli.ts agent)",
    async () => {
      const a = agentInGroup(["--smol"]);
      try {
        await servingPort(a);
        const argv = readFileSync(`/proc/${a.pid}/cmdline`, "utf8").split("\0");
        expect(argv).toContain("--smol");
      } finally {
        await a.kill();
      }
    },
    TEST_TIMEOUT_ms,
  );
});
