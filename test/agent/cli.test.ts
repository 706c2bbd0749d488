/**
 * `svmrt agent` as operators run it: a child process `bun runtime/cli.ts agent ...`, its
 * stderr log, its exit code, its signals (SIGTERM and SIGINT stop it in order and exit 0,
 * SIGHUP reloads), its configuration errors, a port already in use, SVMRT_SMI_MODE, a unix
 * socket. Every child listens on a port the kernel picks (`--listen 127.0.0.1:0`) and is
 * found by the "serving on" line it logs; every child is killed and every temp file removed.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { AGENT_JIT_ENV } from "../../runtime/agent/emu-svm-source.ts";
import { AGENT_JSC_ENV, AGENT_STOP_MAX_ms, agentJscRestart } from "../../runtime/cli/agent.ts";
import { EXIT } from "../../runtime/cli/exit.ts";
import { AMDSMI_DOUBLE_CONFIG_ENV } from "../../runtime/ffi/amdsmi-double.ts";
import { ERRNO } from "../../runtime/ffi/errno.ts";
import { amdsmiDoubleFixture } from "../ffi/amdsmi-double.ts";
import { emuSvmChildOf, environOf, seriesValue, waitFor } from "./helpers.ts";

const ROOT = join(import.meta.dir, "..", "..");
/** Longest a child agent may take to log a line it is waited for (it loads its policies first), ms. */
const CHILD_LOG_MAX_ms = 40_000;
/** Longest a child may take to exit once asked (its own stop bound plus start-up slack), ms. */
const CHILD_EXIT_MAX_ms = AGENT_STOP_MAX_ms + 10_000;
/** Longest an HTTP request to a child may stay unanswered before the test calls it hung, ms. */
const REQUEST_MAX_ms = 15_000;
/** The init delay of the double while the agent starts, ms. */
const INIT_DELAY_ms = 2_000;
/** A JavaScript stack frame as Bun prints them. */
const STACK_FRAME = /^\s+at /m;

const tmp = mkdtempSync(join(tmpdir(), "svmrt-agent-cli-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

interface AgentChild {
  proc: Subprocess<"ignore", "pipe", "pipe">;
  /** Everything the child wrote on stderr so far. */
  stderr(): string;
  /** Wait for a match of `re` on stderr. @throws Error after CHILD_LOG_MAX_ms or when the child exits first. */
  logged(re: RegExp): Promise<RegExpMatchArray>;
  /** The exit code, or "hung" after CHILD_EXIT_MAX_ms. */
  exit(): Promise<number | "hung">;
  /** SIGKILL if still running; wait for the end of stderr. */
  kill(): Promise<void>;
}

/** The child's environment: this one, without variables that steer svmrt or the double. */
function childEnv(extra: Record<string, string>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith("SVMRT_") && k !== AMDSMI_DOUBLE_CONFIG_ENV) env[k] = v;
  return { ...env, ...extra };
}

function agentSpawn(args: string[], env: Record<string, string> = {}): AgentChild {
  const proc = Bun.spawn({ cmd: [process.execPath, "runtime/cli.ts", "agent", ...args], cwd: ROOT, env: childEnv(env), stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  let text = "";
  const drained = (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of proc.stderr) text += decoder.decode(chunk, { stream: true });
  })();
  const exit = () => Promise.race([proc.exited, Bun.sleep(CHILD_EXIT_MAX_ms).then(() => "hung" as const)]);
  return {
    proc,
    stderr: () => text,
    async logged(re) {
      const m = await waitFor(
        `${re} on the agent's stderr`,
        () => {
          const found = re.exec(text);
          if (found) return found;
          if (proc.exitCode !== null) throw new Error(`the agent exited (${proc.exitCode}) before logging ${re}:\n${text}`);
          return undefined;
        },
        CHILD_LOG_MAX_ms,
      );
      return m;
    },
    exit,
    async kill() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGKILL");
      await proc.exited;
      await drained;
    },
  };
}

/** The base URL the child logged ("serving on http://127.0.0.1:PORT"). */
async function servingUrl(child: AgentChild): Promise<string> {
  return (await child.logged(/serving on (http:\/\/127\.0\.0\.1:\d+)\n/))[1]!;
}

/** A fetch that never hangs the test: the Response, the error it failed with, or "hung". */
async function fetchBounded(url: string, init: RequestInit & { unix?: string } = {}): Promise<Response | Error | "hung"> {
  return Promise.race([fetch(url, init).catch((e: Error) => e), Bun.sleep(REQUEST_MAX_ms).then(() => "hung" as const)]);
}

