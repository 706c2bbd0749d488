/**
 * `svmrt agent`: run the daemon until SIGTERM or SIGINT (exit 0 after an orderly stop);
 * SIGHUP reloads the policy folders.
 */
import { readFileSync } from "node:fs";
import { Agent } from "../agent/agent.ts";
import { type AgentConfig, agentConfigDefault, agentConfigFilesCheck, agentConfigRead, LISTEN_EXPECTED, listenDetail, listenParse } from "../agent/config.ts";
import { cliArgv } from "../assets.ts";
import { AGENT_JIT_ENV } from "../agent/emu-svm-source.ts";
import { UsageError } from "../errors.ts";
import { errnoName } from "../ffi/errno.ts";
import { execve } from "../ffi/exec.ts";
import { backendChoiceParse, SMI_BACKEND_CHOICES } from "../smi/backend.ts";
import { PROFILE_DEFAULT, shippedProfiles } from "../sim/profile.ts";
import { type CliIO, type Command, flagNonEmpty, flagString, parseFlags } from "./command.ts";
import { EXIT } from "./exit.ts";

/** Longest an orderly stop may take before the process exits anyway, ms. */
export const AGENT_STOP_MAX_ms = 10_000;

const HELP = `Usage: svmrt agent [--config FILE] [--listen ADDR] [--backend B] [--profile P]

Sample the GPUs on the schedule of a SamplingPolicy, hold the management library as a
SessionPolicy says, read SVM events from /dev/kfd, and serve:
  /metrics        Prometheus text (OpenMetrics when asked): DME's GPU families, svm_* SVM
                  families (faults, migrations, evictions, unmaps), the agent's own svmrt_*
  /healthz        200 once the first sample is in
  /v1/gpus        GPUs with their latest samples and ages (JSON)
  /v1/policies    loaded policies: name, kind, revision, last error
  /v1/advice      hipMemAdvise / hipMemPrefetchAsync hints from the SVM event stream
Without an AMD GPU it runs on emulated GPUs (--profile) with an emulated SVM workload, and
says so in its banner, in svmrt_info{emulated="true"} and in every /v1 answer.

Options:
  --config FILE    agent configuration (YAML, kind: AgentConfig; see docs/agent.md)
  --listen ADDR    host:port or unix:/path (default 127.0.0.1:9106)
  --backend B      ${SMI_BACKEND_CHOICES.join(" | ")} (default auto)
  --profile P      emulated GPUs: ${shippedProfiles().join(", ")} or a YAML path (default ${PROFILE_DEFAULT})
  --amdsmi-lib P   libamd_smi.so to load (also SVMRT_AMDSMI_LIB)
  --rocm-smi-lib P librocm_smi64.so to load (also SVMRT_ROCM_SMI_LIB)

Environment:
  SVMRT_SMI_MODE     persistent | lazy | linger[:grace_ms]: force the session mode
  BUN_JSC_useDFGJIT  unset: the agent restarts itself once with it set to 0 (no DFG tier:
                     6-13 MB less resident memory); set it (1: Bun's default) to keep yours.
                     Bun itself refuses a value that is not a boolean, before svmrt runs

Signals: SIGTERM/SIGINT stop in order (HTTP, sampler and event readers, sessions, the last
library shutdown) and exit 0; SIGHUP reloads the policy folders. A listen address that
cannot be used (in use, not on this host) exits 3 with one line.

Examples:
  svmrt agent                                   # emulated default on a host without GPUs
  curl -s 127.0.0.1:9106/metrics | grep svm_
  svmrt agent --config /etc/svmrt/agent.yaml --listen 0.0.0.0:9106
`;

/** What each error of the listening socket means to the operator, by errno name. */
const LISTEN_ERRORS: Readonly<Record<string, string>> = {
  EADDRINUSE: "the address is in use (another agent or program listens there, or a stale socket file is left behind: remove it)",
  EADDRNOTAVAIL: "no interface of this host has that address",
  EACCES: "permission denied (a port below 1024 needs CAP_NET_BIND_SERVICE; a socket needs a writable directory)",
};
/** The same for a unix socket path. */
const LISTEN_UNIX_ERRORS: Readonly<Record<string, string>> = {
  ...LISTEN_ERRORS,
  ENOENT: "the socket's directory does not exist",
  ENOTDIR: "a component of the socket's directory is not a folder",
  ENAMETOOLONG: "the socket path is too long",
};
/**
 * A host:port that fails otherwise: Bun reports a host name that does not resolve with
 * whatever errno an earlier call left (ENOENT, EINVAL seen), so the code names nothing here.
 */
