/**
 * `svmrt agent`: run the daemon until SIGTERM or SIGINT (exit 0 after an orderly stop);
 * SIGHUP reloads the policy folders.
 */
import { Agent } from "../agent/agent.ts";
import { type AgentConfig, agentConfigDefault, agentConfigRead, listenParse } from "../agent/config.ts";
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
library shutdown) and exit 0; SIGHUP reloads the policy folders.

Examples:
  svmrt agent                                   # emulated default on a host without GPUs
  curl -s 127.0.0.1:9106/metrics | grep svm_
  svmrt agent --config /etc/svmrt/agent.yaml --listen 0.0.0.0:9106
`;

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

      const log = (line: string) => io.err(`svmrt agent: ${line}\n`);
      let stopRequested: (why: string) => void = () => {};
      const stopped = new Promise<string>((resolve) => (stopRequested = resolve));
      const onTerm = () => stopRequested("SIGTERM");
      const onInt = () => stopRequested("SIGINT");
      process.on("SIGTERM", onTerm);
      process.on("SIGINT", onInt);
      deps.signal?.addEventListener("abort", () => stopRequested("stop requested"), { once: true });
      let agent: Agent | undefined;
      const onHup = () => {
        log("SIGHUP: reloading policies");
        void agent?.reloadPolicies();
      };
      process.on("SIGHUP", onHup);
      try {
        // A signal during start (e.g. a slow init) stops as soon as start returns.
        agent = await Agent.start(config, { log });
        deps.onStarted?.(agent);
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