async function waitHealthy(url: string, init: RequestInit & { unix?: string } = {}): Promise<void> {
  await waitFor(`${url}/healthz to answer 200`, async () => {
    const r = await fetchBounded(`${url}/healthz`, init);
    return r instanceof Response && r.status === 200 ? true : undefined;
  });
}

/**
 * A scrape on a TCP connection already established (the handshake done), its request written
 * by `send()`. `outcome` says what became of it: "answered" (a whole 200 answer with the
 * exposition), "cut" (the connection closed with no answer or a partial one), "hung" after
 * REQUEST_MAX_ms, else the status line it got.
 */
async function scrapeConnected(port: number): Promise<{ send(): void; outcome: Promise<string> }> {
  let received = "";
  let closed: (v: string) => void = () => {};
  const ended = new Promise<string>((resolve) => (closed = resolve));
  const socket = await Bun.connect({
    hostname: "127.0.0.1",
    port,
    socket: {
      data: (_s, d) => {
        received += d.toString();
      },
      close: () => closed(received),
      error: () => closed(received),
    },
  });
  const classify = (r: string): string => {
    if (r === "hung") return r;
    const head = r.indexOf("\r\n\r\n");
    if (head < 0) return "cut";
    const status = r.slice(0, r.indexOf("\r\n"));
    if (status !== "HTTP/1.1 200 OK") return status;
    const length = Number(/\r\ncontent-length: (\d+)/i.exec(r.slice(0, head))?.[1]);
    const body = r.slice(head + 4);
    return Buffer.byteLength(body) === length && body.includes("\nsvmrt_info{") ? "answered" : "cut";
  };
  return {
    send: () => socket.write("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"),
    outcome: Promise.race([ended, Bun.sleep(REQUEST_MAX_ms).then(() => "hung")]).then((r) => {
      socket.end();
      return classify(r);
    }),
  };
}

/** The lines of a text, without the empty last one. */
const linesOf = (t: string) => t.split("\n").filter((l) => l !== "");

/** After the child exited on `signal`: its log says so, ends with "stopped", and holds no stack trace. */
async function expectStoppedBy(child: AgentChild, signal: "SIGTERM" | "SIGINT"): Promise<void> {
  await child.kill();
  const err = child.stderr();
  expect(err).toContain(`svmrt agent: ${signal}: stopping\n`);
  expect(err.trimEnd().endsWith("svmrt agent: stopped")).toBe(true);
  expect(err).not.toMatch(STACK_FRAME);
}