const LISTEN_TCP_OTHER = "the host name does not resolve to an address of this host";

/**
 * One line for an error of Bun.serve's listen (an Error with `syscall: "listen"` and an errno
 * `code`), saying where and what to do; undefined for any other error.
 */
export function listenErrorLine(e: unknown, listen: AgentConfig["listen"]): string | undefined {
  const err = e as { syscall?: unknown; code?: unknown } | null;
  if (err === null || typeof err !== "object" || err.syscall !== "listen" || typeof err.code !== "string") return undefined;
  const unix = "unix" in listen;
  const where = unix ? `unix:${listen.unix}` : `${listen.hostname.includes(":") ? `[${listen.hostname}]` : listen.hostname}:${listen.port}`;
  const why = unix ? (LISTEN_UNIX_ERRORS[err.code] ?? err.code) : (LISTEN_ERRORS[err.code] ?? LISTEN_TCP_OTHER);
  return `cannot listen on ${where}: ${why}; pick another address with --listen or the config's 'listen'`;
}

/**
 * JavaScriptCore options `svmrt agent` runs with (Bun reads them from the environment at
 * start): no DFG tier. The agent's hot code is small (event parsing, counters, rendering) and
 * the baseline JIT serves it; the DFG compiler's memory stayed resident instead. Measured side
 * by side (bench/agent-memory.ts: 16 emulated GPUs, median RSS over the second half of
 * 150 s): 94.8, 95.9 and 99.5 MB without DFG against 107.7, 107.5 and 105.6 MB with it in
 * three runs (the spread between readings is ±10 MB), for 4-8% more agent CPU. When the
 * environment sets any of these variables, the user's values are kept and nothing is changed.
 */
export const AGENT_JSC_ENV: Readonly<Record<string, string>> = { BUN_JSC_useDFGJIT: "0" };

/**
 * The environment this process was started with (/proc/self/environ): without the values
 * Bun loads from a `.env` file into process.env, which the restarted process loads itself.
 * process.env when that file cannot be read.
 */
function startEnvironment(): Record<string, string | undefined> {
  try {
    const env: Record<string, string> = {};
    for (const kv of readFileSync("/proc/self/environ", "utf8").split("\0")) {
      const eq = kv.indexOf("=");
      if (eq > 0) env[kv.slice(0, eq)] = kv.slice(eq + 1);
    }
    return env;
  } catch {
    return { ...process.env };
  }
}

/**
 * Start this process again as itself with AGENT_JSC_ENV, when `argv` (the CLI's arguments)
 * runs the agent and the options are not in effect yet: the same pid, stdio and Bun flags
 * (`bun --smol ...`), so a service manager or a shell sees no difference. Call it before
 * anything is opened or written. It marks the environment with AGENT_JIT_ENV (listing the
 * variables it set), which stops a second restart and lets the agent's child processes drop
 * them again.
 * @param exec execve, or a stand-in for tests.
 * @returns when it did not restart: why (execve's errno, or why it could not be called), or
 *   undefined when there was nothing to do.
 */
export function agentJscRestart(argv: readonly string[], exec: typeof execve = execve): string | undefined {
  if (argv[0] !== "agent" || argv.includes("--help") || argv.includes("-h")) return undefined;
  if (process.env[AGENT_JIT_ENV] !== undefined) return undefined;
  if (Object.keys(AGENT_JSC_ENV).some((k) => process.env[k] !== undefined)) return undefined;
  const env = { ...startEnvironment(), ...AGENT_JSC_ENV, [AGENT_JIT_ENV]: Object.keys(AGENT_JSC_ENV).join(",") };
  const [program, ...script] = cliArgv();
  const why = "could not restart with its JavaScriptCore options";
  try {
    const errno = exec(process.execPath, [program!, ...process.execArgv, ...script, ...argv], env);
    return `${why} (${errnoName(errno)}); running with Bun's defaults`;
  } catch (e) {
    // No libc.so.6 to bind (a musl system), say.
    return `${why} (${(e as Error).message}); running with Bun's defaults`;
  }
}

export interface AgentCommandDeps {
  /** Stops the agent (tests); SIGTERM and SIGINT do too. */
  signal?: AbortSignal;
  /** Called once the agent serves (tests). */
  onStarted?: (a: Agent) => void;
}

