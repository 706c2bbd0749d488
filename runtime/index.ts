/**
 * The package root (`import ... from "svmrt"`): the agent, its configuration and the typed
 * errors, for appliances that run svmrt inside their own Bun program. The same objects the
 * CLI uses. The bindings and engines have their own entry points: `svmrt/smi`, `svmrt/kfd`,
 * `svmrt/policy`, `svmrt/sim`.
 */
export { Agent, type AgentOptions, AGENT_VERSION, SMI_MODE_ENV } from "./agent/agent.ts";
export { type AgentConfig, agentConfigDefault, agentConfigParse, agentConfigRead, listenParse, AGENT_LISTEN_DEFAULT } from "./agent/config.ts";
export { ConfigError, ConfigErrors, InvariantError, KfdError, PolicyError, SmiError, UsageError } from "./errors.ts";
export { EXIT, exitCodeOf } from "./cli/exit.ts";
export { main } from "./cli.ts";