describe("svmrt agent: signals", () => {
  test("emulated default: EMULATED banner, /healthz 200, SIGTERM with a scrape in flight exits 0 and 'stopped'", async () => {
    const child = agentSpawn(["--listen", "127.0.0.1:0"]);
    try {
      const url = await servingUrl(child);
      expect(child.stderr()).toContain("svmrt agent: EMULATED GPUs (profile dev-2gpu): no AMD GPU driver found; readings are modelled, not measured\n");
      await waitHealthy(url);
      // A scrape on an open connection, and SIGTERM right behind it. Both outcomes are
      // correct and both are seen here (about 2 answered for 1 cut): answered before the
      // server closed (200, the whole exposition), or cut: stop(true) closes the connection
      // before a byte of the answer. Never a hang, never a partial answer seen.
      const scrape = await scrapeConnected(Number(new URL(url).port));
      scrape.send();
      child.proc.kill("SIGTERM");
      const code = await child.exit();
      const outcome = await scrape.outcome;
      expect(code).toBe(EXIT.ok);
      expect(["answered", "cut"]).toContain(outcome);
      await expectStoppedBy(child, "SIGTERM");
    } finally {
      await child.kill();
    }
  }, 90_000);

  test("SIGHUP reloads and the agent keeps serving; SIGINT then stops it with exit 0", async () => {
    const child = agentSpawn(["--listen", "127.0.0.1:0"]);
    try {
      const url = await servingUrl(child);
      await waitHealthy(url);
      child.proc.kill("SIGHUP");
      await child.logged(/svmrt agent: SIGHUP: reloading policies\n/);
      const metrics = await fetchBounded(`${url}/metrics`);
      expect(metrics instanceof Response && metrics.status).toBe(200);
      const policies = await fetchBounded(`${url}/v1/policies`);
      expect(policies).toBeInstanceOf(Response);
      const rows = (await (policies as Response).json()) as { name: string; role: string | null; lastError: string | null }[];
      expect(rows.filter((p) => p.role !== null).map((p) => [p.role, p.name, p.lastError])).toEqual([
        ["sampling", "adaptive", null],
        ["session", "persistent", null],
        ["advisor", "advisor", null],
      ]);
      expect(child.proc.exitCode).toBeNull();

      child.proc.kill("SIGINT");
      expect(await child.exit()).toBe(EXIT.ok);
      await expectStoppedBy(child, "SIGINT");
    } finally {
      await child.kill();
    }
  }, 90_000);

  test("SIGTERM while start waits on a slow amdsmi init: exit 0 once start returns, no stack trace", async () => {
    const fx = amdsmiDoubleFixture(26);
    try {
      const config = fx.configure({ delays: [{ fn: "amdsmi_init", gpu: -1, ms: INIT_DELAY_ms }] });
      const child = agentSpawn(["--listen", "127.0.0.1:0", "--backend", "amdsmi", "--amdsmi-lib", fx.path], { [AMDSMI_DOUBLE_CONFIG_ENV]: config });
      try {
        // The banner comes once the workers hold the library, right before the first init.
        await child.logged(/svmrt agent: amdsmi 26\.5\.0 from /);
        child.proc.kill("SIGTERM");
        const before = child.stderr();
        expect(before).not.toContain("serving on");
        expect(await child.exit()).toBe(EXIT.ok);
        await expectStoppedBy(child, "SIGTERM");
        expect(child.stderr()).not.toContain("internal error");
      } finally {
        await child.kill();
      }
    } finally {
      fx.close();
    }
  }, 90_000);

  test("SIGHUP while start waits on a slow amdsmi init: the reload runs once the agent serves", async () => {
    const fx = amdsmiDoubleFixture(26);
    try {
      const config = fx.configure({ delays: [{ fn: "amdsmi_init", gpu: -1, ms: INIT_DELAY_ms }] });
      const child = agentSpawn(["--listen", "127.0.0.1:0", "--backend", "amdsmi", "--amdsmi-lib", fx.path], { [AMDSMI_DOUBLE_CONFIG_ENV]: config });
      try {
        await child.logged(/svmrt agent: amdsmi 26\.5\.0 from /);
        child.proc.kill("SIGHUP");
        await child.logged(/svmrt agent: SIGHUP: reloading policies once started\n/);
        expect(child.stderr()).not.toContain("serving on");
        const url = await servingUrl(child);
        await child.logged(/serving on .*\n(.*\n)*svmrt agent: SIGHUP: reloading policies\n/);
        await waitHealthy(url);
        child.proc.kill("SIGTERM");
        expect(await child.exit()).toBe(EXIT.ok);
        await child.kill();
        expect(child.stderr()).not.toMatch(STACK_FRAME);
      } finally {
        await child.kill();
      }
    } finally {
      fx.close();
    }
  }, 90_000);
});

