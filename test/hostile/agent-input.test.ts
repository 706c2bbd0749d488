/**
 * Hostile and careless input to `svmrt smi` and `svmrt agent`: empty and contradictory flags,
 * listen addresses the kernel refuses, configuration values YAML allows but the agent cannot
 * use, policy folders that are not there, token files that are huge or hold control
 * characters, SVMRT_SMI_MODE with trailing junk, HTTP requests without a Host or with odd
 * Accept headers, bodies sent chunked past the bound, SIGHUP floods. Each refusal is one line
 * naming the flag, the variable or file:line:col, with its documented exit code; HTTP answers
 * with a status and the agent keeps serving.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Agent } from "../../runtime/agent/agent.ts";
import { smiModeFromEnv } from "../../runtime/agent/agent.ts";
import { agentConfigFilesCheck, agentConfigParse, agentConfigRead, listenParse } from "../../runtime/agent/config.ts";
import { httpServe, wantsOpenMetrics } from "../../runtime/agent/http.ts";
import { agentCommandCreate, listenErrorLine } from "../../runtime/cli/agent.ts";
import { EXIT } from "../../runtime/cli/exit.ts";
import { ConfigError } from "../../runtime/errors.ts";
import { runCli } from "../cli-helpers.ts";
import { agentStart, waitFor, waitReady } from "../agent/helpers.ts";

/** A JavaScript stack frame as Bun prints them. */
const STACK_FRAME = /^\s+at /m;
/** Longest a raw HTTP exchange may take before the test calls it hung, ms. */
const RAW_REQUEST_MAX_ms = 5_000;
/** A test that starts an agent (policies load first), ms. */
const AGENT_TEST_MAX_ms = 30_000;