export function agentCommandCreate(deps: AgentCommandDeps = {}): Command {
  return {
    name: "agent",
    summary: "the daemon: policy-driven GPU sampling, Prometheus /metrics with SVM families, advice",
    help: HELP,
    async run(argv: string[], io: CliIO): Promise<number> {
      const p = parseFlags(argv, {
        config: { type: "string" },
        listen: { type: "string" },
        backend: { type: "string" },
        profile: { type: "string" },
        "amdsmi-lib": { type: "string" },
        "rocm-smi-lib": { type: "string" },
      });
      if (p.help) {
        io.out(HELP);
        return EXIT.ok;
      }
      if (p.positionals.length) throw new UsageError(`unexpected argument '${p.positionals[0]}'`);
      const file = flagNonEmpty(p, "config", "a path");
      const profile = flagNonEmpty(p, "profile", "a profile name or a YAML path");
      const amdsmiLib = flagNonEmpty(p, "amdsmi-lib", "a path");
      const rocmSmiLib = flagNonEmpty(p, "rocm-smi-lib", "a path");
      const config: AgentConfig = file === undefined ? agentConfigDefault() : agentConfigRead(file);
      const listen = flagString(p, "listen");
      if (listen !== undefined) {
        const l = listenParse(listen);
        const detail = listenDetail(listen);
        if (l === undefined) throw new UsageError(`--listen: expected ${LISTEN_EXPECTED}, got '${listen}'${detail === undefined ? "" : ` (${detail})`}`);
        config.listen = l;
      }
      if (p.values.backend !== undefined) config.backend = backendChoiceParse(flagString(p, "backend"));
      if (profile !== undefined && config.backend !== "auto" && config.backend !== "emulated") {
        throw new UsageError(`--profile applies to emulated GPUs, not to --backend ${config.backend}`);
      }
      config.profile = profile ?? config.profile;
      config.amdsmiLib = amdsmiLib ?? config.amdsmiLib;
      config.rocmSmiLib = rocmSmiLib ?? config.rocmSmiLib;
      agentConfigFilesCheck(config);

      const log = (line: string) => io.err(`svmrt agent: ${line}\n`);
      let stopping = false;
      let stopRequested: (why: string) => void = () => {};
      const stopped = new Promise<string>((resolve) => {
        stopRequested = (why) => {
          stopping = true;
          resolve(why);
        };
      });
      const onTerm = () => stopRequested("SIGTERM");
      const onInt = () => stopRequested("SIGINT");
      process.on("SIGTERM", onTerm);
      process.on("SIGINT", onInt);
      deps.signal?.addEventListener("abort", () => stopRequested("stop requested"), { once: true });
      let agent: Agent | undefined;
      // A SIGHUP while the agent starts (its folders already read) reloads once it runs. A
      // flood of them is one reload running and at most one queued, each logged once; once a
      // stop is asked the folders are being closed: nothing to reload.
      let reloadPending = false;
      let reloadQueued = false;
      let reloadRunning = false;
      const reload = (a: Agent) => {
        if (reloadRunning) {
          reloadQueued = true;
          return;
        }
        reloadRunning = true;
        log("SIGHUP: reloading policies");
        void a
          .reloadPolicies()
          .catch((e: unknown) => log(`reload failed: ${(e as Error).message}`))
          .finally(() => {
            reloadRunning = false;
            if (reloadQueued && !stopping) {
              reloadQueued = false;
              reload(a);
            }
          });
      };
      const onHup = () => {
        if (stopping) {
          log("SIGHUP ignored: stopping");
          return;
        }
        if (agent === undefined) {
          if (!reloadPending) log("SIGHUP: reloading policies once started");
          reloadPending = true;
          return;
        }
        reload(agent);
      };
      process.on("SIGHUP", onHup);
      try {
        // A signal during start (e.g. a slow init) stops as soon as start returns.
        try {
          agent = await Agent.start(config, { log });
        } catch (e) {
          // The address is configuration the operator fixes: exit 3 with one line, not 70.
          const line = listenErrorLine(e, config.listen);
          if (line === undefined) throw e;
          io.err(`svmrt agent: ${line}\n`);
          return EXIT.config;
        }
        deps.onStarted?.(agent);
        if (reloadPending && !stopping) reload(agent);
        const why = await stopped;
        log(`${why}: stopping`);
        const timer = setTimeout(() => {
          log(`stop took longer than ${AGENT_STOP_MAX_ms} ms; exiting`);
          process.exit(EXIT.ok);
        }, AGENT_STOP_MAX_ms);
        await agent.stop();
        clearTimeout(timer);
        return EXIT.ok;
      } finally {
        process.off("SIGTERM", onTerm);
        process.off("SIGINT", onInt);
        process.off("SIGHUP", onHup);
      }
    },
  };
}

export const agentCommand: Command = agentCommandCreate();