describe("svmrt agent: configuration", () => {
  test("a field of the wrong type: exit 3, one line file:line:col: field: expectation", async () => {
    const file = join(tmp, "wrong-type.yaml");
    writeFileSync(file, "kind: AgentConfig\nworkers: two\n");
    const child = agentSpawn(["--config", file]);
    try {
      expect(await child.exit()).toBe(EXIT.config);
      await child.kill();
      expect(linesOf(child.stderr())).toEqual([`svmrt agent: ${file}:2:10: workers: an integer from 1 to 16 (got two)`]);
    } finally {
      await child.kill();
    }
  }, 30_000);

  test("an unknown key: exit 3 naming it and where", async () => {
    const file = join(tmp, "unknown-key.yaml");
    writeFileSync(file, "kind: AgentConfig\nlisten: 127.0.0.1:0\nlisen: 127.0.0.1:9\n");
    const child = agentSpawn(["--config", file]);
    try {
      expect(await child.exit()).toBe(EXIT.config);
      await child.kill();
      const lines = linesOf(child.stderr());
      expect(lines).toHaveLength(1);
      expect(lines[0]).toStartWith(`svmrt agent: ${file}:3:1: lisen: one of the keys: kind, listen,`);
    } finally {
      await child.kill();
    }
  }, 30_000);

  test("a token_file that does not exist: exit 3 naming the key and the file, before anything starts", async () => {
    const file = join(tmp, "token-missing.yaml");
    const token = join(tmp, "no-such-token");
    writeFileSync(file, `kind: AgentConfig\nlisten: 127.0.0.1:0\nhttp: { token_file: ${token} }\n`);
    const child = agentSpawn(["--config", file]);
    try {
      expect(await child.exit()).toBe(EXIT.config);
      await child.kill();
      expect(linesOf(child.stderr())).toEqual([`svmrt agent: ${token}:1:1: http.token_file: a readable file holding the bearer token (no such file)`]);
    } finally {
      await child.kill();
    }
  }, 30_000);

  test("--listen nonsense: exit 2", async () => {
    const child = agentSpawn(["--listen", "nonsense"]);
    try {
      expect(await child.exit()).toBe(EXIT.usage);
      await child.kill();
      expect(child.stderr()).toStartWith("svmrt agent: --listen: expected host:port (e.g. 127.0.0.1:9106) or unix:/path, got 'nonsense'\n");
    } finally {
      await child.kill();
    }
  }, 30_000);

  test("a port already in use: exit 3, one line saying so, no stack trace", async () => {
    const holder = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response("taken\n") });
    const child = agentSpawn(["--listen", `127.0.0.1:${holder.port}`]);
    try {
      expect(await child.exit()).toBe(EXIT.config);
      await child.kill();
      const err = child.stderr();
      expect(err).not.toMatch(STACK_FRAME);
      expect(err).not.toContain("internal error");
      // Start-up logs its progress, tears down what it started, then the one error line.
      expect(linesOf(err).at(-1)).toBe(
        `svmrt agent: cannot listen on 127.0.0.1:${holder.port}: the address is in use (another agent or program listens there, or a stale socket file is left behind: remove it); pick another address with --listen or the config's 'listen'`,
      );
      expect(err).toContain("svmrt agent: stopped\n");
    } finally {
      await child.kill();
      holder.stop(true);
    }
  }, 90_000);

  test("a second agent on the port of a running one: exit 3, one line (the port is never shared)", async () => {
    const first = agentSpawn(["--listen", "127.0.0.1:0"]);
    try {
      const port = new URL(await servingUrl(first)).port;
      const second = agentSpawn(["--listen", `127.0.0.1:${port}`]);
      try {
        expect(await second.exit()).toBe(EXIT.config);
        await second.kill();
        expect(linesOf(second.stderr()).at(-1)).toBe(
          `svmrt agent: cannot listen on 127.0.0.1:${port}: the address is in use (another agent or program listens there, or a stale socket file is left behind: remove it); pick another address with --listen or the config's 'listen'`,
        );
      } finally {
        await second.kill();
      }
    } finally {
      await first.kill();
    }
  }, 90_000);

  test("a file left where the unix socket goes: exit 3, one line saying to remove it", async () => {
    const sock = join(tmp, "stale.sock");
    writeFileSync(sock, "");
    const child = agentSpawn(["--listen", `unix:${sock}`]);
    try {
      expect(await child.exit()).toBe(EXIT.config);
      await child.kill();
      expect(child.stderr()).not.toMatch(STACK_FRAME);
      expect(linesOf(child.stderr()).at(-1)).toStartWith(`svmrt agent: cannot listen on unix:${sock}: the address is in use (`);
      expect(linesOf(child.stderr()).at(-1)).toContain("a stale socket file is left behind: remove it");
    } finally {
      await child.kill();
      rmSync(sock, { force: true });
    }
  }, 90_000);

  test("SVMRT_SMI_MODE=bogus: exit 3 naming the variable", async () => {
    const child = agentSpawn(["--listen", "127.0.0.1:0"], { SVMRT_SMI_MODE: "bogus" });
    try {
      expect(await child.exit()).toBe(EXIT.config);
      await child.kill();
      const lines = linesOf(child.stderr());
      expect(lines).toHaveLength(1);
      expect(lines[0]).toContain("SVMRT_SMI_MODE: one of persistent, lazy, linger");
      expect(lines[0]).toContain("got 'bogus'");
    } finally {
      await child.kill();
    }
  }, 30_000);

  test("SVMRT_SMI_MODE=lazy on a unix socket: the forced mode logged and on /metrics", async () => {
    const sock = join(tmp, "agent.sock");
    const child = agentSpawn(["--listen", `unix:${sock}`], { SVMRT_SMI_MODE: "lazy" });
    try {
      await child.logged(new RegExp(`serving on unix:${sock.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}\\n`));
      expect(child.stderr()).toContain("svmrt agent: amdsmi session mode lazy: forced by SVMRT_SMI_MODE\n");
      await waitHealthy("http://localhost", { unix: sock });
      const r = await fetchBounded("http://localhost/metrics", { unix: sock });
      expect(r).toBeInstanceOf(Response);
      const text = await (r as Response).text();
      expect(seriesValue(text, "svmrt_smi_mode", { mode: "lazy" })).toBe(1);
      expect(seriesValue(text, "svmrt_smi_mode", { mode: "persistent" })).toBe(0);
      expect(seriesValue(text, "svmrt_info", { emulated: "true" })).toBe(1);
      child.proc.kill("SIGTERM");
      expect(await child.exit()).toBe(EXIT.ok);
      // The socket file goes with the server.
      expect(existsSync(sock)).toBe(false);
    } finally {
      await child.kill();
    }
  }, 90_000);
});