const tmp = mkdtempSync(join(tmpdir(), "svmrt-agent-input-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** A file in the temp folder with `text`; its path. */
function file(name: string, text: string | Uint8Array): string {
  const p = join(tmp, name);
  writeFileSync(p, text);
  return p;
}

/** The message of the ConfigError `fn` throws; fails the test when it throws nothing or another error. */
function configRefusal(fn: () => unknown): string {
  let thrown: unknown;
  try {
    fn();
  } catch (e) {
    thrown = e;
  }
  expect(thrown).toBeInstanceOf(ConfigError);
  return (thrown as Error).message;
}

const parse = (yaml: string) => agentConfigParse("/etc/svmrt/agent.yaml", yaml);

describe("hostile: empty and contradictory flags are usage errors (exit 2)", () => {
  const cases: [string[], string][] = [
    [["smi", "list", "--amdsmi-lib="], "svmrt smi: --amdsmi-lib: expected a path, got ''"],
    [["smi", "list", "--backend", "rocm-smi", "--rocm-smi-lib="], "svmrt smi: --rocm-smi-lib: expected a path, got ''"],
    [["smi", "metrics", "--profile="], "svmrt smi: --profile: expected a profile name or a YAML path, got ''"],
    [["agent", "--config="], "svmrt agent: --config: expected a path, got ''"],
    [["agent", "--profile=", "--listen", "127.0.0.1:0"], "svmrt agent: --profile: expected a profile name or a YAML path, got ''"],
    [["agent", "--amdsmi-lib=", "--listen", "127.0.0.1:0"], "svmrt agent: --amdsmi-lib: expected a path, got ''"],
    [["agent", "--profile", "mi300x-8", "--backend", "amdsmi", "--listen", "127.0.0.1:0"], "svmrt agent: --profile applies to emulated GPUs, not to --backend amdsmi"],
    [["agent", "--listen", "256.1.1.1:0"], "svmrt agent: --listen: expected host:port (e.g. 127.0.0.1:9106) or unix:/path, got '256.1.1.1:0'"],
    [
      ["agent", "--listen", `unix:/tmp/${"s".repeat(120)}.sock`],
      `svmrt agent: --listen: expected host:port (e.g. 127.0.0.1:9106) or unix:/path, got 'unix:/tmp/${"s".repeat(120)}.sock' (a socket path has at most 107 bytes; this one has 130)`,
    ],
  ];
  for (const [argv, line] of cases) {
    test(`${argv.join(" ")}`, async () => {
      const r = await runCli(argv);
      expect(r.code).toBe(EXIT.usage);
      expect(r.err.split("\n")[0]).toBe(line);
      expect(r.err).not.toMatch(STACK_FRAME);
    });
  }
});

describe("hostile: a library variable pointing at another library", () => {
  /** A shared object every Debian host has, that is neither amdsmi nor rocm-smi. */
  const LIBZ = "/usr/lib/x86_64-linux-gnu/libz.so.1";
  async function withEnv(name: string, value: string, argv: string[]) {
    const saved = process.env[name];
    process.env[name] = value;
    try {
      return await runCli(argv);
    } finally {
      if (saved === undefined) delete process.env[name];
      else process.env[name] = saved;
    }
  }
  test("SVMRT_AMDSMI_LIB=libz: exit 5 naming the variable and that it is not amdsmi", async () => {
    const r = await withEnv("SVMRT_AMDSMI_LIB", LIBZ, ["smi", "list", "--backend", "amdsmi"]);
    expect(r.code).toBe(EXIT.noDevice);
    expect(r.err).toBe(
      `svmrt smi: dlopen returned FAIL_LOAD_MODULE (4): ${LIBZ} (from SVMRT_AMDSMI_LIB): not an amdsmi library (it has no amdsmi_init); install amdsmi (ROCm) or pass --amdsmi-lib PATH / SVMRT_AMDSMI_LIB\n`,
    );
  });
  test("SVMRT_ROCM_SMI_LIB=libz: exit 5 naming the variable and that it is not rocm-smi", async () => {
    const r = await withEnv("SVMRT_ROCM_SMI_LIB", LIBZ, ["smi", "list", "--backend", "rocm-smi"]);
    expect(r.code).toBe(EXIT.noDevice);
    expect(r.err).toBe(
      `svmrt smi: dlopen returned FAIL_LOAD_MODULE (4): tried ${LIBZ} from SVMRT_ROCM_SMI_LIB (not a rocm-smi library: it has no rsmi_init); install librocm-smi64-1 or pass --rocm-smi-lib PATH / SVMRT_ROCM_SMI_LIB\n`,
    );
  });
});

describe("hostile: listen failures name the real cause", () => {
  const tcp = { hostname: "nonexistent.invalid", port: 0 };
  test("a host name that does not resolve: not 'the socket's directory' whatever errno Bun leaves", () => {
    // Bun reports a failed resolution with the errno a previous call left (ENOENT, EINVAL).
    for (const code of ["ENOENT", "EINVAL"]) {
      expect(listenErrorLine({ syscall: "listen", code }, tcp)).toBe(
        "cannot listen on nonexistent.invalid:0: the host name does not resolve to an address of this host; pick another address with --listen or the config's 'listen'",
      );
    }
  });
  test("a unix socket under a file, or a path too long: said in words", () => {
    expect(listenErrorLine({ syscall: "listen", code: "ENOTDIR" }, { unix: "/etc/passwd/a.sock" })).toBe(
      "cannot listen on unix:/etc/passwd/a.sock: a component of the socket's directory is not a folder; pick another address with --listen or the config's 'listen'",
    );
    expect(listenErrorLine({ syscall: "listen", code: "ENOENT" }, { unix: "/nonexistent/a.sock" })).toBe(
      "cannot listen on unix:/nonexistent/a.sock: the socket's directory does not exist; pick another address with --listen or the config's 'listen'",
    );
  });
  test("an IPv4 literal with an octet above 255 is not an address", () => {
    expect(listenParse("256.256.256.256:0")).toBeUndefined();
    expect(listenParse("10.0.0.255:9106")).toEqual({ hostname: "10.0.0.255", port: 9106 });
  });
});

describe("hostile: agent configuration values", () => {
  test("empty strings where a path or a name is expected", () => {
    expect(configRefusal(() => parse('amdsmi_lib: ""\n'))).toBe("/etc/svmrt/agent.yaml:1:13: amdsmi_lib: a non-empty string");
    expect(configRefusal(() => parse('profile: ""\n'))).toBe("/etc/svmrt/agent.yaml:1:10: profile: a non-empty string");
    expect(configRefusal(() => parse('policies: [""]\n'))).toBe("/etc/svmrt/agent.yaml:1:12: policies[0]: a non-empty string");
    expect(configRefusal(() => parse('plugin_roots: [/opt/p, ""]\n'))).toBe("/etc/svmrt/agent.yaml:1:24: plugin_roots[1]: a non-empty string");
    expect(configRefusal(() => parse('sampling: { policy: "" }\n'))).toBe("/etc/svmrt/agent.yaml:1:21: sampling.policy: a non-empty string");
    expect(configRefusal(() => parse('http: { token_file: "" }\n'))).toBe("/etc/svmrt/agent.yaml:1:21: http.token_file: a non-empty string");
  });

  test("an alias is refused by name, not as a value out of bounds", () => {
    expect(configRefusal(() => parse("workers: &w 4\nhttp: { connections_max: *w }\n"))).toBe(
      "/etc/svmrt/agent.yaml:2:26: http.connections_max: a value written out (the agent configuration does not follow aliases such as *w)",
    );
  });

  test("a quoted number says it is a string", () => {
    expect(configRefusal(() => parse('workers: "2"\n'))).toBe('/etc/svmrt/agent.yaml:1:10: workers: an integer from 1 to 16 (got the string "2": write numbers without quotes)');
    expect(configRefusal(() => parse("http: { connections_max: '8' }\n"))).toBe(
      "/etc/svmrt/agent.yaml:1:26: http.connections_max: an integer from 1 to 65536 (got the string \"8\": write numbers without quotes)",
    );
  });

  test("a label name that is a list, and a label value past its bound", () => {
    expect(configRefusal(() => parse("metrics: { labels: { ? [a, b] : c } }\n"))).toBe("/etc/svmrt/agent.yaml:1:24: metrics.labels: label names that are plain strings");
    expect(configRefusal(() => parse(`metrics: { labels: { a: ${"v".repeat(1025)} } }\n`))).toBe("/etc/svmrt/agent.yaml:1:25: metrics.labels.a: a string of at most 1024 characters (got 1025)");
  });

  test("a unix socket path is relative to the file, and at most 107 bytes", () => {
    expect(parse("listen: unix:run/agent.sock\n").listen).toEqual({ unix: "/etc/svmrt/run/agent.sock" });
    expect(configRefusal(() => parse(`listen: unix:/${"s".repeat(107)}\n`))).toBe(
      "/etc/svmrt/agent.yaml:1:9: listen: host:port (e.g. 127.0.0.1:9106) or unix:/path (a socket path has at most 107 bytes; this one has 108)",
    );
  });

  test("policy folders and plugin roots that do not exist stop the start, at their line", () => {
    const missing = join(tmp, "no-such-folder");
    const f1 = file("missing-policies.yaml", `listen: 127.0.0.1:0\npolicies:\n  - ${missing}\n`);
    expect(configRefusal(() => agentConfigFilesCheck(agentConfigRead(f1)))).toBe(`${f1}:3:5: policies[0]: an existing policy folder or file (no such file: ${missing})`);
    const f2 = file("missing-roots.yaml", `plugin_roots: [${tmp}, ${missing}]\n`);
    expect(configRefusal(() => agentConfigFilesCheck(agentConfigRead(f2)))).toBe(`${f2}:1:${18 + tmp.length}: plugin_roots[1]: an existing folder (no such file: ${missing})`);
    const f3 = file("root-is-file.yaml", `plugin_roots: [${f2}]\n`);
    expect(configRefusal(() => agentConfigFilesCheck(agentConfigRead(f3)))).toBe(`${f3}:1:16: plugin_roots[0]: an existing folder (not a folder: ${f2})`);
    // Found folders pass.
    expect(() => agentConfigFilesCheck(agentConfigRead(file("ok.yaml", `plugin_roots: [${tmp}]\n`)))).not.toThrow();
  });
});

describe("hostile: token files", () => {
  /** The message the start fails with; fails the test when the agent starts. */
  async function startRefusal(tokenFile: string): Promise<string> {
    const r = await agentStart({ http: { connectionsMax: 8, requestBytesMax: 65536, tokenFile } }).then(
      async ({ agent }) => {
        await agent.stop();
        return "started";
      },
      (e: Error) => e,
    );
    expect(r).toBeInstanceOf(ConfigError);
    return (r as Error).message;
  }

  test(
    "a token file above 4096 bytes is refused before it is read whole",
    async () => {
      const f = file("big.token", "a".repeat(5000));
      expect(await startRefusal(f)).toBe(`${f}:1:1: http.token_file: a file of at most 4096 bytes (it has 5000)`);
    },
    AGENT_TEST_MAX_ms,
  );

  test(
    "a token with a line break or binary bytes inside (no client can send it) is refused",
    async () => {
      const expected = (f: string) => `${f}:1:1: http.token_file: a token of visible ASCII characters, without spaces or line breaks inside`;
      const nl = file("nl.token", "aaaaaaaaaaaaaaaa\nbbbbbbbbbbbbbbbb\n");
      expect(await startRefusal(nl)).toBe(expected(nl));
      const bin = file("bin.token", new Uint8Array([0x41, 0x42, 0x01, 0xff, 0xfe, ...new Array(20).fill(0x43)]));
      expect(await startRefusal(bin)).toBe(expected(bin));
    },
    AGENT_TEST_MAX_ms,
  );
});

describe("hostile: SVMRT_SMI_MODE", () => {
  const at = "$SVMRT_SMI_MODE:1:1: SVMRT_SMI_MODE";
  test("trailing junk, spaces, hex and empty graces are refused with the value", () => {
    const grace = "linger:GRACE_MS, GRACE_MS an integer from 1 to 3600000";
    expect(configRefusal(() => smiModeFromEnv("linger:100:200"))).toBe(`${at}: ${grace} (got 'linger:100:200')`);
    expect(configRefusal(() => smiModeFromEnv("linger: 100"))).toBe(`${at}: ${grace} (got 'linger: 100')`);
    expect(configRefusal(() => smiModeFromEnv("linger:0x10"))).toBe(`${at}: ${grace} (got 'linger:0x10')`);
    expect(configRefusal(() => smiModeFromEnv("linger:"))).toBe(`${at}: ${grace} (got 'linger:')`);
    expect(configRefusal(() => smiModeFromEnv("linger:abc"))).toBe(`${at}: ${grace} (got 'linger:abc')`);
    expect(configRefusal(() => smiModeFromEnv("linger:0"))).toBe(`${at}: ${grace} (got 'linger:0')`);
    expect(configRefusal(() => smiModeFromEnv("linger:3600001"))).toBe(`${at}: ${grace} (got 'linger:3600001')`);
    expect(configRefusal(() => smiModeFromEnv("lazy:100"))).toBe(`${at}: a grace only after linger (got 'lazy:100')`);
    expect(smiModeFromEnv("linger:100")).toEqual({ mode: "linger", idleGraceMs: 100 });
    expect(smiModeFromEnv("linger")).toEqual({ mode: "linger", idleGraceMs: 30_000 });
    expect(smiModeFromEnv("lazy")).toEqual({ mode: "lazy" });
  });
});

describe("hostile: Accept negotiation", () => {
  test("q=0 and unknown versions are not a request for OpenMetrics; Prometheus' header is", () => {
    expect(wantsOpenMetrics("application/openmetrics-text;q=0, text/plain;q=1")).toBe(false);
    expect(wantsOpenMetrics("application/openmetrics-text; version=99.0.0")).toBe(false);
    expect(wantsOpenMetrics("text/plain;version=0.0.4;q=0.5,application/openmetrics-text;version=1.0.0;q=0.4")).toBe(false);
    expect(wantsOpenMetrics("application/not-openmetrics-text")).toBe(false);
    expect(wantsOpenMetrics("*/*")).toBe(false);
    expect(wantsOpenMetrics(null)).toBe(false);
    expect(wantsOpenMetrics("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1")).toBe(true);
    expect(wantsOpenMetrics("APPLICATION/OpenMetrics-Text")).toBe(true);
    expect(wantsOpenMetrics("application/openmetrics-text; version=0.0.1")).toBe(true);
  });
});

/** One raw HTTP exchange on a fresh connection: everything received until the server closes it. */
async function rawHttp(port: number, request: string): Promise<string> {
  let got = "";
  let closed: (s: string) => void = () => {};
  const ended = new Promise<string>((resolve) => (closed = resolve));
  const socket = await Bun.connect({
    hostname: "127.0.0.1",
    port,
    socket: {
      data: (_s, d) => {
        got += d.toString("latin1");
      },
      close: () => closed(got),
      error: () => closed(got),
    },
  });
  socket.write(request);
  const r = await Promise.race([ended, Bun.sleep(RAW_REQUEST_MAX_ms).then(() => `hung: ${got}`)]);
  socket.end();
  return r;
}
const statusLine = (r: string) => r.slice(0, r.indexOf("\r\n"));
const bodyOf = (r: string) => r.slice(r.indexOf("\r\n\r\n") + 4);

describe("hostile: HTTP requests", () => {
  const TOKEN = "abcdefghijklmnopqrstuvwxyz012345";
  let agent: Agent;
  let port: number;
  beforeAll(async () => {
    const tokenFile = file("http.token", `${TOKEN}\n`);
    agent = (await agentStart({ http: { connectionsMax: 4, requestBytesMax: 1024, tokenFile } })).agent;
    port = Number(new URL(agent.url).port);
    await waitReady(agent);
  }, AGENT_TEST_MAX_ms);
  afterAll(() => agent?.stop());

  test("HTTP/1.0 without a Host: answered, not Bun's HTML error page with the source", async () => {
    const r = await rawHttp(port, "GET /healthz HTTP/1.0\r\n\r\n");
    expect(statusLine(r)).toBe("HTTP/1.1 200 OK");
    expect(bodyOf(r)).toBe("ok\n");
  });

  test("CONNECT host:port: a plain 405, not a 500", async () => {
    const r = await rawHttp(port, "CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    expect(statusLine(r)).toBe("HTTP/1.1 405 Method Not Allowed");
    expect(bodyOf(r)).toBe("GET only\n");
  });

  test("a scrape that refuses OpenMetrics (q=0) gets the text format", async () => {
    const r = await fetch(`${agent.url}/metrics`, { headers: { accept: "application/openmetrics-text;q=0, text/plain;q=1" } });
    await r.text();
    expect(r.headers.get("content-type")).toBe("text/plain; version=0.0.4; charset=utf-8");
  });

  test("a chunked body past request_bytes_max to /v1/reload gets 413, like a declared one", async () => {
    const chunk = "x".repeat(2048);
    const r = await rawHttp(
      port,
      `POST /v1/reload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n${(2048).toString(16)}\r\n${chunk}\r\n0\r\n\r\n`,
    );
    expect(statusLine(r)).toBe("HTTP/1.1 413 Payload Too Large");
  });

  test("the auth scheme is case-insensitive (RFC 7235): 'bearer' works; a wrong token is 401", async () => {
    const ok = await fetch(`${agent.url}/v1/reload`, { method: "POST", headers: { authorization: `bearer ${TOKEN}` } });
    await ok.text();
    expect(ok.status).toBe(200);
    const wrong = await fetch(`${agent.url}/v1/reload`, { method: "POST", headers: { authorization: `Bearer ${TOKEN.slice(1)}x` } });
    await wrong.text();
    expect(wrong.status).toBe(401);
  });

  test("after every hostile request above and a 100 KB header (431), the agent still serves", async () => {
    const big = await rawHttp(port, `GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: ${"a".repeat(100_000)}\r\nConnection: close\r\n\r\n`);
    expect(statusLine(big)).toBe("HTTP/1.1 431 Request Header Fields Too Large");
    expect((await fetch(`${agent.url}/healthz`)).status).toBe(200);
  });
});

describe("hostile: requests beyond connections_max", () => {
  test("the third request in flight with connections_max 2 gets 503 and Retry-After; the first two finish", async () => {
    let release: () => void = () => {};
    const held = new Promise<void>((resolve) => (release = resolve));
    let entered = 0;
    const server = httpServe({
      listen: { hostname: "127.0.0.1", port: 0 },
      connectionsMax: 2,
      requestBytesMax: 1024,
      token: "abcdefghijklmnopqrstuvwxyz012345",
      handlers: {
        metrics: async () => ({ body: new Uint8Array(), gzip: new Uint8Array(), contentType: "text/plain" }),
        ready: () => true,
        gpus: () => [],
        policies: () => [],
        advice: () => ({}),
        reload: async () => {
          entered++;
          await held;
          return [];
        },
        served: () => {},
      },
    });
    try {
      const reload = () => fetch(`http://127.0.0.1:${server.port}/v1/reload`, { method: "POST", headers: { authorization: "Bearer abcdefghijklmnopqrstuvwxyz012345" } });
      const first = [reload(), reload()];
      await waitFor("two reloads in flight", () => (entered === 2 ? true : undefined));
      const third = await fetch(`http://127.0.0.1:${server.port}/healthz`);
      expect(third.status).toBe(503);
      expect(third.headers.get("retry-after")).toBe("1");
      release();
      expect((await Promise.all(first)).map((r) => r.status)).toEqual([200, 200]);
    } finally {
      release();
      server.stop(true);
    }
  });
});

describe("hostile: reload floods", () => {
  test(
    "50 reloads asked at once run as at most one running and one queued",
    async () => {
      const missing = join(tmp, "no-policies-here");
      const { agent, lines } = await agentStart({ policyDirs: [missing], sampling: { policy: undefined, evaluateMs: 5000 } });
      try {
        const rejected = () => lines.filter((l) => l.startsWith(`policy file ${missing} rejected`)).length;
        const before = rejected();
        await Promise.all(Array.from({ length: 50 }, () => agent.reloadPolicies()));
        // One rescan may also run on its own timer meanwhile.
        expect(rejected() - before).toBeLessThanOrEqual(3);
      } finally {
        await agent.stop();
      }
    },
    AGENT_TEST_MAX_ms,
  );

  test(
    "SIGHUP while starting is logged once; SIGHUP once a stop is asked reloads nothing",
    async () => {
      const log: string[] = [];
      const io = { out: () => {}, err: (t: string) => log.push(t), interactive: false };
      const stop = new AbortController();
      let started: (a: Agent) => void = () => {};
      const serving = new Promise<Agent>((resolve) => (started = resolve));
      const cmd = agentCommandCreate({ signal: stop.signal, onStarted: (a) => started(a) });
      const run = cmd.run(["--listen", "127.0.0.1:0", "--backend", "emulated"], io);
      // The handlers are installed before the first await of run(): these arrive during start.
      for (let i = 0; i < 5; i++) process.emit("SIGHUP", "SIGHUP");
      await serving;
      stop.abort();
      process.emit("SIGHUP", "SIGHUP");
      expect(await run).toBe(EXIT.ok);
      const text = log.join("");
      expect(text.split("svmrt agent: SIGHUP: reloading policies once started\n").length - 1).toBe(1);
      expect(text.split("svmrt agent: SIGHUP: reloading policies\n").length - 1).toBe(1);
      expect(text).toContain("svmrt agent: SIGHUP ignored: stopping\n");
    },
    AGENT_TEST_MAX_ms,
  );
});
