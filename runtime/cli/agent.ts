/**
 * `svmrt agent`: run the daemon until SIGTERM or SIGINT (exit 0 after an orderly stop);
 * SIGHUP reloads the policy folders.
 */
import { Agent } from "../agent/agent.ts";
import { type AgentConfig, agentConfigDefault, agentConfigFilesCheck, agentConfigRead, listenParse } from "../agent/config.ts";
import { UsageError } from "../errors.ts";
import { backendChoiceParse, SMI_BACKEND_CHOICES } from "../smi/backend.ts";
import { PROFILE_DEFAULT, shippedProfiles } from "../sim/profile.ts";
import { type CliIO, type Command, flagString, parseFlags } from "./command.ts";
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

Environment:
  SVMRT_SMI_MODE   persistent | lazy | linger[:grace_ms]: force the session mode

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
  ENOENT: "the socket's directory does not exist",
  EINVAL: "the host name does not resolve to an address of this host",
};

/**
 * One line for an error of Bun.serve's listen (an Error with `syscall: "listen"` and an errno
 * `code`), saying where and what to do; undefined for any other error.
 */
export function listenErrorLine(e: unknown, listen: AgentConfig["listen"]): string | undefined {
  const err = e as { syscall?: unknown; code?: unknown } | null;
  if (err === null || typeof err !== "object" || err.syscall !== "listen" || typeof err.code !== "string") return undefined;
  const where = "unix" in listen ? `unix:${listen.unix}` : `${listen.hostname.includes(":") ? `[${listen.hostname}]` : listen.hostname}:${listen.port}`;
  return `cannot listen on ${where}: ${LISTEN_ERRORS[err.code] ?? err.code}; pick another address with --listen or the config's 'listen'`;
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
      const file = flagString(p, "config");
      const config: AgentConfig = file === undefined ? agentConfigDefault() : agentConfigRead(file);
      const listen = flagString(p, "listen");
      if (listen !== undefined) {
        const l = listenParse(listen);
        if (l === undefined) throw new UsageError(`--listen: expected host:port (e.g. 127.0.0.1:9106) or unix:/path, got '${listen}'`);
        config.listen = l;
      }
      if (p.values.backend !== undefined) config.backend = backendChoiceParse(flagString(p, "backend"));
      config.profile = flagString(p, "profile") ?? config.profile;
      config.amdsmiLib = flagString(p, "amdsmi-lib") ?? config.amdsmiLib;
      config.rocmSmiLib = flagString(p, "rocm-smi-lib") ?? config.rocmSmiLib;
      agentConfigFilesCheck(config);

      const log = (line: string) => io.err(`svmrt agent: ${line}\n`);
      let stopRequested: (why: string) => void = () => {};
      const stopped = new Promise<string>((resolve) => (stopRequested = resolve));
      const onTerm = () => stopRequested("SIGTERM");
      const onInt = () => stopRequested("SIGINT");
      process.on("SIGTERM", onTerm);
      process.on("SIGINT", onInt);
      deps.signal?.addEventListener("abort", () => stopRequested("stop requested"), { once: true });
      let agent: Agent | undefined;
      // A SIGHUP while the agent starts (its folders already read) reloads once it runs.
      let reloadPending = false;
      const onHup = () => {
        if (agent === undefined) {
          reloadPending = true;
          log("SIGHUP: reloading policies once started");
          return;
        }
        log("SIGHUP: reloading policies");
        void agent.reloadPolicies();
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
        if (reloadPending) {
          log("SIGHUP: reloading policies");
          void agent.reloadPolicies();
        }
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