describe("svmrt agent: JavaScriptCore options", () => {
  const jit = Object.keys(AGENT_JSC_ENV);

  test("it restarts itself once with AGENT_JSC_ENV (same pid), and its emulated SVM child runs without them", async () => {
    const child = agentSpawn(["--listen", "127.0.0.1:0"]);
    try {
      await servingUrl(child);
      const env = environOf(child.proc.pid);
      expect(jit.map((k) => env[k])).toEqual(Object.values(AGENT_JSC_ENV));
      expect(env[AGENT_JIT_ENV]).toBe(jit.join(","));
      const emu = await waitFor("the emulated SVM child", () => emuSvmChildOf(child.proc.pid));
      const emuEnv = environOf(emu);
      expect([...jit, AGENT_JIT_ENV].filter((k) => k in emuEnv)).toEqual([]);
      expect(child.stderr()).not.toContain("could not restart");
      child.proc.kill("SIGTERM");
      expect(await child.exit()).toBe(EXIT.ok);
      await expectStoppedBy(child, "SIGTERM");
    } finally {
      await child.kill();
    }
  }, 90_000);

  test("a value the user set is kept: no restart, and the emulated SVM child gets the same", async () => {
    const child = agentSpawn(["--listen", "127.0.0.1:0"], { BUN_JSC_useDFGJIT: "1" });
    try {
      await servingUrl(child);
      const env = environOf(child.proc.pid);
      expect(env.BUN_JSC_useDFGJIT).toBe("1");
      expect(env[AGENT_JIT_ENV]).toBeUndefined();
      const emu = await waitFor("the emulated SVM child", () => emuSvmChildOf(child.proc.pid));
      expect(environOf(emu).BUN_JSC_useDFGJIT).toBe("1");
    } finally {
      await child.kill();
    }
  }, 90_000);
});

describe("svmrt agent: its restart, with execve stood in for", () => {
  test("the agent's command restarts once: Bun's flags, the CLI, the arguments, the options and the marker", () => {
    const calls: { path: string; argv: readonly string[]; env: Readonly<Record<string, string | undefined>> }[] = [];
    const why = agentJscRestart(["agent", "--listen", "127.0.0.1:0"], (path, argv, env) => {
      calls.push({ path, argv, env });
      return ERRNO.ENOENT;
    });
    // Returned (the stand-in fails): one line saying so, with the errno.
    expect(why).toBe("could not restart with its JavaScriptCore options (ENOENT); running with Bun's defaults");
    expect(calls.length).toBe(1);
    const c = calls[0]!;
    expect(c.path).toBe(process.execPath);
    expect(c.argv).toEqual([process.execPath, ...process.execArgv, join(ROOT, "runtime", "cli.ts"), "agent", "--listen", "127.0.0.1:0"]);
    expect(Object.keys(AGENT_JSC_ENV).map((k) => c.env[k])).toEqual(Object.values(AGENT_JSC_ENV));
    expect(c.env[AGENT_JIT_ENV]).toBe(Object.keys(AGENT_JSC_ENV).join(","));
    expect(c.env.PATH).toBe(process.env.PATH);
  });

  test("nothing to do for other commands, for help, or when execve cannot even be bound", () => {
    const never = (): number => {
      throw new Error("execve called");
    };
    expect(agentJscRestart(["sim", "--help"], never)).toBeUndefined();
    expect(agentJscRestart(["agent", "--help"], never)).toBeUndefined();
    expect(agentJscRestart(["agent", "-h"], never)).toBeUndefined();
    expect(agentJscRestart([], never)).toBeUndefined();
    const thrown = agentJscRestart(["agent"], () => {
      throw new Error("libc.so.6: cannot open shared object file");
    });
    expect(thrown).toBe("could not restart with its JavaScriptCore options (libc.so.6: cannot open shared object file); running with Bun's defaults");
  });
});
